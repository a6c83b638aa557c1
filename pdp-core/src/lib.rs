#![doc = include_str!("../README.md")]
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
#![cfg_attr(
    test,
    allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        reason = "tests fail loudly by design"
    )
)]

mod authorize;
pub mod authzen;
pub mod bundle;
pub mod chain;
pub mod decision;
pub mod directory;
mod encoded;
pub mod layout;
pub mod lifecycle;
pub mod manifest;
mod policies;
pub mod routes;
pub mod search;
pub mod sign;
mod slice;
mod snapshot;
pub mod source;
pub mod synth;
pub mod token;
mod user_cache;
mod values;

pub use bundle::{Bundle, BundleError, Limits, Trust};
pub use decision::{
    Answer, BatchAnswer, BatchRequest, Decision, EntityRef, Reason, Request, RequestError, Tagged,
    TokenRequest,
};
pub use directory::{Directory, UserRecord, UserRef};
pub use lifecycle::{LifecycleAction, LifecycleError, Memory, Transition, UserState};
pub use manifest::{BundleKind, IdentitySettings, Manifest};
pub use sign::{BundleSigner, Keyring};
pub use snapshot::{DEFAULT_USER_CACHE, LoadOptions, Snapshot, load};
pub use token::{TokenFailure, VerifiedToken};
