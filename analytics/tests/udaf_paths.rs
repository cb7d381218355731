//! The per-contact aggregates give one answer whichever DataFusion path
//! runs them: the single-group `Accumulator` (no GROUP BY) and the
//! `GroupsAccumulator` (GROUP BY), over input split into several
//! partitions (partial states merged) or not.

use std::sync::Arc;

use datafusion::arrow::array::{BinaryArray, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::datasource::MemTable;
use datafusion::prelude::{SessionConfig, SessionContext};

const SPEC: &str = r#"{"statement": "funnel", "steps": 3, "window_hours": 24, "strict": false, "from": "2025-06-01", "to": "2025-06-10", "scan_from": "2025-06-01", "scan_to": "2025-06-12", "as_of_ms": 1760000000000, "time_zone": "UTC"}"#;

fn batch(rows: &[(i64, &str)]) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("contact_id", DataType::Int64, false),
        Field::new("ts", DataType::Int64, false),
        Field::new("event", DataType::Utf8, false),
    ]));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from(vec![7; rows.len()])),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))),
        ],
    )
    .unwrap()
}

async fn contribution(partitions: Vec<Vec<RecordBatch>>, group_by: bool) -> Vec<u8> {
    let ctx = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(3));
    for f in cohortdb_analytics::udaf::aggregates() {
        ctx.register_udaf(f);
    }
    let schema = partitions[0][0].schema();
    ctx.register_table(
        "t",
        Arc::new(MemTable::try_new(schema, partitions).unwrap()),
    )
    .unwrap();
    // ts are epoch seconds in the data; the aggregate takes integers as seconds
    let sql = format!(
        "SELECT cohort_funnel('{SPEC}', ts, event = 'a', event = 'b', event = 'c') AS c FROM t {}",
        if group_by { "GROUP BY contact_id" } else { "" }
    );
    let out = ctx.sql(&sql).await.unwrap().collect().await.unwrap();
    let col = out[0]
        .column(0)
        .as_any()
        .downcast_ref::<BinaryArray>()
        .unwrap();
    col.value(0).to_vec()
}

#[tokio::test]
async fn accumulator_and_groups_accumulator_agree_over_split_input() {
    let day = 1_748_736_000; // 2025-06-01 00:00 UTC, seconds
    let events = [
        (day + 100, "a"),
        (day + 200, "b"),
        (day + 200, "a"),
        (day + 3_000, "c"),
        (day + 90_000, "b"),
        (day + 86_400 * 3, "a"),
        (day + 86_400 * 3 + 5, "b"),
        (day + 86_400 * 3 + 5, "c"),
    ];
    let whole = vec![vec![batch(&events)]];
    let split = vec![
        vec![batch(&events[5..]), batch(&events[..1])],
        vec![batch(&events[1..3])],
        vec![batch(&events[3..5])],
    ];
    let reference = contribution(whole.clone(), true).await;
    assert!(!reference.is_empty());
    for (input, group_by) in [(whole, false), (split.clone(), false), (split, true)] {
        assert_eq!(contribution(input, group_by).await, reference);
    }
}
