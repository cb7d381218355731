//! Statement handlers: what each statement kind does, given the
//! [`StatementContext`](crate::runtime::StatementContext) of the session
//! that runs it. The session's dispatch (`session/dispatch.rs`) is the one
//! exhaustive match that picks a handler; handlers never import `session`.
//!
//! - `query.rs`: queries and DML planned by DataFusion;
//! - `ddl.rs`: `CREATE TABLE`, `DROP TABLE`, `ALTER TABLE … ADD COLUMN`;
//! - `copy.rs`: `COPY FROM STDIN` / `COPY TO STDOUT` set-up;
//! - `procedures.rs`: `CALL`;
//! - `lookup.rs`: queries that read rows by key, answered without DataFusion execution;
//! - `row_insert.rs`: `INSERT … VALUES` into contacts and user tables, without DataFusion execution.
//!
//! May use: `access`, `statement`, `analytics`, `tables`, `ingest`,
//! `identity`, `segments`, `pgcompat`, `runtime`, `model`, `error`.

pub mod copy;
pub mod ddl;
pub mod export;
pub mod journeys;
pub mod lookup;
pub mod procedures;
pub mod query;
pub mod row_insert;
pub mod views;
pub mod wechat;

use datafusion::dataframe::DataFrame;

use crate::ingest::copy::{CopyIn, CopyOptions};
use crate::runtime::Reply;

/// What a statement produced, for the protocol layer.
pub enum Outcome {
    /// Rows to send.
    Rows(DataFrame),
    /// Rows already computed (a key lookup), with the table OID and column
    /// number of each column (RowDescription).
    Batch {
        /// The rows.
        batch: datafusion::arrow::array::RecordBatch,
        /// Origin of each column, as `Session::column_origins` reports them.
        origins: Vec<crate::pgcompat::origins::Origin>,
    },
    /// A completed command: tag and affected rows (`INSERT 0 n` is formatted by the server).
    Command {
        /// Command tag word(s), e.g. `CREATE TABLE`.
        tag: String,
        /// Affected rows, when the tag carries a count.
        rows: Option<u64>,
    },
    /// The client must now send COPY data.
    CopyIn(Box<CopyIn>),
    /// Rows to stream as COPY data.
    CopyOut {
        /// Rows.
        df: DataFrame,
        /// Format.
        opts: CopyOptions,
    },
    /// A setting changed that clients track (ParameterStatus).
    ParameterChanged {
        /// Tag (`SET`).
        tag: String,
        /// Parameter name as reported.
        name: String,
        /// New value.
        value: String,
    },
}

impl Outcome {
    /// The rows of a statement that returns rows, computed (`None` for
    /// commands, COPY and settings).
    pub async fn into_batches(
        self,
    ) -> crate::error::Result<Option<Vec<datafusion::arrow::array::RecordBatch>>> {
        match self {
            Outcome::Rows(df) => Ok(Some(df.collect().await?)),
            Outcome::Batch { batch, .. } => Ok(Some(vec![batch])),
            Outcome::Command { .. }
            | Outcome::CopyIn(_)
            | Outcome::CopyOut { .. }
            | Outcome::ParameterChanged { .. } => Ok(None),
        }
    }

    /// A command with no row count.
    pub fn command(tag: &str) -> Outcome {
        Outcome::Command {
            tag: tag.into(),
            rows: None,
        }
    }
}

impl From<Reply> for Outcome {
    fn from(r: Reply) -> Outcome {
        match r {
            Reply::Rows(df) => Outcome::Rows(df),
            Reply::Batch(batch) => Outcome::Batch {
                batch,
                origins: vec![],
            },
            Reply::Command { tag, rows } => Outcome::Command { tag, rows },
        }
    }
}
