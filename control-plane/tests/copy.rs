//! `control-plane copy`: everything moves from a SQLite file into another
//! repository (PostgreSQL when `GATEHOUSE_TEST_POSTGRES` is set, another
//! SQLite file otherwise), is verified table by table, and the copy serves
//! on as the original did: same logins, same publish state, the next change
//! continues the chain.

mod support;

use control_plane::backend::local_identity::LocalIdentity;
use control_plane::backend::sqlite::SqliteRepository;
use control_plane::domain::group::{Kind, NewNode};
use control_plane::domain::policy::PolicyInput;
use control_plane::domain::realm::NewRealm;
use control_plane::domain::user::NewUser;
use control_plane::ports::identity::{Identities, LoginResult};
use control_plane::ports::repository::{Repository, TABLES};
use control_plane::service::copy::{copy, digest};
use control_plane::service::publish::load_published;
use control_plane::{Error, Service, Settings};
use pdp_core::{LifecycleAction, UserState};
use std::sync::Arc;
use support::{Cp, Db, OP};

const PW: &str = "correct horse battery staple";

/// A target repository: PostgreSQL when configured, else a SQLite file.
async fn target(dir: &std::path::Path) -> Arc<dyn Repository> {
    match support::postgres_url() {
        Some(url) => {
            Db::Postgres {
                url,
                schema: support::unique_name("copy"),
            }
            .open()
            .await
        }
        None => {
            Arc::new(SqliteRepository::open(&dir.join("target.db"), support::keyring()).unwrap())
        }
    }
}

fn service_on(cp: &Cp, repo: Arc<dyn Repository>) -> Service {
    let identity = Arc::new(LocalIdentity::new(repo.clone(), support::ISSUER_BASE, 3600));
    Service::new(
        repo,
        Identities::new(identity),
        cp.store.clone(),
        Arc::new(cp.clock.clone()),
        Settings {
            auto_publish: false,
            ..Settings::default()
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn everything_is_copied_verified_and_serves_on() {
    // The source is always SQLite: moving off the embedded default.
    let dir = tempfile::tempdir().unwrap();
    let source: Arc<dyn Repository> = Arc::new(
        SqliteRepository::open(&dir.path().join("source.db"), support::keyring()).unwrap(),
    );
    let cp = Cp::open(support::Options::default()).await;
    let s = service_on(&cp, source.clone());
    s.bootstrap("root", "root@example.com", PW).await.unwrap();
    s.create_realm(
        OP,
        &NewRealm {
            name: "acme".into(),
            ..NewRealm::default()
        },
    )
    .await
    .unwrap();
    for kind in [Kind::Group, Kind::Role] {
        s.create_node(
            OP,
            "acme",
            kind,
            &NewNode {
                id: "staff".into(),
                description: "everyone".into(),
            },
        )
        .await
        .unwrap();
    }
    s.create_policy(
        OP,
        "acme",
        "staff-read",
        &PolicyInput {
            body: "permit (principal in Role::\"staff\", action, resource);".into(),
            description: "staff may".into(),
        },
    )
    .await
    .unwrap();
    let mut ids = Vec::new();
    for i in 0..30 {
        let u = s
            .create_user(
                OP,
                "acme",
                &NewUser {
                    email: format!("u{i}@acme.io"),
                    username: Some(format!("user{i}")),
                    ..NewUser::default()
                },
            )
            .await
            .unwrap();
        s.set_user_group(OP, "acme", &u.id, "staff", true)
            .await
            .unwrap();
        ids.push(u.id);
    }
    s.lifecycle(OP, "acme", &ids[0], LifecycleAction::Verify)
        .await
        .unwrap();
    s.set_password(OP, "acme", &ids[0], PW, false)
        .await
        .unwrap();
    s.set_user_role(OP, "acme", &ids[1], "staff", true)
        .await
        .unwrap();
    let published = s.publish(OP, "acme").await.unwrap();
    // Left pending at the copy: a change the copy must carry.
    s.lifecycle(OP, "acme", &ids[2], LifecycleAction::Verify)
        .await
        .unwrap();

    let to = target(dir.path()).await;
    let report = copy(source.clone(), to.clone()).await.unwrap();
    println!("{}", serde_json::to_string_pretty(&report).unwrap());
    assert_eq!(report.tables.len(), TABLES.len());
    let rows = |name: &str| {
        report
            .tables
            .iter()
            .find(|t| t.table == name)
            .map(|t| t.rows)
    };
    assert_eq!(rows("realms"), Some(2), "admin and acme");
    assert!(rows("users").unwrap() >= 31);
    assert_eq!(rows("user_groups"), Some(30));
    assert!(rows("credentials").unwrap() >= 2);
    assert!(rows("signing_keys").unwrap() >= 2);
    assert!(rows("changes").unwrap() >= 1);
    assert_eq!(digest(to.as_ref()).await.unwrap(), report.tables);

    // The copy serves as the original did.
    let t = service_on(&cp, to.clone());
    assert!(matches!(
        t.login("acme", "user0", PW, None).await.unwrap(),
        LoginResult::Tokens(_)
    ));
    assert_eq!(
        t.publish_status(OP, "acme").await.unwrap().pending_changes,
        s.publish_status(OP, "acme").await.unwrap().pending_changes
    );
    let next = t.publish(OP, "acme").await.unwrap();
    assert_eq!(next.revision, published.revision + 1);
    assert_eq!(next.kind, "delta");
    // The store's bundles verify with the copied bundle key.
    let ring = {
        let pem = t.bundle_key(OP, "acme").await.unwrap();
        let mut ring = pdp_core::Keyring::new();
        ring.add_pem(&pem).unwrap();
        ring
    };
    let snap = load_published(cp.store.as_ref(), "", "acme", &ring)
        .await
        .unwrap();
    assert_eq!(
        snap.user(&ids[2]).map(|u| u.state()),
        Some(UserState::Active)
    );
    // New rows after the copy do not collide with copied ones.
    t.lifecycle(OP, "acme", &ids[3], LifecycleAction::Verify)
        .await
        .unwrap();
    assert_eq!(
        t.publish(OP, "acme").await.unwrap().revision,
        published.revision + 2
    );

    // A second copy into the now non-empty target is refused and changes
    // nothing.
    let before = digest(to.as_ref()).await.unwrap();
    let err = copy(source, to.clone()).await.unwrap_err();
    assert!(matches!(err, Error::Conflict(_)), "{err}");
    assert_eq!(digest(to.as_ref()).await.unwrap(), before);
}
