//! The control plane publishing to real S3 (`moto_server`): two control
//! planes on one database and one bucket lose no update and never move
//! `HEAD` backwards; a publisher killed between a delta and `HEAD` is
//! recovered by the next publish; S3 failing for a while delays publishes
//! and never corrupts `HEAD`.
//!
//! Needs `moto_server` (PyPI `moto[server]>=5.2.1`), named by
//! `GATEHOUSE_MOTO_SERVER`; `scripts/test` runs these with `--ignored`.
//! Each test runs itself again in a child process with dummy AWS
//! credentials (`object_store::testing::isolated`).

mod support;

use axum::body::Body;
use axum::http::{Request, header};
use control_plane::backend::local_identity::LocalIdentity;
use control_plane::backend::sqlite::SqliteRepository;
use control_plane::domain::realm::NewRealm;
use control_plane::ports::clock::ManualClock;
use control_plane::ports::identity::Identities;
use control_plane::ports::repository::Repository;
use control_plane::ports::{Fetched, ObjectStore};
use control_plane::{Service, Settings};
use http_body_util::BodyExt;
use object_store::fault::FaultProxy;
use object_store::testing::{Moto, isolated};
use pdp_core::layout::{Head, RealmKeys};
use pdp_core::{LifecycleAction, UserState};
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use support::{NOW, OP};
use tower::ServiceExt;

const BUCKET: &str = "gatehouse";
const LOCATION: &str = "s3://gatehouse/prod";

async fn s3(url: &str, max_attempts: u32) -> Arc<dyn ObjectStore> {
    object_store::open(
        LOCATION,
        &object_store::Connect {
            s3_force_path_style: true,
            endpoint: Some(url.to_owned()),
            max_attempts,
            ..object_store::Connect::default()
        },
    )
    .await
    .unwrap()
}

/// A control plane on the database file `db` and `store`.
fn control_plane(db: &Path, store: Arc<dyn ObjectStore>, settings: Settings) -> Arc<Service> {
    let repo: Arc<dyn Repository> =
        Arc::new(SqliteRepository::open(db, support::keyring()).unwrap());
    let identity = Arc::new(LocalIdentity::new(repo.clone(), support::ISSUER_BASE, 3600));
    Arc::new(Service::new(
        repo,
        Identities::new(identity),
        store,
        Arc::new(ManualClock::at(NOW)),
        settings,
    ))
}

async fn head(store: &dyn ObjectStore, realm: &str) -> Option<Head> {
    match store
        .get(&RealmKeys::new("", realm).head(), None, 1 << 16)
        .await
        .unwrap()
    {
        Fetched::Found { bytes, .. } => Some(Head::open(&bytes, pdp_core::Trust::Dev).unwrap()),
        _ => None,
    }
}

async fn published(s: &Service, store: &dyn ObjectStore, realm: &str) -> pdp_core::Snapshot {
    let mut ring = pdp_core::Keyring::new();
    ring.add_pem(&s.bundle_key(OP, realm).await.unwrap())
        .unwrap();
    control_plane::service::publish::load_published(store, "", realm, &ring)
        .await
        .unwrap()
}

/// Realm `acme` with one user, alice (Created); her id.
async fn realm_with_alice(s: &Service) -> String {
    s.create_realm(
        OP,
        &NewRealm {
            name: "acme".into(),
            ..NewRealm::default()
        },
    )
    .await
    .unwrap();
    let new = control_plane::domain::user::NewUser {
        email: "alice@acme.io".into(),
        ..Default::default()
    };
    s.create_user(OP, "acme", &new).await.unwrap().id
}

/// Call an admin endpoint; the JSON answer (panics unless 2xx).
async fn call(app: &axum::Router, method: &str, path: &str, token: &str, body: Value) -> Value {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::from(body.to_string()))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let json: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    assert!(status.is_success(), "{method} {path}: {status} {json}");
    json
}

#[test]
#[ignore = "needs moto_server (GATEHOUSE_MOTO_SERVER)"]
fn two_control_planes_on_one_bucket_lose_no_update() {
    isolated(
        "two_control_planes_on_one_bucket_lose_no_update",
        |moto| async move {
            moto.create_bucket(BUCKET).await;
            let dir = tempfile::tempdir().unwrap();
            let db = dir.path().join("cp.db");
            let settings = Settings {
                compact_after_deltas: 4,
                ..Settings::default()
            };
            let one = control_plane(&db, s3(&moto.url, 4).await, settings.clone());
            let two = control_plane(&db, s3(&moto.url, 4).await, settings);
            one.bootstrap("root", "root@example.com", "root passphrase for tests")
                .await
                .unwrap();
            let login = one
                .login("admin", "root", "root passphrase for tests", None)
                .await
                .unwrap();
            let token = serde_json::to_value(&login).unwrap()["access_token"]
                .as_str()
                .unwrap()
                .to_owned();
            let apps = [
                control_plane::http::app(one.clone()),
                control_plane::http::app(two.clone()),
            ];
            call(
                &apps[0],
                "POST",
                "/v1/realms",
                &token,
                json!({"name": "acme"}),
            )
            .await;
            let mut ids = Vec::new();
            for i in 0..6 {
                let u = call(
                    &apps[0],
                    "POST",
                    "/v1/realms/acme/users",
                    &token,
                    json!({"email": format!("u{i}@acme.io")}),
                )
                .await;
                ids.push(u["id"].as_str().unwrap().to_owned());
            }
            let rounds = 15;
            let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
            // A decision point's view: HEAD, read directly from S3 while both
            // publish, never goes backwards.
            let watcher = {
                let store = s3(&moto.url, 4).await;
                let done = done.clone();
                tokio::spawn(async move {
                    let mut seen = Vec::new();
                    while !done.load(std::sync::atomic::Ordering::SeqCst) {
                        if let Some(h) = head(store.as_ref(), "acme").await {
                            seen.push(h.revision);
                        }
                        tokio::task::yield_now().await;
                    }
                    seen
                })
            };
            let work = |app: axum::Router, mine: Vec<String>, token: String| async move {
                let mut told = Vec::new();
                for round in 0..rounds {
                    for id in &mine {
                        call(
                            &app,
                            "PATCH",
                            &format!("/v1/realms/acme/users/{id}"),
                            &token,
                            json!({"level": round}),
                        )
                        .await;
                    }
                    let status =
                        call(&app, "GET", "/v1/realms/acme/bundle", &token, json!(null)).await;
                    told.push(status["head_revision"].as_u64().unwrap());
                }
                told
            };
            let (a, b) = tokio::join!(
                tokio::spawn(work(apps[0].clone(), ids[..3].to_vec(), token.clone())),
                tokio::spawn(work(apps[1].clone(), ids[3..].to_vec(), token.clone())),
            );
            done.store(true, std::sync::atomic::Ordering::SeqCst);
            let seen = watcher.await.unwrap();
            for told in [a.unwrap(), b.unwrap()] {
                assert!(told.windows(2).all(|w| w[0] <= w[1]), "{told:?}");
            }
            assert!(seen.len() > 1, "the watcher saw HEAD {} times", seen.len());
            assert!(
                seen.windows(2).all(|w| w[0] <= w[1]),
                "HEAD went backwards: {seen:?}"
            );
            // Nothing is left to publish and the bucket holds every change.
            let last = one.publish(OP, "acme").await.unwrap();
            assert_eq!(last.kind, "none");
            assert_eq!(
                one.publish_status(OP, "acme")
                    .await
                    .unwrap()
                    .pending_changes,
                0
            );
            let store = s3(&moto.url, 4).await;
            let snap = published(&one, store.as_ref(), "acme").await;
            for id in &ids {
                let attrs = snap.user(id).unwrap().attrs();
                assert_eq!(attrs["level"], rounds - 1, "user {id}: {attrs:?}");
            }
            let h = head(store.as_ref(), "acme").await.unwrap();
            assert_eq!(h.revision, last.revision);
            assert!(h.revision as usize >= 2 * rounds, "{h:?}");
            assert!(h.snapshot > 1, "compaction ran (every 4 deltas): {h:?}");
            println!(
                "two control planes, {rounds} rounds each: HEAD at {} (snapshot {}), HEAD read {} times, never backwards",
                h.revision,
                h.snapshot,
                seen.len()
            );
        },
    );
}

const CRASH: &str = "GATEHOUSE_TEST_CRASH";

/// In the process the test below starts again: publish, and die between
/// the delta and `HEAD`.
async fn crash(spec: &str) -> ! {
    let (dir, url) = spec.split_once(' ').unwrap();
    let store = Arc::new(support::DiesAtHead {
        inner: s3(url, 4).await,
        after: false,
    });
    let s = control_plane(&Path::new(dir).join("cp.db"), store, no_auto());
    let _ = s.publish(OP, "acme").await;
    unreachable!("the publisher must have died");
}

fn no_auto() -> Settings {
    Settings {
        auto_publish: false,
        compact_after_deltas: 0,
        ..Settings::default()
    }
}

#[test]
#[ignore = "needs moto_server (GATEHOUSE_MOTO_SERVER)"]
fn a_publisher_killed_before_head_is_recovered_on_s3() {
    // The publisher that dies: it uses the parent's moto_server (one of
    // its own would be orphaned by the abort).
    if let Ok(spec) = std::env::var(CRASH) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(crash(&spec));
    }
    isolated(
        "a_publisher_killed_before_head_is_recovered_on_s3",
        |moto| async move {
            moto.create_bucket(BUCKET).await;
            let dir = tempfile::tempdir().unwrap();
            let db = dir.path().join("cp.db");
            let store = s3(&moto.url, 4).await;
            let s = control_plane(&db, store.clone(), no_auto());
            let alice = realm_with_alice(&s).await;
            s.lifecycle(OP, "acme", &alice, LifecycleAction::Verify)
                .await
                .unwrap();
            s.publish(OP, "acme").await.unwrap();
            s.lifecycle(OP, "acme", &alice, LifecycleAction::Suspend)
                .await
                .unwrap();

            let status = std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "a_publisher_killed_before_head_is_recovered_on_s3",
                    "--ignored",
                    "--test-threads=1",
                ])
                .env(CRASH, format!("{} {}", dir.path().display(), moto.url))
                .stderr(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .status()
                .unwrap();
            assert!(!status.success(), "the publisher was meant to die");
            // The delta is in the bucket, HEAD still names revision 1, and a
            // decision point still sees alice Active.
            let keys = RealmKeys::new("", "acme");
            assert!(matches!(
                store.get(&keys.delta(2), None, 1 << 20).await.unwrap(),
                Fetched::Found { .. }
            ));
            assert_eq!(head(store.as_ref(), "acme").await.unwrap().revision, 1);
            let snap = published(&s, store.as_ref(), "acme").await;
            assert_eq!(
                snap.user(&alice).map(|u| u.state()),
                Some(UserState::Active)
            );

            // Restarted: the next publish adopts the orphan and with it the
            // change it carries (its publisher recorded which): published
            // once, nothing lost, no second delta.
            let s = control_plane(&db, store.clone(), no_auto());
            assert_eq!(
                s.publish_status(OP, "acme").await.unwrap().pending_changes,
                1
            );
            let done = s.publish(OP, "acme").await.unwrap();
            assert_eq!((done.kind.as_str(), done.revision), ("none", 2));
            assert!(matches!(
                store.get(&keys.delta(3), None, 1 << 20).await.unwrap(),
                Fetched::Missing
            ));
            assert_eq!(
                s.publish_status(OP, "acme").await.unwrap().pending_changes,
                0
            );
            let snap = published(&s, store.as_ref(), "acme").await;
            assert_eq!(
                snap.user(&alice).map(|u| u.state()),
                Some(UserState::Suspended)
            );
        },
    );
}

#[test]
#[ignore = "needs moto_server (GATEHOUSE_MOTO_SERVER)"]
fn s3_failing_for_a_while_delays_publishes_and_never_corrupts_head() {
    isolated(
        "s3_failing_for_a_while_delays_publishes_and_never_corrupts_head",
        |moto: Moto| async move {
            moto.create_bucket(BUCKET).await;
            let proxy = FaultProxy::start(&moto.url).await.unwrap();
            let dir = tempfile::tempdir().unwrap();
            let db = dir.path().join("cp.db");
            let direct = s3(&moto.url, 1).await;
            // No retries: every injected failure reaches the publisher.
            let s = control_plane(&db, s3(&proxy.url(), 1).await, Settings::default());
            let alice = realm_with_alice(&s).await;
            let before = head(direct.as_ref(), "acme").await.unwrap();
            assert!(s.ready().await.is_ok());

            // S3 answers 503 for a while: the change commits, its publish
            // fails (counted), HEAD is untouched and still loads.
            proxy.fail_next(1000, 503);
            let u = s
                .lifecycle(OP, "acme", &alice, LifecycleAction::Verify)
                .await
                .unwrap();
            assert_eq!(u.state, UserState::Active);
            assert!(s.publish(OP, "acme").await.is_err());
            assert!(s.ready().await.is_err(), "not ready while S3 fails");
            assert_eq!(head(direct.as_ref(), "acme").await.unwrap(), before);
            assert_eq!(
                s.publish_status(OP, "acme")
                    .await
                    .map(|p| p.pending_changes)
                    .ok(),
                None
            );
            let m = s.metrics_text().await.unwrap();
            assert!(
                m.contains("gatehouse_cp_publish_failures_total{realm=\"acme\"} 2"),
                "{m}"
            );
            assert!(
                m.contains("gatehouse_cp_pending_changes{realm=\"acme\"} 1"),
                "{m}"
            );
            let snap = published(&s, direct.as_ref(), "acme").await;
            assert_eq!(snap.revision(), before.revision);
            assert_eq!(
                snap.user(&alice).map(|u| u.state()),
                Some(UserState::Created)
            );

            // S3 unreachable, then back: the next publish carries the change,
            // one revision later.
            proxy.fail_next(0, 503);
            proxy.set_down(true);
            assert!(s.publish(OP, "acme").await.is_err());
            proxy.set_down(false);
            assert!(s.ready().await.is_ok());
            let p = s.publish(OP, "acme").await.unwrap();
            assert_eq!(
                (p.kind.as_str(), p.revision),
                ("delta", before.revision + 1)
            );
            let snap = published(&s, direct.as_ref(), "acme").await;
            assert_eq!(
                snap.user(&alice).map(|u| u.state()),
                Some(UserState::Active)
            );
            assert_eq!(
                s.publish_status(OP, "acme").await.unwrap().pending_changes,
                0
            );

            // With retries, a short burst of 503s is absorbed: the publish
            // that follows a change succeeds at once.
            let s = control_plane(&db, s3(&proxy.url(), 4).await, Settings::default());
            proxy.fail_next(2, 503);
            s.lifecycle(OP, "acme", &alice, LifecycleAction::Suspend)
                .await
                .unwrap();
            assert_eq!(
                s.publish_status(OP, "acme").await.unwrap().pending_changes,
                0
            );
            let snap = published(&s, direct.as_ref(), "acme").await;
            assert_eq!(snap.revision(), before.revision + 2);
            assert_eq!(
                snap.user(&alice).map(|u| u.state()),
                Some(UserState::Suspended)
            );
        },
    );
}
