//! Shared fixtures for the gRPC tests: a small rule set built straight from engine types (so
//! these tests do not depend on the YAML compiler), a server on loopback port 0 with a manual
//! clock, and helpers to build wire requests.

use std::num::NonZeroU32;

use envoy_types::pb::envoy::extensions::common::ratelimit::v3::{
    RateLimitDescriptor, rate_limit_descriptor,
};
use envoy_types::pb::envoy::service::ratelimit::v3::RateLimitRequest;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::{Code, DescriptorStatus};
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient;
use envoy_types::pb::google::protobuf::UInt64Value;
use quotad::app::{self, RunningServer, ServerConfig};
use quotad::clock::{ManualClock, Timestamp};
use quotad::engine::{Children, DomainRules, Limit, Node, Policy, Rule, RuleSet, TimeUnit, Window};
use quotad::service::shared_rules;
use tonic::transport::Channel;

/// Midnight UTC, so every minute, hour and day window starts exactly here.
pub const START: Timestamp = Timestamp::from_secs(86_400 * 20_000);

/// The domain every fixture rule lives in.
pub const DOMAIN: &str = "api";

fn node(limits: Vec<Limit>, shadow_mode: bool) -> Node {
    let policy = if limits.is_empty() {
        Policy::Unlimited
    } else {
        Policy::Limited(limits.into_boxed_slice())
    };
    Node::leaf(Rule {
        policy,
        shadow_mode,
        ..Rule::limited("fixture", [])
    })
}

fn per_minute(requests: u32) -> Limit {
    Limit::new(requests, Window::of(TimeUnit::Minute))
}

/// `api`: `k` 3/minute, `hot` 100/minute, `shadow` 1/minute in shadow mode, `free` unlimited,
/// `user` 2/minute named `per_user`, `vip` 5/hour replacing `per_user`, `burst` 10 per 10 s.
pub fn rules() -> RuleSet {
    let mut root = Children::default();
    root.insert_default("k", node(vec![per_minute(3)], false));
    root.insert_default("hot", node(vec![per_minute(100)], false));
    root.insert_default("shadow", node(vec![per_minute(1)], true));
    root.insert_default("free", node(vec![], false));
    root.insert_default("user", node(vec![per_minute(2).named("per_user")], false));
    let vip = Limit::new(5, Window::of(TimeUnit::Hour)).replacing(&["per_user"]);
    root.insert_default("vip", node(vec![vip], false));
    let ten_seconds = Window::new(TimeUnit::Second, NonZeroU32::new(10).expect("non-zero"));
    root.insert_default("burst", node(vec![Limit::new(10, ten_seconds)], false));
    RuleSet::new([DomainRules::new(DOMAIN, root)])
}

/// A server on loopback port 0 serving [`rules`], and the clock it counts by.
pub async fn start() -> (RunningServer, ManualClock) {
    let clock = ManualClock::new(START);
    let loopback = "127.0.0.1:0".parse().expect("valid address");
    let config = ServerConfig::new(loopback, loopback, shared_rules(rules()), clock.clone());
    let server = app::start(config).await.expect("server starts");
    (server, clock)
}

/// A channel on its own HTTP/2 connection to the server's gRPC address.
pub async fn channel(server: &RunningServer) -> Channel {
    Channel::from_shared(format!("http://{}", server.grpc_addr()))
        .expect("valid uri")
        .connect()
        .await
        .expect("connects")
}

/// A RateLimitService client on a fresh connection.
pub async fn client(server: &RunningServer) -> RateLimitServiceClient<Channel> {
    RateLimitServiceClient::new(channel(server).await)
}

/// A wire descriptor from `key=value` pairs.
pub fn descriptor(pairs: &[(&str, &str)]) -> RateLimitDescriptor {
    RateLimitDescriptor {
        entries: pairs
            .iter()
            .map(|(key, value)| rate_limit_descriptor::Entry {
                key: (*key).into(),
                value: (*value).into(),
            })
            .collect(),
        ..RateLimitDescriptor::default()
    }
}

/// A wire descriptor with its own hit count.
pub fn descriptor_with_hits(pairs: &[(&str, &str)], hits: u64) -> RateLimitDescriptor {
    RateLimitDescriptor {
        hits_addend: Some(UInt64Value { value: hits }),
        ..descriptor(pairs)
    }
}

/// A request in [`DOMAIN`] with the given descriptors and request-level hits (0 = unset).
pub fn request(descriptors: Vec<RateLimitDescriptor>, hits_addend: u32) -> RateLimitRequest {
    RateLimitRequest {
        domain: DOMAIN.into(),
        descriptors,
        hits_addend,
    }
}

/// Sends `request` and returns the answer, panicking on a gRPC error.
pub async fn ask(
    client: &mut RateLimitServiceClient<Channel>,
    request: RateLimitRequest,
) -> (Code, Vec<DescriptorStatus>) {
    let response = client
        .should_rate_limit(request)
        .await
        .expect("call succeeds")
        .into_inner();
    let code = Code::try_from(response.overall_code).expect("known code");
    (code, response.statuses)
}

/// Sends a one-descriptor request with one hit and returns that descriptor's status.
pub async fn hit(
    client: &mut RateLimitServiceClient<Channel>,
    pairs: &[(&str, &str)],
) -> DescriptorStatus {
    let (_, mut statuses) = ask(client, request(vec![descriptor(pairs)], 0)).await;
    assert_eq!(statuses.len(), 1);
    statuses.remove(0)
}

/// The status's code as an enum.
pub fn code(status: &DescriptorStatus) -> Code {
    Code::try_from(status.code).expect("known code")
}

/// The status's code and remaining hits, the pair most assertions are about.
pub fn outcome(status: &DescriptorStatus) -> (Code, u32) {
    (code(status), status.limit_remaining)
}
