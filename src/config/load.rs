//! Rules from disk: one YAML file, or a directory of them (one domain per file, as
//! envoyproxy/ratelimit lays them out), including a mounted Kubernetes ConfigMap whose entries
//! are symlinks into a hidden `..data` directory. Problems in every file are reported together.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::compile::{CompiledFile, compile_file};
use super::error::{ConfigError, ConfigErrors};
use super::parse::MAX_FILE_BYTES;
use crate::engine::RuleSet;

/// Loads a YAML rules file, or every `*.yaml`/`*.yml` file directly in a directory.
pub fn load_path(path: &Path) -> Result<RuleSet, ConfigErrors> {
    let shown = path.display().to_string();
    let metadata = fs::metadata(path).map_err(|error| io_error(&shown, &error))?;
    let files = if metadata.is_dir() {
        rule_files(path)?
    } else {
        vec![path.to_path_buf()]
    };
    let mut errors = Vec::new();
    let mut compiled: Vec<(String, CompiledFile)> = Vec::new();
    for file in files {
        let shown = file.display().to_string();
        let yaml = match read(&file, &shown) {
            Ok(yaml) => yaml,
            Err(error) => {
                errors.push(*error);
                continue;
            }
        };
        match compile_file(&shown, &yaml) {
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
