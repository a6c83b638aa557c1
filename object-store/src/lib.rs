#![doc = include_str!("../README.md")]

pub mod conformance;
pub mod fault;
mod http;
mod key;
mod local;
mod s3;
pub mod testing;

pub use http::HttpStore;
pub use key::validate_key;
pub use local::LocalDirStore;
pub use s3::S3Store;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// A boxed, sendable future: what the methods of [`ObjectStore`] return, so
/// the trait stays object safe without a macro crate.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// When a write may happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// Always (overwrites whatever is there).
    None,
    /// Only if no object has the key (S3 `If-None-Match: *`).
    IfAbsent,
    /// Only if the object exists and its entity tag is exactly this one, as
    /// a [`get`](ObjectStore::get) or a [`put`](ObjectStore::put) of this
    /// store returned it (S3 `If-Match`).
    IfMatch(String),
}

/// What a conditional write did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Put {
    /// Written; the new object's entity tag (the one a `get` now returns).
    Written(String),
    /// The condition did not hold; nothing was written.
    PreconditionFailed,
}

/// The outcome of a (conditional) GET.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    /// The object still has the entity tag sent as `If-None-Match`.
    NotModified,
    /// The object, with its entity tag if the store gives one (every store
    /// of this crate but an HTTP server without `ETag` does).
    Found {
        /// The whole object.
        bytes: Vec<u8>,
        /// The quoted `ETag`, for a later `If-None-Match` or `If-Match`.
        etag: Option<String>,
    },
    /// No object has the key.
    Missing,
}

/// Why a store could not answer. Callers match on the variant, never on
/// the message.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Not reachable (connection refused or closed, timeout, DNS, ...): the
    /// request may or may not have been carried out.
    #[error("store unreachable: {0}")]
    Unreachable(String),
    /// Reachable, but it refused or failed the request.
    #[error("store refused {key}: {message}")]
    Refused {
        /// Object key (relative to the store's root).
        key: String,
        /// Status and error code from the store.
        message: String,
    },
    /// An object larger than the limit the caller gave.
    #[error("{key} is larger than {limit} bytes")]
    TooLarge {
        /// Object key.
        key: String,
        /// The limit.
        limit: u64,
    },
    /// A file of a local directory store could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A key (or prefix) that [`validate_key`] refuses: it could escape the
    /// store's root or name one of a local store's own files.
    #[error(
        "object key {0:?} is not allowed (segments of A-Z a-z 0-9 . _ -, no empty, . or .. segment, no .tmp-* or *.lock name)"
    )]
    BadKey(String),
    /// A write or a listing asked of a read-only store (HTTP); the store's
    /// description.
    #[error("{0} is read-only")]
    ReadOnly(String),
    /// A location that [`open`] cannot make sense of.
    #[error("store location {0}")]
    BadLocation(String),
}

/// An object store with the semantics a bundle publisher and its readers
/// need: whole objects that are never seen half written, a create-only
/// write and a compare-and-swap on the entity tag.
///
/// Keys are `/`-separated and relative to the store's root; every store
/// refuses the keys [`validate_key`] refuses, so a key means the same
/// object everywhere. Entity tags are quoted strings, as S3 and HTTP give
/// them; two different contents never share one.
pub trait ObjectStore: Send + Sync + std::fmt::Debug {
    /// The object at `key`, unless its entity tag is exactly
    /// `if_none_match` ([`Fetched::NotModified`]); an object over `limit`
    /// bytes is [`StoreError::TooLarge`], and never read whole.
    fn get<'a>(
        &'a self,
        key: &'a str,
        if_none_match: Option<&'a str>,
        limit: u64,
    ) -> BoxFuture<'a, Result<Fetched, StoreError>>;

    /// Write `bytes` at `key` if `condition` holds, atomically: readers see
    /// the old object or the new one, never a mix; of concurrent
    /// conditional writers of one key at most one succeeds per entity tag.
    fn put<'a>(
        &'a self,
        key: &'a str,
        bytes: &'a [u8],
        condition: Condition,
    ) -> BoxFuture<'a, Result<Put, StoreError>>;

    /// Every key under `prefix` (a folder, no trailing `/`; `""` is the
    /// whole store), at any depth, sorted, as full keys (`prefix/...`).
    /// Keys of a sibling folder that merely starts with the same characters
    /// are not included.
    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<String>, StoreError>>;

    /// Where this store is, for messages (holds no secret).
    fn describe(&self) -> String;
}

/// Settings for connecting to a store.
#[derive(Debug, Clone)]
pub struct Connect {
    /// Path-style S3 addressing (`host/bucket/key`: S3-compatible services,
    /// moto) instead of virtual-hosted style (`bucket.host/key`).
    pub s3_force_path_style: bool,
    /// The longest one call may take, retries included.
    pub timeout: Duration,
    /// S3 attempts per call, the first included (1 = no retry). Retries
    /// back off exponentially and only follow errors that may pass: 5xx,
    /// throttling, connection failures.
    pub max_attempts: u32,
    /// S3 endpoint URL; `None` takes the standard AWS settings
    /// (`AWS_ENDPOINT_URL`, profiles), else AWS itself.
    pub endpoint: Option<String>,
}

impl Default for Connect {
    /// Virtual-hosted style, 10 s per call, 4 attempts, the standard endpoint.
    fn default() -> Connect {
        Connect {
            s3_force_path_style: false,
            timeout: Duration::from_secs(10),
            max_attempts: 4,
            endpoint: None,
        }
    }
}

/// Open the store at `location`, named the same way everywhere: a
/// directory path, `s3://bucket[/prefix]`, or `http(s)://host[/path]`
/// (read-only: writes and listings are [`StoreError::ReadOnly`]).
///
/// The store is rooted at the prefix or path: keys given to it are relative
/// to that. Opening never creates or writes anything; S3 credentials and
/// region come from the standard AWS chain.
pub async fn open(location: &str, connect: &Connect) -> Result<Arc<dyn ObjectStore>, StoreError> {
    if let Some(rest) = location.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(StoreError::BadLocation(format!("{location}: no bucket")));
        }
        let store = S3Store::connect(bucket, prefix, connect).await?;
        Ok(Arc::new(store))
    } else if location.starts_with("http://") || location.starts_with("https://") {
        Ok(Arc::new(HttpStore::new(location, connect)?))
    } else if location.is_empty() || location.contains("://") {
        Err(StoreError::BadLocation(format!(
            "{location:?}: not a directory, s3://bucket[/prefix] or http(s)://host[/path]"
        )))
    } else {
        Ok(Arc::new(LocalDirStore::new(location)))
    }
}

/// `prefix/key`, or `key` under an empty prefix.
fn join(prefix: &str, key: &str) -> String {
    match (prefix.is_empty(), key.is_empty()) {
        (true, _) => key.to_owned(),
        (false, true) => prefix.to_owned(),
        (false, false) => format!("{prefix}/{key}"),
    }
}
