//! Bundle signatures: a detached compact JWS (EdDSA, RFC 7515 appendix F)
//! over the exact bytes of `manifest.json`, and the keyring that verifies it.
//!
//! Key ids are RFC 7638 JWK thumbprints of the Ed25519 public key, so a
//! public key alone is enough to know its `kid`.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Why a signature or key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The signature (`manifest.sig`, or the signature line of `HEAD`) is
    /// not a detached compact JWS with a valid header.
    #[error("signature is malformed: {0}")]
    Malformed(String),
    /// The header names an algorithm other than EdDSA.
    #[error("signature uses algorithm {0:?}; only EdDSA is accepted")]
    Algorithm(String),
    /// No key with this `kid` in the keyring.
    #[error("signed by unknown key id {0:?}")]
    UnknownKid(String),
    /// The signature does not verify with the named key.
    #[error("signature does not verify with key {0:?}")]
    Invalid(String),
    /// A PEM key could not be read.
    #[error("bad key: {0}")]
    Key(String),
    /// The key is trusted, but not for the realm the bundle names.
    #[error("key {kid:?} does not sign bundles of realm {realm:?}")]
    NotForRealm {
        /// The signing key.
        kid: String,
        /// The realm the manifest names.
        realm: String,
    },
}

#[derive(Serialize, Deserialize)]
struct Header {
    alg: String,
    kid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    typ: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    crit: Option<Vec<String>>,
}

/// The `typ` of a bundle manifest's signature.
const TYP: &str = "gatehouse-manifest+jws";

/// The `typ` of a signed `HEAD` record's signature: a signature made for
/// one kind of document never verifies as the other.
pub(crate) const HEAD_TYP: &str = "gatehouse-head+jws";

/// The RFC 7638 thumbprint of an Ed25519 public key: the key id used for it.
pub fn key_id(key: &VerifyingKey) -> String {
    let x = B64.encode(key.as_bytes());
    // Members in lexicographic order, no whitespace (RFC 7638 section 3).
    let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
    B64.encode(Sha256::digest(canonical.as_bytes()))
}

/// A private signing key for bundles, with its key id.
#[derive(Clone)]
pub struct BundleSigner {
    key: SigningKey,
    kid: String,
}

impl std::fmt::Debug for BundleSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("BundleSigner")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl BundleSigner {
    /// A signer from 32 secret bytes (the caller supplies the randomness;
    /// the core has no entropy source of its own).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        let key = SigningKey::from_bytes(seed);
        let kid = key_id(&key.verifying_key());
        BundleSigner { key, kid }
    }

    /// A signer from a PKCS#8 PEM private key (`pdp keygen` writes these).
    pub fn from_pem(pem: &str) -> Result<Self, SignatureError> {
        let key =
            SigningKey::from_pkcs8_pem(pem).map_err(|e| SignatureError::Key(e.to_string()))?;
        let kid = key_id(&key.verifying_key());
        Ok(BundleSigner { key, kid })
    }

    /// The private key as PKCS#8 PEM.
    pub fn to_pem(&self) -> Result<String, SignatureError> {
        self.key
            .to_pkcs8_pem(Default::default())
            .map(|z| z.to_string())
            .map_err(|e| SignatureError::Key(e.to_string()))
    }

    /// The public key as SPKI PEM, for `--trust-key`.
    pub fn public_pem(&self) -> Result<String, SignatureError> {
        self.key
            .verifying_key()
            .to_public_key_pem(Default::default())
            .map_err(|e| SignatureError::Key(e.to_string()))
    }

    /// This key's id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public half.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// A detached compact JWS over `payload` (a bundle manifest):
    /// `header..signature`.
    pub fn sign(&self, payload: &[u8]) -> String {
        self.sign_typed(payload, TYP)
    }

    /// A detached compact JWS over `payload` whose header says `typ`.
    pub(crate) fn sign_typed(&self, payload: &[u8], typ: &str) -> String {
        let header = Header {
            alg: "EdDSA".into(),
            kid: self.kid.clone(),
            typ: Some(typ.into()),
            crit: None,
        };
        // Serializing a struct of strings cannot fail.
        let header_json = serde_json::to_vec(&header).unwrap_or_default();
        let h = B64.encode(header_json);
        let input = signing_input(&h, payload);
        let sig: Signature = self.key.sign(input.as_bytes());
        format!("{h}..{}", B64.encode(sig.to_bytes()))
    }
}

fn signing_input(header_b64: &str, payload: &[u8]) -> String {
    let mut s = String::with_capacity(header_b64.len() + 1 + payload.len() * 4 / 3 + 4);
    s.push_str(header_b64);
    s.push('.');
    s.push_str(&B64.encode(payload));
    s
}

/// Public keys trusted to sign bundles, by key id. Several at once, so keys
/// can be rotated without a gap.
#[derive(Debug, Clone, Default)]
pub struct Keyring {
    keys: BTreeMap<String, VerifyingKey>,
    /// The realms each bound key may sign; a key absent here signs any.
    realms: BTreeMap<String, std::collections::BTreeSet<String>>,
}

impl Keyring {
    /// An empty keyring (trusts nothing).
    pub fn new() -> Self {
        Self::default()
    }

    /// Trust a key; returns its key id.
    pub fn add(&mut self, key: VerifyingKey) -> String {
        let kid = key_id(&key);
        self.keys.insert(kid.clone(), key);
        kid
    }

    /// Trust an SPKI PEM public key (or the public half of a PKCS#8 private
    /// key); returns its key id.
    pub fn add_pem(&mut self, pem: &str) -> Result<String, SignatureError> {
        // Blank lines around the armour (files written by `echo`, JSON
        // tools) are not part of the key.
        let pem = pem.trim();
        let key = match VerifyingKey::from_public_key_pem(pem) {
            Ok(k) => k,
            Err(_) => SigningKey::from_pkcs8_pem(pem)
                .map(|k| k.verifying_key())
                .map_err(|e| SignatureError::Key(e.to_string()))?,
        };
        Ok(self.add(key))
    }

    /// Trust an SPKI PEM public key for `realm` only (call again for more
    /// realms); returns its key id. A key added both ways is bound.
    pub fn add_pem_for(&mut self, pem: &str, realm: &str) -> Result<String, SignatureError> {
        let kid = self.add_pem(pem)?;
        self.bind(&kid, realm);
        Ok(kid)
    }

    /// Trust a key for `realm` only, as [`Keyring::add_pem_for`].
    pub fn add_for(&mut self, key: VerifyingKey, realm: &str) -> String {
        let kid = self.add(key);
        self.bind(&kid, realm);
        kid
    }

    fn bind(&mut self, kid: &str, realm: &str) {
        self.realms
            .entry(kid.to_owned())
            .or_default()
            .insert(realm.to_owned());
    }

    /// Whether the key `kid` may sign bundles of `realm`.
    pub fn may_sign(&self, kid: &str, realm: &str) -> Result<(), SignatureError> {
        match self.realms.get(kid) {
            Some(realms) if !realms.contains(realm) => Err(SignatureError::NotForRealm {
                kid: kid.to_owned(),
                realm: realm.to_owned(),
            }),
            _ => Ok(()),
        }
    }

    /// Whether the keyring trusts no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Key ids trusted, sorted.
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    /// Verify a detached JWS over `payload` (a bundle manifest); returns
    /// the signing key id. A signature made for another kind of document
    /// (a `HEAD` record) is refused.
    pub fn verify(&self, payload: &[u8], jws: &str) -> Result<String, SignatureError> {
        self.verify_typed(payload, jws, TYP)
    }

    /// Verify a detached JWS over `payload` whose header must say `typ`
    /// (a manifest's may also say nothing: signatures made before `typ`
    /// was written).
    pub(crate) fn verify_typed(
        &self,
        payload: &[u8],
        jws: &str,
        typ: &str,
    ) -> Result<String, SignatureError> {
        let jws = jws.trim();
        let mut parts = jws.split('.');
        let (Some(h), Some(body), Some(sig), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(SignatureError::Malformed(
                "expected header..signature".into(),
            ));
        };
        if !body.is_empty() && body != B64.encode(payload) {
            return Err(SignatureError::Malformed(
                "embedded payload differs from manifest.json".into(),
            ));
        }
        let header_bytes = B64
            .decode(h)
            .map_err(|e| SignatureError::Malformed(format!("header: {e}")))?;
        let header: Header = serde_json::from_slice(&header_bytes)
            .map_err(|e| SignatureError::Malformed(format!("header: {e}")))?;
        if header.alg != "EdDSA" {
            return Err(SignatureError::Algorithm(header.alg));
        }
        if header.crit.is_some() {
            return Err(SignatureError::Malformed("unsupported crit header".into()));
        }
        match header.typ.as_deref() {
            Some(t) if t == typ => {}
            None if typ == TYP => {}
            other => {
                return Err(SignatureError::Malformed(format!(
                    "signature typ {other:?} is not {typ:?}"
                )));
            }
        }
        let key = self
            .keys
            .get(&header.kid)
            .ok_or_else(|| SignatureError::UnknownKid(header.kid.clone()))?;
        let sig_bytes = B64
            .decode(sig)
            .map_err(|e| SignatureError::Malformed(format!("signature: {e}")))?;
        let sig = Signature::from_slice(&sig_bytes)
            .map_err(|_| SignatureError::Malformed("signature is not 64 bytes".into()))?;
        let input = signing_input(h, payload);
        key.verify_strict(input.as_bytes(), &sig)
            .map_err(|_| SignatureError::Invalid(header.kid.clone()))?;
        Ok(header.kid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bound_key_signs_only_its_realms() {
        let a = BundleSigner::from_seed(&[7; 32]);
        let mut ring = Keyring::new();
        let kid = ring.add_pem_for(&a.public_pem().unwrap(), "acme").unwrap();
        assert!(ring.may_sign(&kid, "acme").is_ok());
        assert_eq!(
            ring.may_sign(&kid, "globex"),
            Err(SignatureError::NotForRealm {
                kid: kid.clone(),
                realm: "globex".into()
            })
        );
        ring.add_pem_for(&a.public_pem().unwrap(), "globex")
            .unwrap();
        assert!(ring.may_sign(&kid, "globex").is_ok());
        // Added without a realm: any (the control plane's own ring, the CLI).
        let mut any = Keyring::new();
        let kid = any.add(a.verifying_key());
        assert!(any.may_sign(&kid, "whatever").is_ok());
    }

    #[test]
    fn sign_verify_round_trip_and_refusals() {
        let a = BundleSigner::from_seed(&[7; 32]);
        let b = BundleSigner::from_seed(&[9; 32]);
        let mut ring = Keyring::new();
        assert_eq!(ring.add(a.verifying_key()), a.kid());
        let jws = a.sign(b"{\"x\":1}");
        assert_eq!(ring.verify(b"{\"x\":1}", &jws).unwrap(), a.kid());
        assert!(matches!(
            ring.verify(b"{\"x\":2}", &jws),
            Err(SignatureError::Invalid(_))
        ));
        let other = b.sign(b"{\"x\":1}");
        assert!(matches!(
            ring.verify(b"{\"x\":1}", &other),
            Err(SignatureError::UnknownKid(_))
        ));
        assert!(matches!(
            ring.verify(b"{}", "garbage"),
            Err(SignatureError::Malformed(_))
        ));
    }

    #[test]
    fn pem_round_trip_keeps_the_key_id() {
        let a = BundleSigner::from_seed(&[3; 32]);
        let again = BundleSigner::from_pem(&a.to_pem().unwrap()).unwrap();
        assert_eq!(again.kid(), a.kid());
        let mut ring = Keyring::new();
        assert_eq!(ring.add_pem(&a.public_pem().unwrap()).unwrap(), a.kid());
        assert!(ring.add_pem("not a key").is_err());
        let padded = format!("\n{}\n\n", a.public_pem().unwrap());
        assert_eq!(ring.add_pem(&padded).unwrap(), a.kid());
    }

    #[test]
    fn a_header_claiming_another_algorithm_is_refused() {
        let a = BundleSigner::from_seed(&[1; 32]);
        let mut ring = Keyring::new();
        ring.add(a.verifying_key());
        let h = B64.encode(format!(r#"{{"alg":"none","kid":"{}"}}"#, a.kid()));
        assert!(matches!(
            ring.verify(b"{}", &format!("{h}..")),
            Err(SignatureError::Algorithm(_))
        ));
    }
}
