//! SQL-file tests.
//!
//! Every `tests/slt/**/*.slt` file becomes two trials, `<file>::simple` and
//! `<file>::extended` (`<file>` is the path under `tests/slt/` without
//! `.slt`, e.g. `contacts/validation::extended`). Each trial starts its own
//! cohortdb server on a fresh data directory and runs the file with
//! [`CohortEngine`] in that query protocol.
//!
//! Run one file: `cargo test -p cohortdb-tests --test slt -- contacts/validation`.
//!
//! Files may use the labels `simple` / `extended` (and `cohortdb`) in
//! `onlyif` / `skipif` conditions. Errors display as `<SQLSTATE>: <message>`,
//! so `statement error 22023: .*email` checks both code and message;
//! `statement error (22023)` checks only the code.

use std::path::{Path, PathBuf};

use cohortdb_tests::{CohortEngine, Protocol, TestServer};
use libtest_mimic::{Arguments, Failed, Trial};

fn main() {
    let args = Arguments::from_args();
    let root = cohortdb_tests::tests_dir().join("slt");
    let mut files = Vec::new();
    collect_slt_files(&root, &mut files);
    files.sort();

    let mut trials = Vec::new();
    for file in files {
        let relative = file.strip_prefix(&root).unwrap_or(&file).with_extension("");
        let name = relative.to_string_lossy().replace('\\', "/");
        for protocol in Protocol::ALL {
            let file = file.clone();
            trials.push(
                Trial::test(format!("{name}::{protocol}"), move || {
                    run_file(&file, protocol)
                })
                .with_kind("slt"),
            );
        }
    }
    libtest_mimic::run(&args, trials).exit();
}

/// All `*.slt` files below `dir`, recursively.
fn collect_slt_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => panic!("cannot read {}: {e}", dir.display()),
    };
    for entry in entries {
        let path = entry.expect("cannot read a directory entry").path();
        if path.is_dir() {
            collect_slt_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "slt") {
            out.push(path);
        }
    }
}

/// Runs one file against a fresh server in one protocol.
fn run_file(file: &Path, protocol: Protocol) -> Result<(), Failed> {
    let server = TestServer::start();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot build a tokio runtime: {e}"))?;
    let conn_string = server.conn_string();
    let result = runtime.block_on(async move {
        let mut runner = sqllogictest::Runner::new(move || {
            let conn_string = conn_string.clone();
            async move { CohortEngine::connect(&conn_string, protocol).await }
        });
        runner.add_label(protocol.label());
        let result = runner.run_file_async(file).await;
        runner.shutdown_async().await;
        result
    });
    match result {
        Ok(()) => Ok(()),
        Err(e) => Err(format!(
            "{} ({} protocol)\n--- server log ({}) ---\n{}\n--- end of server log ---",
            e.display(false),
            protocol,
            server.log_path().display(),
            server.log_tail(100)
        )
        .into()),
    }
}
