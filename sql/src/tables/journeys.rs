//! The journey tables: `journeys`, `journey_runs`, `journey_step_stats`.

use std::sync::Arc;

use cohortdb_storage::Store;
use datafusion::arrow::array::{
    ArrayRef, Int64Builder, StringBuilder, TimestampMillisecondBuilder,
};
use datafusion::arrow::datatypes::{DataType as A, Field, Schema, SchemaRef};

use crate::model::convert::arrow_type_in;

/// Which journey table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JourneyTable {
    /// `journeys`.
    Journeys,
    /// `journey_runs`.
    Runs,
    /// `journey_step_stats`.
    Stats,
}

/// A journey table provider.
#[derive(Debug)]
pub struct JourneyTableProvider {
    store: Arc<Store>,
    table: JourneyTable,
    tz: Arc<str>,
}

impl JourneyTableProvider {
    /// Provider of `table`; timestamps carry time zone `tz`.
    pub fn new(store: Arc<Store>, table: JourneyTable, tz: Arc<str>) -> Self {
        JourneyTableProvider { store, table, tz }
    }

    fn schema_of(&self) -> SchemaRef {
        let ts = arrow_type_in(cohortdb_storage::DataType::Timestamptz, &self.tz);
        let f = |n: &str, t: A| Field::new(n, t, false);
        Arc::new(Schema::new(match self.table {
            JourneyTable::Journeys => vec![
                f("id", A::Utf8),
                f("name", A::Utf8),
                f("status", A::Utf8),
                f("version", A::Int64),
                f("definition", A::Utf8),
                f("created_at", ts.clone()),
                f("updated_at", ts),
            ],
            JourneyTable::Runs => vec![
                f("journey_id", A::Utf8),
                f("run_id", A::Int64),
                f("contact_id", A::Int64),
                f("status", A::Utf8),
                f("step", A::Utf8),
                f("started_at", ts.clone()),
                f("updated_at", ts),
            ],
            JourneyTable::Stats => vec![
                f("journey_id", A::Utf8),
                f("step", A::Utf8),
                f("entered", A::Int64),
                f("completed", A::Int64),
                f("failed", A::Int64),
            ],
        }))
    }

    fn build_columns(&self) -> cohortdb_storage::Result<Vec<ArrayRef>> {
        let tsb = || TimestampMillisecondBuilder::new().with_timezone(self.tz.as_ref());
        let catalog = self.store.catalog();
        let journeys = &catalog.data().journeys;
        Ok(match self.table {
            JourneyTable::Journeys => {
                let (mut id, mut name, mut status, mut def) = (
                    StringBuilder::new(),
                    StringBuilder::new(),
                    StringBuilder::new(),
                    StringBuilder::new(),
                );
                let mut version = Int64Builder::new();
                let (mut c, mut u) = (tsb(), tsb());
                for j in journeys {
                    id.append_value(&j.id);
                    name.append_value(&j.name);
                    status.append_value(&j.status);
                    version.append_value(j.version as i64);
                    def.append_value(&j.definition);
                    c.append_value(j.created_at);
                    u.append_value(j.updated_at);
                }
                vec![
                    Arc::new(id.finish()),
                    Arc::new(name.finish()),
                    Arc::new(status.finish()),
                    Arc::new(version.finish()),
                    Arc::new(def.finish()),
                    Arc::new(c.finish()),
                    Arc::new(u.finish()),
                ]
            }
            JourneyTable::Runs => {
                let (mut j, mut step, mut status) = (
                    StringBuilder::new(),
                    StringBuilder::new(),
                    StringBuilder::new(),
                );
                let (mut run, mut contact) = (Int64Builder::new(), Int64Builder::new());
                let (mut s, mut u) = (tsb(), tsb());
                for r in self.store.scan_runs()? {
                    if !journeys.iter().any(|x| x.id == r.journey_id) {
                        continue; // deleted journey
                    }
                    j.append_value(&r.journey_id);
                    run.append_value(r.run_id as i64);
                    contact.append_value(r.contact_id as i64);
                    status.append_value(&r.status);
                    step.append_value(&r.step);
                    s.append_value(r.started_at);
                    u.append_value(r.updated_at);
                }
                vec![
                    Arc::new(j.finish()),
                    Arc::new(run.finish()),
                    Arc::new(contact.finish()),
                    Arc::new(status.finish()),
                    Arc::new(step.finish()),
                    Arc::new(s.finish()),
                    Arc::new(u.finish()),
                ]
            }
            JourneyTable::Stats => {
                let (mut j, mut step) = (StringBuilder::new(), StringBuilder::new());
                let mut n: [Int64Builder; 3] = Default::default();
                for def in journeys {
                    for (st, v) in self.store.step_stats(&def.id)? {
                        j.append_value(&def.id);
                        step.append_value(&st);
                        n[0].append_value(v.entered as i64);
                        n[1].append_value(v.completed as i64);
                        n[2].append_value(v.failed as i64);
                    }
                }
                let mut out: Vec<ArrayRef> = vec![Arc::new(j.finish()), Arc::new(step.finish())];
                for mut b in n {
                    out.push(Arc::new(b.finish()));
                }
                out
            }
        })
    }
}

impl super::RowSource for JourneyTableProvider {
    fn row_schema(&self) -> SchemaRef {
        self.schema_of()
    }
    fn columns(&self) -> cohortdb_storage::Result<Vec<ArrayRef>> {
        self.build_columns()
    }
}
