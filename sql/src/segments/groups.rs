//! Groups and tags: the statements (`CREATE [STATIC] GROUP`, `ALTER GROUP`,
//! `REFRESH GROUP|TAG`, `DROP GROUP|TAG`, `CREATE TAG`), their execution, and
//! membership reads for everyone else ([`group_members`], `in_group`,
//! `contact_view` columns).
//!
//! The statements are not SQL the parser knows. [`parse_script`] recognises
//! them by their leading words (sqlparser's tokenizer, Postgres dialect) and
//! parses them into [`GroupStatement`]s, which the statement parser
//! (`crate::statement`) carries as `Statement::Segment`. Embedded queries,
//! literals and types are parsed with sqlparser's own `Parser`.

use std::sync::Arc;

use cohortdb_storage::groups::{JobStatus, TagType};
use cohortdb_storage::keys::BITMAP_GROUP;
use cohortdb_storage::{GroupDef, GroupKind, RefreshPolicy, TagDef};
use datafusion::sql::sqlparser::ast::Expr as SqlExpr;
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
use roaring::RoaringTreemap;

use crate::error::{Result, SqlError};
use crate::runtime::{Reply, StatementContext};
use crate::segments::membership::{ids_of, no_group, no_tag, note_edit};
use crate::segments::scheduler::{Scheduler, Target};

/// One statement of a script that holds a group or tag statement.
#[derive(Debug, Clone, PartialEq)]
pub enum ScriptPart {
    /// SQL text for the other parsers.
    Sql(String),
    /// A parsed group or tag statement.
    Segment(GroupStatement),
}

/// Where contacts of `ALTER GROUP ... ADD|REMOVE CONTACTS` come from.
#[derive(Debug, Clone, PartialEq)]
pub enum ContactSource {
    /// A query returning one column of contact ids.
    Query(String),
    /// `VALUES (1), (2)`.
    Ids(Vec<u64>),
}

/// How a tag gets its values.
#[derive(Debug, Clone, PartialEq)]
pub enum TagSource {
    /// `AS SELECT contact_id, value ...`.
    Query(String),
    /// `EXTERNAL ID TYPE 'wechat.openid'`: values come from `COPY tag FROM STDIN`.
    External(String),
}

/// A parsed group or tag statement.
#[derive(Debug, Clone, PartialEq)]
pub enum GroupStatement {
    /// `CREATE GROUP g [COMMENT ..] [REFRESH MANUAL|DAILY] AS <query>`.
    CreateGroup {
        /// Group id.
        name: String,
        /// Comment.
        comment: Option<String>,
        /// Refresh policy.
        refresh: RefreshPolicy,
        /// The query (one column of contact ids).
        query: String,
    },
    /// `CREATE STATIC GROUP g [COMMENT ..]`.
    CreateStaticGroup {
        /// Group id.
        name: String,
        /// Comment.
        comment: Option<String>,
    },
    /// `ALTER GROUP g ADD|REMOVE CONTACTS ...`.
    AlterGroup {
        /// Group id.
        name: String,
        /// True for ADD.
        add: bool,
        /// The contacts.
        source: ContactSource,
    },
    /// `REFRESH GROUP g`.
    RefreshGroup {
        /// Group id.
        name: String,
    },
    /// `DROP GROUP [IF EXISTS] g`.
    DropGroup {
        /// Group id.
        name: String,
        /// IF EXISTS.
        if_exists: bool,
    },
    /// `CREATE TAG t TYPE ty [COMMENT ..] [REFRESH ..] AS <query>` or `... EXTERNAL ID TYPE '..'`.
    CreateTag {
        /// Tag id.
        name: String,
        /// Value type.
        data_type: TagType,
        /// Comment.
        comment: Option<String>,
        /// Refresh policy.
        refresh: RefreshPolicy,
        /// Query or external.
        source: TagSource,
    },
    /// `REFRESH TAG t`.
    RefreshTag {
        /// Tag id.
        name: String,
    },
    /// `DROP TAG [IF EXISTS] t`.
    DropTag {
        /// Tag id.
        name: String,
        /// IF EXISTS.
        if_exists: bool,
    },
}

impl GroupStatement {
    /// The group or tag the statement names.
    pub fn object_name(&self) -> &str {
        match self {
            GroupStatement::CreateGroup { name, .. }
            | GroupStatement::CreateStaticGroup { name, .. }
            | GroupStatement::AlterGroup { name, .. }
            | GroupStatement::RefreshGroup { name, .. }
            | GroupStatement::DropGroup { name, .. }
            | GroupStatement::CreateTag { name, .. }
            | GroupStatement::RefreshTag { name, .. }
            | GroupStatement::DropTag { name, .. } => name,
        }
    }

    /// The SQL texts the statement carries (its queries), where `$n`
    /// parameters may stand.
    pub fn texts_mut(&mut self) -> Vec<&mut String> {
        match self {
            GroupStatement::CreateGroup { query, .. } => vec![query],
            GroupStatement::AlterGroup {
                source: ContactSource::Query(q),
                ..
            } => vec![q],
            GroupStatement::CreateTag {
                source: TagSource::Query(q),
                ..
            } => vec![q],
            GroupStatement::AlterGroup { .. }
            | GroupStatement::CreateStaticGroup { .. }
            | GroupStatement::RefreshGroup { .. }
            | GroupStatement::DropGroup { .. }
            | GroupStatement::CreateTag { .. }
            | GroupStatement::RefreshTag { .. }
            | GroupStatement::DropTag { .. } => vec![],
        }
    }

    /// The command tag the statement completes with.
    pub fn tag(&self) -> &'static str {
        match self {
            GroupStatement::CreateGroup { .. } | GroupStatement::CreateStaticGroup { .. } => {
                "CREATE GROUP"
            }
            GroupStatement::AlterGroup { .. } => "ALTER GROUP",
            GroupStatement::RefreshGroup { .. } => "REFRESH GROUP",
            GroupStatement::DropGroup { .. } => "DROP GROUP",
            GroupStatement::CreateTag { .. } => "CREATE TAG",
            GroupStatement::RefreshTag { .. } => "REFRESH TAG",
            GroupStatement::DropTag { .. } => "DROP TAG",
        }
    }
}

fn dialect() -> PostgreSqlDialect {
    PostgreSqlDialect {}
}

fn tokens(sql: &str) -> Result<Vec<Token>> {
    Tokenizer::new(&dialect(), sql)
        .tokenize()
        .map_err(|e| SqlError::Syntax(e.to_string()))
}

fn is_ws(t: &Token) -> bool {
    matches!(t, Token::Whitespace(_))
}

/// Upper-cased leading words of a token list (whitespace and comments skipped).
fn leading_words(toks: &[Token], n: usize) -> Vec<String> {
    toks.iter()
        .filter(|t| !is_ws(t))
        .take(n)
        .map(|t| match t {
            Token::Word(w) => w.value.to_ascii_uppercase(),
            other => other.to_string(),
        })
        .collect()
}

fn is_group_statement(toks: &[Token]) -> bool {
    let w = leading_words(toks, 3);
    let w: Vec<&str> = w.iter().map(String::as_str).collect();
    matches!(
        w.as_slice(),
        ["CREATE", "GROUP", ..]
            | ["CREATE", "STATIC", "GROUP"]
            | ["CREATE", "TAG", ..]
            | ["ALTER", "GROUP", ..]
            | ["REFRESH", "GROUP", ..]
            | ["REFRESH", "TAG", ..]
            | ["DROP", "GROUP", ..]
            | ["DROP", "TAG", ..]
    )
}

/// Splits a script into statements when one of them is a group/tag statement:
/// returns the other statements' texts and the group statements parsed, or
/// `None` when the script has no group statement (the caller then parses it
/// as usual).
pub fn parse_script(sql: &str) -> Option<Result<Vec<ScriptPart>>> {
    let toks = Tokenizer::new(&dialect(), sql)
        .tokenize_with_location()
        .ok()?;
    // Statement boundaries: byte offsets of the top-level semicolons.
    let line_starts: Vec<usize> = std::iter::once(0)
        .chain(sql.match_indices('\n').map(|(i, _)| i + 1))
        .collect();
    let offset = |line: u64, col: u64| -> usize {
        let start = line_starts
            .get((line.max(1) - 1) as usize)
            .copied()
            .unwrap_or(sql.len());
        sql[start..]
            .char_indices()
            .nth((col.max(1) - 1) as usize)
            .map(|(i, _)| start + i)
            .unwrap_or(sql.len())
    };
    let mut chunks: Vec<(String, Vec<Token>)> = Vec::new();
    let (mut from, mut cur) = (0usize, Vec::new());
    for t in toks {
        if t.token == Token::SemiColon {
            let at = offset(t.span.start.line, t.span.start.column);
            chunks.push((sql[from..at].to_string(), std::mem::take(&mut cur)));
            from = at + 1;
        } else {
            cur.push(t.token);
        }
    }
    chunks.push((sql[from.min(sql.len())..].to_string(), cur));
    if !chunks.iter().any(|(_, t)| is_group_statement(t)) {
        return None;
    }
    let mut out = Vec::new();
    for (text, toks) in chunks {
        if toks.iter().all(is_ws) {
            continue;
        }
        if is_group_statement(&toks) {
            match parse_statement(text.trim()) {
                Ok(g) => out.push(ScriptPart::Segment(g)),
                Err(e) => return Some(Err(e)),
            }
        } else {
            out.push(ScriptPart::Sql(text));
        }
    }
    Some(Ok(out))
}

fn word_is(p: &Parser, w: &str) -> bool {
    matches!(&p.peek_token().token, Token::Word(x) if x.value.eq_ignore_ascii_case(w))
}

fn expect_word(p: &mut Parser, w: &str) -> Result<()> {
    if word_is(p, w) {
        p.next_token();
        Ok(())
    } else {
        Err(SqlError::Syntax(format!(
            "syntax error at or near \"{}\": expected {w}",
            p.peek_token().token
        )))
    }
}

fn parse_if_exists(p: &mut Parser) -> bool {
    p.parse_keywords(&[Keyword::IF, Keyword::EXISTS])
}

fn parse_name(p: &mut Parser) -> Result<String> {
    Ok(p.parse_identifier()?.value)
}

fn rest_is_empty(p: &mut Parser) -> Result<()> {
    match p.peek_token().token {
        Token::EOF => Ok(()),
        Token::SemiColon => Ok(()),
        t => Err(SqlError::Syntax(format!("syntax error at or near \"{t}\""))),
    }
}

/// Optional `COMMENT '...'` and `REFRESH MANUAL|DAILY`, in any order.
fn parse_options(p: &mut Parser) -> Result<(Option<String>, Option<RefreshPolicy>)> {
    let mut comment = None;
    let mut refresh = None;
    loop {
        if p.parse_keyword(Keyword::COMMENT) {
            comment = Some(p.parse_literal_string()?);
        } else if word_is(p, "REFRESH") {
            p.next_token();
            refresh = Some(if word_is(p, "MANUAL") {
                p.next_token();
                RefreshPolicy::Manual
            } else if word_is(p, "DAILY") {
                p.next_token();
                RefreshPolicy::Daily
            } else {
                return Err(SqlError::Syntax(format!(
                    "syntax error at or near \"{}\": expected REFRESH MANUAL or REFRESH DAILY",
                    p.peek_token().token
                )));
            });
        } else {
            return Ok((comment, refresh));
        }
    }
}

fn query_text(p: &mut Parser) -> Result<String> {
    let q = p.parse_query()?;
    rest_is_empty(p)?;
    Ok(q.to_string())
}

/// Parses one group or tag statement.
pub fn parse_statement(sql: &str) -> Result<GroupStatement> {
    let d = dialect();
    let toks = tokens(sql)?;
    let mut p = Parser::new(&d).with_tokens(toks);
    let stmt = if p.parse_keyword(Keyword::CREATE) {
        if word_is(&p, "STATIC") {
            p.next_token();
            expect_word(&mut p, "GROUP")?;
            let name = parse_name(&mut p)?;
            let (comment, refresh) = parse_options(&mut p)?;
            if refresh.is_some() {
                return Err(SqlError::Syntax(
                    "a static group has no REFRESH: its members are edited with ALTER GROUP".into(),
                ));
            }
            rest_is_empty(&mut p)?;
            GroupStatement::CreateStaticGroup { name, comment }
        } else if word_is(&p, "GROUP") {
            p.next_token();
            let name = parse_name(&mut p)?;
            let (comment, refresh) = parse_options(&mut p)?;
            p.expect_keyword(Keyword::AS)?;
            let query = query_text(&mut p)?;
            GroupStatement::CreateGroup {
                name,
                comment,
                refresh: refresh.unwrap_or(RefreshPolicy::Manual),
                query,
            }
        } else {
            expect_word(&mut p, "TAG")?;
            let name = parse_name(&mut p)?;
            expect_word(&mut p, "TYPE")?;
            let ty = p.parse_data_type()?;
            let data_type = TagType::parse(&ty.to_string()).ok_or_else(|| {
                SqlError::Unsupported(format!(
                    "tag type {ty} is not supported (use VARCHAR, BIGINT, DOUBLE, BOOLEAN, TIMESTAMPTZ or VARCHAR[])"
                ))
            })?;
            let (comment, refresh) = parse_options(&mut p)?;
            let source = if word_is(&p, "EXTERNAL") {
                p.next_token();
                expect_word(&mut p, "ID")?;
                expect_word(&mut p, "TYPE")?;
                let t = p.parse_literal_string()?;
                let (comment2, refresh2) = parse_options(&mut p)?;
                if refresh.or(refresh2) == Some(RefreshPolicy::Daily) {
                    return Err(SqlError::Syntax(
                        "an external tag is refreshed by COPY, not REFRESH DAILY".into(),
                    ));
                }
                rest_is_empty(&mut p)?;
                return Ok(GroupStatement::CreateTag {
                    name,
                    data_type,
                    comment: comment.or(comment2),
                    refresh: RefreshPolicy::Manual,
                    source: TagSource::External(t),
                });
            } else {
                p.expect_keyword(Keyword::AS)?;
                TagSource::Query(query_text(&mut p)?)
            };
            GroupStatement::CreateTag {
                name,
                data_type,
                comment,
                refresh: refresh.unwrap_or(RefreshPolicy::Manual),
                source,
            }
        }
    } else if p.parse_keyword(Keyword::ALTER) {
        expect_word(&mut p, "GROUP")?;
        let name = parse_name(&mut p)?;
        let add = if p.parse_keyword(Keyword::ADD) {
            true
        } else if word_is(&p, "REMOVE") {
            p.next_token();
            false
        } else {
            return Err(SqlError::Syntax(format!(
                "syntax error at or near \"{}\": expected ADD CONTACTS or REMOVE CONTACTS",
                p.peek_token().token
            )));
        };
        expect_word(&mut p, "CONTACTS")?;
        let source = if p.parse_keyword(Keyword::VALUES) {
            let rows = p.parse_comma_separated(|p| {
                p.expect_token(&Token::LParen)?;
                let e = p.parse_expr()?;
                p.expect_token(&Token::RParen)?;
                Ok(e)
            })?;
            rest_is_empty(&mut p)?;
            let mut ids = Vec::with_capacity(rows.len());
            for e in rows {
                ids.push(literal_id(&e)?);
            }
            ContactSource::Ids(ids)
        } else {
            ContactSource::Query(query_text(&mut p)?)
        };
        GroupStatement::AlterGroup { name, add, source }
    } else if word_is(&p, "REFRESH") {
        p.next_token();
        if word_is(&p, "GROUP") {
            p.next_token();
            let name = parse_name(&mut p)?;
            rest_is_empty(&mut p)?;
            GroupStatement::RefreshGroup { name }
        } else {
            expect_word(&mut p, "TAG")?;
            let name = parse_name(&mut p)?;
            rest_is_empty(&mut p)?;
            GroupStatement::RefreshTag { name }
        }
    } else if p.parse_keyword(Keyword::DROP) {
        if word_is(&p, "GROUP") {
            p.next_token();
            let if_exists = parse_if_exists(&mut p);
            let name = parse_name(&mut p)?;
            rest_is_empty(&mut p)?;
            GroupStatement::DropGroup { name, if_exists }
        } else {
            expect_word(&mut p, "TAG")?;
            let if_exists = parse_if_exists(&mut p);
            let name = parse_name(&mut p)?;
            rest_is_empty(&mut p)?;
            GroupStatement::DropTag { name, if_exists }
        }
    } else {
        return Err(SqlError::Syntax("not a group or tag statement".into()));
    };
    Ok(stmt)
}

fn literal_id(e: &SqlExpr) -> Result<u64> {
    let text = match e {
        SqlExpr::Value(v) => v.value.to_string(),
        other => other.to_string(),
    };
    text.trim_matches('\'')
        .parse::<u64>()
        .ok()
        .filter(|i| *i > 0)
        .ok_or_else(|| SqlError::InvalidText(format!("invalid contact id: {text}")))
}

/// Checks a group or tag id: the prefix, identifier characters, length.
pub fn validate_id(name: &str, prefix: &str) -> Result<()> {
    let ok = name.len() > prefix.len()
        && name.len() <= 63
        && name.starts_with(prefix)
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(SqlError::InvalidName(format!(
            "invalid id \"{name}\": ids start with {prefix} followed by letters, digits and underscores"
        )))
    }
}

/// Checks a query's result shape before a definition is saved.
async fn check_query(ctx: &StatementContext, sql: &str, tag: Option<TagType>) -> Result<()> {
    let df = ctx.df.sql(sql).await?;
    let fields = df.schema().fields();
    match tag {
        None => {
            if fields.len() != 1 || !fields[0].data_type().is_integer() {
                return Err(SqlError::DatatypeMismatch(format!(
                    "a group's query must return one column of contact ids (BIGINT); it returns {}",
                    describe(fields)
                )));
            }
        }
        Some(t) => {
            if fields.len() != 2 || !fields[0].data_type().is_integer() {
                return Err(SqlError::DatatypeMismatch(format!(
                    "a tag's query must return two columns, contact_id and value; it returns {}",
                    describe(fields)
                )));
            }
            crate::segments::tags::check_type(t, fields[1].data_type())?;
        }
    }
    Ok(())
}

fn describe(fields: &datafusion::arrow::datatypes::Fields) -> String {
    fields
        .iter()
        .map(|f| format!("{} {}", f.name(), f.data_type()))
        .collect::<Vec<_>>()
        .join(", ")
}

// ---------------------------------------------------------------------------
// Execution

fn command(tag: &str) -> Reply {
    Reply::command(tag)
}

/// Adds a group definition with a fresh internal id: a dynamic group starts
/// `pending` (its first refresh is queued next), a static one `done` and empty.
fn add_group(
    data: &mut cohortdb_storage::catalog::CatalogData,
    name: &str,
    comment: Option<String>,
    kind: GroupKind,
    definition: Option<String>,
    refresh: RefreshPolicy,
) -> Result<()> {
    check_new_id(data, name)?;
    let id = data.next_object_id.max(1);
    data.next_object_id = id + 1;
    let dynamic = kind == GroupKind::Dynamic;
    data.groups.push(GroupDef {
        id,
        name: name.to_string(),
        comment,
        kind,
        definition,
        refresh,
        status: if dynamic {
            JobStatus::Pending
        } else {
            JobStatus::Done
        },
        members: 0,
        computed_at_ms: (!dynamic).then(crate::model::rows::now_ms),
        error: None,
        version: 0,
        last_version: 0,
    });
    Ok(())
}

fn check_new_id(data: &cohortdb_storage::catalog::CatalogData, name: &str) -> Result<()> {
    let kind = if name.starts_with("group_") {
        "group"
    } else {
        "tag"
    };
    if data.groups.iter().any(|g| g.name == name) || data.tags.iter().any(|t| t.name == name) {
        return Err(SqlError::DuplicateObject(format!(
            "{kind} \"{name}\" already exists"
        )));
    }
    if data.retired_ids.iter().any(|r| r == name) {
        return Err(SqlError::DuplicateObject(format!(
            "{kind} id \"{name}\" was used by a dropped {kind} and cannot be reused"
        )));
    }
    if data.contact_fields.iter().any(|f| f.name == name) {
        return Err(SqlError::DuplicateObject(format!(
            "\"{name}\" is already a column of contact_view"
        )));
    }
    Ok(())
}

/// Executes a group or tag statement; refreshes go through `scheduler`.
pub async fn execute(
    ctx: &StatementContext,
    scheduler: &Arc<Scheduler>,
    stmt: GroupStatement,
) -> Result<Reply> {
    let store = ctx.store.clone();
    match stmt {
        GroupStatement::CreateGroup {
            name,
            comment,
            refresh,
            query,
        } => {
            validate_id(&name, "group_")?;
            check_new_id(store.catalog().data(), &name)?;
            check_query(ctx, &query, None).await?;
            store
                .update_catalog(|data, _| {
                    add_group(
                        data,
                        &name,
                        comment,
                        GroupKind::Dynamic,
                        Some(query),
                        refresh,
                    )
                })
                .await?;
            scheduler.refresh(Target::Group(name)).await?;
            Ok(command("CREATE GROUP"))
        }
        GroupStatement::CreateStaticGroup { name, comment } => {
            validate_id(&name, "group_")?;
            store
                .update_catalog(|data, _| {
                    add_group(
                        data,
                        &name,
                        comment,
                        GroupKind::Static,
                        None,
                        RefreshPolicy::Manual,
                    )
                })
                .await?;
            Ok(command("CREATE GROUP"))
        }
        GroupStatement::AlterGroup { name, add, source } => {
            let g = store
                .catalog()
                .group(&name)
                .cloned()
                .ok_or_else(|| no_group(&name))?;
            if g.kind != GroupKind::Static {
                return Err(SqlError::Unsupported(format!(
                    "\"{name}\" is a dynamic group: its members come from its query (REFRESH GROUP); only static groups take ADD/REMOVE CONTACTS"
                )));
            }
            let set = match source {
                ContactSource::Ids(ids) => ids.into_iter().collect::<RoaringTreemap>(),
                ContactSource::Query(q) => {
                    check_query(ctx, &q, None).await?;
                    ids_of(&ctx.df.sql(&q).await?.collect().await?)?
                }
            };
            if add {
                let ids: Vec<u64> = set.iter().collect();
                let s2 = store.clone();
                let missing = tokio::task::spawn_blocking(move || -> Result<Option<u64>> {
                    let mut found = RoaringTreemap::new();
                    s2.scan_contacts(Some(&ids), &mut |id, _| {
                        found.insert(id);
                        true
                    })?;
                    Ok(ids.iter().copied().find(|i| !found.contains(*i)))
                })
                .await
                .map_err(|e| {
                    SqlError::Storage(cohortdb_storage::StorageError::Corrupt(e.to_string()))
                })??;
                if let Some(id) = missing {
                    return Err(SqlError::ForeignKey(format!(
                        "contact {id} does not exist; nothing was added to \"{name}\""
                    )));
                }
            }
            let n = set.len();
            let empty = RoaringTreemap::new();
            let mut batch = store.batch();
            if add {
                batch.edit_bitmap(BITMAP_GROUP, g.id, g.version, &set, &empty);
            } else {
                batch.edit_bitmap(BITMAP_GROUP, g.id, g.version, &empty, &set);
            }
            store.commit(batch).await?;
            note_edit();
            Ok(Reply::Command {
                tag: "ALTER GROUP".into(),
                rows: Some(n),
            })
        }
        GroupStatement::RefreshGroup { name } => {
            let g = store
                .catalog()
                .group(&name)
                .cloned()
                .ok_or_else(|| no_group(&name))?;
            if g.kind != GroupKind::Dynamic {
                return Err(SqlError::Unsupported(format!(
                    "\"{name}\" is a static group: it has no query to refresh"
                )));
            }
            scheduler.refresh(Target::Group(name)).await?;
            Ok(command("REFRESH GROUP"))
        }
        GroupStatement::DropGroup { name, if_exists } => {
            let dropped = store
                .update_catalog(|data, batch| -> Result<bool> {
                    let Some(pos) = data.groups.iter().position(|g| g.name == name) else {
                        return if if_exists {
                            Ok(false)
                        } else {
                            Err(no_group(&name))
                        };
                    };
                    let g = data.groups.remove(pos);
                    for v in 0..=g.last_version {
                        batch.delete_bitmap(BITMAP_GROUP, g.id, v);
                    }
                    data.retired_ids.push(name.clone());
                    Ok(true)
                })
                .await?;
            let _ = dropped;
            Ok(command("DROP GROUP"))
        }
        GroupStatement::CreateTag {
            name,
            data_type,
            comment,
            refresh,
            source,
        } => {
            validate_id(&name, "tag_")?;
            check_new_id(store.catalog().data(), &name)?;
            let (definition, external) = match &source {
                TagSource::Query(q) => {
                    check_query(ctx, q, Some(data_type)).await?;
                    (Some(q.clone()), None)
                }
                TagSource::External(t) => {
                    crate::segments::tags::check_id_type(t)?;
                    (None, Some(t.clone()))
                }
            };
            let is_query = definition.is_some();
            store
                .update_catalog(|data, _| -> Result<()> {
                    check_new_id(data, &name)?;
                    let id = data.next_object_id.max(1);
                    data.next_object_id = id + 1;
                    data.tags.push(TagDef {
                        id,
                        name: name.clone(),
                        comment,
                        data_type,
                        definition,
                        external_id_type: external,
                        refresh,
                        status: if is_query {
                            JobStatus::Pending
                        } else {
                            JobStatus::Done
                        },
                        members: 0,
                        computed_at_ms: None,
                        error: None,
                        version: 0,
                        last_version: 0,
                    });
                    Ok(())
                })
                .await?;
            if is_query {
                scheduler.refresh(Target::Tag(name)).await?;
            }
            Ok(command("CREATE TAG"))
        }
        GroupStatement::RefreshTag { name } => {
            let t = store
                .catalog()
                .tag(&name)
                .cloned()
                .ok_or_else(|| no_tag(&name))?;
            if t.definition.is_none() {
                return Err(SqlError::Unsupported(format!(
                    "\"{name}\" is an external tag: its values come from COPY {name} FROM STDIN"
                )));
            }
            scheduler.refresh(Target::Tag(name)).await?;
            Ok(command("REFRESH TAG"))
        }
        GroupStatement::DropTag { name, if_exists } => {
            store
                .update_catalog(|data, batch| -> Result<()> {
                    let Some(pos) = data.tags.iter().position(|t| t.name == name) else {
                        return if if_exists {
                            Ok(())
                        } else {
                            Err(no_tag(&name))
                        };
                    };
                    let t = data.tags.remove(pos);
                    for v in 0..=t.last_version {
                        batch.delete_tag_values(t.id, v);
                    }
                    batch.delete_tag_history(t.id, i32::MIN, i32::MAX);
                    data.retired_ids.push(name.clone());
                    Ok(())
                })
                .await?;
            Ok(command("DROP TAG"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_statements() {
        assert_eq!(
            parse_statement("CREATE STATIC GROUP group_form COMMENT 'submitted a form'").unwrap(),
            GroupStatement::CreateStaticGroup {
                name: "group_form".into(),
                comment: Some("submitted a form".into())
            }
        );
        match parse_statement(
            "CREATE GROUP group_vip REFRESH DAILY AS SELECT id FROM contact_view WHERE city = 'x'",
        )
        .unwrap()
        {
            GroupStatement::CreateGroup { refresh, query, .. } => {
                assert_eq!(refresh, RefreshPolicy::Daily);
                assert!(query.starts_with("SELECT id FROM contact_view"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            parse_statement("ALTER GROUP group_form ADD CONTACTS VALUES (1),(2)").unwrap(),
            GroupStatement::AlterGroup {
                name: "group_form".into(),
                add: true,
                source: ContactSource::Ids(vec![1, 2])
            }
        );
        match parse_statement(
            "CREATE TAG tag_sports TYPE VARCHAR[] EXTERNAL ID TYPE 'wechat.openid'",
        )
        .unwrap()
        {
            GroupStatement::CreateTag {
                data_type, source, ..
            } => {
                assert_eq!(data_type, TagType::VarcharArray);
                assert_eq!(source, TagSource::External("wechat.openid".into()));
            }
            other => panic!("{other:?}"),
        }
        assert!(parse_statement("CREATE GROUP group_x AS").is_err());
        let s = parse_script("CREATE STATIC GROUP group_a; SELECT 1")
            .unwrap()
            .unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(
            s[0],
            ScriptPart::Segment(GroupStatement::CreateStaticGroup {
                name: "group_a".into(),
                comment: None
            })
        );
        assert!(parse_script("SELECT 1; SELECT 2").is_none());
        let s = parse_script("SELECT ';'; CREATE STATIC GROUP group_b COMMENT 'it''s; here'")
            .unwrap()
            .unwrap();
        assert_eq!(s[0], ScriptPart::Sql("SELECT ';'".into()));
        match &s[1] {
            ScriptPart::Segment(GroupStatement::CreateStaticGroup { comment, .. }) => {
                assert_eq!(comment.as_deref(), Some("it's; here"))
            }
            other => panic!("{other:?}"),
        }
    }
}
