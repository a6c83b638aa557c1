//! The chain `HEAD` -> snapshot -> deltas, planned, loaded and folded in one
//! place for every reader: the `pdp` CLI, the edge host's poller, the
//! control plane's loader and its compaction.
//!
//! - [`steps`] plans which bundles a reader holding some revision fetches,
//!   in order ([`Plan`] is the same decision as a value).
//! - [`load`] fetches them through a caller's "get object" function (the
//!   core does no I/O), verifies each (signature, hashes, realm, and its
//!   place in the chain: kind, revision, and a delta's base being the
//!   revision before it) and applies them with [`Snapshot::apply_delta`].
//! - [`Changes`] and [`Folded::apply`] are *the* definition of what a delta
//!   means at the level of members: every member it carries replaces the
//!   base's, except `users.jsonl`, whose lines are upserts and removals
//!   applied in order to the directory; identity settings it carries
//!   replace the base's, and absent ones keep them. [`Snapshot::apply_delta`]
//!   folds through this code and then recompiles only what the fold
//!   changed; [`compact`] folds a whole chain into the content of one
//!   snapshot, which is what the control plane's compaction writes.
//!
//! A store's `HEAD` is not trusted to be small or sane: the plan is lazy
//! ([`Steps`] is an iterator), so a `HEAD` naming revision `u64::MAX`
//! costs one failed fetch, not an allocation per revision.

use crate::bundle::{Bundle, BundleError, BundleHeader};
use crate::directory::Directory;
use crate::layout::{Head, RealmKeys};
use crate::manifest::{BundleKind, IdentitySettings, Manifest, member};
use crate::snapshot::{LoadOptions, Snapshot};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::ops::RangeInclusive;
use std::sync::Arc;

/// What a decision point holding `held` must fetch to reach `head`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Already at `head.revision`.
    Current,
    /// Holds a revision newer than `HEAD` names: the store went backwards.
    /// Keep what is held.
    Behind {
        /// The revision held.
        held: u64,
        /// The revision `HEAD` names.
        head: u64,
    },
    /// Apply the deltas `from..=to` in order on what is held.
    Deltas {
        /// First delta revision.
        from: u64,
        /// Last delta revision.
        to: u64,
    },
    /// Load snapshot `snapshot`, then deltas `snapshot+1..=revision`.
    Snapshot {
        /// Snapshot revision.
        snapshot: u64,
        /// Last delta revision (= `snapshot` when there are none).
        revision: u64,
    },
}

impl Plan {
    /// The plan for a decision point that holds `held` (`None`: nothing).
    /// What is held is extended by deltas when it is at or after `HEAD`'s
    /// snapshot; older, it is replaced by that snapshot.
    pub fn new(held: Option<u64>, head: &Head) -> Plan {
        match held {
            Some(h) if h == head.revision => Plan::Current,
            Some(h) if h > head.revision => Plan::Behind {
                held: h,
                head: head.revision,
            },
            // h < head.revision here, so h + 1 cannot overflow.
            Some(h) if h >= head.snapshot => Plan::Deltas {
                from: h.saturating_add(1),
                to: head.revision,
            },
            _ => Plan::Snapshot {
                snapshot: head.snapshot,
                revision: head.revision,
            },
        }
    }
}

/// One bundle to fetch: its object key, and what the chain says it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Object key (from [`RealmKeys`]).
    pub key: String,
    /// A snapshot, or a delta on `revision - 1`.
    pub kind: BundleKind,
    /// The revision the bundle must carry.
    pub revision: u64,
}

/// `HEAD` names an older revision than the one held: the store went
/// backwards (a restored backup, a forged `HEAD`). Nothing is fetched and
/// what is held is kept (no rollback).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the store's HEAD names revision {head}, older than revision {held} held here")]
pub struct Behind {
    /// The revision held.
    pub held: u64,
    /// The revision `HEAD` names.
    pub head: u64,
}

/// The bundles to fetch, in order: at most one snapshot, then deltas.
/// Lazy, so a `HEAD` naming a huge revision allocates nothing.
#[derive(Debug, Clone)]
pub struct Steps {
    keys: RealmKeys,
    plan: Plan,
    snapshot: Option<u64>,
    deltas: RangeInclusive<u64>,
}

impl Steps {
    /// The plan these steps were made from.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }
}

impl Iterator for Steps {
    type Item = Step;

    fn next(&mut self) -> Option<Step> {
        if let Some(revision) = self.snapshot.take() {
            return Some(Step {
                key: self.keys.snapshot(revision),
                kind: BundleKind::Snapshot,
                revision,
            });
        }
        let revision = self.deltas.next()?;
        Some(Step {
            key: self.keys.delta(revision),
            kind: BundleKind::Delta,
            revision,
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let (lo, hi) = self.deltas.size_hint();
        let extra = usize::from(self.snapshot.is_some());
        (
            lo.saturating_add(extra),
            hi.and_then(|h| h.checked_add(extra)),
        )
    }
}

/// The bundles a reader holding revision `held` (`None`: nothing) fetches,
/// in order, to reach `head`: nothing when it is current; the deltas after
/// `held` when it is at or after `HEAD`'s snapshot; else that snapshot and
/// every delta after it. A reader whose delta is missing stays on error
/// until `HEAD` names a snapshot newer than what it holds.
pub fn steps(held: Option<u64>, head: &Head, keys: &RealmKeys) -> Result<Steps, Behind> {
    // No deltas (start after end: an empty range, not a reversed one).
    let empty = RangeInclusive::new(1, 0);
    let plan = Plan::new(held, head);
    let (snapshot, deltas) = match plan {
        Plan::Current => (None, empty),
        Plan::Behind { held, head } => return Err(Behind { held, head }),
        Plan::Deltas { from, to } => (None, from..=to),
        Plan::Snapshot { snapshot, revision } => match snapshot.checked_add(1) {
            Some(from) => (Some(snapshot), from..=revision),
            None => (Some(snapshot), empty),
        },
    };
    Ok(Steps {
        keys: keys.clone(),
        plan,
        snapshot,
        deltas,
    })
}

/// Where a bundle sits in a chain: its kind, revision and base.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    /// Snapshot or delta.
    pub kind: BundleKind,
    /// Its revision.
    pub revision: u64,
    /// A delta's base revision (`None` for a snapshot).
    pub base: Option<u64>,
}

impl Link {
    /// What the chain requires at `step`: a delta's base is the revision
    /// before it.
    pub fn expected(step: &Step) -> Link {
        Link {
            kind: step.kind,
            revision: step.revision,
            base: match step.kind {
                BundleKind::Snapshot => None,
                BundleKind::Delta => step.revision.checked_sub(1),
            },
        }
    }

    /// Where a manifest says its bundle sits.
    pub fn of(manifest: &Manifest) -> Link {
        Link {
            kind: manifest.kind,
            revision: manifest.revision,
            base: manifest.base_revision,
        }
    }
}

impl std::fmt::Display for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.kind, self.base) {
            (BundleKind::Delta, Some(base)) => {
                write!(f, "delta {} on revision {base}", self.revision)
            }
            (BundleKind::Delta, None) => write!(f, "delta {} without a base", self.revision),
            (BundleKind::Snapshot, _) => write!(f, "snapshot {}", self.revision),
        }
    }
}

/// Why a chain could not be loaded or folded. `E` is the error of the
/// caller's "get object" function.
#[derive(Debug, thiserror::Error)]
pub enum ChainError<E = Infallible> {
    /// `HEAD` names an older revision than the one held (see [`Behind`]).
    #[error("the store's HEAD names revision {head}, older than revision {held} held here")]
    Behind {
        /// The revision held.
        held: u64,
        /// The revision `HEAD` names.
        head: u64,
    },
    /// An object the chain needs is not in the store.
    #[error("{key} is missing from the store")]
    Missing {
        /// Its key.
        key: String,
    },
    /// A bundle was refused (archive, signature, hashes, content, base).
    #[error("{key}: {source}")]
    Bundle {
        /// Its key.
        key: String,
        /// Why.
        #[source]
        source: BundleError,
    },
    /// The object at `key` verifies but is not the bundle the chain names
    /// there: another kind or revision, or a delta on another base than
    /// the revision before it.
    #[error("{key} holds {found}, where the chain needs {expected}")]
    Misplaced {
        /// Its key.
        key: String,
        /// What the chain needs there.
        expected: Link,
        /// What the object is.
        found: Link,
    },
    /// A bundle (or `HEAD`, or what is held) of another realm.
    #[error("{key} is of realm {found:?}, not {expected:?}")]
    Realm {
        /// The object's key.
        key: String,
        /// The realm expected (`HEAD`'s, or the one held).
        expected: String,
        /// The realm found.
        found: String,
    },
    /// The "get object" function failed.
    #[error("reading the store: {0}")]
    Get(#[source] E),
}

impl<E> From<Behind> for ChainError<E> {
    fn from(b: Behind) -> Self {
        ChainError::Behind {
            held: b.held,
            head: b.head,
        }
    }
}

impl<E> ChainError<E> {
    /// Stable machine-readable kind, for logs and metrics (a refused
    /// bundle gives its [`BundleError::kind`]).
    pub fn kind(&self) -> &'static str {
        match self {
            ChainError::Behind { .. } => "store_behind",
            ChainError::Missing { .. } => "bundle_missing",
            ChainError::Bundle { source, .. } => source.kind(),
            ChainError::Misplaced { .. } => "bundle_misplaced",
            ChainError::Realm { .. } => "realm_mismatch",
            ChainError::Get(_) => "store_unreachable",
        }
    }
}

impl ChainError<Infallible> {
    /// The same error as one of a chain whose "get object" fails with `E`
    /// (an error without a store failure fits every store).
    pub fn widen<E>(self) -> ChainError<E> {
        match self {
            ChainError::Behind { held, head } => ChainError::Behind { held, head },
            ChainError::Missing { key } => ChainError::Missing { key },
            ChainError::Bundle { key, source } => ChainError::Bundle { key, source },
            ChainError::Misplaced {
                key,
                expected,
                found,
            } => ChainError::Misplaced {
                key,
                expected,
                found,
            },
            ChainError::Realm {
                key,
                expected,
                found,
            } => ChainError::Realm {
                key,
                expected,
                found,
            },
            ChainError::Get(never) => match never {},
        }
    }
}

/// Open and verify the bundle fetched for `step`: signature per
/// `options.trust`, member hashes and size limits, then that it is of
/// `realm` and is what the chain names there ([`Link::expected`]).
pub fn open<'b>(
    step: &Step,
    bytes: &'b [u8],
    realm: &str,
    options: &LoadOptions<'_>,
) -> Result<Bundle<'b>, ChainError> {
    let bundle = Bundle::open(bytes, options.trust, &options.limits).map_err(|source| {
        ChainError::Bundle {
            key: step.key.clone(),
            source,
        }
    })?;
    if bundle.manifest.realm != realm {
        return Err(ChainError::Realm {
            key: step.key.clone(),
            expected: realm.to_owned(),
            found: bundle.manifest.realm,
        });
    }
    let (expected, found) = (Link::expected(step), Link::of(&bundle.manifest));
    if expected != found {
        return Err(ChainError::Misplaced {
            key: step.key.clone(),
            expected,
            found,
        });
    }
    Ok(bundle)
}

/// What [`load`] produced.
#[derive(Debug, Clone)]
pub enum Loaded {
    /// What is held is at `HEAD`'s revision: nothing was fetched.
    Current,
    /// The snapshot at `HEAD`'s revision.
    Updated(Snapshot),
}

fn fetch<E>(
    get: &mut impl FnMut(&str) -> Result<Option<Vec<u8>>, E>,
    key: &str,
) -> Result<Vec<u8>, ChainError<E>> {
    get(key)
        .map_err(ChainError::Get)?
        .ok_or_else(|| ChainError::Missing {
            key: key.to_owned(),
        })
}

/// Load the chain `head` names on top of `held`: fetch each bundle of
/// [`steps`] with `get` (`Ok(None)`: no such object), verify it
/// ([`open`]) and compile it or apply it with [`Snapshot::apply_delta`].
/// One bundle's bytes are held at a time. On error nothing is returned and
/// `held` is, as always, untouched; a caller that wants to keep each step's
/// progress (the edge host installs bundle by bundle) walks [`steps`]
/// itself.
pub fn load<E>(
    mut get: impl FnMut(&str) -> Result<Option<Vec<u8>>, E>,
    head: &Head,
    keys: &RealmKeys,
    held: Option<&Snapshot>,
    options: &LoadOptions<'_>,
) -> Result<Loaded, ChainError<E>> {
    if let Some(h) = held
        && h.realm() != head.realm
    {
        return Err(ChainError::Realm {
            key: keys.head(),
            expected: h.realm().to_owned(),
            found: head.realm.clone(),
        });
    }
    let mut current: Option<Snapshot> = None;
    for step in steps(held.map(Snapshot::revision), head, keys)? {
        let bytes = fetch(&mut get, &step.key)?;
        let bundle = open(&step, &bytes, &head.realm, options).map_err(ChainError::widen)?;
        let next = match (step.kind, current.as_ref().or(held)) {
            (BundleKind::Snapshot, _) => Snapshot::compile(&bundle),
            (BundleKind::Delta, Some(base)) => base.apply_delta(&bundle),
            (BundleKind::Delta, None) => Err(BundleError::DeltaWithoutBase {
                revision: step.revision,
                why: "no snapshot is held",
            }),
        };
        current = Some(next.map_err(|source| ChainError::Bundle {
            key: step.key,
            source,
        })?);
    }
    Ok(current.map_or(Loaded::Current, Loaded::Updated))
}

/// Fold `HEAD`'s snapshot and every delta after it into the content of
/// one snapshot at `head.revision` (see [`Folded`]), verifying each
/// bundle like [`load`] does. Member-level: nothing is compiled, so the
/// content is what the chain's bundles say, byte for byte (users
/// re-serialized); loading it answers exactly like loading the chain.
/// Content a decision point would refuse (a delta whose policies do not
/// compile) is folded all the same, and the snapshot written from it is
/// refused the same way; a writer that wants to know first loads the
/// chain with [`load`].
pub fn compact<E>(
    mut get: impl FnMut(&str) -> Result<Option<Vec<u8>>, E>,
    head: &Head,
    keys: &RealmKeys,
    options: &LoadOptions<'_>,
) -> Result<Folded, ChainError<E>> {
    let mut folded: Option<Folded> = None;
    for step in steps(None, head, keys)? {
        let bytes = fetch(&mut get, &step.key)?;
        let bundle = open(&step, &bytes, &head.realm, options).map_err(ChainError::widen)?;
        let next = match (step.kind, folded) {
            (BundleKind::Snapshot, _) => Folded::from_snapshot_bundle(&bundle),
            (BundleKind::Delta, Some(base)) => fold(base, &bundle),
            (BundleKind::Delta, None) => Err(BundleError::DeltaWithoutBase {
                revision: step.revision,
                why: "no snapshot is held",
            }),
        };
        folded = Some(next.map_err(|source| ChainError::Bundle {
            key: step.key,
            source,
        })?);
    }
    // With nothing held the plan always starts with HEAD's snapshot.
    folded.ok_or_else(|| ChainError::Missing {
        key: keys.snapshot(head.snapshot),
    })
}

/// The members whose replacement means recompiling the Cedar state (the
/// AuthZEN type map is checked against the schema, so it goes with it).
const CEDAR: [&str; 5] = [
    member::SCHEMA,
    member::POLICIES,
    member::LINKS,
    member::ENTITIES,
    member::AUTHZEN,
];

/// What one delta changes, read from its verified bundle: the one place
/// that says which members replace which, how users change, and what
/// becomes of the identity settings. Nothing is parsed yet (users are
/// parsed when applied, after the base is checked).
#[derive(Debug, Clone)]
pub struct Changes<'b> {
    /// The delta's realm.
    pub realm: &'b str,
    /// The revision it applies on.
    pub base: u64,
    /// The revision it produces.
    pub revision: u64,
    /// Members that replace the base's whole: every member the delta
    /// carries but `users.jsonl`.
    pub replaced: BTreeMap<&'b str, &'b [u8]>,
    /// The delta's `users.jsonl`: upserts and removals, in order.
    pub users: Option<&'b [u8]>,
    /// Identity settings that replace the base's; `None` keeps them.
    pub identity: Option<&'b IdentitySettings>,
}

impl<'b> Changes<'b> {
    /// Read a delta. Refuses a bundle without `base_revision` (a snapshot).
    pub fn of(delta: &'b Bundle<'_>) -> Result<Changes<'b>, BundleError> {
        let m = &delta.manifest;
        let base = m.base_revision.ok_or(BundleError::DeltaWithoutBase {
            revision: m.revision,
            why: "manifest has no base_revision",
        })?;
        let mut replaced = BTreeMap::new();
        let mut users = None;
        for name in delta.member_names() {
            let Some(bytes) = delta.member(name) else {
                continue;
            };
            match name {
                member::USERS => users = Some(bytes),
                _ => {
                    replaced.insert(name, bytes);
                }
            }
        }
        Ok(Changes {
            realm: &m.realm,
            base,
            revision: m.revision,
            replaced,
            users,
            identity: m.identity.as_ref(),
        })
    }

    /// Whether the delta replaces member `name`.
    pub fn replaces(&self, name: &str) -> bool {
        self.replaced.contains_key(name)
    }

    /// Whether it replaces any Cedar member (schema, policies, links,
    /// entities): then the policy set and entities are recompiled.
    pub fn replaces_cedar(&self) -> bool {
        CEDAR.iter().any(|n| self.replaces(n))
    }
}

/// A realm's content at one revision, as members: what a snapshot bundle
/// of that revision holds. Member bytes are shared, so folding a delta
/// copies only what it replaces; the directory is the packed one with the
/// deltas' overlay, never re-serialized until [`Folded::into_members`].
#[derive(Clone)]
pub struct Folded {
    /// The realm.
    pub realm: String,
    /// The revision this content is at.
    pub revision: u64,
    /// Every content member but `users.jsonl`, by name.
    pub members: BTreeMap<String, Arc<[u8]>>,
    /// The users (`None`: the realm has no `users.jsonl`, plain Cedar
    /// without lifecycle gating — folding keeps it that way until a delta
    /// brings users).
    pub directory: Option<Directory>,
    /// The identity settings.
    pub identity: Option<IdentitySettings>,
}

impl std::fmt::Debug for Folded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sizes: BTreeMap<&str, usize> = self
            .members
            .iter()
            .map(|(n, b)| (n.as_str(), b.len()))
            .collect();
        f.debug_struct("Folded")
            .field("realm", &self.realm)
            .field("revision", &self.revision)
            .field("members", &sizes)
            .field("directory", &self.directory)
            .field("identity", &self.identity.as_ref().map(|i| &i.issuer))
            .finish()
    }
}

fn utf8<'a>(name: &str, bytes: &'a [u8]) -> Result<&'a str, BundleError> {
    std::str::from_utf8(bytes)
        .map_err(|e| BundleError::invalid(name, None, format!("not UTF-8: {e}")))
}

fn parse_users(bytes: &[u8]) -> Result<Directory, BundleError> {
    Directory::parse(utf8(member::USERS, bytes)?)
        .map_err(|e| BundleError::invalid(member::USERS, Some((e.line, e.column)), e.message))
}

impl Folded {
    /// The content of a verified snapshot bundle (its users parsed into a
    /// packed directory). Refuses a delta, and a snapshot without
    /// `policies.cedar`.
    pub fn from_snapshot_bundle(bundle: &Bundle<'_>) -> Result<Folded, BundleError> {
        let m = &bundle.manifest;
        if m.kind != BundleKind::Snapshot {
            return Err(BundleError::DeltaWithoutBase {
                revision: m.revision,
                why: "not a snapshot",
            });
        }
        if bundle.member(member::POLICIES).is_none() {
            return Err(BundleError::MissingMember(member::POLICIES.into()));
        }
        let mut members = BTreeMap::new();
        let mut directory = None;
        for name in bundle.member_names() {
            let Some(bytes) = bundle.member(name) else {
                continue;
            };
            match name {
                member::USERS => directory = Some(parse_users(bytes)?),
                _ => {
                    members.insert(name.to_owned(), Arc::from(bytes));
                }
            }
        }
        Ok(Folded {
            realm: m.realm.clone(),
            revision: m.revision,
            members,
            directory,
            identity: m.identity.clone(),
        })
    }

    /// This content with `changes` applied: the delta semantics. Refuses a
    /// delta of another realm or on another revision than this one, and a
    /// `users.jsonl` that does not parse.
    pub fn apply(self, changes: Changes<'_>) -> Result<Folded, BundleError> {
        if changes.realm != self.realm {
            return Err(BundleError::RealmMismatch {
                held: self.realm,
                offered: changes.realm.to_owned(),
            });
        }
        if changes.base != self.revision {
            return Err(BundleError::DeltaBase {
                held: self.revision,
                base: changes.base,
            });
        }
        let directory = match changes.users {
            Some(bytes) => {
                let lines = Directory::parse_changes(utf8(member::USERS, bytes)?).map_err(|e| {
                    BundleError::invalid(member::USERS, Some((e.line, e.column)), e.message)
                })?;
                Some(self.directory.unwrap_or_default().with_changes(lines))
            }
            None => self.directory,
        };
        let mut members = self.members;
        for (name, bytes) in changes.replaced {
            members.insert(name.to_owned(), Arc::from(bytes));
        }
        Ok(Folded {
            realm: self.realm,
            revision: changes.revision,
            members,
            directory,
            identity: changes.identity.cloned().or(self.identity),
        })
    }

    /// Number of users (0 without a directory).
    pub fn users(&self) -> usize {
        self.directory.as_ref().map_or(0, Directory::len)
    }

    /// The header of a snapshot bundle of this content, built at
    /// `created_at` (unix seconds), for [`crate::bundle::write_archive`].
    pub fn header(&self, created_at: i64) -> BundleHeader {
        BundleHeader {
            realm: self.realm.clone(),
            revision: self.revision,
            kind: BundleKind::Snapshot,
            base_revision: None,
            created_at,
            identity: self.identity.clone(),
        }
    }

    /// The members of a snapshot bundle of this content, `users.jsonl`
    /// serialized by [`Directory::to_jsonl`] (deterministic: the same
    /// content always gives the same bytes).
    pub fn into_members(self) -> BTreeMap<String, Vec<u8>> {
        let mut out: BTreeMap<String, Vec<u8>> = self
            .members
            .into_iter()
            .map(|(name, bytes)| (name, bytes.to_vec()))
            .collect();
        if let Some(dir) = self.directory {
            out.insert(member::USERS.to_owned(), dir.to_jsonl().into_bytes());
        }
        out
    }
}

/// Fold one verified delta into `base`: [`Changes::of`] then
/// [`Folded::apply`].
pub fn fold(base: Folded, delta: &Bundle<'_>) -> Result<Folded, BundleError> {
    base.apply(Changes::of(delta)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::HEAD_FORMAT;

    fn head(snapshot: u64, revision: u64) -> Head {
        Head {
            format: HEAD_FORMAT.into(),
            realm: "acme".into(),
            revision,
            snapshot,
            issued_at: 1,
            resign_interval_seconds: 30,
        }
    }

    #[test]
    fn plans() {
        let h = head(10, 14);
        assert_eq!(
            Plan::new(None, &h),
            Plan::Snapshot {
                snapshot: 10,
                revision: 14
            }
        );
        assert_eq!(
            Plan::new(Some(3), &h),
            Plan::Snapshot {
                snapshot: 10,
                revision: 14
            }
        );
        assert_eq!(Plan::new(Some(10), &h), Plan::Deltas { from: 11, to: 14 });
        assert_eq!(Plan::new(Some(12), &h), Plan::Deltas { from: 13, to: 14 });
        assert_eq!(Plan::new(Some(14), &h), Plan::Current);
        assert_eq!(Plan::new(Some(15), &h), Plan::Behind { held: 15, head: 14 });
    }

    #[test]
    fn steps_carry_out_their_plan() {
        let keys = RealmKeys::new("", "acme");
        for held in [None, Some(3), Some(10), Some(12), Some(14)] {
            let h = head(10, 14);
            let s = steps(held, &h, &keys).unwrap();
            assert_eq!(s.plan(), &Plan::new(held, &h), "held {held:?}");
        }
    }
}
