//! The last known good bundles of each remote realm, kept on disk so that a
//! host restarted while its store is down serves what it served before.
//!
//! Per realm a directory holds the signed bundles exactly as fetched (the
//! newest snapshot and the deltas applied on it) and `chain.json`, which
//! lists them in order. Every file is written to a temporary name, synced,
//! and renamed; `chain.json` is replaced last, so a crash at any point
//! leaves the previous chain whole. At boot the chain is verified again,
//! like any bundle, before it is served.
//!
//! Beside the chain: `HEAD`, the newest signed `HEAD` record verified (a
//! restarted host counts freshness from it, verified again, and from
//! nothing else), and `high_water`, the highest revision installed or
//! named by a verified `HEAD` (a store that offers less after a restart is
//! refused, even when the chain itself was lost).

use pdp_core::BundleKind;
use serde::{Deserialize, Serialize};
use std::io::Write as _;
use std::path::{Path, PathBuf};

const CHAIN: &str = "chain.json";
const HEAD: &str = "HEAD";
const HIGH_WATER: &str = "high_water";

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Chain {
    /// File of the snapshot.
    snapshot: String,
    /// Files of the deltas on it, in order.
    deltas: Vec<String>,
}

/// The state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    /// Use `root` (created when first written).
    pub fn new(root: impl Into<PathBuf>) -> StateDir {
        StateDir { root: root.into() }
    }

    fn realm_dir(&self, realm: &str) -> PathBuf {
        // Realm names come from verified bundles and the configuration, but
        // never let one escape the state directory.
        let safe: String = realm
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self.root.join(format!("realm-{safe}"))
    }

    /// Record a bundle that was just installed: a snapshot starts a new
    /// chain (older files are removed), a delta extends the current one.
    pub fn record(
        &self,
        realm: &str,
        kind: BundleKind,
        revision: u64,
        bytes: &[u8],
    ) -> std::io::Result<()> {
        let dir = self.realm_dir(realm);
        std::fs::create_dir_all(&dir)?;
        let (name, chain) = match kind {
            BundleKind::Snapshot => {
                let name = format!("snapshot-{revision}.bundle");
                (
                    name.clone(),
                    Chain {
                        snapshot: name,
                        deltas: Vec::new(),
                    },
                )
            }
            BundleKind::Delta => {
                let mut chain = read_chain(&dir)?
                    .ok_or_else(|| std::io::Error::other("a delta without a recorded snapshot"))?;
                let name = format!("delta-{revision}.bundle");
                chain.deltas.push(name.clone());
                (name, chain)
            }
        };
        write_atomic(&dir, &name, bytes)?;
        let json = serde_json::to_vec_pretty(&chain).map_err(std::io::Error::other)?;
        write_atomic(&dir, CHAIN, &json)?;
        self.raise_high_water(realm, revision)?;
        if kind == BundleKind::Snapshot {
            for entry in std::fs::read_dir(&dir)?.flatten() {
                let file = entry.file_name();
                let Some(file) = file.to_str() else { continue };
                if ![CHAIN, HEAD, HIGH_WATER, name.as_str()].contains(&file) {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        Ok(())
    }

    /// Record the newest signed `HEAD` record verified, exactly as read
    /// (it is verified again at boot), and the revision it names as seen.
    pub fn record_head(&self, realm: &str, revision: u64, bytes: &[u8]) -> std::io::Result<()> {
        let dir = self.realm_dir(realm);
        std::fs::create_dir_all(&dir)?;
        self.raise_high_water(realm, revision)?;
        write_atomic(&dir, HEAD, bytes)
    }

    /// The `HEAD` record last recorded (`None`: none).
    pub fn head(&self, realm: &str) -> std::io::Result<Option<Vec<u8>>> {
        match std::fs::read(self.realm_dir(realm).join(HEAD)) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The highest revision seen for `realm`: 0 when none was recorded (no
    /// file). A file that cannot be read, or does not hold a revision, is
    /// an error, never 0: that would quietly start rollback protection over.
    pub fn high_water(&self, realm: &str) -> std::io::Result<u64> {
        let file = self.realm_dir(realm).join(HIGH_WATER);
        let text = match std::fs::read_to_string(&file) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        text.trim().parse().map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {text:?} is not a revision: {e}", file.display()),
            )
        })
    }

    fn raise_high_water(&self, realm: &str, revision: u64) -> std::io::Result<()> {
        if revision <= self.high_water(realm)? {
            return Ok(());
        }
        write_atomic(
            &self.realm_dir(realm),
            HIGH_WATER,
            revision.to_string().as_bytes(),
        )
    }

    /// The recorded chain of `realm`, oldest first (`None`: nothing recorded).
    pub fn restore(&self, realm: &str) -> std::io::Result<Option<Vec<Vec<u8>>>> {
        let dir = self.realm_dir(realm);
        let Some(chain) = read_chain(&dir)? else {
            return Ok(None);
        };
        let mut out = Vec::with_capacity(1 + chain.deltas.len());
        for name in std::iter::once(&chain.snapshot).chain(&chain.deltas) {
            if name.contains('/') || name.contains("..") {
                return Err(std::io::Error::other(format!("{CHAIN} names {name:?}")));
            }
            out.push(std::fs::read(dir.join(name))?);
        }
        Ok(Some(out))
    }
}

fn read_chain(dir: &Path) -> std::io::Result<Option<Chain>> {
    match std::fs::read(dir.join(CHAIN)) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| std::io::Error::other(format!("{CHAIN}: {e}"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, dir.join(name))?;
    // The rename itself is durable only once the directory is synced.
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chain_restarts_at_each_snapshot() {
        let root = std::env::temp_dir().join(format!("gh-lkg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let s = StateDir::new(&root);
        assert!(s.restore("acme").unwrap().is_none());
        assert!(s.record("acme", BundleKind::Delta, 2, b"d2").is_err());
        s.record("acme", BundleKind::Snapshot, 1, b"s1").unwrap();
        s.record("acme", BundleKind::Delta, 2, b"d2").unwrap();
        s.record("acme", BundleKind::Delta, 3, b"d3").unwrap();
        assert_eq!(
            s.restore("acme").unwrap().unwrap(),
            [b"s1".to_vec(), b"d2".to_vec(), b"d3".to_vec()]
        );
        s.record("acme", BundleKind::Snapshot, 4, b"s4").unwrap();
        assert_eq!(s.restore("acme").unwrap().unwrap(), [b"s4".to_vec()]);
        let files = std::fs::read_dir(s.realm_dir("acme")).unwrap().count();
        assert_eq!(
            files, 3,
            "old chain files are removed (chain, snapshot, high_water stay)"
        );
        assert_eq!(s.high_water("acme").unwrap(), 4);
        assert!(s.head("acme").unwrap().is_none());
        s.record_head("acme", 6, b"head-6").unwrap();
        assert_eq!(s.head("acme").unwrap().unwrap(), b"head-6");
        assert_eq!(s.high_water("acme").unwrap(), 6);
        // A lower revision never lowers the mark; a new snapshot keeps HEAD.
        s.record_head("acme", 5, b"head-5").unwrap();
        assert_eq!(s.high_water("acme").unwrap(), 6);
        s.record("acme", BundleKind::Snapshot, 6, b"s6").unwrap();
        assert_eq!(s.head("acme").unwrap().unwrap(), b"head-5");
        assert_eq!(s.high_water("other").unwrap(), 0);
        assert!(s.restore("other").unwrap().is_none());
        assert!(s.realm_dir("../x").starts_with(&root));
    }
}
