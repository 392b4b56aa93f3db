//! The command line, in one place: every flag, its default and its `QUOTAD_*` environment
//! variable, so containers can configure quotad without a wrapper script.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::telemetry::LogFormat;

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
}

/// The subcommands.
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
    /// Address for HTTP (`GET /healthcheck`).
    #[arg(long, env = "QUOTAD_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    pub http_addr: SocketAddr,
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
}
