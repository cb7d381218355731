//! `CREATE USER|ROLE`, `ALTER USER|ROLE`, `DROP USER|ROLE [IF EXISTS]`,
//! `GRANT role TO user`, `REVOKE role FROM user`, and `ALTER TABLE contacts
//! ALTER COLUMN c SET|DROP MASKED`: recognised by their leading words and
//! parsed here, because the SQL parser does not take PostgreSQL's role
//! options (`WITH LOGIN PASSWORD '…'`) or the masking clause.

/// What a user statement does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserAction {
    /// `CREATE USER`.
    Create,
    /// `ALTER USER`.
    Alter,
    /// `DROP USER [IF EXISTS]`.
    Drop {
        /// IF EXISTS.
        if_exists: bool,
    },
    /// `GRANT role TO user`.
    Grant {
        /// The role (as written, lower-cased).
        role: String,
    },
    /// `REVOKE role FROM user`.
    Revoke {
        /// The role (as written, lower-cased).
        role: String,
    },
}

/// `ALTER TABLE contacts ALTER COLUMN c SET MASKED | DROP MASKED`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaskStatement {
    /// The table (only `contacts` has maskable columns).
    pub table: String,
    /// The column.
    pub column: String,
    /// SET (true) or DROP (false).
    pub masked: bool,
}

/// Parses `ALTER TABLE t ALTER [COLUMN] c SET|DROP MASKED`; `None` for any
/// other text.
pub fn parse_mask(sql: &str) -> Option<MaskStatement> {
    let t = tokens(sql)?;
    let up: Vec<String> = t.iter().map(|w| w.to_ascii_uppercase()).collect();
    if up.len() < 6 || up[0] != "ALTER" || up[1] != "TABLE" || up.last()? != "MASKED" {
        return None;
    }
    let mut i = 3;
    if up.get(i)? != "ALTER" {
        return None;
    }
    i += 1;
    if up.get(i)? == "COLUMN" {
        i += 1;
    }
    let column = ident(t.get(i)?);
    let masked = match up.get(i + 1)?.as_str() {
        "SET" => true,
        "DROP" => false,
        _ => return None,
    };
    if up.len() != i + 3 {
        return None;
    }
    Some(MaskStatement {
        table: ident(&t[2]),
        column,
        masked,
    })
}

/// Parses `GRANT r [, …] TO u [, …]` / `REVOKE r [, …] FROM u [, …]`
/// naming roles (not privileges: `GRANT SELECT ON …` gives `None`).
fn parse_grant(t: &[String], grant: bool) -> Option<Vec<UserStatement>> {
    let sep = if grant { "TO" } else { "FROM" };
    let at = t.iter().position(|w| w.eq_ignore_ascii_case(sep))?;
    let roles = &t[1..at];
    let users = &t[at + 1..];
    if roles.is_empty()
        || users.is_empty()
        || t.iter().any(|w| w.eq_ignore_ascii_case("ON"))
        || t.iter().any(|w| w.eq_ignore_ascii_case("OPTION"))
    {
        return None;
    }
    let mut out = Vec::new();
    for r in roles {
        for u in users {
            let role = ident(r);
            out.push(UserStatement {
                action: if grant {
                    UserAction::Grant { role }
                } else {
                    UserAction::Revoke { role }
                },
                name: ident(u),
                password: None,
                superuser: None,
            });
        }
    }
    Some(out)
}

/// One user statement (a `DROP USER a, b` gives one per name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserStatement {
    /// What it does.
    pub action: UserAction,
    /// The user (lower-cased unless quoted).
    pub name: String,
    /// `PASSWORD '…'` (`Some(Some)`), `PASSWORD NULL` (`Some(None)`), or no
    /// PASSWORD clause (`None`).
    pub password: Option<Option<String>>,
    /// `SUPERUSER` / `NOSUPERUSER`.
    pub superuser: Option<bool>,
}

fn tokens(sql: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut chars = sql.trim().trim_end_matches(';').chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() || c == ',' {
            chars.next();
        } else if c == '\'' {
            chars.next();
            let mut s = String::from("'");
            loop {
                match chars.next() {
                    None => return None,
                    Some('\'') if chars.peek() == Some(&'\'') => {
                        chars.next();
                        s.push('\'');
                    }
                    Some('\'') => break,
                    Some(ch) => s.push(ch),
                }
            }
            out.push(s);
        } else if c == '"' {
            chars.next();
            let mut s = String::new();
            for ch in chars.by_ref() {
                if ch == '"' {
                    break;
                }
                s.push(ch);
            }
            out.push(format!("\"{s}"));
        } else {
            let mut s = String::new();
            while let Some(&ch) = chars.peek() {
                if ch.is_whitespace() || ch == ',' || ch == ';' {
                    break;
                }
                s.push(ch);
                chars.next();
            }
            if s.is_empty() {
                chars.next();
            } else {
                out.push(s);
            }
        }
    }
    Some(out)
}

fn ident(t: &str) -> String {
    match t.strip_prefix('"') {
        Some(q) => q.to_string(),
        None => t.to_ascii_lowercase(),
    }
}

/// Parses a `CREATE/ALTER/DROP USER|ROLE` statement; `None` for any other
/// text (or one whose options are not understood: the SQL parser then
/// reports it).
pub fn parse(sql: &str) -> Option<Vec<UserStatement>> {
    let head: Vec<String> = sql
        .split_whitespace()
        .take(2)
        .map(|w| w.to_ascii_uppercase())
        .collect();
    if matches!(head.first().map(String::as_str), Some("GRANT" | "REVOKE")) {
        let t = tokens(sql)?;
        return parse_grant(&t, head[0] == "GRANT");
    }
    if head.len() < 2 || !matches!(head[1].as_str(), "USER" | "ROLE") {
        return None;
    }
    if !matches!(head[0].as_str(), "CREATE" | "ALTER" | "DROP") {
        return None;
    }
    let t = tokens(sql)?;
    let mut i = 2;
    if head[0] == "DROP" {
        let mut if_exists = false;
        if t.len() > i + 1
            && t[i].eq_ignore_ascii_case("if")
            && t[i + 1].eq_ignore_ascii_case("exists")
        {
            if_exists = true;
            i += 2;
        }
        let drops: Vec<UserStatement> = t[i..]
            .iter()
            .map(|n| UserStatement {
                action: UserAction::Drop { if_exists },
                name: ident(n),
                password: None,
                superuser: None,
            })
            .collect();
        return (!drops.is_empty()).then_some(drops);
    }
    let name = ident(t.get(i)?);
    i += 1;
    let mut password: Option<Option<String>> = None;
    let mut superuser = None;
    while i < t.len() {
        let w = t[i].to_ascii_uppercase();
        match w.as_str() {
            "WITH" | "LOGIN" | "NOLOGIN" | "INHERIT" | "NOINHERIT" | "CREATEDB" | "NOCREATEDB"
            | "CREATEROLE" | "NOCREATEROLE" | "ENCRYPTED" => {}
            "SUPERUSER" => superuser = Some(true),
            "NOSUPERUSER" => superuser = Some(false),
            "PASSWORD" => {
                i += 1;
                let p = t.get(i)?;
                if p.eq_ignore_ascii_case("null") {
                    password = Some(None);
                } else {
                    password = Some(Some(p.strip_prefix('\'')?.to_string()));
                }
            }
            _ => return None,
        }
        i += 1;
    }
    let action = if head[0] == "CREATE" {
        UserAction::Create
    } else {
        UserAction::Alter
    };
    Some(vec![UserStatement {
        action,
        name,
        password,
        superuser,
    }])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(action: UserAction, name: &str, password: Option<Option<&str>>) -> Vec<UserStatement> {
        vec![UserStatement {
            action,
            name: name.into(),
            password: password.map(|p| p.map(String::from)),
            superuser: None,
        }]
    }

    #[test]
    fn statements_parse() {
        assert_eq!(
            parse("CREATE USER bob WITH PASSWORD 'it''s'"),
            Some(one(UserAction::Create, "bob", Some(Some("it's"))))
        );
        assert_eq!(
            parse("alter user Bob password 'x';"),
            Some(one(UserAction::Alter, "bob", Some(Some("x"))))
        );
        assert_eq!(
            parse("DROP USER IF EXISTS bob"),
            Some(one(UserAction::Drop { if_exists: true }, "bob", None))
        );
        assert_eq!(
            parse("ALTER ROLE bob SUPERUSER").unwrap()[0].superuser,
            Some(true)
        );
        assert!(parse("CREATE TABLE user (a int)").is_none());
        assert!(parse("SELECT 1").is_none());
        let g = parse("GRANT cohort_analyst, cohort_unmasked TO bob, Carol").unwrap();
        assert_eq!(g.len(), 4);
        assert_eq!(
            g[3],
            UserStatement {
                action: UserAction::Grant {
                    role: "cohort_unmasked".into()
                },
                name: "carol".into(),
                password: None,
                superuser: None
            }
        );
        let r = parse("revoke cohort_analyst from bob;").unwrap();
        assert_eq!(
            r[0].action,
            UserAction::Revoke {
                role: "cohort_analyst".into()
            }
        );
        assert!(parse("GRANT SELECT ON contacts TO bob").is_none());
        assert_eq!(
            parse_mask("ALTER TABLE contacts ALTER COLUMN mobile_phone SET MASKED"),
            Some(MaskStatement {
                table: "contacts".into(),
                column: "mobile_phone".into(),
                masked: true
            })
        );
        assert_eq!(
            parse_mask("alter table contacts alter email drop masked;").map(|m| m.masked),
            Some(false)
        );
        assert!(parse_mask("ALTER TABLE contacts ALTER COLUMN email SET NOT NULL").is_none());
    }
}
