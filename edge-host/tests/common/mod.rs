//! Helpers shared by the edge host's tests: the reference realm trusting
//! the repository's test keys, loaded explicitly (never the default), and
//! tokens signed with those keys.
#![allow(dead_code, reason = "each test binary uses a different subset")]

use serde_json::json;
use std::path::{Path, PathBuf};

pub const ISSUER: &str = "https://gatehouse.local/realms/default";
pub const AUDIENCE: &str = "gatehouse-demo-client";

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The source files of `policies/`, with the identity settings of
/// `pdp-core/tests/keys/identity.json` (the committed test keys) in place
/// of the demo's, which trust no key.
pub fn test_realm_files() -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut files = std::collections::BTreeMap::new();
    for n in pdp_core::manifest::member::SOURCE {
        files.insert(
            n.to_owned(),
            std::fs::read(root().join("policies").join(n)).unwrap(),
        );
    }
    files.insert(
        "identity.json".into(),
        std::fs::read(root().join("pdp-core/tests/keys/identity.json")).unwrap(),
    );
    files
}

/// `test_realm_files` written to `dir` (created): a source directory to
/// serve with `--bundle DIR --dev`.
pub fn test_realm_dir(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    for (name, bytes) in test_realm_files() {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    dir.to_owned()
}

/// An RS256 ID token of the reference realm for `sub`, signed with the
/// test key `key_file` under `kid`, issued 5 s ago, valid 5 minutes.
pub fn token(sub: &str, key_file: &str, kid: &str) -> String {
    signed(
        jsonwebtoken::Algorithm::RS256,
        kid,
        key_file,
        &id_claims(sub),
    )
}

/// ID token claims of the reference realm for `sub`, issued 5 s ago,
/// valid 5 minutes.
pub fn id_claims(sub: &str) -> serde_json::Value {
    let t = edge_host::realm::now();
    json!({"sub": sub, "iss": ISSUER, "aud": AUDIENCE, "token_use": "id", "iat": t - 5, "exp": t + 300})
}

/// `claims` signed with the test key `key_file` (RS256, ES256 or EdDSA
/// PEM) under `kid`.
pub fn signed(
    alg: jsonwebtoken::Algorithm,
    kid: &str,
    key_file: &str,
    claims: &serde_json::Value,
) -> String {
    use jsonwebtoken::{Algorithm, EncodingKey};
    let pem = std::fs::read(root().join("pdp-core/tests/keys").join(key_file)).unwrap();
    let key = match alg {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(&pem).unwrap(),
        Algorithm::ES256 => EncodingKey::from_ec_pem(&pem).unwrap(),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(&pem).unwrap(),
        other => panic!("no test key for {other:?}"),
    };
    let mut h = jsonwebtoken::Header::new(alg);
    h.kid = Some(kid.into());
    jsonwebtoken::encode(&h, claims, &key).unwrap()
}
