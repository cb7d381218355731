//! The row-insert fast path: a planned `INSERT INTO t [(columns)] VALUES
//! (…)[, (…)]` into `contacts` or a user table, with constants or `$n`
//! parameters as values, is executed without DataFusion's optimizer and
//! physical planner. The values are bound and evaluated, the INSERT's own
//! projection (defaults, casts, column order) is applied, and the rows go
//! to the same write function the planned INSERT's sink calls
//! (`tables::direct_insert`), so validation, ids and commits are the same.
//!
//! The shape is recognized on the logical plan DataFusion made for the
//! statement:
//!
//! ```text
//! Dml: op=[Insert Into] table=[t]
//!   [Projection: column1 AS a, CAST(NULL AS Utf8) AS b, …]  -- columns, constants, casts
//!     Values: (v, …), …                                      -- constants, $n; casts, immutable functions of them
//! ```
//!
//! Anything else (`INSERT … SELECT`, a volatile function such as `now()` or
//! `random()` in a value, a column default that is not a constant) runs as
//! planned. `INSERT INTO contacts …
//! RETURNING` of one row reads the new contact back with a key lookup.

use std::sync::Arc;

use datafusion::arrow::array::{RecordBatch, RecordBatchOptions};
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{DFSchema, ParamValues, ScalarValue};
use datafusion::datasource::source_as_provider;
use datafusion::logical_expr::execution_props::ExecutionProps;
use datafusion::logical_expr::logical_plan::dml::InsertOp;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::{ColumnarValue, Expr, LogicalPlan, WriteOp};
use datafusion::physical_expr::{create_physical_expr, PhysicalExpr};

use crate::error::Result;
use crate::handler::lookup::KeyLookup;
use crate::tables::SinkFn;

/// A recognized `INSERT … VALUES` (see the module docs).
#[derive(Clone)]
pub struct RowInsert {
    table: String,
    write: SinkFn,
    /// The VALUES list's columns.
    values_schema: SchemaRef,
    /// The VALUES list, row by row.
    rows: Vec<Vec<Expr>>,
    /// The INSERT's projection over the VALUES columns, in table column
    /// order; `None` when the VALUES list is the table's columns as is.
    projection: Option<Vec<Arc<dyn PhysicalExpr>>>,
    /// The rows handed to the table (its columns).
    output_schema: SchemaRef,
    /// `RETURNING` of a one-row contacts INSERT: the new contact read by id.
    returning: Option<Arc<KeyLookup>>,
}

impl std::fmt::Debug for RowInsert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RowInsert")
            .field("table", &self.table)
            .field("rows", &self.rows.len())
            .finish_non_exhaustive()
    }
}

/// A VALUES entry the fast path evaluates: constants and parameters,
/// casts and negations of them, and immutable functions of them (`CAST(x
/// AS text)` is the function `text(x)`).
fn simple_value(e: &Expr) -> bool {
    match e {
        Expr::Literal(..) | Expr::Placeholder(_) => true,
        Expr::Cast(c) => simple_value(&c.expr),
        Expr::TryCast(c) => simple_value(&c.expr),
        Expr::Negative(inner) => simple_value(inner),
        Expr::ScalarFunction(f) => immutable(f) && f.args.iter().all(simple_value),
        _ => false,
    }
}

/// Whether a function call gives the same result for the same arguments,
/// so evaluating it at execution gives what the planner's folding gives:
/// immutable functions, and the session's `text(x)` (stable only because
/// it renders in the session time zone it was made with).
fn immutable(f: &datafusion::logical_expr::expr::ScalarFunction) -> bool {
    f.func.signature().volatility == datafusion::logical_expr::Volatility::Immutable
        || f.name() == "text"
}

/// A projection entry the fast path evaluates: VALUES columns, constants,
/// casts, aliases (no parameters: they are bound in the VALUES list).
fn simple_projection(e: &Expr) -> bool {
    match e {
        Expr::Column(_) | Expr::Literal(..) => true,
        Expr::Alias(a) => simple_projection(&a.expr),
        Expr::Cast(c) => simple_projection(&c.expr),
        Expr::TryCast(c) => simple_projection(&c.expr),
        Expr::Negative(inner) => simple_projection(inner),
        _ => false,
    }
}

/// `e` with its parameters replaced by their values; `None` when it has a
/// parameter and none were given.
fn bind(e: &Expr, params: Option<&ParamValues>) -> Result<Option<Expr>> {
    let mut missing = false;
    let bound = e
        .clone()
        .transform_up(|e| match e {
            Expr::Placeholder(p) => match params {
                Some(v) => {
                    let (value, metadata) = v.get_placeholders_with_values(&p.id)?.into_inner();
                    Ok(Transformed::yes(Expr::Literal(value, metadata)))
                }
                None => {
                    missing = true;
                    Ok(Transformed::new(
                        Expr::Placeholder(p),
                        false,
                        TreeNodeRecursion::Stop,
                    ))
                }
            },
            other => Ok(Transformed::no(other)),
        })?
        .data;
    Ok((!missing).then_some(bound))
}

/// The literal a VALUES entry is, looking through casts.
fn literal_of(e: &Expr) -> Option<&ScalarValue> {
    match e {
        Expr::Literal(v, _) => Some(v),
        Expr::Cast(c) => literal_of(&c.expr),
        Expr::TryCast(c) => literal_of(&c.expr),
        Expr::ScalarFunction(f) if f.args.len() == 1 => literal_of(&f.args[0]),
        _ => None,
    }
}

/// `e` with the literal it is (through casts) replaced by `v`.
fn with_literal(e: &Expr, v: ScalarValue) -> Expr {
    match e {
        Expr::Literal(_, m) => Expr::Literal(v, m.clone()),
        Expr::Cast(c) => {
            let mut c = c.clone();
            c.expr = Box::new(with_literal(&c.expr, v));
            Expr::Cast(c)
        }
        Expr::TryCast(c) => {
            let mut c = c.clone();
            c.expr = Box::new(with_literal(&c.expr, v));
            Expr::TryCast(c)
        }
        Expr::ScalarFunction(f) if f.args.len() == 1 => {
            let mut f = f.clone();
            f.args = vec![with_literal(&f.args[0], v)];
            Expr::ScalarFunction(f)
        }
        other => other.clone(),
    }
}

impl RowInsert {
    /// The fast path `plan` is, when it is one.
    pub fn recognize(plan: &LogicalPlan) -> Option<RowInsert> {
        let LogicalPlan::Dml(dml) = plan else {
            return None;
        };
        if !matches!(dml.op, WriteOp::Insert(InsertOp::Append)) {
            return None;
        }
        let provider = source_as_provider(&dml.target).ok()?;
        let write = crate::tables::direct_insert(provider.as_ref())?;
        let (projection, values) = match dml.input.as_ref() {
            LogicalPlan::Projection(p) => match p.input.as_ref() {
                LogicalPlan::Values(v) => (Some(&p.expr), v),
                _ => return None,
            },
            LogicalPlan::Values(v) => (None, v),
            _ => return None,
        };
        if values.values.is_empty() || !values.values.iter().flatten().all(simple_value) {
            return None;
        }
        let projection = match projection {
            None => None,
            Some(exprs) => {
                if !exprs.iter().all(simple_projection) {
                    return None;
                }
                let props = ExecutionProps::new();
                let ctx = PhysicalPlanningContext::default();
                Some(
                    exprs
                        .iter()
                        .map(|e| create_physical_expr(e, &values.schema, &props, &ctx))
                        .collect::<datafusion::error::Result<Vec<_>>>()
                        .ok()?,
                )
            }
        };
        Some(RowInsert {
            table: dml.table_name.table().to_string(),
            write,
            values_schema: Arc::new(values.schema.as_arrow().clone()),
            rows: values.values.clone(),
            projection,
            output_schema: Arc::new(dml.input.schema().as_arrow().clone()),
            returning: None,
        })
    }

    /// What EXPLAIN shows as the physical plan.
    pub fn describe(&self) -> String {
        format!(
            "RowInsert: table={} rows={}{}",
            self.table,
            self.rows.len(),
            if self.returning.is_some() {
                " returning=key lookup by id"
            } else {
                ""
            }
        )
    }

    /// The table written to.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Rows of the VALUES list.
    pub fn row_count(&self) -> usize {
        self.rows.len()
    }

    /// This insert, answering `RETURNING` with `lookup` (a key lookup of
    /// `contacts` by `id = $1`); only for one-row inserts into contacts.
    pub fn with_returning(mut self, lookup: KeyLookup) -> Option<RowInsert> {
        (self.table == "contacts" && self.rows.len() == 1).then(|| {
            self.returning = Some(Arc::new(lookup));
            self
        })
    }

    /// Whether `RETURNING` is answered here.
    pub fn returns_rows(&self) -> bool {
        self.returning.is_some()
    }

    /// The constants of the VALUES list in row-major order, when every
    /// entry is one (possibly cast): a simple-protocol text's constants.
    pub fn literal_values(&self) -> Option<Vec<ScalarValue>> {
        self.rows
            .iter()
            .flatten()
            .map(|e| literal_of(e).cloned())
            .collect()
    }

    /// This insert with its constants replaced by `values` (row-major, as
    /// [`Self::literal_values`] lists them).
    pub fn with_literal_values(&self, values: &[ScalarValue]) -> RowInsert {
        let mut out = self.clone();
        let mut it = values.iter();
        for row in &mut out.rows {
            for e in row.iter_mut() {
                if let Some(v) = it.next() {
                    *e = with_literal(e, v.clone());
                }
            }
        }
        out
    }

    /// The rows to write, in the table's columns; `None` when they cannot
    /// be made here exactly as the plan makes them (run the plan).
    fn batch(&self, params: Option<&ParamValues>) -> Result<Option<RecordBatch>> {
        let props = ExecutionProps::new();
        let ctx = PhysicalPlanningContext::default();
        let no_columns = DFSchema::empty();
        let one_row = RecordBatch::try_new_with_options(
            Arc::new(Schema::empty()),
            vec![],
            &RecordBatchOptions::new().with_row_count(Some(1)),
        )?;
        let width = self.values_schema.fields().len();
        let mut columns: Vec<Vec<ScalarValue>> = vec![Vec::with_capacity(self.rows.len()); width];
        for row in &self.rows {
            if row.len() != width {
                return Ok(None);
            }
            for (j, e) in row.iter().enumerate() {
                let Some(e) = bind(e, params)? else {
                    return Ok(None);
                };
                let v = match e {
                    Expr::Literal(v, _) => v,
                    other => {
                        let pe = create_physical_expr(&other, &no_columns, &props, &ctx)?;
                        match pe.evaluate(&one_row)? {
                            ColumnarValue::Scalar(s) => s,
                            ColumnarValue::Array(a) if a.len() == 1 => {
                                ScalarValue::try_from_array(&a, 0)?
                            }
                            ColumnarValue::Array(_) => return Ok(None),
                        }
                    }
                };
                let want = self.values_schema.field(j).data_type();
                let v = if v.data_type() == *want {
                    v
                } else {
                    v.cast_to(want)?
                };
                columns[j].push(v);
            }
        }
        let arrays = columns
            .into_iter()
            .map(ScalarValue::iter_to_array)
            .collect::<datafusion::error::Result<Vec<_>>>()?;
        let values = RecordBatch::try_new(self.values_schema.clone(), arrays)?;
        let columns = match &self.projection {
            None => values.columns().to_vec(),
            Some(exprs) => exprs
                .iter()
                .map(|e| e.evaluate(&values)?.into_array(values.num_rows()))
                .collect::<datafusion::error::Result<Vec<_>>>()?,
        };
        if columns.len() != self.output_schema.fields().len() {
            return Ok(None);
        }
        // a NULL for a NOT NULL column: the plan's sink reports it
        for (c, f) in columns.iter().zip(self.output_schema.fields()) {
            if !f.is_nullable() && c.null_count() > 0 {
                return Ok(None);
            }
            if c.data_type() != f.data_type() {
                return Ok(None);
            }
        }
        Ok(Some(RecordBatch::try_new(
            self.output_schema.clone(),
            columns,
        )?))
    }

    /// Runs the insert with `params` bound: the number of rows written, or
    /// `None` when it must run as planned (nothing was written).
    pub async fn run(&self, params: Option<&ParamValues>) -> Result<Option<u64>> {
        let Some(batch) = self.batch(params)? else {
            return Ok(None);
        };
        Ok(Some((self.write)(vec![batch]).await?))
    }

    /// Runs the insert and reads the new contact back for `RETURNING`:
    /// the rows, or `None` when it must run as planned (nothing was
    /// written); `Err` after the write only if reading back failed.
    pub async fn run_returning(&self, params: Option<&ParamValues>) -> Result<Option<RecordBatch>> {
        let Some(lookup) = &self.returning else {
            return Ok(None);
        };
        let Some(batch) = self.batch(params)? else {
            return Ok(None);
        };
        let ids = Arc::new(std::sync::Mutex::new(Vec::new()));
        crate::ingest::batch::WRITTEN_CONTACTS
            .scope(ids.clone(), (self.write)(vec![batch]))
            .await?;
        let ids = ids.lock().expect("inserted ids").clone();
        let [id] = ids[..] else {
            return Err(datafusion::error::DataFusionError::Internal(format!(
                "a one-row insert wrote {} contacts",
                ids.len()
            ))
            .into());
        };
        let key = ParamValues::List(vec![ScalarValue::Int64(Some(id as i64)).into()]);
        match lookup.run(Some(&key)).await? {
            Some(rows) => Ok(Some(rows)),
            None => Err(datafusion::error::DataFusionError::Internal(
                "the inserted contact could not be read back".into(),
            )
            .into()),
        }
    }
}
