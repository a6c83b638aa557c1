//! Backends: one folder per implementation of a port. Nothing above this
//! folder sees their types.
//!
//! - [`sqlite`]: the embedded repository (the default);
//! - [`local_identity`]: the embedded identity provider (Argon2id
//!   passwords, TOTP, per-realm signing keys, Cognito-shaped tokens).
//!
//! Object stores (a local directory, S3) live in the `object-store` crate,
//! shared with the edge host.

pub mod local_identity;
pub mod sqlite;
