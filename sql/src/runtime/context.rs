//! The context a statement runs in, passed down from the session so that
//! no lower layer imports `session`: the store, the session's DataFusion
//! context, its time zone, user and interrupt flag, and the lock that
//! serialises read-modify-write of contact rows.

use std::sync::{Arc, Weak};

use chrono_tz::Tz;
use cohortdb_storage::Store;
use datafusion::dataframe::DataFrame;
use datafusion::prelude::SessionContext;

use crate::runtime::interrupt::Interrupt;

/// Whether a session's scans mask the masked contact columns (its user
/// lacks `cohort_unmasked`). The session sets it before each statement;
/// table providers read it when a statement is planned.
#[derive(Debug, Clone, Default)]
pub struct MaskFlag(Arc<std::sync::atomic::AtomicBool>);

impl MaskFlag {
    /// Turns masking on or off.
    pub fn set(&self, on: bool) {
        self.0.store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// True when scans mask.
    pub fn on(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Everything a statement handler needs from its session.
#[derive(Clone)]
pub struct StatementContext {
    /// The store.
    pub store: Arc<Store>,
    /// The session's DataFusion context (its catalog carries the session
    /// time zone; the memory pool is the session's).
    pub df: SessionContext,
    /// The session time zone.
    pub tz: Tz,
    /// The user the session is logged in as.
    pub user: String,
    /// The interrupt flag of the session's running statement.
    pub interrupt: Arc<Interrupt>,
    /// The lock serialising read-modify-write of contact rows.
    pub contact_lock: Arc<tokio::sync::Mutex<()>>,
}

impl StatementContext {
    /// The session's DataFusion context.
    pub fn context(&self) -> &SessionContext {
        &self.df
    }
}

/// What a statement below the session layer produced: rows or a completed
/// command. The session wraps it into the wire-level `Outcome`.
pub enum Reply {
    /// Rows to send.
    Rows(DataFrame),
    /// Rows already computed (a procedure's result), sent as they are.
    Batch(datafusion::arrow::array::RecordBatch),
    /// A completed command: tag and affected rows.
    Command {
        /// Command tag word(s), e.g. `CREATE GROUP`.
        tag: String,
        /// Affected rows, when the tag carries a count.
        rows: Option<u64>,
    },
}

impl Reply {
    /// A command with no row count.
    pub fn command(tag: &str) -> Reply {
        Reply::Command {
            tag: tag.into(),
            rows: None,
        }
    }
}

/// Makes fresh statement contexts for work that runs outside any client
/// session (scheduled group and tag refreshes, daily dedupe). The engine
/// implements it; background actors hold it weakly.
pub trait ContextSource: Send + Sync {
    /// A context in the server time zone, as user `admin`.
    fn statement_context(&self) -> StatementContext;
}

/// A weak handle on a [`ContextSource`] (the actor stops when it is gone).
pub type WeakContextSource = Weak<dyn ContextSource>;
