#![doc = include_str!("../README.md")]

pub mod backend;
pub mod cli;
pub mod config;
pub mod domain;
pub mod http;
pub mod ports;
pub mod random;
pub mod secrets;
pub mod service;

pub use domain::error::{self as error, Diagnostic, Error, Result};
pub use service::{Caller, Service, Settings};
