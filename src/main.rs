//! The `quotad` binary: parse the command line, set up logging, run one subcommand and turn its
//! outcome into an exit status. Everything else lives in the library so tests can reach it.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use arc_swap::ArcSwap;
use clap::Parser;
use quotad::cli::{CheckArgs, Cli, Command, EXIT_OVER_LIMIT, QueryArgs, ServeArgs};
use quotad::clock::SystemClock;
use quotad::config::ConfigErrors;
use quotad::{app, config, query, telemetry};

/// mimalloc, not glibc malloc: the memory store's small counter entries stay packed instead of
/// filling the holes request buffers leave (RSS per key: docs/PERFORMANCE.md, memory section).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(error) = telemetry::init(cli.log_format, &cli.log_level) {
        eprintln!("error: {}", telemetry::error_chain(&error));
        return ExitCode::FAILURE;
    }
    let runtime = match app::build_runtime(cli.worker_threads) {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve(args).await,
            Command::Check(args) => check(&args),
            Command::Query(args) => run_query(&args).await,
        }
    });
    outcome.unwrap_or_else(|error| {
        eprintln!("error: {}", telemetry::error_chain(error.as_ref()));
        ExitCode::FAILURE
    })
}

async fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let Some(loaded) = load(&args.config, config::load_versioned) else {
        return Ok(ExitCode::FAILURE);
    };
    for summary in config::summarize(&loaded.rules) {
        tracing::info!(%summary, "rules loaded");
    }
    tracing::info!(version = %loaded.version, "configuration loaded");
    // Installed before the listeners open, so an early SIGTERM still shuts down cleanly.
    let signal = app::shutdown_signal()?;
    let rules = Arc::new(ArcSwap::new(loaded.rules));
    let mut server_config =
        app::ServerConfig::new(args.grpc_addr, args.http_addr, rules, SystemClock);
    server_config.near_limit_ratio = args.near_limit_ratio;
    server_config.drain_delay = args.drain_delay;
    server_config.grpc = args.transport.settings();
    server_config.store = args.store.settings()?;
    server_config.on_store_error = args.store.on_store_error;
    server_config.default_response.style = args.default_header_style;
    server_config.usage_endpoint_public = args.usage_endpoint_public;
    let mut reload = app::ReloadSettings::new(args.config.clone(), loaded.version);
    reload.watch = !args.no_watch;
    reload.debounce = args.reload_debounce;
    server_config.reload = Some(reload);
    let server = app::start(server_config).await?;
    // One server per process here, so `metrics::counter!` anywhere can land in its registry.
    server.metrics().install_global();
    server.run_until(signal).await?;
    Ok(ExitCode::SUCCESS)
}

fn check(args: &CheckArgs) -> anyhow::Result<ExitCode> {
    let Some(rules) = load(&args.config, config::load_path) else {
        return Ok(ExitCode::FAILURE);
    };
    for summary in config::summarize(&rules) {
        println!("{summary}");
    }
    Ok(ExitCode::SUCCESS)
}

async fn run_query(args: &QueryArgs) -> anyhow::Result<ExitCode> {
    let response = query::send(args).await?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&query::render_json(args, &response))?
        );
    } else {
        print!("{}", query::render_table(args, &response));
    }
    Ok(if query::is_over_limit(&response) {
        ExitCode::from(EXIT_OVER_LIMIT)
    } else {
        ExitCode::SUCCESS
    })
}

/// Loads the rules with `loader`, printing every error (one per line) when there are any.
fn load<T>(path: &Path, loader: fn(&Path) -> Result<T, ConfigErrors>) -> Option<T> {
    match loader(path) {
        Ok(rules) => Some(rules),
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!(
                "{}: {} configuration error(s); nothing was loaded",
                path.display(),
                errors.len()
            );
            None
        }
    }
}
