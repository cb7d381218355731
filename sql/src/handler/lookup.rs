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

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::{ParamValues, ScalarValue};
use datafusion::datasource::{source_as_provider, TableProvider};
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{BinaryExpr, Expr, FetchType, LogicalPlan, Operator, SkipType};

use crate::error::Result;
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
}

/// A recognized key lookup (see the module docs).
#[derive(Debug)]
pub struct KeyLookup {
    table: Arc<dyn TableProvider>,
    table_name: String,
    /// Key column names, in key order (for EXPLAIN).
    key_names: Vec<String>,
    /// Arrow types of the key columns, in key order.
    key_types: Vec<DataType>,
    /// One tuple per looked-up key, values in key-column order.
    keys: Vec<Vec<KeyValue>>,
    /// For each output column, its position in the table's schema.
    columns: Vec<usize>,
    /// The statement's output schema.
    schema: SchemaRef,
    limit: Option<usize>,
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
        let scan = match filter.input.as_ref() {
            LogicalPlan::SubqueryAlias(a) => a.input.as_ref(),
            other => other,
        };
        let LogicalPlan::TableScan(scan) = scan else {
            return None;
        };
        if !scan.filters.is_empty() || scan.fetch.is_some() {
            return None;
        }
        let table = source_as_provider(&scan.source).ok()?;
        let key_columns = keyed(table.as_ref())?.key_columns();
        let table_schema = table.schema();
        // a column of the filter's input, as a position in the table's schema
        let input_schema = filter.input.schema();
        let table_column = |e: &Expr| -> Option<usize> {
            let Expr::Column(c) = e else { return None };
            let i = input_schema.index_of_column(c).ok()?;
            Some(match &scan.projection {
                Some(p) => *p.get(i)?,
                None => i,
            })
        };
        let columns = projection
            .expr
            .iter()
            .map(|e| match e {
                Expr::Alias(a) => table_column(&a.expr),
                other => table_column(other),
            })
            .collect::<Option<Vec<usize>>>()?;
        // key column → the values it is compared with
        let mut found: Vec<Option<Vec<KeyValue>>> = vec![None; key_columns.len()];
        for conjunct in split_conjunction(&filter.predicate) {
            let (column, values) = match conjunct {
                Expr::BinaryExpr(BinaryExpr {
                    left,
                    op: Operator::Eq,
                    right,
                }) => match (table_column(left), table_column(right)) {
                    (Some(c), None) => (c, vec![key_value(right)?]),
                    (None, Some(c)) => (c, vec![key_value(left)?]),
                    _ => return None,
                },
                Expr::InList(l) if !l.negated && key_columns.len() == 1 && !l.list.is_empty() => (
                    table_column(&l.expr)?,
                    l.list.iter().map(key_value).collect::<Option<Vec<_>>>()?,
                ),
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

    /// One line for EXPLAIN: the table, its key and the values looked up.
    pub fn describe(&self) -> String {
        let keys = self
            .keys
            .iter()
            .map(|k| {
                let parts: Vec<String> = k
                    .iter()
                    .map(|v| match v {
                        KeyValue::Literal(s) => s.to_string(),
                        KeyValue::Param(p) => p.clone(),
                    })
                    .collect();
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
        format!(
            "KeyLookup: table={}, key={key}, values=[{keys}]{limit}",
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
                let value = match v {
                    KeyValue::Literal(s) => s.clone(),
                    KeyValue::Param(id) => match params {
                        Some(p) => p.get_placeholders_with_values(id)?.value,
                        None => return Ok(None),
                    },
                };
                match convert(&value, t) {
                    Converted::Key(k) => key.push(k),
                    Converted::NoMatch => continue 'tuples,
                    Converted::Unsure => return Ok(None),
                }
            }
            keys.push(key);
        }
        let rows = if keys.len() <= INLINE_KEYS {
            read(self.table.as_ref(), &keys, &self.columns)?
        } else {
            let table = self.table.clone();
            let columns = self.columns.clone();
            tokio::task::spawn_blocking(move || read(table.as_ref(), &keys, &columns))
                .await
                .map_err(|e| crate::error::SqlError::Unsupported(format!("key lookup: {e}")))??
        };
        let columns = self
            .columns
            .iter()
            .map(|c| rows.column(*c).clone())
            .collect();
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
