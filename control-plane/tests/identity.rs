//! The local identity backend through the service: passwords, challenges,
//! TOTP, throttling, signing keys and rotation — and tokens a decision
//! point accepts.

mod support;

use control_plane::Error;
use control_plane::backend::local_identity::totp;
use control_plane::domain::import::Format;
use control_plane::domain::policy::PolicyInput;
use control_plane::domain::user::NewUser;
use control_plane::ports::identity::{
    Alg, ChallengeAnswer, ChallengeName, LoginResult, Tokens, VERIFICATION_ATTEMPTS,
    VERIFICATION_TTL,
};
use pdp_core::decision::{EntityRef, Reason, TokenRequest};
use pdp_core::{LifecycleAction, Snapshot, TokenFailure, UserState};
use support::{Cp, NOW, OP};

/// Token lifetime of the support's `LocalIdentity`.
const TTL: i64 = 3600;
const PW: &str = "correct horse battery staple";

async fn realm() -> Cp {
    Cp::with_realms(&["acme"]).await
}

/// A user of `acme` with this username (`active`: verified).
async fn user(cp: &Cp, username: &str, active: bool) -> String {
    let id = cp
        .service
        .create_user(
            OP,
            "acme",
            &NewUser {
                username: Some(username.into()),
                email: format!("{username}@acme.io"),
                ..NewUser::default()
            },
        )
        .await
        .unwrap()
        .id;
    if active {
        cp.service
            .lifecycle(OP, "acme", &id, LifecycleAction::Verify)
            .await
            .unwrap();
    }
    id
}

async fn login(cp: &Cp, username: &str, pw: &str, now: i64) -> control_plane::Result<LoginResult> {
    cp.at(now).login("acme", username, pw, None).await
}

async fn respond(
    cp: &Cp,
    answer: &ChallengeAnswer,
    now: i64,
) -> control_plane::Result<LoginResult> {
    cp.at(now).respond("acme", answer, None).await
}

/// Publish at `now` and load what an edge host would hold.
async fn snapshot(cp: &Cp, now: i64) -> Snapshot {
    cp.at(now).publish(OP, "acme").await.unwrap();
    cp.published("acme").await.unwrap()
}

async fn state(cp: &Cp, id: &str) -> UserState {
    cp.service.user(OP, "acme", id).await.unwrap().state
}

fn tokens(r: control_plane::Result<LoginResult>) -> Tokens {
    match r {
        Ok(LoginResult::Tokens(t)) => t,
        other => panic!("expected tokens, got {other:?}"),
    }
}

fn challenge(r: control_plane::Result<LoginResult>) -> (ChallengeName, String) {
    match r {
        Ok(LoginResult::Challenge { challenge, session }) => (challenge, session),
        other => panic!("expected a challenge, got {other:?}"),
    }
}

fn decide(snap: &Snapshot, token: &str, user: &str, now: i64) -> Reason {
    let req = TokenRequest {
        token: token.into(),
        action: EntityRef::new("Action", "viewProfile"),
        resource: EntityRef::new("User", user),
        context: serde_json::json!({}),
        entities: Vec::new(),
    };
    snap.is_authorized_with_token(&req, now).unwrap().reason
}

#[tokio::test]
async fn active_user_logs_in_and_the_tokens_are_accepted_until_revoked() {
    let cp = realm().await;
    let s = &cp.service;
    let alice = user(&cp, "alice", true).await;
    s.set_password(OP, "acme", &alice, PW, false).await.unwrap();
    s.create_policy(
        OP,
        "acme",
        "users-view-themselves",
        &PolicyInput {
            body: "permit (principal, action == Action::\"viewProfile\", resource) when { principal == resource };".into(),
            description: String::new(),
        },
    )
    .await
    .unwrap();
    let t = tokens(login(&cp, "Alice", PW, NOW + 1).await);
    assert_eq!(t.token_type, "Bearer");
    let snap = snapshot(&cp, NOW + 1).await;
    for token in [&t.id_token, &t.access_token] {
        let v = snap.verify_token(token, NOW + 2).unwrap();
        assert_eq!(v.sub, alice);
    }
    let v = snap.verify_token(&t.id_token, NOW + 2).unwrap();
    assert_eq!(v.claims["cognito:username"], "alice");
    assert_eq!(v.claims["iss"], "https://cp.example/realms/acme");
    assert_eq!(
        decide(&snap, &t.access_token, &alice, NOW + 2),
        Reason::Permit
    );
    // Expired: refused.
    assert_eq!(
        decide(&snap, &t.id_token, &alice, NOW + 1 + TTL + 120),
        Reason::Token(TokenFailure::Expired)
    );
    // Suspended after the token was issued (at NOW + 1): refused at once.
    cp.at(NOW + 5)
        .lifecycle(OP, "acme", &alice, LifecycleAction::Suspend)
        .await
        .unwrap();
    let snap = snapshot(&cp, NOW + 5).await;
    assert!(matches!(
        decide(&snap, &t.id_token, &alice, NOW + 6),
        Reason::Token(_) | Reason::UserState(_)
    ));
    // ...and cannot log in.
    assert!(matches!(
        login(&cp, "alice", PW, NOW + 6).await,
        Err(Error::Forbidden(_))
    ));
}

#[tokio::test]
async fn wrong_passwords_unknown_users_and_refused_states() {
    let cp = realm().await;
    let s = &cp.service;
    let bob = user(&cp, "bob", true).await;
    s.set_password(OP, "acme", &bob, PW, false).await.unwrap();
    let wrong = login(&cp, "bob", "not the password", NOW)
        .await
        .unwrap_err();
    let unknown = login(&cp, "nobody", PW, NOW).await.unwrap_err();
    // The same answer whether or not the user exists.
    assert_eq!(wrong.to_string(), unknown.to_string());
    assert!(matches!(wrong, Error::Unauthenticated(_)));
    // Created without a temporary password or a verification code: refused.
    let carol = user(&cp, "carol", false).await;
    s.set_password(OP, "acme", &carol, PW, false).await.unwrap();
    assert!(matches!(
        login(&cp, "carol", PW, NOW).await,
        Err(Error::Forbidden(_))
    ));
    // Deactivated and deleted users: refused.
    s.lifecycle(OP, "acme", &bob, LifecycleAction::Deactivate)
        .await
        .unwrap();
    assert!(matches!(
        login(&cp, "bob", PW, NOW).await,
        Err(Error::Forbidden(_))
    ));
    // A user without a password cannot log in.
    user(&cp, "dave", true).await;
    assert!(matches!(
        login(&cp, "dave", "", NOW).await,
        Err(Error::Unauthenticated(_))
    ));
}

#[tokio::test]
async fn password_rules_are_enforced() {
    let cp = realm().await;
    let erin = user(&cp, "erin", true).await;
    for bad in ["short", "password123", "erin@acme.io", "ERIN"] {
        let e = cp
            .service
            .set_password(OP, "acme", &erin, bad, false)
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Invalid { .. }), "{bad}: {e}");
    }
    assert!(matches!(
        login(&cp, "erin", "short", NOW).await,
        Err(Error::Unauthenticated(_))
    ));
}

#[tokio::test]
async fn temporary_password_and_required_reset_are_challenges_that_activate() {
    let cp = realm().await;
    // Created by an administrator with a temporary password.
    let frank = user(&cp, "frank", false).await;
    cp.service
        .set_password(OP, "acme", &frank, "temporary-pass-1", true)
        .await
        .unwrap();
    let (name, session) = challenge(login(&cp, "frank", "temporary-pass-1", NOW).await);
    assert_eq!(name, ChallengeName::NewPasswordRequired);
    // A bad new password is refused; the session is spent either way.
    let answer = |session: &str, pw: &str| ChallengeAnswer {
        session: session.into(),
        new_password: Some(pw.into()),
        code: None,
    };
    assert!(matches!(
        respond(&cp, &answer(&session, "short"), NOW).await,
        Err(Error::Invalid { .. })
    ));
    assert!(matches!(
        respond(&cp, &answer(&session, PW), NOW).await,
        Err(Error::Unauthenticated(_))
    ));
    let (_, session) = challenge(login(&cp, "frank", "temporary-pass-1", NOW).await);
    tokens(respond(&cp, &answer(&session, PW), NOW).await);
    assert_eq!(state(&cp, &frank).await, UserState::Active);
    // The old password is gone, the new one works.
    assert!(login(&cp, "frank", "temporary-pass-1", NOW).await.is_err());
    tokens(login(&cp, "frank", PW, NOW).await);

    // Reset required: the old password opens nothing any more.
    cp.service
        .lifecycle(OP, "acme", &frank, LifecycleAction::RequirePasswordReset)
        .await
        .unwrap();
    assert!(matches!(
        login(&cp, "frank", PW, NOW + 1).await,
        Err(Error::Forbidden(_))
    ));
    // An administrator's temporary password does, to the challenge only,
    // and the new password may not be the temporary one.
    cp.at(NOW + 1)
        .set_password(OP, "acme", &frank, "temporary-pass-2", true)
        .await
        .unwrap();
    let (name, session) = challenge(login(&cp, "frank", "temporary-pass-2", NOW + 2).await);
    assert_eq!(name, ChallengeName::NewPasswordRequired);
    assert!(matches!(
        respond(&cp, &answer(&session, "temporary-pass-2"), NOW + 2).await,
        Err(Error::Invalid { .. })
    ));
    // Expired sessions are refused.
    let (_, session) = challenge(login(&cp, "frank", "temporary-pass-2", NOW + 2).await);
    assert!(matches!(
        respond(&cp, &answer(&session, "a brand new passphrase"), NOW + 1000).await,
        Err(Error::Unauthenticated(_))
    ));
    let (_, session) = challenge(login(&cp, "frank", "temporary-pass-2", NOW + 1000).await);
    tokens(respond(&cp, &answer(&session, "a brand new passphrase"), NOW + 1001).await);
    assert_eq!(state(&cp, &frank).await, UserState::Active);
}

#[tokio::test]
async fn a_required_reset_is_completed_with_a_reset_code_and_a_new_password() {
    let cp = realm().await;
    let s = &cp.service;
    let gus = user(&cp, "gus", true).await;
    s.set_password(OP, "acme", &gus, PW, false).await.unwrap();
    tokens(login(&cp, "gus", PW, NOW).await);
    cp.at(NOW)
        .lifecycle(OP, "acme", &gus, LifecycleAction::RequirePasswordReset)
        .await
        .unwrap();
    assert!(matches!(
        login(&cp, "gus", PW, NOW + 1).await,
        Err(Error::Forbidden(_))
    ));
    let code = cp
        .at(NOW + 1)
        .start_password_reset(OP, "acme", &gus)
        .await
        .unwrap();
    assert_eq!(code.expires_at, NOW + 1 + VERIFICATION_TTL);
    let confirm = |t: i64, code: &str, pw: &str| {
        let (s, code, pw) = (cp.at(t), code.to_owned(), pw.to_owned());
        async move {
            s.confirm_password_reset("acme", "gus@acme.io", &code, &pw)
                .await
        }
    };
    let wrong = if code.code == "00000000" {
        "11111111"
    } else {
        "00000000"
    };
    assert!(matches!(
        confirm(NOW + 2, wrong, "a brand new passphrase").await,
        Err(Error::Unauthenticated(_))
    ));
    // The old password again: refused, and the code stays good.
    assert!(matches!(
        confirm(NOW + 2, &code.code, PW).await,
        Err(Error::Invalid { .. })
    ));
    // Expired: refused.
    assert!(matches!(
        confirm(
            NOW + 2 + VERIFICATION_TTL,
            &code.code,
            "a brand new passphrase"
        )
        .await,
        Err(Error::Unauthenticated(_))
    ));
    confirm(NOW + 3, &code.code, "a brand new passphrase")
        .await
        .unwrap();
    assert_eq!(state(&cp, &gus).await, UserState::Active);
    assert!(login(&cp, "gus", PW, NOW + 4).await.is_err());
    tokens(login(&cp, "gus", "a brand new passphrase", NOW + 4).await);
    // Spent: the same code does not set another password.
    assert!(matches!(
        confirm(NOW + 5, &code.code, "yet another passphrase").await,
        Err(Error::Unauthenticated(_))
    ));
    // Five wrong answers void a code; an unknown name is refused alike.
    let again = cp
        .at(NOW + 10)
        .start_password_reset(OP, "acme", &gus)
        .await
        .unwrap();
    let wrong = if again.code == "00000000" {
        "11111111"
    } else {
        "00000000"
    };
    for i in 0..VERIFICATION_ATTEMPTS {
        assert!(matches!(
            confirm(NOW + 100 + 100 * i, wrong, "yet another passphrase").await,
            Err(Error::Unauthenticated(_))
        ));
    }
    assert!(matches!(
        confirm(NOW + 700, &again.code, "yet another passphrase").await,
        Err(Error::Unauthenticated(_))
    ));
    assert!(matches!(
        cp.at(NOW + 700)
            .confirm_password_reset(
                "acme",
                "nobody@acme.io",
                "12345678",
                "yet another passphrase"
            )
            .await,
        Err(Error::Unauthenticated(_))
    ));
    // Codes are for Active users and users who must reset only.
    let new = user(&cp, "hal", false).await;
    assert!(matches!(
        cp.at(NOW).start_password_reset(OP, "acme", &new).await,
        Err(Error::Conflict(_))
    ));
}

#[tokio::test]
async fn totp_enrolment_and_login_with_replay_refused() {
    let cp = realm().await;
    let s = &cp.service;
    let gina = user(&cp, "gina", true).await;
    s.set_password(OP, "acme", &gina, PW, false).await.unwrap();
    let e = s.totp_enroll(OP, "acme", &gina).await.unwrap();
    assert!(
        e.otpauth_uri
            .starts_with("otpauth://totp/acme:gina?secret=")
    );
    let secret = data_encoding::BASE32_NOPAD
        .decode(e.secret.as_bytes())
        .unwrap();
    // Not active until confirmed.
    tokens(login(&cp, "gina", PW, NOW).await);
    assert!(matches!(
        cp.at(NOW)
            .totp_confirm(OP, "acme", &gina, &not_a_code(&secret, NOW))
            .await,
        Err(Error::BadRequest(_))
    ));
    s.totp_remove(OP, "acme", &gina).await.unwrap();
    let e = s.totp_enroll(OP, "acme", &gina).await.unwrap();
    let secret2 = data_encoding::BASE32_NOPAD
        .decode(e.secret.as_bytes())
        .unwrap();
    assert_ne!(secret, secret2);
    cp.at(NOW)
        .totp_confirm(OP, "acme", &gina, &totp::code_at(&secret2, NOW))
        .await
        .unwrap();
    assert!(matches!(
        s.totp_enroll(OP, "acme", &gina).await,
        Err(Error::Conflict(_))
    ));

    let mfa = |session: &str, code: &str| ChallengeAnswer {
        session: session.into(),
        new_password: None,
        code: Some(code.into()),
    };
    let later = NOW + 300;
    let (name, session) = challenge(login(&cp, "gina", PW, later).await);
    assert_eq!(name, ChallengeName::SoftwareTokenMfa);
    assert!(matches!(
        respond(&cp, &mfa(&session, &not_a_code(&secret2, later)), later).await,
        Err(Error::Unauthenticated(_))
    ));
    let (_, session) = challenge(login(&cp, "gina", PW, later).await);
    let code = totp::code_at(&secret2, later);
    tokens(respond(&cp, &mfa(&session, &code), later).await);
    // The same code again (same step): refused.
    let (_, session) = challenge(login(&cp, "gina", PW, later).await);
    assert!(matches!(
        respond(&cp, &mfa(&session, &code), later).await,
        Err(Error::Unauthenticated(_))
    ));
}

#[tokio::test]
async fn brute_force_is_throttled_per_username() {
    let cp = realm().await;
    let s = &cp.service;
    let hank = user(&cp, "hank", true).await;
    s.set_password(OP, "acme", &hank, PW, false).await.unwrap();
    for _ in 0..6 {
        let _ = login(&cp, "hank", "wrong-wrong-wrong", NOW).await;
    }
    // Locked: even the right password waits.
    assert!(matches!(
        login(&cp, "hank", PW, NOW).await,
        Err(Error::Throttled { retry_after: 1 })
    ));
    // Other usernames are unaffected.
    let ivy = user(&cp, "ivy", true).await;
    s.set_password(OP, "acme", &ivy, PW, false).await.unwrap();
    tokens(login(&cp, "ivy", PW, NOW).await);
    // After the lock, the right password works and clears the record.
    tokens(login(&cp, "hank", PW, NOW + 2).await);
    let _ = login(&cp, "hank", "wrong-wrong-wrong", NOW + 3).await;
    tokens(login(&cp, "hank", PW, NOW + 3).await);
}

#[tokio::test]
async fn a_login_by_email_and_one_by_username_count_against_one_record() {
    let cp = realm().await;
    let jo = user(&cp, "jo", true).await;
    cp.service
        .set_password(OP, "acme", &jo, PW, false)
        .await
        .unwrap();
    // Three wrong by username and three by email: six against jo.
    for name in ["jo", "jo@acme.io"] {
        for _ in 0..3 {
            assert!(matches!(
                login(&cp, name, "wrong-wrong-wrong", NOW).await,
                Err(Error::Unauthenticated(_))
            ));
        }
    }
    for name in ["jo", "JO@acme.io"] {
        assert!(
            matches!(
                login(&cp, name, PW, NOW).await,
                Err(Error::Throttled { .. })
            ),
            "{name}"
        );
    }
}

#[tokio::test]
async fn a_right_password_does_not_reopen_second_factor_guessing() {
    let cp = realm().await;
    let s = &cp.service;
    let kim = user(&cp, "kim", true).await;
    s.set_password(OP, "acme", &kim, PW, false).await.unwrap();
    let e = s.totp_enroll(OP, "acme", &kim).await.unwrap();
    let secret = data_encoding::BASE32_NOPAD
        .decode(e.secret.as_bytes())
        .unwrap();
    cp.at(NOW)
        .totp_confirm(OP, "acme", &kim, &totp::code_at(&secret, NOW))
        .await
        .unwrap();
    let wrong = |session: String| ChallengeAnswer {
        session,
        new_password: None,
        code: Some(not_a_code(&secret, NOW + 60)),
    };
    // The password is right every time, the code never: each wrong code
    // counts against kim, and a right password clears nothing (only a
    // login that ends in tokens does): five free failures, then locked.
    let mut rounds = 0;
    loop {
        match login(&cp, "kim", PW, NOW + 60).await {
            Err(Error::Throttled { .. }) => break,
            r => {
                let (name, session) = challenge(r);
                assert_eq!(name, ChallengeName::SoftwareTokenMfa);
                rounds += 1;
                assert!(rounds <= 6, "second-factor guessing is not throttled");
                match respond(&cp, &wrong(session), NOW + 60).await {
                    Err(Error::Unauthenticated(_) | Error::Throttled { .. }) => {}
                    other => panic!("{other:?}"),
                }
            }
        }
    }
    assert_eq!(rounds, 6, "five free wrong codes, and the sixth that locks");
    // Once the lock has passed, the right code ends in tokens and clears
    // the record.
    let later = NOW + 90;
    let (_, session) = challenge(login(&cp, "kim", PW, later).await);
    let answer = ChallengeAnswer {
        session,
        new_password: None,
        code: Some(totp::code_at(&secret, later)),
    };
    tokens(respond(&cp, &answer, later).await);
    let (_, session) = challenge(login(&cp, "kim", PW, later).await);
    assert!(matches!(
        respond(&cp, &wrong(session), later).await,
        Err(Error::Unauthenticated(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_guesses_all_count() {
    // 32 wrong passwords for one user at once: each attempt is counted in
    // the same write as its throttle check, so no more than the free five
    // and the one that locks get their password checked.
    let cp = realm().await;
    let lou = user(&cp, "lou", true).await;
    cp.service
        .set_password(OP, "acme", &lou, PW, false)
        .await
        .unwrap();
    let mut guesses = Vec::new();
    cp.clock.set(NOW);
    for i in 0..32 {
        let s = cp.service.clone();
        guesses.push(tokio::spawn(async move {
            s.login("acme", "lou", &format!("wrong-guess-{i}"), None)
                .await
        }));
    }
    // Past the throttle check: refused as a wrong password, or (more
    // hashes at once than the process runs) as busy; either way counted.
    let (mut checked, mut busy, mut throttled) = (0, 0, 0);
    for g in guesses {
        match g.await.unwrap() {
            Err(Error::Unauthenticated(_)) => checked += 1,
            Err(Error::Busy { .. }) => busy += 1,
            Err(Error::Throttled { .. }) => throttled += 1,
            other => panic!("{other:?}"),
        }
    }
    println!("32 concurrent guesses: {checked} checked, {busy} busy, {throttled} throttled");
    assert_eq!(checked + busy, 6);
    assert_eq!(throttled, 26);
}

#[tokio::test]
async fn imported_bcrypt_hash_is_verified_and_upgraded() {
    let cp = realm().await;
    let hash = bcrypt::hash("imported passphrase", 4).unwrap();
    let line = serde_json::json!({
        "id": "jo", "username": "jo", "email": "jo@acme.io", "state": "Active",
        "password_hash": hash,
    });
    cp.service
        .import_users(
            OP,
            "acme",
            Box::new(std::io::Cursor::new(format!("{line}\n"))),
            Format::JsonLines,
        )
        .await
        .unwrap();
    let stored = || async {
        cp.repo
            .read(|tx| tx.credentials("acme", "jo"))
            .await
            .unwrap()
            .password_hash
            .unwrap()
    };
    assert_eq!(stored().await, hash);
    tokens(login(&cp, "jo", "imported passphrase", NOW).await);
    // Upgraded to Argon2id: the stored hash changed and still verifies.
    let upgraded = stored().await;
    assert!(upgraded.starts_with("$argon2id$"), "{upgraded}");
    tokens(login(&cp, "jo@acme.io", "imported passphrase", NOW).await);
    assert_eq!(stored().await, upgraded, "an Argon2id hash is kept");
    assert!(login(&cp, "jo", "imported passphras", NOW).await.is_err());
}

#[tokio::test]
async fn key_rotation_keeps_the_previous_key_in_the_jwks() {
    let cp = realm().await;
    let s = &cp.service;
    let kim = user(&cp, "kim", true).await;
    s.set_password(OP, "acme", &kim, PW, false).await.unwrap();
    let first = tokens(login(&cp, "kim", PW, NOW).await);
    let keys = s.signing_keys(OP, "acme").await.unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(
        (keys[0].alg, keys[0].status.as_str()),
        (Alg::EdDSA, "active")
    );

    let k2 = cp
        .at(NOW + 1)
        .rotate_signing_key(OP, "acme", Alg::ES256)
        .await
        .unwrap();
    let second = tokens(login(&cp, "kim", PW, NOW + 1).await);
    let snap = snapshot(&cp, NOW + 1).await;
    // Both verify: the new key signs, the old one is retiring.
    assert!(snap.verify_token(&first.id_token, NOW + 2).is_ok());
    let v = snap.verify_token(&second.id_token, NOW + 2).unwrap();
    assert_eq!(v.sub, kim);
    let header = jsonwebtoken::decode_header(&second.id_token).unwrap();
    assert_eq!(header.kid.as_deref(), Some(k2.kid.as_str()));
    assert_eq!(header.alg, jsonwebtoken::Algorithm::ES256);
    let jwks = s.jwks("acme").await.unwrap();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);

    // A second rotation retires the first key: its tokens stop verifying.
    cp.at(NOW + 2)
        .rotate_signing_key(OP, "acme", Alg::EdDSA)
        .await
        .unwrap();
    let snap = snapshot(&cp, NOW + 2).await;
    assert_eq!(
        snap.verify_token(&first.id_token, NOW + 3).unwrap_err(),
        TokenFailure::UnknownKid
    );
    assert!(snap.verify_token(&second.id_token, NOW + 3).is_ok());
    let statuses: Vec<_> = s
        .signing_keys(OP, "acme")
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.status)
        .collect();
    assert_eq!(statuses, ["active", "retiring", "retired"]);
    let oidc = s.openid_configuration("acme").await.unwrap();
    assert_eq!(oidc["issuer"], "https://cp.example/realms/acme");
    assert_eq!(
        oidc["jwks_uri"],
        "https://cp.example/realms/acme/.well-known/jwks.json"
    );
}

#[tokio::test]
async fn unverified_users_complete_only_the_email_verification() {
    let cp = realm().await;
    let s = &cp.service;
    let lee = user(&cp, "lee", false).await;
    s.set_password(OP, "acme", &lee, PW, false).await.unwrap();
    let code = cp
        .at(NOW)
        .start_verification(OP, "acme", &lee)
        .await
        .unwrap();
    assert_eq!(code.code.len(), 8);
    assert_eq!(state(&cp, &lee).await, UserState::Unverified);
    let answer = |session: String, code: &str| ChallengeAnswer {
        session,
        new_password: None,
        code: Some(code.into()),
    };
    // The password opens only the verification challenge.
    let (name, session) = challenge(login(&cp, "lee", PW, NOW).await);
    assert_eq!(name, ChallengeName::EmailVerification);
    let wrong = if code.code == "00000000" {
        "11111111"
    } else {
        "00000000"
    };
    assert!(matches!(
        respond(&cp, &answer(session, wrong), NOW).await,
        Err(Error::Unauthenticated(_))
    ));
    // An expired code is refused. The session is taken at the same time,
    // or it would have expired first (sessions live 3 minutes, codes 15).
    let (_, session) = challenge(login(&cp, "lee", PW, NOW + VERIFICATION_TTL + 1).await);
    assert!(matches!(
        respond(
            &cp,
            &answer(session, &code.code),
            NOW + VERIFICATION_TTL + 1
        )
        .await,
        Err(Error::Unauthenticated(_))
    ));
    // The right code: Active, tokens.
    let (_, session) = challenge(login(&cp, "lee", PW, NOW).await);
    tokens(respond(&cp, &answer(session, &code.code), NOW).await);
    assert_eq!(state(&cp, &lee).await, UserState::Active);
    const { assert!(VERIFICATION_TTL <= 15 * 60) };
    // An Active user gets no new code; the old one is spent.
    assert!(matches!(
        cp.at(NOW).start_verification(OP, "acme", &lee).await,
        Err(Error::Lifecycle(_))
    ));
    tokens(login(&cp, "lee", PW, NOW).await);
}

#[tokio::test]
async fn a_verification_code_dies_after_five_wrong_answers() {
    let cp = realm().await;
    let s = &cp.service;
    let max = user(&cp, "max", false).await;
    s.set_password(OP, "acme", &max, PW, false).await.unwrap();
    let code = cp
        .at(NOW)
        .start_verification(OP, "acme", &max)
        .await
        .unwrap();
    assert_eq!(code.expires_at, NOW + VERIFICATION_TTL);
    let wrong = if code.code == "00000000" {
        "11111111"
    } else {
        "00000000"
    };
    let answer = |session: String, code: &str| ChallengeAnswer {
        session,
        new_password: None,
        code: Some(code.into()),
    };
    // Each wrong answer is a login and an answer apart; rounds are spaced
    // past the throttle's short locks.
    for round in 0..VERIFICATION_ATTEMPTS {
        let t = NOW + 100 * round;
        let (name, session) = challenge(login(&cp, "max", PW, t).await);
        assert_eq!(name, ChallengeName::EmailVerification);
        assert!(matches!(
            respond(&cp, &answer(session, wrong), t).await,
            Err(Error::Unauthenticated(_))
        ));
    }
    // The right code, in time, but after the fifth wrong answer: void.
    let t = NOW + 100 * VERIFICATION_ATTEMPTS;
    assert!(t < code.expires_at);
    let (_, session) = challenge(login(&cp, "max", PW, t).await);
    assert!(matches!(
        respond(&cp, &answer(session, &code.code), t).await,
        Err(Error::Unauthenticated(_))
    ));
    assert_eq!(state(&cp, &max).await, UserState::Unverified);
    // A new code starts afresh.
    let again = cp.at(t).start_verification(OP, "acme", &max).await.unwrap();
    let (_, session) = challenge(login(&cp, "max", PW, t + 1).await);
    tokens(respond(&cp, &answer(session, &again.code), t + 1).await);
    assert_eq!(state(&cp, &max).await, UserState::Active);
}

/// A six-digit code that is valid in none of the steps around `now`.
fn not_a_code(secret: &[u8], now: i64) -> String {
    let valid: Vec<String> = [-30, 0, 30]
        .iter()
        .map(|d| totp::code_at(secret, now + d))
        .collect();
    (0..4)
        .map(|i| format!("{i}{i}{i}{i}{i}{i}"))
        .find(|c| !valid.contains(c))
        .unwrap()
}

#[test]
fn secrets_do_not_show_in_debug_output() {
    let t = Tokens {
        id_token: "eyJ.secret-id.sig".into(),
        access_token: "eyJ.secret-access.sig".into(),
        token_type: "Bearer".into(),
        expires_in: 60,
    };
    let a = ChallengeAnswer {
        session: "session-secret".into(),
        new_password: Some("password-secret".into()),
        code: Some("123456".into()),
    };
    let shown = format!("{t:?} {a:?}");
    for secret in [
        "secret-id",
        "secret-access",
        "session-secret",
        "password-secret",
        "123456",
    ] {
        assert!(!shown.contains(secret), "{shown}");
    }
    assert!(shown.contains("Bearer") && shown.contains("<redacted>"));
}
