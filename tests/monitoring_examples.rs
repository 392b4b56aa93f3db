//! The shipped monitoring examples stay valid: `promtool` checks the Prometheus config and
//! alert rules and runs the alerts' unit tests, and every quotad metric the alerts and the
//! Grafana dashboard name is one quotad exports. promtool comes from Debian's `prometheus`
//! package; without it these checks fail in CI (`CI` set) and are skipped loudly elsewhere.

use std::path::{Path, PathBuf};
use std::process::Command;

use quotad::metrics::names;

fn example(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(path)
}

/// The promtool to run, or `None` (after saying so) when it is missing outside CI.
fn promtool() -> Option<PathBuf> {
    let tool =
        std::env::var_os("PROMTOOL").map_or_else(|| PathBuf::from("promtool"), PathBuf::from);
    match Command::new(&tool).arg("--version").output() {
        Ok(output) if output.status.success() => Some(tool),
        _ if std::env::var_os("CI").is_some() => {
            panic!("promtool not found (install Debian's `prometheus` package, or set PROMTOOL)")
        }
        _ => {
            eprintln!(
                "SKIPPED: promtool not found; install Debian's `prometheus` package to run these checks"
            );
            None
        }
    }
}

fn run(tool: &Path, args: &[&str], file: &Path) {
    let output = Command::new(tool)
        .args(args)
        .arg(file)
        .output()
        .expect("promtool runs");
    assert!(
        output.status.success(),
        "promtool {} {} failed:\n{}{}",
        args.join(" "),
        file.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn promtool_accepts_the_prometheus_examples() {
    let Some(tool) = promtool() else {
        return;
    };
    run(
        &tool,
        &["check", "config"],
        &example("prometheus/prometheus.yml"),
    );
    run(
        &tool,
        &["check", "rules"],
        &example("prometheus/quotad-alerts.yml"),
    );
    run(
        &tool,
        &["test", "rules"],
        &example("prometheus/quotad-alerts.test.yml"),
    );
}

/// Every `quotad_…` identifier in `text`.
fn metric_names(text: &str) -> Vec<&str> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("quotad_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        found.push(&tail[..end]);
        rest = &tail[end..];
    }
    found
}

fn is_exported(name: &str) -> bool {
    let base = ["_bucket", "_count", "_sum"]
        .iter()
        .find_map(|suffix| name.strip_suffix(suffix))
        .filter(|base| *base == names::REQUEST_DURATION)
        .unwrap_or(name);
    names::ALL.contains(&base)
}

#[test]
fn alerts_and_dashboard_use_only_exported_metrics() {
    let dashboard =
        std::fs::read_to_string(example("grafana/quotad-dashboard.json")).expect("dashboard");
    let parsed: serde_json::Value = serde_json::from_str(&dashboard).expect("dashboard is JSON");
    assert!(
        parsed["panels"]
            .as_array()
            .is_some_and(|panels| panels.len() >= 6)
    );
    let alerts = std::fs::read_to_string(example("prometheus/quotad-alerts.yml")).expect("alerts");
    for (file, text) in [("dashboard", &dashboard), ("alerts", &alerts)] {
        let used = metric_names(text);
        assert!(!used.is_empty(), "{file} names no quotad metric");
        for name in used {
            assert!(
                is_exported(name),
                "{file} uses {name}, which quotad does not export"
            );
        }
    }
}
