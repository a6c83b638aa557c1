//! Users: what a user is, the checks on a new one, attribute validation
//! against the realm's schema, and the search cursor. The lifecycle table
//! itself is `pdp_core::lifecycle`.

use super::error::{Diagnostic, Error, Result};
use base64::Engine as _;
use pdp_core::{UserRecord, UserState};
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
    /// Tokens issued in or before this unix second are refused.
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

/// Check a username: 1-128 bytes, no whitespace or control characters.
pub fn check_username(name: &str) -> Result<()> {
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

/// What a search orders and filters by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchKey {
    /// Case-folded email.
    Email,
    /// Case-folded username.
    Username,
    /// The id (no prefix).
    Id,
}

/// A checked search: the key, its case-folded prefix, the state filter,
/// the page size and where the previous page ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Search {
    /// Ordered by this key, then id.
    pub key: SearchKey,
    /// Case-folded prefix of the key (empty: any).
    pub prefix: String,
    /// Only this state; `None`: every state but `Deleted`.
    pub state: Option<UserState>,
    /// Page size, 1..=1000.
    pub limit: u32,
    /// The (key, id) of the last row of the previous page.
    pub after: Option<(String, String)>,
}

impl UserQuery {
    /// Check the query and turn it into a [`Search`].
    pub fn to_search(&self) -> Result<Search> {
        let limit = self.limit.unwrap_or(100).clamp(1, 1000);
        let state = self
            .state
            .as_deref()
            .map(|s| s.parse::<UserState>())
            .transpose()
            .map_err(|e| Error::BadRequest(e.to_string()))?;
        if self.email_prefix.is_some() && self.username_prefix.is_some() {
            return Err(Error::BadRequest(
                "search by email_prefix or username_prefix, not both".into(),
            ));
        }
        let (key, prefix) = match (&self.email_prefix, &self.username_prefix) {
            (Some(p), _) => (SearchKey::Email, p.to_lowercase()),
            (_, Some(p)) => (SearchKey::Username, p.to_lowercase()),
            _ => (SearchKey::Id, String::new()),
        };
        let after = self.cursor.as_deref().map(decode_cursor).transpose()?;
        Ok(Search {
            key,
            prefix,
            state,
            limit,
            after,
        })
    }
}

/// The cursor naming the row `(key, id)`.
pub fn encode_cursor(key: &str, id: &str) -> String {
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
pub fn canonical(user: &User, schema: &cedar_policy::Schema, realm: &str) -> Result<UserRecord> {
    pdp_core::source::canonical_user(user.to_record(), schema, realm)
        .map_err(|m| Error::invalid(format!("user {:?}", user.id), Diagnostic::new("attrs", m)))
}

/// A new user in state `Created`, checked (email, username, id) and with
/// its attributes validated and made canonical; `id` is used when the
/// request names none.
pub fn new_user(
    realm: &str,
    new: &NewUser,
    schema: &cedar_policy::Schema,
    id: String,
    now: i64,
) -> Result<User> {
    check_email(&new.email)?;
    let username = new.username.clone().unwrap_or_else(|| new.email.clone());
    check_username(&username)?;
    let id = match &new.id {
        Some(id) => {
            super::realm::check_id("user", id)?;
            id.clone()
        }
        None => id,
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
    Ok(user)
}

/// Merge `patch` into attributes: `null` removes one.
pub fn merge_attrs(attrs: &mut Map<String, Value>, patch: &Map<String, Value>) {
    for (k, v) in patch {
        if v.is_null() {
            attrs.remove(k);
        } else {
            attrs.insert(k.clone(), v.clone());
        }
    }
}
