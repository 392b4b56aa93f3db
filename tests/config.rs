//! Config loading end to end: one test per kind of error (asserting the exact located error),
//! a file with many problems reporting all of them, directory and ConfigMap loading, and every
//! file shipped under `config/` compiling.

use std::fs;
use std::path::{Path, PathBuf};

use quotad::config::{ConfigError, ConfigErrors, DomainSummary, compile_str, load_path, summarize};
use quotad::engine::{Entry, Policy};

const UNITS: &str = "one of second, minute, hour, day, week, month, year";
const ALGORITHMS: &str = "one of fixed_window, sliding_window, token_bucket, concurrency, distinct";

fn errors(yaml: &str) -> Vec<ConfigError> {
    match compile_str("api.yaml", yaml) {
        Ok(_) => panic!("expected errors for:\n{yaml}"),
        Err(errors) => errors.into_iter().collect(),
    }
}

fn at(line: usize, column: usize, field: &str, expected: &str, found: &str) -> ConfigError {
    in_file("api.yaml", line, column, field, expected, found)
}

fn in_file(
    file: &str,
    line: usize,
    column: usize,
    field: &str,
    expected: &str,
    found: &str,
) -> ConfigError {
    ConfigError {
        file: file.into(),
        line: Some(line),
        column: Some(column),
        field: field.into(),
        expected: expected.into(),
        found: found.into(),
    }
}

/// A domain `d` whose single descriptor `k` has this `rate_limit` body (indented 6 spaces).
fn with_limit(body: &str) -> String {
    format!("domain: d\ndescriptors:\n  - key: k\n    rate_limit:\n{body}")
}

#[test]
fn bad_yaml_syntax_is_located() {
    assert_eq!(
        errors("domain: api\ndescriptors: [\n"),
        [ConfigError {
            file: "api.yaml".into(),
            line: Some(2),
            column: Some(14),
            field: String::new(),
            expected: "valid YAML".into(),
            found: "unclosed bracket '['".into(),
        }]
    );
}

#[test]
fn unknown_keys_name_the_key_and_the_allowed_ones() {
    assert_eq!(
        errors(
            "domain: d\ndescriptors:\n  - key: k\n    rate_limit:\n      unit: minute\n      requests_per_second: 5\n"
        ),
        [at(
            6,
            7,
            "descriptors[0].rate_limit.requests_per_second",
            "one of unit, requests_per_unit, unit_multiplier, algorithm, unlimited, name, replaces, soft, calendar, burst, max_in_flight, lease_ttl, ban",
            "unknown key \"requests_per_second\"",
        )]
    );
    assert_eq!(
        errors("domain: d\ndescriptor: []\n"),
        [at(
            2,
            1,
            "descriptor",
            "one of domain, algorithm, count_rejected_hits, allow_limit_overrides, response_headers, over_limit_body, rlqs, descriptors",
            "unknown key \"descriptor\""
        )]
    );
}

#[test]
fn missing_or_empty_domain() {
    assert_eq!(
        errors("descriptors: []\n"),
        [at(1, 1, "domain", "a non-empty domain name", "nothing")]
    );
    assert_eq!(
        errors("domain: ''\n"),
        [at(1, 9, "domain", "a non-empty domain name", "\"\"")]
    );
}

#[test]
fn duplicate_domains_across_files_name_both_files() {
    let dir = tempfile::tempdir().expect("temp dir");
    fs::write(dir.path().join("a.yaml"), "domain: api\n").expect("write");
    fs::write(dir.path().join("b.yaml"), "# second\ndomain: api\n").expect("write");
    let first = dir.path().join("a.yaml").display().to_string();
    let second = dir.path().join("b.yaml").display().to_string();
    assert_eq!(
        load_errors(dir.path()),
        [in_file(
            &second,
            2,
            9,
            "domain",
            "a domain name no other file uses",
            &format!("\"api\", already the domain of {first}:1"),
        )]
    );
}

#[test]
fn missing_or_empty_key() {
    assert_eq!(
        errors("domain: d\ndescriptors:\n  - value: v\n  - key: ''\n"),
        [
            at(
                3,
                5,
                "descriptors[0].key",
                "a non-empty descriptor key",
                "nothing"
            ),
            at(
                4,
                10,
                "descriptors[1].key",
                "a non-empty descriptor key",
                "\"\""
            ),
        ]
    );
}

#[test]
fn duplicate_values_defaults_and_patterns_at_one_level() {
    let yaml = "
domain: d
descriptors:
  - {key: k, value: v}
  - {key: k, value: v}
  - {key: k}
  - {key: k}
  - {key: k, value: a*}
  - key: k
    value: a*
  - {key: other, value: v}
";
    let expected = "a key and value not already defined at this level";
    assert_eq!(
        errors(yaml),
        [
            at(
                5,
                21,
                "descriptors[1].value",
                expected,
                "k=v again, first defined at descriptors[0] (line 4)"
            ),
            at(
                7,
                11,
                "descriptors[3].key",
                expected,
                "k with no value again, first defined at descriptors[2] (line 6)"
            ),
            at(
                10,
                12,
                "descriptors[5].value",
                expected,
                "k=a* again, first defined at descriptors[4] (line 8)"
            ),
        ]
    );
}

#[test]
fn duplicates_are_checked_per_level_not_across_levels() {
    let yaml = "
domain: d
descriptors:
  - key: k
    descriptors:
      - {key: k, rate_limit: {unit: second, requests_per_unit: 1}}
  - key: j
    descriptors:
      - {key: k, rate_limit: {unit: second, requests_per_unit: 1}}
";
    assert!(compile_str("api.yaml", yaml).is_ok());
}

#[test]
fn bad_unit() {
    assert_eq!(
        errors(&with_limit(
            "      unit: fortnight\n      requests_per_unit: 1\n"
        )),
        [at(
            5,
            13,
            "descriptors[0].rate_limit.unit",
            UNITS,
            "\"fortnight\""
        )]
    );
}

#[test]
fn missing_unit_and_requests_per_unit() {
    assert_eq!(
        errors(&with_limit("      name: x\n")),
        [
            at(5, 7, "descriptors[0].rate_limit.unit", UNITS, "nothing"),
            at(
                5,
                7,
                "descriptors[0].rate_limit.requests_per_unit",
                "a number of requests from 0 to 4294967295, or unlimited: true",
                "nothing",
            ),
        ]
    );
}

#[test]
fn requests_per_unit_must_be_a_u32() {
    let expected = "a whole number from 0 to 4294967295";
    for (written, column) in [("4294967296", 26), ("-1", 26), ("many", 26)] {
        let yaml = with_limit(&format!(
            "      unit: second\n      requests_per_unit: {written}\n"
        ));
        assert_eq!(
            errors(&yaml),
            [at(
                6,
                column,
                "descriptors[0].rate_limit.requests_per_unit",
                expected,
                written
            )],
            "for {written}"
        );
    }
}

#[test]
fn unlimited_with_unit_or_requests_per_unit() {
    assert_eq!(
        errors(&with_limit(
            "      unlimited: true\n      unit: hour\n      requests_per_unit: 5\n"
        )),
        [
            at(
                6,
                13,
                "descriptors[0].rate_limit.unit",
                "no unit when unlimited is true",
                "\"hour\""
            ),
            at(
                7,
                26,
                "descriptors[0].rate_limit.requests_per_unit",
                "no requests_per_unit when unlimited is true",
                "5",
            ),
        ]
    );
}

#[test]
fn unit_multiplier_zero() {
    assert_eq!(
        errors(&with_limit(
            "      unit: hour\n      requests_per_unit: 5\n      unit_multiplier: 0\n"
        )),
        [at(
            7,
            24,
            "descriptors[0].rate_limit.unit_multiplier",
            "a multiplier of at least 1",
            "0"
        )]
    );
}

#[test]
fn bad_algorithm_in_domain_and_limit() {
    let yaml = "domain: d\nalgorithm: gcra\ndescriptors:\n  - key: k\n    rate_limit: {unit: hour, requests_per_unit: 5, algorithm: Sliding}\n";
    assert_eq!(
        errors(yaml),
        [
            at(2, 12, "algorithm", ALGORITHMS, "\"gcra\""),
            at(
                5,
                63,
                "descriptors[0].rate_limit.algorithm",
                ALGORITHMS,
                "\"Sliding\""
            ),
        ]
    );
}

#[test]
fn rate_limit_and_rate_limits_together() {
    let yaml = "
domain: d
descriptors:
  - key: k
    rate_limit: {unit: hour, requests_per_unit: 5}
    rate_limits:
      - {unit: day, requests_per_unit: 50}
";
    assert_eq!(
        errors(yaml),
        [at(
            7,
            7,
            "descriptors[0].rate_limits",
            "either rate_limit or rate_limits, not both",
            "both"
        )]
    );
}

#[test]
fn replaces_must_name_another_limit() {
    let yaml = with_limit(
        "      unit: hour\n      requests_per_unit: 5\n      name: hourly\n      replaces: [{name: hourly}, {name: ''}]\n",
    );
    let expected = "the name of another limit";
    assert_eq!(
        errors(&yaml),
        [
            at(
                8,
                25,
                "descriptors[0].rate_limit.replaces[0].name",
                expected,
                "\"hourly\", this limit's own name"
            ),
            at(
                8,
                41,
                "descriptors[0].rate_limit.replaces[1].name",
                expected,
                "\"\""
            ),
        ]
    );
}

#[test]
fn two_limits_with_one_window_and_algorithm_would_share_a_counter() {
    let yaml = "
domain: d
descriptors:
  - key: k
    rate_limits:
      - {unit: minute, requests_per_unit: 5}
      - {unit: MINUTE, requests_per_unit: 9, algorithm: fixed_window}
      - {unit: minute, requests_per_unit: 9, algorithm: sliding_window}
";
    assert_eq!(
        errors(yaml),
        [at(
            7,
            9,
            "descriptors[0].rate_limits[1]",
            "a window and algorithm no other limit on this descriptor uses",
            "1 minute fixed_window, same as descriptors[0].rate_limits[0]",
        )]
    );
}

#[test]
fn a_yaml_bomb_is_rejected_by_the_budget() {
    // Each level multiplies the previous one by nine; the last line alone expands to 9^6 nodes.
    let mut yaml =
        String::from("domain: d\ndescriptors:\n  - key: &l0 [x, x, x, x, x, x, x, x, x]\n");
    for level in 1..6 {
        let previous = format!("*l{}", level - 1);
        let items = [previous.as_str(); 9].join(", ");
        yaml.push_str(&format!("  - key: &l{level} [{items}]\n"));
    }
    let found = errors(&yaml);
    assert_eq!(found.len(), 1);
    assert!(
        found[0]
            .expected
            .starts_with("a document within the parser limits"),
        "{found:?}"
    );
    assert_eq!(
        found[0].found,
        "aliases that expand to more than 50000 events"
    );
    assert_eq!(
        (found[0].line, found[0].field.as_str()),
        (Some(7), ""),
        "{found:?}"
    );
}

#[test]
fn deep_nesting_is_rejected_by_the_budget() {
    let yaml = format!(
        "domain: d\ndescriptors: {}{}\n",
        "[".repeat(100),
        "]".repeat(100)
    );
    let found = errors(&yaml);
    assert_eq!(found.len(), 1);
    assert!(
        found[0]
            .expected
            .starts_with("a document within the parser limits"),
        "{found:?}"
    );
    assert!(found[0].found.contains("Depth"), "{found:?}");
}

#[test]
fn descriptors_nested_up_to_the_depth_limit_still_parse() {
    // Root map, then a list and a map per level: 11 levels plus a rate_limit map is depth 24.
    let mut yaml = String::from("domain: d\n");
    for level in 0..11 {
        let indent = "  ".repeat(level * 2);
        yaml.push_str(&format!(
            "{indent}descriptors:\n{indent}  - key: k{level}\n"
        ));
    }
    let indent = "  ".repeat(11 * 2);
    yaml.push_str(&format!(
        "{indent}rate_limit: {{unit: second, requests_per_unit: 1}}\n"
    ));
    let rules = compile_str("api.yaml", &yaml).expect("deep but valid");
    let keys: Vec<String> = (0..11).map(|level| format!("k{level}")).collect();
    let entries: Vec<Entry<'_>> = keys.iter().map(|key| Entry { key, value: "v" }).collect();
    let rule = rules
        .domain("d")
        .and_then(|d| d.find(&entries))
        .expect("deepest rule");
    assert_eq!(rule.key_path.split('.').count(), 11);
}

#[test]
fn an_oversized_file_is_rejected_before_parsing() {
    let yaml = format!("domain: d\n#{}\n", "x".repeat(5 * 1024 * 1024));
    assert_eq!(
        errors(&yaml),
        [ConfigError {
            file: "api.yaml".into(),
            line: None,
            column: None,
            field: String::new(),
            expected: "a rules file of at most 4194304 bytes".into(),
            found: format!("{} bytes", yaml.len()),
        }]
    );
}

#[test]
fn a_file_with_many_problems_reports_all_of_them() {
    let path = fixture("many_problems.yaml");
    let file = path.display().to_string();
    let e = |line, column, field: &str, expected: &str, found: &str| {
        in_file(&file, line, column, field, expected, found)
    };
    assert_eq!(
        load_errors(&path),
        [
            e(2, 9, "domain", "a non-empty domain name", "\"\""),
            e(3, 12, "algorithm", ALGORITHMS, "\"leaky_bucket\""),
            e(
                8,
                13,
                "descriptors[0].rate_limit.unit",
                UNITS,
                "\"fortnight\""
            ),
            e(
                11,
                12,
                "descriptors[1].value",
                "a key and value not already defined at this level",
                "plan=pro again, first defined at descriptors[0] (line 6)",
            ),
            e(
                12,
                5,
                "descriptors[2].key",
                "a non-empty descriptor key",
                "nothing"
            ),
            e(
                18,
                7,
                "descriptors[3].rate_limits",
                "either rate_limit or rate_limits, not both",
                "both"
            ),
            e(
                16,
                13,
                "descriptors[3].rate_limit.unit",
                "no unit when unlimited is true",
                "\"minute\""
            ),
            e(
                20,
                26,
                "descriptors[3].rate_limits[0].unit_multiplier",
                "a multiplier of at least 1",
                "0"
            ),
            e(
                24,
                19,
                "descriptors[3].rate_limits[1].replaces[0].name",
                "the name of another limit",
                "\"hourly\", this limit's own name",
            ),
            e(
                21,
                9,
                "descriptors[3].rate_limits[1].requests_per_unit",
                "a number of requests from 0 to 4294967295, or unlimited: true",
                "nothing",
            ),
        ]
    );
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/config")
        .join(name)
}

fn load_errors(path: &Path) -> Vec<ConfigError> {
    match load_path(path) {
        Ok(_) => panic!("expected errors loading {}", path.display()),
        Err(errors) => errors.errors().to_vec(),
    }
}

const LIMITED: &str =
    "descriptors:\n  - key: k\n    rate_limit: {unit: second, requests_per_unit: 1}\n";

#[test]
fn a_directory_loads_every_visible_yaml_file_and_ignores_the_rest() {
    let dir = tempfile::tempdir().expect("temp dir");
    let write = |name: &str, text: String| fs::write(dir.path().join(name), text).expect("write");
    write("a.yaml", format!("domain: a\n{LIMITED}"));
    write("b.yml", format!("domain: b\n{LIMITED}"));
    write(".hidden.yaml", "not: [valid".into());
    write("notes.txt", "not yaml at all: [".into());
    fs::create_dir(dir.path().join("nested.yaml")).expect("mkdir");
    let rules = load_path(dir.path()).expect("loads");
    let summary = summarize(&rules);
    assert_eq!(
        summary,
        [
            DomainSummary {
                domain: "a".into(),
                rules: 1,
                limits: 1
            },
            DomainSummary {
                domain: "b".into(),
                rules: 1,
                limits: 1
            },
        ]
    );
    assert_eq!(summary[0].to_string(), "domain a: 1 rules, 1 limits");
}

#[test]
fn errors_from_every_file_are_reported_in_name_order() {
    let dir = tempfile::tempdir().expect("temp dir");
    fs::write(dir.path().join("b.yaml"), "domain: b\nbogus: 1\n").expect("write");
    fs::write(dir.path().join("a.yaml"), "descriptors: []\n").expect("write");
    let found = load_errors(dir.path());
    let files: Vec<&str> = found.iter().map(|e| e.file.as_str()).collect();
    let a = dir.path().join("a.yaml").display().to_string();
    let b = dir.path().join("b.yaml").display().to_string();
    assert_eq!(files, [a.as_str(), b.as_str()]);
    assert_eq!(found[1].field, "bogus");
}

#[cfg(unix)]
#[test]
fn a_kubernetes_configmap_mount_loads_through_its_symlinks() {
    use std::os::unix::fs::symlink;
    // kubelet mounts ..2024_01_01/x.yaml, points ..data at it, and links x.yaml -> ..data/x.yaml.
    let dir = tempfile::tempdir().expect("temp dir");
    let version = dir.path().join("..2024_01_01_00_00_00.1");
    fs::create_dir(&version).expect("mkdir");
    fs::write(version.join("api.yaml"), format!("domain: api\n{LIMITED}")).expect("write");
    symlink("..2024_01_01_00_00_00.1", dir.path().join("..data")).expect("link");
    symlink("..data/api.yaml", dir.path().join("api.yaml")).expect("link");
    let rules = load_path(dir.path()).expect("loads");
    let api = rules.domain("api").expect("api domain");
    let rule = api
        .find(&[Entry {
            key: "k",
            value: "v",
        }])
        .expect("rule");
    assert!(matches!(rule.policy, Policy::Limited(_)));
    assert_eq!(
        rules.domains().count(),
        1,
        "the ..data directory is not read twice"
    );
}

#[test]
fn an_empty_directory_is_an_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    fs::write(dir.path().join("README.md"), "no rules here").expect("write");
    let shown = dir.path().display().to_string();
    assert_eq!(
        load_errors(dir.path()),
        [ConfigError {
            file: shown.clone(),
            line: None,
            column: None,
            field: String::new(),
            expected: "at least one *.yaml or *.yml file".into(),
            found: format!("no *.yaml files in {shown}"),
        }]
    );
}

#[test]
fn io_errors_name_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("missing.yaml");
    let found = load_errors(&missing);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].file, missing.display().to_string());
    assert_eq!(found[0].expected, "a readable file or directory");
    let errors = load_path(&missing).expect_err("missing file");
    assert!(
        errors
            .to_string()
            .starts_with(&missing.display().to_string())
    );
}

#[test]
fn config_errors_display_one_line_per_error() {
    let errors: ConfigErrors =
        compile_str("api.yaml", "domain: ''\nalgorithm: x\n").expect_err("invalid");
    assert_eq!(errors.len(), 2);
    assert_eq!(
        errors.to_string(),
        "api.yaml:1:9: domain: expected a non-empty domain name, found \"\"\n\
         api.yaml:2:12: algorithm: expected one of fixed_window, sliding_window, token_bucket, concurrency, distinct, found \"x\""
    );
}

#[test]
fn every_shipped_config_file_compiles() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut checked = 0;
    for entry in fs::read_dir(&dir).expect("config/ exists") {
        let path = entry.expect("entry").path();
        if path
            .extension()
            .is_some_and(|ext| ext == "yaml" || ext == "yml")
        {
            if let Err(errors) = load_path(&path) {
                panic!("{} does not compile:\n{errors}", path.display());
            }
            checked += 1;
        }
    }
    assert!(checked > 0, "no config files found in {}", dir.display());
    load_path(&dir).expect("the config directory loads as a whole");
}

#[test]
fn the_example_config_has_the_documented_plans() {
    let rules = load_path(&Path::new(env!("CARGO_MANIFEST_DIR")).join("config/example.yaml"))
        .expect("example compiles");
    let api = rules.domain("api").expect("api domain");
    let limits = |plan: &'static str| match &api
        .find(&[
            Entry {
                key: "plan",
                value: plan,
            },
            Entry {
                key: "api_key",
                value: "k",
            },
        ])
        .expect("plan rule")
        .policy
    {
        Policy::Limited(limits) => limits
            .iter()
            .map(|l| l.requests_per_unit)
            .collect::<Vec<_>>(),
        Policy::Unlimited => Vec::new(),
    };
    assert_eq!(limits("starter"), [10, 5_000]);
    assert_eq!(limits("pro"), [50, 40_000]);
    assert_eq!(limits("business"), [150]);
    assert_eq!(limits("enterprise"), [500]);
    assert_eq!(
        api.find(&[Entry {
            key: "path",
            value: "/healthz"
        }]),
        None
    );
    assert!(
        api.find(&[Entry {
            key: "path",
            value: "/v1/users"
        }])
        .is_some()
    );
}
