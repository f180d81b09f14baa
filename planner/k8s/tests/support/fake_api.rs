//! A fake Kubernetes API server for the controller tests (included with
//! `#[path = "support/fake_api.rs"] mod fake_api;`, not through `support/mod.rs`,
//! so the etcd-only tests do not compile it).
//!
//! No kube-apiserver can be installed on these machines, so kube's `Client` runs
//! over a `tower_test::mock` service and this fake answers it: LIST (with
//! `key=value` label selectors) and WATCH of the registered collections (watch
//! bodies stay open and the test pushes events into them), and every other request
//! is recorded so the test can assert it exactly: method, path, query, content type
//! and body. A server-side apply or a DELETE of a cluster-scoped object of a
//! registered collection also updates its listing, as a real server would.
//!
//! What a real apiserver would refuse is staged by the test, in the apiserver's
//! own answers, so the tests can move to a real one: [`Server::refuse`] answers a
//! write with a `Status` (a quota's 403, a second controller's 422),
//! [`Server::serve_object`] answers a GET of one object, and
//! [`Server::uninstall`] makes a collection answer 404, as a resource whose CRD
//! is not installed does.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::channel::mpsc;
use http::{Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use kube::client::Body;
use kube::Client;
use railyard_k8s::controller::run_controller;
use railyard_k8s::ControllerConfig;
use railyard_store::{Compare, Store};
use serde_json::{json, Value};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio::time::timeout;

/// Controller timings for tests: leadership polled and orphans cleaned up every
/// tenth of a second, changes coalesced over 50 ms.
pub fn controller_config() -> ControllerConfig {
    ControllerConfig {
        identity: "me".into(),
        leader_poll: Duration::from_millis(50),
        requeue: Duration::from_secs(300),
        cleanup_every: Duration::from_millis(100),
        coalesce: Duration::from_millis(50),
    }
}

pub fn start_controller(
    client: Client,
    store: Arc<dyn Store>,
    guard: Option<Compare>,
) -> tokio::task::JoinHandle<()> {
    start_controller_with(client, store, guard, controller_config())
}

pub fn start_controller_with(
    client: Client,
    store: Arc<dyn Store>,
    guard: Option<Compare>,
    cfg: ControllerConfig,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move { run_controller(client, store, guard, &cfg).await })
}

type MockBody = StreamBody<mpsc::UnboundedReceiver<Result<Frame<Bytes>, Infallible>>>;
/// The sending end of one open watch body.
type WatchTx = mpsc::UnboundedSender<Result<Frame<Bytes>, Infallible>>;

pub const NETWORKS: &str = "/apis/railyard.dev/v1/multinicnetworks";
pub const NADS: &str = "/apis/k8s.cni.cncf.io/v1/network-attachment-definitions";
pub const NAMESPACES: &str = "/api/v1/namespaces";
pub const HOST_INTERFACES: &str = "/apis/railyard.dev/v1/hostinterfaces";
pub const CIDRS: &str = "/apis/railyard.dev/v1/cidrs";
pub const IP_ALLOCATIONS: &str = "/apis/railyard.dev/v1/ipallocations";
pub const DEVICE_CLASSES: &str = "/apis/railyard.dev/v1/deviceclasses";
pub const WAIT: Duration = Duration::from_secs(10);

/// A request the controller made (anything but a LIST or WATCH).
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub content_type: String,
    pub body: Value,
}

/// The fake API server's state: objects to list, open watch bodies per collection.
#[derive(Default)]
struct Fake {
    lists: BTreeMap<&'static str, Vec<Value>>,
    watches: BTreeMap<String, Vec<WatchTx>>,
    queries: Vec<(String, BTreeMap<String, String>)>,
    /// (method, path) → (code, reason, message): answered with a failure Status.
    refusals: BTreeMap<(String, String), (u16, String, String)>,
    /// path → object, for GETs of one object.
    objects: BTreeMap<String, Value>,
    /// Collections that answer 404 (their CRD is not installed).
    uninstalled: BTreeMap<&'static str, Vec<Value>>,
}

#[derive(Clone)]
pub struct Server {
    fake: Arc<Mutex<Fake>>,
}

impl Server {
    /// Starts the fake with MultiNicNetworks and namespaces (and empty NAD, view
    /// and DeviceClass collections); returns a client for the controller and the
    /// requests it sees.
    pub fn start(
        networks: Vec<Value>,
        namespaces: &[&str],
    ) -> (Server, Client, UnboundedReceiver<Seen>) {
        let namespaces = namespaces
            .iter()
            .map(|n| json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}}))
            .collect();
        Server::start_with(vec![(NETWORKS, networks), (NAMESPACES, namespaces)])
    }

    /// Starts the fake with the given collections; every collection the controller
    /// reads that is not given is served empty.
    pub fn start_with(
        collections: Vec<(&'static str, Vec<Value>)>,
    ) -> (Server, Client, UnboundedReceiver<Seen>) {
        let mut fake = Fake::default();
        for c in [
            NETWORKS,
            NADS,
            NAMESPACES,
            HOST_INTERFACES,
            CIDRS,
            IP_ALLOCATIONS,
            DEVICE_CLASSES,
        ] {
            fake.lists.insert(c, Vec::new());
        }
        fake.lists.extend(collections);
        let server = Server {
            fake: Arc::new(Mutex::new(fake)),
        };
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<MockBody>>();
        let (seen_tx, seen_rx) = tokio::sync::mpsc::unbounded_channel();
        let s = server.clone();
        tokio::spawn(async move {
            while let Some((request, respond)) = handle.next_request().await {
                let response = s.answer(request, &seen_tx).await;
                respond.send_response(response);
            }
        });
        (server, Client::new(service, "default"), seen_rx)
    }

    fn collection_of(&self, path: &str) -> Option<&'static str> {
        self.fake
            .lock()
            .unwrap()
            .lists
            .keys()
            .copied()
            .find(|c| *c == path)
    }

    async fn answer(
        &self,
        request: Request<Body>,
        seen: &UnboundedSender<Seen>,
    ) -> Response<MockBody> {
        let method = request.method().to_string();
        let path = request.uri().path().to_string();
        let query = parse_query(request.uri().query().unwrap_or(""));
        let content_type = request
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let bytes = request
            .into_body()
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if method == "GET" {
            if let Some(c) = self.collection_of(&path) {
                self.fake
                    .lock()
                    .unwrap()
                    .queries
                    .push((path.clone(), query.clone()));
                return if query.get("watch").map(String::as_str) == Some("true") {
                    self.open_watch(c)
                } else {
                    self.list(c, query.get("labelSelector").map(String::as_str))
                };
            }
        }
        seen.send(Seen {
            method: method.clone(),
            path: path.clone(),
            query,
            content_type,
            body: body.clone(),
        })
        .ok();
        let staged = {
            let fake = self.fake.lock().unwrap();
            let refusal = fake.refusals.get(&(method.clone(), path.clone())).cloned();
            (refusal, fake.objects.get(&path).cloned())
        };
        if let Some((code, reason, message)) = staged.0 {
            return respond(
                StatusCode::from_u16(code).unwrap(),
                &json!({"apiVersion": "v1", "kind": "Status", "status": "Failure", "reason": reason, "code": code, "message": message}),
            );
        }
        if let (Some(object), "GET") = (staged.1, method.as_str()) {
            return respond(StatusCode::OK, &object);
        }
        match method.as_str() {
            "PATCH" if path.ends_with("/status") => {
                let name = path
                    .trim_end_matches("/status")
                    .rsplit('/')
                    .next()
                    .unwrap_or("")
                    .to_string();
                let fake = self.fake.lock().unwrap();
                let mut obj = fake.lists[NETWORKS]
                    .iter()
                    .find(|n| n["metadata"]["name"] == name.as_str())
                    .cloned()
                    .unwrap_or(Value::Null);
                obj["status"] = body["status"].clone();
                respond(StatusCode::OK, &obj)
            }
            "PATCH" => {
                self.store_object(&path, Some(&body));
                respond(StatusCode::OK, &body)
            }
            "DELETE" => {
                self.store_object(&path, None);
                respond(
                    StatusCode::OK,
                    &json!({"apiVersion": "v1", "kind": "Status", "status": "Success"}),
                )
            }
            _ => respond(
                StatusCode::NOT_FOUND,
                &json!({"apiVersion": "v1", "kind": "Status", "status": "Failure", "reason": "NotFound", "code": 404, "message": format!("{method} {path}")}),
            ),
        }
    }

    /// Keeps the listing of a cluster-scoped collection in step with a write to
    /// `<collection>/<name>` (`None`: deleted).
    fn store_object(&self, path: &str, object: Option<&Value>) {
        let Some((collection, name)) = path.rsplit_once('/') else {
            return;
        };
        let Some(c) = self.collection_of(collection) else {
            return;
        };
        let mut fake = self.fake.lock().unwrap();
        let list = fake.lists.entry(c).or_default();
        list.retain(|o| o["metadata"]["name"] != name);
        if let Some(o) = object {
            list.push(o.clone());
        }
    }

    fn list(&self, collection: &str, selector: Option<&str>) -> Response<MockBody> {
        let items: Vec<Value> = self.fake.lock().unwrap().lists[collection]
            .iter()
            .filter(|o| selector.is_none_or(|s| matches_selector(o, s)))
            .cloned()
            .collect();
        respond(
            StatusCode::OK,
            &json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "1"}, "items": items}),
        )
    }

    fn open_watch(&self, collection: &str) -> Response<MockBody> {
        let (tx, rx) = mpsc::unbounded();
        self.fake
            .lock()
            .unwrap()
            .watches
            .entry(collection.to_string())
            .or_default()
            .push(tx);
        Response::builder()
            .status(StatusCode::OK)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(StreamBody::new(rx))
            .unwrap()
    }

    /// Sends a watch event to every open watch of `collection` and keeps the
    /// listing in step (a watcher that re-lists must see the same world).
    pub fn push(&self, collection: &'static str, kind: &str, object: &Value) {
        let mut object = object.clone();
        if object["metadata"]["resourceVersion"].is_null() {
            object["metadata"]["resourceVersion"] = json!("100");
        }
        let line = format!("{}\n", json!({"type": kind, "object": object}));
        let mut fake = self.fake.lock().unwrap();
        let list = fake.lists.entry(collection).or_default();
        let key = |o: &Value| {
            (
                o["metadata"]["namespace"].clone(),
                o["metadata"]["name"].clone(),
            )
        };
        list.retain(|o| key(o) != key(&object));
        if kind != "DELETED" {
            list.push(object.clone());
        }
        for tx in fake.watches.get(collection).into_iter().flatten() {
            tx.unbounded_send(Ok(Frame::data(Bytes::from(line.clone()))))
                .ok();
        }
    }

    /// Answers `method path` with a failure Status until [`Server::allow`].
    pub fn refuse(&self, method: &str, path: &str, code: u16, reason: &str, message: &str) {
        self.fake.lock().unwrap().refusals.insert(
            (method.to_string(), path.to_string()),
            (code, reason.to_string(), message.to_string()),
        );
    }

    pub fn allow(&self, method: &str, path: &str) {
        self.fake
            .lock()
            .unwrap()
            .refusals
            .remove(&(method.to_string(), path.to_string()));
    }

    /// Answers a GET of `path` with `object`.
    pub fn serve_object(&self, path: &str, object: Value) {
        self.fake
            .lock()
            .unwrap()
            .objects
            .insert(path.to_string(), object);
    }

    /// `collection` answers LIST and WATCH with 404, as a resource whose CRD is
    /// not installed; its open watches end.
    pub fn uninstall(&self, collection: &'static str) {
        let mut fake = self.fake.lock().unwrap();
        if let Some(items) = fake.lists.remove(collection) {
            fake.uninstalled.insert(collection, items);
        }
        fake.watches.remove(collection);
    }

    /// The CRD of `collection` is installed (again).
    pub fn install(&self, collection: &'static str) {
        let mut fake = self.fake.lock().unwrap();
        let items = fake.uninstalled.remove(collection).unwrap_or_default();
        fake.lists.insert(collection, items);
    }

    /// What a LIST of `collection` returns now (without selector).
    pub fn listed(&self, collection: &str) -> Vec<Value> {
        self.fake.lock().unwrap().lists[collection].clone()
    }

    pub fn watching(&self, collection: &str) -> bool {
        self.fake
            .lock()
            .unwrap()
            .watches
            .get(collection)
            .is_some_and(|w| !w.is_empty())
    }

    /// Events pushed before the controller's watch request arrives would be lost.
    pub async fn wait_watching(&self, collection: &str) {
        timeout(WAIT, async {
            while !self.watching(collection) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no watch of {collection} within {WAIT:?}"));
    }

    pub fn queries_of(&self, collection: &str) -> Vec<BTreeMap<String, String>> {
        let fake = self.fake.lock().unwrap();
        fake.queries
            .iter()
            .filter(|(p, _)| p == collection)
            .map(|(_, q)| q.clone())
            .collect()
    }
}

/// `a=b,c=d` selectors only: all the controller uses.
fn matches_selector(object: &Value, selector: &str) -> bool {
    selector.split(',').filter(|s| !s.is_empty()).all(|term| {
        let (k, v) = term.split_once('=').unwrap_or((term, ""));
        object["metadata"]["labels"][k] == v
    })
}

pub fn respond(status: StatusCode, body: &Value) -> Response<MockBody> {
    let (tx, rx) = mpsc::unbounded();
    tx.unbounded_send(Ok(Frame::data(Bytes::from(body.to_string()))))
        .ok();
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(StreamBody::new(rx))
        .unwrap()
}

pub fn parse_query(q: &str) -> BTreeMap<String, String> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                k.to_string(),
                v.replace("%3D", "=")
                    .replace("%2F", "/")
                    .replace("%2C", ","),
            )
        })
        .collect()
}

/// The next request matching `pred`, skipping others.
pub async fn next_matching(
    rx: &mut UnboundedReceiver<Seen>,
    what: &str,
    pred: impl Fn(&Seen) -> bool,
) -> Seen {
    timeout(WAIT, async {
        loop {
            let s = rx.recv().await.expect("the fake server runs");
            if pred(&s) {
                return s;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {what} within {WAIT:?}"))
}

/// Drains requests until none arrives for `quiet`; returns them.
pub async fn settle(rx: &mut UnboundedReceiver<Seen>, quiet: Duration) -> Vec<Seen> {
    let mut out = Vec::new();
    while let Ok(Some(s)) = timeout(quiet, rx.recv()).await {
        out.push(s);
    }
    out
}

pub fn assert_server_side_apply(s: &Seen) {
    assert_eq!(s.content_type, "application/apply-patch+yaml", "{s:?}");
    assert_eq!(
        s.query.get("fieldManager").map(String::as_str),
        Some("railyard"),
        "{s:?}"
    );
    assert_eq!(
        s.query.get("force").map(String::as_str),
        Some("true"),
        "{s:?}"
    );
}
