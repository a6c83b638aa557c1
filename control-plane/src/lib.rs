#![doc = include_str!("../README.md")]

pub mod admin;
pub mod api;
pub mod changes;
pub mod cli;
pub mod config;
pub mod db;
pub mod error;
pub mod group;
pub mod identity;
pub mod import;
pub mod objstore;
pub mod policy;
pub mod publish;
pub mod realm;
pub mod user;

pub use db::Db;
pub use error::{Diagnostic, Error, Result};
