//! `CREATE USER|ROLE`, `ALTER USER|ROLE`, `DROP USER|ROLE [IF EXISTS]`:
//! recognised by their leading words and parsed here, because the SQL parser
//! does not take PostgreSQL's role options (`WITH LOGIN PASSWORD '…'`).

/// What a user statement does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    }
}
