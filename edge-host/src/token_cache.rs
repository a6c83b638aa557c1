//! Verified-token cache: signature checks are the expensive part of a token
//! decision, and a client sends the same token many times.
//!
//! An entry holds the verified claims, is keyed by the exact token text and
//! the verifier it was checked with (`Snapshot::verifier_epoch`: new keys,
//! issuer or audiences mean a new verifier and no hits), and is never used
//! after the token's `exp`. A hit skips only the signature and claim checks:
//! the directory checks — user exists, is Active, token issued after
//! `tokens_valid_after` — run on every decision (`Snapshot::decide_verified`).

use pdp_core::VerifiedToken;
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

struct Entry {
    token: VerifiedToken,
    epoch: u64,
}

/// A bounded map from token text to its verification.
pub struct TokenCache {
    map: Mutex<HashMap<String, Entry>>,
    capacity: usize,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print tokens.
        f.debug_struct("TokenCache")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl TokenCache {
    /// A cache of at most `capacity` tokens (0 disables it).
    pub fn new(capacity: usize) -> TokenCache {
        TokenCache {
            map: Mutex::default(),
            capacity,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// The cached verification of `token` by verifier `epoch`, if still
    /// within its `exp` at `now`.
    pub fn get(&self, token: &str, epoch: u64, now: i64) -> Option<VerifiedToken> {
        let found = self
            .map
            .lock()
            .ok()
            .and_then(|mut map| match map.get(token) {
                Some(e) if e.epoch == epoch && now <= e.token.exp => Some(e.token.clone()),
                Some(_) => {
                    map.remove(token);
                    None
                }
                None => None,
            });
        match found {
            Some(_) => self.hits.fetch_add(1, Relaxed),
            None => self.misses.fetch_add(1, Relaxed),
        };
        found
    }

    /// Remember a verification. A full cache drops its expired entries,
    /// and if that frees nothing, everything.
    pub fn put(&self, token: &str, epoch: u64, verified: VerifiedToken, now: i64) {
        if self.capacity == 0 {
            return;
        }
        if let Ok(mut map) = self.map.lock() {
            if map.len() >= self.capacity {
                map.retain(|_, e| now <= e.token.exp);
                if map.len() >= self.capacity {
                    map.clear();
                }
            }
            map.insert(
                token.to_owned(),
                Entry {
                    token: verified,
                    epoch,
                },
            );
        }
    }

    /// (hits, misses) since start.
    pub fn counts(&self) -> (u64, u64) {
        (self.hits.load(Relaxed), self.misses.load(Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verified(exp: i64) -> VerifiedToken {
        VerifiedToken {
            sub: "u".into(),
            iat: 0,
            exp,
            token_use: pdp_core::token::TokenUse::Id,
            claims: serde_json::Map::new(),
        }
    }

    #[test]
    fn entries_never_outlive_exp_or_their_verifier() {
        let c = TokenCache::new(10);
        c.put("t", 1, verified(100), 50);
        assert!(c.get("t", 1, 100).is_some());
        assert!(c.get("t", 1, 101).is_none(), "past exp");
        c.put("t", 1, verified(100), 50);
        assert!(c.get("t", 2, 60).is_none(), "another verifier");
        assert!(c.get("t", 1, 60).is_none(), "a mismatch evicts the entry");
    }

    #[test]
    fn a_full_cache_makes_room_and_zero_capacity_stores_nothing() {
        let c = TokenCache::new(2);
        c.put("a", 1, verified(10), 0);
        c.put("b", 1, verified(1000), 0);
        c.put("c", 1, verified(1000), 20); // "a" expired at 20: dropped first
        assert!(c.get("b", 1, 20).is_some() && c.get("c", 1, 20).is_some());
        let off = TokenCache::new(0);
        off.put("a", 1, verified(10), 0);
        assert!(off.get("a", 1, 0).is_none());
    }
}
