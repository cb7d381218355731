//! The scheduler actor: daily background jobs. Today: `dedupe_contacts`
//! at 02:45 in the server time zone (seed 003 §1.4.7 automatic merge).
//! A failing run is logged and the server keeps serving; the next run is
//! the next day.

use std::sync::Arc;

use chrono::{Duration as ChronoDuration, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use cohortdb_sql::Engine;

/// Local time of the daily dedupe run.
pub const DEDUPE_AT: (u32, u32) = (2, 45);

/// Milliseconds from `now_ms` until the next `hh:mm` in `tz`.
pub fn millis_until_next(now_ms: i64, tz: Tz, (h, m): (u32, u32)) -> i64 {
    let now = Utc
        .timestamp_millis_opt(now_ms)
        .single()
        .unwrap_or_else(Utc::now)
        .with_timezone(&tz);
    let at = NaiveTime::from_hms_opt(h, m, 0).expect("valid time");
    let mut day = now.date_naive();
    for _ in 0..3 {
        if let Some(t) = tz.from_local_datetime(&day.and_time(at)).earliest() {
            let ms = t.timestamp_millis() - now_ms;
            if ms > 0 {
                return ms;
            }
        }
        day += ChronoDuration::days(1);
    }
    86_400_000
}

/// Starts the scheduler task; it runs until the runtime stops.
pub fn spawn(engine: Arc<Engine>, tz: Tz) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let wait = millis_until_next(Utc::now().timestamp_millis(), tz, DEDUPE_AT);
            tokio::time::sleep(std::time::Duration::from_millis(wait as u64)).await;
            match cohortdb_sql::identity::dedupe::run(&engine.background_context(), false).await {
                Ok(pairs) => tracing::info!(merged = pairs.len(), "daily dedupe_contacts finished"),
                Err(e) => tracing::error!("daily dedupe_contacts failed: {e}"),
            }
            // never run twice in the same minute
            tokio::time::sleep(std::time::Duration::from_secs(61)).await;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_run_is_0245_local() {
        // 2025-06-01 00:00 UTC = 08:00 Shanghai → next 02:45 Shanghai is 18:45 UTC
        let now = Utc
            .with_ymd_and_hms(2025, 6, 1, 0, 0, 0)
            .unwrap()
            .timestamp_millis();
        let ms = millis_until_next(now, chrono_tz::Asia::Shanghai, DEDUPE_AT);
        assert_eq!(ms, (18 * 60 + 45) * 60_000);
        let ms = millis_until_next(now, Tz::UTC, DEDUPE_AT);
        assert_eq!(ms, (2 * 60 + 45) * 60_000);
    }
}
