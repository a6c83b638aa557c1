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
//! it.
//!
//! `HEAD` is a **signed record**, and the only source of freshness a
//! decision point counts. Bundles are verified on their own, so a forged
//! `HEAD` could never grant access; but an unsigned "nothing changed" (a
//! 304, an old `HEAD` kept by a cache or a man in the middle) would keep a
//! host serving a suspended user as allowed for ever. So the control plane
//! signs `HEAD` with the realm's bundle key and re-signs it at least every
//! `resign_interval_seconds` even when nothing changed; a host counts its
//! bundle as fresh up to the newest `issued_at` it has verified, and a
//! staleness limit shorter than 4 intervals is refused.
//!
//! The object is two lines: the record's JSON (compact, one line), then a
//! detached compact JWS (EdDSA, `typ` `gatehouse-head+jws`) over exactly
//! the bytes of the first line:
//!
//! ```text
//! {"format":"gatehouse.head/v2","realm":"acme","revision":42,"snapshot":40,"issued_at":1765100000,"resign_interval_seconds":30}
//! eyJhbGciOiJFZERTQSIs...J9..c2lnbmF0dXJl
//! ```

use crate::bundle::Trust;
use crate::sign::{BundleSigner, HEAD_TYP, SignatureError};
use serde::{Deserialize, Serialize};

/// The only `HEAD` format this core reads and writes.
pub const HEAD_FORMAT: &str = "gatehouse.head/v2";

/// The unsigned `HEAD` of earlier releases: refused by decision points; a
/// control plane reads it once, to re-sign it.
pub const LEGACY_HEAD_FORMAT: &str = "gatehouse.head/v1";

/// Name of the pointer object under a realm's prefix.
pub const HEAD: &str = "HEAD";

/// How far ahead of a reader's clock a signed time may be and still count
/// as it is, seconds: clocks of control planes and decision points differ
/// a little; a time further ahead is a clock that jumped, and is never
/// carried forward (control plane) nor counted beyond this (decision point).
pub const MAX_CLOCK_SKEW_SECONDS: i64 = 60;

/// How often, by default, a control plane re-signs `HEAD`, seconds.
pub const DEFAULT_RESIGN_INTERVAL_SECONDS: u64 = 30;

/// The shortest staleness limit a decision point may use for a realm whose
/// `HEAD` is re-signed every `interval` seconds: 4 intervals, so a poll
/// or two lost to a slow store never makes a fresh realm stale.
pub fn min_staleness(interval: u64) -> u64 {
    interval.saturating_mul(4)
}

/// The pointer to a realm's newest bundles, and the signed statement that
/// it was the newest at `issued_at`.
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
    /// When the control plane signed this record, unix seconds: `revision`
    /// was the newest then. Never goes backwards from one record to the next.
    pub issued_at: i64,
    /// The control plane signs a new record at least this often, seconds.
    pub resign_interval_seconds: u64,
}

/// The `HEAD` format of earlier releases (unsigned).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LegacyHead {
    format: String,
    realm: String,
    revision: u64,
    snapshot: u64,
    updated_at: i64,
}

/// Why a `HEAD` object was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    /// Not the JSON of a [`Head`].
    #[error("HEAD is not a gatehouse.head/v2 record: {0}")]
    Malformed(String),
    /// Another format.
    #[error("HEAD format {0:?} is not {HEAD_FORMAT}")]
    Format(String),
    /// An unsigned `HEAD` of an earlier release.
    #[error("HEAD is an unsigned {LEGACY_HEAD_FORMAT} record; the control plane re-signs it")]
    Legacy,
    /// No signature line, and signatures are required.
    #[error("HEAD is not signed")]
    Unsigned,
    /// The signature was refused (unknown key, bad signature, a key not
    /// bound to the realm, a signature made for something else).
    #[error("HEAD signature: {0}")]
    Signature(#[from] SignatureError),
    /// Points at a snapshot newer than its own revision.
    #[error("HEAD names snapshot {snapshot} after its revision {revision}")]
    Inconsistent {
        /// `snapshot`.
        snapshot: u64,
        /// `revision`.
        revision: u64,
    },
    /// A re-signing interval of zero.
    #[error("HEAD names a re-signing interval of 0 s")]
    NoInterval,
}

impl HeadError {
    /// Stable name for logs, metrics and answers.
    pub fn kind(&self) -> &'static str {
        match self {
            HeadError::Malformed(_)
            | HeadError::Format(_)
            | HeadError::Inconsistent { .. }
            | HeadError::NoInterval => "bad_head",
            HeadError::Legacy | HeadError::Unsigned => "unsigned_head",
            HeadError::Signature(SignatureError::UnknownKid(_)) => "head_unknown_kid",
            HeadError::Signature(SignatureError::NotForRealm { .. }) => "head_key_not_for_realm",
            HeadError::Signature(_) => "head_bad_signature",
        }
    }
}

impl Head {
    /// The signed object: the record's JSON line, then its signature line.
    pub fn seal(&self, signer: &BundleSigner) -> Vec<u8> {
        let mut out = self.json_line();
        let jws = signer.sign_typed(&out, HEAD_TYP);
        out.push(b'\n');
        out.extend_from_slice(jws.as_bytes());
        out.push(b'\n');
        out
    }

    /// Read a `HEAD` object: its record must be signed by a key `trust`
    /// holds for the record's realm (in dev mode an unsigned record is
    /// read, and a signature is not checked), and be consistent.
    pub fn open(bytes: &[u8], trust: Trust<'_>) -> Result<Head, HeadError> {
        let (line, signature) = match bytes.iter().position(|b| *b == b'\n') {
            Some(i) => {
                let (line, rest) = bytes.split_at(i);
                (line, trim(rest))
            }
            None => (trim(bytes), &[][..]),
        };
        let head = Head::from_line(line)?;
        match trust {
            Trust::Dev => {}
            Trust::Keyring(ring) => {
                if signature.is_empty() {
                    return Err(HeadError::Unsigned);
                }
                let jws = std::str::from_utf8(signature)
                    .map_err(|_| SignatureError::Malformed("not UTF-8".into()))?;
                let kid = ring.verify_typed(line, jws, HEAD_TYP)?;
                ring.may_sign(&kid, &head.realm)?;
            }
        }
        Ok(head)
    }

    /// Read an unsigned `HEAD` of an earlier release (only a control plane
    /// does, to re-sign it): `issued_at` is its `updated_at`, and the
    /// interval the default.
    pub fn open_legacy(bytes: &[u8]) -> Result<Head, HeadError> {
        let old: LegacyHead =
            serde_json::from_slice(bytes).map_err(|e| HeadError::Malformed(e.to_string()))?;
        if old.format != LEGACY_HEAD_FORMAT {
            return Err(HeadError::Format(old.format));
        }
        Head {
            format: HEAD_FORMAT.into(),
            realm: old.realm,
            revision: old.revision,
            snapshot: old.snapshot,
            issued_at: old.updated_at,
            resign_interval_seconds: DEFAULT_RESIGN_INTERVAL_SECONDS,
        }
        .checked()
    }

    fn from_line(line: &[u8]) -> Result<Head, HeadError> {
        #[derive(Deserialize)]
        struct Format {
            format: String,
        }
        let format: Format =
            serde_json::from_slice(line).map_err(|e| HeadError::Malformed(e.to_string()))?;
        if format.format == LEGACY_HEAD_FORMAT {
            return Err(HeadError::Legacy);
        }
        if format.format != HEAD_FORMAT {
            return Err(HeadError::Format(format.format));
        }
        let head: Head =
            serde_json::from_slice(line).map_err(|e| HeadError::Malformed(e.to_string()))?;
        head.checked()
    }

    fn checked(self) -> Result<Head, HeadError> {
        if self.snapshot > self.revision {
            return Err(HeadError::Inconsistent {
                snapshot: self.snapshot,
                revision: self.revision,
            });
        }
        if self.resign_interval_seconds == 0 {
            return Err(HeadError::NoInterval);
        }
        Ok(self)
    }

    /// The record's JSON, one line (what the signature covers).
    fn json_line(&self) -> Vec<u8> {
        // A struct of strings and integers always serializes.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The record after this one: pointing at `revision` (`snapshot`),
    /// signed now. `issued_at` does not go backwards when this control
    /// plane's clock is a little behind the one that signed `self`; but a
    /// record dated more than [`MAX_CLOCK_SKEW_SECONDS`] ahead (a clock that
    /// jumped) is not carried forward: the new one says `now`, and decision
    /// points, which count no record older than the newest they saw, go
    /// stale until real time passes it (fail closed, not fresh until then).
    pub fn next(&self, revision: u64, snapshot: u64, now: i64, interval: u64) -> Head {
        let issued_at = if self.issued_at > now.saturating_add(MAX_CLOCK_SKEW_SECONDS) {
            now
        } else {
            now.max(self.issued_at)
        };
        Head {
            format: HEAD_FORMAT.into(),
            realm: self.realm.clone(),
            revision,
            snapshot,
            issued_at,
            resign_interval_seconds: interval,
        }
    }

    /// The first record of a realm.
    pub fn first(realm: &str, revision: u64, now: i64, interval: u64) -> Head {
        Head {
            format: HEAD_FORMAT.into(),
            realm: realm.into(),
            revision,
            snapshot: revision,
            issued_at: now,
            resign_interval_seconds: interval,
        }
    }
}

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    bytes.get(start..end).unwrap_or_default()
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
    use crate::sign::Keyring;

    fn head(snapshot: u64, revision: u64) -> Head {
        Head {
            format: HEAD_FORMAT.into(),
            realm: "acme".into(),
            revision,
            snapshot,
            issued_at: 1_000,
            resign_interval_seconds: 30,
        }
    }

    fn ring_for(signer: &BundleSigner, realm: &str) -> Keyring {
        let mut ring = Keyring::new();
        ring.add_for(signer.verifying_key(), realm);
        ring
    }

    #[test]
    fn a_sealed_head_opens_with_its_key_and_nothing_else() {
        let key = BundleSigner::from_seed(&[4; 32]);
        let ring = ring_for(&key, "acme");
        let h = head(10, 14);
        let sealed = h.seal(&key);
        assert_eq!(Head::open(&sealed, Trust::Keyring(&ring)), Ok(h.clone()));
        assert_eq!(Head::open(&sealed, Trust::Dev), Ok(h.clone()));
        // Another key, a key bound to another realm.
        let other = BundleSigner::from_seed(&[5; 32]);
        assert!(matches!(
            Head::open(&h.seal(&other), Trust::Keyring(&ring)),
            Err(HeadError::Signature(SignatureError::UnknownKid(_)))
        ));
        let globex = ring_for(&key, "globex");
        assert_eq!(
            Head::open(&sealed, Trust::Keyring(&globex)).map_err(|e| e.kind()),
            Err("head_key_not_for_realm")
        );
        // The record changed after signing: a newer issued_at, a revision.
        let text = String::from_utf8(sealed.clone()).unwrap();
        for (from, to) in [
            ("\"issued_at\":1000", "\"issued_at\":9000"),
            ("\"revision\":14", "\"revision\":15"),
        ] {
            let forged = text.replace(from, to);
            assert_ne!(forged, text);
            assert!(
                matches!(
                    Head::open(forged.as_bytes(), Trust::Keyring(&ring)),
                    Err(HeadError::Signature(SignatureError::Invalid(_)))
                ),
                "{from} -> {to}"
            );
        }
        // The record alone, with no signature line.
        let line = text.lines().next().unwrap();
        assert_eq!(
            Head::open(line.as_bytes(), Trust::Keyring(&ring)),
            Err(HeadError::Unsigned)
        );
        assert_eq!(Head::open(line.as_bytes(), Trust::Dev), Ok(h));
    }

    #[test]
    fn a_bundle_signature_is_no_head_signature() {
        let key = BundleSigner::from_seed(&[4; 32]);
        let ring = ring_for(&key, "acme");
        let line = serde_json::to_vec(&head(1, 1)).unwrap();
        let as_manifest = key.sign(&line);
        let mut object = line.clone();
        object.push(b'\n');
        object.extend_from_slice(as_manifest.as_bytes());
        assert!(matches!(
            Head::open(&object, Trust::Keyring(&ring)),
            Err(HeadError::Signature(SignatureError::Malformed(_)))
        ));
        // And the other way: a HEAD signature does not sign a manifest.
        let sealed = String::from_utf8(head(1, 1).seal(&key)).unwrap();
        let jws = sealed.lines().nth(1).unwrap();
        assert!(ring.verify(&line, jws).is_err());
    }

    #[test]
    fn nonsense_and_the_unsigned_legacy_format_are_refused() {
        let key = BundleSigner::from_seed(&[4; 32]);
        let ring = ring_for(&key, "acme");
        let open = |b: &[u8]| Head::open(b, Trust::Keyring(&ring));
        assert!(matches!(open(b"{"), Err(HeadError::Malformed(_))));
        assert!(matches!(open(b""), Err(HeadError::Malformed(_))));
        let mut other = head(1, 1);
        other.format = "x".into();
        assert!(matches!(open(&other.seal(&key)), Err(HeadError::Format(_))));
        assert!(matches!(
            open(&head(15, 14).seal(&key)),
            Err(HeadError::Inconsistent { .. })
        ));
        let mut zero = head(1, 1);
        zero.resign_interval_seconds = 0;
        assert_eq!(open(&zero.seal(&key)), Err(HeadError::NoInterval));
        let legacy = br#"{"format":"gatehouse.head/v1","realm":"acme","revision":3,"snapshot":1,"updated_at":77}"#;
        assert_eq!(open(legacy), Err(HeadError::Legacy));
        assert_eq!(Head::open(legacy, Trust::Dev), Err(HeadError::Legacy));
        let read = Head::open_legacy(legacy).unwrap();
        assert_eq!((read.revision, read.snapshot, read.issued_at), (3, 1, 77));
        assert_eq!(
            read.resign_interval_seconds,
            DEFAULT_RESIGN_INTERVAL_SECONDS
        );
    }

    #[test]
    fn issued_at_never_goes_backwards_but_a_jumped_clock_is_not_carried() {
        let h = head(1, 1);
        assert_eq!(h.next(2, 1, 990, 30).issued_at, 1_000);
        assert_eq!(h.next(2, 1, 2_000, 30).issued_at, 2_000);
        // Signed more than a minute ahead of this clock: not carried.
        assert_eq!(h.next(2, 1, 500, 30).issued_at, 500);
        assert_eq!(min_staleness(30), 120);
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
