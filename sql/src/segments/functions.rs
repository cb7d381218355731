//! `in_group(contact_id, 'group_x')`: group membership as a SQL function,
//! read from the group's bitmap (cached while the group is unchanged).

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType as A;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{create_udf, ColumnarValue, Volatility};
use datafusion::prelude::SessionContext;

/// Registers the functions over groups: `in_group(contact_id, 'group_x')`
/// (membership from the group's bitmap).
pub fn register_groups(ctx: &SessionContext, store: Arc<cohortdb_storage::Store>) {
    use datafusion::arrow::array::{Array, AsArray, BooleanArray};
    use datafusion::arrow::datatypes::Int64Type;
    ctx.register_udf(create_udf(
        "in_group",
        vec![A::Int64, A::Utf8],
        A::Boolean,
        Volatility::Stable,
        Arc::new(move |args: &[ColumnarValue]| {
            let n = args
                .iter()
                .find_map(|a| match a {
                    ColumnarValue::Array(x) => Some(x.len()),
                    _ => None,
                })
                .unwrap_or(1);
            let ids = args[0].clone().into_array(n)?;
            let ids = datafusion::arrow::compute::cast(&ids, &A::Int64)?;
            let ids = ids.as_primitive::<Int64Type>();
            let names = args[1].clone().into_array(n)?;
            let names = datafusion::arrow::compute::cast(&names, &A::Utf8)?;
            let names = names.as_string::<i32>();
            let mut current: Option<(String, Arc<roaring::RoaringTreemap>)> = None;
            let mut out = Vec::with_capacity(n);
            for i in 0..n {
                if ids.is_null(i) || names.is_null(i) {
                    out.push(None);
                    continue;
                }
                let g = names.value(i);
                if current.as_ref().map(|(c, _)| c.as_str()) != Some(g) {
                    let set = crate::segments::membership::cached_members(&store, g)
                        .map_err(datafusion::error::DataFusionError::from)?;
                    current = Some((g.to_string(), set));
                }
                let set = &current.as_ref().expect("loaded").1;
                out.push(Some(ids.value(i) > 0 && set.contains(ids.value(i) as u64)));
            }
            let arr: BooleanArray = out.into_iter().collect();
            let scalar = args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_)));
            if scalar {
                Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&arr, 0)?))
            } else {
                Ok(ColumnarValue::Array(Arc::new(arr)))
            }
        }),
    ));
}
