//! The dependency map in docs/architecture.md holds: every `crate::x` path in
//! `sql/src` and `storage/src` names a folder (or file) at or below the one
//! it is written in, in the order the fenced `layers:<crate>` blocks of
//! docs/architecture.md give (top first). A lower layer reaching up — say
//! `segments` importing `session` — fails here with the file and line.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    // The runtime value, not the compile-time one: a build reused from
    // another checkout must check this checkout's files.
    let dir =
        std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into());
    Path::new(&dir)
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// The `layers:<name>` block of docs/architecture.md: layer name → rank (0 = top).
fn layers(doc: &str, name: &str) -> HashMap<String, usize> {
    let fence = format!("```text layers:{name}");
    let start = doc
        .find(&fence)
        .unwrap_or_else(|| panic!("docs/architecture.md has no {fence} block"));
    let body = &doc[start + fence.len()..];
    let end = body.find("```").expect("closing fence");
    body[..end]
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .enumerate()
        .map(|(i, w)| (w.to_string(), i))
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read dir") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The layer a source file belongs to: its top-level folder or file stem.
fn layer_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).expect("under src");
    let first = rel.components().next().expect("non-empty");
    let s = first.as_os_str().to_string_lossy();
    s.trim_end_matches(".rs").to_string()
}

/// `crate::x` references in code (comments skipped), with line numbers.
fn crate_refs(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let code = match line.find("//") {
            Some(i) => &line[..i],
            None => line,
        };
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            let before = rest[..i].chars().last();
            let tail = &rest[i + 7..];
            rest = tail;
            // `cohortdb_storage::…` or `$crate::` are not this crate's paths
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
                continue;
            }
            let name: String = tail
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.push((n + 1, name));
            }
        }
        // `use crate::{a, b}` lists
        if let Some(i) = code.find("crate::{") {
            for part in code[i + 8..].split([',', '}']) {
                let name: String = part
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    out.push((n + 1, name));
                }
            }
        }
    }
    out
}

fn check(krate: &str) -> Vec<String> {
    let root = workspace();
    let doc =
        std::fs::read_to_string(root.join("docs/architecture.md")).expect("docs/architecture.md");
    let rank = layers(&doc, krate);
    let src = root.join(krate).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut problems = Vec::new();
    for f in files {
        let me = layer_of(&src, &f);
        if me == "lib" {
            continue;
        }
        let Some(&my_rank) = rank.get(&me) else {
            problems.push(format!(
                "{}: `{me}` is not in the layers:{krate} block of docs/architecture.md",
                f.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(&f).expect("read source");
        for (line, target) in crate_refs(&text) {
            if target == me {
                continue;
            }
            match rank.get(&target) {
                Some(&r) if r > my_rank => {}
                Some(_) => problems.push(format!(
                    "{}:{line}: `{me}` uses `crate::{target}`, which is not below it in docs/architecture.md",
                    f.strip_prefix(&root).unwrap_or(&f).display()
                )),
                None => problems.push(format!(
                    "{}:{line}: `crate::{target}` is not in the layers:{krate} block",
                    f.strip_prefix(&root).unwrap_or(&f).display()
                )),
            }
        }
    }
    problems
}

#[test]
fn sql_imports_point_down() {
    let p = check("sql");
    assert!(
        p.is_empty(),
        "imports against the documented order:\n{}",
        p.join("\n")
    );
}

#[test]
fn storage_imports_point_down() {
    let p = check("storage");
    assert!(
        p.is_empty(),
        "imports against the documented order:\n{}",
        p.join("\n")
    );
}

#[test]
fn the_check_sees_an_upward_import() {
    let refs = crate_refs("use crate::session::Session; // crate::nothing\nlet x = cohortdb_storage::crate_like;\nuse crate::{model, error::Result};");
    assert_eq!(
        refs,
        vec![
            (1, "session".to_string()),
            (3, "model".to_string()),
            (3, "error".to_string())
        ]
    );
}
