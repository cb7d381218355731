//! The compatibility parser: `datafusion-pg-catalog`'s parser (its
//! blacklist of client catalog queries and its rewrite rules) minus its
//! `RemoveSubqueryFromProjection` rule. That rule replaces every correlated
//! scalar subquery in a SELECT list with `NULL` — a silent wrong answer
//! (`SELECT (SELECT n.nspname FROM pg_namespace n WHERE n.oid =
//! p.pronamespace) FROM pg_proc p` gave NULLs) — and stamps `LIMIT 1` on the
//! others, which DataFusion cannot decorrelate. cohortdb's own rewrite
//! ([`crate::pgcompat::rewrite`]) wraps such a subquery's value in `max(…)`
//! instead, which DataFusion plans as a join.

use std::sync::Arc;

use datafusion::sql::sqlparser::ast::Statement;
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion_pg_catalog::sql::rules::{
    AliasDuplicatedProjectionRewrite, CurrentUserVariableToSessionUserFunctionCall,
    FixArrayLiteral, FixVersionColumnName, PrependUnqualifiedPgTableName,
    ResolveUnqualifiedIdentifier, RewriteArrayAnyAllOperation, RewritePgCatalogOperator,
    RewriteRegCastToSubquery, SqlStatementRewriteRule, StripCallableQualifier, StripCollate,
};
use datafusion_pg_catalog::sql::PostgresCompatibilityParser;

/// Parses SQL the way clients' catalog queries need it.
#[derive(Debug)]
pub struct CompatParser {
    upstream: PostgresCompatibilityParser,
    rules: Vec<Arc<dyn SqlStatementRewriteRule>>,
}

impl Default for CompatParser {
    fn default() -> Self {
        Self::new()
    }
}

impl CompatParser {
    /// The parser with upstream's rules in upstream's order, less the one.
    pub fn new() -> Self {
        CompatParser {
            upstream: PostgresCompatibilityParser::new(),
            rules: vec![
                Arc::new(AliasDuplicatedProjectionRewrite),
                Arc::new(ResolveUnqualifiedIdentifier),
                Arc::new(RewriteArrayAnyAllOperation),
                Arc::new(PrependUnqualifiedPgTableName),
                Arc::new(StripCallableQualifier),
                Arc::new(FixArrayLiteral),
                Arc::new(CurrentUserVariableToSessionUserFunctionCall),
                Arc::new(StripCollate),
                Arc::new(RewritePgCatalogOperator),
                Arc::new(RewriteRegCastToSubquery::new()),
                Arc::new(FixVersionColumnName),
            ],
        }
    }

    /// Applies the rewrite rules to a parsed statement.
    pub fn rewrite(&self, mut s: Statement) -> Statement {
        for r in &self.rules {
            s = r.rewrite(s);
        }
        s
    }

    /// Parses `sql`: a statement upstream's blacklist replaced keeps the
    /// replacement; every other statement gets the rules above.
    pub fn parse(&self, sql: &str) -> Result<Vec<Statement>, ParserError> {
        let upstream = self.upstream.parse(sql)?;
        if !needs_own_rules(sql) {
            // Without a nested SELECT the left-out rule changes nothing,
            // and nothing renames a `current_…` function before it is named.
            return Ok(upstream);
        }
        let Ok(plain) = Parser::parse_sql(&PostgreSqlDialect {}, sql) else {
            return Ok(upstream);
        };
        if plain.len() != upstream.len() {
            return Ok(upstream);
        }
        Ok(plain
            .into_iter()
            .zip(upstream)
            .map(|(p, u)| {
                // Upstream's rules on the plain parse reproduce its output
                // unless the blacklist replaced the statement.
                if self.upstream.rewrite(p.clone()) == u {
                    let mut p = p;
                    // Output names are taken before `current_user` becomes `session_user`.
                    crate::pgcompat::output_names::rewrite(&mut p);
                    self.rewrite(p)
                } else {
                    u
                }
            })
            .collect())
    }
}

/// True when `sql` has more than one SELECT or names a `current_…`
/// function (a cheap over-approximation).
fn needs_own_rules(sql: &str) -> bool {
    let lower = sql.to_ascii_lowercase();
    lower.matches("select").nth(1).is_some() || lower.contains("current_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn correlated_subqueries_in_the_select_list_stay() {
        let p = CompatParser::new();
        let sql = "SELECT (SELECT n.nspname FROM pg_namespace n WHERE n.oid = p.pronamespace) FROM pg_proc p";
        let s = p.parse(sql).unwrap().remove(0).to_string();
        assert!(s.contains("SELECT n.nspname"), "{s}");
        assert!(!s.to_ascii_uppercase().contains("LIMIT 1"), "{s}");
        // upstream's own parser loses it
        let u = PostgresCompatibilityParser::new()
            .parse(sql)
            .unwrap()
            .remove(0)
            .to_string();
        assert!(!u.contains("nspname"), "{u}");
    }
}
