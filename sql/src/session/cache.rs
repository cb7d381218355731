//! The simple protocol's statement cache: the plans of the last query
//! texts a session ran (`SELECT …` only, one statement per text), so an
//! application or dashboard sending the same text again skips parsing and
//! planning. Entries are the same [`Prepared`] statements the extended
//! protocol makes, and run the same way (privileges checked each time, the
//! plan made again when a table it reads was altered). Any other statement
//! run by the session (SET, DDL, …) empties the cache, since settings and
//! definitions shape plans.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::logical_expr::{Expr, LogicalPlan};

use super::{Prepared, Session};
use crate::error::Result;
use crate::statement::Statement;

/// Texts a session keeps plans for.
pub const CACHED_QUERIES: usize = 64;
/// Longer texts are not cached.
pub const CACHED_TEXT_BYTES: usize = 8 << 10;

/// A session's cached query plans, oldest first out.
#[derive(Default)]
pub struct QueryCache {
    inner: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    by_text: HashMap<String, Prepared>,
    order: VecDeque<String>,
}

impl QueryCache {
    fn get(&self, text: &str) -> Option<Prepared> {
        self.inner
            .lock()
            .expect("query cache")
            .by_text
            .get(text)
            .cloned()
    }

    fn remove(&self, text: &str) {
        let mut e = self.inner.lock().expect("query cache");
        if e.by_text.remove(text).is_some() {
            e.order.retain(|t| t != text);
        }
    }

    fn insert(&self, text: &str, p: Prepared) {
        let mut e = self.inner.lock().expect("query cache");
        if e.by_text.insert(text.to_string(), p).is_none() {
            e.order.push_back(text.to_string());
        }
        while e.order.len() > CACHED_QUERIES {
            if let Some(old) = e.order.pop_front() {
                e.by_text.remove(&old);
            }
        }
    }

    /// Forgets every plan.
    pub fn clear(&self) {
        let mut e = self.inner.lock().expect("query cache");
        e.by_text.clear();
        e.order.clear();
    }
}

/// Whether a statement's plan may be kept for its text: a query that reads
/// a table and calls no function that reads or changes settings.
fn cacheable_plan(plan: &LogicalPlan) -> bool {
    let mut reads_table = false;
    let mut settings = false;
    let _ = plan.apply_with_subqueries(|p| {
        if matches!(p, LogicalPlan::TableScan(_)) {
            reads_table = true;
        }
        p.apply_expressions(|e| {
            e.apply(|e| {
                if let Expr::ScalarFunction(f) = e {
                    if matches!(f.name(), "set_config" | "current_setting") {
                        settings = true;
                        return Ok(TreeNodeRecursion::Stop);
                    }
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    });
    reads_table && !settings
}

impl Session {
    /// The plan of simple-protocol text `text`, if this session ran it
    /// recently and nothing since could change how it plans.
    pub fn cached_query(&self, text: &str) -> Option<Prepared> {
        let p = self.query_cache.get(text)?;
        // a text is planned again, never refused, once a table it reads
        // was altered (by another session)
        if let (Some(plan), Some(planned_in)) = (&p.plan, &p.planned_in) {
            let now = self.engine.store().catalog();
            if !std::sync::Arc::ptr_eq(&now, &planned_in.catalog)
                && !super::describe::reads_current_tables(plan, &now)
            {
                self.query_cache.remove(text);
                return None;
            }
        }
        Some(p)
    }

    /// Whether `stmt`, the only statement of a simple-protocol text, is one
    /// whose plan the session keeps for the text.
    pub fn caches(text: &str, stmt: &Statement) -> bool {
        text.len() <= CACHED_TEXT_BYTES
            && matches!(
                stmt,
                Statement::Query(q) if matches!(&**q, datafusion::sql::sqlparser::ast::Statement::Query(_))
            )
    }

    /// Plans `stmt`, the only statement of `text`, and keeps the plan for
    /// the text when it may be reused.
    pub async fn prepare_for_text(&self, text: &str, stmt: Statement) -> Result<Prepared> {
        let p = self.prepare(stmt).await?;
        if p.plan.as_ref().is_some_and(cacheable_plan) {
            self.query_cache.insert(text, p.clone());
        }
        Ok(p)
    }
}
