//! A local directory as an object store: each object a file, written to a
//! temporary name, flushed, and renamed (or linked) into place.

use crate::key::{validate_key, validate_prefix};
use crate::{BoxFuture, Condition, Fetched, ObjectStore, Put, StoreError, join};
use sha2::{Digest, Sha256};
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};

/// A directory as an object store, safe to share between processes: writes
/// are atomic (temporary file, `fsync`, rename, `fsync` of the folder), a
/// create-only write is a hard link (which fails if the name exists), and a
/// compare-and-swap holds an exclusive lock on the key's companion
/// `<name>.lock` file, which every overwriting writer of the key takes.
///
/// Entity tags are `"<sha256 hex of the bytes>"`, quoted like S3's. The
/// directory is created by the first write: opening or reading a store
/// that does not exist yet writes nothing (reads are `Missing`, listings
/// empty).
#[derive(Debug, Clone)]
pub struct LocalDirStore {
    root: PathBuf,
}

impl LocalDirStore {
    /// A store rooted at `root`; nothing is created until the first write.
    pub fn new(root: impl Into<PathBuf>) -> LocalDirStore {
        LocalDirStore { root: root.into() }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The entity tag this store gives an object of these bytes.
    pub fn etag(bytes: &[u8]) -> String {
        format!(
            "\"{}\"",
            data_encoding::HEXLOWER.encode(&Sha256::digest(bytes))
        )
    }

    /// The file of `key`, once [`validate_key`] accepts it.
    fn path(&self, key: &str) -> Result<PathBuf, StoreError> {
        validate_key(key)?;
        Ok(self.root.join(key))
    }
}

fn io_err(path: &Path, source: std::io::Error) -> StoreError {
    StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Run blocking file work without stalling other tasks: in place on a
/// multi-threaded runtime (its other tasks move to another worker; no hop
/// to the blocking pool and back, which costs more than a small file
/// write), on the blocking pool otherwise.
async fn blocking<T: Send + 'static>(
    path: &Path,
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    use tokio::runtime::{Handle, RuntimeFlavor};
    if Handle::try_current().is_ok_and(|h| h.runtime_flavor() == RuntimeFlavor::MultiThread) {
        return tokio::task::block_in_place(f);
    }
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(io_err(path, std::io::Error::other(e))))
}

/// No file there: not found, or a folder is in the way, or a file is where
/// a folder of the key should be.
fn absent(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::NotFound | ErrorKind::NotADirectory | ErrorKind::IsADirectory
    )
}

/// The file's bytes, if it is a file; at most `limit` of them.
fn read_limited(path: &Path, key: &str, limit: u64) -> Result<Option<Vec<u8>>, StoreError> {
    let too_large = || StoreError::TooLarge {
        key: key.to_owned(),
        limit,
    };
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if absent(&e) => return Ok(None),
        Err(e) => return Err(io_err(path, e)),
    };
    let meta = file.metadata().map_err(|e| io_err(path, e))?;
    if !meta.is_file() {
        return Ok(None);
    }
    if meta.len() > limit {
        return Err(too_large());
    }
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| io_err(path, e))?;
    if bytes.len() as u64 > limit {
        return Err(too_large());
    }
    Ok(Some(bytes))
}

/// The current entity tag at `path`, if there is an object.
fn current_etag(path: &Path) -> Result<Option<String>, StoreError> {
    match fs::read(path) {
        Ok(b) => Ok(Some(LocalDirStore::etag(&b))),
        Err(e) if absent(&e) => Ok(None),
        Err(e) => Err(io_err(path, e)),
    }
}

/// Write `bytes` to a fresh temporary file in `dir`, flushed to disk.
fn write_temp(dir: &Path, bytes: &[u8]) -> Result<PathBuf, StoreError> {
    let mut random = [0u8; 8];
    getrandom::getrandom(&mut random)
        .map_err(|e| io_err(dir, std::io::Error::other(e.to_string())))?;
    let tmp = dir.join(format!(".tmp-{}", data_encoding::HEXLOWER.encode(&random)));
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(|e| io_err(&tmp, e))?;
    if let Err(e) = f.write_all(bytes).and_then(|()| f.sync_all()) {
        let _ = fs::remove_file(&tmp);
        return Err(io_err(&tmp, e));
    }
    Ok(tmp)
}

/// Make a rename or link in `dir` durable.
fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err(dir, e))
}

/// Hold the exclusive lock of `path`'s companion file while `f` runs.
fn locked<T>(path: &Path, f: impl FnOnce() -> Result<T, StoreError>) -> Result<T, StoreError> {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(".lock");
    let lock_path = path.with_file_name(name);
    let lock = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .map_err(|e| io_err(&lock_path, e))?;
    lock.lock().map_err(|e| io_err(&lock_path, e))?;
    // Released when `lock` is dropped, after `f`.
    f()
}

fn put_blocking(path: &Path, bytes: &[u8], condition: Condition) -> Result<Put, StoreError> {
    let dir = path
        .parent()
        .ok_or_else(|| io_err(path, ErrorKind::InvalidInput.into()))?;
    if !dir.is_dir() {
        // New folders (the root too, on the first write) must survive a
        // crash like the object in them: sync each one's entry in the
        // folder above it.
        let new: Vec<&Path> = dir
            .ancestors()
            .take_while(|a| !a.as_os_str().is_empty() && !a.exists())
            .collect();
        fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
        for above in new.iter().filter_map(|f| f.parent()) {
            if !above.as_os_str().is_empty() {
                sync_dir(above)?;
            }
        }
    }
    let tmp = write_temp(dir, bytes)?;
    let etag = LocalDirStore::etag(bytes);
    let rename = || {
        fs::rename(&tmp, path)
            .map(|()| Put::Written(etag.clone()))
            .map_err(|e| io_err(path, e))
    };
    let outcome = match condition {
        Condition::None => locked(path, rename),
        // A hard link fails when the name exists: create-only, atomically,
        // even between processes.
        Condition::IfAbsent => match fs::hard_link(&tmp, path) {
            Ok(()) => Ok(Put::Written(etag.clone())),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(Put::PreconditionFailed),
            Err(e) => Err(io_err(path, e)),
        },
        // Every overwriting writer of the key holds the lock: nothing changes
        // between the comparison and the rename.
        Condition::IfMatch(expected) => locked(path, || {
            if current_etag(path)?.as_deref() == Some(expected.as_str()) {
                rename()
            } else {
                Ok(Put::PreconditionFailed)
            }
        }),
    };
    // Still there unless renamed into place.
    let _ = fs::remove_file(&tmp);
    let outcome = outcome?;
    if matches!(outcome, Put::Written(_)) {
        sync_dir(dir)?;
    }
    Ok(outcome)
}

/// Every object file under `dir` (whose key is `key`), recursively; files
/// that are not objects (temporaries, locks, names no key can have) are
/// skipped, and so are symbolic links to folders.
fn walk(dir: &Path, key: &str, keys: &mut Vec<String>) -> Result<(), StoreError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if absent(&e) => return Ok(()),
        Err(e) => return Err(io_err(dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| io_err(dir, e))?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if validate_key(&name).is_err() {
            continue;
        }
        let path = entry.path();
        let child = join(key, &name);
        let kind = entry.file_type().map_err(|e| io_err(&path, e))?;
        if kind.is_dir() {
            walk(&path, &child, keys)?;
        } else if fs::metadata(&path).is_ok_and(|m| m.is_file()) {
            keys.push(child);
        }
    }
    Ok(())
}

impl ObjectStore for LocalDirStore {
    fn get<'a>(
        &'a self,
        key: &'a str,
        if_none_match: Option<&'a str>,
        limit: u64,
    ) -> BoxFuture<'a, Result<Fetched, StoreError>> {
        Box::pin(async move {
            let path = self.path(key)?;
            let owned = key.to_owned();
            let read = blocking(&self.root, {
                let path = path.clone();
                move || read_limited(&path, &owned, limit)
            })
            .await?;
            let Some(bytes) = read else {
                return Ok(Fetched::Missing);
            };
            // Writers replace objects by rename, so the content hash is the tag.
            let etag = LocalDirStore::etag(&bytes);
            if if_none_match == Some(etag.as_str()) {
                return Ok(Fetched::NotModified);
            }
            Ok(Fetched::Found {
                bytes,
                etag: Some(etag),
            })
        })
    }

    fn put<'a>(
        &'a self,
        key: &'a str,
        bytes: &'a [u8],
        condition: Condition,
    ) -> BoxFuture<'a, Result<Put, StoreError>> {
        Box::pin(async move {
            let path = self.path(key)?;
            let bytes = bytes.to_vec();
            blocking(&self.root, move || put_blocking(&path, &bytes, condition)).await
        })
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<String>, StoreError>> {
        Box::pin(async move {
            validate_prefix(prefix)?;
            let dir = self.root.join(prefix);
            let prefix = prefix.to_owned();
            blocking(&self.root, move || {
                let mut keys = Vec::new();
                walk(&dir, &prefix, &mut keys)?;
                keys.sort();
                Ok(keys)
            })
            .await
        })
    }

    fn describe(&self) -> String {
        self.root.display().to_string()
    }
}
