//! The identity backend behind the API: who holds credentials, runs
//! logins and mints tokens. [`LocalIdentity`] is the embedded default (this
//! database); the Cognito backend implements the same trait, with the user
//! records and their lifecycle still owned by the control plane's database.

use super::keys::{Alg, KeyInfo};
use super::{ChallengeAnswer, LoginResult, TotpEnrollment, VerificationCode};
use crate::Db;
use crate::error::Result;
use crate::user::User;
use pdp_core::LifecycleAction;
use serde_json::Value;
use std::sync::Arc;

/// Credentials, logins, tokens and keys of every realm.
pub trait IdentityProvider: Send + Sync {
    /// Set a user's password (`temporary`: to be changed at next login).
    fn set_password(
        &self,
        realm: &str,
        user_id: &str,
        password: &str,
        temporary: bool,
        now: i64,
    ) -> Result<()>;
    /// Start a login.
    fn login(
        &self,
        realm: &str,
        username: &str,
        password: &str,
        client_id: Option<&str>,
        now: i64,
    ) -> Result<LoginResult>;
    /// Answer a login challenge.
    fn respond(
        &self,
        realm: &str,
        answer: &ChallengeAnswer,
        client_id: Option<&str>,
        now: i64,
    ) -> Result<LoginResult>;
    /// Send a Created or Unverified user a verification code.
    fn start_verification(&self, realm: &str, user_id: &str, now: i64) -> Result<VerificationCode>;
    /// Start TOTP enrolment.
    fn totp_enroll(&self, realm: &str, user_id: &str) -> Result<TotpEnrollment>;
    /// Confirm TOTP enrolment with a code.
    fn totp_confirm(&self, realm: &str, user_id: &str, code: &str, now: i64) -> Result<()>;
    /// Remove a user's TOTP.
    fn totp_remove(&self, realm: &str, user_id: &str) -> Result<()>;
    /// The realm's token signing keys.
    fn signing_keys(&self, realm: &str) -> Result<Vec<KeyInfo>>;
    /// Rotate the realm's token signing key.
    fn rotate_signing_key(&self, realm: &str, alg: Alg, now: i64) -> Result<KeyInfo>;
    /// The realm's JWKS.
    fn jwks(&self, realm: &str) -> Result<Value>;
    /// The realm's OpenID discovery document.
    fn openid_configuration(&self, realm: &str) -> Result<Value>;
    /// A lifecycle action was committed and published: mirror it (a
    /// remote provider disables the user and ends their sessions on the
    /// revoking actions, enables them on the others).
    fn lifecycle_applied(&self, realm: &str, user: &User, action: LifecycleAction) -> Result<()>;
}

/// The embedded provider: credentials, sessions and keys in the database.
#[derive(Debug, Clone)]
pub struct LocalIdentity {
    db: Arc<Db>,
    token_ttl: i64,
}

impl LocalIdentity {
    /// Tokens minted live `token_ttl` seconds.
    pub fn new(db: Arc<Db>, token_ttl: i64) -> LocalIdentity {
        LocalIdentity { db, token_ttl }
    }
}

impl IdentityProvider for LocalIdentity {
    fn set_password(
        &self,
        realm: &str,
        user_id: &str,
        password: &str,
        temporary: bool,
        now: i64,
    ) -> Result<()> {
        self.db
            .set_password(realm, user_id, password, temporary, now)
    }

    fn login(
        &self,
        realm: &str,
        username: &str,
        password: &str,
        client_id: Option<&str>,
        now: i64,
    ) -> Result<LoginResult> {
        self.db
            .login(realm, username, password, client_id, self.token_ttl, now)
    }

    fn respond(
        &self,
        realm: &str,
        answer: &ChallengeAnswer,
        client_id: Option<&str>,
        now: i64,
    ) -> Result<LoginResult> {
        self.db
            .respond_to_challenge(realm, answer, client_id, self.token_ttl, now)
    }

    fn start_verification(&self, realm: &str, user_id: &str, now: i64) -> Result<VerificationCode> {
        self.db.start_verification(realm, user_id, now)
    }

    fn totp_enroll(&self, realm: &str, user_id: &str) -> Result<TotpEnrollment> {
        self.db.totp_enroll(realm, user_id)
    }

    fn totp_confirm(&self, realm: &str, user_id: &str, code: &str, now: i64) -> Result<()> {
        self.db.totp_confirm(realm, user_id, code, now)
    }

    fn totp_remove(&self, realm: &str, user_id: &str) -> Result<()> {
        self.db.totp_remove(realm, user_id)
    }

    fn signing_keys(&self, realm: &str) -> Result<Vec<KeyInfo>> {
        self.db.signing_keys(realm)
    }

    fn rotate_signing_key(&self, realm: &str, alg: Alg, now: i64) -> Result<KeyInfo> {
        self.db.rotate_signing_key(realm, alg, now)
    }

    fn jwks(&self, realm: &str) -> Result<Value> {
        self.db.jwks(realm)
    }

    fn openid_configuration(&self, realm: &str) -> Result<Value> {
        self.db.openid_configuration(realm)
    }

    /// Sessions and tokens are checked against the database's user record
    /// at every step, so there is nothing to mirror.
    fn lifecycle_applied(&self, _: &str, _: &User, _: LifecycleAction) -> Result<()> {
        Ok(())
    }
}
