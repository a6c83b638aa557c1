//! Realms: creation (provisioned by the realm's identity provider),
//! listing, soft deletion with withdrawal of its bundles, token keys.

use super::{Caller, Service};
use crate::domain::admin::AdminAction;
use crate::domain::error::{Error, Result};
use crate::domain::policy::{StoredPolicy, parse_schema};
use crate::domain::realm::{
    ACTIVE_USERS_ONLY, ACTIVE_USERS_ONLY_ID, DEFAULT_SCHEMA, LOCAL_IDENTITY, NewRealm, Realm,
    check_realm_name,
};
use crate::ports::identity::{Alg, KeyInfo};
use crate::ports::repository::{Change, NewRealmRecord};
use serde_json::Value;

impl Service {
    /// Create a realm with its schema (version 1), the `active-users-only`
    /// policy, and its own bundle signing key; its issuer, app clients and
    /// first token key come from its identity provider.
    pub async fn create_realm(&self, caller: &Caller, new: &NewRealm) -> Result<Realm> {
        self.authorize(caller, AdminAction::RealmCreate, None)
            .await?;
        check_realm_name(&new.name)?;
        let schema = new
            .schema
            .clone()
            .unwrap_or_else(|| DEFAULT_SCHEMA.to_owned());
        parse_schema(&schema)?;
        let identity = self
            .identities
            .get(new.identity.as_deref().unwrap_or(LOCAL_IDENTITY))?;
        let n = new.name.clone();
        if self.repo.read(move |tx| tx.realm_exists(&n)).await? {
            return Err(Error::AlreadyExists {
                kind: "realm",
                id: new.name.clone(),
            });
        }
        let provisioned = self.identity_result(identity.provision(new).await)?;
        let now = self.now();
        let record = NewRealmRecord {
            name: new.name.clone(),
            display_name: new.display_name.clone().unwrap_or_else(|| new.name.clone()),
            issuer: provisioned.issuer,
            clients: provisioned.clients,
            identity: identity.name().to_owned(),
            bundle_seed: crate::random::bytes::<32>()?,
            created_at: now,
        };
        let setup = provisioned.setup;
        let issuer = record.issuer.clone();
        let stored = self
            .repo
            .write(move |tx| {
                if tx.realm_exists(&record.name)? {
                    return Err(Error::AlreadyExists {
                        kind: "realm",
                        id: record.name.clone(),
                    });
                }
                tx.insert_realm(&record)?;
                tx.insert_schema(&record.name, &schema, now)?;
                tx.put_policy(
                    &record.name,
                    &StoredPolicy {
                        id: ACTIVE_USERS_ONLY_ID.into(),
                        template: false,
                        body: ACTIVE_USERS_ONLY.into(),
                        description: "Only Active users are permitted anything".into(),
                        created_at: now,
                        updated_at: now,
                    },
                )?;
                if let Some(setup) = setup {
                    setup(tx, now)?;
                }
                tx.record_change(&record.name, Change::Content, now)?;
                tx.realm(&record.name)
            })
            .await;
        let realm = match stored {
            Ok(realm) => realm,
            Err(e) => {
                // Best effort: what the provider made for a realm that
                // does not exist (a pool it created) is undone.
                if let Err(undo) = identity.discard_realm(new, &issuer).await {
                    tracing::warn!(realm = new.name, error = %undo,
                        "what the identity provider provisioned for a realm not created is left");
                }
                return Err(e);
            }
        };
        self.changed(&realm.name).await;
        Ok(realm)
    }

    /// A live realm.
    pub async fn realm(&self, caller: &Caller, name: &str) -> Result<Realm> {
        self.authorize(caller, AdminAction::RealmRead, Some(name))
            .await?;
        self.realm_record(name).await
    }

    /// Every realm, by name; soft-deleted ones only when asked.
    pub async fn realms(&self, caller: &Caller, include_deleted: bool) -> Result<Vec<Realm>> {
        self.authorize(caller, AdminAction::RealmList, None).await?;
        self.repo.read(move |tx| tx.realms(include_deleted)).await
    }

    /// Soft-delete a realm: it disappears from every query (its data is
    /// kept), and a last delta whose only policy forbids everything is
    /// published so decision points deny in it at once. Deleting it again
    /// is `NotFound`.
    pub async fn delete_realm(&self, caller: &Caller, name: &str) -> Result<Realm> {
        self.authorize(caller, AdminAction::RealmDelete, Some(name))
            .await?;
        let now = self.now();
        let n = name.to_owned();
        let deleted = self
            .repo
            .write(move |tx| {
                tx.delete_realm(&n, now)?;
                tx.deleted_realm(&n)
            })
            .await?;
        if let Err(e) = self.withdraw(name).await {
            self.metrics.publish_failed(name);
            tracing::warn!(realm = name, error = %e, "withdrawing the deleted realm's bundles failed");
        }
        Ok(deleted)
    }

    /// The realm's token signing keys, newest first.
    pub async fn signing_keys(&self, caller: &Caller, realm: &str) -> Result<Vec<KeyInfo>> {
        self.authorize(caller, AdminAction::RealmRead, Some(realm))
            .await?;
        let idp = self.identity_of(realm).await?;
        self.identity_result(idp.signing_keys(realm).await)
    }

    /// Rotate the realm's token signing key (the new JWKS is published).
    pub async fn rotate_signing_key(
        &self,
        caller: &Caller,
        realm: &str,
        alg: Alg,
    ) -> Result<KeyInfo> {
        self.authorize(caller, AdminAction::KeyRotate, Some(realm))
            .await?;
        let idp = self.identity_of(realm).await?;
        let key = self.identity_result(idp.rotate_signing_key(realm, alg, self.now()).await)?;
        self.changed(realm).await;
        Ok(key)
    }

    /// The realm's JWKS (public).
    pub async fn jwks(&self, realm: &str) -> Result<Value> {
        let r = self.realm_record(realm).await?;
        let idp = self.identities.of(&r)?;
        Ok(self
            .identity_result(idp.token_settings(&r).await)?
            .map_or_else(|| serde_json::json!({"keys": []}), |s| s.jwks))
    }

    /// The realm's OpenID discovery document (public).
    pub async fn openid_configuration(&self, realm: &str) -> Result<Value> {
        let r = self.realm_record(realm).await?;
        let idp = self.identities.of(&r)?;
        self.identity_result(idp.openid_configuration(&r).await)
    }

    /// The public key (PEM) that decision points must trust for the
    /// realm's bundles.
    pub async fn bundle_key(&self, caller: &Caller, realm: &str) -> Result<String> {
        self.authorize(caller, AdminAction::BundleStatus, Some(realm))
            .await?;
        self.bundle_signer(realm)
            .await?
            .public_pem()
            .map_err(|e| Error::Internal(e.to_string()))
    }

    /// The realm's bundle signing key (deleted realms too: withdrawal).
    pub(super) async fn bundle_signer(&self, realm: &str) -> Result<pdp_core::BundleSigner> {
        let r = realm.to_owned();
        let seed = self.repo.read(move |tx| tx.bundle_seed(&r)).await?;
        Ok(pdp_core::BundleSigner::from_seed(&seed))
    }
}
