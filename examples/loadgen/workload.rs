//! What is sent: descriptor templates with a `{}` filled from a key space, drawn at random or
//! in sequence, rendered into `RateLimitRequest`s (or one gRPC-framed body for h2load).

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::{
    RateLimitDescriptor, rate_limit_descriptor,
};
use envoy_types::pb::envoy::service::ratelimit::v3::RateLimitRequest;
use tonic::codegen::Bytes;

use crate::args::{Args, MAX_DESCRIPTORS, Pattern};

/// One descriptor entry value: fixed, or a template around the drawn key-space value.
#[derive(Debug, Clone)]
enum Value {
    Fixed(String),
    Keyed { before: String, after: String },
}

/// A parsed `--descriptor`: its entries in order.
#[derive(Debug, Clone)]
pub(crate) struct Template {
    entries: Vec<(String, Value)>,
}

impl Template {
    fn parse(text: &str) -> anyhow::Result<Self> {
        let entries = text
            .split(',')
            .map(|pair| {
                let (key, value) = pair
                    .split_once('=')
                    .with_context(|| format!("descriptor entry {pair:?} is not key=value"))?;
                ensure!(
                    !key.is_empty(),
                    "descriptor entry {pair:?} has an empty key"
                );
                let value = match value.split_once("{}") {
                    Some((before, after)) => Value::Keyed {
                        before: before.into(),
                        after: after.into(),
                    },
                    None => Value::Fixed(value.into()),
                };
                Ok((key.to_owned(), value))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Self { entries })
    }

    fn render(&self, key: u64) -> RateLimitDescriptor {
        RateLimitDescriptor {
            entries: self
                .entries
                .iter()
                .map(|(name, value)| rate_limit_descriptor::Entry {
                    key: name.clone(),
                    value: match value {
                        Value::Fixed(text) => text.clone(),
                        Value::Keyed { before, after } => {
                            let mut text = String::with_capacity(before.len() + after.len() + 20);
                            // Writing into a String cannot fail.
                            let _ = write!(text, "{before}{key}{after}");
                            text
                        }
                    },
                })
                .collect(),
            ..RateLimitDescriptor::default()
        }
    }
}

/// The templates the flags ask for: `--descriptor`s, or `k0={}` … from `--descriptors`.
pub(crate) fn templates(args: &Args) -> anyhow::Result<Vec<Template>> {
    let templates: Vec<Template> = if args.templates.is_empty() {
        ensure!(
            (1..=MAX_DESCRIPTORS).contains(&args.descriptors),
            "--descriptors must be 1..={MAX_DESCRIPTORS}"
        );
        (0..args.descriptors)
            .map(|index| Template::parse(&format!("k{index}={{}}")))
            .collect::<anyhow::Result<_>>()?
    } else {
        args.templates
            .iter()
            .map(|text| Template::parse(text))
            .collect::<anyhow::Result<_>>()?
    };
    if templates.len() > MAX_DESCRIPTORS {
        bail!("at most {MAX_DESCRIPTORS} descriptors per request");
    }
    Ok(templates)
}

/// Everything a worker needs to build requests; shared read-only.
#[derive(Debug)]
pub(crate) struct Workload {
    pub(crate) domain: String,
    pub(crate) templates: Vec<Template>,
    pub(crate) key_space: u64,
    pub(crate) pattern: Pattern,
    pub(crate) hits: u32,
    pub(crate) timeout: Duration,
}

impl Workload {
    /// The request for `ticket` (its sequence number), with its own deadline set.
    pub(crate) fn request(&self, ticket: u64, rng: &mut u64) -> tonic::Request<RateLimitRequest> {
        let mut request = tonic::Request::new(self.request_for(self.key(ticket, rng)));
        request.set_timeout(self.timeout);
        request
    }

    /// The gRPC-framed body of the request for `ticket`, for a raw HTTP/2 call (`wire`).
    pub(crate) fn body(&self, ticket: u64, rng: &mut u64) -> anyhow::Result<Bytes> {
        grpc_frame(&self.request_for(self.key(ticket, rng))).map(Bytes::from)
    }

    /// The key-space value for `ticket`: in sequence, or drawn from `rng`.
    fn key(&self, ticket: u64, rng: &mut u64) -> u64 {
        match self.pattern {
            Pattern::Sequential => ticket % self.key_space,
            Pattern::Random => next_random(rng) % self.key_space,
        }
    }

    /// The request whose `{}` values are `key`.
    pub(crate) fn request_for(&self, key: u64) -> RateLimitRequest {
        RateLimitRequest {
            domain: self.domain.clone(),
            descriptors: self.templates.iter().map(|t| t.render(key)).collect(),
            hits_addend: self.hits,
        }
    }
}

/// splitmix64: fast, good enough to spread keys, and avoids a `rand` dependency.
fn next_random(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The gRPC message framing h2load must send: flag 0 (uncompressed), big-endian length, body.
pub(crate) fn grpc_frame(request: &RateLimitRequest) -> anyhow::Result<Vec<u8>> {
    let body = prost::Message::encode_to_vec(request);
    let length = u32::try_from(body.len()).context("request larger than 4 GiB")?;
    let mut framed = Vec::with_capacity(5 + body.len());
    framed.push(0);
    framed.extend_from_slice(&length.to_be_bytes());
    framed.extend_from_slice(&body);
    Ok(framed)
}
