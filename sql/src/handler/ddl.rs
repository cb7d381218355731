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
    if ct.query.is_some() {
        return Err(SqlError::Unsupported(
            "CREATE TABLE ... AS SELECT is not supported; create the table, then INSERT ... SELECT"
                .into(),
        ));
    }
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
        cols.push(ColumnDef {
            name: c.name.value.clone(),
            data_type: t,
        });
    }
    if cols.is_empty() {
        return Err(SqlError::Syntax(
            "CREATE TABLE needs at least one column".into(),
        ));
    }
    let if_not_exists = ct.if_not_exists;
    let created = store
        .update_catalog(|data, _| -> Result<bool> {
            if BUILTIN_RELATIONS.contains(&name.as_str())
                || data.tables.iter().any(|t| t.name == name)
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
                columns: cols,
            });
            Ok(true)
        })
        .await?;
    let _ = created;
    Ok(Reply::command("CREATE TABLE"))
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

/// `ALTER TABLE contacts|events ADD COLUMN p_<name> <type>`.
pub async fn alter_table(store: &Store, table: &str, ops: &[AlterTableOperation]) -> Result<Reply> {
    if table != "contacts" && table != "events" {
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
