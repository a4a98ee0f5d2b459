//! `shardproxy` binary: command line, logging, configuration, then the server.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;

use shardproxy::cli::{Cli, MetricsAddr};
use shardproxy::logging::Logging;
use shardproxy::{config, server};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.version {
        println!("This is shardproxy-{}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    if cli.test_conf {
        return test_conf(&cli);
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shardproxy: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `-t`: nutcracker's messages, plus every problem found (nutcracker prints none).
fn test_conf(cli: &Cli) -> ExitCode {
    let path = cli.conf_file.display();
    match config::load(&cli.conf_file) {
        Ok(_) => {
            eprintln!("shardproxy: configuration file '{path}' syntax is ok");
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("shardproxy: {e}");
            }
            eprintln!("shardproxy: configuration file '{path}' syntax is invalid");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let logging = Logging::init(cli.verbose, cli.output.as_deref())?;
    // Read here rather than by `config::load`, whose message for an unreadable file names it
    // again inside "is invalid:", so that a missing file is reported once, plainly.
    let text = std::fs::read_to_string(&cli.conf_file).with_context(|| {
        format!(
            "cannot read configuration file '{}' (choose one with -c FILE)",
            cli.conf_file.display()
        )
    })?;
    let config = config::parse(&text).map_err(|errors| {
        anyhow::anyhow!(
            "configuration file '{}' is invalid:\n{errors}",
            cli.conf_file.display()
        )
    })?;
    if let Some(pid_file) = &cli.pid_file {
        std::fs::write(pid_file, format!("{}\n", std::process::id()))
            .with_context(|| format!("cannot write pid file {}", pid_file.display()))?;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name("shardproxy-acceptor")
        .build()
        .context("cannot start the runtime")?;
    let opts = server::Options {
        threads: cli.worker_threads(),
        metrics_addr: match cli.metrics_addr {
            MetricsAddr::Off => None,
            MetricsAddr::StatsPort if cli.stats_port == 0 => None,
            MetricsAddr::StatsPort => Some(server::MetricsAt::StatsPort),
            MetricsAddr::Addr(a) => Some(server::MetricsAt::Addr(a)),
        },
        stats_addr: (cli.stats_port != 0).then(|| (cli.stats_addr.clone(), cli.stats_port)),
        config_path: cli.conf_file.clone(),
        watch_interval: (cli.watch_interval > 0).then(|| Duration::from_millis(cli.watch_interval)),
        drain_timeout: Duration::from_secs(cli.drain_timeout),
        logging: Some(logging),
    };
    let result = runtime.block_on(server::run(config, opts, shutdown_signal()));
    if let Some(pid_file) = &cli.pid_file {
        let _ = std::fs::remove_file(pid_file);
    }
    result.map_err(Into::into)
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
