//! Where result columns come from: the `pg_class` OID of the table or view a
//! column is read from and its `pg_attribute.attnum`, as the RowDescription
//! message reports them (pgjdbc's `ResultSetMetaData`, psycopg's `ftable`,
//! editable result grids). Columns that are computed report 0.

use std::collections::HashMap;
use std::sync::Mutex;

use datafusion::arrow::array::Array;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;

/// Table OID and column number of one result column.
pub type Origin = Option<(i32, i16)>;

/// A scan of a relation that may be in schema `public` (not `pg_catalog` or
/// `information_schema`).
fn is_public(t: &datafusion::common::TableReference) -> bool {
    !matches!(t.schema(), Some("pg_catalog" | "information_schema"))
}

/// Relation name → (OID, column name → attnum), read from `pg_catalog`.
#[derive(Default)]
pub struct RelationOids {
    cache: Mutex<HashMap<String, (i32, HashMap<String, i16>)>>,
    /// Names scanned that were not public relations at the last refresh
    /// (catalog tables, table functions): they do not trigger a refresh.
    elsewhere: Mutex<std::collections::HashSet<String>>,
}

impl RelationOids {
    async fn refresh(&self, ctx: &SessionContext) {
        let sql = "SELECT c.relname, c.oid, a.attname, a.attnum \
                   FROM pg_catalog.pg_class c \
                   JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid \
                   JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                   WHERE n.nspname = 'public' AND a.attnum > 0";
        let Ok(df) = ctx.sql(sql).await else { return };
        let Ok(batches) = df.collect().await else {
            return;
        };
        let mut map: HashMap<String, (i32, HashMap<String, i16>)> = HashMap::new();
        for b in &batches {
            let text = |i: usize, r: usize| -> Option<String> {
                let col = datafusion::arrow::compute::cast(
                    b.column(i),
                    &datafusion::arrow::datatypes::DataType::Utf8,
                )
                .ok()?;
                let s = col
                    .as_any()
                    .downcast_ref::<datafusion::arrow::array::StringArray>()?;
                (!s.is_null(r)).then(|| s.value(r).to_string())
            };
            for r in 0..b.num_rows() {
                let (Some(rel), Some(oid), Some(att), Some(num)) =
                    (text(0, r), text(1, r), text(2, r), text(3, r))
                else {
                    continue;
                };
                let (Ok(oid), Ok(num)) = (oid.parse::<i32>(), num.parse::<i16>()) else {
                    continue;
                };
                map.entry(rel)
                    .or_insert_with(|| (oid, HashMap::new()))
                    .1
                    .insert(att, num);
            }
        }
        *self.cache.lock().expect("oids") = map;
    }

    fn lookup(&self, rel: &str, column: &str) -> Option<Option<(i32, i16)>> {
        let cache = self.cache.lock().expect("oids");
        let (oid, cols) = cache.get(rel)?;
        Some(cols.get(column).map(|n| (*oid, *n)))
    }

    /// The origin of each output column of `plan`.
    pub async fn origins(&self, ctx: &SessionContext, plan: &LogicalPlan) -> Vec<Origin> {
        // alias (or table name) → table scanned under it
        let mut scans: HashMap<String, String> = HashMap::new();
        let _ = plan.apply(|p| {
            match p {
                LogicalPlan::TableScan(t) if is_public(&t.table_name) => {
                    let name = t.table_name.table().to_string();
                    scans.insert(name.clone(), name);
                }
                LogicalPlan::SubqueryAlias(a) => {
                    if let LogicalPlan::TableScan(t) = a.input.as_ref() {
                        if is_public(&t.table_name) {
                            scans.insert(
                                a.alias.table().to_string(),
                                t.table_name.table().to_string(),
                            );
                        }
                    }
                }
                _ => {}
            }
            Ok(TreeNodeRecursion::Continue)
        });
        let wanted: Vec<Option<(String, String)>> = plan
            .schema()
            .iter()
            .map(|(q, f)| {
                let q = q?;
                let table = scans.get(q.table())?;
                Some((table.clone(), f.name().clone()))
            })
            .collect();
        let missing: Vec<String> = {
            let elsewhere = self.elsewhere.lock().expect("oids");
            wanted
                .iter()
                .flatten()
                .map(|(t, _)| t)
                .filter(|t| !elsewhere.contains(*t) && self.lookup(t, "").is_none())
                .cloned()
                .collect()
        };
        if !missing.is_empty() {
            self.refresh(ctx).await;
            let mut elsewhere = self.elsewhere.lock().expect("oids");
            for t in missing {
                if self.lookup(&t, "").is_none() {
                    elsewhere.insert(t);
                }
            }
        }
        wanted
            .into_iter()
            .map(|w| w.and_then(|(t, c)| self.lookup(&t, &c).flatten()))
            .collect()
    }
}
