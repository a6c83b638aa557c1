//! Token attacks and the AVP claim mapping, against the reference bundle
//! built with `tests/keys/identity.json`, which trusts the committed test
//! keys (`policies/identity.json` itself trusts none).

mod common;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use pdp_core::bundle::{BundleHeader, write_archive};
use pdp_core::decision::{Decision, EntityRef, Reason, TokenRequest};
use pdp_core::manifest::BundleKind;
use pdp_core::{Snapshot, TokenFailure, UserState};
use serde_json::{Value, json};
use std::collections::BTreeMap;

const NOW: i64 = 1_800_000_000;
const ISS: &str = "https://gatehouse.local/realms/default";
const AUD: &str = "gatehouse-demo-client";

fn key(name: &str) -> Vec<u8> {
    std::fs::read(common::repo_root().join(format!("pdp-core/tests/keys/{name}"))).unwrap()
}

fn sign(alg: Algorithm, kid: &str, key_file: &str, claims: &Value) -> String {
    let pem = key(key_file);
    let k = match alg {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(&pem).unwrap(),
        Algorithm::ES256 => EncodingKey::from_ec_pem(&pem).unwrap(),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(&pem).unwrap(),
        _ => unreachable!(),
    };
    let mut h = Header::new(alg);
    h.kid = Some(kid.into());
    jsonwebtoken::encode(&h, claims, &k).unwrap()
}

fn id_claims(sub: &str) -> Value {
    json!({"sub": sub, "iss": ISS, "aud": AUD, "token_use": "id", "iat": NOW - 60, "exp": NOW + 3600,
           "email": format!("{sub}@example.com"), "cognito:groups": ["platform"]})
}

fn rs(claims: &Value) -> String {
    sign(Algorithm::RS256, "test-rs256", "rs256.key.pem", claims)
}

fn req(token: String, action: &str, resource: (&str, &str), context: Value) -> TokenRequest {
    TokenRequest {
        token,
        action: EntityRef::new("Action", action),
        resource: EntityRef::new(resource.0, resource.1),
        context,
        entities: vec![],
    }
}

fn read(snap: &Snapshot, token: String) -> pdp_core::Answer {
    snap.is_authorized_with_token(
        &req(token, "readDocument", ("Document", "design-doc"), json!({})),
        NOW,
    )
    .unwrap()
}

fn refused_with(snap: &Snapshot, token: String, why: TokenFailure) {
    let a = read(snap, token);
    assert_eq!((a.decision, a.reason), (Decision::Deny, Reason::Token(why)));
}

fn b64(v: &Value) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

#[test]
fn valid_tokens_of_every_algorithm_are_accepted() {
    let snap = common::test_key_snapshot();
    assert_eq!(
        read(&snap, rs(&id_claims("alice"))).decision,
        Decision::Allow
    );
    let access = json!({"sub": "alice", "iss": ISS, "client_id": AUD, "token_use": "access", "scope": "openid", "iat": NOW - 5, "exp": NOW + 300});
    let es = sign(Algorithm::ES256, "test-es256", "es256.key.pem", &access);
    assert_eq!(read(&snap, es).decision, Decision::Allow);
    let ed = sign(
        Algorithm::EdDSA,
        "test-eddsa",
        "eddsa.key.pem",
        &id_claims("alice"),
    );
    let a = read(&snap, format!("Bearer {ed}"));
    assert_eq!((a.decision, a.reason), (Decision::Allow, Reason::Permit));
}

#[test]
fn token_attacks_are_each_refused_with_their_reason() {
    let snap = common::test_key_snapshot();
    let good = id_claims("alice");

    // alg none, unsigned.
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "kid": "test-rs256"})),
        b64(&good)
    );
    refused_with(&snap, none, TokenFailure::AlgorithmNotAllowed);
    // HS256 with the RSA public key as the HMAC secret (key confusion).
    let mut h = Header::new(Algorithm::HS256);
    h.kid = Some("test-rs256".into());
    let hs =
        jsonwebtoken::encode(&h, &good, &EncodingKey::from_secret(&key("rs256.pub.pem"))).unwrap();
    refused_with(&snap, hs, TokenFailure::AlgorithmNotAllowed);
    // An RS256 header on an EC key id.
    refused_with(
        &snap,
        sign(Algorithm::RS256, "test-es256", "rs256.key.pem", &good),
        TokenFailure::KeyMismatch,
    );
    // Unknown kid, and a forged signature under a trusted kid.
    refused_with(
        &snap,
        sign(
            Algorithm::RS256,
            "attacker",
            "attacker-rs256.key.pem",
            &good,
        ),
        TokenFailure::UnknownKid,
    );
    refused_with(
        &snap,
        sign(
            Algorithm::RS256,
            "test-rs256",
            "attacker-rs256.key.pem",
            &good,
        ),
        TokenFailure::BadSignature,
    );
    // Tampered payload.
    let t = rs(&good);
    let parts: Vec<&str> = t.split('.').collect();
    let mut evil = good.clone();
    evil["sub"] = json!("bob");
    refused_with(
        &snap,
        format!("{}.{}.{}", parts[0], b64(&evil), parts[2]),
        TokenFailure::BadSignature,
    );
    // Missing kid; garbage.
    let mut h = Header::new(Algorithm::RS256);
    h.kid = None;
    let no_kid = jsonwebtoken::encode(
        &h,
        &good,
        &EncodingKey::from_rsa_pem(&key("rs256.key.pem")).unwrap(),
    )
    .unwrap();
    refused_with(&snap, no_kid, TokenFailure::MissingKid);
    refused_with(&snap, "not.a.token".into(), TokenFailure::Malformed);
    refused_with(&snap, "".into(), TokenFailure::Malformed);

    let with = |k: &str, v: Value| {
        let mut c = good.clone();
        c[k] = v;
        rs(&c)
    };
    refused_with(&snap, with("exp", json!(NOW - 31)), TokenFailure::Expired);
    assert_eq!(
        read(&snap, with("exp", json!(NOW - 29))).decision,
        Decision::Allow,
        "inside the leeway"
    );
    refused_with(
        &snap,
        with("nbf", json!(NOW + 31)),
        TokenFailure::NotYetValid,
    );
    refused_with(
        &snap,
        with("iat", json!(NOW + 600)),
        TokenFailure::NotYetValid,
    );
    refused_with(
        &snap,
        with("iss", json!("https://evil.example")),
        TokenFailure::WrongIssuer,
    );
    refused_with(
        &snap,
        with("aud", json!("another-client")),
        TokenFailure::WrongAudience,
    );
    refused_with(
        &snap,
        with("token_use", json!("refresh")),
        TokenFailure::WrongTokenUse,
    );
    refused_with(
        &snap,
        with("exp", json!("tomorrow")),
        TokenFailure::MissingClaim,
    );
    let mut no_use = good.clone();
    no_use.as_object_mut().unwrap().remove("token_use");
    refused_with(&snap, rs(&no_use), TokenFailure::WrongTokenUse);
    let access_wrong_client = json!({"sub": "alice", "iss": ISS, "client_id": "other", "token_use": "access", "iat": NOW, "exp": NOW + 60});
    refused_with(&snap, rs(&access_wrong_client), TokenFailure::WrongAudience);

    // Directory checks: unknown user, suspended user.
    refused_with(&snap, rs(&id_claims("mallory")), TokenFailure::UnknownUser);
    let a = read(&snap, rs(&id_claims("dave")));
    assert_eq!(
        (a.decision, a.reason),
        (Decision::Deny, Reason::UserState(UserState::Suspended))
    );
}

#[test]
fn tokens_issued_before_or_at_tokens_valid_after_are_revoked() {
    let base = common::test_key_snapshot();
    // Sign-out-everywhere for alice at NOW - 30: state stays Active.
    let users = format!(
        "{{\"id\":\"alice\",\"username\":\"alice\",\"email\":\"alice@example.com\",\"state\":\"Active\",\"groups\":[\"platform\"],\"attrs\":{{\"department\":\"engineering\",\"level\":3}},\"tokens_valid_after\":{}}}\n",
        NOW - 30
    );
    let header = BundleHeader {
        realm: "default".into(),
        revision: 2,
        kind: BundleKind::Delta,
        base_revision: Some(1),
        created_at: NOW,
        identity: None,
    };
    let d = write_archive(
        &header,
        &BTreeMap::from([("users.jsonl".to_owned(), users.into_bytes())]),
        Some(&common::signer()),
        true,
    )
    .unwrap();
    let snap = common::load_signed(&d, Some(&base)).unwrap();
    let old = id_claims("alice"); // iat NOW - 60
    refused_with(&snap, rs(&old), TokenFailure::Revoked);
    // Minted in the very second of the sign-out: whole seconds cannot
    // tell it was after, so it is refused too.
    let mut same_second = old.clone();
    same_second["iat"] = json!(NOW - 30);
    refused_with(&snap, rs(&same_second), TokenFailure::Revoked);
    let mut next_second = old.clone();
    next_second["iat"] = json!(NOW - 29);
    assert_eq!(read(&snap, rs(&next_second)).decision, Decision::Allow);
    let mut fresh = old.clone();
    fresh["iat"] = json!(NOW - 10);
    assert_eq!(read(&snap, rs(&fresh)).decision, Decision::Allow);
    // Once alice is built and cached (kept from her second build), the
    // old token is refused from the cached entry just the same.
    for _ in 0..3 {
        assert_eq!(read(&snap, rs(&fresh)).decision, Decision::Allow);
    }
    refused_with(&snap, rs(&old), TokenFailure::Revoked);
    // The identity settings survive the users-only delta.
    assert_eq!(snap.issuer(), Some(ISS));
}

#[test]
fn mfa_comes_from_the_token_not_the_caller() {
    let snap = common::test_key_snapshot();
    let delete = |token: String, ctx: Value| {
        snap.is_authorized_with_token(
            &req(token, "deleteDocument", ("Document", "design-doc"), ctx),
            NOW,
        )
        .unwrap()
    };
    let mut mfa = id_claims("alice");
    mfa["amr"] = json!(["pwd", "mfa"]);
    assert_eq!(delete(rs(&mfa), json!({})).decision, Decision::Allow);
    let a = delete(rs(&id_claims("alice")), json!({"mfa": true}));
    assert_eq!(a.reason, Reason::Forbid("sensitive-needs-mfa".into()));
}

#[test]
fn without_a_directory_the_avp_mapping_builds_the_principal_from_claims() {
    let mut files = BTreeMap::new();
    files.insert("policies.cedar".to_owned(), b"permit(principal in Group::\"platform\", action, resource) when { principal.email like \"*@example.com\" && context.token_use == \"id\" };".to_vec());
    files.insert(
        "identity.json".to_owned(),
        common::test_key_files()["identity.json"].clone(),
    );
    let bytes = pdp_core::source::build(&files, &common::opts(1), None).unwrap();
    let snap = pdp_core::load(
        &bytes,
        &pdp_core::LoadOptions {
            trust: pdp_core::Trust::Dev,
            limits: Default::default(),
        },
        None,
    )
    .unwrap();
    let a = read(&snap, rs(&id_claims("anyone")));
    assert_eq!(
        (a.decision, a.determining_policies),
        (Decision::Allow, vec!["policy0".to_owned()])
    );
    let mut other_group = id_claims("anyone");
    other_group["cognito:groups"] = json!(["sales"]);
    assert_eq!(read(&snap, rs(&other_group)).reason, Reason::NoPermit);
}

/// `policies/` (the edge host's demo realm, `pdp decide --bundle
/// policies`) trusts no token key: in particular none of the keys whose
/// private halves are committed here (issue 16 item 2).
#[test]
fn the_reference_realm_itself_trusts_no_token_key() {
    let snap = common::reference_snapshot();
    let good = id_claims("alice");
    for (alg, kid, file) in [
        (Algorithm::RS256, "test-rs256", "rs256.key.pem"),
        (Algorithm::ES256, "test-es256", "es256.key.pem"),
        (Algorithm::EdDSA, "test-eddsa", "eddsa.key.pem"),
    ] {
        refused_with(&snap, sign(alg, kid, file, &good), TokenFailure::UnknownKid);
    }
    assert_eq!(snap.issuer(), Some(ISS));
}
