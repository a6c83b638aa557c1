//! The Amazon Verified Permissions wire protocol (AWS JSON 1.0): an AWS SDK
//! client pointed at this host with `endpoint_url` calls `IsAuthorized`,
//! `IsAuthorizedWithToken` and `BatchIsAuthorized` unchanged;
//! `policyStoreId` names the realm.
//!
//! Translation is in one place: AVP's typed `AttributeValue`s become Cedar
//! JSON values, `EntityItem`s become Cedar JSON entities, and answers become
//! `{"decision": "ALLOW" | "DENY", "determiningPolicies": [...], "errors": [...]}`.

use pdp_core::decision::{Answer, Decision, EntityRef};
use serde_json::{Map, Value, json};

/// An AVP error: `{"__type": ..., "message": ...}` with HTTP 400.
#[derive(Debug)]
pub struct AvpError {
    /// `ValidationException`, `ResourceNotFoundException`, ...
    pub kind: &'static str,
    /// What went wrong.
    pub message: String,
}

impl AvpError {
    /// A validation error.
    pub fn validation(message: impl Into<String>) -> AvpError {
        AvpError {
            kind: "ValidationException",
            message: message.into(),
        }
    }
}

fn field<'a>(v: &'a Value, name: &str) -> Result<&'a Value, AvpError> {
    v.get(name)
        .ok_or_else(|| AvpError::validation(format!("{name} is required")))
}

fn string(v: &Value, name: &str) -> Result<String, AvpError> {
    field(v, name)?
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| AvpError::validation(format!("{name} must be a string")))
}

/// `EntityIdentifier` -> entity reference.
pub fn entity(v: &Value) -> Result<EntityRef, AvpError> {
    Ok(EntityRef::new(
        string(v, "entityType")?,
        string(v, "entityId")?,
    ))
}

/// `ActionIdentifier` -> entity reference.
pub fn action(v: &Value) -> Result<EntityRef, AvpError> {
    Ok(EntityRef::new(
        string(v, "actionType")?,
        string(v, "actionId")?,
    ))
}

/// `AttributeValue` -> Cedar JSON value.
pub fn attribute(v: &Value) -> Result<Value, AvpError> {
    let map = v.as_object().filter(|m| m.len() == 1).ok_or_else(|| {
        AvpError::validation("an attribute value has exactly one member naming its type")
    })?;
    let Some((ty, inner)) = map.iter().next() else {
        return Err(AvpError::validation("empty attribute value"));
    };
    Ok(match ty.as_str() {
        "boolean" | "long" | "string" => inner.clone(),
        "entityIdentifier" => {
            let e = entity(inner)?;
            json!({"__entity": {"type": e.ty, "id": e.id}})
        }
        "set" => Value::Array(
            inner
                .as_array()
                .ok_or_else(|| AvpError::validation("set must be a list"))?
                .iter()
                .map(attribute)
                .collect::<Result<_, _>>()?,
        ),
        "record" => Value::Object(record(inner)?),
        "ipaddr" | "decimal" | "datetime" | "duration" => {
            let f = if ty == "ipaddr" { "ip" } else { ty.as_str() };
            json!({"__extn": {"fn": f, "arg": inner}})
        }
        other => {
            return Err(AvpError::validation(format!(
                "unknown attribute type {other:?}"
            )));
        }
    })
}

fn record(v: &Value) -> Result<Map<String, Value>, AvpError> {
    v.as_object()
        .ok_or_else(|| AvpError::validation("record must be an object"))?
        .iter()
        .map(|(k, v)| Ok((k.clone(), attribute(v)?)))
        .collect()
}

/// `ContextDefinition` (`{"contextMap": {...}}`) -> Cedar context.
pub fn context(v: Option<&Value>) -> Result<Value, AvpError> {
    match v.and_then(|c| c.get("contextMap")) {
        None => Ok(Value::Object(Map::new())),
        Some(m) => Ok(Value::Object(record(m)?)),
    }
}

/// `EntitiesDefinition` (`{"entityList": [...]}`) -> Cedar JSON entities.
pub fn entities(v: Option<&Value>) -> Result<Vec<Value>, AvpError> {
    let Some(list) = v.and_then(|e| e.get("entityList")) else {
        return Ok(Vec::new());
    };
    list.as_array()
        .ok_or_else(|| AvpError::validation("entityList must be a list"))?
        .iter()
        .map(|item| {
            let id = entity(field(item, "identifier")?)?;
            let attrs = match item.get("attributes") {
                Some(a) => record(a)?,
                None => Map::new(),
            };
            let parents: Vec<Value> = match item.get("parents") {
                Some(Value::Array(ps)) => ps
                    .iter()
                    .map(|p| entity(p).map(|e| json!({"type": e.ty, "id": e.id})))
                    .collect::<Result<_, _>>()?,
                Some(_) => return Err(AvpError::validation("parents must be a list")),
                None => Vec::new(),
            };
            Ok(json!({"uid": {"type": id.ty, "id": id.id}, "attrs": attrs, "parents": parents}))
        })
        .collect()
}

/// An answer in AVP's shape.
pub fn answer(a: &Answer) -> Value {
    json!({
        "decision": if a.decision == Decision::Allow { "ALLOW" } else { "DENY" },
        "determiningPolicies": a.determining_policies.iter().map(|p| json!({"policyId": p})).collect::<Vec<_>>(),
        "errors": a.errors.iter().map(|e| json!({"errorDescription": format!("{}: {}", e.policy_id, e.message)})).collect::<Vec<_>>(),
    })
}
