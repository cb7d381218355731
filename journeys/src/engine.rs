//! The journey actor: one task that owns every run transition.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use cohortdb_sql::handler::journeys::{Cond, Definition, StepKind, Trigger};
use cohortdb_sql::{Engine, Outcome, Session};
use cohortdb_storage::journeys::{RunRecord, StepStats};
use cohortdb_storage::{EventKey, Store};
use serde_json::Value as Json;
use tokio::sync::broadcast::error::RecvError;

/// How often timers and group schedules are looked at.
const TICK: Duration = Duration::from_millis(200);

fn now_ms() -> i64 {
    cohortdb_sql::model::rows::now_ms()
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

fn sql_literal(v: &Json) -> String {
    match v {
        Json::Null => "NULL".into(),
        Json::Bool(b) => b.to_string(),
        Json::Number(n) => n.to_string(),
        Json::String(s) => format!("'{}'", s.replace('\'', "''")),
        other => format!("'{}'", other.to_string().replace('\'', "''")),
    }
}

/// The statement of an action step for `run`'s contact. Each is
/// idempotent — adding a member twice, removing it twice or setting the
/// same value again changes nothing, and a WeChat send is named by the run
/// and step — so a run found acting after a crash runs it again: its
/// effect happens once.
fn action_sql(run: &RunRecord, step: &str, kind: &StepKind) -> String {
    let c = run.contact_id;
    match kind {
        StepKind::AddToGroup(g) => format!("ALTER GROUP {g} ADD CONTACTS VALUES ({c})"),
        StepKind::RemoveFromGroup(g) => format!("ALTER GROUP {g} REMOVE CONTACTS VALUES ({c})"),
        StepKind::SetField { field, value } => format!(
            "UPDATE contacts SET \"{field}\" = {} WHERE id = {c}",
            sql_literal(value)
        ),
        StepKind::Wechat { .. } => wechat_call(run, step, kind),
        StepKind::Wait { .. }
        | StepKind::WaitEvent { .. }
        | StepKind::Branch { .. }
        | StepKind::End => String::new(),
    }
}

/// The `CALL` of a WeChat step for `run`'s contact. Its `client_send_id`
/// names the run and step, so making the call again (after a crash while
/// the step was acting) answers the first call's send instead of sending
/// twice.
fn wechat_call(run: &RunRecord, step: &str, kind: &StepKind) -> String {
    let StepKind::Wechat {
        kind,
        account,
        what,
        body,
        url,
    } = kind
    else {
        return String::new();
    };
    let mut s = format!(
        "CALL wechat_{kind}_send('{account}', 'contact:{}', {}, {}",
        run.contact_id,
        sql_literal(&Json::String(what.clone())),
        sql_literal(&Json::String(body.to_string()))
    );
    if let Some(u) = url {
        s.push_str(&format!(", {}", sql_literal(&Json::String(u.clone()))));
    }
    s.push_str(&format!(
        ", client_send_id => 'journey-run-{}-{}')",
        run.run_id,
        step.replace('\'', "''")
    ));
    s
}

struct Runner {
    engine: Arc<Engine>,
    store: Arc<Store>,
    session: Session,
    defs: HashMap<(String, u32), Arc<Definition>>,
    stats: HashMap<(String, String), StepStats>,
    /// Highest event sequence number seen (persisted as a setting).
    watermark: u64,
    /// Events handled by the start-up catch-up (not handled again when
    /// the live feed repeats them).
    caught_up: std::collections::HashSet<u64>,
    /// The waiting runs, loaded once at start and kept by `persist`, the
    /// only writer of runs, so neither the timer tick nor an event batch
    /// scans every run ever made.
    waiting: Waiting,
}

/// The waiting runs, indexed by run, by contact (an event looks up its
/// contact's runs) and by wake time (a tick takes the due ones).
#[derive(Default)]
struct Waiting {
    /// Run id → (contact, wake time).
    runs: HashMap<u64, (u64, i64)>,
    by_contact: HashMap<u64, Vec<u64>>,
    by_wake: std::collections::BTreeSet<(i64, u64)>,
}

impl Waiting {
    fn insert(&mut self, run: u64, contact: u64, wake: i64) {
        self.remove(run);
        self.runs.insert(run, (contact, wake));
        self.by_contact.entry(contact).or_default().push(run);
        self.by_wake.insert((wake, run));
    }

    fn remove(&mut self, run: u64) {
        let Some((contact, wake)) = self.runs.remove(&run) else {
            return;
        };
        self.by_wake.remove(&(wake, run));
        if let Some(v) = self.by_contact.get_mut(&contact) {
            v.retain(|r| *r != run);
            if v.is_empty() {
                self.by_contact.remove(&contact);
            }
        }
    }

    fn of_contact(&self, contact: u64) -> &[u64] {
        self.by_contact.get(&contact).map_or(&[], Vec::as_slice)
    }

    /// Runs whose wake time is at or before `now`, earliest first.
    fn due(&self, now: i64) -> Vec<u64> {
        self.by_wake
            .range(..=(now, u64::MAX))
            .map(|(_, r)| *r)
            .collect()
    }
}

/// Setting that keeps the watermark.
const WATERMARK: &str = "journeys/watermark";

/// Starts the journey actor on the current runtime.
pub fn spawn(engine: Arc<Engine>) -> tokio::task::JoinHandle<()> {
    let store = engine.store().clone();
    // subscribe first: no event committed from now on is missed
    let mut rx = store.subscribe_committed_events();
    tokio::spawn(async move {
        let session = engine.session();
        let mut r = Runner {
            engine,
            store,
            session,
            defs: HashMap::new(),
            stats: HashMap::new(),
            watermark: 0,
            caught_up: Default::default(),
            waiting: Waiting::default(),
        };
        if let Err(e) = r.recover().await {
            tracing::error!("journeys: recovery failed: {e}");
        }
        if let Err(e) = r.catch_up().await {
            tracing::error!(
                "journeys: catching up with events committed while stopped failed: {e}"
            );
        }
        loop {
            tokio::select! {
                got = rx.recv() => match got {
                    Ok(keys) => {
                        let fresh: Vec<EventKey> = keys
                            .iter()
                            .filter(|k| !r.caught_up.contains(&k.seq))
                            .copied()
                            .collect();
                        if let Err(e) = r.on_events(&fresh).await {
                            tracing::warn!("journeys: {e}");
                        }
                        if let Err(e) = r.advance_watermark(&fresh).await {
                            tracing::warn!("journeys: {e}");
                        }
                    }
                    Err(RecvError::Lagged(n)) => {
                        tracing::warn!("journeys: {n} event batches were not seen (ingest outran the engine)");
                    }
                    Err(RecvError::Closed) => break,
                },
                _ = tokio::time::sleep(TICK) => {}
            }
            if let Err(e) = r.on_tick().await {
                tracing::warn!("journeys: {e}");
            }
        }
    })
}

type Res<T> = Result<T, String>;

impl Runner {
    /// The published journeys with their parsed definitions.
    fn published(&mut self) -> Vec<(String, u32, Arc<Definition>)> {
        let catalog = self.store.catalog();
        let mut out = Vec::new();
        for j in &catalog.data().journeys {
            if j.status != "published" {
                continue;
            }
            if let Some(d) = self.def(&j.id, j.version, &j.definition) {
                out.push((j.id.clone(), j.version, d));
            }
        }
        out
    }

    fn def(&mut self, id: &str, version: u32, text: &str) -> Option<Arc<Definition>> {
        let key = (id.to_string(), version);
        if let Some(d) = self.defs.get(&key) {
            return Some(d.clone());
        }
        match Definition::parse(text) {
            Ok(d) => {
                let d = Arc::new(d);
                self.defs.insert(key, d.clone());
                Some(d)
            }
            Err(e) => {
                tracing::warn!("journeys: {id} does not parse: {e}");
                None
            }
        }
    }

    /// The current definition and status of journey `id`.
    fn journey(&mut self, id: &str) -> Option<(String, Arc<Definition>)> {
        let catalog = self.store.catalog();
        let j = catalog.data().journeys.iter().find(|j| j.id == id)?.clone();
        let d = self.def(&j.id, j.version, &j.definition)?;
        Some((j.status, d))
    }

    async fn sql(&self, sql: &str) -> Res<Outcome> {
        let mut last = None;
        for stmt in self.engine.parse(sql).map_err(|e| format!("{e}: {sql}"))? {
            last = Some(
                self.session
                    .execute(stmt)
                    .await
                    .map_err(|e| format!("{e}: {sql}"))?,
            );
        }
        last.ok_or_else(|| format!("no statement in {sql}"))
    }

    async fn count(&self, sql: &str) -> Res<i64> {
        match self.rows(sql).await? {
            Some(batches) => {
                let Some(b) = batches.first().filter(|b| b.num_rows() > 0) else {
                    return Ok(0);
                };
                let v = datafusion::arrow::compute::cast(
                    b.column(0),
                    &datafusion::arrow::datatypes::DataType::Int64,
                )
                .map_err(|e| e.to_string())?;
                let v = v
                    .as_any()
                    .downcast_ref::<datafusion::arrow::array::Int64Array>()
                    .ok_or("not a count")?;
                Ok(v.value(0))
            }
            None => Ok(0),
        }
    }

    /// The rows `sql` returns (`None`: it returns none).
    async fn rows(&self, sql: &str) -> Res<Option<Vec<datafusion::arrow::array::RecordBatch>>> {
        self.sql(sql)
            .await?
            .into_batches()
            .await
            .map_err(|e| e.to_string())
    }

    async fn ids(&self, sql: &str) -> Res<Vec<u64>> {
        let mut out = Vec::new();
        if let Some(batches) = self.rows(sql).await? {
            for b in batches {
                let v = datafusion::arrow::compute::cast(
                    b.column(0),
                    &datafusion::arrow::datatypes::DataType::Int64,
                )
                .map_err(|e| e.to_string())?;
                let v = v
                    .as_any()
                    .downcast_ref::<datafusion::arrow::array::Int64Array>()
                    .ok_or("not ids")?;
                out.extend(v.iter().flatten().map(|i| i as u64));
            }
        }
        Ok(out)
    }

    fn stat(&mut self, journey: &str, step: &str) -> Res<&mut StepStats> {
        let key = (journey.to_string(), step.to_string());
        if !self.stats.contains_key(&key) {
            let cur = self
                .store
                .step_stats(journey)
                .map_err(|e| e.to_string())?
                .into_iter()
                .find(|(s, _)| s == step)
                .map(|(_, v)| v)
                .unwrap_or_default();
            self.stats.insert(key.clone(), cur);
        }
        Ok(self.stats.get_mut(&key).expect("inserted"))
    }

    /// Commits `run` and the statistics of `steps`.
    async fn persist(&mut self, run: &RunRecord, steps: &[&str]) -> Res<()> {
        let mut b = self.store.batch();
        b.put_run(run);
        for s in steps {
            let v = self.stat(&run.journey_id, s)?.clone();
            b.put_step_stats(&run.journey_id, s, &v);
        }
        self.store.commit(b).await.map_err(|e| e.to_string())?;
        if run.status == "waiting" {
            self.waiting
                .insert(run.run_id, run.contact_id, run.wake_at.unwrap_or(i64::MAX));
        } else {
            self.waiting.remove(run.run_id);
        }
        Ok(())
    }

    /// The waiting runs of `contact`.
    fn waiting_of(&self, contact: u64) -> Res<Vec<RunRecord>> {
        let mut out = Vec::new();
        for id in self.waiting.of_contact(contact) {
            out.extend(self.store.get_run(*id).map_err(|e| e.to_string())?);
        }
        Ok(out)
    }

    /// `subscribe` and `scan_qrcode`, when some QR code has options to run.
    fn qr_types(&self) -> Vec<u32> {
        let catalog = self.store.catalog();
        if !catalog
            .data()
            .wechat_qrcodes
            .iter()
            .any(|q| q.options.as_object().is_some_and(|o| !o.is_empty()))
        {
            return Vec::new();
        }
        ["subscribe", "scan_qrcode"]
            .iter()
            .filter_map(|e| catalog.event_type(e).map(|t| t.id))
            .collect()
    }

    /// The `(channel_id, s_qrcode_id)` of the events of `key`'s contact, type and time.
    async fn qr_scenes(&self, key: &EventKey, code: &str) -> Res<Vec<(String, String)>> {
        let mut out = Vec::new();
        let sql = format!(
            "SELECT channel_id, s_qrcode_id FROM event_view WHERE contact_id = {} AND event = '{code}' \
             AND event_date = '{}' AND s_qrcode_id IS NOT NULL AND channel_id IS NOT NULL",
            key.contact,
            rfc3339(key.ts_ms)
        );
        if let Some(batches) = self.rows(&sql).await? {
            for b in batches {
                let text = |i: usize| {
                    datafusion::arrow::compute::cast(
                        b.column(i),
                        &datafusion::arrow::datatypes::DataType::Utf8,
                    )
                    .map_err(|e| e.to_string())
                };
                let (c, q) = (text(0)?, text(1)?);
                let (c, q) = (
                    datafusion::arrow::array::AsArray::as_string::<i32>(&c),
                    datafusion::arrow::array::AsArray::as_string::<i32>(&q),
                );
                for r in 0..b.num_rows() {
                    out.push((c.value(r).to_string(), q.value(r).to_string()));
                }
            }
        }
        Ok(out)
    }

    /// Runs the options of the QR code a `subscribe`/`scan_qrcode` event
    /// names: the static group add and the reply (a customer-service send
    /// through the sender's rules). Both are idempotent (the reply's
    /// `client_send_id` is the event's), and the event is marked handled
    /// after them: a crash in between repeats them without effect, so each
    /// runs once per event.
    async fn on_qr_event(&mut self, key: &EventKey, code: &str) -> Res<()> {
        if self
            .store
            .qr_event_handled(key.seq)
            .map_err(|e| e.to_string())?
        {
            return Ok(());
        }
        let catalog = self.store.catalog();
        for (channel, scene) in self.qr_scenes(key, code).await? {
            let Some(qr) = catalog
                .data()
                .wechat_qrcodes
                .iter()
                .find(|q| q.account_id == channel && q.qr_id == scene)
                .cloned()
            else {
                continue;
            };
            let c = key.contact;
            if let Some(g) = qr.options.get("add_to_group").and_then(Json::as_str) {
                if let Err(e) = self
                    .sql(&format!("ALTER GROUP {g} ADD CONTACTS VALUES ({c})"))
                    .await
                {
                    tracing::warn!("QR code {scene}: adding contact {c} to {g} failed: {e}");
                }
            }
            if let Some(reply) = qr.options.get("reply") {
                let sql = format!(
                    "CALL wechat_custom_send('{}', 'contact:{c}', {}, {}, client_send_id => 'qr-event-{}')",
                    channel.replace('\'', "''"),
                    sql_literal(reply.get("msg_type").unwrap_or(&Json::Null)),
                    sql_literal(&Json::String(
                        reply.get("content").cloned().unwrap_or_default().to_string()
                    )),
                    key.seq
                );
                match self.sql(&sql).await {
                    Ok(out) => {
                        let _ = out.into_batches().await;
                    }
                    Err(e) => tracing::warn!("QR code {scene}: reply to contact {c} failed: {e}"),
                }
            }
        }
        let mut b = self.store.batch();
        b.put_qr_event_handled(key.seq, now_ms());
        self.store.commit(b).await.map_err(|e| e.to_string())
    }

    /// Event types some published journey reacts to (triggers and
    /// `until_event` waits), and the QR-code scan events when a QR code has
    /// options.
    fn watched_types(&mut self) -> Vec<u32> {
        let catalog = self.store.catalog();
        let mut types = self.qr_types();
        for (_, _, def) in self.published() {
            if let Trigger::Event { event, .. } = &def.trigger {
                types.extend(catalog.event_type(event).map(|t| t.id));
            }
            for s in &def.steps {
                if let StepKind::WaitEvent { event, .. } = &s.kind {
                    types.extend(catalog.event_type(event).map(|t| t.id));
                }
            }
        }
        types.sort_unstable();
        types.dedup();
        types
    }

    /// Remembers the highest sequence number handled, when journeys watch events.
    async fn advance_watermark(&mut self, keys: &[EventKey]) -> Res<()> {
        let Some(max) = keys.iter().map(|k| k.seq).max() else {
            return Ok(());
        };
        if max <= self.watermark || self.watched_types().is_empty() {
            return Ok(());
        }
        self.watermark = max;
        let mut b = self.store.batch();
        b.put_setting(WATERMARK, max.to_string().as_bytes());
        self.store.commit(b).await.map_err(|e| e.to_string())
    }

    /// Events of watched types committed after the watermark (while the
    /// engine was not running) are handled now, in sequence order.
    async fn catch_up(&mut self) -> Res<()> {
        let stored = self
            .store
            .get_setting(WATERMARK)
            .map_err(|e| e.to_string())?
            .and_then(|v| String::from_utf8_lossy(&v).parse::<u64>().ok());
        let Some(w) = stored else {
            // first start: nothing before now is a trigger
            self.watermark = self.store.alloc_event_seqs(0).saturating_sub(1);
            let mut b = self.store.batch();
            b.put_setting(WATERMARK, self.watermark.to_string().as_bytes());
            return self.store.commit(b).await.map_err(|e| e.to_string());
        };
        self.watermark = w;
        let types = self.watched_types();
        if types.is_empty() {
            return Ok(());
        }
        let mut keys = Vec::new();
        self.store
            .scan_events(
                &cohortdb_storage::EventScanSpec {
                    days: None,
                    event_types: Some(types),
                    contacts: None,
                },
                &mut |k, _| {
                    if k.seq > w {
                        keys.push(*k);
                    }
                    true
                },
            )
            .map_err(|e| e.to_string())?;
        if keys.is_empty() {
            return Ok(());
        }
        keys.sort_by_key(|k| k.seq);
        tracing::info!(
            "journeys: handling {} events committed while stopped",
            keys.len()
        );
        self.caught_up = keys.iter().map(|k| k.seq).collect();
        for chunk in keys.chunks(1024) {
            self.on_events(chunk).await?;
        }
        self.advance_watermark(&keys).await
    }

    /// Runs found acting after a restart move on without acting again.
    async fn recover(&mut self) -> Res<()> {
        for run in self.store.scan_runs().map_err(|e| e.to_string())? {
            if run.status == "waiting" {
                self.waiting
                    .insert(run.run_id, run.contact_id, run.wake_at.unwrap_or(i64::MAX));
            }
        }
        for mut run in self.store.scan_runs().map_err(|e| e.to_string())? {
            if !run.acting || !matches!(run.status.as_str(), "active" | "waiting") {
                continue;
            }
            let Some((_, def)) = self.journey(&run.journey_id) else {
                continue;
            };
            run.acting = false;
            let i = def.index(&run.step).unwrap_or(0);
            // the action again: it is idempotent (`action_sql`), so whether
            // the crash came before or after it, its effect happens once
            if let Some(step) = def.steps.get(i) {
                let sql = action_sql(&run, &step.id, &step.kind);
                if !sql.is_empty() {
                    if let Err(e) = self.sql(&sql).await {
                        tracing::warn!("journeys: run {} step {}: {e}", run.run_id, step.id);
                    }
                }
            }
            self.go(&mut run, &def, def.after(i)).await?;
            self.advance(run, &def).await?;
        }
        // runs left active (a crash between steps) continue where they are
        for run in self.store.scan_runs().map_err(|e| e.to_string())? {
            if run.status == "active" {
                if let Some((_, def)) = self.journey(&run.journey_id) {
                    self.advance(run, &def).await?;
                }
            }
        }
        Ok(())
    }

    async fn event_matches(&self, key: &EventKey, code: &str, p: &Option<String>) -> Res<bool> {
        let Some(p) = p else {
            return Ok(true);
        };
        let n = self
            .count(&format!(
                "SELECT count(*) FROM event_view WHERE contact_id = {} AND event = '{code}' \
                 AND event_date = '{}' AND ({p})",
                key.contact,
                rfc3339(key.ts_ms)
            ))
            .await?;
        Ok(n > 0)
    }

    /// Which of `predicates` (None: no predicate) the event of `key`
    /// satisfies, in one query; a predicate that fails alone does not hide
    /// the others (they are then evaluated one by one).
    async fn events_match(
        &self,
        key: &EventKey,
        code: &str,
        predicates: &[Option<String>],
    ) -> Res<Vec<bool>> {
        let with: Vec<&String> = predicates.iter().flatten().collect();
        if with.len() < 2 {
            let mut out = Vec::with_capacity(predicates.len());
            for p in predicates {
                out.push(self.event_matches(key, code, p).await?);
            }
            return Ok(out);
        }
        let cols: Vec<String> = with
            .iter()
            .enumerate()
            .map(|(i, p)| format!("max(CASE WHEN ({p}) THEN 1 ELSE 0 END) AS m{i}"))
            .collect();
        let sql = format!(
            "SELECT {} FROM event_view WHERE contact_id = {} AND event = '{code}' AND event_date = '{}'",
            cols.join(", "),
            key.contact,
            rfc3339(key.ts_ms)
        );
        let mut hits = vec![false; with.len()];
        let together = async {
            if let Some(batches) = self.rows(&sql).await? {
                for b in batches {
                    for (i, hit) in hits.iter_mut().enumerate() {
                        let v = datafusion::arrow::compute::cast(
                            b.column(i),
                            &datafusion::arrow::datatypes::DataType::Int64,
                        )
                        .map_err(|e| e.to_string())?;
                        let v = v
                            .as_any()
                            .downcast_ref::<datafusion::arrow::array::Int64Array>()
                            .ok_or("not a flag")?;
                        *hit |= v.iter().any(|x| x == Some(1));
                    }
                }
            }
            Ok::<(), String>(())
        }
        .await;
        if together.is_err() {
            let mut out = Vec::with_capacity(predicates.len());
            for p in predicates {
                out.push(self.event_matches(key, code, p).await.unwrap_or(false));
            }
            return Ok(out);
        }
        let mut it = hits.into_iter();
        Ok(predicates
            .iter()
            .map(|p| match p {
                None => true,
                Some(_) => it.next().unwrap_or(false),
            })
            .collect())
    }

    async fn on_events(&mut self, keys: &[EventKey]) -> Res<()> {
        let catalog = self.store.catalog();
        // the published journeys by the event type that triggers them
        let mut triggered_by: HashMap<u32, Vec<(String, u32, Arc<Definition>)>> = HashMap::new();
        for (jid, version, def) in self.published() {
            if let Trigger::Event { event, .. } = &def.trigger {
                if let Some(t) = catalog.event_type(event) {
                    triggered_by
                        .entry(t.id)
                        .or_default()
                        .push((jid, version, def));
                }
            }
        }
        let qr_types = self.qr_types();
        // the trigger predicates of each event type, evaluated for the
        // whole batch in one query per type: (contact, ms) → flags
        let mut flags: HashMap<(u32, u64, i64), Vec<bool>> = HashMap::new();
        let mut evaluated: std::collections::HashSet<u32> = Default::default();
        for (t, js) in &triggered_by {
            let preds: Vec<&String> = js
                .iter()
                .filter_map(|(_, _, d)| match &d.trigger {
                    Trigger::Event { predicate, .. } => predicate.as_ref(),
                    _ => None,
                })
                .collect();
            let mine: Vec<&EventKey> = keys.iter().filter(|k| k.event_type == *t).collect();
            if preds.len() < 2 || mine.len() < 2 {
                continue;
            }
            let Some(code) = catalog.event_type_by_id(*t).map(|x| x.event.clone()) else {
                continue;
            };
            let mut contacts: Vec<u64> = mine.iter().map(|k| k.contact).collect();
            contacts.sort_unstable();
            contacts.dedup();
            let (lo, hi) = mine.iter().fold((i64::MAX, i64::MIN), |(lo, hi), k| {
                (lo.min(k.ts_ms), hi.max(k.ts_ms))
            });
            let cols: Vec<String> = preds
                .iter()
                .enumerate()
                .map(|(i, p)| format!("CASE WHEN ({p}) THEN 1 ELSE 0 END AS m{i}"))
                .collect();
            let sql = format!(
                "SELECT contact_id, CAST(round(extract(epoch FROM event_date) * 1000) AS BIGINT) AS ms, {} \
                 FROM event_view WHERE event = '{code}' AND event_date >= '{}' AND event_date <= '{}' \
                 AND contact_id IN ({})",
                cols.join(", "),
                rfc3339(lo),
                rfc3339(hi),
                contacts.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
            );
            let got = async {
                let mut out: HashMap<(u32, u64, i64), Vec<bool>> = HashMap::new();
                if let Some(batches) = self.rows(&sql).await? {
                    for b in batches {
                        let int = |i: usize| -> Res<datafusion::arrow::array::ArrayRef> {
                            datafusion::arrow::compute::cast(
                                b.column(i),
                                &datafusion::arrow::datatypes::DataType::Int64,
                            )
                            .map_err(|e| e.to_string())
                        };
                        let cols: Vec<datafusion::arrow::array::ArrayRef> =
                            (0..b.num_columns()).map(int).collect::<Res<_>>()?;
                        let col = |i: usize| {
                            cols[i]
                                .as_any()
                                .downcast_ref::<datafusion::arrow::array::Int64Array>()
                                .expect("cast to Int64")
                        };
                        for r in 0..b.num_rows() {
                            let e = out
                                .entry((*t, col(0).value(r) as u64, col(1).value(r)))
                                .or_insert_with(|| vec![false; preds.len()]);
                            for (i, f) in e.iter_mut().enumerate() {
                                *f |= col(2 + i).value(r) == 1;
                            }
                        }
                    }
                }
                Ok::<_, String>(out)
            }
            .await;
            // on an error the events are evaluated one by one below
            if let Ok(got) = got {
                flags.extend(got);
                evaluated.insert(*t);
            }
        }
        for key in keys {
            let Some(code) = catalog
                .event_type_by_id(key.event_type)
                .map(|t| t.event.clone())
            else {
                continue;
            };
            if qr_types.contains(&key.event_type) {
                self.on_qr_event(key, &code).await?;
            }
            // waiting runs of this contact that wait for an event
            let mut waiting = self.waiting_of(key.contact)?;
            for run in waiting.iter_mut().filter(|r| r.status == "waiting") {
                let Some((status, def)) = self.journey(&run.journey_id) else {
                    continue;
                };
                if status != "published" {
                    continue;
                }
                let Some(i) = def.index(&run.step) else {
                    continue;
                };
                if let StepKind::WaitEvent {
                    event, predicate, ..
                } = &def.steps[i].kind
                {
                    if event == &code && self.event_matches(key, &code, predicate).await? {
                        let mut r = run.clone();
                        self.go(&mut r, &def, def.after(i)).await?;
                        run.status = r.status.clone();
                        self.advance(r, &def).await?;
                    }
                }
            }
            // the journeys this event may start: their predicates are
            // evaluated together, in one query over the event
            let mut candidates = Vec::new();
            for (jid, version, def) in triggered_by.get(&key.event_type).into_iter().flatten() {
                if self.may_enter(jid, def, key.contact)? {
                    candidates.push((jid, *version, def));
                }
            }
            let predicates: Vec<Option<String>> = candidates
                .iter()
                .map(|(_, _, def)| match &def.trigger {
                    Trigger::Event { predicate, .. } => predicate.clone(),
                    _ => None,
                })
                .collect();
            let matched = if evaluated.contains(&key.event_type) {
                // the batch query's flags, in the order of the journeys
                // with a predicate (all of them candidates or not)
                let all = flags.get(&(key.event_type, key.contact, key.ts_ms));
                let order: Vec<&str> = triggered_by
                    .get(&key.event_type)
                    .into_iter()
                    .flatten()
                    .filter(|(_, _, d)| {
                        matches!(
                            &d.trigger,
                            Trigger::Event {
                                predicate: Some(_),
                                ..
                            }
                        )
                    })
                    .map(|(j, _, _)| j.as_str())
                    .collect();
                candidates
                    .iter()
                    .zip(&predicates)
                    .map(|((jid, _, _), p)| match p {
                        None => true,
                        Some(_) => order
                            .iter()
                            .position(|j| j == jid)
                            .and_then(|i| all.and_then(|f| f.get(i)).copied())
                            .unwrap_or(false),
                    })
                    .collect()
            } else {
                self.events_match(key, &code, &predicates).await?
            };
            for ((jid, version, def), yes) in candidates.into_iter().zip(matched) {
                if yes {
                    self.start(jid, version, def, key.contact).await?;
                }
            }
        }
        Ok(())
    }

    fn may_enter(&self, jid: &str, def: &Definition, contact: u64) -> Res<bool> {
        Ok(
            match self
                .store
                .latest_run(jid, contact)
                .map_err(|e| e.to_string())?
            {
                None => true,
                Some(_) if !def.reentry_always => false,
                Some(r) => !matches!(r.status.as_str(), "active" | "waiting"),
            },
        )
    }

    async fn start(
        &mut self,
        jid: &str,
        version: u32,
        def: &Arc<Definition>,
        contact: u64,
    ) -> Res<()> {
        let now = now_ms();
        let run = RunRecord {
            run_id: self.store.alloc_run_id(),
            journey_id: jid.to_string(),
            version,
            contact_id: contact,
            status: "active".into(),
            step: def.steps[0].id.clone(),
            started_at: now,
            updated_at: now,
            wake_at: None,
            acting: false,
        };
        self.stat(jid, &def.steps[0].id)?.entered += 1;
        let first = def.steps[0].id.clone();
        self.persist(&run, &[&first]).await?;
        self.advance(run, def).await
    }

    /// Leaves the current step (completed) for step `next` (or completes the run).
    async fn go(&mut self, run: &mut RunRecord, def: &Definition, next: Option<usize>) -> Res<()> {
        let cur = run.step.clone();
        self.stat(&run.journey_id, &cur)?.completed += 1;
        run.updated_at = now_ms();
        run.wake_at = None;
        run.acting = false;
        match next {
            None => {
                run.status = "completed".into();
                self.persist(run, &[&cur]).await
            }
            Some(j) => {
                let to = def.steps[j].id.clone();
                run.step = to.clone();
                run.status = "active".into();
                self.stat(&run.journey_id, &to)?.entered += 1;
                self.persist(run, &[&cur, &to]).await
            }
        }
    }

    async fn fail(&mut self, mut run: RunRecord, why: String) -> Res<()> {
        tracing::warn!(
            "journeys: run {} of {} failed at {}: {why}",
            run.run_id,
            run.journey_id,
            run.step
        );
        let cur = run.step.clone();
        self.stat(&run.journey_id, &cur)?.failed += 1;
        run.status = "failed".into();
        run.acting = false;
        run.updated_at = now_ms();
        self.persist(&run, &[&cur]).await
    }

    /// Runs steps until the run waits, completes or fails.
    async fn advance(&mut self, mut run: RunRecord, def: &Arc<Definition>) -> Res<()> {
        for _ in 0..1000 {
            if run.status != "active" {
                return Ok(());
            }
            let Some(i) = def.index(&run.step) else {
                return self.fail(run, "the step no longer exists".into()).await;
            };
            let c = run.contact_id;
            let step = def.steps[i].clone();
            match &step.kind {
                StepKind::Wait { ms } => {
                    run.status = "waiting".into();
                    run.wake_at = Some(now_ms() + ms);
                    run.updated_at = now_ms();
                    return self.persist(&run, &[]).await;
                }
                StepKind::WaitEvent { timeout_ms, .. } => {
                    run.status = "waiting".into();
                    run.wake_at = Some(now_ms() + timeout_ms);
                    run.updated_at = now_ms();
                    return self.persist(&run, &[]).await;
                }
                StepKind::End => {
                    self.go(&mut run, def, None).await?;
                }
                StepKind::Branch {
                    cond,
                    then,
                    otherwise,
                } => {
                    let yes = match cond {
                        Cond::Where(p) => {
                            self.count(&format!("SELECT count(*) FROM contact_view WHERE id = {c} AND ({p})"))
                                .await
                        }
                        Cond::InGroup(g) => {
                            self.count(&format!("SELECT count(*) FROM contact_view WHERE id = {c} AND \"{g}\""))
                                .await
                        }
                        Cond::DidEvent { event, days } => {
                            self.count(&format!(
                                "SELECT count(*) FROM event_view WHERE contact_id = {c} AND event = '{event}' \
                                 AND event_date >= '{}'",
                                rfc3339(now_ms() - days * 86_400_000)
                            ))
                            .await
                        }
                    };
                    match yes {
                        Ok(n) => {
                            let to = if n > 0 { then } else { otherwise };
                            self.go(&mut run, def, def.index(to)).await?;
                        }
                        Err(e) => return self.fail(run, e).await,
                    }
                }
                action => {
                    let sql = action_sql(&run, &step.id, action);
                    // at most once: committed as acting before the action
                    run.acting = true;
                    run.updated_at = now_ms();
                    self.persist(&run, &[]).await?;
                    match self.sql(&sql).await {
                        Ok(out) => {
                            let _ = out.into_batches().await;
                            self.go(&mut run, def, def.after(i)).await?;
                        }
                        Err(e) => return self.fail(run, e).await,
                    }
                }
            }
        }
        self.fail(run, "more than 1000 steps without a wait".into())
            .await
    }

    async fn on_tick(&mut self) -> Res<()> {
        let now = now_ms();
        for id in self.waiting.due(now) {
            let Some(mut run) = self.store.get_run(id).map_err(|e| e.to_string())? else {
                self.waiting.remove(id);
                continue;
            };
            if run.status != "waiting" {
                self.waiting.remove(id);
                continue;
            }
            if let Some(t) = run.wake_at.filter(|t| *t > now) {
                self.waiting.insert(id, run.contact_id, t);
                continue;
            }
            let Some((status, def)) = self.journey(&run.journey_id) else {
                // its journey is gone: nothing will wake it
                self.waiting.remove(id);
                continue;
            };
            let Some(i) = def.index(&run.step) else {
                continue;
            };
            if status != "published" {
                // a stopped journey's waiting runs end at their next step
                self.go(&mut run, &def, None).await?;
                continue;
            }
            let next = match &def.steps[i].kind {
                StepKind::WaitEvent { timeout_next, .. } => {
                    timeout_next.as_deref().and_then(|t| def.index(t))
                }
                _ => def.after(i),
            };
            self.go(&mut run, &def, next).await?;
            self.advance(run, &def).await?;
        }
        self.group_triggers(now).await
    }

    async fn group_triggers(&mut self, now: i64) -> Res<()> {
        let tz = self.engine.timezone();
        for (jid, version, def) in self.published() {
            let (group, due_key) = match &def.trigger {
                Trigger::GroupAt { group, at } if *at <= now => (group.clone(), "at".to_string()),
                Trigger::GroupDaily { group, minute } => {
                    use chrono::{TimeZone, Timelike};
                    let local = tz.timestamp_millis_opt(now).single().ok_or("bad time")?;
                    if local.hour() * 60 + local.minute() < *minute {
                        continue;
                    }
                    (group.clone(), local.format("%Y-%m-%d").to_string())
                }
                _ => continue,
            };
            let marker = format!("journey_fired/{jid}");
            let fired = self
                .store
                .get_setting(&marker)
                .map_err(|e| e.to_string())?
                .map(|v| String::from_utf8_lossy(&v).to_string());
            let stamp = format!("{version}:{due_key}");
            if fired.as_deref() == Some(stamp.as_str()) {
                continue;
            }
            let mut b = self.store.batch();
            b.put_setting(&marker, stamp.as_bytes());
            self.store.commit(b).await.map_err(|e| e.to_string())?;
            let members = self
                .ids(&format!("SELECT id FROM contact_view WHERE \"{group}\""))
                .await?;
            for c in members {
                if self.may_enter(&jid, &def, c)? {
                    self.start(&jid, version, &def, c).await?;
                }
            }
        }
        Ok(())
    }
}
