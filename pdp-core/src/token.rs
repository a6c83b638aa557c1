//! Token verification for `is_authorized_with_token`: Cognito-shaped JWTs
//! (ID and access tokens) checked against the realm's identity settings with
//! a caller-supplied clock.
//!
//! Order of checks: shape, algorithm allowlist (never `none`, never HMAC —
//! a public key must not become a shared secret), `kid` in the realm's JWKS,
//! signature, `iss`, `token_use`, audience (`aud` for ID tokens, `client_id`
//! for access tokens), `exp`/`nbf`/`iat` with a small leeway. The user-record
//! checks (exists, Active, `iat > tokens_valid_after`) follow in the
//! snapshot, because they need the directory.

use crate::manifest::IdentitySettings;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::fmt;

/// Algorithms accepted for tokens.
pub const ALLOWED_ALGORITHMS: [&str; 7] = [
    "RS256", "RS384", "RS512", "ES256", "ES384", "PS256", "EdDSA",
];

/// Default clock-skew allowance, seconds.
pub const DEFAULT_LEEWAY: i64 = 30;

/// Why a token was refused. Rendered as the `token:<why>` deny reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenFailure {
    /// Not three base64url JSON segments.
    Malformed,
    /// `alg` not in the allowlist (`none`, `HS256`, ...).
    AlgorithmNotAllowed,
    /// No `kid` in the header.
    MissingKid,
    /// `kid` not in the realm's JWKS.
    UnknownKid,
    /// The key's type or declared algorithm does not fit the header's `alg`.
    KeyMismatch,
    /// The signature does not verify.
    BadSignature,
    /// `iss` is not this realm's issuer.
    WrongIssuer,
    /// `aud` / `client_id` not accepted.
    WrongAudience,
    /// `token_use` absent or not accepted.
    WrongTokenUse,
    /// `exp` in the past (beyond leeway).
    Expired,
    /// `nbf` or `iat` in the future (beyond leeway).
    NotYetValid,
    /// A required claim (`sub`, `exp`, `iat`) is missing or mistyped.
    MissingClaim,
    /// `sub` is not in the directory.
    UnknownUser,
    /// Issued in or before the second of the user's `tokens_valid_after` (signed out, suspended...).
    Revoked,
    /// The realm takes no tokens (no identity settings in the bundle).
    NoIdentity,
}

impl TokenFailure {
    /// The snake_case name used in reasons.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenFailure::Malformed => "malformed",
            TokenFailure::AlgorithmNotAllowed => "algorithm_not_allowed",
            TokenFailure::MissingKid => "missing_kid",
            TokenFailure::UnknownKid => "unknown_kid",
            TokenFailure::KeyMismatch => "key_mismatch",
            TokenFailure::BadSignature => "bad_signature",
            TokenFailure::WrongIssuer => "wrong_issuer",
            TokenFailure::WrongAudience => "wrong_audience",
            TokenFailure::WrongTokenUse => "wrong_token_use",
            TokenFailure::Expired => "expired",
            TokenFailure::NotYetValid => "not_yet_valid",
            TokenFailure::MissingClaim => "missing_claim",
            TokenFailure::UnknownUser => "unknown_user",
            TokenFailure::Revoked => "revoked",
            TokenFailure::NoIdentity => "no_identity",
        }
    }
}

impl fmt::Display for TokenFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a token is an ID token or an access token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenUse {
    /// `token_use: id`: claims describe the user.
    Id,
    /// `token_use: access`: claims describe the grant.
    Access,
}

/// Whether a user's `tokens_valid_after` revokes a token issued at `iat`:
/// it does unless the token is strictly newer. Both are whole seconds (as
/// every issuer's `iat` is, Cognito's included), so a token minted in the
/// very second of a suspension or sign-out is refused with the older ones;
/// a login in that second has to be made again a second later.
pub fn revoked(iat: i64, tokens_valid_after: i64) -> bool {
    iat <= tokens_valid_after
}

/// A token that passed every check that needs no directory.
#[derive(Debug, Clone)]
pub struct VerifiedToken {
    /// `sub`.
    pub sub: String,
    /// `iat`.
    pub iat: i64,
    /// `exp`.
    pub exp: i64,
    /// ID or access.
    pub token_use: TokenUse,
    /// Every claim.
    pub claims: Map<String, Value>,
}

impl VerifiedToken {
    /// `cognito:groups` (or `groups`), as strings.
    pub fn groups(&self) -> Vec<String> {
        let v = self
            .claims
            .get("cognito:groups")
            .or_else(|| self.claims.get("groups"));
        match v {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|i| i.as_str().map(str::to_owned))
                .collect(),
            Some(Value::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
            _ => Vec::new(),
        }
    }

    /// Whether the token says the user authenticated with a second factor.
    pub fn mfa(&self) -> bool {
        match self.claims.get("amr") {
            Some(Value::Array(items)) => items
                .iter()
                .any(|i| matches!(i.as_str(), Some("mfa" | "otp" | "hwk" | "swk" | "totp"))),
            _ => false,
        }
    }
}

struct Key {
    key: DecodingKey,
    alg: Option<Algorithm>,
}

/// The realm's token verifier, built once per snapshot.
pub(crate) struct Verifier {
    epoch: u64,
    issuer: String,
    audiences: Vec<String>,
    token_use: Vec<String>,
    leeway: i64,
    keys: HashMap<String, Key>,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("issuer", &self.issuer)
            .field("kids", &self.keys.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Verifier {
    pub fn new(settings: &IdentitySettings) -> Result<Verifier, String> {
        let set: JwkSet =
            serde_json::from_value(settings.jwks.clone()).map_err(|e| format!("jwks: {e}"))?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let kid = jwk
                .common
                .key_id
                .clone()
                .ok_or("jwks: every key needs a kid")?;
            let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("jwks key {kid}: {e}"))?;
            let alg = match jwk.common.key_algorithm {
                Some(a) => Some(
                    a.to_string()
                        .parse::<Algorithm>()
                        .map_err(|_| format!("jwks key {kid}: unsupported alg {a}"))?,
                ),
                None => None,
            };
            if let Some(a) = alg
                && matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
            {
                return Err(format!("jwks key {kid}: symmetric keys are not accepted"));
            }
            keys.insert(kid, Key { key, alg });
        }
        let leeway = settings
            .leeway_seconds
            .map_or(DEFAULT_LEEWAY, |l| i64::try_from(l.min(300)).unwrap_or(300));
        for u in &settings.token_use {
            if u != "id" && u != "access" {
                return Err(format!("token_use {u:?} is not id or access"));
            }
        }
        // A process-wide sequence number (never reused, unlike an address).
        static NEXT_EPOCH: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        Ok(Verifier {
            epoch: NEXT_EPOCH.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            issuer: settings.issuer.clone(),
            audiences: settings.audiences.clone(),
            token_use: settings.token_use.clone(),
            leeway,
            keys,
        })
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Check everything about `token` that needs no directory, at unix time `now`.
    pub fn verify(&self, token: &str, now: i64) -> Result<VerifiedToken, TokenFailure> {
        let token = token.trim();
        let token = token.strip_prefix("Bearer ").unwrap_or(token);
        let header_b64 = token.split('.').next().ok_or(TokenFailure::Malformed)?;
        if token.split('.').count() != 3 {
            return Err(TokenFailure::Malformed);
        }
        let header: Map<String, Value> = B64
            .decode(header_b64)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(TokenFailure::Malformed)?;
        let alg_name = header
            .get("alg")
            .and_then(Value::as_str)
            .ok_or(TokenFailure::Malformed)?;
        if !ALLOWED_ALGORITHMS.contains(&alg_name) {
            return Err(TokenFailure::AlgorithmNotAllowed);
        }
        let alg: Algorithm = alg_name
            .parse()
            .map_err(|_| TokenFailure::AlgorithmNotAllowed)?;
        let kid = header
            .get("kid")
            .and_then(Value::as_str)
            .ok_or(TokenFailure::MissingKid)?;
        let key = self.keys.get(kid).ok_or(TokenFailure::UnknownKid)?;
        if key.alg.is_some_and(|a| a != alg) || key.key.family() != alg.family() {
            return Err(TokenFailure::KeyMismatch);
        }
        // Signature only: the clock and the audience are checked below with
        // the caller's `now` (the core reads no clock).
        let mut v = Validation::new(alg);
        v.validate_exp = false;
        v.validate_nbf = false;
        v.validate_aud = false;
        v.required_spec_claims.clear();
        let claims = jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &v)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature => TokenFailure::BadSignature,
                jsonwebtoken::errors::ErrorKind::InvalidAlgorithm => TokenFailure::KeyMismatch,
                _ => TokenFailure::Malformed,
            })?
            .claims;
        if claims.get("iss").and_then(Value::as_str) != Some(self.issuer.as_str()) {
            return Err(TokenFailure::WrongIssuer);
        }
        let token_use = match claims.get("token_use").and_then(Value::as_str) {
            Some("id") => TokenUse::Id,
            Some("access") => TokenUse::Access,
            _ => return Err(TokenFailure::WrongTokenUse),
        };
        let use_name = if token_use == TokenUse::Id {
            "id"
        } else {
            "access"
        };
        if !self.token_use.is_empty() && !self.token_use.iter().any(|u| u == use_name) {
            return Err(TokenFailure::WrongTokenUse);
        }
        let audience_ok = |v: Option<&Value>| match v {
            Some(Value::String(s)) => self.audiences.iter().any(|a| a == s),
            Some(Value::Array(items)) => items.iter().any(|i| {
                i.as_str()
                    .is_some_and(|s| self.audiences.iter().any(|a| a == s))
            }),
            _ => false,
        };
        let aud_ok = match token_use {
            TokenUse::Id => audience_ok(claims.get("aud")),
            TokenUse::Access => match claims.get("client_id") {
                Some(c) => audience_ok(Some(c)),
                None => audience_ok(claims.get("aud")),
            },
        };
        if !aud_ok {
            return Err(TokenFailure::WrongAudience);
        }
        let int = |name: &str| claims.get(name).and_then(Value::as_i64);
        let exp = int("exp").ok_or(TokenFailure::MissingClaim)?;
        let iat = int("iat").ok_or(TokenFailure::MissingClaim)?;
        if now > exp.saturating_add(self.leeway) {
            return Err(TokenFailure::Expired);
        }
        if let Some(nbf) = claims.get("nbf") {
            let nbf = nbf.as_i64().ok_or(TokenFailure::MissingClaim)?;
            if now.saturating_add(self.leeway) < nbf {
                return Err(TokenFailure::NotYetValid);
            }
        }
        if now.saturating_add(self.leeway) < iat {
            return Err(TokenFailure::NotYetValid);
        }
        let sub = claims
            .get("sub")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or(TokenFailure::MissingClaim)?
            .to_owned();
        Ok(VerifiedToken {
            sub,
            iat,
            exp,
            token_use,
            claims,
        })
    }
}
