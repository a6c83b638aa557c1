//! OpenID AuthZEN Authorization API 1.0: the evaluation and evaluations
//! endpoints, mapped onto pdp-core requests.
//!
//! `subject` -> principal (`type`, `id`), `action.name` -> `Action::"<name>"`,
//! `resource` -> resource; `properties` of the resource (and of a subject
//! that is not a directory user) become that entity's attributes for this
//! request; `context` is the Cedar context.

use pdp_core::decision::{Answer, Decision, EntityRef, Request};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// An AuthZEN subject or resource.
#[derive(Debug, Clone, Deserialize)]
pub struct Entity {
    /// Entity type.
    #[serde(rename = "type")]
    pub ty: String,
    /// Entity id.
    pub id: String,
    /// Attributes (Cedar JSON values).
    #[serde(default)]
    pub properties: Option<Map<String, Value>>,
}

/// An AuthZEN action.
#[derive(Debug, Clone, Deserialize)]
pub struct Action {
    /// Action name (the Cedar `Action` id).
    pub name: String,
}

/// One evaluation; in a batch, absent parts come from the enclosing request.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Evaluation {
    /// Who.
    pub subject: Option<Entity>,
    /// What.
    pub action: Option<Action>,
    /// On what.
    pub resource: Option<Entity>,
    /// Context.
    pub context: Option<Map<String, Value>>,
}

/// The evaluations request: defaults plus a list.
#[derive(Debug, Clone, Deserialize)]
pub struct Evaluations {
    /// Defaults.
    #[serde(flatten)]
    pub defaults: Evaluation,
    /// The list (absent: evaluate the defaults once).
    #[serde(default)]
    pub evaluations: Option<Vec<Evaluation>>,
    /// `evaluations_semantic`.
    #[serde(default)]
    pub options: Option<Options>,
}

/// Batch options.
#[derive(Debug, Clone, Deserialize)]
pub struct Options {
    /// `execute_all` (default), `deny_on_first_deny`, `permit_on_first_permit`.
    #[serde(default)]
    pub evaluations_semantic: Option<String>,
}

/// How a batch stops early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Semantic {
    /// Evaluate everything.
    ExecuteAll,
    /// Stop after the first deny.
    DenyOnFirstDeny,
    /// Stop after the first permit.
    PermitOnFirstPermit,
}

impl Options {
    /// The requested semantic, or why it is unknown.
    pub fn semantic(&self) -> Result<Semantic, String> {
        match self.evaluations_semantic.as_deref() {
            None | Some("execute_all") => Ok(Semantic::ExecuteAll),
            Some("deny_on_first_deny") => Ok(Semantic::DenyOnFirstDeny),
            Some("permit_on_first_permit") => Ok(Semantic::PermitOnFirstPermit),
            Some(other) => Err(format!("unknown evaluations_semantic {other:?}")),
        }
    }
}

/// An AuthZEN decision.
#[derive(Debug, Clone, Serialize)]
pub struct Response {
    /// true: allowed.
    pub decision: bool,
    /// Why (Gatehouse reason, determining policies, bundle revision).
    pub context: Value,
}

impl From<&Answer> for Response {
    fn from(a: &Answer) -> Self {
        Response {
            decision: a.decision == Decision::Allow,
            context: json!({
                "reason": a.reason.to_string(),
                "determining_policies": a.determining_policies,
                "revision": a.revision,
            }),
        }
    }
}

impl Evaluation {
    /// Fill absent parts from `defaults`.
    pub fn or(self, defaults: &Evaluation) -> Evaluation {
        Evaluation {
            subject: self.subject.or_else(|| defaults.subject.clone()),
            action: self.action.or_else(|| defaults.action.clone()),
            resource: self.resource.or_else(|| defaults.resource.clone()),
            context: self.context.or_else(|| defaults.context.clone()),
        }
    }

    /// The pdp-core request, or what is missing.
    pub fn to_request(&self) -> Result<Request, String> {
        let subject = self.subject.as_ref().ok_or("subject is required")?;
        let action = self.action.as_ref().ok_or("action is required")?;
        let resource = self.resource.as_ref().ok_or("resource is required")?;
        let mut entities = Vec::new();
        for e in [subject, resource] {
            if let Some(props) = &e.properties {
                entities.push(
                    json!({"uid": {"type": e.ty, "id": e.id}, "attrs": props, "parents": []}),
                );
            }
        }
        Ok(Request {
            principal: EntityRef::new(&subject.ty, &subject.id),
            action: EntityRef::new("Action", &action.name),
            resource: EntityRef::new(&resource.ty, &resource.id),
            context: Value::Object(self.context.clone().unwrap_or_default()),
            entities,
        })
    }
}
