//! `version()`: the PostgreSQL version string clients parse, naming cohortdb.

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType as A;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{create_udf, ColumnarValue, Volatility};
use datafusion::prelude::SessionContext;

use crate::runtime::settings::PG_VERSION;

/// The text `version()` returns.
pub fn version_string() -> String {
    format!(
        "PostgreSQL {PG_VERSION} (cohortdb {}) on x86_64-pc-linux-gnu, compiled by rustc, 64-bit",
        env!("CARGO_PKG_VERSION")
    )
}

/// Registers `version()` on `ctx`.
pub fn register(ctx: &SessionContext) {
    let v = version_string();
    ctx.register_udf(create_udf(
        "version",
        vec![],
        A::Utf8,
        Volatility::Stable,
        Arc::new(move |_args| Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(v.clone()))))),
    ));
}
