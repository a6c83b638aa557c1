//! What every repository promises, with two control planes on one
//! database acting at the same moment: on SQLite (a file both open), and on
//! PostgreSQL when `GATEHOUSE_TEST_POSTGRES` names one (scripts/test runs
//! this file both ways). Uniqueness, the lifecycle table, group cycles and
//! login throttling hold across control planes; the change log is
//! published once; one publisher per realm at a time.

mod support;

use control_plane::domain::group::{Kind, NewNode};
use control_plane::domain::user::NewUser;
use control_plane::ports::repository::Repository;
use control_plane::{Error, Service, Settings};
use pdp_core::layout::{Head, RealmKeys};
use pdp_core::{Bundle, BundleKind, LifecycleAction, Limits, Trust, UserState};
use std::collections::BTreeMap;
use std::sync::Arc;
use support::{Cp, OP, Options};

const PW: &str = "correct horse battery staple";

/// Two control planes on one database and one store, with realm `acme`.
async fn two(auto_publish: bool) -> (Cp, Arc<Service>) {
    let settings = Settings {
        auto_publish,
        ..Settings::default()
    };
    let cp = Cp::open(Options {
        settings: settings.clone(),
        file_db: true,
        identity: None,
    })
    .await;
    cp.realm("acme").await;
    let other = cp.twin(settings).await;
    (cp, other)
}

fn new_user(email: &str, username: &str) -> NewUser {
    NewUser {
        email: email.into(),
        username: Some(username.into()),
        ..NewUser::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_email_or_username_is_taken_once_when_control_planes_race() {
    let (cp, other) = two(false).await;
    let services = [cp.service.clone(), other];
    let mut tasks = Vec::new();
    for i in 0..16 {
        let s = services[i % 2].clone();
        // Half race for one email, half for one username.
        let new = if i % 4 < 2 {
            new_user("same@acme.io", &format!("user{i}"))
        } else {
            new_user(&format!("u{i}@acme.io"), "same")
        };
        tasks.push(tokio::spawn(async move {
            s.create_user(OP, "acme", &new).await
        }));
    }
    let mut created = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => created += 1,
            Err(Error::AlreadyExists { .. }) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(created, 2, "one per contested email and one per username");
    let r = "acme".to_owned();
    let emails: Vec<String> = cp
        .repo
        .read(move |tx| {
            let mut out = Vec::new();
            tx.for_each_user(&r, &mut |u| {
                out.push(u.email);
                Ok(true)
            })?;
            Ok(out)
        })
        .await
        .unwrap();
    assert_eq!(
        emails
            .iter()
            .filter(|e| e.as_str() == "same@acme.io")
            .count(),
        1
    );
    assert_eq!(emails.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lifecycle_actions_racing_on_one_user_follow_the_table() {
    let (cp, other) = two(false).await;
    let alice = cp.user("acme", "alice@acme.io").await;
    cp.service
        .lifecycle(OP, "acme", &alice, LifecycleAction::Verify)
        .await
        .unwrap();
    let services = [cp.service.clone(), other];
    let mut tasks = Vec::new();
    for i in 0..40 {
        let s = services[i % 2].clone();
        let action = if i % 3 == 0 {
            LifecycleAction::Resume
        } else {
            LifecycleAction::Suspend
        };
        let id = alice.clone();
        tasks.push(tokio::spawn(async move {
            (action, s.lifecycle(OP, "acme", &id, action).await)
        }));
    }
    let (mut suspended, mut resumed) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            (LifecycleAction::Suspend, Ok(_)) => suspended += 1,
            (_, Ok(_)) => resumed += 1,
            (_, Err(Error::Lifecycle(_))) => {}
            (_, Err(e)) => panic!("{e}"),
        }
    }
    // Suspend works only from Active and resume only from Suspended, so
    // successes alternate, starting with a suspension: a lost update (two
    // suspensions of one Active user) breaks the count.
    let state = cp.service.user(OP, "acme", &alice).await.unwrap().state;
    println!("suspended {suspended} times, resumed {resumed} times; now {state:?}");
    assert!(suspended >= 1);
    match state {
        UserState::Active => assert_eq!(suspended, resumed),
        UserState::Suspended => assert_eq!(suspended, resumed + 1),
        s => panic!("{s:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_control_planes_nesting_groups_at_once_never_make_a_cycle() {
    let (cp, other) = two(false).await;
    for round in 0..8 {
        let (a, b) = (format!("a{round}"), format!("b{round}"));
        for id in [&a, &b] {
            cp.service
                .create_node(
                    OP,
                    "acme",
                    Kind::Group,
                    &NewNode {
                        id: id.clone(),
                        description: String::new(),
                    },
                )
                .await
                .unwrap();
        }
        let (s1, s2) = (cp.service.clone(), other.clone());
        let (a1, b1, a2, b2) = (a.clone(), b.clone(), a.clone(), b.clone());
        let one =
            tokio::spawn(async move { s1.set_group_parent(OP, "acme", &a1, &b1, true).await });
        let two =
            tokio::spawn(async move { s2.set_group_parent(OP, "acme", &b2, &a2, true).await });
        let results = [one.await.unwrap(), two.await.unwrap()];
        let ok = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(ok, 1, "round {round}: {results:?}");
        assert!(
            results.iter().any(|r| matches!(r, Err(Error::Conflict(_)))),
            "{results:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failed_logins_count_across_control_planes() {
    let (cp, other) = two(false).await;
    let id = cp
        .service
        .create_user(OP, "acme", &new_user("bob@acme.io", "bob"))
        .await
        .unwrap()
        .id;
    cp.service
        .lifecycle(OP, "acme", &id, LifecycleAction::Verify)
        .await
        .unwrap();
    cp.service
        .set_password(OP, "acme", &id, PW, false)
        .await
        .unwrap();
    // Five free failures in all, not five per control plane: the sixth
    // (three on each) locks the name everywhere.
    for i in 0..6 {
        let s = if i % 2 == 0 { &cp.service } else { &other };
        assert!(matches!(
            s.login("acme", "bob", "wrong password here", None).await,
            Err(Error::Unauthenticated(_))
        ));
    }
    for s in [&cp.service, &other] {
        let r = s.login("acme", "bob", PW, None).await;
        assert!(matches!(r, Err(Error::Throttled { .. })), "{r:?}");
    }
}

/// Every user record in each delta after `from`, by revision.
async fn deltas_after(cp: &Cp, from: u64) -> BTreeMap<u64, Vec<String>> {
    let keys = RealmKeys::new("", "acme");
    let ring = cp.keyring("acme").await;
    let head = match cp.store.get(&keys.head(), None, 1 << 16).await.unwrap() {
        control_plane::ports::Fetched::Found { bytes, .. } => {
            Head::open(&bytes, pdp_core::Trust::Dev).unwrap()
        }
        other => panic!("{other:?}"),
    };
    let mut out = BTreeMap::new();
    for rev in from + 1..=head.revision {
        let bytes = match cp
            .store
            .get(&keys.delta(rev), None, 64 << 20)
            .await
            .unwrap()
        {
            control_plane::ports::Fetched::Found { bytes, .. } => bytes,
            other => panic!("delta {rev}: {other:?}"),
        };
        let bundle = Bundle::open(&bytes, Trust::Keyring(&ring), &Limits::default()).unwrap();
        assert_eq!(bundle.manifest.kind, BundleKind::Delta);
        let users = bundle
            .member("users.jsonl")
            .map(|m| {
                String::from_utf8_lossy(m)
                    .lines()
                    .map(|l| {
                        let v: serde_json::Value = serde_json::from_str(l).unwrap();
                        v["id"].as_str().unwrap().to_owned()
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.insert(rev, users);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_change_is_published_once_by_two_auto_publishing_control_planes() {
    let (cp, other) = two(true).await;
    let mut ids = Vec::new();
    for i in 0..12 {
        ids.push(cp.user("acme", &format!("u{i}@acme.io")).await);
    }
    let base = cp.service.publish(OP, "acme").await.unwrap().revision;
    // Both control planes change users at once, each change auto-published.
    let services = [cp.service.clone(), other.clone()];
    let mut tasks = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let s = services[i % 2].clone();
        let id = id.clone();
        tasks.push(tokio::spawn(async move {
            s.lifecycle(OP, "acme", &id, LifecycleAction::Verify).await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    for s in [&cp.service, &other] {
        assert_eq!(
            s.publish_status(OP, "acme").await.unwrap().pending_changes,
            0
        );
    }
    // Each user changed once after `base`, so each is in exactly one delta.
    let deltas = deltas_after(&cp, base).await;
    let mut seen: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (rev, users) in &deltas {
        for u in users {
            seen.entry(u.clone()).or_default().push(*rev);
        }
    }
    println!("{} deltas for {} changes", deltas.len(), ids.len());
    for id in &ids {
        assert_eq!(seen.get(id).map(Vec::len), Some(1), "{id}: {seen:?}");
    }
    let snap = cp.published("acme").await.unwrap();
    for id in &ids {
        assert_eq!(snap.user(id).map(|u| u.state()), Some(UserState::Active));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_publisher_lock_admits_one_holder_and_passes_on() {
    let (cp, _) = two(false).await;
    let other: Arc<dyn Repository> = cp.db.open().await;
    let held = cp.repo.lock_publisher("acme").await.unwrap();
    assert!(held.is_some());
    assert!(other.lock_publisher("acme").await.unwrap().is_none());
    assert!(cp.repo.lock_publisher("acme").await.unwrap().is_none());
    let elsewhere = other.lock_publisher("globex").await.unwrap();
    assert!(elsewhere.is_some(), "locks are per realm");
    drop(held);
    // Released at once, or (PostgreSQL) as soon as the unlock reaches the
    // server.
    let started = std::time::Instant::now();
    let got = loop {
        if let Some(l) = other.lock_publisher("acme").await.unwrap() {
            break l;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "the lock never passed on"
        );
        tokio::task::yield_now().await;
    };
    println!("the lock passed on after {:?}", started.elapsed());
    drop(got);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn publisher_locks_of_many_realms_leave_the_work_its_connections() {
    // More realms publishing at once than a PostgreSQL repository keeps
    // connections (16): each holder still gets its transactions done.
    let (cp, _) = two(false).await;
    let mut held = Vec::new();
    for i in 0..40 {
        let lock = cp.repo.lock_publisher(&format!("realm{i}")).await.unwrap();
        assert!(lock.is_some(), "realm{i}");
        held.push(lock);
    }
    let started = std::time::Instant::now();
    let mut writes = Vec::new();
    for i in 0..20 {
        let s = cp.service.clone();
        writes.push(tokio::spawn(async move {
            s.create_user(
                OP,
                "acme",
                &new_user(&format!("w{i}@acme.io"), &format!("w{i}")),
            )
            .await
        }));
    }
    for w in writes {
        w.await.unwrap().unwrap();
    }
    // The pool waits 10 s for a connection before it gives up.
    assert!(started.elapsed() < std::time::Duration::from_secs(8));
    println!(
        "20 concurrent writes with 40 publisher locks held: {:?}",
        started.elapsed()
    );
    drop(held);
}
