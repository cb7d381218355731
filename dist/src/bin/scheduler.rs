//! `cohortdb-scheduler`: a Ballista scheduler whose sessions know the
//! cohortdb analytics functions. REST API on the same port (`/api/executors`,
//! `/api/job/{id}/stages`).

use std::sync::Arc;

use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::start_server;
use clap::Parser;

/// Command line.
#[derive(Parser)]
#[command(
    name = "cohortdb-scheduler",
    version,
    about = "Ballista scheduler with the cohortdb analytics functions"
)]
struct Args {
    /// Address to listen on (gRPC and REST).
    #[arg(long, default_value = "127.0.0.1:50050")]
    bind: std::net::SocketAddr,
}

fn main() {
    cohortdb_dist::cluster::init_logging();
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(32 << 20)
        .build()
        .expect("tokio runtime");
    let result = rt.block_on(async {
        let config = SchedulerConfig::default()
            .with_hostname(args.bind.ip().to_string())
            .with_port(args.bind.port())
            .with_override_session_builder(Arc::new(cohortdb_dist::cluster::scheduler_session));
        let cluster = BallistaCluster::new_from_config(&config).await?;
        start_server(cluster, args.bind, Arc::new(config)).await
    });
    if let Err(e) = result {
        eprintln!("cohortdb-scheduler: {e}");
        std::process::exit(1);
    }
}
