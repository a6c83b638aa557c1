//! The ports: what the service needs from the world, as traits, so that
//! backends (SQLite or PostgreSQL, the embedded identity or Cognito, a
//! local directory or S3) plug in behind them and nothing above sees their
//! types.
//!
//! - [`repository::Repository`]: transactions over everything the control
//!   plane keeps;
//! - [`identity::IdentityProvider`]: credentials, logins, tokens and realm
//!   provisioning, chosen per realm through [`identity::Identities`];
//! - [`ObjectStore`]: where bundles are published (the `object-store`
//!   crate, shared with the edge host);
//! - [`clock::Clock`]: the time.

pub mod clock;
pub mod identity;
pub mod repository;

pub use object_store::{Condition, Fetched, ObjectStore, Put, StoreError};

/// A boxed future, for object-safe async traits.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;
