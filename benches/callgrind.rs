//! Deterministic cost probes for `valgrind --tool=callgrind`: each scenario runs a decision (or
//! the whole service call) exactly `ITERATIONS` times, so instructions per call are
//! `(Ir(N) − Ir(0)) / N` whatever else the machine is doing. Wall-clock benches live in
//! `benches/engine.rs`; this binary exists because a shared 2-core machine makes their times
//! noisy, and instruction counts are what a hot-path change should be judged by.
//!
//! ```text
//! cargo bench --bench callgrind --no-run          # builds target/release/deps/callgrind-*
//! benches/callgrind.sh                            # every scenario, N and 0 iterations
//! ```

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use envoy_types::pb::envoy::extensions::common::ratelimit::v3::{
    RateLimitDescriptor, rate_limit_descriptor,
};
use envoy_types::pb::envoy::service::ratelimit::v3::RateLimitRequest;
use portable_atomic::AtomicU128;
use prost::Message;
use quotad::clock::{ManualClock, Timestamp};
use quotad::engine::{
    self, Algorithm, Children, Descriptor, DomainRules, Limit, Node, Request, Rule, RuleSet,
    TimeUnit, Window,
};
use quotad::metrics::{Metrics, NearLimitRatio};
use quotad::service::{RateLimiter, shared_rules};
use quotad::store::MemoryStore;

const NOW: Timestamp = Timestamp::from_secs(1_800_000_000);
const KEYS: [&str; 5] = ["k0", "k1", "k2", "k3", "k4"];
/// Distinct values for the many-keys scenario (created before the measured loop).
const DISTINCT: usize = 1_000_000;

/// Domain `bench`: a default limit on each of `k0`..`k4`, counted by `algorithm`, that never
/// rejects (the same shape as `benches/bench-rules.yaml`).
fn limited(algorithm: Algorithm) -> RuleSet {
    let mut root = Children::default();
    for key in KEYS {
        let limit = Limit::new(u32::MAX, Window::of(TimeUnit::Hour)).with_algorithm(algorithm);
        root.insert_default(key, Node::leaf(Rule::limited(key, [limit])));
    }
    RuleSet::new([DomainRules::new("bench", root)])
}

/// Domain `bench` with no rules: requests are validated and matched, no counter is touched.
fn empty() -> RuleSet {
    RuleSet::new([DomainRules::new("bench", Children::default())])
}

fn decide(rules: &RuleSet, store: &MemoryStore, key: &str, descriptors: usize) -> bool {
    let request = Request::new(
        "bench",
        KEYS[..descriptors]
            .iter()
            .map(|name| Descriptor::from_pairs(&[(name, key)])),
    );
    // As the service does: plan and decision filled in place, not returned by value.
    let mut plan = engine::Plan::default();
    engine::plan_into(&mut plan, rules, &request, NOW);
    let readings = store.apply_plan(&plan);
    let mut decision = engine::Decision::default();
    engine::conclude_into(&mut decision, &plan, &readings);
    decision.over_limit
}

/// The wire request loadgen sends: `k0=<value>` … for `descriptors` descriptors.
fn wire(descriptors: usize, value: &str) -> RateLimitRequest {
    RateLimitRequest {
        domain: "bench".into(),
        descriptors: KEYS[..descriptors]
            .iter()
            .map(|key| RateLimitDescriptor {
                entries: vec![rate_limit_descriptor::Entry {
                    key: (*key).into(),
                    value: value.into(),
                }],
                ..RateLimitDescriptor::default()
            })
            .collect(),
        hits_addend: 0,
    }
}

/// The service call as the gRPC handler makes it, on a ready store and a fixed clock.
/// `encoded` adds what tonic's codec does around it: decode the request, encode the answer.
fn service(rules: RuleSet, with_metrics: bool, encoded: bool, descriptors: usize, iters: u64) {
    let mut limiter = RateLimiter::new(
        shared_rules(rules),
        Arc::new(MemoryStore::new()),
        ManualClock::new(NOW),
    );
    if with_metrics {
        let metrics = Metrics::new(NearLimitRatio::DEFAULT, "memory").expect("metrics build");
        limiter = limiter.with_metrics(metrics);
    }
    let request = wire(descriptors, "hot");
    let bytes = request.encode_to_vec();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime builds");
    runtime.block_on(async {
        let mut out = Vec::with_capacity(256);
        for _ in 0..iters {
            if encoded {
                let decoded =
                    RateLimitRequest::decode(black_box(bytes.as_slice())).expect("valid bytes");
                let response = limiter.decide(&decoded).await.expect("answers");
                out.clear();
                response.encode(&mut out).expect("vec grows");
                black_box(&out);
            } else {
                black_box(limiter.decide(black_box(&request)).await.expect("answers"));
            }
        }
    });
}

/// A counter identity shaped like the engine's: length-prefixed domain, key and value, then the
/// window length and algorithm tag.
fn identity(value: &str) -> Box<[u8]> {
    let mut key = Vec::with_capacity(64);
    for text in ["bench", "k0", value] {
        key.extend_from_slice(&(text.len() as u32).to_le_bytes());
        key.extend_from_slice(text.as_bytes());
    }
    key.extend_from_slice(&3_600_000_000_000u64.to_le_bytes());
    key.push(0);
    key.into_boxed_slice()
}

/// papaya alone with the store's key shape, to tell the map's cost from the engine's: `build`
/// makes the map (hasher, resize mode), then 1M keys are inserted and `iters` looked up.
fn papaya_lookups<S: std::hash::BuildHasher>(map: papaya::HashMap<Box<[u8]>, u64, S>, iters: u64) {
    let keys: Vec<Box<[u8]>> = (0..DISTINCT)
        .map(|index| identity(&format!("key-{index}")))
        .collect();
    let pinned = map.pin();
    for key in &keys {
        pinned.insert(key.clone(), 0);
    }
    let mut next = 0usize;
    for _ in 0..iters {
        next = (next + 7_919) % DISTINCT;
        black_box(pinned.get(&keys[next]));
    }
}

/// How `papaya_store_pattern` fills its map. papaya 0.2's `compute` family
/// (`get_or_insert_with`, `try_insert_with`, `compute`) never helps an incremental resize copy,
/// so a map grown only through it keeps every table it ever allocated chained behind the first,
/// and a read walks that chain; `try_insert` helps copy and leaves one table (or two).
#[derive(Clone, Copy)]
enum Fill {
    /// `get_or_insert_with` under a pin per insert (what the store did before).
    GetOrInsertWith,
    /// `try_insert` under a pin per insert (what the store does now).
    TryInsert,
}

/// A counter the store pattern loads and bumps with one CAS: 64- or 128-bit.
trait Bumped: Send + Sync {
    fn fresh() -> Self;
    fn bump(&self);
}

impl Bumped for portable_atomic::AtomicU128 {
    fn fresh() -> Self {
        Self::new(0)
    }
    fn bump(&self) {
        use portable_atomic::Ordering::{AcqRel, Acquire};
        let seen = self.load(Acquire);
        black_box(self.compare_exchange_weak(seen, seen + 1, AcqRel, Acquire)).ok();
    }
}

impl Bumped for std::sync::atomic::AtomicU64 {
    fn fresh() -> Self {
        Self::new(0)
    }
    fn bump(&self) {
        use std::sync::atomic::Ordering::{AcqRel, Acquire};
        let seen = self.load(Acquire);
        black_box(self.compare_exchange_weak(seen, seen + 1, AcqRel, Acquire)).ok();
    }
}

/// The store's access pattern on bare papaya: a fresh pin per lookup and a CAS on the cell,
/// as `MemoryStore::apply_plan` does, to find which part makes many-key lookups expensive.
fn papaya_store_pattern<V: Bumped>(iters: u64, pin_each: bool, fill: Fill) {
    let map = papaya::HashMap::with_hasher(foldhash::fast::RandomState::default());
    let keys: Vec<Box<[u8]>> = (0..DISTINCT)
        .map(|index| identity(&format!("key-{index}")))
        .collect();
    for key in &keys {
        match fill {
            Fill::GetOrInsertWith => {
                map.pin().get_or_insert_with(key.clone(), V::fresh);
            }
            Fill::TryInsert => {
                let _ = map.pin().try_insert(key.clone(), V::fresh());
            }
        }
    }
    let mut next = 0usize;
    let held = map.pin();
    for _ in 0..iters {
        next = (next + 7_919) % DISTINCT;
        let fresh = pin_each.then(|| map.pin());
        let pinned = fresh.as_ref().unwrap_or(&held);
        if let Some(cell) = pinned.get(&keys[next]) {
            cell.bump();
        }
    }
}

fn main() {
    // `cargo bench` appends `--bench`; skip flags so the same binary runs by hand too.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with("--"))
        .collect();
    let scenario = args.first().map_or("list", String::as_str);
    let iters: u64 = args
        .get(1)
        .map(|n| n.parse().expect("iterations must be a number"))
        .unwrap_or(100_000);
    let hot = |algorithm, descriptors| {
        let rules = limited(algorithm);
        let store = MemoryStore::new();
        for _ in 0..iters {
            black_box(decide(&rules, &store, black_box("hot"), descriptors));
        }
    };
    match scenario {
        "engine/fixed/1/hot" => hot(Algorithm::FixedWindow, 1),
        "engine/fixed/2/hot" => hot(Algorithm::FixedWindow, 2),
        "engine/fixed/5/hot" => hot(Algorithm::FixedWindow, 5),
        "engine/sliding/1/hot" => hot(Algorithm::SlidingWindow, 1),
        "engine/bucket/1/hot" => hot(Algorithm::TokenBucket, 1),
        "engine/empty/2/hot" => {
            let rules = empty();
            let store = MemoryStore::new();
            for _ in 0..iters {
                black_box(decide(&rules, &store, black_box("hot"), 2));
            }
        }
        "engine/fixed/1/1M" => {
            let rules = limited(Algorithm::FixedWindow);
            let store = MemoryStore::new();
            let values: Vec<String> = (0..DISTINCT).map(|index| format!("key-{index}")).collect();
            for value in &values {
                decide(&rules, &store, value, 1);
            }
            let mut next = 0usize;
            for _ in 0..iters {
                next = (next + 7_919) % DISTINCT;
                black_box(decide(&rules, &store, &values[next], 1));
            }
        }
        "papaya/1M/foldhash" => papaya_lookups(
            papaya::HashMap::with_hasher(foldhash::fast::RandomState::default()),
            iters,
        ),
        "papaya/1M/foldhash/blocking" => papaya_lookups(
            papaya::HashMap::builder()
                .hasher(foldhash::fast::RandomState::default())
                .resize_mode(papaya::ResizeMode::Blocking)
                .build(),
            iters,
        ),
        "papaya/1M/store-pattern" => {
            papaya_store_pattern::<AtomicU128>(iters, true, Fill::GetOrInsertWith)
        }
        "papaya/1M/store-pattern/one-pin" => {
            papaya_store_pattern::<AtomicU128>(iters, false, Fill::GetOrInsertWith)
        }
        "papaya/1M/store-pattern/u64" => {
            papaya_store_pattern::<AtomicU64>(iters, true, Fill::GetOrInsertWith)
        }
        "papaya/1M/store-pattern/insert" => {
            papaya_store_pattern::<AtomicU128>(iters, true, Fill::TryInsert)
        }
        "papaya/1M/sip" => papaya_lookups(
            papaya::HashMap::with_hasher(std::hash::RandomState::new()),
            iters,
        ),
        "service/empty/2" => service(empty(), false, false, 2, iters),
        "service/limited/2" => service(limited(Algorithm::FixedWindow), false, false, 2, iters),
        "service/limited/2/metrics" => {
            service(limited(Algorithm::FixedWindow), true, false, 2, iters)
        }
        "service/limited/2/metrics/codec" => {
            service(limited(Algorithm::FixedWindow), true, true, 2, iters)
        }
        "service/empty/2/metrics/codec" => service(empty(), true, true, 2, iters),
        _ => {
            eprintln!(
                "usage: callgrind SCENARIO [ITERATIONS]; scenarios: engine/fixed/{{1,2,5}}/hot \
                 engine/sliding/1/hot engine/bucket/1/hot engine/empty/2/hot engine/fixed/1/1M \
                 service/empty/2 service/limited/2 service/limited/2/metrics \
                 service/limited/2/metrics/codec service/empty/2/metrics/codec \
                 papaya/1M/{{foldhash,foldhash/blocking,sip}} \
                 papaya/1M/store-pattern{{,/one-pin,/u64,/insert}}"
            );
        }
    }
}
