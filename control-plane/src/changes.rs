//! What publishing reads from the database: a realm's whole content (for a
//! snapshot) and the changes committed since the last publish (for a
//! delta), drained from the `changes` log once they are in the store.

use crate::db::{Db, live_realm};
use crate::error::{Error, Result};
use pdp_core::directory::UserChange;
use pdp_core::manifest::{IdentitySettings, member};
use pdp_core::{UserRecord, UserState};
use rusqlite::{Transaction, params};
use std::collections::BTreeMap;

/// Everything of a realm a snapshot carries.
#[derive(Debug, Clone)]
pub struct RealmContent {
    /// Content members by name (`schema.cedarschema`, `policies.cedar`,
    /// `links.json`, `entities.json`, `users.jsonl`).
    pub members: BTreeMap<String, Vec<u8>>,
    /// Token settings (issuer, clients, JWKS).
    pub identity: Option<IdentitySettings>,
}

/// Changes committed and not yet published.
#[derive(Debug, Clone)]
pub struct PendingChanges {
    /// The newest change included; everything up to it is covered.
    pub upto: i64,
    /// Users to upsert (their current records) or remove.
    pub users: Vec<UserChange>,
    /// Every user changed at once (a bulk import): publish a snapshot.
    pub all_users: bool,
    /// The Cedar members, present when non-user content changed.
    pub members: BTreeMap<String, Vec<u8>>,
    /// Token settings (always current; small).
    pub identity: Option<IdentitySettings>,
}

impl Db {
    /// The realm's whole content, users streamed in id order.
    pub fn realm_content(&self, realm: &str) -> Result<RealmContent> {
        self.read(|tx| realm_content_in(tx, realm))
    }

    /// The realm's whole content and the newest change it covers (`None`:
    /// no change pending), read in one transaction.
    pub fn snapshot_content(&self, realm: &str) -> Result<(Option<i64>, RealmContent)> {
        self.read(|tx| {
            live_realm(tx, realm)?;
            let upto = newest_pending(tx, realm)?;
            Ok((upto, realm_content_in(tx, realm)?))
        })
    }

    /// How many changes wait to be published.
    pub fn pending_count(&self, realm: &str) -> Result<u64> {
        self.read(|tx| {
            live_realm(tx, realm)?;
            let n: i64 = tx.query_row(
                "SELECT COUNT(*) FROM changes WHERE realm = ?1 AND published_rev IS NULL",
                [realm],
                |r| r.get(0),
            )?;
            Ok(u64::try_from(n).unwrap_or(0))
        })
    }

    /// Changes since the last publish, or `None` when there are none.
    pub fn pending_changes(&self, realm: &str) -> Result<Option<PendingChanges>> {
        self.read(|tx| {
            live_realm(tx, realm)?;
            let upto = newest_pending(tx, realm)?;
            let Some(upto) = upto else {
                return Ok(None);
            };
            let mut stmt = tx.prepare_cached(
                "SELECT DISTINCT user_id FROM changes
                 WHERE realm = ?1 AND published_rev IS NULL AND seq <= ?2 ORDER BY user_id",
            )?;
            let changed: Vec<Option<String>> = stmt
                .query_map(params![realm, upto], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            let cedar = changed.iter().any(Option::is_none);
            let all_users = changed.iter().any(|c| c.as_deref() == Some("*"));
            let mut users = Vec::new();
            if !all_users {
                for id in changed.iter().flatten() {
                    match crate::user::user_in(tx, realm, id) {
                        Ok(u) => users.push(UserChange::Upsert(u.to_record())),
                        Err(Error::NotFound { .. }) => users.push(UserChange::Remove(id.clone())),
                        Err(e) => return Err(e),
                    }
                }
            }
            let members = if cedar {
                crate::policy::cedar_members(tx, realm)?
            } else {
                BTreeMap::new()
            };
            Ok(Some(PendingChanges {
                upto,
                users,
                all_users,
                members,
                identity: identity_settings(tx, realm)?,
            }))
        })
    }

    /// Record that every change up to `upto` is in the store at
    /// `revision`: the log rows are dropped and the revision remembered.
    pub fn mark_published(&self, realm: &str, upto: i64, revision: u64, now: i64) -> Result<()> {
        let rev =
            i64::try_from(revision).map_err(|_| Error::Internal("revision overflow".into()))?;
        self.write(|tx| {
            tx.execute(
                "DELETE FROM changes WHERE realm = ?1 AND seq <= ?2",
                params![realm, upto],
            )?;
            tx.execute(
                "INSERT INTO published (realm, revision, at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (realm) DO UPDATE SET revision = MAX(revision, excluded.revision), at = excluded.at",
                params![realm, rev, now],
            )?;
            Ok(())
        })
    }

    /// The newest revision this database's changes reached, and when.
    pub fn published(&self, realm: &str) -> Result<Option<(u64, i64)>> {
        self.read(|tx| {
            use rusqlite::OptionalExtension;
            let row: Option<(i64, i64)> = tx
                .query_row(
                    "SELECT revision, at FROM published WHERE realm = ?1",
                    [realm],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            Ok(row.map(|(r, at)| (u64::try_from(r).unwrap_or(0), at)))
        })
    }
}

/// The newest change not yet published, if any.
fn newest_pending(tx: &Transaction<'_>, realm: &str) -> Result<Option<i64>> {
    Ok(tx.query_row(
        "SELECT MAX(seq) FROM changes WHERE realm = ?1 AND published_rev IS NULL",
        [realm],
        |r| r.get(0),
    )?)
}

fn realm_content_in(tx: &Transaction<'_>, realm: &str) -> Result<RealmContent> {
    let mut members = crate::policy::cedar_members(tx, realm)?;
    let mut users = Vec::new();
    for_each_record(tx, realm, |r| {
        serde_json::to_writer(&mut users, &r)
            .map_err(|e| Error::Internal(format!("user {:?}: {e}", r.id)))?;
        users.push(b'\n');
        Ok(())
    })?;
    members.insert(member::USERS.to_owned(), users);
    Ok(RealmContent {
        members,
        identity: identity_settings(tx, realm)?,
    })
}

/// Every user record of the realm in id order, built with three ordered
/// scans merged (one query per user would be millions of queries).
pub(crate) fn for_each_record(
    tx: &Transaction<'_>,
    realm: &str,
    mut f: impl FnMut(UserRecord) -> Result<()>,
) -> Result<()> {
    let mut groups = tx.prepare(
        "SELECT user_id, group_id FROM user_groups WHERE realm = ?1 ORDER BY user_id, group_id",
    )?;
    let mut groups = groups
        .query_map([realm], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?
        .peekable();
    let mut roles = tx.prepare(
        "SELECT user_id, role_id FROM user_roles WHERE realm = ?1 ORDER BY user_id, role_id",
    )?;
    let mut roles = roles
        .query_map([realm], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?
        .peekable();
    let mut users = tx.prepare(
        "SELECT id, username, email, state, attrs, tokens_valid_after, updated_at
         FROM users WHERE realm = ?1 ORDER BY id",
    )?;
    let mut rows = users.query([realm])?;
    while let Some(r) = rows.next()? {
        let id: String = r.get(0)?;
        let state: String = r.get(3)?;
        let attrs: String = r.get(4)?;
        let mut record = UserRecord {
            username: r.get(1)?,
            email: r.get(2)?,
            state: state.parse::<UserState>()?,
            groups: Vec::new(),
            roles: Vec::new(),
            attrs: serde_json::from_str(&attrs)
                .map_err(|e| Error::Internal(format!("user {id:?} attrs: {e}")))?,
            tokens_valid_after: r.get(5)?,
            updated_at: r.get(6)?,
            id,
        };
        take_for(&mut groups, &record.id, &mut record.groups)?;
        take_for(&mut roles, &record.id, &mut record.roles)?;
        f(record)?;
    }
    Ok(())
}

/// Move the values of `id`'s rows from an id-ordered scan into `out`.
/// Rows of ids before it cannot exist (foreign keys); they are skipped
/// rather than mis-assigned.
fn take_for<I>(iter: &mut std::iter::Peekable<I>, id: &str, out: &mut Vec<String>) -> Result<()>
where
    I: Iterator<Item = rusqlite::Result<(String, String)>>,
{
    loop {
        match iter.peek() {
            Some(Ok((u, _))) if u.as_str() <= id => {}
            Some(Err(_)) => {
                if let Some(Err(e)) = iter.next() {
                    return Err(e.into());
                }
            }
            _ => return Ok(()),
        }
        if let Some(Ok((u, v))) = iter.next()
            && u == id
        {
            out.push(v);
        }
    }
}

/// The realm's token settings: issuer, app clients, and the JWKS of its
/// signing keys that are not retired.
pub(crate) fn identity_settings(
    tx: &Transaction<'_>,
    realm: &str,
) -> Result<Option<IdentitySettings>> {
    let r = crate::realm::realm_in(tx, realm)?;
    let mut stmt = tx.prepare_cached(
        "SELECT public_jwk FROM signing_keys WHERE realm = ?1 AND retired = 0 ORDER BY created_at, kid",
    )?;
    let keys: Vec<serde_json::Value> = stmt
        .query_map([realm], |row| row.get::<_, String>(0))?
        .map(|j| {
            let j = j?;
            serde_json::from_str(&j).map_err(|e| Error::Internal(format!("jwk: {e}")))
        })
        .collect::<Result<_>>()?;
    if keys.is_empty() {
        return Ok(None);
    }
    Ok(Some(IdentitySettings {
        issuer: r.issuer,
        audiences: r.clients,
        token_use: vec![],
        jwks: serde_json::json!({ "keys": keys }),
        leeway_seconds: None,
    }))
}
