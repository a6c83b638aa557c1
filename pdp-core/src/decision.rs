//! Wire shapes of requests and answers, shared by the CLI, the wasm module,
//! the bindings and the edge host's `/v1` API.

use crate::lifecycle::UserState;
use crate::token::TokenFailure;
use serde::{Deserialize, Serialize, Serializer};
use std::fmt;

/// An entity reference in Cedar's JSON form: `{"type": "User", "id": "alice"}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntityRef {
    /// Entity type name (may be namespaced: `App::Document`).
    #[serde(rename = "type")]
    pub ty: String,
    /// Entity id.
    pub id: String,
}

impl EntityRef {
    /// A reference from its parts.
    pub fn new(ty: impl Into<String>, id: impl Into<String>) -> Self {
        EntityRef {
            ty: ty.into(),
            id: id.into(),
        }
    }
}

/// `may principal do action on resource?`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// Who.
    pub principal: EntityRef,
    /// What.
    pub action: EntityRef,
    /// On what.
    pub resource: EntityRef,
    /// What the caller knows about the call (Cedar JSON record).
    #[serde(default = "empty_object")]
    pub context: serde_json::Value,
    /// Extra entities (Cedar JSON entity format). They never replace a
    /// directory user or a bundle entity.
    #[serde(default)]
    pub entities: Vec<serde_json::Value>,
}

/// A request whose principal comes from a token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// The JWT (ID or access token), with or without `Bearer `.
    pub token: String,
    /// What.
    pub action: EntityRef,
    /// On what.
    pub resource: EntityRef,
    /// Caller context; facts derived from the token override it.
    #[serde(default = "empty_object")]
    pub context: serde_json::Value,
    /// Extra entities, as in [`Request`].
    #[serde(default)]
    pub entities: Vec<serde_json::Value>,
}

/// Several requests sharing one principal or one resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// At most [`MAX_BATCH`] requests.
    pub requests: Vec<Request>,
    /// Entities shared by every request.
    #[serde(default)]
    pub entities: Vec<serde_json::Value>,
}

/// The most requests one batch may carry.
pub const MAX_BATCH: usize = 100;

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

/// Allow or Deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Decision {
    /// Some permit was satisfied and no forbid.
    Allow,
    /// Anything else, including every error.
    Deny,
}

/// Why the decision is what it is; rendered as one string
/// (`permit`, `no_permit`, `forbid:<id>`, `user_state:<State>`,
/// `unknown_user`, `token:<why>`, `stale_bundle`, `no_bundle`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Allowed by the determining permits.
    Permit,
    /// No permit was satisfied.
    NoPermit,
    /// Denied by this forbid policy (the first, by id).
    Forbid(String),
    /// Denied before Cedar ran: the principal's lifecycle state.
    UserState(UserState),
    /// Denied before Cedar ran: a directory-typed principal absent from the directory.
    UnknownUser,
    /// Denied before Cedar ran: the token was refused.
    Token(TokenFailure),
    /// Denied by a host: its bundle is older than the allowed staleness.
    StaleBundle,
    /// Denied by a host: no bundle loaded.
    NoBundle,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Permit => f.write_str("permit"),
            Reason::NoPermit => f.write_str("no_permit"),
            Reason::Forbid(id) => write!(f, "forbid:{id}"),
            Reason::UserState(s) => write!(f, "user_state:{s}"),
            Reason::UnknownUser => f.write_str("unknown_user"),
            Reason::Token(t) => write!(f, "token:{t}"),
            Reason::StaleBundle => f.write_str("stale_bundle"),
            Reason::NoBundle => f.write_str("no_bundle"),
        }
    }
}

impl Serialize for Reason {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Reason {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let bad = || serde::de::Error::custom(format!("unknown reason {s:?}"));
        Ok(match s.split_once(':') {
            None => match s.as_str() {
                "permit" => Reason::Permit,
                "no_permit" => Reason::NoPermit,
                "unknown_user" => Reason::UnknownUser,
                "stale_bundle" => Reason::StaleBundle,
                "no_bundle" => Reason::NoBundle,
                _ => return Err(bad()),
            },
            Some(("forbid", id)) => Reason::Forbid(id.to_owned()),
            Some(("user_state", st)) => Reason::UserState(st.parse().map_err(|_| bad())?),
            Some(("token", why)) => Reason::Token(
                serde_json::from_value(serde_json::Value::String(why.to_owned()))
                    .map_err(|_| bad())?,
            ),
            Some(_) => return Err(bad()),
        })
    }
}

/// A policy that failed to evaluate (it was skipped; the answer still stands).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyError {
    /// The policy.
    pub policy_id: String,
    /// What went wrong.
    pub message: String,
}

/// The answer to one request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    /// Allow or Deny.
    pub decision: Decision,
    /// Policies that determined the decision, sorted.
    pub determining_policies: Vec<String>,
    /// Policies that errored during evaluation.
    pub errors: Vec<PolicyError>,
    /// Why.
    pub reason: Reason,
    /// Revision of the bundle that answered.
    pub revision: u64,
}

impl Answer {
    /// A Deny decided before Cedar ran.
    pub fn deny(reason: Reason, revision: u64) -> Answer {
        Answer {
            decision: Decision::Deny,
            determining_policies: Vec::new(),
            errors: Vec::new(),
            reason,
            revision,
        }
    }
}

/// Answers of a batch, one per request and in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchAnswer {
    /// One tagged answer per request.
    pub results: Vec<Tagged<Answer>>,
}

/// Why a request could not be answered at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// Not JSON, or not the expected shape.
    #[error("invalid JSON: {0}")]
    InvalidJson(String),
    /// Well-formed but not a valid request (bad entity reference, context
    /// or request that does not match the schema, bad batch shape).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// A request-supplied entity is invalid.
    #[error("invalid entities: {0}")]
    InvalidEntities(String),
    /// A directory record could not be turned into an entity (a bundle defect).
    #[error("directory: {0}")]
    Directory(String),
    /// A search's page token is not one of this query's.
    #[error("invalid page token: {0}")]
    InvalidCursor(String),
    /// A search's page token was made on a revision no longer served.
    #[error(
        "the page token was made on revision {token}; revision {served} is served now: start the search again"
    )]
    CursorExpired {
        /// The revision the token was made on.
        token: u64,
        /// The revision served.
        served: u64,
    },
}

impl RequestError {
    /// Stable machine-readable kind.
    pub fn kind(&self) -> &'static str {
        match self {
            RequestError::InvalidJson(_) => "invalid_json",
            RequestError::InvalidRequest(_) => "invalid_request",
            RequestError::InvalidEntities(_) => "invalid_entities",
            RequestError::Directory(_) => "directory",
            RequestError::InvalidCursor(_) => "invalid_cursor",
            RequestError::CursorExpired { .. } => "cursor_expired",
        }
    }
}

/// One error of a failure answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureDetail {
    /// Stable machine-readable kind.
    pub kind: String,
    /// Human-readable message.
    pub message: String,
}

/// Every answer crossing a boundary is tagged: success or failure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Tagged<T> {
    /// The call succeeded (the decision may still be Deny).
    Success(T),
    /// The call could not be answered.
    Failure {
        /// What went wrong.
        errors: Vec<FailureDetail>,
    },
}

impl<T> Tagged<T> {
    /// A failure with one error.
    pub fn failure(kind: impl Into<String>, message: impl Into<String>) -> Self {
        Tagged::Failure {
            errors: vec![FailureDetail {
                kind: kind.into(),
                message: message.into(),
            }],
        }
    }
}

impl<T> From<Result<T, RequestError>> for Tagged<T> {
    fn from(r: Result<T, RequestError>) -> Self {
        match r {
            Ok(v) => Tagged::Success(v),
            Err(e) => Tagged::failure(e.kind(), e.to_string()),
        }
    }
}

impl<T: Serialize> Tagged<T> {
    /// Serialize to a JSON string (serialization of these types cannot fail;
    /// if it somehow did, the result is still a tagged failure).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| {
            format!(
                r#"{{"type":"failure","errors":[{{"kind":"internal","message":{:?}}}]}}"#,
                e.to_string()
            )
        })
    }
}
