//! The pure core against the targets of the foundation issue:
//! full 10,000 x 8 plan < 20 ms; one join < 50 us; one host's routes + diff at
//! 10,000 hosts < 5 ms; allocate + free < 200 ns.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use railyard_benches::{host, hosts, network};
use railyard_core::{desired_routes, diff, plan, ActualRoute, BlockAllocator, Planner};

const HOSTS: u32 = 10_000;
const RAILS: u32 = 8;

fn full_plan(c: &mut Criterion) {
    let mut g = c.benchmark_group("plan_full_10000x8");
    g.sample_size(20);
    for v6 in [false, true] {
        let net = network(v6);
        let inv = hosts(HOSTS, RAILS, v6);
        // Freeing the 10,000-host result is not planning: keep it out of the timing.
        g.bench_function(if v6 { "ipv6" } else { "ipv4" }, |b| {
            b.iter_with_large_drop(|| plan(&net, black_box(&inv), None, 0, 600))
        });
    }
    g.finish();
}

fn join(c: &mut Criterion) {
    let net = network(false);
    let inv = hosts(HOSTS, RAILS, false);
    let mut planner = Planner::new(&net, None);
    planner.register_rails(&inv);
    for h in &inv {
        planner.upsert_host(h);
    }
    let newcomer = host(HOSTS, RAILS, false);
    // Join, then leave and expire so every iteration joins a 10,000-host network
    // afresh without cloning it.
    c.bench_function("join_one_host_into_10000", |b| {
        b.iter(|| {
            black_box(planner.upsert_host(black_box(&newcomer)));
            planner.remove_host(&newcomer.name, 0);
            planner.expire(0, 0);
        })
    });
    c.bench_function("join_only_one_host_into_10000", |b| {
        b.iter_batched_ref(
            || planner.clone(),
            |p| black_box(p.upsert_host(black_box(&newcomer))),
            BatchSize::LargeInput,
        )
    });
}

fn routes_and_diff(c: &mut Criterion) {
    let net = network(false);
    let p = plan(&net, &hosts(HOSTS, RAILS, false), None, 0, 600);
    let me = "node-04242";
    let actual: Vec<ActualRoute> = desired_routes(&p, me, 100)
        .into_iter()
        .map(|route| ActualRoute { route, owned: true })
        .collect();
    // The two halves alone, to see which one a change moves.
    c.bench_function("routes_only_one_host_of_10000", |b| {
        b.iter_with_large_drop(|| desired_routes(black_box(&p), me, 100))
    });
    let want = desired_routes(&p, me, 100);
    c.bench_function("diff_only_one_host_of_10000", |b| {
        b.iter_with_large_drop(|| diff(black_box(&want), black_box(&actual)))
    });
    c.bench_function("routes_plus_diff_one_host_of_10000", |b| {
        b.iter_with_large_drop(|| {
            let want = desired_routes(black_box(&p), me, 100);
            let d = diff(&want, black_box(&actual));
            (want, d)
        })
    });
}

fn allocator(c: &mut Criterion) {
    let mut a = BlockAllocator::new("10.1.0.0/24".parse().expect("cidr"), &[]);
    // A half-full block, as on a busy host.
    for _ in 0..120 {
        a.allocate();
    }
    c.bench_function("allocate_plus_free", |b| {
        b.iter(|| {
            let ip = a.allocate().expect("block has room");
            black_box(a.release(black_box(ip)))
        })
    });
}

criterion_group!(benches, full_plan, join, routes_and_diff, allocator);
criterion_main!(benches);
