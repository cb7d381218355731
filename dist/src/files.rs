//! An export directory (`cohortdb export`) as DataFusion tables: `events`
//! (Hive-partitioned by `event_day`) and `contacts`, in a context where
//! the analytics aggregate functions are registered.

use std::path::Path;

use datafusion::arrow::datatypes::DataType;
use datafusion::error::Result;
use datafusion::execution::FunctionRegistry;
use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};

/// Registers every analytics aggregate function in `registry`.
pub fn register_functions(registry: &mut dyn FunctionRegistry) -> Result<()> {
    for f in cohortdb_analytics::udaf::aggregates() {
        registry.register_udaf(std::sync::Arc::new(f))?;
    }
    Ok(())
}

/// Registers every analytics aggregate function in `ctx`.
pub fn register_in(ctx: &SessionContext) {
    for f in cohortdb_analytics::udaf::aggregates() {
        ctx.register_udaf(f);
    }
}

/// Registers `events` and `contacts` of the export in `dir`.
pub async fn register_export(ctx: &SessionContext, dir: &Path) -> Result<()> {
    let path = |p: &str| format!("{}/", dir.join(p).display());
    ctx.register_parquet(
        "events",
        path("events"),
        ParquetReadOptions::default()
            .table_partition_cols(vec![("event_day".to_string(), DataType::Date32)]),
    )
    .await?;
    ctx.register_parquet("contacts", path("contacts"), ParquetReadOptions::default())
        .await
}

/// A plain (single-process) DataFusion context over the export in `dir`,
/// with `partitions` target partitions and the analytics functions.
pub async fn local_context(dir: &Path, partitions: usize) -> Result<SessionContext> {
    let ctx = SessionContext::new_with_config(
        SessionConfig::new().with_target_partitions(partitions.max(1)),
    );
    register_in(&ctx);
    register_export(&ctx, dir).await?;
    Ok(ctx)
}
