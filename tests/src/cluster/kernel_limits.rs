//! Kernel limits that a many-host cluster on one kernel outgrows. The neighbour
//! (ARP and NDP) tables are shared by every network namespace, with one global
//! limit (`gc_thresh3`, 1,024 entries by default, settable only from the root
//! namespace): ten "hosts" of 100 ptp pods need about two entries per pod NIC
//! (the pod's entry for its gateway, the host's for the pod), so without this
//! the kernel drops neighbour entries ("neighbor table overflow") and pings fail
//! at random. On real hosts each kernel holds only its own pods' entries.

use serde::{Deserialize, Serialize};

use super::spec::ClusterSpec;
use super::state::State;
use crate::error::{Error, Result};

/// A root-namespace sysctl `up` raised, and what it was before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaisedSysctl {
    pub key: String,
    pub original: u64,
    pub set: u64,
}

fn path(key: &str) -> String {
    format!("/proc/sys/{}", key.replace('.', "/"))
}

fn read(key: &str) -> Result<u64> {
    let p = path(key);
    let text = std::fs::read_to_string(&p).map_err(|e| Error::io("read sysctl", &p, e))?;
    text.trim()
        .parse()
        .map_err(|_| Error::Refused(format!("{key} is {:?}, not a number", text.trim())))
}

fn write(key: &str, value: u64) -> Result<()> {
    let p = path(key);
    std::fs::write(&p, value.to_string()).map_err(|e| Error::io("write sysctl", &p, e))
}

/// Neighbour entries a cluster of `hosts` hosts and `pods` pods may need: two
/// per pod NIC and family, one per host, rail and other host; doubled for
/// entries waiting for garbage collection.
pub fn neighbour_entries(spec: &ClusterSpec, hosts: usize, pods: usize) -> u64 {
    let families = if spec.family == super::Family::Dual {
        2
    } else {
        1
    };
    let (hosts, pods, rails) = (hosts as u64, pods as u64, spec.rails as u64);
    2 * (2 * pods * rails + hosts * hosts * rails) * families
}

/// Raises (never lowers) the neighbour table limits of both families to fit
/// `pods` pods on the state's hosts, recording the old values in the state
/// before writing.
pub fn raise_neighbour_limits(state: &mut State, pods: usize) -> Result<()> {
    let needed = neighbour_entries(&state.spec, state.hosts, pods);
    for family in ["ipv4", "ipv6"] {
        for (knob, want) in [("gc_thresh2", needed), ("gc_thresh3", 2 * needed)] {
            let key = format!("net.{family}.neigh.default.{knob}");
            let original = read(&key)?;
            if original >= want {
                continue;
            }
            // Raised again for more pods: the first original is what `down` restores.
            let first = state
                .sysctls
                .iter()
                .find(|s| s.key == key)
                .map(|s| s.original);
            state.sysctls.retain(|s| s.key != key);
            state.sysctls.push(RaisedSysctl {
                key: key.clone(),
                original: first.unwrap_or(original),
                set: want,
            });
            state.save()?;
            write(&key, want)?;
        }
    }
    Ok(())
}

/// Puts back what `raise_neighbour_limits` changed, unless someone changed it
/// again since (then theirs stays).
pub fn restore(raised: &[RaisedSysctl], problems: &mut Vec<String>) {
    for s in raised {
        match read(&s.key) {
            Ok(now) if now == s.set => {
                if let Err(e) = write(&s.key, s.original) {
                    problems.push(e.to_string());
                }
            }
            Ok(_) => {}
            Err(e) => problems.push(e.to_string()),
        }
    }
}
