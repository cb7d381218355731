//! The `cohortdb` binary: parses the command line and runs the server.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use cohortdb_server::config::Config;

/// mimalloc (small allocations from thread-local pages: a point read makes
/// hundreds), counting the bytes the process holds: the server memory
/// budget (`max_server_memory_mb`) compares it with its limit.
#[global_allocator]
static ALLOCATOR: cap::Cap<mimalloc::MiMalloc> = cap::Cap::new(mimalloc::MiMalloc, usize::MAX);

fn allocated_bytes() -> usize {
    ALLOCATOR.allocated()
}

#[derive(Parser)]
#[command(
    name = "cohortdb",
    version,
    about = "cohortdb: a customer-data-platform database speaking the PostgreSQL protocol"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the server.
    Serve {
        /// Data directory (default ./cohortdb-data).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Listen address for the Postgres protocol (default 127.0.0.1:5433).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Listen address of the HTTP collector (default 127.0.0.1:5480; "" turns it off).
        #[arg(long)]
        http_listen: Option<String>,
        /// TOML configuration file.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Load the demo mini-program shop on an empty data directory.
        #[arg(long)]
        demo: bool,
    },
    /// Write the events and contacts as Hive-partitioned Parquet
    /// (`OUT/events/event_day=YYYY-MM-DD/part-0.parquet`, `OUT/contacts/`,
    /// `OUT/_SUCCESS`). The server must not be running on the data
    /// directory; on a running server use `CALL export_events(dir, from, to)`.
    Export {
        /// Data directory (default ./cohortdb-data).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Output directory (created when missing).
        #[arg(long)]
        out: PathBuf,
        /// First event_day to write (YYYY-MM-DD, inclusive).
        #[arg(long)]
        from: Option<String>,
        /// Last event_day to write (YYYY-MM-DD, inclusive).
        #[arg(long)]
        to: Option<String>,
        /// TOML configuration file (its time zone defines event_day).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Run an analytics statement (or any SQL) over an export, on a Ballista
    /// cluster (`--remote df://host:port`) or in one process: hands its
    /// arguments to `cohortdb-dist query` (built with `cargo build --release
    /// -p cohortdb-dist --features ballista`), found next to this binary or
    /// on PATH.
    Query {
        /// `[--remote df://host:port] [--partitions N] --data DIR
        /// [--timezone TZ] "STATEMENT"`
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Print the SQL form of an analytics statement: the same statement as
    /// SQL over an export's `events` and `contacts`, for DataFusion,
    /// Ballista (`cohortdb query`) or the server itself.
    SqlForm {
        /// Session time zone of the statement (FROM/TO days, BY DAY periods).
        #[arg(long, default_value = "UTC")]
        timezone: String,
        /// An export directory (`cohortdb export`) whose columns resolve
        /// `BY` columns as the server does; without it a bare `BY` name is
        /// an events column.
        #[arg(long)]
        export: Option<PathBuf>,
        /// The statement.
        statement: String,
    },
}

fn load_config(config: Option<PathBuf>) -> Config {
    match config {
        Some(path) => match Config::from_file(&path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("cohortdb: {e}");
                std::process::exit(2);
            }
        },
        None => Config::default(),
    }
}

fn main() {
    cohortdb_sql::runtime::memory_budget::set_allocation_gauge(allocated_bytes);
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("COHORTDB_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve {
            data_dir,
            listen,
            http_listen,
            config,
            demo,
        } => {
            let mut cfg = load_config(config);
            if let Some(d) = data_dir {
                cfg.data_dir = d;
            }
            if let Some(l) = listen {
                cfg.listen = l;
            }
            if let Some(h) = http_listen {
                cfg.http_listen = h;
            }
            // Statements up to max_expression_depth recurse in planning;
            // generous stacks keep that far from the guard page.
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .thread_stack_size(64 << 20)
                .build()
                .expect("tokio runtime");
            match rt.block_on(cohortdb_server::run(cfg, demo)) {
                Ok(()) => std::process::exit(0),
                Err(e) => {
                    eprintln!("cohortdb: {e}");
                    std::process::exit(1);
                }
            }
        }
        Command::SqlForm {
            timezone,
            export,
            statement,
        } => {
            let tz: Result<chrono_tz::Tz, _> = if timezone.eq_ignore_ascii_case("utc") {
                Ok(chrono_tz::Tz::UTC)
            } else {
                timezone.parse()
            };
            let Ok(tz) = tz else {
                eprintln!("cohortdb: unknown time zone {timezone}");
                std::process::exit(2);
            };
            use cohortdb_sql::analytics::distributed::{export_columns, sql_form_of_text};
            let columns = match export.as_deref().map(export_columns).transpose() {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("cohortdb: {e}");
                    std::process::exit(1);
                }
            };
            match sql_form_of_text(&statement, &tz, columns.as_ref()) {
                Ok(sql) => println!("{sql}"),
                Err(e) => {
                    eprintln!("cohortdb: {e}");
                    std::process::exit(1);
                }
            }
        }
        Command::Query { args } => {
            let beside = std::env::current_exe()
                .ok()
                .and_then(|e| e.parent().map(|d| d.join("cohortdb-dist")))
                .filter(|p| p.exists());
            let bin = beside.unwrap_or_else(|| PathBuf::from("cohortdb-dist"));
            match std::process::Command::new(&bin)
                .arg("query")
                .args(&args)
                .status()
            {
                Ok(status) => std::process::exit(status.code().unwrap_or(1)),
                Err(e) => {
                    eprintln!(
                        "cohortdb: cannot run {} ({e}); build it with \
                         cargo build --release -p cohortdb-dist --features ballista",
                        bin.display()
                    );
                    std::process::exit(1);
                }
            }
        }
        Command::Export {
            data_dir,
            out,
            from,
            to,
            config,
        } => {
            let mut cfg = load_config(config);
            if let Some(d) = data_dir {
                cfg.data_dir = d;
            }
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .thread_stack_size(64 << 20)
                .build()
                .expect("tokio runtime");
            match rt.block_on(cohortdb_server::export(cfg, &out, from, to)) {
                Ok(()) => std::process::exit(0),
                Err(e) => {
                    eprintln!("cohortdb: {e}");
                    std::process::exit(1);
                }
            }
        }
    }
}
