//! Per-realm token signing keys: EdDSA (Ed25519, the default) or ES256
//! (P-256), their public JWKs with RFC 7638 thumbprints as `kid`, and
//! rotation. The newest key signs; the one before it stays in the JWKS
//! ("retiring") so tokens it signed keep verifying until they expire;
//! older ones are retired and leave the JWKS.

use crate::db::{Db, record_change};
use crate::error::{Error, Result};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair,
};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rusqlite::{Transaction, params};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// A signing algorithm for tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum Alg {
    /// Ed25519.
    EdDSA,
    /// ECDSA P-256 with SHA-256.
    ES256,
}

impl std::str::FromStr for Alg {
    type Err = Error;
    fn from_str(s: &str) -> Result<Alg> {
        match s {
            "EdDSA" => Ok(Alg::EdDSA),
            "ES256" => Ok(Alg::ES256),
            other => Err(Error::BadRequest(format!(
                "signing algorithm {other:?} is not EdDSA or ES256"
            ))),
        }
    }
}

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

/// A key as the API lists it (never the private part).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct KeyInfo {
    /// Key id.
    pub kid: String,
    /// Algorithm.
    pub alg: Alg,
    /// `active` (signs), `retiring` (in the JWKS), `retired`.
    pub status: String,
    /// Creation time, unix seconds.
    pub created_at: i64,
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
/// the JWKS; any older one is retired.
pub(crate) fn rotate_in(tx: &Transaction<'_>, realm: &str, alg: Alg, now: i64) -> Result<KeyInfo> {
    let (key, jwk) = SigningKey::generate(alg)?;
    tx.execute(
        "UPDATE signing_keys SET retired = 1 WHERE realm = ?1 AND retired = 0 AND kid NOT IN (
             SELECT kid FROM signing_keys WHERE realm = ?1 AND retired = 0
             ORDER BY created_at DESC, rowid DESC LIMIT 1)",
        [realm],
    )?;
    let stored = serde_json::to_string(&key).map_err(|e| Error::Internal(e.to_string()))?;
    tx.execute(
        "INSERT INTO signing_keys (realm, kid, key, public_jwk, retired, created_at)
         VALUES (?1, ?2, ?3, ?4, 0, ?5)",
        params![realm, key.kid, stored, jwk.to_string(), now],
    )?;
    // The JWKS travels in the bundle manifest: publish it.
    record_change(tx, realm, None, now)?;
    Ok(KeyInfo {
        kid: key.kid,
        alg,
        status: "active".into(),
        created_at: now,
    })
}

/// The key that signs the realm's tokens now.
pub(crate) fn active_in(tx: &Transaction<'_>, realm: &str) -> Result<SigningKey> {
    let stored: String = tx
        .query_row(
            "SELECT key FROM signing_keys WHERE realm = ?1 AND retired = 0
             ORDER BY created_at DESC, rowid DESC LIMIT 1",
            [realm],
            |r| r.get(0),
        )
        .map_err(|e| match e {
            rusqlite::Error::QueryReturnedNoRows => {
                Error::Conflict(format!("realm {realm:?} has no signing key; rotate one in"))
            }
            e => e.into(),
        })?;
    serde_json::from_str(&stored).map_err(|e| Error::Internal(format!("stored key: {e}")))
}

impl Db {
    /// Rotate the realm's token signing key.
    pub fn rotate_signing_key(&self, realm: &str, alg: Alg, now: i64) -> Result<KeyInfo> {
        self.write(|tx| {
            crate::db::live_realm(tx, realm)?;
            rotate_in(tx, realm, alg, now)
        })
    }

    /// The realm's signing keys, newest first.
    pub fn signing_keys(&self, realm: &str) -> Result<Vec<KeyInfo>> {
        self.read(|tx| {
            crate::db::live_realm(tx, realm)?;
            let mut stmt = tx.prepare(
                "SELECT kid, key, retired, created_at FROM signing_keys WHERE realm = ?1
                 ORDER BY created_at DESC, rowid DESC",
            )?;
            let rows = stmt.query_map([realm], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, bool>(2)?,
                    r.get::<_, i64>(3)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (kid, key, retired, created_at) = row?;
                let key: SigningKey = serde_json::from_str(&key)
                    .map_err(|e| Error::Internal(format!("stored key: {e}")))?;
                let status = if retired {
                    "retired"
                } else if out.is_empty() {
                    "active"
                } else {
                    "retiring"
                };
                out.push(KeyInfo {
                    kid,
                    alg: key.alg,
                    status: status.into(),
                    created_at,
                });
            }
            Ok(out)
        })
    }

    /// The realm's JWKS: every key that is not retired.
    pub fn jwks(&self, realm: &str) -> Result<Value> {
        self.read(|tx| {
            Ok(crate::changes::identity_settings(tx, realm)?
                .map_or_else(|| json!({"keys": []}), |s| s.jwks))
        })
    }
}
