//! Store-sourced realms in-process: a local store directory and the same
//! store served over HTTP (with entity tags), polled with
//! `edge_host::sync::sync_all`. The S3 source against moto is in `s3.rs`.

use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use edge_host::Config;
use edge_host::sync::{SyncError, sync_all};
use pdp_core::bundle::{BundleHeader, write_archive};
use pdp_core::layout::{HEAD_FORMAT, Head, RealmKeys};
use pdp_core::source::{BuildOptions, build};
use pdp_core::{BundleKind, BundleSigner};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

const REALM: &str = "acme";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("gh-src-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn now() -> i64 {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    i64::try_from(t.unwrap().as_secs()).unwrap()
}

fn signer() -> BundleSigner {
    BundleSigner::from_seed(&[5; 32])
}

fn trust_key(dir: &Path) -> PathBuf {
    let key = dir.join("trust.pub.pem");
    std::fs::write(&key, signer().public_pem().unwrap()).unwrap();
    key
}

fn users() -> Vec<Value> {
    std::fs::read_to_string(root().join("policies/users.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn with_state(user: &str, state: &str) -> Value {
    let mut u = users().into_iter().find(|u| u["id"] == user).unwrap();
    u["state"] = json!(state);
    u
}

fn jsonl(lines: &[Value]) -> Vec<u8> {
    lines
        .iter()
        .map(|v| format!("{v}\n"))
        .collect::<String>()
        .into_bytes()
}

/// A store directory laid out as the control plane writes it.
struct Store {
    dir: PathBuf,
    keys: RealmKeys,
}

impl Store {
    fn new(dir: &Path) -> Store {
        Store {
            dir: dir.to_owned(),
            keys: RealmKeys::new("", REALM),
        }
    }

    fn put(&self, key: &str, bytes: &[u8]) {
        let path = self.dir.join(key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, bytes).unwrap();
        std::fs::rename(tmp, path).unwrap();
    }

    fn snapshot(&self, revision: u64, realm: &str, signer: Option<&BundleSigner>) {
        let mut files = BTreeMap::new();
        for n in pdp_core::manifest::member::SOURCE {
            if let Ok(b) = std::fs::read(root().join("policies").join(n)) {
                files.insert(n.to_owned(), b);
            }
        }
        let opts = BuildOptions {
            realm: realm.into(),
            revision,
            created_at: 1_764_000_000,
            gzip: true,
        };
        self.put(
            &self.keys.snapshot(revision),
            &build(&files, &opts, signer).unwrap(),
        );
    }

    fn delta(&self, revision: u64, changes: &[Value]) {
        let header = BundleHeader {
            realm: REALM.into(),
            revision,
            kind: BundleKind::Delta,
            base_revision: Some(revision - 1),
            created_at: 1_764_000_100,
            identity: None,
        };
        let members = BTreeMap::from([("users.jsonl".to_owned(), jsonl(changes))]);
        let bytes = write_archive(&header, &members, Some(&signer()), true).unwrap();
        self.put(&self.keys.delta(revision), &bytes);
    }

    fn head(&self, realm: &str, snapshot: u64, revision: u64) {
        self.put(
            &self.keys.head(),
            &head(realm, snapshot, revision, now()).seal(&signer()),
        );
    }
}

/// A `HEAD` record issued at `issued_at`, re-signed every 30 s.
fn head(realm: &str, snapshot: u64, revision: u64, issued_at: i64) -> Head {
    Head {
        format: HEAD_FORMAT.into(),
        realm: realm.into(),
        revision,
        snapshot,
        issued_at,
        resign_interval_seconds: 30,
    }
}

fn state_of(state: &edge_host::api::AppState, user: &str) -> Option<String> {
    let snap = state.realms.get(REALM)?.snapshot()?;
    Some(snap.user(user)?.state().to_string())
}

fn revision(state: &edge_host::api::AppState) -> Option<u64> {
    Some(state.realms.get(REALM)?.snapshot()?.revision())
}

async fn sync_one(state: &Arc<edge_host::api::AppState>) -> Result<Vec<u64>, SyncError> {
    let mut all = sync_all(state).await;
    assert_eq!(all.len(), 1);
    all.remove(0).1.map(|s| s.installed)
}

#[tokio::test]
async fn a_local_store_directory_is_followed_revision_by_revision() {
    let dir = tmp("dir");
    let store = Store::new(&dir.join("store"));
    let config = Config {
        sources: vec![dir.join("store").join(REALM).display().to_string()],
        trust_keys: vec![format!("{REALM}={}", trust_key(&dir).display())],
        state_dir: Some(dir.join("state")),
        ..Config::default()
    };
    let (_, state) = edge_host::app(&config).unwrap();
    assert_eq!(revision(&state), None, "nothing held: fail closed");
    let e = sync_one(&state).await.unwrap_err();
    assert_eq!(e.kind(), "no_head", "{e}");

    store.snapshot(1, REALM, Some(&signer()));
    store.delta(2, &[with_state("alice", "Suspended")]);
    store.head(REALM, 1, 2);
    assert_eq!(sync_one(&state).await.unwrap(), [1, 2]);
    assert_eq!(state_of(&state, "alice").as_deref(), Some("Suspended"));
    assert_eq!(
        sync_one(&state).await.unwrap(),
        Vec::<u64>::new(),
        "unchanged HEAD"
    );

    // HEAD of another realm: its signature is refused (the key signs for
    // acme only), revision 2 stays.
    store.head("other", 1, 3);
    assert_eq!(
        sync_one(&state).await.unwrap_err().kind(),
        "head_key_not_for_realm"
    );
    // Garbage HEAD.
    store.put(&store.keys.head(), b"{\"format\":");
    assert_eq!(sync_one(&state).await.unwrap_err().kind(), "bad_head");
    assert_eq!(revision(&state), Some(2));

    // A new host with the same state directory starts from the recorded chain.
    let (_, again) = edge_host::app(&config).unwrap();
    assert_eq!(revision(&again), Some(2));
    assert_eq!(state_of(&again, "alice").as_deref(), Some("Suspended"));
}

#[tokio::test]
async fn unsigned_foreign_and_oversized_bundles_are_refused() {
    let dir = tmp("refuse");
    let store = Store::new(&dir.join("store"));
    let source = dir.join("store").join(REALM).display().to_string();
    let config = Config {
        sources: vec![source.clone()],
        trust_keys: vec![format!("{REALM}={}", trust_key(&dir).display())],
        ..Config::default()
    };
    let (_, state) = edge_host::app(&config).unwrap();

    store.snapshot(1, REALM, None);
    store.head(REALM, 1, 1);
    assert_eq!(sync_one(&state).await.unwrap_err().kind(), "unsigned");

    // Signed, but for another realm than the source names: the key is
    // trusted for acme only, so the signature is refused before the realm
    // is compared (with the key bound to both, the realm check refuses it).
    store.snapshot(1, "other", Some(&signer()));
    assert_eq!(
        sync_one(&state).await.unwrap_err().kind(),
        "key_not_for_realm"
    );
    let both = Config {
        trust_keys: vec![
            format!("{REALM}={}", trust_key(&dir).display()),
            format!("other={}", trust_key(&dir).display()),
        ],
        ..config.clone()
    };
    let (_, lenient) = edge_host::app(&both).unwrap();
    assert_eq!(
        sync_one(&lenient).await.unwrap_err().kind(),
        "realm_mismatch"
    );
    assert_eq!(revision(&state), None);

    store.snapshot(1, REALM, Some(&signer()));
    let small = Config {
        max_bundle_bytes: 1000,
        ..config.clone()
    };
    let (_, tiny) = edge_host::app(&small).unwrap();
    assert_eq!(
        sync_one(&tiny).await.unwrap_err().kind(),
        "bundle_too_large"
    );
    assert_eq!(sync_one(&state).await.unwrap(), [1]);
    let failures = state.realms.get(REALM).unwrap().reload_failures();
    assert_eq!(failures, 2);

    // No trust key and not in dev mode: a store source does not start.
    let e = edge_host::app(&Config {
        sources: vec![source],
        ..Config::default()
    })
    .unwrap_err();
    assert!(e.to_string().contains("no trust key"), "{e}");
    // A URL with credentials in it is refused.
    let e = edge_host::app(&Config {
        sources: vec!["https://user:secret@example.invalid/acme".into()],
        trust_keys: vec![format!("{REALM}={}", trust_key(&dir).display())],
        ..Config::default()
    })
    .unwrap_err();
    let e = e.to_string();
    assert!(
        e.contains("without credentials") && !e.contains("user:secret"),
        "{e}"
    );
}

#[derive(Clone)]
struct Served {
    dir: PathBuf,
    not_modified: Arc<AtomicUsize>,
}

/// A static file server with strong entity tags, like a CDN in front of the store.
async fn serve_file(
    State(s): State<Served>,
    UrlPath(key): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    let Ok(bytes) = std::fs::read(s.dir.join(&key)) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let etag = format!("\"{}\"", pdp_core::manifest::sha256_hex(&bytes));
    if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes())
    {
        s.not_modified.fetch_add(1, Ordering::SeqCst);
        return StatusCode::NOT_MODIFIED.into_response();
    }
    ([(header::ETAG, etag)], bytes).into_response()
}

#[tokio::test]
async fn an_http_source_polls_with_entity_tags() {
    let dir = tmp("http");
    let store = Store::new(&dir.join("store"));
    let served = Served {
        dir: dir.join("store"),
        not_modified: Arc::new(AtomicUsize::new(0)),
    };
    let app = axum::Router::new()
        .route("/bundles/{*key}", axum::routing::get(serve_file))
        .with_state(served.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let config = Config {
        sources: vec![format!("http://{addr}/bundles/{REALM}")],
        trust_keys: vec![format!("{REALM}={}", trust_key(&dir).display())],
        ..Config::default()
    };
    let (_, state) = edge_host::app(&config).unwrap();
    store.snapshot(1, REALM, Some(&signer()));
    store.head(REALM, 1, 1);
    assert_eq!(sync_one(&state).await.unwrap(), [1]);
    assert_eq!(sync_one(&state).await.unwrap(), Vec::<u64>::new());
    assert_eq!(
        served.not_modified.load(Ordering::SeqCst),
        1,
        "second poll was conditional"
    );

    store.delta(2, &[with_state("bob", "Deactivated")]);
    store.delta(3, &[with_state("bob", "Deleted")]);
    store.head(REALM, 1, 3);
    assert_eq!(sync_one(&state).await.unwrap(), [2, 3]);
    assert_eq!(state_of(&state, "bob").as_deref(), Some("Deleted"));

    // The server goes away: the realm keeps revision 3 and says why.
    server.abort();
    let _ = server.await;
    let e = sync_one(&state).await.unwrap_err();
    assert_eq!(e.kind(), "store_unreachable", "{e}");
    assert_eq!(revision(&state), Some(3));
    let status = state.realms.get(REALM).unwrap().last_error().unwrap();
    assert!(status.contains("unreachable"), "{status}");
}

fn is_stale(state: &edge_host::api::AppState) -> bool {
    let realm = state.realms.get(REALM).unwrap();
    let snap = realm.snapshot().unwrap();
    state.realms.is_stale(realm, &snap, now())
}

/// Issue 16 item 4: freshness comes from signed `HEAD` records only. The
/// bundle is old (built 2025-11); what keeps it fresh is a `HEAD` the
/// control plane signed recently. Before signed HEADs, every poll
/// answered by the store (a 304 or the same old `HEAD`) counted as
/// confirmation, so the old-HEAD step below stayed fresh for ever.
#[tokio::test]
async fn only_newer_signed_heads_keep_a_realm_fresh() {
    let dir = tmp("fresh");
    let store = Store::new(&dir.join("store"));
    let config = Config {
        sources: vec![dir.join("store").join(REALM).display().to_string()],
        trust_keys: vec![format!("{REALM}={}", trust_key(&dir).display())],
        state_dir: Some(dir.join("state")),
        max_staleness_seconds: Some(120),
        ..Config::default()
    };
    let (_, state) = edge_host::app(&config).unwrap();
    store.snapshot(1, REALM, Some(&signer()));

    // Signed 200 s ago, beyond the 120 s limit: loaded, but stale, and
    // polling the unchanged HEAD again (a 304 from the local store's
    // entity tag) confirms nothing.
    let t = now();
    store.put(
        &store.keys.head(),
        &head(REALM, 1, 1, t - 200).seal(&signer()),
    );
    assert_eq!(sync_one(&state).await.unwrap(), [1]);
    assert!(
        is_stale(&state),
        "a HEAD signed 200 s ago is no confirmation"
    );
    for _ in 0..3 {
        assert_eq!(sync_one(&state).await.unwrap(), Vec::<u64>::new());
        assert!(is_stale(&state), "an unchanged HEAD is no confirmation");
    }

    // The same record unsigned, with a fresh issued_at: refused, still stale.
    let forged = serde_json::to_vec(&head(REALM, 1, 1, t)).unwrap();
    store.put(&store.keys.head(), &forged);
    assert_eq!(sync_one(&state).await.unwrap_err().kind(), "unsigned_head");
    assert!(is_stale(&state));
    // Signed by a key this host does not trust: refused.
    let stranger = BundleSigner::from_seed(&[6; 32]);
    store.put(&store.keys.head(), &head(REALM, 1, 1, t).seal(&stranger));
    assert_eq!(
        sync_one(&state).await.unwrap_err().kind(),
        "head_unknown_kid"
    );
    assert!(is_stale(&state));

    // Re-signed now: fresh.
    store.put(&store.keys.head(), &head(REALM, 1, 1, t).seal(&signer()));
    assert_eq!(sync_one(&state).await.unwrap(), Vec::<u64>::new());
    assert!(!is_stale(&state), "a newly signed HEAD confirms revision 1");

    // An older signed record replayed (by a cache, or an attacker who
    // kept it) verifies, but counts for nothing; a newer revision
    // installs. The realm stays fresh from the newest record.
    store.put(
        &store.keys.head(),
        &head(REALM, 1, 1, t - 500).seal(&signer()),
    );
    assert_eq!(sync_one(&state).await.unwrap(), Vec::<u64>::new());
    let realm = state.realms.get(REALM).unwrap();
    let fresh_at = realm.fresh_at(&realm.snapshot().unwrap());
    assert_eq!(
        fresh_at, t,
        "the replayed record did not move freshness back"
    );
    store.delta(2, &[with_state("alice", "Suspended")]);
    store.put(&store.keys.head(), &head(REALM, 1, 2, t).seal(&signer()));
    assert_eq!(sync_one(&state).await.unwrap(), [2]);
    assert!(!is_stale(&state));

    // A restarted host counts freshness from the recorded signed HEAD.
    let (_, again) = edge_host::app(&config).unwrap();
    assert_eq!(revision(&again), Some(2));
    assert!(!is_stale(&again));

    // The store rolled back to revision 1 (a HEAD signed now, so it
    // verifies), after a restart that lost the last known good chain:
    // refused by the high-water mark kept in the state directory.
    let realm_dir = std::fs::read_dir(dir.join("state"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::remove_file(realm_dir.join("chain.json")).unwrap();
    store.put(
        &store.keys.head(),
        &head(REALM, 1, 1, t + 1).seal(&signer()),
    );
    let (_, lost) = edge_host::app(&config).unwrap();
    assert_eq!(revision(&lost), None, "nothing held after losing the chain");
    let e = sync_one(&lost).await.unwrap_err();
    assert_eq!(e.kind(), "store_behind", "{e}");
    assert_eq!(revision(&lost), None, "revision 1 was never served");
}

/// Issue 16 item 4: a staleness limit shorter than 4 times the interval
/// the realm's control plane re-signs HEAD at is refused: by the poll
/// that reads it, and at start when the state directory recorded it.
#[tokio::test]
async fn a_staleness_limit_under_four_intervals_is_refused() {
    let dir = tmp("interval");
    let store = Store::new(&dir.join("store"));
    let config = Config {
        sources: vec![dir.join("store").join(REALM).display().to_string()],
        trust_keys: vec![format!("{REALM}={}", trust_key(&dir).display())],
        state_dir: Some(dir.join("state")),
        max_staleness_seconds: Some(120),
        ..Config::default()
    };
    store.snapshot(1, REALM, Some(&signer()));
    store.head(REALM, 1, 1);
    let (_, state) = edge_host::app(&config).unwrap();
    assert_eq!(sync_one(&state).await.unwrap(), [1]);

    let short = Config {
        max_staleness_seconds: Some(119),
        ..config.clone()
    };
    let e = edge_host::app(&short).unwrap_err().to_string();
    assert!(e.contains("shorter than 4 times"), "{e}");
    let fresh_dir = Config {
        state_dir: Some(dir.join("state2")),
        ..short
    };
    let (_, state) = edge_host::app(&fresh_dir).unwrap();
    let e = sync_one(&state).await.unwrap_err();
    assert_eq!(e.kind(), "staleness_limit_too_short", "{e}");
    // The bundles are installed all the same (a revocation must not wait
    // for the configuration), but the record counts no freshness: stale.
    assert_eq!(revision(&state), Some(1));
    assert!(is_stale(&state));
}

/// A control plane whose clock jumped signs records dated in the future:
/// a host counts such a record as no later than a minute from its own now,
/// so the realm goes stale a limit after that, not years later.
#[tokio::test]
async fn a_head_from_the_future_counts_as_now_plus_a_minute() {
    let dir = tmp("future");
    let store = Store::new(&dir.join("store"));
    let config = Config {
        sources: vec![dir.join("store").join(REALM).display().to_string()],
        trust_keys: vec![format!("{REALM}={}", trust_key(&dir).display())],
        max_staleness_seconds: Some(120),
        ..Config::default()
    };
    let (_, state) = edge_host::app(&config).unwrap();
    store.snapshot(1, REALM, Some(&signer()));
    let t = now();
    store.put(
        &store.keys.head(),
        &head(REALM, 1, 1, t + 10 * 365 * 86_400).seal(&signer()),
    );
    assert_eq!(sync_one(&state).await.unwrap(), [1]);
    let realm = state.realms.get(REALM).unwrap();
    let fresh_at = realm.fresh_at(&realm.snapshot().unwrap());
    assert!(
        fresh_at <= now() + pdp_core::layout::MAX_CLOCK_SKEW_SECONDS,
        "fresh until {fresh_at}, ten years ahead"
    );
    assert!(fresh_at >= t, "{fresh_at}");
    assert!(
        state
            .realms
            .is_stale(realm, &realm.snapshot().unwrap(), t + 200)
    );
}

/// Review finding: a `high_water` file that could not be read as a
/// revision counted as 0, so rollback protection silently started over. A
/// garbled one stops the realm's restore and the host does not start; a
/// missing one is a realm never seen (0).
#[tokio::test]
async fn a_garbled_high_water_stops_the_start() {
    let dir = tmp("high-water");
    let store = Store::new(&dir.join("store"));
    let config = Config {
        sources: vec![dir.join("store").join(REALM).display().to_string()],
        trust_keys: vec![format!("{REALM}={}", trust_key(&dir).display())],
        state_dir: Some(dir.join("state")),
        ..Config::default()
    };
    store.snapshot(1, REALM, Some(&signer()));
    store.head(REALM, 1, 1);
    let (_, state) = edge_host::app(&config).unwrap();
    assert_eq!(sync_one(&state).await.unwrap(), [1]);
    let file = dir
        .join("state")
        .join(format!("realm-{REALM}"))
        .join("high_water");
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), "1");
    for garbled in ["", "seven", "-1", "1 2", "99999999999999999999999"] {
        std::fs::write(&file, garbled).unwrap();
        let e = edge_host::app(&config).unwrap_err();
        let text = e.to_string();
        assert!(
            matches!(e, edge_host::StartError::State { .. })
                && text.contains("high_water")
                && text.contains(REALM),
            "{garbled:?}: {text}"
        );
    }
    // Missing: nothing seen yet (the recorded HEAD still names 1).
    std::fs::remove_file(&file).unwrap();
    let (_, state) = edge_host::app(&config).unwrap();
    assert_eq!(revision(&state), Some(1));
}
