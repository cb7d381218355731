//! `INSERT INTO events/contacts (...)` naming identity columns
//! (`external_id`, `openid`, `unionid`, `anonymous_id`; for contacts also
//! `channel_id`, `app_id`) instead of `contact_id` / `id`.
//!
//! These columns are not columns of the tables, so DataFusion cannot plan
//! the INSERT: the engine routes it here. The source query (VALUES or
//! SELECT) runs through DataFusion, and its rows go through the same
//! ingest paths as COPY: one atomic statement that resolves or creates the
//! contacts.

use datafusion::sql::sqlparser::ast::{Insert, Statement, TableObject};

use crate::error::{Result, SqlError};
use crate::identity::resolve::IdentifiedContacts;
use crate::ingest::batch::{EventIngest, WrittenEvent};
use crate::model::convert::value_at;
use crate::model::layout::EventCol;
use crate::model::rows::{contact_col_type, event_col_type, RowRef};
use crate::runtime::{Reply, StatementContext};

/// Identity columns events rows may give in place of `contact_id`
/// (`channel_id` is a real column of events).
pub const EVENT_IDENT: &[&str] = &["external_id", "openid", "unionid", "anonymous_id"];
/// Identity columns contacts rows may give in place of `id`.
pub const CONTACT_IDENT: &[&str] = &[
    "channel_id",
    "external_id",
    "openid",
    "unionid",
    "anonymous_id",
    "app_id",
];

/// The table an INSERT writes.
pub fn target(ins: &Insert) -> Option<String> {
    match &ins.table {
        TableObject::TableName(n) => {
            n.0.last()
                .map(|p| p.to_string().trim_matches('"').to_string())
        }
        _ => None,
    }
}

fn columns(ins: &Insert) -> Vec<String> {
    ins.columns
        .iter()
        .map(|c| c.to_string().trim_matches('"').to_string())
        .collect()
}

/// The stored type of `column` of an identity-keyed INSERT into `table`
/// (identity columns are text); `None` for an unknown table or column.
pub fn column_type(
    catalog: &cohortdb_storage::Catalog,
    table: &str,
    column: &str,
) -> Option<cohortdb_storage::DataType> {
    let ident = match table {
        "events" => EVENT_IDENT,
        "contacts" => CONTACT_IDENT,
        _ => return None,
    };
    if ident.contains(&column) {
        return Some(cohortdb_storage::DataType::Varchar);
    }
    match table {
        "events" => {
            let layout = crate::model::layout::EventLayout::new(catalog, false);
            let i = layout.index_of(column)?;
            Some(event_col_type(layout.cols[i].1))
        }
        _ => {
            let layout = crate::model::layout::ContactLayout::new(catalog);
            let i = layout.index_of(column)?;
            Some(contact_col_type(layout.cols[i].1))
        }
    }
}

/// True when `ins` is an INSERT into events or contacts naming identity columns.
pub fn wants(stmt: &Statement) -> bool {
    let Statement::Insert(ins) = stmt else {
        return false;
    };
    let cols = columns(ins);
    match target(ins).as_deref() {
        Some("events") => cols.iter().any(|c| EVENT_IDENT.contains(&c.as_str())),
        Some("contacts") => cols
            .iter()
            .any(|c| CONTACT_IDENT.contains(&c.as_str()) && c != "channel_id"),
        _ => false,
    }
}

/// Runs an identity-keyed INSERT (see the module documentation).
pub async fn run(sctx: &StatementContext, stmt: &Statement) -> Result<Reply> {
    Ok(run_recorded(sctx, stmt, false).await?.0)
}

/// [`run`]; with `record`, an events INSERT also returns the rows it wrote
/// (their contacts resolved), for RETURNING, which the caller computes.
pub async fn run_recorded(
    sctx: &StatementContext,
    stmt: &Statement,
    record: bool,
) -> Result<(Reply, Vec<WrittenEvent>)> {
    let Statement::Insert(ins) = stmt else {
        return Err(SqlError::Unsupported("not an INSERT".into()));
    };
    let table = target(ins).unwrap_or_default();
    if ins.returning.is_some() && !(record && table == "events") {
        return Err(SqlError::Unsupported(
            "INSERT INTO contacts … RETURNING with identity columns is not supported; CALL identify(...) returns the contact id"
                .into(),
        ));
    }
    let cols = columns(ins);
    let source = ins
        .source
        .clone()
        .ok_or_else(|| SqlError::Syntax("INSERT needs VALUES or a query".into()))?;
    let ctx = &sctx.df;
    let plan = ctx
        .state()
        .statement_to_plan(datafusion::sql::parser::Statement::Statement(Box::new(
            Statement::Query(source),
        )))
        .await?;
    let batches = ctx.execute_logical_plan(plan).await?.collect().await?;
    if let Some(b) = batches.first() {
        if b.num_columns() != cols.len() {
            return Err(SqlError::Syntax(format!(
                "INSERT has {} target columns but {} expressions",
                cols.len(),
                b.num_columns()
            )));
        }
    }
    let store = sctx.store.clone();
    let lock = sctx.contact_lock.clone();
    let mut n = 0u64;
    let bad_col = |c: &str| {
        SqlError::UndefinedColumn(format!(
            "column \"{c}\" of relation \"{table}\" does not exist"
        ))
    };
    if table == "events" {
        let mut ing = EventIngest::new(store);
        if record {
            ing.record_written();
        }
        let layout = ing.layout().clone();
        // per input column: Ok(layout index) or Err(identity index)
        let mut map = Vec::new();
        for c in &cols {
            match (layout.index_of(c), EVENT_IDENT.iter().position(|x| x == c)) {
                (_, Some(k)) => map.push(Err(k)),
                (Some(i), None) => map.push(Ok(i)),
                (None, None) => return Err(bad_col(c)),
            }
        }
        let channel_idx = layout.index_of("channel_id");
        for b in &batches {
            for r in 0..b.num_rows() {
                n += 1;
                let at = RowRef {
                    n,
                    copy_line: false,
                };
                let mut row = vec![cohortdb_storage::Value::Null; layout.cols.len()];
                let mut ids: [Option<String>; 4] = Default::default();
                for (c, m) in map.iter().enumerate() {
                    match m {
                        Ok(i) => {
                            let col: EventCol = layout.cols[*i].1;
                            row[*i] = value_at(b.column(c).as_ref(), r, event_col_type(col))
                                .map_err(|e| {
                                    SqlError::InvalidText(format!(
                                        "invalid value for column {} in {at}: {e}",
                                        cols[c]
                                    ))
                                })?;
                        }
                        Err(k) => {
                            if let cohortdb_storage::Value::Str(s) = value_at(
                                b.column(c).as_ref(),
                                r,
                                cohortdb_storage::DataType::Varchar,
                            )
                            .map_err(|e| SqlError::InvalidText(format!("{at}: {e}")))?
                            {
                                ids[*k] = Some(s);
                            }
                        }
                    }
                }
                let channel = channel_idx.and_then(|i| match &row[i] {
                    cohortdb_storage::Value::Str(s) => Some(s.clone()),
                    _ => None,
                });
                let id_refs = [
                    ids[0].as_deref(),
                    ids[1].as_deref(),
                    ids[2].as_deref(),
                    ids[3].as_deref(),
                ];
                let has_contact = layout
                    .index_of("contact_id")
                    .is_some_and(|i| !row[i].is_null());
                let contact = if has_contact {
                    None
                } else {
                    ing.identity_contact(channel.as_deref(), id_refs, at)?
                };
                ing.push_for(&row, contact, at)?;
            }
        }
        let (rows, written) = ing.commit_returning(&lock).await?;
        return Ok((
            Reply::Command {
                tag: "INSERT".into(),
                rows: Some(rows),
            },
            written,
        ));
    }
    // contacts
    let layout = crate::model::layout::ContactLayout::new(&store.catalog());
    let mut ing = IdentifiedContacts::new(store);
    for c in &cols {
        if layout.index_of(c).is_none() && !CONTACT_IDENT.contains(&c.as_str()) {
            return Err(bad_col(c));
        }
    }
    for b in &batches {
        for r in 0..b.num_rows() {
            n += 1;
            let at = RowRef {
                n,
                copy_line: false,
            };
            let (mut fields, mut ident) = (Vec::new(), Vec::new());
            for (c, name) in cols.iter().enumerate() {
                if CONTACT_IDENT.contains(&name.as_str()) {
                    let v = value_at(b.column(c).as_ref(), r, cohortdb_storage::DataType::Varchar)
                        .map_err(|e| SqlError::InvalidText(format!("{at}: {e}")))?;
                    ident.push((
                        name.clone(),
                        match v {
                            cohortdb_storage::Value::Str(s) => Some(s),
                            _ => None,
                        },
                    ));
                } else if let Some(i) = layout.index_of(name) {
                    let v = value_at(b.column(c).as_ref(), r, contact_col_type(layout.cols[i].1))
                        .map_err(|e| {
                        SqlError::InvalidText(format!(
                            "invalid value for column {name} in {at}: {e}"
                        ))
                    })?;
                    fields.push((name.clone(), v));
                }
            }
            ing.push(fields, &ident, at)?;
        }
    }
    let rows = ing.commit(&lock).await?;
    Ok((
        Reply::Command {
            tag: "INSERT".into(),
            rows: Some(rows),
        },
        Vec::new(),
    ))
}
