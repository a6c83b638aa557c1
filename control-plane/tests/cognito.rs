//! The Cognito identity backend against a real stand-in (`moto_server`):
//! a realm is a user pool (created, or an existing one bound), its users
//! are the pool's, logins go through the control plane to Cognito, and
//! the pool's tokens verify in `pdp-core` against the published bundle
//! while the user is Active, and are refused once suspended.
//!
//! Needs `moto_server` (PyPI `moto[server]>=5.2.1`), named by
//! `GATEHOUSE_MOTO_SERVER`; `scripts/test` runs these with `--ignored`.
//! Each test runs itself again in a child process with dummy AWS
//! credentials (`object_store::testing::isolated`).
//!
//! moto differs from Cognito in ways these tests must not lean on: it
//! serves one JWKS key (`kid` "dummy") for every pool, ignores token
//! validity settings and has no `RevokeToken`. Where a test works around
//! one, it says so.

mod support;

use aws_sdk_cognitoidentityprovider as cognito;
use control_plane::Error;
use control_plane::backend::cognito::CognitoIdentity;
use control_plane::domain::policy::PolicyInput;
use control_plane::domain::realm::NewRealm;
use control_plane::domain::user::NewUser;
use control_plane::ports::identity::{ChallengeAnswer, ChallengeName, LoginResult, Tokens};
use object_store::testing::isolated;
use pdp_core::decision::{EntityRef, Reason, TokenRequest};
use pdp_core::{LifecycleAction, Snapshot, UserState};
use std::sync::Arc;
use support::{Cp, OP, Options};

// Meets both Gatehouse's rules and a new pool's default policy (upper,
// lower, digit, symbol).
const PW: &str = "Correct-Horse-Battery-9";

/// Wall-clock seconds: moto stamps its tokens with the real time.
fn wall_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A control plane whose only identity provider is Cognito at `url`,
/// publishing every change, its clock at the real time (the tokens moto
/// mints carry the real `iat`).
async fn control_plane(url: &str) -> Cp {
    let url = url.to_owned();
    let cp = Cp::open(Options {
        settings: control_plane::Settings {
            auto_publish: true,
            ..control_plane::Settings::default()
        },
        identity: Some(Box::new(move |repo| {
            Arc::new(CognitoIdentity::new(repo, Some(&url)))
        })),
        ..Options::default()
    })
    .await;
    cp.clock.set(wall_now());
    cp
}

/// An SDK client on moto, to look at (and change) pools behind the
/// control plane's back.
async fn pools(url: &str) -> cognito::Client {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(url)
        .load()
        .await;
    cognito::Client::new(&config)
}

fn cognito_realm(name: &str) -> NewRealm {
    NewRealm {
        name: name.into(),
        identity: Some("cognito".into()),
        ..NewRealm::default()
    }
}

fn tokens(r: control_plane::Result<LoginResult>) -> Tokens {
    match r {
        Ok(LoginResult::Tokens(t)) => t,
        other => panic!("expected tokens, got {other:?}"),
    }
}

fn decide(snap: &Snapshot, token: &str, user: &str) -> Reason {
    let req = TokenRequest {
        token: token.into(),
        action: EntityRef::new("Action", "viewProfile"),
        resource: EntityRef::new("User", user),
        context: serde_json::json!({}),
        entities: Vec::new(),
    };
    snap.is_authorized_with_token(&req, wall_now())
        .unwrap()
        .reason
}

async fn enabled(pools: &cognito::Client, pool: &str, username: &str) -> bool {
    pools
        .admin_get_user()
        .user_pool_id(pool)
        .username(username)
        .send()
        .await
        .unwrap()
        .enabled()
}

#[test]
#[ignore = "needs moto_server (GATEHOUSE_MOTO_SERVER)"]
fn a_cognito_realm_logs_in_through_the_pool_and_its_tokens_follow_the_lifecycle() {
    isolated(
        "a_cognito_realm_logs_in_through_the_pool_and_its_tokens_follow_the_lifecycle",
        |moto| async move {
            let cp = control_plane(&moto.url).await;
            let s = &cp.service;
            let aws = pools(&moto.url).await;
            let realm = s.create_realm(OP, &cognito_realm("acme")).await.unwrap();
            assert_eq!(realm.identity, "cognito");
            let pool = realm.issuer.rsplit('/').next().unwrap().to_owned();
            // The issuer is the one the pool's discovery document names
            // (and moto's tokens carry), not the endpoint it was read from.
            assert_eq!(
                realm.issuer,
                format!("https://cognito-idp.us-east-1.amazonaws.com/{pool}")
            );
            assert_eq!(realm.clients.len(), 1);
            let client = aws
                .describe_user_pool_client()
                .user_pool_id(&pool)
                .client_id(&realm.clients[0])
                .send()
                .await
                .unwrap();
            let flows: Vec<&str> = client
                .user_pool_client()
                .unwrap()
                .explicit_auth_flows()
                .iter()
                .map(|f| f.as_str())
                .collect();
            assert!(flows.contains(&"ALLOW_USER_PASSWORD_AUTH"), "{flows:?}");
            assert!(flows.contains(&"ALLOW_REFRESH_TOKEN_AUTH"), "{flows:?}");
            // An operator declares a custom attribute on the pool: users'
            // values of it go to Cognito too.
            aws.add_custom_attributes()
                .user_pool_id(&pool)
                .custom_attributes(
                    cognito::types::SchemaAttributeType::builder()
                        .name("department")
                        .attribute_data_type(cognito::types::AttributeDataType::String)
                        .mutable(true)
                        .build(),
                )
                .send()
                .await
                .unwrap();
            s.create_policy(
                OP,
                "acme",
                "users-view-themselves",
                &PolicyInput {
                    body: "permit (principal, action == Action::\"viewProfile\", resource) \
                           when { principal == resource };"
                        .into(),
                    description: String::new(),
                },
            )
            .await
            .unwrap();

            let mut attrs = serde_json::Map::new();
            attrs.insert("department".into(), "eng".into());
            let alice = s
                .create_user(
                    OP,
                    "acme",
                    &NewUser {
                        email: "alice@acme.io".into(),
                        username: Some("alice".into()),
                        attrs,
                        ..NewUser::default()
                    },
                )
                .await
                .unwrap();
            let got = aws
                .admin_get_user()
                .user_pool_id(&pool)
                .username("alice")
                .send()
                .await
                .unwrap();
            let attr = |name: &str| {
                got.user_attributes()
                    .iter()
                    .find(|a| a.name() == name)
                    .and_then(|a| a.value())
                    .map(str::to_owned)
            };
            // The user's id is the pool's `sub`: the tokens' subject.
            assert_eq!(attr("sub").as_deref(), Some(alice.id.as_str()));
            assert_eq!(attr("email").as_deref(), Some("alice@acme.io"));
            assert_eq!(attr("custom:department").as_deref(), Some("eng"));
            assert_eq!(got.user_status().unwrap().as_str(), "FORCE_CHANGE_PASSWORD");

            s.lifecycle(OP, "acme", &alice.id, LifecycleAction::Verify)
                .await
                .unwrap();
            s.set_password(OP, "acme", &alice.id, PW, false)
                .await
                .unwrap();
            let got = aws
                .admin_get_user()
                .user_pool_id(&pool)
                .username("alice")
                .send()
                .await
                .unwrap();
            assert_eq!(got.user_status().unwrap().as_str(), "CONFIRMED");

            let t = tokens(s.login("acme", "alice@acme.io", PW, None).await);
            let snap = cp.published("acme").await.unwrap();
            for token in [&t.id_token, &t.access_token] {
                let v = snap.verify_token(token, wall_now()).unwrap();
                assert_eq!(v.sub, alice.id);
                assert_eq!(v.claims["iss"], realm.issuer.as_str());
                assert_eq!(decide(&snap, token, &alice.id), Reason::Permit);
            }
            // The re-signing pass reads the pool's JWKS again: unchanged
            // since the last publish, so nothing is published. (moto serves
            // one fixed key for every pool, so a rotation cannot be shown
            // here; tests/admin_api.rs covers the service's side of it.)
            let revision = snap.revision();
            s.resign_heads().await.unwrap();
            assert_eq!(cp.published("acme").await.unwrap().revision(), revision);

            // Group memberships are mirrored into the pool (the group
            // created there on first use), so `cognito:groups` agrees with
            // the directory; a removal is mirrored too.
            let groups_in_pool = || async {
                let mut names: Vec<String> = aws
                    .admin_list_groups_for_user()
                    .user_pool_id(&pool)
                    .username("alice")
                    .send()
                    .await
                    .unwrap()
                    .groups()
                    .iter()
                    .filter_map(|g| g.group_name().map(str::to_owned))
                    .collect();
                names.sort();
                names
            };
            for g in ["eng", "ops"] {
                let node = control_plane::domain::group::NewNode {
                    id: g.into(),
                    description: String::new(),
                };
                s.create_node(OP, "acme", control_plane::domain::group::Kind::Group, &node)
                    .await
                    .unwrap();
                s.set_user_group(OP, "acme", &alice.id, g, true)
                    .await
                    .unwrap();
            }
            assert_eq!(groups_in_pool().await, ["eng", "ops"]);
            s.set_user_group(OP, "acme", &alice.id, "eng", false)
                .await
                .unwrap();
            assert_eq!(groups_in_pool().await, ["ops"]);
            // A wrong password is Cognito's answer, said the same way as
            // the embedded provider's.
            assert!(matches!(
                s.login("acme", "alice", "not the password at all", None)
                    .await,
                Err(Error::Unauthenticated(_))
            ));

            // Suspended: published first (both tokens refused by state),
            // then disabled in the pool and signed out there.
            s.lifecycle(OP, "acme", &alice.id, LifecycleAction::Suspend)
                .await
                .unwrap();
            let snap = cp.published("acme").await.unwrap();
            for token in [&t.id_token, &t.access_token] {
                assert_eq!(
                    decide(&snap, token, &alice.id),
                    Reason::UserState(UserState::Suspended)
                );
            }
            assert!(!enabled(&aws, &pool, "alice").await);
            // Gatehouse refuses the login before Cognito is asked, the
            // password unchecked: with the refusal a wrong password or an
            // unknown login gets, so it tells nobody the account exists.
            let refused = s.login("acme", "alice", PW, None).await;
            let wrong = s
                .login("acme", "alice", "not the password at all", None)
                .await;
            let unknown = s.login("acme", "nobody", PW, None).await;
            match (&refused, &wrong, &unknown) {
                (
                    Err(Error::Unauthenticated(a)),
                    Err(Error::Unauthenticated(b)),
                    Err(Error::Unauthenticated(c)),
                ) => assert!(a == b && b == c, "{a} / {b} / {c}"),
                other => panic!("{other:?}"),
            }
            // Cognito refuses it too, on its own.
            let direct = aws
                .initiate_auth()
                .client_id(&realm.clients[0])
                .auth_flow(cognito::types::AuthFlowType::UserPasswordAuth)
                .auth_parameters("USERNAME", "alice")
                .auth_parameters("PASSWORD", PW)
                .send()
                .await;
            assert!(direct.is_err());

            // Resumed: enabled in the pool, then published; a new login
            // is allowed. (The control plane's clock stands still, so the
            // suspension's `tokens_valid_after` is not after the new
            // token's `iat`; a login in that very second waits it out.)
            s.lifecycle(OP, "acme", &alice.id, LifecycleAction::Resume)
                .await
                .unwrap();
            assert!(enabled(&aws, &pool, "alice").await);
            let t2 = tokens(s.login("acme", "alice", PW, None).await);
            let snap = cp.published("acme").await.unwrap();
            for token in [&t2.id_token, &t2.access_token] {
                assert_eq!(decide(&snap, token, &alice.id), Reason::Permit);
            }
        },
    );
}

#[test]
#[ignore = "needs moto_server (GATEHOUSE_MOTO_SERVER)"]
fn binding_a_pool_that_does_not_exist_is_refused_and_creates_nothing() {
    isolated(
        "binding_a_pool_that_does_not_exist_is_refused_and_creates_nothing",
        |moto| async move {
            let cp = control_plane(&moto.url).await;
            let s = &cp.service;
            let aws = pools(&moto.url).await;
            let missing = NewRealm {
                pool_id: Some("us-east-1_doesnotexist".into()),
                client_id: Some("nosuchclient".into()),
                ..cognito_realm("acme")
            };
            match s.create_realm(OP, &missing).await {
                Err(Error::NotFound { kind, id }) => {
                    assert_eq!(kind, "cognito user pool");
                    assert_eq!(id, "us-east-1_doesnotexist");
                }
                other => panic!("expected NotFound, got {other:?}"),
            }
            assert!(s.realms(OP, true).await.unwrap().is_empty());
            let listed = aws.list_user_pools().max_results(60).send().await.unwrap();
            assert!(listed.user_pools().is_empty(), "a pool was created");

            // An existing pool with a client that is not its own: refused.
            let pool = aws
                .create_user_pool()
                .pool_name("theirs")
                .send()
                .await
                .unwrap()
                .user_pool()
                .unwrap()
                .id()
                .unwrap()
                .to_owned();
            let wrong_client = NewRealm {
                pool_id: Some(pool.clone()),
                client_id: Some("nosuchclient".into()),
                ..cognito_realm("acme")
            };
            assert!(matches!(
                s.create_realm(OP, &wrong_client).await,
                Err(Error::NotFound {
                    kind: "cognito app client",
                    ..
                })
            ));
            // Only one of the two: refused before anything is asked.
            let half = NewRealm {
                pool_id: Some(pool.clone()),
                ..cognito_realm("acme")
            };
            assert!(matches!(
                s.create_realm(OP, &half).await,
                Err(Error::BadRequest(_))
            ));
            assert!(s.realms(OP, true).await.unwrap().is_empty());

            // The pool with its own password-auth client binds.
            let client = aws
                .create_user_pool_client()
                .user_pool_id(&pool)
                .client_name("app")
                .explicit_auth_flows(cognito::types::ExplicitAuthFlowsType::AllowUserPasswordAuth)
                .send()
                .await
                .unwrap()
                .user_pool_client()
                .unwrap()
                .client_id()
                .unwrap()
                .to_owned();
            let bound = s
                .create_realm(
                    OP,
                    &NewRealm {
                        pool_id: Some(pool.clone()),
                        client_id: Some(client.clone()),
                        ..cognito_realm("acme")
                    },
                )
                .await
                .unwrap();
            assert!(bound.issuer.ends_with(&format!("/{pool}")));
            assert_eq!(bound.clients, vec![client]);
            let listed = aws.list_user_pools().max_results(60).send().await.unwrap();
            assert_eq!(listed.user_pools().len(), 1, "binding created a pool");

            // Two creations of one realm at once: one realm, and the pool
            // the loser made (if both got that far) is deleted again.
            let globex = cognito_realm("globex");
            let (one, two) = tokio::join!(s.create_realm(OP, &globex), s.create_realm(OP, &globex));
            assert!(one.is_ok() != two.is_ok(), "{one:?} {two:?}");
            assert!(matches!(
                one.err().or(two.err()),
                Some(Error::AlreadyExists { .. })
            ));
            let listed = aws.list_user_pools().max_results(60).send().await.unwrap();
            assert_eq!(listed.user_pools().len(), 2, "a pool left behind");
        },
    );
}

#[test]
#[ignore = "needs moto_server (GATEHOUSE_MOTO_SERVER)"]
fn an_enabling_action_cognito_refuses_changes_nothing_and_a_revoking_one_stands() {
    isolated(
        "an_enabling_action_cognito_refuses_changes_nothing_and_a_revoking_one_stands",
        |moto| async move {
            let cp = control_plane(&moto.url).await;
            let s = &cp.service;
            let aws = pools(&moto.url).await;
            let realm = s.create_realm(OP, &cognito_realm("acme")).await.unwrap();
            let pool = realm.issuer.rsplit('/').next().unwrap().to_owned();
            let bob = cp.user("acme", "bob@acme.io").await;
            let carol = cp.user("acme", "carol@acme.io").await;
            for user in [&bob, &carol] {
                s.lifecycle(OP, "acme", user, LifecycleAction::Verify)
                    .await
                    .unwrap();
            }
            s.lifecycle(OP, "acme", &bob, LifecycleAction::Suspend)
                .await
                .unwrap();
            let published = cp.published("acme").await.unwrap().revision();
            // The pool disappears behind Gatehouse's back: AdminEnableUser
            // fails, so the resume is refused as the provider failing
            // (HTTP 503) and the user stays Suspended, unpublished.
            aws.delete_user_pool()
                .user_pool_id(&pool)
                .send()
                .await
                .unwrap();
            assert!(matches!(
                s.lifecycle(OP, "acme", &bob, LifecycleAction::Resume).await,
                Err(Error::Identity(_))
            ));
            let user = s.user(OP, "acme", &bob).await.unwrap();
            assert_eq!(user.state, UserState::Suspended);
            assert_eq!(cp.published("acme").await.unwrap().revision(), published);
            // A revoking action stands when Cognito fails after the deny
            // was published: the user is denied everywhere (the call that
            // failed is logged and counted; its retry is the outbox's).
            let user = s
                .lifecycle(OP, "acme", &carol, LifecycleAction::Suspend)
                .await
                .unwrap();
            assert_eq!(user.state, UserState::Suspended);
            let snap = cp.published("acme").await.unwrap();
            assert_eq!(
                snap.user(&carol).map(|u| u.state()),
                Some(UserState::Suspended)
            );
        },
    );
}

#[test]
#[ignore = "needs moto_server (GATEHOUSE_MOTO_SERVER)"]
fn temporary_passwords_resets_and_the_revoking_actions_follow_the_pool() {
    isolated(
        "temporary_passwords_resets_and_the_revoking_actions_follow_the_pool",
        |moto| async move {
            let cp = control_plane(&moto.url).await;
            let s = &cp.service;
            let aws = pools(&moto.url).await;
            let realm = s.create_realm(OP, &cognito_realm("acme")).await.unwrap();
            let pool = realm.issuer.rsplit('/').next().unwrap().to_owned();
            s.create_policy(
                OP,
                "acme",
                "users-view-themselves",
                &PolicyInput {
                    body: "permit (principal, action == Action::\"viewProfile\", resource) \
                           when { principal == resource };"
                        .into(),
                    description: String::new(),
                },
            )
            .await
            .unwrap();
            let bob = cp.user("acme", "bob@acme.io").await;
            let status = |aws: cognito::Client, pool: String| async move {
                let got = aws
                    .admin_get_user()
                    .user_pool_id(&pool)
                    .username("bob@acme.io")
                    .send()
                    .await
                    .unwrap();
                let verified = got
                    .user_attributes()
                    .iter()
                    .find(|a| a.name() == "email_verified")
                    .and_then(|a| a.value())
                    .map(str::to_owned);
                (
                    got.user_status().unwrap().as_str().to_owned(),
                    got.enabled(),
                    verified,
                )
            };

            // A temporary password: the login is the port's challenge, and
            // answering it makes the Created user Active (email verified).
            s.set_password(OP, "acme", &bob, PW, true).await.unwrap();
            let session = match s.login("acme", "bob@acme.io", PW, None).await {
                Ok(LoginResult::Challenge { challenge, session }) => {
                    assert_eq!(challenge, ChallengeName::NewPasswordRequired);
                    session
                }
                other => panic!("expected a challenge, got {other:?}"),
            };
            let answer = ChallengeAnswer {
                session,
                new_password: Some("Another-Good-Passphrase-7".into()),
                code: None,
            };
            let t = tokens(s.respond("acme", &answer, None).await);
            assert_eq!(
                s.user(OP, "acme", &bob).await.unwrap().state,
                UserState::Active
            );
            assert_eq!(
                status(aws.clone(), pool.clone()).await,
                ("CONFIRMED".into(), true, Some("true".into()))
            );
            let snap = cp.published("acme").await.unwrap();
            assert_eq!(decide(&snap, &t.access_token, &bob), Reason::Permit);

            // A required reset: published first (the token is refused by
            // state), then Cognito resets the password.
            s.lifecycle(OP, "acme", &bob, LifecycleAction::RequirePasswordReset)
                .await
                .unwrap();
            let snap = cp.published("acme").await.unwrap();
            assert_eq!(
                decide(&snap, &t.access_token, &bob),
                Reason::UserState(UserState::PasswordResetRequired)
            );
            assert_eq!(status(aws.clone(), pool.clone()).await.0, "RESET_REQUIRED");
            // moto still hands a RESET_REQUIRED user tokens for the old
            // password (Cognito refuses); Gatehouse refuses them by state
            // either way.
            assert!(matches!(
                s.login("acme", "bob@acme.io", "Another-Good-Passphrase-7", None)
                    .await,
                Err(Error::Forbidden(_))
            ));
            // An administrator's temporary password completes the reset.
            s.set_password(OP, "acme", &bob, "Third-Good-Passphrase-5", true)
                .await
                .unwrap();
            let session = match s
                .login("acme", "bob@acme.io", "Third-Good-Passphrase-5", None)
                .await
            {
                Ok(LoginResult::Challenge { session, .. }) => session,
                other => panic!("expected a challenge, got {other:?}"),
            };
            let answer = ChallengeAnswer {
                session,
                new_password: Some("Fourth-Good-Passphrase-3".into()),
                code: None,
            };
            tokens(s.respond("acme", &answer, None).await);
            assert_eq!(
                s.user(OP, "acme", &bob).await.unwrap().state,
                UserState::Active
            );

            // Deactivate and delete disable the user; a restore to
            // Deactivated leaves them disabled.
            for (action, state) in [
                (LifecycleAction::Deactivate, UserState::Deactivated),
                (LifecycleAction::Delete, UserState::Deleted),
                (LifecycleAction::Restore, UserState::Deactivated),
            ] {
                let user = s.lifecycle(OP, "acme", &bob, action).await.unwrap();
                assert_eq!(user.state, state);
                assert!(!status(aws.clone(), pool.clone()).await.1, "{action:?}");
            }
            // A file import would bypass the pool: refused.
            let input: Box<dyn std::io::BufRead + Send> = Box::new(std::io::Cursor::new(
                b"{\"email\":\"carol@acme.io\"}\n".to_vec(),
            ));
            assert!(matches!(
                s.import_users(
                    OP,
                    "acme",
                    input,
                    control_plane::domain::import::Format::JsonLines
                )
                .await,
                Err(Error::Conflict(_))
            ));
        },
    );
}

/// Call the admin API; the status and the JSON answer.
async fn call(
    app: &axum::Router,
    method: &str,
    path: &str,
    token: &str,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let req = axum::http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {token}"))
        .body(axum::body::Body::from(body.to_string()))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    )
}

#[test]
#[ignore = "needs moto_server (GATEHOUSE_MOTO_SERVER)"]
fn the_admin_api_creates_and_binds_cognito_realms_next_to_local_ones() {
    isolated(
        "the_admin_api_creates_and_binds_cognito_realms_next_to_local_ones",
        |moto| async move {
            let url = moto.url.clone();
            let cp = Cp::open(Options {
                settings: control_plane::Settings {
                    auto_publish: true,
                    ..control_plane::Settings::default()
                },
                ..Options::default()
            })
            .await;
            // Both providers, as `Config::service` registers them.
            let local = Arc::new(control_plane::backend::local_identity::LocalIdentity::new(
                cp.repo.clone(),
                support::ISSUER_BASE,
                3600,
            ));
            let service = Arc::new(control_plane::Service::new(
                cp.repo.clone(),
                control_plane::ports::identity::Identities::new(local)
                    .with(Arc::new(CognitoIdentity::new(cp.repo.clone(), Some(&url)))),
                cp.store.clone(),
                Arc::new(control_plane::ports::clock::ManualClock::at(wall_now())),
                control_plane::Settings {
                    auto_publish: true,
                    ..control_plane::Settings::default()
                },
            ));
            service
                .bootstrap("root", "root@example.com", "root passphrase for tests")
                .await
                .unwrap();
            let token = match service
                .login("admin", "root", "root passphrase for tests", None)
                .await
                .unwrap()
            {
                LoginResult::Tokens(t) => t.access_token,
                other => panic!("{other:?}"),
            };
            let app = control_plane::http::app(service.clone());
            let (status, body) = call(
                &app,
                "POST",
                "/v1/realms",
                &token,
                serde_json::json!({"name": "acme", "identity": "cognito"}),
            )
            .await;
            assert_eq!(status, 201, "{body}");
            assert_eq!(body["identity"], "cognito");
            assert!(
                body["issuer"]
                    .as_str()
                    .unwrap()
                    .starts_with("https://cognito-idp.us-east-1.amazonaws.com/us-east-1_"),
                "{body}"
            );
            let (status, body) = call(
                &app,
                "POST",
                "/v1/realms",
                &token,
                serde_json::json!({"name": "initech", "identity": "cognito",
                    "pool_id": "us-east-1_missing", "client_id": "nope"}),
            )
            .await;
            assert_eq!(status, 404, "{body}");
            // A local realm cannot bind a pool.
            let (status, _) = call(
                &app,
                "POST",
                "/v1/realms",
                &token,
                serde_json::json!({"name": "initech", "pool_id": "us-east-1_x", "client_id": "y"}),
            )
            .await;
            assert_eq!(status, 400);
            let names: Vec<String> = service
                .realms(OP, false)
                .await
                .unwrap()
                .into_iter()
                .map(|r| r.name)
                .collect();
            assert_eq!(names, vec!["acme".to_owned(), "admin".to_owned()]);
        },
    );
}
