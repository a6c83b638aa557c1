//! A realm's forward-auth routes (`routes.json`: method + path pattern ->
//! Cedar action and resource), checked by the same parser decision points
//! use when they load a bundle, so a route table the control plane accepts
//! is one every edge host accepts.

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
