//! The smallest useful quotad client: one ShouldRateLimit call with Envoy's generated tonic
//! client, the same call Envoy's rate-limit filter makes. Start a server first, then:
//!
//! ```text
//! cargo run --example client -- http://127.0.0.1:8081 api api_key=k_123
//! ```

use envoy_types::pb::envoy::extensions::common::ratelimit::v3::{
    RateLimitDescriptor, rate_limit_descriptor,
};
use envoy_types::pb::envoy::service::ratelimit::v3::RateLimitRequest;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args
        .next()
        .unwrap_or_else(|| "http://127.0.0.1:8081".into());
    let domain = args.next().unwrap_or_else(|| "api".into());
    let entries = args
        .map(|pair| {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| anyhow::anyhow!("expected key=value, got {pair:?}"))?;
            Ok(rate_limit_descriptor::Entry {
                key: key.into(),
                value: value.into(),
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;

    let mut client = RateLimitServiceClient::connect(addr).await?;
    let response = client
        .should_rate_limit(RateLimitRequest {
            domain,
            // Every entry in one descriptor, as Envoy sends a nested action list.
            descriptors: vec![RateLimitDescriptor {
                entries,
                ..RateLimitDescriptor::default()
            }],
            hits_addend: 0,
        })
        .await?
        .into_inner();
    println!("{response:#?}");
    Ok(())
}
