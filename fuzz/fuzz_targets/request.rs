//! Any bytes as a `ShouldRateLimit` request body: whatever protobuf decodes is answered or
//! refused with a status, never a panic — against rules that use every algorithm.
#![no_main]

use std::sync::{Arc, OnceLock};

use envoy_types::pb::envoy::service::ratelimit::v3::RateLimitRequest;
use libfuzzer_sys::fuzz_target;
use prost::Message;
use quotad::clock::{ManualClock, Timestamp};
use quotad::service::{RateLimiter, shared_rules};
use quotad::store::MemoryStore;

const RULES: &str = "domain: api\nresponse_headers: {style: ietf}\nover_limit_body: {template: '{descriptor.k} {limit} {retry_after}'}\ndescriptors:\n  - key: k\n    rate_limit: {unit: minute, requests_per_unit: 5}\n  - key: b\n    rate_limit: {unit: second, requests_per_unit: 3, algorithm: token_bucket, burst: 2}\n  - key: s\n    rate_limit: {unit: hour, requests_per_unit: 10, algorithm: sliding_window}\n  - key: m\n    rate_limit: {unit: month, requests_per_unit: 7, calendar: true}\n";

struct Target {
    runtime: tokio::runtime::Runtime,
    service: RateLimiter<MemoryStore, ManualClock>,
}

fn target() -> &'static Target {
    static TARGET: OnceLock<Target> = OnceLock::new();
    TARGET.get_or_init(|| {
        let rules = quotad::config::compile_str("fuzz.yaml", RULES).expect("fixture rules");
        Target {
            runtime: tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("runtime"),
            service: RateLimiter::new(
                shared_rules(rules),
                Arc::new(MemoryStore::with_max_keys(50_000)),
                ManualClock::new(Timestamp::from_secs(1_800_000_000)),
            ),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = RateLimitRequest::decode(data) {
        let target = target();
        let _ = target.runtime.block_on(target.service.decide(&request));
    }
});
