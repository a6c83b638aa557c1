//! Brute-force throttling per realm and user (the typed name when it names
//! no one, so the answer says nothing about which usernames exist). Five
//! failures are free; each further failure locks the record for twice as
//! long as the last (1 s, 2 s, 4 s, ... at most 15 minutes). A login that
//! ends in tokens clears the record; a record with no failure for 15
//! minutes is forgotten.

use serde::{Deserialize, Serialize};

/// Failures before the first lock.
pub const FREE_FAILURES: u32 = 5;
/// Longest lock, seconds.
pub const MAX_LOCK: i64 = 15 * 60;
/// A record this long without a failure is forgotten.
pub const FORGET_AFTER: i64 = 15 * 60;

/// One username's record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Throttle {
    /// Consecutive failures.
    pub failures: u32,
    /// Last failure, unix seconds.
    pub last_failure: i64,
    /// No attempt is checked before this time.
    pub locked_until: i64,
}

impl Throttle {
    /// Seconds to wait before an attempt at `now` is considered, if any.
    pub fn retry_after(&self, now: i64) -> Option<i64> {
        (now < self.locked_until).then(|| self.locked_until - now)
    }

    /// The record after a failure at `now`.
    pub fn failed(self, now: i64) -> Throttle {
        let failures = if now - self.last_failure > FORGET_AFTER {
            1
        } else {
            self.failures.saturating_add(1)
        };
        let locked_until = if failures > FREE_FAILURES {
            let exp = (failures - FREE_FAILURES - 1).min(20);
            now + (1_i64 << exp).min(MAX_LOCK)
        } else {
            0
        };
        Throttle {
            failures,
            last_failure: now,
            locked_until,
        }
    }
}

impl Throttle {
    /// The record with one failure fewer (a failure counted ahead of a
    /// check that then passed), its lock as that many failures set it.
    pub fn undo_one(self) -> Throttle {
        let failures = self.failures.saturating_sub(1);
        let locked_until = if failures > FREE_FAILURES {
            let exp = (failures - FREE_FAILURES - 1).min(20);
            (self.last_failure + (1_i64 << exp).min(MAX_LOCK)).min(self.locked_until)
        } else {
            0
        };
        Throttle {
            failures,
            last_failure: self.last_failure,
            locked_until,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_grow_and_are_forgotten() {
        let mut t = Throttle::default();
        let now = 1_800_000_000;
        for _ in 0..FREE_FAILURES {
            t = t.failed(now);
            assert_eq!(t.retry_after(now), None);
        }
        t = t.failed(now);
        assert_eq!(t.retry_after(now), Some(1));
        t = t.failed(now + 1);
        assert_eq!(t.retry_after(now + 1), Some(2));
        for _ in 0..30 {
            t = t.failed(now + 10);
        }
        assert_eq!(t.retry_after(now + 10), Some(MAX_LOCK));
        let later = now + 10 + FORGET_AFTER + 1;
        assert_eq!(t.retry_after(later), None);
        assert_eq!(t.failed(later).failures, 1);
    }

    #[test]
    fn undoing_a_failure_takes_back_its_lock() {
        let now = 1_800_000_000;
        let mut t = Throttle::default();
        for _ in 0..FREE_FAILURES {
            t = t.failed(now);
        }
        let locked = t.failed(now);
        assert_eq!(locked.retry_after(now), Some(1));
        assert_eq!(locked.undo_one().retry_after(now), None);
        assert_eq!(locked.undo_one().failures, FREE_FAILURES);
        let twice = locked.failed(now);
        assert_eq!(twice.retry_after(now), Some(2));
        assert_eq!(twice.undo_one().retry_after(now), Some(1));
        assert_eq!(Throttle::default().undo_one(), Throttle::default());
    }
}
