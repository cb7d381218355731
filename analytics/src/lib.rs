//! Exact per-contact algorithms behind the analytics statements (FUNNEL,
//! RETENTION, ATTRIBUTE, LTV, PATHS) and the composable aggregates
//! (`window_funnel`, `retention`).
//!
//! The kernels know nothing of storage or SQL: the caller scans events,
//! evaluates the statement's predicates on them and hands each contact's
//! events, in time order, to an accumulator as [`Event`]s whose `mask` says
//! which predicates matched. Accumulators of disjoint contact sets merge, so
//! contacts can be processed in parallel shards. Memory is bounded by the
//! contact in hand plus the per-group counters (and conversion times for
//! exact medians).
//!
//! Caller guarantees, shared by every accumulator:
//! - a contact's events arrive sorted by `ts` ascending; events with equal
//!   `ts` may come in any order, and no result depends on that order
//!   (equal-ts events are handled as a set, with documented tie rules);
//! - events after AS OF are already removed;
//! - the caller scans a superset of the days the statement needs (e.g. days
//!   after TO for later funnel steps, returns and revenue; days before FROM
//!   for the previous ATTRIBUTE target and widened clicks); every
//!   accumulator applies its own FROM/TO, window and STRICT rules;
//! - `Event::day` is the local calendar day (session time zone) of `ts`,
//!   non-decreasing along the slice. Calendar rules (DAYS windows, SAME DAY,
//!   DAY/WEEK/MONTH periods) use `day`; elapsed-time rules (HOURS windows,
//!   PATHS gaps, ordering, "strictly before") use `ts`.

pub mod attribute;
pub mod calendar;
pub mod composable;
pub mod funnel;
pub mod ltv;
pub mod paths;
pub mod retention;
pub mod udaf;

/// A calendar day in the session time zone: days since 1970-01-01.
pub type Day = i32;

/// One event of one contact, as the statements see it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Event {
    /// Event time, milliseconds since the Unix epoch (UTC).
    pub ts: i64,
    /// Calendar day of `ts` in the session time zone.
    pub day: Day,
    /// Bit `i` set: the statement's predicate `i` matched this event
    /// (which predicate is which is documented per statement).
    pub mask: u32,
    /// The statement's VALUE column on this event (ATTRIBUTE target value,
    /// LTV revenue value); `None` when NULL or not used.
    pub value: Option<f64>,
    /// Dictionary id of a per-event grouping value (FUNNEL `BY` event
    /// column, LTV `GROUP BY` event columns, PATHS node); 0 when unused.
    pub key: u32,
}

/// How group keys (`Event::key`) compare where a rule picks "the smallest
/// key" (FUNNEL `BY` and LTV `GROUP BY` ties at the start time, PATHS nodes
/// of one millisecond). The default compares ids; a caller whose ids are
/// interned in arrival order supplies the order of the values behind them,
/// so the result is the same whatever order storage or a shuffle delivered.
#[derive(Clone)]
pub struct KeyOrder(Option<std::sync::Arc<dyn Fn(u32, u32) -> std::cmp::Ordering + Send + Sync>>);

impl KeyOrder {
    /// Ids compare as numbers (ids already in value order).
    pub fn ids() -> Self {
        KeyOrder(None)
    }

    /// Ids compare by `f` (called only for distinct ids).
    pub fn by(f: impl Fn(u32, u32) -> std::cmp::Ordering + Send + Sync + 'static) -> Self {
        KeyOrder(Some(std::sync::Arc::new(f)))
    }

    /// Compares two keys.
    #[inline]
    pub fn cmp(&self, a: u32, b: u32) -> std::cmp::Ordering {
        match &self.0 {
            _ if a == b => std::cmp::Ordering::Equal,
            None => a.cmp(&b),
            Some(f) => f(a, b),
        }
    }
}

impl Default for KeyOrder {
    fn default() -> Self {
        KeyOrder::ids()
    }
}

impl std::fmt::Debug for KeyOrder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "KeyOrder(values)"
        } else {
            "KeyOrder(ids)"
        })
    }
}

/// Period unit of RETENTION and LTV.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Calendar days.
    Day,
    /// Weeks Monday–Sunday.
    Week,
    /// Calendar months.
    Month,
}

/// `num / den`, NULL when `den` is 0 (SPEC §5 "any ratio whose denominator
/// is 0 is NULL").
pub fn ratio(num: f64, den: f64) -> Option<f64> {
    if den == 0.0 {
        None
    } else {
        Some(num / den)
    }
}

/// `percentile_cont(0.5)`: the middle value, or the mean of the two middle
/// values of an even count; NULL when empty. Reorders `v`.
pub fn median(v: &mut [f64]) -> Option<f64> {
    let n = v.len();
    if n == 0 {
        return None;
    }
    let mid = n / 2;
    let (lo, m, _) = v.select_nth_unstable_by(mid, f64::total_cmp);
    let hi = *m;
    if n % 2 == 1 {
        Some(hi)
    } else {
        let below = lo.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        Some((below + hi) / 2.0)
    }
}

/// Arithmetic mean; NULL when empty.
pub fn mean(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        None
    } else {
        Some(v.iter().sum::<f64>() / v.len() as f64)
    }
}
