//! `rediss://` against a real TLS-only `redis-server` (plain-text port closed): the store
//! enforces limits exactly over TLS, both with the redis crate's `#insecure` fragment (tests
//! only) and verified against a private CA; and verification is real, because without that CA
//! the system trust store refuses the throwaway certificate.

mod support;

use std::time::Duration;

use quotad::clock::{ManualClock, Timestamp};
use quotad::engine::{Limit, TimeUnit, Window};
use quotad::store::RedisStore;
use quotad::store::redis::RedisStoreConfig;

use support::redis_tls::TlsRedisServer;
use support::store_behaviours::{self as behaviours, Harness, T0};

/// Answers, not speed: a TLS handshake on a loaded CI machine must not time a call out.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

fn harness(config: RedisStoreConfig) -> Harness<RedisStore> {
    let clock = ManualClock::new(Timestamp::from_secs(T0));
    let store = RedisStore::new(&config.with_timeout(CALL_TIMEOUT), clock.clone())
        .expect("redis store over TLS");
    Harness::new(store, clock)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insecure_url_admits_exactly_the_limit() {
    let Some(server) = TlsRedisServer::start("insecure_url_admits_exactly_the_limit") else {
        return;
    };
    let config = RedisStoreConfig::from_url(&server.insecure_url()).expect("rediss URL");
    behaviours::fixed_window_limit_is_exact(&harness(config)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_ca_verifies_and_admits_exactly_the_limit() {
    let Some(server) = TlsRedisServer::start("private_ca_verifies_and_admits_exactly_the_limit")
    else {
        return;
    };
    let config = RedisStoreConfig::from_url(&server.url())
        .expect("rediss URL")
        .with_tls_root_ca(server.ca_pem().to_vec());
    behaviours::fixed_window_limit_is_exact(&harness(config)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_roots_refuse_an_unknown_ca() {
    let Some(server) = TlsRedisServer::start("system_roots_refuse_an_unknown_ca") else {
        return;
    };
    let h = harness(RedisStoreConfig::from_url(&server.url()).expect("rediss URL"));
    let rules = h.rules(vec![Limit::new(5, Window::of(TimeUnit::Minute))]);
    let outcome = h.try_send(&rules, &[("a", 1)]).await;
    assert!(
        outcome.is_err(),
        "a certificate from an unknown CA must not be accepted: {outcome:?}"
    );
}

#[test]
fn a_bad_root_ca_fails_at_startup() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let _entered = runtime.enter();
    let config = RedisStoreConfig::from_url("rediss://127.0.0.1:1")
        .expect("rediss URL")
        .with_tls_root_ca(b"not a certificate".to_vec());
    let clock = ManualClock::new(Timestamp::from_secs(T0));
    let error = RedisStore::new(&config, clock).expect_err("a CA without certificates");
    assert!(error.to_string().contains("no PEM certificate"), "{error}");
}

#[test]
fn an_unknown_url_fragment_fails_at_startup() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let _entered = runtime.enter();
    for url in [
        "rediss://127.0.0.1:1/#verify",
        "rediss+cluster://127.0.0.1:1#verify",
    ] {
        let config = RedisStoreConfig::from_url(url).expect("rediss URL");
        let clock = ManualClock::new(Timestamp::from_secs(T0));
        let error = RedisStore::new(&config, clock).expect_err("only #insecure is known");
        assert!(error.to_string().contains("#insecure"), "{url}: {error}");
    }
}
