//! A realm's public login endpoints: no admin authorization (the realm's
//! identity provider authenticates), and a challenge answered that changed
//! the user's state (verify, complete-password-reset) is published.

use super::Service;
use crate::domain::error::Result;
use crate::ports::identity::{ChallengeAnswer, LoginResult};

impl Service {
    /// Start a login with a username (or email) and password.
    pub async fn login(
        &self,
        realm: &str,
        username: &str,
        password: &str,
        client_id: Option<&str>,
    ) -> Result<LoginResult> {
        let idp = self.identity_of(realm).await?;
        self.identity_result(
            idp.login(realm, username, password, client_id, self.now())
                .await,
        )
    }

    /// Answer a login challenge.
    pub async fn respond(
        &self,
        realm: &str,
        answer: &ChallengeAnswer,
        client_id: Option<&str>,
    ) -> Result<LoginResult> {
        let idp = self.identity_of(realm).await?;
        let result = self.identity_result(idp.respond(realm, answer, client_id, self.now()).await);
        // An answer may have made the user Active: publish what it changed
        // (nothing pending is a no-op).
        if result.is_ok() {
            let r = realm.to_owned();
            if self.repo.read(move |tx| tx.pending_count(&r)).await? > 0 {
                self.changed(realm).await;
            }
        }
        result
    }

    /// Set a new password with a reset code (no admin authorization: the
    /// code is the proof). A required reset is then complete, and the
    /// change is published.
    pub async fn confirm_password_reset(
        &self,
        realm: &str,
        login: &str,
        code: &str,
        new_password: &str,
    ) -> Result<()> {
        let idp = self.identity_of(realm).await?;
        self.identity_result(
            idp.confirm_password_reset(realm, login, code, new_password, self.now())
                .await,
        )?;
        self.changed(realm).await;
        Ok(())
    }
}
