//! The one authorization step of every admin call, and the bootstrap of
//! the admin realm. The admin realm is an ordinary realm (its users, roles
//! and policies are managed with the same use cases) whose schema declares
//! one action per [`AdminAction`] on a `Realm` resource; the request's
//! context carries the target realm's name, so a policy can confine a
//! realm administrator to the realms in their `managed_realms` attribute.

use super::{Caller, Service};
use crate::domain::admin::{ADMIN_POLICIES, ADMIN_ROLES, AdminAction, admin_schema};
use crate::domain::error::{Error, Result};
use crate::domain::group::{Kind, NewNode};
use crate::domain::policy::PolicyInput;
use crate::domain::realm::NewRealm;
use crate::domain::user::{NewUser, User};
use pdp_core::manifest::member;
use pdp_core::source::BuildOptions;
use pdp_core::{Decision, EntityRef, Reason, Snapshot, TokenRequest};
use std::sync::Arc;

/// Who performed an admin operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// The operator at the command line.
    Operator,
    /// A user of the admin realm.
    Admin {
        /// The admin realm.
        realm: String,
        /// The user's id (token `sub`).
        user_id: String,
    },
}

impl Service {
    /// The admin realm compiled, rebuilt when it changed since last time.
    async fn admin_snapshot(&self, now: i64) -> Result<Arc<Snapshot>> {
        let realm = self.settings.admin_realm.clone();
        let r = realm.clone();
        let version = self.repo.read(move |tx| tx.realm_version(&r)).await?;
        if let Some((v, s)) = self
            .admin_cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            && *v == version
        {
            return Ok(s.clone());
        }
        let (mut files, identity) = self.whole_content(&realm).await?;
        if let Some(identity) = &identity {
            files.insert(
                member::IDENTITY.to_owned(),
                serde_json::to_vec(identity).map_err(|e| Error::Internal(e.to_string()))?,
            );
        }
        let options = BuildOptions {
            realm: realm.clone(),
            revision: u64::try_from(version).unwrap_or(0) + 1,
            created_at: now,
            gzip: false,
        };
        let snapshot = tokio::task::spawn_blocking(move || {
            pdp_core::source::build_and_load(&files, &options, None)
                .map(|(_, s)| s)
                .map_err(|e| Error::Internal(format!("admin realm does not compile: {e}")))
        })
        .await
        .map_err(|e| Error::Internal(format!("admin realm build: {e}")))??;
        let snapshot = Arc::new(snapshot);
        *self.admin_cache.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((version, snapshot.clone()));
        Ok(snapshot)
    }

    /// An API caller's bearer token with the admin realm's snapshot that
    /// verifies it; `None` for the operator.
    async fn admin_token<'c>(
        &self,
        caller: &'c Caller,
        now: i64,
    ) -> Result<Option<(&'c str, Arc<Snapshot>)>> {
        let token = match caller {
            Caller::Operator => return Ok(None),
            Caller::Bearer(t) => t
                .as_deref()
                .filter(|t| !t.is_empty())
                .ok_or_else(|| Error::Unauthenticated("a bearer token is required".into()))?,
        };
        match self.admin_snapshot(now).await {
            Ok(s) => Ok(Some((token, s))),
            Err(Error::NotFound { .. }) => Err(Error::Unauthenticated(
                "the admin realm does not exist; run `control-plane bootstrap`".into(),
            )),
            Err(e) => Err(e),
        }
    }

    /// Whether `caller` is an administrator at all (a token the admin
    /// realm verifies), before any body is read; what it may do is
    /// [`Service::authorize`]'s question.
    pub async fn authenticate(&self, caller: &Caller) -> Result<()> {
        let now = self.now();
        let Some((token, snapshot)) = self.admin_token(caller, now).await? else {
            return Ok(());
        };
        snapshot
            .verify_token(token, now)
            .map(|_| ())
            .map_err(|why| Error::Unauthenticated(format!("token refused: {why}")))
    }

    /// The one authorization step: the operator may do everything; an API
    /// caller's bearer token (an ID or access token of the admin realm) is
    /// verified and its subject's request for `action` on `realm` (`None`
    /// for global operations) is decided by the admin realm's policies. A
    /// missing or refused token, or a user who is not Active, is
    /// `Unauthenticated`; a policy denial is `Forbidden`.
    pub(super) async fn authorize_at(
        &self,
        caller: &Caller,
        action: AdminAction,
        realm: Option<&str>,
        now: i64,
    ) -> Result<Actor> {
        let Some((token, snapshot)) = self.admin_token(caller, now).await? else {
            return Ok(Actor::Operator);
        };
        let target = realm.unwrap_or("*");
        let request = TokenRequest {
            token: token.to_owned(),
            action: EntityRef::new("Action", action.name()),
            resource: EntityRef::new("Realm", target),
            context: match realm {
                Some(r) => serde_json::json!({ "realm": r }),
                None => serde_json::json!({}),
            },
            entities: vec![],
        };
        // Verified once: the subject comes from the same verification the
        // decision uses.
        let verified = snapshot
            .verify_token(token, now)
            .map_err(|why| Error::Unauthenticated(format!("token refused: {why}")))?;
        let answer = snapshot
            .decide_verified(&verified, &request)
            .map_err(|e| Error::Internal(format!("admin decision: {e}")))?;
        match (answer.decision, &answer.reason) {
            (Decision::Allow, _) => Ok(Actor::Admin {
                realm: self.settings.admin_realm.clone(),
                user_id: verified.sub,
            }),
            (_, Reason::Token(why)) => Err(Error::Unauthenticated(format!("token refused: {why}"))),
            (_, Reason::UserState(s)) => Err(Error::Unauthenticated(format!("user is {s}"))),
            (_, Reason::UnknownUser) => Err(Error::Unauthenticated("unknown user".into())),
            (_, reason) => Err(Error::Forbidden(format!("{action} on {target}: {reason}"))),
        }
    }

    /// Widen an existing admin realm's schema to this build's when it lacks
    /// an admin action (the schema is written at bootstrap; a newer build
    /// with new operations would otherwise refuse them all, failing
    /// closed, on every deployment made before it). `true` when it was
    /// written. A schema that cannot be replaced (an administrator changed
    /// it so that the realm's users no longer fit this build's) is an
    /// error naming what is missing, and nothing is changed.
    pub async fn upgrade_admin_realm(&self) -> Result<bool> {
        let op = &Caller::Operator;
        let realm = self.settings.admin_realm.clone();
        let current = match self.schema(op, &realm, None).await {
            Ok(s) => s.text,
            Err(Error::NotFound { .. }) => return Ok(false),
            Err(e) => return Err(e),
        };
        let parsed = cedar_policy::Schema::from_cedarschema_str(&current)
            .map_err(|e| Error::Internal(format!("admin realm schema: {e}")))?
            .0;
        let missing: Vec<&str> = AdminAction::ALL
            .iter()
            .map(|a| a.name())
            .filter(|name| !parsed.actions().any(|uid| uid.id().unescaped() == *name))
            .collect();
        if missing.is_empty() {
            return Ok(false);
        }
        self.put_schema(op, &realm, &admin_schema())
            .await
            .map_err(|e| {
                Error::Conflict(format!(
                    "the admin realm {realm:?} lacks the admin actions {missing:?} and its schema                      cannot be replaced by this build's: {e}"
                ))
            })?;
        tracing::info!(
            realm,
            ?missing,
            "admin realm schema widened to this build's actions"
        );
        Ok(true)
    }

    /// Create the admin realm (its schema, the `admin` and `realm-admin`
    /// roles and the starting policies) if it is missing, and its first
    /// administrator: an Active user with the `admin` role and this
    /// password. Refused once the realm has an administrator, so it cannot
    /// serve as a way around the admin API. Operator only.
    pub async fn bootstrap(&self, username: &str, email: &str, password: &str) -> Result<User> {
        let op = &Caller::Operator;
        let realm = self.settings.admin_realm.clone();
        crate::domain::password::check(password, &[username, email])?;
        match self.realm(op, &realm).await {
            Ok(_) => {}
            Err(Error::NotFound { .. }) => {
                self.create_realm(
                    op,
                    &NewRealm {
                        name: realm.clone(),
                        display_name: Some("Gatehouse administration".into()),
                        schema: Some(admin_schema()),
                        ..NewRealm::default()
                    },
                )
                .await?;
            }
            Err(e) => return Err(e),
        }
        for role in ADMIN_ROLES {
            let new = NewNode {
                id: (*role).into(),
                description: String::new(),
            };
            match self.create_node(op, &realm, Kind::Role, &new).await {
                Ok(_) | Err(Error::AlreadyExists { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        for (id, body) in ADMIN_POLICIES {
            let input = PolicyInput {
                body: (*body).into(),
                description: "created by bootstrap".into(),
            };
            match self.create_policy(op, &realm, id, &input).await {
                Ok(_) | Err(Error::AlreadyExists { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let r = realm.clone();
        if self
            .repo
            .read(move |tx| tx.role_has_users(&r, "admin"))
            .await?
        {
            return Err(Error::Conflict(format!(
                "realm {realm:?} already has an administrator; use the admin API"
            )));
        }
        let user = self
            .create_user(
                op,
                &realm,
                &NewUser {
                    username: Some(username.into()),
                    email: email.into(),
                    ..NewUser::default()
                },
            )
            .await?;
        self.set_password(op, &realm, &user.id, password, false)
            .await?;
        self.lifecycle(op, &realm, &user.id, pdp_core::LifecycleAction::Verify)
            .await?;
        self.set_user_role(op, &realm, &user.id, "admin", true)
            .await
    }
}
