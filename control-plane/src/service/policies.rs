//! Policies, templates and links, the versioned schema, resource entities
//! and forward-auth routes: each change validated with the rest of the
//! realm before it is committed.

use super::{Caller, Service};
use crate::domain::admin::AdminAction;
use crate::domain::error::{Error, Result};
use crate::domain::policy::{
    Link, PolicyBody, PolicyInput, SchemaVersion, StoredPolicy, check_body, check_resources,
    parse_schema, validate,
};
use crate::domain::realm::check_id;
use crate::domain::routes::{check_authzen_types, check_routes};
use crate::domain::user::canonical;
use crate::ports::repository::Change;
use serde_json::Value;

impl Service {
    /// Create a policy or template; validated with the rest of the realm.
    pub async fn create_policy(
        &self,
        caller: &Caller,
        realm: &str,
        id: &str,
        input: &PolicyInput,
    ) -> Result<StoredPolicy> {
        self.put_policy_as(caller, realm, id, input, Some(false))
            .await
    }

    /// Replace a policy's text; a template with links cannot become a
    /// static policy.
    pub async fn update_policy(
        &self,
        caller: &Caller,
        realm: &str,
        id: &str,
        input: &PolicyInput,
    ) -> Result<StoredPolicy> {
        self.put_policy_as(caller, realm, id, input, Some(true))
            .await
    }

    /// Create or replace a policy, whichever applies.
    pub async fn put_policy(
        &self,
        caller: &Caller,
        realm: &str,
        id: &str,
        input: &PolicyInput,
    ) -> Result<StoredPolicy> {
        self.put_policy_as(caller, realm, id, input, None).await
    }

    /// `exists`: `Some(false)` must be new, `Some(true)` must exist,
    /// `None` either.
    async fn put_policy_as(
        &self,
        caller: &Caller,
        realm: &str,
        id: &str,
        input: &PolicyInput,
        exists: Option<bool>,
    ) -> Result<StoredPolicy> {
        self.authorize(caller, AdminAction::PolicyWrite, Some(realm))
            .await?;
        let template = check_body(id, &input.body)?;
        let now = self.now();
        let (r, id, input) = (realm.to_owned(), id.to_owned(), input.clone());
        let stored = self
            .repo
            .write(move |tx| {
                let mut c = tx.content(&r)?;
                let old = tx.policies(&r)?.into_iter().find(|p| p.id == id);
                match (exists, &old) {
                    (Some(false), Some(_)) => {
                        return Err(Error::AlreadyExists { kind: "policy", id });
                    }
                    (Some(false) | None, None) if c.links.iter().any(|l| l.id == id) => {
                        return Err(Error::AlreadyExists { kind: "policy", id });
                    }
                    (Some(true), None) => return Err(Error::not_found("policy", id)),
                    _ => {}
                }
                let body = PolicyBody {
                    id: id.clone(),
                    template,
                    body: input.body.clone(),
                };
                match c.policies.iter_mut().find(|p| p.id == id) {
                    Some(slot) => *slot = body,
                    None => c.policies.push(body),
                }
                validate(&r, &c)?;
                let stored = StoredPolicy {
                    id: id.clone(),
                    template,
                    body: input.body,
                    description: input.description,
                    created_at: old.as_ref().map_or(now, |o| o.created_at),
                    updated_at: now,
                };
                tx.put_policy(&r, &stored)?;
                tx.record_change(&r, Change::Content, now)?;
                Ok(stored)
            })
            .await?;
        self.changed(realm).await;
        Ok(stored)
    }

    /// Delete a policy; a template that still has links is refused (409).
    pub async fn delete_policy(&self, caller: &Caller, realm: &str, id: &str) -> Result<()> {
        self.authorize(caller, AdminAction::PolicyDelete, Some(realm))
            .await?;
        let now = self.now();
        let (r, id) = (realm.to_owned(), id.to_owned());
        self.repo
            .write(move |tx| {
                let c = tx.content(&r)?;
                if !c.policies.iter().any(|p| p.id == id) {
                    return Err(Error::not_found("policy", id));
                }
                let linked: Vec<&str> = c
                    .links
                    .iter()
                    .filter(|l| l.template_id == id)
                    .map(|l| l.id.as_str())
                    .collect();
                if !linked.is_empty() {
                    return Err(Error::Conflict(format!(
                        "template {id:?} still has links: {}",
                        linked.join(", ")
                    )));
                }
                tx.delete_policy(&r, &id)?;
                tx.record_change(&r, Change::Content, now)
            })
            .await?;
        self.changed(realm).await;
        Ok(())
    }

    /// A policy or template.
    pub async fn policy(&self, caller: &Caller, realm: &str, id: &str) -> Result<StoredPolicy> {
        self.policies(caller, realm)
            .await?
            .into_iter()
            .find(|p| p.id == id)
            .ok_or_else(|| Error::not_found("policy", id))
    }

    /// Every policy and template of the realm, by id.
    pub async fn policies(&self, caller: &Caller, realm: &str) -> Result<Vec<StoredPolicy>> {
        self.authorize(caller, AdminAction::PolicyRead, Some(realm))
            .await?;
        let r = realm.to_owned();
        self.repo
            .read(move |tx| {
                tx.live_realm(&r)?;
                tx.policies(&r)
            })
            .await
    }

    /// Link a template; validated like a policy.
    pub async fn create_link(&self, caller: &Caller, realm: &str, link: &Link) -> Result<Link> {
        self.authorize(caller, AdminAction::PolicyWrite, Some(realm))
            .await?;
        check_id("policy", &link.id)?;
        let now = self.now();
        let (r, link) = (realm.to_owned(), link.clone());
        let link = self
            .repo
            .write(move |tx| {
                let mut c = tx.content(&r)?;
                if c.has_policy_id(&link.id) {
                    return Err(Error::AlreadyExists {
                        kind: "policy",
                        id: link.id.clone(),
                    });
                }
                if !c
                    .policies
                    .iter()
                    .any(|p| p.id == link.template_id && p.template)
                {
                    return Err(Error::not_found("template", link.template_id.clone()));
                }
                c.links.push(link.clone());
                validate(&r, &c)?;
                tx.insert_link(&r, &link, now)?;
                tx.record_change(&r, Change::Content, now)?;
                Ok(link)
            })
            .await?;
        self.changed(realm).await;
        Ok(link)
    }

    /// Remove a template link.
    pub async fn delete_link(&self, caller: &Caller, realm: &str, id: &str) -> Result<()> {
        self.authorize(caller, AdminAction::PolicyDelete, Some(realm))
            .await?;
        let now = self.now();
        let (r, id) = (realm.to_owned(), id.to_owned());
        self.repo
            .write(move |tx| {
                tx.live_realm(&r)?;
                if !tx.delete_link(&r, &id)? {
                    return Err(Error::not_found("link", id));
                }
                tx.record_change(&r, Change::Content, now)
            })
            .await?;
        self.changed(realm).await;
        Ok(())
    }

    /// Every template link of the realm.
    pub async fn links(&self, caller: &Caller, realm: &str) -> Result<Vec<Link>> {
        self.authorize(caller, AdminAction::PolicyRead, Some(realm))
            .await?;
        let r = realm.to_owned();
        self.repo
            .read(move |tx| {
                tx.live_realm(&r)?;
                tx.links(&r)
            })
            .await
    }

    /// Submit a new schema version. Refused (422) unless every policy,
    /// link, entity and user of the realm validates against it.
    pub async fn put_schema(
        &self,
        caller: &Caller,
        realm: &str,
        text: &str,
    ) -> Result<SchemaVersion> {
        self.authorize(caller, AdminAction::SchemaWrite, Some(realm))
            .await?;
        let schema = parse_schema(text)?;
        let now = self.now();
        let (r, text) = (realm.to_owned(), text.to_owned());
        let version = self
            .repo
            .write(move |tx| {
                let mut c = tx.content(&r)?;
                c.schema = text.clone();
                validate(&r, &c)?;
                let mut bad = Vec::new();
                let mut check = |u: pdp_core::UserRecord| {
                    let user = crate::domain::user::User {
                        id: u.id,
                        username: u.username,
                        email: u.email,
                        state: u.state,
                        attrs: u.attrs,
                        groups: u.groups,
                        roles: u.roles,
                        tokens_valid_after: u.tokens_valid_after,
                        created_at: 0,
                        updated_at: u.updated_at,
                    };
                    if let Err(Error::Invalid { diagnostics, .. }) = canonical(&user, &schema, &r) {
                        bad.extend(diagnostics.into_iter().map(|mut d| {
                            d.subject = format!("user {}", user.id);
                            d
                        }));
                    }
                    Ok(bad.len() < 100)
                };
                tx.for_each_user(&r, &mut check)?;
                if !bad.is_empty() {
                    return Err(Error::Invalid {
                        what: "schema".into(),
                        diagnostics: bad,
                    });
                }
                let version = tx.insert_schema(&r, &text, now)?;
                tx.record_change(&r, Change::Content, now)?;
                Ok(SchemaVersion {
                    version,
                    text,
                    created_at: now,
                })
            })
            .await?;
        self.changed(realm).await;
        Ok(version)
    }

    /// A schema version (the current one when `version` is `None`).
    pub async fn schema(
        &self,
        caller: &Caller,
        realm: &str,
        version: Option<i64>,
    ) -> Result<SchemaVersion> {
        self.authorize(caller, AdminAction::SchemaRead, Some(realm))
            .await?;
        let r = realm.to_owned();
        self.repo
            .read(move |tx| {
                tx.live_realm(&r)?;
                tx.schema(&r, version)?.ok_or_else(|| {
                    Error::not_found(
                        "schema version",
                        version.map_or("current".into(), |v| v.to_string()),
                    )
                })
            })
            .await
    }

    /// Replace the realm's resource entities (Cedar JSON entity list; not
    /// `User`, `Group` or `Role`, which come from the directory).
    pub async fn put_resources(
        &self,
        caller: &Caller,
        realm: &str,
        entities: &Value,
    ) -> Result<()> {
        self.authorize(caller, AdminAction::EntitiesWrite, Some(realm))
            .await?;
        check_resources(entities)?;
        let now = self.now();
        let (r, entities) = (realm.to_owned(), entities.clone());
        self.repo
            .write(move |tx| {
                let mut c = tx.content(&r)?;
                c.resources = entities.clone();
                validate(&r, &c)?;
                tx.put_resources(&r, &entities)?;
                tx.record_change(&r, Change::Content, now)
            })
            .await?;
        self.changed(realm).await;
        Ok(())
    }

    /// The realm's forward-auth route table (`{"routes": []}` when none).
    pub async fn routes(&self, caller: &Caller, realm: &str) -> Result<Value> {
        self.authorize(caller, AdminAction::RoutesRead, Some(realm))
            .await?;
        let r = realm.to_owned();
        let bytes = self
            .repo
            .read(move |tx| {
                tx.live_realm(&r)?;
                tx.routes(&r)
            })
            .await?;
        match bytes {
            Some(b) => serde_json::from_slice(&b)
                .map_err(|e| Error::Internal(format!("stored routes: {e}"))),
            None => Ok(serde_json::json!({"routes": []})),
        }
    }

    /// Replace the realm's forward-auth route table, checked by the parser
    /// decision points load it with; published as `routes.json`.
    pub async fn put_routes(&self, caller: &Caller, realm: &str, table: &Value) -> Result<Value> {
        self.authorize(caller, AdminAction::RoutesWrite, Some(realm))
            .await?;
        let bytes = check_routes(table)?;
        let now = self.now();
        let r = realm.to_owned();
        self.repo
            .write(move |tx| {
                tx.live_realm(&r)?;
                tx.put_routes(&r, Some(&bytes))?;
                tx.record_change(&r, Change::Content, now)
            })
            .await?;
        self.changed(realm).await;
        Ok(table.clone())
    }

    /// The realm's AuthZEN type names (`{"types": {}}` when none).
    pub async fn authzen_types(&self, caller: &Caller, realm: &str) -> Result<Value> {
        self.authorize(caller, AdminAction::SchemaRead, Some(realm))
            .await?;
        let r = realm.to_owned();
        let bytes = self
            .repo
            .read(move |tx| {
                tx.live_realm(&r)?;
                tx.authzen_types(&r)
            })
            .await?;
        match bytes {
            Some(b) => serde_json::from_slice(&b)
                .map_err(|e| Error::Internal(format!("stored authzen types: {e}"))),
            None => Ok(serde_json::json!({"types": {}})),
        }
    }

    /// Replace the realm's AuthZEN type names (`{"types": {"user":
    /// "User"}}`: a PEP's name -> an entity type of the realm's schema),
    /// checked as decision points check them; published as
    /// `authzen.json`. They name the schema's types, so they are the
    /// schema's to read and write (`schema:read`, `schema:write`), and a
    /// schema change that drops a mapped type is refused.
    pub async fn put_authzen_types(
        &self,
        caller: &Caller,
        realm: &str,
        map: &Value,
    ) -> Result<Value> {
        self.authorize(caller, AdminAction::SchemaWrite, Some(realm))
            .await?;
        let bytes = check_authzen_types(map)?;
        let now = self.now();
        let r = realm.to_owned();
        self.repo
            .write(move |tx| {
                tx.live_realm(&r)?;
                let mut c = tx.content(&r)?;
                c.authzen = Some(bytes.clone());
                validate(&r, &c)?;
                tx.put_authzen_types(&r, Some(&bytes))?;
                tx.record_change(&r, Change::Content, now)
            })
            .await?;
        self.changed(realm).await;
        Ok(map.clone())
    }
}
