//! What both faces of the module share: load options, a loaded decision
//! point, and every call as *JSON bytes in, tagged JSON string out*.
//!
//! Both the JS class and the C ABI are thin shells over [`Pdp`], so the two
//! faces cannot drift apart, and every answer is byte-identical to what
//! native `pdp-core` gives for the same bytes (the wasmtime and Node tests
//! check it).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use pdp_core::decision::{BatchRequest, Tagged, TokenRequest};
use pdp_core::{Keyring, Limits, LoadOptions, Snapshot, Trust, UserRecord};
use serde::{Deserialize, Serialize};

/// The largest request accepted by default, in bytes (the edge host's
/// default body limit too).
pub const DEFAULT_MAX_REQUEST_BYTES: u64 = 1 << 20;

/// Load options, as JSON (`snake_case`; the JS spellings `trustKeys` and
/// `maxRequestBytes` are accepted as well).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Options {
    /// Accept unsigned bundles (development only). Ignored when keys are
    /// given: then signatures are always checked.
    #[serde(default)]
    pub dev: bool,
    /// Trusted bundle-signing keys, SPKI PEM (`pdp keygen` writes these).
    #[serde(default, alias = "trustKeys")]
    pub trust_keys: Vec<String>,
    /// The realm this engine serves: when given, the keys are trusted for
    /// bundles of that realm only (another realm's bundle signed with one
    /// of them is refused, `key_not_for_realm`).
    #[serde(default)]
    pub realm: Option<String>,
    /// Trusted bundle-signing keys as a JWKS (`{"keys": [{"kty": "OKP",
    /// "crv": "Ed25519", "x": ...}]}`).
    #[serde(default)]
    pub jwks: Option<Jwks>,
    /// Size limits for bundles (defaults: pdp-core's).
    #[serde(default)]
    pub limits: LimitOptions,
    /// The largest request (JSON bytes) a call accepts.
    #[serde(default, alias = "maxRequestBytes")]
    pub max_request_bytes: Option<u64>,
}

/// Bundle size limits; any left out keeps pdp-core's default.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitOptions {
    /// The archive as received.
    pub archive: Option<u64>,
    /// `manifest.json` and `manifest.sig`.
    pub manifest: Option<u64>,
    /// Each Cedar member.
    pub member: Option<u64>,
    /// `users.jsonl`.
    pub users: Option<u64>,
}

/// A JSON Web Key Set of Ed25519 public keys.
#[derive(Debug, Deserialize)]
pub struct Jwks {
    /// The keys.
    pub keys: Vec<Jwk>,
}

/// One Ed25519 public key (RFC 8037); other members are ignored.
#[derive(Debug, Deserialize)]
pub struct Jwk {
    /// Must be `OKP`.
    pub kty: String,
    /// Must be `Ed25519`.
    pub crv: Option<String>,
    /// The public key, base64url.
    pub x: Option<String>,
    /// If given, must be the key's RFC 7638 thumbprint (the id bundles name).
    pub kid: Option<String>,
}

/// A failure answer's kind and message, before it is rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Stable machine-readable kind.
    pub kind: &'static str,
    /// Human-readable message.
    pub message: String,
}

impl Failure {
    /// A failure of `kind`.
    pub fn new(kind: &'static str, message: impl Into<String>) -> Self {
        Failure {
            kind,
            message: message.into(),
        }
    }

    /// The tagged failure answer, as JSON.
    pub fn to_json(&self) -> String {
        Tagged::<()>::failure(self.kind, self.message.clone()).to_json()
    }
}

/// What a successful load or bundle update says.
#[derive(Debug, Serialize)]
pub struct Loaded {
    /// The handle to pass to later calls (C ABI only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handle: Option<u32>,
    /// The realm.
    pub realm: String,
    /// The revision now held.
    pub revision: u64,
    /// Key id that signed the bundle (`null` for an unsigned dev bundle).
    pub signed_by: Option<String>,
}

/// What a search looks for (the JS methods and C ABI functions are one
/// per kind, so a face never passes a kind as text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchKind {
    /// Which resources of a type may a principal act on (`ResourceSearch`).
    Resource,
    /// Which subjects of a type may act on a resource (`SubjectSearch`).
    Subject,
    /// Which actions may a principal take on a resource (`ActionSearch`).
    Action,
}

impl SearchKind {
    /// The name pdp-core's `Snapshot::search_json` and `pdp search` take.
    pub fn name(self) -> &'static str {
        match self {
            SearchKind::Resource => "resource",
            SearchKind::Subject => "subject",
            SearchKind::Action => "action",
        }
    }
}

/// The answer to a user lookup.
#[derive(Debug, Serialize)]
pub struct UserAnswer {
    /// The user's record; `null` when the directory has no such user.
    pub user: Option<UserRecord>,
}

/// A loaded decision point: the snapshot decisions are made from, and the
/// trust and limits later bundles are checked with.
#[derive(Debug)]
pub struct Pdp {
    snapshot: Snapshot,
    keyring: Keyring,
    dev: bool,
    limits: Limits,
    max_request: u64,
}

impl Options {
    /// Parse options JSON; empty bytes mean all defaults (which trust no
    /// key and refuse unsigned bundles, so something must be said).
    pub fn parse(json: &[u8]) -> Result<Options, Failure> {
        if json.iter().all(u8::is_ascii_whitespace) {
            return Ok(Options::default());
        }
        serde_json::from_slice(json).map_err(|e| Failure::new("invalid_options", e.to_string()))
    }

    fn keyring(&self) -> Result<Keyring, Failure> {
        let mut ring = Keyring::new();
        for (i, pem) in self.trust_keys.iter().enumerate() {
            match &self.realm {
                Some(realm) => ring.add_pem_for(pem, realm),
                None => ring.add_pem(pem),
            }
            .map_err(|e| Failure::new("invalid_options", format!("trust_keys[{i}]: {e}")))?;
        }
        if let Some(jwks) = &self.jwks {
            for (i, jwk) in jwks.keys.iter().enumerate() {
                let bad = |m: &str| Failure::new("invalid_options", format!("jwks.keys[{i}]: {m}"));
                if jwk.kty != "OKP" || jwk.crv.as_deref() != Some("Ed25519") {
                    return Err(bad("only OKP Ed25519 keys sign bundles"));
                }
                let x = jwk.x.as_deref().ok_or_else(|| bad("no x"))?;
                let bytes: [u8; 32] = B64
                    .decode(x)
                    .ok()
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| bad("x is not 32 base64url bytes"))?;
                let key = ed25519_dalek::VerifyingKey::from_bytes(&bytes)
                    .map_err(|e| bad(&format!("x: {e}")))?;
                let kid = match &self.realm {
                    Some(realm) => ring.add_for(key, realm),
                    None => ring.add(key),
                };
                if let Some(want) = &jwk.kid
                    && *want != kid
                {
                    return Err(bad(&format!(
                        "kid {want:?} is not the key's RFC 7638 thumbprint {kid:?}"
                    )));
                }
            }
        }
        Ok(ring)
    }

    fn limits(&self) -> Limits {
        let d = Limits::default();
        let l = &self.limits;
        Limits {
            archive: l.archive.unwrap_or(d.archive),
            manifest: l.manifest.unwrap_or(d.manifest),
            member: l.member.unwrap_or(d.member),
            users: l.users.unwrap_or(d.users),
        }
    }
}

impl Pdp {
    /// Load a snapshot bundle with options given as JSON.
    pub fn load(bundle: &[u8], options: &[u8]) -> Result<Pdp, Failure> {
        let options = Options::parse(options)?;
        let keyring = options.keyring()?;
        if keyring.is_empty() && !options.dev {
            return Err(Failure::new(
                "invalid_options",
                "no trusted key: give trust_keys or jwks, or dev: true for unsigned bundles",
            ));
        }
        let limits = options.limits();
        let snapshot = {
            let trust = trust(&keyring, options.dev);
            pdp_core::load(bundle, &LoadOptions { trust, limits }, None)
                .map_err(|e| Failure::new(e.kind(), e.to_string()))?
        };
        Ok(Pdp {
            snapshot,
            keyring,
            dev: options.dev,
            limits,
            max_request: options
                .max_request_bytes
                .unwrap_or(DEFAULT_MAX_REQUEST_BYTES),
        })
    }

    /// What [`Pdp::load`] or [`Pdp::update`] now holds.
    pub fn loaded(&self, handle: Option<u32>) -> Loaded {
        Loaded {
            handle,
            realm: self.snapshot.realm().to_owned(),
            revision: self.snapshot.revision(),
            signed_by: self.snapshot.signed_by().map(str::to_owned),
        }
    }

    /// Apply a delta (or a newer snapshot) on the held snapshot, with the
    /// trust and limits given at load. On failure the held snapshot stays.
    pub fn update(&mut self, bundle: &[u8]) -> Result<(), Failure> {
        let next = {
            let options = LoadOptions {
                trust: trust(&self.keyring, self.dev),
                limits: self.limits,
            };
            pdp_core::load(bundle, &options, Some(&self.snapshot))
                .map_err(|e| Failure::new(e.kind(), e.to_string()))?
        };
        self.snapshot = next;
        Ok(())
    }

    /// The revision held.
    pub fn revision(&self) -> u64 {
        self.snapshot.revision()
    }

    /// The snapshot held.
    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// Refuse a request over the size limit before reading it.
    pub fn check_size(&self, len: u64) -> Result<(), Failure> {
        if len > self.max_request {
            return Err(Failure::new(
                "request_too_large",
                format!(
                    "request is {len} bytes, over the {}-byte limit",
                    self.max_request
                ),
            ));
        }
        Ok(())
    }

    /// One request (`Request` JSON) to a tagged answer.
    pub fn is_authorized(&self, json: &[u8]) -> String {
        if let Err(f) = self.check_size(json.len() as u64) {
            return f.to_json();
        }
        self.snapshot.is_authorized_json(json).to_json()
    }

    /// One token request (`TokenRequest` JSON, the token inside) verified
    /// at unix time `now`, to a tagged answer.
    pub fn is_authorized_with_token(&self, json: &[u8], now: i64) -> String {
        if let Err(f) = self.check_size(json.len() as u64) {
            return f.to_json();
        }
        let answer: Tagged<_> = match serde_json::from_slice::<TokenRequest>(json) {
            Ok(r) => self.snapshot.is_authorized_with_token(&r, now).into(),
            Err(e) => Tagged::failure("invalid_json", e.to_string()),
        };
        answer.to_json()
    }

    /// A token given apart from the rest of the request (the JS face's
    /// `isAuthorizedWithToken(token, request, now)`): the request JSON is
    /// an object without `token`.
    pub fn is_authorized_with_token_parts(&self, token: &str, json: &[u8], now: i64) -> String {
        let size = (json.len() as u64).saturating_add(token.len() as u64);
        if let Err(f) = self.check_size(size) {
            return f.to_json();
        }
        let mut body = match serde_json::from_slice::<serde_json::Value>(json) {
            Ok(serde_json::Value::Object(m)) => m,
            Ok(_) => {
                return Tagged::<()>::failure("invalid_json", "a request must be a JSON object")
                    .to_json();
            }
            Err(e) => return Tagged::<()>::failure("invalid_json", e.to_string()).to_json(),
        };
        if body.contains_key("token") {
            return Tagged::<()>::failure(
                "invalid_json",
                "the token is given as its own argument, not in the request",
            )
            .to_json();
        }
        body.insert("token".into(), serde_json::Value::String(token.to_owned()));
        let answer: Tagged<_> =
            match serde_json::from_value::<TokenRequest>(serde_json::Value::Object(body)) {
                Ok(r) => self.snapshot.is_authorized_with_token(&r, now).into(),
                Err(e) => Tagged::failure("invalid_json", e.to_string()),
            };
        answer.to_json()
    }

    /// A batch (`BatchRequest` JSON) to a tagged batch answer.
    pub fn batch_is_authorized(&self, json: &[u8]) -> String {
        if let Err(f) = self.check_size(json.len() as u64) {
            return f.to_json();
        }
        let answer: Tagged<_> = match serde_json::from_slice::<BatchRequest>(json) {
            Ok(b) => self.snapshot.batch_is_authorized(&b).into(),
            Err(e) => Tagged::failure("invalid_json", e.to_string()),
        };
        answer.to_json()
    }

    /// One page of a search (the query JSON of `kind`) to a tagged answer,
    /// `{"type":"success","results":[..],"next_token":..,"revision":N}`
    /// or a failure (a bad query, limit or page token): exactly the line
    /// `pdp search <kind>` prints for the same bytes.
    pub fn search(&self, kind: SearchKind, json: &[u8]) -> String {
        if let Err(f) = self.check_size(json.len() as u64) {
            return f.to_json();
        }
        self.snapshot.search_json(kind.name(), json).to_json()
    }

    /// A user's directory record (`user: null` when absent).
    pub fn user(&self, id: &str) -> String {
        if let Err(f) = self.check_size(id.len() as u64) {
            return f.to_json();
        }
        Tagged::Success(UserAnswer {
            user: self.snapshot.user(id).map(|u| u.to_record()),
        })
        .to_json()
    }
}

fn trust(keyring: &Keyring, dev: bool) -> Trust<'_> {
    if keyring.is_empty() && dev {
        Trust::Dev
    } else {
        Trust::Keyring(keyring)
    }
}

/// Render a load or update result as a tagged answer.
pub fn loaded_json(result: Result<Loaded, Failure>) -> String {
    match result {
        Ok(l) => Tagged::Success(l).to_json(),
        Err(f) => f.to_json(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pdp_core::source::{BuildOptions, build};
    use std::collections::BTreeMap;

    fn files() -> BTreeMap<String, Vec<u8>> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
        pdp_core::manifest::member::SOURCE
            .iter()
            .filter_map(|n| Some(((*n).to_owned(), std::fs::read(dir.join(n)).ok()?)))
            .collect()
    }

    fn opts(revision: u64) -> BuildOptions {
        BuildOptions {
            realm: "default".into(),
            revision,
            created_at: 1_764_000_000,
            gzip: true,
        }
    }

    fn signer() -> pdp_core::BundleSigner {
        pdp_core::BundleSigner::from_seed(&[5; 32])
    }

    const ALICE: &str = r#"{"principal":{"type":"User","id":"alice"},"action":{"type":"Action","id":"readDocument"},"resource":{"type":"Document","id":"design-doc"}}"#;

    #[test]
    fn answers_equal_native_and_bad_input_is_a_tagged_failure() {
        let bytes = build(&files(), &opts(1), None).unwrap();
        let pdp = Pdp::load(&bytes, br#"{"dev":true}"#).unwrap();
        let native = pdp_core::load(
            &bytes,
            &LoadOptions {
                trust: Trust::Dev,
                limits: Limits::default(),
            },
            None,
        )
        .unwrap();
        assert_eq!(
            pdp.is_authorized(ALICE.as_bytes()),
            native.is_authorized_json(ALICE.as_bytes()).to_json()
        );
        for bad in [&b"not json"[..], b"[]", b"{}", b"\xff\xfe"] {
            let a: serde_json::Value = serde_json::from_str(&pdp.is_authorized(bad)).unwrap();
            assert_eq!(a["type"], "failure", "{a}");
            let b: serde_json::Value = serde_json::from_str(&pdp.batch_is_authorized(bad)).unwrap();
            assert_eq!(b["type"], "failure", "{b}");
            let t: serde_json::Value =
                serde_json::from_str(&pdp.is_authorized_with_token(bad, 0)).unwrap();
            assert_eq!(t["type"], "failure", "{t}");
        }
        let big = vec![b' '; 2 << 20];
        assert!(pdp.is_authorized(&big).contains("request_too_large"));
        let user: serde_json::Value = serde_json::from_str(&pdp.user("alice")).unwrap();
        assert_eq!(user["user"]["id"], "alice");
        let nobody: serde_json::Value = serde_json::from_str(&pdp.user("nobody")).unwrap();
        assert_eq!(nobody["user"], serde_json::Value::Null);
    }

    #[test]
    fn trust_by_pem_or_jwks_and_refusals() {
        let s = signer();
        let bytes = build(&files(), &opts(1), Some(&s)).unwrap();
        let pem = s.public_pem().unwrap();
        let by_pem = serde_json::json!({ "trustKeys": [pem] }).to_string();
        let p = Pdp::load(&bytes, by_pem.as_bytes()).unwrap();
        assert_eq!(p.loaded(None).signed_by.as_deref(), Some(s.kid()));
        let x = B64.encode(s.verifying_key().as_bytes());
        let jwks = serde_json::json!({"jwks": {"keys": [{"kty": "OKP", "crv": "Ed25519", "x": x, "kid": s.kid()}]}});
        assert!(Pdp::load(&bytes, jwks.to_string().as_bytes()).is_ok());
        let wrong_kid = serde_json::json!({"jwks": {"keys": [{"kty": "OKP", "crv": "Ed25519", "x": x, "kid": "k1"}]}});
        let e = Pdp::load(&bytes, wrong_kid.to_string().as_bytes()).unwrap_err();
        assert_eq!(e.kind, "invalid_options");
        // Keys bound to the realm the engine serves: a bundle of another
        // realm signed with them is refused.
        let ours = serde_json::json!({ "trust_keys": [pem], "realm": "default" }).to_string();
        assert!(Pdp::load(&bytes, ours.as_bytes()).is_ok());
        let theirs = serde_json::json!({ "trust_keys": [pem], "realm": "globex" }).to_string();
        assert_eq!(
            Pdp::load(&bytes, theirs.as_bytes()).unwrap_err().kind,
            "key_not_for_realm"
        );
        let theirs = serde_json::json!({"realm": "globex", "jwks": {"keys": [{"kty": "OKP", "crv": "Ed25519", "x": x}]}});
        assert_eq!(
            Pdp::load(&bytes, theirs.to_string().as_bytes())
                .unwrap_err()
                .kind,
            "key_not_for_realm"
        );
        // Nothing trusted and not dev: refused before the bundle is read.
        assert_eq!(Pdp::load(&bytes, b"").unwrap_err().kind, "invalid_options");
        // Unsigned bundle with a keyring: refused even with dev.
        let unsigned = build(&files(), &opts(1), None).unwrap();
        let both = serde_json::json!({ "dev": true, "trust_keys": [pem] }).to_string();
        assert_eq!(
            Pdp::load(&unsigned, both.as_bytes()).unwrap_err().kind,
            "unsigned"
        );
        assert_eq!(
            Pdp::load(b"garbage", br#"{"dev":true}"#).unwrap_err().kind,
            "not_an_archive"
        );
        assert_eq!(
            Pdp::load(&bytes, br#"{"dev":true,"bogus":1}"#)
                .unwrap_err()
                .kind,
            "invalid_options"
        );
    }

    #[test]
    fn updates_refuse_rollback_and_keep_the_held_snapshot() {
        let s = signer();
        let pem = s.public_pem().unwrap();
        let o = serde_json::json!({ "trust_keys": [pem] }).to_string();
        let mut p = Pdp::load(&build(&files(), &opts(2), Some(&s)).unwrap(), o.as_bytes()).unwrap();
        let old = build(&files(), &opts(1), Some(&s)).unwrap();
        assert_eq!(p.update(&old).unwrap_err().kind, "rollback");
        assert_eq!(p.revision(), 2);
        p.update(&build(&files(), &opts(3), Some(&s)).unwrap())
            .unwrap();
        assert_eq!(p.revision(), 3);
        assert!(
            p.is_authorized(ALICE.as_bytes())
                .contains(r#""revision":3"#)
        );
    }

    #[test]
    fn searches_equal_native_page_by_page_and_bad_queries_are_failures() {
        let bytes = build(&files(), &opts(1), None).unwrap();
        let pdp = Pdp::load(&bytes, br#"{"dev":true,"max_request_bytes":4096}"#).unwrap();
        let native = pdp_core::load(
            &bytes,
            &LoadOptions {
                trust: Trust::Dev,
                limits: Limits::default(),
            },
            None,
        )
        .unwrap();
        let queries = [
            (
                SearchKind::Resource,
                serde_json::json!({"principal": {"type": "User", "id": "carol"},
                    "action": {"type": "Action", "id": "readDocument"},
                    "resource_type": "Document", "page": {"limit": 1}}),
            ),
            (
                SearchKind::Subject,
                serde_json::json!({"subject_type": "User",
                    "action": {"type": "Action", "id": "readDocument"},
                    "resource": {"type": "Document", "id": "design-doc"}, "page": {"limit": 1}}),
            ),
            (
                SearchKind::Action,
                serde_json::json!({"principal": {"type": "User", "id": "alice"},
                    "resource": {"type": "Document", "id": "design-doc"},
                    "context": {"mfa": true}, "page": {"limit": 1}}),
            ),
        ];
        for (kind, mut query) in queries {
            let mut found = Vec::new();
            for _ in 0..10 {
                let line = query.to_string();
                let got = pdp.search(kind, line.as_bytes());
                assert_eq!(
                    got,
                    native.search_json(kind.name(), line.as_bytes()).to_json()
                );
                let page: serde_json::Value = serde_json::from_str(&got).unwrap();
                assert_eq!(page["type"], "success", "{got}");
                assert_eq!(page["results"].as_array().unwrap().len(), 1, "{got}");
                found.push(page["results"][0]["id"].as_str().unwrap().to_owned());
                match page["next_token"].as_str() {
                    Some(token) => query["page"]["token"] = token.into(),
                    None => break,
                }
            }
            assert!(
                found.len() >= 3,
                "{kind:?}: {found:?} (limit 1 gives a page each)"
            );
        }
        let resource = r#"{"principal":{"type":"User","id":"alice"},"action":{"type":"Action","id":"readDocument"},"resource_type":"Document""#;
        for (kind, bad, want) in [
            (SearchKind::Resource, "not json".to_owned(), "invalid_json"),
            (SearchKind::Resource, "{}".to_owned(), "invalid_json"),
            (
                SearchKind::Resource,
                format!("{resource},\"extra\":1}}"),
                "invalid_json",
            ),
            (SearchKind::Subject, format!("{resource}}}"), "invalid_json"),
            (
                SearchKind::Resource,
                format!("{resource},\"page\":{{\"limit\":0}}}}"),
                "invalid_request",
            ),
            (
                SearchKind::Resource,
                format!("{resource},\"page\":{{\"token\":\"x\"}}}}"),
                "invalid_cursor",
            ),
            (SearchKind::Action, " ".repeat(4097), "request_too_large"),
        ] {
            let got = pdp.search(kind, bad.as_bytes());
            let v: serde_json::Value = serde_json::from_str(&got).unwrap();
            assert_eq!(v["type"], "failure", "{bad}: {got}");
            assert_eq!(v["errors"][0]["kind"], want, "{bad}: {got}");
            if want != "request_too_large" {
                assert_eq!(
                    got,
                    native.search_json(kind.name(), bad.as_bytes()).to_json()
                );
            }
        }
    }

    #[test]
    fn token_parts_refuse_a_token_inside_the_request() {
        let bytes = build(&files(), &opts(1), None).unwrap();
        let pdp = Pdp::load(&bytes, br#"{"dev":true}"#).unwrap();
        let body = r#"{"action":{"type":"Action","id":"readDocument"},"resource":{"type":"Document","id":"design-doc"}}"#;
        let a: serde_json::Value =
            serde_json::from_str(&pdp.is_authorized_with_token_parts("x.y.z", body.as_bytes(), 0))
                .unwrap();
        assert_eq!(a["type"], "success");
        assert_eq!(a["decision"], "Deny");
        let with = r#"{"token":"a","action":{"type":"Action","id":"readDocument"},"resource":{"type":"Document","id":"design-doc"}}"#;
        assert!(
            pdp.is_authorized_with_token_parts("x", with.as_bytes(), 0)
                .contains("failure")
        );
    }
}
