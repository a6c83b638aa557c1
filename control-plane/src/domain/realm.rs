//! Realms: isolated tenants (a Cognito user pool each). Everything else
//! lives inside exactly one realm, and every repository query is scoped by
//! it.

use super::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// The schema every new realm starts with (the reference schema).
pub const DEFAULT_SCHEMA: &str = include_str!("../../../policies/schema.cedarschema");

/// The policy every new realm starts with: only Active users are permitted
/// anything (defence in depth; decision points gate on state already).
pub const ACTIVE_USERS_ONLY: &str =
    "forbid (principal is User, action, resource)\nunless { principal.state == \"Active\" };";

/// Id of [`ACTIVE_USERS_ONLY`].
pub const ACTIVE_USERS_ONLY_ID: &str = "active-users-only";

/// The identity provider of realms that name none: the embedded one.
pub const LOCAL_IDENTITY: &str = "local";

/// A realm as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Realm {
    /// Unique name, also the bundle's realm and the AVP `policyStoreId`.
    pub name: String,
    /// Human-readable name.
    pub display_name: String,
    /// The `iss` of tokens this realm mints and accepts (from its identity
    /// provider).
    pub issuer: String,
    /// App client ids (token `aud` / `client_id`), from its identity provider.
    pub clients: Vec<String>,
    /// Which identity provider holds the realm's credentials (`local`).
    #[serde(default = "local")]
    pub identity: String,
    /// Current schema version.
    pub schema_version: i64,
    /// Creation time, unix seconds.
    pub created_at: i64,
    /// Soft-deletion time, if deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<i64>,
}

fn local() -> String {
    LOCAL_IDENTITY.to_owned()
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
    /// The identity provider to hold the realm's credentials; `local` (the
    /// default) is the embedded one.
    #[serde(default)]
    pub identity: Option<String>,
    /// `cognito` only: bind this existing user pool instead of creating
    /// one (with `client_id`).
    #[serde(default)]
    pub pool_id: Option<String>,
    /// `cognito` only: the existing app client of `pool_id` to bind.
    #[serde(default)]
    pub client_id: Option<String>,
    /// `cognito` only: whether Cognito mails new users its invitation
    /// (default `false`: suppressed; Gatehouse's own invite flow is used).
    #[serde(default)]
    pub send_invitations: Option<bool>,
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
