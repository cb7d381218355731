//! The analytics statements as relations: the table function
//! `analytics('<statement>')`, and the rewrite that turns a parenthesised
//! statement inside a query — `SELECT * FROM (FUNNEL …) f`,
//! `WITH r AS (RETENTION …) SELECT …`, `… JOIN (LTV …) l ON …` — into a call
//! of it. The statement keeps its own pushdown (event types and days); the
//! query around it orders, limits, filters and joins its rows. The rows are
//! computed when the query runs (not when it is planned or described).

use std::sync::Arc;

use async_trait::async_trait;
use chrono_tz::Tz;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::{plan_err, DataFusionError, Result as DfResult, ScalarValue};
use datafusion::datasource::TableType;
use datafusion::execution::context::SessionState;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::tokenizer::Token;

use super::parse::{self, AnalyticsStatement, Piece};
use crate::runtime::interrupt::Interrupt;
use crate::runtime::StatementContext;
use crate::tables::catalog::TableEnv;
use crate::tables::contacts::ContactsTable;
use crate::tables::events::EventsTable;

/// Name of the table function.
pub const FUNCTION: &str = "analytics";

/// Registers `analytics(text)` in a session's context.
pub fn register(ctx: &SessionContext, env: TableEnv, interrupt: Arc<Interrupt>) {
    ctx.register_udtf(FUNCTION, Arc::new(AnalyticsFunction { env, interrupt }));
}

/// Parses `text` as exactly one analytics statement (no EXPLAIN).
fn parse_one(text: &str) -> crate::error::Result<AnalyticsStatement> {
    let not_one = || {
        crate::error::SqlError::Syntax(format!(
            "{FUNCTION}() takes one FUNNEL, RETENTION, ATTRIBUTE, LTV or PATHS statement, got: {text}"
        ))
    };
    let pieces = parse::split(text)?.ok_or_else(not_one)?;
    match <[Piece; 1]>::try_from(pieces) {
        Ok(
            [Piece::Analytics {
                explain: false,
                stmt,
            }],
        ) => Ok(*stmt),
        _ => Err(not_one()),
    }
}

/// `analytics('<statement>')`.
#[derive(Debug)]
struct AnalyticsFunction {
    env: TableEnv,
    interrupt: Arc<Interrupt>,
}

impl TableFunctionImpl for AnalyticsFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> DfResult<Arc<dyn TableProvider>> {
        let text = match args.exprs() {
            [Expr::Literal(
                ScalarValue::Utf8(Some(s))
                | ScalarValue::LargeUtf8(Some(s))
                | ScalarValue::Utf8View(Some(s)),
                _,
            )] => s.clone(),
            _ => return plan_err!("{FUNCTION}() takes one text literal: the statement"),
        };
        let stmt = parse_one(&text).map_err(|e| DataFusionError::External(Box::new(e)))?;
        let events = EventsTable::new(&self.env, true).schema();
        let contacts = ContactsTable::new(&self.env, true).schema();
        let by = super::resolve_all_by_in(&stmt, &events, &contacts)
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        Ok(Arc::new(AnalyticsRelation {
            schema: super::schema_for(stmt.kind, &by),
            stmt: Arc::new(stmt),
            env: self.env.clone(),
            interrupt: self.interrupt.clone(),
        }))
    }
}

/// The rows of one analytics statement.
#[derive(Debug)]
struct AnalyticsRelation {
    stmt: Arc<AnalyticsStatement>,
    schema: SchemaRef,
    env: TableEnv,
    interrupt: Arc<Interrupt>,
}

#[async_trait]
impl TableProvider for AnalyticsRelation {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
    fn table_type(&self) -> TableType {
        TableType::Temporary
    }
    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let Some(state) = state.as_any().downcast_ref::<SessionState>() else {
            return plan_err!("{FUNCTION}() needs a cohortdb session");
        };
        let stream = AnalyticsStream {
            stmt: self.stmt.clone(),
            schema: self.schema.clone(),
            env: self.env.clone(),
            interrupt: self.interrupt.clone(),
            state: Box::new(state.clone()),
        };
        Ok(Arc::new(StreamingTableExec::try_new(
            self.schema.clone(),
            vec![Arc::new(stream)],
            projection,
            vec![],
            false,
            limit,
        )?))
    }
}

/// Computes the statement's rows when the plan runs.
struct AnalyticsStream {
    stmt: Arc<AnalyticsStatement>,
    schema: SchemaRef,
    env: TableEnv,
    interrupt: Arc<Interrupt>,
    state: Box<SessionState>,
}

impl std::fmt::Debug for AnalyticsStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AnalyticsStream({})", self.stmt.kind.name())
    }
}

impl PartitionStream for AnalyticsStream {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let tz: Tz = self.env.session_tz.parse().unwrap_or(self.env.tz);
        let sctx = StatementContext {
            store: self.env.store.clone(),
            df: SessionContext::new_with_state((*self.state).clone()),
            tz,
            user: String::new(),
            interrupt: self.interrupt.clone(),
            contact_lock: self.env.contact_lock.clone(),
        };
        let stmt = self.stmt.clone();
        let schema = self.schema.clone();
        let rows = async move {
            let batch = super::execute(&sctx, &stmt, false)
                .await
                .map_err(|e| DataFusionError::External(Box::new(e)))?;
            // The statement's batch carries the same fields; take the
            // relation's schema so the plan's checks see identical metadata.
            Ok(datafusion::arrow::array::RecordBatch::try_new(
                schema,
                batch.columns().to_vec(),
            )?)
        };
        Box::pin(RecordBatchStreamAdapter::new(
            self.schema.clone(),
            futures::stream::once(rows),
        ))
    }
}

/// True when `tokens[i..]` (whitespace skipped) starts an analytics
/// statement: its keyword followed by one of its clauses.
fn starts_statement(tokens: &[&Token], i: usize) -> bool {
    let Some(kind) = tokens
        .get(i)
        .and_then(|t| parse::word(t))
        .and_then(|w| parse::Kind::from_word(&w))
    else {
        return false;
    };
    parse::starts_clause(kind, &tokens[i + 1..])
}

/// Rewrites every parenthesised analytics statement inside an ordinary
/// statement into `(SELECT * FROM analytics('<statement>'))`. Returns
/// `None` when there is none. `tokens` are the statement's tokens.
pub fn embed(tokens: &[Token]) -> crate::error::Result<Option<String>> {
    let sig: Vec<&Token> = tokens
        .iter()
        .filter(|t| !matches!(t, Token::Whitespace(_)))
        .collect();
    let starts: Vec<usize> = (1..sig.len())
        .filter(|&i| sig[i - 1] == &Token::LParen && starts_statement(&sig, i))
        .collect();
    if starts.is_empty() {
        return Ok(None);
    }
    // Walk the original tokens (whitespace kept) so the rest of the query is unchanged.
    let mut out = String::new();
    let mut sig_index = 0usize; // index into `sig` of the next significant token
    let mut k = 0usize;
    while k < tokens.len() {
        let t = &tokens[k];
        if matches!(t, Token::Whitespace(_)) {
            out.push_str(&t.to_string());
            k += 1;
            continue;
        }
        if starts.contains(&sig_index) {
            // Collect up to the matching close parenthesis.
            let mut depth = 0i32;
            let mut inner = String::new();
            let mut j = k;
            while j < tokens.len() {
                match &tokens[j] {
                    Token::LParen => depth += 1,
                    Token::RParen if depth == 0 => break,
                    Token::RParen => depth -= 1,
                    _ => {}
                }
                if !matches!(tokens[j], Token::Whitespace(_)) {
                    sig_index += 1;
                }
                inner.push_str(&tokens[j].to_string());
                j += 1;
            }
            if j == tokens.len() {
                return Err(crate::error::SqlError::Syntax(
                    "syntax error: an analytics statement in parentheses is missing its closing \")\"".into(),
                ));
            }
            let inner = inner.trim();
            // Parse now so a mistake is reported against the statement.
            parse_one(inner)?;
            out.push_str(&format!(
                "SELECT * FROM {FUNCTION}('{}')",
                inner.replace('\'', "''")
            ));
            k = j; // the closing parenthesis is copied next
            continue;
        }
        out.push_str(&t.to_string());
        sig_index += 1;
        k += 1;
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::tokenizer::Tokenizer;

    fn rewrite(sql: &str) -> Option<String> {
        let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql)
            .tokenize()
            .unwrap();
        embed(&tokens).unwrap()
    }

    #[test]
    fn parenthesised_statements_become_calls() {
        let out = rewrite(
            "SELECT * FROM (FUNNEL STEP event = 'a', STEP event = 'b' WITHIN 1 DAY FROM '2024-01-01' TO '2024-01-31') f LIMIT 1",
        )
        .unwrap();
        assert!(
            out.starts_with("SELECT * FROM (SELECT * FROM analytics('FUNNEL STEP event = ''a''"),
            "{out}"
        );
        assert!(out.ends_with("''')) f LIMIT 1"), "{out}");
        let cte = rewrite(
            "WITH r AS (RETENTION INITIAL event = 'x' RETURN event = 'y' BY DAY PERIODS 3 FROM '2024-01-01' TO '2024-01-02') SELECT * FROM r",
        )
        .unwrap();
        assert!(
            cte.contains("WITH r AS (SELECT * FROM analytics('RETENTION"),
            "{cte}"
        );
    }

    #[test]
    fn column_names_that_look_like_keywords_stay() {
        assert_eq!(rewrite("SELECT (paths) FROM t"), None);
        assert_eq!(
            rewrite("SELECT (ltv + 1), (attribute IN (1, 2)) FROM t"),
            None
        );
        assert_eq!(rewrite("SELECT 1"), None);
    }

    #[test]
    fn a_broken_embedded_statement_is_reported() {
        let tokens = Tokenizer::new(
            &PostgreSqlDialect {},
            "SELECT * FROM (FUNNEL STEP event = 'a' FROM 'x' TO '2024-01-01') f",
        )
        .tokenize()
        .unwrap();
        assert!(embed(&tokens).is_err());
    }
}
