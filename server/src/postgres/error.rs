//! The one place where errors become Postgres SQLSTATEs.

use cohortdb_sql::{find_sql_error, SqlError};
use datafusion::arrow::error::ArrowError;
use datafusion::error::DataFusionError;
use pgwire::error::{ErrorInfo, PgWireError};

fn info(code: &str, msg: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_owned(),
        code.to_owned(),
        msg,
    )))
}

/// SQLSTATE of a cohortdb SQL error.
fn sql_code(e: &SqlError) -> &'static str {
    match e {
        SqlError::Syntax(_) | SqlError::SyntaxAt { .. } => "42601",
        SqlError::InvalidValue(_) => "22023",
        SqlError::InvalidText(_) => "22P02",
        SqlError::InvalidDatetime(_) => "22007",
        SqlError::UniqueViolation(_) => "23505",
        SqlError::NotNull(_) => "23502",
        SqlError::ForeignKey(_) => "23503",
        SqlError::UndefinedColumn(_) => "42703",
        SqlError::UndefinedTable(_) => "42P01",
        SqlError::UndefinedObject(_) => "42704",
        SqlError::UndefinedFunction(_) => "42883",
        SqlError::WrongObjectType(_) => "42809",
        SqlError::InvalidRegularExpression(_) => "2201B",
        SqlError::External(_) => "58000",
        SqlError::Io(_) => "58030",
        SqlError::DuplicateColumn(_) => "42701",
        SqlError::DuplicateTable(_) => "42P07",
        SqlError::DuplicateObject(_) => "42710",
        SqlError::InvalidName(_) => "42602",
        SqlError::DatatypeMismatch(_) => "42804",
        SqlError::Unsupported(_) => "0A000",
        SqlError::DependentObjects(_) => "2BP01",
        SqlError::InsufficientPrivilege(_) => "42501",
        SqlError::ObjectState(_) => "55000",
        SqlError::InvalidDefinition(_) => "42P16",
        SqlError::UndefinedParameter(_) => "42P02",
        SqlError::Cancelled(_) => "57014",
        SqlError::BadCopyFile(_) => "22P04",
        SqlError::ProgramLimit(_) => "54000",
        SqlError::TooComplex(_) => "54001",
        SqlError::DuplicatePrepared(_) => "42P05",
        SqlError::UndefinedPrepared(_) => "26000",
        SqlError::Storage(_) => "58030",
        SqlError::DataFusion(_) => "XX000",
    }
}

/// Maps a DataFusion error (which may wrap a cohortdb error) to a SQLSTATE and message.
fn datafusion_code(e: &DataFusionError) -> (&'static str, String) {
    if let Some(s) = find_sql_error(e) {
        if let SqlError::DataFusion(inner) = s {
            return datafusion_code(inner);
        }
        return (sql_code(s), s.to_string());
    }
    let msg = e.to_string();
    let code = match e {
        DataFusionError::SQL(..) => {
            if msg.contains("Unsupported") || msg.contains("not supported") {
                "0A000"
            } else {
                "42601"
            }
        }
        DataFusionError::NotImplemented(_) => "0A000",
        DataFusionError::ResourcesExhausted(m)
            if m.contains(cohortdb_sql::runtime::memory_budget::SERVER_BUDGET_EXHAUSTED) =>
        {
            return (
                "53200",
                format!("out of memory: running queries together use the server's memory budget; retry when they finish, or raise max_server_memory_mb. {msg}"),
            )
        }
        DataFusionError::ResourcesExhausted(_) => {
            return (
                "53200",
                format!("the query needs more memory than max_query_memory allows; raise it (e.g. SET max_query_memory = '8GB', 0 = no limit) or narrow the query. {msg}"),
            )
        }
        DataFusionError::ArrowError(a, _) => match a.as_ref() {
            ArrowError::CastError(_) | ArrowError::ParseError(_) => "22P02",
            ArrowError::DivideByZero => "22012",
            ArrowError::ArithmeticOverflow(_) => "22003",
            // values a function cannot take (e.g. bytes that are not UTF-8)
            ArrowError::InvalidArgumentError(_) => "22023",
            ArrowError::ComputeError(_) => "22000",
            ArrowError::IoError(..) => "58030",
            _ => "XX000",
        },
        DataFusionError::Configuration(_) => "22023",
        DataFusionError::IoError(_) => "58030",
        DataFusionError::Context(_, inner) | DataFusionError::Diagnostic(_, inner) => {
            return datafusion_code(inner)
        }
        DataFusionError::Shared(inner) => return datafusion_code(inner),
        DataFusionError::Plan(_) | DataFusionError::SchemaError(..) => classify_plan(&msg),
        DataFusionError::Execution(_) => classify_plan(&msg),
        _ => "XX000",
    };
    (code, msg)
}

fn classify_plan(msg: &str) -> &'static str {
    let m = msg.to_ascii_lowercase();
    if m.contains("no function matches") || m.contains("function") && m.contains("does not exist") {
        "42883"
    } else if m.contains("table")
        && (m.contains("not found") || m.contains("doesn't exist") || m.contains("does not exist"))
    {
        "42P01"
    } else if m.contains("no field named") || m.contains("column") && m.contains("not found") {
        "42703"
    } else if m.contains("invalid function") || m.contains("function") && m.contains("not found") {
        "42883"
    } else if m.contains("cast") || m.contains("cannot parse") || m.contains("invalid input") {
        "22P02"
    } else if m.contains("division by zero") || m.contains("divide by zero") {
        "22012"
    } else if m.contains("ambiguous") {
        "42702"
    } else if m.contains("type")
        && (m.contains("mismatch") || m.contains("coerc") || m.contains("cannot be"))
    {
        "42804"
    } else if m.contains("not supported") || m.contains("unsupported") {
        "0A000"
    } else {
        "42000"
    }
}

/// Converts a SQL-layer error into a wire error.
pub fn to_pg(e: SqlError) -> PgWireError {
    match e {
        SqlError::DataFusion(d) => {
            let (code, msg) = datafusion_code(&d);
            worded(code, strip_prefixes(msg))
        }
        SqlError::SyntaxAt { message, position } => {
            let mut e = ErrorInfo::new("ERROR".to_owned(), "42601".to_owned(), message);
            e.position = Some(position.to_string());
            PgWireError::UserError(Box::new(e))
        }
        other => info(sql_code(&other), other.to_string()),
    }
}

/// The error as PostgreSQL words the common ones (`column "x" does not
/// exist`, `relation "x" does not exist`), with DataFusion's suggestions
/// moved to the hint.
fn worded(code: &str, msg: String) -> PgWireError {
    let (message, hint) = pg_wording(code, &msg);
    let mut e = ErrorInfo::new("ERROR".to_owned(), code.to_owned(), message);
    e.hint = hint;
    PgWireError::UserError(Box::new(e))
}

fn pg_wording(code: &str, msg: &str) -> (String, Option<String>) {
    let msg = msg.trim_start_matches("Schema error: ");
    match code {
        "42703" => {
            if let Some(rest) = msg.strip_prefix("No field named ") {
                let (name, valid) = match rest.split_once("Valid fields are ") {
                    Some((n, v)) => (n, Some(v.trim().trim_end_matches('.'))),
                    None => (rest, None),
                };
                let name = name.trim().trim_end_matches('.').trim_matches('"');
                return (
                    format!("column \"{name}\" does not exist"),
                    valid.map(|v| format!("available columns: {v}")),
                );
            }
        }
        "42P01" => {
            if let Some(rest) = msg.strip_prefix("table '") {
                if let Some(name) = rest.strip_suffix("' not found") {
                    let short = name.rsplit('.').next().unwrap_or(name);
                    return (format!("relation \"{short}\" does not exist"), None);
                }
            }
        }
        "42883" => {
            if let Some(rest) = msg.strip_prefix("Invalid function '") {
                if let Some((name, after)) = rest.split_once("'.") {
                    let hint = after.trim();
                    return (
                        format!("function {name} does not exist"),
                        (!hint.is_empty()).then(|| hint.to_string()),
                    );
                }
            }
        }
        _ => {}
    }
    (msg.to_string(), None)
}

fn strip_prefixes(msg: String) -> String {
    let mut m = msg.as_str();
    for p in [
        "Error during planning: ",
        "External error: ",
        "Execution error: ",
        "SQL error: ",
        "Arrow error: ",
        "This feature is not implemented: ",
    ] {
        while let Some(rest) = m.strip_prefix(p) {
            m = rest;
        }
    }
    m.to_string()
}

/// Rewrites errors that reached pgwire unmapped (e.g. raised while streaming rows).
pub fn remap(error: &mut PgWireError) {
    if let PgWireError::ApiError(inner) = error {
        let mapped = if let Some(d) = inner.downcast_ref::<DataFusionError>() {
            let (code, msg) = datafusion_code(d);
            Some(worded(code, strip_prefixes(msg)))
        } else {
            inner
                .downcast_ref::<SqlError>()
                .map(|s| info(sql_code(s), s.to_string()))
        };
        if let Some(m) = mapped {
            *error = m;
        }
    }
}

/// 25P02: a statement sent in a transaction block that already failed.
pub fn in_failed_transaction() -> PgWireError {
    let mut e = ErrorInfo::new(
        "ERROR".to_owned(),
        "25P02".to_owned(),
        "current transaction is aborted, commands ignored until end of transaction block"
            .to_owned(),
    );
    e.hint = Some("send ROLLBACK (statements before the error stay applied: each statement is atomic on its own)".to_owned());
    PgWireError::UserError(Box::new(e))
}
