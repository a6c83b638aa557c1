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

pub mod engine;

// Both faces exist only in the WebAssembly build: natively the engine is
// all there is (and `alloc`/`dealloc` would be odd symbols to export).
#[cfg(target_arch = "wasm32")]
pub mod abi;
#[cfg(target_arch = "wasm32")]
pub mod js;

pub use engine::{Failure, Options, Pdp, SearchKind};
