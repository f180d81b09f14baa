//! `EtcdStore`: the production `Store`, on etcd-client. It sticks to the KV, Lease,
//! Watch and Maintenance APIs that etcd 3.4 serves, bounds every call with a timeout
//! (a down endpoint must surface as `Unavailable`, not a hang), and translates gRPC
//! statuses into `StoreError` variants callers can branch on.

mod convert;
mod errors;
mod tls;
mod watch;

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use etcd_client as ec;
use futures::StreamExt;

use crate::{KeyValue, LeaseId, Op, Range, Store, StoreError, Txn, TxnOutcome, WatchStream};
use convert::{convert_compare, convert_kv, convert_op, revision_of};
use errors::{classify, not_delivered, other};
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

/// Cheap to clone: clones share the connections and the pinned member.
#[derive(Clone)]
pub struct EtcdStore {
    members: Arc<Members>,
    /// Every endpoint, for messages about the store as a whole.
    endpoint: String,
    request_timeout: Duration,
}

/// One client per endpoint, and the member calls go to. etcd-client's own
/// multi-endpoint channel balances every call over all endpoints, a dead or
/// cut-off member included, so a share of all calls failed for as long as a
/// member was lost (issue 18). Here calls stay on one member while it answers;
/// a call it fails in a way that says "this member, not the request" moves
/// the pin to the next member, and the call is retried there when that is
/// safe (see [`Retry`]). This is the pinned-endpoint failover etcd's Go client
/// had before its gRPC balancer.
struct Members {
    clients: Vec<ec::Client>,
    endpoints: Vec<String>,
    pinned: AtomicUsize,
    /// Counts the pin's moves. Open watches follow it: a watch on a member the
    /// pin left ends (`Unavailable`) and its caller opens it again on the new
    /// one, rather than wait on a silent member until the connection's pings
    /// give up (15 s).
    moves: tokio::sync::watch::Sender<u64>,
}

impl Members {
    fn pinned(&self) -> usize {
        self.pinned.load(Ordering::Relaxed)
    }

    /// Moves calls off member `i`, unless another call already did.
    fn failed(&self, i: usize) {
        let next = (i + 1) % self.clients.len();
        let moved = self
            .pinned
            .compare_exchange(i, next, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok();
        if moved && self.clients.len() > 1 {
            self.moves.send_modify(|n| *n += 1);
        }
    }
}

/// A call given up by its caller after this long (the future dropped, as a
/// lease refresh bounded by its TTL does) counts against its member: a
/// healthy member answers in milliseconds.
const SLOW_CALL: Duration = Duration::from_secs(1);

/// Moves the pin off member `i` when dropped before `settled`, if the call had
/// been waiting [`SLOW_CALL`] or longer.
struct Attempt<'a> {
    members: &'a Members,
    i: usize,
    started: std::time::Instant,
    settled: bool,
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if !self.settled && self.started.elapsed() >= SLOW_CALL {
            self.members.failed(self.i);
        }
    }
}

/// When a call that failed on one member may be sent to the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// Reads and refreshes: sending them twice changes nothing.
    Always,
    /// Writes: only when the first member certainly did not take the request
    /// (no connection, or refused for want of a leader). After a timeout it may
    /// have been applied: the caller gets `Unavailable` and decides, as
    /// `StoreError::Unavailable` documents.
    IfUndelivered,
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
    /// With several endpoints, the first that answers is used first.
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
            // A member cut off from its cluster must fail calls and watches, not go
            // quiet: its "no leader" is what moves a client to another member.
            .with_require_leader(true);
        if let Some(tls) = tls_options(&config).await? {
            options = options.with_tls(tls);
        }
        let mut clients = Vec::new();
        for member in &config.endpoints {
            // Connections are made lazily: a member down now is no error here.
            let client = ec::Client::connect([member], Some(options.clone()))
                .await
                .map_err(|e| classify(member, "connecting", None, e))?;
            clients.push(client);
        }
        let first = first_to_answer(&clients, config.connect_timeout).await;
        let store = EtcdStore {
            members: Arc::new(Members {
                clients,
                endpoints: config.endpoints.clone(),
                pinned: AtomicUsize::new(first),
                moves: tokio::sync::watch::channel(0).0,
            }),
            endpoint,
            request_timeout: config.request_timeout,
        };
        store
            .call(
                "checking health",
                None,
                config.connect_timeout,
                Retry::Always,
                |_, c| async move { c.maintenance_client().status().await },
            )
            .await?;
        Ok(store)
    }

    /// The endpoints this store talks to, as given.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn kv(client: &ec::Client) -> ec::KvClient {
        client
            .kv_client()
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
    }

    /// Runs `call` on the pinned member, bounded by `timeout`; on a failure of
    /// the member, moves the pin and, as `retry` allows, tries the next one,
    /// each member at most once. `call` gets the member's index and client.
    async fn call<T, F, Fut>(
        &self,
        what: &str,
        lease: Option<LeaseId>,
        timeout: Duration,
        retry: Retry,
        mut call: F,
    ) -> Result<T, StoreError>
    where
        F: FnMut(usize, ec::Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, ec::Error>>,
    {
        let members = &self.members;
        let mut last = None;
        for _ in 0..members.clients.len() {
            let i = members.pinned();
            let endpoint = &members.endpoints[i];
            let mut attempt = Attempt {
                members,
                i,
                started: std::time::Instant::now(),
                settled: false,
            };
            let outcome = tokio::time::timeout(timeout, call(i, members.clients[i].clone())).await;
            attempt.settled = true;
            let (error, undelivered) = match outcome {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(e)) => {
                    let undelivered = not_delivered(&e);
                    (classify(endpoint, what, lease, e), undelivered)
                }
                Err(_) => (
                    StoreError::Unavailable {
                        endpoint: endpoint.clone(),
                        reason: format!("{what}: no answer within {timeout:?}"),
                    },
                    false,
                ),
            };
            if !error.is_retryable() {
                return Err(error);
            }
            members.failed(i);
            if retry == Retry::IfUndelivered && !undelivered {
                return Err(error);
            }
            last = Some(error);
        }
        Err(last.unwrap_or_else(|| StoreError::Unavailable {
            endpoint: self.endpoint.clone(),
            reason: format!("{what}: no endpoint"),
        }))
    }

    async fn unary<T, F, Fut>(
        &self,
        what: &str,
        lease: Option<LeaseId>,
        retry: Retry,
        call: F,
    ) -> Result<T, StoreError>
    where
        F: FnMut(usize, ec::Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, ec::Error>>,
    {
        self.call(what, lease, self.request_timeout, retry, call)
            .await
    }
}

/// With several members: the first, in the configured order, that answers a
/// status call within [`QUICK_ANSWER`], so that a new client does not spend
/// its whole connect timeout on a member that hangs. 0 when none does (the
/// health check in `connect` then waits for them in turn).
async fn first_to_answer(clients: &[ec::Client], connect_timeout: Duration) -> usize {
    if clients.len() < 2 {
        return 0;
    }
    let quick = QUICK_ANSWER.min(connect_timeout);
    for (i, client) in clients.iter().enumerate() {
        let status = async { client.maintenance_client().status().await };
        if let Ok(Ok(_)) = tokio::time::timeout(quick, status).await {
            return i;
        }
    }
    0
}

/// How long a healthy member may take to answer the first status call (a
/// connection, a handshake, a local read): milliseconds, so half a second is
/// generous.
const QUICK_ANSWER: Duration = Duration::from_millis(500);

/// Resolves once the pin has left `member` (never while it stays).
async fn left(members: &Members, member: usize, moves: &mut tokio::sync::watch::Receiver<u64>) {
    while members.pinned() == member {
        if moves.changed().await.is_err() {
            // The store is gone; nothing will move the pin again.
            std::future::pending::<()>().await;
        }
    }
}

#[async_trait]
impl Store for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        crate::types::check_key(key)?;
        let what = format!("get {key:?}");
        let resp = self
            .unary(&what, None, Retry::Always, |_, c| async move {
                EtcdStore::kv(&c).get(key, None).await
            })
            .await?;
        Ok(resp.kvs().first().map(convert_kv))
    }

    async fn range(&self, prefix: &str) -> Result<Range, StoreError> {
        let options = if prefix.is_empty() {
            ec::GetOptions::new().with_all_keys()
        } else {
            ec::GetOptions::new().with_prefix()
        };
        let what = format!("range {prefix:?}");
        let resp = self
            .unary(&what, None, Retry::Always, |_, c| {
                let options = options.clone();
                async move { EtcdStore::kv(&c).get(prefix, Some(options)).await }
            })
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
        let resp = self
            .unary(&what, lease, Retry::IfUndelivered, |_, c| {
                let request = request.clone();
                async move { EtcdStore::kv(&c).txn(request).await }
            })
            .await?;
        Ok(TxnOutcome {
            succeeded: resp.succeeded(),
            revision: revision_of(resp.header()),
        })
    }

    async fn grant(&self, ttl_secs: i64) -> Result<LeaseId, StoreError> {
        let resp = self
            .unary(
                "granting a lease",
                None,
                Retry::IfUndelivered,
                |_, c| async move { c.lease_client().grant(ttl_secs, None).await },
            )
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
        let refresh = |_, c: ec::Client| async move {
            // Opening the stream refreshes once but hides the TTL; a second refresh
            // reports it.
            let (mut keeper, mut responses) = c.lease_client().keep_alive(lease.0).await?;
            keeper.keep_alive().await?;
            responses.message().await
        };
        match self
            .unary(&what, Some(lease), Retry::Always, refresh)
            .await?
        {
            Some(resp) if resp.ttl() > 0 => Ok(resp.ttl()),
            Some(_) => Err(StoreError::LeaseNotFound { lease }),
            None => Err(StoreError::Unavailable {
                endpoint: self.endpoint.clone(),
                reason: format!("{what}: stream closed without an answer"),
            }),
        }
    }

    async fn revoke(&self, lease: LeaseId) -> Result<(), StoreError> {
        self.unary(
            &format!("revoking lease {lease}"),
            Some(lease),
            Retry::IfUndelivered,
            |_, c| async move { c.lease_client().revoke(lease.0).await },
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
        let what = format!("watching {prefix:?}");
        let (member, stream) = self
            .unary(&what, None, Retry::Always, |i, c| {
                let options = options.clone();
                async move {
                    let mut client = c
                        .watch_client()
                        .max_decoding_message_size(MAX_MESSAGE_BYTES);
                    client
                        .watch(prefix, Some(options))
                        .await
                        .map(|stream| (i, stream))
                }
            })
            .await?;
        let watcher = EtcdWatcher {
            stream,
            from_revision,
            endpoint: self.members.endpoints[member].clone(),
            what,
            done: false,
        };
        let members = Arc::clone(&self.members);
        let moves = members.moves.subscribe();
        Ok(
            futures::stream::unfold((watcher, moves), move |(mut w, mut moves)| {
                let members = Arc::clone(&members);
                async move {
                    if w.done {
                        return None;
                    }
                    let item = tokio::select! {
                        item = w.next_batch() => item,
                        () = left(&members, member, &mut moves) => Err(StoreError::Unavailable {
                            endpoint: w.endpoint.clone(),
                            reason: format!("{}: calls moved to another member", w.what),
                        }),
                    };
                    // A watch the member ended (it died, or lost its leader) is
                    // reopened by the caller: on another member.
                    if matches!(item, Err(StoreError::Unavailable { .. })) {
                        members.failed(member);
                    }
                    w.done = item.is_err();
                    Some((item, (w, moves)))
                }
            })
            .boxed(),
        )
    }

    async fn compact(&self, revision: i64) -> Result<(), StoreError> {
        // Physical: return only once etcd has applied it, so a watch opened right after
        // sees the compaction.
        let options = ec::CompactionOptions::new().with_physical();
        let what = format!("compacting at revision {revision}");
        let result = self
            .unary(&what, None, Retry::Always, |_, c| {
                let options = options.clone();
                async move { EtcdStore::kv(&c).compact(revision, Some(options)).await }
            })
            .await;
        match result {
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
