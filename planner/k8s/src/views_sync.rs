//! Keeps the HostInterface, CIDR and IPAllocation views in step with etcd (leader only, like the
//! rest of the controller).
//!
//! The cache of what was applied is seeded by listing our objects (label
//! `app.kubernetes.io/managed-by=railyard`), so a new leader re-applies nothing that
//! is already right and deletes only objects railyard made. The listing is repeated
//! every resync period: a view someone deleted or edited by hand differs from the
//! cache then and is applied again.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::{stream, FutureExt, StreamExt};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use railyard_core::keys;
use railyard_store::{watch_or_relist, Store, StoreError, WatchUpdate};
use tokio::time::{sleep_until, Instant};
use tracing::{debug, info, warn};

use super::crd::{Cidr, HostInterface, IpAllocation};
use super::views::{decide, managed_selector, object, Mirror, View};
use super::{K8sError, FIELD_MANAGER};

/// Applies in flight at once: a burst of joins is many small objects, and one
/// round trip each in sequence would take seconds for a thousand.
const CONCURRENT_WRITES: usize = 8;
const FIRST_RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_secs(60);
/// How many already-arrived updates a batch takes after its window closes: a
/// bound, so a flood of events cannot hold a flush back.
const MAX_DRAIN: usize = 10_000;

/// One kind's objects: what was applied and what must be looked at again.
struct Tracked<V: View> {
    api: Api<V>,
    applied: BTreeMap<String, V::Spec>,
    dirty: BTreeSet<String>,
    /// The first etcd snapshot arrived: before it, "not in etcd" means "not seen
    /// yet", and deciding would delete every view.
    synced: bool,
}

impl<V: View> Tracked<V> {
    fn new(api: Api<V>) -> Self {
        Tracked {
            api,
            applied: BTreeMap::new(),
            dirty: BTreeSet::new(),
            synced: false,
        }
    }

    async fn relist(&mut self) -> Result<(), K8sError> {
        let params = ListParams::default().labels(&managed_selector());
        let list = self
            .api
            .list(&params)
            .await
            .map_err(K8sError::kube(format!("listing {}", V::plural(&()))))?;
        self.applied = list
            .items
            .into_iter()
            .map(|o| (o.name_any(), o.spec_of().clone()))
            .collect();
        Ok(())
    }

    /// Takes an etcd update's touched names; a snapshot also re-examines every
    /// object applied, so one whose host or network vanished meanwhile goes.
    fn touch(&mut self, touched: BTreeSet<String>, snapshot: bool) {
        self.dirty.extend(touched);
        if snapshot {
            self.synced = true;
            self.dirty.extend(self.applied.keys().cloned());
        }
    }

    fn touch_all<'a>(&mut self, names: impl Iterator<Item = &'a str>) {
        if self.synced {
            self.dirty.extend(names.map(str::to_string));
            self.dirty.extend(self.applied.keys().cloned());
        }
    }

    /// Decides and writes the dirty names. A name whose write fails stays dirty;
    /// returns false then.
    async fn flush(&mut self, want: impl Fn(&str) -> Option<V::Spec>) -> bool {
        if !self.synced || self.dirty.is_empty() {
            return true;
        }
        let touched = std::mem::take(&mut self.dirty);
        let changes = decide(&touched, want, &self.applied);
        let kind = V::kind(&()).into_owned();
        for (name, reason) in &changes.unnamable {
            warn!(kind, name, reason, "no view for this name");
        }
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let api = &self.api;
        let applied: Vec<_> = stream::iter(changes.apply)
            .map(|(name, spec)| {
                let body = object::<V>(&name, spec.clone());
                let params = &params;
                async move {
                    let result = api.patch(&name, params, &Patch::Apply(&body)).await;
                    (name, spec, result)
                }
            })
            .buffer_unordered(CONCURRENT_WRITES)
            .collect()
            .await;
        let deleted: Vec<_> = stream::iter(changes.delete)
            .map(|name| async move {
                let result = api.delete(&name, &DeleteParams::default()).await;
                (name, result)
            })
            .buffer_unordered(CONCURRENT_WRITES)
            .collect()
            .await;
        let mut clean = true;
        for (name, spec, result) in applied {
            match result {
                Ok(_) => {
                    debug!(kind, name, "view applied");
                    self.applied.insert(name, spec);
                }
                Err(e) => {
                    warn!(kind, name, error = %e, "applying the view failed; retrying");
                    self.dirty.insert(name);
                    clean = false;
                }
            }
        }
        for (name, result) in deleted {
            match result {
                Ok(_) => {
                    info!(kind, name, "view deleted: gone from etcd");
                    self.applied.remove(&name);
                }
                Err(kube::Error::Api(s)) if s.is_not_found() => {
                    self.applied.remove(&name);
                }
                Err(e) => {
                    warn!(kind, name, error = %e, "deleting the view failed; retrying");
                    self.dirty.insert(name);
                    clean = false;
                }
            }
        }
        clean
    }
}

#[derive(Debug, Clone, Copy)]
enum Prefix {
    Hosts,
    Plans,
    Allocations,
}

struct Views {
    mirror: Mirror,
    hosts: Tracked<HostInterface>,
    nets: Tracked<Cidr>,
    allocations: Tracked<IpAllocation>,
}

impl Views {
    fn take(&mut self, (prefix, update): (Prefix, Result<WatchUpdate, StoreError>)) {
        let update = match update {
            Ok(u) => u,
            Err(e) => {
                warn!(error = %e, "etcd watch for the HostInterface and CIDR views interrupted");
                return;
            }
        };
        let snapshot = matches!(update, WatchUpdate::Snapshot(_));
        match prefix {
            Prefix::Hosts => {
                let touched = self.mirror.follow_hosts(&update);
                self.hosts.touch(touched, snapshot);
            }
            Prefix::Plans => {
                let touched = self.mirror.follow_plans(&update);
                // A NIC's rails are in its host's view.
                let hosts = self.mirror.hosts_of_plans(&update);
                self.hosts.touch(hosts, false);
                self.nets.touch(touched, snapshot);
            }
            Prefix::Allocations => {
                let touched = self.mirror.follow_allocations(&update);
                self.allocations.touch(touched, snapshot);
            }
        }
    }

    /// Lists both kinds; the first failure is returned (the other is still tried).
    async fn relist(&mut self) -> Result<(), K8sError> {
        let hosts = self.hosts.relist().await;
        let nets = self.nets.relist().await;
        let allocations = self.allocations.relist().await;
        hosts.and(nets).and(allocations)
    }

    async fn flush(&mut self) -> bool {
        let mirror = &self.mirror;
        let hosts = self.hosts.flush(|n| mirror.host_view(n)).await;
        let nets = self.nets.flush(|n| mirror.cidr_view(n)).await;
        let allocations = self.allocations.flush(|n| mirror.allocation_view(n)).await;
        hosts && nets && allocations
    }
}

/// Follows etcd and keeps the views; returns only if the etcd watches end.
/// Updates arriving within `coalesce` of the first one are applied as one batch;
/// every `resync` our objects are listed again and compared.
pub async fn run(client: Client, store: Arc<dyn Store>, coalesce: Duration, resync: Duration) {
    let mut views = Views {
        mirror: Mirror::default(),
        hosts: Tracked::new(Api::all(client.clone())),
        nets: Tracked::new(Api::all(client.clone())),
        allocations: Tracked::new(Api::all(client)),
    };
    // Without the listing, "gone from etcd" cannot be told from "never made".
    let mut wait = FIRST_RETRY;
    while let Err(e) = views.relist().await {
        warn!(error = %e, "cannot list the HostInterface, CIDR and IPAllocation views (CRDs installed? RBAC?); retrying");
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(MAX_RETRY);
    }
    let mut updates = stream::select_all([
        watch_or_relist(Arc::clone(&store), keys::HOSTS, None)
            .map(|u| (Prefix::Hosts, u))
            .boxed(),
        watch_or_relist(Arc::clone(&store), keys::PLANS, None)
            .map(|u| (Prefix::Plans, u))
            .boxed(),
        watch_or_relist(store, keys::ALLOCATIONS, None)
            .map(|u| (Prefix::Allocations, u))
            .boxed(),
    ]);
    let mut next_resync = Instant::now() + resync;
    let mut retry: Option<Instant> = None;
    let mut backoff = FIRST_RETRY;
    loop {
        tokio::select! {
            u = updates.next() => {
                let Some(u) = u else {
                    warn!("etcd watch for the HostInterface and CIDR views ended");
                    return;
                };
                views.take(u);
                let deadline = Instant::now() + coalesce;
                loop {
                    tokio::select! {
                        u = updates.next() => match u {
                            Some(u) => views.take(u),
                            None => return,
                        },
                        () = sleep_until(deadline) => break,
                    }
                }
                // select! picks at random when both are ready: what has already
                // arrived belongs to this batch, or a registration and its plan
                // entry sent together would be applied as two views.
                for _ in 0..MAX_DRAIN {
                    match updates.next().now_or_never() {
                        Some(Some(u)) => views.take(u),
                        Some(None) => return,
                        None => break,
                    }
                }
            }
            () = sleep_until(next_resync) => {
                next_resync = Instant::now() + resync;
                if let Err(e) = views.relist().await {
                    warn!(error = %e, "re-listing the views failed; comparing with the last known state");
                }
                let Views { mirror, hosts, nets, allocations } = &mut views;
                hosts.touch_all(mirror.host_names());
                nets.touch_all(mirror.network_names());
                let names = mirror.allocation_names();
                allocations.touch_all(names.iter().map(String::as_str));
            }
            () = sleep_until(retry.unwrap_or(next_resync)), if retry.is_some() => {}
        }
        if views.flush().await {
            retry = None;
            backoff = FIRST_RETRY;
        } else {
            retry = Some(Instant::now() + backoff);
            backoff = (backoff * 2).min(MAX_RETRY);
        }
    }
}
