//! Plain HTTP(S) GETs under a base URL (a CDN or a static file server in
//! front of a store), with entity tags. Read-only.

use crate::key::{validate_key, validate_prefix};
use crate::{BoxFuture, Condition, Connect, Fetched, ObjectStore, Put, StoreError, join};

/// An HTTP(S) server as a read-only object store: `get` is a GET of
/// `base/key` with `If-None-Match`; `put` and `list` are
/// [`StoreError::ReadOnly`]. Entity tags are the server's `ETag` headers,
/// as sent.
#[derive(Debug, Clone)]
pub struct HttpStore {
    client: reqwest::Client,
    /// `scheme://host[:port]`.
    origin: String,
    /// The path under which keys are, without surrounding `/`.
    prefix: String,
}

impl HttpStore {
    /// A store at `url` (`http(s)://host[:port][/path]`), keys relative to
    /// the path. A URL with credentials, a query or a path that is not a
    /// valid key prefix is refused, without echoing it (it may hold a
    /// secret). Sends no request.
    pub fn new(url: &str, connect: &Connect) -> Result<HttpStore, StoreError> {
        let Some((scheme, rest)) = url
            .split_once("://")
            .filter(|(s, _)| *s == "http" || *s == "https")
        else {
            return Err(StoreError::BadLocation("not an http(s):// URL".into()));
        };
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        if host.is_empty() || host.contains(['@', '?', '#']) {
            return Err(StoreError::BadLocation(format!(
                "{scheme}:// location: give a host without credentials (bundles are signed; the server needs no secret in the URL)"
            )));
        }
        let prefix = path.trim_matches('/');
        if validate_prefix(prefix).is_err() {
            return Err(StoreError::BadLocation(format!(
                "{scheme}://{host}/...: the path must be segments of A-Z a-z 0-9 . _ - (no query)"
            )));
        }
        // Polls are seconds apart: no idle connections kept.
        let client = reqwest::Client::builder()
            .timeout(connect.timeout)
            .pool_max_idle_per_host(0)
            .build()
            .map_err(|e| StoreError::Unreachable(e.to_string()))?;
        Ok(HttpStore {
            client,
            origin: format!("{scheme}://{host}"),
            prefix: prefix.to_owned(),
        })
    }
}

/// reqwest errors name the URL; keep messages to the cause.
fn without_url(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    if let Some(url) = e.url() {
        s = s.replace(url.as_str(), "<store>");
    }
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

impl ObjectStore for HttpStore {
    fn get<'a>(
        &'a self,
        key: &'a str,
        if_none_match: Option<&'a str>,
        limit: u64,
    ) -> BoxFuture<'a, Result<Fetched, StoreError>> {
        Box::pin(async move {
            validate_key(key)?;
            let url = format!("{}/{}", self.origin, join(&self.prefix, key));
            let mut request = self.client.get(url);
            if let Some(tag) = if_none_match {
                request = request.header(reqwest::header::IF_NONE_MATCH, tag);
            }
            let mut response = request
                .send()
                .await
                .map_err(|e| StoreError::Unreachable(without_url(&e)))?;
            let status = response.status();
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
            if response.content_length().is_some_and(|n| n > limit) {
                return Err(too_large());
            }
            let etag = response
                .headers()
                .get(reqwest::header::ETAG)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let mut bytes = Vec::new();
            while let Some(chunk) = response
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
        })
    }

    fn put<'a>(
        &'a self,
        key: &'a str,
        _bytes: &'a [u8],
        _condition: Condition,
    ) -> BoxFuture<'a, Result<Put, StoreError>> {
        Box::pin(async move {
            validate_key(key)?;
            Err(StoreError::ReadOnly(self.describe()))
        })
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<String>, StoreError>> {
        Box::pin(async move {
            validate_prefix(prefix)?;
            Err(StoreError::ReadOnly(self.describe()))
        })
    }

    fn describe(&self) -> String {
        join(&self.origin, &self.prefix)
    }
}
