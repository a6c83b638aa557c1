//! The local identity backend: passwords, challenges, TOTP, throttling,
//! signing keys and rotation — and tokens a decision point accepts.

use control_plane::identity::keys::Alg;
use control_plane::identity::{ChallengeAnswer, ChallengeName, LoginResult, Tokens, totp};
use control_plane::objstore::LocalDirStore;
use control_plane::publish::{Publisher, load_published};
use control_plane::realm::NewRealm;
use control_plane::user::NewUser;
use control_plane::{Db, Error};
use pdp_core::decision::{EntityRef, Reason, TokenRequest};
use pdp_core::{Keyring, LifecycleAction, Snapshot, TokenFailure};

const NOW: i64 = 1_800_000_000;
const TTL: i64 = 3600;
const PW: &str = "correct horse battery staple";

struct Realm {
    db: Db,
    _dir: tempfile::TempDir,
    store: LocalDirStore,
}

impl Realm {
    fn new() -> Realm {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("cp.db")).unwrap();
        db.create_realm(
            &NewRealm {
                name: "acme".into(),
                ..NewRealm::default()
            },
            "https://cp.example",
            NOW,
        )
        .unwrap();
        let store = LocalDirStore::open(dir.path().join("store")).unwrap();
        Realm {
            db,
            _dir: dir,
            store,
        }
    }

    fn user(&self, username: &str, active: bool) -> String {
        let id = self
            .db
            .create_user(
                "acme",
                &NewUser {
                    username: Some(username.into()),
                    email: format!("{username}@acme.io"),
                    ..NewUser::default()
                },
                NOW,
            )
            .unwrap()
            .id;
        if active {
            self.db
                .lifecycle("acme", &id, LifecycleAction::Verify, NOW)
                .unwrap();
        }
        id
    }

    fn login(&self, username: &str, pw: &str, now: i64) -> control_plane::Result<LoginResult> {
        self.db.login("acme", username, pw, None, TTL, now)
    }

    /// Publish and load what an edge host would hold.
    fn snapshot(&self, now: i64) -> Snapshot {
        Publisher::new(&self.db, &self.store, "", 0)
            .publish("acme", now)
            .unwrap();
        let mut ring = Keyring::new();
        ring.add(self.db.bundle_signer("acme").unwrap().verifying_key());
        load_published(&self.store, "", "acme", &ring).unwrap()
    }
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

#[test]
fn active_user_logs_in_and_the_tokens_are_accepted_until_revoked() {
    let r = Realm::new();
    let alice = r.user("alice", true);
    r.db.set_password("acme", &alice, PW, false, NOW).unwrap();
    r.db.create_policy(
        "acme",
        "users-view-themselves",
        &control_plane::policy::PolicyInput {
            body: "permit (principal, action == Action::\"viewProfile\", resource) when { principal == resource };".into(),
            description: String::new(),
        },
        NOW,
    )
    .unwrap();
    let t = tokens(r.login("Alice", PW, NOW + 1));
    assert_eq!(t.token_type, "Bearer");
    let snap = r.snapshot(NOW + 1);
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
    // Suspended after the token was issued: refused at once.
    r.db.lifecycle("acme", &alice, LifecycleAction::Suspend, NOW + 5)
        .unwrap();
    let snap = r.snapshot(NOW + 5);
    assert!(matches!(
        decide(&snap, &t.id_token, &alice, NOW + 6),
        Reason::Token(_) | Reason::UserState(_)
    ));
    // ...and cannot log in.
    assert!(matches!(
        r.login("alice", PW, NOW + 6),
        Err(Error::Forbidden(_))
    ));
}

#[test]
fn wrong_passwords_unknown_users_and_refused_states() {
    let r = Realm::new();
    let bob = r.user("bob", true);
    r.db.set_password("acme", &bob, PW, false, NOW).unwrap();
    let wrong = r.login("bob", "not the password", NOW).unwrap_err();
    let unknown = r.login("nobody", PW, NOW).unwrap_err();
    // The same answer whether or not the user exists.
    assert_eq!(wrong.to_string(), unknown.to_string());
    assert!(matches!(wrong, Error::Unauthenticated(_)));
    // Created without a temporary password or a verification code: refused.
    let carol = r.user("carol", false);
    r.db.set_password("acme", &carol, PW, false, NOW).unwrap();
    assert!(matches!(
        r.login("carol", PW, NOW),
        Err(Error::Forbidden(_))
    ));
    // Deactivated and deleted users: refused.
    r.db.lifecycle("acme", &bob, LifecycleAction::Deactivate, NOW)
        .unwrap();
    assert!(matches!(r.login("bob", PW, NOW), Err(Error::Forbidden(_))));
    // A user without a password cannot log in.
    r.user("dave", true);
    assert!(matches!(
        r.login("dave", "", NOW),
        Err(Error::Unauthenticated(_))
    ));
}

#[test]
fn password_rules_are_enforced() {
    let r = Realm::new();
    let erin = r.user("erin", true);
    for bad in ["short", "password123", "erin@acme.io", "ERIN"] {
        let e =
            r.db.set_password("acme", &erin, bad, false, NOW)
                .unwrap_err();
        assert!(matches!(e, Error::Invalid { .. }), "{bad}: {e}");
    }
    assert!(matches!(
        r.login("erin", "short", NOW),
        Err(Error::Unauthenticated(_))
    ));
}

#[test]
fn temporary_password_and_required_reset_are_challenges_that_activate() {
    let r = Realm::new();
    // Created by an administrator with a temporary password.
    let frank = r.user("frank", false);
    r.db.set_password("acme", &frank, "temporary-pass-1", true, NOW)
        .unwrap();
    let (name, session) = challenge(r.login("frank", "temporary-pass-1", NOW));
    assert_eq!(name, ChallengeName::NewPasswordRequired);
    // A bad new password is refused; the session is spent either way.
    let answer = |session: &str, pw: &str| ChallengeAnswer {
        session: session.into(),
        new_password: Some(pw.into()),
        code: None,
    };
    assert!(matches!(
        r.db.respond_to_challenge("acme", &answer(&session, "short"), None, TTL, NOW),
        Err(Error::Invalid { .. })
    ));
    assert!(matches!(
        r.db.respond_to_challenge("acme", &answer(&session, PW), None, TTL, NOW),
        Err(Error::Unauthenticated(_))
    ));
    let (_, session) = challenge(r.login("frank", "temporary-pass-1", NOW));
    tokens(r.db.respond_to_challenge("acme", &answer(&session, PW), None, TTL, NOW));
    assert_eq!(
        r.db.user("acme", &frank).unwrap().state,
        pdp_core::UserState::Active
    );
    // The old password is gone, the new one works.
    assert!(r.login("frank", "temporary-pass-1", NOW).is_err());
    tokens(r.login("frank", PW, NOW));

    // Reset required: the old password only opens the challenge.
    r.db.lifecycle("acme", &frank, LifecycleAction::RequirePasswordReset, NOW)
        .unwrap();
    let (name, session) = challenge(r.login("frank", PW, NOW + 1));
    assert_eq!(name, ChallengeName::NewPasswordRequired);
    // Expired sessions are refused.
    assert!(matches!(
        r.db.respond_to_challenge(
            "acme",
            &answer(&session, "a brand new passphrase"),
            None,
            TTL,
            NOW + 1000
        ),
        Err(Error::Unauthenticated(_))
    ));
    let (_, session) = challenge(r.login("frank", PW, NOW + 1));
    tokens(r.db.respond_to_challenge(
        "acme",
        &answer(&session, "a brand new passphrase"),
        None,
        TTL,
        NOW + 2,
    ));
    assert_eq!(
        r.db.user("acme", &frank).unwrap().state,
        pdp_core::UserState::Active
    );
}

#[test]
fn totp_enrolment_and_login_with_replay_refused() {
    let r = Realm::new();
    let gina = r.user("gina", true);
    r.db.set_password("acme", &gina, PW, false, NOW).unwrap();
    let e = r.db.totp_enroll("acme", &gina).unwrap();
    assert!(
        e.otpauth_uri
            .starts_with("otpauth://totp/acme:gina?secret=")
    );
    let secret = data_encoding::BASE32_NOPAD
        .decode(e.secret.as_bytes())
        .unwrap();
    // Not active until confirmed.
    tokens(r.login("gina", PW, NOW));
    assert!(matches!(
        r.db.totp_confirm("acme", &gina, &not_a_code(&secret, NOW), NOW),
        Err(Error::BadRequest(_))
    ));
    r.db.totp_remove("acme", &gina).unwrap();
    let e = r.db.totp_enroll("acme", &gina).unwrap();
    let secret2 = data_encoding::BASE32_NOPAD
        .decode(e.secret.as_bytes())
        .unwrap();
    assert_ne!(secret, secret2);
    r.db.totp_confirm("acme", &gina, &totp::code_at(&secret2, NOW), NOW)
        .unwrap();
    assert!(matches!(
        r.db.totp_enroll("acme", &gina),
        Err(Error::Conflict(_))
    ));

    let mfa = |session: &str, code: &str, now| {
        r.db.respond_to_challenge(
            "acme",
            &ChallengeAnswer {
                session: session.into(),
                new_password: None,
                code: Some(code.into()),
            },
            None,
            TTL,
            now,
        )
    };
    let later = NOW + 300;
    let (name, session) = challenge(r.login("gina", PW, later));
    assert_eq!(name, ChallengeName::SoftwareTokenMfa);
    assert!(matches!(
        mfa(&session, &not_a_code(&secret2, later), later),
        Err(Error::Unauthenticated(_))
    ));
    let (_, session) = challenge(r.login("gina", PW, later));
    let code = totp::code_at(&secret2, later);
    tokens(mfa(&session, &code, later));
    // The same code again (same step): refused.
    let (_, session) = challenge(r.login("gina", PW, later));
    assert!(matches!(
        mfa(&session, &code, later),
        Err(Error::Unauthenticated(_))
    ));
}

#[test]
fn brute_force_is_throttled_per_username() {
    let r = Realm::new();
    let hank = r.user("hank", true);
    r.db.set_password("acme", &hank, PW, false, NOW).unwrap();
    for _ in 0..6 {
        let _ = r.login("hank", "wrong-wrong-wrong", NOW);
    }
    // Locked: even the right password waits.
    assert!(matches!(
        r.login("hank", PW, NOW),
        Err(Error::Throttled { retry_after: 1 })
    ));
    // Other usernames are unaffected.
    let ivy = r.user("ivy", true);
    r.db.set_password("acme", &ivy, PW, false, NOW).unwrap();
    tokens(r.login("ivy", PW, NOW));
    // After the lock, the right password works and clears the record.
    tokens(r.login("hank", PW, NOW + 2));
    let _ = r.login("hank", "wrong-wrong-wrong", NOW + 3);
    tokens(r.login("hank", PW, NOW + 3));
}

#[test]
fn imported_bcrypt_hash_is_verified_and_upgraded() {
    let r = Realm::new();
    let hash = bcrypt::hash("imported passphrase", 4).unwrap();
    let line = serde_json::json!({
        "username": "jo", "email": "jo@acme.io", "state": "Active", "password_hash": hash,
    });
    r.db.import_users(
        "acme",
        format!("{line}\n").as_bytes(),
        control_plane::import::Format::JsonLines,
        NOW,
    )
    .unwrap();
    tokens(r.login("jo", "imported passphrase", NOW));
    // Upgraded to Argon2id: the stored hash changed and still verifies.
    tokens(r.login("jo@acme.io", "imported passphrase", NOW));
    assert!(r.login("jo", "imported passphras", NOW).is_err());
}

#[test]
fn key_rotation_keeps_the_previous_key_in_the_jwks() {
    let r = Realm::new();
    let kim = r.user("kim", true);
    r.db.set_password("acme", &kim, PW, false, NOW).unwrap();
    let first = tokens(r.login("kim", PW, NOW));
    let keys = r.db.signing_keys("acme").unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(
        (keys[0].alg, keys[0].status.as_str()),
        (Alg::EdDSA, "active")
    );

    let k2 =
        r.db.rotate_signing_key("acme", Alg::ES256, NOW + 1)
            .unwrap();
    let second = tokens(r.login("kim", PW, NOW + 1));
    let snap = r.snapshot(NOW + 1);
    // Both verify: the new key signs, the old one is retiring.
    assert!(snap.verify_token(&first.id_token, NOW + 2).is_ok());
    let v = snap.verify_token(&second.id_token, NOW + 2).unwrap();
    assert_eq!(v.sub, kim);
    let header = jsonwebtoken::decode_header(&second.id_token).unwrap();
    assert_eq!(header.kid.as_deref(), Some(k2.kid.as_str()));
    assert_eq!(header.alg, jsonwebtoken::Algorithm::ES256);
    let jwks = r.db.jwks("acme").unwrap();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);

    // A second rotation retires the first key: its tokens stop verifying.
    r.db.rotate_signing_key("acme", Alg::EdDSA, NOW + 2)
        .unwrap();
    let snap = r.snapshot(NOW + 2);
    assert_eq!(
        snap.verify_token(&first.id_token, NOW + 3).unwrap_err(),
        TokenFailure::UnknownKid
    );
    assert!(snap.verify_token(&second.id_token, NOW + 3).is_ok());
    let statuses: Vec<_> =
        r.db.signing_keys("acme")
            .unwrap()
            .into_iter()
            .map(|k| k.status)
            .collect();
    assert_eq!(statuses, ["active", "retiring", "retired"]);
    let oidc = r.db.openid_configuration("acme").unwrap();
    assert_eq!(oidc["issuer"], "https://cp.example/realms/acme");
    assert_eq!(
        oidc["jwks_uri"],
        "https://cp.example/realms/acme/.well-known/jwks.json"
    );
}

#[test]
fn unverified_users_complete_only_the_email_verification() {
    let r = Realm::new();
    let lee = r.user("lee", false);
    r.db.set_password("acme", &lee, PW, false, NOW).unwrap();
    let code = r.db.start_verification("acme", &lee, NOW).unwrap();
    assert_eq!(code.code.len(), 8);
    assert_eq!(
        r.db.user("acme", &lee).unwrap().state,
        pdp_core::UserState::Unverified
    );
    let answer = |session: String, code: &str| ChallengeAnswer {
        session,
        new_password: None,
        code: Some(code.into()),
    };
    // The password opens only the verification challenge.
    let (name, session) = challenge(r.login("lee", PW, NOW));
    assert_eq!(name, ChallengeName::EmailVerification);
    let wrong = if code.code == "00000000" {
        "11111111"
    } else {
        "00000000"
    };
    assert!(matches!(
        r.db.respond_to_challenge("acme", &answer(session, wrong), None, TTL, NOW),
        Err(Error::Unauthenticated(_))
    ));
    // An expired code is refused.
    let (_, session) = challenge(r.login("lee", PW, NOW));
    assert!(matches!(
        r.db.respond_to_challenge(
            "acme",
            &answer(session, &code.code),
            None,
            TTL,
            NOW + control_plane::identity::VERIFICATION_TTL + 1
        ),
        Err(Error::Unauthenticated(_))
    ));
    // The right code: Active, tokens.
    let (_, session) = challenge(r.login("lee", PW, NOW));
    tokens(r.db.respond_to_challenge("acme", &answer(session, &code.code), None, TTL, NOW));
    assert_eq!(
        r.db.user("acme", &lee).unwrap().state,
        pdp_core::UserState::Active
    );
    // An Active user gets no new code; the old one is spent.
    assert!(matches!(
        r.db.start_verification("acme", &lee, NOW),
        Err(Error::Lifecycle(_))
    ));
    tokens(r.login("lee", PW, NOW));
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
