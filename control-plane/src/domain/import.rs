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
//!
//! This module parses and checks; the service writes what it yields in one
//! repository transaction.

use super::error::{Diagnostic, Error, Result};
use super::user::{User, canonical, check_email, check_username};
use pdp_core::UserState;
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
    /// Tokens issued in or before this unix second stay refused.
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

/// An `Invalid` error naming the input line (or CSV row) it is about.
pub fn line_error(line: u64, message: impl Into<String>) -> Error {
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

/// One checked user of an import, ready to be written.
#[derive(Debug, Clone)]
pub struct ImportedUser {
    /// The user (canonical attributes, sorted memberships).
    pub user: User,
    /// A bcrypt or Argon2 PHC hash to keep.
    pub password_hash: Option<String>,
    /// Its line (JSON Lines) or row (CSV) in the input, for errors.
    pub line: u64,
}

/// Check one record against the realm's schema and make it a user.
/// `fresh_id` is called for a record without an id.
pub fn check_record(
    rec: ImportRecord,
    line: u64,
    realm: &str,
    schema: &cedar_policy::Schema,
    now: i64,
    fresh_id: impl FnOnce() -> Result<String>,
) -> Result<ImportedUser> {
    check_email(&rec.email).map_err(|e| line_error(line, e.to_string()))?;
    let id = match rec.id {
        Some(id) => {
            super::realm::check_id("user", &id).map_err(|e| line_error(line, e.to_string()))?;
            id
        }
        None => fresh_id()?,
    };
    let username = rec.username.unwrap_or_else(|| rec.email.clone());
    check_username(&username).map_err(|e| line_error(line, e.to_string()))?;
    let (mut groups, mut roles) = (rec.groups, rec.roles);
    groups.sort();
    groups.dedup();
    roles.sort();
    roles.dedup();
    if let Some(h) = &rec.password_hash
        && let Err(why) = crate::domain::password::check_hash(h)
    {
        return Err(line_error(line, format!("password_hash: {why}")));
    }
    let mut user = User {
        username,
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
    user.attrs = canonical(&user, schema, realm)
        .map_err(|e| line_error(line, e.to_string()))?
        .attrs;
    Ok(ImportedUser {
        user,
        password_hash: rec.password_hash,
        line,
    })
}

/// Read every record of `input`, calling `each` with it and its line (or
/// CSV row) number; stops at the first error.
pub fn read_records(
    input: impl BufRead,
    format: Format,
    mut each: impl FnMut(ImportRecord, u64) -> Result<()>,
) -> Result<()> {
    match format {
        Format::JsonLines => {
            for (i, line) in input.lines().enumerate() {
                let n = i as u64 + 1;
                let line = line.map_err(|e| line_error(n, e.to_string()))?;
                if line.trim().is_empty() {
                    continue;
                }
                let rec: ImportRecord =
                    serde_json::from_str(&line).map_err(|e| line_error(n, e.to_string()))?;
                each(rec, n)?;
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
                let row = row
                    .map_err(|e| line_error(e.position().map_or(0, |p| p.line()), e.to_string()))?;
                let n = row.position().map_or(0, |p| p.line());
                each(csv_record(&headers, &row, n)?, n)?;
            }
        }
    }
    Ok(())
}
