//! One full 10,000 x 8 plan and one host's routes + diff, for profiling under
//! `valgrind --tool=callgrind` (instruction counts do not depend on machine load).

use railyard_benches::{hosts, network};
use railyard_core::{desired_routes, diff, plan, ActualRoute};

fn main() {
    let net = network(false);
    let inv = hosts(10_000, 8, false);
    let p = plan(&net, &inv, None, 0, 600);
    let actual: Vec<ActualRoute> = desired_routes(&p, "node-04242", 100)
        .into_iter()
        .map(|route| ActualRoute { route, owned: true })
        .collect();
    let want = desired_routes(&p, "node-04242", 100);
    let d = diff(&want, &actual);
    println!(
        "{} hosts, {} routes, diff empty: {}",
        p.hosts.len(),
        want.len(),
        d.is_empty()
    );
}
