//! `COPY … FROM STDIN` and `COPY … TO STDOUT`: options checked and the
//! copy set up; the rows themselves stream through `ingest::copy` (in) or
//! the protocol layer's encoder (out).

use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{CopyOption, CopySource, CopyTarget};

use super::Outcome;
use crate::error::{Result, SqlError};
use crate::ingest::copy::{CopyFormat, CopyIn, CopyOptions};
use crate::runtime::StatementContext;
use crate::statement::parse::object_name;
use crate::statement::CopyStatement;

/// Sets up a COPY: `ctx` is the session's, `query_ctx` the context (with
/// its memory pool) that runs `COPY (query) TO`.
pub async fn copy(
    ctx: &StatementContext,
    query_ctx: &SessionContext,
    stmt: &CopyStatement,
) -> Result<Outcome> {
    let CopyStatement {
        source,
        to,
        target,
        options,
        legacy,
        on_error,
    } = stmt;
    let (to, legacy, on_error) = (*to, *legacy, *on_error);
    let mut fmt = CopyFormat::Text;
    let mut binary = false;
    for o in options {
        if let CopyOption::Format(f) = o {
            fmt = match f.value.to_ascii_lowercase().as_str() {
                "csv" => CopyFormat::Csv,
                "text" => CopyFormat::Text,
                "binary" => {
                    binary = true;
                    CopyFormat::Csv
                }
                other => {
                    return Err(SqlError::InvalidValue(format!(
                        "COPY format \"{other}\" not recognized (use text, csv or binary)"
                    )))
                }
            };
        }
    }
    if legacy {
        return Err(SqlError::Unsupported(
            "legacy COPY options are not supported; use COPY ... WITH (FORMAT csv, HEADER)".into(),
        ));
    }
    let mut opts = CopyOptions::new(fmt);
    for o in options {
        match o {
            CopyOption::Format(_) | CopyOption::Encoding(_) | CopyOption::Freeze(_) => {}
            CopyOption::Delimiter(c) => opts.delimiter = *c as u8,
            CopyOption::Null(s) => opts.null = s.clone(),
            CopyOption::Header(h) => opts.header = *h,
            CopyOption::Quote(c) => opts.quote = *c as u8,
            CopyOption::Escape(c) => opts.escape = *c as u8,
            other => {
                return Err(SqlError::Unsupported(format!(
                    "COPY option {other} is not supported"
                )))
            }
        }
    }
    if let Some(m) = on_error {
        opts.on_error = m;
    }
    opts.binary = binary && to;
    match (to, target) {
            (false, CopyTarget::Stdin) => {
                let CopySource::Table { table_name, columns } = source else {
                    return Err(SqlError::Syntax("COPY FROM needs a table".into()));
                };
                let cols: Vec<String> = columns.iter().map(|c| c.value.clone()).collect();
                let copy = CopyIn::begin(
                    ctx.store.clone(),
                    &object_name(table_name),
                    &cols,
                    opts,
                    ctx.tz,
                    ctx.contact_lock.clone(),
                )?;
                let copy = if binary { copy.into_binary() } else { copy };
                Ok(Outcome::CopyIn(Box::new(copy)))
            }
            (true, CopyTarget::Stdout) => {
                let sql = match source {
                    CopySource::Table { table_name, columns } => {
                        let cols = if columns.is_empty() {
                            "*".to_string()
                        } else {
                            columns.iter().map(|c| format!("\"{}\"", c.value)).collect::<Vec<_>>().join(", ")
                        };
                        format!("SELECT {cols} FROM {table_name}")
                    }
                    CopySource::Query(q) => q.to_string(),
                };
                let df = query_ctx.sql(&sql).await?;
                if opts.binary {
                    crate::ingest::copy_binary_out::check_schema(df.schema().as_arrow())?;
                }
                Ok(Outcome::CopyOut { df, opts })
            }
            _ => Err(SqlError::Unsupported("COPY supports FROM STDIN and TO STDOUT only (files are read by the client, e.g. psql \\copy)".into())),
        }
}
