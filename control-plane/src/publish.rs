//! Publishing: the changes committed since the last publish become a small
//! signed delta; a compaction folds the last snapshot and its deltas into a
//! new snapshot. Bundles are written create-only and `HEAD` is advanced
//! last, by compare-and-swap, so:
//!
//! - two control planes on one store never overwrite each other: a
//!   revision is claimed by whoever creates its object first, and a `HEAD`
//!   that moved underneath a writer makes it re-read and try again;
//! - a publisher that dies between writing a bundle and advancing `HEAD`
//!   leaves an orphan that the next publisher (any of them) verifies and
//!   adopts; the database's change log is drained only after `HEAD`
//!   names the revision that carries the changes, so nothing is lost. A
//!   change published twice is harmless: deltas carry whole user records
//!   and whole Cedar members.

use crate::changes::PendingChanges;
use crate::db::Db;
use crate::error::{Error, Result};
use crate::objstore::{Condition, Object, ObjectStore, Put};
use pdp_core::bundle::{BundleHeader, write_archive};
use pdp_core::layout::{HEAD_FORMAT, Head, RealmKeys};
use pdp_core::manifest::member;
use pdp_core::{Bundle, BundleKind, BundleSigner, Directory, Keyring, Limits, Trust};
use serde::Serialize;
use std::collections::BTreeMap;

/// How many times a publisher re-reads `HEAD` after losing a race before
/// it gives up (each loss means another publisher made progress).
const MAX_ATTEMPTS: usize = 64;

/// The policy set of a deleted realm.
pub const WITHDRAWN_POLICIES: &str =
    "@id(\"realm-deleted\")\nforbid (principal, action, resource);\n";

/// What one publish or compaction wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Published {
    /// The realm.
    pub realm: String,
    /// The revision `HEAD` now names (or named already, for a no-op).
    pub revision: u64,
    /// `snapshot` or `delta`; `none` when there was nothing to publish.
    pub kind: String,
    /// The object written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Its size in bytes.
    pub bytes: usize,
    /// Users in the bundle (upserts and removals, for a delta).
    pub users: usize,
}

/// A realm's publishing state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct PublishStatus {
    /// The realm.
    pub realm: String,
    /// `HEAD`'s revision, if anything is published.
    pub head_revision: Option<u64>,
    /// `HEAD`'s snapshot revision.
    pub snapshot_revision: Option<u64>,
    /// When `HEAD` was written, unix seconds.
    pub head_updated_at: Option<i64>,
    /// Changes committed and not yet published.
    pub pending_changes: u64,
    /// The public key edge hosts must trust for this realm's bundles (PEM).
    pub bundle_key: String,
    /// Its key id.
    pub bundle_kid: String,
}

/// Publishes realms of one database to one store.
pub struct Publisher<'a> {
    db: &'a Db,
    store: &'a dyn ObjectStore,
    prefix: String,
    compact_after: u64,
}

impl<'a> Publisher<'a> {
    /// A publisher; `compact_after` deltas after a snapshot trigger a
    /// compaction (0: never automatically).
    pub fn new(
        db: &'a Db,
        store: &'a dyn ObjectStore,
        prefix: &str,
        compact_after: u64,
    ) -> Publisher<'a> {
        Publisher {
            db,
            store,
            prefix: prefix.to_owned(),
            compact_after,
        }
    }

    fn keys(&self, realm: &str) -> RealmKeys {
        RealmKeys::new(&self.prefix, realm)
    }

    /// `HEAD` and its entity tag.
    fn head(&self, realm: &str) -> Result<Option<(Head, String)>> {
        let Some(Object { bytes, etag }) = self.store.get(&self.keys(realm).head())? else {
            return Ok(None);
        };
        let head = Head::parse(&bytes)
            .map_err(|e| Error::Publish(format!("{}: {e}", self.keys(realm).head())))?;
        if head.realm != realm {
            return Err(Error::Publish(format!(
                "{} names realm {:?}",
                self.keys(realm).head(),
                head.realm
            )));
        }
        Ok(Some((head, etag)))
    }

    /// Publish what changed since the last publish: the first publish (or
    /// a bulk change of every user) writes a snapshot, every other a delta.
    /// With nothing pending it changes nothing.
    pub fn publish(&self, realm: &str, now: i64) -> Result<Published> {
        let signer = self.db.bundle_signer(realm)?;
        for _ in 0..MAX_ATTEMPTS {
            let head = self.head(realm)?;
            let pending = self.db.pending_changes(realm)?;
            let step = match (&head, pending) {
                (Some((h, _)), None) => {
                    return Ok(Published {
                        realm: realm.into(),
                        revision: h.revision,
                        kind: "none".into(),
                        key: None,
                        bytes: 0,
                        users: 0,
                    });
                }
                (None, _) => self.publish_snapshot(realm, None, &signer, now)?,
                (Some((h, etag)), Some(p)) if p.all_users => {
                    self.publish_snapshot(realm, Some((h, etag)), &signer, now)?
                }
                (Some((h, etag)), Some(p)) => {
                    self.publish_delta(realm, h, etag, p, &signer, now)?
                }
            };
            if let Some(done) = step {
                if done.kind == "delta"
                    && self.compact_after > 0
                    && let Some((h, _)) = self.head(realm)?
                    && h.revision - h.snapshot >= self.compact_after
                {
                    self.compact(realm, now)?;
                }
                return Ok(done);
            }
        }
        Err(Error::Publish(format!(
            "realm {realm:?}: HEAD kept moving; gave up after {MAX_ATTEMPTS} attempts"
        )))
    }

    /// Write the realm's whole content as a snapshot at the revision after
    /// `head` (1 when nothing is published). `None`: lost a race, retry.
    fn publish_snapshot(
        &self,
        realm: &str,
        head: Option<(&Head, &String)>,
        signer: &BundleSigner,
        now: i64,
    ) -> Result<Option<Published>> {
        let (upto, content) = self.db.snapshot_content(realm)?;
        let revision = head.map_or(1, |(h, _)| h.revision + 1);
        let users = content
            .members
            .get(member::USERS)
            .map_or(0, |u| u.iter().filter(|b| **b == b'\n').count());
        let bytes = write_archive(
            &BundleHeader {
                realm: realm.into(),
                revision,
                kind: BundleKind::Snapshot,
                base_revision: None,
                created_at: now,
                identity: content.identity,
            },
            &content.members,
            Some(signer),
            true,
        )
        .map_err(|e| Error::Publish(e.to_string()))?;
        let key = self.keys(realm).snapshot(revision);
        let new_head = Head {
            format: HEAD_FORMAT.into(),
            realm: realm.into(),
            revision,
            snapshot: revision,
            updated_at: now,
        };
        if !self.claim(realm, &key, &bytes, BundleKind::Snapshot, revision, signer)? {
            // Someone else's snapshot at this revision: adopt it, then
            // publish ours on top.
            self.advance(realm, head.map(|(_, e)| e), &new_head)?;
            return Ok(None);
        }
        if !self.advance(realm, head.map(|(_, e)| e), &new_head)? {
            return Ok(None);
        }
        if let Some(upto) = upto {
            self.db.mark_published(realm, upto, revision, now)?;
        }
        Ok(Some(Published {
            realm: realm.into(),
            revision,
            kind: "snapshot".into(),
            key: Some(key),
            bytes: bytes.len(),
            users,
        }))
    }

    /// Write `pending` as the delta after `head`. `None`: lost a race.
    fn publish_delta(
        &self,
        realm: &str,
        head: &Head,
        etag: &str,
        pending: PendingChanges,
        signer: &BundleSigner,
        now: i64,
    ) -> Result<Option<Published>> {
        let revision = head.revision + 1;
        let mut members = pending.members;
        let users = pending.users.len();
        if !pending.users.is_empty() {
            let mut lines = String::new();
            for change in &pending.users {
                lines.push_str(&change.to_json_line());
                lines.push('\n');
            }
            members.insert(member::USERS.into(), lines.into_bytes());
        }
        let bytes = write_archive(
            &BundleHeader {
                realm: realm.into(),
                revision,
                kind: BundleKind::Delta,
                base_revision: Some(head.revision),
                created_at: now,
                identity: pending.identity,
            },
            &members,
            Some(signer),
            true,
        )
        .map_err(|e| Error::Publish(e.to_string()))?;
        let key = self.keys(realm).delta(revision);
        let new_head = Head {
            format: HEAD_FORMAT.into(),
            realm: realm.into(),
            revision,
            snapshot: head.snapshot,
            updated_at: now,
        };
        let etag = etag.to_owned();
        if !self.claim(realm, &key, &bytes, BundleKind::Delta, revision, signer)? {
            self.advance(realm, Some(&etag), &new_head)?;
            return Ok(None);
        }
        if !self.advance(realm, Some(&etag), &new_head)? {
            // HEAD moved. Our delta is in the chain if HEAD reached its
            // revision without a snapshot at or after it (a snapshot there
            // was built without it); otherwise publish the changes again.
            let Some((now_head, _)) = self.head(realm)? else {
                return Ok(None);
            };
            if !(now_head.revision >= revision && now_head.snapshot < revision) {
                return Ok(None);
            }
        }
        self.db.mark_published(realm, pending.upto, revision, now)?;
        Ok(Some(Published {
            realm: realm.into(),
            revision,
            kind: "delta".into(),
            key: Some(key),
            bytes: bytes.len(),
            users,
        }))
    }

    /// Create `key` with `bytes`, unless it exists: then the existing
    /// object must be a bundle of this realm, signed by its key, of the
    /// same kind and revision (a crashed or concurrent publisher's), or
    /// the store is refused as corrupt. `true` when ours was written.
    fn claim(
        &self,
        realm: &str,
        key: &str,
        bytes: &[u8],
        kind: BundleKind,
        revision: u64,
        signer: &BundleSigner,
    ) -> Result<bool> {
        match self.store.put(key, bytes, Condition::IfAbsent)? {
            Put::Written(_) => Ok(true),
            Put::PreconditionFailed => {
                let theirs = self.open(realm, key, signer)?;
                let base = (kind == BundleKind::Delta).then(|| revision - 1);
                if theirs.manifest.kind != kind
                    || theirs.manifest.revision != revision
                    || theirs.manifest.base_revision != base
                {
                    return Err(Error::Publish(format!(
                        "{key} holds a {:?} bundle of revision {}",
                        theirs.manifest.kind, theirs.manifest.revision
                    )));
                }
                tracing::info!(key, "adopting a bundle another publisher wrote");
                Ok(false)
            }
        }
    }

    /// Create the compacted snapshot at `key`. One that exists already is
    /// kept when its content is ours (a concurrent or crashed compaction's:
    /// the content of a revision is a function of the store), and replaced
    /// otherwise (an orphan of a publisher that lost the revision to a
    /// delta; `HEAD` cannot name it, or there would be nothing to compact).
    fn claim_compacted(
        &self,
        realm: &str,
        key: &str,
        bytes: &[u8],
        members: &BTreeMap<String, Vec<u8>>,
        signer: &BundleSigner,
    ) -> Result<()> {
        for _ in 0..MAX_ATTEMPTS {
            let Some(existing) = self.store.get(key)? else {
                if let Put::Written(_) = self.store.put(key, bytes, Condition::IfAbsent)? {
                    return Ok(());
                }
                continue;
            };
            let same = match Bundle::open(
                &existing.bytes,
                self.trust(signer).as_trust(),
                &Limits::default(),
            ) {
                Ok(b) => {
                    b.manifest.realm == realm
                        && b.manifest.kind == BundleKind::Snapshot
                        && b.manifest.sha256.len() == members.len()
                        && members.iter().all(|(n, m)| {
                            b.manifest.sha256.get(n).map(String::as_str)
                                == Some(pdp_core::manifest::sha256_hex(m).as_str())
                        })
                }
                Err(_) => false,
            };
            if same {
                return Ok(());
            }
            tracing::warn!(key, "replacing an orphaned snapshot that HEAD never named");
            if let Put::Written(_) =
                self.store
                    .put(key, bytes, Condition::IfMatch(existing.etag))?
            {
                return Ok(());
            }
        }
        Err(Error::Publish(format!(
            "{key} kept changing while compacting"
        )))
    }

    fn trust(&self, signer: &BundleSigner) -> OwnRing {
        let mut ring = Keyring::new();
        ring.add(signer.verifying_key());
        OwnRing(ring)
    }

    /// Read and verify one bundle of the realm.
    fn open(&self, realm: &str, key: &str, signer: &BundleSigner) -> Result<Bundle<'static>> {
        let obj = self
            .store
            .get(key)?
            .ok_or_else(|| Error::Publish(format!("{key} is missing from the store")))?;
        let ring = self.trust(signer);
        let bundle = Bundle::open(&obj.bytes, ring.as_trust(), &Limits::default())
            .map_err(|e| Error::Publish(format!("{key}: {e}")))?;
        if bundle.manifest.realm != realm {
            return Err(Error::Publish(format!(
                "{key} belongs to realm {:?}",
                bundle.manifest.realm
            )));
        }
        Ok(bundle.into_owned())
    }

    /// Compare-and-swap `HEAD` from `etag` (`None`: create it) to `head`.
    fn advance(&self, realm: &str, etag: Option<&String>, head: &Head) -> Result<bool> {
        let cond = match etag {
            Some(e) => Condition::IfMatch(e.clone()),
            None => Condition::IfAbsent,
        };
        Ok(matches!(
            self.store
                .put(&self.keys(realm).head(), &head.to_json(), cond)?,
            Put::Written(_)
        ))
    }

    /// After a realm is deleted: publish a delta whose only policy forbids
    /// everything, so decision points holding the realm deny from then on
    /// (reason: the `realm-deleted` forbid) instead of serving its last
    /// policies until they go stale. Nothing is removed from the store;
    /// with nothing published it does nothing.
    pub fn withdraw(&self, realm: &str, now: i64) -> Result<Published> {
        let signer = self.db.bundle_signer(realm)?;
        for _ in 0..MAX_ATTEMPTS {
            let Some((head, etag)) = self.head(realm)? else {
                return Ok(Published {
                    realm: realm.into(),
                    revision: 0,
                    kind: "none".into(),
                    key: None,
                    bytes: 0,
                    users: 0,
                });
            };
            let mut members = BTreeMap::new();
            members.insert(
                member::POLICIES.to_owned(),
                WITHDRAWN_POLICIES.as_bytes().to_vec(),
            );
            members.insert(member::LINKS.to_owned(), b"[]\n".to_vec());
            let pending = PendingChanges {
                upto: 0,
                users: Vec::new(),
                all_users: false,
                members,
                identity: None,
            };
            if let Some(done) = self.publish_delta(realm, &head, &etag, pending, &signer, now)? {
                return Ok(done);
            }
        }
        Err(Error::Publish(format!(
            "realm {realm:?}: HEAD kept moving; withdrawal gave up after {MAX_ATTEMPTS} attempts"
        )))
    }

    /// Fold the newest snapshot and the deltas after it into a snapshot at
    /// `HEAD`'s revision, built from the store alone, and point `HEAD`'s
    /// snapshot at it. Decision points that hold an older revision than it
    /// load it instead of a long chain of deltas.
    pub fn compact(&self, realm: &str, now: i64) -> Result<Published> {
        let signer = self.db.bundle_signer(realm)?;
        for _ in 0..MAX_ATTEMPTS {
            let Some((head, etag)) = self.head(realm)? else {
                return Err(Error::Conflict(format!(
                    "realm {realm:?} has nothing published to compact"
                )));
            };
            let key = self.keys(realm).snapshot(head.revision);
            if head.snapshot == head.revision {
                return Ok(Published {
                    realm: realm.into(),
                    revision: head.revision,
                    kind: "none".into(),
                    key: Some(key),
                    bytes: 0,
                    users: 0,
                });
            }
            let Folded {
                members,
                identity,
                users,
            } = self.fold(realm, &head, &signer)?;
            let bytes = write_archive(
                &BundleHeader {
                    realm: realm.into(),
                    revision: head.revision,
                    kind: BundleKind::Snapshot,
                    base_revision: None,
                    created_at: now,
                    identity,
                },
                &members,
                Some(&signer),
                true,
            )
            .map_err(|e| Error::Publish(e.to_string()))?;
            self.claim_compacted(realm, &key, &bytes, &members, &signer)?;
            let new_head = Head {
                snapshot: head.revision,
                updated_at: now,
                ..head.clone()
            };
            if self.advance(realm, Some(&etag), &new_head)? {
                return Ok(Published {
                    realm: realm.into(),
                    revision: head.revision,
                    kind: "snapshot".into(),
                    key: Some(key),
                    bytes: bytes.len(),
                    users,
                });
            }
        }
        Err(Error::Publish(format!(
            "realm {realm:?}: HEAD kept moving; compaction gave up after {MAX_ATTEMPTS} attempts"
        )))
    }

    /// The content at `head.revision`: its snapshot's members with every
    /// delta's applied in order (members replaced, users merged).
    fn fold(&self, realm: &str, head: &Head, signer: &BundleSigner) -> Result<Folded> {
        let keys = self.keys(realm);
        let base = self.open(realm, &keys.snapshot(head.snapshot), signer)?;
        let mut identity = base.manifest.identity.clone();
        let mut members: BTreeMap<String, Vec<u8>> = base
            .member_names()
            .filter_map(|n| base.member(n).map(|b| (n.to_owned(), b.to_vec())))
            .collect();
        drop(base);
        let text = |name: &str, b: &[u8]| {
            std::str::from_utf8(b)
                .map(str::to_owned)
                .map_err(|e| Error::Publish(format!("{name}: {e}")))
        };
        let users_text = match members.remove(member::USERS) {
            Some(b) => text(member::USERS, &b)?,
            None => String::new(),
        };
        let mut directory = Directory::parse(&users_text)
            .map_err(|e| Error::Publish(format!("snapshot users.jsonl: {e}")))?;
        drop(users_text);
        for rev in head.snapshot + 1..=head.revision {
            let key = keys.delta(rev);
            let delta = self.open(realm, &key, signer)?;
            if delta.manifest.kind != BundleKind::Delta
                || delta.manifest.base_revision != Some(rev - 1)
            {
                return Err(Error::Publish(format!(
                    "{key} is not the delta on revision {}",
                    rev - 1
                )));
            }
            identity = delta.manifest.identity.clone();
            for name in delta.member_names() {
                let bytes = delta.member(name).unwrap_or_default();
                if name == member::USERS {
                    let changes = Directory::parse_changes(&text(&key, bytes)?)
                        .map_err(|e| Error::Publish(format!("{key} users.jsonl: {e}")))?;
                    directory = directory.with_changes(changes);
                } else {
                    members.insert(name.to_owned(), bytes.to_vec());
                }
            }
        }
        let users = directory.len();
        members.insert(member::USERS.into(), directory.to_jsonl().into_bytes());
        Ok(Folded {
            members,
            identity,
            users,
        })
    }

    /// What is published and what is waiting.
    pub fn status(&self, realm: &str) -> Result<PublishStatus> {
        let signer = self.db.bundle_signer(realm)?;
        let head = self.head(realm)?.map(|(h, _)| h);
        Ok(PublishStatus {
            realm: realm.into(),
            head_revision: head.as_ref().map(|h| h.revision),
            snapshot_revision: head.as_ref().map(|h| h.snapshot),
            head_updated_at: head.as_ref().map(|h| h.updated_at),
            pending_changes: self.db.pending_count(realm)?,
            bundle_key: signer
                .public_pem()
                .map_err(|e| Error::Internal(e.to_string()))?,
            bundle_kid: signer.kid().to_owned(),
        })
    }
}

/// A realm's content at one revision, folded from the store.
struct Folded {
    members: BTreeMap<String, Vec<u8>>,
    identity: Option<pdp_core::IdentitySettings>,
    users: usize,
}

/// The keyring of a realm's own bundle key.
struct OwnRing(Keyring);

impl OwnRing {
    fn as_trust(&self) -> Trust<'_> {
        Trust::Keyring(&self.0)
    }
}

/// What a decision point builds from the store: `HEAD`'s snapshot and
/// every delta after it, each verified with `keyring` and applied in
/// order. Used by tests and tools; edge hosts have their own poller.
pub fn load_published(
    store: &dyn ObjectStore,
    prefix: &str,
    realm: &str,
    keyring: &Keyring,
) -> Result<pdp_core::Snapshot> {
    let keys = RealmKeys::new(prefix, realm);
    let head = store
        .get(&keys.head())?
        .ok_or_else(|| Error::not_found("published realm", realm))?;
    let head = Head::parse(&head.bytes).map_err(|e| Error::Publish(e.to_string()))?;
    let opts = pdp_core::LoadOptions {
        trust: Trust::Keyring(keyring),
        limits: Limits::default(),
    };
    let get = |key: String| {
        store
            .get(&key)?
            .map(|o| o.bytes)
            .ok_or_else(|| Error::Publish(format!("{key} is missing")))
    };
    let load = |key: String, held: Option<&pdp_core::Snapshot>| {
        let bytes = get(key.clone())?;
        pdp_core::load(&bytes, &opts, held).map_err(|e| Error::Publish(format!("{key}: {e}")))
    };
    let mut snap = load(keys.snapshot(head.snapshot), None)?;
    for rev in head.snapshot + 1..=head.revision {
        snap = load(keys.delta(rev), Some(&snap))?;
    }
    Ok(snap)
}
