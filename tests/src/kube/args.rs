//! The command lines of the control plane's three processes, and why each flag.

use std::path::Path;

use super::pki::Pki;

/// Ports chosen free at `up`, kept in the state file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Ports {
    pub etcd_client: u16,
    pub etcd_peer: u16,
    pub apiserver: u16,
}

/// The API server's own etcd: not the planner's. A cluster's objects and
/// railyard's plan live in different etcds in production too.
pub fn etcd(bin: &Path, dir: &Path, ports: Ports) -> Vec<String> {
    let client = format!("http://127.0.0.1:{}", ports.etcd_client);
    let peer = format!("http://127.0.0.1:{}", ports.etcd_peer);
    vec![
        bin.display().to_string(),
        "--name=railyard-kube".into(),
        format!("--data-dir={}", dir.join("etcd").display()),
        format!("--listen-client-urls={client}"),
        format!("--advertise-client-urls={client}"),
        format!("--listen-peer-urls={peer}"),
        format!("--initial-advertise-peer-urls={peer}"),
        format!("--initial-cluster=railyard-kube={peer}"),
        "--initial-cluster-state=new".into(),
        // Elected in well under a second: the plane's start time is its tests'.
        "--heartbeat-interval=50".into(),
        "--election-timeout=500".into(),
        "--log-level=warn".into(),
    ]
}

pub fn apiserver(bin: &Path, pki: &Pki, ports: Ports) -> Vec<String> {
    let p = |path: &Path| path.display().to_string();
    vec![
        bin.display().to_string(),
        format!("--etcd-servers=http://127.0.0.1:{}", ports.etcd_client),
        "--bind-address=127.0.0.1".into(),
        "--advertise-address=127.0.0.1".into(),
        format!("--secure-port={}", ports.apiserver),
        "--service-cluster-ip-range=10.96.0.0/24".into(),
        // As a real cluster authorizes: nothing is allowed that RBAC does not
        // grant, so the controller's ClusterRole is tested as written.
        "--authorization-mode=Node,RBAC".into(),
        format!("--client-ca-file={}", p(&pki.ca)),
        format!("--tls-cert-file={}", p(&pki.apiserver_cert)),
        format!("--tls-private-key-file={}", p(&pki.apiserver_key)),
        // Service-account tokens (TokenRequest, `kubectl create token`) are signed
        // with this key and verified with its public half.
        "--service-account-issuer=https://kubernetes.default.svc".into(),
        format!("--service-account-key-file={}", p(&pki.sa_pub)),
        format!("--service-account-signing-key-file={}", p(&pki.sa_key)),
        // Off by default, on in hardened clusters (OpenShift enables it): a NAD's
        // `blockOwnerDeletion` then needs `update` on the network's finalizers,
        // which is why rbac.yaml grants it. On here so that grant is exercised.
        "--enable-admission-plugins=OwnerReferencesPermissionEnforcement".into(),
        // The `kubernetes` Service's endpoints would be 127.0.0.1, which the
        // Endpoints validation refuses; nothing here runs in a pod.
        "--endpoint-reconciler-type=none".into(),
        "--profiling=false".into(),
    ]
}

/// Only the controllers railyard's objects need: the garbage collector (a
/// deleted MultiNicNetwork's NADs go through their owner references), the
/// service-account controllers (the `default` accounts, legacy token Secrets) and
/// the namespace controller (a deleted namespace's objects are removed).
pub fn controller_manager(bin: &Path, pki: &Pki, kubeconfig: &Path) -> Vec<String> {
    vec![
        bin.display().to_string(),
        format!("--kubeconfig={}", kubeconfig.display()),
        // No serving port: nothing scrapes it, and serving would need the
        // API server's request-header (front proxy) CA.
        "--secure-port=0".into(),
        "--controllers=garbagecollector,serviceaccount-token,serviceaccount,namespace".into(),
        format!(
            "--service-account-private-key-file={}",
            pki.sa_key.display()
        ),
        format!("--root-ca-file={}", pki.ca.display()),
        "--leader-elect=false".into(),
        // Each controller acts as its own service account with the bootstrap
        // RBAC roles, as kubeadm runs it (the manager's own user may not delete).
        "--use-service-account-credentials=true".into(),
    ]
}
