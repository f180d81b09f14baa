//! `EtcdStore`: the production `Store`, on etcd-client. It sticks to the KV, Lease,
//! Watch and Maintenance APIs that etcd 3.4 serves, bounds every call with a timeout
//! (a down endpoint must surface as `Unavailable`, not a hang), and translates gRPC
//! statuses into `StoreError` variants callers can branch on.

mod convert;
mod errors;
mod tls;
mod watch;

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use etcd_client as ec;
use futures::StreamExt;

use crate::{KeyValue, LeaseId, Op, Range, Store, StoreError, Txn, TxnOutcome, WatchStream};
use convert::{convert_compare, convert_kv, convert_op, revision_of};
use errors::{classify, other};
use tls::tls_options;
use watch::EtcdWatcher;

/// Big listings and watch batches (a whole network's plan) exceed tonic's 4 MiB default.
const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// How to reach etcd. Endpoints are `http://host:port` or `https://host:port`; a bare
/// `host:port` gets `https` when TLS files are given and `http` otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdConfig {
    pub endpoints: Vec<String>,
    /// CA bundle to verify the server with (PEM).
    pub ca: Option<PathBuf>,
    /// Client certificate and key (PEM) for mutual TLS; both or neither.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// Bound on establishing a connection, and on the first health probe in `connect`.
    pub connect_timeout: Duration,
    /// Bound on every unary call, so a hung endpoint reads as `Unavailable`.
    pub request_timeout: Duration,
}

impl EtcdConfig {
    pub fn new(endpoints: impl IntoIterator<Item = impl Into<String>>) -> EtcdConfig {
        EtcdConfig {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            ca: None,
            cert: None,
            key: None,
            connect_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(5),
        }
    }
}

/// Cheap to clone: clones share the underlying gRPC channel.
#[derive(Clone)]
pub struct EtcdStore {
    client: ec::Client,
    /// For error messages only.
    endpoint: String,
    request_timeout: Duration,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl EtcdStore {
    /// Connects and checks that etcd answers, so a wrong endpoint or bad certificate
    /// fails here with a clear message instead of on the first real call. An
    /// unreachable etcd is `Unavailable`: callers retry `connect` as they would a call.
    pub async fn connect(config: EtcdConfig) -> Result<EtcdStore, StoreError> {
        let endpoint = config.endpoints.join(",");
        if config.endpoints.is_empty() {
            return Err(StoreError::InvalidRequest {
                reason: "no etcd endpoints configured".to_string(),
            });
        }
        let mut options = ec::ConnectOptions::new()
            .with_connect_timeout(config.connect_timeout)
            // Pings find a silently dead peer (a watch would otherwise wait forever);
            // etcd refuses pings more often than every 5 s.
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5))
            .with_keep_alive_while_idle(true)
            // A member cut off from its cluster must fail watches, not go quiet.
            .with_require_leader(true);
        if let Some(tls) = tls_options(&config).await? {
            options = options.with_tls(tls);
        }
        let client = ec::Client::connect(&config.endpoints, Some(options))
            .await
            .map_err(|e| classify(&endpoint, "connecting", None, e))?;
        let store = EtcdStore {
            client,
            endpoint,
            request_timeout: config.request_timeout,
        };
        let mut maintenance = store.client.maintenance_client();
        store
            .call("checking health", None, config.connect_timeout, async {
                maintenance.status().await
            })
            .await?;
        Ok(store)
    }

    /// The endpoints this store talks to, as given.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn kv(&self) -> ec::KvClient {
        self.client
            .kv_client()
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
    }

    async fn call<T>(
        &self,
        what: &str,
        lease: Option<LeaseId>,
        timeout: Duration,
        fut: impl std::future::Future<Output = Result<T, ec::Error>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(timeout, fut).await {
            Ok(result) => result.map_err(|e| classify(&self.endpoint, what, lease, e)),
            Err(_) => Err(StoreError::Unavailable {
                endpoint: self.endpoint.clone(),
                reason: format!("{what}: no answer within {timeout:?}"),
            }),
        }
    }

    async fn unary<T>(
        &self,
        what: &str,
        lease: Option<LeaseId>,
        fut: impl std::future::Future<Output = Result<T, ec::Error>>,
    ) -> Result<T, StoreError> {
        self.call(what, lease, self.request_timeout, fut).await
    }
}

#[async_trait]
impl Store for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        crate::types::check_key(key)?;
        let mut kv = self.kv();
        let resp = self
            .unary(&format!("get {key:?}"), None, kv.get(key, None))
            .await?;
        Ok(resp.kvs().first().map(convert_kv))
    }

    async fn range(&self, prefix: &str) -> Result<Range, StoreError> {
        let options = if prefix.is_empty() {
            ec::GetOptions::new().with_all_keys()
        } else {
            ec::GetOptions::new().with_prefix()
        };
        let mut kv = self.kv();
        let resp = self
            .unary(
                &format!("range {prefix:?}"),
                None,
                kv.get(prefix, Some(options)),
            )
            .await?;
        Ok(Range {
            kvs: resp.kvs().iter().map(convert_kv).collect(),
            revision: revision_of(resp.header()),
        })
    }

    async fn txn(&self, txn: Txn) -> Result<TxnOutcome, StoreError> {
        txn.validate()?;
        // etcd does not say which lease was missing; name the first one the txn uses.
        let lease = txn.ops.iter().find_map(|op| match op {
            Op::Put { lease, .. } => *lease,
            _ => None,
        });
        let what = match txn.ops.first() {
            Some(Op::Put { key, .. } | Op::Delete { key }) => format!("txn on {key:?}"),
            Some(Op::DeletePrefix { prefix }) => format!("txn on {prefix:?}*"),
            None => "txn".to_string(),
        };
        let request = ec::Txn::new()
            .when(
                txn.compares
                    .into_iter()
                    .map(convert_compare)
                    .collect::<Vec<_>>(),
            )
            .and_then(txn.ops.into_iter().map(convert_op).collect::<Vec<_>>());
        let mut kv = self.kv();
        let resp = self.unary(&what, lease, kv.txn(request)).await?;
        Ok(TxnOutcome {
            succeeded: resp.succeeded(),
            revision: revision_of(resp.header()),
        })
    }

    async fn grant(&self, ttl_secs: i64) -> Result<LeaseId, StoreError> {
        let mut lease = self.client.lease_client();
        let resp = self
            .unary("granting a lease", None, lease.grant(ttl_secs, None))
            .await?;
        if !resp.error().is_empty() {
            return Err(other(
                &self.endpoint,
                "granting a lease",
                resp.error().to_string(),
            ));
        }
        Ok(LeaseId(resp.id()))
    }

    async fn keep_alive_once(&self, lease: LeaseId) -> Result<i64, StoreError> {
        let what = format!("refreshing lease {lease}");
        let mut client = self.client.lease_client();
        let refresh = async {
            // Opening the stream refreshes once but hides the TTL; a second refresh
            // reports it.
            let (mut keeper, mut responses) = client.keep_alive(lease.0).await?;
            keeper.keep_alive().await?;
            responses.message().await
        };
        match self.unary(&what, Some(lease), refresh).await? {
            Some(resp) if resp.ttl() > 0 => Ok(resp.ttl()),
            Some(_) => Err(StoreError::LeaseNotFound { lease }),
            None => Err(StoreError::Unavailable {
                endpoint: self.endpoint.clone(),
                reason: format!("{what}: stream closed without an answer"),
            }),
        }
    }

    async fn revoke(&self, lease: LeaseId) -> Result<(), StoreError> {
        let mut client = self.client.lease_client();
        self.unary(
            &format!("revoking lease {lease}"),
            Some(lease),
            client.revoke(lease.0),
        )
        .await?;
        Ok(())
    }

    async fn watch(&self, prefix: &str, from_revision: i64) -> Result<WatchStream, StoreError> {
        // Ask etcd for one revision earlier than needed and drop it here: then etcd
        // reports compaction exactly when `from_revision` itself is compacted, which is
        // the rule `MemStore` follows. Revision 1 is the empty initial store.
        let start = from_revision.max(1);
        let mut options = ec::WatchOptions::new().with_start_revision(start);
        options = if prefix.is_empty() {
            options.with_all_keys()
        } else {
            options.with_prefix()
        };
        let mut client = self
            .client
            .watch_client()
            .max_decoding_message_size(MAX_MESSAGE_BYTES);
        let what = format!("watching {prefix:?}");
        let stream = self
            .unary(&what, None, client.watch(prefix, Some(options)))
            .await?;
        let watcher = EtcdWatcher {
            stream,
            from_revision,
            endpoint: self.endpoint.clone(),
            what,
            done: false,
        };
        Ok(futures::stream::unfold(watcher, |mut w| async move {
            if w.done {
                return None;
            }
            let item = w.next_batch().await;
            w.done = item.is_err();
            Some((item, w))
        })
        .boxed())
    }

    async fn compact(&self, revision: i64) -> Result<(), StoreError> {
        let mut kv = self.kv();
        // Physical: return only once etcd has applied it, so a watch opened right after
        // sees the compaction.
        let options = ec::CompactionOptions::new().with_physical();
        let what = format!("compacting at revision {revision}");
        match self
            .unary(&what, None, kv.compact(revision, Some(options)))
            .await
        {
            Ok(_) => Ok(()),
            Err(StoreError::Other { message, .. }) if message.contains("has been compacted") => {
                Ok(())
            }
            Err(StoreError::Other { message, .. }) if message.contains("future revision") => {
                Err(StoreError::InvalidRequest {
                    reason: format!("{what}: {message}"),
                })
            }
            Err(e) => Err(e),
        }
    }
}
