//! Polling a realm's store: read `HEAD` (conditionally), then apply the
//! deltas since the revision held, or load the newest snapshot when nothing
//! is held or what is held is older than it.
//!
//! Every bundle is verified like any other (signature, hashes, realm, no
//! rollback) and installed alone, so each step leaves a whole, consistent
//! snapshot; a failure keeps the last one and is retried at the next poll.
//! What is installed is recorded in the state directory as the last known
//! good chain.
//!
//! `HEAD` is a signed record (`pdp_core::layout`): it is verified with the
//! realm's trust keys before anything it says is used, and it is the only
//! thing that makes the realm fresh. A 304, an unchanged `HEAD`, an
//! unsigned one or an older signed one (a replay) confirms nothing, so a
//! store or cache that keeps answering with the past turns into
//! `stale_bundle` denials once the staleness limit passes.

use crate::api::AppState;
use crate::realm::{Realm, Remote};
use crate::store::{Fetched, Store, StoreError};
use pdp_core::BundleKind;
use pdp_core::bundle::BundleError;
use pdp_core::chain::{self, Behind};
use pdp_core::layout::{Head, HeadError, MAX_CLOCK_SKEW_SECONDS};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

/// Largest `HEAD` object read.
const HEAD_LIMIT: u64 = 64 << 10;

/// What a successful poll did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Synced {
    /// Revision served after the poll.
    pub revision: u64,
    /// Revisions installed by this poll, in order (empty: nothing new).
    pub installed: Vec<u64>,
}

/// Why a poll failed. The realm keeps serving what it held.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The realm is not store-sourced.
    #[error("realm {0:?} is not polled from a store")]
    NotRemote(String),
    /// The store did not answer.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No `HEAD` in the store yet.
    #[error("no HEAD for realm {0:?} in the store")]
    NoHead(String),
    /// `HEAD` is unreadable.
    #[error(transparent)]
    Head(#[from] HeadError),
    /// The realm's control plane re-signs `HEAD` too rarely for this
    /// host's staleness limit (it needs 4 intervals).
    #[error("{0}")]
    StalenessLimit(String),
    /// `HEAD` is of another realm.
    #[error("HEAD names realm {found:?}, expected {expected:?}")]
    HeadRealm {
        /// Configured realm.
        expected: String,
        /// Realm in `HEAD`.
        found: String,
    },
    /// `HEAD` names an older revision than the one held: refused (no rollback).
    #[error("the store's HEAD names revision {head}, older than revision {held} held here")]
    Behind {
        /// Revision held.
        held: u64,
        /// Revision in `HEAD`.
        head: u64,
    },
    /// A bundle `HEAD` points to is not in the store.
    #[error("{0} is missing from the store")]
    Missing(String),
    /// A bundle was refused.
    #[error("{key}: {source}")]
    Bundle {
        /// Object key.
        key: String,
        /// Why.
        source: BundleError,
    },
}

impl SyncError {
    /// Stable name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            SyncError::NotRemote(_) => "not_remote",
            SyncError::Store(StoreError::Unreachable(_)) => "store_unreachable",
            SyncError::Store(StoreError::TooLarge { .. }) => "bundle_too_large",
            SyncError::Store(_) => "store_refused",
            SyncError::NoHead(_) => "no_head",
            SyncError::Head(e) => e.kind(),
            SyncError::HeadRealm { .. } => "bad_head",
            SyncError::StalenessLimit(_) => "staleness_limit_too_short",
            SyncError::Behind { .. } => "store_behind",
            SyncError::Missing(_) => "bundle_missing",
            SyncError::Bundle { source, .. } => source.kind(),
        }
    }
}

/// Poll every store-sourced realm once; per realm, what happened.
pub async fn sync_all(state: &Arc<AppState>) -> Vec<(String, Result<Synced, SyncError>)> {
    let mut out = Vec::new();
    for realm in state.realms.iter().filter(|r| r.remote.is_some()) {
        out.push((realm.name().to_owned(), sync_realm(state, realm).await));
    }
    out
}

/// Poll `realm`'s store once.
pub async fn sync_realm(state: &Arc<AppState>, realm: &Arc<Realm>) -> Result<Synced, SyncError> {
    let remote = realm
        .remote
        .as_ref()
        .ok_or_else(|| SyncError::NotRemote(realm.name().to_owned()))?;
    let _one_at_a_time = remote.lock.lock().await;
    realm.tidy(crate::realm::now());
    let result = poll(state, realm, remote).await;
    if let Ok(mut last) = remote.last_error.lock() {
        *last = result.as_ref().err().map(ToString::to_string);
    }
    // Refused bundles are counted where they are offered.
    if matches!(&result, Err(e) if !matches!(e, SyncError::Bundle { .. })) {
        realm.count_failure();
    }
    result
}

async fn poll(
    state: &Arc<AppState>,
    realm: &Arc<Realm>,
    remote: &Remote,
) -> Result<Synced, SyncError> {
    let crate::realm::Source::Store(location) = realm.source() else {
        return Err(SyncError::NotRemote(realm.name().to_owned()));
    };
    let store = remote
        .store
        .get_or_try_init(|| Store::connect(location, &state.realms.connect))
        .await?;
    let keys = location.keys();
    let etag = remote.etag.lock().ok().and_then(|e| e.clone());
    let held = || realm.snapshot().map(|s| s.revision());
    let (head, bytes, etag) = match store.get(&keys.head(), etag.as_deref(), HEAD_LIMIT).await? {
        // Unchanged: nothing new, and no confirmation either (only a newly
        // signed record makes the realm fresher).
        Fetched::NotModified => {
            return Ok(Synced {
                revision: held().unwrap_or(0),
                installed: Vec::new(),
            });
        }
        Fetched::Missing => return Err(SyncError::NoHead(realm.name().to_owned())),
        Fetched::Found { bytes, etag } => {
            let head = Head::open(&bytes, state.realms.load_options().trust)?;
            (head, bytes, etag)
        }
    };
    if head.realm != realm.name() {
        return Err(SyncError::HeadRealm {
            expected: realm.name().to_owned(),
            found: head.realm,
        });
    }
    // Too long an interval for this host's limit: the bundles are still
    // installed (a revocation must not wait for it), but the record counts
    // no freshness, so the realm goes stale and denies; at start the host
    // refuses to run.
    let interval_ok = state
        .realms
        .check_interval(realm.name(), head.resign_interval_seconds);
    // Below what a signed HEAD named or this host installed before (also
    // before a restart): a rolled-back store, or a replayed HEAD.
    let high_water = remote.high_water.load(Relaxed);
    if head.revision < high_water {
        return Err(SyncError::Behind {
            held: high_water,
            head: head.revision,
        });
    }
    let limit = state.realms.limits.archive;
    let mut installed = Vec::new();
    // The store is async, so the chain is walked here rather than by
    // `chain::load`: each bundle is installed (and recorded) on its own.
    // A missing delta or one on another base is an error until the store
    // holds a snapshot newer than what is held (the control plane's
    // compaction); the steps then start from that snapshot.
    let steps = chain::steps(held(), &head, &keys)
        .map_err(|Behind { held, head }| SyncError::Behind { held, head })?;
    for step in steps {
        let bytes = fetch(store, &step.key, limit).await?;
        installed.push(install(state, realm, step.key, step.kind, bytes).await?);
    }
    if let Ok(mut e) = remote.etag.lock() {
        *e = etag;
    }
    interval_ok.map_err(SyncError::StalenessLimit)?;
    confirm(state, realm, remote, &head, &bytes);
    Ok(Synced {
        revision: held().unwrap_or(0),
        installed,
    })
}

/// The chain named by `head` is held: count its signed freshness (only a
/// record at least as new as the newest seen counts) and raise the
/// high-water mark. A record that counts is written to the state directory
/// first (a new one arrives at most every half re-signing interval), so a
/// restarted host counts exactly the freshness this one did.
fn confirm(state: &AppState, realm: &Realm, remote: &Remote, head: &Head, bytes: &[u8]) {
    let before = **remote.signed.load();
    // A record dated ahead of this clock counts as no later than a minute
    // from now: a control plane whose clock jumped cannot make the realm
    // fresh for longer than the limit from here.
    let issued_at = head
        .issued_at
        .min(crate::realm::now().saturating_add(MAX_CLOCK_SKEW_SECONDS));
    let after = before.with(head.revision, issued_at);
    let raised = remote.high_water.load(Relaxed) < head.revision;
    if after == before && !raised {
        return;
    }
    if let Some(dir) = &state.realms.state_dir
        && let Err(e) = dir.record_head(realm.name(), head.revision, bytes)
    {
        tracing::warn!(realm = realm.name(), error = %e, "could not record the signed HEAD");
    }
    remote.high_water.fetch_max(head.revision, Relaxed);
    remote.signed.store(std::sync::Arc::new(after));
}

async fn fetch(store: &Store, key: &str, limit: u64) -> Result<Vec<u8>, SyncError> {
    match store.get(key, None, limit).await? {
        Fetched::Found { bytes, .. } => Ok(bytes),
        Fetched::Missing | Fetched::NotModified => Err(SyncError::Missing(key.to_owned())),
    }
}

/// Verify and install one bundle off the async threads (a 1M-user snapshot
/// takes a second or two of CPU), then record it as last known good.
async fn install(
    state: &Arc<AppState>,
    realm: &Arc<Realm>,
    key: String,
    kind: BundleKind,
    bytes: Vec<u8>,
) -> Result<u64, SyncError> {
    let state = Arc::clone(state);
    let realm = Arc::clone(realm);
    let joined = tokio::task::spawn_blocking(move || {
        let options = state.realms.load_options();
        let revision = realm
            .offer(&bytes, &options)
            .map_err(|source| SyncError::Bundle {
                key: key.clone(),
                source,
            })?;
        let recorded = state.realms.state_dir.as_ref().map(|d| d.record(realm.name(), kind, revision, &bytes));
        if let Some(Err(e)) = recorded {
            tracing::warn!(realm = realm.name(), error = %e, "could not record the last known good bundle");
        }
        Ok(revision)
    })
    .await;
    joined.unwrap_or_else(|e| {
        Err(SyncError::Store(StoreError::Unreachable(format!(
            "bundle install task failed: {e}"
        ))))
    })
}
