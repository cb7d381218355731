//! The collector's limits: every one is a setting (`[collector]` in the
//! server's TOML configuration) with the default a public collector uses.

use serde::Deserialize;

/// Limits of the HTTP collector.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CollectorSettings {
    /// Largest request body on the wire, in KiB (413 beyond).
    pub max_wire_kb: usize,
    /// Largest body after gzip decoding, in KiB (413 beyond: a gzip bomb
    /// stops here, it is never inflated in full).
    pub max_decoded_kb: usize,
    /// Most events in one request (413 beyond).
    pub max_batch_events: usize,
    /// Largest single event as JSON, in KiB (that event is rejected).
    pub max_event_kb: usize,
    /// Most requests being handled at once; further ones get 503 with
    /// `Retry-After` (load shedding) instead of queueing.
    pub max_inflight: usize,
    /// Seconds a client may take to send its body (408 beyond).
    pub body_timeout_secs: u64,
    /// Hours a `message_id` / `messageId` is remembered (at most 24).
    pub dedupe_hours: u64,
    /// Seconds of difference between a batch's `sentAt` and the receive
    /// time beyond which its timestamps are corrected by that difference.
    pub clock_skew_secs: i64,
    /// Seconds WeChat waits for an answer to an event push; the collector
    /// answers before (an empty body is acknowledged, WeChat retries otherwise).
    pub wechat_reply_secs: u64,
}

impl Default for CollectorSettings {
    fn default() -> Self {
        CollectorSettings {
            max_wire_kb: 1024,
            max_decoded_kb: 5 * 1024,
            max_batch_events: 2500,
            max_event_kb: 32,
            max_inflight: 256,
            body_timeout_secs: 10,
            dedupe_hours: 24,
            clock_skew_secs: 300,
            wechat_reply_secs: 4,
        }
    }
}

impl CollectorSettings {
    /// The dedupe window in milliseconds (capped at one day, the width of
    /// the dedupe table's partitions).
    pub fn dedupe_window_ms(&self) -> i64 {
        (self.dedupe_hours.clamp(1, 24) * 3_600_000) as i64
    }
}
