//! What `/metrics` shows (Prometheus text format): publishes and publish
//! failures per realm, errors of the object store and the identity
//! providers, and — read at scrape time — each realm's pending changes and
//! publish lag (the age of its oldest unpublished change).

use super::Service;
use crate::domain::error::Result;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Counters kept by the service.
#[derive(Debug, Default)]
pub struct Metrics {
    realms: Mutex<BTreeMap<String, RealmCounters>>,
    store_errors: AtomicU64,
    identity_errors: AtomicU64,
    head_resigns: AtomicU64,
    head_resign_failures: AtomicU64,
}

#[derive(Debug, Default, Clone, Copy)]
struct RealmCounters {
    published: u64,
    failed: u64,
    last_publish_seconds: f64,
}

impl Metrics {
    fn realm(&self, realm: &str, f: impl FnOnce(&mut RealmCounters)) {
        let mut m = self.realms.lock().unwrap_or_else(|p| p.into_inner());
        f(m.entry(realm.to_owned()).or_default());
    }

    /// A bundle was published for `realm`, taking `took`.
    pub fn published(&self, realm: &str, took: Duration) {
        self.realm(realm, |c| {
            c.published += 1;
            c.last_publish_seconds = took.as_secs_f64();
        });
    }

    /// A publish of `realm` failed.
    pub fn publish_failed(&self, realm: &str) {
        self.realm(realm, |c| c.failed += 1);
    }

    /// The object store failed a request.
    pub fn store_error(&self) {
        self.store_errors.fetch_add(1, Relaxed);
    }

    /// An identity provider failed a request.
    pub fn identity_error(&self) {
        self.identity_errors.fetch_add(1, Relaxed);
    }

    /// A realm's `HEAD` was re-signed (`ok`), or re-signing it failed.
    pub fn head_resigned(&self, ok: bool) {
        let c = if ok {
            &self.head_resigns
        } else {
            &self.head_resign_failures
        };
        c.fetch_add(1, Relaxed);
    }
}

fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Service {
    /// The Prometheus exposition of the control plane's metrics.
    pub async fn metrics_text(&self) -> Result<String> {
        let now = self.now();
        let waiting = self
            .repo
            .read(move |tx| {
                let mut out = Vec::new();
                for r in tx.realms(false)? {
                    let n = tx.pending_count(&r.name)?;
                    let oldest = tx.oldest_pending(&r.name)?;
                    out.push((r.name, n, oldest.map(|t| (now - t).max(0))));
                }
                Ok(out)
            })
            .await?;
        let counters = self
            .metrics
            .realms
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut s = String::new();
        let _ = writeln!(
            s,
            "# HELP gatehouse_cp_pending_changes Changes committed and not yet published.\n\
             # TYPE gatehouse_cp_pending_changes gauge"
        );
        for (realm, n, _) in &waiting {
            let _ = writeln!(
                s,
                "gatehouse_cp_pending_changes{{realm=\"{}\"}} {n}",
                label(realm)
            );
        }
        let _ = writeln!(
            s,
            "# HELP gatehouse_cp_publish_lag_seconds Age of the oldest unpublished change (0: none).\n\
             # TYPE gatehouse_cp_publish_lag_seconds gauge"
        );
        for (realm, _, lag) in &waiting {
            let _ = writeln!(
                s,
                "gatehouse_cp_publish_lag_seconds{{realm=\"{}\"}} {}",
                label(realm),
                lag.unwrap_or(0)
            );
        }
        let _ = writeln!(
            s,
            "# HELP gatehouse_cp_publishes_total Bundles published.\n\
             # TYPE gatehouse_cp_publishes_total counter"
        );
        for (realm, c) in &counters {
            let _ = writeln!(
                s,
                "gatehouse_cp_publishes_total{{realm=\"{}\"}} {}",
                label(realm),
                c.published
            );
        }
        let _ = writeln!(
            s,
            "# HELP gatehouse_cp_publish_failures_total Publishes that failed (the changes stay pending).\n\
             # TYPE gatehouse_cp_publish_failures_total counter"
        );
        for (realm, c) in &counters {
            let _ = writeln!(
                s,
                "gatehouse_cp_publish_failures_total{{realm=\"{}\"}} {}",
                label(realm),
                c.failed
            );
        }
        let _ = writeln!(
            s,
            "# HELP gatehouse_cp_last_publish_seconds Duration of the realm's last publish.\n\
             # TYPE gatehouse_cp_last_publish_seconds gauge"
        );
        for (realm, c) in &counters {
            let _ = writeln!(
                s,
                "gatehouse_cp_last_publish_seconds{{realm=\"{}\"}} {}",
                label(realm),
                c.last_publish_seconds
            );
        }
        let _ = writeln!(
            s,
            "# HELP gatehouse_cp_store_errors_total Object store requests that failed.\n\
             # TYPE gatehouse_cp_store_errors_total counter\n\
             gatehouse_cp_store_errors_total {}",
            self.metrics.store_errors.load(Relaxed)
        );
        let _ = writeln!(
            s,
            "# HELP gatehouse_cp_identity_errors_total Identity provider requests that failed.\n\
             # TYPE gatehouse_cp_identity_errors_total counter\n\
             gatehouse_cp_identity_errors_total {}",
            self.metrics.identity_errors.load(Relaxed)
        );
        let _ = writeln!(
            s,
            "# HELP gatehouse_cp_head_resigns_total HEAD records re-signed with nothing new to publish.\n\
             # TYPE gatehouse_cp_head_resigns_total counter\n\
             gatehouse_cp_head_resigns_total {}\n\
             # HELP gatehouse_cp_head_resign_failures_total HEAD re-signings that failed (edge hosts go stale after 4 intervals).\n\
             # TYPE gatehouse_cp_head_resign_failures_total counter\n\
             gatehouse_cp_head_resign_failures_total {}",
            self.metrics.head_resigns.load(Relaxed),
            self.metrics.head_resign_failures.load(Relaxed)
        );
        Ok(s)
    }
}
