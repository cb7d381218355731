//! Parsing of the analytics statements (FUNNEL, RETENTION, ATTRIBUTE, LTV,
//! PATHS): the statement is split into clauses at their keywords with
//! sqlparser's tokenizer, and every predicate is parsed by sqlparser's
//! expression parser. Also splits a multi-statement query string so that
//! ordinary statements still go to the normal SQL parser.

use datafusion::sql::sqlparser::ast::Expr as SqlExpr;
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

use cohortdb_analytics::attribute::{AttrWindow, Model};
use cohortdb_analytics::funnel::Window;
use cohortdb_analytics::paths::Anchor;
use cohortdb_analytics::Unit;

use crate::error::{Result, SqlError};

/// Which statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// FUNNEL.
    Funnel,
    /// RETENTION.
    Retention,
    /// ATTRIBUTE.
    Attribute,
    /// LTV.
    Ltv,
    /// PATHS.
    Paths,
}

impl Kind {
    /// The statement whose keyword is `w` (upper case), if any.
    pub(crate) fn from_word(w: &str) -> Option<Kind> {
        Some(match w.to_ascii_uppercase().as_str() {
            "FUNNEL" => Kind::Funnel,
            "RETENTION" => Kind::Retention,
            "ATTRIBUTE" => Kind::Attribute,
            "LTV" => Kind::Ltv,
            "PATHS" => Kind::Paths,
            _ => return None,
        })
    }

    /// The statement keyword.
    pub fn name(&self) -> &'static str {
        match self {
            Kind::Funnel => "FUNNEL",
            Kind::Retention => "RETENTION",
            Kind::Attribute => "ATTRIBUTE",
            Kind::Ltv => "LTV",
            Kind::Paths => "PATHS",
        }
    }

    fn clauses(&self) -> &'static [&'static [&'static str]] {
        match self {
            Kind::Funnel => &[&["STEP"], &["WITHIN"], &["STRICT"], &["BY"]],
            Kind::Retention => &[&["INITIAL"], &["RETURN"], &["BY"], &["CHURN"]],
            Kind::Attribute => &[
                &["TARGET"],
                &["VALUE"],
                &["TOUCH"],
                &["WITHIN"],
                &["MODEL"],
                &["INCLUDE", "DIRECT"],
            ],
            Kind::Ltv => &[
                &["GROUP", "BY"],
                &["INITIAL"],
                &["REVENUE"],
                &["VALUE"],
                &["BY"],
            ],
            Kind::Paths => &[
                &["EVENTS"],
                &["START", "AT"],
                &["END", "AT"],
                &["SESSION", "GAP"],
                &["BY"],
                &["MERGE", "REPEATS"],
                &["DEPTH"],
            ],
        }
    }
}

const COMMON_CLAUSES: &[&[&str]] = &[&["IN", "GROUP"], &["AS", "OF"], &["WHERE"], &["FROM"]];

/// A `BY` / `GROUP BY` column as written.
#[derive(Debug, Clone, PartialEq)]
pub struct ByColumn {
    /// Column name without a `contact.` prefix (output column name).
    pub name: String,
    /// Written as `contact.<name>`: resolve against contact_view only.
    pub contact: bool,
}

/// A predicate with its optional label.
#[derive(Debug, Clone, PartialEq)]
pub struct Labeled {
    /// The predicate.
    pub expr: SqlExpr,
    /// `AS 'label'`.
    pub label: Option<String>,
}

/// LTV's initial time.
#[derive(Debug, Clone, PartialEq)]
pub enum LtvInitial {
    /// `INITIAL EVENT <predicate>`.
    Event(SqlExpr),
    /// `INITIAL ATTRIBUTE <contact timestamp column>`.
    Attribute(String),
}

/// The statement-specific part.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// FUNNEL.
    Funnel {
        /// Steps.
        steps: Vec<Labeled>,
        /// WITHIN.
        window: Window,
        /// STRICT.
        strict: bool,
        /// BY.
        by: Option<ByColumn>,
    },
    /// RETENTION.
    Retention {
        /// INITIAL.
        initial: SqlExpr,
        /// RETURN.
        ret: SqlExpr,
        /// BY unit.
        unit: Unit,
        /// PERIODS.
        periods: u32,
        /// CHURN.
        churn: bool,
    },
    /// ATTRIBUTE.
    Attribute {
        /// TARGET.
        target: SqlExpr,
        /// VALUE.
        value: Option<SqlExpr>,
        /// TOUCH list.
        touches: Vec<Labeled>,
        /// WITHIN.
        window: AttrWindow,
        /// MODEL.
        model: Model,
        /// INCLUDE DIRECT.
        include_direct: bool,
    },
    /// LTV.
    Ltv {
        /// INITIAL.
        initial: LtvInitial,
        /// REVENUE.
        revenue: SqlExpr,
        /// VALUE.
        value: SqlExpr,
        /// BY unit.
        unit: Unit,
        /// PERIODS.
        periods: u32,
        /// GROUP BY.
        group_by: Vec<ByColumn>,
    },
    /// PATHS.
    Paths {
        /// EVENTS.
        events: SqlExpr,
        /// START AT / END AT.
        anchor: Anchor,
        /// Its predicate.
        anchor_expr: Option<SqlExpr>,
        /// SESSION GAP in milliseconds.
        gap_ms: i64,
        /// BY event column.
        by: Option<String>,
        /// MERGE REPEATS.
        merge_repeats: bool,
        /// DEPTH.
        depth: u32,
    },
}

/// A parsed analytics statement.
#[derive(Debug, Clone, PartialEq)]
pub struct AnalyticsStatement {
    /// Which statement.
    pub kind: Kind,
    /// Statement-specific clauses.
    pub body: Body,
    /// FROM date (text as written, validated YYYY-MM-DD).
    pub from: chrono::NaiveDate,
    /// TO date.
    pub to: chrono::NaiveDate,
    /// WHERE (contact_view predicate).
    pub filter: Option<SqlExpr>,
    /// IN GROUP.
    pub group: Option<String>,
    /// AS OF text.
    pub as_of: Option<String>,
    /// Original text (for EXPLAIN and logs).
    pub text: String,
    /// A trailing `ORDER BY … LIMIT … OFFSET …` applied to the result rows
    /// (SQL text, as BI tools append it).
    pub tail: Option<String>,
    /// `FROM $n`: the parameter that gives FROM (bound before it runs).
    pub from_param: Option<usize>,
    /// `TO $n`: the parameter that gives TO.
    pub to_param: Option<usize>,
}

impl AnalyticsStatement {
    /// Every predicate and value expression of the statement (where `$n`
    /// parameters may stand).
    pub fn exprs_mut(&mut self) -> Vec<&mut SqlExpr> {
        let mut out: Vec<&mut SqlExpr> = Vec::new();
        if let Some(f) = self.filter.as_mut() {
            out.push(f);
        }
        match &mut self.body {
            Body::Funnel { steps, .. } => out.extend(steps.iter_mut().map(|s| &mut s.expr)),
            Body::Retention { initial, ret, .. } => {
                out.push(initial);
                out.push(ret);
            }
            Body::Attribute {
                target,
                value,
                touches,
                ..
            } => {
                out.push(target);
                if let Some(v) = value.as_mut() {
                    out.push(v);
                }
                out.extend(touches.iter_mut().map(|t| &mut t.expr));
            }
            Body::Ltv {
                initial,
                revenue,
                value,
                ..
            } => {
                if let LtvInitial::Event(e) = initial {
                    out.push(e);
                }
                out.push(revenue);
                out.push(value);
            }
            Body::Paths {
                events,
                anchor_expr,
                ..
            } => {
                out.push(events);
                if let Some(a) = anchor_expr.as_mut() {
                    out.push(a);
                }
            }
        }
        out
    }
}

/// One statement of a query string.
#[derive(Debug, Clone)]
pub enum Piece {
    /// SQL text for the ordinary parser.
    Sql(String),
    /// An analytics statement, possibly under EXPLAIN.
    Analytics {
        /// EXPLAIN in front.
        explain: bool,
        /// The statement.
        stmt: Box<AnalyticsStatement>,
    },
}

fn is_ws(t: &Token) -> bool {
    matches!(t, Token::Whitespace(_))
}

/// An unquoted word, upper-cased.
pub(crate) fn word(t: &Token) -> Option<String> {
    match t {
        Token::Word(w) if w.quote_style.is_none() => Some(w.value.to_ascii_uppercase()),
        _ => None,
    }
}

/// Splits `sql` into statements, parsing analytics statements. Returns `None`
/// when there is no analytics statement (the caller parses `sql` as is).
pub fn split(sql: &str) -> Result<Option<Vec<Piece>>> {
    // Cheap test first: most queries never mention the keywords.
    let upper = sql.to_ascii_uppercase();
    if !["FUNNEL", "RETENTION", "ATTRIBUTE", "LTV", "PATHS"]
        .iter()
        .any(|k| upper.contains(k))
    {
        return Ok(None);
    }
    let dialect = PostgreSqlDialect {};
    let Ok(tokens) = Tokenizer::new(&dialect, sql).tokenize() else {
        return Ok(None);
    };
    let mut stmts: Vec<Vec<Token>> = vec![vec![]];
    for t in tokens {
        if t == Token::SemiColon {
            stmts.push(vec![]);
        } else {
            stmts.last_mut().expect("one").push(t);
        }
    }
    let mut found = false;
    let mut pieces = Vec::new();
    for toks in stmts {
        let sig: Vec<&Token> = toks.iter().filter(|t| !is_ws(t)).collect();
        if sig.is_empty() {
            continue;
        }
        let (explain, first) = match word(sig[0]).as_deref() {
            Some("EXPLAIN") => (true, sig.get(1).and_then(|t| word(t))),
            _ => (false, word(sig[0])),
        };
        let kind = first.as_deref().and_then(Kind::from_word);
        match kind {
            Some(kind) => {
                found = true;
                let mut body: Vec<Token> = sig
                    .iter()
                    .skip(if explain { 2 } else { 1 })
                    .map(|t| (*t).clone())
                    .collect();
                let tail = tail_start(&body).map(|i| {
                    body.split_off(i)
                        .iter()
                        .map(|t| t.to_string())
                        .collect::<Vec<_>>()
                        .join(" ")
                });
                let text: String = toks.iter().map(|t| t.to_string()).collect();
                let mut stmt = parse_statement(kind, body, text.trim().to_string())?;
                stmt.tail = tail;
                pieces.push(Piece::Analytics {
                    explain,
                    stmt: Box::new(stmt),
                });
            }
            None => match super::relation::embed(&toks)? {
                Some(rewritten) => {
                    found = true;
                    pieces.push(Piece::Sql(rewritten));
                }
                None => pieces.push(Piece::Sql(toks.iter().map(|t| t.to_string()).collect())),
            },
        }
    }
    Ok(found.then_some(pieces))
}

/// True when `tokens` (whitespace removed) start with one of `kind`'s
/// clauses or a clause every statement has.
pub(crate) fn starts_clause(kind: Kind, tokens: &[&Token]) -> bool {
    kind.clauses().iter().chain(COMMON_CLAUSES.iter()).any(|m| {
        m.len() <= tokens.len()
            && m.iter()
                .enumerate()
                .all(|(j, w)| word(tokens[j]).as_deref() == Some(*w))
    })
}

fn syntax(msg: impl Into<String>) -> SqlError {
    SqlError::Syntax(msg.into())
}

/// Splits the statement's tokens into `(clause words, tokens)` at clause keywords at parenthesis depth 0.
fn clauses(kind: Kind, tokens: &[Token]) -> Result<Vec<(String, Vec<Token>)>> {
    let mut out: Vec<(String, Vec<Token>)> = Vec::new();
    let mut depth = 0i32;
    let mut i = 0;
    while i < tokens.len() {
        let t = &tokens[i];
        if depth == 0 {
            let mut matched = None;
            for m in kind.clauses().iter().chain(COMMON_CLAUSES.iter()) {
                if m.len() + i <= tokens.len()
                    && m.iter()
                        .enumerate()
                        .all(|(j, w)| word(&tokens[i + j]).as_deref() == Some(*w))
                {
                    // `IS DISTINCT FROM` is an operator, not the FROM clause.
                    if m[0] == "FROM"
                        && i > 0
                        && word(&tokens[i - 1]).as_deref() == Some("DISTINCT")
                    {
                        continue;
                    }
                    // `END AT` only where END is not closing a CASE.
                    matched = Some(m);
                    break;
                }
            }
            if let Some(m) = matched {
                out.push((m.join(" "), Vec::new()));
                i += m.len();
                continue;
            }
        }
        match t {
            Token::LParen | Token::LBracket => depth += 1,
            Token::RParen | Token::RBracket => depth -= 1,
            _ => {}
        }
        match out.last_mut() {
            Some((_, v)) => v.push(t.clone()),
            None => {
                let allowed: Vec<String> = kind.clauses().iter().map(|m| m.join(" ")).collect();
                return Err(syntax(format!(
                    "syntax error at or near \"{t}\": {} expects its clauses ({}, FROM ... TO ..., WHERE, IN GROUP, AS OF)",
                    kind.name(),
                    allowed.join(", ")
                )));
            }
        }
        i += 1;
    }
    Ok(out)
}

fn parse_expr_tokens(tokens: &[Token], what: &str) -> Result<SqlExpr> {
    if tokens.is_empty() {
        return Err(syntax(format!("{what} needs an expression")));
    }
    let dialect = PostgreSqlDialect {};
    let mut p = Parser::new(&dialect).with_tokens(tokens.to_vec());
    let e = p
        .parse_expr()
        .map_err(|e| syntax(format!("in {what}: {e}")))?;
    let next = p.peek_token().token;
    if next != Token::EOF {
        return Err(syntax(format!(
            "syntax error at or near \"{next}\" in {what}"
        )));
    }
    Ok(e)
}

/// Splits a trailing `AS 'label'` and a trailing comma off a STEP/TOUCH clause.
fn labeled(mut tokens: Vec<Token>, what: &str) -> Result<Labeled> {
    if tokens.last() == Some(&Token::Comma) {
        tokens.pop();
    }
    let mut label = None;
    let n = tokens.len();
    if n >= 2 && word(&tokens[n - 2]).as_deref() == Some("AS") {
        match &tokens[n - 1] {
            Token::SingleQuotedString(s) => label = Some(s.clone()),
            Token::Word(w) => label = Some(w.value.clone()),
            other => {
                return Err(syntax(format!(
                    "{what} label must be a string, got {other}"
                )))
            }
        }
        tokens.truncate(n - 2);
    }
    Ok(Labeled {
        expr: parse_expr_tokens(&tokens, what)?,
        label,
    })
}

fn number(t: Option<&Token>, what: &str) -> Result<u64> {
    match t {
        Some(Token::Number(n, _)) => n
            .parse::<u64>()
            .map_err(|_| SqlError::InvalidValue(format!("{what} must be a whole number, got {n}"))),
        Some(other) => Err(syntax(format!(
            "{what} must be a whole number, got {other}"
        ))),
        None => Err(syntax(format!("{what} needs a number"))),
    }
}

fn string_lit(t: Option<&Token>, what: &str) -> Result<String> {
    match t {
        Some(Token::SingleQuotedString(s)) => Ok(s.clone()),
        Some(other) => Err(syntax(format!(
            "{what} must be a quoted literal, got {other}"
        ))),
        None => Err(syntax(format!("{what} needs a quoted literal"))),
    }
}

/// A date literal, or a `$n` parameter (its number; the date is a placeholder).
fn date_or_param(t: Option<&Token>, what: &str) -> Result<(chrono::NaiveDate, Option<usize>)> {
    if let Some(Token::Placeholder(p)) = t {
        let n = p
            .strip_prefix('$')
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|n| *n >= 1)
            .ok_or_else(|| syntax(format!("{what} expects a date or $n, got {p}")))?;
        return Ok((chrono::NaiveDate::MIN, Some(n)));
    }
    Ok((date_lit(t, what)?, None))
}

fn date_lit(t: Option<&Token>, what: &str) -> Result<chrono::NaiveDate> {
    let s = string_lit(t, what)?;
    chrono::NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").map_err(|_| {
        SqlError::InvalidDatetime(format!(
            "invalid date '{s}' in {what} (expected 'YYYY-MM-DD')"
        ))
    })
}

fn expect_end(tokens: &[Token], used: usize, what: &str) -> Result<()> {
    match tokens.get(used) {
        None => Ok(()),
        Some(t) => Err(syntax(format!(
            "syntax error at or near \"{t}\" after {what}"
        ))),
    }
}

fn unit_of(t: Option<&Token>) -> Result<Unit> {
    match t.and_then(word).as_deref() {
        Some("DAY") | Some("DAYS") => Ok(Unit::Day),
        Some("WEEK") | Some("WEEKS") => Ok(Unit::Week),
        Some("MONTH") | Some("MONTHS") => Ok(Unit::Month),
        _ => Err(syntax(format!(
            "BY expects DAY, WEEK or MONTH, got {}",
            t.map(|t| t.to_string()).unwrap_or_else(|| "nothing".into())
        ))),
    }
}

/// `BY DAY PERIODS n`.
fn unit_periods(tokens: &[Token]) -> Result<(Unit, u32)> {
    let unit = unit_of(tokens.first())?;
    if tokens.get(1).and_then(word).as_deref() != Some("PERIODS") {
        return Err(syntax("expected PERIODS <n> after BY DAY|WEEK|MONTH"));
    }
    let n = number(tokens.get(2), "PERIODS")?;
    expect_end(tokens, 3, "PERIODS")?;
    if n < 1 || n > 1000 {
        return Err(SqlError::InvalidValue(format!(
            "PERIODS must be between 1 and 1000, got {n}"
        )));
    }
    Ok((unit, n as u32))
}

fn column_ref(tokens: &[Token], what: &str) -> Result<ByColumn> {
    let parts: Vec<String> = tokens
        .iter()
        .filter(|t| **t != Token::Period)
        .map(|t| match t {
            Token::Word(w) => Ok(if w.quote_style.is_some() {
                w.value.clone()
            } else {
                w.value.to_ascii_lowercase()
            }),
            other => Err(syntax(format!("{what} expects a column name, got {other}"))),
        })
        .collect::<Result<_>>()?;
    match parts.as_slice() {
        [c] => Ok(ByColumn {
            name: c.clone(),
            contact: false,
        }),
        [q, c] if q == "contact" || q == "contact_view" || q == "contacts" => Ok(ByColumn {
            name: c.clone(),
            contact: true,
        }),
        [q, c] if q == "event" || q == "event_view" || q == "events" => Ok(ByColumn {
            name: c.clone(),
            contact: false,
        }),
        _ => Err(syntax(format!(
            "{what} expects a column name or contact.<column>"
        ))),
    }
}

fn column_list(tokens: &[Token], what: &str) -> Result<Vec<ByColumn>> {
    tokens
        .split(|t| *t == Token::Comma)
        .map(|part| column_ref(part, what))
        .collect()
}

/// Parses one analytics statement from its tokens (without the leading keyword).
pub fn parse_statement(kind: Kind, tokens: Vec<Token>, text: String) -> Result<AnalyticsStatement> {
    let cl = clauses(kind, &tokens)?;
    let mut from = None;
    let mut from_param = None;
    let mut to_param = None;
    let mut to = None;
    let mut filter = None;
    let mut group = None;
    let mut as_of = None;
    let mut seen: Vec<String> = Vec::new();
    // Statement-specific collected clauses.
    let mut steps: Vec<Labeled> = Vec::new();
    let mut touches: Vec<Labeled> = Vec::new();
    let mut within: Option<Vec<Token>> = None;
    let mut strict = false;
    let mut by: Option<Vec<Token>> = None;
    let mut group_by: Option<Vec<Token>> = None;
    let mut initial: Option<Vec<Token>> = None;
    let mut ret: Option<Vec<Token>> = None;
    let mut churn = false;
    let mut target: Option<Vec<Token>> = None;
    let mut value: Option<Vec<Token>> = None;
    let mut model: Option<Vec<Token>> = None;
    let mut include_direct = false;
    let mut revenue: Option<Vec<Token>> = None;
    let mut events: Option<Vec<Token>> = None;
    let mut anchor: Option<(Anchor, Vec<Token>)> = None;
    let mut gap: Option<Vec<Token>> = None;
    let mut merge_repeats = false;
    let mut depth: Option<Vec<Token>> = None;
    for (name, toks) in cl {
        let repeatable = name == "STEP" || name == "TOUCH";
        if !repeatable && seen.contains(&name) {
            return Err(syntax(format!("{name} is given more than once")));
        }
        seen.push(name.clone());
        let flag = |toks: &Vec<Token>, n: &str| -> Result<()> {
            match toks.first() {
                None => Ok(()),
                Some(t) => Err(syntax(format!("syntax error at or near \"{t}\" after {n}"))),
            }
        };
        match name.as_str() {
            "FROM" => {
                let mut i = 0;
                if toks.first().and_then(word).as_deref() == Some("DATE") {
                    i = 1;
                }
                let (d, p) = date_or_param(toks.get(i), "FROM")?;
                from = Some(d);
                from_param = p;
                if toks.get(i + 1).and_then(word).as_deref() != Some("TO") {
                    return Err(syntax("expected FROM 'YYYY-MM-DD' TO 'YYYY-MM-DD'"));
                }
                let mut j = i + 2;
                if toks.get(j).and_then(word).as_deref() == Some("DATE") {
                    j += 1;
                }
                let (d, p) = date_or_param(toks.get(j), "TO")?;
                to = Some(d);
                to_param = p;
                expect_end(&toks, j + 1, "FROM ... TO ...")?;
            }
            "WHERE" => filter = Some(parse_expr_tokens(&toks, "WHERE")?),
            "IN GROUP" => {
                let g = match toks.as_slice() {
                    [Token::Word(w)] => w.value.clone(),
                    [Token::SingleQuotedString(s)] => s.clone(),
                    _ => {
                        return Err(syntax(
                            "IN GROUP expects a group id, e.g. IN GROUP group_vip",
                        ))
                    }
                };
                group = Some(g);
            }
            "AS OF" => {
                let mut i = 0;
                if matches!(
                    toks.first().and_then(word).as_deref(),
                    Some("TIMESTAMP") | Some("TIMESTAMPTZ") | Some("DATE")
                ) {
                    i = 1;
                }
                as_of = Some(string_lit(toks.get(i), "AS OF")?);
                expect_end(&toks, i + 1, "AS OF")?;
            }
            "STEP" => steps.push(labeled(toks, "STEP")?),
            "TOUCH" => touches.push(labeled(toks, "TOUCH")?),
            "WITHIN" => within = Some(toks),
            "STRICT" => {
                flag(&toks, "STRICT")?;
                strict = true
            }
            "BY" => by = Some(toks),
            "GROUP BY" => group_by = Some(toks),
            "INITIAL" => initial = Some(toks),
            "RETURN" => ret = Some(toks),
            "CHURN" => {
                flag(&toks, "CHURN")?;
                churn = true
            }
            "TARGET" => target = Some(toks),
            "VALUE" => value = Some(toks),
            "MODEL" => model = Some(toks),
            "INCLUDE DIRECT" => {
                flag(&toks, "INCLUDE DIRECT")?;
                include_direct = true
            }
            "REVENUE" => revenue = Some(toks),
            "EVENTS" => events = Some(toks),
            "START AT" | "END AT" => {
                if anchor.is_some() {
                    return Err(syntax("PATHS takes START AT or END AT, not both"));
                }
                let a = if name == "START AT" {
                    Anchor::Start
                } else {
                    Anchor::End
                };
                anchor = Some((a, toks));
            }
            "SESSION GAP" => gap = Some(toks),
            "MERGE REPEATS" => {
                flag(&toks, "MERGE REPEATS")?;
                merge_repeats = true
            }
            "DEPTH" => depth = Some(toks),
            other => return Err(syntax(format!("unexpected clause {other}"))),
        }
    }
    let (Some(from), Some(to)) = (from, to) else {
        return Err(syntax(format!(
            "{} needs FROM 'YYYY-MM-DD' TO 'YYYY-MM-DD'",
            kind.name()
        )));
    };
    if from_param.is_none() && to_param.is_none() && to < from {
        return Err(SqlError::InvalidValue(format!(
            "FROM {from} is after TO {to}"
        )));
    }
    let need = |o: Option<Vec<Token>>, what: &str| -> Result<Vec<Token>> {
        o.ok_or_else(|| syntax(format!("{} needs {what}", kind.name())))
    };
    let body = match kind {
        Kind::Funnel => {
            if steps.len() < 2 || steps.len() > 8 {
                return Err(SqlError::InvalidValue(format!(
                    "FUNNEL takes 2 to 8 steps, got {}",
                    steps.len()
                )));
            }
            let w = need(within, "WITHIN <n> HOURS|DAYS")?;
            let n = number(w.first(), "WITHIN")?;
            let window = match w.get(1).and_then(word).as_deref() {
                Some("HOUR") | Some("HOURS") => {
                    if n < 1 || n > 720 {
                        return Err(SqlError::InvalidValue(format!(
                            "WITHIN must be 1 to 720 hours, got {n}"
                        )));
                    }
                    Window::Hours(n as u32)
                }
                Some("DAY") | Some("DAYS") => {
                    if n < 1 || n > 30 {
                        return Err(SqlError::InvalidValue(format!(
                            "WITHIN must be 1 to 30 days, got {n}"
                        )));
                    }
                    Window::Days(n as u32)
                }
                _ => return Err(syntax("WITHIN expects <n> HOURS or <n> DAYS")),
            };
            expect_end(&w, 2, "WITHIN")?;
            let by = by.map(|b| column_ref(&b, "BY")).transpose()?;
            Body::Funnel {
                steps,
                window,
                strict,
                by,
            }
        }
        Kind::Retention => {
            let initial = parse_expr_tokens(&need(initial, "INITIAL <predicate>")?, "INITIAL")?;
            let ret = parse_expr_tokens(&need(ret, "RETURN <predicate>")?, "RETURN")?;
            let (unit, periods) = unit_periods(&need(by, "BY DAY|WEEK|MONTH PERIODS <n>")?)?;
            Body::Retention {
                initial,
                ret,
                unit,
                periods,
                churn,
            }
        }
        Kind::Attribute => {
            if touches.is_empty() {
                return Err(syntax("ATTRIBUTE needs at least one TOUCH <predicate>"));
            }
            if touches.len() > 30 {
                return Err(SqlError::InvalidValue(
                    "ATTRIBUTE takes at most 30 touches".into(),
                ));
            }
            let target = parse_expr_tokens(&need(target, "TARGET <predicate>")?, "TARGET")?;
            let value = value.map(|v| parse_expr_tokens(&v, "VALUE")).transpose()?;
            let w = need(within, "WITHIN SAME DAY | WITHIN <n> DAYS")?;
            let window = if w.first().and_then(word).as_deref() == Some("SAME") {
                if w.get(1).and_then(word).as_deref() != Some("DAY") {
                    return Err(syntax("expected WITHIN SAME DAY"));
                }
                expect_end(&w, 2, "WITHIN SAME DAY")?;
                AttrWindow::SameDay
            } else {
                let n = number(w.first(), "WITHIN")?;
                if !matches!(
                    w.get(1).and_then(word).as_deref(),
                    Some("DAY") | Some("DAYS")
                ) {
                    return Err(syntax(
                        "ATTRIBUTE expects WITHIN SAME DAY or WITHIN <n> DAYS",
                    ));
                }
                expect_end(&w, 2, "WITHIN")?;
                if n < 1 || n > 30 {
                    return Err(SqlError::InvalidValue(format!(
                        "WITHIN must be 1 to 30 days, got {n}"
                    )));
                }
                AttrWindow::Days(n as u32)
            };
            let m = need(model, "MODEL FIRST|LAST|LINEAR")?;
            let model = match m.first().and_then(word).as_deref() {
                Some("FIRST") => Model::First,
                Some("LAST") => Model::Last,
                Some("LINEAR") => Model::Linear,
                _ => {
                    return Err(SqlError::InvalidValue(
                        "MODEL must be FIRST, LAST or LINEAR".into(),
                    ))
                }
            };
            expect_end(&m, 1, "MODEL")?;
            Body::Attribute {
                target,
                value,
                touches,
                window,
                model,
                include_direct,
            }
        }
        Kind::Ltv => {
            let init = need(
                initial,
                "INITIAL EVENT <predicate> | INITIAL ATTRIBUTE <column>",
            )?;
            let is_op_next = |i: usize| {
                matches!(
                    init.get(i),
                    Some(Token::Eq)
                        | Some(Token::Neq)
                        | Some(Token::Lt)
                        | Some(Token::Gt)
                        | Some(Token::LtEq)
                        | Some(Token::GtEq)
                        | Some(Token::DoubleColon)
                        | Some(Token::Period)
                ) || matches!(
                    init.get(i).and_then(word).as_deref(),
                    Some("IN")
                        | Some("IS")
                        | Some("LIKE")
                        | Some("NOT")
                        | Some("BETWEEN")
                        | Some("ILIKE")
                )
            };
            let initial = match init.first().and_then(word).as_deref() {
                Some("ATTRIBUTE") if !is_op_next(1) => {
                    let c = column_ref(&init[1..], "INITIAL ATTRIBUTE")?;
                    LtvInitial::Attribute(c.name)
                }
                Some("EVENT") if !is_op_next(1) => {
                    LtvInitial::Event(parse_expr_tokens(&init[1..], "INITIAL EVENT")?)
                }
                _ => LtvInitial::Event(parse_expr_tokens(&init, "INITIAL")?),
            };
            let revenue = parse_expr_tokens(
                &need(revenue, "REVENUE <predicate> VALUE <column>")?,
                "REVENUE",
            )?;
            let value = parse_expr_tokens(&need(value, "VALUE <numeric column>")?, "VALUE")?;
            let (unit, periods) = unit_periods(&need(by, "BY DAY|WEEK|MONTH PERIODS <n>")?)?;
            let group_by = match group_by {
                Some(g) => column_list(&g, "GROUP BY")?,
                None => vec![],
            };
            if group_by.len() > 2 {
                return Err(SqlError::InvalidValue(
                    "LTV takes at most two GROUP BY columns".into(),
                ));
            }
            Body::Ltv {
                initial,
                revenue,
                value,
                unit,
                periods,
                group_by,
            }
        }
        Kind::Paths => {
            let events = parse_expr_tokens(&need(events, "EVENTS <predicate>")?, "EVENTS")?;
            let (anchor, anchor_expr) = match anchor {
                Some((a, t)) => (
                    a,
                    Some(parse_expr_tokens(
                        &t,
                        if a == Anchor::Start {
                            "START AT"
                        } else {
                            "END AT"
                        },
                    )?),
                ),
                None => (Anchor::None, None),
            };
            let g = need(gap, "SESSION GAP <n> SECONDS|MINUTES|HOURS")?;
            let n = number(g.first(), "SESSION GAP")? as i64;
            let unit_ms = match g.get(1).and_then(word).as_deref() {
                Some("SECOND") | Some("SECONDS") => 1000,
                Some("MINUTE") | Some("MINUTES") => 60_000,
                Some("HOUR") | Some("HOURS") => 3_600_000,
                _ => return Err(syntax("SESSION GAP expects <n> SECONDS, MINUTES or HOURS")),
            };
            expect_end(&g, 2, "SESSION GAP")?;
            if n < 1 || n * unit_ms > 30 * 86_400_000 {
                return Err(SqlError::InvalidValue(
                    "SESSION GAP must be between 1 second and 30 days".into(),
                ));
            }
            let depth = match depth {
                Some(d) => {
                    let n = number(d.first(), "DEPTH")?;
                    expect_end(&d, 1, "DEPTH")?;
                    if !(1..=50).contains(&n) {
                        return Err(SqlError::InvalidValue(format!(
                            "DEPTH must be 1 to 50, got {n}"
                        )));
                    }
                    n as u32
                }
                None => 5,
            };
            let by = match by {
                Some(b) => {
                    let c = column_ref(&b, "BY")?;
                    if c.contact {
                        return Err(SqlError::InvalidValue(
                            "PATHS BY takes an event column".into(),
                        ));
                    }
                    Some(c.name)
                }
                None => None,
            };
            Body::Paths {
                events,
                anchor,
                anchor_expr,
                gap_ms: n * unit_ms,
                by,
                merge_repeats,
                depth,
            }
        }
    };
    // Clauses that do not belong to this statement were rejected by the splitter.
    Ok(AnalyticsStatement {
        kind,
        body,
        from,
        to,
        filter,
        group,
        as_of,
        text,
        tail: None,
        from_param,
        to_param,
    })
}

/// Where a trailing `ORDER BY` / `LIMIT` / `OFFSET` starts among a
/// statement's significant tokens (at parenthesis depth 0), if it has one.
fn tail_start(tokens: &[Token]) -> Option<usize> {
    let mut depth = 0i32;
    for (i, t) in tokens.iter().enumerate() {
        match t {
            Token::LParen => depth += 1,
            Token::RParen => depth -= 1,
            _ if depth == 0 => {
                let w = word(t);
                let next = tokens.get(i + 1).and_then(word);
                if (w.as_deref() == Some("ORDER") && next.as_deref() == Some("BY"))
                    || matches!(w.as_deref(), Some("LIMIT") | Some("OFFSET"))
                {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(sql: &str) -> AnalyticsStatement {
        match split(sql).unwrap().unwrap().remove(0) {
            Piece::Analytics { stmt, .. } => *stmt,
            Piece::Sql(s) => panic!("not analytics: {s}"),
        }
    }

    #[test]
    fn trailing_order_limit_offset_are_kept_apart() {
        let s = one("FUNNEL STEP event = 'a', STEP event = 'b' WITHIN 1 DAYS FROM '2025-06-01' TO '2025-06-30' BY contact.city ORDER BY city DESC LIMIT 10 OFFSET 2");
        assert_eq!(
            s.tail.as_deref(),
            Some("ORDER BY city DESC LIMIT 10 OFFSET 2")
        );
        let s = one("RETENTION INITIAL event = 'a' RETURN event = 'b' FROM '2025-06-01' TO '2025-06-07' BY DAY PERIODS 3 LIMIT 5");
        assert_eq!(s.tail.as_deref(), Some("LIMIT 5"));
        let s = one("FUNNEL STEP event IN (SELECT 'a' LIMIT 1), STEP event = 'b' WITHIN 1 DAYS FROM '2025-06-01' TO '2025-06-30'");
        assert_eq!(s.tail, None);
    }

    #[test]
    fn funnel_parses() {
        let s = one("FUNNEL STEP event = 'a' AS 'A', STEP event IN ('b','c') WITHIN 7 DAYS FROM '2025-06-01' TO '2025-06-30' STRICT WHERE city = 'x' AND age > 3 IN GROUP group_v BY contact.city");
        match s.body {
            Body::Funnel {
                steps,
                window,
                strict,
                by,
            } => {
                assert_eq!(steps.len(), 2);
                assert_eq!(steps[0].label.as_deref(), Some("A"));
                assert_eq!(window, Window::Days(7));
                assert!(strict);
                assert_eq!(
                    by,
                    Some(ByColumn {
                        name: "city".into(),
                        contact: true
                    })
                );
            }
            _ => panic!(),
        }
        assert_eq!(s.group.as_deref(), Some("group_v"));
        assert!(s.filter.is_some());
    }

    #[test]
    fn errors_say_what_is_allowed() {
        let e = split("FUNNEL STEP event='a' WITHIN 7 DAYS FROM '2025-06-01' TO '2025-06-02'")
            .unwrap_err();
        assert!(e.to_string().contains("2 to 8"), "{e}");
        let e = split("FUNNEL STEP event='a', STEP event='b' WITHIN 40 DAYS FROM '2025-06-01' TO '2025-06-02'").unwrap_err();
        assert!(e.to_string().contains("30 days"), "{e}");
        let e = split("RETENTION INITIAL event='a' RETURN event='b' FROM '2025-06-01' TO '2025-06-02' BY DAY PERIODS 0").unwrap_err();
        assert!(e.to_string().contains("PERIODS"), "{e}");
    }

    #[test]
    fn mixed_statements_split() {
        let p = split("SELECT 1; LTV INITIAL EVENT event = 'register' REVENUE event = 'pay' VALUE p_amount FROM '2020-04-01' TO '2020-04-05' BY DAY PERIODS 3 GROUP BY city AS OF '2020-04-05 23:59:59'").unwrap().unwrap();
        assert!(matches!(&p[0], Piece::Sql(s) if s.trim() == "SELECT 1"));
        match &p[1] {
            Piece::Analytics { stmt, .. } => match &stmt.body {
                Body::Ltv {
                    initial, group_by, ..
                } => {
                    assert!(matches!(initial, LtvInitial::Event(_)));
                    assert_eq!(group_by.len(), 1);
                }
                _ => panic!(),
            },
            _ => panic!(),
        }
        assert!(split("SELECT 'no keywords'").unwrap().is_none());
    }

    #[test]
    fn paths_and_attribute_parse() {
        let s = one("PATHS EVENTS event IN ('a','b') START AT event = 'a' SESSION GAP 30 MINUTES FROM '2025-06-01' TO '2025-06-02' BY p_page MERGE REPEATS DEPTH 4");
        assert!(matches!(
            s.body,
            Body::Paths {
                anchor: Anchor::Start,
                gap_ms: 1_800_000,
                depth: 4,
                merge_repeats: true,
                ..
            }
        ));
        let s = one("ATTRIBUTE TARGET event = 'order' VALUE p_amount TOUCH event = 'a' AS 'ad', TOUCH event = 'b' WITHIN SAME DAY MODEL LINEAR FROM '2025-06-01' TO '2025-06-02' INCLUDE DIRECT");
        assert!(matches!(
            s.body,
            Body::Attribute {
                window: AttrWindow::SameDay,
                model: Model::Linear,
                include_direct: true,
                ..
            }
        ));
    }
}
