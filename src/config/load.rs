//! Rules from disk: one YAML file, or a directory of them (one domain per file, as
//! envoyproxy/ratelimit lays them out), including a mounted Kubernetes ConfigMap whose entries
//! are symlinks into a hidden `..data` directory. Problems in every file are reported together.
//! Files are independent, so a load may compile them on several threads (start-up does: 10,000
//! rules in ten files take about 200 ms of CPU, most of it YAML parsing).

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::compile::{CompiledFile, compile_file};
use super::error::{ConfigError, ConfigErrors};
use super::parse::MAX_FILE_BYTES;
use crate::engine::RuleSet;

/// Most threads one load compiles files on.
const MAX_LOAD_THREADS: usize = 8;
/// Stack of each extra compiling thread: the main thread's 8 MiB (deep YAML recurses).
const LOAD_THREAD_STACK: usize = 8 << 20;

/// Loads a YAML rules file, or every `*.yaml`/`*.yml` file directly in a directory, compiling
/// files on as many threads as the process may use (at most 8).
pub fn load_path(path: &Path) -> Result<RuleSet, ConfigErrors> {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    load_path_on(path, cores.min(MAX_LOAD_THREADS))
}

/// [`load_path`] on at most `threads` threads (1: all on the calling thread).
pub(crate) fn load_path_on(path: &Path, threads: usize) -> Result<RuleSet, ConfigErrors> {
    let shown = path.display().to_string();
    let metadata = fs::metadata(path).map_err(|error| io_error(&shown, &error))?;
    let files = if metadata.is_dir() {
        rule_files(path)?
    } else {
        vec![path.to_path_buf()]
    };
    let mut errors = Vec::new();
    let mut compiled: Vec<(String, CompiledFile)> = Vec::new();
    // In file order, whichever thread compiled them: errors and duplicate domains read the same.
    for (shown, result) in compile_files(&files, threads) {
        match result {
            Ok(domain) => compiled.push((shown, domain)),
            Err(found) => errors.extend(found),
        }
    }
    errors.extend(duplicate_domains(&compiled));
    if errors.is_empty() {
        Ok(RuleSet::new(
            compiled.into_iter().map(|(_, file)| file.rules),
        ))
    } else {
        Err(ConfigErrors::new(errors))
    }
}

/// One file read and compiled: its shown name and its domain, or every problem in it.
type FileResult = (String, Result<CompiledFile, Vec<ConfigError>>);

/// Reads and compiles `files`, the calling thread and up to `threads - 1` helpers each taking
/// the next file not yet taken; results come back in `files` order. A helper that cannot be
/// started only means fewer threads.
fn compile_files(files: &[PathBuf], threads: usize) -> Vec<FileResult> {
    let next = AtomicUsize::new(0);
    let work = || {
        let mut done = Vec::new();
        loop {
            let index = next.fetch_add(1, Ordering::Relaxed);
            let Some(file) = files.get(index) else {
                return done;
            };
            done.push((index, compile_one(file)));
        }
    };
    let helpers = threads.min(files.len()).saturating_sub(1);
    let mut results: Vec<(usize, FileResult)> = std::thread::scope(|scope| {
        let started: Vec<_> = (0..helpers)
            .filter_map(|_| {
                std::thread::Builder::new()
                    .name("quotad-load".into())
                    .stack_size(LOAD_THREAD_STACK)
                    .spawn_scoped(scope, work)
                    .ok()
            })
            .collect();
        let mut results = work();
        for helper in started {
            match helper.join() {
                Ok(done) => results.extend(done),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        results
    });
    results.sort_unstable_by_key(|(index, _)| *index);
    results.into_iter().map(|(_, result)| result).collect()
}

/// Reads and compiles one file.
fn compile_one(file: &Path) -> FileResult {
    let shown = file.display().to_string();
    let result = match read(file, &shown) {
        Ok(yaml) => compile_file(&shown, &yaml),
        Err(error) => Err(vec![*error]),
    };
    (shown, result)
}

/// The rule files of a directory, sorted by name: visible `*.yaml`/`*.yml` entries that are
/// (or link to) regular files. Hidden entries are skipped, which skips a ConfigMap's `..data`.
fn rule_files(dir: &Path) -> Result<Vec<PathBuf>, ConfigErrors> {
    let shown = dir.display().to_string();
    let entries = fs::read_dir(dir).map_err(|error| io_error(&shown, &error))?;
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|error| io_error(&shown, &error))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let wanted = !name.starts_with('.') && (name.ends_with(".yaml") || name.ends_with(".yml"));
        if !wanted {
            continue;
        }
        let path = entry.path();
        // fs::metadata follows symlinks, so a ConfigMap's `x.yaml -> ..data/x.yaml` counts.
        match fs::metadata(&path) {
            Ok(metadata) if metadata.is_file() => files.push(path),
            Ok(_) => {}
            Err(error) => errors.push(io_error(&path.display().to_string(), &error)),
        }
    }
    if !errors.is_empty() {
        return Err(ConfigErrors::new(errors));
    }
    if files.is_empty() {
        return Err(ConfigError::whole_file(
            &shown,
            "at least one *.yaml or *.yml file",
            format!("no *.yaml files in {shown}"),
        )
        .into());
    }
    files.sort();
    Ok(files)
}

/// Reads a file as UTF-8, refusing more than `MAX_FILE_BYTES` without reading it all.
fn read(path: &Path, shown: &str) -> Result<String, Box<ConfigError>> {
    let file = File::open(path).map_err(|error| Box::new(io_error(shown, &error)))?;
    let limit = u64::try_from(MAX_FILE_BYTES)
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    let mut text = String::new();
    file.take(limit)
        .read_to_string(&mut text)
        .map_err(|error| Box::new(io_error(shown, &error)))?;
    if text.len() > MAX_FILE_BYTES {
        return Err(Box::new(ConfigError::whole_file(
            shown,
            format!("a rules file of at most {MAX_FILE_BYTES} bytes"),
            "a larger file",
        )));
    }
    Ok(text)
}

fn io_error(shown: &str, error: &io::Error) -> ConfigError {
    if error.kind() == io::ErrorKind::InvalidData {
        return ConfigError::whole_file(shown, "UTF-8 text", "bytes that are not UTF-8");
    }
    ConfigError::whole_file(shown, "a readable file or directory", error.to_string())
}

/// One error per file whose domain an earlier file (in name order) already defines.
fn duplicate_domains(compiled: &[(String, CompiledFile)]) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    for (index, (file, domain)) in compiled.iter().enumerate() {
        let name = domain.rules.name();
        let first = compiled[..index]
            .iter()
            .find(|(_, earlier)| earlier.rules.name() == name);
        if let Some((first_file, first)) = first {
            errors.push(ConfigError::at(
                file,
                domain.domain_at,
                "domain",
                "a domain name no other file uses",
                format!(
                    "{name:?}, already the domain of {first_file}:{}",
                    first.domain_at.line()
                ),
            ));
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_change_nothing_but_speed() {
        let dir = tempfile::tempdir().unwrap();
        for index in 0..6 {
            // Every other file is bad, and two share a domain: order matters in every error.
            let text = if index % 2 == 0 {
                format!("domain: d{}\ndescriptors:\n  - key: k\n", index / 4)
            } else {
                format!(
                    "domain: e{index}\ndescriptors:\n  - key: k\n    rate_limit: {{unit: fortnight, requests_per_unit: 1}}\n"
                )
            };
            fs::write(dir.path().join(format!("f{index}.yaml")), text).unwrap();
        }
        let one = load_path_on(dir.path(), 1).unwrap_err().to_string();
        assert_eq!(one.lines().count(), 4, "{one}");
        for threads in [2, 3, 8] {
            let many = load_path_on(dir.path(), threads).unwrap_err().to_string();
            assert_eq!(many, one, "{threads} threads");
        }
    }
}
