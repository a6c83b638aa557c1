//! Publishing to a local store: snapshot, deltas, compaction, two
//! publishers racing on one store, and a publisher killed between writing
//! a delta and advancing `HEAD`.

use control_plane::Db;
use control_plane::objstore::{Condition, LocalDirStore, Object, ObjectStore, Put};
use control_plane::publish::Publisher;
use control_plane::realm::NewRealm;
use control_plane::user::NewUser;
use pdp_core::decision::{EntityRef, Request};
use pdp_core::layout::{Head, RealmKeys};
use pdp_core::{Keyring, LifecycleAction, Snapshot, UserState};
use std::path::Path;

const NOW: i64 = 1_800_000_000;

fn new_db(path: &Path, realm: &str) -> Db {
    let db = Db::open(path).unwrap();
    db.create_realm(
        &NewRealm {
            name: realm.into(),
            ..NewRealm::default()
        },
        "https://cp.example",
        NOW,
    )
    .unwrap();
    db
}

fn add_user(db: &Db, realm: &str, email: &str) -> String {
    db.create_user(
        realm,
        &NewUser {
            email: email.into(),
            ..NewUser::default()
        },
        NOW,
    )
    .unwrap()
    .id
}

fn head(store: &dyn ObjectStore, realm: &str) -> Head {
    let obj = store
        .get(&RealmKeys::new("", realm).head())
        .unwrap()
        .unwrap();
    Head::parse(&obj.bytes).unwrap()
}

/// What a decision point gets from the store, verified with the realm's
/// bundle key (a gap or a wrong base fails here).
fn load(db: &Db, store: &dyn ObjectStore, realm: &str) -> Snapshot {
    let mut ring = Keyring::new();
    ring.add(db.bundle_signer(realm).unwrap().verifying_key());
    let snap = control_plane::publish::load_published(store, "", realm, &ring).unwrap();
    assert_eq!(snap.revision(), head(store, realm).revision);
    snap
}

fn state_in(snap: &Snapshot, id: &str) -> Option<UserState> {
    snap.user(id).map(|u| u.state())
}

#[test]
fn snapshot_then_deltas_then_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let db = new_db(&dir.path().join("cp.db"), "acme");
    let store = LocalDirStore::open(dir.path().join("store")).unwrap();
    let p = Publisher::new(&db, &store, "", 0);
    let alice = add_user(&db, "acme", "alice@acme.io");
    db.lifecycle("acme", &alice, LifecycleAction::Verify, NOW)
        .unwrap();

    let first = p.publish("acme", NOW).unwrap();
    assert_eq!((first.kind.as_str(), first.revision), ("snapshot", 1));
    assert_eq!(
        state_in(&load(&db, &store, "acme"), &alice),
        Some(UserState::Active)
    );
    assert_eq!(p.status("acme").unwrap().pending_changes, 0);

    // Nothing pending: nothing written.
    let none = p.publish("acme", NOW).unwrap();
    assert_eq!((none.kind.as_str(), none.revision), ("none", 1));

    // One lifecycle change: a delta carrying that one user.
    db.lifecycle("acme", &alice, LifecycleAction::Suspend, NOW + 1)
        .unwrap();
    let d = p.publish("acme", NOW + 1).unwrap();
    assert_eq!((d.kind.as_str(), d.revision, d.users), ("delta", 2, 1));
    let snap = load(&db, &store, "acme");
    assert_eq!(state_in(&snap, &alice), Some(UserState::Suspended));
    let req = Request {
        principal: EntityRef::new("User", &alice),
        action: EntityRef::new("Action", "viewProfile"),
        resource: EntityRef::new("User", &alice),
        context: serde_json::json!({}),
        entities: Vec::new(),
    };
    let answer = snap.is_authorized(&req).unwrap();
    assert_eq!(
        answer.reason,
        pdp_core::decision::Reason::UserState(UserState::Suspended)
    );

    // A deleted user's state travels in a delta; so does a policy change.
    let bob = add_user(&db, "acme", "bob@acme.io");
    p.publish("acme", NOW + 2).unwrap();
    assert!(load(&db, &store, "acme").user(&bob).is_some());
    db.lifecycle("acme", &bob, LifecycleAction::Delete, NOW + 3)
        .unwrap();
    db.create_policy(
        "acme",
        "everyone-views-docs",
        &control_plane::policy::PolicyInput {
            body: "permit (principal, action == Action::\"readDocument\", resource);".into(),
            description: String::new(),
        },
        NOW + 3,
    )
    .unwrap();
    let d = p.publish("acme", NOW + 3).unwrap();
    assert_eq!((d.kind.as_str(), d.revision), ("delta", 4));
    let chained = load(&db, &store, "acme");
    assert_eq!(state_in(&chained, &bob), Some(UserState::Deleted));
    assert!(
        chained
            .policy_set()
            .policies()
            .any(|p| p.id().to_string() == "everyone-views-docs")
    );

    // Compaction: one snapshot at HEAD's revision, equal to the chain.
    let c = p.compact("acme", NOW + 4).unwrap();
    assert_eq!((c.kind.as_str(), c.revision), ("snapshot", 4));
    let h = head(&store, "acme");
    assert_eq!((h.snapshot, h.revision), (4, 4));
    let compacted = load(&db, &store, "acme");
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
    assert_eq!(p.compact("acme", NOW + 5).unwrap().kind, "none");
    db.lifecycle("acme", &alice, LifecycleAction::Resume, NOW + 5)
        .unwrap();
    assert_eq!(p.publish("acme", NOW + 5).unwrap().revision, 5);
    assert_eq!(
        state_in(&load(&db, &store, "acme"), &alice),
        Some(UserState::Active)
    );
}

#[test]
fn automatic_compaction_and_bulk_import_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let db = new_db(&dir.path().join("cp.db"), "acme");
    let store = LocalDirStore::open(dir.path().join("store")).unwrap();
    let p = Publisher::new(&db, &store, "tenants", 3);
    p.publish("acme", NOW).unwrap();
    let keys = RealmKeys::new("tenants", "acme");
    for i in 0..4 {
        add_user(&db, "acme", &format!("u{i}@acme.io"));
        p.publish("acme", NOW).unwrap();
    }
    // Three deltas after snapshot 1 triggered a snapshot at revision 4.
    let h = Head::parse(&store.get(&keys.head()).unwrap().unwrap().bytes).unwrap();
    assert_eq!((h.snapshot, h.revision), (4, 5));
    // A bulk import changes every user: published as a snapshot.
    let lines = "{\"username\":\"x\",\"email\":\"x@acme.io\",\"state\":\"Active\"}\n";
    db.import_users(
        "acme",
        lines.as_bytes(),
        control_plane::import::Format::JsonLines,
        NOW,
    )
    .unwrap();
    let s = p.publish("acme", NOW).unwrap();
    assert_eq!((s.kind.as_str(), s.revision, s.users), ("snapshot", 6, 5));
}

/// Two control planes (own database connections, own store handles) on
/// one database file and one store directory, each changing users and
/// publishing as fast as it can: every revision is claimed once, `HEAD`
/// only moves forward, and at the end the store holds every change.
#[test]
fn two_publishers_never_lose_an_update() {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("cp.db");
    let store_path = dir.path().join("store");
    let db = new_db(&db_path, "acme");
    let ids: Vec<String> = (0..6)
        .map(|i| add_user(&db, "acme", &format!("u{i}@acme.io")))
        .collect();
    Publisher::new(&db, &LocalDirStore::open(&store_path).unwrap(), "", 4)
        .publish("acme", NOW)
        .unwrap();

    let rounds = 15;
    let revisions: Vec<Vec<u64>> = std::thread::scope(|s| {
        let workers: Vec<_> = [&ids[..3], &ids[3..]]
            .into_iter()
            .map(|mine| {
                let (db_path, store_path) = (&db_path, &store_path);
                s.spawn(move || {
                    let db = Db::open(db_path).unwrap();
                    let store = LocalDirStore::open(store_path).unwrap();
                    let p = Publisher::new(&db, &store, "", 4);
                    let mut seen = Vec::new();
                    for round in 0..rounds {
                        for id in mine {
                            db.update_user_attrs(
                                "acme",
                                id,
                                &serde_json::from_value(serde_json::json!({ "level": round }))
                                    .unwrap(),
                                NOW,
                            )
                            .unwrap();
                        }
                        seen.push(p.publish("acme", NOW).unwrap().revision);
                    }
                    seen
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    for seen in &revisions {
        assert!(
            seen.windows(2).all(|w| w[0] <= w[1]),
            "a publisher saw HEAD go backwards: {seen:?}"
        );
    }
    let store = LocalDirStore::open(&store_path).unwrap();
    let p = Publisher::new(&db, &store, "", 0);
    // Every change was published by one of the two: nothing is left.
    let last = p.publish("acme", NOW).unwrap();
    assert_eq!(last.kind, "none");
    assert_eq!(p.status("acme").unwrap().pending_changes, 0);
    let snap = load(&db, &store, "acme");
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
    let h = head(&store, "acme");
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

/// A store that dies (the whole process, as a kill would) the moment
/// anyone tries to advance `HEAD` — after the delta is written.
struct DiesBeforeHead(LocalDirStore);

impl ObjectStore for DiesBeforeHead {
    fn get(&self, key: &str) -> control_plane::Result<Option<Object>> {
        self.0.get(key)
    }
    fn put(&self, key: &str, bytes: &[u8], c: Condition) -> control_plane::Result<Put> {
        if key.ends_with("/HEAD") && matches!(c, Condition::IfMatch(_)) {
            std::process::abort();
        }
        self.0.put(key, bytes, c)
    }
    fn list(&self, prefix: &str) -> control_plane::Result<Vec<String>> {
        self.0.list(prefix)
    }
    fn describe(&self) -> String {
        self.0.describe()
    }
}

const CRASH_DIR: &str = "GATEHOUSE_TEST_CRASH_DIR";

/// Run in a child process by `publisher_killed_before_head_recovers`.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CRASH_DIR) else {
        return;
    };
    let dir = Path::new(&dir);
    let db = Db::open(&dir.join("cp.db")).unwrap();
    let store = DiesBeforeHead(LocalDirStore::open(dir.join("store")).unwrap());
    let _ = Publisher::new(&db, &store, "", 0).publish("acme", NOW + 1);
    unreachable!("the publisher must have died");
}

#[test]
fn publisher_killed_before_head_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let db = new_db(&dir.path().join("cp.db"), "acme");
    let store = LocalDirStore::open(dir.path().join("store")).unwrap();
    let alice = add_user(&db, "acme", "alice@acme.io");
    db.lifecycle("acme", &alice, LifecycleAction::Verify, NOW)
        .unwrap();
    Publisher::new(&db, &store, "", 0)
        .publish("acme", NOW)
        .unwrap();
    db.lifecycle("acme", &alice, LifecycleAction::Suspend, NOW + 1)
        .unwrap();

    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env(CRASH_DIR, dir.path())
        .stderr(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success(), "the child was meant to die");
    // The delta is on disk, HEAD still names revision 1.
    let keys = RealmKeys::new("", "acme");
    assert!(store.get(&keys.delta(2)).unwrap().is_some());
    assert_eq!(head(&store, "acme").revision, 1);
    assert_eq!(
        state_in(&load(&db, &store, "acme"), &alice),
        Some(UserState::Active)
    );

    // Restart: the next publish adopts the orphan, republishes the change,
    // and the suspension is published with nothing lost.
    let db = Db::open(&dir.path().join("cp.db")).unwrap();
    let p = Publisher::new(&db, &store, "", 0);
    assert_eq!(p.status("acme").unwrap().pending_changes, 1);
    let done = p.publish("acme", NOW + 2).unwrap();
    assert_eq!(done.revision, 3);
    assert_eq!(p.status("acme").unwrap().pending_changes, 0);
    assert_eq!(
        state_in(&load(&db, &store, "acme"), &alice),
        Some(UserState::Suspended)
    );
}

#[test]
fn a_foreign_or_tampered_bundle_in_the_way_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = new_db(&dir.path().join("cp.db"), "acme");
    let store = LocalDirStore::open(dir.path().join("store")).unwrap();
    let p = Publisher::new(&db, &store, "", 0);
    p.publish("acme", NOW).unwrap();
    add_user(&db, "acme", "a@acme.io");
    // Someone put garbage where the next delta goes.
    store
        .put(
            &RealmKeys::new("", "acme").delta(2),
            b"not a bundle",
            Condition::None,
        )
        .unwrap();
    let err = p.publish("acme", NOW).unwrap_err();
    assert!(matches!(err, control_plane::Error::Publish(_)), "{err}");
    assert_eq!(head(&store, "acme").revision, 1);
    assert_eq!(p.status("acme").unwrap().pending_changes, 1);
}

#[test]
fn a_deleted_realm_is_withdrawn_from_decision_points() {
    let dir = tempfile::tempdir().unwrap();
    let db = new_db(&dir.path().join("cp.db"), "acme");
    let store = LocalDirStore::open(dir.path().join("store")).unwrap();
    let p = Publisher::new(&db, &store, "", 0);
    let alice = add_user(&db, "acme", "alice@acme.io");
    db.lifecycle("acme", &alice, LifecycleAction::Verify, NOW)
        .unwrap();
    db.create_policy(
        "acme",
        "self-view",
        &control_plane::policy::PolicyInput {
            body: "permit (principal, action == Action::\"viewProfile\", resource) when { principal == resource };".into(),
            description: String::new(),
        },
        NOW,
    )
    .unwrap();
    p.publish("acme", NOW).unwrap();
    let req = Request {
        principal: EntityRef::new("User", &alice),
        action: EntityRef::new("Action", "viewProfile"),
        resource: EntityRef::new("User", &alice),
        context: serde_json::json!({}),
        entities: Vec::new(),
    };
    let before = load(&db, &store, "acme").is_authorized(&req).unwrap();
    assert_eq!(before.decision, pdp_core::Decision::Allow);
    db.delete_realm("acme", NOW + 1).unwrap();
    let w = p.withdraw("acme", NOW + 1).unwrap();
    assert_eq!((w.kind.as_str(), w.revision), ("delta", 2));
    let after = load(&db, &store, "acme").is_authorized(&req).unwrap();
    assert_eq!(after.decision, pdp_core::Decision::Deny);
    assert_eq!(
        after.reason,
        pdp_core::decision::Reason::Forbid("realm-deleted".into())
    );
    // Never published: nothing to withdraw.
    let db2 = new_db(&dir.path().join("cp2.db"), "other");
    let store2 = LocalDirStore::open(dir.path().join("store2")).unwrap();
    assert_eq!(
        Publisher::new(&db2, &store2, "", 0)
            .withdraw("other", NOW)
            .unwrap()
            .kind,
        "none"
    );
}
