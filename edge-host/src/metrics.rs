//! Prometheus metrics: atomics on the hot path, text rendered on scrape.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Histogram bucket upper bounds, seconds.
const BUCKETS: [f64; 12] = [
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.05,
    0.25,
];

/// Counters of one host.
#[derive(Debug, Default)]
pub struct Metrics {
    allow: AtomicU64,
    deny: AtomicU64,
    failure: AtomicU64,
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_nanos: AtomicU64,
    panics: AtomicU64,
}

/// What a decision came to, for counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Allowed.
    Allow,
    /// Denied (including state, token and staleness denials).
    Deny,
    /// Not answered (bad request, no bundle).
    Failure,
}

impl Metrics {
    /// Count one decision and its latency.
    pub fn record(&self, outcome: Outcome, took: Duration) {
        match outcome {
            Outcome::Allow => &self.allow,
            Outcome::Deny => &self.deny,
            Outcome::Failure => &self.failure,
        }
        .fetch_add(1, Relaxed);
        let secs = took.as_secs_f64();
        for (bound, bucket) in BUCKETS.iter().zip(&self.buckets) {
            if secs <= *bound {
                bucket.fetch_add(1, Relaxed);
            }
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_nanos
            .fetch_add(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX), Relaxed);
    }

    /// Count a request whose handler panicked (answered 500).
    pub fn record_panic(&self) {
        self.panics.fetch_add(1, Relaxed);
    }

    /// Requests whose handler panicked.
    pub fn panics(&self) -> u64 {
        self.panics.load(Relaxed)
    }

    /// Decisions counted with `outcome`.
    pub fn decisions(&self, outcome: Outcome) -> u64 {
        match outcome {
            Outcome::Allow => &self.allow,
            Outcome::Deny => &self.deny,
            Outcome::Failure => &self.failure,
        }
        .load(Relaxed)
    }

    /// Append the decision metrics in Prometheus text format.
    pub fn render(&self, out: &mut String) {
        out.push_str("# HELP gatehouse_decisions_total Decisions answered, by outcome.\n");
        out.push_str("# TYPE gatehouse_decisions_total counter\n");
        for (name, c) in [
            ("allow", &self.allow),
            ("deny", &self.deny),
            ("failure", &self.failure),
        ] {
            let _ = writeln!(
                out,
                "gatehouse_decisions_total{{outcome=\"{name}\"}} {}",
                c.load(Relaxed)
            );
        }
        out.push_str(
            "# HELP gatehouse_decision_duration_seconds Time to answer one decision request.\n",
        );
        out.push_str("# TYPE gatehouse_decision_duration_seconds histogram\n");
        for (bound, bucket) in BUCKETS.iter().zip(&self.buckets) {
            let _ = writeln!(
                out,
                "gatehouse_decision_duration_seconds_bucket{{le=\"{bound}\"}} {}",
                bucket.load(Relaxed)
            );
        }
        let count = self.count.load(Relaxed);
        let _ = writeln!(
            out,
            "gatehouse_decision_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            out,
            "gatehouse_decision_duration_seconds_sum {}",
            self.sum_nanos.load(Relaxed) as f64 / 1e9
        );
        let _ = writeln!(out, "gatehouse_decision_duration_seconds_count {count}");
        out.push_str(
            "# HELP gatehouse_handler_panics_total Requests answered 500 because their handler panicked.\n",
        );
        out.push_str("# TYPE gatehouse_handler_panics_total counter\n");
        let _ = writeln!(
            out,
            "gatehouse_handler_panics_total {}",
            self.panics.load(Relaxed)
        );
    }
}
