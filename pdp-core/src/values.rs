//! Cedar JSON values straight into Cedar's core `Value`, for the hot path.
//!
//! The public API turns JSON into restricted expressions and evaluates them
//! (and, for a context, tries serde's untagged variants one by one); for
//! the plain values that make up nearly every attribute and context, that
//! is most of a decision's cost. This converter handles booleans, 64-bit
//! integers, strings, sets, records and `__entity` references; anything
//! else (`__extn` extension values, `null`, fractions) returns `None` and
//! the caller takes the public, slower path — so results are always the
//! ones Cedar's own parser would give.

use cedar_policy::{EntityId, EntityTypeName, EntityUid};
use cedar_policy_core::ast::{EntityUID, Value};
use rustc_hash::FxHashMap;
use serde_json::Value as Json;
use smol_str::SmolStr;
use std::str::FromStr;
use std::sync::RwLock;

/// Parsed entity type names by text: parsing a type name runs Cedar's full
/// grammar, far too slow to do per request.
#[derive(Debug, Default)]
pub(crate) struct TypeNames {
    known: RwLock<FxHashMap<Box<str>, EntityTypeName>>,
}

/// Unknown type names remembered at most this many (request input cannot
/// grow the cache without bound).
const MAX_LEARNED: usize = 4096;

impl TypeNames {
    pub fn new(names: impl IntoIterator<Item = EntityTypeName>) -> TypeNames {
        let known = names
            .into_iter()
            .map(|n| (n.to_string().into_boxed_str(), n))
            .collect();
        TypeNames {
            known: RwLock::new(known),
        }
    }

    /// The parsed type name, from the cache when possible.
    pub fn get(&self, text: &str) -> Result<EntityTypeName, String> {
        if let Ok(known) = self.known.read()
            && let Some(t) = known.get(text)
        {
            return Ok(t.clone());
        }
        let parsed =
            EntityTypeName::from_str(text).map_err(|e| crate::policies::diag_message(&e))?;
        if let Ok(mut known) = self.known.write()
            && known.len() < MAX_LEARNED
        {
            known.insert(text.into(), parsed.clone());
        }
        Ok(parsed)
    }

    /// An entity uid from a type name and id.
    pub fn uid(&self, ty: &str, id: &str) -> Result<EntityUid, String> {
        Ok(EntityUid::from_type_name_and_id(
            self.get(ty)?,
            EntityId::new(id),
        ))
    }

    /// An entity uid from Cedar's JSON reference form `{"type":..,"id":..}`.
    pub fn uid_json(&self, v: &Json) -> Option<EntityUid> {
        let map = v.as_object()?;
        if map.len() != 2 {
            return None;
        }
        let ty = map.get("type")?.as_str()?;
        let id = map.get("id")?.as_str()?;
        self.uid(ty, id).ok()
    }
}

/// Convert a Cedar JSON value (explicit forms) into a core value, noting
/// entity references. `None`: not a plain value; use the public API.
pub(crate) fn to_value(v: &Json, types: &TypeNames, refs: &mut Vec<EntityUid>) -> Option<Value> {
    Some(match v {
        Json::Bool(b) => Value::from(*b),
        Json::Number(n) => Value::from(n.as_i64()?),
        Json::String(s) => Value::from(SmolStr::new(s)),
        Json::Array(items) => {
            let vals = items
                .iter()
                .map(|i| to_value(i, types, refs))
                .collect::<Option<Vec<_>>>()?;
            Value::set(vals, None)
        }
        Json::Object(map) => {
            if let Some(e) = map.get("__entity") {
                if map.len() != 1 {
                    return None;
                }
                let uid = types.uid_json(e)?;
                refs.push(uid.clone());
                return Some(Value::from(EntityUID::from(uid)));
            }
            if map.contains_key("__extn") || map.contains_key("__expr") {
                return None;
            }
            let pairs = map
                .iter()
                .map(|(k, v)| Some((SmolStr::new(k), to_value(v, types, refs)?)))
                .collect::<Option<Vec<_>>>()?;
            Value::record(pairs, None)
        }
        Json::Null => return None,
    })
}
