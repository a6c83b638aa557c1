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
//!   adopts; the repository's change log is drained only after `HEAD`
//!   names the revision that carries the changes, so nothing is lost.
//!   Before writing a delta its publisher records which changes it
//!   carries (a publish intent), so whoever adopts it drains exactly
//!   those: each change is published once. (Were one published twice it
//!   would be harmless: deltas carry whole user records and whole Cedar
//!   members.)
//!
//! On top of that, publishing a realm is one control plane's job at a
//! time: [`Service::publisher`] takes the repository's per-realm publisher
//! lock (a PostgreSQL advisory lock held on a connection; released when
//! the holder's process dies), so control planes sharing a database drain
//! its change log exactly once, and compaction runs in one of them at a
//! time.

use super::{Caller, Service};
use crate::domain::admin::AdminAction;
use crate::domain::error::{Error, Result};
use crate::domain::policy::cedar_members;
use crate::domain::realm::Realm;
use crate::ports::repository::{Change, Pending, PublisherLock};
use crate::ports::{Condition, Fetched, ObjectStore, Put};
use pdp_core::bundle::{BundleHeader, write_archive};
use pdp_core::chain;
use pdp_core::directory::UserChange;
use pdp_core::layout::{Head, HeadError, RealmKeys};
use pdp_core::manifest::member;
use pdp_core::{Bundle, BundleKind, BundleSigner, IdentitySettings, Keyring, Limits, Trust};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;

/// How many times a publisher re-reads `HEAD` after losing a race before
/// it gives up (each loss means another publisher made progress).
const MAX_ATTEMPTS: usize = 64;

/// How long a publisher waits for another control plane to finish
/// publishing the same realm.
const PUBLISHER_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Largest `HEAD` object read, bytes.
const HEAD_LIMIT: u64 = 64 << 10;

/// The policy set of a deleted realm.
pub const WITHDRAWN_POLICIES: &str =
    "@id(\"realm-deleted\")\nforbid (principal, action, resource);\n";

/// How a wait for the publisher lock ended.
enum Turn {
    /// This control plane is the realm's publisher.
    Publish(PublisherLock),
    /// The holder published what we waited for, at this revision.
    Covered(u64),
}

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

impl Published {
    fn none(realm: &str, revision: u64, key: Option<String>) -> Published {
        Published {
            realm: realm.into(),
            revision,
            kind: "none".into(),
            key,
            bytes: 0,
            users: 0,
        }
    }
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
    /// When `HEAD` was last signed, unix seconds (the freshness edge
    /// hosts count).
    pub head_issued_at: Option<i64>,
    /// How often this control plane re-signs `HEAD`, seconds.
    pub head_resign_interval_seconds: u64,
    /// Changes committed and not yet published.
    pub pending_changes: u64,
    /// The public key edge hosts must trust for this realm's bundles (PEM).
    pub bundle_key: String,
    /// Its key id.
    pub bundle_kid: String,
}

/// A `HEAD` re-signed with nothing new to publish.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Resigned {
    /// The realm.
    pub realm: String,
    /// The revision it still names.
    pub revision: u64,
    /// The new record's `issued_at`.
    pub issued_at: i64,
}

/// What a delta carries.
struct DeltaContent {
    /// The newest change it covers (`None`: drains nothing, a withdrawal).
    upto: Option<i64>,
    members: BTreeMap<String, Vec<u8>>,
    users: Vec<UserChange>,
    identity: Option<IdentitySettings>,
}

fn store_err(e: object_store::StoreError) -> Error {
    Error::Store(e.to_string())
}

impl Service {
    fn keys(&self, realm: &str) -> RealmKeys {
        RealmKeys::new(&self.settings.store_prefix, realm)
    }

    async fn get(&self, key: &str, limit: u64) -> Result<Option<(Vec<u8>, Option<String>)>> {
        match self.store.get(key, None, limit).await {
            Ok(Fetched::Found { bytes, etag }) => Ok(Some((bytes, etag))),
            Ok(Fetched::Missing | Fetched::NotModified) => Ok(None),
            Err(e) => {
                self.metrics.store_error();
                Err(store_err(e))
            }
        }
    }

    async fn put(&self, key: &str, bytes: &[u8], condition: Condition) -> Result<Put> {
        self.store.put(key, bytes, condition).await.map_err(|e| {
            self.metrics.store_error();
            store_err(e)
        })
    }

    /// `HEAD` and its entity tag. Its signature must verify with the
    /// realm's bundle key: an unsigned or forged record (someone with
    /// write access to the store) is never built on, since its `issued_at`
    /// would be carried into the next signed one. The unsigned `HEAD` of
    /// an earlier release is read for its revisions only (`issued_at` 0),
    /// and replaced by a signed one at the next publish or re-signing.
    async fn head(&self, realm: &str, signer: &BundleSigner) -> Result<Option<(Head, String)>> {
        let key = self.keys(realm).head();
        let Some((bytes, etag)) = self.get(&key, HEAD_LIMIT).await? else {
            return Ok(None);
        };
        let etag = etag.ok_or_else(|| Error::Store(format!("{key}: the store gave no ETag")))?;
        let ring = own_ring(signer);
        let head = match Head::open(&bytes, Trust::Keyring(&ring)) {
            Err(HeadError::Legacy) => Head::open_legacy(&bytes).map(|h| Head { issued_at: 0, ..h }),
            other => other,
        }
        .map_err(|e| Error::Publish(format!("{key}: {e}")))?;
        // A record (signed once by this realm's key, or of the old unsigned
        // format) naming less than what this realm has published is a
        // rolled-back or overwritten store: re-signing it would make edge
        // hosts serve the old chain as fresh.
        let r = realm.to_owned();
        if let Some((published, _)) = self.repo.read(move |tx| tx.published(&r)).await?
            && head.revision < published
        {
            return Err(Error::Publish(format!(
                "{key} names revision {}, below revision {published} this realm has published: \
                 the store was rolled back or overwritten; nothing is built on it",
                head.revision
            )));
        }
        if head.realm != realm {
            return Err(Error::Publish(format!(
                "{key} names realm {:?}",
                head.realm
            )));
        }
        Ok(Some((head, etag)))
    }

    /// The token settings the realm's bundles carry, from its provider.
    async fn token_settings(&self, realm: &str) -> Result<Option<IdentitySettings>> {
        let r = self.realm_record(realm).await?;
        let idp = self.identities.of(&r)?;
        self.identity_result(idp.token_settings(&r).await)
    }

    /// The realm's whole content as bundle members (users in id order)
    /// and its token settings.
    pub(super) async fn whole_content(
        &self,
        realm: &str,
    ) -> Result<(BTreeMap<String, Vec<u8>>, Option<IdentitySettings>)> {
        let (_, members) = self.snapshot_content(realm).await?;
        Ok((members, self.token_settings(realm).await?))
    }

    /// The whole content and the newest change it covers, in one read.
    async fn snapshot_content(
        &self,
        realm: &str,
    ) -> Result<(Option<i64>, BTreeMap<String, Vec<u8>>)> {
        let r = realm.to_owned();
        self.repo
            .read(move |tx| {
                let upto = tx.pending(&r)?.map(|p| p.upto);
                let mut members = cedar_members(&tx.content(&r)?);
                let mut users = Vec::new();
                tx.for_each_user(&r, &mut |rec| {
                    serde_json::to_writer(&mut users, &rec)
                        .map_err(|e| Error::Internal(format!("user {:?}: {e}", rec.id)))?;
                    users.push(b'\n');
                    Ok(true)
                })?;
                members.insert(member::USERS.to_owned(), users);
                Ok((upto, members))
            })
            .await
    }

    /// The pending changes as a delta's content, or `None`.
    async fn pending_content(&self, realm: &str) -> Result<Option<(Pending, DeltaContent)>> {
        let r = realm.to_owned();
        let found = self
            .repo
            .read(move |tx| {
                tx.live_realm(&r)?;
                let Some(p) = tx.pending(&r)? else {
                    return Ok(None);
                };
                let mut users = Vec::new();
                if !p.all_users {
                    for id in &p.users {
                        match tx.user(&r, id) {
                            Ok(u) => users.push(UserChange::Upsert(u.to_record())),
                            Err(Error::NotFound { .. }) => {
                                users.push(UserChange::Remove(id.clone()))
                            }
                            Err(e) => return Err(e),
                        }
                    }
                }
                let members = if p.content {
                    cedar_members(&tx.content(&r)?)
                } else {
                    BTreeMap::new()
                };
                Ok(Some((p, members, users)))
            })
            .await?;
        let Some((p, members, users)) = found else {
            return Ok(None);
        };
        let identity = self.token_settings(realm).await?;
        Ok(Some((
            p.clone(),
            DeltaContent {
                upto: Some(p.upto),
                members,
                users,
                identity,
            },
        )))
    }

    async fn mark_published(&self, realm: &str, upto: i64, revision: u64, now: i64) -> Result<()> {
        let r = realm.to_owned();
        self.repo
            .write(move |tx| tx.mark_published(&r, upto, revision, now))
            .await
    }

    /// Publish the realm's pending changes now (admin call).
    pub async fn publish(&self, caller: &Caller, realm: &str) -> Result<Published> {
        self.authorize(caller, AdminAction::BundlePublish, Some(realm))
            .await?;
        self.publish_now(realm).await
    }

    /// Publish what changed since the last publish: the first publish (or
    /// a bulk change of every user) writes a snapshot, every other a delta.
    /// With nothing pending it changes nothing.
    ///
    /// When another control plane is publishing the realm, it waits until
    /// either it becomes the publisher or everything committed before the
    /// call has been published by the other one (then it returns at once
    /// with nothing written): a publisher that keeps the lock busy with
    /// its own changes publishes ours too, and we do not wait our turn for
    /// nothing.
    pub(super) async fn publish_now(&self, realm: &str) -> Result<Published> {
        let started = std::time::Instant::now();
        let out = match self.wait_turn(realm, true).await {
            Ok(Turn::Publish(_lock)) => self.publish_inner(realm).await,
            Ok(Turn::Covered(revision)) => Ok(Published::none(realm, revision, None)),
            Err(e) => Err(e),
        };
        match &out {
            Ok(p) if p.kind != "none" => self.metrics.published(realm, started.elapsed()),
            Ok(_) => {}
            Err(_) => self.metrics.publish_failed(realm),
        }
        out
    }

    async fn publish_inner(&self, realm: &str) -> Result<Published> {
        let now = self.now();
        let signer = self.bundle_signer(realm).await?;
        for _ in 0..MAX_ATTEMPTS {
            let head = self.head(realm, &signer).await?;
            if let Some((h, _)) = &head
                && h.snapshot < h.revision
            {
                // HEAD names a delta whose publisher died before marking
                // its changes published: they are in the chain (the
                // delta there carries at least the ones it recorded).
                let (r, rev) = (realm.to_owned(), h.revision);
                if let Some(upto) = self.repo.read(move |tx| tx.intent(&r, rev)).await? {
                    self.mark_published(realm, upto, rev, now).await?;
                }
            }
            let pending = self.pending_content(realm).await?;
            let step = match (&head, pending) {
                (Some((h, _)), None) => return Ok(Published::none(realm, h.revision, None)),
                (None, _) => self.publish_snapshot(realm, None, &signer, now).await?,
                (Some((h, etag)), Some((p, _))) if p.all_users => {
                    self.publish_snapshot(realm, Some((h, etag)), &signer, now)
                        .await?
                }
                (Some((h, etag)), Some((_, delta))) => {
                    self.publish_delta(realm, h, etag, delta, &signer, now)
                        .await?
                }
            };
            if let Some(done) = step {
                if done.kind == "delta"
                    && self.settings.compact_after_deltas > 0
                    && let Some((h, _)) = self.head(realm, &signer).await?
                    && h.revision - h.snapshot >= self.settings.compact_after_deltas
                {
                    self.compact_now(realm).await?;
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
    async fn publish_snapshot(
        &self,
        realm: &str,
        head: Option<(&Head, &String)>,
        signer: &BundleSigner,
        now: i64,
    ) -> Result<Option<Published>> {
        let (upto, members) = self.snapshot_content(realm).await?;
        let identity = self.token_settings(realm).await?;
        let Some(done) = self
            .write_snapshot(realm, head, members, identity, signer, now)
            .await?
        else {
            return Ok(None);
        };
        if let Some(upto) = upto {
            self.mark_published(realm, upto, done.revision, now).await?;
        }
        Ok(Some(done))
    }

    /// Write `members` as the snapshot after `head` (revision 1 when
    /// nothing is published) and point `HEAD` at it. `None`: lost a race
    /// (another publisher's bundle at that revision is adopted); retry.
    async fn write_snapshot(
        &self,
        realm: &str,
        head: Option<(&Head, &String)>,
        members: BTreeMap<String, Vec<u8>>,
        identity: Option<IdentitySettings>,
        signer: &BundleSigner,
        now: i64,
    ) -> Result<Option<Published>> {
        let revision = head.map_or(1, |(h, _)| h.revision + 1);
        let users = members
            .get(member::USERS)
            .map_or(0, |u| u.iter().filter(|b| **b == b'\n').count());
        let header = BundleHeader {
            realm: realm.into(),
            revision,
            kind: BundleKind::Snapshot,
            base_revision: None,
            created_at: now,
            identity,
        };
        let signer2 = signer.clone();
        let bytes = tokio::task::spawn_blocking(move || {
            write_archive(&header, &members, Some(&signer2), true)
        })
        .await
        .map_err(|e| Error::Internal(format!("bundle writer: {e}")))?
        .map_err(|e| Error::Publish(e.to_string()))?;
        let key = self.keys(realm).snapshot(revision);
        let interval = self.settings.head_resign_interval_seconds;
        let new_head = match head {
            Some((h, _)) => h.next(revision, revision, now, interval),
            None => Head::first(realm, revision, now, interval),
        };
        if !self
            .claim(realm, &key, &bytes, BundleKind::Snapshot, revision, signer)
            .await?
        {
            // Someone else's snapshot at this revision: adopt it, then
            // publish ours on top.
            self.advance(realm, head.map(|(_, e)| e), &new_head, signer)
                .await?;
            return Ok(None);
        }
        if !self
            .advance(realm, head.map(|(_, e)| e), &new_head, signer)
            .await?
        {
            return Ok(None);
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

    /// Write `delta` as the delta after `head`. `None`: lost a race.
    async fn publish_delta(
        &self,
        realm: &str,
        head: &Head,
        etag: &str,
        delta: DeltaContent,
        signer: &BundleSigner,
        now: i64,
    ) -> Result<Option<Published>> {
        let revision = head.revision + 1;
        let mut members = delta.members;
        let users = delta.users.len();
        if !delta.users.is_empty() {
            let mut lines = String::new();
            for change in &delta.users {
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
                identity: delta.identity,
            },
            &members,
            Some(signer),
            true,
        )
        .map_err(|e| Error::Publish(e.to_string()))?;
        let key = self.keys(realm).delta(revision);
        // Recorded before the bundle exists: if this process dies between
        // writing it and advancing HEAD, whoever adopts it knows which
        // changes it carries and publishes them once, not again.
        if let Some(upto) = delta.upto {
            let r = realm.to_owned();
            self.repo
                .write(move |tx| tx.record_intent(&r, revision, upto))
                .await?;
        }
        let new_head = head.next(
            revision,
            head.snapshot,
            now,
            self.settings.head_resign_interval_seconds,
        );
        let etag = etag.to_owned();
        if !self
            .claim(realm, &key, &bytes, BundleKind::Delta, revision, signer)
            .await?
        {
            // A dead publisher's delta: adopt it, and with it the changes
            // its publisher recorded it carries (none recorded: an older
            // build's; its changes are published again, harmlessly).
            if self.advance(realm, Some(&etag), &new_head, signer).await? {
                let r = realm.to_owned();
                let carried = self.repo.read(move |tx| tx.intent(&r, revision)).await?;
                if let Some(upto) = carried {
                    self.mark_published(realm, upto, revision, now).await?;
                }
            }
            return Ok(None);
        }
        if !self.advance(realm, Some(&etag), &new_head, signer).await? {
            // HEAD moved. Our delta is in the chain if HEAD reached its
            // revision without a snapshot at or after it (a snapshot there
            // was built without it); otherwise publish the changes again.
            let Some((now_head, _)) = self.head(realm, signer).await? else {
                return Ok(None);
            };
            if !(now_head.revision >= revision && now_head.snapshot < revision) {
                return Ok(None);
            }
        }
        if let Some(upto) = delta.upto {
            self.mark_published(realm, upto, revision, now).await?;
        }
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
    async fn claim(
        &self,
        realm: &str,
        key: &str,
        bytes: &[u8],
        kind: BundleKind,
        revision: u64,
        signer: &BundleSigner,
    ) -> Result<bool> {
        match self.put(key, bytes, Condition::IfAbsent).await? {
            Put::Written(_) => Ok(true),
            Put::PreconditionFailed => {
                let theirs = self.open(realm, key, signer).await?;
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

    /// Read and verify one bundle of the realm.
    async fn open(&self, realm: &str, key: &str, signer: &BundleSigner) -> Result<Bundle<'static>> {
        let (bytes, _) = self
            .get(key, Limits::default().archive)
            .await?
            .ok_or_else(|| Error::Publish(format!("{key} is missing from the store")))?;
        let ring = own_ring(signer);
        let bundle = Bundle::open(&bytes, Trust::Keyring(&ring), &Limits::default())
            .map_err(|e| Error::Publish(format!("{key}: {e}")))?
            .into_owned();
        if bundle.manifest.realm != realm {
            return Err(Error::Publish(format!(
                "{key} belongs to realm {:?}",
                bundle.manifest.realm
            )));
        }
        Ok(bundle)
    }

    /// Compare-and-swap `HEAD` from `etag` (`None`: create it) to `head`,
    /// signed with the realm's bundle key.
    async fn advance(
        &self,
        realm: &str,
        etag: Option<&String>,
        head: &Head,
        signer: &BundleSigner,
    ) -> Result<bool> {
        let cond = match etag {
            Some(e) => Condition::IfMatch(e.clone()),
            None => Condition::IfAbsent,
        };
        Ok(matches!(
            self.put(&self.keys(realm).head(), &head.seal(signer), cond)
                .await?,
            Put::Written(_)
        ))
    }

    /// After a realm is deleted: publish, at the next revision, a snapshot
    /// of an empty realm whose only policy forbids everything, so decision
    /// points holding the realm deny from then on (reason: the
    /// `realm-deleted` forbid) instead of serving its last policies until
    /// they go stale — and hold no users and no identity settings, so its
    /// tokens are no longer verified (introspection says inactive) and its
    /// profiles are gone. Older objects stay in the store; with nothing
    /// published it does nothing.
    pub(super) async fn withdraw(&self, realm: &str) -> Result<Published> {
        let _lock = self.publisher(realm).await?;
        let now = self.now();
        let signer = self.bundle_signer(realm).await?;
        let members = BTreeMap::from([
            (
                member::POLICIES.to_owned(),
                WITHDRAWN_POLICIES.as_bytes().to_vec(),
            ),
            (member::LINKS.to_owned(), b"[]\n".to_vec()),
            (member::USERS.to_owned(), Vec::new()),
        ]);
        for _ in 0..MAX_ATTEMPTS {
            let Some((head, etag)) = self.head(realm, &signer).await? else {
                return Ok(Published::none(realm, 0, None));
            };
            if let Some(done) = self
                .write_snapshot(
                    realm,
                    Some((&head, &etag)),
                    members.clone(),
                    None,
                    &signer,
                    now,
                )
                .await?
            {
                return Ok(done);
            }
        }
        Err(Error::Publish(format!(
            "realm {realm:?}: HEAD kept moving; withdrawal gave up after {MAX_ATTEMPTS} attempts"
        )))
    }

    /// Fold the newest snapshot and the deltas after it into a snapshot at
    /// `HEAD`'s revision (admin call); see [`Service::compact_now`].
    pub async fn compact(&self, caller: &Caller, realm: &str) -> Result<Published> {
        self.authorize(caller, AdminAction::BundlePublish, Some(realm))
            .await?;
        let _lock = self.publisher(realm).await?;
        self.compact_now(realm).await
    }

    /// Become the realm's publisher, waiting while another control plane
    /// is (it finishes, or its process dies and the lock goes with it).
    async fn publisher(&self, realm: &str) -> Result<PublisherLock> {
        match self.wait_turn(realm, false).await? {
            Turn::Publish(lock) => Ok(lock),
            // Not asked for: a waiter without a target is never covered.
            Turn::Covered(_) => Err(Error::Internal("publisher wait covered".into())),
        }
    }

    /// Wait for the realm's publisher lock. With `covered_ok`, the wait
    /// also ends (with the revision that carried it) as soon as the holder
    /// has published everything that was pending when the lock was first
    /// found taken: a holder that keeps the lock busy publishes our
    /// changes too, and we do not wait our turn for nothing. The wait
    /// polls, backing off to 5 ms (every admin call with auto-publish may
    /// wait here, so the interval is part of its latency; a holder in this
    /// process costs no database round trip).
    async fn wait_turn(&self, realm: &str, covered_ok: bool) -> Result<Turn> {
        let deadline = std::time::Instant::now() + PUBLISHER_WAIT;
        let mut pause = std::time::Duration::from_millis(1);
        let mut target = None;
        loop {
            if let Some(lock) = self.repo.lock_publisher(realm).await? {
                return Ok(Turn::Publish(lock));
            }
            if covered_ok {
                let (r, t) = (realm.to_owned(), target);
                let (pending, covered) = self
                    .repo
                    .read(move |tx| {
                        // The first time: what we wait to see published
                        // (nothing pending: still become the publisher,
                        // a realm's first publish has nothing pending).
                        let t = match t {
                            Some(t) => Some(t),
                            None => tx.pending(&r)?.map(|p| p.upto),
                        };
                        let covered = match t {
                            Some(t) if !tx.unpublished_through(&r, t)? => {
                                tx.published(&r)?.map(|(revision, _)| revision)
                            }
                            _ => None,
                        };
                        Ok((t, covered))
                    })
                    .await?;
                if let Some(revision) = covered {
                    return Ok(Turn::Covered(revision));
                }
                target = pending;
            }
            if std::time::Instant::now() >= deadline {
                return Err(Error::Publish(format!(
                    "realm {realm:?}: another control plane has been publishing it for over {} s",
                    PUBLISHER_WAIT.as_secs()
                )));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(std::time::Duration::from_millis(5));
        }
    }

    /// Fold the newest snapshot and the deltas after it into a snapshot at
    /// `HEAD`'s revision, built from the store alone, and point `HEAD`'s
    /// snapshot at it. Decision points that hold an older revision than it
    /// load it instead of a long chain of deltas.
    async fn compact_now(&self, realm: &str) -> Result<Published> {
        let now = self.now();
        let signer = self.bundle_signer(realm).await?;
        for _ in 0..MAX_ATTEMPTS {
            let Some((head, etag)) = self.head(realm, &signer).await? else {
                return Err(Error::Conflict(format!(
                    "realm {realm:?} has nothing published to compact"
                )));
            };
            let key = self.keys(realm).snapshot(head.revision);
            if head.snapshot == head.revision {
                return Ok(Published::none(realm, head.revision, Some(key)));
            }
            let mut objects = fetch_chain(self.store.as_ref(), &self.keys(realm), &head, None)
                .await
                .inspect_err(|_| self.metrics.store_error())?;
            let ring = own_ring(&signer);
            let (keys, signer2, h) = (self.keys(realm), signer.clone(), head.clone());
            // The chain folded by the same code decision points apply
            // deltas with, then written as one snapshot.
            let (bytes, members, users) = tokio::task::spawn_blocking(move || {
                let options = pdp_core::LoadOptions {
                    trust: Trust::Keyring(&ring),
                    limits: Limits::default(),
                };
                let folded = chain::compact(
                    |k| Ok::<_, Infallible>(objects.remove(k)),
                    &h,
                    &keys,
                    &options,
                )
                .map_err(|e| Error::Publish(e.to_string()))?;
                let users = folded.users();
                let header = folded.header(now);
                let members = folded.into_members();
                let bytes = write_archive(&header, &members, Some(&signer2), true)
                    .map_err(|e| Error::Publish(e.to_string()))?;
                Ok::<_, Error>((bytes, members, users))
            })
            .await
            .map_err(|e| Error::Internal(format!("compaction: {e}")))??;
            self.claim_compacted(realm, &key, &bytes, &members, &signer)
                .await?;
            let new_head = head.next(
                head.revision,
                head.revision,
                now,
                self.settings.head_resign_interval_seconds,
            );
            if self.advance(realm, Some(&etag), &new_head, &signer).await? {
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

    /// Create the compacted snapshot at `key`. One that exists already is
    /// kept when its content is ours (a concurrent or crashed compaction's:
    /// the content of a revision is a function of the store), and replaced
    /// otherwise (an orphan of a publisher that lost the revision to a
    /// delta; `HEAD` cannot name it, or there would be nothing to compact).
    async fn claim_compacted(
        &self,
        realm: &str,
        key: &str,
        bytes: &[u8],
        members: &BTreeMap<String, Vec<u8>>,
        signer: &BundleSigner,
    ) -> Result<()> {
        for _ in 0..MAX_ATTEMPTS {
            let Some((existing, etag)) = self.get(key, Limits::default().archive).await? else {
                if let Put::Written(_) = self.put(key, bytes, Condition::IfAbsent).await? {
                    return Ok(());
                }
                continue;
            };
            let ring = own_ring(signer);
            let same = match Bundle::open(&existing, Trust::Keyring(&ring), &Limits::default()) {
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
            let etag =
                etag.ok_or_else(|| Error::Store(format!("{key}: the store gave no ETag")))?;
            tracing::warn!(key, "replacing an orphaned snapshot that HEAD never named");
            if let Put::Written(_) = self.put(key, bytes, Condition::IfMatch(etag)).await? {
                return Ok(());
            }
        }
        Err(Error::Publish(format!(
            "{key} kept changing while compacting"
        )))
    }

    /// Re-sign the `HEAD` of every live realm whose record is half an
    /// interval old or more, so that edge hosts keep counting it fresh
    /// while nothing changes (their staleness limit is at least 4
    /// intervals). A realm being published elsewhere is skipped: its
    /// publisher writes a fresh `HEAD` itself. A deleted realm is not
    /// re-signed; hosts still serving its withdrawal go stale (and deny)
    /// once their limit passes. Returns the realms re-signed.
    pub async fn resign_heads(&self) -> Result<Vec<Resigned>> {
        let realms = self.repo.read(|tx| tx.realms(false)).await?;
        let mut out = Vec::new();
        for r in realms {
            if let Err(e) = self.follow_token_settings(&r).await {
                tracing::warn!(realm = r.name, error = %e, "could not check the realm's token keys");
            }
            match self.resign_head(&r.name).await {
                Ok(Some(done)) => {
                    self.metrics.head_resigned(true);
                    out.push(done);
                }
                Ok(None) => {}
                Err(e) => {
                    self.metrics.head_resigned(false);
                    tracing::warn!(realm = r.name, error = %e, "could not re-sign HEAD");
                }
            }
        }
        Ok(out)
    }

    /// A realm whose provider changed its token settings by itself (a
    /// Cognito pool's key rotation) gets them published: recorded as a
    /// content change, published now with `auto_publish`.
    async fn follow_token_settings(&self, realm: &Realm) -> Result<()> {
        let idp = self.identities.of(realm)?;
        if !self.identity_result(idp.token_settings_changed(realm).await)? {
            return Ok(());
        }
        let (r, now) = (realm.name.clone(), self.now());
        self.repo
            .write(move |tx| {
                tx.live_realm(&r)?;
                tx.record_change(&r, Change::Content, now)
            })
            .await?;
        self.changed(&realm.name).await;
        Ok(())
    }

    async fn resign_head(&self, realm: &str) -> Result<Option<Resigned>> {
        // A lock just released may take a moment to be free again (on
        // PostgreSQL the unlock is sent after the guard is dropped): wait
        // that long, no longer; a realm really being published is left
        // to its publisher.
        let mut lock = None;
        for pause in [1, 2, 4, 8, 16, 32] {
            lock = self.repo.lock_publisher(realm).await?;
            if lock.is_some() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
        }
        let Some(_lock) = lock else {
            return Ok(None);
        };
        let signer = self.bundle_signer(realm).await?;
        let Some((head, etag)) = self.head(realm, &signer).await? else {
            return Ok(None);
        };
        let now = self.now();
        let interval = self.settings.head_resign_interval_seconds;
        let half = i64::try_from(interval / 2).unwrap_or(i64::MAX).max(1);
        if now.saturating_sub(head.issued_at) < half {
            return Ok(None);
        }
        let next = head.next(head.revision, head.snapshot, now, interval);
        // Lost to a publisher of another control plane: its HEAD is new.
        if !self.advance(realm, Some(&etag), &next, &signer).await? {
            return Ok(None);
        }
        Ok(Some(Resigned {
            realm: realm.into(),
            revision: next.revision,
            issued_at: next.issued_at,
        }))
    }

    /// Keep every realm's `HEAD` signed for as long as the service runs:
    /// a [`Service::resign_heads`] pass every half interval.
    pub async fn keep_heads_signed(self: std::sync::Arc<Self>) {
        let every =
            std::time::Duration::from_secs((self.settings.head_resign_interval_seconds / 2).max(1));
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = self.resign_heads().await {
                tracing::warn!(error = %e, "re-signing HEADs failed");
            }
        }
    }

    /// What is published and what is waiting.
    pub async fn publish_status(&self, caller: &Caller, realm: &str) -> Result<PublishStatus> {
        self.authorize(caller, AdminAction::BundleStatus, Some(realm))
            .await?;
        let signer = self.bundle_signer(realm).await?;
        let head = self.head(realm, &signer).await?.map(|(h, _)| h);
        let r = realm.to_owned();
        let pending = self
            .repo
            .read(move |tx| {
                tx.live_realm(&r)?;
                tx.pending_count(&r)
            })
            .await?;
        Ok(PublishStatus {
            realm: realm.into(),
            head_revision: head.as_ref().map(|h| h.revision),
            snapshot_revision: head.as_ref().map(|h| h.snapshot),
            head_issued_at: head.as_ref().map(|h| h.issued_at),
            head_resign_interval_seconds: self.settings.head_resign_interval_seconds,
            pending_changes: pending,
            bundle_key: signer
                .public_pem()
                .map_err(|e| Error::Internal(e.to_string()))?,
            bundle_kid: signer.kid().to_owned(),
        })
    }
}

fn own_ring(signer: &BundleSigner) -> Keyring {
    let mut ring = Keyring::new();
    ring.add(signer.verifying_key());
    ring
}

/// Every object of the chain `head` names for a reader holding `held`
/// (absent ones left out: the chain code names them when it needs them).
async fn fetch_chain(
    store: &dyn ObjectStore,
    keys: &RealmKeys,
    head: &Head,
    held: Option<u64>,
) -> Result<HashMap<String, Vec<u8>>> {
    let steps = chain::steps(held, head, keys).map_err(|e| Error::Publish(e.to_string()))?;
    let mut out = HashMap::new();
    for step in steps {
        match store.get(&step.key, None, Limits::default().archive).await {
            Ok(Fetched::Found { bytes, .. }) => {
                out.insert(step.key, bytes);
            }
            Ok(_) => {}
            Err(e) => return Err(store_err(e)),
        }
    }
    Ok(out)
}

/// What a decision point builds from the store: `HEAD`'s chain loaded by
/// `pdp_core::chain` (each bundle verified with `keyring`, deltas applied
/// in order), as the edge host and the `pdp` CLI load it. For tests and
/// tools.
pub async fn load_published(
    store: &dyn ObjectStore,
    prefix: &str,
    realm: &str,
    keyring: &Keyring,
) -> Result<pdp_core::Snapshot> {
    let keys = RealmKeys::new(prefix, realm);
    let head = match store.get(&keys.head(), None, HEAD_LIMIT).await {
        Ok(Fetched::Found { bytes, .. }) => bytes,
        Ok(_) => return Err(Error::not_found("published realm", realm)),
        Err(e) => return Err(store_err(e)),
    };
    let head =
        Head::open(&head, Trust::Keyring(keyring)).map_err(|e| Error::Publish(e.to_string()))?;
    let mut objects = fetch_chain(store, &keys, &head, None).await?;
    let options = pdp_core::LoadOptions {
        trust: Trust::Keyring(keyring),
        limits: Limits::default(),
    };
    match chain::load(
        |k| Ok::<_, Infallible>(objects.remove(k)),
        &head,
        &keys,
        None,
        &options,
    ) {
        Ok(chain::Loaded::Updated(snapshot)) => Ok(snapshot),
        Ok(chain::Loaded::Current) => Err(Error::Internal("nothing was loaded".into())),
        Err(e) => Err(Error::Publish(e.to_string())),
    }
}
