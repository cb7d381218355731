//! What cohortdb adds to `datafusion-pg-catalog`: the primary key of
//! `contacts` (`contacts_pkey` on `id`) in `pg_class`, `pg_index` and
//! `pg_constraint`, and an `information_schema` in PostgreSQL's shape
//! (Postgres type names, `udt_name`, `is_identity`, `table_constraints`,
//! `key_column_usage`) — all as views over `pg_catalog`, so they always
//! list the relations of the store.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::datasource::ViewTable;
use datafusion::error::Result as DfResult;
use datafusion::prelude::SessionContext;

use crate::error::{Result, SqlError};

/// OID of the `contacts_pkey` index (below the user range `datafusion-pg-catalog`
/// allocates from, above its static catalog rows).
pub const CONTACTS_PKEY_OID: i32 = 16300;
/// OID of the `contacts_pkey` constraint.
pub const CONTACTS_PKEY_CON_OID: i32 = 16301;

/// `pg_get_indexdef` of an index cohortdb reports.
pub fn index_def(oid: i32) -> Option<String> {
    (oid == CONTACTS_PKEY_OID)
        .then(|| "CREATE UNIQUE INDEX contacts_pkey ON public.contacts USING btree (id)".into())
}

/// `pg_get_constraintdef` of a constraint cohortdb reports.
pub fn constraint_def(oid: i32) -> Option<String> {
    (oid == CONTACTS_PKEY_CON_OID).then(|| "PRIMARY KEY (id)".into())
}

const CONTACTS: &str = "relname = 'contacts' AND relkind = 'r'";

const PG_CLASS_COLS: &[&str] = &[
    "oid",
    "relname",
    "relnamespace",
    "reltype",
    "reloftype",
    "relowner",
    "relam",
    "relfilenode",
    "reltablespace",
    "relpages",
    "reltuples",
    "relallvisible",
    "reltoastrelid",
    "relhasindex",
    "relisshared",
    "relpersistence",
    "relkind",
    "relnatts",
    "relchecks",
    "relhasrules",
    "relhastriggers",
    "relhassubclass",
    "relrowsecurity",
    "relforcerowsecurity",
    "relispopulated",
    "relreplident",
    "relispartition",
    "relrewrite",
    "relfrozenxid",
    "relminmxid",
    "relpartbound",
    "reloptions",
    "relacl",
];

const PG_INDEX_COLS: &[&str] = &[
    "indexrelid",
    "indrelid",
    "indnatts",
    "indnkeyatts",
    "indisunique",
    "indnullsnotdistinct",
    "indisprimary",
    "indisexclusion",
    "indimmediate",
    "indisclustered",
    "indisvalid",
    "indcheckxmin",
    "indisready",
    "indislive",
    "indisreplident",
    "indkey",
    "indcollation",
    "indclass",
    "indoption",
    "indexprs",
    "indpred",
];

const PG_CONSTRAINT_COLS: &[&str] = &[
    "oid",
    "conname",
    "connamespace",
    "contype",
    "condeferrable",
    "condeferred",
    "convalidated",
    "conrelid",
    "contypid",
    "conindid",
    "conparentid",
    "confrelid",
    "confupdtype",
    "confdeltype",
    "confmatchtype",
    "conislocal",
    "coninhcount",
    "connoinherit",
    "conkey",
    "confkey",
    "conpfeqop",
    "conppeqop",
    "conffeqop",
    "confdelsetcols",
    "conexclop",
    "conbin",
];

/// `SELECT * FROM (<table's rows> UNION ALL <one row built from contacts' pg_class row>)`:
/// `first` gives the expressions of the table's own rows (column name if `None`),
/// `extra` those of the added row, both in `cols` order.
fn union_view(
    table: &str,
    types: &HashMap<String, String>,
    cols: &[&str],
    first: &[(&str, &str)],
    extra: &[&str],
) -> String {
    let a: Vec<String> = cols
        .iter()
        .map(|c| {
            let e = first
                .iter()
                .find(|(n, _)| n == c)
                .map(|(_, e)| *e)
                .unwrap_or(c);
            format!("{e} AS {c}")
        })
        .collect();
    let b: Vec<String> = cols
        .iter()
        .zip(extra)
        .map(|(c, e)| match types.get(*c) {
            Some(t) => format!("CAST({e} AS {t}) AS {c}"),
            None => format!("{e} AS {c}"),
        })
        .collect();
    format!(
        "SELECT * FROM (SELECT {} FROM pg_catalog.{table}{} UNION ALL SELECT {} \
         FROM pg_catalog.pg_class WHERE {CONTACTS}) AS u",
        a.join(", "),
        if table == "pg_class" {
            // information_schema's views are cohortdb's own, not relations clients browse
            " WHERE relnamespace NOT IN (SELECT oid FROM pg_catalog.pg_namespace \
             WHERE nspname = 'information_schema')"
        } else {
            ""
        },
        b.join(", ")
    )
}

fn pg_class_sql(types: &HashMap<String, String>) -> String {
    let has_index = format!("CASE WHEN {CONTACTS} THEN true ELSE relhasindex END");
    let idx = CONTACTS_PKEY_OID.to_string();
    union_view(
        "pg_class",
        types,
        PG_CLASS_COLS,
        &[
            ("relhasindex", &has_index),
            ("relam", TABLE_AM),
            ("relowner", "CAST(10 AS INT)"),
            ("reloptions", NO_OPTIONS),
            ("relacl", NO_ACL),
        ],
        &[
            &idx,
            "'contacts_pkey'",
            "relnamespace",
            "0",
            "reloftype",
            "relowner",
            "403",
            &idx,
            "reltablespace",
            "1",
            "0",
            "0",
            "0",
            "false",
            "false",
            "'p'",
            "'i'",
            "1",
            "0",
            "false",
            "false",
            "false",
            "false",
            "false",
            "true",
            "'n'",
            "false",
            "relrewrite",
            "relfrozenxid",
            "relminmxid",
            "relpartbound",
            NO_OPTIONS,
            NO_ACL,
        ],
    )
}

fn pg_index_sql(types: &HashMap<String, String>) -> String {
    let idx = CONTACTS_PKEY_OID.to_string();
    let types = without_vectors(types);
    union_view(
        "pg_index",
        &types,
        PG_INDEX_COLS,
        &[
            ("indkey", "pg_int2vector(indkey)"),
            ("indcollation", "pg_oidvector(indcollation)"),
            ("indclass", "pg_oidvector(indclass)"),
            ("indoption", "pg_int2vector(indoption)"),
        ],
        &[
            &idx,
            "oid",
            "1",
            "1",
            "true",
            "false",
            "true",
            "false",
            "true",
            "false",
            "true",
            "false",
            "true",
            "true",
            "false",
            "pg_int2vector('1')",
            "pg_oidvector('0')",
            "pg_oidvector('3124')",
            "pg_int2vector('0')",
            "NULL",
            "NULL",
        ],
    )
}

fn pg_constraint_sql(types: &HashMap<String, String>) -> String {
    let idx = CONTACTS_PKEY_OID.to_string();
    let con = CONTACTS_PKEY_CON_OID.to_string();
    let types = without_vectors(types);
    union_view(
        "pg_constraint",
        &types,
        PG_CONSTRAINT_COLS,
        &[
            ("conkey", "pg_int2vector(conkey)"),
            ("confkey", "pg_int2vector(confkey)"),
        ],
        &[
            &con,
            "'contacts_pkey'",
            "relnamespace",
            "'p'",
            "false",
            "false",
            "true",
            "oid",
            "0",
            &idx,
            "0",
            "0",
            "' '",
            "' '",
            "' '",
            "true",
            "0",
            "true",
            "pg_int2vector('{1}')",
            "pg_int2vector(NULL)",
            "NULL",
            "NULL",
            "NULL",
            "NULL",
            "NULL",
            "NULL",
        ],
    )
}

/// `pg_catalog` with cohortdb's overrides in front of `datafusion-pg-catalog`'s tables.
#[derive(Debug)]
pub struct PgCatalogExt {
    inner: Arc<dyn SchemaProvider>,
    overrides: HashMap<&'static str, Arc<dyn TableProvider>>,
}

impl PgCatalogExt {
    /// `inner` with the tables in `overrides` replaced.
    pub(crate) fn new(
        inner: Arc<dyn SchemaProvider>,
        overrides: HashMap<&'static str, Arc<dyn TableProvider>>,
    ) -> PgCatalogExt {
        PgCatalogExt { inner, overrides }
    }
}

#[async_trait]
impl SchemaProvider for PgCatalogExt {
    fn table_names(&self) -> Vec<String> {
        self.inner.table_names()
    }
    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        if let Some(t) = self.overrides.get(name) {
            return Ok(Some(t.clone()));
        }
        self.inner.table(name).await
    }
    fn table_exist(&self, name: &str) -> bool {
        self.inner.table_exist(name)
    }
}

/// `information_schema` as views over `pg_catalog`.
#[derive(Debug)]
pub struct InformationSchema {
    views: HashMap<&'static str, Arc<dyn TableProvider>>,
}

#[async_trait]
impl SchemaProvider for InformationSchema {
    fn table_names(&self) -> Vec<String> {
        self.views.keys().map(|k| k.to_string()).collect()
    }
    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        Ok(self.views.get(name).cloned())
    }
    fn table_exist(&self, name: &str) -> bool {
        self.views.contains_key(name)
    }
}

const REL_JOIN: &str = "FROM pg_catalog.pg_class c \
     JOIN pg_catalog.pg_namespace n ON c.relnamespace = n.oid";

fn information_schema_sql() -> Vec<(&'static str, String)> {
    let db = "CAST(current_database() AS VARCHAR)";
    let null = "CAST(NULL AS VARCHAR)";
    let null_int = "CAST(NULL AS INT)";
    vec![
        (
            "schemata",
            format!(
                "SELECT {db} AS catalog_name, nspname AS schema_name, 'admin' AS schema_owner, \
                 {null} AS default_character_set_catalog, {null} AS default_character_set_schema, \
                 {null} AS default_character_set_name, {null} AS sql_path \
                 FROM pg_catalog.pg_namespace \
                 UNION ALL SELECT {db}, 'information_schema', 'admin', {null}, {null}, {null}, {null}"
            ),
        ),
        (
            "tables",
            format!(
                "SELECT {db} AS table_catalog, n.nspname AS table_schema, c.relname AS table_name, \
                 CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'f' THEN 'FOREIGN' ELSE 'BASE TABLE' END AS table_type, \
                 {null} AS self_referencing_column_name, {null} AS reference_generation, \
                 {null} AS user_defined_type_catalog, {null} AS user_defined_type_schema, \
                 {null} AS user_defined_type_name, \
                 CASE WHEN c.relkind = 'r' THEN 'YES' ELSE 'NO' END AS is_insertable_into, \
                 'NO' AS is_typed, {null} AS commit_action \
                 {REL_JOIN} WHERE c.relkind IN ('r', 'v', 'f', 'p')"
            ),
        ),
        (
            "views",
            format!(
                "SELECT {db} AS table_catalog, n.nspname AS table_schema, c.relname AS table_name, \
                 {null} AS view_definition, 'NONE' AS check_option, 'NO' AS is_updatable, \
                 'NO' AS is_insertable_into, 'NO' AS is_trigger_updatable, \
                 'NO' AS is_trigger_deletable, 'NO' AS is_trigger_insertable_into \
                 {REL_JOIN} WHERE c.relkind = 'v'"
            ),
        ),
        (
            "columns",
            format!(
                "SELECT {db} AS table_catalog, n.nspname AS table_schema, c.relname AS table_name, \
                 a.attname AS column_name, CAST(a.attnum AS INT) AS ordinal_position, \
                 {null} AS column_default, \
                 CASE WHEN a.attnotnull THEN 'NO' ELSE 'YES' END AS is_nullable, \
                 CASE WHEN t.typname LIKE '\\_%' THEN 'ARRAY' ELSE format_type(a.atttypid, NULL) END AS data_type, \
                 {null_int} AS character_maximum_length, \
                 CASE WHEN t.typname IN ('text', 'varchar', 'bpchar') THEN 1073741824 END AS character_octet_length, \
                 CASE t.typname WHEN 'int2' THEN 16 WHEN 'int4' THEN 32 WHEN 'int8' THEN 64 \
                   WHEN 'float4' THEN 24 WHEN 'float8' THEN 53 END AS numeric_precision, \
                 CASE WHEN t.typname IN ('int2', 'int4', 'int8', 'float4', 'float8', 'numeric') THEN 2 END AS numeric_precision_radix, \
                 CASE WHEN t.typname IN ('int2', 'int4', 'int8') THEN 0 END AS numeric_scale, \
                 CASE WHEN t.typname = 'date' THEN 0 \
                   WHEN t.typname IN ('timestamp', 'timestamptz', 'time', 'timetz') THEN 6 END AS datetime_precision, \
                 {null} AS interval_type, {null_int} AS interval_precision, \
                 {null} AS character_set_catalog, {null} AS character_set_schema, {null} AS character_set_name, \
                 {null} AS collation_catalog, {null} AS collation_schema, {null} AS collation_name, \
                 {null} AS domain_catalog, {null} AS domain_schema, {null} AS domain_name, \
                 {db} AS udt_catalog, 'pg_catalog' AS udt_schema, t.typname AS udt_name, \
                 {null} AS scope_catalog, {null} AS scope_schema, {null} AS scope_name, \
                 {null_int} AS maximum_cardinality, CAST(a.attnum AS VARCHAR) AS dtd_identifier, \
                 'NO' AS is_self_referencing, 'NO' AS is_identity, {null} AS identity_generation, \
                 {null} AS identity_start, {null} AS identity_increment, {null} AS identity_maximum, \
                 {null} AS identity_minimum, {null} AS identity_cycle, 'NEVER' AS is_generated, \
                 {null} AS generation_expression, \
                 CASE WHEN c.relkind = 'r' THEN 'YES' ELSE 'NO' END AS is_updatable \
                 FROM pg_catalog.pg_attribute a \
                 JOIN pg_catalog.pg_class c ON a.attrelid = c.oid \
                 JOIN pg_catalog.pg_namespace n ON c.relnamespace = n.oid \
                 JOIN pg_catalog.pg_type t ON a.atttypid = t.oid \
                 WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'v', 'f', 'p')"
            ),
        ),
        (
            "table_constraints",
            format!(
                "SELECT {db} AS constraint_catalog, n.nspname AS constraint_schema, \
                 con.conname AS constraint_name, {db} AS table_catalog, n.nspname AS table_schema, \
                 c.relname AS table_name, \
                 CASE con.contype WHEN 'p' THEN 'PRIMARY KEY' WHEN 'u' THEN 'UNIQUE' \
                   WHEN 'f' THEN 'FOREIGN KEY' ELSE 'CHECK' END AS constraint_type, \
                 'NO' AS is_deferrable, 'NO' AS initially_deferred, 'YES' AS enforced, \
                 {null} AS nulls_distinct \
                 FROM pg_catalog.pg_constraint con \
                 JOIN pg_catalog.pg_class c ON con.conrelid = c.oid \
                 JOIN pg_catalog.pg_namespace n ON c.relnamespace = n.oid \
                 WHERE n.nspname <> 'pg_catalog'"
            ),
        ),
        (
            "key_column_usage",
            format!(
                "SELECT {db} AS constraint_catalog, n.nspname AS constraint_schema, \
                 con.conname AS constraint_name, {db} AS table_catalog, n.nspname AS table_schema, \
                 c.relname AS table_name, a.attname AS column_name, 1 AS ordinal_position, \
                 {null_int} AS position_in_unique_constraint \
                 FROM pg_catalog.pg_constraint con \
                 JOIN pg_catalog.pg_class c ON con.conrelid = c.oid \
                 JOIN pg_catalog.pg_namespace n ON c.relnamespace = n.oid \
                 JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum = 1 \
                 WHERE con.contype IN ('p', 'u') AND n.nspname <> 'pg_catalog'"
            ),
        ),
        (
            "constraint_column_usage",
            format!(
                "SELECT table_catalog, table_schema, table_name, column_name, constraint_catalog, \
                 constraint_schema, constraint_name FROM information_schema.key_column_usage"
            ),
        ),
        (
            "referential_constraints",
            format!(
                "SELECT {null} AS constraint_catalog, {null} AS constraint_schema, \
                 {null} AS constraint_name, {null} AS unique_constraint_catalog, \
                 {null} AS unique_constraint_schema, {null} AS unique_constraint_name, \
                 {null} AS match_option, {null} AS update_rule, {null} AS delete_rule WHERE false"
            ),
        ),
        (
            "routines",
            format!(
                "SELECT {null} AS specific_catalog, {null} AS specific_schema, {null} AS specific_name, \
                 {null} AS routine_catalog, {null} AS routine_schema, {null} AS routine_name, \
                 {null} AS routine_type, {null} AS data_type WHERE false"
            ),
        ),
    ]
}

/// SQL type names of a table's columns, for casting added rows to them.
fn sql_types(schema: &datafusion::arrow::datatypes::Schema) -> HashMap<String, String> {
    use datafusion::arrow::datatypes::DataType as A;
    schema
        .fields()
        .iter()
        .filter_map(|f| {
            let t = match f.data_type() {
                A::Int16 => "SMALLINT",
                A::Int32 => "INT",
                A::Int64 => "BIGINT",
                A::Float32 => "REAL",
                A::Float64 => "DOUBLE",
                A::Boolean => "BOOLEAN",
                A::Utf8 => "VARCHAR",
                _ => return None,
            };
            Some((f.name().clone(), t.to_string()))
        })
        .collect()
}

async fn view(ctx: &SessionContext, sql: &str) -> Result<Arc<dyn TableProvider>> {
    let plan = ctx.state().create_logical_plan(sql).await?;
    Ok(Arc::new(ViewTable::new(plan, Some(sql.to_string()))))
}

/// Puts cohortdb's `pg_catalog` overrides and `information_schema` into
/// catalog `catalog` of `ctx` (after `setup_pg_catalog`).
pub async fn install(
    ctx: &SessionContext,
    catalog: &str,
    store: &Arc<cohortdb_storage::Store>,
) -> Result<()> {
    let cat = ctx
        .catalog(catalog)
        .ok_or_else(|| SqlError::UndefinedObject(format!("catalog {catalog} missing")))?;
    let inner = cat
        .schema("pg_catalog")
        .ok_or_else(|| SqlError::UndefinedObject("pg_catalog missing".into()))?;
    let mut overrides: HashMap<&'static str, Arc<dyn TableProvider>> = HashMap::new();
    let sqls: [(&'static str, fn(&HashMap<String, String>) -> String); 3] = [
        ("pg_class", pg_class_sql),
        ("pg_index", pg_index_sql),
        ("pg_constraint", pg_constraint_sql),
    ];
    for (name, sql) in sqls {
        let types = match inner.table(name).await? {
            Some(t) => sql_types(&t.schema()),
            None => continue,
        };
        match view(ctx, &sql(&types)).await {
            Ok(v) => {
                overrides.insert(name, v);
            }
            Err(e) => tracing::warn!("pg_catalog.{name} keeps its base rows: {e}"),
        }
    }
    // pg_proc/pg_type rows of information_schema carry PostgreSQL's OID
    // for it (13283); pg_namespace numbers it itself: point them there.
    let info_oid =
        "(SELECT max(oid) FROM pg_catalog.pg_namespace WHERE nspname = 'information_schema')";
    for (name, subs) in [
        (
            "pg_proc",
            vec![
                (
                    "pronamespace",
                    format!("CASE WHEN pronamespace = 13283 THEN {info_oid} ELSE pronamespace END"),
                ),
                // oidvector: served as an array (sqlsmith unnests it)
                (
                    "proargtypes",
                    "CAST(string_to_array(nullif(proargtypes, ''), ' ') AS INT[])".to_string(),
                ),
                // oid[] (NULL unless a function has OUT arguments): an array
                // too, so `proallargtypes::regtype[]` (pgcli) reads it
                (
                    "proallargtypes",
                    "CAST(string_to_array(nullif(btrim(proallargtypes, '{}[] '), ''), ',') AS INT[])"
                        .to_string(),
                ),
            ],
        ),
        (
            // aclitem[]: NULL, the default privileges (psql \dp)
            "pg_attribute",
            vec![("attacl", NO_ACL.to_string())],
        ),
        (
            "pg_type",
            vec![(
                "typnamespace",
                format!("CASE WHEN typnamespace = 13283 THEN {info_oid} ELSE typnamespace END"),
            )],
        ),
    ] {
        let Some(t) = inner.table(name).await? else {
            continue;
        };
        let types = sql_types(&t.schema());
        match view(ctx, &substituted_view(name, &t.schema(), &types, &subs)).await {
            Ok(v) => {
                overrides.insert(name, v);
            }
            Err(e) => tracing::warn!("pg_catalog.{name} keeps its base rows: {e}"),
        }
    }
    if let Some(t) = inner.table("pg_settings").await? {
        match view(ctx, &pg_settings_sql(&t.schema())).await {
            Ok(v) => {
                overrides.insert("pg_settings", v);
            }
            Err(e) => tracing::warn!("pg_catalog.pg_settings keeps its base rows: {e}"),
        }
    }
    if inner.table("pg_roles").await?.is_some() {
        match view(ctx, &pg_roles_sql()).await {
            Ok(v) => {
                overrides.insert("pg_roles", v);
            }
            Err(e) => tracing::warn!("pg_catalog.pg_roles keeps its base rows: {e}"),
        }
    }
    if let Some(base) = inner.table("pg_auth_members").await? {
        overrides.insert(
            "pg_auth_members",
            Arc::new(crate::pgcompat::client_functions::AuthMembers::new(
                store.clone(),
                base.schema(),
            )),
        );
    }
    cat.register_schema("pg_catalog", Arc::new(PgCatalogExt { inner, overrides }))?;
    // information_schema views read the overridden pg_catalog
    let mut views: HashMap<&'static str, Arc<dyn TableProvider>> = HashMap::new();
    let schema = Arc::new(InformationSchema {
        views: HashMap::new(),
    });
    cat.register_schema("information_schema", schema)?;
    for (name, sql) in information_schema_sql() {
        let v = match view(ctx, &sql).await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!("information_schema.{name} unavailable: {e}");
                continue;
            }
        };
        views.insert(name, v);
        // register as we go: later views may read earlier ones
        cat.register_schema(
            "information_schema",
            Arc::new(InformationSchema {
                views: views.clone(),
            }),
        )?;
    }
    Ok(())
}

/// `SELECT` of every column of `pg_catalog.{table}`, some replaced by an
/// expression (cast back to the column's type).
fn substituted_view(
    table: &str,
    schema: &datafusion::arrow::datatypes::Schema,
    types: &HashMap<String, String>,
    subs: &[(&str, String)],
) -> String {
    let cols: Vec<String> = schema
        .fields()
        .iter()
        .map(|f| {
            let c = f.name();
            match subs.iter().find(|(n, _)| n == c) {
                // array-valued replacements keep their own type
                Some((_, e)) if e.contains("[]") => format!("{e} AS {c}"),
                Some((_, e)) => match types.get(c) {
                    Some(t) => format!("CAST({e} AS {t}) AS {c}"),
                    None => format!("{e} AS {c}"),
                },
                None => c.to_string(),
            }
        })
        .collect();
    format!("SELECT {} FROM pg_catalog.{table}", cols.join(", "))
}

/// Settings clients read from `pg_settings` besides the base rows:
/// pgjdbc asks for `max_index_keys` (getImportedKeys, getIndexInfo).
const EXTRA_SETTINGS: &[(&str, &str, &str)] = &[
    ("max_index_keys", "32", "integer"),
    ("max_identifier_length", "63", "integer"),
    ("server_version", "16.0", "string"),
    ("server_version_num", "160000", "integer"),
    ("server_encoding", "UTF8", "string"),
    ("client_encoding", "UTF8", "string"),
    ("DateStyle", "ISO, MDY", "string"),
    ("integer_datetimes", "on", "bool"),
    ("block_size", "8192", "integer"),
];

fn pg_settings_sql(schema: &datafusion::arrow::datatypes::Schema) -> String {
    let rows: Vec<String> = EXTRA_SETTINGS
        .iter()
        .map(|(name, setting, vartype)| {
            let cols: Vec<String> = schema
                .fields()
                .iter()
                .map(|f| {
                    let t = match f.data_type() {
                        datafusion::arrow::datatypes::DataType::Int32 => "INT",
                        datafusion::arrow::datatypes::DataType::Int64 => "BIGINT",
                        datafusion::arrow::datatypes::DataType::Boolean => "BOOLEAN",
                        _ => "VARCHAR",
                    };
                    let v = match f.name().as_str() {
                        "name" => format!("'{name}'"),
                        "setting" | "reset_val" | "boot_val" => format!("'{setting}'"),
                        "vartype" => format!("'{vartype}'"),
                        "context" => "'internal'".to_string(),
                        "source" => "'default'".to_string(),
                        "pending_restart" => "false".to_string(),
                        _ => "NULL".to_string(),
                    };
                    format!("CAST({v} AS {t}) AS {}", f.name())
                })
                .collect();
            format!("SELECT {}", cols.join(", "))
        })
        .collect();
    let names: Vec<String> = EXTRA_SETTINGS
        .iter()
        .map(|(n, _, _)| format!("'{n}'"))
        .collect();
    format!(
        "SELECT * FROM pg_catalog.pg_settings WHERE name NOT IN ({}) UNION ALL {}",
        names.join(", "),
        rows.join(" UNION ALL ")
    )
}

/// `pg_class.relam`: tables report `heap` (`pg_am` OID 2), as in PostgreSQL.
const TABLE_AM: &str = "CASE WHEN relkind = 'r' THEN 2 ELSE relam END";

/// `pg_class.reloptions` (no relation has storage options).
const NO_OPTIONS: &str = "CAST(NULL AS VARCHAR[])";

/// `pg_class.relacl`: NULL, PostgreSQL's "default privileges" (cohortdb's
/// privileges are per role and statement kind, docs/security.md, not
/// per-relation grants), which psql `\dp` and pgjdbc `getTablePrivileges`
/// read as the owner's.
const NO_ACL: &str = "CAST(NULL AS VARCHAR[])";

/// Columns of `pg_index`/`pg_constraint` that are `int2vector`/`oidvector`/
/// `int2[]` in PostgreSQL: served as arrays (`unnest`, `= ANY`, subscripts
/// work), not as the text `datafusion-pg-catalog` stores.
const VECTOR_COLS: &[&str] = &[
    "indkey",
    "indcollation",
    "indclass",
    "indoption",
    "conkey",
    "confkey",
];

fn without_vectors(types: &HashMap<String, String>) -> HashMap<String, String> {
    types
        .iter()
        .filter(|(k, _)| !VECTOR_COLS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// `pg_roles` with an OID per user (`datafusion-pg-catalog` gives every role 0):
/// 10 for `admin`, a stable hash of the name for the others.
fn pg_roles_sql() -> String {
    "SELECT rolname, rolsuper, rolinherit, rolcreaterole, rolcreatedb, rolcanlogin, \
     rolreplication, rolconnlimit, rolpassword, rolvaliduntil, rolbypassrls, rolconfig, \
     pg_role_oid(rolname) AS oid FROM pg_catalog.pg_roles"
        .to_string()
}
