//! Object stores that bundles are polled from: S3, an HTTP(S) server, or a
//! local directory, all with the layout of [`pdp_core::layout`].
//!
//! A store only fetches bytes; what they mean (and whether to trust them) is
//! decided by [`crate::sync`].

use aws_sdk_s3::error::{ProvideErrorMetadata as _, SdkError};
use pdp_core::layout::RealmKeys;
use std::path::{Path, PathBuf};

/// The outcome of a conditional GET.
#[derive(Debug, PartialEq, Eq)]
pub enum Fetched {
    /// The object still has the entity tag we sent.
    NotModified,
    /// The object, with its entity tag if the store gives one.
    Found {
        /// Body.
        bytes: Vec<u8>,
        /// `ETag`, for the next `If-None-Match`.
        etag: Option<String>,
    },
    /// No such object.
    Missing,
}

/// Why a store could not answer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Not reachable (connection refused, timeout, DNS, ...).
    #[error("store unreachable: {0}")]
    Unreachable(String),
    /// Reachable, but it refused or failed the request.
    #[error("store refused {key}: {message}")]
    Refused {
        /// Object key.
        key: String,
        /// Status and message from the store.
        message: String,
    },
    /// An object larger than the limit.
    #[error("{key} is larger than {limit} bytes")]
    TooLarge {
        /// Object key.
        key: String,
        /// The limit.
        limit: u64,
    },
    /// A local store file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Where a realm's bundles are polled from, as configured: `s3://bucket/prefix/realm`,
/// `http(s)://host/path/realm`, or a local directory holding `HEAD`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The URL or path as given (for logs and `/v1/status`; holds no secret).
    pub url: String,
    /// The realm: the last path segment.
    pub realm: String,
    kind: LocationKind,
    prefix: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum LocationKind {
    S3 { bucket: String },
    Http { base: String },
    Dir { root: PathBuf },
}

impl Location {
    /// Parse a source location. The last path segment names the realm.
    pub fn parse(url: &str) -> Result<Location, String> {
        let split = |path: &str| -> Result<(String, String), String> {
            let path = path.trim_matches('/');
            let (prefix, realm) = path.rsplit_once('/').unwrap_or(("", path));
            if realm.is_empty() {
                return Err(format!("{url}: the last path segment must name the realm"));
            }
            Ok((prefix.to_owned(), realm.to_owned()))
        };
        let (kind, prefix, realm) = if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, path) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(format!("{url}: no bucket"));
            }
            let (prefix, realm) = split(path)?;
            (
                LocationKind::S3 {
                    bucket: bucket.to_owned(),
                },
                prefix,
                realm,
            )
        } else if url.starts_with("http://") || url.starts_with("https://") {
            let (scheme, rest) = url.split_once("://").unwrap_or(("http", url));
            let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
            if host.is_empty() || host.contains('@') {
                // Never echo this URL: it may carry a password.
                return Err(format!(
                    "{scheme}:// source: give a host without credentials (bundles are signed; the server needs no secret in the URL)"
                ));
            }
            let (prefix, realm) = split(path)?;
            (
                LocationKind::Http {
                    base: format!("{scheme}://{host}"),
                },
                prefix,
                realm,
            )
        } else {
            let root = Path::new(url);
            let realm = root
                .file_name()
                .and_then(|n| n.to_str())
                .ok_or_else(|| format!("{url}: the last path segment must name the realm"))?;
            (
                LocationKind::Dir {
                    root: root.parent().unwrap_or(Path::new("/")).to_owned(),
                },
                String::new(),
                realm.to_owned(),
            )
        };
        Ok(Location {
            url: url.to_owned(),
            realm,
            kind,
            prefix,
        })
    }

    /// The object keys of this realm.
    pub fn keys(&self) -> RealmKeys {
        RealmKeys::new(&self.prefix, &self.realm)
    }
}

/// A connected store.
#[derive(Debug, Clone)]
pub enum Store {
    /// Amazon S3 or an S3-compatible service.
    S3 {
        /// SDK client (credentials, region and endpoint from the standard
        /// AWS settings: `AWS_REGION`, `AWS_ENDPOINT_URL`, profiles, roles).
        client: aws_sdk_s3::Client,
        /// Bucket.
        bucket: String,
    },
    /// Plain HTTP(S) GETs under a base URL.
    Http {
        /// Client.
        client: reqwest::Client,
        /// `scheme://host[:port]`.
        base: String,
    },
    /// A directory with the store layout (as the control plane's local
    /// object store writes it).
    Dir {
        /// The directory the keys are relative to.
        root: PathBuf,
    },
}

/// Settings for connecting to stores.
#[derive(Debug, Clone, Default)]
pub struct Connect {
    /// Path-style S3 addressing (S3-compatible services, moto).
    pub s3_force_path_style: bool,
    /// Per-request timeout.
    pub timeout: std::time::Duration,
}

impl Store {
    /// Connect to the store of `location`.
    pub async fn connect(location: &Location, connect: &Connect) -> Result<Store, StoreError> {
        Ok(match &location.kind {
            LocationKind::S3 { bucket } => {
                let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
                    .timeout_config(
                        aws_config::timeout::TimeoutConfig::builder()
                            .operation_timeout(connect.timeout)
                            .build(),
                    )
                    .load()
                    .await;
                let config = aws_sdk_s3::config::Builder::from(&shared)
                    .force_path_style(connect.s3_force_path_style)
                    .build();
                Store::S3 {
                    client: aws_sdk_s3::Client::from_conf(config),
                    bucket: bucket.clone(),
                }
            }
            LocationKind::Http { base } => Store::Http {
                // Polls are seconds apart: no idle connections kept.
                client: reqwest::Client::builder()
                    .timeout(connect.timeout)
                    .pool_max_idle_per_host(0)
                    .build()
                    .map_err(|e| StoreError::Unreachable(e.to_string()))?,
                base: base.clone(),
            },
            LocationKind::Dir { root } => Store::Dir { root: root.clone() },
        })
    }

    /// GET `key`, unless its entity tag is still `if_none_match`; refuse
    /// objects over `limit` bytes.
    pub async fn get(
        &self,
        key: &str,
        if_none_match: Option<&str>,
        limit: u64,
    ) -> Result<Fetched, StoreError> {
        match self {
            Store::S3 { client, bucket } => s3_get(client, bucket, key, if_none_match, limit).await,
            Store::Http { client, base } => {
                http_get(client, &format!("{base}/{key}"), key, if_none_match, limit).await
            }
            Store::Dir { root } => dir_get(root, key, if_none_match, limit).await,
        }
    }
}

async fn s3_get(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    if_none_match: Option<&str>,
    limit: u64,
) -> Result<Fetched, StoreError> {
    let sent = client
        .get_object()
        .bucket(bucket)
        .key(key)
        .set_if_none_match(if_none_match.map(str::to_owned))
        .send()
        .await;
    let out = match sent {
        Ok(out) => out,
        Err(SdkError::ServiceError(e)) => {
            let status = e.raw().status().as_u16();
            let err = e.err();
            if status == 304 {
                return Ok(Fetched::NotModified);
            }
            if status == 404 || err.is_no_such_key() {
                return Ok(Fetched::Missing);
            }
            return Err(StoreError::Refused {
                key: key.to_owned(),
                message: format!(
                    "{status} {}",
                    err.code().or(err.message()).unwrap_or("error")
                ),
            });
        }
        Err(e @ (SdkError::DispatchFailure(_) | SdkError::TimeoutError(_))) => {
            return Err(StoreError::Unreachable(format!(
                "{}",
                aws_sdk_s3::error::DisplayErrorContext(&e)
            )));
        }
        Err(e) => {
            return Err(StoreError::Refused {
                key: key.to_owned(),
                message: format!("{}", aws_sdk_s3::error::DisplayErrorContext(&e)),
            });
        }
    };
    let too_large = || StoreError::TooLarge {
        key: key.to_owned(),
        limit,
    };
    if out
        .content_length()
        .is_some_and(|n| u64::try_from(n).unwrap_or(u64::MAX) > limit)
    {
        return Err(too_large());
    }
    let etag = out.e_tag().map(str::to_owned);
    let mut body = out.body;
    let mut bytes = Vec::new();
    while let Some(chunk) = body
        .try_next()
        .await
        .map_err(|e| StoreError::Unreachable(e.to_string()))?
    {
        if (bytes.len() + chunk.len()) as u64 > limit {
            return Err(too_large());
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(Fetched::Found { bytes, etag })
}

async fn http_get(
    client: &reqwest::Client,
    url: &str,
    key: &str,
    if_none_match: Option<&str>,
    limit: u64,
) -> Result<Fetched, StoreError> {
    let mut req = client.get(url);
    if let Some(tag) = if_none_match {
        req = req.header(reqwest::header::IF_NONE_MATCH, tag);
    }
    let mut resp = req
        .send()
        .await
        .map_err(|e| StoreError::Unreachable(without_url(&e)))?;
    let status = resp.status();
    if status == reqwest::StatusCode::NOT_MODIFIED {
        return Ok(Fetched::NotModified);
    }
    if status == reqwest::StatusCode::NOT_FOUND {
        return Ok(Fetched::Missing);
    }
    if !status.is_success() {
        return Err(StoreError::Refused {
            key: key.to_owned(),
            message: status.to_string(),
        });
    }
    let too_large = || StoreError::TooLarge {
        key: key.to_owned(),
        limit,
    };
    if resp.content_length().is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let etag = resp
        .headers()
        .get(reqwest::header::ETAG)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut bytes = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| StoreError::Unreachable(without_url(&e)))?
    {
        if (bytes.len() + chunk.len()) as u64 > limit {
            return Err(too_large());
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(Fetched::Found { bytes, etag })
}

/// reqwest errors name the URL; the URL is configuration, but keep logs to
/// the cause.
fn without_url(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    if let Some(url) = e.url() {
        s = s.replace(url.as_str(), "<source>");
    }
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

async fn dir_get(
    root: &Path,
    key: &str,
    if_none_match: Option<&str>,
    limit: u64,
) -> Result<Fetched, StoreError> {
    if key.split('/').any(|seg| seg == ".." || seg.is_empty()) {
        return Err(StoreError::Refused {
            key: key.to_owned(),
            message: "not a plain key".into(),
        });
    }
    let path = root.join(key);
    let io = |source| StoreError::Io {
        path: path.clone(),
        source,
    };
    let meta = match tokio::fs::metadata(&path).await {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Fetched::Missing),
        Err(e) => return Err(io(e)),
    };
    if meta.len() > limit {
        return Err(StoreError::TooLarge {
            key: key.to_owned(),
            limit,
        });
    }
    let bytes = match tokio::fs::read(&path).await {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Fetched::Missing),
        Err(e) => return Err(io(e)),
    };
    // Writers replace objects by rename, so the content hash is the tag.
    let etag = format!("\"{}\"", pdp_core::manifest::sha256_hex(&bytes));
    if if_none_match == Some(etag.as_str()) {
        return Ok(Fetched::NotModified);
    }
    Ok(Fetched::Found {
        bytes,
        etag: Some(etag),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_name_their_realm() {
        let l = Location::parse("s3://bundles/prod/gatehouse/acme").unwrap();
        assert_eq!(l.realm, "acme");
        assert_eq!(l.keys().head(), "prod/gatehouse/acme/HEAD");
        let l = Location::parse("s3://bundles/acme/").unwrap();
        assert_eq!(
            (l.realm.as_str(), l.keys().head()),
            ("acme", "acme/HEAD".into())
        );
        let l = Location::parse("https://cdn.example/b/acme").unwrap();
        assert_eq!(l.keys().snapshot(2), "b/acme/snapshots/2.tar.gz");
        let l = Location::parse("/var/lib/store/acme").unwrap();
        assert_eq!(l.realm, "acme");
        assert!(Location::parse("s3://").is_err());
        assert!(Location::parse("s3://bucket").is_err());
        assert!(Location::parse("https://user:pw@host/acme").is_err());
    }
}
