//! The `sqllogictest` engine: runs records over tokio-postgres in the simple
//! or the extended query protocol and renders results as Postgres text.

use std::fmt;
use std::process::{Command, Output};
use std::time::Duration;

use async_trait::async_trait;
use sqllogictest::{AsyncDB, DBOutput, DefaultColumnType};
use tokio::task::JoinHandle;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

use crate::render;

/// Which PostgreSQL query protocol an engine uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// `Query` messages (`client.simple_query`); values arrive as text.
    Simple,
    /// `Parse`/`Bind`/`Execute` (`client.prepare` + `client.query` /
    /// `client.execute`); values arrive in binary and are rendered by type.
    Extended,
}

impl Protocol {
    /// Both protocols, simple first.
    pub const ALL: [Protocol; 2] = [Protocol::Simple, Protocol::Extended];

    /// `"simple"` or `"extended"`: the trial-name suffix and the sqllogictest
    /// label (usable in `onlyif simple` / `skipif extended`).
    pub fn label(self) -> &'static str {
        match self {
            Protocol::Simple => "simple",
            Protocol::Extended => "extended",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// An error from the server or the client library.
///
/// Displays as `"<SQLSTATE>: <message>"` for server errors, so `.slt` files
/// can write `statement error 22023: .*email.*`; client-side errors (e.g. a
/// closed connection) have no code and display as their message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlError {
    /// Five-character SQLSTATE of a server error.
    pub code: Option<String>,
    /// The server's primary message, or the client error text.
    pub message: String,
}

impl SqlError {
    /// An error that did not come from the server.
    pub fn client(message: impl Into<String>) -> SqlError {
        SqlError {
            code: None,
            message: message.into(),
        }
    }
}

impl fmt::Display for SqlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.code {
            Some(code) => write!(f, "{code}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for SqlError {}

impl From<&tokio_postgres::Error> for SqlError {
    fn from(err: &tokio_postgres::Error) -> SqlError {
        match err.as_db_error() {
            Some(db) => SqlError {
                code: Some(db.code().code().to_string()),
                message: db.message().to_string(),
            },
            None => SqlError::client(err.to_string()),
        }
    }
}

impl From<tokio_postgres::Error> for SqlError {
    fn from(err: tokio_postgres::Error) -> SqlError {
        SqlError::from(&err)
    }
}

/// A `sqllogictest` database: one tokio-postgres connection to cohortdb.
///
/// - Simple protocol: `client.simple_query`; values are the server's text,
///   NULL as `NULL`, the empty string as `(empty)`.
/// - Extended protocol: `client.prepare`, then `client.execute` when the
///   statement describes no result columns, else `client.query`; values are
///   rendered from their binary form by [`render`] into the same text the
///   server's text output would have.
///
/// A statement's result is `Rows` when the server described result columns
/// (even with zero rows), otherwise the row count of its CommandComplete.
pub struct CohortEngine {
    client: Option<Client>,
    connection: Option<JoinHandle<()>>,
    protocol: Protocol,
}

impl CohortEngine {
    /// Connects to `conn_string` and spawns the connection task on the
    /// current tokio runtime.
    pub async fn connect(conn_string: &str, protocol: Protocol) -> Result<CohortEngine, SqlError> {
        let (client, connection) = tokio_postgres::connect(conn_string, NoTls).await?;
        let connection = tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(CohortEngine {
            client: Some(client),
            connection: Some(connection),
            protocol,
        })
    }

    /// The protocol this engine uses.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    fn client(&self) -> Result<&Client, SqlError> {
        self.client
            .as_ref()
            .ok_or_else(|| SqlError::client("the connection was shut down"))
    }

    async fn run_simple(&self, sql: &str) -> Result<DBOutput<DefaultColumnType>, SqlError> {
        let messages = self.client()?.simple_query(sql).await?;
        let mut columns: Option<usize> = None;
        let mut rows: Vec<Vec<String>> = Vec::new();
        let mut count = 0;
        for message in messages {
            match message {
                SimpleQueryMessage::RowDescription(described) => columns = Some(described.len()),
                SimpleQueryMessage::Row(row) => rows.push(
                    (0..row.len())
                        .map(|i| render::display_text(row.get(i)))
                        .collect(),
                ),
                SimpleQueryMessage::CommandComplete(n) => count = n,
                _ => {}
            }
        }
        match columns {
            Some(n) => Ok(DBOutput::Rows {
                types: vec![DefaultColumnType::Any; n],
                rows,
            }),
            None => Ok(DBOutput::StatementComplete(count)),
        }
    }

    async fn run_extended(&self, sql: &str) -> Result<DBOutput<DefaultColumnType>, SqlError> {
        let client = self.client()?;
        let statement = client.prepare(sql).await?;
        if statement.columns().is_empty() {
            let count = client.execute(&statement, &[]).await?;
            return Ok(DBOutput::StatementComplete(count));
        }
        let types = statement
            .columns()
            .iter()
            .map(|c| render::column_type(c.type_()))
            .collect();
        let result = client.query(&statement, &[]).await?;
        let mut rows = Vec::with_capacity(result.len());
        for row in &result {
            let mut values = Vec::with_capacity(row.len());
            for i in 0..row.len() {
                values.push(render::render_cell(row, i).map_err(SqlError::client)?);
            }
            rows.push(values);
        }
        Ok(DBOutput::Rows { types, rows })
    }
}

#[async_trait]
impl AsyncDB for CohortEngine {
    type Error = SqlError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, SqlError> {
        match self.protocol {
            Protocol::Simple => self.run_simple(sql).await,
            Protocol::Extended => self.run_extended(sql).await,
        }
    }

    async fn shutdown(&mut self) {
        drop(self.client.take());
        if let Some(connection) = self.connection.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), connection).await;
        }
    }

    fn engine_name(&self) -> &str {
        "cohortdb"
    }

    async fn sleep(dur: Duration) {
        tokio::time::sleep(dur).await
    }

    async fn run_command(command: Command) -> std::io::Result<Output> {
        tokio::process::Command::from(command).output().await
    }

    fn error_sql_state(err: &SqlError) -> Option<String> {
        err.code.clone()
    }
}
