//! Users stored in the catalog: running `CREATE USER ... WITH PASSWORD`,
//! `ALTER USER ... PASSWORD`, `DROP USER` (parsed by
//! `crate::statement::user`), their SCRAM-SHA-256 secrets, and `admin` at
//! first start.

use std::sync::Arc;

use cohortdb_storage::catalog::{ScramSecret, UserDef};
use cohortdb_storage::Store;

use crate::error::{Result, SqlError};
use crate::runtime::Reply;
use crate::statement::{UserAction, UserStatement};

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
    store.catalog().user(name).cloned()
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
                    roles: vec![],
                });
            }
            Ok(())
        })
        .await
}

/// Runs a user statement as `current_user`.
pub async fn execute(
    store: &Arc<Store>,
    stmt: &UserStatement,
    current_user: &str,
) -> Result<Reply> {
    let name = stmt.name.clone();
    let superuser = stmt.superuser;
    // who may run it was checked before (access::privilege)
    let secret = stmt.password.clone().flatten().as_deref().map(scram_secret);
    let audit = |batch: &mut cohortdb_storage::Batch, action: &str, detail: &str| {
        batch.put_audit(
            store,
            &crate::runtime::audit::row(current_user, action, "user", &name, detail),
        );
    };
    let tag = store
        .update_catalog(|data, batch| -> Result<&'static str> {
            let pos = data.users.iter().position(|u| u.name == name);
            match &stmt.action {
                UserAction::Create => {
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
                        roles: vec![],
                    });
                    audit(batch, "create_user", "");
                    Ok("CREATE ROLE")
                }
                UserAction::Alter => {
                    let i = pos.ok_or_else(|| {
                        SqlError::UndefinedObject(format!("role \"{name}\" does not exist"))
                    })?;
                    if stmt.password.is_some() {
                        data.users[i].scram = secret;
                    }
                    if let Some(s) = superuser {
                        data.users[i].superuser = s;
                    }
                    let mut changed = vec![];
                    if stmt.password.is_some() {
                        changed.push("password");
                    }
                    if superuser.is_some() {
                        changed.push("superuser");
                    }
                    audit(batch, "alter_user", &changed.join(","));
                    Ok("ALTER ROLE")
                }
                UserAction::Drop { if_exists } => {
                    match pos {
                        Some(_) if name == "admin" => {
                            return Err(SqlError::DependentObjects(
                                "user \"admin\" cannot be dropped".into(),
                            ))
                        }
                        Some(_) if name == current_user => {
                            return Err(SqlError::DependentObjects(
                                "the current user cannot be dropped".into(),
                            ))
                        }
                        Some(i) => {
                            data.users.remove(i);
                            audit(batch, "drop_user", "");
                        }
                        None if *if_exists => {}
                        None => {
                            return Err(SqlError::UndefinedObject(format!(
                                "role \"{name}\" does not exist"
                            )))
                        }
                    }
                    Ok("DROP ROLE")
                }
                UserAction::Grant { role } | UserAction::Revoke { role } => {
                    let r = crate::access::roles::Role::from_name(role).ok_or_else(|| {
                        SqlError::UndefinedObject(format!(
                            "role \"{role}\" does not exist (roles: {})",
                            crate::access::roles::Role::ALL
                                .iter()
                                .map(|r| r.name())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ))
                    })?;
                    let i = pos.ok_or_else(|| {
                        SqlError::UndefinedObject(format!("role \"{name}\" does not exist"))
                    })?;
                    let held = &mut data.users[i].roles;
                    if matches!(stmt.action, UserAction::Grant { .. }) {
                        if !held.iter().any(|h| h == r.name()) {
                            held.push(r.name().to_string());
                        }
                        audit(batch, "grant_role", r.name());
                        Ok("GRANT ROLE")
                    } else {
                        held.retain(|h| h != r.name());
                        audit(batch, "revoke_role", r.name());
                        Ok("REVOKE ROLE")
                    }
                }
            }
        })
        .await?;
    Ok(Reply::command(tag))
}
