//! `EtcdStore`: the production `Store`, on etcd-client. It sticks to the KV, Lease,
//! Watch and Maintenance APIs that etcd 3.4 serves, bounds every call with a timeout
//! (a down endpoint must surface as `Unavailable`, not a hang), and translates gRPC
//! statuses into `StoreError` variants callers can branch on.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use etcd_client as ec;
use futures::StreamExt;

use crate::{
    Compare, KeyValue, LeaseId, Op, Range, Store, StoreError, Txn, TxnOutcome, WatchEvent,
    WatchStream,
};

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

async fn tls_options(config: &EtcdConfig) -> Result<Option<ec::TlsOptions>, StoreError> {
    if config.ca.is_none() && config.cert.is_none() && config.key.is_none() {
        return Ok(None);
    }
    let mut tls = ec::TlsOptions::new();
    if let Some(ca) = &config.ca {
        tls = tls.ca_certificate(ec::Certificate::from_pem(read_pem(ca, "CA").await?));
    }
    match (&config.cert, &config.key) {
        (Some(cert), Some(key)) => {
            let cert = read_pem(cert, "client certificate").await?;
            let key = read_pem(key, "client key").await?;
            tls = tls.identity(ec::Identity::from_pem(cert, key));
        }
        (None, None) => {}
        _ => {
            return Err(StoreError::InvalidRequest {
                reason: "etcd client certificate and key must be given together".to_string(),
            })
        }
    }
    Ok(Some(tls))
}

async fn read_pem(path: &Path, what: &str) -> Result<Vec<u8>, StoreError> {
    tokio::fs::read(path).await.map_err(|e| StoreError::Other {
        context: format!("reading etcd {what} {}", path.display()),
        message: e.to_string(),
    })
}

/// gRPC codes (tonic's `Code` as i32) that mean "try again later".
const CANCELLED: i32 = 1;
const INVALID_ARGUMENT: i32 = 3;
const DEADLINE_EXCEEDED: i32 = 4;
const NOT_FOUND: i32 = 5;
const UNAVAILABLE: i32 = 14;

/// Turns an etcd-client error into the variant callers act on. etcd's messages are
/// kept verbatim in the text; the endpoint and operation are added around them.
fn classify(endpoint: &str, what: &str, lease: Option<LeaseId>, e: ec::Error) -> StoreError {
    let unavailable = |reason: String| StoreError::Unavailable {
        endpoint: endpoint.to_string(),
        reason: format!("{what}: {reason}"),
    };
    match e {
        ec::Error::GRpcStatus(status) => {
            let message = status.message().to_string();
            match i32::from(status.code()) {
                CANCELLED | DEADLINE_EXCEEDED | UNAVAILABLE => unavailable(message),
                NOT_FOUND if message.contains("lease not found") => match lease {
                    Some(lease) => StoreError::LeaseNotFound { lease },
                    None => other(endpoint, what, message),
                },
                INVALID_ARGUMENT => StoreError::InvalidRequest {
                    reason: format!("{what}: {message}"),
                },
                // tonic reports a dropped connection as Unknown with a transport cause.
                _ if message.contains("transport error")
                    || message.contains("connection")
                    || message.contains("broken pipe") =>
                {
                    unavailable(message)
                }
                _ => other(endpoint, what, format!("{status}")),
            }
        }
        ec::Error::TransportError(e) => unavailable(error_chain(&e)),
        ec::Error::IoError(e) => unavailable(e.to_string()),
        // The stream's request channel closed: the connection under it went away.
        ec::Error::WatchError(e) => unavailable(e),
        ec::Error::LeaseKeepAliveError(e) if e.contains("lease not found") => match lease {
            Some(lease) => StoreError::LeaseNotFound { lease },
            None => other(endpoint, what, e),
        },
        ec::Error::InvalidArgs(e) | ec::Error::EndpointError(e) => StoreError::InvalidRequest {
            reason: format!("{what} (etcd at {endpoint}): {e}"),
        },
        ec::Error::InvalidUri(e) => StoreError::InvalidRequest {
            reason: format!("bad etcd endpoint {endpoint}: {e}"),
        },
        e => other(endpoint, what, e.to_string()),
    }
}

fn other(endpoint: &str, what: &str, message: String) -> StoreError {
    StoreError::Other {
        context: format!("{what} on etcd at {endpoint}"),
        message,
    }
}

/// Transport errors hide the useful part ("Connection refused") in their sources.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn convert_kv(kv: &ec::KeyValue) -> KeyValue {
    KeyValue {
        // Only this crate writes these keys, always as UTF-8; a foreign key that is not
        // is shown lossily rather than failing a whole listing.
        key: String::from_utf8_lossy(kv.key()).into_owned(),
        value: kv.value().to_vec(),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
        version: kv.version(),
        lease: LeaseId::from_raw(kv.lease()),
    }
}

fn convert_event(event: &ec::Event) -> Option<WatchEvent> {
    let kv = event.kv()?;
    Some(match event.event_type() {
        ec::EventType::Put => WatchEvent::Put(convert_kv(kv)),
        ec::EventType::Delete => WatchEvent::Delete {
            key: String::from_utf8_lossy(kv.key()).into_owned(),
            mod_revision: kv.mod_revision(),
        },
    })
}

fn revision_of(header: Option<&ec::ResponseHeader>) -> i64 {
    header.map_or(0, ec::ResponseHeader::revision)
}

fn convert_compare(c: Compare) -> ec::Compare {
    use ec::CompareOp::{Equal, Greater};
    match c {
        Compare::ModRevision { key, rev } => ec::Compare::mod_revision(key, Equal, rev),
        Compare::CreateRevision { key, rev } => ec::Compare::create_revision(key, Equal, rev),
        Compare::Value { key, value } => ec::Compare::value(key, Equal, value),
        Compare::Exists(key) => ec::Compare::create_revision(key, Greater, 0),
        Compare::Absent(key) => ec::Compare::create_revision(key, Equal, 0),
    }
}

fn convert_op(op: Op) -> ec::TxnOp {
    match op {
        Op::Put { key, value, lease } => {
            let options = lease.map(|l| ec::PutOptions::new().with_lease(l.0));
            ec::TxnOp::put(key, value, options)
        }
        Op::Delete { key } => ec::TxnOp::delete(key, None),
        Op::DeletePrefix { prefix } => {
            let options = if prefix.is_empty() {
                ec::DeleteOptions::new().with_all_keys()
            } else {
                ec::DeleteOptions::new().with_prefix()
            };
            ec::TxnOp::delete(prefix, Some(options))
        }
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
            .when(txn.compares.into_iter().map(convert_compare).collect::<Vec<_>>())
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

struct EtcdWatcher {
    /// Owns the request side too: dropping it would end the watch.
    stream: ec::WatchStream,
    from_revision: i64,
    endpoint: String,
    what: String,
    done: bool,
}

impl EtcdWatcher {
    async fn next_batch(&mut self) -> Result<Vec<WatchEvent>, StoreError> {
        loop {
            let resp = match self.stream.message().await {
                Ok(Some(resp)) => resp,
                Ok(None) => {
                    return Err(StoreError::Unavailable {
                        endpoint: self.endpoint.clone(),
                        reason: format!("{}: stream closed by the server", self.what),
                    })
                }
                Err(e) => return Err(classify(&self.endpoint, &self.what, None, e)),
            };
            // etcd cancels a watch whose start is compacted and says where history begins.
            if resp.compact_revision() != 0 {
                return Err(StoreError::Compacted {
                    compact_revision: resp.compact_revision(),
                });
            }
            if resp.canceled() {
                let reason = resp.cancel_reason();
                // A member that lost its leader cancels watches; that passes like an outage.
                if reason.contains("no leader") {
                    return Err(StoreError::Unavailable {
                        endpoint: self.endpoint.clone(),
                        reason: format!("{}: canceled by etcd: {reason}", self.what),
                    });
                }
                return Err(other(
                    &self.endpoint,
                    &self.what,
                    format!("canceled by etcd: {reason}"),
                ));
            }
            let events: Vec<WatchEvent> = resp
                .events()
                .iter()
                .filter_map(convert_event)
                .filter(|e| e.revision() > self.from_revision)
                .collect();
            if !events.is_empty() {
                return Ok(events);
            }
        }
    }
}
