//! A realm's forward-auth routes (`routes.json`: method + path pattern ->
//! Cedar action and resource) and its AuthZEN type names (`authzen.json`:
//! a PEP's `user` -> the realm's `User`), checked by the same parsers
//! decision points use when they load a bundle, so what the control plane
//! accepts every edge host accepts.

use super::error::{Diagnostic, Error, Result};
use serde_json::Value;

/// Check a route table (`{"routes": [...]}`) and return the bytes the
/// bundle's `routes.json` carries.
pub fn check_routes(table: &Value) -> Result<Vec<u8>> {
    let bytes = serde_json::to_vec_pretty(table).map_err(|e| Error::Internal(e.to_string()))?;
    pdp_core::routes::RouteTable::parse(&bytes)
        .map_err(|e| Error::invalid("routes", Diagnostic::new("routes", e.to_string())))?;
    Ok(bytes)
}

/// Check an AuthZEN type map (`{"types": {"user": "User"}}`) on its own
/// and return the bytes the bundle's `authzen.json` carries; its targets
/// are checked against the realm's schema with the rest of the realm
/// ([`super::policy::validate`]).
pub fn check_authzen_types(map: &Value) -> Result<Vec<u8>> {
    let bytes = serde_json::to_vec_pretty(map).map_err(|e| Error::Internal(e.to_string()))?;
    pdp_core::authzen::TypeMap::parse(&bytes)
        .map_err(|e| Error::invalid("authzen types", Diagnostic::new("authzen", e.to_string())))?;
    Ok(bytes)
}
