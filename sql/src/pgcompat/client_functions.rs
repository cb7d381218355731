//! Functions and catalog rows that client catalog queries (psql `\d+`/`\du`,
//! pgjdbc `DatabaseMetaData`, SQLAlchemy reflection) need beyond
//! `pg_functions`: `_pg_expandarray` (as `pg_expandarray`), the array forms of
//! `int2vector`/`oidvector` columns, `LIKE ... ESCAPE` patterns, relation
//! sizes, and `pg_roles` from cohortdb's users.

use std::sync::Arc;

use async_trait::async_trait;
use cohortdb_storage::Store;
use datafusion::arrow::array::{
    Array, ArrayRef, Int32Array, Int64Array, ListArray, StringArray, StructArray,
};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType as A, Field, Fields};
use datafusion::common::{exec_err, plan_err, Result as DfResult, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::prelude::SessionContext;
use datafusion_pg_catalog::pg_catalog::context::{PgCatalogContextProvider, Role};

use crate::pgcompat::pg_functions::{text, udf};

/// `pg_roles` rows from the users in cohortdb's catalog.
#[derive(Clone)]
pub struct CohortRoles {
    store: Arc<Store>,
}

impl std::fmt::Debug for CohortRoles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CohortRoles")
    }
}

impl CohortRoles {
    /// Roles read from `store`'s users.
    pub fn new(store: Arc<Store>) -> Self {
        CohortRoles { store }
    }
}

#[async_trait]
impl PgCatalogContextProvider for CohortRoles {
    async fn roles(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .store
            .catalog()
            .data()
            .users
            .iter()
            .map(|u| u.name.clone())
            .collect();
        v.extend(
            cohortdb_storage::catalog::BUILTIN_ROLES
                .iter()
                .map(|r| r.to_string()),
        );
        v
    }

    async fn role(&self, name: &str) -> Option<Role> {
        if cohortdb_storage::catalog::BUILTIN_ROLES.contains(&name) {
            return Some(Role {
                name: name.to_string(),
                is_superuser: false,
                can_login: false,
                can_create_db: false,
                can_create_role: false,
                can_create_user: false,
                can_replication: false,
                grants: vec![],
                inherited_roles: vec![],
            });
        }
        let u = self.store.catalog().user(name)?.clone();
        Some(Role {
            name: u.name,
            is_superuser: u.superuser,
            can_login: true,
            can_create_db: u.superuser,
            can_create_role: u.superuser,
            can_create_user: u.superuser,
            can_replication: false,
            grants: vec![],
            inherited_roles: u.roles.clone(),
        })
    }
}

/// OID cohortdb reports for a role: 10 for `admin` (PostgreSQL's bootstrap
/// superuser), otherwise a stable hash of the name above the relation OIDs.
pub fn role_oid(name: &str) -> i32 {
    if name == "admin" {
        return 10;
    }
    // FNV-1a: stable across restarts and builds
    let mut h: u32 = 0x811c_9dc5;
    for b in name.bytes() {
        h ^= b as u32;
        h = h.wrapping_mul(0x0100_0193);
    }
    1_000_000 + (h % 1_000_000) as i32
}

/// The integers of an `int2vector`/`oidvector`/array text: `1 2`, `{1,2}`, `[1, 2]`.
fn vector_items(s: &str) -> Vec<i64> {
    s.split(|c: char| !(c.is_ascii_digit() || c == '-'))
        .filter(|t| !t.is_empty())
        .filter_map(|t| t.parse().ok())
        .collect()
}

fn vector_udf(name: &'static str, elem: A) -> ScalarUDF {
    let item = Arc::new(Field::new("item", elem.clone(), true));
    let ret = A::List(item.clone());
    udf(
        name,
        vec![vec![A::Utf8]],
        ret,
        Volatility::Immutable,
        move |a, _| {
            let s = text(&a[0])?;
            let mut offsets = vec![0i32];
            let mut values: Vec<i64> = Vec::new();
            for v in s.iter() {
                if let Some(v) = v {
                    values.extend(vector_items(v));
                }
                offsets.push(values.len() as i32);
            }
            let values: ArrayRef = Arc::new(Int64Array::from(values));
            let values = cast(&values, &elem)?;
            let nulls = s.nulls().cloned();
            Ok(Arc::new(ListArray::try_new(
                item.clone(),
                OffsetBuffer::new(offsets.into()),
                values,
                nulls,
            )?))
        },
    )
}

/// `pg_expandarray(a)`: the elements of `a` with their 1-based positions, as
/// a list of `{x, n}` structs (`unnest` of it is PostgreSQL's
/// `information_schema._pg_expandarray`).
#[derive(Debug, PartialEq, Eq, Hash)]
struct ExpandArray {
    signature: Signature,
}

fn expand_fields(elem: &A) -> Fields {
    Fields::from(vec![
        Field::new("x", elem.clone(), true),
        Field::new("n", A::Int32, true),
    ])
}

fn list_element(t: &A) -> Option<A> {
    match t {
        A::List(f) | A::LargeList(f) | A::FixedSizeList(f, _) => Some(f.data_type().clone()),
        _ => None,
    }
}

impl ScalarUDFImpl for ExpandArray {
    fn name(&self) -> &str {
        "pg_expandarray"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, args: &[A]) -> DfResult<A> {
        let elem = match args.first() {
            Some(A::Null) => A::Int32,
            Some(t) => match list_element(t) {
                Some(e) => e,
                // 42883, as PostgreSQL: no _pg_expandarray for a non-array type
                None => return plan_err!("function _pg_expandarray({t}) does not exist"),
            },
            None => return plan_err!("function _pg_expandarray() does not exist"),
        };
        Ok(A::List(Arc::new(Field::new(
            "item",
            A::Struct(expand_fields(&elem)),
            true,
        ))))
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let scalar = matches!(args.args[0], ColumnarValue::Scalar(_));
        let arr = args.args[0].to_array(if scalar { 1 } else { args.number_rows })?;
        let ret = self.return_type(&[arr.data_type().clone()])?;
        let A::List(item) = &ret else {
            return exec_err!("_pg_expandarray: unexpected return type {ret}");
        };
        let A::Struct(fields) = item.data_type() else {
            return exec_err!("_pg_expandarray: unexpected element type");
        };
        let out: ArrayRef = if arr.data_type() == &A::Null {
            Arc::new(ListArray::new_null(item.clone(), arr.len()))
        } else {
            let target = A::List(Arc::new(Field::new(
                "item",
                list_element(arr.data_type()).unwrap_or(A::Int32),
                true,
            )));
            let arr = cast(&arr, &target)?;
            let Some(list) = arr.as_any().downcast_ref::<ListArray>() else {
                return exec_err!("_pg_expandarray: not a list");
            };
            let offsets = list.offsets();
            let values = list.values().clone();
            let mut n = vec![0i32; values.len()];
            for w in offsets.windows(2) {
                for (i, slot) in (w[0] as usize..w[1] as usize).enumerate() {
                    n[slot] = i as i32 + 1;
                }
            }
            let items = StructArray::try_new(
                fields.clone(),
                vec![values, Arc::new(Int32Array::from(n))],
                None,
            )?;
            Arc::new(ListArray::try_new(
                item.clone(),
                offsets.clone(),
                Arc::new(items),
                list.nulls().cloned(),
            )?)
        };
        if scalar {
            Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?))
        } else {
            Ok(ColumnarValue::Array(out))
        }
    }
}

/// A `LIKE` pattern whose escape character is `esc` rewritten to use `\`
/// (the only escape DataFusion's `LIKE` takes).
pub fn like_escape(pattern: &str, esc: &str) -> String {
    let mut esc_chars = esc.chars();
    let esc = match (esc_chars.next(), esc_chars.next()) {
        (Some(c), None) => Some(c),
        _ => None, // ESCAPE '' turns escaping off
    };
    let mut out = String::with_capacity(pattern.len() + 4);
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if Some(c) == esc {
            match chars.next() {
                Some('\\') => out.push_str("\\\\"),
                Some(n) => {
                    out.push('\\');
                    out.push(n);
                }
                None => out.push_str("\\\\"),
            }
        } else if c == '\\' {
            out.push_str("\\\\");
        } else {
            out.push(c);
        }
    }
    out
}

/// `pg_size_pretty(bytes)` as PostgreSQL prints it.
pub fn size_pretty(bytes: i64) -> String {
    const UNITS: [&str; 5] = ["kB", "MB", "GB", "TB", "PB"];
    let mut size = bytes;
    if size.abs() < 10 * 1024 {
        return format!("{size} bytes");
    }
    for (i, unit) in UNITS.iter().enumerate() {
        // PostgreSQL rounds half up at each step
        let half = if size < 0 { -1 } else { 1 };
        size = (size / 512 + half) / 2;
        if size.abs() < 10 * 1024 || i == UNITS.len() - 1 {
            return format!("{size} {unit}");
        }
    }
    unreachable!()
}

/// Registers the functions of this module on `ctx`.
pub fn register(ctx: &SessionContext) {
    use Volatility::*;
    use A::*;
    ctx.register_udf(ScalarUDF::new_from_impl(ExpandArray {
        signature: Signature::any(1, Immutable),
    }));
    ctx.register_udf(vector_udf("pg_int2vector", Int16));
    ctx.register_udf(vector_udf("pg_oidvector", Int32));
    ctx.register_udf(udf(
        "pg_like_escape",
        vec![vec![Utf8, Utf8]],
        Utf8,
        Immutable,
        |a, _| {
            let p = text(&a[0])?;
            let e = text(&a[1])?;
            Ok(Arc::new(
                p.iter()
                    .zip(e.iter())
                    .map(|(p, e)| Some(like_escape(p?, e?)))
                    .collect::<StringArray>(),
            ))
        },
    ));
    ctx.register_udf(udf(
        "pg_role_oid",
        vec![vec![Utf8]],
        Int32,
        Immutable,
        |a, _| {
            let s = text(&a[0])?;
            Ok(Arc::new(
                s.iter().map(|v| v.map(role_oid)).collect::<Int32Array>(),
            ))
        },
    ));
    ctx.register_udf(udf(
        "pg_size_pretty",
        vec![vec![Int64]],
        Utf8,
        Immutable,
        |a, _| {
            let c = cast(&a[0], &Int64)?;
            let Some(v) = c.as_any().downcast_ref::<Int64Array>() else {
                return exec_err!("pg_size_pretty: not a bigint");
            };
            Ok(Arc::new(
                v.iter()
                    .map(|v| v.map(size_pretty))
                    .collect::<StringArray>(),
            ))
        },
    ));
    // Relation sizes: cohortdb's storage is not per-relation files; they read 0.
    for name in ["pg_table_size", "pg_indexes_size"] {
        ctx.register_udf(udf(name, vec![vec![Int32]], Int64, Stable, |_, rows| {
            Ok(Arc::new(Int64Array::from(vec![0i64; rows])))
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_escape_patterns() {
        assert_eq!(like_escape("pg/_%", "/"), "pg\\_%");
        assert_eq!(like_escape("a\\b", "/"), "a\\\\b");
        assert_eq!(like_escape("a//b", "/"), "a\\/b");
        assert_eq!(like_escape("a_b", ""), "a_b");
    }

    #[test]
    fn vectors_and_sizes() {
        assert_eq!(vector_items("1 2"), vec![1, 2]);
        assert_eq!(vector_items("[2, 20, 3]"), vec![2, 20, 3]);
        assert_eq!(vector_items("{1}"), vec![1]);
        assert_eq!(vector_items(""), Vec::<i64>::new());
        assert_eq!(size_pretty(0), "0 bytes");
        assert_eq!(size_pretty(8192), "8192 bytes");
        assert_eq!(size_pretty(16384), "16 kB");
        assert_eq!(role_oid("admin"), 10);
        assert!(role_oid("alice") >= 1_000_000);
    }
}

/// Registers the functions that read cohortdb's users on `ctx`:
/// `pg_get_userbyid(oid)` names the user with that OID ([`role_oid`]),
/// `unknown (OID=n)` otherwise, as PostgreSQL does.
pub fn register_users(ctx: &SessionContext, store: Arc<Store>) {
    ctx.register_udf(udf(
        "pg_get_userbyid",
        vec![vec![A::Int32]],
        A::Utf8,
        Volatility::Stable,
        move |a, _| {
            let o = crate::pgcompat::pg_functions::int(&a[0])?;
            let names: Vec<String> = store
                .catalog()
                .data()
                .users
                .iter()
                .map(|u| u.name.clone())
                .collect();
            Ok(Arc::new(
                o.iter()
                    .map(|v| {
                        v.map(|oid| {
                            names
                                .iter()
                                .find(|n| role_oid(n) == oid)
                                .cloned()
                                .unwrap_or_else(|| format!("unknown (OID={oid})"))
                        })
                    })
                    .collect::<StringArray>(),
            ))
        },
    ));
}

/// `pg_auth_members` from the roles granted to cohortdb's users (read at
/// scan time, so GRANT and REVOKE show at once): one row per grant, with
/// the columns and types of the base table it replaces.
#[derive(Debug)]
pub struct AuthMembers {
    store: Arc<Store>,
    schema: datafusion::arrow::datatypes::SchemaRef,
}

impl AuthMembers {
    /// A provider shaped like `base` (the `datafusion-pg-catalog` table).
    pub fn new(store: Arc<Store>, base: datafusion::arrow::datatypes::SchemaRef) -> Self {
        AuthMembers {
            store,
            schema: base,
        }
    }
}

#[async_trait]
impl datafusion::datasource::TableProvider for AuthMembers {
    fn schema(&self) -> datafusion::arrow::datatypes::SchemaRef {
        self.schema.clone()
    }
    fn table_type(&self) -> datafusion::datasource::TableType {
        datafusion::datasource::TableType::View
    }
    async fn scan(
        &self,
        _state: &dyn datafusion::catalog::Session,
        projection: Option<&Vec<usize>>,
        _filters: &[datafusion::logical_expr::Expr],
        _limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
        use datafusion::arrow::array::{
            new_null_array, ArrayRef, BooleanArray, Int32Array, Int64Array,
        };
        use datafusion::arrow::datatypes::DataType as A;
        let catalog = self.store.catalog();
        let grants: Vec<(i32, i32)> = catalog
            .data()
            .users
            .iter()
            .flat_map(|u| {
                u.roles
                    .iter()
                    .map(move |r| (role_oid(r), role_oid(&u.name)))
            })
            .collect();
        let n = grants.len();
        let oid_col = |vals: Vec<i32>, t: &A| -> ArrayRef {
            match t {
                A::Int64 => Arc::new(Int64Array::from(
                    vals.into_iter().map(i64::from).collect::<Vec<_>>(),
                )),
                _ => Arc::new(Int32Array::from(vals)),
            }
        };
        let cols: Vec<ArrayRef> = self
            .schema
            .fields()
            .iter()
            .map(|f| match (f.name().as_str(), f.data_type()) {
                ("oid", t) => oid_col((0..n).map(|k| 3_000_000 + k as i32).collect(), t),
                ("roleid", t) => oid_col(grants.iter().map(|g| g.0).collect(), t),
                ("member", t) => oid_col(grants.iter().map(|g| g.1).collect(), t),
                ("grantor", t) => oid_col(vec![10; n], t),
                ("admin_option", A::Boolean) => Arc::new(BooleanArray::from(vec![false; n])),
                ("inherit_option" | "set_option", A::Boolean) => {
                    Arc::new(BooleanArray::from(vec![true; n]))
                }
                (_, t) => new_null_array(t, n),
            })
            .collect();
        let batch = datafusion::arrow::array::RecordBatch::try_new(self.schema.clone(), cols)?;
        Ok(
            datafusion::datasource::memory::MemorySourceConfig::try_new_exec(
                &[vec![batch]],
                self.schema.clone(),
                projection.cloned(),
            )?,
        )
    }
}
