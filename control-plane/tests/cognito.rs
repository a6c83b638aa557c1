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
use control_plane::ports::identity::{LoginResult, Tokens};
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
            // Gatehouse refuses the login before Cognito is asked.
            assert!(matches!(
                s.login("acme", "alice", PW, None).await,
                Err(Error::Forbidden(_))
            ));
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
        },
    );
}

#[test]
#[ignore = "needs moto_server (GATEHOUSE_MOTO_SERVER)"]
fn an_enabling_action_cognito_refuses_changes_nothing() {
    isolated(
        "an_enabling_action_cognito_refuses_changes_nothing",
        |moto| async move {
            let cp = control_plane(&moto.url).await;
            let s = &cp.service;
            let aws = pools(&moto.url).await;
            let realm = s.create_realm(OP, &cognito_realm("acme")).await.unwrap();
            let pool = realm.issuer.rsplit('/').next().unwrap().to_owned();
            let bob = cp.user("acme", "bob@acme.io").await;
            s.lifecycle(OP, "acme", &bob, LifecycleAction::Verify)
                .await
                .unwrap();
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
        },
    );
}
