//! The key-lookup fast path: a planned query that reads rows of one table
//! by its whole key (`contacts.id`, `contact_view.id`, a user table's one-column primary key,
//! `identities (id_type, channel_id, id_value)`) and projects columns is
//! answered with direct RocksDB gets, without DataFusion execution.
//!
//! The shape is recognized on the logical plan, not on text:
//!
//! ```text
//! [Limit fetch=n]                     -- literal fetch, no offset
//!   Projection: columns (or aliases of columns)
//!     Filter: key = v AND …           -- every key column once; `key IN (v, …)` for a one-column key
//!       [SubqueryAlias]
//!         TableScan                   -- a provider with a keyed read (`tables::keyed`)
//! ```
//!
//! where each `v` is a literal or a `$n` parameter. Anything else (another
//! conjunct, an expression in the select list, ORDER BY, a join) is not a
//! lookup and runs as usual. A lookup returns exactly what the general path
//! returns: the provider's keyed read yields the rows its scan yields for
//! the same filter (same order, same masking), and a key value that does
//! not convert exactly to the key column's type (a float, text for an
//! integer key) makes the statement run on the general path instead.

use std::sync::Arc;

use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::{ParamValues, ScalarValue};
use datafusion::datasource::{source_as_provider, TableProvider};
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{
    BinaryExpr, Expr, FetchType, JoinType, LogicalPlan, Operator, SkipType, TableScan,
};

use crate::error::Result;
use crate::tables::contacts::ContactsTable;
use crate::tables::identities::IdentitiesTable;
use crate::tables::keyed::keyed;

/// Batches of more keys than this are read on the blocking pool.
const INLINE_KEYS: usize = 32;

/// A value a key column is compared with.
#[derive(Debug, Clone)]
pub enum KeyValue {
    /// A constant of the statement.
    Literal(ScalarValue),
    /// A bound parameter (`$1`).
    Param(String),
    /// `CAST(v AS text)` of an integer or text value.
    Text(Box<KeyValue>),
}

impl KeyValue {
    /// The constant this value is, looking through `CAST(… AS text)`.
    fn literal(&self) -> Option<&ScalarValue> {
        match self {
            KeyValue::Literal(s) => Some(s),
            KeyValue::Param(_) => None,
            KeyValue::Text(inner) => inner.literal(),
        }
    }

    /// This value with its constant replaced by `v`.
    fn with_literal(&self, v: ScalarValue) -> KeyValue {
        match self {
            KeyValue::Literal(_) | KeyValue::Param(_) => KeyValue::Literal(v),
            KeyValue::Text(inner) => KeyValue::Text(Box::new(inner.with_literal(v))),
        }
    }

    /// The value, given the statement's parameters (`None`: cannot tell
    /// exactly; run the general path).
    fn resolve(&self, params: Option<&ParamValues>) -> Result<Option<ScalarValue>> {
        Ok(match self {
            KeyValue::Literal(s) => Some(s.clone()),
            KeyValue::Param(id) => match params {
                Some(p) => Some(p.get_placeholders_with_values(id)?.value),
                None => None,
            },
            KeyValue::Text(inner) => match inner.resolve(params)? {
                None => None,
                Some(v) if v.is_null() => Some(ScalarValue::Utf8(None)),
                Some(
                    ScalarValue::Utf8(Some(s))
                    | ScalarValue::LargeUtf8(Some(s))
                    | ScalarValue::Utf8View(Some(s)),
                ) => Some(ScalarValue::Utf8(Some(s))),
                Some(
                    v @ (ScalarValue::Int8(_)
                    | ScalarValue::Int16(_)
                    | ScalarValue::Int32(_)
                    | ScalarValue::Int64(_)
                    | ScalarValue::UInt8(_)
                    | ScalarValue::UInt16(_)
                    | ScalarValue::UInt32(_)
                    | ScalarValue::UInt64(_)),
                ) => Some(ScalarValue::Utf8(Some(v.to_string()))),
                Some(_) => None,
            },
        })
    }

    fn describe(&self) -> String {
        match self {
            KeyValue::Literal(s) => s.to_string(),
            KeyValue::Param(p) => p.clone(),
            KeyValue::Text(inner) => format!("CAST({} AS text)", inner.describe()),
        }
    }
}

/// A recognized key lookup (see the module docs).
#[derive(Debug, Clone)]
pub struct KeyLookup {
    table: Arc<dyn TableProvider>,
    table_name: String,
    /// Key column names, in key order (for EXPLAIN).
    key_names: Vec<String>,
    /// Arrow types of the key columns, in key order.
    key_types: Vec<DataType>,
    /// One tuple per looked-up key, values in key-column order.
    keys: Vec<Vec<KeyValue>>,
    /// Where each output column comes from.
    columns: Vec<Column>,
    /// The contact an identity lookup is joined with, if it is.
    contact: Option<ContactJoin>,
    /// The statement's output schema.
    schema: SchemaRef,
    limit: Option<usize>,
}

/// Where an output column comes from: a position in the keyed table's
/// schema, or in the joined contacts'.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Column {
    Keyed(usize),
    Contact(usize),
}

/// `identities JOIN contacts ON identities.contact_id = contacts.id`: the
/// contact of the identity read by key (either side of the join).
#[derive(Debug, Clone)]
struct ContactJoin {
    table_name: String,
    contacts: Arc<dyn TableProvider>,
}

/// `identities.contact_id`.
const IDENTITY_CONTACT_ID: usize = 0;

/// The table under an optional alias.
fn table_scan(plan: &LogicalPlan) -> Option<&TableScan> {
    let plan = match plan {
        LogicalPlan::SubqueryAlias(a) => a.input.as_ref(),
        other => other,
    };
    match plan {
        LogicalPlan::TableScan(scan) if scan.filters.is_empty() && scan.fetch.is_none() => {
            Some(scan)
        }
        _ => None,
    }
}

/// Why a key tuple matches no row, or its value ready for the keyed read.
enum Converted {
    Key(ScalarValue),
    /// NULL or a value out of the column type's range: `=` is never true.
    NoMatch,
    /// Not an exact conversion: leave the statement to the general path.
    Unsure,
}

impl KeyLookup {
    /// The lookup `plan` is, if it is one.
    pub fn recognize(plan: &LogicalPlan) -> Option<KeyLookup> {
        let schema: SchemaRef = Arc::new(plan.schema().as_arrow().clone());
        let (plan, limit) = match plan {
            LogicalPlan::Limit(l) => {
                if !matches!(l.get_skip_type().ok()?, SkipType::Literal(0)) {
                    return None;
                }
                let FetchType::Literal(fetch) = l.get_fetch_type().ok()? else {
                    return None;
                };
                (l.input.as_ref(), fetch)
            }
            other => (other, None),
        };
        let LogicalPlan::Projection(projection) = plan else {
            return None;
        };
        let LogicalPlan::Filter(filter) = projection.input.as_ref() else {
            return None;
        };
        let mut conjuncts: Vec<&Expr> = split_conjunction(&filter.predicate);
        // one table, or identities joined with contacts / contact_view
        let (scans, join_on) = match filter.input.as_ref() {
            LogicalPlan::Join(j) if j.join_type == JoinType::Inner => {
                if let Some(f) = &j.filter {
                    conjuncts.extend(split_conjunction(f));
                }
                (
                    vec![table_scan(&j.left)?, table_scan(&j.right)?],
                    j.on.clone(),
                )
            }
            other => (vec![table_scan(other)?], vec![]),
        };
        let providers = scans
            .iter()
            .map(|s| source_as_provider(&s.source).ok())
            .collect::<Option<Vec<_>>>()?;
        // the keyed table, and the contacts an identity is joined with
        let (keyed_side, contact_side) = match providers.len() {
            1 => (0, None),
            _ => {
                let is_identities = |t: &Arc<dyn TableProvider>| t.is::<IdentitiesTable>();
                let is_contacts = |t: &Arc<dyn TableProvider>| t.is::<ContactsTable>();
                if is_identities(&providers[0]) && is_contacts(&providers[1]) {
                    (0, Some(1))
                } else if is_identities(&providers[1]) && is_contacts(&providers[0]) {
                    (1, Some(0))
                } else {
                    return None;
                }
            }
        };
        let table = providers[keyed_side].clone();
        let scan = scans[keyed_side];
        let key_columns = keyed(table.as_ref())?.key_columns();
        let table_schema = table.schema();
        // a column of the filter's input, as (side, position in that table's schema)
        let input_schema = filter.input.schema();
        let left_width = scans[0].projected_schema.fields().len();
        let column_of = |e: &Expr| -> Option<(usize, usize)> {
            let Expr::Column(c) = e else { return None };
            let i = input_schema.index_of_column(c).ok()?;
            let (side, i) = if scans.len() == 2 && i >= left_width {
                (1, i - left_width)
            } else {
                (0, i)
            };
            Some((
                side,
                match &scans[side].projection {
                    Some(p) => *p.get(i)?,
                    None => i,
                },
            ))
        };
        let columns = projection
            .expr
            .iter()
            .map(|e| {
                let (side, c) = match e {
                    Expr::Alias(a) => column_of(&a.expr),
                    other => column_of(other),
                }?;
                Some(if side == keyed_side {
                    Column::Keyed(c)
                } else {
                    Column::Contact(c)
                })
            })
            .collect::<Option<Vec<Column>>>()?;
        // the join of an identity to its contact: identities.contact_id = contacts.id
        let contact = match contact_side {
            None => {
                if !join_on.is_empty() {
                    return None;
                }
                None
            }
            Some(cs) => {
                let contacts = providers[cs].clone();
                let id = *keyed(contacts.as_ref())?.key_columns().first()?;
                let is_link = |a: &Expr, b: &Expr| {
                    column_of(a) == Some((keyed_side, IDENTITY_CONTACT_ID))
                        && column_of(b) == Some((cs, id))
                };
                let mut links = 0;
                for (l, r) in &join_on {
                    if !(is_link(l, r) || is_link(r, l)) {
                        return None;
                    }
                    links += 1;
                }
                conjuncts.retain(|c| match c {
                    Expr::BinaryExpr(BinaryExpr {
                        left,
                        op: Operator::Eq,
                        right,
                    }) if is_link(left, right) || is_link(right, left) => {
                        links += 1;
                        false
                    }
                    _ => true,
                });
                if links == 0 {
                    return None;
                }
                Some(ContactJoin {
                    table_name: scans[cs].table_name.table().to_string(),
                    contacts,
                })
            }
        };
        let table_column = |e: &Expr| -> Option<usize> {
            match column_of(e)? {
                (side, c) if side == keyed_side => Some(c),
                _ => None,
            }
        };
        // a column of the other side compared with anything is not a key
        let other_side = |e: &Expr| column_of(e).is_some_and(|(side, _)| side != keyed_side);
        // key column → the values it is compared with
        let mut found: Vec<Option<Vec<KeyValue>>> = vec![None; key_columns.len()];
        for conjunct in conjuncts {
            let (column, values) = match conjunct {
                Expr::BinaryExpr(BinaryExpr {
                    left,
                    op: Operator::Eq,
                    right,
                }) if !other_side(left) && !other_side(right) => {
                    match (table_column(left), table_column(right)) {
                        (Some(c), None) => (c, vec![key_value(right)?]),
                        (None, Some(c)) => (c, vec![key_value(left)?]),
                        _ => return None,
                    }
                }
                Expr::InList(l)
                    if !l.negated
                        && key_columns.len() == 1
                        && contact.is_none()
                        && !l.list.is_empty() =>
                {
                    (
                        table_column(&l.expr)?,
                        l.list.iter().map(key_value).collect::<Option<Vec<_>>>()?,
                    )
                }
                _ => return None,
            };
            let k = key_columns.iter().position(|c| *c == column)?;
            if found[k].is_some() {
                return None;
            }
            found[k] = Some(values);
        }
        let found = found.into_iter().collect::<Option<Vec<_>>>()?;
        let keys = if key_columns.len() == 1 {
            found
                .into_iter()
                .next()?
                .into_iter()
                .map(|v| vec![v])
                .collect()
        } else {
            vec![found
                .into_iter()
                .map(|mut v| v.pop())
                .collect::<Option<Vec<_>>>()?]
        };
        let key_types: Vec<DataType> = key_columns
            .iter()
            .map(|c| table_schema.field(*c).data_type().clone())
            .collect();
        if !key_types.iter().all(|t| {
            matches!(
                t,
                DataType::Int16 | DataType::Int32 | DataType::Int64 | DataType::Utf8
            )
        }) {
            return None;
        }
        Some(KeyLookup {
            contact,
            table_name: scan.table_name.table().to_string(),
            key_names: key_columns
                .iter()
                .map(|c| table_schema.field(*c).name().clone())
                .collect(),
            key_types,
            table,
            keys,
            columns,
            schema,
            limit,
        })
    }

    /// The statement's output columns.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// The constants the keys are, in key order (tuple by tuple), when all
    /// of them are constants of the statement text.
    pub fn literal_values(&self) -> Option<Vec<ScalarValue>> {
        self.keys
            .iter()
            .flatten()
            .map(|v| v.literal().cloned())
            .collect()
    }

    /// The same lookup of other constants (`values` in the order of
    /// [`KeyLookup::literal_values`]).
    pub fn with_literal_values(&self, values: &[ScalarValue]) -> KeyLookup {
        let mut values = values.iter();
        let keys = self
            .keys
            .iter()
            .map(|tuple| {
                tuple
                    .iter()
                    .map(|v| match values.next() {
                        Some(n) => v.with_literal(n.clone()),
                        None => v.clone(),
                    })
                    .collect()
            })
            .collect();
        KeyLookup {
            keys,
            ..self.clone()
        }
    }

    /// One line for EXPLAIN: the table, its key and the values looked up.
    pub fn describe(&self) -> String {
        let keys = self
            .keys
            .iter()
            .map(|k| {
                let parts: Vec<String> = k.iter().map(KeyValue::describe).collect();
                if parts.len() == 1 {
                    parts[0].clone()
                } else {
                    format!("({})", parts.join(", "))
                }
            })
            .collect::<Vec<_>>()
            .join(", ");
        let key = if self.key_names.len() == 1 {
            self.key_names[0].clone()
        } else {
            format!("({})", self.key_names.join(", "))
        };
        let limit = self
            .limit
            .map(|n| format!(", limit={n}"))
            .unwrap_or_default();
        let join = self
            .contact
            .as_ref()
            .map(|j| format!(", join={} on id = contact_id", j.table_name))
            .unwrap_or_default();
        format!(
            "KeyLookup: table={}, key={key}, values=[{keys}]{join}{limit}",
            self.table_name
        )
    }

    /// The statement's rows, or `None` when a key value does not convert
    /// exactly to its column's type (run the statement's plan instead).
    pub async fn run(&self, params: Option<&ParamValues>) -> Result<Option<RecordBatch>> {
        let mut keys = Vec::with_capacity(self.keys.len());
        'tuples: for tuple in &self.keys {
            let mut key = Vec::with_capacity(tuple.len());
            for (v, t) in tuple.iter().zip(&self.key_types) {
                let Some(value) = v.resolve(params)? else {
                    return Ok(None);
                };
                match convert(&value, t) {
                    Converted::Key(k) => key.push(k),
                    Converted::NoMatch => continue 'tuples,
                    Converted::Unsure => return Ok(None),
                }
            }
            keys.push(key);
        }
        let keyed_columns: Vec<usize> = self
            .columns
            .iter()
            .filter_map(|c| match c {
                Column::Keyed(c) => Some(*c),
                Column::Contact(_) => None,
            })
            .chain(self.contact.as_ref().map(|_| IDENTITY_CONTACT_ID))
            .collect();
        let rows = if keys.len() <= INLINE_KEYS {
            read(self.table.as_ref(), &keys, &keyed_columns)?
        } else {
            let table = self.table.clone();
            tokio::task::spawn_blocking(move || read(table.as_ref(), &keys, &keyed_columns))
                .await
                .map_err(|e| crate::error::SqlError::Unsupported(format!("key lookup: {e}")))??
        };
        let (rows, contacts) = match &self.contact {
            None => (rows, None),
            Some(join) => {
                // identities are read by their whole key: at most one row
                let ids = rows
                    .column(IDENTITY_CONTACT_ID)
                    .as_primitive::<datafusion::arrow::datatypes::Int64Type>();
                let contact_columns: Vec<usize> = self
                    .columns
                    .iter()
                    .filter_map(|c| match c {
                        Column::Contact(c) => Some(*c),
                        Column::Keyed(_) => None,
                    })
                    .collect();
                let keys: Vec<Vec<ScalarValue>> = ids
                    .iter()
                    .flatten()
                    .map(|id| vec![ScalarValue::Int64(Some(id))])
                    .collect();
                let contacts = read(join.contacts.as_ref(), &keys, &contact_columns)?;
                if rows.num_rows() != 1 || contacts.num_rows() != 1 {
                    (rows.slice(0, 0), Some(contacts.slice(0, 0)))
                } else {
                    (rows, Some(contacts))
                }
            }
        };
        let columns = self
            .columns
            .iter()
            .map(|c| match (c, &contacts) {
                (Column::Keyed(c), _) => Some(rows.column(*c).clone()),
                (Column::Contact(c), Some(contacts)) => Some(contacts.column(*c).clone()),
                (Column::Contact(_), None) => None,
            })
            .collect::<Option<Vec<_>>>();
        let Some(columns) = columns else {
            return Ok(None);
        };
        let Ok(out) = RecordBatch::try_new(self.schema.clone(), columns) else {
            return Ok(None);
        };
        Ok(Some(match self.limit {
            Some(n) if n < out.num_rows() => out.slice(0, n),
            _ => out,
        }))
    }
}

fn read(
    table: &dyn TableProvider,
    keys: &[Vec<ScalarValue>],
    columns: &[usize],
) -> Result<RecordBatch> {
    match keyed(table) {
        Some(k) => k.read_keys(keys, columns),
        None => Err(crate::error::SqlError::Unsupported(
            "key lookup on a table without a keyed read".into(),
        )),
    }
}

/// A key value of the statement: a literal or a parameter.
fn key_value(e: &Expr) -> Option<KeyValue> {
    match e {
        Expr::Literal(v, _) => Some(KeyValue::Literal(v.clone())),
        Expr::Placeholder(p) => Some(KeyValue::Param(p.id.clone())),
        Expr::Cast(c)
            if matches!(
                c.field.data_type(),
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
            ) =>
        {
            Some(KeyValue::Text(Box::new(key_value(&c.expr)?)))
        }
        // `CAST(v AS text)` as the session plans it (`pgcompat::text_cast`)
        Expr::ScalarFunction(f) if f.name() == "text" && f.args.len() == 1 => {
            Some(KeyValue::Text(Box::new(key_value(&f.args[0])?)))
        }
        _ => None,
    }
}

/// `v` as a value of a key column of type `t`, exactly as `column = v`
/// compares them.
fn convert(v: &ScalarValue, t: &DataType) -> Converted {
    if v.is_null() {
        return Converted::NoMatch;
    }
    let int: Option<i128> = match v {
        ScalarValue::Int8(Some(i)) => Some(*i as i128),
        ScalarValue::Int16(Some(i)) => Some(*i as i128),
        ScalarValue::Int32(Some(i)) => Some(*i as i128),
        ScalarValue::Int64(Some(i)) => Some(*i as i128),
        ScalarValue::UInt8(Some(i)) => Some(*i as i128),
        ScalarValue::UInt16(Some(i)) => Some(*i as i128),
        ScalarValue::UInt32(Some(i)) => Some(*i as i128),
        ScalarValue::UInt64(Some(i)) => Some(*i as i128),
        _ => None,
    };
    match (t, int, v) {
        (DataType::Int16, Some(i), _) => i16::try_from(i)
            .map(|i| Converted::Key(ScalarValue::Int16(Some(i))))
            .unwrap_or(Converted::NoMatch),
        (DataType::Int32, Some(i), _) => i32::try_from(i)
            .map(|i| Converted::Key(ScalarValue::Int32(Some(i))))
            .unwrap_or(Converted::NoMatch),
        (DataType::Int64, Some(i), _) => i64::try_from(i)
            .map(|i| Converted::Key(ScalarValue::Int64(Some(i))))
            .unwrap_or(Converted::NoMatch),
        (
            DataType::Utf8,
            None,
            ScalarValue::Utf8(Some(s))
            | ScalarValue::LargeUtf8(Some(s))
            | ScalarValue::Utf8View(Some(s)),
        ) => Converted::Key(ScalarValue::Utf8(Some(s.clone()))),
        _ => Converted::Unsure,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_convert_within_range() {
        assert!(matches!(
            convert(&ScalarValue::Int64(Some(7)), &DataType::Int32),
            Converted::Key(ScalarValue::Int32(Some(7)))
        ));
        assert!(matches!(
            convert(&ScalarValue::Int64(Some(1 << 40)), &DataType::Int32),
            Converted::NoMatch
        ));
        assert!(matches!(
            convert(&ScalarValue::Int32(None), &DataType::Int64),
            Converted::NoMatch
        ));
    }

    #[test]
    fn inexact_values_leave_the_fast_path() {
        assert!(matches!(
            convert(&ScalarValue::Float64(Some(1.0)), &DataType::Int64),
            Converted::Unsure
        ));
        assert!(matches!(
            convert(&ScalarValue::Utf8(Some("1".into())), &DataType::Int64),
            Converted::Unsure
        ));
        assert!(matches!(
            convert(&ScalarValue::Int64(Some(1)), &DataType::Utf8),
            Converted::Unsure
        ));
        assert!(matches!(
            convert(&ScalarValue::Utf8View(Some("o".into())), &DataType::Utf8),
            Converted::Key(ScalarValue::Utf8(Some(_)))
        ));
    }
}
