//! `GET /bans` (every ban in force: domain, key, value, reason, end) and
//! `DELETE /bans/{domain}/{key}/{value}` (lift one; path segments percent-decoded), both
//! loopback-only like the other admin endpoints.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

use axum::Json;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::admin::refuse_remote;
use super::router::HttpState;
use crate::clock::{Clock, Timestamp};
use crate::engine::Ban;
use crate::service::{RateLimiter, rfc3339};
use crate::store::{CounterStore, StoreError};

/// A boxed ban operation in flight.
pub type Banning<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// What the ban endpoints need (the rate limiter, behind a trait object so the HTTP side does
/// not carry its store and clock types).
pub trait ManageBans: Send + Sync + 'static {
    /// Every ban in force, and the moment they were read at.
    fn list(&self) -> Banning<'_, (Vec<Ban>, Timestamp)>;
    /// Lifts the ban on `key`=`value` in `domain`; whether one was in force.
    fn lift<'a>(&'a self, domain: &'a str, key: &'a str, value: &'a str) -> Banning<'a, bool>;
}

impl<S: CounterStore, C: Clock> ManageBans for RateLimiter<S, C> {
    fn list(&self) -> Banning<'_, (Vec<Ban>, Timestamp)> {
        Box::pin(async move {
            let now = self.now();
            Ok((self.bans().await?, now))
        })
    }

    fn lift<'a>(&'a self, domain: &'a str, key: &'a str, value: &'a str) -> Banning<'a, bool> {
        Box::pin(self.lift_ban(domain, key, value))
    }
}

/// One ban as `GET /bans` shows it.
#[derive(Debug, Serialize)]
struct BanView {
    domain: String,
    key: String,
    value: String,
    reason: String,
    /// The end of the ban, RFC 3339 in UTC.
    expires_at: String,
    /// Whole seconds left, rounded up (what `Retry-After` says).
    expires_in_seconds: u64,
}

#[derive(Debug, Serialize)]
struct BanList {
    bans: Vec<BanView>,
}

#[derive(Debug, Serialize)]
struct Lifted {
    lifted: bool,
}

#[derive(Debug, Serialize)]
struct BanError {
    code: &'static str,
    message: String,
}

fn failure(status: StatusCode, code: &'static str, message: String) -> Response {
    (status, Json(BanError { code, message })).into_response()
}

fn unavailable(error: &StoreError) -> Response {
    failure(
        StatusCode::SERVICE_UNAVAILABLE,
        "UNAVAILABLE",
        error.to_string(),
    )
}

fn not_enabled() -> Response {
    let message = "ban management is not enabled".to_owned();
    failure(StatusCode::NOT_FOUND, "NOT_FOUND", message)
}

/// `GET /bans` (loopback only).
pub(super) async fn list(
    State(state): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
) -> Response {
    if let Some(refused) = refuse_remote(peer) {
        return refused;
    }
    let Some(bans) = &state.bans else {
        return not_enabled();
    };
    match bans.list().await {
        Ok((mut bans, now)) => {
            bans.sort_by(|a, b| (&a.domain, &a.key, &a.value).cmp(&(&b.domain, &b.key, &b.value)));
            let bans = bans.into_iter().map(|ban| view(ban, now)).collect();
            Json(BanList { bans }).into_response()
        }
        Err(error) => unavailable(&error),
    }
}

/// `DELETE /bans/{domain}/{key}/{value}` (loopback only): 200 when a ban was lifted, 404 when
/// none was in force.
pub(super) async fn lift(
    State(state): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path((domain, key, value)): Path<(String, String, String)>,
) -> Response {
    if let Some(refused) = refuse_remote(peer) {
        return refused;
    }
    let Some(bans) = &state.bans else {
        return not_enabled();
    };
    match bans.lift(&domain, &key, &value).await {
        Ok(true) => Json(Lifted { lifted: true }).into_response(),
        Ok(false) => (StatusCode::NOT_FOUND, Json(Lifted { lifted: false })).into_response(),
        Err(error) => unavailable(&error),
    }
}

fn view(ban: Ban, now: Timestamp) -> BanView {
    let left = ban.until.as_nanos().saturating_sub(now.as_nanos());
    BanView {
        expires_at: rfc3339(ban.until),
        expires_in_seconds: left.div_ceil(1_000_000_000),
        domain: ban.domain,
        key: ban.key,
        value: ban.value,
        reason: ban.reason,
    }
}
