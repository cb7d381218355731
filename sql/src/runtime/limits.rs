//! Per-statement resource limits: the length of a statement's text, the nesting depth of expressions (checked
//! on the statement text before anything recurses over its syntax tree) and
//! the memory one query may use (a DataFusion memory pool of its own).
//!
//! Deep expressions are a crash risk, not just a slow path: the parser builds
//! `1+1+…+1` iteratively, but everything after it (rewrites, planning,
//! cloning, dropping) recurses once per level. A statement nesting deeper
//! than `max_expression_depth` is refused with SQLSTATE 54001 and its syntax
//! tree is taken apart iteratively.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{Expr, Value, VisitMut, VisitorMut};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

use crate::error::{Result, SqlError};

/// Default of `max_expression_depth`: how deeply expressions may nest.
pub const DEFAULT_MAX_EXPRESSION_DEPTH: usize = 1000;

/// Default of `max_message_mb`: the longest statement text, in MiB.
pub const DEFAULT_MAX_MESSAGE_MB: usize = 256;

/// Default of `max_query_memory` in MiB (0 = no limit).
pub const DEFAULT_MAX_QUERY_MEMORY_MB: usize = 4096;

/// Nesting levels the parser itself allows (parentheses, subqueries,
/// function calls); deeper input fails with "recursion limit exceeded".
pub const PARSER_NESTING_LIMIT: usize = 50;

/// Tokens that can extend an expression by one level without the parser
/// recursing (infix and postfix operators, set operations).
fn deepens(t: &Token) -> bool {
    match t {
        Token::Word(w) => matches!(
            w.keyword,
            Keyword::AND
                | Keyword::OR
                | Keyword::NOT
                | Keyword::IS
                | Keyword::LIKE
                | Keyword::ILIKE
                | Keyword::SIMILAR
                | Keyword::BETWEEN
                | Keyword::IN
                | Keyword::COLLATE
                | Keyword::AT
                | Keyword::UNION
                | Keyword::INTERSECT
                | Keyword::EXCEPT
                | Keyword::OVERLAPS
        ),
        Token::Comma
        | Token::Whitespace(_)
        | Token::LParen
        | Token::RParen
        | Token::Number(..)
        | Token::SingleQuotedString(_)
        | Token::DoubleQuotedString(_)
        | Token::EscapedStringLiteral(_)
        | Token::NationalStringLiteral(_)
        | Token::DollarQuotedString(_)
        | Token::Placeholder(_)
        | Token::SemiColon
        | Token::Char(_)
        | Token::EOF => false,
        _ => true,
    }
}

fn is_set_operation(t: &Token) -> bool {
    matches!(t, Token::Word(w) if matches!(w.keyword, Keyword::UNION | Keyword::INTERSECT | Keyword::EXCEPT))
}

fn too_deep(max_depth: usize) -> SqlError {
    SqlError::TooComplex(format!(
        "expressions nest more than {max_depth} levels deep (max_expression_depth); split the expression (e.g. use IN (...) instead of a long OR chain) or raise max_expression_depth in the server configuration"
    ))
}

/// Refuses a statement text whose expressions nest deeper than `max_depth`
/// (SQLSTATE 54001). Cheap for ordinary statements: only a text with more
/// operators than `max_depth` is parsed to measure its depth.
pub fn check_expression_depth(sql: &str, max_depth: usize) -> Result<()> {
    let Ok(tokens) = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize() else {
        return Ok(()); // the parser reports the syntax error
    };
    if tokens.iter().filter(|t| deepens(t)).count() <= max_depth {
        return Ok(());
    }
    // A chain of set operations nests outside expressions, where no visitor
    // callback sees it: count it from the tokens.
    if tokens.iter().filter(|t| is_set_operation(t)).count() > max_depth {
        return Err(too_deep(max_depth));
    }
    let Ok(mut statements) = Parser::new(&PostgreSqlDialect {})
        .with_tokens(tokens)
        .parse_statements()
    else {
        return Ok(());
    };
    let mut guard = DepthGuard {
        depth: 0,
        max_depth,
        cut: Vec::new(),
    };
    for s in statements.iter_mut() {
        let _ = s.visit(&mut guard);
    }
    let exceeded = !guard.cut.is_empty();
    dismantle(guard.cut);
    drop(statements);
    if exceeded {
        Err(too_deep(max_depth))
    } else {
        Ok(())
    }
}

/// Measures expression nesting; subtrees below `max_depth` are cut out (so
/// the visit itself never recurses deeper) and kept for [`dismantle`].
struct DepthGuard {
    depth: usize,
    max_depth: usize,
    cut: Vec<Expr>,
}

fn null() -> Expr {
    Expr::value(Value::Null)
}

impl VisitorMut for DepthGuard {
    type Break = ();

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        self.depth += 1;
        if self.depth > self.max_depth {
            self.cut.push(std::mem::replace(expr, null()));
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, _expr: &mut Expr) -> ControlFlow<()> {
        self.depth -= 1;
        ControlFlow::Continue(())
    }
}

/// Drops expression trees of any depth without recursing: each node's
/// child expressions are moved onto a work list before the node is dropped.
fn dismantle(mut work: Vec<Expr>) {
    struct Children<'a> {
        depth: usize,
        out: &'a mut Vec<Expr>,
    }
    impl VisitorMut for Children<'_> {
        type Break = ();
        fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
            self.depth += 1;
            if self.depth == 2 {
                self.out.push(std::mem::replace(expr, null()));
            }
            ControlFlow::Continue(())
        }
        fn post_visit_expr(&mut self, _expr: &mut Expr) -> ControlFlow<()> {
            self.depth -= 1;
            ControlFlow::Continue(())
        }
    }
    let mut children = Vec::new();
    while let Some(mut expr) = work.pop() {
        let _ = expr.visit(&mut Children {
            depth: 0,
            out: &mut children,
        });
        drop(expr);
        work.append(&mut children);
    }
}

/// Parses a memory setting: a number of MiB, or a number with a unit
/// `kB`, `MB`, `GB`, `TB` (as PostgreSQL spells them; case is ignored).
/// Returns bytes; `0` means no limit.
pub fn parse_memory(v: &str) -> Option<usize> {
    let v = v.trim().trim_matches('\'').trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let n: usize = num.parse().ok()?;
    let factor: usize = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "mb" => 1 << 20,
        "kb" => 1 << 10,
        "gb" => 1 << 30,
        "tb" => 1 << 40,
        _ => return None,
    };
    n.checked_mul(factor)
}

/// The memory pool of one query: at most `bytes`, shared fairly between the
/// operators that can spill (sorts, aggregations spill to disk first); the
/// error names the largest consumers.
pub fn query_memory_pool(
    bytes: usize,
) -> std::sync::Arc<dyn datafusion::execution::memory_pool::MemoryPool> {
    use datafusion::execution::memory_pool::{FairSpillPool, TrackConsumersPool};
    std::sync::Arc::new(TrackConsumersPool::new(
        FairSpillPool::new(bytes),
        std::num::NonZeroUsize::new(3).expect("non-zero"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: usize) -> String {
        format!("SELECT {}", vec!["1"; n].join(" + "))
    }

    #[test]
    fn ordinary_statements_pass() {
        check_expression_depth("SELECT a + b * c FROM t WHERE x IN (1, 2, 3)", 10).unwrap();
        check_expression_depth(&chain(10), 10).unwrap();
        check_expression_depth("SELECT 1; SELECT 2", 1).unwrap();
    }

    #[test]
    fn deep_chains_are_refused_without_overflowing() {
        assert!(matches!(
            check_expression_depth(&chain(12), 10),
            Err(SqlError::TooComplex(_))
        ));
        // Deep enough to overflow any thread stack if anything recursed per level.
        assert!(matches!(
            check_expression_depth(&chain(300_000), DEFAULT_MAX_EXPRESSION_DEPTH),
            Err(SqlError::TooComplex(_))
        ));
        let ors = format!(
            "SELECT * FROM t WHERE {}",
            (0..200_000)
                .map(|i| format!("id = {i}"))
                .collect::<Vec<_>>()
                .join(" OR ")
        );
        assert!(check_expression_depth(&ors, DEFAULT_MAX_EXPRESSION_DEPTH).is_err());
        let unions = vec!["SELECT 1"; 5000].join(" UNION ALL ");
        assert!(check_expression_depth(&unions, DEFAULT_MAX_EXPRESSION_DEPTH).is_err());
    }

    #[test]
    fn many_operators_side_by_side_are_not_deep() {
        let wide = format!(
            "SELECT {}",
            (0..3000)
                .map(|i| format!("{i} + 1"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        check_expression_depth(&wide, DEFAULT_MAX_EXPRESSION_DEPTH).unwrap();
    }

    #[test]
    fn memory_settings_parse() {
        assert_eq!(parse_memory("64"), Some(64 << 20));
        assert_eq!(parse_memory("'512MB'"), Some(512 << 20));
        assert_eq!(parse_memory("2GB"), Some(2 << 30));
        assert_eq!(parse_memory("100kB"), Some(100 << 10));
        assert_eq!(parse_memory("0"), Some(0));
        assert_eq!(parse_memory("lots"), None);
        assert_eq!(parse_memory("5 parsecs"), None);
    }
}
