//! Backends: one folder per implementation of a port. Nothing above this
//! folder sees their types.
//!
//! - [`sqlite`]: the embedded repository (the default);
//! - [`postgres`]: the shared repository, for several control planes on
//!   one database;
//! - [`local_identity`]: the embedded identity provider (Argon2id
//!   passwords, TOTP, per-realm signing keys, Cognito-shaped tokens);
//! - [`cognito`]: Amazon Cognito as a realm's identity provider (realm =
//!   user pool), through the AWS SDK.
//!
//! Object stores (a local directory, S3) live in the `object-store` crate,
//! shared with the edge host.

pub mod cognito;
pub mod local_identity;
pub mod postgres;
pub mod sqlite;

use crate::domain::error::{Error, Result};

/// Run blocking database work without stalling other tasks: in place on a
/// multi-threaded runtime (its other tasks move to another worker; a hop
/// to the blocking pool and back costs more than most transactions), on
/// the blocking pool otherwise.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    use tokio::runtime::{Handle, RuntimeFlavor};
    if Handle::try_current().is_ok_and(|h| h.runtime_flavor() == RuntimeFlavor::MultiThread) {
        return tokio::task::block_in_place(f);
    }
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(format!("repository worker: {e}")))?
}

/// Move the values of `id`'s rows from an id-ordered scan of (id, value)
/// pairs into `out` (merging a membership scan into a user scan). Rows of
/// ids before it cannot exist (foreign keys); they are skipped rather than
/// mis-assigned.
pub(crate) fn take_for<I>(
    iter: &mut std::iter::Peekable<I>,
    id: &str,
    out: &mut Vec<String>,
) -> Result<()>
where
    I: Iterator<Item = Result<(String, String)>>,
{
    loop {
        match iter.peek() {
            Some(Ok((u, _))) if u.as_str() <= id => {}
            Some(Err(_)) => {
                if let Some(Err(e)) = iter.next() {
                    return Err(e);
                }
            }
            _ => return Ok(()),
        }
        if let Some(Ok((u, v))) = iter.next()
            && u == id
        {
            out.push(v);
        }
    }
}
