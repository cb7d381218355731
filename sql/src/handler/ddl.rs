//! Catalog DDL on tables: `CREATE TABLE` (user tables), `DROP TABLE`, and
//! `ALTER TABLE contacts|events ADD COLUMN p_…` (custom fields). Each is one
//! atomic catalog update.

use cohortdb_storage::catalog::FieldDef;
use cohortdb_storage::{ColumnDef, DataType, Store, UserTableDef};
use datafusion::sql::sqlparser::ast::{AlterTableOperation, CreateTable};

use crate::error::{Result, SqlError};
use crate::runtime::Reply;
use crate::statement::parse::object_name;
use crate::tables::catalog::BUILTIN_RELATIONS;
use crate::tables::meta::{define_property, is_identifier};

/// `CREATE TABLE [IF NOT EXISTS] name (columns)`.
pub async fn create_table(store: &Store, ct: &CreateTable) -> Result<Reply> {
    let name = object_name(&ct.name);
    let mut cols = Vec::new();
    for c in &ct.columns {
        let t = DataType::parse(&c.data_type.to_string()).ok_or_else(|| {
            SqlError::Unsupported(format!(
                "column \"{}\": type {} is not supported (use VARCHAR, BIGINT, DOUBLE, BOOLEAN, DATE or TIMESTAMPTZ)",
                c.name.value, c.data_type
            ))
        })?;
        if cols.iter().any(|x: &ColumnDef| x.name == c.name.value) {
            return Err(SqlError::DuplicateColumn(format!(
                "column \"{}\" specified more than once",
                c.name.value
            )));
        }
        use datafusion::sql::sqlparser::ast::ColumnOption;
        cols.push(ColumnDef {
            name: c.name.value.clone(),
            data_type: t,
            not_null: c.options.iter().any(|o| {
                matches!(
                    o.option,
                    ColumnOption::NotNull | ColumnOption::PrimaryKey(_)
                )
            }),
        });
    }
    if cols.is_empty() {
        return Err(SqlError::Syntax(
            "CREATE TABLE needs at least one column".into(),
        ));
    }
    let mut key_names: Vec<String> = Vec::new();
    for c in &ct.columns {
        if c.options.iter().any(|o| {
            matches!(
                o.option,
                datafusion::sql::sqlparser::ast::ColumnOption::PrimaryKey(_)
            )
        }) {
            key_names.push(c.name.value.clone());
        }
    }
    for k in &ct.constraints {
        if let datafusion::sql::sqlparser::ast::TableConstraint::PrimaryKey(pk) = k {
            if !key_names.is_empty() {
                return Err(SqlError::InvalidDefinition(format!(
                    "multiple primary keys for table \"{name}\" are not allowed"
                )));
            }
            key_names = index_columns(&pk.columns)?;
        }
    }
    let primary_key = key_positions(&name, &cols, &key_names)?;
    add_table(store, &name, cols, primary_key, ct.if_not_exists).await?;
    Ok(Reply::command("CREATE TABLE"))
}

/// Adds a user table to the catalog; `Ok(false)` when it exists and
/// `if_not_exists` (42P07 otherwise, also for a view or built-in of that name).
pub(crate) async fn add_table(
    store: &Store,
    name: &str,
    cols: Vec<ColumnDef>,
    primary_key: Vec<u32>,
    if_not_exists: bool,
) -> Result<bool> {
    let name = name.to_string();
    store
        .update_catalog(|data, _| -> Result<bool> {
            if BUILTIN_RELATIONS.contains(&name.as_str())
                || data.tables.iter().any(|t| t.name == name)
                || data.views.iter().any(|v| v.name == name)
            {
                if if_not_exists {
                    return Ok(false);
                }
                return Err(SqlError::DuplicateTable(format!(
                    "relation \"{name}\" already exists"
                )));
            }
            if !is_identifier(&name) {
                return Err(SqlError::InvalidName(format!(
                    "invalid table name \"{name}\""
                )));
            }
            let id = data.next_table_id;
            data.next_table_id += 1;
            data.tables.push(UserTableDef {
                id,
                name: name.clone(),
                columns: cols.clone(),
                primary_key: primary_key.clone(),
            });
            Ok(true)
        })
        .await
}

/// Column names of a key's column list.
fn index_columns(cols: &[datafusion::sql::sqlparser::ast::IndexColumn]) -> Result<Vec<String>> {
    cols.iter()
        .map(|c| match &c.column.expr {
            datafusion::sql::sqlparser::ast::Expr::Identifier(id) => Ok(id.value.clone()),
            other => Err(SqlError::Unsupported(format!(
                "a primary key lists columns, not expressions ({other})"
            ))),
        })
        .collect()
}

/// Positions of the key columns `names` in `cols` (42703 for an unknown one).
fn key_positions(table: &str, cols: &[ColumnDef], names: &[String]) -> Result<Vec<u32>> {
    let mut out = Vec::with_capacity(names.len());
    for n in names {
        let Some(i) = cols.iter().position(|c| &c.name == n) else {
            return Err(SqlError::UndefinedColumn(format!(
                "column \"{n}\" named in key does not exist in table \"{table}\""
            )));
        };
        if out.contains(&(i as u32)) {
            return Err(SqlError::DuplicateColumn(format!(
                "column \"{n}\" appears twice in primary key constraint"
            )));
        }
        out.push(i as u32);
    }
    Ok(out)
}

/// `ALTER TABLE <user table> ADD [CONSTRAINT name] PRIMARY KEY (cols)`:
/// every existing row is checked (23505 for a repeated key, 23502 for a
/// NULL) and indexed; nothing changes when one fails.
async fn add_primary_key(store: &Store, table: &str, key_names: &[String]) -> Result<Reply> {
    use crate::ingest::batch::{duplicate_key, user_pk, USER_ROW_WRITES};
    let _g = USER_ROW_WRITES.lock().await;
    let Some(mut def) = store.catalog().table(table).cloned() else {
        return Err(SqlError::UndefinedTable(format!(
            "relation \"{table}\" does not exist"
        )));
    };
    if !def.primary_key.is_empty() {
        return Err(SqlError::InvalidDefinition(format!(
            "multiple primary keys for table \"{table}\" are not allowed"
        )));
    }
    def.primary_key = key_positions(table, &def.columns, key_names)?;
    let mut seen = std::collections::HashSet::new();
    let mut batch = store.batch();
    batch.drop_user_pks(def.id);
    let mut failure = None;
    store.scan_user_rows(def.id, &mut |row_id, bytes| {
        let row = cohortdb_storage::codec::decode_row(bytes, def.columns.len());
        match user_pk(&def, &row) {
            Ok(Some(key)) => {
                if !seen.insert(key.clone()) {
                    failure = Some(duplicate_key(&def, &row));
                    return false;
                }
                batch.put_user_pk(def.id, &key, row_id);
                true
            }
            Ok(None) => true,
            Err(e) => {
                failure = Some(e);
                false
            }
        }
    })?;
    if let Some(e) = failure {
        return Err(e);
    }
    store.commit(batch).await?;
    let key = def.primary_key.clone();
    store
        .update_catalog(|data, _| -> Result<()> {
            match data.tables.iter_mut().find(|t| t.id == def.id) {
                Some(t) => {
                    t.primary_key = key.clone();
                    Ok(())
                }
                None => Err(SqlError::UndefinedTable(format!(
                    "relation \"{table}\" does not exist"
                ))),
            }
        })
        .await?;
    Ok(Reply::command("ALTER TABLE"))
}

/// `DROP TABLE [IF EXISTS] names`.
pub async fn drop_table(store: &Store, names: &[String], if_exists: bool) -> Result<Reply> {
    for name in names {
        if BUILTIN_RELATIONS.contains(&name.as_str()) {
            return Err(SqlError::InsufficientPrivilege(format!(
                "\"{name}\" is a built-in relation and cannot be dropped"
            )));
        }
        store
            .update_catalog(|data, batch| -> Result<()> {
                match data.tables.iter().position(|t| &t.name == name) {
                    Some(i) => {
                        let t = data.tables.remove(i);
                        batch.drop_user_table_rows(t.id);
                        Ok(())
                    }
                    None if if_exists => Ok(()),
                    None => Err(SqlError::UndefinedTable(format!(
                        "table \"{name}\" does not exist"
                    ))),
                }
            })
            .await?;
    }
    Ok(Reply::command("DROP TABLE"))
}

/// `TRUNCATE [TABLE] names`: every row of the named user tables goes, in
/// one atomic batch; nothing changes when one name is not a user table.
/// The built-in relations are refused (0A000): contacts go with `DELETE`
/// (which also removes their identities, events and memberships), events
/// with `CALL drop_events_before`.
pub async fn truncate(store: &Store, names: &[String]) -> Result<Reply> {
    let catalog = store.catalog();
    let mut ids = Vec::with_capacity(names.len());
    for name in names {
        if BUILTIN_RELATIONS.contains(&name.as_str()) {
            return Err(SqlError::Unsupported(format!(
                "TRUNCATE of built-in relation \"{name}\" is not supported; use DELETE FROM contacts, or CALL drop_events_before('YYYY-MM-DD') for events"
            )));
        }
        let t = catalog
            .data()
            .tables
            .iter()
            .find(|t| &t.name == name)
            .ok_or_else(|| {
                SqlError::UndefinedTable(format!("relation \"{name}\" does not exist"))
            })?;
        ids.push(t.id);
    }
    let mut batch = store.batch();
    for id in ids {
        batch.drop_user_table_rows(id);
    }
    store.commit(batch).await?;
    Ok(Reply::command("TRUNCATE TABLE"))
}

/// `VACUUM` / `ANALYZE`: every named table must exist (42P01 otherwise);
/// there is nothing to reclaim or collect (see [`Statement::Maintenance`]).
///
/// [`Statement::Maintenance`]: crate::statement::Statement::Maintenance
pub async fn maintenance(
    ctx: &datafusion::prelude::SessionContext,
    kind: crate::statement::MaintenanceKind,
    tables: &[String],
) -> Result<Reply> {
    for t in tables {
        if !ctx.table_exist(t.as_str())? {
            return Err(SqlError::UndefinedTable(format!(
                "relation \"{t}\" does not exist"
            )));
        }
    }
    Ok(Reply::command(kind.tag()))
}

/// `ALTER TABLE contacts|events ADD COLUMN p_<name> <type>`.
pub async fn alter_table(store: &Store, table: &str, ops: &[AlterTableOperation]) -> Result<Reply> {
    if table != "contacts" && table != "events" {
        if let [AlterTableOperation::AddConstraint {
            constraint: datafusion::sql::sqlparser::ast::TableConstraint::PrimaryKey(pk),
            ..
        }] = ops
        {
            return add_primary_key(store, table, &index_columns(&pk.columns)?).await;
        }
        return Err(SqlError::Unsupported(format!(
            "ALTER TABLE is supported on contacts and events (ADD COLUMN p_<name> <type>), not on \"{table}\""
        )));
    }
    let mut adds = Vec::new();
    for op in ops {
        match op {
            AlterTableOperation::AddColumn { column_def, if_not_exists, .. } => {
                let name = column_def.name.value.clone();
                let t = DataType::parse(&column_def.data_type.to_string()).ok_or_else(|| {
                    SqlError::Unsupported(format!(
                        "type {} is not supported for custom fields (use VARCHAR, BIGINT, DOUBLE, DATE or TIMESTAMPTZ)",
                        column_def.data_type
                    ))
                })?;
                if !name.starts_with("p_") || !is_identifier(&name) || name.len() < 3 {
                    return Err(SqlError::InvalidName(format!(
                        "invalid custom field name \"{name}\": custom fields are named p_<name> with letters, digits and underscores"
                    )));
                }
                if table == "contacts" && t == DataType::Boolean {
                    return Err(SqlError::Unsupported(
                        "custom contact fields are VARCHAR, BIGINT, DOUBLE, DATE or TIMESTAMPTZ".into(),
                    ));
                }
                adds.push((name, t, *if_not_exists));
            }
            AlterTableOperation::DropColumn { .. } => {
                return Err(SqlError::Unsupported("custom fields cannot be dropped".into()))
            }
            AlterTableOperation::AlterColumn { .. } => {
                return Err(SqlError::Unsupported(
                    "the type of a field cannot change (masking is set with ALTER COLUMN ... SET MASKED, not yet available)".into(),
                ))
            }
            other => return Err(SqlError::Unsupported(format!("unsupported ALTER TABLE operation: {other}"))),
        }
    }
    let is_contacts = table == "contacts";
    store
        .update_catalog(|data, _| -> Result<()> {
            for (name, t, if_not_exists) in &adds {
                if is_contacts {
                    if data.contact_fields.iter().any(|f| &f.name == name) {
                        if *if_not_exists {
                            continue;
                        }
                        return Err(SqlError::DuplicateColumn(format!(
                            "column \"{name}\" of relation \"contacts\" already exists"
                        )));
                    }
                    data.contact_fields.push(FieldDef {
                        name: name.clone(),
                        data_type: *t,
                        custom: true,
                        masked: false,
                    });
                } else {
                    if data.event_properties.iter().any(|p| &p.property == name) {
                        if *if_not_exists {
                            continue;
                        }
                        return Err(SqlError::DuplicateColumn(format!(
                            "column \"{name}\" of relation \"events\" already exists"
                        )));
                    }
                    define_property(data, name, None, *t)?;
                }
            }
            Ok(())
        })
        .await?;
    Ok(Reply::command("ALTER TABLE"))
}

/// `ALTER TABLE contacts ALTER COLUMN c SET|DROP MASKED`.
pub async fn set_masked(
    store: &Store,
    m: &crate::statement::user::MaskStatement,
    user: &str,
) -> Result<Reply> {
    if m.table != "contacts" {
        return Err(SqlError::Unsupported(format!(
            "only columns of contacts can be masked, not of {}",
            m.table
        )));
    }
    store
        .update_catalog(|data, batch| {
            batch.put_audit(
                store,
                &crate::runtime::audit::row(
                    user,
                    if m.masked {
                        "set_masked"
                    } else {
                        "drop_masked"
                    },
                    "column",
                    &format!("contacts.{}", m.column),
                    "",
                ),
            );
            let f = data
                .contact_fields
                .iter_mut()
                .find(|f| f.name == m.column)
                .ok_or_else(|| {
                    SqlError::UndefinedColumn(format!(
                        "column \"{}\" of relation \"contacts\" does not exist{}",
                        m.column,
                        if m.column == "id" || m.column == "is_identified" {
                            " as a maskable field (id and is_identified cannot be masked)"
                        } else {
                            ""
                        }
                    ))
                })?;
            f.masked = m.masked;
            Ok::<_, SqlError>(())
        })
        .await?;
    Ok(Reply::command("ALTER TABLE"))
}
