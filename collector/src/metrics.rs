//! The collector's Prometheus metrics (`GET /metrics`), recorded with the
//! `metrics` crate: requests by endpoint and status, messages by result,
//! dropped properties, request latency and requests in flight.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Requests answered, by `endpoint` and HTTP `status`.
pub const REQUESTS: &str = "cohortdb_collector_requests_total";
/// Messages by `result`: `stored`, `duplicate`, `rejected`.
pub const MESSAGES: &str = "cohortdb_collector_messages_total";
/// Properties dropped for a wrong type or an undefined name.
pub const DROPPED_PROPERTIES: &str = "cohortdb_collector_dropped_properties_total";
/// Request latency by `endpoint`, seconds (histogram).
pub const LATENCY: &str = "cohortdb_collector_request_duration_seconds";
/// Requests being handled.
pub const IN_FLIGHT: &str = "cohortdb_collector_in_flight_requests";

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide recorder once; returns its handle.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full(LATENCY.to_string()),
                    &[
                        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                        5.0,
                    ],
                )
                .expect("latency buckets are not empty");
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed: /metrics stays empty");
            }
            metrics::describe_counter!(REQUESTS, "HTTP requests answered by the collector");
            metrics::describe_counter!(MESSAGES, "events and identify calls by result");
            metrics::describe_counter!(
                DROPPED_PROPERTIES,
                "event properties dropped (wrong type or undefined)"
            );
            metrics::describe_histogram!(LATENCY, "request latency in seconds");
            metrics::describe_gauge!(IN_FLIGHT, "requests being handled");
            handle
        })
        .clone()
}
