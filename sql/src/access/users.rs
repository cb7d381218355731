//! Users stored in the catalog: `CREATE USER ... WITH PASSWORD`,
//! `ALTER USER ... PASSWORD`, `DROP USER`, their SCRAM-SHA-256 secrets, and
//! `admin` at first start. The statements are recognised here (the SQL
//! parser does not take PostgreSQL's role options) and run as
//! `CALL cohortdb_user(...)`.

use std::sync::Arc;

use cohortdb_storage::catalog::{ScramSecret, UserDef};
use cohortdb_storage::Store;
use datafusion::sql::sqlparser::ast::{
    Expr, Function, FunctionArg, FunctionArgExpr, FunctionArguments, Value,
};

use crate::engine::Outcome;
use crate::error::{Result, SqlError};

/// Name of the procedure user statements become.
pub const PROCEDURE: &str = "cohortdb_user";
/// PBKDF2 iterations of new secrets (PostgreSQL's default).
pub const ITERATIONS: u32 = 4096;

/// A SCRAM-SHA-256 secret for `password` with a fresh random salt.
pub fn scram_secret(password: &str) -> ScramSecret {
    use ring::rand::SecureRandom;
    let mut salt = vec![0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut salt)
        .expect("system random");
    let mut out = vec![0u8; 32];
    ring::pbkdf2::derive(
        ring::pbkdf2::PBKDF2_HMAC_SHA256,
        std::num::NonZeroU32::new(ITERATIONS).expect("non-zero"),
        &salt,
        password.as_bytes(),
        &mut out,
    );
    ScramSecret {
        iterations: ITERATIONS,
        salt,
        salted_password: out,
    }
}

/// The user `name`, if it exists.
pub fn lookup(store: &Store, name: &str) -> Option<UserDef> {
    store
        .catalog()
        .data()
        .users
        .iter()
        .find(|u| u.name == name)
        .cloned()
}

/// True when logins need a password: `admin` has one.
pub fn passwords_required(store: &Store) -> bool {
    lookup(store, "admin").is_some_and(|u| u.scram.is_some())
}

/// Creates `admin` on a store that has no users yet, with `password` if given.
pub async fn ensure_admin(store: &Arc<Store>, password: Option<&str>) -> Result<()> {
    let secret = password.map(scram_secret);
    store
        .update_catalog(|data, _| -> Result<()> {
            if !data.users.iter().any(|u| u.name == "admin") {
                data.users.push(UserDef {
                    name: "admin".into(),
                    superuser: true,
                    scram: secret,
                });
            }
            Ok(())
        })
        .await
}

fn tokens(sql: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut chars = sql.trim().trim_end_matches(';').chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() || c == ',' {
            chars.next();
        } else if c == '\'' {
            chars.next();
            let mut s = String::from("'");
            loop {
                match chars.next() {
                    None => return None,
                    Some('\'') if chars.peek() == Some(&'\'') => {
                        chars.next();
                        s.push('\'');
                    }
                    Some('\'') => break,
                    Some(ch) => s.push(ch),
                }
            }
            out.push(s);
        } else if c == '"' {
            chars.next();
            let mut s = String::new();
            for ch in chars.by_ref() {
                if ch == '"' {
                    break;
                }
                s.push(ch);
            }
            out.push(format!("\"{s}"));
        } else {
            let mut s = String::new();
            while let Some(&ch) = chars.peek() {
                if ch.is_whitespace() || ch == ',' || ch == ';' {
                    break;
                }
                s.push(ch);
                chars.next();
            }
            if s.is_empty() {
                chars.next();
            } else {
                out.push(s);
            }
        }
    }
    Some(out)
}

fn ident(t: &str) -> String {
    match t.strip_prefix('"') {
        Some(q) => q.to_string(),
        None => t.to_ascii_lowercase(),
    }
}

fn lit(s: Option<&str>) -> String {
    match s {
        Some(s) => format!("'{}'", s.replace('\'', "''")),
        None => "NULL".into(),
    }
}

/// Rewrites a `CREATE/ALTER/DROP USER|ROLE` statement into the
/// `CALL cohortdb_user(action, name, password, superuser)` that runs it;
/// `None` for any other text.
pub fn rewrite_sql(sql: &str) -> Option<String> {
    let head: Vec<String> = sql
        .split_whitespace()
        .take(2)
        .map(|w| w.to_ascii_uppercase())
        .collect();
    if head.len() < 2 || !matches!(head[1].as_str(), "USER" | "ROLE") {
        return None;
    }
    if !matches!(head[0].as_str(), "CREATE" | "ALTER" | "DROP") {
        return None;
    }
    let t = tokens(sql)?;
    let action = head[0].to_ascii_lowercase();
    let mut i = 2;
    if action == "drop" {
        let mut if_exists = false;
        if t.len() > i + 1
            && t[i].eq_ignore_ascii_case("if")
            && t[i + 1].eq_ignore_ascii_case("exists")
        {
            if_exists = true;
            i += 2;
        }
        let calls: Vec<String> = t[i..]
            .iter()
            .map(|n| {
                format!(
                    "CALL {PROCEDURE}('{}', {}, NULL, {if_exists})",
                    if if_exists { "drop_if_exists" } else { "drop" },
                    lit(Some(&ident(n)))
                )
            })
            .collect();
        return (!calls.is_empty()).then(|| calls.join("; "));
    }
    let name = ident(t.get(i)?);
    i += 1;
    let mut password: Option<String> = None;
    let mut superuser = "NULL";
    while i < t.len() {
        let w = t[i].to_ascii_uppercase();
        match w.as_str() {
            "WITH" | "LOGIN" | "NOLOGIN" | "INHERIT" | "NOINHERIT" | "CREATEDB" | "NOCREATEDB"
            | "CREATEROLE" | "NOCREATEROLE" | "ENCRYPTED" => {}
            "SUPERUSER" => superuser = "true",
            "NOSUPERUSER" => superuser = "false",
            "PASSWORD" => {
                i += 1;
                let p = t.get(i)?;
                if p.eq_ignore_ascii_case("null") {
                    password = None;
                } else {
                    password = Some(p.strip_prefix('\'')?.to_string());
                }
            }
            _ => return None,
        }
        i += 1;
    }
    Some(format!(
        "CALL {PROCEDURE}('{action}', {}, {}, {superuser})",
        lit(Some(&name)),
        lit(password.as_deref())
    ))
}

fn args(f: &Function) -> Vec<Option<String>> {
    let FunctionArguments::List(list) = &f.args else {
        return vec![];
    };
    list.args
        .iter()
        .map(|a| match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(v))) => match &v.value {
                Value::SingleQuotedString(s) => Some(s.clone()),
                Value::Boolean(b) => Some(b.to_string()),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// True for the procedure call [`rewrite_sql`] produces.
pub fn is_user_call(f: &Function) -> bool {
    f.name.to_string().eq_ignore_ascii_case(PROCEDURE)
}

/// Runs a user statement (the call [`rewrite_sql`] produced) as `current_user`.
pub async fn call(store: &Arc<Store>, f: &Function, current_user: &str) -> Result<Outcome> {
    let a = args(f);
    let get = |i: usize| a.get(i).cloned().flatten();
    let action = get(0).unwrap_or_default();
    let name = get(1).ok_or_else(|| SqlError::Syntax("user name missing".into()))?;
    let password = get(2);
    let superuser = get(3).map(|s| s == "true");
    if let Some(me) = lookup(store, current_user) {
        if !me.superuser {
            return Err(SqlError::InsufficientPrivilege(
                "permission denied to manage users: only superusers can".into(),
            ));
        }
    }
    let secret = password.as_deref().map(scram_secret);
    let tag = store
        .update_catalog(|data, _| -> Result<&'static str> {
            let pos = data.users.iter().position(|u| u.name == name);
            match action.as_str() {
                "create" => {
                    if pos.is_some() {
                        return Err(SqlError::DuplicateObject(format!(
                            "role \"{name}\" already exists"
                        )));
                    }
                    if name.is_empty() || name.len() > 63 {
                        return Err(SqlError::InvalidName(format!(
                            "invalid user name \"{name}\""
                        )));
                    }
                    data.users.push(UserDef {
                        name: name.clone(),
                        superuser: superuser.unwrap_or(false),
                        scram: secret,
                    });
                    Ok("CREATE ROLE")
                }
                "alter" => {
                    let i = pos.ok_or_else(|| {
                        SqlError::UndefinedObject(format!("role \"{name}\" does not exist"))
                    })?;
                    if secret.is_some() || password.is_none() {
                        data.users[i].scram = secret;
                    }
                    if let Some(s) = superuser {
                        data.users[i].superuser = s;
                    }
                    Ok("ALTER ROLE")
                }
                "drop" | "drop_if_exists" => {
                    match pos {
                        Some(_) if name == "admin" => {
                            return Err(SqlError::DependentObjects(
                                "user \"admin\" cannot be dropped".into(),
                            ))
                        }
                        Some(i) => {
                            data.users.remove(i);
                        }
                        None if action == "drop_if_exists" => {}
                        None => {
                            return Err(SqlError::UndefinedObject(format!(
                                "role \"{name}\" does not exist"
                            )))
                        }
                    }
                    Ok("DROP ROLE")
                }
                other => Err(SqlError::Syntax(format!("unknown user action {other}"))),
            }
        })
        .await?;
    Ok(Outcome::Command {
        tag: tag.into(),
        rows: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_rewrite() {
        assert_eq!(
            rewrite_sql("CREATE USER bob WITH PASSWORD 'it''s'").as_deref(),
            Some("CALL cohortdb_user('create', 'bob', 'it''s', NULL)")
        );
        assert_eq!(
            rewrite_sql("alter user Bob password 'x';").as_deref(),
            Some("CALL cohortdb_user('alter', 'bob', 'x', NULL)")
        );
        assert_eq!(
            rewrite_sql("DROP USER IF EXISTS bob").as_deref(),
            Some("CALL cohortdb_user('drop_if_exists', 'bob', NULL, true)")
        );
        assert!(rewrite_sql("CREATE TABLE user (a int)").is_none());
        assert!(rewrite_sql("SELECT 1").is_none());
    }
}
