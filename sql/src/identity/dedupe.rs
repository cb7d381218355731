//! Duplicate contacts (seed 003 §1.4.7): `CALL set_dedupe_rule(...)`,
//! `CALL dedupe_contacts()` (and its dry run), also run daily at 02:45 by
//! the server's scheduler.
//!
//! A rule matches on `mobile_phone`, `email` and/or `id_card`: `any` = one
//! equal field makes two contacts duplicates, `all` = every chosen field is
//! set and equal. Values equal to a placeholder (`nil`, `null`,
//! `undefined`, `1` by default; compared trimmed and case-insensitively)
//! never match. Values are compared trimmed; emails case-insensitively.
//! Duplicates form clusters (transitively); each cluster merges into its
//! smallest (oldest) contact id with the rules of [`crate::identity::merge`].

use std::collections::HashMap;

use cohortdb_storage::{RowReader, Store, ValueRef};
use serde::{Deserialize, Serialize};

use crate::error::{Result, SqlError};
use crate::identity::merge::ContactWork;
use crate::runtime::StatementContext;

/// Name of the setting holding the rule.
const SETTING: &str = "dedupe_rule";
/// Fields a rule may use.
pub const DEDUPE_FIELDS: &[&str] = &["mobile_phone", "email", "id_card"];
/// Merges committed per write batch by a dedupe run.
const MERGES_PER_BATCH: usize = 256;

/// How the chosen fields combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MatchMode {
    /// Any one chosen field equal.
    Any,
    /// All chosen fields set and equal.
    All,
}

/// The dedupe rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DedupeRule {
    /// any / all.
    pub mode: MatchMode,
    /// Fields compared.
    pub fields: Vec<String>,
    /// Values ignored.
    pub placeholders: Vec<String>,
}

impl Default for DedupeRule {
    fn default() -> Self {
        DedupeRule {
            mode: MatchMode::Any,
            fields: DEDUPE_FIELDS.iter().map(|s| s.to_string()).collect(),
            placeholders: ["nil", "null", "undefined", "1"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
        }
    }
}

impl DedupeRule {
    /// Checks and builds a rule from procedure arguments.
    pub fn new(mode: &str, fields: Vec<String>, placeholders: Vec<String>) -> Result<DedupeRule> {
        let mode = match mode.trim().to_ascii_lowercase().as_str() {
            "any" => MatchMode::Any,
            "all" => MatchMode::All,
            other => {
                return Err(SqlError::InvalidValue(format!(
                    "dedupe mode must be 'any' or 'all', got '{other}'"
                )))
            }
        };
        let mut fs = Vec::new();
        for f in fields {
            let f = f.trim().to_ascii_lowercase();
            if !DEDUPE_FIELDS.contains(&f.as_str()) {
                return Err(SqlError::InvalidValue(format!(
                    "dedupe fields are mobile_phone, email and id_card, not '{f}'"
                )));
            }
            if !fs.contains(&f) {
                fs.push(f);
            }
        }
        if fs.is_empty() {
            return Err(SqlError::InvalidValue(
                "a dedupe rule needs at least one field (mobile_phone, email, id_card)".into(),
            ));
        }
        Ok(DedupeRule {
            mode,
            fields: fs,
            placeholders: placeholders
                .iter()
                .map(|p| p.trim().to_lowercase())
                .collect(),
        })
    }
}

/// The configured rule (the default when none was set).
pub fn rule(store: &Store) -> Result<DedupeRule> {
    match store.get_setting(SETTING)? {
        Some(b) => serde_json::from_slice(&b).map_err(|e| {
            SqlError::Storage(cohortdb_storage::StorageError::Corrupt(format!(
                "dedupe rule: {e}"
            )))
        }),
        None => Ok(DedupeRule::default()),
    }
}

/// Stores the rule.
pub async fn set_rule(store: &Store, r: &DedupeRule) -> Result<()> {
    let mut b = store.batch();
    b.put_setting(
        SETTING,
        &serde_json::to_vec(r).map_err(|e| SqlError::InvalidValue(e.to_string()))?,
    );
    crate::runtime::audit::take_into(store, &mut b, None);
    store.commit(b).await?;
    Ok(())
}

fn find(parent: &mut HashMap<u64, u64>, x: u64) -> u64 {
    let mut r = x;
    while let Some(p) = parent.get(&r).copied() {
        if p == r {
            break;
        }
        r = p;
    }
    let mut c = x;
    while let Some(p) = parent.get(&c).copied() {
        if p == r {
            break;
        }
        parent.insert(c, r);
        c = p;
    }
    r
}

fn union(parent: &mut HashMap<u64, u64>, a: u64, b: u64) {
    let (ra, rb) = (find(parent, a), find(parent, b));
    if ra != rb {
        let (lo, hi) = if ra < rb { (ra, rb) } else { (rb, ra) };
        parent.insert(hi, lo);
    }
}

/// The duplicate pairs under `r`: `(target, source)`, target = the smallest
/// id of the cluster, sorted.
pub fn find_pairs(store: &Store, r: &DedupeRule) -> Result<Vec<(u64, u64)>> {
    let cat = store.catalog();
    let fids: Vec<(u32, bool)> = r
        .fields
        .iter()
        .filter_map(|f| cat.contact_field(f).map(|(id, _)| (id, f == "email")))
        .collect();
    let norm = |s: &str, email: bool| -> Option<String> {
        let t = s.trim();
        if t.is_empty() || r.placeholders.iter().any(|p| p == &t.to_lowercase()) {
            return None;
        }
        Some(if email {
            t.to_lowercase()
        } else {
            t.to_string()
        })
    };
    let mut seen: HashMap<String, u64> = HashMap::new();
    let mut parent: HashMap<u64, u64> = HashMap::new();
    let mut vals: Vec<Option<String>> = vec![None; fids.len()];
    store.scan_contacts(None, &mut |id, bytes| {
        vals.iter_mut().for_each(|v| *v = None);
        for (fid, v) in RowReader::new(bytes) {
            if let Some(k) = fids.iter().position(|(f, _)| *f == fid) {
                if let ValueRef::Str(s) = v {
                    vals[k] = norm(s, fids[k].1);
                }
            }
        }
        let keys: Vec<String> = match r.mode {
            MatchMode::Any => vals
                .iter()
                .enumerate()
                .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}\u{0}{v}")))
                .collect(),
            MatchMode::All => {
                if vals.iter().all(Option::is_some) {
                    vec![vals
                        .iter()
                        .map(|v| v.as_deref().unwrap_or(""))
                        .collect::<Vec<_>>()
                        .join("\u{0}")]
                } else {
                    vec![]
                }
            }
        };
        for k in keys {
            match seen.get(&k) {
                Some(other) => union(&mut parent, *other, id),
                None => {
                    seen.insert(k, id);
                }
            }
        }
        true
    })?;
    let ids: Vec<u64> = parent.keys().copied().collect();
    let mut pairs = Vec::new();
    for id in ids {
        let root = find(&mut parent, id);
        if root != id {
            pairs.push((root, id));
        }
    }
    pairs.sort_unstable();
    Ok(pairs)
}

/// Runs dedupe with the configured rule: merges every duplicate into its
/// cluster's target (or, for a dry run, only lists the pairs). Returns the
/// pairs `(target, source)`; each merge is atomic on its own.
pub async fn run(ctx: &StatementContext, dry_run: bool) -> Result<Vec<(u64, u64)>> {
    let _g = ctx.contact_lock.lock().await;
    let store = ctx.store.clone();
    let r = rule(&store)?;
    let pairs = find_pairs(&store, &r)?;
    if dry_run {
        return Ok(pairs);
    }
    for chunk in pairs.chunks(MERGES_PER_BATCH) {
        let mut work = ContactWork::new(store.clone());
        for (t, s) in chunk {
            work.merge(*t, *s)?;
        }
        work.commit().await?;
    }
    if !pairs.is_empty() {
        tracing::info!(
            merged = pairs.len(),
            "dedupe_contacts merged duplicate contacts"
        );
    }
    Ok(pairs)
}
