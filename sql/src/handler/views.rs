//! Relations made from queries: `CREATE [OR REPLACE] VIEW` / `DROP VIEW`
//! (stored views, planned again each time they are read) and `CREATE TABLE
//! … AS query` (a user table filled with the query's rows).

use std::sync::Arc;

use cohortdb_storage::{ColumnDef, DataType, Store, ViewDef};
use datafusion::arrow::datatypes::{DataType as A, Field, Schema, SchemaRef};
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{self, CreateTable};

use crate::error::{Result, SqlError};
use crate::model::pgtext::pg_column_name;
use crate::runtime::Reply;
use crate::statement::parse::object_name;
use crate::tables::catalog::BUILTIN_RELATIONS;
use crate::tables::meta::is_identifier;

/// The result columns of `query` planned in `ctx`, named as PostgreSQL
/// names them, renamed by position with `names` (fewer names rename only the
/// leading columns, as in PostgreSQL).
async fn query_columns(
    ctx: &SessionContext,
    query: &ast::Query,
    names: &[String],
) -> Result<SchemaRef> {
    let plan = super::query::plan(ctx, &ast::Statement::Query(Box::new(query.clone()))).await?;
    let fields = plan.schema().fields();
    if names.len() > fields.len() {
        return Err(SqlError::Syntax(format!(
            "{} column names given for a query with {} columns",
            names.len(),
            fields.len()
        )));
    }
    let mut out: Vec<Field> = Vec::with_capacity(fields.len());
    for (i, f) in fields.iter().enumerate() {
        let name = names
            .get(i)
            .cloned()
            .unwrap_or_else(|| pg_column_name(f.name()));
        if out.iter().any(|o| o.name() == &name) {
            return Err(SqlError::DuplicateColumn(format!(
                "column \"{name}\" specified more than once"
            )));
        }
        out.push(Field::new(name, f.data_type().clone(), true));
    }
    Ok(Arc::new(Schema::new(out)))
}

/// `CREATE [OR REPLACE] VIEW name [(columns)] AS query`: the query is planned
/// now (errors are reported now) and stored as text with its columns.
pub async fn create_view(
    ctx: &SessionContext,
    store: &Store,
    name: &str,
    columns: &[String],
    query: &ast::Query,
    or_replace: bool,
    if_not_exists: bool,
) -> Result<Reply> {
    if !is_identifier(name) {
        return Err(SqlError::InvalidName(format!(
            "invalid view name \"{name}\""
        )));
    }
    let schema = query_columns(ctx, query, columns).await?;
    let def = ViewDef {
        name: name.to_string(),
        sql: query.to_string(),
        columns: crate::tables::view::encode_columns(&schema)?,
    };
    store
        .update_catalog(|data, _| -> Result<()> {
            if BUILTIN_RELATIONS.contains(&name) || data.tables.iter().any(|t| t.name == name) {
                return Err(SqlError::DuplicateTable(format!(
                    "relation \"{name}\" already exists"
                )));
            }
            match data.views.iter_mut().find(|v| v.name == name) {
                Some(v) if or_replace => *v = def.clone(),
                Some(_) if if_not_exists => {}
                Some(_) => {
                    return Err(SqlError::DuplicateTable(format!(
                        "relation \"{name}\" already exists"
                    )))
                }
                None => data.views.push(def.clone()),
            }
            Ok(())
        })
        .await?;
    Ok(Reply::command("CREATE VIEW"))
}

/// `DROP VIEW [IF EXISTS] names`: all or nothing.
pub async fn drop_view(store: &Store, names: &[String], if_exists: bool) -> Result<Reply> {
    store
        .update_catalog(|data, _| -> Result<()> {
            for n in names {
                if !data.views.iter().any(|v| &v.name == n) {
                    if if_exists {
                        continue;
                    }
                    let what = if data.tables.iter().any(|t| &t.name == n)
                        || BUILTIN_RELATIONS.contains(&n.as_str())
                    {
                        format!("\"{n}\" is not a view")
                    } else {
                        format!("view \"{n}\" does not exist")
                    };
                    return Err(SqlError::UndefinedTable(what));
                }
            }
            data.views.retain(|v| !names.contains(&v.name));
            Ok(())
        })
        .await?;
    Ok(Reply::command("DROP VIEW"))
}

/// The storage type of a query column, if a user table can hold it.
fn storage_type(t: &A) -> Option<DataType> {
    Some(match t {
        A::Utf8 | A::LargeUtf8 | A::Utf8View => DataType::Varchar,
        A::Int8 | A::Int16 | A::Int32 | A::Int64 | A::UInt8 | A::UInt16 | A::UInt32 | A::UInt64 => {
            DataType::Bigint
        }
        A::Float16 | A::Float32 | A::Float64 | A::Decimal128(..) | A::Decimal256(..) => {
            DataType::Double
        }
        A::Boolean => DataType::Boolean,
        A::Date32 | A::Date64 => DataType::Date,
        A::Timestamp(..) => DataType::Timestamptz,
        _ => return None,
    })
}

/// `CREATE TABLE name [(columns)] AS query`: a user table with the query's
/// columns, filled with its rows; when filling fails the table is dropped
/// again. Completes as `SELECT n`, as in PostgreSQL.
pub async fn create_table_as(
    ctx: &SessionContext,
    store: &Store,
    ct: &CreateTable,
    query: &ast::Query,
) -> Result<Reply> {
    let name = object_name(&ct.name);
    let names: Vec<String> = ct.columns.iter().map(|c| c.name.value.clone()).collect();
    let schema = query_columns(ctx, query, &names).await?;
    let mut cols = Vec::with_capacity(schema.fields().len());
    for f in schema.fields() {
        let t = storage_type(f.data_type()).ok_or_else(|| {
            SqlError::Unsupported(format!(
                "column \"{}\" is of type {} which a table cannot hold; cast it (text, bigint, double precision, boolean, date, timestamptz)",
                f.name(),
                f.data_type()
            ))
        })?;
        cols.push(ColumnDef {
            name: f.name().clone(),
            data_type: t,
            not_null: false,
        });
    }
    if !super::ddl::add_table(store, &name, cols, vec![], ct.if_not_exists).await? {
        return Ok(Reply::Command {
            tag: "SELECT".into(),
            rows: Some(0),
        });
    }
    let insert = format!("INSERT INTO \"{name}\" {query}");
    let filled = async {
        let batches = ctx.sql(&insert).await?.collect().await?;
        Ok::<u64, SqlError>(super::query::dml_count(&batches))
    }
    .await;
    match filled {
        Ok(n) => Ok(Reply::Command {
            tag: "SELECT".into(),
            rows: Some(n),
        }),
        Err(e) => {
            let _ = super::ddl::drop_table(store, std::slice::from_ref(&name), true).await;
            Err(e)
        }
    }
}
