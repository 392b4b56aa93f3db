//! Operator endpoints: `GET /metrics` for Prometheus, and the loopback-only `GET /rlconfig`
//! (what is loaded, and why the last reload failed) and `POST /reload`. The loopback check
//! looks at the TCP peer: behind a sidecar proxy every client is loopback, so such deployments
//! must not route these paths from outside.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::rlconfig;
use super::router::HttpState;
use crate::config::{ReloadError, Reloaded, Trigger};

const TEXT: &str = "text/plain; charset=utf-8";
/// The Prometheus text exposition format's content type.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

fn text(status: StatusCode, body: impl Into<String>) -> Response {
    (status, [(header::CONTENT_TYPE, TEXT)], body.into()).into_response()
}

/// A 403 unless the peer is on this host (IPv4-mapped IPv6 loopback included).
pub(super) fn refuse_remote(peer: SocketAddr) -> Option<Response> {
    (!peer.ip().to_canonical().is_loopback()).then(|| {
        text(
            StatusCode::FORBIDDEN,
            "this endpoint answers loopback clients only\n",
        )
    })
}

/// `GET /metrics`.
pub(super) async fn metrics(State(state): State<HttpState>) -> Response {
    let Some(metrics) = &state.metrics else {
        return text(StatusCode::NOT_FOUND, "metrics are not enabled\n");
    };
    if let Some(refresh) = &state.before_scrape {
        refresh();
    }
    ([(header::CONTENT_TYPE, PROMETHEUS_TEXT)], metrics.render()).into_response()
}

/// `GET /rlconfig` (loopback only).
pub(super) async fn rlconfig(
    State(state): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
) -> Response {
    if let Some(refused) = refuse_remote(peer) {
        return refused;
    }
    let rules = state.rules.load_full();
    let status = state.reloader.as_ref().map(|reloader| reloader.status());
    text(StatusCode::OK, rlconfig::render(&rules, status.as_deref()))
}

/// `POST /reload` (loopback only): 200 when the files were loaded (or already serving), 422
/// with every located error when they were rejected.
pub(super) async fn reload(
    State(state): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
) -> Response {
    if let Some(refused) = refuse_remote(peer) {
        return refused;
    }
    let Some(reloader) = &state.reloader else {
        return text(
            StatusCode::NOT_FOUND,
            "reload is not available: the rules were not loaded from a path\n",
        );
    };
    match reloader.reload(Trigger::Http).await {
        Ok(Reloaded::Applied(version)) => {
            text(StatusCode::OK, format!("reloaded: version {version}\n"))
        }
        Ok(Reloaded::Unchanged(version)) => {
            text(StatusCode::OK, format!("unchanged: version {version}\n"))
        }
        Err(error @ ReloadError::Rejected(_)) => {
            text(StatusCode::UNPROCESSABLE_ENTITY, format!("{error}\n"))
        }
        Err(error @ ReloadError::Interrupted(_)) => {
            text(StatusCode::INTERNAL_SERVER_ERROR, format!("{error}\n"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_peers_pass() {
        for peer in [
            "127.0.0.1:1",
            "127.8.9.10:1",
            "[::1]:1",
            "[::ffff:127.0.0.1]:1",
        ] {
            assert!(refuse_remote(peer.parse().unwrap()).is_none(), "{peer}");
        }
        for peer in [
            "10.0.0.1:1",
            "[::ffff:10.0.0.1]:1",
            "[2001:db8::1]:1",
            "0.0.0.0:1",
        ] {
            let refused = refuse_remote(peer.parse().unwrap()).expect(peer);
            assert_eq!(refused.status(), StatusCode::FORBIDDEN);
        }
    }
}
