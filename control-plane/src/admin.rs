//! The product guards itself: every admin call is authenticated by a token
//! of the admin realm and authorized by that realm's Cedar policies through
//! `pdp-core`, exactly as an edge host decides for applications.
//!
//! The admin realm is an ordinary realm (its users, roles and policies are
//! managed with the same API) whose schema declares one action per admin
//! operation ([`ACTIONS`]) on a `Realm` resource. The request's context
//! carries the target realm's name, so a policy can confine a realm
//! administrator to the realms listed in their `managed_realms` attribute.

use crate::db::{Db, realm_version};
use crate::error::{Error, Result};
use pdp_core::manifest::member;
use pdp_core::source::BuildOptions;
use pdp_core::{Decision, EntityRef, Reason, Snapshot, TokenRequest};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Every admin operation, as the admin realm's Cedar action ids. Global
/// operations (on no particular realm) are those starting with `realm:`
/// except `realm:read` and `realm:delete`.
pub const ACTIONS: &[&str] = &[
    "realm:list",
    "realm:create",
    "realm:read",
    "realm:delete",
    "user:create",
    "user:read",
    "user:list",
    "user:update",
    "user:invite",
    "user:verify",
    "user:require_password_reset",
    "user:complete_password_reset",
    "user:suspend",
    "user:resume",
    "user:deactivate",
    "user:delete",
    "user:restore",
    "user:sign_out_everywhere",
    "user:set_password",
    "user:import",
    "group:create",
    "group:read",
    "group:update",
    "group:delete",
    "group:members",
    "role:create",
    "role:read",
    "role:update",
    "role:delete",
    "policy:read",
    "policy:write",
    "policy:delete",
    "schema:read",
    "schema:write",
    "entities:write",
    "key:rotate",
    "bundle:publish",
    "bundle:status",
];

/// The admin realm's schema: the reference `User`/`Group`/`Role` shape plus
/// `managed_realms`, a `Realm` resource, and one action per operation, all
/// members of `realm-scoped` except the global ones.
pub fn admin_schema() -> String {
    let mut s = String::from(
        "// Gatehouse admin realm: who may administer the control plane.\n\
         type AdminContext = {\n  realm?: String,\n  mfa?: Bool,\n  token_use?: String,\n  \
         scope?: String,\n  client_id?: String,\n};\n\
         entity Role;\nentity Group in [Group, Role] { name?: String };\n\
         entity User in [Group, Role] {\n  state: String,\n  email: String,\n  realm: String,\n  \
         managed_realms?: Set<String>,\n};\n\
         entity Realm;\n\
         action \"realm-scoped\";\n",
    );
    for a in ACTIONS {
        let scoped = if is_global(a) {
            ""
        } else {
            " in [\"realm-scoped\"]"
        };
        s.push_str(&format!(
            "action \"{a}\"{scoped} appliesTo {{ principal: User, resource: Realm, context: AdminContext }};\n"
        ));
    }
    s
}

/// Whether an action is about no particular realm.
pub fn is_global(action: &str) -> bool {
    matches!(action, "realm:list" | "realm:create")
}

/// The admin realm's starting policies (ids, bodies).
pub const ADMIN_POLICIES: &[(&str, &str)] = &[
    (
        "admins-do-everything",
        "permit (principal in Role::\"admin\", action, resource);",
    ),
    (
        "realm-admins-manage-their-realms",
        "permit (principal in Role::\"realm-admin\", action in Action::\"realm-scoped\", resource)\n\
         when { principal has managed_realms && context has realm && principal.managed_realms.contains(context.realm) };",
    ),
];

/// Who an admin call is made by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The admin realm.
    pub realm: String,
    /// The user's id (token `sub`).
    pub user_id: String,
}

/// Decides admin calls with the admin realm's policies. The realm is
/// compiled into a `pdp-core` snapshot once per change of it.
#[derive(Debug)]
pub struct CedarAdmin {
    db: Arc<Db>,
    realm: String,
    cache: Mutex<Option<(i64, Arc<Snapshot>)>>,
}

impl CedarAdmin {
    /// Authorize with the policies of `admin_realm` in `db`.
    pub fn new(db: Arc<Db>, admin_realm: &str) -> CedarAdmin {
        CedarAdmin {
            db,
            realm: admin_realm.to_owned(),
            cache: Mutex::new(None),
        }
    }

    /// The admin realm compiled, rebuilt when it changed since last time.
    fn snapshot(&self, now: i64) -> Result<Arc<Snapshot>> {
        let version = self.db.read(|tx| realm_version(tx, &self.realm))?;
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((v, s)) = cache.as_ref()
            && *v == version
        {
            return Ok(s.clone());
        }
        let content = self.db.realm_content(&self.realm)?;
        let mut files: BTreeMap<String, Vec<u8>> = content.members;
        if let Some(identity) = &content.identity {
            files.insert(
                member::IDENTITY.to_owned(),
                serde_json::to_vec(identity).map_err(|e| Error::Internal(e.to_string()))?,
            );
        }
        let options = BuildOptions {
            realm: self.realm.clone(),
            revision: u64::try_from(version).unwrap_or(0) + 1,
            created_at: now,
            gzip: false,
        };
        let (_, snapshot) = pdp_core::source::build_and_load(&files, &options, None)
            .map_err(|e| Error::Internal(format!("admin realm does not compile: {e}")))?;
        let snapshot = Arc::new(snapshot);
        *cache = Some((version, snapshot.clone()));
        Ok(snapshot)
    }

    /// Verify `bearer` (an ID or access token of the admin realm) and
    /// decide whether its subject may perform `action` on `realm` (`None`
    /// for global operations). A missing or refused token, or a user who is
    /// not Active, is `Unauthenticated`; a policy denial is `Forbidden`.
    pub fn authorize(
        &self,
        bearer: Option<&str>,
        action: &str,
        realm: Option<&str>,
        now: i64,
    ) -> Result<Principal> {
        let token = bearer
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Error::Unauthenticated("a bearer token is required".into()))?;
        let snapshot = match self.snapshot(now) {
            Ok(s) => s,
            Err(Error::NotFound { .. }) => {
                return Err(Error::Unauthenticated(
                    "the admin realm does not exist; run `control-plane bootstrap`".into(),
                ));
            }
            Err(e) => return Err(e),
        };
        let target = realm.unwrap_or("*");
        let request = TokenRequest {
            token: token.to_owned(),
            action: EntityRef::new("Action", action),
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
        let sub = verified.sub;
        match (answer.decision, &answer.reason) {
            (Decision::Allow, _) => Ok(Principal {
                realm: self.realm.clone(),
                user_id: sub,
            }),
            (_, Reason::Token(why)) => Err(Error::Unauthenticated(format!("token refused: {why}"))),
            (_, Reason::UserState(s)) => Err(Error::Unauthenticated(format!("user is {s}"))),
            (_, Reason::UnknownUser) => Err(Error::Unauthenticated("unknown user".into())),
            (_, reason) => Err(Error::Forbidden(format!("{action} on {target}: {reason}"))),
        }
    }
}

impl Db {
    /// Create the admin realm (its schema, the `admin` and `realm-admin`
    /// roles and the starting policies) if it is missing, and its first
    /// administrator: an Active user with the `admin` role and this
    /// password. Refused once the realm has an administrator, so it cannot
    /// serve as a way around the admin API.
    pub fn bootstrap(
        &self,
        admin_realm: &str,
        issuer_base: &str,
        username: &str,
        email: &str,
        password: &str,
        now: i64,
    ) -> Result<crate::user::User> {
        crate::identity::password::check(password, &[username, email])?;
        match self.realm(admin_realm) {
            Ok(_) => {}
            Err(Error::NotFound { .. }) => {
                self.create_realm(
                    &crate::realm::NewRealm {
                        name: admin_realm.into(),
                        display_name: Some("Gatehouse administration".into()),
                        schema: Some(admin_schema()),
                    },
                    issuer_base,
                    now,
                )?;
            }
            Err(e) => return Err(e),
        }
        for role in ["admin", "realm-admin"] {
            let new = crate::group::NewNode {
                id: role.into(),
                description: String::new(),
            };
            match self.create_node(admin_realm, crate::group::Kind::Role, &new, now) {
                Ok(_) | Err(Error::AlreadyExists { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        for (id, body) in ADMIN_POLICIES {
            let input = crate::policy::PolicyInput {
                body: (*body).into(),
                description: "created by bootstrap".into(),
            };
            match self.create_policy(admin_realm, id, &input, now) {
                Ok(_) | Err(Error::AlreadyExists { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let has_admin: bool = self.read(|tx| {
            Ok(tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM user_roles WHERE realm = ?1 AND role_id = 'admin')",
                [admin_realm],
                |r| r.get(0),
            )?)
        })?;
        if has_admin {
            return Err(Error::Conflict(format!(
                "realm {admin_realm:?} already has an administrator; use the admin API"
            )));
        }
        let user = self.create_user(
            admin_realm,
            &crate::user::NewUser {
                username: Some(username.into()),
                email: email.into(),
                ..crate::user::NewUser::default()
            },
            now,
        )?;
        self.set_password(admin_realm, &user.id, password, false, now)?;
        self.lifecycle(
            admin_realm,
            &user.id,
            pdp_core::LifecycleAction::Verify,
            now,
        )?;
        self.assign_user_role(admin_realm, &user.id, "admin", now)?;
        self.user(admin_realm, &user.id)
    }
}
