//! `authzen.json`: the names an OpenID AuthZEN client (a PEP) gives the
//! realm's entity types, so that an off-the-shelf PEP that says `user` and
//! `todo` reaches the directory's `User` and the realm's `Document`
//! without anything in the policies being renamed.
//!
//! ```json
//! {"types": {"user": "User", "todo": "Document"}}
//! ```
//!
//! A name the map does not hold is taken as a Cedar type name itself, so
//! a PEP that already speaks the realm's names needs no map. Several names
//! may map to one Cedar type; a search answers in the name it was asked
//! in. The map renames whole types only: entity references inside
//! `properties` or `context` are Cedar JSON and name Cedar types.

use cedar_policy::{EntityTypeName, Schema};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::str::FromStr;

/// The most names one map may hold.
pub const MAX_TYPES: usize = 1024;
/// The longest name a PEP may use, in bytes.
pub const MAX_NAME_BYTES: usize = 256;

/// Why a type map was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TypeMapError {
    /// Not the JSON of a type map.
    #[error("authzen.json: {0}")]
    Malformed(String),
    /// One entry is invalid.
    #[error("authzen.json type {name:?}: {message}")]
    Entry {
        /// The PEP's name of the entry.
        name: String,
        /// What is wrong.
        message: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    types: BTreeMap<String, String>,
}

/// A realm's AuthZEN type names, checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TypeMap {
    types: BTreeMap<String, String>,
}

impl TypeMap {
    /// Parse and check `authzen.json` on its own: names are non-empty,
    /// printable and at most [`MAX_NAME_BYTES`]; targets are Cedar entity
    /// type names (not the `Action` type); at most [`MAX_TYPES`] entries.
    pub fn parse(bytes: &[u8]) -> Result<TypeMap, TypeMapError> {
        let file: File =
            serde_json::from_slice(bytes).map_err(|e| TypeMapError::Malformed(e.to_string()))?;
        if file.types.len() > MAX_TYPES {
            return Err(TypeMapError::Malformed(format!(
                "at most {MAX_TYPES} types, not {}",
                file.types.len()
            )));
        }
        for (name, target) in &file.types {
            let entry = |message: String| TypeMapError::Entry {
                name: name.clone(),
                message,
            };
            if name.is_empty() || name.len() > MAX_NAME_BYTES {
                return Err(entry(format!("a name is 1 to {MAX_NAME_BYTES} bytes")));
            }
            if name.chars().any(char::is_control) {
                return Err(entry("a name holds no control characters".into()));
            }
            let ty = EntityTypeName::from_str(target)
                .map_err(|e| entry(format!("{target:?} is not a Cedar entity type name: {e}")))?;
            if ty.basename() == "Action" {
                return Err(entry(format!(
                    "{target:?} is an action type; AuthZEN actions are named by `action.name`"
                )));
            }
        }
        Ok(TypeMap { types: file.types })
    }

    /// Check every target against the realm's schema: each must be one of
    /// its entity types.
    pub fn check(&self, schema: &Schema) -> Result<(), TypeMapError> {
        for (name, target) in &self.types {
            let known = EntityTypeName::from_str(target)
                .is_ok_and(|ty| schema.entity_types().any(|t| *t == ty));
            if !known {
                return Err(TypeMapError::Entry {
                    name: name.clone(),
                    message: format!("{target:?} is not an entity type of the realm's schema"),
                });
            }
        }
        Ok(())
    }

    /// The Cedar type a PEP's name stands for: its mapping, or the name
    /// itself when the map does not hold it.
    pub fn cedar_type<'a>(&'a self, name: &'a str) -> &'a str {
        self.types.get(name).map_or(name, String::as_str)
    }

    /// Every (PEP name, Cedar type), in name order.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &str)> {
        self.types.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Whether the map holds no name.
    pub fn is_empty(&self) -> bool {
        self.types.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_and_unknown_names_pass_through() {
        let m = TypeMap::parse(
            br#"{"types": {"user": "User", "todo": "App::Document", "person": "User"}}"#,
        )
        .unwrap();
        assert_eq!(m.cedar_type("user"), "User");
        assert_eq!(m.cedar_type("person"), "User");
        assert_eq!(m.cedar_type("todo"), "App::Document");
        assert_eq!(m.cedar_type("Folder"), "Folder");
        assert_eq!(m.entries().count(), 3);
    }

    #[test]
    fn bad_maps_are_refused_with_the_entry_named() {
        for (bytes, want) in [
            (&b"[]"[..], None),
            (br#"{"types": {}, "extra": 1}"#, None),
            (br#"{"types": {"user": 3}}"#, None),
            (br#"{"types": {"": "User"}}"#, Some("")),
            (br#"{"types": {"a\u0001": "User"}}"#, Some("a\u{1}")),
            (br#"{"types": {"user": "not a type"}}"#, Some("user")),
            (br#"{"types": {"user": "Action"}}"#, Some("user")),
            (br#"{"types": {"op": "App::Action"}}"#, Some("op")),
        ] {
            let e = TypeMap::parse(bytes).unwrap_err();
            match (e, want) {
                (TypeMapError::Malformed(_), None) => {}
                (TypeMapError::Entry { name, .. }, Some(w)) => assert_eq!(name, w),
                (other, w) => panic!(
                    "{:?}: {other:?}, wanted {w:?}",
                    String::from_utf8_lossy(bytes)
                ),
            }
        }
        let long = format!(
            r#"{{"types": {{"{}": "User"}}}}"#,
            "x".repeat(MAX_NAME_BYTES + 1)
        );
        assert!(TypeMap::parse(long.as_bytes()).is_err());
    }

    #[test]
    fn targets_must_be_types_of_the_schema() {
        let schema = Schema::from_cedarschema_str("entity User; entity Document;")
            .unwrap()
            .0;
        let ok = TypeMap::parse(br#"{"types": {"user": "User", "doc": "Document"}}"#).unwrap();
        assert_eq!(ok.check(&schema), Ok(()));
        let bad = TypeMap::parse(br#"{"types": {"user": "User", "todo": "Todo"}}"#).unwrap();
        assert!(
            matches!(bad.check(&schema), Err(TypeMapError::Entry { name, .. }) if name == "todo")
        );
    }
}
