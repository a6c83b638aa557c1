//! A bounded cache of built directory-user entities, one per snapshot.
//!
//! Building a user's Cedar entity (parse attributes, clone the closed
//! ancestor set) is the largest part of a slice. A decision point sees the
//! same principals again and again, and a snapshot never changes, so the
//! entity built for a user id is valid for as long as its snapshot lives;
//! every new snapshot (including one produced by a delta) starts with an
//! empty cache. A built user keeps its lifecycle state, so gating and
//! slicing ask here first and touch the directory's (cold, at scale)
//! memory only on a miss. Sharded mutexes keep contention low; a full shard is simply
//! cleared (no per-entry bookkeeping on the hot path).
//!
//! A user is admitted the second time it is built, not the first (a
//! "doorkeeper": one hash tag per slot of a small lock-free table). A long
//! stream of principals seen once, as across a million-user directory,
//! then never churns out the entities that do repeat (the owners of busy
//! resources, frequent principals), and a one-off entity is freed while
//! still in cache rather than much later from cold memory.

use crate::lifecycle::UserState;
use cedar_policy::EntityUid;
use cedar_policy_core::ast::Entity as CoreEntity;
use rustc_hash::FxHashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

const SHARDS: usize = 16;

/// A built user: its entity, the entity references in its attributes, and
/// what gating reads (so a cached principal, or a token's subject, is
/// gated without a directory lookup).
pub(crate) struct BuiltUser {
    pub entity: Arc<CoreEntity>,
    pub refs: Box<[EntityUid]>,
    pub state: UserState,
    pub tokens_valid_after: i64,
}

/// A shared [`BuiltUser`].
pub(crate) type Built = Arc<BuiltUser>;

pub(crate) struct UserCache {
    shards: Vec<Mutex<FxHashMap<Box<str>, Built>>>,
    per_shard: usize,
    hasher: rustc_hash::FxBuildHasher,
    /// Hash tags of users built once and not yet admitted.
    seen: Box<[AtomicU32]>,
}

impl std::fmt::Debug for UserCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserCache")
            .field("capacity", &(self.per_shard * SHARDS))
            .finish()
    }
}

impl UserCache {
    /// A cache of about `capacity` users (0 disables it).
    pub fn new(capacity: usize) -> UserCache {
        let per_shard = capacity.div_ceil(SHARDS);
        let shards = if per_shard == 0 {
            Vec::new()
        } else {
            (0..SHARDS).map(|_| Mutex::default()).collect()
        };
        let seen = if per_shard == 0 {
            Box::default()
        } else {
            (0..(per_shard * SHARDS).next_power_of_two())
                .map(|_| AtomicU32::new(0))
                .collect()
        };
        UserCache {
            shards,
            per_shard,
            hasher: rustc_hash::FxBuildHasher,
            seen,
        }
    }

    fn shard(&self, hash: u64) -> Option<&Mutex<FxHashMap<Box<str>, Built>>> {
        let n = self.shards.len();
        if n == 0 {
            return None;
        }
        self.shards
            .get(usize::try_from(hash % n as u64).unwrap_or(0))
    }

    pub fn get(&self, id: &str) -> Option<Built> {
        let shard = self.shard(self.hasher.hash_one(id))?.lock().ok()?;
        shard.get(id).cloned()
    }

    /// Whether `hash` was offered once before (and is now admitted).
    fn admit(&self, hash: u64) -> bool {
        let mask = self.seen.len().wrapping_sub(1);
        let Some(slot) = self
            .seen
            .get(usize::try_from(hash >> 32).unwrap_or(0) & mask)
        else {
            return false;
        };
        // Never 0, so an empty slot admits nobody.
        let tag = (hash as u32) | 1;
        slot.swap(tag, Ordering::Relaxed) == tag
    }

    /// Offer a freshly built user; kept from its second offer on.
    pub fn put(&self, id: &str, built: Built) {
        let hash = self.hasher.hash_one(id);
        if !self.admit(hash) {
            return;
        }
        if let Some(shard) = self.shard(hash)
            && let Ok(mut map) = shard.lock()
        {
            if map.len() >= self.per_shard {
                map.clear();
            }
            map.insert(id.into(), built);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cedar_policy_core::ast::EntityUID;

    fn built(id: &str) -> Built {
        let uid: EntityUID = EntityUid::from_type_name_and_id(
            "User".parse().unwrap(),
            cedar_policy::EntityId::new(id),
        )
        .into();
        Arc::new(BuiltUser {
            entity: Arc::new(CoreEntity::with_uid(uid)),
            refs: Box::default(),
            state: UserState::Active,
            tokens_valid_after: 0,
        })
    }

    #[test]
    fn a_user_is_kept_from_its_second_offer() {
        let cache = UserCache::new(64);
        cache.put("alice", built("alice"));
        assert!(cache.get("alice").is_none(), "a one-off is not admitted");
        cache.put("alice", built("alice"));
        assert!(cache.get("alice").is_some());
        cache.put("bob", built("bob"));
        assert!(cache.get("bob").is_none());
    }

    #[test]
    fn a_disabled_cache_keeps_nothing() {
        let cache = UserCache::new(0);
        for _ in 0..3 {
            cache.put("alice", built("alice"));
        }
        assert!(cache.get("alice").is_none());
    }
}
