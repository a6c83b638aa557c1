//! A bounded cache of built directory-user entities, one per snapshot.
//!
//! Building a user's Cedar entity (parse attributes, clone the closed
//! ancestor set) is the largest part of a slice. A decision point sees the
//! same principals again and again, and a snapshot never changes, so the
//! entity built for a user id is valid for as long as its snapshot lives;
//! every new snapshot (including one produced by a delta) starts with an
//! empty cache. Sharded mutexes keep contention low; a full shard is simply
//! cleared (no per-entry bookkeeping on the hot path).

use cedar_policy::EntityUid;
use cedar_policy_core::ast::Entity as CoreEntity;
use rustc_hash::FxHashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex};

const SHARDS: usize = 16;

/// A built user: its entity and the entity references in its attributes.
pub(crate) type Built = Arc<(Arc<CoreEntity>, Box<[EntityUid]>)>;

pub(crate) struct UserCache {
    shards: Vec<Mutex<FxHashMap<Box<str>, Built>>>,
    per_shard: usize,
    hasher: rustc_hash::FxBuildHasher,
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
        UserCache {
            shards,
            per_shard,
            hasher: rustc_hash::FxBuildHasher,
        }
    }

    fn shard(&self, id: &str) -> Option<&Mutex<FxHashMap<Box<str>, Built>>> {
        let n = self.shards.len();
        if n == 0 {
            return None;
        }
        let i = usize::try_from(self.hasher.hash_one(id) % n as u64).unwrap_or(0);
        self.shards.get(i)
    }

    pub fn get(&self, id: &str) -> Option<Built> {
        let shard = self.shard(id)?.lock().ok()?;
        shard.get(id).cloned()
    }

    pub fn put(&self, id: &str, built: Built) {
        if let Some(shard) = self.shard(id)
            && let Ok(mut map) = shard.lock()
        {
            if map.len() >= self.per_shard {
                map.clear();
            }
            map.insert(id.into(), built);
        }
    }
}
