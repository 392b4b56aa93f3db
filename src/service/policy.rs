//! What a caller hears when the counter store fails (Redis slow, down, or behind an open
//! breaker): the operator picks between failing open, failing closed, and letting Envoy decide.
//! The store error itself is never the answer's business; it is logged and counted upstream.

use std::fmt;

use envoy_types::pb::envoy::service::ratelimit::v3::RateLimitResponse;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::{Code, DescriptorStatus};
use tonic::Status;

use crate::store::StoreError;

/// The answer to a request whose counters could not be applied (`--on-store-error`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum StoreErrorPolicy {
    /// Fail open: OK for every descriptor, with no limit attached — what a gateway usually wants.
    #[default]
    Allow,
    /// Fail closed: OVER_LIMIT for every descriptor.
    Deny,
    /// gRPC `UNAVAILABLE`, so Envoy's `failure_mode_deny` decides.
    Error,
}

impl StoreErrorPolicy {
    /// The flag value (`allow`, `deny`, `error`).
    pub const fn name(self) -> &'static str {
        match self {
            StoreErrorPolicy::Allow => "allow",
            StoreErrorPolicy::Deny => "deny",
            StoreErrorPolicy::Error => "error",
        }
    }

    /// The answer for a request of `descriptors` descriptors whose store call failed with `error`.
    ///
    /// The whole request gets one code: the engine cannot conclude anything from counts it does
    /// not have, and a request needs the store only when at least one descriptor has a counter.
    pub fn answer(
        self,
        descriptors: usize,
        error: &StoreError,
    ) -> Result<RateLimitResponse, Status> {
        let code = match self {
            StoreErrorPolicy::Allow => Code::Ok,
            StoreErrorPolicy::Deny => Code::OverLimit,
            StoreErrorPolicy::Error => return Err(Status::unavailable(error.to_string())),
        };
        let status = DescriptorStatus {
            code: code.into(),
            ..DescriptorStatus::default()
        };
        Ok(RateLimitResponse {
            overall_code: code.into(),
            statuses: vec![status; descriptors],
            ..RateLimitResponse::default()
        })
    }
}

impl fmt::Display for StoreErrorPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn down() -> StoreError {
        StoreError::Unavailable("redis timeout: no answer within 50ms".into())
    }

    fn codes(response: &RateLimitResponse) -> (i32, Vec<i32>) {
        let statuses = response.statuses.iter().map(|status| status.code).collect();
        (response.overall_code, statuses)
    }

    #[test]
    fn allow_answers_ok_for_every_descriptor_without_a_limit() {
        let response = StoreErrorPolicy::Allow.answer(3, &down()).unwrap();
        let ok = i32::from(Code::Ok);
        assert_eq!(codes(&response), (ok, vec![ok; 3]));
        assert!(response.statuses.iter().all(|s| s.current_limit.is_none()));
    }

    #[test]
    fn deny_answers_over_limit_for_every_descriptor() {
        let response = StoreErrorPolicy::Deny.answer(2, &down()).unwrap();
        let over = i32::from(Code::OverLimit);
        assert_eq!(codes(&response), (over, vec![over; 2]));
    }

    #[test]
    fn error_is_unavailable_with_the_cause() {
        let status = StoreErrorPolicy::Error.answer(1, &down()).unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert!(
            status.message().contains("no answer within 50ms"),
            "{status:?}"
        );
    }

    #[test]
    fn allow_is_the_default_and_names_match_the_flag() {
        assert_eq!(StoreErrorPolicy::default(), StoreErrorPolicy::Allow);
        let names: Vec<String> = [
            StoreErrorPolicy::Allow,
            StoreErrorPolicy::Deny,
            StoreErrorPolicy::Error,
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        assert_eq!(names, ["allow", "deny", "error"]);
    }
}
