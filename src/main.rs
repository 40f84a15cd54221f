//! The `pgsplit` command line: `run`, `check` and `demo`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use pgsplit::config::{Config, Overrides};

#[derive(Parser)]
#[command(
    name = "pgsplit",
    version,
    about = "A PostgreSQL proxy that sends writes to the primary and reads to streaming replicas"
)]
struct Cli {
    /// Log lines as text (for people) or JSON (for log collectors). Levels: PGSPLIT_LOG.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the proxy, from a config file, flags, or both (flags win).
    Run {
        /// TOML config file (see config/pgsplit.toml).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Address for PostgreSQL clients, e.g. 127.0.0.1:6432.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// The primary server, HOST:PORT.
        #[arg(long)]
        primary: Option<String>,
        /// A streaming replica, HOST:PORT; repeat for more.
        #[arg(long = "replica")]
        replicas: Vec<String>,
        /// Address for the HTTP admin server (/healthz, /readyz).
        #[arg(long)]
        admin: Option<SocketAddr>,
    },
    /// Validates a config file and prints the effective topology.
    Check {
        #[arg(long)]
        config: PathBuf,
    },
    /// Sharding tools.
    Shard {
        #[command(subcommand)]
        action: ShardAction,
    },
    /// Starts a local primary with 3 streaming replicas and pgsplit in front of them.
    Demo {
        /// Where the demo's servers keep their data (default: a new temporary directory).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Port for pgsplit on 127.0.0.1.
        #[arg(long, default_value_t = 6432)]
        port: u16,
        /// Start only the servers, without pgsplit (the benchmarks start their own).
        #[arg(long)]
        no_proxy: bool,
        /// Print the ports as one JSON line instead of the welcome text.
        #[arg(long)]
        json: bool,
        /// A postgresql.conf line for every server, e.g. "max_connections = 500"; repeatable.
        #[arg(long = "server-conf")]
        server_conf: Vec<String>,
    },
}

#[derive(Subcommand)]
enum ShardAction {
    /// How many keys (or, with --from-data, rows) would move if SHARD joined the config's hash
    /// and consistent-hash maps.
    Plan {
        #[arg(long)]
        config: PathBuf,
        /// The cluster to add as a shard.
        #[arg(long)]
        add: String,
        /// Sampled keys per map (without --from-data).
        #[arg(long, default_value_t = 100_000)]
        sample: u64,
        /// Read the sharded tables' keys from every shard's primary instead of sampling.
        #[arg(long)]
        from_data: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let result = match cli.command {
        Command::Run {
            config,
            listen,
            primary,
            replicas,
            admin,
        } => {
            let overrides = Overrides {
                listen,
                admin,
                primary,
                replicas,
            };
            load_config(config, &overrides).and_then(|config| run(config, overrides))
        }
        Command::Check { config } => check(&config),
        Command::Shard {
            action:
                ShardAction::Plan {
                    config,
                    add,
                    sample,
                    from_data,
                },
        } => shard_plan(&config, &add, sample, from_data),
        Command::Demo {
            dir,
            port,
            no_proxy,
            json,
            server_conf,
        } => {
            let options = pgsplit::demo::DemoOptions {
                dir,
                port,
                no_proxy,
                json,
                server_conf,
            };
            runtime().and_then(|rt| rt.block_on(pgsplit::demo::run(options)))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("pgsplit: {message}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let filtered = tracing_subscriber::registry().with(log_filter());
    match format {
        LogFormat::Text => filtered.with(logs).init(),
        LogFormat::Json => filtered.with(logs.json()).init(),
    }
}

/// `PGSPLIT_LOG`'s levels per target (`info` when unset). Targets, not an `EnvFilter`: the
/// latter looks up every span at each enter and exit, and a session's span is entered at every
/// turn of its loop (1% of a tpcb-like transaction's instructions).
fn log_filter() -> tracing_subscriber::filter::Targets {
    let default = || tracing_subscriber::filter::Targets::new().with_default(tracing::Level::INFO);
    match std::env::var("PGSPLIT_LOG") {
        Ok(directives) => directives.parse().unwrap_or_else(|e| {
            eprintln!(
                "pgsplit: PGSPLIT_LOG={directives:?} is not a list of levels ({e}): logging at info"
            );
            default()
        }),
        Err(_) => default(),
    }
}

fn load_config(file: Option<PathBuf>, overrides: &Overrides) -> Result<Config, String> {
    let mut config = match &file {
        Some(path) => Config::load(path).map_err(|e| e.to_string())?,
        None => return Config::from_overrides(overrides).map_err(|e| e.to_string()),
    };
    config
        .apply_overrides(overrides)
        .map_err(|e| e.to_string())?;
    Ok(config)
}

fn check(path: &std::path::Path) -> Result<(), String> {
    let config = Config::load(path).map_err(|e| e.to_string())?;
    print!("{}", config.topology_report());
    println!("{}: OK", path.display());
    Ok(())
}

fn shard_plan(
    path: &std::path::Path,
    add: &str,
    sample: u64,
    from_data: bool,
) -> Result<(), String> {
    use pgsplit::shard::plan::{data_report, sample_report};
    let config = Config::load(path).map_err(|e| e.to_string())?;
    let report = if from_data {
        runtime()?.block_on(data_report(&config, add))?
    } else {
        sample_report(&config, add, sample)?
    };
    print!("{report}");
    Ok(())
}

fn run(config: Config, overrides: Overrides) -> Result<(), String> {
    runtime_with_workers(config.worker_threads)?.block_on(async {
        let running = pgsplit::app::start_with(config, overrides).await?;
        running.run_until_signalled().await;
        Ok(())
    })
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    runtime_with_workers(0)
}

/// A runtime of `workers` threads; 0 leaves the choice to tokio (one per core, or
/// TOKIO_WORKER_THREADS). One thread is tokio's current-thread scheduler: with nothing to
/// steal from or wake, it spends the fewest instructions per task switch.
fn runtime_with_workers(workers: usize) -> Result<tokio::runtime::Runtime, String> {
    use tokio::runtime::Builder;
    let mut builder = match workers {
        0 => Builder::new_multi_thread(),
        1 => Builder::new_current_thread(),
        n => {
            let mut builder = Builder::new_multi_thread();
            builder.worker_threads(n);
            builder
        }
    };
    builder
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))
}
