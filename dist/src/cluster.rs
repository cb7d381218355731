//! Ballista setup with the analytics functions: the scheduler's session
//! builder (it plans with them), the executors' function registry (they
//! decode plans that call them) and the client context.

use std::sync::Arc;

use ballista::prelude::SessionContextExt;
use ballista_core::registry::BallistaFunctionRegistry;
use ballista_core::utils::default_session_builder;
use datafusion::error::Result;
use datafusion::execution::context::SessionState;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::files::register_functions;

/// Logs to stdout for the scheduler and executor binaries (`COHORTDB_LOG`
/// sets the filter, default `info`).
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("COHORTDB_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_ansi(false)
        .init();
}

/// The scheduler's session builder: Ballista's default plus the analytics
/// functions.
pub fn scheduler_session(config: SessionConfig) -> Result<SessionState> {
    let mut state = default_session_builder(config)?;
    register_functions(&mut state)?;
    Ok(state)
}

/// The executors' function registry: Ballista's default plus the analytics
/// functions.
pub fn executor_functions() -> BallistaFunctionRegistry {
    let mut r = BallistaFunctionRegistry::default();
    for f in cohortdb_analytics::udaf::aggregates() {
        r.aggregate_functions
            .insert(f.name().to_string(), Arc::new(f));
    }
    r
}

/// A client context on the scheduler at `url` (`df://host:port`) that
/// knows the analytics functions; plans use `partitions` partitions.
pub async fn remote_context(url: &str, partitions: usize) -> Result<SessionContext> {
    let state = SessionStateBuilder::new()
        .with_default_features()
        .with_config(SessionConfig::new().with_target_partitions(partitions.max(1)))
        .build();
    // Ballista's upgrade replaces the function lists, so register after it.
    let ctx = SessionContext::remote_with_state(url, state).await?;
    crate::files::register_in(&ctx);
    Ok(ctx)
}
