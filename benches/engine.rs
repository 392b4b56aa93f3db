//! Criterion benchmarks for the decision path without transport: plan → memory store →
//! conclude, on a fixed clock so only the engine and the store are measured.

use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use quotad::clock::Timestamp;
use quotad::engine::{
    self, Algorithm, Children, Descriptor, DomainRules, Limit, Node, Request, Rule, RuleSet,
    TimeUnit, Window,
};
use quotad::store::MemoryStore;

const NOW: Timestamp = Timestamp::from_secs(1_800_000_000);

/// A domain with a per-minute default limit on keys `k0`..`k4`, counted by `algorithm`.
fn rules(algorithm: Algorithm) -> RuleSet {
    let mut root = Children::default();
    for index in 0..5 {
        let key = format!("k{index}");
        let limit = Limit::new(u32::MAX, Window::of(TimeUnit::Minute)).with_algorithm(algorithm);
        root.insert_default(&key, Node::leaf(Rule::limited(&key, [limit])));
    }
    RuleSet::new([DomainRules::new("bench", root)])
}

const KEYS: [&str; 5] = ["k0", "k1", "k2", "k3", "k4"];

fn decide(rules: &RuleSet, store: &MemoryStore, values: &[&str]) -> bool {
    let request = Request::new(
        "bench",
        values
            .iter()
            .zip(KEYS)
            .map(|(value, key)| Descriptor::from_pairs(&[(key, value)])),
    );
    // As the service does: plan and decision filled in place, not returned by value.
    let mut plan = engine::Plan::default();
    engine::plan_into(&mut plan, rules, &request, NOW);
    let readings = store.apply_plan(&plan);
    let mut decision = engine::Decision::default();
    engine::conclude_into(&mut decision, &plan, &readings);
    decision.over_limit
}

fn descriptors_per_request(c: &mut Criterion) {
    let mut group = c.benchmark_group("hot_key/descriptors");
    group.throughput(Throughput::Elements(1));
    for algorithm in [Algorithm::FixedWindow, Algorithm::SlidingWindow] {
        let rules = rules(algorithm);
        let store = MemoryStore::new();
        for count in [1usize, 2, 5] {
            let values = vec!["hot"; count];
            group.bench_with_input(
                BenchmarkId::new(algorithm.name(), count),
                &values,
                |b, values| b.iter(|| black_box(decide(&rules, &store, values))),
            );
        }
    }
    group.finish();
}

/// 1M distinct values per key (2M counters, far beyond the caches), visited with a stride so
/// every decision misses: one descriptor, and two (the server load runs' shape).
fn many_keys(c: &mut Criterion) {
    const DISTINCT: usize = 1_000_000;
    let rules = rules(Algorithm::FixedWindow);
    let store = MemoryStore::new();
    let values: Vec<String> = (0..DISTINCT).map(|index| format!("key-{index}")).collect();
    for value in &values {
        decide(&rules, &store, &[value, value]);
    }
    let mut group = c.benchmark_group("many_keys");
    group.throughput(Throughput::Elements(1));
    let mut next = 0usize;
    group.bench_function("fixed_window/1M", |b| {
        b.iter(|| {
            next = (next + 7_919) % DISTINCT;
            black_box(decide(&rules, &store, &[&values[next]]))
        })
    });
    group.bench_function("fixed_window/1M/2", |b| {
        b.iter(|| {
            next = (next + 7_919) % DISTINCT;
            let value = values[next].as_str();
            black_box(decide(&rules, &store, &[value, value]))
        })
    });
    group.finish();
}

/// Two threads on one key: the time for both to finish `iters` decisions each.
fn contention(c: &mut Criterion) {
    let rules = rules(Algorithm::FixedWindow);
    let store = MemoryStore::new();
    let mut group = c.benchmark_group("hot_key/threads");
    for threads in [1usize, 2] {
        group.throughput(Throughput::Elements(threads as u64));
        group.bench_function(BenchmarkId::from_parameter(threads), |b| {
            b.iter_custom(|iters| {
                let barrier = Barrier::new(threads);
                std::thread::scope(|scope| {
                    let workers: Vec<_> = (0..threads)
                        .map(|_| {
                            scope.spawn(|| {
                                barrier.wait();
                                #[allow(clippy::disallowed_methods)] // benches time real work
                                let start = Instant::now();
                                for _ in 0..iters {
                                    black_box(decide(&rules, &store, &["hot"]));
                                }
                                start.elapsed()
                            })
                        })
                        .collect();
                    workers
                        .into_iter()
                        .map(|worker| worker.join().unwrap_or_default())
                        .max()
                        .unwrap_or_default()
                })
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = descriptors_per_request, many_keys, contention
}
criterion_main!(benches);
