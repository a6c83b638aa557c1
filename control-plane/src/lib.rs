#![doc = include_str!("../README.md")]

pub mod identity;
pub mod objstore;
pub mod publish;
