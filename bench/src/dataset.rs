//! The benchmark dataset: a [`DatasetSpec`] from the command line and its two
//! CSV files, generated once into a directory and reused by later runs with
//! the same spec (a manifest records spec, generator version, rows and sizes).

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use cohortdb_datagen::{
    event_count_estimate, write_contacts_csv, write_events_csv, DatasetSpec, GENERATOR_VERSION,
};

use crate::Result;

/// Command-line options that choose the dataset.
#[derive(clap::Args, Debug, Clone)]
pub struct DataArgs {
    /// Number of contacts (ids 1..=N).
    #[arg(long, default_value_t = 100_000)]
    pub contacts: u64,
    /// Length of the event period in days.
    #[arg(long, default_value_t = 30)]
    pub days: u32,
    /// Average number of events per contact over the period.
    #[arg(long, default_value_t = 100)]
    pub events_per_contact: u32,
    /// First day of the period (YYYY-MM-DD, UTC).
    #[arg(long, default_value = "2025-06-01")]
    pub start_day: String,
    /// Seed of the generator (same spec and seed => byte-identical files).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Directory for the CSV files [default: /tmp/cohortdb-bench/<spec>].
    #[arg(long, value_name = "DIR")]
    pub csv_dir: Option<PathBuf>,
}

impl DataArgs {
    /// The generator spec these options describe.
    pub fn spec(&self) -> Result<DatasetSpec> {
        Ok(DatasetSpec {
            contacts: self.contacts,
            days: self.days,
            events_per_contact: self.events_per_contact,
            start_day: parse_day(&self.start_day)?,
            seed: self.seed,
        })
    }
}

/// Parses `YYYY-MM-DD`.
fn parse_day(s: &str) -> Result<(i32, u32, u32)> {
    let bad = || format!("invalid --start-day {s:?}: expected YYYY-MM-DD");
    let mut parts = s.trim().splitn(3, '-');
    let (y, m, d) = match (parts.next(), parts.next(), parts.next()) {
        (Some(y), Some(m), Some(d)) => (y, m, d),
        _ => return Err(bad().into()),
    };
    let y: i32 = y.parse().map_err(|_| bad())?;
    let m: u32 = m.parse().map_err(|_| bad())?;
    let d: u32 = d.parse().map_err(|_| bad())?;
    if !(1000..=9999).contains(&y) || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return Err(bad().into());
    }
    Ok((y, m, d))
}

/// `YYYY-MM-DD` of a spec's first day.
pub fn start_day_string(spec: &DatasetSpec) -> String {
    let (y, m, d) = spec.start_day;
    format!("{y:04}-{m:02}-{d:02}")
}

/// Short directory name identifying a spec.
fn spec_key(spec: &DatasetSpec) -> String {
    let (y, m, d) = spec.start_day;
    format!(
        "c{}-d{}-e{}-s{}-{y:04}{m:02}{d:02}",
        spec.contacts, spec.days, spec.events_per_contact, spec.seed
    )
}

/// The generated (or reused) CSV files of a spec.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub spec: DatasetSpec,
    pub dir: PathBuf,
    pub contacts_csv: PathBuf,
    pub events_csv: PathBuf,
    pub contact_rows: u64,
    pub contact_bytes: u64,
    pub event_rows: u64,
    pub event_bytes: u64,
    /// Seconds spent generating both files, or `None` when they were reused.
    pub generation_seconds: Option<f64>,
}

const MANIFEST: &str = "manifest.txt";
const CONTACTS_FILE: &str = "contacts.csv";
const EVENTS_FILE: &str = "events.csv";
/// Write buffer of the generator.
const WRITE_BUFFER: usize = 1 << 20;

/// First manifest line: everything that determines the files' content.
fn manifest_header(spec: &DatasetSpec) -> String {
    format!(
        "cohortdb-datagen generator={GENERATOR_VERSION} contacts={} days={} events_per_contact={} start_day={} seed={}",
        spec.contacts,
        spec.days,
        spec.events_per_contact,
        start_day_string(spec),
        spec.seed
    )
}

/// Generates the CSV files for `args` unless a complete set for the same spec
/// already exists in the directory. Blocking (CPU and disk bound).
pub fn prepare(args: &DataArgs) -> Result<Dataset> {
    let spec = args.spec()?;
    let dir = args
        .csv_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("/tmp/cohortdb-bench").join(spec_key(&spec)));
    let contacts_csv = dir.join(CONTACTS_FILE);
    let events_csv = dir.join(EVENTS_FILE);
    let header = manifest_header(&spec);

    let dataset =
        |(contact_rows, contact_bytes, event_rows, event_bytes), generation_seconds| Dataset {
            spec: spec.clone(),
            dir: dir.clone(),
            contacts_csv: contacts_csv.clone(),
            events_csv: events_csv.clone(),
            contact_rows,
            contact_bytes,
            event_rows,
            event_bytes,
            generation_seconds,
        };
    if let Some(counts) = read_manifest(&dir, &header, &contacts_csv, &events_csv) {
        return Ok(dataset(counts, None));
    }

    fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let _ = fs::remove_file(dir.join(MANIFEST));
    let expected = event_count_estimate(&spec);
    eprintln!(
        "generating {} contacts and {} events (~{}) into {} ...",
        spec.contacts,
        expected,
        crate::report::human_bytes(expected.saturating_mul(240)),
        dir.display()
    );
    let started = Instant::now();
    let (contact_rows, contact_bytes) = generate(&contacts_csv, |w| write_contacts_csv(&spec, w))?;
    let (event_rows, event_bytes) = generate(&events_csv, |w| write_events_csv(&spec, w))?;
    let seconds = started.elapsed().as_secs_f64();

    let manifest = format!(
        "{header}\n{CONTACTS_FILE} rows={contact_rows} bytes={contact_bytes}\n{EVENTS_FILE} rows={event_rows} bytes={event_bytes}\n"
    );
    fs::write(dir.join(MANIFEST), manifest)?;
    Ok(dataset(
        (contact_rows, contact_bytes, event_rows, event_bytes),
        Some(seconds),
    ))
}

/// Writes one file through a temporary name; returns (rows, bytes).
fn generate(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> std::io::Result<u64>,
) -> Result<(u64, u64)> {
    let tmp = path.with_extension("csv.partial");
    let file = File::create(&tmp).map_err(|e| format!("create {}: {e}", tmp.display()))?;
    let mut w = BufWriter::with_capacity(WRITE_BUFFER, file);
    let rows = write(&mut w).map_err(|e| format!("write {}: {e}", tmp.display()))?;
    w.flush()?;
    drop(w);
    fs::rename(&tmp, path)?;
    let bytes = fs::metadata(path)?.len();
    Ok((rows, bytes))
}

/// `(contact rows, contact bytes, event rows, event bytes)` from a manifest
/// that matches `header` and the files on disk.
fn read_manifest(
    dir: &Path,
    header: &str,
    contacts: &Path,
    events: &Path,
) -> Option<(u64, u64, u64, u64)> {
    let text = fs::read_to_string(dir.join(MANIFEST)).ok()?;
    let mut lines = text.lines();
    if lines.next()? != header {
        return None;
    }
    let mut entry = |name: &str, path: &Path| -> Option<(u64, u64)> {
        let line = lines.next()?;
        let mut words = line.split_whitespace();
        if words.next()? != name {
            return None;
        }
        let rows = words.next()?.strip_prefix("rows=")?.parse().ok()?;
        let bytes: u64 = words.next()?.strip_prefix("bytes=")?.parse().ok()?;
        (fs::metadata(path).ok()?.len() == bytes).then_some((rows, bytes))
    };
    let (cr, cb) = entry(CONTACTS_FILE, contacts)?;
    let (er, eb) = entry(EVENTS_FILE, events)?;
    Some((cr, cb, er, eb))
}
