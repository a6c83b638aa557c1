//! The user directory: every user of a realm, kept compact enough for
//! millions of users.
//!
//! A snapshot's users live in one packed table: one binary record per user
//! in a few sections (one per parser thread, each with its interned names),
//! and an index of 8-byte slots sorted by the id's hash, with a bucket
//! table over them. No Cedar `Entity` is kept per user; the one a
//! request needs is built on demand by the slicer. Deltas land in a small
//! copy-on-write overlay on top of the packed table, so applying one costs
//! the size of the overlay, never the size of the directory.

use crate::encoded::{self, Names, Reader};
use crate::lifecycle::UserState;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use smol_str::SmolStr;
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

/// Where one user's record starts in the blob, and 32 bits of its id's hash
/// (so a probe compares ids only on a likely match). 8 bytes a user.
#[derive(Debug, Clone, Copy)]
struct Slot {
    tag: u32,
    at: u32,
}

/// One part of a snapshot's users as it was parsed: its records in file
/// order and the names (keys, entity types, groups, roles) they refer to.
/// Parts are parsed on separate threads and kept as they are, so a load
/// never copies or renumbers a record.
#[derive(Default)]
struct Section {
    /// Offset of this section's first record among all records.
    start: usize,
    blob: Vec<u8>,
    names: Vec<SmolStr>,
}

/// The packed, immutable table of a snapshot's users.
///
/// Every user is one record in a section's blob, in file order:
/// `id`, state, `tokens_valid_after`, `updated_at`, `username`, `email`,
/// group and role name ids, and the encoded attributes (see
/// [`crate::encoded`]); strings are length-prefixed, numbers varints. Record
/// offsets run on across sections. The slots are sorted by the hash of the
/// id and `buckets` maps the hash's top bits to a run of slots, so a lookup
/// reads the bucket bounds, one or two slots, and the record itself: two or
/// three cache lines a user, all of them needed anyway.
#[derive(Default)]
struct Packed {
    sections: Vec<Section>,
    slots: Vec<Slot>,
    buckets: Vec<u32>,
    bits: u32,
    hasher: hashbrown::DefaultHashBuilder,
}

/// One decoded record header: what a lookup hands out.
#[derive(Clone, Copy)]
struct Rec<'a> {
    id: &'a str,
    state: UserState,
    tokens_valid_after: i64,
    updated_at: i64,
    username: &'a str,
    email: &'a str,
    groups: (usize, Reader<'a>),
    roles: (usize, Reader<'a>),
    attrs: &'a [u8],
    /// The names the ids in this record refer to.
    names: &'a [SmolStr],
    /// Offset of the next record.
    end: usize,
}

fn count(r: &mut Reader<'_>) -> Option<usize> {
    usize::try_from(r.varint()?).ok()
}

/// Skip `n` varints, returning a reader over them.
fn ids<'a>(r: &mut Reader<'a>, n: usize) -> Option<(usize, Reader<'a>)> {
    let start = *r;
    for _ in 0..n {
        r.varint()?;
    }
    Some((n, start))
}

impl Section {
    /// The record at `at` (an offset among all records).
    fn record(&self, at: usize) -> Option<Rec<'_>> {
        let whole = self.blob.get(at.checked_sub(self.start)?..)?;
        let mut r = Reader::new(whole);
        let id = r.str()?;
        let state = UserState::from_u8(r.u8()?)?;
        let tokens_valid_after = r.signed()?;
        let updated_at = r.signed()?;
        let username = r.str()?;
        let email = r.str()?;
        let n = count(&mut r)?;
        let groups = ids(&mut r, n)?;
        let n = count(&mut r)?;
        let roles = ids(&mut r, n)?;
        let n = count(&mut r)?;
        let attrs = r.bytes(n)?;
        Some(Rec {
            id,
            state,
            tokens_valid_after,
            updated_at,
            username,
            email,
            groups,
            roles,
            attrs,
            names: &self.names,
            end: at + (whole.len() - r.rest().len()),
        })
    }

    /// Every record, in file order.
    fn records(&self) -> impl Iterator<Item = Rec<'_>> + '_ {
        let mut at = self.start;
        std::iter::from_fn(move || {
            let r = self.record(at)?;
            at = r.end;
            Some(r)
        })
    }
}

impl Packed {
    fn record(&self, at: usize) -> Option<Rec<'_>> {
        // A handful of sections (one per parser thread): a short scan.
        self.sections
            .iter()
            .rev()
            .find(|s| s.start <= at)?
            .record(at)
    }

    fn bucket(&self, hash: u64) -> usize {
        // `bits` is 0 only in the empty table of `Directory::default()`
        // (a delta bringing the first users): a plain shift by 64 would
        // panic in debug builds. Wrapping, it is the same instruction as a
        // release build's, and any bucket of the empty table is absent.
        hash.wrapping_shr(64 - self.bits) as usize
    }

    fn find(&self, id: &str) -> Option<Rec<'_>> {
        let hash = self.hasher.hash_one(id);
        let b = self.bucket(hash);
        let lo = *self.buckets.get(b)? as usize;
        let hi = *self.buckets.get(b + 1)? as usize;
        self.slots
            .get(lo..hi)?
            .iter()
            .filter(|s| s.tag == hash as u32)
            .filter_map(|s| self.record(s.at as usize))
            .find(|r| r.id == id)
    }

    /// Every record, in file order.
    fn records(&self) -> impl Iterator<Item = Rec<'_>> + '_ {
        self.sections.iter().flat_map(Section::records)
    }
}

/// A user stored outside the packed table (from a delta).
#[derive(Debug, Clone)]
struct Loose {
    record: UserRecord,
    attrs: Box<[u8]>,
    names: Vec<SmolStr>,
}

impl Loose {
    fn new(record: UserRecord) -> Loose {
        let mut names = Names::default();
        let mut attrs = Vec::new();
        // Interning fails only past u32::MAX names; the attributes are then
        // kept as JSON text, which means the same.
        if encoded::encode_map(&record.attrs, &mut attrs, &mut names).is_err() {
            attrs.clear();
            names = Names::default();
            encoded::encode_as_json(&record.attrs, &mut attrs);
        }
        Loose {
            record,
            attrs: attrs.into(),
            names: names.freeze(),
        }
    }
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
    Packed(Rec<'a>),
    Loose(&'a Loose),
}

impl<'a> UserRef<'a> {
    /// The user id (token `sub`).
    pub fn id(&self) -> &'a str {
        match self.inner {
            RefInner::Packed(r) => r.id,
            RefInner::Loose(l) => &l.record.id,
        }
    }
    /// Login name.
    pub fn username(&self) -> &'a str {
        match self.inner {
            RefInner::Packed(r) => r.username,
            RefInner::Loose(l) => &l.record.username,
        }
    }
    /// Email.
    pub fn email(&self) -> &'a str {
        match self.inner {
            RefInner::Packed(r) => r.email,
            RefInner::Loose(l) => &l.record.email,
        }
    }
    /// Lifecycle state.
    pub fn state(&self) -> UserState {
        match self.inner {
            RefInner::Packed(r) => r.state,
            RefInner::Loose(l) => l.record.state,
        }
    }
    /// Tokens issued in or before this unix second are refused.
    pub fn tokens_valid_after(&self) -> i64 {
        match self.inner {
            RefInner::Packed(r) => r.tokens_valid_after,
            RefInner::Loose(l) => l.record.tokens_valid_after,
        }
    }
    /// Last change, unix seconds.
    pub fn updated_at(&self) -> i64 {
        match self.inner {
            RefInner::Packed(r) => r.updated_at,
            RefInner::Loose(l) => l.record.updated_at,
        }
    }
    /// Custom attributes (Cedar JSON values).
    pub fn attrs(&self) -> serde_json::Map<String, serde_json::Value> {
        match self.inner {
            RefInner::Packed(r) => encoded::to_json(r.attrs, r.names).unwrap_or_default(),
            RefInner::Loose(l) => l.record.attrs.clone(),
        }
    }
    /// The encoded attributes and the names they refer to.
    pub(crate) fn encoded_attrs(&self) -> (&'a [u8], &'a [SmolStr]) {
        match self.inner {
            RefInner::Packed(r) => (r.attrs, r.names),
            RefInner::Loose(l) => (&l.attrs, &l.names),
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

    fn names(&self, groups: bool) -> NameIter<'a> {
        match self.inner {
            RefInner::Packed(r) => {
                let (left, ids) = if groups { r.groups } else { r.roles };
                NameIter::Packed {
                    names: r.names,
                    ids,
                    left,
                }
            }
            RefInner::Loose(l) => {
                let v = if groups {
                    &l.record.groups
                } else {
                    &l.record.roles
                };
                NameIter::Loose(v.iter())
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
            attrs: self.attrs(),
            tokens_valid_after: self.tokens_valid_after(),
            updated_at: self.updated_at(),
        }
    }
}

/// Group or role names of one user, without allocating.
enum NameIter<'a> {
    Packed {
        names: &'a [SmolStr],
        ids: Reader<'a>,
        left: usize,
    },
    Loose(std::slice::Iter<'a, String>),
}

impl<'a> Iterator for NameIter<'a> {
    type Item = &'a str;
    fn next(&mut self) -> Option<&'a str> {
        match self {
            NameIter::Packed { names, ids, left } => {
                *left = left.checked_sub(1)?;
                ids.name(names).map(SmolStr::as_str)
            }
            NameIter::Loose(names) => names.next().map(String::as_str),
        }
    }
}

fn too_big(n: usize) -> DirectoryError {
    DirectoryError {
        line: n,
        column: 1,
        message: "directory too large".into(),
    }
}

/// Below this size a `users.jsonl` is parsed on one thread.
const PARALLEL_FROM: usize = 4 << 20;
/// At most this many parser threads.
const MAX_THREADS: usize = 4;

/// One part of a snapshot's users, parsed: its records and names, and per
/// record (in file order) the hash of its id and its offset in the blob.
#[derive(Default)]
struct Chunk {
    blob: Vec<u8>,
    names: Names,
    hashes: Vec<u64>,
    offsets: Vec<u32>,
}

/// Split `text` into at most `parts` runs of whole lines, each with its
/// byte offset in `text`.
fn split_lines(text: &str, parts: usize) -> Vec<(usize, &str)> {
    let mut out = Vec::with_capacity(parts);
    let mut at = 0;
    let target = text.len() / parts.max(1) + 1;
    while let Some(rest) = text.get(at..).filter(|r| !r.is_empty()) {
        let cut = if out.len() + 1 >= parts || rest.len() <= target {
            rest.len()
        } else {
            rest.as_bytes()
                .iter()
                .skip(target)
                .position(|&b| b == b'\n')
                .map_or(rest.len(), |p| target + p + 1)
        };
        out.push((at, rest.get(..cut).unwrap_or(rest)));
        at += cut;
    }
    out
}

/// The shortest line that holds a user (`{"id":"x","username":"",...}`):
/// a file has at most one record per this many bytes.
const SHORTEST_RECORD: usize = 50;

/// Parse one part of a snapshot's `users.jsonl`; line numbers in errors
/// count from the part's first line.
fn parse_chunk(
    text: &str,
    hasher: &hashbrown::DefaultHashBuilder,
) -> Result<Chunk, DirectoryError> {
    // Room for every record without a scan; what is not written is never
    // touched, so never resident.
    let records = text.len() / SHORTEST_RECORD + 1;
    let mut blob: Vec<u8> = Vec::with_capacity(text.len() / 4 * 3);
    let mut names = Names::default();
    let mut hashes = Vec::with_capacity(records);
    let mut offsets = Vec::with_capacity(records);
    let mut attrs = Vec::new();
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
        offsets.push(u32::try_from(blob.len()).map_err(|_| too_big(n))?);
        hashes.push(hasher.hash_one(&*l.id));
        attrs.clear();
        encoded::encode_text(l.attrs.map_or("{}", |a| a.get()), &mut attrs, &mut names).map_err(
            |message| DirectoryError {
                line: n,
                column: 1,
                message: format!("attrs: {message}"),
            },
        )?;
        encoded::put_str(&mut blob, &l.id);
        blob.push(l.state.unwrap_or(UserState::Created) as u8);
        encoded::put_signed(&mut blob, l.tokens_valid_after);
        encoded::put_signed(&mut blob, l.updated_at);
        encoded::put_str(&mut blob, l.username.as_deref().unwrap_or(""));
        encoded::put_str(&mut blob, l.email.as_deref().unwrap_or(""));
        for list in [&l.groups, &l.roles] {
            encoded::put_varint(&mut blob, list.len() as u64);
            for name in list {
                let id = names.intern(name).ok_or_else(|| too_big(n))?;
                encoded::put_varint(&mut blob, u64::from(id));
            }
        }
        encoded::put_varint(&mut blob, attrs.len() as u64);
        blob.extend_from_slice(&attrs);
    }
    Ok(Chunk {
        blob,
        names,
        hashes,
        offsets,
    })
}

/// Why a snapshot's parsed parts could not be indexed.
enum IndexError {
    /// Past the 32-bit offsets of the packed table.
    TooBig,
    /// An id seen before; `ordinal` counts the records before this one.
    Repeated { id: String, ordinal: usize },
}

impl IndexError {
    /// The error as a single pass over `text` reports it: with the number of
    /// the offending line (the last line when the table is too big).
    fn at_line(self, text: &str) -> DirectoryError {
        let mut records = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty());
        match self {
            IndexError::TooBig => too_big(text.lines().count()),
            IndexError::Repeated { id, ordinal } => DirectoryError {
                line: records.nth(ordinal).map_or(0, |(i, _)| i + 1),
                column: 1,
                message: format!("user id {id:?} appears twice"),
            },
        }
    }
}

impl Packed {
    /// Index the parsed parts of a snapshot, in file order, without moving
    /// their records: slots are placed straight into their hash buckets (a
    /// counting sort, no sort of a separate table), and a repeated id is
    /// refused, the one whose second appearance comes first in the file.
    fn assemble(
        chunks: Vec<Chunk>,
        hasher: hashbrown::DefaultHashBuilder,
    ) -> Result<Packed, IndexError> {
        let n: usize = chunks.iter().map(|c| c.hashes.len()).sum();
        u32::try_from(n).map_err(|_| IndexError::TooBig)?;
        let bits = (usize::BITS - n.leading_zeros()).max(1);
        let mut p = Packed {
            bits,
            hasher,
            ..Packed::default()
        };
        // Per bucket, first the count of its slots, then the running total:
        // where the bucket ends.
        let mut bounds = vec![0u32; (1usize << bits) + 1];
        for &h in chunks.iter().flat_map(|c| &c.hashes) {
            if let Some(count) = bounds.get_mut(p.bucket(h)) {
                *count += 1;
            }
        }
        let mut total = 0u32;
        for b in &mut bounds {
            total += *b;
            *b = total;
        }
        // Fill each bucket from its end; afterwards its bound is its start.
        let mut slots = vec![Slot { tag: 0, at: 0 }; n];
        let mut start = 0usize;
        p.sections.reserve_exact(chunks.len());
        for mut c in chunks {
            let base = u32::try_from(start).map_err(|_| IndexError::TooBig)?;
            for (&h, &offset) in c.hashes.iter().zip(&c.offsets) {
                let at = base.checked_add(offset).ok_or(IndexError::TooBig)?;
                let slot = bounds
                    .get_mut(p.bucket(h))
                    .and_then(|end| {
                        *end = end.checked_sub(1)?;
                        slots.get_mut(*end as usize)
                    })
                    .ok_or(IndexError::TooBig)?;
                *slot = Slot { tag: h as u32, at };
            }
            c.blob.shrink_to_fit();
            let len = c.blob.len();
            p.sections.push(Section {
                start,
                blob: c.blob,
                names: c.names.freeze(),
            });
            start += len;
        }
        u32::try_from(start).map_err(|_| IndexError::TooBig)?;
        p.slots = slots;
        p.buckets = bounds;
        match p.first_repeat() {
            Some((id, at)) => Err(IndexError::Repeated {
                ordinal: p.records().take_while(|r| r.end <= at).count(),
                id,
            }),
            None => Ok(p),
        }
    }

    /// The repeated id whose second appearance is earliest, with that
    /// record's offset. Repeated ids hash alike, so only slots of one
    /// bucket with one tag are compared.
    fn first_repeat(&self) -> Option<(String, usize)> {
        let mut first: Option<(String, usize)> = None;
        for bounds in self.buckets.windows(2) {
            let &[lo, hi] = bounds else { continue };
            let Some(run) = self.slots.get(lo as usize..hi as usize) else {
                continue;
            };
            for (k, a) in run.iter().enumerate() {
                for b in run.iter().skip(k + 1).filter(|b| b.tag == a.tag) {
                    let (Some(ra), Some(rb)) =
                        (self.record(a.at as usize), self.record(b.at as usize))
                    else {
                        continue;
                    };
                    let later = a.at.max(b.at) as usize;
                    if ra.id == rb.id && first.as_ref().is_none_or(|f| later < f.1) {
                        first = Some((ra.id.to_owned(), later));
                    }
                }
            }
        }
        first
    }
}

impl Directory {
    /// Parse a snapshot's `users.jsonl` into a packed directory. Removal lines
    /// are refused in a snapshot; a repeated id is refused.
    ///
    /// A large file is parsed in parts on several threads where the platform
    /// has them (JSON parsing is most of a bundle load); the result is the
    /// same, byte for byte, as one pass.
    pub fn parse(text: &str) -> Result<Directory, DirectoryError> {
        let threads = if text.len() >= PARALLEL_FROM {
            std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_THREADS))
        } else {
            1
        };
        Directory::parse_in(text, threads)
    }

    /// [`Directory::parse`] in `parts` parts, each on its own thread if one
    /// can be started.
    fn parse_in(text: &str, parts: usize) -> Result<Directory, DirectoryError> {
        let hasher = hashbrown::DefaultHashBuilder::default();
        let pieces = split_lines(text, parts);
        let results = std::thread::scope(|scope| {
            let handles: Vec<_> = pieces
                .iter()
                .skip(1)
                .map(|&(_, piece)| {
                    let hasher = &hasher;
                    std::thread::Builder::new()
                        .name("gatehouse-directory".into())
                        .spawn_scoped(scope, move || parse_chunk(piece, hasher))
                })
                .collect();
            let mut out = Vec::with_capacity(pieces.len());
            if let Some(&(_, piece)) = pieces.first() {
                out.push(parse_chunk(piece, &hasher));
            }
            for (handle, &(_, piece)) in handles.into_iter().zip(pieces.iter().skip(1)) {
                out.push(match handle {
                    Ok(h) => h.join().unwrap_or_else(|_| {
                        Err(DirectoryError {
                            line: 1,
                            column: 1,
                            message: "the parser thread failed".into(),
                        })
                    }),
                    // No threads here (WebAssembly): parse it on this one.
                    Err(_) => parse_chunk(piece, &hasher),
                });
            }
            out
        });
        // The first error in file order is the one a single pass reports,
        // its line counted from the start of the file.
        let mut chunks = Vec::with_capacity(results.len());
        for (result, &(offset, _)) in results.into_iter().zip(&pieces) {
            chunks.push(result.map_err(|mut e| {
                let before = text.get(..offset).unwrap_or_default();
                e.line += before.bytes().filter(|&b| b == b'\n').count();
                e
            })?);
        }
        let p = Packed::assemble(chunks, hasher).map_err(|e| e.at_line(text))?;
        let len = p.slots.len();
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
                    overlay.insert(id, Some(Arc::new(Loose::new(record))));
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
        if !self.overlay.is_empty()
            && let Some(slot) = self.overlay.get(id)
        {
            return slot.as_deref().map(|l| UserRef {
                inner: RefInner::Loose(l),
            });
        }
        self.packed.find(id).map(|r| UserRef {
            inner: RefInner::Packed(r),
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
            .records()
            .filter(|r| !self.overlay.contains_key(r.id))
            .map(move |r| UserRef {
                inner: RefInner::Packed(r),
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
        p.sections
            .iter()
            .map(|s| s.blob.capacity() + s.names.iter().map(|n| n.len() + 24).sum::<usize>())
            .sum::<usize>()
            + p.slots.capacity() * std::mem::size_of::<Slot>()
            + p.buckets.capacity() * 4
            + self.overlay.len() * 256
    }

    /// Serialize as a snapshot's `users.jsonl`: the packed users in file
    /// order, then those deltas added or changed, by id. Deterministic
    /// (the overlay's own order is a hash map's), so the same directory
    /// always gives the same bytes: compactions of one chain agree.
    pub fn to_jsonl(&self) -> String {
        let mut loose: Vec<(&str, &Loose)> = self
            .overlay
            .iter()
            .filter_map(|(id, slot)| slot.as_deref().map(|l| (&**id, l)))
            .collect();
        loose.sort_unstable_by_key(|(id, _)| *id);
        let packed = self
            .packed
            .records()
            .filter(|r| !self.overlay.contains_key(r.id))
            .map(|r| UserRef {
                inner: RefInner::Packed(r),
            });
        let loose = loose.into_iter().map(|(_, l)| UserRef {
            inner: RefInner::Loose(l),
        });
        let mut out = String::new();
        for u in packed.chain(loose) {
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
    fn a_packed_slot_stays_small() {
        // 1M users x this, plus their records, is the directory's footprint.
        assert_eq!(std::mem::size_of::<Slot>(), 8);
    }

    #[test]
    fn an_empty_directory_takes_changes_and_answers_lookups() {
        // A realm without users.jsonl whose delta brings the first users.
        let changes = Directory::parse_changes(TEXT).unwrap();
        let dir = Directory::default().with_changes(changes);
        assert_eq!(dir.len(), 2);
        assert_eq!(dir.get("u2").unwrap().state(), UserState::Suspended);
        assert!(dir.get("nobody").is_none());
        assert!(Directory::default().get("nobody").is_none());
        // Delta users serialize by id, whatever the overlay's order.
        assert_eq!(dir.to_jsonl(), Directory::parse(TEXT).unwrap().to_jsonl());
    }

    /// A file of `n` users with names (keys, groups, roles, entity types)
    /// that first appear in different parts, some values on the slow road,
    /// and blank lines.
    fn varied(n: usize) -> String {
        let mut out = String::new();
        for i in 0..n {
            let attrs = match i % 5 {
                0 => format!(r#"{{"k{}":{i},"tags":["a","b"]}}"#, i % 7),
                1 => format!(
                    r#"{{"boss":{{"__entity":{{"type":"T{}","id":"x"}}}},"rec":{{"deep{}":true}}}}"#,
                    i % 3,
                    i % 11
                ),
                2 => r#"{"ip":{"__extn":{"fn":"ip","arg":"10.0.0.1"}},"n":1.5}"#.to_owned(),
                3 => "{}".to_owned(),
                _ => format!(r#"{{"s":"caf\u00e9 {i}","neg":-{i}}}"#),
            };
            out.push_str(&format!(
                r#"{{"id":"user-{i}","username":"u{i}","email":"u{i}@x","state":"Active","groups":["g{}","g{}"],"roles":["r{}"],"attrs":{attrs},"updated_at":{i}}}"#,
                i % 13,
                (i * 7) % 17,
                i % 4
            ));
            out.push('\n');
            if i % 9 == 0 {
                out.push_str("  \n");
            }
        }
        out
    }

    #[test]
    fn a_directory_parsed_in_parts_is_the_one_parsed_in_one_pass() {
        let text = varied(400);
        let one = Directory::parse_in(&text, 1).unwrap();
        assert_eq!(one.packed.sections.len(), 1);
        for parts in [2, 3, 7] {
            let many = Directory::parse_in(&text, parts).unwrap();
            assert_eq!(many.packed.sections.len(), parts, "{parts} parts");
            // The same records, in the same order, with the same meaning.
            assert_eq!(many.to_jsonl(), one.to_jsonl(), "{parts} parts");
            // Sections hold every record once, nothing more: this file has
            // fewer than 128 names, so a name id is one byte in any section
            // and the parts add up to the one blob exactly. Record offsets
            // run on across sections.
            let bytes =
                |d: &Directory| -> usize { d.packed.sections.iter().map(|s| s.blob.len()).sum() };
            assert_eq!(bytes(&many), bytes(&one));
            for w in many.packed.sections.windows(2) {
                assert_eq!(w[1].start, w[0].start + w[0].blob.len());
            }
            // Every slot finds its record, and each record has one slot.
            let mut at: Vec<u32> = many.packed.slots.iter().map(|s| s.at).collect();
            at.sort_unstable();
            at.dedup();
            assert_eq!(at.len(), 400);
            for i in 0..400 {
                let id = format!("user-{i}");
                assert_eq!(
                    many.get(&id).unwrap().to_record(),
                    one.get(&id).unwrap().to_record(),
                    "{id} in {parts} parts"
                );
            }
            assert!(many.get("user-400").is_none());
        }
        // More parts than lines, and nothing at all.
        assert_eq!(Directory::parse_in(&varied(2), 8).unwrap().len(), 2);
        assert_eq!(Directory::parse_in("", 4).unwrap().len(), 0);
    }

    #[test]
    fn a_directory_parsed_in_parts_reports_the_first_error_in_the_file() {
        let mut lines: Vec<String> = varied(300).lines().map(str::to_owned).collect();
        let bad = lines.len() * 2 / 3;
        lines[bad] = "{oops".into();
        lines[bad + 20] = "{\"id\":\"z\",\"deleted\":true}".into();
        let text = lines.join("\n");
        let one = Directory::parse_in(&text, 1).unwrap_err();
        assert_eq!(one.line, bad + 1);
        for parts in [2, 3, 5] {
            let many = Directory::parse_in(&text, parts).unwrap_err();
            assert_eq!((many.line, &many.message), (one.line, &one.message));
        }
        // A repeated id across parts: the first repeat in the file is the
        // one reported, on its own line.
        let mut text = varied(300);
        let line = |i: usize| varied(i + 1).lines().last().unwrap().to_owned();
        text.push_str(&line(7));
        text.push('\n');
        text.push_str(&line(0));
        text.push('\n');
        let lines = text.lines().count();
        for parts in [1, 2, 4] {
            let e = Directory::parse_in(&text, parts).unwrap_err();
            assert!(e.message.contains("\"user-7\" appears twice"), "{e}");
            assert_eq!(e.line, lines - 1, "{parts} parts");
        }
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
        assert_eq!(
            a.attrs(),
            serde_json::json!({"level": 3})
                .as_object()
                .cloned()
                .unwrap()
        );
        assert_eq!((a.tokens_valid_after(), a.updated_at()), (10, 20));
        assert!(d.get("u2").unwrap().attrs().is_empty());
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
