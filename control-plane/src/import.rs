//! Bulk import of users from another system: JSON Lines (one
//! [`ImportRecord`] a line) or CSV (a header row naming the same fields;
//! `groups` and `roles` `;`-separated; every `attr:<name>` column an
//! attribute whose cell is read as a JSON literal when it is one — `3`,
//! `true`, `"007"` — and as a string otherwise).
//!
//! The whole file is one transaction: it imports completely or not at all,
//! and a bad line is reported by its number. Imported users keep their ids,
//! may arrive in any lifecycle state (they come from a live system; one
//! imported Suspended or Deleted returns to Active on resume or restore,
//! the state before is not known), and may
//! bring a bcrypt or Argon2 password hash, verified and upgraded to
//! Argon2id at their next login. The realm is then published as a snapshot.

use crate::db::{Db, live_realm, record_change};
use crate::error::{Diagnostic, Error, Result};
use crate::user::check_email;
use pdp_core::UserState;
use rusqlite::params;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::io::BufRead;

/// One imported user.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportRecord {
    /// Stable id (the token `sub`); a fresh UUID when absent.
    #[serde(default)]
    pub id: Option<String>,
    /// Login name; defaults to the email.
    #[serde(default)]
    pub username: Option<String>,
    /// Email, unique per realm.
    pub email: String,
    /// Lifecycle state (default `Created`).
    #[serde(default)]
    pub state: Option<UserState>,
    /// Groups (must exist).
    #[serde(default)]
    pub groups: Vec<String>,
    /// Roles (must exist).
    #[serde(default)]
    pub roles: Vec<String>,
    /// Custom attributes.
    #[serde(default)]
    pub attrs: Map<String, Value>,
    /// A bcrypt (`$2a$`, `$2b$`, `$2y$`) or Argon2 PHC password hash.
    #[serde(default)]
    pub password_hash: Option<String>,
    /// Tokens issued before this unix second stay refused.
    #[serde(default)]
    pub tokens_valid_after: i64,
    /// Ignored (a bundle's `users.jsonl` carries it; the import time is used).
    #[serde(default)]
    pub updated_at: Option<i64>,
}

/// The input's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON object a line.
    JsonLines,
    /// A header row, then one user a row.
    Csv,
}

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Imported {
    /// Users created.
    pub users: u64,
}

fn line_error(line: u64, message: impl Into<String>) -> Error {
    Error::invalid(
        "import",
        Diagnostic {
            subject: format!("line {line}"),
            message: message.into(),
            line: Some(usize::try_from(line).unwrap_or(usize::MAX)),
            column: None,
        },
    )
}

fn csv_record(
    headers: &csv::StringRecord,
    row: &csv::StringRecord,
    line: u64,
) -> Result<ImportRecord> {
    let mut r = ImportRecord {
        id: None,
        username: None,
        email: String::new(),
        state: None,
        groups: vec![],
        roles: vec![],
        attrs: Map::new(),
        password_hash: None,
        tokens_valid_after: 0,
        updated_at: None,
    };
    let list = |v: &str| -> Vec<String> {
        v.split(';')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    };
    for (h, v) in headers.iter().zip(row.iter()) {
        let some = || (!v.is_empty()).then(|| v.to_owned());
        match h {
            "id" => r.id = some(),
            "username" => r.username = some(),
            "email" => r.email = v.to_owned(),
            "state" => {
                r.state = some()
                    .map(|s| s.parse::<UserState>())
                    .transpose()
                    .map_err(|e| line_error(line, e.to_string()))?;
            }
            "groups" => r.groups = list(v),
            "roles" => r.roles = list(v),
            "password_hash" => r.password_hash = some(),
            other => match other.strip_prefix("attr:") {
                Some(name) if !v.is_empty() => {
                    let value = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.into()));
                    r.attrs.insert(name.to_owned(), value);
                }
                Some(_) => {}
                None => return Err(line_error(line, format!("unknown column {other:?}"))),
            },
        }
    }
    Ok(r)
}

impl Db {
    /// Import users from `input`; all or nothing.
    pub fn import_users(
        &self,
        realm: &str,
        input: impl BufRead,
        format: Format,
        now: i64,
    ) -> Result<Imported> {
        self.write(|tx| {
            live_realm(tx, realm)?;
            let schema = crate::policy::current_schema(tx, realm)?;
            let mut insert = tx.prepare(
                "INSERT INTO users (realm, id, username, username_lc, email, email_lc, state, attrs,
                                    tokens_valid_after, created_at, updated_at,
                                    suspended_from, deleted_from)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?10, ?9, ?9,
                         CASE WHEN ?7 = 'Suspended' THEN 'Active' END,
                         CASE WHEN ?7 = 'Deleted' THEN 'Active' END)",
            )?;
            let mut member = tx.prepare(
                "INSERT INTO user_groups (realm, user_id, group_id) VALUES (?1, ?2, ?3)",
            )?;
            let mut role =
                tx.prepare("INSERT INTO user_roles (realm, user_id, role_id) VALUES (?1, ?2, ?3)")?;
            let mut credential = tx.prepare(
                "INSERT INTO credentials (realm, user_id, password_hash) VALUES (?1, ?2, ?3)",
            )?;
            let mut count = 0u64;
            let mut one = |rec: ImportRecord, line: u64| -> Result<()> {
                check_email(&rec.email).map_err(|e| line_error(line, e.to_string()))?;
                let id = match rec.id {
                    Some(id) => {
                        crate::realm::check_id("user", &id)
                            .map_err(|e| line_error(line, e.to_string()))?;
                        id
                    }
                    None => crate::db::uuid_v4()?,
                };
                let (mut groups, mut roles) = (rec.groups, rec.roles);
                groups.sort();
                groups.dedup();
                roles.sort();
                roles.dedup();
                let user = crate::user::User {
                    username: rec.username.unwrap_or_else(|| rec.email.clone()),
                    email: rec.email,
                    state: rec.state.unwrap_or(UserState::Created),
                    attrs: rec.attrs,
                    groups,
                    roles,
                    tokens_valid_after: rec.tokens_valid_after,
                    created_at: now,
                    updated_at: now,
                    id,
                };
                let record = crate::user::canonical(&user, &schema, realm)
                    .map_err(|e| line_error(line, e.to_string()))?;
                insert
                    .execute(params![
                        realm,
                        user.id,
                        user.username,
                        user.username.to_lowercase(),
                        user.email,
                        user.email.to_lowercase(),
                        user.state.as_str(),
                        serde_json::to_string(&record.attrs).unwrap_or_default(),
                        now,
                        user.tokens_valid_after
                    ])
                    .map_err(|e| constraint(e, line, &user))?;
                for g in &user.groups {
                    member
                        .execute(params![realm, user.id, g])
                        .map_err(|_| line_error(line, format!("group {g:?} does not exist")))?;
                }
                for r in &user.roles {
                    role.execute(params![realm, user.id, r])
                        .map_err(|_| line_error(line, format!("role {r:?} does not exist")))?;
                }
                if let Some(h) = rec.password_hash {
                    if !(h.starts_with("$2") || h.starts_with("$argon2")) {
                        return Err(line_error(
                            line,
                            "password_hash is not a bcrypt or Argon2 hash",
                        ));
                    }
                    credential.execute(params![realm, user.id, h])?;
                }
                count += 1;
                Ok(())
            };
            match format {
                Format::JsonLines => {
                    for (i, line) in input.lines().enumerate() {
                        let n = i as u64 + 1;
                        let line = line.map_err(|e| line_error(n, e.to_string()))?;
                        if line.trim().is_empty() {
                            continue;
                        }
                        let rec: ImportRecord = serde_json::from_str(&line)
                            .map_err(|e| line_error(n, e.to_string()))?;
                        one(rec, n)?;
                    }
                }
                Format::Csv => {
                    let mut reader = csv::Reader::from_reader(input);
                    let headers = reader
                        .headers()
                        .map_err(|e| line_error(1, e.to_string()))?
                        .clone();
                    if !headers.iter().any(|h| h == "email") {
                        return Err(line_error(1, "the header has no email column"));
                    }
                    for row in reader.records() {
                        let row = row.map_err(|e| {
                            line_error(e.position().map_or(0, |p| p.line()), e.to_string())
                        })?;
                        let n = row.position().map_or(0, |p| p.line());
                        one(csv_record(&headers, &row, n)?, n)?;
                    }
                }
            }
            // One change stands for every user: the next publish writes a
            // snapshot instead of a million-line delta.
            record_change(tx, realm, Some("*"), now)?;
            Ok(Imported { users: count })
        })
    }
}

fn constraint(e: rusqlite::Error, line: u64, user: &crate::user::User) -> Error {
    match e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            line_error(
                line,
                format!(
                    "a user with id {:?}, email {:?} or username {:?} already exists",
                    user.id, user.email, user.username
                ),
            )
        }
        e => Error::Db(e),
    }
}
