//! Output of benchmark results: an aligned table for people and one JSON line
//! (`--json`) for docs and scripts. Ratios compare systems measured in the
//! same run; absolute numbers depend on the machine.

use serde_json::json;

use crate::dataset::{start_day_string, Dataset};

/// One timed load of one table into one system.
#[derive(Debug, Clone)]
pub struct Measurement {
    /// `cohortdb` or `postgres`.
    pub system: &'static str,
    /// `contacts` or `events`.
    pub table: &'static str,
    /// Rows the server reported for the COPY.
    pub rows: u64,
    /// CSV bytes sent.
    pub bytes: u64,
    /// Wall-clock seconds of the COPY statement.
    pub seconds: f64,
}

impl Measurement {
    /// Rows per second.
    pub fn rows_per_sec(&self) -> f64 {
        if self.seconds > 0.0 {
            self.rows as f64 / self.seconds
        } else {
            0.0
        }
    }
}

/// Rows/s of cohortdb divided by rows/s of PostgreSQL for `table`, when both
/// were measured.
pub fn ratio(results: &[Measurement], table: &str) -> Option<f64> {
    let rate = |system: &str| {
        results
            .iter()
            .find(|m| m.system == system && m.table == table)
            .map(Measurement::rows_per_sec)
    };
    match (rate("cohortdb"), rate("postgres")) {
        (Some(c), Some(p)) if p > 0.0 => Some(c / p),
        _ => None,
    }
}

/// Describes the dataset and how it was obtained.
pub fn print_dataset(d: &Dataset) {
    let s = &d.spec;
    println!(
        "dataset: {} contacts, {} days from {}, ~{} events/contact, seed {}",
        thousands(s.contacts),
        s.days,
        start_day_string(s),
        s.events_per_contact,
        s.seed
    );
    println!(
        "files:   {}: {} ({} rows, {}), {} ({} rows, {})",
        d.dir.display(),
        file_name(&d.contacts_csv),
        thousands(d.contact_rows),
        human_bytes(d.contact_bytes),
        file_name(&d.events_csv),
        thousands(d.event_rows),
        human_bytes(d.event_bytes)
    );
    match d.generation_seconds {
        Some(secs) => println!(
            "generated in {secs:.2} s ({} events/s, {}/s)",
            thousands(per_sec(d.event_rows, secs) as u64),
            human_bytes(per_sec(d.contact_bytes + d.event_bytes, secs) as u64)
        ),
        None => println!("generation: reused existing files"),
    }
}

/// Prints the ingest table: one line per system and table.
pub fn print_ingest(results: &[Measurement]) {
    println!(
        "{:<9}  {:<8}  {:>13}  {:>9}  {:>13}  {:>10}  {:>17}",
        "system", "table", "rows", "seconds", "rows/s", "MB/s", "cohortdb/postgres"
    );
    for m in results {
        let ratio = match (m.system, ratio(results, m.table)) {
            ("cohortdb", Some(r)) => format!("{r:.2}x"),
            _ => String::new(),
        };
        println!(
            "{:<9}  {:<8}  {:>13}  {:>9.2}  {:>13}  {:>10.1}  {:>17}",
            m.system,
            m.table,
            thousands(m.rows),
            m.seconds,
            thousands(m.rows_per_sec().round() as u64),
            per_sec(m.bytes, m.seconds) / 1e6,
            ratio
        );
    }
}

/// All ingest results as one JSON object on one line.
pub fn ingest_json(d: &Dataset, results: &[Measurement]) -> String {
    json!({
        "benchmark": "ingest",
        "dataset": dataset_json(d),
        "generation": {
            "reused": d.generation_seconds.is_none(),
            "seconds": d.generation_seconds,
            "events_per_sec": d.generation_seconds.map(|secs| per_sec(d.event_rows, secs).round()),
        },
        "results": results.iter().map(|m| json!({
            "system": m.system,
            "table": m.table,
            "rows": m.rows,
            "bytes": m.bytes,
            "seconds": m.seconds,
            "rows_per_sec": m.rows_per_sec().round(),
        })).collect::<Vec<_>>(),
        "ratio_cohortdb_postgres": {
            "contacts": ratio(results, "contacts"),
            "events": ratio(results, "events"),
        },
        "machine": machine_json(),
    })
    .to_string()
}

/// The dataset's spec, generator version, rows and sizes as JSON.
pub fn dataset_json(d: &Dataset) -> serde_json::Value {
    let s = &d.spec;
    json!({
        "contacts": s.contacts,
        "days": s.days,
        "events_per_contact": s.events_per_contact,
        "start_day": start_day_string(s),
        "seed": s.seed,
        "generator_version": cohortdb_datagen::GENERATOR_VERSION,
        "contact_rows": d.contact_rows,
        "contact_bytes": d.contact_bytes,
        "event_rows": d.event_rows,
        "event_bytes": d.event_bytes,
    })
}

/// Cores, OS and architecture of this machine as JSON.
pub fn machine_json() -> serde_json::Value {
    json!({
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "os": std::env::consts::OS,
        "arch": std::env::consts::ARCH,
    })
}

fn file_name(path: &std::path::Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn per_sec(amount: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        amount as f64 / seconds
    } else {
        0.0
    }
}

/// `12345678` → `12,345,678`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Bytes with a binary unit, e.g. `2.3 GiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatting() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(12_345_678), "12,345,678");
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(3 * 1024 * 1024 / 2), "1.5 MiB");
    }

    #[test]
    fn ratios() {
        let m = |system, table, rows, seconds| Measurement {
            system,
            table,
            rows,
            bytes: 0,
            seconds,
        };
        let r = vec![
            m("postgres", "events", 100, 2.0),
            m("cohortdb", "events", 100, 0.5),
        ];
        assert_eq!(ratio(&r, "events"), Some(4.0));
        assert_eq!(ratio(&r, "contacts"), None);
    }
}
