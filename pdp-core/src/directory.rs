//! The user directory: every user of a realm, kept compact enough for
//! millions of users.
//!
//! A snapshot's users live in one packed table: all strings in one arena,
//! group and role names interned, one fixed-size row per user and an open
//! hash index over the ids. No Cedar `Entity` is kept per user; the one a
//! request needs is built on demand by the slicer. Deltas land in a small
//! copy-on-write overlay on top of the packed table, so applying one costs
//! the size of the overlay, never the size of the directory.

use crate::lifecycle::UserState;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Arc;

/// The Cedar entity type of directory users.
pub const USER_TYPE: &str = "User";
/// The Cedar entity type of groups named in `groups`.
pub const GROUP_TYPE: &str = "Group";
/// The Cedar entity type of roles named in `roles`.
pub const ROLE_TYPE: &str = "Role";

/// One user as it appears in `users.jsonl` (and in the control plane).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserRecord {
    /// Stable id; the token `sub`.
    pub id: String,
    /// Login name.
    pub username: String,
    /// Email, unique per realm (case-insensitively).
    pub email: String,
    /// Lifecycle state.
    pub state: UserState,
    /// Ids of the `Group` entities the user belongs to.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Ids of the `Role` entities assigned directly.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Custom attributes, Cedar JSON values (explicit `__entity`/`__extn` forms).
    #[serde(default)]
    pub attrs: serde_json::Map<String, serde_json::Value>,
    /// Tokens issued (`iat`) before this unix second are refused.
    #[serde(default)]
    pub tokens_valid_after: i64,
    /// Last change, unix seconds.
    #[serde(default)]
    pub updated_at: i64,
}

/// A line of a delta's `users.jsonl`: an upsert or a removal.
#[derive(Debug, Clone, PartialEq)]
pub enum UserChange {
    /// Insert or replace the user with this id.
    Upsert(UserRecord),
    /// Remove the user with this id.
    Remove(String),
}

impl UserChange {
    /// The JSON line for this change.
    pub fn to_json_line(&self) -> String {
        match self {
            UserChange::Upsert(u) => serde_json::to_string(u).unwrap_or_default(),
            UserChange::Remove(id) => serde_json::json!({"id": id, "deleted": true}).to_string(),
        }
    }
}

/// Why `users.jsonl` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct DirectoryError {
    /// 1-based line number.
    pub line: usize,
    /// 1-based column, when known.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow, default)]
    username: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    email: Option<Cow<'a, str>>,
    #[serde(default)]
    state: Option<UserState>,
    #[serde(borrow, default)]
    groups: Vec<Cow<'a, str>>,
    #[serde(borrow, default)]
    roles: Vec<Cow<'a, str>>,
    #[serde(borrow, default)]
    attrs: Option<&'a RawValue>,
    #[serde(default)]
    tokens_valid_after: i64,
    #[serde(default)]
    updated_at: i64,
    #[serde(default)]
    deleted: bool,
}

enum Parsed<'a> {
    Upsert(Line<'a>),
    Remove(Cow<'a, str>),
}

fn parse_line(line: &str, n: usize) -> Result<Parsed<'_>, DirectoryError> {
    let l: Line<'_> = serde_json::from_str(line).map_err(|e| DirectoryError {
        line: n,
        column: e.column(),
        message: e.to_string(),
    })?;
    let err = |m: &str| DirectoryError {
        line: n,
        column: 1,
        message: m.to_owned(),
    };
    if l.id.is_empty() {
        return Err(err("empty user id"));
    }
    if l.deleted {
        return Ok(Parsed::Remove(l.id));
    }
    if l.username.is_none() || l.email.is_none() || l.state.is_none() {
        return Err(err("a user needs username, email and state"));
    }
    if let Some(a) = l.attrs
        && !a.get().trim_start().starts_with('{')
    {
        return Err(err("attrs must be a JSON object"));
    }
    Ok(Parsed::Upsert(l))
}

#[derive(Debug, Clone, Copy, Default)]
struct Span {
    start: u32,
    len: u32,
}

/// One user: 40 bytes. Its id, username, email and attributes are stored
/// back to back in the arena from `start`, so one offset and four lengths
/// locate them all.
struct Row {
    tokens_valid_after: i64,
    updated_at: i64,
    start: u32,
    attrs_len: u32,
    parents: u32,
    id_len: u16,
    username_len: u16,
    email_len: u16,
    groups: u16,
    roles: u16,
    state: UserState,
}

impl Row {
    fn span(&self, skip: u32, len: u32) -> Span {
        Span {
            start: self.start.saturating_add(skip),
            len,
        }
    }
    fn id(&self) -> Span {
        self.span(0, u32::from(self.id_len))
    }
    fn username(&self) -> Span {
        self.span(u32::from(self.id_len), u32::from(self.username_len))
    }
    fn email(&self) -> Span {
        self.span(
            u32::from(self.id_len) + u32::from(self.username_len),
            u32::from(self.email_len),
        )
    }
    fn attrs(&self) -> Span {
        let skip =
            u32::from(self.id_len) + u32::from(self.username_len) + u32::from(self.email_len);
        self.span(skip, self.attrs_len)
    }
}

/// The packed, immutable table of a snapshot's users.
#[derive(Default)]
struct Packed {
    text: String,
    rows: Vec<Row>,
    parents: Vec<u32>,
    names: Vec<Box<str>>,
    name_ids: HashMap<Box<str>, u32>,
    index: hashbrown::HashTable<u32>,
    hasher: hashbrown::DefaultHashBuilder,
}

impl Packed {
    fn str(&self, s: Span) -> &str {
        let start = s.start as usize;
        self.text.get(start..start + s.len as usize).unwrap_or("")
    }

    fn push_str(&mut self, s: &str) -> Option<Span> {
        let start = u32::try_from(self.text.len()).ok()?;
        let len = u32::try_from(s.len()).ok()?;
        start.checked_add(len)?;
        self.text.push_str(s);
        Some(Span { start, len })
    }

    fn intern(&mut self, name: &str) -> Option<u32> {
        if let Some(id) = self.name_ids.get(name) {
            return Some(*id);
        }
        let id = u32::try_from(self.names.len()).ok()?;
        self.names.push(name.into());
        self.name_ids.insert(name.into(), id);
        Some(id)
    }

    fn find(&self, id: &str) -> Option<&Row> {
        let hash = self.hasher.hash_one(id);
        let i = self.index.find(hash, |&i| {
            self.rows
                .get(i as usize)
                .is_some_and(|r| self.str(r.id()) == id)
        })?;
        self.rows.get(*i as usize)
    }

    fn name(&self, i: u32) -> &str {
        self.names.get(i as usize).map_or("", |n| n)
    }
}

/// A user stored outside the packed table (from a delta).
#[derive(Debug, Clone)]
struct Loose {
    record: UserRecord,
    attrs_text: Box<str>,
}

/// The user directory of one snapshot. Cloning is cheap (shared).
#[derive(Clone, Default)]
pub struct Directory {
    packed: Arc<Packed>,
    overlay: Arc<HashMap<Box<str>, Option<Arc<Loose>>>>,
    len: usize,
}

impl std::fmt::Debug for Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Directory")
            .field("users", &self.len)
            .field("overlay", &self.overlay.len())
            .finish()
    }
}

/// A borrowed view of one user.
#[derive(Clone, Copy)]
pub struct UserRef<'a> {
    inner: RefInner<'a>,
}

#[derive(Clone, Copy)]
enum RefInner<'a> {
    Packed(&'a Packed, &'a Row),
    Loose(&'a Loose),
}

impl<'a> UserRef<'a> {
    /// The user id (token `sub`).
    pub fn id(&self) -> &'a str {
        match self.inner {
            RefInner::Packed(p, r) => p.str(r.id()),
            RefInner::Loose(l) => &l.record.id,
        }
    }
    /// Login name.
    pub fn username(&self) -> &'a str {
        match self.inner {
            RefInner::Packed(p, r) => p.str(r.username()),
            RefInner::Loose(l) => &l.record.username,
        }
    }
    /// Email.
    pub fn email(&self) -> &'a str {
        match self.inner {
            RefInner::Packed(p, r) => p.str(r.email()),
            RefInner::Loose(l) => &l.record.email,
        }
    }
    /// Lifecycle state.
    pub fn state(&self) -> UserState {
        match self.inner {
            RefInner::Packed(_, r) => r.state,
            RefInner::Loose(l) => l.record.state,
        }
    }
    /// Tokens issued before this unix second are refused.
    pub fn tokens_valid_after(&self) -> i64 {
        match self.inner {
            RefInner::Packed(_, r) => r.tokens_valid_after,
            RefInner::Loose(l) => l.record.tokens_valid_after,
        }
    }
    /// Last change, unix seconds.
    pub fn updated_at(&self) -> i64 {
        match self.inner {
            RefInner::Packed(_, r) => r.updated_at,
            RefInner::Loose(l) => l.record.updated_at,
        }
    }
    /// Custom attributes as JSON object text.
    pub fn attrs_json(&self) -> &'a str {
        match self.inner {
            RefInner::Packed(p, r) => match p.str(r.attrs()) {
                "" => "{}",
                s => s,
            },
            RefInner::Loose(l) => &l.attrs_text,
        }
    }
    /// Group ids.
    pub fn groups(&self) -> impl Iterator<Item = &'a str> + 'a {
        self.names(true)
    }
    /// Role ids.
    pub fn roles(&self) -> impl Iterator<Item = &'a str> + 'a {
        self.names(false)
    }

    fn names(&self, groups: bool) -> Names<'a> {
        match self.inner {
            RefInner::Packed(p, r) => {
                let start = r.parents as usize;
                let (from, n) = if groups {
                    (start, usize::from(r.groups))
                } else {
                    (start + usize::from(r.groups), usize::from(r.roles))
                };
                Names::Packed(p, p.parents.get(from..from + n).unwrap_or(&[]).iter())
            }
            RefInner::Loose(l) => {
                let v = if groups {
                    &l.record.groups
                } else {
                    &l.record.roles
                };
                Names::Loose(v.iter())
            }
        }
    }

    /// An owned copy of the record.
    pub fn to_record(&self) -> UserRecord {
        UserRecord {
            id: self.id().to_owned(),
            username: self.username().to_owned(),
            email: self.email().to_owned(),
            state: self.state(),
            groups: self.groups().map(str::to_owned).collect(),
            roles: self.roles().map(str::to_owned).collect(),
            attrs: serde_json::from_str(self.attrs_json()).unwrap_or_default(),
            tokens_valid_after: self.tokens_valid_after(),
            updated_at: self.updated_at(),
        }
    }
}

/// Group or role names of one user, without allocating.
enum Names<'a> {
    Packed(&'a Packed, std::slice::Iter<'a, u32>),
    Loose(std::slice::Iter<'a, String>),
}

impl<'a> Iterator for Names<'a> {
    type Item = &'a str;
    fn next(&mut self) -> Option<&'a str> {
        match self {
            Names::Packed(p, ids) => ids.next().map(|i| p.name(*i)),
            Names::Loose(names) => names.next().map(String::as_str),
        }
    }
}

impl Directory {
    /// Parse a snapshot's `users.jsonl` into a packed directory. Removal lines
    /// are refused in a snapshot; a repeated id is refused.
    pub fn parse(text: &str) -> Result<Directory, DirectoryError> {
        let lines = text.lines().filter(|l| !l.trim().is_empty()).count();
        let mut p = Packed {
            text: String::with_capacity(text.len() / 2),
            rows: Vec::with_capacity(lines),
            index: hashbrown::HashTable::with_capacity(lines),
            ..Packed::default()
        };
        let too_big = |n| DirectoryError {
            line: n,
            column: 1,
            message: "directory too large".into(),
        };
        for (i, raw) in text.lines().enumerate() {
            let n = i + 1;
            if raw.trim().is_empty() {
                continue;
            }
            let l = match parse_line(raw, n)? {
                Parsed::Upsert(l) => l,
                Parsed::Remove(_) => {
                    return Err(DirectoryError {
                        line: n,
                        column: 1,
                        message: "a snapshot cannot remove users".into(),
                    });
                }
            };
            let hash = p.hasher.hash_one(&*l.id);
            if p.find(&l.id).is_some() {
                return Err(DirectoryError {
                    line: n,
                    column: 1,
                    message: format!("user id {:?} appears twice", l.id),
                });
            }
            let parents = u32::try_from(p.parents.len()).map_err(|_| too_big(n))?;
            let groups = u16::try_from(l.groups.len()).map_err(|_| too_big(n))?;
            let roles = u16::try_from(l.roles.len()).map_err(|_| too_big(n))?;
            for name in l.groups.iter().chain(&l.roles) {
                let id = p.intern(name).ok_or_else(|| too_big(n))?;
                p.parents.push(id);
            }
            let username = l.username.as_deref().unwrap_or("");
            let email = l.email.as_deref().unwrap_or("");
            let attrs = l.attrs.map_or("", |a| a.get());
            let short = |s: &str| {
                u16::try_from(s.len()).map_err(|_| DirectoryError {
                    line: n,
                    column: 1,
                    message: "id, username and email are limited to 65535 bytes".into(),
                })
            };
            let (id_len, username_len, email_len) =
                (short(&l.id)?, short(username)?, short(email)?);
            let start = p.push_str(&l.id).ok_or_else(|| too_big(n))?.start;
            p.push_str(username).ok_or_else(|| too_big(n))?;
            p.push_str(email).ok_or_else(|| too_big(n))?;
            let attrs_len = p.push_str(attrs).ok_or_else(|| too_big(n))?.len;
            let row = Row {
                tokens_valid_after: l.tokens_valid_after,
                updated_at: l.updated_at,
                start,
                attrs_len,
                parents,
                id_len,
                username_len,
                email_len,
                groups,
                roles,
                state: l.state.unwrap_or(UserState::Created),
            };
            let idx = u32::try_from(p.rows.len()).map_err(|_| too_big(n))?;
            p.rows.push(row);
            let Packed {
                index,
                rows,
                text,
                hasher,
                ..
            } = &mut p;
            index.insert_unique(hash, idx, |&j| {
                let r = rows.get(j as usize).map_or(Span::default(), |r| r.id());
                let start = r.start as usize;
                hasher.hash_one(text.get(start..start + r.len as usize).unwrap_or(""))
            });
        }
        p.text.shrink_to_fit();
        p.parents.shrink_to_fit();
        let len = p.rows.len();
        Ok(Directory {
            packed: Arc::new(p),
            overlay: Arc::default(),
            len,
        })
    }

    /// Parse a delta's `users.jsonl` into changes.
    pub fn parse_changes(text: &str) -> Result<Vec<UserChange>, DirectoryError> {
        let mut out = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            if raw.trim().is_empty() {
                continue;
            }
            match parse_line(raw, i + 1)? {
                Parsed::Remove(id) => out.push(UserChange::Remove(id.into_owned())),
                Parsed::Upsert(_) => {
                    let record: UserRecord =
                        serde_json::from_str(raw).map_err(|e| DirectoryError {
                            line: i + 1,
                            column: e.column(),
                            message: e.to_string(),
                        })?;
                    out.push(UserChange::Upsert(record));
                }
            }
        }
        Ok(out)
    }

    /// A new directory with `changes` applied on top of this one (this one is
    /// unchanged). Removing an absent user is not an error (idempotent).
    pub fn with_changes(&self, changes: Vec<UserChange>) -> Directory {
        let mut overlay = (*self.overlay).clone();
        let mut len = self.len;
        for change in changes {
            let id: Box<str> = match &change {
                UserChange::Upsert(u) => u.id.as_str().into(),
                UserChange::Remove(id) => id.as_str().into(),
            };
            let existed = match overlay.get(&id) {
                Some(slot) => slot.is_some(),
                None => self.packed.find(&id).is_some(),
            };
            match change {
                UserChange::Upsert(record) => {
                    if !existed {
                        len += 1;
                    }
                    let attrs_text = serde_json::Value::Object(record.attrs.clone())
                        .to_string()
                        .into();
                    overlay.insert(id, Some(Arc::new(Loose { record, attrs_text })));
                }
                UserChange::Remove(_) => {
                    if existed {
                        len = len.saturating_sub(1);
                    }
                    if self.packed.find(&id).is_some() {
                        overlay.insert(id, None);
                    } else {
                        overlay.remove(&id);
                    }
                }
            }
        }
        Directory {
            packed: Arc::clone(&self.packed),
            overlay: Arc::new(overlay),
            len,
        }
    }

    /// Look a user up by id.
    pub fn get(&self, id: &str) -> Option<UserRef<'_>> {
        if let Some(slot) = self.overlay.get(id) {
            return slot.as_deref().map(|l| UserRef {
                inner: RefInner::Loose(l),
            });
        }
        self.packed.find(id).map(|r| UserRef {
            inner: RefInner::Packed(&self.packed, r),
        })
    }

    /// Number of users.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no users.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every user, packed ones first (in file order), then delta upserts.
    pub fn iter(&self) -> impl Iterator<Item = UserRef<'_>> + '_ {
        let packed = self
            .packed
            .rows
            .iter()
            .filter(|r| !self.overlay.contains_key(self.packed.str(r.id())))
            .map(|r| UserRef {
                inner: RefInner::Packed(&self.packed, r),
            });
        let loose = self
            .overlay
            .values()
            .filter_map(|s| s.as_deref())
            .map(|l| UserRef {
                inner: RefInner::Loose(l),
            });
        packed.chain(loose)
    }

    /// Approximate heap bytes held (for status pages and benchmarks).
    pub fn heap_bytes(&self) -> usize {
        let p = &self.packed;
        p.text.capacity()
            + p.rows.capacity() * std::mem::size_of::<Row>()
            + p.parents.capacity() * 4
            + p.index.capacity() * 5
            + p.names.iter().map(|n| n.len() * 2 + 48).sum::<usize>()
            + self.overlay.len() * 256
    }

    /// Serialize as a snapshot's `users.jsonl`.
    pub fn to_jsonl(&self) -> String {
        let mut out = String::new();
        for u in self.iter() {
            out.push_str(&UserChange::Upsert(u.to_record()).to_json_line());
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"{"id":"u1","username":"alice","email":"alice@example.com","state":"Active","groups":["eng","staff"],"roles":["admin"],"attrs":{"level":3},"tokens_valid_after":10,"updated_at":20}
{"id":"u2","username":"bob","email":"bob@example.com","state":"Suspended"}
"#;

    #[test]
    fn a_packed_row_stays_small() {
        // 1M users x this, plus their strings, is the directory's footprint.
        assert_eq!(std::mem::size_of::<Row>(), 40);
    }

    #[test]
    fn packed_lookup_returns_every_field() {
        let d = Directory::parse(TEXT).unwrap();
        assert_eq!(d.len(), 2);
        let a = d.get("u1").unwrap();
        assert_eq!(
            (a.username(), a.email(), a.state()),
            ("alice", "alice@example.com", UserState::Active)
        );
        assert_eq!(a.groups().collect::<Vec<_>>(), ["eng", "staff"]);
        assert_eq!(a.roles().collect::<Vec<_>>(), ["admin"]);
        assert_eq!(a.attrs_json(), r#"{"level":3}"#);
        assert_eq!((a.tokens_valid_after(), a.updated_at()), (10, 20));
        assert_eq!(d.get("u2").unwrap().attrs_json(), "{}");
        assert!(d.get("u3").is_none());
    }

    #[test]
    fn changes_overlay_without_touching_the_base() {
        let d = Directory::parse(TEXT).unwrap();
        let changes = Directory::parse_changes(
            "{\"id\":\"u2\",\"deleted\":true}\n{\"id\":\"u3\",\"username\":\"carol\",\"email\":\"c@x\",\"state\":\"Active\",\"groups\":[\"eng\"]}\n{\"id\":\"u1\",\"username\":\"alice\",\"email\":\"alice@example.com\",\"state\":\"Suspended\"}",
        )
        .unwrap();
        let d2 = d.with_changes(changes);
        assert_eq!(d2.len(), 2);
        assert!(d2.get("u2").is_none());
        assert_eq!(d2.get("u1").unwrap().state(), UserState::Suspended);
        assert_eq!(d2.get("u3").unwrap().groups().collect::<Vec<_>>(), ["eng"]);
        // The original is untouched.
        assert_eq!(d.get("u1").unwrap().state(), UserState::Active);
        assert!(d.get("u2").is_some());
        let ids: Vec<_> = d2.iter().map(|u| u.id().to_owned()).collect();
        assert_eq!(ids.len(), 2);
        // Removing an absent user twice changes nothing.
        let d3 = d2.with_changes(vec![UserChange::Remove("nope".into())]);
        assert_eq!(d3.len(), 2);
        // Round trip through to_jsonl.
        let again = Directory::parse(&d2.to_jsonl()).unwrap();
        assert_eq!(again.len(), 2);
        assert_eq!(
            again.get("u3").unwrap().to_record(),
            d2.get("u3").unwrap().to_record()
        );
    }

    #[test]
    fn bad_lines_are_refused_with_their_line_number() {
        let e = Directory::parse(
            "{\"id\":\"a\",\"username\":\"a\",\"email\":\"a\",\"state\":\"Active\"}\n{oops",
        )
        .unwrap_err();
        assert_eq!(e.line, 2);
        let e = Directory::parse("{\"id\":\"a\",\"username\":\"a\",\"email\":\"a\",\"state\":\"Active\"}\n{\"id\":\"a\",\"username\":\"a\",\"email\":\"a\",\"state\":\"Active\"}").unwrap_err();
        assert!(e.message.contains("twice"));
        assert!(Directory::parse("{\"id\":\"a\",\"deleted\":true}").is_err());
        assert!(
            Directory::parse(
                "{\"id\":\"a\",\"username\":\"a\",\"email\":\"a\",\"state\":\"Banned\"}"
            )
            .is_err()
        );
        assert!(Directory::parse("{\"id\":\"a\",\"username\":\"a\",\"email\":\"a\",\"state\":\"Active\",\"attrs\":[1]}").is_err());
        assert!(Directory::parse("{\"id\":\"a\",\"username\":\"a\",\"email\":\"a\",\"state\":\"Active\",\"admin\":true}").is_err());
    }
}
