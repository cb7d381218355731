//! Session settings (the `SET`/`SHOW`/`RESET`/`current_setting` namespace):
//! names as clients spell them, the values PostgreSQL reports by default,
//! and the statements that only touch session state (`RESET`, `CLOSE ALL`,
//! `UNLISTEN *`, `DISCARD`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use datafusion::sql::sqlparser::ast::{Reset, Statement};

use crate::error::{Result, SqlError};
use crate::runtime::Reply;

/// Name of the one database.
pub const DATABASE: &str = "cohortdb";
/// Postgres version reported to clients.
pub const PG_VERSION: &str = "16.4";
/// `server_version_num` reported to clients.
pub const PG_VERSION_NUM: &str = "160004";

/// A session's explicitly set values, shared with the functions that read them.
pub type SettingsMap = Arc<Mutex<HashMap<String, String>>>;

/// The canonical (lower-case) name of a setting as `SHOW`/`SET` spell it.
pub fn normalize(name: &str) -> String {
    let n = name.trim().to_ascii_lowercase();
    let n = n.split_whitespace().collect::<Vec<_>>().join(" ");
    match n.as_str() {
        "time zone" => "timezone".into(),
        "transaction isolation level" => "transaction_isolation".into(),
        "session authorization" => "session_authorization".into(),
        "names" => "client_encoding".into(),
        _ => n,
    }
}

/// The value PostgreSQL 16 reports for a setting nobody has set.
pub fn default_value(name: &str, tz: &str) -> Option<String> {
    Some(match name {
        "timezone" => tz.to_string(),
        "log_timezone" => "UTC".into(),
        "server_version" => PG_VERSION.to_string(),
        "server_version_num" => PG_VERSION_NUM.to_string(),
        "client_encoding" | "server_encoding" => "UTF8".into(),
        "datestyle" => "ISO, MDY".into(),
        "intervalstyle" => "postgres".into(),
        "standard_conforming_strings" | "integer_datetimes" => "on".into(),
        "transaction_isolation" | "default_transaction_isolation" => "read committed".into(),
        "transaction_read_only" | "default_transaction_read_only" | "transaction_deferrable" => {
            "off".into()
        }
        "search_path" => "\"$user\", public".into(),
        "application_name" => String::new(),
        "extra_float_digits" => "1".into(),
        "client_connection_check_interval" => "500ms".into(),
        "statement_timeout"
        | "lock_timeout"
        | "idle_in_transaction_session_timeout"
        | "idle_session_timeout" => "0".into(),
        "max_identifier_length" => "63".into(),
        "max_index_keys" => "32".into(),
        "bytea_output" => "hex".into(),
        "is_superuser" => "on".into(),
        "jit" => "off".into(),
        "lc_collate" | "lc_ctype" | "lc_messages" | "lc_monetary" | "lc_numeric" | "lc_time" => {
            "en_US.UTF-8".into()
        }
        "default_text_search_config" => "pg_catalog.english".into(),
        "row_security" => "on".into(),
        "block_size" => "8192".into(),
        "max_connections" => "100".into(),
        "ssl" => "off".into(),
        "session_authorization" => "admin".into(),
        "work_mem" => "4MB".into(),
        "default_tablespace" | "temp_tablespaces" => String::new(),
        "synchronous_commit" => "on".into(),
        "enable_seqscan" => "on".into(),
        "default_table_access_method" => "heap".into(),
        _ => return None,
    })
}

/// The current value of `name` in a session whose time zone is `tz`.
pub fn lookup(map: &SettingsMap, name: &str, tz: &str) -> Option<String> {
    let n = normalize(name);
    if let Some(v) = map.lock().expect("settings").get(&n) {
        return Some(v.clone());
    }
    if n.contains('.') {
        // custom (extension-style) settings exist once set
        return None;
    }
    default_value(&n, tz)
}

/// Sets `name` (as `set_config` does).
pub fn store(map: &SettingsMap, name: &str, value: &str) {
    map.lock()
        .expect("settings")
        .insert(normalize(name), value.to_string());
}

/// Forgets every explicitly set value (`RESET ALL`, `DISCARD ALL`).
pub fn reset_all(map: &SettingsMap) {
    map.lock().expect("settings").clear();
}

/// Forgets one explicitly set value (`RESET name`).
pub fn reset(map: &SettingsMap, name: &str) {
    map.lock().expect("settings").remove(&normalize(name));
}

/// Runs a statement that only touches session state: `RESET ALL`,
/// `RESET name`, `CLOSE ALL` / `CLOSE name` (cursors: none are kept open),
/// `UNLISTEN` (notifications are not delivered).
pub fn session_statement(map: &SettingsMap, stmt: &Statement) -> Result<Reply> {
    let tag = match stmt {
        Statement::Reset(r) => {
            match &r.reset {
                Reset::ALL => reset_all(map),
                Reset::ConfigurationParameter(n) => reset(map, &n.to_string()),
            }
            "RESET"
        }
        Statement::Close { .. } => "CLOSE CURSOR",
        Statement::UNLISTEN { .. } => "UNLISTEN",
        other => {
            return Err(SqlError::Unsupported(format!(
                "not a session statement: {other}"
            )))
        }
    };
    Ok(Reply::command(tag))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_defaults() {
        let m: SettingsMap = Default::default();
        assert_eq!(
            lookup(&m, "TRANSACTION ISOLATION LEVEL", "UTC").as_deref(),
            Some("read committed")
        );
        store(&m, "extra_float_digits", "3");
        assert_eq!(
            lookup(&m, "Extra_Float_Digits", "UTC").as_deref(),
            Some("3")
        );
        reset_all(&m);
        assert_eq!(
            lookup(&m, "extra_float_digits", "UTC").as_deref(),
            Some("1")
        );
        assert_eq!(
            lookup(&m, "TimeZone", "Asia/Shanghai").as_deref(),
            Some("Asia/Shanghai")
        );
        assert!(lookup(&m, "no_such_thing", "UTC").is_none());
    }
}
