//! Building bundles from plain Cedar artifacts: a *source directory*'s files
//! (given here as bytes by name — the caller does the I/O) become a signed
//! bundle archive, after everything in it was validated.
//!
//! With a schema, policies and entities are validated strictly, and every
//! user record is validated as a `User` entity and rewritten into Cedar's
//! explicit JSON form (`__entity`, `__extn`), which is what the decision
//! path reads without a schema.

use crate::bundle::{self, BundleError, BundleHeader, Limits, Trust};
use crate::directory::{USER_TYPE, UserRecord};
use crate::manifest::{BundleKind, IdentitySettings, member};
use crate::sign::BundleSigner;
use cedar_policy::{Entity, Schema};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// What the manifest of a built bundle says.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Realm name (default `default`).
    pub realm: String,
    /// Revision.
    pub revision: u64,
    /// Build time, unix seconds.
    pub created_at: i64,
    /// Gzip the archive.
    pub gzip: bool,
}

/// Build a snapshot bundle from source files (`schema.cedarschema`,
/// `policies.cedar`, `links.json`, `entities.json`, `users.jsonl`,
/// `routes.json`, `authzen.json`, `identity.json`; only `policies.cedar`
/// is required).
pub fn build(
    files: &BTreeMap<String, Vec<u8>>,
    options: &BuildOptions,
    signer: Option<&BundleSigner>,
) -> Result<Vec<u8>, BundleError> {
    build_and_load(files, options, signer).map(|(archive, _)| archive)
}

/// [`build`], also returning the snapshot the build compiled to validate
/// the archive — what a dev-mode loader would produce from it, so a caller
/// that serves the result need not load it a second time.
pub fn build_and_load(
    files: &BTreeMap<String, Vec<u8>>,
    options: &BuildOptions,
    signer: Option<&BundleSigner>,
) -> Result<(Vec<u8>, crate::Snapshot), BundleError> {
    let mut members = BTreeMap::new();
    let mut identity = None;
    for (name, bytes) in files {
        match name.as_str() {
            member::IDENTITY => {
                let settings: IdentitySettings = serde_json::from_slice(bytes).map_err(|e| {
                    BundleError::invalid(
                        member::IDENTITY,
                        Some((e.line(), e.column())),
                        e.to_string(),
                    )
                })?;
                identity = Some(settings);
            }
            n if member::CONTENT.contains(&n) => {
                members.insert(name.clone(), bytes.clone());
            }
            _ => {}
        }
    }
    if !members.contains_key(member::POLICIES) {
        return Err(BundleError::MissingMember(member::POLICIES.into()));
    }
    if let (Some(schema_text), Some(users)) =
        (members.get(member::SCHEMA), members.get(member::USERS))
    {
        let schema_text = std::str::from_utf8(schema_text)
            .map_err(|e| BundleError::invalid(member::SCHEMA, None, e.to_string()))?;
        let (schema, _) = Schema::from_cedarschema_str(schema_text)
            .map_err(|e| BundleError::invalid(member::SCHEMA, None, e.to_string()))?;
        let canonical = canonical_users(users, &schema, &options.realm)?;
        members.insert(member::USERS.into(), canonical);
    }
    let header = BundleHeader {
        realm: options.realm.clone(),
        revision: options.revision,
        kind: BundleKind::Snapshot,
        base_revision: None,
        created_at: options.created_at,
        identity,
    };
    let archive = bundle::write_archive(&header, &members, signer, options.gzip)?;
    // Compile what we wrote: the build fails exactly when a loader would.
    let limits = Limits::default();
    let snapshot = crate::snapshot::load(
        &archive,
        &crate::snapshot::LoadOptions {
            trust: Trust::Dev,
            limits,
        },
        None,
    )?;
    Ok((archive, snapshot))
}

/// Validate every user against the schema's `User` type and rewrite its
/// attributes in explicit Cedar JSON form.
fn canonical_users(users: &[u8], schema: &Schema, realm: &str) -> Result<Vec<u8>, BundleError> {
    let text = std::str::from_utf8(users)
        .map_err(|e| BundleError::invalid(member::USERS, None, e.to_string()))?;
    let mut out = String::with_capacity(text.len());
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad =
            |col: usize, m: String| BundleError::invalid(member::USERS, Some((i + 1, col)), m);
        let u: UserRecord =
            serde_json::from_str(line).map_err(|e| bad(e.column(), e.to_string()))?;
        let u = canonical_user(u, schema, realm).map_err(|m| bad(1, m))?;
        out.push_str(&serde_json::to_string(&u).map_err(|e| bad(1, e.to_string()))?);
        out.push('\n');
    }
    Ok(out.into_bytes())
}

/// Validate one user record against the schema's `User` type and return it
/// with its attributes in explicit Cedar JSON form (`__entity`, `__extn`),
/// the form a bundle carries. The reserved attributes (`state`, `email`,
/// `realm`) come from the record and may not appear among `attrs`. The
/// error is a one-line message naming the user.
pub fn canonical_user(
    mut u: UserRecord,
    schema: &Schema,
    realm: &str,
) -> Result<UserRecord, String> {
    for reserved in ["state", "email", "realm"] {
        if u.attrs.contains_key(reserved) {
            return Err(format!(
                "attribute {reserved:?} is reserved (set from the record)"
            ));
        }
    }
    let mut attrs = u.attrs.clone();
    attrs.insert("state".into(), Value::String(u.state.as_str().into()));
    attrs.insert("email".into(), Value::String(u.email.clone()));
    attrs.insert("realm".into(), Value::String(realm.into()));
    let parents: Vec<Value> = u
        .groups
        .iter()
        .map(|g| json!({"type": crate::directory::GROUP_TYPE, "id": g}))
        .chain(
            u.roles
                .iter()
                .map(|r| json!({"type": crate::directory::ROLE_TYPE, "id": r})),
        )
        .collect();
    let entity_json =
        json!({"uid": {"type": USER_TYPE, "id": u.id}, "attrs": attrs, "parents": parents});
    let entity = Entity::from_json_value(entity_json, Some(schema)).map_err(|e| {
        let mut msg = format!("user {:?}: {}", u.id, crate::policies::diag_message(&e));
        // The detail (which attribute, which type) is in the source chain.
        let mut cause = std::error::Error::source(&e);
        while let Some(c) = cause {
            msg.push_str(": ");
            msg.push_str(&c.to_string());
            cause = c.source();
        }
        msg
    })?;
    let canonical = entity.to_json_value().map_err(|e| e.to_string())?;
    let mut attrs = canonical
        .get("attrs")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    for reserved in ["state", "email", "realm"] {
        attrs.remove(reserved);
    }
    u.attrs = attrs;
    Ok(u)
}
