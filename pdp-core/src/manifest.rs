//! `manifest.json`: what a bundle is, which realm and revision it carries,
//! the hash of every other member, and the realm's identity settings.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The only bundle format this core reads and writes.
pub const FORMAT: &str = "gatehouse.bundle/v1";

/// Member names, fixed by the format.
pub mod member {
    /// The manifest itself.
    pub const MANIFEST: &str = "manifest.json";
    /// Detached JWS over the manifest.
    pub const SIGNATURE: &str = "manifest.sig";
    /// Cedar schema (human form).
    pub const SCHEMA: &str = "schema.cedarschema";
    /// Cedar policies and templates.
    pub const POLICIES: &str = "policies.cedar";
    /// Template links.
    pub const LINKS: &str = "links.json";
    /// Non-user entities, Cedar JSON entity format.
    pub const ENTITIES: &str = "entities.json";
    /// The user directory, JSON Lines.
    pub const USERS: &str = "users.jsonl";
    /// Forward-auth route table.
    pub const ROUTES: &str = "routes.json";
    /// AuthZEN type names (`user` -> `User`), see [`crate::authzen`].
    pub const AUTHZEN: &str = "authzen.json";
    /// Identity settings in a bundle *source* directory (copied into the manifest).
    pub const IDENTITY: &str = "identity.json";

    /// Members a bundle archive may hold besides the manifest and signature.
    pub const CONTENT: [&str; 7] = [SCHEMA, POLICIES, LINKS, ENTITIES, USERS, ROUTES, AUTHZEN];

    /// Files a bundle *source directory* may hold (`policies.cedar` is required).
    pub const SOURCE: [&str; 8] = [
        SCHEMA, POLICIES, LINKS, ENTITIES, USERS, ROUTES, AUTHZEN, IDENTITY,
    ];
}

/// Whether a bundle is a whole realm or a change on top of one revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BundleKind {
    /// The whole realm.
    Snapshot,
    /// Changes on top of `base_revision`: members present replace the old
    /// ones, except `users.jsonl`, whose lines are upserts and removals.
    Delta,
}

/// The parsed `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// Snapshot or delta.
    pub kind: BundleKind,
    /// The realm (tenant) this bundle belongs to.
    pub realm: String,
    /// Strictly increasing per realm.
    pub revision: u64,
    /// The revision a delta applies on; absent for snapshots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_revision: Option<u64>,
    /// When the bundle was built, unix seconds.
    pub created_at: i64,
    /// Lower-case hex sha256 of every other member, by member name.
    pub sha256: BTreeMap<String, String>,
    /// How tokens of this realm are verified; absent when the realm takes no tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<IdentitySettings>,
}

/// The realm's token settings: who issues tokens, for which clients, and
/// the keys that sign them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentitySettings {
    /// Exact `iss` value accepted.
    pub issuer: String,
    /// Accepted `aud` (ID tokens) / `client_id` (access tokens) values.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Accepted `token_use` values (`id`, `access`); empty means both.
    #[serde(default, deserialize_with = "one_or_many")]
    pub token_use: Vec<String>,
    /// A standard JWKS object (`{"keys": [...]}`).
    pub jwks: serde_json::Value,
    /// Allowed clock skew for `exp`/`nbf`/`iat`, seconds (default 30, at most 300).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leeway_seconds: Option<u64>,
}

fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

/// Hex sha256 of a member's bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    use std::fmt::Write as _;
    let digest = Sha256::digest(bytes);
    let mut out = String::with_capacity(64);
    for b in digest {
        // Writing into a String cannot fail.
        let _ = write!(out, "{b:02x}");
    }
    out
}
