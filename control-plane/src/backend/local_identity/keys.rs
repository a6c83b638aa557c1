//! Per-realm token signing keys: EdDSA (Ed25519, the default) or ES256
//! (P-256), their public JWKs with RFC 7638 thumbprints as `kid`, and
//! rotation. The newest key signs; the one before it stays in the JWKS
//! ("retiring") so tokens it signed keep verifying until they expire;
//! older ones are retired and leave the JWKS.

use crate::domain::error::{Error, Result};
use crate::ports::identity::{Alg, KeyInfo};
use crate::ports::repository::{Change, StoredKey, Tx};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair,
};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// A private signing key as stored (the database is the secret store of
/// the embedded backend; keep its file private).
#[derive(Clone, Serialize, Deserialize)]
pub struct SigningKey {
    /// Algorithm.
    pub alg: Alg,
    /// RFC 7638 thumbprint of the public JWK.
    pub kid: String,
    /// PKCS#8 DER, base64.
    pkcs8: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

fn crypto(e: impl std::fmt::Display) -> Error {
    Error::Internal(format!("key generation: {e}"))
}

impl SigningKey {
    /// A fresh key.
    pub fn generate(alg: Alg) -> Result<(SigningKey, Value)> {
        let rng = SystemRandom::new();
        let der = match alg {
            Alg::EdDSA => Ed25519KeyPair::generate_pkcs8(&rng)
                .map_err(crypto)?
                .as_ref()
                .to_vec(),
            Alg::ES256 => EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                .map_err(crypto)?
                .as_ref()
                .to_vec(),
        };
        let mut key = SigningKey {
            alg,
            kid: String::new(),
            pkcs8: STANDARD.encode(&der),
        };
        let jwk = key.public_jwk_without_kid()?;
        key.kid = thumbprint(&jwk);
        let mut jwk = jwk;
        jwk["kid"] = json!(key.kid);
        jwk["use"] = json!("sig");
        jwk["alg"] = json!(match alg {
            Alg::EdDSA => "EdDSA",
            Alg::ES256 => "ES256",
        });
        Ok((key, jwk))
    }

    fn der(&self) -> Result<Vec<u8>> {
        STANDARD
            .decode(&self.pkcs8)
            .map_err(|e| Error::Internal(format!("stored key {}: {e}", self.kid)))
    }

    /// The public JWK members that the thumbprint covers.
    fn public_jwk_without_kid(&self) -> Result<Value> {
        let der = self.der()?;
        Ok(match self.alg {
            Alg::EdDSA => {
                let kp = Ed25519KeyPair::from_pkcs8(&der).map_err(crypto)?;
                json!({"crv": "Ed25519", "kty": "OKP", "x": URL_SAFE_NO_PAD.encode(kp.public_key().as_ref())})
            }
            Alg::ES256 => {
                let kp = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der)
                    .map_err(crypto)?;
                let point = kp.public_key().as_ref();
                if point.len() != 65 || point[0] != 4 {
                    return Err(Error::Internal("unexpected P-256 public key form".into()));
                }
                json!({
                    "crv": "P-256", "kty": "EC",
                    "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
                    "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
                })
            }
        })
    }

    /// Sign `claims` as a compact JWS with this key's `kid`.
    pub fn sign(&self, claims: &Value) -> Result<String> {
        let der = self.der()?;
        let (alg, key) = match self.alg {
            Alg::EdDSA => (
                jsonwebtoken::Algorithm::EdDSA,
                jsonwebtoken::EncodingKey::from_ed_der(&der),
            ),
            Alg::ES256 => (
                jsonwebtoken::Algorithm::ES256,
                jsonwebtoken::EncodingKey::from_ec_der(&der),
            ),
        };
        let mut header = jsonwebtoken::Header::new(alg);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &key)
            .map_err(|e| Error::Internal(format!("signing a token: {e}")))
    }
}

/// RFC 7638: sha256 over the required members in lexicographic order, no
/// whitespace (serde_json's maps are ordered, so `to_string` is canonical).
fn thumbprint(jwk: &Value) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(jwk.to_string().as_bytes()))
}

/// Add a new signing key: it signs from now on; the previous one stays in
/// the JWKS; any older one is retired. The JWKS travels in the bundle
/// manifest, so the realm is marked changed.
pub(super) fn rotate_in(tx: &mut dyn Tx, realm: &str, alg: Alg, now: i64) -> Result<KeyInfo> {
    let (key, jwk) = SigningKey::generate(alg)?;
    let newest: Vec<String> = tx
        .signing_keys(realm)?
        .into_iter()
        .filter(|k| !k.retired)
        .take(1)
        .map(|k| k.kid)
        .collect();
    tx.retire_signing_keys(realm, &newest)?;
    let private = serde_json::to_string(&key).map_err(|e| Error::Internal(e.to_string()))?;
    tx.insert_signing_key(
        realm,
        &StoredKey {
            kid: key.kid.clone(),
            private,
            public_jwk: jwk,
            retired: false,
            created_at: now,
        },
    )?;
    tx.record_change(realm, Change::Content, now)?;
    Ok(KeyInfo {
        kid: key.kid,
        alg,
        status: "active".into(),
        created_at: now,
    })
}

/// The key that signs the realm's tokens now.
pub(super) fn active_in(tx: &mut dyn Tx, realm: &str) -> Result<SigningKey> {
    let stored = tx
        .signing_keys(realm)?
        .into_iter()
        .find(|k| !k.retired)
        .ok_or_else(|| {
            Error::Conflict(format!("realm {realm:?} has no signing key; rotate one in"))
        })?;
    serde_json::from_str(&stored.private).map_err(|e| Error::Internal(format!("stored key: {e}")))
}

/// The realm's signing keys as the API lists them, newest first.
pub(super) fn list_in(tx: &mut dyn Tx, realm: &str) -> Result<Vec<KeyInfo>> {
    tx.live_realm(realm)?;
    let mut out = Vec::new();
    for k in tx.signing_keys(realm)? {
        let key: SigningKey = serde_json::from_str(&k.private)
            .map_err(|e| Error::Internal(format!("stored key: {e}")))?;
        let status = if k.retired {
            "retired"
        } else if out.is_empty() {
            "active"
        } else {
            "retiring"
        };
        out.push(KeyInfo {
            kid: k.kid,
            alg: key.alg,
            status: status.into(),
            created_at: k.created_at,
        });
    }
    Ok(out)
}

/// The public JWKs of every key that is not retired, oldest first.
pub(super) fn jwks_in(tx: &mut dyn Tx, realm: &str) -> Result<Vec<Value>> {
    let mut keys: Vec<StoredKey> = tx
        .signing_keys(realm)?
        .into_iter()
        .filter(|k| !k.retired)
        .collect();
    keys.reverse();
    Ok(keys.into_iter().map(|k| k.public_jwk).collect())
}
