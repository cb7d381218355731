//! The one parser entry point: SQL text → [`Statement`]s.
//!
//! 1. Limits first: statement length (`max_message_mb`, 54000) and
//!    expression depth (`max_expression_depth`, 54001), on the text, before
//!    anything recurses over a syntax tree.
//! 2. The `ON_ERROR` COPY option, which sqlparser does not know, is taken out.
//! 3. Scripts holding group/tag statements are split, those statements
//!    parsed by `segments::groups`; analytics statements (FUNNEL …) by
//!    `analytics::parse`; user statements by [`super::user`].
//! 4. Everything else goes to `datafusion-pg-catalog`'s PostgreSQL
//!    compatibility parser, then through the client/BI rewrites
//!    (`pgcompat::rewrite`), and each statement is typed by [`classify`].

use crate::pgcompat::parser::CompatParser;
use datafusion::sql::sqlparser::ast::{self, ObjectName, ObjectType};

use super::{CopyStatement, ProcedureCall, Statement};
use crate::error::{Result, SqlError};
use crate::model::rows::OnError;
use crate::segments::groups::ScriptPart;

/// The limits parsing enforces.
#[derive(Debug, Clone, Copy)]
pub struct ParseLimits {
    /// Longest statement text in bytes (54000 beyond).
    pub max_message: usize,
    /// Deepest expression nesting (54001 beyond).
    pub max_expression_depth: usize,
}

/// Parses SQL text into statements.
pub fn parse(parser: &CompatParser, sql: &str, limits: ParseLimits) -> Result<Vec<Statement>> {
    if sql.len() > limits.max_message {
        return Err(SqlError::ProgramLimit(format!(
            "statement text of {} bytes exceeds max_message_mb ({} MiB); send large data with COPY, or raise max_message_mb in the server configuration",
            sql.len(),
            limits.max_message >> 20
        )));
    }
    crate::runtime::limits::check_expression_depth(sql, limits.max_expression_depth)?;
    let (sql, on_error) = extract_on_error(sql);
    let sql = copy_boolean_words(&sql);
    let mut out = Vec::new();
    match crate::segments::groups::parse_script(&sql) {
        Some(parts) => {
            for part in parts? {
                match part {
                    ScriptPart::Sql(text) => parse_script(parser, &text, &mut out)?,
                    ScriptPart::Segment(g) => out.push(Statement::Segment(Box::new(g))),
                }
            }
        }
        None => parse_script(parser, &sql, &mut out)?,
    }
    if let Some(mode) = on_error {
        for s in &mut out {
            if let Statement::Copy(c) = s {
                c.on_error = Some(mode);
            }
        }
    }
    Ok(out)
}

/// Parses statements, the analytics ones by their own grammar.
fn parse_script(parser: &CompatParser, sql: &str, out: &mut Vec<Statement>) -> Result<()> {
    let Some(pieces) = crate::analytics::split(sql)? else {
        return parse_sql(parser, sql, out);
    };
    for p in pieces {
        match p {
            crate::analytics::Piece::Sql(text) => parse_sql(parser, &text, out)?,
            crate::analytics::Piece::Analytics { explain, stmt } => {
                out.push(Statement::Analytics { explain, stmt })
            }
        }
    }
    Ok(())
}

fn parse_sql(parser: &CompatParser, sql: &str, out: &mut Vec<Statement>) -> Result<()> {
    if let Some(m) = parse_maintenance(sql)? {
        out.push(m);
        return Ok(());
    }
    if let Some(users) = super::user::parse(sql) {
        out.extend(users.into_iter().map(Statement::User));
        return Ok(());
    }
    if let Some(mask) = super::user::parse_mask(sql) {
        out.push(Statement::Mask(mask));
        return Ok(());
    }
    let parsed = if crate::pgcompat::bi_rewrite::needs_unblacklisted_parse(sql) {
        crate::pgcompat::bi_rewrite::parse_unblacklisted(parser, sql)
    } else {
        parser.parse(sql)
    };
    let mut stmts = parsed.map_err(|e| {
        let msg = e.to_string();
        if msg.contains("recursion limit exceeded") {
            SqlError::TooComplex(format!(
                "the statement nests more than {} levels deep (parentheses, subqueries, function calls); simplify it",
                crate::runtime::limits::PARSER_NESTING_LIMIT
            ))
        } else {
            // The compatibility parser's tokens carry no locations:
            // the plain parser finds where the error is.
            match datafusion::sql::sqlparser::parser::Parser::parse_sql(
                &datafusion::sql::sqlparser::dialect::PostgreSqlDialect {},
                sql,
            ) {
                Err(located) => crate::error::syntax_error_at(sql, &located.to_string()),
                Ok(_) => crate::error::syntax_error_at(sql, &msg),
            }
        }
    })?;
    for s in &stmts {
        reject_reserved_relation_names(s)?;
    }
    stmts.iter_mut().for_each(crate::pgcompat::rewrite::rewrite);
    for s in stmts {
        out.push(classify(s)?);
    }
    Ok(())
}

/// PostgreSQL's reserved key words: never a relation name unless quoted.
const RESERVED: &[&str] = &[
    "ALL",
    "ANALYSE",
    "ANALYZE",
    "AND",
    "ANY",
    "ARRAY",
    "AS",
    "ASC",
    "ASYMMETRIC",
    "BOTH",
    "CASE",
    "CAST",
    "CHECK",
    "COLLATE",
    "COLUMN",
    "CONSTRAINT",
    "CREATE",
    "CURRENT_CATALOG",
    "CURRENT_DATE",
    "CURRENT_ROLE",
    "CURRENT_TIME",
    "CURRENT_TIMESTAMP",
    "CURRENT_USER",
    "DEFAULT",
    "DEFERRABLE",
    "DESC",
    "DISTINCT",
    "DO",
    "ELSE",
    "END",
    "EXCEPT",
    "FALSE",
    "FETCH",
    "FOR",
    "FOREIGN",
    "FROM",
    "GRANT",
    "GROUP",
    "HAVING",
    "IN",
    "INITIALLY",
    "INTERSECT",
    "INTO",
    "LATERAL",
    "LEADING",
    "LIMIT",
    "LOCALTIME",
    "LOCALTIMESTAMP",
    "NOT",
    "NULL",
    "OFFSET",
    "ON",
    "ONLY",
    "OR",
    "ORDER",
    "PLACING",
    "PRIMARY",
    "REFERENCES",
    "RETURNING",
    "SELECT",
    "SESSION_USER",
    "SOME",
    "SYMMETRIC",
    "SYSTEM_USER",
    "TABLE",
    "THEN",
    "TO",
    "TRAILING",
    "TRUE",
    "UNION",
    "UNIQUE",
    "USER",
    "USING",
    "VARIADIC",
    "WHEN",
    "WHERE",
    "WINDOW",
    "WITH",
];

/// `SELECT FROM WHERE` parses in sqlparser's PostgreSQL dialect (a table
/// named `where`); PostgreSQL reads it as a syntax error (42601), and so
/// do we: an unquoted reserved key word cannot name a relation.
fn reject_reserved_relation_names(stmt: &ast::Statement) -> Result<()> {
    let mut bad: Option<String> = None;
    let _ = ast::visit_relations(stmt, |name| {
        for part in &name.0 {
            if let Some(ident) = part.as_ident() {
                let upper = ident.value.to_ascii_uppercase();
                if ident.quote_style.is_none() && RESERVED.contains(&upper.as_str()) {
                    bad = Some(upper);
                    return std::ops::ControlFlow::Break(());
                }
            }
        }
        std::ops::ControlFlow::Continue(())
    });
    match bad {
        Some(word) => Err(SqlError::Syntax(format!(
            "syntax error at or near \"{word}\""
        ))),
        None => Ok(()),
    }
}

/// The last part of a (possibly qualified) name, unquoted.
pub fn object_name(n: &ObjectName) -> String {
    n.0.last()
        .map(|p| p.to_string().trim_matches('"').to_string())
        .unwrap_or_default()
}

/// Types one statement sqlparser produced; kinds cohortdb does not run are
/// refused here (0A000), before anything executes.
pub fn classify(stmt: ast::Statement) -> Result<Statement> {
    use ast::Statement as S;
    Ok(match stmt {
        S::Query(_) | S::Explain { .. } | S::ShowTables { .. } | S::ShowColumns { .. } => {
            Statement::Query(Box::new(stmt))
        }
        S::Insert(_) if crate::ingest::identity_insert::wants(&stmt) => {
            Statement::IdentityInsert(Box::new(stmt))
        }
        S::Insert(_) => Statement::Insert(Box::new(stmt)),
        S::Update { .. } => Statement::Update(Box::new(stmt)),
        S::Delete(_) => Statement::Delete(Box::new(stmt)),
        S::CreateTable(ct) => Statement::CreateTable(Box::new(ct)),
        S::CreateView(v) => {
            if v.materialized {
                return Err(SqlError::Unsupported(
                    "materialized views are not supported: use CREATE TABLE … AS, or a group"
                        .into(),
                ));
            }
            Statement::CreateView {
                name: object_name(&v.name),
                columns: v.columns.iter().map(|c| c.name.value.clone()).collect(),
                query: v.query,
                or_replace: v.or_replace,
                if_not_exists: v.if_not_exists,
            }
        }
        S::Drop {
            object_type: ObjectType::View,
            names,
            if_exists,
            ..
        } => Statement::DropView {
            names: names.iter().map(object_name).collect(),
            if_exists,
        },
        S::Drop {
            object_type: ObjectType::Table,
            names,
            if_exists,
            ..
        } => Statement::DropTable {
            names: names.iter().map(object_name).collect(),
            if_exists,
        },
        S::Truncate(t) => Statement::Truncate {
            names: t.table_names.iter().map(|n| object_name(&n.name)).collect(),
        },
        S::AlterTable(at) => Statement::AlterTable {
            table: object_name(&at.name),
            operations: at.operations,
        },
        S::Copy {
            source,
            to,
            target,
            options,
            legacy_options,
            ..
        } => Statement::Copy(Box::new(CopyStatement {
            source,
            to,
            target,
            options,
            legacy: !legacy_options.is_empty(),
            on_error: None,
        })),
        S::Set(set) => Statement::Set(Box::new(set)),
        S::ShowVariable { variable } => Statement::Show {
            name: variable
                .iter()
                .map(|i| i.value.clone())
                .collect::<Vec<_>>()
                .join(" "),
        },
        S::Reset(_) | S::Close { .. } | S::UNLISTEN { .. } => {
            Statement::SessionReset(Box::new(stmt))
        }
        S::Discard { .. } => Statement::Discard,
        S::StartTransaction { .. } => Statement::Begin,
        S::Commit { .. } => Statement::Commit,
        S::Rollback {
            savepoint: Some(name),
            ..
        } => Statement::Savepoint {
            action: super::SavepointAction::RollbackTo,
            name: name.value,
        },
        S::Rollback { .. } => Statement::Rollback,
        S::Savepoint { name } => Statement::Savepoint {
            action: super::SavepointAction::Create,
            name: name.value,
        },
        S::ReleaseSavepoint { name } => Statement::Savepoint {
            action: super::SavepointAction::Release,
            name: name.value,
        },
        S::Prepare {
            name,
            data_types,
            statement,
        } => Statement::Prepare {
            name,
            data_types,
            statement,
        },
        S::Execute {
            name, parameters, ..
        } => Statement::Execute { name, parameters },
        S::Deallocate { name, .. } => Statement::Deallocate { name },
        S::Call(f) => Statement::Call(ProcedureCall::from_function(&f)?),
        other => {
            return Err(SqlError::Unsupported(format!(
                "statement not supported: {}",
                other
                    .to_string()
                    .split_whitespace()
                    .take(3)
                    .collect::<Vec<_>>()
                    .join(" ")
            )))
        }
    })
}

/// `VACUUM [FULL|FREEZE|VERBOSE|ANALYZE …] [(options)] [table [(cols)], …]`
/// and `ANALYZE [VERBOSE] [table [(cols)], …]`; `None` for other statements.
fn parse_maintenance(sql: &str) -> Result<Option<Statement>> {
    use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
    let head = sql.trim_start();
    let first: String = head
        .chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect();
    let kind = match first.to_ascii_uppercase().as_str() {
        "VACUUM" => super::MaintenanceKind::Vacuum,
        "ANALYZE" | "ANALYSE" => super::MaintenanceKind::Analyze,
        _ => return Ok(None),
    };
    let tokens = Tokenizer::new(
        &datafusion::sql::sqlparser::dialect::PostgreSqlDialect {},
        sql,
    )
    .tokenize()
    .map_err(|e| SqlError::Syntax(e.to_string()))?;
    let sig: Vec<Token> = tokens
        .into_iter()
        .filter(|t| !matches!(t, Token::Whitespace(_) | Token::SemiColon))
        .collect();
    let mut i = 1;
    // options: a parenthesised list, then option words
    if sig.get(i) == Some(&Token::LParen) {
        while i < sig.len() && sig[i] != Token::RParen {
            i += 1;
        }
        i += 1;
    }
    while let Some(Token::Word(w)) = sig.get(i) {
        if w.quote_style.is_none()
            && matches!(
                w.value.to_ascii_uppercase().as_str(),
                "FULL" | "FREEZE" | "VERBOSE" | "ANALYZE" | "ANALYSE" | "SKIP_LOCKED"
            )
        {
            i += 1;
        } else {
            break;
        }
    }
    let mut tables = Vec::new();
    let mut name: Vec<String> = Vec::new();
    let mut depth = 0;
    for t in &sig[i..] {
        match t {
            Token::LParen => depth += 1,
            Token::RParen => depth -= 1,
            _ if depth > 0 => {}
            Token::Word(w) => name.push(if w.quote_style.is_some() {
                w.value.clone()
            } else {
                w.value.to_ascii_lowercase()
            }),
            Token::Period => {}
            Token::Comma => {
                if let Some(last) = name.pop() {
                    tables.push(last);
                }
                name.clear();
            }
            other => {
                return Err(SqlError::Syntax(format!(
                    "syntax error at or near \"{other}\" in {}",
                    kind.tag()
                )))
            }
        }
    }
    if let Some(last) = name.pop() {
        tables.push(last);
    }
    Ok(Some(Statement::Maintenance { kind, tables }))
}

/// In a COPY statement, `FREEZE on|off` and `HEADER on|off` (pgbench
/// writes `with (freeze on)`) become `true|false`, the only boolean
/// spellings the parser takes there.
fn copy_boolean_words(sql: &str) -> std::borrow::Cow<'_, str> {
    use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
    if !sql
        .trim_start()
        .get(..4)
        .is_some_and(|w| w.eq_ignore_ascii_case("copy"))
    {
        return std::borrow::Cow::Borrowed(sql);
    }
    let Ok(mut tokens) = Tokenizer::new(
        &datafusion::sql::sqlparser::dialect::PostgreSqlDialect {},
        sql,
    )
    .tokenize() else {
        return std::borrow::Cow::Borrowed(sql);
    };
    let mut changed = false;
    let mut last_word: Option<String> = None;
    for t in tokens.iter_mut() {
        if matches!(t, Token::Whitespace(_)) {
            continue;
        }
        let word = match t {
            Token::Word(w) if w.quote_style.is_none() => Some(w.value.to_ascii_uppercase()),
            _ => None,
        };
        if matches!(last_word.as_deref(), Some("FREEZE" | "HEADER")) {
            match word.as_deref() {
                Some("ON") => {
                    *t = Token::make_keyword("TRUE");
                    changed = true;
                }
                Some("OFF") => {
                    *t = Token::make_keyword("FALSE");
                    changed = true;
                }
                _ => {}
            }
        }
        last_word = word;
    }
    if !changed {
        return std::borrow::Cow::Borrowed(sql);
    }
    std::borrow::Cow::Owned(tokens.iter().map(|t| t.to_string()).collect())
}

/// Removes a `ON_ERROR <mode>` COPY option (which the parser does not know) from `sql`.
fn extract_on_error(sql: &str) -> (String, Option<OnError>) {
    let upper = sql.to_ascii_uppercase();
    let Some(pos) = upper.find("ON_ERROR") else {
        return (sql.to_string(), None);
    };
    let rest = &sql[pos + 8..];
    let word: String = rest
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '\'')
        .collect();
    let ws = rest.len() - rest.trim_start().len();
    let end = pos + 8 + ws + word.len();
    let mode = match word.trim_matches('\'').to_ascii_lowercase().as_str() {
        "ignore" => OnError::Ignore,
        _ => OnError::Stop,
    };
    let mut before = sql[..pos].trim_end().to_string();
    let mut after = sql[end..].to_string();
    if before.ends_with(',') {
        before.pop();
    } else if after.trim_start().starts_with(',') {
        after = after.trim_start()[1..].to_string();
    }
    let mut out = format!("{before} {after}");
    out = out.replace("( )", "").replace("()", "");
    (out, Some(mode))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_booleans_spelled_on_off() {
        assert_eq!(
            copy_boolean_words("copy pgbench_accounts from stdin with (freeze on)"),
            "copy pgbench_accounts from stdin with (freeze TRUE)"
        );
        assert_eq!(
            copy_boolean_words("SELECT 'freeze on'"),
            "SELECT 'freeze on'"
        );
    }

    #[test]
    fn on_error_option_is_extracted() {
        let (s, m) = extract_on_error("COPY events (a) FROM STDIN (FORMAT csv, ON_ERROR ignore)");
        assert_eq!(m, Some(OnError::Ignore));
        assert!(!s.to_ascii_uppercase().contains("ON_ERROR"));
        assert!(s.contains("FORMAT csv"));
        let (s, m) = extract_on_error("COPY events FROM STDIN (ON_ERROR ignore)");
        assert_eq!(m, Some(OnError::Ignore));
        assert_eq!(s.trim(), "COPY events FROM STDIN");
    }

    fn kinds(sql: &str) -> Vec<&'static str> {
        let limits = ParseLimits {
            max_message: 1 << 20,
            max_expression_depth: 1000,
        };
        parse(&CompatParser::new(), sql, limits)
            .unwrap()
            .iter()
            .map(Statement::kind_name)
            .collect()
    }

    #[test]
    fn every_parser_feeds_one_list() {
        assert_eq!(
            kinds(
                "SELECT 1; CREATE STATIC GROUP group_a; FUNNEL STEP event = 'app_launch', \
                 STEP event = 'custom_order' WITHIN 1 DAYS FROM '2025-06-01' TO '2025-06-02'; \
                 CREATE USER bob; CALL identify('c', 'e'); BEGIN; COMMIT"
            ),
            vec![
                "SELECT",
                "CREATE GROUP",
                "SELECT",
                "CREATE ROLE",
                "CALL",
                "BEGIN",
                "COMMIT"
            ]
        );
        assert_eq!(
            kinds("INSERT INTO events (openid, channel_id, event) VALUES ('o', 'c', 'e')"),
            vec!["INSERT"]
        );
    }

    #[test]
    fn reserved_words_are_not_relation_names() {
        let limits = ParseLimits {
            max_message: 1 << 20,
            max_expression_depth: 1000,
        };
        let p = CompatParser::new();
        assert!(matches!(
            parse(&p, "SELECT FROM WHERE", limits),
            Err(SqlError::Syntax(m)) if m.contains("WHERE")
        ));
        assert!(parse(&p, "SELECT * FROM \"where\"", limits).is_ok());
        assert!(parse(
            &p,
            "SELECT * FROM contacts c JOIN events e ON c.id = e.contact_id",
            limits
        )
        .is_ok());
    }

    #[test]
    fn unknown_procedures_and_statements_fail_at_parse() {
        let limits = ParseLimits {
            max_message: 1 << 20,
            max_expression_depth: 1000,
        };
        let p = CompatParser::new();
        assert!(matches!(
            parse(&p, "CALL nope()", limits),
            Err(SqlError::UndefinedObject(_))
        ));
        assert!(matches!(
            parse(&p, "CREATE INDEX i ON contacts (name)", limits),
            Err(SqlError::Unsupported(_))
        ));
    }
}
