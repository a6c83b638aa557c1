//! Where a realm's bundles live in an object store (S3, an HTTP server, a
//! local directory), and the `HEAD` pointer that says which is newest.
//!
//! ```text
//! <prefix>/<realm>/HEAD                    this module's [`Head`], JSON
//! <prefix>/<realm>/snapshots/<rev>.tar.gz  a snapshot bundle
//! <prefix>/<realm>/deltas/<rev>.tar.gz     a delta bundle, base = the revision before it
//! ```
//!
//! The control plane writes bundles first and advances `HEAD` last, with a
//! conditional write; decision points read `HEAD`, then the deltas since the
//! revision they hold, or the snapshot when they hold nothing or are behind
//! it. `HEAD` is not signed: it only says where to look. Every bundle it
//! points to is verified on its own, and a revision never goes backwards,
//! so a forged `HEAD` can at worst withhold updates (which the staleness
//! limit of a decision point turns into denials).

use serde::{Deserialize, Serialize};

/// The only `HEAD` format this core reads and writes.
pub const HEAD_FORMAT: &str = "gatehouse.head/v1";

/// Name of the pointer object under a realm's prefix.
pub const HEAD: &str = "HEAD";

/// The pointer to a realm's newest bundles.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Head {
    /// Always [`HEAD_FORMAT`].
    pub format: String,
    /// The realm.
    pub realm: String,
    /// The newest revision (of a snapshot or a delta).
    pub revision: u64,
    /// The newest snapshot's revision; every revision after it up to
    /// `revision` is a delta on the one before.
    pub snapshot: u64,
    /// When `HEAD` was written, unix seconds.
    pub updated_at: i64,
}

/// Why a `HEAD` object was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    /// Not the JSON of a [`Head`].
    #[error("HEAD is not a gatehouse.head/v1 document: {0}")]
    Malformed(String),
    /// Another format.
    #[error("HEAD format {0:?} is not {HEAD_FORMAT}")]
    Format(String),
    /// Points at a snapshot newer than its own revision.
    #[error("HEAD names snapshot {snapshot} after its revision {revision}")]
    Inconsistent {
        /// `snapshot`.
        snapshot: u64,
        /// `revision`.
        revision: u64,
    },
}

impl Head {
    /// Parse and check a `HEAD` object.
    pub fn parse(bytes: &[u8]) -> Result<Head, HeadError> {
        let head: Head =
            serde_json::from_slice(bytes).map_err(|e| HeadError::Malformed(e.to_string()))?;
        if head.format != HEAD_FORMAT {
            return Err(HeadError::Format(head.format));
        }
        if head.snapshot > head.revision {
            return Err(HeadError::Inconsistent {
                snapshot: head.snapshot,
                revision: head.revision,
            });
        }
        Ok(head)
    }

    /// The JSON written to the store.
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).unwrap_or_default();
        out.push(b'\n');
        out
    }
}

/// Object keys of one realm under a store prefix (`""` for none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RealmKeys {
    base: String,
}

impl RealmKeys {
    /// Keys of `realm` under `prefix` (leading and trailing `/` ignored).
    pub fn new(prefix: &str, realm: &str) -> RealmKeys {
        let prefix = prefix.trim_matches('/');
        let base = if prefix.is_empty() {
            realm.to_owned()
        } else {
            format!("{prefix}/{realm}")
        };
        RealmKeys { base }
    }

    /// The `HEAD` pointer.
    pub fn head(&self) -> String {
        format!("{}/{HEAD}", self.base)
    }

    /// The snapshot of `revision`.
    pub fn snapshot(&self, revision: u64) -> String {
        format!("{}/snapshots/{revision}.tar.gz", self.base)
    }

    /// The delta that produces `revision`.
    pub fn delta(&self, revision: u64) -> String {
        format!("{}/deltas/{revision}.tar.gz", self.base)
    }
}

/// The planner moved to [`crate::chain`], which also loads and folds the
/// chain; re-exported here for existing callers.
pub use crate::chain::Plan;

#[cfg(test)]
mod tests {
    use super::*;

    fn head(snapshot: u64, revision: u64) -> Head {
        Head {
            format: HEAD_FORMAT.into(),
            realm: "acme".into(),
            revision,
            snapshot,
            updated_at: 1,
        }
    }

    #[test]
    fn head_round_trips_and_refuses_nonsense() {
        let h = head(10, 14);
        assert_eq!(Head::parse(&h.to_json()), Ok(h));
        assert!(matches!(Head::parse(b"{"), Err(HeadError::Malformed(_))));
        let mut other = head(1, 1);
        other.format = "x".into();
        assert!(matches!(
            Head::parse(&other.to_json()),
            Err(HeadError::Format(_))
        ));
        assert!(matches!(
            Head::parse(&head(15, 14).to_json()),
            Err(HeadError::Inconsistent { .. })
        ));
    }

    #[test]
    fn keys() {
        let k = RealmKeys::new("/bundles/", "acme");
        assert_eq!(k.head(), "bundles/acme/HEAD");
        assert_eq!(k.snapshot(3), "bundles/acme/snapshots/3.tar.gz");
        assert_eq!(k.delta(4), "bundles/acme/deltas/4.tar.gz");
        assert_eq!(RealmKeys::new("", "acme").head(), "acme/HEAD");
    }
}
