//! Hot reload over real sockets: a bad file never replaces good rules and is reported the way
//! `quotad check` reports it; file changes (including a Kubernetes ConfigMap's `..data` swap),
//! SIGHUP and `POST /reload` all reload; counts survive a limit change; and under steady
//! traffic 50 rewrites cause no failed call and no half-applied or invalid version.

mod ops;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ops::{
    DEADLINE, MANUAL, Triggers, client, current_limit, eventually, get, hit_user, post, sample,
    start_from, url, user_rules, write_atomically,
};

const BAD_UNIT: &str = "domain: api\ndescriptors:\n  - key: user\n    rate_limit:\n      \
                        unit: fortnight\n      requests_per_unit: 7\n";

#[tokio::test]
async fn a_bad_file_keeps_the_old_rules_and_is_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_atomically(dir.path(), "api.yaml", &user_rules(10));
    let (server, _clock) = start_from(dir.path(), MANUAL).await;
    let mut client = client(&server).await;

    write_atomically(dir.path(), "api.yaml", BAD_UNIT);
    let (status, body) = post(&url(&server, "/reload"), "").await;
    assert_eq!(status, 422, "{body}");
    let expected = config_errors(dir.path());
    assert!(
        body.contains(&expected),
        "same text as `quotad check`:\n{body}\n---\n{expected}"
    );
    assert_eq!(
        current_limit(&mut client).await,
        Some(10),
        "old rules keep serving"
    );

    let (_, page) = get(&url(&server, "/rlconfig")).await;
    assert!(page.contains("# last reload error at "), "{page}");
    assert!(
        page.contains("(POST /reload), 1 error(s); the files on disk are still invalid"),
        "{page}"
    );
    assert!(page.contains(&format!("#   {expected}")), "{page}");
    assert!(
        page.contains("api user: 10 per minute, fixed_window"),
        "{page}"
    );
    let (_, metrics) = get(&url(&server, "/metrics")).await;
    assert_eq!(
        sample(&metrics, "quotad_config_reloads_total{result=\"failure\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(&metrics, "quotad_config_last_reload_successful"),
        Some(0.0)
    );

    write_atomically(dir.path(), "api.yaml", &user_rules(20));
    let (status, body) = post(&url(&server, "/reload"), "").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("reloaded: version "), "{body}");
    assert_eq!(current_limit(&mut client).await, Some(20));
    let (status, body) = post(&url(&server, "/reload"), "").await;
    assert_eq!(
        (status, body.starts_with("unchanged: ")),
        (200, true),
        "{body}"
    );
    let (_, page) = get(&url(&server, "/rlconfig")).await;
    assert!(page.contains("a later reload succeeded"), "{page}");
    let version = server.reloader().expect("reloader").status().version;
    let (_, metrics) = get(&url(&server, "/metrics")).await;
    assert_eq!(
        sample(&metrics, "quotad_config_last_reload_successful"),
        Some(1.0)
    );
    assert_eq!(
        sample(&metrics, "quotad_config_version"),
        Some(f64::from(version.short()))
    );
    server.shutdown().await.expect("clean shutdown");
}

/// The located errors `quotad check` would print for `path`.
fn config_errors(path: &Path) -> String {
    quotad::config::load_path(path)
        .expect_err("the file is invalid")
        .to_string()
}

#[tokio::test]
async fn counts_survive_a_limit_change() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_atomically(dir.path(), "api.yaml", &user_rules(10));
    let (server, _clock) = start_from(dir.path(), MANUAL).await;
    let mut client = client(&server).await;
    for _ in 0..3 {
        hit_user(&mut client, "alice", 1).await;
    }
    write_atomically(dir.path(), "api.yaml", &user_rules(20));
    assert_eq!(post(&url(&server, "/reload"), "").await.0, 200);
    let status = hit_user(&mut client, "alice", 1).await;
    assert_eq!(status.current_limit.map(|l| l.requests_per_unit), Some(20));
    assert_eq!(status.limit_remaining, 16, "the 3 earlier hits still count");
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_removed_rules_counters_are_reclaimed() {
    let hourly = "  - key: team\n    rate_limit:\n      unit: hour\n      requests_per_unit: 5\n";
    let dir = tempfile::tempdir().expect("tempdir");
    write_atomically(
        dir.path(),
        "api.yaml",
        &format!("{}{hourly}", user_rules(10)),
    );
    let (server, clock) = start_from(dir.path(), MANUAL).await;
    let mut client = client(&server).await;
    hit_user(&mut client, "alice", 1).await;
    let team = ops::request(vec![ops::descriptor(&[("team", "red")])], 1);
    client.should_rate_limit(team).await.expect("call succeeds");
    let keys = async || {
        let (_, metrics) = get(&url(&server, "/metrics")).await;
        sample(&metrics, "quotad_store_keys{store=\"memory\"}")
    };
    assert_eq!(keys().await, Some(2.0));

    let without_user = format!("domain: api\ndescriptors:\n{hourly}");
    write_atomically(dir.path(), "api.yaml", &without_user);
    assert_eq!(post(&url(&server, "/reload"), "").await.0, 200);
    // The removed rule's minute window and the one after it end; the hourly counter lives on.
    clock.advance(Duration::from_secs(120));
    eventually(
        "the sweep to reclaim the removed rule's counter",
        DEADLINE,
        || async { (keys().await == Some(1.0)).then_some(()) },
    )
    .await;
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_configmap_data_swap_is_picked_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    // Kubernetes' layout: api.yaml -> ..data/api.yaml, ..data -> ..<timestamp>/.
    std::fs::create_dir(root.join("..2024_01_01")).expect("mkdir");
    std::fs::write(root.join("..2024_01_01/api.yaml"), user_rules(10)).expect("write");
    symlink("..2024_01_01", &root.join("..data"));
    symlink("..data/api.yaml", &root.join("api.yaml"));
    let watch = Triggers {
        watch: true,
        sighup: false,
    };
    let (server, _clock) = start_from(root, watch).await;
    let mut client = client(&server).await;
    assert_eq!(current_limit(&mut client).await, Some(10));

    // The kubelet's update: a new timestamped directory, a temp link, one atomic rename.
    std::fs::create_dir(root.join("..2024_01_02")).expect("mkdir");
    std::fs::write(root.join("..2024_01_02/api.yaml"), user_rules(30)).expect("write");
    symlink("..2024_01_02", &root.join("..data_tmp"));
    std::fs::rename(root.join("..data_tmp"), root.join("..data")).expect("swap ..data");
    std::fs::remove_dir_all(root.join("..2024_01_01")).expect("remove old data");

    eventually("the swapped ConfigMap to serve", DEADLINE, || {
        let mut client = client.clone();
        async move { (current_limit(&mut client).await == Some(30)).then_some(()) }
    })
    .await;
    server.shutdown().await.expect("clean shutdown");
}

fn symlink(target: &str, link: &Path) {
    std::os::unix::fs::symlink(target, link).expect("symlink");
}

#[tokio::test]
async fn sighup_reloads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("api.yaml");
    std::fs::write(&file, user_rules(10)).expect("write");
    let sighup = Triggers {
        watch: false,
        sighup: true,
    };
    let (server, _clock) = start_from(&file, sighup).await;
    let client = client(&server).await;
    std::fs::write(&file, user_rules(40)).expect("write");
    let pid = std::process::id().to_string();
    let kill = Command::new("kill").args(["-HUP", &pid]).status();
    assert!(kill.expect("kill runs").success());
    eventually("SIGHUP to reload", DEADLINE, || {
        let mut client = client.clone();
        async move { (current_limit(&mut client).await == Some(40)).then_some(()) }
    })
    .await;
    server.shutdown().await.expect("clean shutdown");
}

/// The proof: 50 rewrites (valid and invalid alternating) under steady concurrent
/// traffic. Valid version `i` limits `user` to 1000 + i; invalid version `i` is the same file
/// with limit 5000 + i plus one bad descriptor, so a partial application would be visible.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_rewrites_under_traffic_drop_nothing() {
    const WORKERS: usize = 4;
    const VALID_WITHIN: Duration = Duration::from_secs(1);
    let dir = tempfile::tempdir().expect("tempdir");
    write_atomically(dir.path(), "api.yaml", &user_rules(1000));
    let watch = Triggers {
        watch: true,
        sighup: false,
    };
    let (server, _clock) = start_from(dir.path(), watch).await;
    let running = Arc::new(AtomicBool::new(true));
    let mut traffic = Vec::new();
    for worker in 0..WORKERS {
        let mut client = client(&server).await;
        let running = running.clone();
        traffic.push(tokio::spawn(async move {
            let (mut seen, mut failures, mut calls) = (Vec::new(), 0_u32, 0_u32);
            while running.load(Ordering::Relaxed) {
                let user = format!("user-{worker}-{}", calls % 50);
                let request = ops::request(vec![ops::descriptor(&[("user", &user)])], 1);
                match client.should_rate_limit(request).await {
                    Ok(response) => {
                        let status = &response.get_ref().statuses[0];
                        seen.push(
                            status
                                .current_limit
                                .as_ref()
                                .map_or(0, |l| l.requests_per_unit),
                        );
                    }
                    Err(_) => failures += 1,
                }
                calls += 1;
            }
            (seen, failures, calls)
        }));
    }

    let mut probe = client(&server).await;
    let mut valid = BTreeSet::from([1000]);
    let mut slowest = Duration::ZERO;
    for version in 1..=50_u32 {
        if version % 2 == 0 {
            let limit = 1000 + version;
            valid.insert(limit);
            let written = tokio::time::Instant::now();
            write_atomically(dir.path(), "api.yaml", &user_rules(limit));
            eventually(
                &format!("valid version {version} to serve"),
                DEADLINE,
                || {
                    let mut probe = probe.clone();
                    async move { (current_limit(&mut probe).await == Some(limit)).then_some(()) }
                },
            )
            .await;
            slowest = slowest.max(written.elapsed());
        } else {
            let marker = format!("fortnight_{version}");
            let invalid = format!(
                "{}  - key: broken\n    rate_limit:\n      unit: {marker}\n      requests_per_unit: 1\n",
                user_rules(5000 + version)
            );
            write_atomically(dir.path(), "api.yaml", &invalid);
            let reloader = server.reloader().expect("reloader").clone();
            eventually(
                &format!("invalid version {version} to be rejected"),
                DEADLINE,
                || {
                    let status = reloader.status();
                    let rejected = status.failing
                        && status
                            .last_failure
                            .as_ref()
                            .is_some_and(|failure| failure.errors.to_string().contains(&marker));
                    async move { rejected.then_some(()) }
                },
            )
            .await;
        }
    }
    assert_eq!(current_limit(&mut probe).await, Some(1050));
    running.store(false, Ordering::Relaxed);

    let mut total_calls = 0;
    for worker in traffic {
        let (seen, failures, calls) = worker.await.expect("traffic task");
        assert_eq!(failures, 0, "failed RPCs during reloads");
        total_calls += calls;
        for limit in &seen {
            assert!(
                valid.contains(limit),
                "limit {limit} never belonged to a valid version"
            );
        }
        assert!(
            seen.windows(2).all(|pair| pair[0] <= pair[1]),
            "a worker saw an older version after a newer one"
        );
    }
    assert!(total_calls > 0);
    println!("{total_calls} calls; slowest valid version took {slowest:?} to serve");
    assert!(
        slowest <= VALID_WITHIN,
        "a valid version took {slowest:?} to take effect"
    );
    server.shutdown().await.expect("clean shutdown");
}
