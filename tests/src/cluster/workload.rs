//! Pods in bulk: attach and detach many at once (as kubelets on many hosts
//! would), and probe pod-to-pod reachability without etcd (`railyard check` needs
//! etcd to find the pods; an etcd outage test must not).

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use super::cmd;
use super::pods;
use super::state::PodRecord;
use super::Cluster;
use crate::error::{Error, Result};

/// Runs `work` over `items` on `parallel` threads; results in item order.
fn parallel_map<T: Sync, R: Send>(
    items: &[T],
    parallel: usize,
    work: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<R>>> = Mutex::new(items.iter().map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..parallel.clamp(1, items.len().max(1)) {
            s.spawn(|| loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let Some(item) = items.get(n) else {
                    return;
                };
                let r = work(item);
                if let Ok(mut all) = results.lock() {
                    all[n] = Some(r);
                }
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_default()
        .into_iter()
        .flatten()
        .collect()
}

impl Cluster {
    /// Attaches pod `k` of host `i` for every `(i, k)`, `parallel` at a time,
    /// and fails if any pod failed (the ones that attached are recorded).
    pub fn attach_pods(
        &mut self,
        jobs: &[(usize, usize)],
        parallel: usize,
    ) -> Result<Vec<PodRecord>> {
        let (attached, failures) = self.try_attach_pods(jobs, parallel)?;
        if failures.is_empty() {
            Ok(attached)
        } else {
            Err(Error::Refused(format!(
                "{} of {} pods failed to attach:\n{}",
                failures.len(),
                jobs.len(),
                failures.join("\n")
            )))
        }
    }

    /// Like `attach_pods`, returning the pods that attached and the failures.
    pub fn try_attach_pods(
        &mut self,
        jobs: &[(usize, usize)],
        parallel: usize,
    ) -> Result<(Vec<PodRecord>, Vec<String>)> {
        if !self.daemon_has_ipam() {
            return Err(Error::Missing(
                "railyard-route-daemon has no --ipam-socket flag: this build serves no IPAM, \
                 so pods cannot attach"
                    .into(),
            ));
        }
        let spec = self.spec().clone();
        let pods = self.state.pods.len() + jobs.len();
        super::kernel_limits::raise_neighbour_limits(&mut self.state, pods)?;
        // Recorded before they exist: a crash half way must not leak namespaces.
        for &(i, k) in jobs {
            self.state.add_netns(&spec.pod(i, k));
        }
        self.state.save()?;
        let results = parallel_map(jobs, parallel, |&(i, k)| pods::attach(&spec, i, k));
        let mut attached = Vec::new();
        let mut failures = Vec::new();
        for r in results {
            match r {
                Ok(p) => attached.push(p),
                Err(e) => failures.push(e.to_string()),
            }
        }
        self.state.pods.extend(attached.iter().cloned());
        self.state.save()?;
        if spec.family.has_v6() {
            let hosts: BTreeSet<usize> = attached.iter().map(|p| p.host_index).collect();
            self.wait_dad(&hosts, Duration::from_secs(10))?;
        }
        Ok((attached, failures))
    }

    /// Waits until no address on `hosts` is tentative. ptp gives the host end of
    /// each pod veth the gateway address with duplicate address detection, so for
    /// about a second after ADD the host does not answer for it and a pod's
    /// first IPv6 packets are lost. Real pods have the same second; the cluster
    /// counts a pod as ready after it.
    pub fn wait_dad(&self, hosts: &BTreeSet<usize>, timeout: Duration) -> Result<()> {
        let start = Instant::now();
        for &i in hosts {
            let host = self.spec().host(i);
            loop {
                let tentative = cmd::ip_in(&host, &["-6", "addr", "show", "tentative"])?;
                if tentative.trim().is_empty() {
                    break;
                }
                if start.elapsed() > timeout {
                    return Err(Error::Timeout {
                        what: format!("IPv6 duplicate address detection on {host}"),
                        secs: timeout.as_secs_f64(),
                        detail: tentative,
                    });
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(())
    }

    /// CNI DEL of the named pods (all attached pods when `names` is None), and
    /// their namespaces. Returns the failures.
    pub fn detach_pods(
        &mut self,
        names: Option<&[String]>,
        parallel: usize,
    ) -> Result<Vec<String>> {
        let spec = self.spec().clone();
        let victims: Vec<PodRecord> = self
            .state
            .pods
            .iter()
            .filter(|p| names.is_none_or(|n| n.contains(&p.name)))
            .cloned()
            .collect();
        let results = parallel_map(&victims, parallel, |p| {
            pods::detach(&spec, p.host_index, &p.name).map(|()| p.name.clone())
        });
        let mut failures = Vec::new();
        for r in results {
            match r {
                Ok(name) => self.state.pods.retain(|p| p.name != name),
                Err(e) => failures.push(e.to_string()),
            }
        }
        self.state.save()?;
        Ok(failures)
    }

    /// From each attached pod, pings every address of every other pod (all rails,
    /// all families), `parallel` at a time. Returns the probes that failed.
    pub fn ping_mesh(&self, parallel: usize) -> Vec<(String, IpAddr)> {
        let probes: Vec<(String, IpAddr)> = self
            .state
            .pods
            .iter()
            .flat_map(|from| {
                self.state
                    .pods
                    .iter()
                    .filter(move |to| to.name != from.name)
                    .flat_map(|to| to.addresses.iter().copied())
                    .map(move |dst| (from.name.clone(), dst))
            })
            .collect();
        parallel_map(&probes, parallel, |(from, dst)| {
            pods::ping(from, *dst).err().map(|_| (from.clone(), *dst))
        })
        .into_iter()
        .flatten()
        .collect()
    }

    /// From each pod, pings every address of one pod on each of the next `hosts`
    /// hosts (the pod at the same position there), `parallel` at a time: a
    /// cross-host sample that stays linear in the pod count. Returns the number
    /// of probes and the failed ones.
    pub fn ping_across_hosts(
        &self,
        hosts: usize,
        parallel: usize,
    ) -> (usize, Vec<(String, IpAddr)>) {
        let mut by_host: std::collections::BTreeMap<usize, Vec<&PodRecord>> = Default::default();
        for p in &self.state.pods {
            by_host.entry(p.host_index).or_default().push(p);
        }
        let host_list: Vec<usize> = by_host.keys().copied().collect();
        let mut probes = Vec::new();
        for (h_pos, h) in host_list.iter().enumerate() {
            for (k, from) in by_host[h].iter().enumerate() {
                for step in 1..=hosts.min(host_list.len().saturating_sub(1)) {
                    let other = &by_host[&host_list[(h_pos + step) % host_list.len()]];
                    let to = other[k % other.len()];
                    probes.extend(to.addresses.iter().map(|a| (from.name.clone(), *a)));
                }
            }
        }
        let failed = parallel_map(&probes, parallel, |(from, dst)| {
            pods::ping(from, *dst).err().map(|_| (from.clone(), *dst))
        })
        .into_iter()
        .flatten()
        .collect();
        (probes.len(), failed)
    }
}
