//! Where published bundles go: an object store with S3's semantics that
//! matter here — whole-object writes that are never seen half done, a
//! create-only write, and a compare-and-swap on an entity tag, which is
//! what lets two control planes share one `HEAD` without losing updates.
//!
//! [`LocalDirStore`] is the embedded default: a directory, each object a
//! file written to a temporary name, flushed, and renamed into place.

use crate::error::{Error, Result};
use sha2::{Digest, Sha256};
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

/// When a write may happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// Always (overwrites).
    None,
    /// Only if no object has the key (S3 `If-None-Match: *`).
    IfAbsent,
    /// Only if the object's current entity tag is this one (S3 `If-Match`).
    IfMatch(String),
}

/// What a conditional write did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Put {
    /// Written; the new object's entity tag.
    Written(String),
    /// The condition did not hold; nothing was written.
    PreconditionFailed,
}

/// An object and its entity tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    /// The bytes.
    pub bytes: Vec<u8>,
    /// Changes whenever the bytes do.
    pub etag: String,
}

/// A key-value store of whole objects. Keys are `/`-separated paths.
pub trait ObjectStore: Send + Sync {
    /// The object at `key`, if any.
    fn get(&self, key: &str) -> Result<Option<Object>>;
    /// Write `bytes` at `key` if `condition` holds, atomically: readers
    /// see the old object or the new one, never a mix.
    fn put(&self, key: &str, bytes: &[u8], condition: Condition) -> Result<Put>;
    /// Keys under `prefix` (a folder, without a trailing `/`), sorted.
    fn list(&self, prefix: &str) -> Result<Vec<String>>;
    /// Where this store is, for messages.
    fn describe(&self) -> String;
}

/// The entity tag of some bytes: their sha256, hex.
pub fn etag_of(bytes: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(&Sha256::digest(bytes))
}

/// A local directory as an object store.
#[derive(Debug, Clone)]
pub struct LocalDirStore {
    root: PathBuf,
}

impl LocalDirStore {
    /// A store rooted at `root` (created if missing).
    pub fn open(root: impl Into<PathBuf>) -> Result<LocalDirStore> {
        let root = root.into();
        fs::create_dir_all(&root).map_err(|e| io_err(&root, &e))?;
        Ok(LocalDirStore { root })
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file of `key`; keys that would leave the root are refused.
    fn path(&self, key: &str) -> Result<PathBuf> {
        let mut path = self.root.clone();
        let mut any = false;
        for seg in key.split('/') {
            let ok = !seg.is_empty()
                && seg != "."
                && seg != ".."
                && !seg.starts_with(".tmp-")
                && !seg.ends_with(".lock")
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
            if !ok {
                return Err(Error::BadRequest(format!(
                    "object key {key:?} is not allowed"
                )));
            }
            path.push(seg);
            any = true;
        }
        if !any {
            return Err(Error::BadRequest("empty object key".into()));
        }
        Ok(path)
    }
}

fn io_err(path: &Path, e: &std::io::Error) -> Error {
    Error::Publish(format!("{}: {e}", path.display()))
}

/// Write `bytes` to a fresh temporary file next to `path`, flushed to disk.
fn write_temp(path: &Path, bytes: &[u8]) -> Result<PathBuf> {
    let dir = path
        .parent()
        .ok_or_else(|| Error::Internal("object without a folder".into()))?;
    fs::create_dir_all(dir).map_err(|e| io_err(dir, &e))?;
    let name = format!(
        ".tmp-{}",
        data_encoding::HEXLOWER.encode(&crate::db::random::<8>()?)
    );
    let tmp = dir.join(name);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(|e| io_err(&tmp, &e))?;
    let written = f.write_all(bytes).and_then(|()| f.sync_all());
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(io_err(&tmp, &e));
    }
    Ok(tmp)
}

/// Make a rename or link in `path`'s folder durable.
fn sync_dir(path: &Path) -> Result<()> {
    if let Some(dir) = path.parent() {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_err(dir, &e))?;
    }
    Ok(())
}

fn read_opt(path: &Path) -> Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(path, &e)),
    }
}

impl ObjectStore for LocalDirStore {
    fn get(&self, key: &str) -> Result<Option<Object>> {
        let path = self.path(key)?;
        Ok(read_opt(&path)?.map(|bytes| Object {
            etag: etag_of(&bytes),
            bytes,
        }))
    }

    fn put(&self, key: &str, bytes: &[u8], condition: Condition) -> Result<Put> {
        let path = self.path(key)?;
        let tmp = write_temp(&path, bytes)?;
        let etag = etag_of(bytes);
        let outcome = match condition {
            Condition::None => fs::rename(&tmp, &path)
                .map(|()| Put::Written(etag))
                .map_err(|e| io_err(&path, &e)),
            // A hard link fails when the name exists: create-only, atomically,
            // even between processes.
            Condition::IfAbsent => {
                let linked = match fs::hard_link(&tmp, &path) {
                    Ok(()) => Ok(Put::Written(etag)),
                    Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(Put::PreconditionFailed),
                    Err(e) => Err(io_err(&path, &e)),
                };
                let _ = fs::remove_file(&tmp);
                linked
            }
            // Compare and swap under an exclusive lock on a companion file:
            // every writer of this key takes it, so nothing changes between
            // the comparison and the rename.
            Condition::IfMatch(expected) => {
                let lock_path = path.with_file_name(format!(
                    "{}.lock",
                    path.file_name()
                        .and_then(|n| n.to_str())
                        .unwrap_or("object")
                ));
                let swapped = (|| {
                    let lock = OpenOptions::new()
                        .write(true)
                        .create(true)
                        .truncate(false)
                        .open(&lock_path)
                        .map_err(|e| io_err(&lock_path, &e))?;
                    lock.lock().map_err(|e| io_err(&lock_path, &e))?;
                    let current = read_opt(&path)?.map(|b| etag_of(&b));
                    if current.as_deref() != Some(expected.as_str()) {
                        return Ok(Put::PreconditionFailed);
                    }
                    fs::rename(&tmp, &path).map_err(|e| io_err(&path, &e))?;
                    Ok(Put::Written(etag))
                })();
                if !matches!(swapped, Ok(Put::Written(_))) {
                    let _ = fs::remove_file(&tmp);
                }
                swapped
            }
        };
        let outcome = outcome.inspect_err(|_| {
            let _ = fs::remove_file(&tmp);
        })?;
        sync_dir(&path)?;
        Ok(outcome)
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let dir = self.path(prefix)?;
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(&dir, &e)),
        };
        let mut keys = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| io_err(&dir, &e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(".tmp-") || name.ends_with(".lock") {
                continue;
            }
            if entry.file_type().map(|t| t.is_file()).unwrap_or(false) {
                keys.push(format!("{prefix}/{name}"));
            }
        }
        keys.sort();
        Ok(keys)
    }

    fn describe(&self) -> String {
        self.root.display().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditional_writes() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalDirStore::open(dir.path()).unwrap();
        assert_eq!(s.get("a/HEAD").unwrap(), None);
        let Put::Written(e1) = s.put("a/HEAD", b"one", Condition::IfAbsent).unwrap() else {
            panic!("first create-only write must succeed")
        };
        assert_eq!(
            s.put("a/HEAD", b"two", Condition::IfAbsent).unwrap(),
            Put::PreconditionFailed
        );
        assert_eq!(
            s.put("a/HEAD", b"two", Condition::IfMatch("nope".into()))
                .unwrap(),
            Put::PreconditionFailed
        );
        assert_eq!(s.get("a/HEAD").unwrap().unwrap().bytes, b"one");
        assert!(matches!(
            s.put("a/HEAD", b"two", Condition::IfMatch(e1.clone()))
                .unwrap(),
            Put::Written(_)
        ));
        // The old tag no longer matches.
        assert_eq!(
            s.put("a/HEAD", b"three", Condition::IfMatch(e1)).unwrap(),
            Put::PreconditionFailed
        );
        assert_eq!(s.get("a/HEAD").unwrap().unwrap().bytes, b"two");
        s.put("a/deltas/2.tar.gz", b"d", Condition::None).unwrap();
        assert_eq!(s.list("a/deltas").unwrap(), vec!["a/deltas/2.tar.gz"]);
        // No temporary files left behind.
        let names: Vec<_> = fs::read_dir(dir.path().join("a"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".tmp-"))
            .collect();
        assert!(names.is_empty(), "{names:?}");
    }

    #[test]
    fn keys_cannot_escape() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalDirStore::open(dir.path()).unwrap();
        for key in [
            "", "../x", "a//b", "a/./b", "/abs", "a/b.lock", "a/.tmp-1", "a\\b",
        ] {
            assert!(
                matches!(s.put(key, b"x", Condition::None), Err(Error::BadRequest(_))),
                "{key:?}"
            );
        }
    }
}
