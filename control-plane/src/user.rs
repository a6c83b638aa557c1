//! Users: creation (email unique per realm, case-insensitively), attribute
//! updates validated against the realm's schema, search with cursor
//! pagination, and the lifecycle actions of `pdp_core::lifecycle`.

use crate::db::{Db, live_realm, record_change, uuid_v4};
use crate::error::{Diagnostic, Error, Result};
use base64::Engine as _;
use pdp_core::{LifecycleAction, Memory, UserRecord, UserState};
use rusqlite::{OptionalExtension, Transaction, params};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A user as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct User {
    /// Stable id (a UUID; the token `sub`).
    pub id: String,
    /// Login name, unique per realm (case-insensitively).
    pub username: String,
    /// Email, unique per realm (case-insensitively).
    pub email: String,
    /// Lifecycle state.
    #[schema(value_type = String, example = "Active")]
    pub state: UserState,
    /// Custom attributes (Cedar JSON values).
    #[schema(value_type = Object)]
    pub attrs: Map<String, Value>,
    /// Groups the user is a direct member of.
    pub groups: Vec<String>,
    /// Roles assigned directly.
    pub roles: Vec<String>,
    /// Tokens issued before this unix second are refused.
    pub tokens_valid_after: i64,
    /// Creation time, unix seconds.
    pub created_at: i64,
    /// Last change, unix seconds.
    pub updated_at: i64,
}

impl User {
    /// The record a bundle's `users.jsonl` carries.
    pub fn to_record(&self) -> UserRecord {
        UserRecord {
            id: self.id.clone(),
            username: self.username.clone(),
            email: self.email.clone(),
            state: self.state,
            groups: self.groups.clone(),
            roles: self.roles.clone(),
            attrs: self.attrs.clone(),
            tokens_valid_after: self.tokens_valid_after,
            updated_at: self.updated_at,
        }
    }
}

/// What creating a user takes.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    /// Login name; defaults to the email.
    #[serde(default)]
    pub username: Option<String>,
    /// Email address.
    pub email: String,
    /// Custom attributes, validated against the schema's `User` type.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub attrs: Map<String, Value>,
    /// Id to use instead of a fresh UUID (imports keep their ids).
    #[serde(default)]
    pub id: Option<String>,
}

/// Which users a search returns.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UserQuery {
    /// Emails starting with this (case-insensitive).
    #[serde(default)]
    pub email_prefix: Option<String>,
    /// Usernames starting with this (case-insensitive).
    #[serde(default)]
    pub username_prefix: Option<String>,
    /// Only users in this state. Without it, `Deleted` users are left out.
    #[serde(default)]
    pub state: Option<String>,
    /// Page size, 1..=1000 (default 100).
    #[serde(default)]
    pub limit: Option<u32>,
    /// The `next` cursor of the previous page.
    #[serde(default)]
    pub cursor: Option<String>,
}

/// One page of a search.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UserPage {
    /// The users, ordered by the searched key, then id.
    pub users: Vec<User>,
    /// Cursor of the next page; absent on the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// Check an email address: one `@`, something on each side, no spaces or
/// control characters, at most 254 bytes.
pub fn check_email(email: &str) -> Result<()> {
    let ok = email.len() <= 254
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && email
            .split_once('@')
            .is_some_and(|(l, d)| !l.is_empty() && !d.is_empty() && !d.contains('@'));
    if ok {
        Ok(())
    } else {
        Err(Error::BadRequest(format!(
            "{email:?} is not an email address"
        )))
    }
}

fn check_username(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && !name.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok {
        Ok(())
    } else {
        Err(Error::BadRequest(format!(
            "username {name:?} must be 1-128 bytes without spaces"
        )))
    }
}

impl Db {
    /// Create a user in state `Created`.
    pub fn create_user(&self, realm: &str, new: &NewUser, now: i64) -> Result<User> {
        self.write(|tx| {
            let schema = crate::policy::current_schema(tx, realm)?;
            create_user_in(tx, realm, new, &schema, now)
        })
    }

    /// A user by id.
    pub fn user(&self, realm: &str, id: &str) -> Result<User> {
        self.read(|tx| {
            live_realm(tx, realm)?;
            user_in(tx, realm, id)
        })
    }

    /// A user by username or email (case-insensitive), as a login form
    /// names them.
    pub fn user_by_login(&self, realm: &str, login: &str) -> Result<User> {
        self.read(|tx| user_by_login_in(tx, realm, login))
    }

    /// Merge `patch` into the user's attributes (`null` removes one) and
    /// validate the result against the schema; nothing changes if it fails.
    pub fn update_user_attrs(
        &self,
        realm: &str,
        id: &str,
        patch: &Map<String, Value>,
        now: i64,
    ) -> Result<User> {
        self.write(|tx| {
            let schema = crate::policy::current_schema(tx, realm)?;
            let mut user = user_in(tx, realm, id)?;
            for (k, v) in patch {
                if v.is_null() {
                    user.attrs.remove(k);
                } else {
                    user.attrs.insert(k.clone(), v.clone());
                }
            }
            let record = canonical(&user, &schema, realm)?;
            tx.execute(
                "UPDATE users SET attrs = ?3, updated_at = ?4 WHERE realm = ?1 AND id = ?2",
                params![
                    realm,
                    id,
                    serde_json::to_string(&record.attrs).unwrap_or_default(),
                    now
                ],
            )?;
            record_change(tx, realm, Some(id), now)?;
            user_in(tx, realm, id)
        })
    }

    /// Apply a lifecycle action. Illegal transitions are refused
    /// (`Error::Lifecycle`) and change nothing; revoking actions set
    /// `tokens_valid_after` to `now`.
    pub fn lifecycle(
        &self,
        realm: &str,
        id: &str,
        action: LifecycleAction,
        now: i64,
    ) -> Result<User> {
        self.write(|tx| lifecycle_in(tx, realm, id, action, now))
    }

    /// Search users: by email or username prefix (case-insensitive) or by
    /// state, ordered by that key then id. Pagination is keyset-based: a
    /// cursor names the last row returned, so users created or deleted
    /// between pages never shift the rest (no row is skipped or repeated).
    pub fn search_users(&self, realm: &str, q: &UserQuery) -> Result<UserPage> {
        let limit = q.limit.unwrap_or(100).clamp(1, 1000);
        let state = q
            .state
            .as_deref()
            .map(|s| s.parse::<UserState>())
            .transpose()
            .map_err(|e| Error::BadRequest(e.to_string()))?;
        if q.email_prefix.is_some() && q.username_prefix.is_some() {
            return Err(Error::BadRequest(
                "search by email_prefix or username_prefix, not both".into(),
            ));
        }
        let (key, prefix) = match (&q.email_prefix, &q.username_prefix) {
            (Some(p), _) => ("email_lc", p.to_lowercase()),
            (_, Some(p)) => ("username_lc", p.to_lowercase()),
            _ => ("id", String::new()),
        };
        let after = q.cursor.as_deref().map(decode_cursor).transpose()?;
        self.read(|tx| {
            live_realm(tx, realm)?;
            let sql = format!(
                "SELECT id, {key} FROM users
                 WHERE realm = ?1
                   AND {key} >= ?2 AND (?7 IS NULL OR {key} < ?7)
                   AND (?3 IS NULL OR state = ?3)
                   AND (?3 IS NOT NULL OR state != 'Deleted')
                   AND (?4 IS NULL OR ({key}, id) > (?4, ?5))
                 ORDER BY {key}, id
                 LIMIT ?6"
            );
            let mut stmt = tx.prepare_cached(&sql)?;
            let (ak, aid) = after.clone().unzip();
            // Every string with the prefix sorts below prefix + U+10FFFF
            // (binary collation over UTF-8), so the range uses the index.
            let upper = (!prefix.is_empty()).then(|| format!("{prefix}\u{10FFFF}"));
            let rows: Vec<(String, String)> = stmt
                .query_map(
                    params![
                        realm,
                        prefix,
                        state.map(UserState::as_str),
                        ak,
                        aid,
                        i64::from(limit) + 1,
                        upper
                    ],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?
                .collect::<Result<_, _>>()?;
            let more = rows.len() > limit as usize;
            let page: Vec<&(String, String)> = rows.iter().take(limit as usize).collect();
            let next = if more {
                page.last().map(|(id, k)| encode_cursor(k, id))
            } else {
                None
            };
            let users = page
                .iter()
                .map(|(id, _)| user_in(tx, realm, id))
                .collect::<Result<_>>()?;
            Ok(UserPage { users, next })
        })
    }
}

fn encode_cursor(key: &str, id: &str) -> String {
    let json = serde_json::json!([key, id]).to_string();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
}

fn decode_cursor(c: &str) -> Result<(String, String)> {
    let bad = || Error::BadRequest("cursor is not one this service issued".into());
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(c)
        .map_err(|_| bad())?;
    serde_json::from_slice(&bytes).map_err(|_| bad())
}

/// Validate a user against the schema and return its canonical record.
pub(crate) fn canonical(
    user: &User,
    schema: &cedar_policy::Schema,
    realm: &str,
) -> Result<UserRecord> {
    pdp_core::source::canonical_user(user.to_record(), schema, realm)
        .map_err(|m| Error::invalid(format!("user {:?}", user.id), Diagnostic::new("attrs", m)))
}

pub(crate) fn create_user_in(
    tx: &Transaction<'_>,
    realm: &str,
    new: &NewUser,
    schema: &cedar_policy::Schema,
    now: i64,
) -> Result<User> {
    check_email(&new.email)?;
    let username = new.username.clone().unwrap_or_else(|| new.email.clone());
    check_username(&username)?;
    let id = match &new.id {
        Some(id) => {
            crate::realm::check_id("user", id)?;
            id.clone()
        }
        None => uuid_v4()?,
    };
    let mut user = User {
        id,
        username,
        email: new.email.clone(),
        state: UserState::Created,
        attrs: new.attrs.clone(),
        groups: vec![],
        roles: vec![],
        tokens_valid_after: 0,
        created_at: now,
        updated_at: now,
    };
    user.attrs = canonical(&user, schema, realm)?.attrs;
    let taken: Option<String> = tx
        .query_row(
            "SELECT CASE WHEN id = ?2 THEN 'id' WHEN email_lc = ?3 THEN 'email' ELSE 'username' END
             FROM users WHERE realm = ?1 AND (id = ?2 OR email_lc = ?3 OR username_lc = ?4) LIMIT 1",
            params![realm, user.id, user.email.to_lowercase(), user.username.to_lowercase()],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(what) = taken {
        let id = match what.as_str() {
            "id" => user.id.clone(),
            "email" => user.email.clone(),
            _ => user.username.clone(),
        };
        return Err(Error::AlreadyExists {
            kind: if what == "email" {
                "user with email"
            } else if what == "id" {
                "user"
            } else {
                "user with username"
            },
            id,
        });
    }
    tx.execute(
        "INSERT INTO users (realm, id, username, username_lc, email, email_lc, state, attrs,
                            tokens_valid_after, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 0, ?9, ?9)",
        params![
            realm,
            user.id,
            user.username,
            user.username.to_lowercase(),
            user.email,
            user.email.to_lowercase(),
            user.state.as_str(),
            serde_json::to_string(&user.attrs).unwrap_or_default(),
            now
        ],
    )?;
    record_change(tx, realm, Some(&user.id), now)?;
    Ok(user)
}

pub(crate) fn lifecycle_in(
    tx: &Transaction<'_>,
    realm: &str,
    id: &str,
    action: LifecycleAction,
    now: i64,
) -> Result<User> {
    live_realm(tx, realm)?;
    let (state, suspended_from, deleted_from): (String, Option<String>, Option<String>) = tx
        .query_row(
            "SELECT state, suspended_from, deleted_from FROM users WHERE realm = ?1 AND id = ?2",
            params![realm, id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?
        .ok_or_else(|| Error::not_found("user", id))?;
    let parse = |s: &str| s.parse::<UserState>().map_err(Error::from);
    let memory = Memory {
        suspended_from: suspended_from.as_deref().map(parse).transpose()?,
        deleted_from: deleted_from.as_deref().map(parse).transpose()?,
    };
    let t = parse(&state)?.apply(action, memory)?;
    tx.execute(
        "UPDATE users SET state = ?3, suspended_from = ?4, deleted_from = ?5,
                tokens_valid_after = CASE WHEN ?6 THEN MAX(tokens_valid_after, ?7) ELSE tokens_valid_after END,
                updated_at = ?7
         WHERE realm = ?1 AND id = ?2",
        params![
            realm,
            id,
            t.to.as_str(),
            t.memory.suspended_from.map(UserState::as_str),
            t.memory.deleted_from.map(UserState::as_str),
            t.revokes_tokens,
            now
        ],
    )?;
    record_change(tx, realm, Some(id), now)?;
    user_in(tx, realm, id)
}

pub(crate) fn user_by_login_in(tx: &Transaction<'_>, realm: &str, login: &str) -> Result<User> {
    live_realm(tx, realm)?;
    let lc = login.to_lowercase();
    let id: String = tx
        .query_row(
            "SELECT id FROM users WHERE realm = ?1 AND (username_lc = ?2 OR email_lc = ?2)
             ORDER BY username_lc = ?2 DESC LIMIT 1",
            params![realm, lc],
            |r| r.get(0),
        )
        .optional()?
        .ok_or_else(|| Error::not_found("user", login))?;
    user_in(tx, realm, &id)
}

/// A user of a realm (the realm's liveness is the caller's check).
pub(crate) fn user_in(tx: &Transaction<'_>, realm: &str, id: &str) -> Result<User> {
    let mut stmt = tx.prepare_cached(
        "SELECT username, email, state, attrs, tokens_valid_after, created_at, updated_at
         FROM users WHERE realm = ?1 AND id = ?2",
    )?;
    let row: Option<(String, String, String, String, i64, i64, i64)> = stmt
        .query_row(params![realm, id], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
            ))
        })
        .optional()?;
    let (username, email, state, attrs, tva, created_at, updated_at) =
        row.ok_or_else(|| Error::not_found("user", id))?;
    let list = |sql: &str| -> Result<Vec<String>> {
        let mut stmt = tx.prepare_cached(sql)?;
        let out = stmt
            .query_map(params![realm, id], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        Ok(out)
    };
    Ok(User {
        id: id.to_owned(),
        username,
        email,
        state: state.parse()?,
        attrs: serde_json::from_str(&attrs)
            .map_err(|e| Error::Internal(format!("user {id:?} attrs: {e}")))?,
        groups: list(
            "SELECT group_id FROM user_groups WHERE realm = ?1 AND user_id = ?2 ORDER BY group_id",
        )?,
        roles: list(
            "SELECT role_id FROM user_roles WHERE realm = ?1 AND user_id = ?2 ORDER BY role_id",
        )?,
        tokens_valid_after: tva,
        created_at,
        updated_at,
    })
}
