//! `GET /usage?domain=api&descriptor=plan=pro,api_key=K`: every limit that applies to each
//! descriptor with used, remaining and reset, as JSON a dashboard renders directly — read
//! without consuming. It exposes customer data, so it answers loopback clients only unless
//! the operator opts in (`--usage-endpoint-public`). Errors are JSON too: 400 names the
//! descriptor and entry at fault, 503 when the store cannot be read.

mod query;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

use axum::Json;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::router::HttpState;
use crate::clock::Clock;
use crate::service::{InvalidRequest, RateLimiter, UsageError, UsageQuery, UsageReport};
use crate::store::CounterStore;

/// A boxed usage lookup in flight.
pub type Reporting<'a> = Pin<Box<dyn Future<Output = Result<UsageReport, UsageError>> + Send + 'a>>;

/// Something that answers usage lookups (behind a trait object so the HTTP side does not carry
/// the store and clock types).
pub trait ReportUsage: Send + Sync + 'static {
    /// Reads the usage of every limit that applies to `query`, consuming nothing.
    fn report<'a>(&'a self, query: &'a UsageQuery) -> Reporting<'a>;
}

impl<S: CounterStore, C: Clock> ReportUsage for RateLimiter<S, C> {
    fn report<'a>(&'a self, query: &'a UsageQuery) -> Reporting<'a> {
        Box::pin(self.usage(query))
    }
}

#[derive(Debug, Serialize)]
struct UsageFailure {
    code: &'static str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    descriptor: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    entry: Option<usize>,
}

fn failure(status: StatusCode, code: &'static str, message: String) -> Response {
    located(status, code, message, (None, None))
}

fn located(
    status: StatusCode,
    code: &'static str,
    message: String,
    (descriptor, entry): (Option<usize>, Option<usize>),
) -> Response {
    let body = UsageFailure {
        code,
        message,
        descriptor,
        entry,
    };
    (status, Json(body)).into_response()
}

/// Whether `peer` is on this host (IPv4-mapped IPv6 loopback included).
fn is_loopback(peer: SocketAddr) -> bool {
    peer.ip().to_canonical().is_loopback()
}

/// The descriptor and entry a validation failure names, when it names them.
fn position(invalid: &InvalidRequest) -> (Option<usize>, Option<usize>) {
    match invalid {
        InvalidRequest::EmptyDescriptor { descriptor }
        | InvalidRequest::TooManyEntries { descriptor, .. }
        | InvalidRequest::UnknownOverrideUnit { descriptor, .. } => (Some(*descriptor), None),
        InvalidRequest::EmptyKey { descriptor, entry }
        | InvalidRequest::EntryTooLong {
            descriptor, entry, ..
        } => (Some(*descriptor), Some(*entry)),
        _ => (None, None),
    }
}

/// `GET /usage` (loopback only unless the server was started with `--usage-endpoint-public`).
pub(super) async fn usage(
    State(state): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    RawQuery(raw): RawQuery,
) -> Response {
    let Some(reader) = &state.usage else {
        let message = "usage lookups are not enabled".to_owned();
        return failure(StatusCode::NOT_FOUND, "NOT_FOUND", message);
    };
    if !state.usage_public && !is_loopback(peer) {
        let message = "/usage answers loopback clients only unless quotad is started with \
                       --usage-endpoint-public"
            .to_owned();
        return failure(StatusCode::FORBIDDEN, "PERMISSION_DENIED", message);
    }
    let query = match query::parse(raw.as_deref().unwrap_or_default()) {
        Ok(query) => query,
        Err(error) => {
            let at = error.position();
            return located(
                StatusCode::BAD_REQUEST,
                "INVALID_ARGUMENT",
                error.to_string(),
                at,
            );
        }
    };
    match reader.report(&query).await {
        // Counts change with every request: no cache may answer for quotad.
        Ok(report) => ([(header::CACHE_CONTROL, "no-store")], Json(report)).into_response(),
        Err(UsageError::Invalid(invalid)) => located(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            invalid.to_string(),
            position(&invalid),
        ),
        Err(error @ UsageError::Store(_)) => failure(
            StatusCode::SERVICE_UNAVAILABLE,
            "UNAVAILABLE",
            error.to_string(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::clock::ManualClock;
    use crate::engine::{Limit, RuleSet, TimeUnit, Window};
    use crate::http::Readiness;
    use crate::service::shared_rules;
    use crate::store::MemoryStore;

    #[test]
    fn only_loopback_peers_are_local() {
        for peer in [
            "127.0.0.1:1",
            "127.8.9.10:1",
            "[::1]:1",
            "[::ffff:127.0.0.1]:1",
        ] {
            assert!(is_loopback(peer.parse().unwrap()), "{peer}");
        }
        for peer in [
            "10.0.0.1:1",
            "[::ffff:10.0.0.1]:1",
            "[2001:db8::1]:1",
            "0.0.0.0:1",
        ] {
            assert!(!is_loopback(peer.parse().unwrap()), "{peer}");
        }
    }

    async fn status(public: bool, peer: &str, query: &str) -> StatusCode {
        let rules = shared_rules(RuleSet::per_value(
            "api",
            "k",
            [Limit::new(3, Window::of(TimeUnit::Minute))],
        ));
        let reader = RateLimiter::new(
            rules.clone(),
            Arc::new(MemoryStore::new()),
            ManualClock::default(),
        );
        let state = HttpState::new(Readiness::new(), rules).with_usage(Arc::new(reader), public);
        let peer = ConnectInfo(peer.parse().unwrap());
        usage(State(state), peer, RawQuery(Some(query.to_owned())))
            .await
            .status()
    }

    #[tokio::test]
    async fn other_hosts_are_refused_unless_the_operator_opts_in() {
        let good = "domain=api&descriptor=k=v";
        assert_eq!(
            status(false, "10.0.0.1:1", good).await,
            StatusCode::FORBIDDEN
        );
        assert_eq!(status(false, "127.0.0.1:1", good).await, StatusCode::OK);
        assert_eq!(status(true, "10.0.0.1:1", good).await, StatusCode::OK);
        assert_eq!(
            status(true, "10.0.0.1:1", "domain=api").await,
            StatusCode::BAD_REQUEST
        );
    }

    #[test]
    fn validation_failures_name_their_position() {
        let too_long = InvalidRequest::EntryTooLong {
            descriptor: 2,
            entry: 1,
            part: "value",
            len: 5_000,
            max: 4_096,
        };
        assert_eq!(position(&too_long), (Some(2), Some(1)));
        assert_eq!(position(&InvalidRequest::EmptyDomain), (None, None));
    }
}
