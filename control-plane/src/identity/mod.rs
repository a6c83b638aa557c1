//! The local identity backend (the embedded default): passwords, TOTP,
//! login with challenges, and ID and access tokens shaped like Cognito's,
//! signed by the realm's keys and verifiable by any decision point that
//! holds the realm's bundle.
//!
//! Only an Active user gets tokens. A user whose password is temporary
//! (set by an administrator) or who must reset it gets the
//! `NEW_PASSWORD_REQUIRED` challenge and nothing else; answering it makes
//! them Active (complete-password-reset, or verify for a Created user).
//! An Unverified user (one sent a verification code, see
//! [`Db::start_verification`]) gets the `EMAIL_VERIFICATION` challenge and
//! nothing else; the right code makes them Active. Created users without a
//! temporary password, and Suspended, Deactivated and Deleted users, are
//! refused.

pub mod keys;
pub mod password;
pub mod provider;
pub mod throttle;
pub mod totp;

use crate::db::{Db, live_realm};
use crate::error::{Error, Result};
use crate::user::{User, lifecycle_in, user_by_login_in, user_in};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use pdp_core::{LifecycleAction, UserState};
use rusqlite::{OptionalExtension, Transaction, params};
use serde::{Deserialize, Serialize};
use serde_json::json;
use throttle::Throttle;

/// `Debug` that names the secret fields without showing them, so a
/// stray `{:?}` in a log line leaks nothing.
macro_rules! redacted_debug {
    ($t:ty { $($shown:ident),* ; $($hidden:ident),* }) => {
        impl std::fmt::Debug for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($t))
                    $(.field(stringify!($shown), &self.$shown))*
                    $(.field(stringify!($hidden), &"<redacted>"))*
                    .finish()
            }
        }
    };
}
pub(crate) use redacted_debug;

redacted_debug!(Tokens { token_type, expires_in ; id_token, access_token });
redacted_debug!(ChallengeAnswer { ; session, new_password, code });
redacted_debug!(VerificationCode { expires_at ; code });
redacted_debug!(TotpEnrollment { ; secret, otpauth_uri });

/// How long a challenge session lives, seconds.
pub const SESSION_TTL: i64 = 180;

/// Tokens for an authenticated user.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Tokens {
    /// ID token (`token_use: id`): who the user is.
    pub id_token: String,
    /// Access token (`token_use: access`): what the client may do.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until both expire.
    pub expires_in: i64,
}

/// A challenge the user must answer before getting tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ChallengeName {
    /// Set a new password (temporary password, or reset required).
    NewPasswordRequired,
    /// Give the current TOTP code.
    SoftwareTokenMfa,
    /// Give the code sent to the user's email.
    EmailVerification,
}

/// What a login step produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum LoginResult {
    /// Done.
    Tokens(Tokens),
    /// One more step.
    Challenge {
        /// What to answer.
        challenge: ChallengeName,
        /// Opaque, single-use; give it back with the answer.
        session: String,
    },
}

/// An answer to a challenge.
#[derive(Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChallengeAnswer {
    /// The session the challenge came with.
    pub session: String,
    /// For `NEW_PASSWORD_REQUIRED`.
    #[serde(default)]
    pub new_password: Option<String>,
    /// For `SOFTWARE_TOKEN_MFA`.
    #[serde(default)]
    pub code: Option<String>,
}

/// How long a verification code is good for, seconds.
pub const VERIFICATION_TTL: i64 = 24 * 3600;

/// A verification code to deliver to the user's email (the embedded
/// backend sends no mail: the caller does).
#[derive(Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct VerificationCode {
    /// Eight digits.
    pub code: String,
    /// Unix seconds after which it is refused.
    pub expires_at: i64,
}

fn code_hash(code: &str) -> String {
    use sha2::{Digest, Sha256};
    data_encoding::HEXLOWER.encode(&Sha256::digest(code.trim().as_bytes()))
}

/// A TOTP enrolment to show the user (as a QR code of `otpauth_uri`).
#[derive(Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct TotpEnrollment {
    /// The shared secret, base32.
    pub secret: String,
    /// `otpauth://totp/...` for authenticator apps.
    pub otpauth_uri: String,
}

#[derive(Debug, Default)]
struct Credentials {
    password_hash: Option<String>,
    new_password_required: bool,
    totp_secret: Option<Vec<u8>>,
    totp_confirmed: bool,
    totp_last_step: i64,
}

fn credentials_in(tx: &Transaction<'_>, realm: &str, user_id: &str) -> Result<Credentials> {
    let row = tx
        .query_row(
            "SELECT password_hash, new_password_required, totp_secret, totp_confirmed, totp_last_step
             FROM credentials WHERE realm = ?1 AND user_id = ?2",
            params![realm, user_id],
            |r| {
                Ok((
                    r.get::<_, Option<String>>(0)?,
                    r.get::<_, bool>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, bool>(3)?,
                    r.get::<_, i64>(4)?,
                ))
            },
        )
        .optional()?;
    let Some((password_hash, new_password_required, secret, totp_confirmed, totp_last_step)) = row
    else {
        return Ok(Credentials::default());
    };
    let totp_secret = secret
        .map(|s| {
            data_encoding::BASE32_NOPAD
                .decode(s.as_bytes())
                .map_err(|e| Error::Internal(format!("stored TOTP secret: {e}")))
        })
        .transpose()?;
    Ok(Credentials {
        password_hash,
        new_password_required,
        totp_secret,
        totp_confirmed,
        totp_last_step,
    })
}

fn ensure_credentials_row(tx: &Transaction<'_>, realm: &str, user_id: &str) -> Result<()> {
    tx.execute(
        "INSERT INTO credentials (realm, user_id) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
        params![realm, user_id],
    )?;
    Ok(())
}

fn store_password(
    tx: &Transaction<'_>,
    realm: &str,
    user_id: &str,
    hash: &str,
    temporary: bool,
) -> Result<()> {
    ensure_credentials_row(tx, realm, user_id)?;
    tx.execute(
        "UPDATE credentials SET password_hash = ?3, new_password_required = ?4
         WHERE realm = ?1 AND user_id = ?2",
        params![realm, user_id, hash, temporary],
    )?;
    Ok(())
}

fn throttle_in(tx: &Transaction<'_>, realm: &str, login_lc: &str) -> Result<Throttle> {
    let rec: Option<String> = tx
        .query_row(
            "SELECT record FROM login_throttle WHERE realm = ?1 AND username_lc = ?2",
            params![realm, login_lc],
            |r| r.get(0),
        )
        .optional()?;
    Ok(rec
        .and_then(|r| serde_json::from_str(&r).ok())
        .unwrap_or_default())
}

fn record_failure(db: &Db, realm: &str, login_lc: &str, now: i64) -> Result<()> {
    db.write(|tx| {
        let t = throttle_in(tx, realm, login_lc)?.failed(now);
        let rec = serde_json::to_string(&t).map_err(|e| Error::Internal(e.to_string()))?;
        tx.execute(
            "INSERT INTO login_throttle (realm, username_lc, record) VALUES (?1, ?2, ?3)
             ON CONFLICT (realm, username_lc) DO UPDATE SET record = excluded.record",
            params![realm, login_lc, rec],
        )?;
        Ok(())
    })
}

fn check_throttle(db: &Db, realm: &str, login_lc: &str, now: i64) -> Result<()> {
    let t = db.read(|tx| throttle_in(tx, realm, login_lc))?;
    match t.retry_after(now) {
        Some(s) => Err(Error::Throttled {
            retry_after: u64::try_from(s).unwrap_or(1),
        }),
        None => Ok(()),
    }
}

fn bad_login() -> Error {
    Error::Unauthenticated("incorrect username or password".into())
}

fn new_session(
    tx: &Transaction<'_>,
    realm: &str,
    user_id: &str,
    challenge: ChallengeName,
    now: i64,
) -> Result<LoginResult> {
    let id = URL_SAFE_NO_PAD.encode(crate::db::random::<32>()?);
    let name = serde_json::to_value(challenge)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    tx.execute("DELETE FROM login_sessions WHERE expires_at < ?1", [now])?;
    tx.execute(
        "INSERT INTO login_sessions (id, realm, user_id, challenge, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![id, realm, user_id, name, now + SESSION_TTL],
    )?;
    Ok(LoginResult::Challenge {
        challenge,
        session: id,
    })
}

/// Who tokens are for and how long they live.
#[derive(Debug, Clone, Copy)]
struct Grant<'a> {
    client_id: Option<&'a str>,
    ttl: i64,
    now: i64,
}

/// The next step for a user whose password (or last challenge) is good.
fn next_step(
    tx: &Transaction<'_>,
    realm: &str,
    user: &User,
    creds: &Credentials,
    mfa_done: bool,
    grant: Grant<'_>,
) -> Result<LoginResult> {
    let now = grant.now;
    match user.state {
        UserState::PasswordResetRequired => {
            return new_session(tx, realm, &user.id, ChallengeName::NewPasswordRequired, now);
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
fn mint(tx: &Transaction<'_>, realm: &str, user: &User, grant: Grant<'_>) -> Result<Tokens> {
    let Grant {
        client_id,
        ttl,
        now,
    } = grant;
    let r = crate::realm::realm_in(tx, realm)?;
    let client = match client_id {
        Some(c) if r.clients.iter().any(|k| k == c) => c.to_owned(),
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
    let id_claims = json!({
        "sub": user.id,
        "iss": r.issuer,
        "aud": client,
        "token_use": "id",
        "auth_time": now,
        "iat": now,
        "exp": now + ttl,
        "jti": crate::db::uuid_v4()?,
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
        "iat": now,
        "exp": now + ttl,
        "jti": crate::db::uuid_v4()?,
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

impl Db {
    /// Set a user's password (checked against the rules). `temporary`:
    /// the user must choose a new one at the next login.
    pub fn set_password(
        &self,
        realm: &str,
        user_id: &str,
        new_password: &str,
        temporary: bool,
        now: i64,
    ) -> Result<()> {
        let user = self.user(realm, user_id)?;
        password::check(new_password, &[&user.username, &user.email])?;
        let hash = password::hash(new_password)?;
        self.write(|tx| {
            live_realm(tx, realm)?;
            user_in(tx, realm, user_id)?;
            store_password(tx, realm, user_id, &hash, temporary)?;
            // A changed password ends every session, as with Cognito.
            lifecycle_in(tx, realm, user_id, LifecycleAction::SignOutEverywhere, now).or_else(
                |e| match e {
                    Error::Lifecycle(_) => user_in(tx, realm, user_id),
                    e => Err(e),
                },
            )?;
            Ok(())
        })
    }

    /// Start a login with a username (or email) and password.
    pub fn login(
        &self,
        realm: &str,
        login: &str,
        password: &str,
        client_id: Option<&str>,
        ttl: i64,
        now: i64,
    ) -> Result<LoginResult> {
        let login_lc = login.to_lowercase();
        self.read(|tx| live_realm(tx, realm))?;
        check_throttle(self, realm, &login_lc, now)?;
        let found = self.read(|tx| match user_by_login_in(tx, realm, login) {
            Ok(u) => {
                let c = credentials_in(tx, realm, &u.id)?;
                Ok(Some((u, c)))
            }
            Err(Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        })?;
        let Some((user, creds)) = found else {
            password::verify_nothing(password);
            record_failure(self, realm, &login_lc, now)?;
            return Err(bad_login());
        };
        let verified = match &creds.password_hash {
            Some(h) => password::verify(password, h)?,
            None => {
                password::verify_nothing(password);
                password::Verified::No
            }
        };
        if verified == password::Verified::No {
            record_failure(self, realm, &login_lc, now)?;
            return Err(bad_login());
        }
        let upgraded = if verified == password::Verified::YesUpgrade {
            Some(password::hash(password)?)
        } else {
            None
        };
        self.write(|tx| {
            tx.execute(
                "DELETE FROM login_throttle WHERE realm = ?1 AND username_lc = ?2",
                params![realm, login_lc],
            )?;
            if let Some(h) = &upgraded {
                tx.execute(
                    "UPDATE credentials SET password_hash = ?3 WHERE realm = ?1 AND user_id = ?2",
                    params![realm, user.id, h],
                )?;
            }
            // Re-read: the user may have changed since the password check.
            let user = user_in(tx, realm, &user.id)?;
            let creds = credentials_in(tx, realm, &user.id)?;
            next_step(
                tx,
                realm,
                &user,
                &creds,
                false,
                Grant {
                    client_id,
                    ttl,
                    now,
                },
            )
        })
    }

    /// Answer a challenge from [`Db::login`] (or a previous answer).
    pub fn respond_to_challenge(
        &self,
        realm: &str,
        answer: &ChallengeAnswer,
        client_id: Option<&str>,
        ttl: i64,
        now: i64,
    ) -> Result<LoginResult> {
        // Sessions are single-use: taken (deleted) before anything else.
        let (user_id, challenge) = self.write(|tx| {
            let row: Option<(String, String, i64)> = tx
                .query_row(
                    "SELECT user_id, challenge, expires_at FROM login_sessions
                     WHERE id = ?1 AND realm = ?2",
                    params![answer.session, realm],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()?;
            tx.execute(
                "DELETE FROM login_sessions WHERE id = ?1",
                [&answer.session],
            )?;
            match row {
                Some((u, c, exp)) if exp >= now => Ok((u, c)),
                _ => Err(Error::Unauthenticated(
                    "the session is unknown, used or expired; log in again".into(),
                )),
            }
        })?;
        let user = self.user(realm, &user_id)?;
        let login_lc = user.username.to_lowercase();
        check_throttle(self, realm, &login_lc, now)?;
        match challenge.as_str() {
            "NEW_PASSWORD_REQUIRED" => {
                let new = answer.new_password.as_deref().ok_or_else(|| {
                    Error::BadRequest("NEW_PASSWORD_REQUIRED is answered with new_password".into())
                })?;
                password::check(new, &[&user.username, &user.email])?;
                let hash = password::hash(new)?;
                self.write(|tx| {
                    store_password(tx, realm, &user.id, &hash, false)?;
                    let user = match user_in(tx, realm, &user.id)?.state {
                        UserState::PasswordResetRequired => lifecycle_in(
                            tx,
                            realm,
                            &user.id,
                            LifecycleAction::CompletePasswordReset,
                            now,
                        )?,
                        UserState::Created => {
                            lifecycle_in(tx, realm, &user.id, LifecycleAction::Verify, now)?
                        }
                        _ => user_in(tx, realm, &user.id)?,
                    };
                    let creds = credentials_in(tx, realm, &user.id)?;
                    next_step(
                        tx,
                        realm,
                        &user,
                        &creds,
                        false,
                        Grant {
                            client_id,
                            ttl,
                            now,
                        },
                    )
                })
            }
            "SOFTWARE_TOKEN_MFA" => {
                let code = answer.code.as_deref().ok_or_else(|| {
                    Error::BadRequest("SOFTWARE_TOKEN_MFA is answered with code".into())
                })?;
                let result = self.write(|tx| {
                    let creds = credentials_in(tx, realm, &user.id)?;
                    let secret = creds.totp_secret.as_deref().unwrap_or_default();
                    let Some(step) = totp::verify(secret, code, now, creds.totp_last_step) else {
                        return Ok(None);
                    };
                    tx.execute(
                        "UPDATE credentials SET totp_last_step = ?3 WHERE realm = ?1 AND user_id = ?2",
                        params![realm, user.id, step],
                    )?;
                    let user = user_in(tx, realm, &user.id)?;
                    next_step(tx, realm, &user, &creds, true, Grant { client_id, ttl, now }).map(Some)
                })?;
                match result {
                    Some(r) => Ok(r),
                    None => {
                        record_failure(self, realm, &login_lc, now)?;
                        Err(Error::Unauthenticated(
                            "wrong or reused code; log in again".into(),
                        ))
                    }
                }
            }
            "EMAIL_VERIFICATION" => {
                let code = answer.code.as_deref().ok_or_else(|| {
                    Error::BadRequest("EMAIL_VERIFICATION is answered with code".into())
                })?;
                let result = self.write(|tx| {
                    let (hash, expires): (Option<String>, i64) = tx.query_row(
                        "SELECT verify_code_hash, verify_expires FROM credentials
                         WHERE realm = ?1 AND user_id = ?2",
                        params![realm, user.id],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )?;
                    // Hashes are compared, so timing says nothing about the code.
                    let good = hash.is_some_and(|h| h == code_hash(code)) && now <= expires;
                    if !good {
                        return Ok(None);
                    }
                    tx.execute(
                        "UPDATE credentials SET verify_code_hash = NULL, verify_expires = 0
                         WHERE realm = ?1 AND user_id = ?2",
                        params![realm, user.id],
                    )?;
                    let user = lifecycle_in(tx, realm, &user.id, LifecycleAction::Verify, now)?;
                    let creds = credentials_in(tx, realm, &user.id)?;
                    next_step(
                        tx,
                        realm,
                        &user,
                        &creds,
                        false,
                        Grant {
                            client_id,
                            ttl,
                            now,
                        },
                    )
                    .map(Some)
                })?;
                match result {
                    Some(r) => Ok(r),
                    None => {
                        record_failure(self, realm, &login_lc, now)?;
                        Err(Error::Unauthenticated(
                            "wrong or expired verification code; log in again".into(),
                        ))
                    }
                }
            }
            other => Err(Error::Internal(format!("unknown challenge {other:?}"))),
        }
    }

    /// Send a user (Created or Unverified) a new email verification code:
    /// a Created user becomes Unverified (invite). Their next login with
    /// their password asks for it; the right code makes them Active.
    pub fn start_verification(
        &self,
        realm: &str,
        user_id: &str,
        now: i64,
    ) -> Result<VerificationCode> {
        let n = u32::from_be_bytes(crate::db::random::<4>()?) % 100_000_000;
        let code = format!("{n:08}");
        self.write(|tx| {
            live_realm(tx, realm)?;
            let user = user_in(tx, realm, user_id)?;
            match user.state {
                UserState::Created => {
                    lifecycle_in(tx, realm, user_id, LifecycleAction::Invite, now)?;
                }
                UserState::Unverified => {}
                other => {
                    return Err(Error::Lifecycle(pdp_core::LifecycleError::Refused {
                        from: other,
                        action: LifecycleAction::Invite,
                    }));
                }
            }
            ensure_credentials_row(tx, realm, user_id)?;
            tx.execute(
                "UPDATE credentials SET verify_code_hash = ?3, verify_expires = ?4
                 WHERE realm = ?1 AND user_id = ?2",
                params![realm, user_id, code_hash(&code), now + VERIFICATION_TTL],
            )?;
            Ok(VerificationCode {
                code,
                expires_at: now + VERIFICATION_TTL,
            })
        })
    }

    /// Start TOTP enrolment: a new secret, not used until confirmed. An
    /// enrolment already confirmed must be removed first.
    pub fn totp_enroll(&self, realm: &str, user_id: &str) -> Result<TotpEnrollment> {
        let secret = crate::db::random::<20>()?;
        self.write(|tx| {
            live_realm(tx, realm)?;
            let user = user_in(tx, realm, user_id)?;
            let r = crate::realm::realm_in(tx, realm)?;
            if credentials_in(tx, realm, user_id)?.totp_confirmed {
                return Err(Error::Conflict(
                    "TOTP is already enrolled; remove it first".into(),
                ));
            }
            ensure_credentials_row(tx, realm, user_id)?;
            let b32 = data_encoding::BASE32_NOPAD.encode(&secret);
            tx.execute(
                "UPDATE credentials SET totp_secret = ?3, totp_confirmed = 0, totp_last_step = 0
                 WHERE realm = ?1 AND user_id = ?2",
                params![realm, user_id, b32],
            )?;
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
            Ok(TotpEnrollment {
                otpauth_uri: format!(
                    "otpauth://totp/{}:{}?secret={b32}&issuer={}&algorithm=SHA1&digits=6&period=30",
                    enc(&r.display_name),
                    enc(&user.username),
                    enc(&r.display_name)
                ),
                secret: b32,
            })
        })
    }

    /// Confirm TOTP enrolment with a current code; from then on every
    /// login asks for a code.
    pub fn totp_confirm(&self, realm: &str, user_id: &str, code: &str, now: i64) -> Result<()> {
        self.write(|tx| {
            live_realm(tx, realm)?;
            user_in(tx, realm, user_id)?;
            let creds = credentials_in(tx, realm, user_id)?;
            let Some(secret) = creds.totp_secret else {
                return Err(Error::Conflict("no TOTP enrolment to confirm".into()));
            };
            let step = totp::verify(&secret, code, now, creds.totp_last_step)
                .ok_or_else(|| Error::BadRequest("wrong TOTP code".into()))?;
            tx.execute(
                "UPDATE credentials SET totp_confirmed = 1, totp_last_step = ?3
                 WHERE realm = ?1 AND user_id = ?2",
                params![realm, user_id, step],
            )?;
            Ok(())
        })
    }

    /// Remove TOTP (an administrator's recovery path).
    pub fn totp_remove(&self, realm: &str, user_id: &str) -> Result<()> {
        self.write(|tx| {
            live_realm(tx, realm)?;
            user_in(tx, realm, user_id)?;
            tx.execute(
                "UPDATE credentials SET totp_secret = NULL, totp_confirmed = 0, totp_last_step = 0
                 WHERE realm = ?1 AND user_id = ?2",
                params![realm, user_id],
            )?;
            Ok(())
        })
    }

    /// The realm's OpenID discovery document.
    pub fn openid_configuration(&self, realm: &str) -> Result<serde_json::Value> {
        let r = self.realm(realm)?;
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
    }
}
