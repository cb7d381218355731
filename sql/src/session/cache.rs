//! The simple protocol's statement cache: the plans of the last query
//! texts a session ran (`SELECT …` only, one statement per text), so an
//! application or dashboard sending the same text again skips parsing and
//! planning. Entries are the same [`Prepared`] statements the extended
//! protocol makes, and run the same way (privileges checked each time, the
//! plan made again when a table it reads was altered). Any other statement
//! run by the session (SET, DDL, …) empties the cache, since settings and
//! definitions shape plans.
//!
//! Texts that differ only in the constants a key lookup looks up
//! (`SELECT * FROM contacts WHERE id = 17`, then `… id = 42`) share one
//! entry, a [`Template`]: the text's shape (every number and quoted string
//! replaced by `?`), which of its constants are the lookup's key values and
//! what the others must be. A text of a known shape runs the lookup with
//! its own constants, without parsing or planning; anything the lookup
//! cannot answer exactly goes the usual way. `INSERT … VALUES` texts
//! (no RETURNING) whose constants are exactly their values share a
//! template the same way (`handler::row_insert`).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::logical_expr::{Expr, LogicalPlan};

use datafusion::common::ScalarValue;
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

use super::{Outcome, Prepared, Session};
use crate::access::privilege;
use crate::error::Result;
use crate::handler::lookup::KeyLookup;
use crate::handler::row_insert::RowInsert;
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
    by_shape: HashMap<String, std::sync::Arc<Template>>,
    shapes: VecDeque<String>,
}

/// A key lookup's or row insert's text with its constants left open.
pub struct Template {
    prepared: Prepared,
    kind: Templated,
    /// Each constant of the text, in order.
    constants: Vec<Constant>,
}

/// What a template runs with a text's constants.
enum Templated {
    /// A key lookup; its key values are constants of the text.
    Lookup(KeyLookup),
    /// An `INSERT … VALUES` (no RETURNING); every constant of the text is
    /// one of its values, in order, and becomes the value's type (the
    /// planner folds `CAST(12 AS TEXT)` to `'12'`).
    Insert(RowInsert, Vec<datafusion::arrow::datatypes::DataType>),
}

/// A constant of a template's text.
#[derive(Debug, Clone, PartialEq)]
enum Constant {
    /// The `slot`-th key value of the lookup: an integer or a string.
    Key { slot: usize, integer: bool },
    /// Any other constant: must be this token again.
    Fixed(String),
}

/// A constant token of a text: its token text, and its value when it is
/// an integer or a quoted string.
struct TextConstant {
    token: String,
    value: Option<ScalarValue>,
    integer: bool,
}

/// The shape of `text` (each number and quoted string as `?`) and its
/// constants; `None` when the text does not tokenize.
fn shape_of(text: &str) -> Option<(String, Vec<TextConstant>)> {
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, text)
        .tokenize()
        .ok()?;
    let mut shape = String::with_capacity(text.len());
    let mut constants = Vec::new();
    for t in tokens {
        match &t {
            Token::Number(n, _) => {
                shape.push('?');
                constants.push(TextConstant {
                    token: t.to_string(),
                    value: n.parse::<i64>().ok().map(|i| ScalarValue::Int64(Some(i))),
                    integer: true,
                });
            }
            Token::SingleQuotedString(v) => {
                shape.push('?');
                constants.push(TextConstant {
                    token: t.to_string(),
                    value: Some(ScalarValue::Utf8(Some(v.clone()))),
                    integer: false,
                });
            }
            other => shape.push_str(&other.to_string()),
        }
    }
    Some((shape, constants))
}

/// The template of `text`, planned as `p`: each key value of its lookup
/// must be exactly one constant of the text, equal to it.
fn template_of(text: &str, p: &Prepared) -> Option<(String, Template)> {
    if let Some(insert) = p.insert.as_ref().filter(|i| !i.returns_rows()) {
        return insert_template_of(text, p, insert);
    }
    let lookup = p.lookup.as_ref()?;
    let values = lookup.literal_values()?;
    let (shape, text_constants) = shape_of(text)?;
    let mut constants: Vec<Constant> = text_constants
        .iter()
        .map(|c| Constant::Fixed(c.token.clone()))
        .collect();
    for (slot, v) in values.iter().enumerate() {
        let v = match v {
            ScalarValue::LargeUtf8(Some(s)) | ScalarValue::Utf8View(Some(s)) => {
                ScalarValue::Utf8(Some(s.clone()))
            }
            other => other.clone(),
        };
        let mut matches = text_constants
            .iter()
            .enumerate()
            .filter(|(_, c)| c.value.as_ref() == Some(&v));
        let (i, c) = matches.next()?;
        if matches.next().is_some() || constants[i] != Constant::Fixed(c.token.clone()) {
            return None;
        }
        constants[i] = Constant::Key {
            slot,
            integer: c.integer,
        };
    }
    Some((
        shape,
        Template {
            prepared: p.clone(),
            kind: Templated::Lookup(lookup.as_ref().clone()),
            constants,
        },
    ))
}

/// The template of `text`, an `INSERT … VALUES` planned as `p`: its
/// constants must be the VALUES entries, in order, and nothing else.
fn insert_template_of(text: &str, p: &Prepared, insert: &RowInsert) -> Option<(String, Template)> {
    let values = insert.literal_values()?;
    let (shape, text_constants) = shape_of(text)?;
    if values.len() != text_constants.len() {
        return None;
    }
    let mut constants = Vec::with_capacity(values.len());
    let mut types = Vec::with_capacity(values.len());
    for (slot, (v, c)) in values.iter().zip(&text_constants).enumerate() {
        let t = v.data_type();
        if c.value.as_ref()?.cast_to(&t).ok().as_ref() != Some(v) {
            return None;
        }
        constants.push(Constant::Key {
            slot,
            integer: c.integer,
        });
        types.push(t);
    }
    Some((
        shape,
        Template {
            prepared: p.clone(),
            kind: Templated::Insert(insert.clone(), types),
            constants,
        },
    ))
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

    fn template(&self, shape: &str) -> Option<std::sync::Arc<Template>> {
        self.inner
            .lock()
            .expect("query cache")
            .by_shape
            .get(shape)
            .cloned()
    }

    fn insert_template(&self, shape: String, t: Template) {
        let mut e = self.inner.lock().expect("query cache");
        if e.by_shape
            .insert(shape.clone(), std::sync::Arc::new(t))
            .is_none()
        {
            e.shapes.push_back(shape);
        }
        while e.shapes.len() > CACHED_QUERIES {
            if let Some(old) = e.shapes.pop_front() {
                e.by_shape.remove(&old);
            }
        }
    }

    fn remove_template(&self, shape: &str) {
        let mut e = self.inner.lock().expect("query cache");
        if e.by_shape.remove(shape).is_some() {
            e.shapes.retain(|t| t != shape);
        }
    }

    /// Forgets every plan.
    pub fn clear(&self) {
        let mut e = self.inner.lock().expect("query cache");
        e.by_text.clear();
        e.order.clear();
        e.by_shape.clear();
        e.shapes.clear();
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
            && match stmt {
                Statement::Query(q) => {
                    matches!(&**q, datafusion::sql::sqlparser::ast::Statement::Query(_))
                }
                Statement::Insert(ins) => crate::handler::query::returning(ins).is_none(),
                _ => false,
            }
    }

    /// Plans `stmt`, the only statement of `text`, and keeps the plan for
    /// the text when it may be reused.
    pub async fn prepare_for_text(&self, text: &str, stmt: Statement) -> Result<Prepared> {
        let p = self.prepare(stmt).await?;
        if let Some((shape, t)) = template_of(text, &p) {
            self.query_cache.insert_template(shape, t);
        } else if p.plan.as_ref().is_some_and(cacheable_plan) {
            self.query_cache.insert(text, p.clone());
        }
        Ok(p)
    }

    /// Runs simple-protocol text `text` as the key lookup of a template
    /// this session made from a text of the same shape; `None` when there
    /// is none, or the lookup cannot answer this text's constants exactly
    /// (run the text the usual way).
    pub async fn run_templated(&self, text: &str) -> Option<Result<Outcome>> {
        if text.len() > CACHED_TEXT_BYTES {
            return None;
        }
        let (shape, text_constants) = shape_of(text)?;
        let t = self.query_cache.template(&shape)?;
        if text_constants.len() != t.constants.len() {
            return None;
        }
        let mut values: Vec<(usize, ScalarValue)> = Vec::new();
        for (c, want) in text_constants.iter().zip(&t.constants) {
            match want {
                Constant::Fixed(token) if *token == c.token => {}
                Constant::Key { slot, integer } if *integer == c.integer => {
                    values.push((*slot, c.value.clone()?));
                }
                _ => return None,
            }
        }
        values.sort_by_key(|(slot, _)| *slot);
        let values: Vec<ScalarValue> = values.into_iter().map(|(_, v)| v).collect();
        let plan = t.prepared.plan.as_ref()?;
        if let Some(planned_in) = &t.prepared.planned_in {
            let now = self.engine.store().catalog();
            if !std::sync::Arc::ptr_eq(&now, &planned_in.catalog)
                && !super::describe::reads_current_tables(plan, &now)
            {
                self.query_cache.remove_template(&shape);
                return None;
            }
        }
        let roles = self.authorize();
        if let Err(e) = privilege::check_statement(&t.prepared.stmt, roles, &self.user())
            .and_then(|_| privilege::check_plan(plan, roles))
        {
            return Some(Err(e));
        }
        let lookup = match &t.kind {
            Templated::Lookup(lookup) => lookup.with_literal_values(&values),
            Templated::Insert(insert, types) => {
                // a constant its value's type does not take: plan the text
                // (the planner reports it)
                let values = values
                    .iter()
                    .zip(types)
                    .map(|(v, t)| v.cast_to(t).ok())
                    .collect::<Option<Vec<_>>>()?;
                let insert = insert.with_literal_values(&values);
                let audit = super::dispatch::dml_audit(plan);
                return self
                    .audited(audit, async {
                        Ok(insert.run(None).await?.map(|n| Outcome::Command {
                            tag: "INSERT".into(),
                            rows: Some(n),
                        }))
                    })
                    .await
                    .transpose();
            }
        };
        match lookup.run(None).await {
            Ok(Some(batch)) => Some(Ok(Outcome::Batch {
                batch,
                origins: t.prepared.origins.clone(),
            })),
            Ok(None) => None,
            Err(e) => Some(Err(e)),
        }
    }
}
