//! The embedded identity provider (the default): passwords (Argon2id, OWASP
//! ASVS rules), TOTP, login with challenges, and ID and access tokens
//! shaped like Cognito's, signed by the realm's own keys and verifiable by
//! any decision point that holds the realm's bundle. Its state (credentials,
//! sessions, throttling records, signing keys) is kept through the
//! repository port.
//!
//! Only an Active user gets tokens. A user whose password is temporary
//! (set by an administrator) gets the `NEW_PASSWORD_REQUIRED` challenge
//! and nothing else; answering it makes them Active (complete-password-
//! reset, or verify for a Created user). A user who must reset their
//! password is refused with their old one: they set a new one with a
//! reset code (`start_password_reset`, `confirm_password_reset`; 15
//! minutes, 5 wrong answers), or log in with a temporary password an
//! administrator set. A new password may not be the one it replaces.
//! An Unverified user (one sent a verification code) gets the
//! `EMAIL_VERIFICATION` challenge and nothing else; the right code makes
//! them Active. Created users without a temporary password, and Suspended,
//! Deactivated and Deleted users, are refused.
//!
//! Guessing is throttled per user: wrong passwords, wrong second factors
//! and wrong verification codes all count against one record (the user's,
//! however the login named them; the typed name's when it names nobody),
//! and only a login that ends in tokens clears it. Each attempt is counted
//! before it is checked, in the same write as the throttle check, so
//! concurrent guesses see each other. A challenge session takes one
//! answer; a verification code lives 15 minutes and takes 5 wrong answers.

pub mod keys;
pub mod password;
pub mod totp;

use crate::domain::error::{Error, Result};
use crate::domain::realm::{LOCAL_IDENTITY, NewRealm, Realm};
use crate::domain::throttle::Throttle;
use crate::domain::user::User;
use crate::ports::BoxFuture;
use crate::ports::identity::{
    Alg, ChallengeAnswer, ChallengeName, IdentityProvider, KeyInfo, LoginResult, Provisioned,
    SESSION_TTL, Tokens, TotpEnrollment, VERIFICATION_ATTEMPTS, VERIFICATION_TTL, VerificationCode,
};
use crate::ports::repository::{Credentials, Repository, Session, Tx};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use pdp_core::{IdentitySettings, LifecycleAction, UserState};
use serde_json::{Value, json};
use std::sync::Arc;

/// The embedded provider.
#[derive(Debug, Clone)]
pub struct LocalIdentity {
    repo: Arc<dyn Repository>,
    issuer_base: String,
    token_ttl: i64,
    hashing: password::Hashing,
}

impl LocalIdentity {
    /// A provider keeping its state in `repo`; realm issuers are
    /// `<issuer_base>/realms/<realm>`; tokens live `token_ttl` seconds.
    pub fn new(repo: Arc<dyn Repository>, issuer_base: &str, token_ttl: i64) -> LocalIdentity {
        LocalIdentity {
            repo,
            issuer_base: issuer_base.trim_end_matches('/').to_owned(),
            token_ttl,
            hashing: password::Hashing::default(),
        }
    }
}

fn code_hash(code: &str) -> String {
    use sha2::{Digest, Sha256};
    data_encoding::HEXLOWER.encode(&Sha256::digest(code.trim().as_bytes()))
}

/// A fresh one-time code (8 digits) and the hash kept of it.
fn new_code() -> Result<(String, String)> {
    let n = u32::from_be_bytes(crate::random::bytes::<4>()?) % 100_000_000;
    let code = format!("{n:08}");
    let hash = code_hash(&code);
    Ok((code, hash))
}

/// Keep `hash` as the user's one pending code (verification or reset),
/// good for [`VERIFICATION_TTL`] and [`VERIFICATION_ATTEMPTS`] wrong answers.
fn put_code(tx: &mut dyn Tx, realm: &str, user: &str, hash: String, now: i64) -> Result<()> {
    let mut creds = tx.credentials(realm, user)?;
    creds.verify_code_hash = Some(hash);
    creds.verify_expires = now + VERIFICATION_TTL;
    creds.verify_attempts = 0;
    tx.put_credentials(realm, user, &creds)
}

fn bad_login() -> Error {
    Error::Unauthenticated("incorrect username or password".into())
}

/// The throttle record a login attempt counts against: the user's own
/// once the typed name resolves to one (a login by email and one by
/// username share it, and so do the second factors), else the typed
/// name's (unknown names are throttled alike, so the answers say nothing
/// about which names exist). The prefixes keep the two apart.
fn throttle_key(user_id: Option<&str>, login_lc: &str) -> String {
    match user_id {
        Some(id) => format!("user:{id}"),
        None => format!("name:{login_lc}"),
    }
}

fn check_throttle(tx: &mut dyn Tx, realm: &str, key: &str, now: i64) -> Result<()> {
    match tx.throttle(realm, key)?.retry_after(now) {
        Some(s) => Err(Error::Throttled {
            retry_after: u64::try_from(s).unwrap_or(1),
        }),
        None => Ok(()),
    }
}

fn record_failure(tx: &mut dyn Tx, realm: &str, key: &str, now: i64) -> Result<()> {
    let t = tx.throttle(realm, key)?.failed(now);
    tx.put_throttle(realm, key, Some(&t))
}

/// Check the throttle and count this attempt as failed, in one write, so
/// that concurrent guesses each see the ones before them. Returns the
/// record before and after, for [`Attempt::passed`].
fn begin_attempt(tx: &mut dyn Tx, realm: &str, key: &str, now: i64) -> Result<Attempt> {
    check_throttle(tx, realm, key, now)?;
    let before = tx.throttle(realm, key)?;
    let after = before.failed(now);
    tx.put_throttle(realm, key, Some(&after))?;
    Ok(Attempt { before, after })
}

/// An attempt counted before its secret was checked.
#[derive(Debug, Clone, Copy)]
struct Attempt {
    before: Throttle,
    after: Throttle,
}

impl Attempt {
    /// The secret was right: take back the failure counted for it (the
    /// record as it was, if nothing counted since; else one failure less).
    /// The failures before it stay until a login ends in tokens.
    fn passed(self, tx: &mut dyn Tx, realm: &str, key: &str) -> Result<()> {
        let now = tx.throttle(realm, key)?;
        let back = if now == self.after {
            self.before
        } else {
            now.undo_one()
        };
        tx.put_throttle(realm, key, Some(&back))
    }
}

/// Clear the throttle record when `step` is the end of a login.
fn cleared_on_tokens(
    tx: &mut dyn Tx,
    realm: &str,
    key: &str,
    step: LoginResult,
) -> Result<LoginResult> {
    if matches!(step, LoginResult::Tokens(_)) {
        tx.put_throttle(realm, key, None)?;
    }
    Ok(step)
}

fn totp_secret(c: &Credentials) -> Result<Option<Vec<u8>>> {
    c.totp_secret
        .as_deref()
        .map(|s| {
            data_encoding::BASE32_NOPAD
                .decode(s.as_bytes())
                .map_err(|e| Error::Internal(format!("stored TOTP secret: {e}")))
        })
        .transpose()
}

fn new_session(
    tx: &mut dyn Tx,
    realm: &str,
    user_id: &str,
    challenge: ChallengeName,
    now: i64,
) -> Result<LoginResult> {
    let id = URL_SAFE_NO_PAD.encode(crate::random::bytes::<32>()?);
    let name = serde_json::to_value(challenge)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    tx.insert_session(
        &Session {
            id: id.clone(),
            realm: realm.to_owned(),
            user_id: user_id.to_owned(),
            challenge: name,
            expires_at: now + SESSION_TTL,
        },
        now,
    )?;
    Ok(LoginResult::Challenge {
        challenge,
        session: id,
    })
}

/// Who tokens are for and how long they live.
#[derive(Debug, Clone)]
struct Grant {
    client_id: Option<String>,
    ttl: i64,
    now: i64,
}

/// The next step for a user whose password (or last challenge) is good.
fn next_step(
    tx: &mut dyn Tx,
    realm: &str,
    user: &User,
    creds: &Credentials,
    mfa_done: bool,
    grant: &Grant,
) -> Result<LoginResult> {
    let now = grant.now;
    match user.state {
        // The old password does not open a required reset: only a
        // temporary one an administrator set, or a reset code
        // (`confirm_password_reset`), does.
        UserState::PasswordResetRequired if creds.new_password_required => {
            return new_session(tx, realm, &user.id, ChallengeName::NewPasswordRequired, now);
        }
        UserState::PasswordResetRequired => {
            return Err(Error::Forbidden(
                "a password reset is required: set a new password with a reset code".into(),
            ));
        }
        UserState::Created if creds.new_password_required => {
            return new_session(tx, realm, &user.id, ChallengeName::NewPasswordRequired, now);
        }
        UserState::Unverified => {
            return new_session(tx, realm, &user.id, ChallengeName::EmailVerification, now);
        }
        UserState::Active => {}
        UserState::Created => {
            return Err(Error::Forbidden(
                "user is Created: send a verification code or set a temporary password first"
                    .into(),
            ));
        }
        other => return Err(Error::Forbidden(format!("user is {other}"))),
    }
    if creds.new_password_required {
        return new_session(tx, realm, &user.id, ChallengeName::NewPasswordRequired, now);
    }
    if creds.totp_confirmed && !mfa_done {
        return new_session(tx, realm, &user.id, ChallengeName::SoftwareTokenMfa, now);
    }
    Ok(LoginResult::Tokens(mint(tx, realm, user, grant)?))
}

/// ID and access tokens for an Active user, signed by the realm's active key.
fn mint(tx: &mut dyn Tx, realm: &str, user: &User, grant: &Grant) -> Result<Tokens> {
    let Grant {
        client_id,
        ttl,
        now,
    } = grant;
    let (ttl, now) = (*ttl, *now);
    let r = tx.realm(realm)?;
    let client = match client_id {
        Some(c) if r.clients.iter().any(|k| k == c) => c.clone(),
        Some(c) => {
            return Err(Error::BadRequest(format!(
                "client {c:?} is not a client of realm {realm:?}"
            )));
        }
        None => r
            .clients
            .first()
            .cloned()
            .ok_or_else(|| Error::Conflict(format!("realm {realm:?} has no app client")))?,
    };
    let key = keys::active_in(tx, realm)?;
    // Decision points refuse a token not issued strictly after the user's
    // last revocation (whole seconds). A login in the very second of a
    // revocation (a new password signs every session out) gets tokens
    // dated the next second, within every verifier's leeway; tokens minted
    // before the revocation keep the earlier `iat` and stay refused.
    let iat = if user.tokens_valid_after >= now {
        user.tokens_valid_after + 1
    } else {
        now
    };
    let id_claims = json!({
        "sub": user.id,
        "iss": r.issuer,
        "aud": client,
        "token_use": "id",
        "auth_time": now,
        "iat": iat,
        "exp": iat + ttl,
        "jti": crate::random::uuid_v4()?,
        "email": user.email,
        "email_verified": true,
        "cognito:username": user.username,
        "cognito:groups": user.groups,
    });
    let access_claims = json!({
        "sub": user.id,
        "iss": r.issuer,
        "client_id": client,
        "token_use": "access",
        "scope": "openid email profile",
        "auth_time": now,
        "iat": iat,
        "exp": iat + ttl,
        "jti": crate::random::uuid_v4()?,
        "username": user.username,
        "cognito:groups": user.groups,
    });
    Ok(Tokens {
        id_token: key.sign(&id_claims)?,
        access_token: key.sign(&access_claims)?,
        token_type: "Bearer".into(),
        expires_in: ttl,
    })
}

fn otpauth_uri(display_name: &str, username: &str, b32: &str) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect::<String>()
    };
    format!(
        "otpauth://totp/{}:{}?secret={b32}&issuer={}&algorithm=SHA1&digits=6&period=30",
        enc(display_name),
        enc(username),
        enc(display_name)
    )
}

impl LocalIdentity {
    async fn login_now(
        &self,
        realm: String,
        login: String,
        password: String,
        client_id: Option<String>,
        now: i64,
    ) -> Result<LoginResult> {
        let login_lc = login.to_lowercase();
        let (r, l) = (realm.clone(), login_lc.clone());
        let (key, attempt, found) = self
            .repo
            .write(move |tx| {
                tx.live_realm(&r)?;
                let id = tx.user_id_by_login(&r, &login)?;
                let key = throttle_key(id.as_deref(), &l);
                let attempt = begin_attempt(tx, &r, &key, now)?;
                match id {
                    Some(id) => {
                        let creds = tx.credentials(&r, &id)?;
                        Ok((key, attempt, Some((id, creds))))
                    }
                    None => Ok((key, attempt, None)),
                }
            })
            .await?;
        // The password is checked outside any transaction: Argon2 takes
        // tens of milliseconds. The attempt is counted already.
        let stored = found.as_ref().and_then(|(_, c)| c.password_hash.as_deref());
        let verified = self.hashing.verify(&password, stored).await?;
        let user_id = match (found, verified) {
            (Some((id, _)), password::Verified::Yes | password::Verified::YesUpgrade) => id,
            _ => return Err(bad_login()),
        };
        let upgraded = if verified == password::Verified::YesUpgrade {
            Some(self.hashing.hash(&password).await?)
        } else {
            None
        };
        let ttl = self.token_ttl;
        self.repo
            .write(move |tx| {
                attempt.passed(tx, &realm, &key)?;
                let mut creds = tx.credentials(&realm, &user_id)?;
                if let Some(h) = upgraded {
                    creds.password_hash = Some(h);
                    tx.put_credentials(&realm, &user_id, &creds)?;
                }
                // Re-read: the user may have changed since the password check.
                let user = tx.user(&realm, &user_id)?;
                let step = next_step(
                    tx,
                    &realm,
                    &user,
                    &creds,
                    false,
                    &Grant {
                        client_id,
                        ttl,
                        now,
                    },
                )?;
                cleared_on_tokens(tx, &realm, &key, step)
            })
            .await
    }

    /// A new password may not be the one it replaces.
    async fn refuse_reuse(&self, new: &str, current: Option<&str>) -> Result<()> {
        let Some(current) = current else {
            return Ok(());
        };
        match self.hashing.verify(new, Some(current)).await? {
            password::Verified::No => Ok(()),
            _ => Err(Error::Invalid {
                what: "password".into(),
                diagnostics: vec![crate::domain::error::Diagnostic {
                    subject: "password".into(),
                    message: "must differ from the password it replaces".into(),
                    line: None,
                    column: None,
                }],
            }),
        }
    }

    async fn confirm_reset_now(
        &self,
        realm: String,
        login: String,
        code: String,
        new_password: String,
        now: i64,
    ) -> Result<()> {
        let wrong = || Error::Unauthenticated("wrong or expired reset code".into());
        let login_lc = login.to_lowercase();
        let (r, l, c) = (realm.clone(), login_lc.clone(), code.clone());
        // Checked and counted in one write: the code, the user's throttle.
        let found = self
            .repo
            .write(move |tx| {
                tx.live_realm(&r)?;
                let id = tx.user_id_by_login(&r, &l)?;
                let key = throttle_key(id.as_deref(), &l);
                check_throttle(tx, &r, &key, now)?;
                let Some(id) = id else {
                    record_failure(tx, &r, &key, now)?;
                    return Ok(None);
                };
                let user = tx.user(&r, &id)?;
                let mut creds = tx.credentials(&r, &id)?;
                let resettable = matches!(
                    user.state,
                    UserState::PasswordResetRequired | UserState::Active
                );
                let good = resettable
                    && creds
                        .verify_code_hash
                        .as_deref()
                        .is_some_and(|h| h == code_hash(&c))
                    && now <= creds.verify_expires;
                if !good {
                    record_failure(tx, &r, &key, now)?;
                    if resettable && creds.verify_code_hash.is_some() {
                        creds.verify_attempts += 1;
                        if creds.verify_attempts >= VERIFICATION_ATTEMPTS {
                            creds.verify_code_hash = None;
                            creds.verify_expires = 0;
                        }
                        tx.put_credentials(&r, &id, &creds)?;
                    }
                    return Ok(None);
                }
                Ok(Some((id, user, creds.password_hash)))
            })
            .await?;
        let Some((id, user, current)) = found else {
            return Err(wrong());
        };
        // The code is good; the new password must be too (the code stays
        // valid until a good one is given).
        password::check(&new_password, &[&user.username, &user.email])?;
        self.refuse_reuse(&new_password, current.as_deref()).await?;
        let hash = self.hashing.hash(&new_password).await?;
        let (r, key) = (realm.clone(), throttle_key(Some(&id), &login_lc));
        self.repo
            .write(move |tx| {
                let mut creds = tx.credentials(&r, &id)?;
                // Spent by a concurrent confirmation meanwhile: refused.
                if creds.verify_code_hash.as_deref() != Some(code_hash(&code).as_str()) {
                    return Err(wrong());
                }
                creds.password_hash = Some(hash);
                creds.new_password_required = false;
                creds.verify_code_hash = None;
                creds.verify_expires = 0;
                creds.verify_attempts = 0;
                tx.put_credentials(&r, &id, &creds)?;
                tx.put_throttle(&r, &key, None)?;
                // A required reset is complete; a forgotten password's new
                // one ends every session, as a password an admin sets does.
                let action = match tx.user(&r, &id)?.state {
                    UserState::PasswordResetRequired => LifecycleAction::CompletePasswordReset,
                    _ => LifecycleAction::SignOutEverywhere,
                };
                match tx.lifecycle(&r, &id, action, now) {
                    Ok(_) | Err(Error::Lifecycle(_)) => Ok(()),
                    Err(e) => Err(e),
                }
            })
            .await
    }

    async fn respond_now(
        &self,
        realm: String,
        answer: ChallengeAnswer,
        client_id: Option<String>,
        now: i64,
    ) -> Result<LoginResult> {
        // Sessions are single-use: taken (deleted) before anything else.
        let (r, s) = (realm.clone(), answer.session.clone());
        let session = self
            .repo
            .write(move |tx| tx.take_session(&r, &s))
            .await?
            .filter(|s| s.expires_at >= now)
            .ok_or_else(|| {
                Error::Unauthenticated(
                    "the session is unknown, used or expired; log in again".into(),
                )
            })?;
        let (r, u) = (realm.clone(), session.user_id.clone());
        let user = self.repo.read(move |tx| tx.user(&r, &u)).await?;
        let challenge = session.challenge;
        let key = throttle_key(Some(&user.id), "");
        let grant = Grant {
            client_id,
            ttl: self.token_ttl,
            now,
        };
        match challenge.as_str() {
            "NEW_PASSWORD_REQUIRED" => {
                let new = answer.new_password.as_deref().ok_or_else(|| {
                    Error::BadRequest("NEW_PASSWORD_REQUIRED is answered with new_password".into())
                })?;
                password::check(new, &[&user.username, &user.email])?;
                let (r, u) = (realm.clone(), user.id.clone());
                let current = self
                    .repo
                    .read(move |tx| Ok(tx.credentials(&r, &u)?.password_hash))
                    .await?;
                self.refuse_reuse(new, current.as_deref()).await?;
                let hash = self.hashing.hash(new).await?;
                self.repo
                    .write(move |tx| {
                        check_throttle(tx, &realm, &key, now)?;
                        let mut creds = tx.credentials(&realm, &user.id)?;
                        creds.password_hash = Some(hash);
                        creds.new_password_required = false;
                        tx.put_credentials(&realm, &user.id, &creds)?;
                        let user = match tx.user(&realm, &user.id)?.state {
                            UserState::PasswordResetRequired => tx.lifecycle(
                                &realm,
                                &user.id,
                                LifecycleAction::CompletePasswordReset,
                                now,
                            )?,
                            UserState::Created => {
                                tx.lifecycle(&realm, &user.id, LifecycleAction::Verify, now)?
                            }
                            _ => tx.user(&realm, &user.id)?,
                        };
                        let step = next_step(tx, &realm, &user, &creds, false, &grant)?;
                        cleared_on_tokens(tx, &realm, &key, step)
                    })
                    .await
            }
            "SOFTWARE_TOKEN_MFA" => {
                let code = answer.code.clone().ok_or_else(|| {
                    Error::BadRequest("SOFTWARE_TOKEN_MFA is answered with code".into())
                })?;
                let r = realm.clone();
                let result = self
                    .repo
                    .write(move |tx| {
                        check_throttle(tx, &r, &key, now)?;
                        let mut creds = tx.credentials(&r, &user.id)?;
                        let secret = totp_secret(&creds)?.unwrap_or_default();
                        let Some(step) = totp::verify(&secret, &code, now, creds.totp_last_step)
                        else {
                            record_failure(tx, &r, &key, now)?;
                            return Ok(None);
                        };
                        creds.totp_last_step = step;
                        tx.put_credentials(&r, &user.id, &creds)?;
                        let user = tx.user(&r, &user.id)?;
                        let step = next_step(tx, &r, &user, &creds, true, &grant)?;
                        cleared_on_tokens(tx, &r, &key, step).map(Some)
                    })
                    .await?;
                result.ok_or_else(|| {
                    Error::Unauthenticated("wrong or reused code; log in again".into())
                })
            }
            "EMAIL_VERIFICATION" => {
                let code = answer.code.clone().ok_or_else(|| {
                    Error::BadRequest("EMAIL_VERIFICATION is answered with code".into())
                })?;
                let r = realm.clone();
                let result = self
                    .repo
                    .write(move |tx| {
                        check_throttle(tx, &r, &key, now)?;
                        let mut creds = tx.credentials(&r, &user.id)?;
                        // Hashes are compared, so timing says nothing about the code.
                        let good = creds
                            .verify_code_hash
                            .as_deref()
                            .is_some_and(|h| h == code_hash(&code))
                            && now <= creds.verify_expires;
                        if !good {
                            record_failure(tx, &r, &key, now)?;
                            // The code dies after its last wrong answer.
                            if creds.verify_code_hash.is_some() {
                                creds.verify_attempts += 1;
                                if creds.verify_attempts >= VERIFICATION_ATTEMPTS {
                                    creds.verify_code_hash = None;
                                    creds.verify_expires = 0;
                                }
                                tx.put_credentials(&r, &user.id, &creds)?;
                            }
                            return Ok(None);
                        }
                        creds.verify_code_hash = None;
                        creds.verify_expires = 0;
                        creds.verify_attempts = 0;
                        tx.put_credentials(&r, &user.id, &creds)?;
                        let user = tx.lifecycle(&r, &user.id, LifecycleAction::Verify, now)?;
                        let step = next_step(tx, &r, &user, &creds, false, &grant)?;
                        cleared_on_tokens(tx, &r, &key, step).map(Some)
                    })
                    .await?;
                result.ok_or_else(|| {
                    Error::Unauthenticated(
                        "wrong or expired verification code; log in again".into(),
                    )
                })
            }
            other => Err(Error::Internal(format!("unknown challenge {other:?}"))),
        }
    }
}

impl IdentityProvider for LocalIdentity {
    fn name(&self) -> &'static str {
        LOCAL_IDENTITY
    }

    fn provision<'a>(&'a self, new: &'a NewRealm) -> BoxFuture<'a, Result<Provisioned>> {
        Box::pin(async move {
            if new.pool_id.is_some() || new.client_id.is_some() {
                return Err(Error::BadRequest(
                    "the local identity provider binds no existing user pool or app client \
                     (pool_id and client_id are for identity \"cognito\")"
                        .into(),
                ));
            }
            let realm = new.name.as_str();
            let client = data_encoding::BASE32_NOPAD
                .encode(&crate::random::bytes::<16>()?)
                .to_ascii_lowercase();
            let name = realm.to_owned();
            Ok(Provisioned {
                issuer: format!("{}/realms/{realm}", self.issuer_base),
                clients: vec![client],
                setup: Some(Box::new(move |tx: &mut dyn Tx, now: i64| {
                    keys::rotate_in(tx, &name, Alg::EdDSA, now).map(|_| ())
                })),
            })
        })
    }

    fn token_settings<'a>(
        &'a self,
        realm: &'a Realm,
    ) -> BoxFuture<'a, Result<Option<IdentitySettings>>> {
        Box::pin(async move {
            let name = realm.name.clone();
            let keys = self.repo.read(move |tx| keys::jwks_in(tx, &name)).await?;
            if keys.is_empty() {
                return Ok(None);
            }
            Ok(Some(IdentitySettings {
                issuer: realm.issuer.clone(),
                audiences: realm.clients.clone(),
                token_use: vec![],
                jwks: json!({ "keys": keys }),
                leeway_seconds: None,
            }))
        })
    }

    fn set_password<'a>(
        &'a self,
        realm: &'a str,
        user_id: &'a str,
        new_password: &'a str,
        temporary: bool,
        now: i64,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let (r, u) = (realm.to_owned(), user_id.to_owned());
            let user = self
                .repo
                .read(move |tx| {
                    tx.live_realm(&r)?;
                    tx.user(&r, &u)
                })
                .await?;
            password::check(new_password, &[&user.username, &user.email])?;
            let hash = self.hashing.hash(new_password).await?;
            let (r, u) = (realm.to_owned(), user_id.to_owned());
            self.repo
                .write(move |tx| {
                    tx.live_realm(&r)?;
                    tx.user(&r, &u)?;
                    let mut creds = tx.credentials(&r, &u)?;
                    creds.password_hash = Some(hash);
                    creds.new_password_required = temporary;
                    tx.put_credentials(&r, &u, &creds)?;
                    // A changed password ends every session, as with Cognito.
                    match tx.lifecycle(&r, &u, LifecycleAction::SignOutEverywhere, now) {
                        Ok(_) | Err(Error::Lifecycle(_)) => Ok(()),
                        Err(e) => Err(e),
                    }
                })
                .await
        })
    }

    fn login<'a>(
        &'a self,
        realm: &'a str,
        username: &'a str,
        password: &'a str,
        client_id: Option<&'a str>,
        now: i64,
    ) -> BoxFuture<'a, Result<LoginResult>> {
        Box::pin(self.login_now(
            realm.to_owned(),
            username.to_owned(),
            password.to_owned(),
            client_id.map(str::to_owned),
            now,
        ))
    }

    fn respond<'a>(
        &'a self,
        realm: &'a str,
        answer: &'a ChallengeAnswer,
        client_id: Option<&'a str>,
        now: i64,
    ) -> BoxFuture<'a, Result<LoginResult>> {
        Box::pin(self.respond_now(
            realm.to_owned(),
            answer.clone(),
            client_id.map(str::to_owned),
            now,
        ))
    }

    fn start_verification<'a>(
        &'a self,
        realm: &'a str,
        user_id: &'a str,
        now: i64,
    ) -> BoxFuture<'a, Result<VerificationCode>> {
        Box::pin(async move {
            let (code, hash) = new_code()?;
            let (r, u) = (realm.to_owned(), user_id.to_owned());
            self.repo
                .write(move |tx| {
                    tx.live_realm(&r)?;
                    let user = tx.user(&r, &u)?;
                    match user.state {
                        UserState::Created => {
                            tx.lifecycle(&r, &u, LifecycleAction::Invite, now)?;
                        }
                        UserState::Unverified => {}
                        other => {
                            return Err(Error::Lifecycle(pdp_core::LifecycleError::Refused {
                                from: other,
                                action: LifecycleAction::Invite,
                            }));
                        }
                    }
                    put_code(tx, &r, &u, hash, now)
                })
                .await?;
            Ok(VerificationCode {
                code,
                expires_at: now + VERIFICATION_TTL,
            })
        })
    }

    fn start_password_reset<'a>(
        &'a self,
        realm: &'a str,
        user_id: &'a str,
        now: i64,
    ) -> BoxFuture<'a, Result<VerificationCode>> {
        Box::pin(async move {
            let (code, hash) = new_code()?;
            let (r, u) = (realm.to_owned(), user_id.to_owned());
            self.repo
                .write(move |tx| {
                    tx.live_realm(&r)?;
                    let user = tx.user(&r, &u)?;
                    if !matches!(
                        user.state,
                        UserState::PasswordResetRequired | UserState::Active
                    ) {
                        return Err(Error::Conflict(format!(
                            "user is {}: reset codes are for Active users and users who must reset their password",
                            user.state
                        )));
                    }
                    put_code(tx, &r, &u, hash, now)
                })
                .await?;
            Ok(VerificationCode {
                code,
                expires_at: now + VERIFICATION_TTL,
            })
        })
    }

    fn confirm_password_reset<'a>(
        &'a self,
        realm: &'a str,
        login: &'a str,
        code: &'a str,
        new_password: &'a str,
        now: i64,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.confirm_reset_now(
            realm.to_owned(),
            login.to_owned(),
            code.to_owned(),
            new_password.to_owned(),
            now,
        ))
    }

    fn totp_enroll<'a>(
        &'a self,
        realm: &'a str,
        user_id: &'a str,
    ) -> BoxFuture<'a, Result<TotpEnrollment>> {
        Box::pin(async move {
            let b32 = data_encoding::BASE32_NOPAD.encode(&crate::random::bytes::<20>()?);
            let (r, u) = (realm.to_owned(), user_id.to_owned());
            self.repo
                .write(move |tx| {
                    let realm = tx.realm(&r)?;
                    let user = tx.user(&r, &u)?;
                    let mut creds = tx.credentials(&r, &u)?;
                    if creds.totp_confirmed {
                        return Err(Error::Conflict(
                            "TOTP is already enrolled; remove it first".into(),
                        ));
                    }
                    creds.totp_secret = Some(b32.clone());
                    creds.totp_confirmed = false;
                    creds.totp_last_step = 0;
                    tx.put_credentials(&r, &u, &creds)?;
                    Ok(TotpEnrollment {
                        otpauth_uri: otpauth_uri(&realm.display_name, &user.username, &b32),
                        secret: b32,
                    })
                })
                .await
        })
    }

    fn totp_confirm<'a>(
        &'a self,
        realm: &'a str,
        user_id: &'a str,
        code: &'a str,
        now: i64,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let (r, u, code) = (realm.to_owned(), user_id.to_owned(), code.to_owned());
            self.repo
                .write(move |tx| {
                    tx.live_realm(&r)?;
                    tx.user(&r, &u)?;
                    let mut creds = tx.credentials(&r, &u)?;
                    let Some(secret) = totp_secret(&creds)? else {
                        return Err(Error::Conflict("no TOTP enrolment to confirm".into()));
                    };
                    let step = totp::verify(&secret, &code, now, creds.totp_last_step)
                        .ok_or_else(|| Error::BadRequest("wrong TOTP code".into()))?;
                    creds.totp_confirmed = true;
                    creds.totp_last_step = step;
                    tx.put_credentials(&r, &u, &creds)
                })
                .await
        })
    }

    fn totp_remove<'a>(&'a self, realm: &'a str, user_id: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let (r, u) = (realm.to_owned(), user_id.to_owned());
            self.repo
                .write(move |tx| {
                    tx.live_realm(&r)?;
                    tx.user(&r, &u)?;
                    let mut creds = tx.credentials(&r, &u)?;
                    creds.totp_secret = None;
                    creds.totp_confirmed = false;
                    creds.totp_last_step = 0;
                    tx.put_credentials(&r, &u, &creds)
                })
                .await
        })
    }

    fn signing_keys<'a>(&'a self, realm: &'a str) -> BoxFuture<'a, Result<Vec<KeyInfo>>> {
        Box::pin(async move {
            let r = realm.to_owned();
            self.repo.read(move |tx| keys::list_in(tx, &r)).await
        })
    }

    fn rotate_signing_key<'a>(
        &'a self,
        realm: &'a str,
        alg: Alg,
        now: i64,
    ) -> BoxFuture<'a, Result<KeyInfo>> {
        Box::pin(async move {
            let r = realm.to_owned();
            self.repo
                .write(move |tx| {
                    tx.live_realm(&r)?;
                    keys::rotate_in(tx, &r, alg, now)
                })
                .await
        })
    }

    fn openid_configuration<'a>(&'a self, r: &'a Realm) -> BoxFuture<'a, Result<Value>> {
        Box::pin(async move {
            Ok(json!({
                "issuer": r.issuer,
                "jwks_uri": format!("{}/.well-known/jwks.json", r.issuer),
                "token_endpoint": format!("{}/login", r.issuer),
                "response_types_supported": ["token", "id_token"],
                "grant_types_supported": ["password"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["EdDSA", "ES256"],
                "scopes_supported": ["openid", "email", "profile"],
                "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "email",
                    "email_verified", "cognito:username", "cognito:groups", "token_use"],
            }))
        })
    }

    /// Sessions and tokens are checked against the repository's user
    /// record at every step, so there is nothing to mirror.
    fn lifecycle_applied<'a>(
        &'a self,
        _: &'a str,
        _: &'a User,
        _: LifecycleAction,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async { Ok(()) })
    }
}
