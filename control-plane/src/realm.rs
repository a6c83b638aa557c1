//! Realms: isolated tenants (a Cognito user pool each). Everything else
//! lives inside exactly one realm, and every query is scoped by it.

use crate::db::{self, Db, random, record_change};
use crate::error::{Error, Result};
use rusqlite::{OptionalExtension, Transaction, params};
use serde::{Deserialize, Serialize};

/// The schema every new realm starts with (the reference schema).
pub const DEFAULT_SCHEMA: &str = include_str!("../../policies/schema.cedarschema");

/// The policy every new realm starts with: only Active users are permitted
/// anything (defence in depth; decision points gate on state already).
pub const ACTIVE_USERS_ONLY: &str =
    "forbid (principal is User, action, resource)\nunless { principal.state == \"Active\" };";

/// A realm as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Realm {
    /// Unique name, also the bundle's realm and the AVP `policyStoreId`.
    pub name: String,
    /// Human-readable name.
    pub display_name: String,
    /// The `iss` of tokens this realm mints and accepts.
    pub issuer: String,
    /// App client ids (token `aud` / `client_id`).
    pub clients: Vec<String>,
    /// Current schema version.
    pub schema_version: i64,
    /// Creation time, unix seconds.
    pub created_at: i64,
    /// Soft-deletion time, if deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<i64>,
}

/// What creating a realm takes.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRealm {
    /// `[a-z0-9][a-z0-9_-]*`, at most 63 characters.
    pub name: String,
    /// Defaults to the name.
    #[serde(default)]
    pub display_name: Option<String>,
    /// Cedar schema text; defaults to the reference schema.
    #[serde(default)]
    pub schema: Option<String>,
}

/// Check a realm name: lower-case letters, digits, `-`, `_`; 1..=63; starts
/// with a letter or digit. Realm names become object-store path segments.
pub fn check_realm_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(Error::BadRequest(format!(
            "realm name {name:?} must be 1-63 of a-z 0-9 - _ and start with a letter or digit"
        )))
    }
}

/// Check the id of a group, role, policy or link: 1..=128 printable ASCII
/// characters from `A-Za-z0-9 . _ - : @`.
pub fn check_id(kind: &str, id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-_:@".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::BadRequest(format!(
            "{kind} id {id:?} must be 1-128 of A-Z a-z 0-9 . - _ : @"
        )))
    }
}

fn client_id() -> Result<String> {
    let bytes = random::<16>()?;
    Ok(data_encoding::BASE32_NOPAD
        .encode(&bytes)
        .to_ascii_lowercase())
}

impl Db {
    /// Create a realm with its schema (version 1), the `active-users-only`
    /// policy, one app client, and its own bundle signing key.
    pub fn create_realm(&self, new: &NewRealm, issuer_base: &str, now: i64) -> Result<Realm> {
        check_realm_name(&new.name)?;
        let schema = new.schema.as_deref().unwrap_or(DEFAULT_SCHEMA);
        crate::policy::parse_schema(schema)?;
        let display = new.display_name.clone().unwrap_or_else(|| new.name.clone());
        let issuer = format!("{}/realms/{}", issuer_base.trim_end_matches('/'), new.name);
        let clients = vec![client_id()?];
        let key = random::<32>()?;
        self.write(|tx| {
            let exists: Option<i64> = tx
                .query_row("SELECT 1 FROM realms WHERE name = ?1", [&new.name], |r| {
                    r.get(0)
                })
                .optional()?;
            if exists.is_some() {
                return Err(Error::AlreadyExists {
                    kind: "realm",
                    id: new.name.clone(),
                });
            }
            tx.execute(
                "INSERT INTO realms (name, display_name, issuer, clients, bundle_key, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    new.name,
                    display,
                    issuer,
                    serde_json::to_string(&clients).unwrap_or_default(),
                    key.as_slice(),
                    now
                ],
            )?;
            tx.execute(
                "INSERT INTO schemas (realm, version, text, created_at) VALUES (?1, 1, ?2, ?3)",
                params![new.name, schema, now],
            )?;
            tx.execute(
                "INSERT INTO policies (realm, id, template, body, description, created_at, updated_at)
                 VALUES (?1, 'active-users-only', 0, ?2, 'Only Active users are permitted anything', ?3, ?3)",
                params![new.name, ACTIVE_USERS_ONLY, now],
            )?;
            crate::identity::keys::rotate_in(tx, &new.name, crate::identity::keys::Alg::EdDSA, now)?;
            record_change(tx, &new.name, None, now)?;
            realm_in(tx, &new.name)
        })
    }

    /// A live realm.
    pub fn realm(&self, name: &str) -> Result<Realm> {
        self.read(|tx| realm_in(tx, name))
    }

    /// Every realm, by name; soft-deleted ones only when asked.
    pub fn realms(&self, include_deleted: bool) -> Result<Vec<Realm>> {
        self.read(|tx| {
            let mut stmt =
                tx.prepare("SELECT name FROM realms WHERE ?1 OR deleted_at IS NULL ORDER BY name")?;
            let names: Vec<String> = stmt
                .query_map([include_deleted], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            names.iter().map(|n| realm_row(tx, n)).collect()
        })
    }

    /// Soft-delete a realm: it disappears from every query (its data is
    /// kept). Deleting it again is `NotFound`.
    pub fn delete_realm(&self, name: &str, now: i64) -> Result<Realm> {
        self.write(|tx| {
            db::live_realm(tx, name)?;
            tx.execute(
                "UPDATE realms SET deleted_at = ?2 WHERE name = ?1",
                params![name, now],
            )?;
            realm_row(tx, name)
        })
    }

    /// The realm's bundle signing key.
    pub fn bundle_signer(&self, realm: &str) -> Result<pdp_core::BundleSigner> {
        self.read(|tx| bundle_signer_in(tx, realm))
    }
}

/// The realm's bundle signing key, inside a transaction.
pub(crate) fn bundle_signer_in(
    tx: &Transaction<'_>,
    realm: &str,
) -> Result<pdp_core::BundleSigner> {
    let seed: Vec<u8> = tx
        .query_row(
            "SELECT bundle_key FROM realms WHERE name = ?1",
            [realm],
            |r| r.get(0),
        )
        .optional()?
        .ok_or_else(|| Error::not_found("realm", realm))?;
    let seed: [u8; 32] = seed
        .try_into()
        .map_err(|_| Error::Internal(format!("realm {realm:?}: bad bundle key")))?;
    Ok(pdp_core::BundleSigner::from_seed(&seed))
}

/// A live realm, inside a transaction.
pub(crate) fn realm_in(tx: &Transaction<'_>, name: &str) -> Result<Realm> {
    db::live_realm(tx, name)?;
    realm_row(tx, name)
}

fn realm_row(tx: &Transaction<'_>, name: &str) -> Result<Realm> {
    let (display_name, issuer, clients, created_at, deleted_at): (
        String,
        String,
        String,
        i64,
        Option<i64>,
    ) = tx
        .query_row(
            "SELECT display_name, issuer, clients, created_at, deleted_at FROM realms WHERE name = ?1",
            [name],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .optional()?
        .ok_or_else(|| Error::not_found("realm", name))?;
    let schema_version: i64 = tx.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schemas WHERE realm = ?1",
        [name],
        |r| r.get(0),
    )?;
    let clients = serde_json::from_str(&clients)
        .map_err(|e| Error::Internal(format!("realm {name:?} clients: {e}")))?;
    Ok(Realm {
        name: name.to_owned(),
        display_name,
        issuer,
        clients,
        schema_version,
        created_at,
        deleted_at,
    })
}
