//! The command line, in one place: every flag, its default and its `QUOTAD_*` environment
//! variable, so containers can configure quotad without a wrapper script.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::engine::HeaderStyle;
use crate::metrics::NearLimitRatio;
use crate::telemetry::LogFormat;

mod store;
mod transport;

pub use store::{StoreArgs, StoreArgsError, StoreKind};
pub use transport::TransportArgs;

/// Exit status of `query` when the server answered OVER_LIMIT (2 is taken by usage errors).
pub const EXIT_OVER_LIMIT: u8 = 3;

/// quotad: rate-limit decisions for Envoy over gRPC.
#[derive(Debug, Parser)]
#[command(name = "quotad", version, about, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// Log line format.
    #[arg(
        long,
        global = true,
        env = "QUOTAD_LOG_FORMAT",
        value_enum,
        default_value_t = LogFormat::Text
    )]
    pub log_format: LogFormat,
    /// Log filter: a level (`info`) or `tracing` directives (`info,quotad=debug`).
    #[arg(long, global = true, env = "QUOTAD_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// Runtime worker threads (default: one per core); 1 runs everything on one thread.
    #[arg(long, global = true, env = "QUOTAD_WORKER_THREADS")]
    pub worker_threads: Option<NonZeroUsize>,
}

/// The subcommands.
// Parsed once per process: boxing `serve`'s many flags would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve ShouldRateLimit (and gRPC health) plus the HTTP health check.
    Serve(ServeArgs),
    /// Validate the configuration and print a summary of each domain.
    Check(CheckArgs),
    /// Ask a running server once and print its answer.
    #[command(
        after_help = "Exit status: 0 when the answer is OK, 3 when it is OVER_LIMIT, \
                            1 when the call failed, 2 for usage errors."
    )]
    Query(QueryArgs),
}

/// Flags of `quotad serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Rule file, or a directory whose `*.yaml` files are all loaded.
    #[arg(long, env = "QUOTAD_CONFIG")]
    pub config: PathBuf,
    /// Address for gRPC (RateLimitService and grpc.health.v1).
    #[arg(long, env = "QUOTAD_GRPC_ADDR", default_value = "0.0.0.0:8081")]
    pub grpc_addr: SocketAddr,
    /// Address for HTTP (probes, `/metrics`, `POST /json`, `GET /usage`, `/rlconfig`,
    /// `POST /reload`).
    #[arg(long, env = "QUOTAD_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    pub http_addr: SocketAddr,
    /// Share of a limit at which allowed hits also count as `near_limit` (0 < ratio <= 1).
    #[arg(long, env = "QUOTAD_NEAR_LIMIT_RATIO", default_value = "0.8", value_parser = parse_ratio)]
    pub near_limit_ratio: NearLimitRatio,
    /// After SIGTERM, how long health checks answer 503 before the listeners close (`5s`, `0`).
    #[arg(long, env = "QUOTAD_DRAIN_DELAY", default_value = "5s", value_parser = parse_duration)]
    pub drain_delay: Duration,
    /// Do not reload when the config files change (SIGHUP and `POST /reload` still do).
    #[arg(long, env = "QUOTAD_NO_WATCH")]
    pub no_watch: bool,
    /// How long the config files must stay unchanged before a change is reloaded.
    #[arg(long, env = "QUOTAD_RELOAD_DEBOUNCE", default_value = "200ms", value_parser = parse_duration)]
    pub reload_debounce: Duration,
    /// Rate-limit headers for domains whose rules choose none: none, legacy, legacy_delta,
    /// ietf or envoy_ratelimit
    #[arg(long, env = "QUOTAD_DEFAULT_HEADER_STYLE", default_value = "none", value_parser = parse_header_style)]
    pub default_header_style: HeaderStyle,
    /// Serve `GET /usage` (customer usage data) to every client, not only loopback ones.
    #[arg(long, env = "QUOTAD_USAGE_ENDPOINT_PUBLIC")]
    pub usage_endpoint_public: bool,
    /// TLS, keepalive, connection age, size and load limits of the gRPC listener.
    #[command(flatten)]
    pub transport: TransportArgs,
    /// Where counters live and what happens when that store fails.
    #[command(flatten)]
    pub store: StoreArgs,
}

/// Flags of `quotad check`.
#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    /// Rule file, or a directory whose `*.yaml` files are all loaded.
    #[arg(long, env = "QUOTAD_CONFIG")]
    pub config: PathBuf,
}

/// Flags of `quotad query`.
#[derive(Debug, Clone, Args)]
pub struct QueryArgs {
    /// Server to ask.
    #[arg(
        long,
        env = "QUOTAD_QUERY_ADDR",
        default_value = "http://127.0.0.1:8081"
    )]
    pub addr: String,
    /// Rate-limit domain.
    #[arg(long, env = "QUOTAD_QUERY_DOMAIN")]
    pub domain: String,
    /// A descriptor as `key=value[,key2=value2]`; repeat for several descriptors.
    #[arg(
        long = "descriptor",
        env = "QUOTAD_QUERY_DESCRIPTOR",
        required = true,
        value_parser = parse_descriptor
    )]
    pub descriptors: Vec<DescriptorArg>,
    /// Hits each descriptor adds; 0 checks the limits without consuming them.
    #[arg(long, env = "QUOTAD_QUERY_HITS", default_value_t = 1)]
    pub hits: u32,
    /// Print the answer as JSON instead of a table.
    #[arg(long, env = "QUOTAD_QUERY_JSON")]
    pub json: bool,
}

/// One `--descriptor` value: its entries in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescriptorArg {
    /// `(key, value)` pairs, outermost first.
    pub entries: Vec<(String, String)>,
}

/// Parses `key=value[,key2=value2]`; values may be empty or contain `=`, keys may not be empty.
pub fn parse_descriptor(text: &str) -> Result<DescriptorArg, String> {
    if text.is_empty() {
        return Err("expected key=value[,key2=value2], got an empty string".into());
    }
    let entries = text
        .split(',')
        .map(|pair| match pair.split_once('=') {
            Some(("", _)) => Err(format!("empty key in {pair:?}")),
            Some((key, value)) => Ok((key.to_owned(), value.to_owned())),
            None => Err(format!("expected key=value, got {pair:?}")),
        })
        .collect::<Result<_, _>>()?;
    Ok(DescriptorArg { entries })
}

/// Parses a header style as written in the rules' `response_headers.style`.
pub fn parse_header_style(text: &str) -> Result<HeaderStyle, String> {
    HeaderStyle::parse(text).ok_or_else(|| {
        format!("expected one of none, legacy, legacy_delta, ietf, envoy_ratelimit, got {text:?}")
    })
}

/// Parses a near-limit ratio such as `0.9`.
pub fn parse_ratio(text: &str) -> Result<NearLimitRatio, String> {
    let ratio: f64 = text
        .parse()
        .map_err(|_| format!("expected a number such as 0.8, got {text:?}"))?;
    NearLimitRatio::new(ratio).map_err(|error| error.to_string())
}

/// Parses a duration as whole milliseconds, seconds or minutes: `250ms`, `5s`, `1m`, or `0`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let invalid = || format!("expected a duration such as 250ms, 5s or 1m, got {text:?}");
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(invalid)?;
    let amount: u64 = text[..split].parse().map_err(|_| invalid())?;
    match &text[split..] {
        "ms" => Ok(Duration::from_millis(amount)),
        "s" => Ok(Duration::from_secs(amount)),
        "m" => Ok(Duration::from_secs(amount.saturating_mul(60))),
        _ => Err(invalid()),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn descriptors_parse_in_order() {
        let parsed = parse_descriptor("plan=pro,api_key=a=b,empty=").unwrap();
        let pairs: Vec<(&str, &str)> = parsed
            .entries
            .iter()
            .map(|(key, value)| (key.as_str(), value.as_str()))
            .collect();
        assert_eq!(pairs, [("plan", "pro"), ("api_key", "a=b"), ("empty", "")]);
    }

    #[test]
    fn bad_descriptors_are_refused() {
        assert!(parse_descriptor("").is_err());
        assert!(parse_descriptor("novalue").is_err());
        assert!(parse_descriptor("=v").is_err());
        assert!(parse_descriptor("a=1,,b=2").is_err());
    }

    #[test]
    fn durations_and_ratios_parse() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        for bad in ["", "5", "s", "1h", "-1s", "1.5s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_ratio("0.9").map(NearLimitRatio::get), Ok(0.9));
        assert!(parse_ratio("0").is_err());
        assert!(parse_ratio("lots").is_err());
    }

    #[test]
    fn header_styles_parse_by_their_yaml_names() {
        assert_eq!(parse_header_style("ietf"), Ok(HeaderStyle::Ietf));
        let cli = Cli::try_parse_from(["quotad", "serve", "--config", "c.yaml"]).unwrap();
        let Command::Serve(serve) = cli.command else {
            panic!("expected serve");
        };
        assert_eq!(
            serve.default_header_style,
            HeaderStyle::None,
            "envoyproxy's default"
        );
        assert!(
            parse_header_style("draft")
                .unwrap_err()
                .contains("legacy_delta")
        );
    }

    #[test]
    fn query_flags_parse() {
        let cli = Cli::try_parse_from([
            "quotad",
            "query",
            "--domain",
            "api",
            "--descriptor",
            "k=v",
            "--descriptor",
            "a=1,b=2",
            "--json",
            "--log-level",
            "debug",
        ])
        .unwrap();
        let Command::Query(args) = cli.command else {
            panic!("expected query, got {:?}", cli.command);
        };
        assert_eq!(args.descriptors.len(), 2);
        assert!(args.json);
        assert_eq!(args.hits, 1);
        assert_eq!(cli.log_level, "debug");
    }

    #[test]
    fn worker_threads_are_optional_positive_and_global() {
        let default = Cli::try_parse_from(["quotad", "check", "--config", "c.yaml"]).unwrap();
        assert_eq!(default.worker_threads, None, "tokio's default");
        let after = [
            "quotad",
            "serve",
            "--config",
            "c.yaml",
            "--worker-threads",
            "1",
        ];
        let one = Cli::try_parse_from(after).unwrap();
        assert_eq!(one.worker_threads, NonZeroUsize::new(1));
        let before = [
            "quotad",
            "--worker-threads",
            "4",
            "serve",
            "--config",
            "c.yaml",
        ];
        assert_eq!(
            Cli::try_parse_from(before).unwrap().worker_threads,
            NonZeroUsize::new(4)
        );
        let zero = [
            "quotad",
            "serve",
            "--config",
            "c.yaml",
            "--worker-threads",
            "0",
        ];
        assert!(Cli::try_parse_from(zero).is_err());
    }
}
