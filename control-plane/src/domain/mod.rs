//! The domain: what realms, users, groups, roles, policies and schemas are,
//! and the rules they obey (the lifecycle table from `pdp-core`, validation
//! against the realm's Cedar schema, no cycles in groups, the admin
//! realm's vocabulary). Pure: it depends on nothing but `pdp-core` and
//! Cedar, does no I/O and reads no clock; the service feeds it data from
//! the ports.

pub mod admin;
pub mod error;
pub mod group;
pub mod import;
pub mod password;
pub mod policy;
pub mod realm;
pub mod routes;
pub mod throttle;
pub mod user;
