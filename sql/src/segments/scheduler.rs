//! The group/tag scheduler: an actor that runs refreshes one at a time from a
//! bounded queue, moves each through `pending → computing → computed →
//! materializing → done` (or `failed` with the error), and starts the
//! `REFRESH DAILY` definitions at 02:00 server time.
//!
//! A refresh computes the new membership (or tag values) completely in memory,
//! then writes it under a new version and switches the definition to that
//! version in the same atomic batch as the catalog change: readers see the
//! old complete result until `done`. The version before the old one is
//! deleted then; the old one stays for readers still holding it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use chrono::{TimeZone, Timelike};
use cohortdb_storage::groups::JobStatus;
use cohortdb_storage::keys::BITMAP_GROUP;
use cohortdb_storage::{GroupKind, RefreshPolicy, Store};
use datafusion::error::DataFusionError;
use tokio::sync::{mpsc, oneshot};

use crate::error::{Result, SqlError};
use crate::runtime::{ContextSource, StatementContext};
use crate::segments::membership::{ids_of, no_group, no_tag};

/// Jobs that may wait in the queue.
pub const QUEUE: usize = 64;
/// Hour (server time) of the daily refresh.
pub const DAILY_HOUR: u32 = 2;

/// What a job refreshes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// A dynamic group.
    Group(String),
    /// A SQL tag.
    Tag(String),
}

/// What a waiter learns: success, or the error (the original for the first
/// waiter, its text for the others).
type JobResult = std::result::Result<(), (String, Option<SqlError>)>;
type Waiter = oneshot::Sender<JobResult>;

/// The scheduler (one per engine, shared as `Arc<Scheduler>`).
#[derive(Default)]
pub struct Scheduler {
    source: OnceLock<Weak<dyn ContextSource>>,
    tx: OnceLock<mpsc::Sender<Target>>,
    /// Jobs queued or running, with who waits for them.
    jobs: Mutex<HashMap<Target, Vec<Waiter>>>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Scheduler")
    }
}

impl Scheduler {
    /// Connects the scheduler to the engine that makes its statement
    /// contexts: starts the actor, marks jobs a previous process left
    /// unfinished as failed, and starts the daily timer. Does nothing more
    /// outside a tokio runtime (the actor then starts on first use).
    pub fn attach(self: &Arc<Self>, source: Weak<dyn ContextSource>) {
        let _ = self.source.set(source);
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        // Before anything can be queued: the writer is a thread of its own,
        // so this completes without the runtime.
        if let Some(ctx) = self.context() {
            if let Err(err) = futures::executor::block_on(recover(&ctx.store)) {
                tracing::warn!("could not mark interrupted refreshes as failed: {err}");
            }
        }
        self.sender();
        tokio::spawn(daily_loop(Arc::downgrade(self)));
    }

    /// A fresh statement context, unless the engine is gone.
    fn context(&self) -> Option<StatementContext> {
        self.source
            .get()
            .and_then(Weak::upgrade)
            .map(|s| s.statement_context())
    }

    fn sender(self: &Arc<Self>) -> &mpsc::Sender<Target> {
        self.tx.get_or_init(|| {
            let (tx, rx) = mpsc::channel(QUEUE);
            tokio::spawn(actor(Arc::downgrade(self), rx));
            tx
        })
    }

    /// Queues a refresh of `target` (joining one already queued or running)
    /// and waits until it is done or failed.
    pub async fn refresh(self: &Arc<Self>, target: Target) -> Result<()> {
        let rx = self.submit(target.clone()).await?;
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err((_, Some(e)))) => Err(e),
            Ok(Err((msg, None))) => Err(SqlError::DataFusion(DataFusionError::Execution(msg))),
            Err(_) => Err(SqlError::Cancelled(
                "the refresh was interrupted (server shutting down)".into(),
            )),
        }
    }

    async fn submit(self: &Arc<Self>, target: Target) -> Result<oneshot::Receiver<JobResult>> {
        let (tx, rx) = oneshot::channel();
        {
            let mut jobs = self.jobs.lock().expect("jobs lock");
            if let Some(w) = jobs.get_mut(&target) {
                w.push(tx);
                return Ok(rx);
            }
            jobs.insert(target.clone(), vec![tx]);
        }
        let r = match self.context() {
            Some(ctx) => set_status(&ctx.store, &target, JobStatus::Pending, None).await,
            None => Err(SqlError::Cancelled("the server is shutting down".into())),
        };
        let r = r.and_then(|_| {
            self.sender().try_send(target.clone()).map_err(|_| {
                SqlError::ProgramLimit(format!(
                    "the refresh queue is full ({QUEUE} jobs); try again later"
                ))
            })
        });
        if let Err(e) = r {
            self.jobs.lock().expect("jobs lock").remove(&target);
            return Err(e);
        }
        Ok(rx)
    }
}

async fn actor(scheduler: Weak<Scheduler>, mut rx: mpsc::Receiver<Target>) {
    while let Some(target) = rx.recv().await {
        let Some(s) = scheduler.upgrade() else { break };
        let Some(ctx) = s.context() else { break };
        let r = match &target {
            Target::Group(n) => run_group(&ctx, n).await,
            Target::Tag(n) => crate::segments::tags::run_tag(&ctx, n).await,
        };
        let (msg, mut err) = match r {
            Ok(()) => (None, None),
            Err(err) => {
                let msg = err.to_string();
                tracing::warn!("refresh of {target:?} failed: {msg}");
                if let Err(e2) =
                    set_status(&ctx.store, &target, JobStatus::Failed, Some(msg.clone())).await
                {
                    tracing::warn!("could not record the failure of {target:?}: {e2}");
                }
                (Some(msg), Some(err))
            }
        };
        let waiters = s
            .jobs
            .lock()
            .expect("jobs lock")
            .remove(&target)
            .unwrap_or_default();
        for w in waiters {
            let r = match &msg {
                None => Ok(()),
                Some(m) => Err((m.clone(), err.take())),
            };
            let _ = w.send(r);
        }
    }
}

/// Records a status (and error) of a group or tag.
pub async fn set_status(
    store: &Store,
    target: &Target,
    status: JobStatus,
    error: Option<String>,
) -> Result<()> {
    store
        .update_catalog(|data, _| -> Result<()> {
            match target {
                Target::Group(n) => {
                    let g = data
                        .groups
                        .iter_mut()
                        .find(|g| &g.name == n)
                        .ok_or_else(|| no_group(n))?;
                    g.status = status;
                    g.error = error;
                }
                Target::Tag(n) => {
                    let t = data
                        .tags
                        .iter_mut()
                        .find(|t| &t.name == n)
                        .ok_or_else(|| no_tag(n))?;
                    t.status = status;
                    t.error = error;
                }
            }
            Ok(())
        })
        .await
}

/// Runs one refresh of a dynamic group.
async fn run_group(ctx: &StatementContext, name: &str) -> Result<()> {
    let target = Target::Group(name.to_string());
    let g = ctx
        .store
        .catalog()
        .group(name)
        .cloned()
        .ok_or_else(|| no_group(name))?;
    let Some(query) = g.definition.clone() else {
        return Err(SqlError::Unsupported(format!(
            "\"{name}\" is a static group"
        )));
    };
    set_status(&ctx.store, &target, JobStatus::Computing, None).await?;
    let batches = ctx.df.sql(&query).await?.collect().await?;
    let set = ids_of(&batches)?;
    set_status(&ctx.store, &target, JobStatus::Computed, None).await?;
    set_status(&ctx.store, &target, JobStatus::Materializing, None).await?;
    let members = set.len();
    ctx.store
        .update_catalog(|data, batch| -> Result<()> {
            let g = data
                .groups
                .iter_mut()
                .find(|g| g.name == name && g.kind == GroupKind::Dynamic)
                .ok_or_else(|| no_group(name))?;
            let new = g.last_version + 1;
            batch.put_bitmap(BITMAP_GROUP, g.id, new, &set);
            if g.version > 0 {
                batch.delete_bitmap(BITMAP_GROUP, g.id, g.version - 1);
            }
            g.version = new;
            g.last_version = new;
            g.members = members;
            g.computed_at_ms = Some(crate::model::rows::now_ms());
            g.status = JobStatus::Done;
            g.error = None;
            Ok(())
        })
        .await
}

/// Marks jobs left in progress by a previous process as failed: their old
/// result stands (nothing of an unfinished refresh is ever visible).
async fn recover(store: &Store) -> Result<()> {
    let cat = store.catalog();
    let any = cat.data().groups.iter().any(|g| g.status.in_progress())
        || cat.data().tags.iter().any(|t| t.status.in_progress());
    if !any {
        return Ok(());
    }
    let msg = "interrupted by a server restart; the previous result stands (run REFRESH again)";
    store
        .update_catalog(|data, _| -> Result<()> {
            for g in data.groups.iter_mut().filter(|g| g.status.in_progress()) {
                g.status = JobStatus::Failed;
                g.error = Some(msg.into());
            }
            for t in data.tags.iter_mut().filter(|t| t.status.in_progress()) {
                t.status = JobStatus::Failed;
                t.error = Some(msg.into());
            }
            Ok(())
        })
        .await
}

/// Time until the next `DAILY_HOUR:00` in `tz` after `now`.
pub fn until_next_daily(now: chrono::DateTime<chrono::Utc>, tz: chrono_tz::Tz) -> Duration {
    let local = now.with_timezone(&tz);
    let mut day = local.date_naive();
    if local.hour() >= DAILY_HOUR {
        day = day.succ_opt().unwrap_or(day);
    }
    let at = day
        .and_hms_opt(DAILY_HOUR, 0, 0)
        .and_then(|t| tz.from_local_datetime(&t).earliest())
        .map(|t| t.with_timezone(&chrono::Utc))
        .unwrap_or(now + chrono::Duration::hours(24));
    (at - now).to_std().unwrap_or(Duration::from_secs(60))
}

async fn daily_loop(scheduler: Weak<Scheduler>) {
    loop {
        let tz = match scheduler.upgrade().and_then(|s| s.context()) {
            Some(ctx) => ctx.tz,
            None => return,
        };
        tokio::time::sleep(until_next_daily(chrono::Utc::now(), tz)).await;
        let Some(s) = scheduler.upgrade() else { return };
        let Some(ctx) = s.context() else { return };
        let cat = ctx.store.catalog();
        let mut targets: Vec<Target> = cat
            .data()
            .groups
            .iter()
            .filter(|g| g.refresh == RefreshPolicy::Daily && g.kind == GroupKind::Dynamic)
            .map(|g| Target::Group(g.name.clone()))
            .collect();
        targets.extend(
            cat.data()
                .tags
                .iter()
                .filter(|t| t.refresh == RefreshPolicy::Daily && t.definition.is_some())
                .map(|t| Target::Tag(t.name.clone())),
        );
        for t in targets {
            // Failures are recorded in groups/tags; the server keeps serving.
            match s.submit(t.clone()).await {
                Ok(rx) => {
                    let _ = rx.await;
                }
                Err(err) => tracing::warn!("daily refresh of {t:?} not queued: {err}"),
            }
        }
        // never twice in the same minute
        tokio::time::sleep(Duration::from_secs(61)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_daily_run_is_at_two_server_time() {
        let tz: chrono_tz::Tz = "Asia/Shanghai".parse().unwrap();
        // 2025-06-01 17:00 UTC = 2025-06-02 01:00 Shanghai -> next run in 1 hour
        let now = chrono::Utc.with_ymd_and_hms(2025, 6, 1, 17, 0, 0).unwrap();
        assert_eq!(until_next_daily(now, tz), Duration::from_secs(3600));
        // 18:30 UTC = 02:30 Shanghai -> next day 02:00 = 23.5 hours
        let now = chrono::Utc.with_ymd_and_hms(2025, 6, 1, 18, 30, 0).unwrap();
        assert_eq!(
            until_next_daily(now, tz),
            Duration::from_secs(23 * 3600 + 1800)
        );
    }
}
