//! Object stores that bundles are polled from: S3, an HTTP(S) server, or a
//! local directory, all with the layout of [`pdp_core::layout`]. The stores
//! themselves are the `object-store` crate's, shared with the control
//! plane; this module names a realm's store and keys from a source location.
//!
//! A store only fetches bytes; what they mean (and whether to trust them) is
//! decided by [`crate::sync`].

use object_store::ObjectStore;
use pdp_core::layout::RealmKeys;
use std::path::Path;
use std::sync::Arc;

pub use object_store::{Connect, Fetched, StoreError};

/// Where a realm's bundles are polled from, as configured: `s3://bucket/prefix/realm`,
/// `http(s)://host/path/realm`, or a local directory holding `HEAD`.
///
/// The last segment names the realm; the store is opened on everything
/// before it, so the realm's keys are `realm/HEAD`, `realm/snapshots/...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The URL or path as given (for logs and `/v1/status`; holds no secret).
    pub url: String,
    /// The realm: the last path segment.
    pub realm: String,
    /// The store, as [`object_store::open`] takes it.
    store: String,
}

impl Location {
    /// Parse a source location. The last path segment names the realm; it
    /// and an S3 or HTTP prefix must be valid object keys.
    pub fn parse(url: &str) -> Result<Location, String> {
        let split = |path: &str| -> Result<(String, String), String> {
            let path = path.trim_matches('/');
            let (prefix, realm) = path.rsplit_once('/').unwrap_or(("", path));
            if realm.is_empty() {
                return Err(format!("{url}: the last path segment must name the realm"));
            }
            if !prefix.is_empty() && object_store::validate_key(prefix).is_err() {
                return Err(format!(
                    "{url}: the path before the realm must be segments of A-Z a-z 0-9 . _ -"
                ));
            }
            Ok((prefix.to_owned(), realm.to_owned()))
        };
        let under = |root: String, prefix: String| match prefix.is_empty() {
            true => root,
            false => format!("{root}/{prefix}"),
        };
        let (store, realm) = if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, path) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(format!("{url}: no bucket"));
            }
            let (prefix, realm) = split(path)?;
            (under(format!("s3://{bucket}"), prefix), realm)
        } else if url.starts_with("http://") || url.starts_with("https://") {
            let (scheme, rest) = url.split_once("://").unwrap_or(("http", url));
            let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
            if host.is_empty() || host.contains('@') || path.contains(['?', '#']) {
                // Never echo this URL: it may carry a password.
                return Err(format!(
                    "{scheme}:// source: give a host without credentials and a path without a query (bundles are signed; the server needs no secret in the URL)"
                ));
            }
            let (prefix, realm) = split(path)?;
            (under(format!("{scheme}://{host}"), prefix), realm)
        } else {
            let root = Path::new(url);
            let realm = root
                .file_name()
                .and_then(|n| n.to_str())
                .ok_or_else(|| format!("{url}: the last path segment must name the realm"))?;
            let parent = root.parent().unwrap_or(Path::new("/"));
            let parent = match parent.as_os_str().is_empty() {
                true => Path::new("."),
                false => parent,
            };
            (parent.display().to_string(), realm.to_owned())
        };
        if object_store::validate_key(&realm).is_err() {
            return Err(format!(
                "{url}: the realm {realm:?} must be a name of A-Z a-z 0-9 . _ -"
            ));
        }
        Ok(Location {
            url: url.to_owned(),
            realm,
            store,
        })
    }

    /// The object keys of this realm, relative to its store.
    pub fn keys(&self) -> RealmKeys {
        RealmKeys::new("", &self.realm)
    }
}

/// A connected store: an [`ObjectStore`] that this host only reads.
#[derive(Debug, Clone)]
pub struct Store(Arc<dyn ObjectStore>);

impl Store {
    /// Connect to the store of `location` (S3 credentials, region and
    /// endpoint from the standard AWS settings: `AWS_REGION`,
    /// `AWS_ENDPOINT_URL`, profiles, roles). Sends no request.
    pub async fn connect(location: &Location, connect: &Connect) -> Result<Store, StoreError> {
        Ok(Store(object_store::open(&location.store, connect).await?))
    }

    /// GET `key`, unless its entity tag is still `if_none_match`; refuse
    /// objects over `limit` bytes.
    pub async fn get(
        &self,
        key: &str,
        if_none_match: Option<&str>,
        limit: u64,
    ) -> Result<Fetched, StoreError> {
        self.0.get(key, if_none_match, limit).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_name_their_realm_and_store() {
        let l = Location::parse("s3://bundles/prod/gatehouse/acme").unwrap();
        assert_eq!(l.realm, "acme");
        assert_eq!(l.store, "s3://bundles/prod/gatehouse");
        assert_eq!(l.keys().head(), "acme/HEAD");
        let l = Location::parse("s3://bundles/acme/").unwrap();
        assert_eq!(
            (l.realm.as_str(), l.store.as_str(), l.keys().head()),
            ("acme", "s3://bundles", "acme/HEAD".into())
        );
        let l = Location::parse("https://cdn.example/b/acme").unwrap();
        assert_eq!(l.store, "https://cdn.example/b");
        assert_eq!(l.keys().snapshot(2), "acme/snapshots/2.tar.gz");
        let l = Location::parse("/var/lib/store/acme").unwrap();
        assert_eq!(
            (l.realm.as_str(), l.store.as_str()),
            ("acme", "/var/lib/store")
        );
        let l = Location::parse("acme").unwrap();
        assert_eq!(l.store, ".");
        assert!(Location::parse("s3://").is_err());
        assert!(Location::parse("s3://bucket").is_err());
        assert!(Location::parse("s3://bucket/a//acme").is_err());
        assert!(Location::parse("s3://bucket/a/..").is_err());
        assert!(Location::parse("/srv/store/HEAD.lock").is_err());
        let err = Location::parse("https://user:pw@host/acme").unwrap_err();
        assert!(!err.contains("pw"), "{err}");
        let err = Location::parse("https://host/acme?token=t0ps3cr3t").unwrap_err();
        assert!(!err.contains("t0ps3cr3t"), "{err}");
    }
}
