//! `cohortdb-bench`: reproducible benchmarks of cohortdb over the PostgreSQL
//! wire protocol, on deterministic synthetic data from `cohortdb-datagen`.
//!
//! Subcommands:
//! - `ingest`: `COPY ... FROM STDIN (FORMAT csv)` of contacts and events into a
//!   running cohortdb, optionally against a throwaway PostgreSQL 15 loaded
//!   with the same files the same way (`--postgres`).
//! - `analytics`: FUNNEL, RETENTION, ATTRIBUTE and LTV latency over the wire,
//!   compared with chdb and DuckDB on the same rows (`bench/peers/`).
//! - `groups`: refresh of dynamic groups and group intersection counts.
//! - `collector`: events/s and latency through the HTTP collector, beside
//!   COPY of the same events.
//! - `lookups`: pgbench point reads (contacts by id, by openid) and one-row
//!   writes (INSERT, identify), optionally beside PostgreSQL 15.
//! - `journeys`: the journey engine's trigger path: events/s and
//!   commit→run-start latency with many journeys sharing a trigger event,
//!   restart time with the runs waiting.
//! - `wechat`: WeChat sends against the local fake of the WeChat API:
//!   audience resolution, delivery with the rate limit lifted and paced.
//!
//! See `docs/benchmark.md` for how to run it and what it measures.

mod analytics;
mod collector;
mod dataset;
mod groups;
mod ingest;
mod journeys;
mod lookups;
mod postgres;
mod report;
mod spawned;
mod wechat;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Error type of the benchmark: anything printable.
pub type Error = Box<dyn std::error::Error + Send + Sync>;
/// Result type of the benchmark.
pub type Result<T> = std::result::Result<T, Error>;

/// Reproducible cohortdb benchmarks (see docs/benchmark.md).
#[derive(Parser, Debug)]
#[command(name = "cohortdb-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// COPY ingest rate of contacts and events over the wire (optionally
    /// compared with PostgreSQL 15 on the same machine).
    Ingest(ingest::IngestArgs),
    /// Latency of FUNNEL, RETENTION, ATTRIBUTE and LTV over the wire,
    /// compared with chdb and DuckDB on the same rows.
    Analytics(analytics::AnalyticsArgs),
    /// Dynamic group refresh time and group intersection counts.
    Groups(groups::GroupsArgs),
    /// Events/s and latency through the HTTP collector, beside COPY.
    Collector(collector::CollectorArgs),
    /// pgbench point reads and one-row writes, beside PostgreSQL 15.
    Lookups(lookups::LookupsArgs),
    /// WeChat sends against the fake WeChat API: audience resolution,
    /// delivery rate with the limit lifted and with the default limit.
    Wechat(wechat::WechatArgs),
    /// The journey engine's trigger path: events/s and commit→run-start
    /// latency, restart time with waiting runs.
    Journeys(journeys::JourneysArgs),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Ingest(args) => ingest::run(args).await,
        Command::Analytics(args) => analytics::run(args).await,
        Command::Groups(args) => groups::run(args).await,
        Command::Collector(args) => collector::run(args).await,
        Command::Lookups(args) => lookups::run(args).await,
        Command::Wechat(args) => wechat::run(args).await,
        Command::Journeys(args) => journeys::run(args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
