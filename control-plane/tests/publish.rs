//! Publishing to a local store: snapshot, deltas, compaction, two
//! publishers racing on one store, and a publisher killed between writing
//! a delta and advancing `HEAD`.

mod support;

use control_plane::backend::local_identity::LocalIdentity;
use control_plane::domain::import::Format;
use control_plane::domain::policy::PolicyInput;
use control_plane::ports::clock::ManualClock;
use control_plane::ports::identity::Identities;
use control_plane::ports::repository::Repository;
use control_plane::ports::{Condition, Fetched, ObjectStore, Put};
use control_plane::service::publish::load_published;
use control_plane::{Error, Service, Settings};
use object_store::LocalDirStore;
use pdp_core::decision::{EntityRef, Reason, Request};
use pdp_core::layout::{Head, RealmKeys};
use pdp_core::{Decision, LifecycleAction, Snapshot, UserState};
use std::path::Path;
use std::sync::Arc;
use support::{Cp, NOW, OP, Options};

/// Largest object the tests read whole.
const LIMIT: u64 = 64 << 20;

/// Settings without auto-publish: every publish in these tests is asked for.
fn settings(compact_after_deltas: u64, store_prefix: &str) -> Settings {
    Settings {
        auto_publish: false,
        compact_after_deltas,
        store_prefix: store_prefix.into(),
        ..Settings::default()
    }
}

/// A service on a database file (so another service, or another process,
/// can open it) with the realm `acme`.
async fn open(settings: Settings) -> Cp {
    let cp = Cp::open(Options {
        settings,
        file_db: true,
        identity: None,
    })
    .await;
    cp.realm("acme").await;
    cp
}

/// Another service — a second control plane — over `repo` and `store`.
fn service(
    repo: Arc<dyn Repository>,
    store: Arc<dyn ObjectStore>,
    clock: ManualClock,
    settings: Settings,
) -> Arc<Service> {
    let identity = Arc::new(LocalIdentity::new(repo.clone(), support::ISSUER_BASE, 3600));
    Arc::new(Service::new(
        repo,
        Identities::new(identity),
        store,
        Arc::new(clock),
        settings,
    ))
}

async fn get(store: &dyn ObjectStore, key: &str) -> Option<Vec<u8>> {
    match store.get(key, None, LIMIT).await.unwrap() {
        Fetched::Found { bytes, .. } => Some(bytes),
        Fetched::Missing => None,
        Fetched::NotModified => panic!("{key}: not modified without If-None-Match"),
    }
}

async fn head_in(store: &dyn ObjectStore, prefix: &str, realm: &str) -> Head {
    let key = RealmKeys::new(prefix, realm).head();
    let bytes = get(store, &key).await.unwrap_or_else(|| panic!("no {key}"));
    Head::open(&bytes, pdp_core::Trust::Dev).unwrap()
}

async fn head(cp: &Cp, realm: &str) -> Head {
    head_in(cp.store.as_ref(), "", realm).await
}

/// What a decision point gets from the store, verified with the realm's
/// bundle key (a gap or a wrong base fails here).
async fn load(cp: &Cp, realm: &str) -> Snapshot {
    let snap = cp.published(realm).await.unwrap();
    assert_eq!(snap.revision(), head(cp, realm).await.revision);
    snap
}

fn state_in(snap: &Snapshot, id: &str) -> Option<UserState> {
    snap.user(id).map(|u| u.state())
}

fn view_own_profile(id: &str) -> Request {
    Request {
        principal: EntityRef::new("User", id),
        action: EntityRef::new("Action", "viewProfile"),
        resource: EntityRef::new("User", id),
        context: serde_json::json!({}),
        entities: Vec::new(),
    }
}

/// Changes committed and not yet published, as `s` reports them.
async fn pending(s: &Service) -> u64 {
    s.publish_status(OP, "acme").await.unwrap().pending_changes
}

#[tokio::test]
async fn snapshot_then_deltas_then_compaction() {
    let cp = open(settings(0, "")).await;
    let s = &cp.service;
    let alice = cp.user("acme", "alice@acme.io").await;
    s.lifecycle(OP, "acme", &alice, LifecycleAction::Verify)
        .await
        .unwrap();

    let first = s.publish(OP, "acme").await.unwrap();
    assert_eq!((first.kind.as_str(), first.revision), ("snapshot", 1));
    assert_eq!(
        state_in(&load(&cp, "acme").await, &alice),
        Some(UserState::Active)
    );
    assert_eq!(pending(s).await, 0);

    // Nothing pending: nothing written.
    let none = s.publish(OP, "acme").await.unwrap();
    assert_eq!((none.kind.as_str(), none.revision), ("none", 1));

    // One lifecycle change: a delta carrying that one user.
    cp.at(NOW + 1)
        .lifecycle(OP, "acme", &alice, LifecycleAction::Suspend)
        .await
        .unwrap();
    let d = s.publish(OP, "acme").await.unwrap();
    assert_eq!((d.kind.as_str(), d.revision, d.users), ("delta", 2, 1));
    let snap = load(&cp, "acme").await;
    assert_eq!(state_in(&snap, &alice), Some(UserState::Suspended));
    let answer = snap.is_authorized(&view_own_profile(&alice)).unwrap();
    assert_eq!(answer.reason, Reason::UserState(UserState::Suspended));

    // A deleted user's state travels in a delta; so does a policy change.
    let bob = cp.user("acme", "bob@acme.io").await;
    cp.at(NOW + 2).publish(OP, "acme").await.unwrap();
    assert!(load(&cp, "acme").await.user(&bob).is_some());
    cp.at(NOW + 3)
        .lifecycle(OP, "acme", &bob, LifecycleAction::Delete)
        .await
        .unwrap();
    s.create_policy(
        OP,
        "acme",
        "everyone-views-docs",
        &PolicyInput {
            body: "permit (principal, action == Action::\"readDocument\", resource);".into(),
            description: String::new(),
        },
    )
    .await
    .unwrap();
    let d = s.publish(OP, "acme").await.unwrap();
    assert_eq!((d.kind.as_str(), d.revision), ("delta", 4));
    let chained = load(&cp, "acme").await;
    assert_eq!(state_in(&chained, &bob), Some(UserState::Deleted));
    assert!(
        chained
            .policy_set()
            .policies()
            .any(|p| p.id().to_string() == "everyone-views-docs")
    );

    // Compaction: one snapshot at HEAD's revision, equal to the chain.
    let c = cp.at(NOW + 4).compact(OP, "acme").await.unwrap();
    assert_eq!((c.kind.as_str(), c.revision), ("snapshot", 4));
    let h = head(&cp, "acme").await;
    assert_eq!((h.snapshot, h.revision), (4, 4));
    let compacted = load(&cp, "acme").await;
    let lines = |s: &Snapshot| {
        let mut l: Vec<String> = s
            .directory()
            .unwrap()
            .to_jsonl()
            .lines()
            .map(str::to_owned)
            .collect();
        l.sort();
        l
    };
    assert_eq!(lines(&compacted), lines(&chained));
    assert_eq!(
        compacted.policy_set().to_string(),
        chained.policy_set().to_string()
    );
    // Compacting again has nothing to do; the next change is a delta on it.
    assert_eq!(
        cp.at(NOW + 5).compact(OP, "acme").await.unwrap().kind,
        "none"
    );
    s.lifecycle(OP, "acme", &alice, LifecycleAction::Resume)
        .await
        .unwrap();
    assert_eq!(s.publish(OP, "acme").await.unwrap().revision, 5);
    assert_eq!(
        state_in(&load(&cp, "acme").await, &alice),
        Some(UserState::Active)
    );
}

#[tokio::test]
async fn automatic_compaction_and_bulk_import_snapshots() {
    let cp = open(settings(3, "tenants")).await;
    let s = &cp.service;
    s.publish(OP, "acme").await.unwrap();
    for i in 0..4 {
        cp.user("acme", &format!("u{i}@acme.io")).await;
        s.publish(OP, "acme").await.unwrap();
    }
    // Three deltas after snapshot 1 triggered a snapshot at revision 4.
    let h = head_in(cp.store.as_ref(), "tenants", "acme").await;
    assert_eq!((h.snapshot, h.revision), (4, 5));
    // Everything went under the prefix, and loads from there.
    assert!(
        get(cp.store.as_ref(), &RealmKeys::new("", "acme").head())
            .await
            .is_none()
    );
    let ring = cp.keyring("acme").await;
    let snap = load_published(cp.store.as_ref(), "tenants", "acme", &ring)
        .await
        .unwrap();
    assert_eq!(snap.revision(), 5);
    // A bulk import changes every user: published as a snapshot.
    let lines = "{\"username\":\"x\",\"email\":\"x@acme.io\",\"state\":\"Active\"}\n";
    s.import_users(
        OP,
        "acme",
        Box::new(std::io::Cursor::new(lines)),
        Format::JsonLines,
    )
    .await
    .unwrap();
    let p = s.publish(OP, "acme").await.unwrap();
    assert_eq!((p.kind.as_str(), p.revision, p.users), ("snapshot", 6, 5));
}

/// Two control planes (two services over one repository and one store),
/// each changing users and publishing as fast as it can: every revision
/// is claimed once, `HEAD` only moves forward, and at the end the store
/// holds every change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_publishers_never_lose_an_update() {
    let cp = open(settings(0, "")).await;
    let mut ids = Vec::new();
    for i in 0..6 {
        ids.push(cp.user("acme", &format!("u{i}@acme.io")).await);
    }
    cp.service.publish(OP, "acme").await.unwrap();

    let rounds = 15;
    let workers: Vec<_> = [&ids[..3], &ids[3..]]
        .into_iter()
        .map(|mine| {
            let mine = mine.to_vec();
            let p = service(
                cp.repo.clone(),
                cp.store.clone(),
                cp.clock.clone(),
                settings(4, ""),
            );
            tokio::spawn(async move {
                let mut seen = Vec::new();
                for round in 0..rounds {
                    for id in &mine {
                        let attrs = serde_json::json!({ "level": round });
                        p.update_user_attrs(OP, "acme", id, attrs.as_object().unwrap())
                            .await
                            .unwrap();
                    }
                    seen.push(p.publish(OP, "acme").await.unwrap().revision);
                }
                seen
            })
        })
        .collect();
    let mut revisions: Vec<Vec<u64>> = Vec::new();
    for w in workers {
        revisions.push(w.await.unwrap());
    }
    for seen in &revisions {
        assert!(
            seen.windows(2).all(|w| w[0] <= w[1]),
            "a publisher saw HEAD go backwards: {seen:?}"
        );
    }
    let s = &cp.service;
    // Every change was published by one of the two: nothing is left.
    let last = s.publish(OP, "acme").await.unwrap();
    assert_eq!(last.kind, "none");
    assert_eq!(pending(s).await, 0);
    let snap = load(&cp, "acme").await;
    for id in &ids {
        let attrs = snap.user(id).unwrap().attrs();
        assert_eq!(attrs["level"], rounds - 1, "user {id}: {attrs:?}");
    }
    // Each delta names the revision before it as its base: no revision was
    // claimed twice and none skipped (load() applies them in order). Every
    // revision a publisher was told of is one HEAD reached. (Not every
    // revision is told to someone: a delta written by one publisher and
    // put in HEAD by the other, which adopts it, is published again by its
    // writer once a compacted snapshot covers it; upserts are idempotent.)
    let h = head(&cp, "acme").await;
    assert_eq!(last.revision, h.revision);
    let mut claimed: Vec<u64> = revisions.concat();
    claimed.sort_unstable();
    claimed.dedup();
    assert!(
        claimed.iter().all(|r| (2..=h.revision).contains(r)),
        "{claimed:?} against HEAD {h:?}"
    );
    assert!(claimed.len() >= rounds, "{claimed:?}");
    assert!(h.snapshot > 1, "compaction ran (every 4 deltas): {h:?}");
}

const CRASH_DIR: &str = "GATEHOUSE_TEST_CRASH_DIR";
const CRASH_DB: &str = "GATEHOUSE_TEST_CRASH_DB";

const CRASH_AFTER: &str = "GATEHOUSE_TEST_CRASH_AFTER_HEAD";

/// The killed publisher, in a child process: publish the pending change
/// through a store that dies just before `HEAD` moves, or just after.
async fn publish_and_die(dir: &Path) {
    let db = support::Db::from_env_value(&std::env::var(CRASH_DB).unwrap());
    let repo = db.open().await;
    let store = Arc::new(support::DiesAtHead {
        inner: Arc::new(LocalDirStore::new(dir.join("store"))),
        after: std::env::var_os(CRASH_AFTER).is_some(),
    });
    let s = service(repo, store, ManualClock::at(NOW + 1), settings(0, ""));
    let _ = s.publish(OP, "acme").await;
}

/// A publisher killed with a delta written, before `HEAD` names it
/// (`after: false`) or after (`after: true`, its changes never marked
/// published): the next publisher, in a fresh process, adopts the delta
/// and the changes its publisher recorded it carries, so the change is
/// published exactly once (no second delta) and nothing is lost.
async fn killed_publisher(test: &str, after: bool) {
    // This test runs itself again as the child that gets killed.
    if let Ok(dir) = std::env::var(CRASH_DIR) {
        publish_and_die(Path::new(&dir)).await;
        unreachable!("the publisher must have died");
    }
    let cp = open(settings(0, "")).await;
    let s = &cp.service;
    let alice = cp.user("acme", "alice@acme.io").await;
    s.lifecycle(OP, "acme", &alice, LifecycleAction::Verify)
        .await
        .unwrap();
    s.publish(OP, "acme").await.unwrap();
    cp.at(NOW + 1)
        .lifecycle(OP, "acme", &alice, LifecycleAction::Suspend)
        .await
        .unwrap();

    let mut child = std::process::Command::new(std::env::current_exe().unwrap());
    child
        .args(["--exact", test, "--test-threads=1"])
        .env(CRASH_DIR, cp.dir.path())
        .env(CRASH_DB, cp.db.to_env_value())
        .stderr(std::process::Stdio::null())
        .stdout(std::process::Stdio::null());
    if after {
        child.env(CRASH_AFTER, "1");
    }
    let status = child.status().unwrap();
    assert!(!status.success(), "the child was meant to die");
    // The delta is on disk; HEAD names it only if the child died after.
    let keys = RealmKeys::new("", "acme");
    assert!(get(cp.store.as_ref(), &keys.delta(2)).await.is_some());
    let (head_revision, seen) = if after {
        (2, UserState::Suspended)
    } else {
        (1, UserState::Active)
    };
    assert_eq!(head(&cp, "acme").await.revision, head_revision);
    assert_eq!(state_in(&load(&cp, "acme").await, &alice), Some(seen));

    // Restart (a fresh connection to the database, a fresh store handle).
    let repo = cp.db.open().await;
    let store: Arc<dyn ObjectStore> = Arc::new(LocalDirStore::new(cp.dir.path().join("store")));
    let p = service(repo, store, cp.clock.clone(), settings(0, ""));
    assert_eq!(pending(&p).await, 1);
    cp.clock.set(NOW + 2);
    let done = p.publish(OP, "acme").await.unwrap();
    assert_eq!((done.kind.as_str(), done.revision), ("none", 2));
    assert_eq!(pending(&p).await, 0);
    assert!(get(cp.store.as_ref(), &keys.delta(3)).await.is_none());
    assert_eq!(head(&cp, "acme").await.revision, 2);
    assert_eq!(
        state_in(&load(&cp, "acme").await, &alice),
        Some(UserState::Suspended)
    );
}

#[tokio::test]
async fn publisher_killed_before_head_recovers() {
    killed_publisher("publisher_killed_before_head_recovers", false).await;
}

#[tokio::test]
async fn publisher_killed_after_head_recovers() {
    killed_publisher("publisher_killed_after_head_recovers", true).await;
}

#[tokio::test]
async fn a_foreign_or_tampered_bundle_in_the_way_is_refused() {
    let cp = open(settings(0, "")).await;
    let s = &cp.service;
    s.publish(OP, "acme").await.unwrap();
    cp.user("acme", "a@acme.io").await;
    // Someone put garbage where the next delta goes.
    let put = cp
        .store
        .put(
            &RealmKeys::new("", "acme").delta(2),
            b"not a bundle",
            Condition::None,
        )
        .await
        .unwrap();
    assert!(matches!(put, Put::Written(_)));
    let err = s.publish(OP, "acme").await.unwrap_err();
    assert!(matches!(err, Error::Publish(_)), "{err}");
    assert_eq!(head(&cp, "acme").await.revision, 1);
    assert_eq!(pending(s).await, 1);
}

#[tokio::test]
async fn a_deleted_realm_is_withdrawn_from_decision_points() {
    let cp = open(settings(0, "")).await;
    let s = &cp.service;
    let alice = cp.user("acme", "alice@acme.io").await;
    s.lifecycle(OP, "acme", &alice, LifecycleAction::Verify)
        .await
        .unwrap();
    s.create_policy(
        OP,
        "acme",
        "self-view",
        &PolicyInput {
            body: "permit (principal, action == Action::\"viewProfile\", resource) when { principal == resource };".into(),
            description: String::new(),
        },
    )
    .await
    .unwrap();
    s.publish(OP, "acme").await.unwrap();
    let req = view_own_profile(&alice);
    let before = load(&cp, "acme").await.is_authorized(&req).unwrap();
    assert_eq!(before.decision, Decision::Allow);
    let held = load(&cp, "acme").await;
    assert!(held.user(&alice).is_some());
    assert!(held.issuer().is_some());
    // Deleting the realm withdraws it: a snapshot of an empty realm at the
    // next revision, which decision points load in place of the old one.
    cp.at(NOW + 1).delete_realm(OP, "acme").await.unwrap();
    let h = head(&cp, "acme").await;
    assert_eq!((h.snapshot, h.revision), (2, 2));
    assert!(
        get(cp.store.as_ref(), &RealmKeys::new("", "acme").snapshot(2))
            .await
            .is_some()
    );
    let withdrawn = load(&cp, "acme").await;
    let after = withdrawn.is_authorized(&req).unwrap();
    assert_eq!(after.decision, Decision::Deny);
    // alice is gone from the directory ...
    assert_eq!(after.reason, Reason::UnknownUser);
    // ... and whatever else asks is denied by the withdrawal's policy.
    let mut other = req.clone();
    other.principal = EntityRef::new("Service", "nightly-job");
    let after = withdrawn.is_authorized(&other).unwrap();
    assert_eq!(after.reason, Reason::Forbid("realm-deleted".into()));
    // No users (profiles are gone) and no identity settings (its tokens
    // are no longer verified: introspection answers inactive).
    assert!(withdrawn.user(&alice).is_none());
    assert_eq!(withdrawn.directory().map(|d| d.len()), Some(0));
    assert_eq!(withdrawn.issuer(), None);
    // Never published: nothing to withdraw, nothing written.
    cp.realm("other").await;
    cp.service.delete_realm(OP, "other").await.unwrap();
    assert_eq!(cp.store.list("other").await.unwrap(), Vec::<String>::new());
    assert!(matches!(
        cp.published("other").await,
        Err(Error::NotFound { .. })
    ));
}

/// Issue 16 item 4: `HEAD` is a record signed with the realm's bundle key,
/// re-signed every half interval while nothing changes, never going
/// backwards in time; the control plane never builds on a `HEAD` it did
/// not sign (its `issued_at` would be carried into the next signed one).
#[tokio::test]
async fn head_is_signed_and_re_signed_while_nothing_changes() {
    let cp = open(settings(0, "")).await;
    let s = &cp.service;
    s.publish(OP, "acme").await.unwrap();
    let key = RealmKeys::new("", "acme").head();
    let first_raw = get(cp.store.as_ref(), &key).await.unwrap();
    let raw = first_raw.clone();
    let ring = cp.keyring("acme").await;
    let h = Head::open(&raw, pdp_core::Trust::Keyring(&ring)).unwrap();
    assert_eq!(
        (h.revision, h.issued_at, h.resign_interval_seconds),
        (1, NOW, 30)
    );
    let mut stranger = pdp_core::Keyring::new();
    stranger.add(pdp_core::BundleSigner::from_seed(&[1; 32]).verifying_key());
    assert!(Head::open(&raw, pdp_core::Trust::Keyring(&stranger)).is_err());

    // Under half an interval old: left alone. Then re-signed, same revision.
    assert_eq!(cp.at(NOW + 14).resign_heads().await.unwrap(), []);
    assert_eq!(head(&cp, "acme").await.issued_at, NOW);
    let done = cp.at(NOW + 15).resign_heads().await.unwrap();
    assert_eq!(done.len(), 1);
    assert_eq!(
        (done[0].realm.as_str(), done[0].revision, done[0].issued_at),
        ("acme", 1, NOW + 15)
    );
    let h = head(&cp, "acme").await;
    assert_eq!((h.revision, h.snapshot, h.issued_at), (1, 1, NOW + 15));
    let text = s.metrics_text().await.unwrap();
    assert!(text.contains("gatehouse_cp_head_resigns_total 1"), "{text}");

    // A clock that went back: the next record is not older.
    cp.user("acme", "b@acme.io").await;
    cp.at(NOW + 5).publish(OP, "acme").await.unwrap();
    let h = head(&cp, "acme").await;
    assert_eq!((h.revision, h.issued_at), (2, NOW + 15));

    // Someone with write access to the store puts an unsigned record (or
    // one signed by another key) claiming a far-future issued_at: neither
    // publishing nor re-signing builds on it.
    let forged = Head {
        issued_at: NOW + 1_000_000,
        ..h.clone()
    };
    for (failures, bytes) in [
        serde_json::to_vec(&forged).unwrap(),
        forged.seal(&pdp_core::BundleSigner::from_seed(&[1; 32])),
    ]
    .into_iter()
    .enumerate()
    {
        cp.store.put(&key, &bytes, Condition::None).await.unwrap();
        cp.user("acme", &format!("c{}@acme.io", bytes.len())).await;
        let err = cp.at(NOW + 60).publish(OP, "acme").await.unwrap_err();
        assert!(matches!(err, Error::Publish(_)), "{err}");
        assert_eq!(cp.at(NOW + 60).resign_heads().await.unwrap(), []);
        let text = s.metrics_text().await.unwrap();
        let line = format!("gatehouse_cp_head_resign_failures_total {}", failures + 1);
        assert!(text.contains(&line), "{text}");
    }

    // The unsigned HEAD of an earlier release is read for its revisions
    // only, and replaced by a signed record dated now.
    let legacy = format!(
        r#"{{"format":"gatehouse.head/v1","realm":"acme","revision":2,"snapshot":1,"updated_at":{}}}"#,
        NOW + 1_000_000
    );
    cp.store
        .put(&key, legacy.as_bytes(), Condition::None)
        .await
        .unwrap();
    let done = cp.at(NOW + 70).resign_heads().await.unwrap();
    assert_eq!(done.len(), 1);
    let raw = get(cp.store.as_ref(), &key).await.unwrap();
    let h = Head::open(&raw, pdp_core::Trust::Keyring(&ring)).unwrap();
    assert_eq!((h.revision, h.snapshot, h.issued_at), (2, 1, NOW + 70));
    // And the pending users publish on top of it.
    let p = cp.at(NOW + 71).publish(OP, "acme").await.unwrap();
    assert_eq!(p.revision, 3);
    assert_eq!(load(&cp, "acme").await.revision(), 3);

    // The store rolled back to the first HEAD (signed by this realm's own
    // key, at revision 1): never re-signed as fresh, never built on. A
    // legacy unsigned HEAD naming an old revision is refused the same way.
    let legacy_old = br#"{"format":"gatehouse.head/v1","realm":"acme","revision":1,"snapshot":1,"updated_at":1}"#;
    for (n, bytes) in [first_raw, legacy_old.to_vec()].into_iter().enumerate() {
        cp.store.put(&key, &bytes, Condition::None).await.unwrap();
        assert_eq!(cp.at(NOW + 200).resign_heads().await.unwrap(), []);
        let text = s.metrics_text().await.unwrap();
        let line = format!("gatehouse_cp_head_resign_failures_total {}", n + 3);
        assert!(text.contains(&line), "{text}");
        cp.user("acme", &format!("late{n}@acme.io")).await;
        let err = cp.at(NOW + 201).publish(OP, "acme").await.unwrap_err();
        assert!(err.to_string().contains("below revision 3"), "{err}");
        assert_eq!(
            get(cp.store.as_ref(), &key).await.unwrap(),
            bytes,
            "HEAD untouched"
        );
    }
}
