//! PostgreSQL system functions that psql, drivers and BI tools call and that
//! neither DataFusion nor `datafusion-pg-catalog` provide: settings access
//! (`current_setting`, `set_config`), type names (`to_regtype`, `::regtype::text`),
//! descriptions, visibility checks, `pg_sleep`, `json_build_object`, ...

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, Int32Array, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType as A;
use datafusion::common::{Result as DfResult, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::prelude::SessionContext;

use crate::error::SqlError;
use crate::runtime::interrupt::Interrupt;
use crate::runtime::settings::SettingsMap;

type Body = dyn Fn(&[ArrayRef], usize) -> DfResult<ArrayRef> + Send + Sync;

/// A scalar function given by a closure over argument arrays.
struct PgFn {
    name: &'static str,
    signature: Signature,
    /// Accepted argument types, by arity; arguments are cast to them.
    sigs: Vec<Vec<A>>,
    ret: A,
    body: Arc<Body>,
}

impl std::fmt::Debug for PgFn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PgFn({})", self.name)
    }
}
impl PartialEq for PgFn {
    fn eq(&self, o: &Self) -> bool {
        self.name == o.name && Arc::ptr_eq(&self.body, &o.body)
    }
}
impl Eq for PgFn {}
impl Hash for PgFn {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.name.hash(h)
    }
}

impl ScalarUDFImpl for PgFn {
    fn name(&self) -> &str {
        self.name
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[A]) -> DfResult<A> {
        Ok(self.ret.clone())
    }
    fn coerce_types(&self, arg_types: &[A]) -> DfResult<Vec<A>> {
        self.sigs
            .iter()
            .find(|s| s.len() == arg_types.len())
            .cloned()
            .ok_or_else(|| {
                datafusion::error::DataFusionError::Plan(format!(
                    "function {}({}) does not exist",
                    self.name,
                    arg_types
                        .iter()
                        .map(|t| t.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let all_scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let rows = if all_scalar { 1 } else { args.number_rows };
        let arrays: Vec<ArrayRef> = args
            .args
            .iter()
            .map(|a| a.to_array(rows))
            .collect::<DfResult<_>>()?;
        let out = (self.body)(&arrays, rows)?;
        if all_scalar {
            Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?))
        } else {
            Ok(ColumnarValue::Array(out))
        }
    }
}

pub(crate) fn udf(
    name: &'static str,
    sigs: Vec<Vec<A>>,
    ret: A,
    volatility: Volatility,
    body: impl Fn(&[ArrayRef], usize) -> DfResult<ArrayRef> + Send + Sync + 'static,
) -> ScalarUDF {
    let signature = if sigs.len() == 1 && sigs[0].is_empty() {
        Signature::nullary(volatility)
    } else {
        Signature::user_defined(volatility)
    };
    ScalarUDF::new_from_impl(PgFn {
        name,
        signature,
        sigs,
        ret,
        body: Arc::new(body),
    })
}

pub(crate) fn text(a: &ArrayRef) -> DfResult<StringArray> {
    let c = cast(a, &A::Utf8)?;
    Ok(c.as_any()
        .downcast_ref::<StringArray>()
        .cloned()
        .unwrap_or_else(|| StringArray::from(Vec::<Option<&str>>::new())))
}

pub(crate) fn int(a: &ArrayRef) -> DfResult<Int32Array> {
    let c = cast(a, &A::Int32)?;
    Ok(c.as_any()
        .downcast_ref::<Int32Array>()
        .cloned()
        .unwrap_or_else(|| Int32Array::from(Vec::<Option<i32>>::new())))
}

fn nulls_text(rows: usize) -> ArrayRef {
    Arc::new(StringArray::from(vec![None::<&str>; rows]))
}

fn consts_bool(rows: usize, v: bool) -> ArrayRef {
    Arc::new(BooleanArray::from(vec![v; rows]))
}

/// Built-in types by OID: (oid, name in pg_type, name as `regtype` prints it, array oid).
const TYPES: &[(i32, &str, &str)] = &[
    (16, "bool", "boolean"),
    (17, "bytea", "bytea"),
    (18, "char", "\"char\""),
    (19, "name", "name"),
    (20, "int8", "bigint"),
    (21, "int2", "smallint"),
    (23, "int4", "integer"),
    (24, "regproc", "regproc"),
    (25, "text", "text"),
    (26, "oid", "oid"),
    (114, "json", "json"),
    (700, "float4", "real"),
    (701, "float8", "double precision"),
    (1000, "_bool", "boolean[]"),
    (1001, "_bytea", "bytea[]"),
    (1005, "_int2", "smallint[]"),
    (1007, "_int4", "integer[]"),
    (1009, "_text", "text[]"),
    (1015, "_varchar", "character varying[]"),
    (1016, "_int8", "bigint[]"),
    (1021, "_float4", "real[]"),
    (1022, "_float8", "double precision[]"),
    (1028, "_oid", "oid[]"),
    (1042, "bpchar", "character"),
    (1043, "varchar", "character varying"),
    (1082, "date", "date"),
    (1083, "time", "time without time zone"),
    (1114, "timestamp", "timestamp without time zone"),
    (1182, "_date", "date[]"),
    (1184, "timestamptz", "timestamp with time zone"),
    (1185, "_timestamptz", "timestamp with time zone[]"),
    (1115, "_timestamp", "timestamp without time zone[]"),
    (1186, "interval", "interval"),
    (1266, "timetz", "time with time zone"),
    (1700, "numeric", "numeric"),
    (1231, "_numeric", "numeric[]"),
    (2205, "regclass", "regclass"),
    (2206, "regtype", "regtype"),
    (2249, "record", "record"),
    (2275, "cstring", "cstring"),
    (2276, "any", "\"any\""),
    (2277, "anyarray", "anyarray"),
    (2278, "void", "void"),
    (2950, "uuid", "uuid"),
    (3802, "jsonb", "jsonb"),
];

/// SQL spellings that name a built-in type.
const ALIASES: &[(&str, i32)] = &[
    ("boolean", 16),
    ("bigint", 20),
    ("smallint", 21),
    ("integer", 23),
    ("int", 23),
    ("real", 700),
    ("double precision", 701),
    ("float", 701),
    ("character", 1042),
    ("character varying", 1043),
    ("decimal", 1700),
    ("timestamp without time zone", 1114),
    ("timestamp with time zone", 1184),
    ("time without time zone", 1083),
    ("time with time zone", 1266),
    ("string", 25),
];

/// OID of a type named as `to_regtype` / `'name'::regtype` accept it.
pub fn type_oid(name: &str) -> Option<i32> {
    let n = name
        .trim()
        .trim_start_matches("pg_catalog.")
        .trim_matches('"');
    let n = n.to_ascii_lowercase();
    if let Some(elem) = n.strip_suffix("[]") {
        let e = type_oid(elem)?;
        let ename = TYPES.iter().find(|t| t.0 == e)?.1;
        let aname = format!("_{ename}");
        return TYPES.iter().find(|t| t.1 == aname).map(|t| t.0);
    }
    // strip a type modifier: varchar(20), numeric(10,2)
    let base = n.split('(').next().unwrap_or(&n).trim();
    TYPES
        .iter()
        .find(|t| t.1 == base || t.2 == base)
        .map(|t| t.0)
        .or_else(|| ALIASES.iter().find(|a| a.0 == base).map(|a| a.1))
}

/// The name `oid::regtype::text` prints.
pub fn regtype_name(oid: i32) -> String {
    TYPES
        .iter()
        .find(|t| t.0 == oid)
        .map(|t| t.2.to_string())
        .unwrap_or_else(|| oid.to_string())
}

fn err(e: SqlError) -> datafusion::error::DataFusionError {
    e.into()
}

/// Registers the engine-wide functions on `ctx`.
pub fn register(ctx: &SessionContext) {
    use Volatility::*;
    use A::*;
    ctx.register_udf(udf(
        "to_regtype",
        vec![vec![Utf8]],
        Int32,
        Stable,
        |a, _| {
            let s = text(&a[0])?;
            Ok(Arc::new(
                s.iter()
                    .map(|v| v.and_then(type_oid))
                    .collect::<Int32Array>(),
            ))
        },
    ));
    ctx.register_udf(udf(
        "pg_regtype_name",
        vec![vec![Int32]],
        Utf8,
        Stable,
        |a, _| {
            let o = int(&a[0])?;
            Ok(Arc::new(
                o.iter()
                    .map(|v| v.map(regtype_name))
                    .collect::<StringArray>(),
            ))
        },
    ));
    ctx.register_udf(udf(
        "pg_advisory_unlock_all",
        vec![vec![]],
        Utf8,
        Volatile,
        |_, rows| Ok(Arc::new(StringArray::from(vec![Some(""); rows]))),
    ));
    for name in ["col_description"] {
        ctx.register_udf(udf(
            name,
            vec![vec![Int32, Int32]],
            Utf8,
            Stable,
            |_, rows| Ok(nulls_text(rows)),
        ));
    }
    ctx.register_udf(udf(
        "obj_description",
        vec![vec![Int32], vec![Int32, Utf8]],
        Utf8,
        Stable,
        |_, rows| Ok(nulls_text(rows)),
    ));
    ctx.register_udf(udf(
        "shobj_description",
        vec![vec![Int32, Utf8]],
        Utf8,
        Stable,
        |_, rows| Ok(nulls_text(rows)),
    ));
    for name in [
        "pg_function_is_visible",
        "pg_type_is_visible",
        "pg_collation_is_visible",
        "pg_opclass_is_visible",
        "pg_operator_is_visible",
        "pg_conversion_is_visible",
        "pg_ts_config_is_visible",
    ] {
        ctx.register_udf(udf(name, vec![vec![Int32]], Boolean, Stable, |_, rows| {
            Ok(consts_bool(rows, true))
        }));
    }
    for name in [
        "has_function_privilege",
        "has_sequence_privilege",
        "has_column_privilege",
        "has_foreign_data_wrapper_privilege",
        "has_language_privilege",
        "has_server_privilege",
        "has_tablespace_privilege",
        "has_type_privilege",
    ] {
        ctx.register_udf(udf(
            name,
            vec![
                vec![Utf8, Utf8],
                vec![Int32, Utf8],
                vec![Utf8, Utf8, Utf8],
                vec![Int32, Utf8, Utf8],
                vec![Utf8, Int32, Utf8],
                vec![Int32, Int32, Utf8],
                vec![Int32, Utf8, Utf8, Utf8],
            ],
            Boolean,
            Stable,
            |_, rows| Ok(consts_bool(rows, true)),
        ));
    }
    ctx.register_udf(udf(
        "pg_get_indexdef",
        vec![vec![Int32], vec![Int32, Int32, Boolean]],
        Utf8,
        Stable,
        |a, _| {
            let o = int(&a[0])?;
            Ok(Arc::new(
                o.iter()
                    .map(|v| v.and_then(crate::pgcompat::pg_catalog_ext::index_def))
                    .collect::<StringArray>(),
            ))
        },
    ));
    ctx.register_udf(udf(
        "pg_get_constraintdef",
        vec![vec![Int32], vec![Int32, Boolean]],
        Utf8,
        Stable,
        |a, _| {
            let o = int(&a[0])?;
            Ok(Arc::new(
                o.iter()
                    .map(|v| {
                        Some(
                            v.and_then(crate::pgcompat::pg_catalog_ext::constraint_def)
                                .unwrap_or_default(),
                        )
                    })
                    .collect::<StringArray>(),
            ))
        },
    ));
    ctx.register_udf(udf(
        "pg_get_viewdef",
        vec![
            vec![Int32],
            vec![Int32, Boolean],
            vec![Utf8],
            vec![Utf8, Boolean],
        ],
        Utf8,
        Stable,
        |a, _| {
            let o = text(&a[0])?;
            Ok(Arc::new(
                o.iter()
                    .map(|v| v.map(|_| " SELECT * FROM cohortdb built-in view;".to_string()))
                    .collect::<StringArray>(),
            ))
        },
    ));
    ctx.register_udf(udf(
        "pg_get_serial_sequence",
        vec![vec![Utf8, Utf8]],
        Utf8,
        Stable,
        |_, rows| Ok(nulls_text(rows)),
    ));
    ctx.register_udf(udf(
        "pg_tablespace_location",
        vec![vec![Int32]],
        Utf8,
        Stable,
        |_, rows| Ok(Arc::new(StringArray::from(vec![Some(""); rows]))),
    ));
    ctx.register_udf(udf(
        "quote_literal",
        vec![vec![Utf8]],
        Utf8,
        Immutable,
        |a, _| {
            let s = text(&a[0])?;
            Ok(Arc::new(
                s.iter()
                    .map(|v| v.map(|v| format!("'{}'", v.replace('\'', "''"))))
                    .collect::<StringArray>(),
            ))
        },
    ));
    ctx.register_udf(udf(
        "json_build_object",
        (0..=32usize).step_by(2).map(|n| vec![Utf8; n]).collect(),
        Utf8,
        Immutable,
        |a, rows| {
            let cols: Vec<StringArray> = a.iter().map(text).collect::<DfResult<_>>()?;
            let mut out = Vec::with_capacity(rows);
            for r in 0..rows {
                let mut m = serde_json::Map::new();
                for pair in cols.chunks(2) {
                    if pair[0].is_null(r) {
                        return Err(err(SqlError::InvalidValue(
                            "argument 1 cannot be null: object keys must be text".into(),
                        )));
                    }
                    let v = if pair[1].is_null(r) {
                        serde_json::Value::Null
                    } else {
                        serde_json::Value::String(pair[1].value(r).to_string())
                    };
                    m.insert(pair[0].value(r).to_string(), v);
                }
                out.push(Some(serde_json::Value::Object(m).to_string()));
            }
            Ok(Arc::new(StringArray::from(out)))
        },
    ));
}

/// PostgreSQL's `age(a, b)`: `a - b` as years, months and days (then
/// time), each field borrowed from the next larger one as `timestamp_age`
/// does, from the wall-clock fields of both instants in zone `tz`.
fn age_between(a_us: i64, b_us: i64, tz: &chrono_tz::Tz) -> (i32, i32, i64) {
    use chrono::{Datelike, TimeZone, Timelike};
    let fields = |us: i64| {
        let t = chrono::Utc
            .timestamp_micros(us)
            .single()
            .unwrap_or_default()
            .with_timezone(tz)
            .naive_local();
        (
            t.year() as i64,
            t.month() as i64,
            t.day() as i64,
            t.hour() as i64,
            t.minute() as i64,
            t.second() as i64,
            (t.nanosecond() / 1000) as i64,
        )
    };
    let days_in = |y: i64, m: i64| -> i64 {
        let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        [
            31,
            if leap { 29 } else { 28 },
            31,
            30,
            31,
            30,
            31,
            31,
            30,
            31,
            30,
            31,
        ][(m - 1) as usize]
    };
    let t1 = fields(a_us);
    let t2 = fields(b_us);
    let mut d = [
        t1.0 - t2.0,
        t1.1 - t2.1,
        t1.2 - t2.2,
        t1.3 - t2.3,
        t1.4 - t2.4,
        t1.5 - t2.5,
        t1.6 - t2.6,
    ];
    let flip = a_us < b_us;
    if flip {
        d.iter_mut().for_each(|x| *x = -*x);
    }
    while d[6] < 0 {
        d[6] += 1_000_000;
        d[5] -= 1;
    }
    while d[5] < 0 {
        d[5] += 60;
        d[4] -= 1;
    }
    while d[4] < 0 {
        d[4] += 60;
        d[3] -= 1;
    }
    while d[3] < 0 {
        d[3] += 24;
        d[2] -= 1;
    }
    while d[2] < 0 {
        d[2] += if flip {
            days_in(t1.0, t1.1)
        } else {
            days_in(t2.0, t2.1)
        };
        d[1] -= 1;
    }
    while d[1] < 0 {
        d[1] += 12;
        d[0] -= 1;
    }
    if flip {
        d.iter_mut().for_each(|x| *x = -*x);
    }
    let months = (d[0] * 12 + d[1]) as i32;
    let nanos = (((d[3] * 60 + d[4]) * 60 + d[5]) * 1_000_000 + d[6]) * 1000;
    (months, d[2] as i32, nanos)
}

/// Registers `age(a [, b])` for a session in zone `tz`.
fn register_age(ctx: &SessionContext, tz: &str) {
    use datafusion::arrow::array::{AsArray, IntervalMonthDayNanoArray};
    use datafusion::arrow::datatypes::{
        IntervalMonthDayNano, IntervalUnit, TimeUnit, TimestampMicrosecondType,
    };
    let zone: chrono_tz::Tz = tz.parse().unwrap_or(chrono_tz::UTC);
    let ts = A::Timestamp(TimeUnit::Microsecond, Some(tz.into()));
    ctx.register_udf(udf(
        "age",
        vec![vec![ts.clone()], vec![ts.clone(), ts]],
        A::Interval(IntervalUnit::MonthDayNano),
        Volatility::Stable,
        move |a, rows| {
            let first = a[0].as_primitive::<TimestampMicrosecondType>();
            // age(x) counts from midnight today in the session's zone
            let midnight = || {
                use chrono::TimeZone;
                let today = chrono::Utc::now().with_timezone(&zone).date_naive();
                zone.from_local_datetime(&today.and_hms_opt(0, 0, 0).unwrap_or_default())
                    .earliest()
                    .map(|t| t.timestamp_micros())
                    .unwrap_or(0)
            };
            let out: IntervalMonthDayNanoArray = (0..rows)
                .map(|i| {
                    let (x, y) = if a.len() == 2 {
                        let second = a[1].as_primitive::<TimestampMicrosecondType>();
                        if first.is_null(i) || second.is_null(i) {
                            return None;
                        }
                        (first.value(i), second.value(i))
                    } else {
                        if first.is_null(i) {
                            return None;
                        }
                        (midnight(), first.value(i))
                    };
                    let (m, d, ns) = age_between(x, y, &zone);
                    Some(IntervalMonthDayNano::new(m, d, ns))
                })
                .collect();
            Ok(Arc::new(out))
        },
    ));
}

/// Registers the functions that read or change session settings on a
/// session's context: `current_setting(name [, missing_ok])` and
/// `set_config(name, value, is_local)`; and `age`, which reads the zone.
pub fn register_session(
    ctx: &SessionContext,
    settings: SettingsMap,
    tz: String,
    interrupt: Arc<Interrupt>,
) {
    register_age(ctx, &tz);
    use Volatility::*;
    use A::*;
    ctx.register_udf(udf(
        "pg_sleep",
        vec![vec![Float64]],
        Utf8,
        Volatile,
        move |a, rows| {
            let secs = cast(&a[0], &Float64)?;
            let secs = secs
                .as_any()
                .downcast_ref::<datafusion::arrow::array::Float64Array>()
                // One sleep per batch (the longest asked for), as for a single-row SELECT.
                .map(|x| x.iter().flatten().fold(0.0, f64::max))
                .unwrap_or(0.0);
            if secs > 0.0 {
                interrupt
                    .sleep(std::time::Duration::from_secs_f64(secs.min(86_400.0)))
                    .map_err(err)?;
            }
            Ok(Arc::new(StringArray::from(vec![None::<&str>; rows])))
        },
    ));
    let s1 = settings.clone();
    let tz1 = tz.clone();
    ctx.register_udf(udf(
        "current_setting",
        vec![vec![Utf8], vec![Utf8, Boolean]],
        Utf8,
        Stable,
        move |a, _| {
            let names = text(&a[0])?;
            let missing_ok = a.get(1).map(|b| {
                b.as_any()
                    .downcast_ref::<BooleanArray>()
                    .map(|b| b.len() > 0 && b.value(0))
                    .unwrap_or(false)
            });
            let mut out = Vec::with_capacity(names.len());
            for n in names.iter() {
                match n {
                    None => out.push(None),
                    Some(n) => match crate::runtime::settings::lookup(&s1, n, &tz1) {
                        Some(v) => out.push(Some(v)),
                        None if missing_ok == Some(true) => out.push(None),
                        None => {
                            return Err(err(SqlError::UndefinedObject(format!(
                                "unrecognized configuration parameter \"{n}\""
                            ))))
                        }
                    },
                }
            }
            Ok(Arc::new(StringArray::from(out)))
        },
    ));
    ctx.register_udf(udf(
        "set_config",
        vec![vec![Utf8, Utf8, Boolean]],
        Utf8,
        Volatile,
        move |a, _| {
            let names = text(&a[0])?;
            let values = text(&a[1])?;
            let mut out = Vec::with_capacity(names.len());
            for r in 0..names.len() {
                if names.is_null(r) {
                    out.push(None);
                    continue;
                }
                let v = if values.is_null(r) {
                    String::new()
                } else {
                    values.value(r).to_string()
                };
                crate::runtime::settings::store(&settings, names.value(r), &v);
                out.push(Some(v));
            }
            Ok(Arc::new(StringArray::from(out)))
        },
    ));
}

#[cfg(test)]
mod age_tests {
    use super::age_between;

    fn us(s: &str) -> i64 {
        chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S")
            .unwrap()
            .and_utc()
            .timestamp_micros()
    }

    #[test]
    fn age_borrows_like_postgres() {
        let utc = chrono_tz::UTC;
        // PostgreSQL: age('2001-04-10', '1957-06-13') = 43 years 9 mons 27 days
        assert_eq!(
            age_between(us("2001-04-10 00:00:00"), us("1957-06-13 00:00:00"), &utc),
            (43 * 12 + 9, 27, 0)
        );
        // age('1957-06-13', '2001-04-10') = -43 years -9 mons -27 days
        let (m, d, _) = age_between(us("1957-06-13 00:00:00"), us("2001-04-10 00:00:00"), &utc);
        assert_eq!((m, d), (-(43 * 12 + 9), -27));
        assert_eq!(
            age_between(us("2025-03-01 12:00:00"), us("2025-02-28 13:00:00"), &utc),
            (0, 0, 23 * 3600 * 1_000_000_000)
        );
    }
}
