//! The one rule for object keys, applied by every store before anything
//! else, so a key names the same object (or is refused the same way) in a
//! directory, in S3 and over HTTP.

use crate::StoreError;

/// Accept `key` if it is `/`-separated segments of ASCII letters, digits,
/// `.`, `_` and `-`, none of them empty, `.` or `..`, none a local store's
/// own file (`.tmp-*` temporaries, `*.lock` companions); refuse it with
/// [`StoreError::BadKey`] otherwise. Such a key cannot leave the store's
/// root on any store: no absolute paths, no `\`, no `//`.
pub fn validate_key(key: &str) -> Result<(), StoreError> {
    let segment_ok = |seg: &str| {
        !seg.is_empty()
            && seg != "."
            && seg != ".."
            && !seg.starts_with(".tmp-")
            && !seg.ends_with(".lock")
            && seg
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    };
    if key.split('/').all(segment_ok) {
        Ok(())
    } else {
        Err(StoreError::BadKey(key.to_owned()))
    }
}

/// A folder to list or root a store at: a valid key, or `""` for the root.
pub(crate) fn validate_prefix(prefix: &str) -> Result<(), StoreError> {
    if prefix.is_empty() {
        Ok(())
    } else {
        validate_key(prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_that_could_escape_are_refused() {
        for key in [
            "", "../x", "a//b", "a/./b", "/abs", "a/b.lock", "a/.tmp-1", "a\\b", "a/", "..",
            "a/..", "a b", "a/%2e%2e",
        ] {
            assert!(
                matches!(validate_key(key), Err(StoreError::BadKey(k)) if k == key),
                "{key:?} accepted"
            );
        }
        for key in [
            "HEAD",
            "acme/HEAD",
            "p/acme/snapshots/1.tar.gz",
            "a/.hidden",
            "a-b_c.d",
        ] {
            assert!(validate_key(key).is_ok(), "{key:?} refused");
        }
        assert!(validate_prefix("").is_ok());
        assert!(validate_prefix("/").is_err());
    }
}
