//! `POST /json`: a RateLimitRequest as protobuf JSON in, the RateLimitResponse as protobuf JSON
//! out, through exactly the code path gRPC calls take — so curl users and non-gRPC clients get
//! the same answers. 200 for OK, 429 for OVER_LIMIT, 400 for malformed input.

use std::future::Future;
use std::pin::Pin;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use serde::Serialize;
use tonic::Status;

use super::router::HttpState;
use super::wire::{JsonRequest, JsonResponse};
use crate::clock::Clock;
use crate::metrics::Method;
use crate::service::RateLimiter;
use crate::store::CounterStore;

/// A boxed decision in flight.
pub type Deciding<'a> =
    Pin<Box<dyn Future<Output = Result<RateLimitResponse, Status>> + Send + 'a>>;

/// Something that answers rate-limit requests (the gRPC service, behind a trait object so the
/// HTTP side does not carry its store and clock types).
pub trait Decide: Send + Sync + 'static {
    /// Answers `request` as a `POST /json` call.
    fn decide<'a>(&'a self, request: &'a RateLimitRequest) -> Deciding<'a>;
}

impl<S: CounterStore, C: Clock> Decide for RateLimiter<S, C> {
    fn decide<'a>(&'a self, request: &'a RateLimitRequest) -> Deciding<'a> {
        Box::pin(self.answer(Method::Json, request))
    }
}

#[derive(Debug, Serialize)]
struct JsonError {
    code: &'static str,
    message: String,
}

fn error(status: StatusCode, code: &'static str, message: String) -> Response {
    (status, Json(JsonError { code, message })).into_response()
}

/// `POST /json`.
pub(super) async fn json(State(state): State<HttpState>, body: Bytes) -> Response {
    let Some(decider) = &state.decider else {
        return error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "the JSON endpoint is not enabled".into(),
        );
    };
    let parsed = serde_json::from_slice::<JsonRequest>(&body)
        .map_err(|error| format!("malformed RateLimitRequest JSON: {error}"))
        .and_then(JsonRequest::into_wire);
    let request = match parsed {
        Ok(request) => request,
        Err(message) => return error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", message),
    };
    match decider.decide(&request).await {
        Ok(response) => {
            let status = if response.overall_code == i32::from(Code::OverLimit) {
                StatusCode::TOO_MANY_REQUESTS
            } else {
                StatusCode::OK
            };
            (status, Json(JsonResponse::from(&response))).into_response()
        }
        Err(failure) => {
            let (status, code) = match failure.code() {
                tonic::Code::InvalidArgument => (StatusCode::BAD_REQUEST, "INVALID_ARGUMENT"),
                tonic::Code::Unimplemented => (StatusCode::NOT_IMPLEMENTED, "UNIMPLEMENTED"),
                tonic::Code::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE"),
                _ => (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL"),
            };
            error(status, code, failure.message().to_owned())
        }
    }
}
