//! Reads of what railyard stored in etcd (the plan, registrations, allocations),
//! from the root namespace. The cluster library is synchronous (it mostly runs
//! commands), so etcd calls go through a runtime of its own.

use std::time::Duration;

use railyard_core::{keys, Plan, PlanMeta};
use railyard_store::{EtcdConfig, EtcdStore, LeaseId, Store};

use crate::error::{Error, Result};

/// An allocation record as the daemons mirror it to etcd.
pub use railyard_core::ipam::AllocationRecord;

#[derive(Debug)]
pub struct Observer {
    runtime: tokio::runtime::Runtime,
    config: EtcdConfig,
    store: Option<EtcdStore>,
}

impl Observer {
    /// `endpoint` may list several, comma separated (a multi-member etcd).
    pub fn new(endpoint: String) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(|e| Error::Refused(format!("cannot start a tokio runtime: {e}")))?;
        let mut config = EtcdConfig::new(endpoint.split(',').map(str::to_owned));
        // Short: callers poll, and a stopped etcd should fail a poll, not hang it.
        config.connect_timeout = Duration::from_secs(2);
        config.request_timeout = Duration::from_secs(3);
        Ok(Observer {
            runtime,
            config,
            store: None,
        })
    }

    fn store(&mut self) -> Result<&EtcdStore> {
        if self.store.is_none() {
            let s = self
                .runtime
                .block_on(EtcdStore::connect(self.config.clone()))?;
            self.store = Some(s);
        }
        self.store
            .as_ref()
            .ok_or_else(|| Error::Refused("no etcd connection".into()))
    }

    fn block_on<T>(
        &mut self,
        f: impl for<'a> FnOnce(&'a EtcdStore) -> futures::future::BoxFuture<'a, Result<T>>,
    ) -> Result<T> {
        self.store()?;
        let store = self
            .store
            .as_ref()
            .ok_or_else(|| Error::Refused("no etcd connection".into()))?;
        self.runtime.block_on(f(store))
    }

    /// The stored plan of `network` (meta plus host keys); `None` before the
    /// planner wrote one.
    pub fn plan(&mut self, network: &str) -> Result<Option<Plan>> {
        let net = network.to_owned();
        self.block_on(move |s| {
            Box::pin(async move {
                let range = s.range(&keys::plan_prefix(&net)).await?;
                let mut meta = None;
                let mut hosts = Vec::new();
                for kv in &range.kvs {
                    if kv.key == keys::plan_meta(&net) {
                        meta = Some(kv.decode_json::<PlanMeta>()?);
                    } else {
                        let name = keys::last_segment(&kv.key).to_owned();
                        hosts.push((name, kv.decode_json()?));
                    }
                }
                Ok(meta.map(|m| Plan::assemble(m, hosts)))
            })
        })
    }

    /// Every allocation record of `network`.
    pub fn allocations(&mut self, network: &str) -> Result<Vec<AllocationRecord>> {
        let prefix = format!("{}{network}/", keys::ALLOCATIONS);
        self.block_on(move |s| {
            Box::pin(async move {
                let range = s.range(&prefix).await?;
                let mut out = Vec::new();
                for kv in &range.kvs {
                    out.push(kv.decode_json::<AllocationRecord>()?);
                }
                Ok(out)
            })
        })
    }

    /// The lease of `host`'s registration, if it is registered.
    pub fn registration_lease(&mut self, host: &str) -> Result<Option<LeaseId>> {
        let key = keys::host(host);
        self.block_on(move |s| {
            Box::pin(async move { Ok(s.get(&key).await?.and_then(|kv| kv.lease)) })
        })
    }

    /// `host`'s registration as its daemon last wrote it (the NICs it found).
    pub fn registration(&mut self, host: &str) -> Result<Option<railyard_core::HostInventory>> {
        let key = keys::host(host);
        self.block_on(move |s| {
            Box::pin(async move {
                match s.get(&key).await? {
                    Some(kv) => Ok(Some(kv.decode_json()?)),
                    None => Ok(None),
                }
            })
        })
    }

    /// Revokes `host`'s registration lease: to the planner the host is gone at
    /// once, as if its daemon had died and the TTL had passed.
    pub fn revoke_registration(&mut self, host: &str) -> Result<bool> {
        let Some(lease) = self.registration_lease(host)? else {
            return Ok(false);
        };
        self.block_on(move |s| Box::pin(async move { Ok(s.revoke(lease).await.map(|()| true)?) }))
    }

    /// The planner currently leading (its `--identity`).
    pub fn leader(&mut self) -> Result<Option<String>> {
        self.block_on(|s| {
            Box::pin(async move {
                let range = s.range(keys::ELECTION).await?;
                // The oldest campaign key holds the leadership.
                Ok(range
                    .kvs
                    .iter()
                    .min_by_key(|kv| kv.create_revision)
                    .map(|kv| String::from_utf8_lossy(&kv.value).into_owned()))
            })
        })
    }
}
