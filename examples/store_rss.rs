//! Memory per counter key in the memory store, measured without transport: inserts N distinct
//! counters through the real store (plan → `MemoryStore::apply_plan`, the server's path) on a
//! few threads, reads this process's RSS from `/proc/self/status` before and after, then lets
//! every window expire, sweeps, and inserts a second generation of N keys to show that the
//! reclaimed memory is reused rather than added to.
//!
//! The keys have the shape `benches/keyflood.sh` and loadgen's `--key-space` send: domain
//! `bench`, descriptor `k0=<decimal index>`, one fixed per-hour window (a 34–35 byte identity).
//!
//! ```text
//! cargo build --release --example store_rss
//! target/release/examples/store_rss 1000000      # KEYS [THREADS]; THREADS defaults to 2
//! ```

use std::fmt::Write as _;

use quotad::clock::Timestamp;
use quotad::engine::{self, Descriptor, Limit, Request, RuleSet, TimeUnit, Window};
use quotad::store::MemoryStore;

/// The clock the first generation is counted at: the start of an hour.
const START: Timestamp = Timestamp::from_secs(3_600 * 500_000);
/// The second generation comes two hours later, when every first-generation window is over.
const LATER: Timestamp = Timestamp::from_secs(3_600 * 500_002);
/// The most keys this tool inserts (each generation), to keep a typo from eating the machine.
const MAX_KEYS: u64 = 50_000_000;

/// This process's resident set, in bytes.
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map_or(0, |kib| kib * 1_024)
}

/// Counts one hit on `k0=<index>` for every index in `range`, spread over `threads` threads.
fn insert(
    store: &MemoryStore,
    rules: &RuleSet,
    range: std::ops::Range<u64>,
    threads: u64,
    now: Timestamp,
) {
    std::thread::scope(|scope| {
        for thread in 0..threads {
            let range = range.clone();
            scope.spawn(move || {
                let mut value = String::with_capacity(24);
                for index in range.skip(thread as usize).step_by(threads as usize) {
                    value.clear();
                    let _ = write!(value, "{index}");
                    let request =
                        Request::new("bench", [Descriptor::from_pairs(&[("k0", &value)])]);
                    store.apply_plan(&engine::plan(rules, &request, now));
                }
            });
        }
    });
}

fn per_key(bytes: u64, keys: u64) -> String {
    format!("{:.1} B/key", bytes as f64 / keys.max(1) as f64)
}

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|arg| arg.replace('_', "").parse().ok())
        .collect();
    let keys = args
        .first()
        .copied()
        .unwrap_or(1_000_000)
        .clamp(1, MAX_KEYS);
    let threads = args.get(1).copied().unwrap_or(2).clamp(1, 64);
    let rules = RuleSet::per_value(
        "bench",
        "k0",
        [Limit::new(4_000_000_000, Window::of(TimeUnit::Hour))],
    );
    let store = MemoryStore::with_max_keys(usize::MAX);
    let before = rss_bytes();
    insert(&store, &rules, 0..keys, threads, START);
    let filled = rss_bytes();
    let held = store.stats().keys as u64;
    println!(
        "{keys} keys, {threads} threads: RSS {} KiB -> {} KiB, +{} KiB for {held} counters = {}",
        before / 1_024,
        filled / 1_024,
        (filled - before) / 1_024,
        per_key(filled.saturating_sub(before), held),
    );
    let swept = store.sweep(LATER);
    let after_sweep = rss_bytes();
    insert(&store, &rules, keys..2 * keys, threads, LATER);
    let refilled = rss_bytes();
    println!(
        "swept {swept} expired counters: RSS {} KiB; a second generation of {keys} keys: {} KiB \
         ({} over the first generation's peak, {} counters held)",
        after_sweep / 1_024,
        refilled / 1_024,
        per_key(refilled.saturating_sub(filled), keys),
        store.stats().keys,
    );
}
