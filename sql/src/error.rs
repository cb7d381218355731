//! SQL-layer errors. Each variant names the SQLSTATE class it maps to; the
//! server turns them into wire errors in one place.

use datafusion::error::DataFusionError;

/// Errors raised while planning or executing cohortdb statements.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    /// 42601: the statement does not parse.
    #[error("{0}")]
    Syntax(String),
    /// 42601 with the 1-based character position of the error in the statement text.
    #[error("{message}")]
    SyntaxAt {
        /// What is wrong.
        message: String,
        /// 1-based character offset into the statement text.
        position: usize,
    },
    /// 42P05: a prepared statement of that name exists.
    #[error("{0}")]
    DuplicatePrepared(String),
    /// 26000: no prepared statement of that name.
    #[error("{0}")]
    UndefinedPrepared(String),
    /// 22023: a value is not valid for its column (email, phone, gender, event code, ...).
    #[error("{0}")]
    InvalidValue(String),
    /// 22P02: text that does not convert to the column's type.
    #[error("{0}")]
    InvalidText(String),
    /// 22007: a date or time that does not parse.
    #[error("{0}")]
    InvalidDatetime(String),
    /// 23505: a unique key already exists.
    #[error("{0}")]
    UniqueViolation(String),
    /// 23502: a required value is missing.
    #[error("{0}")]
    NotNull(String),
    /// 23503: a referenced row does not exist (event for an unknown contact).
    #[error("{0}")]
    ForeignKey(String),
    /// 42703: unknown column.
    #[error("{0}")]
    UndefinedColumn(String),
    /// 42P01: unknown table.
    #[error("{0}")]
    UndefinedTable(String),
    /// 42704: unknown object (event type, property, setting).
    #[error("{0}")]
    UndefinedObject(String),
    /// 58000: an external service (the WeChat API) failed or refused.
    #[error("{0}")]
    External(String),
    /// 42883: no function or procedure of that signature (an unknown named argument).
    #[error("{0}")]
    UndefinedFunction(String),
    /// 42809: an object of the wrong kind (`pg_get_functiondef` of an aggregate).
    #[error("{0}")]
    WrongObjectType(String),
    /// 2201B: a regular expression that does not compile.
    #[error("{0}")]
    InvalidRegularExpression(String),
    /// 42701: column already exists.
    #[error("{0}")]
    DuplicateColumn(String),
    /// 42P07: table already exists.
    #[error("{0}")]
    DuplicateTable(String),
    /// 42710: object already exists.
    #[error("{0}")]
    DuplicateObject(String),
    /// 42602: a name that is not allowed.
    #[error("{0}")]
    InvalidName(String),
    /// 42804: a type that does not fit.
    #[error("{0}")]
    DatatypeMismatch(String),
    /// 0A000: not supported.
    #[error("{0}")]
    Unsupported(String),
    /// 2BP01: an object still in use cannot be dropped.
    #[error("{0}")]
    DependentObjects(String),
    /// 42501: not allowed for this user.
    #[error("{0}")]
    InsufficientPrivilege(String),
    /// 42P02: a `$n` parameter no value was bound for.
    #[error("{0}")]
    UndefinedParameter(String),
    /// 42P16: a table definition that is not allowed (two primary keys).
    #[error("{0}")]
    InvalidDefinition(String),
    /// 55000: the object is not in the state the statement needs (a
    /// published journey edited, a running one deleted).
    #[error("{0}")]
    ObjectState(String),
    /// 57014: cancelled or timed out.
    #[error("{0}")]
    Cancelled(String),
    /// 54000: a statement exceeds a configured limit.
    #[error("{0}")]
    ProgramLimit(String),
    /// 54001: a statement too complex to run (expressions nested too deeply).
    #[error("{0}")]
    TooComplex(String),
    /// 22P04: bad COPY data.
    #[error("{0}")]
    BadCopyFile(String),
    /// 58030: a file the statement reads or writes on the server (export) failed.
    #[error("{0}")]
    Io(String),
    /// Storage failure (58030 / XX000 depending on cause).
    #[error(transparent)]
    Storage(#[from] cohortdb_storage::StorageError),
    /// Planning / execution error from DataFusion.
    #[error(transparent)]
    DataFusion(#[from] DataFusionError),
}

/// Result alias of the SQL layer.
pub type Result<T, E = SqlError> = std::result::Result<T, E>;

impl From<SqlError> for DataFusionError {
    fn from(e: SqlError) -> Self {
        match e {
            SqlError::DataFusion(d) => d,
            other => DataFusionError::External(Box::new(other)),
        }
    }
}

impl From<datafusion::arrow::error::ArrowError> for SqlError {
    fn from(e: datafusion::arrow::error::ArrowError) -> Self {
        SqlError::DataFusion(DataFusionError::ArrowError(Box::new(e), None))
    }
}

impl From<datafusion::sql::sqlparser::parser::ParserError> for SqlError {
    fn from(e: datafusion::sql::sqlparser::parser::ParserError) -> Self {
        SqlError::Syntax(e.to_string())
    }
}

/// Finds a [`SqlError`] wrapped (possibly several times) inside a DataFusion error.
pub fn find_sql_error(e: &DataFusionError) -> Option<&SqlError> {
    match e {
        DataFusionError::External(inner) => inner.downcast_ref::<SqlError>().or_else(|| {
            inner
                .downcast_ref::<DataFusionError>()
                .and_then(find_sql_error)
        }),
        DataFusionError::Context(_, inner) => find_sql_error(inner),
        DataFusionError::Shared(inner) => find_sql_error(inner),
        DataFusionError::Diagnostic(_, inner) => find_sql_error(inner),
        _ => None,
    }
}

/// A syntax error with its position in `sql`, from a parser message that
/// ends in `at Line: L, Column: C` (sqlparser's form); the message is
/// reworded as PostgreSQL words it (`syntax error at or near "x"`).
pub fn syntax_error_at(sql: &str, parser_message: &str) -> SqlError {
    let msg = parser_message
        .trim_start_matches("sql parser error: ")
        .to_string();
    let (text, position) = match msg.rfind(" at Line: ") {
        Some(i) => {
            let loc = &msg[i + " at Line: ".len()..];
            let mut parts = loc.split(", Column: ");
            let line: Option<usize> = parts.next().and_then(|l| l.trim().parse().ok());
            let col: Option<usize> = parts.next().and_then(|c| c.trim().parse().ok());
            let pos = match (line, col) {
                (Some(l), Some(c)) if l >= 1 && c >= 1 => {
                    let before: usize = sql
                        .split_inclusive('\n')
                        .take(l - 1)
                        .map(|s| s.chars().count())
                        .sum();
                    Some(before + c)
                }
                _ => None,
            };
            (msg[..i].to_string(), pos)
        }
        None => (msg.clone(), None),
    };
    let worded = match text.rsplit_once(", found: ") {
        Some((expected, found)) => format!(
            "syntax error at or near \"{}\" ({})",
            found.trim(),
            expected
                .trim()
                .trim_end_matches(',')
                .to_ascii_lowercase()
                .replacen("expected: ", "expected ", 1)
        ),
        None => format!("syntax error: {text}"),
    };
    match position {
        Some(position) => SqlError::SyntaxAt {
            message: worded,
            position,
        },
        None => SqlError::Syntax(worded),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syntax_positions_count_characters_across_lines() {
        let sql = "SELECT 1\nFROM contacts WHERE id = = 3";
        match syntax_error_at(
            sql,
            "sql parser error: Expected: an expression, found: = at Line: 2, Column: 26",
        ) {
            SqlError::SyntaxAt { message, position } => {
                assert_eq!(
                    message,
                    "syntax error at or near \"=\" (expected an expression)"
                );
                assert_eq!(sql.chars().nth(position - 1), Some('='));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            syntax_error_at("x", "something odd"),
            SqlError::Syntax(_)
        ));
    }
}
