//! `cohortdb-executor`: a Ballista executor that can run plans calling the
//! cohortdb analytics functions. Three ports: Flight (`--port`), gRPC
//! (`--grpc-port`); shuffle files go to `--work-dir`.

use std::path::PathBuf;
use std::sync::Arc;

use ballista_executor::executor_process::{start_executor_process, ExecutorProcessConfig};
use clap::Parser;

/// Command line.
#[derive(Parser)]
#[command(
    name = "cohortdb-executor",
    version,
    about = "Ballista executor with the cohortdb analytics functions"
)]
struct Args {
    /// Scheduler address.
    #[arg(long, default_value = "127.0.0.1:50050")]
    scheduler: std::net::SocketAddr,
    /// Host to bind and to advertise.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Arrow Flight port (shuffle reads).
    #[arg(long, default_value_t = 50051)]
    port: u16,
    /// gRPC port (task launches).
    #[arg(long, default_value_t = 50052)]
    grpc_port: u16,
    /// Directory for shuffle files (one per executor).
    #[arg(long)]
    work_dir: PathBuf,
    /// Concurrent tasks (default: the machine's cores).
    #[arg(long)]
    vcores: Option<usize>,
    /// Memory pool for all tasks, in MB (default: Ballista's share of the machine).
    #[arg(long)]
    memory_mb: Option<u64>,
}

fn main() {
    cohortdb_dist::cluster::init_logging();
    let args = Args::parse();
    if let Err(e) = std::fs::create_dir_all(&args.work_dir) {
        eprintln!(
            "cohortdb-executor: cannot create {}: {e}",
            args.work_dir.display()
        );
        std::process::exit(2);
    }
    let mut config = ExecutorProcessConfig {
        bind_host: args.host.clone(),
        external_host: Some(args.host.clone()),
        port: args.port,
        grpc_port: args.grpc_port,
        scheduler_host: args.scheduler.ip().to_string(),
        scheduler_port: args.scheduler.port(),
        work_dir: Some(args.work_dir.display().to_string()),
        override_function_registry: Some(Arc::new(cohortdb_dist::cluster::executor_functions())),
        executor_heartbeat_interval_seconds: 5,
        ..Default::default()
    };
    if let Some(v) = args.vcores {
        config.vcores = v.max(1);
    }
    if let Some(m) = args.memory_mb {
        config.memory_pool_size = Some(m << 20);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(32 << 20)
        .build()
        .expect("tokio runtime");
    if let Err(e) = rt.block_on(start_executor_process(Arc::new(config))) {
        eprintln!("cohortdb-executor: {e}");
        std::process::exit(1);
    }
}
