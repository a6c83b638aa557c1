//! Users: creation, attributes, search, the lifecycle actions (with the
//! identity provider told in the safe order), credentials, memberships.

use super::{Caller, Service};
use crate::domain::admin::AdminAction;
use crate::domain::error::{Error, Result};
use crate::domain::group::Kind;
use crate::domain::policy::parse_schema;
use crate::domain::user::{
    NewUser, User, UserPage, UserQuery, canonical, encode_cursor, merge_attrs, new_user,
};
use crate::ports::identity::{TotpEnrollment, VerificationCode};
use crate::ports::repository::{Change, Taken};
use pdp_core::{LifecycleAction, Memory};
use serde_json::{Map, Value};

/// Refuse a user whose id, email or username is taken in the realm.
fn refuse_taken(tx: &mut dyn crate::ports::repository::Tx, realm: &str, user: &User) -> Result<()> {
    match tx.user_taken(realm, &user.id, &user.email, &user.username)? {
        None => Ok(()),
        Some(taken) => {
            let (kind, id) = match taken {
                Taken::Id => ("user", user.id.clone()),
                Taken::Email => ("user with email", user.email.clone()),
                Taken::Username => ("user with username", user.username.clone()),
            };
            Err(Error::AlreadyExists { kind, id })
        }
    }
}

impl Service {
    /// Create a user in state `Created`. A realm whose identity provider
    /// keeps its own directory (Cognito) gets the user there first, and
    /// the user's id is the one the provider gave (the token `sub`); if
    /// storing them fails after that, the provider is asked to undo it.
    pub async fn create_user(&self, caller: &Caller, realm: &str, new: &NewUser) -> Result<User> {
        self.authorize(caller, AdminAction::UserCreate, Some(realm))
            .await?;
        let now = self.now();
        let fresh = crate::random::uuid_v4()?;
        let record = self.realm_record(realm).await?;
        let idp = self.identities.of(&record)?;
        // Checked before the provider is asked, so a refused user is
        // never created there.
        let (r, n) = (realm.to_owned(), new.clone());
        let mut user = self
            .repo
            .read(move |tx| {
                let schema = parse_schema(&tx.current_schema_text(&r)?)?;
                let user = new_user(&r, &n, &schema, fresh, now)?;
                refuse_taken(tx, &r, &user)?;
                Ok(user)
            })
            .await?;
        let remote = self.identity_result(idp.create_user(&record, &user).await)?;
        if let Some(id) = remote.clone() {
            if new.id.as_ref().is_some_and(|asked| *asked != id) {
                // Best effort: the error below is what the caller needs.
                let _ = idp.discard_user(&record, &user).await;
                return Err(Error::BadRequest(format!(
                    "realm {realm:?}'s identity provider assigns user ids; an id cannot be chosen"
                )));
            }
            user.id = id;
        }
        let (r, u) = (realm.to_owned(), user.clone());
        let stored = self
            .repo
            .write(move |tx| {
                tx.live_realm(&r)?;
                refuse_taken(tx, &r, &u)?;
                tx.insert_user(&r, &u, &Memory::default(), None)?;
                tx.record_change(&r, Change::User(u.id.clone()), now)?;
                Ok(u)
            })
            .await;
        let user = match stored {
            Ok(user) => user,
            Err(e) => {
                if remote.is_some()
                    && let Err(undo) = idp.discard_user(&record, &user).await
                {
                    tracing::warn!(realm, user = %user.id, error = %undo,
                        "a user created at the identity provider was not stored and not removed there");
                }
                return Err(e);
            }
        };
        self.changed(realm).await;
        Ok(user)
    }

    /// A user by id.
    pub async fn user(&self, caller: &Caller, realm: &str, id: &str) -> Result<User> {
        self.authorize(caller, AdminAction::UserRead, Some(realm))
            .await?;
        let (r, id) = (realm.to_owned(), id.to_owned());
        self.repo
            .read(move |tx| {
                tx.live_realm(&r)?;
                tx.user(&r, &id)
            })
            .await
    }

    /// Search users: by email or username prefix (case-insensitive) or by
    /// state, ordered by that key then id. Pagination is keyset-based: a
    /// cursor names the last row returned, so users created or deleted
    /// between pages never shift the rest (no row is skipped or repeated).
    pub async fn search_users(
        &self,
        caller: &Caller,
        realm: &str,
        q: &UserQuery,
    ) -> Result<UserPage> {
        self.authorize(caller, AdminAction::UserList, Some(realm))
            .await?;
        let search = q.to_search()?;
        let r = realm.to_owned();
        self.repo
            .read(move |tx| {
                tx.live_realm(&r)?;
                let rows = tx.search_users(&r, &search)?;
                let limit = search.limit as usize;
                let next = if rows.len() > limit {
                    rows.get(limit - 1).map(|(id, k)| encode_cursor(k, id))
                } else {
                    None
                };
                let users = rows
                    .iter()
                    .take(limit)
                    .map(|(id, _)| tx.user(&r, id))
                    .collect::<Result<_>>()?;
                Ok(UserPage { users, next })
            })
            .await
    }

    /// Merge `patch` into the user's attributes (`null` removes one) and
    /// validate the result against the schema; nothing changes if it fails.
    pub async fn update_user_attrs(
        &self,
        caller: &Caller,
        realm: &str,
        id: &str,
        patch: &Map<String, Value>,
    ) -> Result<User> {
        self.authorize(caller, AdminAction::UserUpdate, Some(realm))
            .await?;
        let now = self.now();
        let (r, id, patch) = (realm.to_owned(), id.to_owned(), patch.clone());
        let user = self
            .repo
            .write(move |tx| {
                let schema = parse_schema(&tx.current_schema_text(&r)?)?;
                let mut user = tx.user(&r, &id)?;
                merge_attrs(&mut user.attrs, &patch);
                let record = canonical(&user, &schema, &r)?;
                tx.set_user_attrs(&r, &id, &record.attrs, now)?;
                tx.record_change(&r, Change::User(id.clone()), now)?;
                tx.user(&r, &id)
            })
            .await?;
        self.changed(realm).await;
        Ok(user)
    }

    /// Apply a lifecycle action. Illegal transitions are refused
    /// (`Error::Lifecycle`) and change nothing; revoking actions set
    /// `tokens_valid_after` to now. Revoking actions are published before
    /// the identity provider follows; enabling ones are committed only
    /// after it did (its failure refuses the action and changes nothing):
    /// a crash in between never leaves more access than intended.
    pub async fn lifecycle(
        &self,
        caller: &Caller,
        realm: &str,
        id: &str,
        action: LifecycleAction,
    ) -> Result<User> {
        self.authorize(caller, AdminAction::of_lifecycle(action), Some(realm))
            .await?;
        let now = self.now();
        let idp = self.identity_of(realm).await?;
        if action.revokes_tokens() {
            let (r, i) = (realm.to_owned(), id.to_owned());
            let user = self
                .repo
                .write(move |tx| tx.lifecycle(&r, &i, action, now))
                .await?;
            self.changed(realm).await;
            // The deny is committed and published: the action is done. A
            // provider that does not follow (the user still enabled there,
            // refresh tokens alive) is logged and counted (`/metrics`).
            // TODO(issue 17): retry it from a durable outbox written in the
            // change's transaction; until then `reconcile` (to come) or the
            // same action's mirror by hand repairs it.
            if let Err(e) = self.identity_result(idp.lifecycle_applied(realm, &user, action).await)
            {
                tracing::warn!(realm, user = id, action = action.as_str(), error = %e,
                    "the identity provider did not follow a published revocation");
            }
            Ok(user)
        } else {
            // Enabling: the provider first, on the user as they are, once
            // the table allows the action; if it fails nothing changes.
            let (r, i) = (realm.to_owned(), id.to_owned());
            let before = self
                .repo
                .read(move |tx| {
                    tx.live_realm(&r)?;
                    let (state, memory) = tx.user_state(&r, &i)?;
                    state.apply(action, memory)?;
                    tx.user(&r, &i)
                })
                .await?;
            self.identity_result(idp.lifecycle_applied(realm, &before, action).await)?;
            let (r, i) = (realm.to_owned(), id.to_owned());
            let user = self
                .repo
                .write(move |tx| tx.lifecycle(&r, &i, action, now))
                .await?;
            self.changed(realm).await;
            Ok(user)
        }
    }

    /// Set a user's password (checked against the rules); every session of
    /// theirs ends. `temporary`: a new one is required at the next login.
    pub async fn set_password(
        &self,
        caller: &Caller,
        realm: &str,
        id: &str,
        password: &str,
        temporary: bool,
    ) -> Result<()> {
        self.authorize(caller, AdminAction::UserSetPassword, Some(realm))
            .await?;
        let idp = self.identity_of(realm).await?;
        let set = self.identity_result(
            idp.set_password(realm, id, password, temporary, self.now())
                .await,
        );
        // Published even if the provider failed after ending the user's
        // sessions (a remote one signs out after the revocation commits).
        self.changed(realm).await;
        set
    }

    /// Issue a password-reset code to an Active user or one who must reset
    /// their password (15 minutes, 5 wrong answers). The caller delivers
    /// it; the user sets a new password with it at
    /// [`Service::confirm_password_reset`].
    pub async fn start_password_reset(
        &self,
        caller: &Caller,
        realm: &str,
        id: &str,
    ) -> Result<VerificationCode> {
        self.authorize(caller, AdminAction::UserSetPassword, Some(realm))
            .await?;
        let idp = self.identity_of(realm).await?;
        self.identity_result(idp.start_password_reset(realm, id, self.now()).await)
    }

    /// Send a Created or Unverified user a new email verification code (a
    /// Created user becomes Unverified). The caller delivers the code.
    pub async fn start_verification(
        &self,
        caller: &Caller,
        realm: &str,
        id: &str,
    ) -> Result<VerificationCode> {
        self.authorize(caller, AdminAction::UserInvite, Some(realm))
            .await?;
        let idp = self.identity_of(realm).await?;
        let code = self.identity_result(idp.start_verification(realm, id, self.now()).await)?;
        self.changed(realm).await;
        Ok(code)
    }

    /// Start TOTP enrolment for a user (the secret is shown once).
    pub async fn totp_enroll(
        &self,
        caller: &Caller,
        realm: &str,
        id: &str,
    ) -> Result<TotpEnrollment> {
        self.authorize(caller, AdminAction::UserUpdate, Some(realm))
            .await?;
        let idp = self.identity_of(realm).await?;
        self.identity_result(idp.totp_enroll(realm, id).await)
    }

    /// Confirm TOTP enrolment with a current code.
    pub async fn totp_confirm(
        &self,
        caller: &Caller,
        realm: &str,
        id: &str,
        code: &str,
    ) -> Result<()> {
        self.authorize(caller, AdminAction::UserUpdate, Some(realm))
            .await?;
        let idp = self.identity_of(realm).await?;
        self.identity_result(idp.totp_confirm(realm, id, code, self.now()).await)
    }

    /// Remove a user's TOTP.
    pub async fn totp_remove(&self, caller: &Caller, realm: &str, id: &str) -> Result<()> {
        self.authorize(caller, AdminAction::UserUpdate, Some(realm))
            .await?;
        let idp = self.identity_of(realm).await?;
        self.identity_result(idp.totp_remove(realm, id).await)
    }

    /// Add a user to a group (idempotent) or, with `add = false`, remove
    /// them from it.
    pub async fn set_user_group(
        &self,
        caller: &Caller,
        realm: &str,
        user: &str,
        group: &str,
        add: bool,
    ) -> Result<User> {
        self.authorize(caller, AdminAction::GroupMembers, Some(realm))
            .await?;
        self.link_user(realm, user, Kind::Group, group, add).await
    }

    /// Assign a role to a user (idempotent) or, with `add = false`, take it.
    pub async fn set_user_role(
        &self,
        caller: &Caller,
        realm: &str,
        user: &str,
        role: &str,
        add: bool,
    ) -> Result<User> {
        self.authorize(caller, AdminAction::RoleUpdate, Some(realm))
            .await?;
        self.link_user(realm, user, Kind::Role, role, add).await
    }

    async fn link_user(
        &self,
        realm: &str,
        user: &str,
        kind: Kind,
        target: &str,
        add: bool,
    ) -> Result<User> {
        let now = self.now();
        let (r, u, t) = (realm.to_owned(), user.to_owned(), target.to_owned());
        let (changed, user) = self
            .repo
            .write(move |tx| {
                tx.live_realm(&r)?;
                tx.user(&r, &u)?;
                if !tx.node_exists(&r, kind, &t)? {
                    return Err(Error::not_found(kind.name(), t.clone()));
                }
                let changed = tx.set_user_link(&r, &u, kind, &t, add)?;
                if !changed && !add {
                    return Err(Error::NotFound {
                        kind: "membership",
                        id: format!("{u} -> {} {t}", kind.name()),
                    });
                }
                if changed {
                    tx.touch_user(&r, &u, now)?;
                    tx.record_change(&r, Change::User(u.clone()), now)?;
                }
                Ok((changed, tx.user(&r, &u)?))
            })
            .await?;
        if changed {
            self.changed(realm).await;
        }
        if changed && kind == Kind::Group {
            // Committed and published; a provider that does not follow is
            // logged and counted as for a revocation (TODO(issue 17): the
            // durable outbox retries both).
            let idp = self.identity_of(realm).await?;
            if let Err(e) = self.identity_result(idp.groups_changed(realm, &user).await) {
                tracing::warn!(realm, user = user.id, group = target, error = %e,
                    "the identity provider did not follow a group membership change");
            }
        }
        Ok(user)
    }
}
