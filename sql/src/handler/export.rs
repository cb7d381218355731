//! `CALL export_events(dir [, from [, to]])` (and `cohortdb export`): writes
//! the events and contacts as Hive-partitioned Parquet for engines that read
//! files (Ballista, DuckDB, ClickHouse, Spark):
//!
//! ```text
//! DIR/events/event_day=YYYY-MM-DD/part-0.parquet   sorted by (contact_id, event_date)
//! DIR/contacts/part-0.parquet                       contact_view, sorted by id
//! DIR/_SUCCESS                                      written last (a JSON summary)
//! ```
//!
//! Files are written by DataFusion's own Parquet writer (zstd, ~1 M-row row
//! groups, page statistics and page index). Each day is written under a
//! temporary name and renamed into place, so a reader sees a day complete
//! or not at all; `_SUCCESS` is removed first and written last. The rows
//! are read through the session, so its time zone, privileges and masking
//! apply. Each day is its own query (no snapshot across days: a day is
//! exported as committed when its query runs).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::array::{Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::config::TableParquetOptions;
use datafusion::dataframe::DataFrameWriteOptions;
use datafusion::prelude::SessionContext;

use crate::error::{Result, SqlError};
use crate::model::convert::date_from_days;
use crate::runtime::{Reply, StatementContext};

/// Rows per Parquet row group.
pub const ROW_GROUP_ROWS: usize = 1 << 20;

/// What an export wrote.
#[derive(Debug, Clone, Default)]
pub struct ExportSummary {
    /// Days written (days without events are skipped).
    pub days: i64,
    /// Event rows written.
    pub events: i64,
    /// Contact rows written.
    pub contacts: i64,
    /// Bytes of all Parquet files written.
    pub bytes: i64,
    /// Wall time in milliseconds.
    pub millis: i64,
}

/// The row `CALL export_events` returns.
pub fn result_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("directory", DataType::Utf8, false),
        Field::new("days", DataType::Int64, false),
        Field::new("events", DataType::Int64, false),
        Field::new("contacts", DataType::Int64, false),
        Field::new("bytes", DataType::Int64, false),
        Field::new("millis", DataType::Int64, false),
    ]))
}

/// `CALL export_events(dir [, from [, to]])`: `from`/`to` are inclusive
/// `event_day`s (`YYYY-MM-DD`); without them every day is written.
pub async fn call(ctx: &StatementContext, args: &[String]) -> Result<Reply> {
    if args.is_empty() || args.len() > 3 {
        return Err(SqlError::InvalidValue(
            "export_events takes a directory and an optional day range: CALL export_events('/path/dir' [, 'YYYY-MM-DD' [, 'YYYY-MM-DD']])"
                .into(),
        ));
    }
    let day = |i: usize| -> Result<Option<i32>> {
        match args.get(i).map(|s| s.trim()).filter(|s| !s.is_empty()) {
            None => Ok(None),
            Some(s) => crate::model::convert::parse_date(s)
                .map(Some)
                .ok_or_else(|| {
                    SqlError::InvalidValue(format!("invalid date '{s}' (expected YYYY-MM-DD)"))
                }),
        }
    };
    let (from, to) = (day(1)?, day(2)?);
    let dir = PathBuf::from(&args[0]);
    let summary = export(
        &ctx.df,
        ctx.store.event_day_bounds()?,
        &dir,
        from,
        to,
        |line| tracing::info!("export_events: {line}"),
    )
    .await?;
    let batch = RecordBatch::try_new(
        result_schema(),
        vec![
            Arc::new(StringArray::from(vec![dir.display().to_string()])),
            Arc::new(Int64Array::from(vec![summary.days])),
            Arc::new(Int64Array::from(vec![summary.events])),
            Arc::new(Int64Array::from(vec![summary.contacts])),
            Arc::new(Int64Array::from(vec![summary.bytes])),
            Arc::new(Int64Array::from(vec![summary.millis])),
        ],
    )?;
    Ok(Reply::Batch(batch))
}

fn io(what: &str, path: &Path, e: std::io::Error) -> SqlError {
    SqlError::Io(format!("{what} {}: {e}", path.display()))
}

fn parquet_options() -> TableParquetOptions {
    let mut o = TableParquetOptions::default();
    o.global.compression = Some("zstd(3)".into());
    o.global.max_row_group_size = ROW_GROUP_ROWS;
    o.global.statistics_enabled = Some("page".into());
    o
}

/// Writes `sql`'s rows to `file` (one file); returns the row count.
async fn write_one(ctx: &SessionContext, sql: &str, file: &Path) -> Result<i64> {
    let df = ctx.sql(sql).await?;
    let out = df
        .write_parquet(
            &file.display().to_string(),
            DataFrameWriteOptions::new().with_single_file_output(true),
            Some(parquet_options()),
        )
        .await?;
    Ok(out
        .iter()
        .filter_map(|b| {
            b.column(0)
                .as_any()
                .downcast_ref::<datafusion::arrow::array::UInt64Array>()
                .map(|a| a.iter().flatten().sum::<u64>() as i64)
        })
        .sum())
}

/// Replaces `dst` by the finished `tmp` (a directory): the old copy is
/// moved aside first and removed after, so `dst` is never half-written.
fn publish(tmp: &Path, dst: &Path) -> Result<()> {
    if dst.exists() {
        let old = dst.with_file_name(format!(
            ".old-{}",
            dst.file_name().unwrap_or_default().to_string_lossy()
        ));
        let _ = std::fs::remove_dir_all(&old);
        std::fs::rename(dst, &old).map_err(|e| io("cannot move aside", dst, e))?;
        std::fs::rename(tmp, dst).map_err(|e| io("cannot rename into place", dst, e))?;
        let _ = std::fs::remove_dir_all(&old);
    } else {
        std::fs::rename(tmp, dst).map_err(|e| io("cannot rename into place", dst, e))?;
    }
    Ok(())
}

fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Exports through `ctx` into `dir`: the event days in `[from, to]`
/// (inclusive, `event_day`; `None` = unbounded), clipped to the stored
/// UTC day bounds `bounds`, then every contact. `progress` gets one line
/// per day written and a summary line.
pub async fn export(
    ctx: &SessionContext,
    bounds: Option<(i32, i32)>,
    dir: &Path,
    from: Option<i32>,
    to: Option<i32>,
    mut progress: impl FnMut(&str),
) -> Result<ExportSummary> {
    let started = Instant::now();
    let mut s = ExportSummary::default();
    let events_dir = dir.join("events");
    let contacts_dir = dir.join("contacts");
    std::fs::create_dir_all(&events_dir).map_err(|e| io("cannot create", &events_dir, e))?;
    let success = dir.join("_SUCCESS");
    if success.exists() {
        std::fs::remove_file(&success).map_err(|e| io("cannot remove", &success, e))?;
    }
    let tag = std::process::id();

    let schema = ctx.table_provider("events").await?.schema();
    let cols: Vec<String> = schema
        .fields()
        .iter()
        .filter(|f| f.name() != "event_day")
        .map(|f| quote_ident(f.name()))
        .collect();
    let cols = cols.join(", ");
    if let Some((lo, hi)) = bounds {
        // event_day is a local day; a UTC day touches its neighbours.
        let lo = from.map_or(lo - 1, |f| f.max(lo - 1));
        let hi = to.map_or(hi + 1, |t| t.min(hi + 1));
        for day in lo..=hi {
            let name = date_from_days(day).format("%Y-%m-%d").to_string();
            let tmp = events_dir.join(format!(".tmp-{tag}-event_day={name}"));
            let _ = std::fs::remove_dir_all(&tmp);
            std::fs::create_dir_all(&tmp).map_err(|e| io("cannot create", &tmp, e))?;
            let file = tmp.join("part-0.parquet");
            let sql = format!(
                "SELECT {cols} FROM events WHERE event_day = DATE '{name}' \
                 ORDER BY contact_id, event_date"
            );
            let rows = match write_one(ctx, &sql, &file).await {
                Ok(r) => r,
                Err(e) => {
                    let _ = std::fs::remove_dir_all(&tmp);
                    return Err(e);
                }
            };
            let dst = events_dir.join(format!("event_day={name}"));
            if rows == 0 {
                std::fs::remove_dir_all(&tmp).map_err(|e| io("cannot remove", &tmp, e))?;
                // a re-export of a day that is now empty leaves no stale copy
                if dst.exists() {
                    std::fs::remove_dir_all(&dst).map_err(|e| io("cannot remove", &dst, e))?;
                }
                continue;
            }
            let bytes = std::fs::metadata(&file)
                .map_err(|e| io("cannot stat", &file, e))?
                .len() as i64;
            publish(&tmp, &dst)?;
            s.days += 1;
            s.events += rows;
            s.bytes += bytes;
            progress(&format!(
                "event_day={name}: {rows} events, {bytes} bytes (total {} events, {} bytes)",
                s.events, s.bytes
            ));
        }
    }

    let tmp = dir.join(format!(".tmp-{tag}-contacts"));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| io("cannot create", &tmp, e))?;
    let file = tmp.join("part-0.parquet");
    if let Err(e) = write_one(ctx, "SELECT * FROM contact_view ORDER BY id", &file).await {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    s.contacts = ctx
        .sql("SELECT count(*) FROM contact_view")
        .await?
        .collect()
        .await?
        .first()
        .and_then(|b| {
            b.column(0)
                .as_any()
                .downcast_ref::<Int64Array>()
                .map(|a| a.value(0))
        })
        .unwrap_or(0);
    s.bytes += std::fs::metadata(&file)
        .map_err(|e| io("cannot stat", &file, e))?
        .len() as i64;
    publish(&tmp, &contacts_dir)?;
    s.millis = started.elapsed().as_millis() as i64;

    let summary = format!(
        "{{\"days\": {}, \"events\": {}, \"contacts\": {}, \"bytes\": {}, \"millis\": {}, \"from\": {}, \"to\": {}}}\n",
        s.days,
        s.events,
        s.contacts,
        s.bytes,
        s.millis,
        from.map_or("null".into(), |d| format!("\"{}\"", date_from_days(d))),
        to.map_or("null".into(), |d| format!("\"{}\"", date_from_days(d))),
    );
    std::fs::write(&success, summary).map_err(|e| io("cannot write", &success, e))?;
    let secs = (s.millis as f64 / 1000.0).max(0.001);
    progress(&format!(
        "exported {} events over {} days and {} contacts to {} in {:.1} s: {:.0} events/s, {:.1} MB/s, {:.1} bytes/event",
        s.events,
        s.days,
        s.contacts,
        dir.display(),
        secs,
        s.events as f64 / secs,
        s.bytes as f64 / secs / 1e6,
        if s.events > 0 { s.bytes as f64 / s.events as f64 } else { 0.0 },
    ));
    Ok(s)
}
