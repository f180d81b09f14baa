//! A pod-like namespace per host, wired ptp style (ipvlan is not in this
//! kernel): one veth pair per rail, the pod end holding an address from the
//! host's block on that rail (both families), the host end answering as the
//! pod's gateway and routing the pod's /32 (/128) to it.

use std::net::IpAddr;
use std::time::Duration;

use railyard_core::Plan;
use railyard_test_support::{run_in_netns, NamedNetns};

use crate::common::{ip, netns};
use crate::ping::ping;
use crate::topology::{nth, Cluster, Host};

/// The host end's address, the pod's next hop on that link. Link-local in v6;
/// in v4 one per rail, since a pod cannot route one address over two links.
fn gateway(rail: u32, v6: bool) -> String {
    if v6 {
        "fe80::1".to_owned()
    } else {
        format!("169.254.{}.1", rail + 1)
    }
}

pub struct Pod {
    pub ns: NamedNetns,
    /// `[rail][family]`: the pod's address on each rail, v4 then v6.
    pub addrs: [[IpAddr; 2]; 2],
}

/// Lets host `h` forward between its rails and its pods.
pub fn enable_forwarding(h: &Host) {
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", h.ns.name(), "sysctl", "-qw"])
        .args([
            "net.ipv4.ip_forward=1",
            "net.ipv6.conf.all.forwarding=1",
            "net.ipv4.conf.all.rp_filter=0",
            "net.ipv4.conf.default.rp_filter=0",
        ])
        .output()
        .expect("run sysctl");
    assert!(
        out.status.success(),
        "sysctl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn add_pod(h: &Host, plan: &Plan) -> Pod {
    enable_forwarding(h);
    let pod = netns();
    ip(&pod, "link set lo up");
    let mut addrs = [[IpAddr::from([0, 0, 0, 0]); 2]; 2];
    for rail in 0..2u32 {
        let host_end = format!("vethpod{rail}");
        let pod_end = format!("net1-{rail}");
        ip(
            &h.ns,
            &format!(
                "link add {host_end} type veth peer name {pod_end} netns {}",
                pod.name()
            ),
        );
        let (gw4, gw6) = (gateway(rail, false), gateway(rail, true));
        ip(&h.ns, &format!("addr add {gw4}/32 dev {host_end}"));
        ip(&h.ns, &format!("addr add {gw6}/64 dev {host_end} nodad"));
        ip(&h.ns, &format!("link set {host_end} up"));
        ip(&pod, &format!("link set {pod_end} up"));
        let rail_cidrs = &plan.interfaces[rail as usize].cidrs;
        for (f, v6) in [false, true].into_iter().enumerate() {
            let addr = nth(Cluster::block(plan, &h.name, rail, v6), 5);
            addrs[rail as usize][f] = addr;
            let rail_cidr = rail_cidrs
                .iter()
                .find(|c| c.addr().is_ipv6() == v6)
                .expect("rail cidr of the family");
            if v6 {
                ip(&pod, &format!("-6 addr add {addr}/128 dev {pod_end} nodad"));
                ip(
                    &pod,
                    &format!("-6 route add {rail_cidr} via {gw6} dev {pod_end} src {addr}"),
                );
                ip(&h.ns, &format!("-6 route add {addr}/128 dev {host_end}"));
            } else {
                ip(&pod, &format!("addr add {addr}/32 dev {pod_end}"));
                ip(&pod, &format!("route add {gw4} dev {pod_end} scope link"));
                ip(
                    &pod,
                    &format!("route add {rail_cidr} via {gw4} dev {pod_end} src {addr}"),
                );
                ip(&h.ns, &format!("route add {addr}/32 dev {host_end}"));
            }
        }
    }
    Pod { ns: pod, addrs }
}

/// Pings `dst` from `src` inside `from`'s namespace.
pub fn ping_from(
    from: &Pod,
    src: IpAddr,
    dst: IpAddr,
    timeout: Duration,
) -> Result<Duration, String> {
    run_in_netns(&from.ns.path(), false, move || async move {
        ping(src, dst, timeout)
    })
    .map_err(|e| e.to_string())?
}
