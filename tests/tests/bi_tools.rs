//! The schema browsers of DBeaver, Metabase, Grafana and Superset against the
//! real binary: each test replays, over the wire, the catalog and metadata
//! queries one tool sends when it connects and browses a database (schemas,
//! tables and views, columns with their types, primary keys, version and
//! settings probes), and checks the answers a browser shows.
//!
//! Every query text is taken from a public source, cited next to it
//! (repository and path). Each one runs twice: with the simple query protocol
//! (parameters written into the text as literals, as psycopg2 and psql send
//! them) and with the extended protocol (Parse/Bind/Execute with typed
//! parameters, as pgjdbc, pgx and asyncpg send them). Both runs must succeed
//! and return the same rows; then the rows are checked. All failures of a tool
//! are collected and reported together.

use cohortdb_tests::render::{display_text, render_cell, RawValue};
use cohortdb_tests::{exec, TestServer};
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, SimpleQueryMessage};

/// A query parameter, with the type the client sends for it.
#[derive(Clone, Debug)]
enum P {
    /// A string bound as `varchar` (pgjdbc `setString`).
    Text(String),
    /// A number bound as `int8` (pgjdbc `setLong`, Metabase's inline numbers).
    Int8(i64),
    /// A value whose type the client leaves to the server (OID 0; pgx,
    /// psycopg 3): bound as whatever the server infers.
    Inferred(String),
}

fn text(s: &str) -> P {
    P::Text(s.to_string())
}

/// SQL literal of a parameter, for the simple protocol.
fn literal(p: &P) -> String {
    match p {
        P::Text(s) | P::Inferred(s) => format!("'{}'", s.replace('\'', "''")),
        P::Int8(n) => n.to_string(),
    }
}

/// `sql` with `$n` replaced by the literals of `params` (highest `n` first,
/// so that `$1` does not match the start of `$10`).
fn inline(sql: &str, params: &[P]) -> String {
    let mut out = sql.to_string();
    for (i, p) in params.iter().enumerate().rev() {
        out = out.replace(&format!("${}", i + 1), &literal(p));
    }
    out
}

/// A result set: column names and rows, each value as sqllogictest text
/// (`NULL`, `(empty)`, else the text Postgres prints).
#[derive(Debug, PartialEq)]
struct Res {
    cols: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Res {
    fn idx(&self, col: &str) -> Option<usize> {
        self.cols.iter().position(|c| c == col)
    }

    /// Values of column `col` (empty if there is no such column).
    fn column(&self, col: &str) -> Vec<&str> {
        match self.idx(col) {
            Some(i) => self.rows.iter().map(|r| r[i].as_str()).collect(),
            None => Vec::new(),
        }
    }

    /// The first row whose columns have the given values.
    fn find(&self, want: &[(&str, &str)]) -> Option<&Vec<String>> {
        let idx: Option<Vec<(usize, &str)>> = want
            .iter()
            .map(|(c, v)| self.idx(c).map(|i| (i, *v)))
            .collect();
        let idx = idx?;
        self.rows
            .iter()
            .find(|r| idx.iter().all(|(i, v)| r[*i] == *v))
    }

    /// Value of column `col` in the first row matching `want`.
    fn value(&self, want: &[(&str, &str)], col: &str) -> Option<&str> {
        let i = self.idx(col)?;
        self.find(want).map(|r| r[i].as_str())
    }

    fn dump(&self) -> String {
        let mut s = format!("columns: {:?}\n", self.cols);
        for r in self.rows.iter().take(40) {
            s.push_str(&format!("  {r:?}\n"));
        }
        if self.rows.len() > 40 {
            s.push_str(&format!("  ... {} rows\n", self.rows.len()));
        }
        s
    }
}

async fn run_simple(client: &Client, sql: &str) -> Result<Res, String> {
    let messages = client
        .simple_query(sql)
        .await
        .map_err(|e| cohortdb_tests::SqlError::from(&e).to_string())?;
    let mut res = Res {
        cols: Vec::new(),
        rows: Vec::new(),
    };
    for m in messages {
        match m {
            SimpleQueryMessage::RowDescription(cols) => {
                res.cols = cols.iter().map(|c| c.name().to_string()).collect();
            }
            SimpleQueryMessage::Row(row) => {
                res.rows
                    .push((0..row.len()).map(|i| display_text(row.get(i))).collect());
            }
            _ => {}
        }
    }
    Ok(res)
}

async fn run_extended(client: &Client, sql: &str, params: &[P]) -> Result<Res, String> {
    let types: Vec<Type> = params
        .iter()
        .map(|p| match p {
            P::Text(_) => Type::VARCHAR,
            P::Int8(_) => Type::INT8,
            P::Inferred(_) => Type::UNKNOWN,
        })
        .collect();
    let err = |e: tokio_postgres::Error| cohortdb_tests::SqlError::from(&e).to_string();
    let stmt = client.prepare_typed(sql, &types).await.map_err(err)?;
    let mut values: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
    for (p, ty) in params.iter().zip(stmt.params()) {
        let v: Box<dyn ToSql + Sync + Send> = match p {
            P::Text(s) => Box::new(s.clone()),
            P::Int8(n) => Box::new(*n),
            P::Inferred(s) => match *ty {
                Type::INT8 => Box::new(s.parse::<i64>().map_err(|e| e.to_string())?),
                Type::INT4 | Type::OID => Box::new(s.parse::<i32>().map_err(|e| e.to_string())?),
                Type::INT2 => Box::new(s.parse::<i16>().map_err(|e| e.to_string())?),
                Type::BOOL => Box::new(s == "true" || s == "t"),
                _ => Box::new(s.clone()),
            },
        };
        values.push(v);
    }
    let refs: Vec<&(dyn ToSql + Sync)> = values
        .iter()
        .map(|v| v.as_ref() as &(dyn ToSql + Sync))
        .collect();
    let rows = client.query(&stmt, &refs).await.map_err(err)?;
    let cols = stmt
        .columns()
        .iter()
        .map(|c| c.name().to_string())
        .collect();
    let mut out = Vec::new();
    for row in &rows {
        let mut r = Vec::new();
        for i in 0..row.len() {
            r.push(render_cell(row, i).or_else(|e| other_type(row, i, e))?);
        }
        out.push(r);
    }
    Ok(Res { cols, rows: out })
}

/// A value of a type the test renderer does not know (`regproc`,
/// `regnamespace`, ...): cohortdb sends those as text in both formats.
fn other_type(row: &tokio_postgres::Row, i: usize, e: String) -> Result<String, String> {
    let raw: Option<RawValue<'_>> = row.try_get(i).map_err(|e| e.to_string())?;
    // the OID aliases (regproc, regclass, regtype, regnamespace, regrole, ...)
    // are four-byte OIDs in binary, printed as the number by cohortdb
    const OID_ALIASES: &[u32] = &[24, 2202, 2203, 2204, 2205, 2206, 3734, 3769, 4089, 4096];
    match raw {
        None => Ok("NULL".into()),
        Some(RawValue(b))
            if OID_ALIASES.contains(&row.columns()[i].type_().oid()) && b.len() == 4 =>
        {
            Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]).to_string())
        }
        Some(RawValue(b)) => std::str::from_utf8(b)
            .map(|s| display_text(Some(s)))
            .map_err(|_| e),
    }
}

/// Runs `sql` with both protocols; both must succeed with the same columns
/// and the same rows (in any order).
async fn replay(client: &Client, sql: &str, params: &[P]) -> Result<Res, String> {
    let simple = run_simple(client, &inline(sql, params))
        .await
        .map_err(|e| format!("simple protocol: {e}"))?;
    let extended = run_extended(client, sql, params)
        .await
        .map_err(|e| format!("extended protocol: {e}"))?;
    if !sql.trim_start().to_ascii_lowercase().starts_with("set ") && simple.cols != extended.cols {
        return Err(format!(
            "columns differ: simple {:?}, extended {:?}",
            simple.cols, extended.cols
        ));
    }
    let mut a = simple.rows.clone();
    let mut b = extended.rows.clone();
    a.sort();
    b.sort();
    if a != b {
        return Err(format!(
            "rows differ between protocols:\nsimple:\n{}extended:\n{}",
            simple.dump(),
            extended.dump()
        ));
    }
    Ok(simple)
}

/// One tool's session: a connection and the failures seen so far.
struct Session {
    tool: &'static str,
    client: Client,
    failures: Vec<String>,
}

impl Session {
    async fn new(server: &TestServer, tool: &'static str) -> Session {
        Session {
            tool,
            client: server.client().await,
            failures: Vec::new(),
        }
    }

    /// Replays one query; records a failure and returns `None` if it fails.
    async fn run(&mut self, what: &str, sql: &str, params: &[P]) -> Option<Res> {
        match replay(&self.client, sql, params).await {
            Ok(r) => Some(r),
            Err(e) => {
                self.failures
                    .push(format!("{what}: {e}\n    [SQL] {}", inline(sql, params)));
                None
            }
        }
    }

    /// Records a failure unless `ok`.
    fn check(&mut self, what: &str, ok: bool, res: &Res) {
        if !ok {
            self.failures
                .push(format!("{what}: unexpected result\n{}", res.dump()));
        }
    }

    fn finish(self, server: &TestServer) {
        if !self.failures.is_empty() {
            panic!(
                "{}: {} failure(s)\n\n{}\n\n--- server log ---\n{}",
                self.tool,
                self.failures.len(),
                self.failures.join("\n\n"),
                server.log_tail(40)
            );
        }
    }
}

/// A server with cohortdb's built-in relations, one contact and a user table
/// (`sku_dim`, two rows).
async fn server() -> TestServer {
    let server = TestServer::start();
    let client = server.client().await;
    exec(
        &client,
        "CREATE TABLE sku_dim (sku_id VARCHAR, colour VARCHAR, price DOUBLE)",
    )
    .await;
    exec(
        &client,
        "INSERT INTO sku_dim (sku_id, colour, price) VALUES ('010289', 'red', 9.5), ('010290', 'blue', 12)",
    )
    .await;
    exec(
        &client,
        "INSERT INTO contacts (name, email) VALUES ('Ada', 'ada@example.com')",
    )
    .await;
    server
}

// ---------------------------------------------------------------- DBeaver

/// DBeaver's connection bootstrap and navigator (schemas, tables, columns,
/// indexes, constraints of `contacts`).
#[tokio::test]
async fn dbeaver() {
    let server = server().await;
    let mut s = Session::new(&server, "DBeaver").await;

    // Connection bootstrap, as captured in datafusion-contrib/datafusion-postgres
    // datafusion-postgres/tests/dbeaver.rs (DBEAVER_QUERIES).
    for set in [
        "SET extra_float_digits = 3",
        "SET application_name = 'PostgreSQL JDBC Driver'",
        "SET application_name = 'DBeaver 25.1.5 - Main <postgres>'",
    ] {
        s.run(set, set, &[]).await;
    }
    // datafusion-postgres/tests/dbeaver.rs
    if let Some(r) = s
        .run(
            "current_schema",
            "SELECT current_schema(),session_user",
            &[],
        )
        .await
    {
        let ok = r.rows.len() == 1 && r.rows[0][0] == "public" && r.rows[0][1] == "admin";
        s.check("current_schema() is public, session_user admin", ok, &r);
    }
    // datafusion-postgres/tests/dbeaver.rs: the schema list of the navigator.
    let mut public_oid = None;
    if let Some(r) = s
        .run(
            "schemas",
            "SELECT n.oid,n.*,d.description FROM pg_catalog.pg_namespace n LEFT OUTER JOIN pg_catalog.pg_description d ON d.objoid=n.oid AND d.objsubid=0 AND d.classoid='pg_namespace'::regclass ORDER BY nspname",
            &[],
        )
        .await
    {
        let names = r.column("nspname");
        s.check(
            "schemas: public, pg_catalog, information_schema in name order",
            names.contains(&"public")
                && names.contains(&"pg_catalog")
                && names.windows(2).all(|w| w[0] <= w[1]),
            &r,
        );
        public_oid = r
            .value(&[("nspname", "public")], "oid")
            .and_then(|o| o.parse::<i64>().ok());
    }
    // datafusion-postgres/tests/dbeaver.rs: pgjdbc resolving a type OID (1034 = _aclitem).
    if let Some(r) = s
        .run(
            "type by oid",
            "SELECT n.nspname = ANY(current_schemas(true)), n.nspname, t.typname FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON t.typnamespace = n.oid WHERE t.oid = 1034",
            &[],
        )
        .await
    {
        let ok = r.rows.len() == 1 && r.rows[0][0] == "t" && r.rows[0][1] == "pg_catalog" && r.rows[0][2] == "_aclitem";
        s.check("type 1034 is pg_catalog._aclitem, on the search path", ok, &r);
    }
    // datafusion-postgres/tests/dbeaver.rs: pgjdbc's TypeInfoCache array lookup.
    if let Some(r) = s
        .run(
            "array type lookup",
            "SELECT typinput='pg_catalog.array_in'::regproc as is_array, typtype, typname, pg_type.oid   FROM pg_catalog.pg_type   LEFT JOIN (select ns.oid as nspoid, ns.nspname, r.r           from pg_namespace as ns           join ( select s.r, (current_schemas(false))[s.r] as nspname                    from generate_series(1, array_upper(current_schemas(false), 1)) as s(r) ) as r          using ( nspname )        ) as sp     ON sp.nspoid = typnamespace  WHERE pg_type.oid = 1034  ORDER BY sp.r, pg_type.oid DESC",
            &[],
        )
        .await
    {
        let ok = r.rows.len() == 1 && r.rows[0][0] == "t" && r.rows[0][2] == "_aclitem";
        s.check("_aclitem is an array type", ok, &r);
    }
    if let Some(r) = s.run("search_path", "SHOW search_path", &[]).await {
        let ok = r.rows.len() == 1 && r.rows[0][0].contains("public");
        s.check("search_path names public", ok, &r);
    }
    // datafusion-postgres/tests/dbeaver.rs has datname='postgres' (the database it
    // was captured against); DBeaver sends the connected database's name.
    if let Some(r) = s
        .run(
            "database",
            "SELECT db.oid,db.* FROM pg_catalog.pg_database db WHERE datname='cohortdb'",
            &[],
        )
        .await
    {
        s.check(
            "pg_database has cohortdb",
            r.rows.len() == 1 && r.column("datname") == ["cohortdb"],
            &r,
        );
    }
    // datafusion-postgres/tests/dbeaver.rs
    if let Some(r) = s
        .run(
            "pg_settings",
            "SELECT * FROM pg_catalog.pg_settings where name='standard_conforming_strings'",
            &[],
        )
        .await
    {
        s.check(
            "standard_conforming_strings is on",
            r.value(&[("name", "standard_conforming_strings")], "setting") == Some("on"),
            &r,
        );
    }
    // datafusion-postgres/tests/dbeaver.rs: the SQL editor's keyword list.
    if let Some(r) = s.run("keywords", KEYWORDS, &[]).await {
        let ok = r.rows.len() == 1 && r.rows[0][0].split(',').count() > 10;
        s.check("pg_get_keywords() lists keywords", ok, &r);
    }
    if let Some(r) = s.run("version", "SELECT version()", &[]).await {
        let ok = r.rows.len() == 1 && r.rows[0][0].starts_with("PostgreSQL 16");
        s.check("version() is PostgreSQL 16", ok, &r);
    }
    // datafusion-postgres/tests/dbeaver.rs: feature probes (columns, no rows).
    if let Some(r) = s
        .run(
            "pg_enum probe",
            "SELECT * FROM pg_catalog.pg_enum WHERE 1<>1 LIMIT 1",
            &[],
        )
        .await
    {
        s.check(
            "pg_enum has enumlabel",
            r.rows.is_empty() && r.idx("enumlabel").is_some(),
            &r,
        );
    }
    if let Some(r) = s
        .run(
            "reltype probe",
            "SELECT reltype FROM pg_catalog.pg_class WHERE 1<>1 LIMIT 1",
            &[],
        )
        .await
    {
        s.check(
            "reltype column, no rows",
            r.rows.is_empty() && r.cols == ["reltype"],
            &r,
        );
    }
    // datafusion-postgres/tests/dbeaver.rs: the data type cache.
    if let Some(r) = s
        .run(
            "data types",
            "SELECT t.oid,t.*,c.relkind,format_type(nullif(t.typbasetype, 0), t.typtypmod) as base_type_name, d.description FROM pg_catalog.pg_type t LEFT OUTER JOIN pg_catalog.pg_type et ON et.oid=t.typelem LEFT OUTER JOIN pg_catalog.pg_class c ON c.oid=t.typrelid LEFT OUTER JOIN pg_catalog.pg_description d ON t.oid=d.objoid WHERE t.typname IS NOT NULL AND (c.relkind IS NULL OR c.relkind = 'c') AND (et.typcategory IS NULL OR et.typcategory <> 'C')",
            &[],
        )
        .await
    {
        let ok = ["int8", "text", "timestamptz", "bool", "float8"]
            .iter()
            .all(|t| r.find(&[("typname", t)]).is_some());
        s.check("data types include int8, text, timestamptz, bool, float8", ok, &r);
    }
    let Some(public) = public_oid else {
        s.failures
            .push("no oid for schema public: the navigator stops here".into());
        return s.finish(&server);
    };
    // dbeaver/dbeaver plugins/org.jkiss.dbeaver.ext.postgresql/src/org/jkiss/dbeaver/ext/postgresql/model/PostgreSchema.java
    // (TableCache.prepareLookupStatement; also in datafusion-postgres/tests/dbeaver.rs
    // with the schema OID inlined): the tables of a schema.
    let mut contacts_oid = None;
    if let Some(r) = s
        .run(
            "tables of public",
            "SELECT c.oid,c.*,d.description,pg_catalog.pg_get_expr(c.relpartbound, c.oid) as partition_expr,  pg_catalog.pg_get_partkeydef(c.oid) as partition_key \nFROM pg_catalog.pg_class c\nLEFT OUTER JOIN pg_catalog.pg_description d ON d.objoid=c.oid AND d.objsubid=0 AND d.classoid='pg_class'::regclass\nWHERE c.relnamespace=$1 AND c.relkind not in ('i','I','c')",
            &[P::Int8(public)],
        )
        .await
    {
        let ok = r.find(&[("relname", "contacts"), ("relkind", "r")]).is_some()
            && r.find(&[("relname", "contact_view"), ("relkind", "v")]).is_some()
            && r.find(&[("relname", "identities"), ("relkind", "r")]).is_some()
            && r.find(&[("relname", "sku_dim"), ("relkind", "r")]).is_some()
            && r.find(&[("relname", "contacts_pkey")]).is_none();
        s.check(
            "tables: contacts/identities/sku_dim are r, contact_view is v, no index",
            ok,
            &r,
        );
        contacts_oid = r
            .value(&[("relname", "contacts")], "oid")
            .and_then(|o| o.parse::<i64>().ok());
    }
    // datafusion-postgres/tests/dbeaver.rs: relation sizes (schema OID as a parameter,
    // as DBeaver binds it).
    if let Some(r) = s
        .run(
            "relation sizes",
            "select c.oid,pg_catalog.pg_total_relation_size(c.oid) as total_rel_size,pg_catalog.pg_relation_size(c.oid) as rel_size\n     FROM pg_class c\n     WHERE c.relnamespace=$1",
            &[P::Int8(public)],
        )
        .await
    {
        let ok = contacts_oid.is_some_and(|o| {
            r.value(&[("oid", &o.to_string())], "total_rel_size")
                .is_some_and(|v| v.parse::<i64>().is_ok())
        });
        s.check("contacts has a numeric total_rel_size", ok, &r);
    }
    let Some(contacts) = contacts_oid else {
        s.failures
            .push("no oid for contacts: column/index/constraint browsing skipped".into());
        return s.finish(&server);
    };
    // dbeaver/dbeaver plugins/org.jkiss.dbeaver.ext.postgresql/src/org/jkiss/dbeaver/ext/postgresql/model/PostgreSchema.java
    // (TableCache.prepareChildrenStatement, for one table): the columns.
    if let Some(r) = s
        .run(
            "columns of contacts",
            "SELECT c.relname,a.*,pg_catalog.pg_get_expr(ad.adbin, ad.adrelid, true) as def_value,dsc.description,dep.objid\nFROM pg_catalog.pg_attribute a\nINNER JOIN pg_catalog.pg_class c ON (a.attrelid=c.oid)\nLEFT OUTER JOIN pg_catalog.pg_attrdef ad ON (a.attrelid=ad.adrelid AND a.attnum = ad.adnum)\nLEFT OUTER JOIN pg_catalog.pg_description dsc ON (c.oid=dsc.objoid AND a.attnum = dsc.objsubid)\nLEFT OUTER JOIN pg_depend dep on dep.refobjid = a.attrelid AND dep.deptype = 'i' and dep.refobjsubid = a.attnum and dep.classid = dep.refclassid\nWHERE NOT a.attisdropped AND c.relkind not in ('i','I','c') AND c.oid=$1\nORDER BY a.attnum",
            &[P::Int8(contacts)],
        )
        .await
    {
        let ok = r.rows.len() > 10
            && r.find(&[("attname", "id"), ("attnum", "1"), ("atttypid", "20")]).is_some()
            && r.find(&[("attname", "email"), ("atttypid", "25")]).is_some()
            && r.column("relname").iter().all(|n| *n == "contacts");
        s.check("contacts columns: id int8 first, email text", ok, &r);
    }
    // datafusion-postgres/tests/dbeaver.rs (IndexCache; table OID bound as DBeaver does).
    if let Some(r) = s
        .run(
            "indexes of contacts",
            "SELECT i.*,i.indkey as keys,c.relname,c.relnamespace,c.relam,c.reltablespace,tc.relname as tabrelname,dsc.description,pg_catalog.pg_get_expr(i.indpred, i.indrelid) as pred_expr,pg_catalog.pg_get_expr(i.indexprs, i.indrelid, true) as expr,pg_catalog.pg_relation_size(i.indexrelid) as index_rel_size,pg_catalog.pg_stat_get_numscans(i.indexrelid) as index_num_scans FROM pg_catalog.pg_index i\n    INNER JOIN pg_catalog.pg_class c ON c.oid=i.indexrelid\n    INNER JOIN pg_catalog.pg_class tc ON tc.oid=i.indrelid\n    LEFT OUTER JOIN pg_catalog.pg_description dsc ON i.indexrelid=dsc.objoid\n    WHERE  i.indrelid=$1 ORDER BY tabrelname, c.relname",
            &[P::Int8(contacts)],
        )
        .await
    {
        let ok = r
            .find(&[
                ("relname", "contacts_pkey"),
                ("tabrelname", "contacts"),
                ("indisprimary", "t"),
                ("indisunique", "t"),
            ])
            .is_some();
        s.check("contacts_pkey: primary, unique index of contacts", ok, &r);
    }
    // datafusion-postgres/tests/dbeaver.rs (ConstraintCache; table OID bound).
    if let Some(r) = s
        .run(
            "constraints of contacts",
            "SELECT c.oid,c.*,t.relname as tabrelname,rt.relnamespace as refnamespace,d.description, case when c.contype='c' then \"substring\"(pg_get_constraintdef(c.oid), 7) else null end consrc_copy\n    FROM pg_catalog.pg_constraint c\n    INNER JOIN pg_catalog.pg_class t ON t.oid=c.conrelid\n    LEFT OUTER JOIN pg_catalog.pg_class rt ON rt.oid=c.confrelid\n    LEFT OUTER JOIN pg_catalog.pg_description d ON d.objoid=c.oid AND d.objsubid=0 AND d.classoid='pg_constraint'::regclass\n    WHERE c.conrelid=$1\n    ORDER BY c.oid",
            &[P::Int8(contacts)],
        )
        .await
    {
        let ok = r
            .find(&[
                ("conname", "contacts_pkey"),
                ("contype", "p"),
                ("tabrelname", "contacts"),
                ("conkey", "{1}"),
            ])
            .is_some();
        s.check("contacts_pkey: PRIMARY KEY on column 1", ok, &r);
    }
    s.finish(&server);
}

/// datafusion-contrib/datafusion-postgres datafusion-postgres/tests/dbeaver.rs:
/// the SQL editor's keyword query (its word list as captured there).
const KEYWORDS: &str = include_str!("bi_tools_keywords.sql");

// --------------------------------------------------------------- Metabase

/// Metabase's connection check and sync: schemas (pgjdbc `getSchemas`),
/// table privileges, tables, fields with types and primary keys, foreign keys.
#[tokio::test]
async fn metabase() {
    let server = server().await;
    let mut s = Session::new(&server, "Metabase").await;

    // datafusion-contrib/datafusion-postgres datafusion-postgres/tests/metabase.rs
    for set in [
        "SET extra_float_digits = 2",
        "SET application_name = 'Metabase v0.55.1 [f8f63fdf-d8f8-4573-86ea-4fe4a9548041]'",
        "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ UNCOMMITTED",
    ] {
        s.run(set, set, &[]).await;
    }
    if let Some(r) = s
        .run("isolation", "SHOW TRANSACTION ISOLATION LEVEL", &[])
        .await
    {
        s.check("one isolation level", r.rows.len() == 1, &r);
    }
    // datafusion-postgres/tests/metabase.rs (pgjdbc DatabaseMetaData.getSchemas,
    // which Metabase's sync uses for the schema list).
    if let Some(r) = s
        .run(
            "schemas",
            r#"SELECT nspname AS "TABLE_SCHEM", current_database() AS "TABLE_CATALOG" FROM pg_catalog.pg_namespace  WHERE nspname <> 'pg_toast' AND (nspname !~ '^pg_temp_'  OR nspname = (pg_catalog.current_schemas(true))[1]) AND (nspname !~ '^pg_toast_temp_'  OR nspname = replace((pg_catalog.current_schemas(true))[1], 'pg_temp_', 'pg_toast_temp_'))  ORDER BY "TABLE_SCHEM""#,
            &[],
        )
        .await
    {
        let ok = r
            .find(&[("TABLE_SCHEM", "public"), ("TABLE_CATALOG", "cohortdb")])
            .is_some();
        s.check("schema public in catalog cohortdb", ok, &r);
    }
    // metabase/metabase src/metabase/driver/postgres.clj
    // (sql-jdbc.sync/current-user-table-privileges; also datafusion-postgres/tests/metabase.rs).
    if let Some(r) = s.run("table privileges", TABLE_PRIVILEGES, &[]).await {
        let ok = r
            .find(&[("schema", "public"), ("table", "contacts"), ("select", "t")])
            .is_some()
            && r.find(&[("table", "contact_view"), ("select", "t")])
                .is_some()
            && r.find(&[("table", "sku_dim"), ("insert", "t")]).is_some()
            && !r.column("schema").contains(&"pg_catalog");
        s.check(
            "select privilege on contacts, contact_view, sku_dim",
            ok,
            &r,
        );
    }
    // datafusion-postgres/tests/metabase.rs: get-tables-sql of
    // metabase/metabase src/metabase/driver/postgres.clj, with its values inlined.
    if let Some(r) = s
        .run(
            "tables (inlined)",
            r#"SELECT "n"."nspname" AS "schema", "c"."relname" AS "name", CASE "c"."relkind" WHEN 'r' THEN 'TABLE' WHEN 'p' THEN 'PARTITIONED TABLE' WHEN 'v' THEN 'VIEW' WHEN 'f' THEN 'FOREIGN TABLE' WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE NULL END AS "type", "d"."description" AS "description", "stat"."n_live_tup" AS "estimated_row_count" FROM "pg_catalog"."pg_class" AS "c" INNER JOIN "pg_catalog"."pg_namespace" AS "n" ON "c"."relnamespace" = "n"."oid" LEFT JOIN "pg_catalog"."pg_description" AS "d" ON ("c"."oid" = "d"."objoid") AND ("d"."objsubid" = '0') AND ("d"."classoid" = 'pg_class'::regclass) LEFT JOIN "pg_stat_user_tables" AS "stat" ON ("n"."nspname" = "stat"."schemaname") AND ("c"."relname" = "stat"."relname") WHERE ("c"."relnamespace" = "n"."oid") AND ("n"."nspname" !~ '^pg_') AND ("n"."nspname" <> 'information_schema') AND c.relkind in ('r', 'p', 'v', 'f', 'm') AND ("n"."nspname" IN ('public')) ORDER BY "type" ASC, "schema" ASC, "name" ASC"#,
            &[],
        )
        .await
    {
        check_metabase_tables(&mut s, &r);
    }
    // metabase/metabase src/metabase/driver/postgres.clj (get-tables-sql as HoneySQL
    // renders it for pgjdbc: values become parameters).
    if let Some(r) = s
        .run(
            "tables (parameters)",
            r#"SELECT "n"."nspname" AS "schema", "c"."relname" AS "name", CASE "c"."relkind" WHEN 'r' THEN 'TABLE' WHEN 'p' THEN 'PARTITIONED TABLE' WHEN 'v' THEN 'VIEW' WHEN 'f' THEN 'FOREIGN TABLE' WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE NULL END AS "type", "d"."description" AS "description", "stat"."n_live_tup" AS "estimated_row_count" FROM "pg_catalog"."pg_class" AS "c" INNER JOIN "pg_catalog"."pg_namespace" AS "n" ON "c"."relnamespace" = "n"."oid" LEFT JOIN "pg_catalog"."pg_description" AS "d" ON ("c"."oid" = "d"."objoid") AND ("d"."objsubid" = $1) AND ("d"."classoid" = 'pg_class'::regclass) LEFT JOIN "pg_stat_user_tables" AS "stat" ON ("n"."nspname" = "stat"."schemaname") AND ("c"."relname" = "stat"."relname") WHERE ("c"."relnamespace" = "n"."oid") AND ("n"."nspname" !~ $2) AND ("n"."nspname" <> $3) AND c.relkind in ('r', 'p', 'v', 'f', 'm') AND ("n"."nspname" IN ($4)) ORDER BY "type" ASC, "schema" ASC, "name" ASC"#,
            &[P::Int8(0), text("^pg_"), text("information_schema"), text("public")],
        )
        .await
    {
        check_metabase_tables(&mut s, &r);
    }
    // datafusion-postgres/tests/metabase.rs; postgres.clj driver/db-default-timezone.
    if let Some(r) = s.run("timezone", "show timezone", &[]).await {
        s.check(
            "one time zone",
            r.rows.len() == 1 && !r.rows[0][0].is_empty(),
            &r,
        );
    }
    // metabase/metabase src/metabase/driver/postgres.clj (enum-types).
    if let Some(r) = s
        .run(
            "enum types",
            "SELECT nspname, typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE t.oid IN (SELECT DISTINCT enumtypid FROM pg_enum e)",
            &[],
        )
        .await
    {
        s.check("no enum types", r.rows.is_empty() && r.cols == ["nspname", "typname"], &r);
    }
    // metabase/metabase src/metabase/driver/postgres.clj (sql-jdbc.sync/describe-fields-sql,
    // rendered by HoneySQL with :ansi quoting; schema and table names are parameters).
    if let Some(r) = s
        .run(
            "describe fields",
            DESCRIBE_FIELDS,
            &[
                text("public"),
                text("contacts"),
                text("sku_dim"),
                text("public"),
                text("contacts"),
                text("sku_dim"),
            ],
        )
        .await
    {
        let ok = r
            .find(&[
                ("name", "id"),
                ("table-name", "contacts"),
                ("database-type", "int8"),
                ("database-position", "0"),
                ("pk?", "t"),
            ])
            .is_some()
            && r.find(&[("name", "email"), ("database-type", "text"), ("pk?", "f")])
                .is_some()
            && r.find(&[
                ("name", "price"),
                ("table-name", "sku_dim"),
                ("database-type", "float8"),
            ])
            .is_some()
            && r.find(&[
                ("name", "sku_id"),
                ("database-type", "text"),
                ("database-position", "0"),
            ])
            .is_some()
            && r.column("table-name")
                .iter()
                .all(|t| *t == "contacts" || *t == "sku_dim");
        s.check(
            "fields: contacts.id int8 pk at position 0, email text, sku_dim text/float8",
            ok,
            &r,
        );
    }
    // metabase/metabase src/metabase/driver/postgres.clj (sql-jdbc.sync/describe-fks-sql).
    if let Some(r) = s.run("describe fks", DESCRIBE_FKS, &[text("public")]).await {
        s.check(
            "no foreign keys, the six columns",
            r.rows.is_empty()
                && r.cols
                    == [
                        "fk-table-schema",
                        "fk-table-name",
                        "fk-column-name",
                        "pk-table-schema",
                        "pk-table-name",
                        "pk-column-name",
                    ],
            &r,
        );
    }
    // metabase/metabase src/metabase/driver/common/table_rows_sample.clj: the
    // fingerprinting sample of a table (HoneySQL-rendered).
    if let Some(r) = s
        .run(
            "rows sample",
            r#"SELECT "public"."sku_dim"."sku_id" AS "sku_id", "public"."sku_dim"."price" AS "price" FROM "public"."sku_dim" LIMIT 10000"#,
            &[],
        )
        .await
    {
        s.check(
            "sample has both sku_dim rows",
            r.find(&[("sku_id", "010289"), ("price", "9.5")]).is_some() && r.rows.len() == 2,
            &r,
        );
    }
    s.finish(&server);
}

fn check_metabase_tables(s: &mut Session, r: &Res) {
    let ok = r
        .find(&[
            ("schema", "public"),
            ("name", "contacts"),
            ("type", "TABLE"),
        ])
        .is_some()
        && r.find(&[("name", "contact_view"), ("type", "VIEW")])
            .is_some()
        && r.find(&[("name", "events"), ("type", "TABLE")]).is_some()
        && r.find(&[("name", "sku_dim"), ("type", "TABLE")]).is_some()
        && r.find(&[("name", "contacts_pkey")]).is_none()
        && r.column("schema").iter().all(|n| *n == "public");
    s.check(
        "tables: contacts/events/sku_dim TABLE, contact_view VIEW",
        ok,
        r,
    );
}

/// metabase/metabase src/metabase/driver/postgres.clj, `current-user-table-privileges`.
const TABLE_PRIVILEGES: &str = "with table_privileges as (\n select\n   NULL as role,\n   t.schemaname as schema,\n   t.objectname as table,\n   pg_catalog.has_any_column_privilege(current_user, '\"' || replace(t.schemaname, '\"', '\"\"') || '\"' || '.' || '\"' || replace(t.objectname, '\"', '\"\"') || '\"',  'update') as update,\n   pg_catalog.has_any_column_privilege(current_user, '\"' || replace(t.schemaname, '\"', '\"\"') || '\"' || '.' || '\"' || replace(t.objectname, '\"', '\"\"') || '\"',  'select') as select,\n   pg_catalog.has_any_column_privilege(current_user, '\"' || replace(t.schemaname, '\"', '\"\"') || '\"' || '.' || '\"' || replace(t.objectname, '\"', '\"\"') || '\"',  'insert') as insert,\n   pg_catalog.has_table_privilege(     current_user, '\"' || replace(t.schemaname, '\"', '\"\"') || '\"' || '.' || '\"' || replace(t.objectname, '\"', '\"\"') || '\"',  'delete') as delete\n from (\n   select schemaname, tablename as objectname from pg_catalog.pg_tables\n   union\n   select schemaname, viewname as objectname from pg_catalog.pg_views\n   union\n   select schemaname, matviewname as objectname from pg_catalog.pg_matviews\n ) t\n where t.schemaname !~ '^pg_'\n   and t.schemaname <> 'information_schema'\n   and pg_catalog.has_schema_privilege(current_user, t.schemaname, 'usage')\n)\nselect t.*\nfrom table_privileges t";

/// metabase/metabase src/metabase/driver/postgres.clj, `describe-fields-sql`
/// for schema `$1`/`$4` and tables `$2, $3`/`$5, $6`, as HoneySQL renders it.
const DESCRIBE_FIELDS: &str = r#"SELECT "c"."column_name" AS "name", CASE WHEN "c"."udt_schema" IN ('public', 'pg_catalog') THEN FORMAT('%s', "c"."udt_name") ELSE FORMAT('"%s"."%s"', "c"."udt_schema", "c"."udt_name") END AS "database-type", "c"."ordinal_position" - 1 AS "database-position", "c"."table_schema" AS "table-schema", "c"."table_name" AS "table-name", "pk"."column_name" IS NOT NULL AS "pk?", COL_DESCRIPTION(CAST(CAST(FORMAT('%I.%I', CAST("c"."table_schema" AS TEXT), CAST("c"."table_name" AS TEXT)) AS REGCLASS) AS OID), "c"."ordinal_position") AS "field-comment", (("column_default" IS NULL) OR (LOWER("column_default") = 'null')) AND ("is_nullable" = 'NO') AND NOT ((("column_default" IS NOT NULL) AND ("column_default" LIKE '%nextval(%')) OR ("is_identity" <> 'NO')) AS "database-required", (("column_default" IS NOT NULL) AND ("column_default" LIKE '%nextval(%')) OR ("is_identity" <> 'NO') AS "database-is-auto-increment" FROM "information_schema"."columns" AS "c" LEFT JOIN (SELECT "tc"."table_schema", "tc"."table_name", "kc"."column_name" FROM "information_schema"."table_constraints" AS "tc" INNER JOIN "information_schema"."key_column_usage" AS "kc" ON ("tc"."constraint_name" = "kc"."constraint_name") AND ("tc"."table_schema" = "kc"."table_schema") AND ("tc"."table_name" = "kc"."table_name") WHERE "tc"."constraint_type" = 'PRIMARY KEY') AS "pk" ON ("c"."table_schema" = "pk"."table_schema") AND ("c"."table_name" = "pk"."table_name") AND ("c"."column_name" = "pk"."column_name") WHERE c.table_schema !~ '^information_schema|catalog_history|pg_' AND ("c"."table_schema" IN ($1)) AND ("c"."table_name" IN ($2, $3)) UNION ALL SELECT "pa"."attname" AS "name", CASE WHEN "ptn"."nspname" IN ('public', 'pg_catalog') THEN FORMAT('%s', "pt"."typname") ELSE FORMAT('"%s"."%s"', "ptn"."nspname", "pt"."typname") END AS "database-type", "pa"."attnum" - 1 AS "database-position", "pn"."nspname" AS "table-schema", "pc"."relname" AS "table-name", FALSE AS "pk?", NULL AS "field-comment", FALSE AS "database-required", FALSE AS "database-is-auto-increment" FROM "pg_catalog"."pg_class" AS "pc" INNER JOIN "pg_catalog"."pg_namespace" AS "pn" ON "pn"."oid" = "pc"."relnamespace" INNER JOIN "pg_catalog"."pg_attribute" AS "pa" ON "pa"."attrelid" = "pc"."oid" INNER JOIN "pg_catalog"."pg_type" AS "pt" ON "pt"."oid" = "pa"."atttypid" INNER JOIN "pg_catalog"."pg_namespace" AS "ptn" ON "ptn"."oid" = "pt"."typnamespace" WHERE ("pc"."relkind" = 'm') AND ("pa"."attnum" >= 1) AND ("pn"."nspname" IN ($4)) AND ("pc"."relname" IN ($5, $6)) ORDER BY "table-schema" ASC, "table-name" ASC, "database-position" ASC"#;

/// metabase/metabase src/metabase/driver/postgres.clj, `describe-fks-sql` for schema `$1`.
const DESCRIBE_FKS: &str = r#"SELECT "fk_ns"."nspname" AS "fk-table-schema", "fk_table"."relname" AS "fk-table-name", "fk_column"."attname" AS "fk-column-name", "pk_ns"."nspname" AS "pk-table-schema", "pk_table"."relname" AS "pk-table-name", "pk_column"."attname" AS "pk-column-name" FROM "pg_constraint" AS "c" INNER JOIN "pg_class" AS "fk_table" ON "c"."conrelid" = "fk_table"."oid" INNER JOIN "pg_namespace" AS "fk_ns" ON "c"."connamespace" = "fk_ns"."oid" INNER JOIN "pg_attribute" AS "fk_column" ON "c"."conrelid" = "fk_column"."attrelid" INNER JOIN "pg_class" AS "pk_table" ON "c"."confrelid" = "pk_table"."oid" INNER JOIN "pg_namespace" AS "pk_ns" ON "pk_table"."relnamespace" = "pk_ns"."oid" INNER JOIN "pg_attribute" AS "pk_column" ON "c"."confrelid" = "pk_column"."attrelid" WHERE fk_ns.nspname !~ '^information_schema|catalog_history|pg_' AND ("c"."contype" = 'f'::char) AND ("fk_column"."attnum" = ANY(c.conkey)) AND ("pk_column"."attnum" = ANY(c.confkey)) AND ("fk_ns"."nspname" IN ($1)) ORDER BY "fk-table-schema" ASC, "fk-table-name" ASC"#;

// ---------------------------------------------------------------- Grafana

/// Grafana's PostgreSQL data source: version and TimescaleDB probes, the
/// query editor's schema/table/column lookups (frontend) and the schema
/// service (backend, pgx with `$n` parameters).
#[tokio::test]
async fn grafana() {
    let server = server().await;
    let mut s = Session::new(&server, "Grafana").await;
    // Query texts: grafana/grafana
    // public/app/plugins/datasource/grafana-postgresql-datasource/postgresMetaQuery.ts
    // unless said otherwise.

    // postgresMetaQuery.ts getVersion (run by configuration/useAutoDetectFeatures.ts).
    if let Some(r) = s
        .run(
            "version",
            "SELECT current_setting('server_version_num')::int/100 as version",
            &[],
        )
        .await
    {
        // server_version_num 1600xx / 100: Grafana shows "16"
        s.check(
            "version 160004 / 100 = 1600",
            r.column("version") == ["1600"],
            &r,
        );
    }
    // postgresMetaQuery.ts getTimescaleDBVersion.
    if let Some(r) = s
        .run(
            "timescaledb",
            "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'",
            &[],
        )
        .await
    {
        s.check(
            "no timescaledb",
            r.rows.is_empty() && r.cols == ["extversion"],
            &r,
        );
    }
    // postgresMetaQuery.ts showSchemas.
    if let Some(r) = s.run("schemas", GRAFANA_SCHEMAS, &[]).await {
        s.check(
            "schemas: public, no system schema",
            r.column("name").contains(&"public")
                && !r.column("name").contains(&"pg_catalog")
                && !r.column("name").contains(&"information_schema"),
            &r,
        );
    }
    // postgresMetaQuery.ts showTables('public').
    if let Some(r) = s
        .run(
            "tables of public",
            "SELECT quote_ident(table_name) AS \"table\"\n      FROM information_schema.tables\n      WHERE quote_ident(table_schema) = 'public'\n      ORDER BY 1",
            &[],
        )
        .await
    {
        let t = r.column("table");
        s.check(
            "tables: contacts, contact_view, identities, sku_dim, sorted",
            ["contacts", "contact_view", "identities", "sku_dim"]
                .iter()
                .all(|n| t.contains(n))
                && t.windows(2).all(|w| w[0] <= w[1]),
            &r,
        );
    }
    // postgresMetaQuery.ts showTables() (no schema: names on the search path unqualified).
    if let Some(r) = s.run("tables on search path", &GRAFANA_TABLES, &[]).await {
        let t = r.column("table");
        s.check(
            "tables on the search path are unqualified",
            t.contains(&"contacts")
                && t.contains(&"contact_view")
                && t.contains(&"sku_dim")
                && !t.iter().any(|n| n.starts_with("information_schema.")),
            &r,
        );
    }
    // postgresMetaQuery.ts getSchema('contacts') and getSchema('public.sku_dim').
    if let Some(r) = s
        .run("columns of contacts", &grafana_columns("contacts"), &[])
        .await
    {
        s.check(
            "contacts: id bigint, email text, created_at timestamptz",
            r.find(&[("column", "id"), ("type", "bigint")]).is_some()
                && r.find(&[("column", "email"), ("type", "text")]).is_some()
                && r.find(&[
                    ("column", "created_at"),
                    ("type", "timestamp with time zone"),
                ])
                .is_some(),
            &r,
        );
    }
    if let Some(r) = s
        .run(
            "columns of public.sku_dim",
            &grafana_columns("public.sku_dim"),
            &[],
        )
        .await
    {
        // VARCHAR columns of user tables are stored as text
        s.check(
            "sku_dim: sku_id text, price double precision",
            r.rows.len() == 3
                && r.find(&[("column", "sku_id"), ("type", "text")]).is_some()
                && r.find(&[("column", "price"), ("type", "double precision")])
                    .is_some(),
            &r,
        );
    }
    // grafana/grafana pkg/tsdb/grafana-postgresql-datasource/schema.go (querySchemas,
    // queryTables, queryColumns, ColumnValues): pgx, parameters typed by the server.
    if let Some(r) = s
        .run(
            "backend schemas",
            "SELECT schema_name FROM information_schema.schemata\n\t\t WHERE schema_name NOT LIKE 'pg_%' AND schema_name != 'information_schema'\n\t\t ORDER BY schema_name",
            &[],
        )
        .await
    {
        s.check("backend schemas: public", r.column("schema_name") == ["public"], &r);
    }
    if let Some(r) = s
        .run(
            "backend tables",
            "SELECT table_name FROM information_schema.tables\n\t\t WHERE table_schema = $1 AND table_type IN ('BASE TABLE', 'VIEW')\n\t\t ORDER BY table_name",
            &[P::Inferred("public".into())],
        )
        .await
    {
        let t = r.column("table_name");
        s.check(
            "backend tables: contacts, contact_view, sku_dim",
            t.contains(&"contacts") && t.contains(&"contact_view") && t.contains(&"sku_dim"),
            &r,
        );
    }
    if let Some(r) = s
        .run(
            "backend columns",
            "SELECT column_name, data_type, udt_name, numeric_precision, numeric_scale\n\t\t FROM information_schema.columns\n\t\t WHERE table_schema = $1 AND table_name = $2\n\t\t ORDER BY ordinal_position",
            &[P::Inferred("public".into()), P::Inferred("contacts".into())],
        )
        .await
    {
        let ok = r.rows.first().map(|row| row[0].as_str()) == Some("id")
            && r.find(&[("column_name", "id"), ("data_type", "bigint"), ("udt_name", "int8"), ("numeric_precision", "64")])
                .is_some()
            && r.find(&[("column_name", "created_at"), ("udt_name", "timestamptz")]).is_some();
        s.check("backend columns: id first, bigint/int8 (64 bits)", ok, &r);
    }
    if let Some(r) = s
        .run(
            "backend column values",
            "SELECT 'sku_id' AS col_name, \"sku_id\"::text AS val FROM (SELECT DISTINCT \"sku_id\" FROM \"public\".\"sku_dim\" WHERE \"sku_id\" IS NOT NULL ORDER BY \"sku_id\" LIMIT 100) sub_0 UNION ALL SELECT 'price' AS col_name, \"price\"::text AS val FROM (SELECT DISTINCT \"price\" FROM \"public\".\"sku_dim\" WHERE \"price\" IS NOT NULL ORDER BY \"price\" LIMIT 100) sub_1",
            &[],
        )
        .await
    {
        // price::text is "12.0" where PostgreSQL prints "12" (docs: float to text casts)
        s.check(
            "column values of sku_dim",
            r.find(&[("col_name", "sku_id"), ("val", "010290")]).is_some()
                && r.find(&[("col_name", "price"), ("val", "9.5")]).is_some()
                && r.rows.len() == 4,
            &r,
        );
    }
    s.finish(&server);
}

/// postgresMetaQuery.ts `showSchemas`.
const GRAFANA_SCHEMAS: &str = "SELECT schema_name AS \"name\"\n    FROM information_schema.schemata\n    WHERE schema_name NOT IN ('information_schema',\n                              'pg_catalog',\n                              'pg_toast',\n                              '_timescaledb_cache',\n                              '_timescaledb_catalog',\n                              '_timescaledb_internal',\n                              '_timescaledb_config',\n                              'timescaledb_information',\n                              'timescaledb_experimental')\n    ORDER BY schema_name";

/// postgresMetaQuery.ts `buildSchemaConstraint`: the schemas on the search path.
const GRAFANA_SCHEMA_CONSTRAINT: &str = "\n          quote_ident(table_schema) IN (\n          SELECT\n            CASE WHEN trim(s[i]) = '\"$user\"' THEN user ELSE trim(s[i]) END\n          FROM\n            generate_series(\n              array_lower(string_to_array(current_setting('search_path'),','),1),\n              array_upper(string_to_array(current_setting('search_path'),','),1)\n            ) as i,\n            string_to_array(current_setting('search_path'),',') s\n          )";

/// postgresMetaQuery.ts `showTables()` (no schema given).
static GRAFANA_TABLES: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT\n    CASE WHEN {c}\n      THEN quote_ident(table_name)\n      ELSE quote_ident(table_schema) || '.' || quote_ident(table_name)\n    END AS \"table\"\n    FROM information_schema.tables\n    WHERE quote_ident(table_schema) NOT IN ('information_schema',\n                             'pg_catalog',\n                             '_timescaledb_cache',\n                             '_timescaledb_catalog',\n                             '_timescaledb_internal',\n                             '_timescaledb_config',\n                             'timescaledb_information',\n                             'timescaledb_experimental')\n    ORDER BY CASE WHEN {c} THEN 0 ELSE 1 END, 1",
        c = GRAFANA_SCHEMA_CONSTRAINT
    )
});

/// postgresMetaQuery.ts `getSchema(table)`.
fn grafana_columns(table: &str) -> String {
    let t = format!("'{}'", table.replace('\'', "''"));
    format!(
        "SELECT quote_ident(column_name) AS \"column\", data_type AS \"type\"\n    FROM information_schema.columns\n    WHERE\n      CASE WHEN array_length(parse_ident({t}),1) = 2\n        THEN quote_ident(table_schema) = (parse_ident({t}))[1]\n          AND quote_ident(table_name) = (parse_ident({t}))[2]\n        ELSE quote_ident(table_name) = {t}\n          AND {c}\n      END",
        c = GRAFANA_SCHEMA_CONSTRAINT
    )
}

// --------------------------------------------------------------- Superset

/// Superset's PostgreSQL engine spec and the SQLAlchemy inspector calls its
/// database browser makes (schemas, tables, views, foreign tables, foreign
/// keys, table comment), then the `SELECT *` preview.
#[tokio::test]
async fn superset() {
    let server = server().await;
    let mut s = Session::new(&server, "Superset").await;

    // sqlalchemy/sqlalchemy lib/sqlalchemy/dialects/postgresql/base.py
    // (PGDialect._get_server_version_info, _get_default_schema_name, and
    // DefaultDialect's standard_conforming_strings check) on connect.
    if let Some(r) = s.run("version", "select pg_catalog.version()", &[]).await {
        s.check(
            "PostgreSQL 16",
            r.rows.len() == 1 && r.rows[0][0].starts_with("PostgreSQL 16"),
            &r,
        );
    }
    if let Some(r) = s
        .run("current schema", "select current_schema()", &[])
        .await
    {
        s.check(
            "current schema public",
            r.column("current_schema") == ["public"],
            &r,
        );
    }
    if let Some(r) = s
        .run(
            "standard_conforming_strings",
            "show standard_conforming_strings",
            &[],
        )
        .await
    {
        s.check("on", r.rows.len() == 1 && r.rows[0][0] == "on", &r);
    }
    // apache/superset superset/db_engine_specs/postgres.py PostgresEngineSpec.get_catalog_names.
    if let Some(r) = s
        .run(
            "catalogs",
            "\nSELECT datname FROM pg_database\nWHERE datistemplate = false;\n            ",
            &[],
        )
        .await
    {
        s.check("catalog cohortdb", r.column("datname") == ["cohortdb"], &r);
    }
    // postgres.py PostgresEngineSpec.get_prequeries for schema "public".
    s.run("prequery", "set search_path = \"public\"", &[]).await;
    if let Some(r) = s.run("search_path", "SHOW search_path", &[]).await {
        s.check(
            "search_path is public",
            r.rows.len() == 1 && r.rows[0][0] == "public",
            &r,
        );
    }
    // postgres.py PostgresEngineSpec.get_cancel_query_id.
    if let Some(r) = s.run("backend pid", "SELECT pg_backend_pid()", &[]).await {
        s.check(
            "a process id",
            r.rows.len() == 1 && r.rows[0][0].parse::<i64>().is_ok_and(|p| p > 0),
            &r,
        );
    }
    // sqlalchemy/sqlalchemy lib/sqlalchemy/dialects/postgresql/base.py
    // PGDialect.get_schema_names (Inspector.get_schema_names), as SQLAlchemy 2
    // compiles it for psycopg2 (%(nspname_1)s = 'pg/_').
    if let Some(r) = s
        .run(
            "schema names",
            "SELECT pg_catalog.pg_namespace.nspname \nFROM pg_catalog.pg_namespace \nWHERE (pg_catalog.pg_namespace.nspname NOT LIKE $1 || '%' ESCAPE '/') ORDER BY pg_catalog.pg_namespace.nspname",
            &[text("pg/_")],
        )
        .await
    {
        let n = r.column("nspname");
        s.check(
            "schemas: public and information_schema, no pg_*",
            n.contains(&"public")
                && n.contains(&"information_schema")
                && !n.iter().any(|x| x.starts_with("pg_")),
            &r,
        );
    }
    // base.py PGDialect.get_table_names / get_view_names / get_foreign_table_names
    // (Superset's PostgresEngineSpec.get_table_names adds the foreign tables).
    let relnames = "SELECT pg_catalog.pg_class.relname \nFROM pg_catalog.pg_class JOIN pg_catalog.pg_namespace ON pg_catalog.pg_namespace.oid = pg_catalog.pg_class.relnamespace \nWHERE pg_catalog.pg_class.relkind = ANY (ARRAY[$1, $2]) AND pg_catalog.pg_class.relpersistence != $3 AND pg_catalog.pg_namespace.nspname = $4";
    if let Some(r) = s
        .run(
            "table names",
            relnames,
            &[text("r"), text("p"), text("t"), text("public")],
        )
        .await
    {
        let n = r.column("relname");
        s.check(
            "tables: contacts, events, identities, sku_dim; no views",
            ["contacts", "events", "identities", "sku_dim"]
                .iter()
                .all(|t| n.contains(t))
                && !n.contains(&"contact_view"),
            &r,
        );
    }
    if let Some(r) = s
        .run(
            "view names",
            "SELECT pg_catalog.pg_class.relname \nFROM pg_catalog.pg_class JOIN pg_catalog.pg_namespace ON pg_catalog.pg_namespace.oid = pg_catalog.pg_class.relnamespace \nWHERE pg_catalog.pg_class.relkind = ANY (ARRAY[$1]) AND pg_catalog.pg_class.relpersistence != $2 AND pg_catalog.pg_namespace.nspname = $3",
            &[text("v"), text("t"), text("public")],
        )
        .await
    {
        let mut n = r.column("relname");
        n.sort();
        s.check("views: contact_view, event_view", n == ["contact_view", "event_view"], &r);
    }
    if let Some(r) = s
        .run(
            "foreign table names",
            "SELECT pg_catalog.pg_class.relname \nFROM pg_catalog.pg_class JOIN pg_catalog.pg_namespace ON pg_catalog.pg_namespace.oid = pg_catalog.pg_class.relnamespace \nWHERE pg_catalog.pg_class.relkind = ANY (ARRAY[$1]) AND pg_catalog.pg_namespace.nspname = $2",
            &[text("f"), text("public")],
        )
        .await
    {
        s.check("no foreign tables", r.rows.is_empty(), &r);
    }
    // base.py PGDialect.get_multi_foreign_keys (Inspector.get_foreign_keys).
    if let Some(r) = s
        .run(
            "foreign keys",
            "SELECT pg_catalog.pg_class.relname, pg_catalog.pg_constraint.conname, CASE WHEN (pg_catalog.pg_constraint.oid IS NOT NULL) THEN pg_catalog.pg_get_constraintdef(pg_catalog.pg_constraint.oid, true) END AS anon_1, nsp_ref.nspname, pg_catalog.pg_description.description \nFROM pg_catalog.pg_class LEFT OUTER JOIN pg_catalog.pg_constraint ON pg_catalog.pg_class.oid = pg_catalog.pg_constraint.conrelid AND pg_catalog.pg_constraint.contype = $1 LEFT OUTER JOIN pg_catalog.pg_class AS cls_ref ON cls_ref.oid = pg_catalog.pg_constraint.confrelid LEFT OUTER JOIN pg_catalog.pg_namespace AS nsp_ref ON cls_ref.relnamespace = nsp_ref.oid LEFT OUTER JOIN pg_catalog.pg_description ON pg_catalog.pg_description.objoid = pg_catalog.pg_constraint.oid AND pg_catalog.pg_description.classoid = CAST($2 AS REGCLASS) JOIN pg_catalog.pg_namespace ON pg_catalog.pg_namespace.oid = pg_catalog.pg_class.relnamespace \nWHERE pg_catalog.pg_class.relkind = ANY (ARRAY[$3, $4, $5, $6, $7]) AND pg_catalog.pg_namespace.nspname = $8 AND pg_catalog.pg_class.relname IN ($9) ORDER BY pg_catalog.pg_class.relname, pg_catalog.pg_constraint.conname",
            &[
                text("f"),
                text("pg_catalog.pg_constraint"),
                text("r"),
                text("p"),
                text("f"),
                text("v"),
                text("m"),
                text("public"),
                text("contacts"),
            ],
        )
        .await
    {
        // one row for the table, with no constraint (LEFT JOIN)
        s.check(
            "contacts has no foreign key",
            r.rows.len() == 1
                && r.rows[0][0] == "contacts"
                && r.rows[0][1] == "NULL",
            &r,
        );
    }
    // base.py PGDialect.get_multi_table_comment (Inspector.get_table_comment).
    if let Some(r) = s
        .run(
            "table comment",
            "SELECT pg_catalog.pg_class.relname, pg_catalog.pg_description.description \nFROM pg_catalog.pg_class LEFT OUTER JOIN pg_catalog.pg_description ON pg_catalog.pg_class.oid = pg_catalog.pg_description.objoid AND pg_catalog.pg_description.objsubid = $1 AND pg_catalog.pg_description.classoid = CAST($2 AS REGCLASS) JOIN pg_catalog.pg_namespace ON pg_catalog.pg_namespace.oid = pg_catalog.pg_class.relnamespace \nWHERE pg_catalog.pg_class.relkind = ANY (ARRAY[$3, $4, $5, $6, $7]) AND pg_catalog.pg_namespace.nspname = $8 AND pg_catalog.pg_class.relname IN ($9)",
            &[
                P::Int8(0),
                text("pg_catalog.pg_class"),
                text("r"),
                text("p"),
                text("f"),
                text("v"),
                text("m"),
                text("public"),
                text("contact_view"),
            ],
        )
        .await
    {
        s.check(
            "contact_view: one row, no comment",
            r.rows == [vec!["contact_view".to_string(), "NULL".to_string()]],
            &r,
        );
    }
    // apache/superset superset/db_engine_specs/base.py BaseEngineSpec.select_star
    // (the data preview; SQLAlchemy select rendered with literal binds, indented).
    if let Some(r) = s
        .run(
            "select star",
            "SELECT *\nFROM public.sku_dim\nLIMIT 100",
            &[],
        )
        .await
    {
        s.check(
            "sku_dim preview: 2 rows, 3 columns",
            r.cols == ["sku_id", "colour", "price"] && r.rows.len() == 2,
            &r,
        );
    }
    if let Some(r) = s
        .run(
            "select star contacts",
            "SELECT *\nFROM public.contacts\nLIMIT 100",
            &[],
        )
        .await
    {
        s.check(
            "contacts preview: Ada",
            r.find(&[("name", "Ada"), ("email", "ada@example.com")])
                .is_some(),
            &r,
        );
    }
    s.finish(&server);
}

// ------------------------------------------------ psql \df / \sf, pgcli, pgjdbc

/// psql 15's `\df lower` and `\sf lower(text)` (captured with `psql -E`),
/// pgcli's function list (dbcli/pgcli pgcli/pgexecute.py `functions()`) and
/// pgjdbc's `getTablePrivileges` (PgDatabaseMetaData), which reads `relacl`.
#[tokio::test]
async fn psql_pgcli_and_pgjdbc_function_and_privilege_queries() {
    let server = server().await;
    let mut s = Session::new(&server, "psql/pgcli/pgjdbc").await;
    let df = "SELECT n.nspname as \"Schema\",\n  p.proname as \"Name\",\n  \
              pg_catalog.pg_get_function_result(p.oid) as \"Result data type\",\n  \
              pg_catalog.pg_get_function_arguments(p.oid) as \"Argument data types\",\n \
              CASE p.prokind\n  WHEN 'a' THEN 'agg'\n  WHEN 'w' THEN 'window'\n  WHEN 'p' THEN 'proc'\n  \
              ELSE 'func'\n END as \"Type\"\nFROM pg_catalog.pg_proc p\n     \
              LEFT JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace\n\
              WHERE p.proname OPERATOR(pg_catalog.~) '^(lower)$' COLLATE pg_catalog.default\n  \
              AND pg_catalog.pg_function_is_visible(p.oid)\nORDER BY 1, 2, 4;";
    if let Some(r) = s.run("\\df lower", df, &[]).await {
        let text_row = r
            .rows
            .iter()
            .any(|row| row[2] == "text" && row[3] == "text" && row[4] == "func");
        s.check("lower(text) returns text", text_row, &r);
    }
    let oid = s
        .run(
            "\\sf: regprocedure",
            "SELECT 'lower(text)'::pg_catalog.regprocedure::pg_catalog.oid",
            &[],
        )
        .await;
    if let Some(r) = oid {
        let oid = r.rows.first().map(|row| row[0].clone()).unwrap_or_default();
        if let Some(d) = s
            .run(
                "\\sf: pg_get_functiondef",
                &format!("SELECT pg_catalog.pg_get_functiondef({oid})"),
                &[],
            )
            .await
        {
            s.check(
                "the definition of lower(text)",
                d.rows.len() == 1
                    && d.rows[0][0].starts_with("CREATE OR REPLACE FUNCTION pg_catalog.lower(text)\n RETURNS text\n LANGUAGE internal\n"),
                &d,
            );
        }
    }
    let pgcli = "SELECT n.nspname schema_name,\n        p.proname func_name,\n        p.proargnames,\n        \
                 COALESCE(proallargtypes::regtype[], proargtypes::regtype[])::text[],\n        \
                 p.proargmodes,\n        prorettype::regtype::text return_type,\n        \
                 p.prokind = 'a' is_aggregate,\n        p.prokind = 'w' is_window,\n        \
                 p.proretset is_set_returning,\n        d.deptype = 'e' is_extension,\n        \
                 pg_get_expr(proargdefaults, 0) AS arg_defaults\n\
                 FROM pg_catalog.pg_proc p\n        INNER JOIN pg_catalog.pg_namespace n\n            \
                 ON n.oid = p.pronamespace\nLEFT JOIN pg_depend d ON d.objid = p.oid and d.deptype = 'e'\n\
                 WHERE p.prorettype::regtype != 'trigger'::regtype\nORDER BY 1, 2";
    if let Some(r) = s.run("pgcli functions", pgcli, &[]).await {
        s.check("thousands of functions", r.rows.len() > 1000, &r);
    }
    let privileges =
        "SELECT n.nspname,c.relname,r.rolname,c.relacl  FROM pg_catalog.pg_namespace n, \
                      pg_catalog.pg_class c, pg_catalog.pg_roles r  WHERE c.relnamespace = n.oid  \
                      AND c.relowner = r.oid  AND c.relkind IN ('r','p','v','m','f')  \
                      AND c.relname LIKE 'contacts' ORDER BY nspname, relname";
    if let Some(r) = s.run("pgjdbc getTablePrivileges", privileges, &[]).await {
        s.check(
            "contacts, owned by admin, default privileges",
            r.rows.len() == 1 && r.rows[0][2] == "admin",
            &r,
        );
    }
    s.finish(&server);
}
