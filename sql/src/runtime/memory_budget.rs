//! The server-wide memory budget every query's memory pool draws from: one
//! query may use at most `max_query_memory`, and all running queries
//! together at most `max_server_memory`. The query whose reservation would
//! cross either gets 53200 (after its sorts and aggregations have spilled);
//! the others keep running.
//!
//! Two measures are compared with the limit, and the larger counts: what
//! DataFusion's operators reserve (sort buffers, hash tables, aggregate
//! states such as `string_agg`/`array_agg`), and what the process really
//! holds, read from the binary's counting allocator
//! ([`set_allocation_gauge`]). The second catches memory no pool sees — a
//! batch of large function results, result encoding — at the next
//! reservation of any query, and the size-checked functions
//! (`pgcompat::sized_functions`) ask [`check_headroom`] before building a
//! large result. Values are bounded separately (1 GB each, 54000).

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use datafusion::common::{DataFusionError, Result as DfResult};
use datafusion::execution::memory_pool::{
    MemoryConsumer, MemoryLimit, MemoryPool, MemoryReservation,
};

/// Marks the error of a reservation refused by the server-wide budget (the
/// protocol layer words its 53200 message from it).
pub const SERVER_BUDGET_EXHAUSTED: &str = "server memory budget exhausted";

static ALLOCATION_GAUGE: std::sync::OnceLock<fn() -> usize> = std::sync::OnceLock::new();
static INSTALLED_LIMIT: AtomicUsize = AtomicUsize::new(usize::MAX);
/// Bytes promised to results being built right now (not yet visible to
/// the gauge): concurrent builders cannot all pass the same check.
static PENDING: AtomicUsize = AtomicUsize::new(0);

/// Bytes held for a result while it is built; given back on drop (by
/// then the allocator's gauge counts the result itself).
#[derive(Debug)]
pub struct Headroom(usize);

impl Drop for Headroom {
    fn drop(&mut self) {
        PENDING.fetch_sub(self.0, Ordering::AcqRel);
    }
}

/// Tells the budget how many bytes the process holds (the binary's
/// counting allocator). Without it only reservations are counted.
pub fn set_allocation_gauge(gauge: fn() -> usize) {
    let _ = ALLOCATION_GAUGE.set(gauge);
}

/// Bytes the process holds now, when a gauge is installed.
pub fn allocated() -> Option<usize> {
    ALLOCATION_GAUGE.get().map(|g| g())
}

/// Holds `bytes` for a result about to be built outside any pool, or
/// refuses (53200) when the process (plus results being built) would pass
/// the installed server budget.
pub fn check_headroom(bytes: usize) -> DfResult<Headroom> {
    let pending = PENDING.fetch_add(bytes, Ordering::AcqRel);
    let hold = Headroom(bytes);
    let limit = INSTALLED_LIMIT.load(Ordering::Relaxed);
    match allocated() {
        Some(now)
            if limit != usize::MAX && now.saturating_add(pending).saturating_add(bytes) > limit =>
        {
            Err(exhausted(now.saturating_add(pending), bytes, limit))
        }
        _ => Ok(hold),
    }
}

/// Refuses (53200) to go on staging a COPY or INSERT when the process plus
/// `staged` (the statement's write batch, held by RocksDB outside the
/// allocator's count) is past the installed budget.
pub fn check_staging(staged: usize) -> DfResult<()> {
    check_headroom(staged).map(drop)
}

fn exhausted(used: usize, bytes: usize, limit: usize) -> DataFusionError {
    DataFusionError::ResourcesExhausted(format!(
        "{SERVER_BUDGET_EXHAUSTED}: {} MB are in use, {} MB more were asked for, max_server_memory is {} MB",
        used >> 20,
        (bytes >> 20).max(1),
        limit >> 20
    ))
}

/// Memory all running queries share (bytes; `usize::MAX` = no limit).
#[derive(Debug)]
pub struct ServerBudget {
    limit: usize,
    used: AtomicUsize,
}

impl ServerBudget {
    /// A budget of `limit` bytes (0 = no limit).
    pub fn new(limit: usize) -> Arc<ServerBudget> {
        Arc::new(ServerBudget {
            limit: if limit == 0 { usize::MAX } else { limit },
            used: AtomicUsize::new(0),
        })
    }

    /// Makes this the budget [`check_headroom`] and the allocation gauge
    /// are held to (the server's engine installs its own).
    pub fn install(&self) {
        INSTALLED_LIMIT.store(self.limit, Ordering::Relaxed);
    }

    /// Bytes reserved now by all queries.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// The limit in bytes (`None` = none).
    pub fn limit(&self) -> Option<usize> {
        (self.limit != usize::MAX).then_some(self.limit)
    }

    /// Takes `bytes` from the budget, or fails without taking anything.
    pub fn try_reserve(&self, bytes: usize) -> DfResult<()> {
        let mut used = self.used.load(Ordering::Relaxed);
        loop {
            let next = used.saturating_add(bytes);
            if next > self.limit {
                return Err(exhausted(used, bytes, self.limit));
            }
            // what the process really holds (batches outside any pool too)
            if let Some(now) = allocated() {
                let now = now.saturating_add(PENDING.load(Ordering::Acquire));
                if self.limit != usize::MAX && now.saturating_add(bytes) > self.limit {
                    return Err(exhausted(now, bytes, self.limit));
                }
            }
            match self
                .used
                .compare_exchange_weak(used, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return Ok(()),
                Err(now) => used = now,
            }
        }
    }

    /// Takes `bytes` even past the limit (DataFusion's infallible `grow`).
    pub fn force_reserve(&self, bytes: usize) {
        self.used.fetch_add(bytes, Ordering::AcqRel);
    }

    /// Gives `bytes` back.
    pub fn release(&self, bytes: usize) {
        let _ = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |u| {
                Some(u.saturating_sub(bytes))
            });
    }
}

/// A query's memory pool that also draws every byte from the server budget.
#[derive(Debug)]
pub struct BudgetedPool {
    inner: Arc<dyn MemoryPool>,
    budget: Arc<ServerBudget>,
}

impl BudgetedPool {
    /// `inner` (the query's own limit) drawing from `budget`.
    pub fn new(inner: Arc<dyn MemoryPool>, budget: Arc<ServerBudget>) -> BudgetedPool {
        BudgetedPool { inner, budget }
    }
}

impl fmt::Display for BudgetedPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} within the server budget", self.inner)
    }
}

impl MemoryPool for BudgetedPool {
    fn name(&self) -> &str {
        "budgeted"
    }

    fn register(&self, consumer: &MemoryConsumer) {
        self.inner.register(consumer)
    }

    fn unregister(&self, consumer: &MemoryConsumer) {
        self.inner.unregister(consumer)
    }

    fn grow(&self, reservation: &MemoryReservation, additional: usize) {
        self.budget.force_reserve(additional);
        self.inner.grow(reservation, additional)
    }

    fn shrink(&self, reservation: &MemoryReservation, shrink: usize) {
        self.inner.shrink(reservation, shrink);
        self.budget.release(shrink);
    }

    fn try_grow(&self, reservation: &MemoryReservation, additional: usize) -> DfResult<()> {
        self.budget.try_reserve(additional)?;
        if let Err(e) = self.inner.try_grow(reservation, additional) {
            self.budget.release(additional);
            return Err(e);
        }
        Ok(())
    }

    fn reserved(&self) -> usize {
        self.inner.reserved()
    }

    fn memory_limit(&self) -> MemoryLimit {
        self.inner.memory_limit()
    }
}

/// Physical memory of this machine in bytes (from /proc/meminfo), if known.
pub fn physical_memory() -> Option<usize> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb << 10)
}

/// Default `max_server_memory` in MiB: half of physical memory (4 GiB when
/// it cannot be read).
pub fn default_server_memory_mb() -> usize {
    physical_memory().map(|b| (b >> 20) / 2).unwrap_or(4096)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::execution::memory_pool::{GreedyMemoryPool, UnboundedMemoryPool};

    #[test]
    fn queries_share_the_budget_and_give_it_back() {
        let budget = ServerBudget::new(1000);
        let a: Arc<dyn MemoryPool> = Arc::new(BudgetedPool::new(
            Arc::new(GreedyMemoryPool::new(800)),
            budget.clone(),
        ));
        let b: Arc<dyn MemoryPool> = Arc::new(BudgetedPool::new(
            Arc::new(UnboundedMemoryPool::default()),
            budget.clone(),
        ));
        let ra = MemoryConsumer::new("a").register(&a);
        let rb = MemoryConsumer::new("b").register(&b);
        ra.try_grow(600).unwrap();
        // the query's own limit refuses and takes nothing from the budget
        assert!(ra.try_grow(300).is_err());
        assert_eq!(budget.used(), 600);
        // the server budget refuses the other query
        let err = rb.try_grow(500).unwrap_err().to_string();
        assert!(err.contains(SERVER_BUDGET_EXHAUSTED), "{err}");
        rb.try_grow(400).unwrap();
        assert_eq!(budget.used(), 1000);
        drop(ra);
        assert_eq!(budget.used(), 400);
        rb.try_grow(600).unwrap();
        drop(rb);
        assert_eq!(budget.used(), 0);
    }
}
