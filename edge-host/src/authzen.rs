//! OpenID AuthZEN Authorization API 1.0: the evaluation and evaluations
//! endpoints, mapped onto pdp-core requests.
//!
//! `subject` -> principal (`type`, `id`), `action.name` -> `Action::"<name>"`,
//! `resource` -> resource; `properties` of the resource (and of a subject
//! that is not a directory user) become that entity's attributes for this
//! request; `context` is the Cedar context. Entity types are the PEP's
//! names, translated by the realm's type map (`authzen.json`, see
//! [`pdp_core::authzen`]); a name it does not hold is a Cedar type name.

use pdp_core::authzen::TypeMap;
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

    /// The pdp-core request, with types translated by the realm's type
    /// map, or what is missing.
    pub fn to_request(&self, types: Option<&TypeMap>) -> Result<Request, String> {
        let subject = self.subject.as_ref().ok_or("subject is required")?;
        let action = self.action.as_ref().ok_or("action is required")?;
        let resource = self.resource.as_ref().ok_or("resource is required")?;
        let mut entities = Vec::new();
        for e in [subject, resource] {
            if let Some(props) = &e.properties {
                // A directory user's record wins over these (pdp-core never
                // lets a supplied entity replace a directory user or a
                // bundle entity): properties describe only what the realm
                // does not hold.
                entities.push(
                    json!({"uid": {"type": cedar_type(types, &e.ty), "id": e.id},
                    "attrs": props, "parents": []}),
                );
            }
        }
        Ok(Request {
            principal: EntityRef::new(cedar_type(types, &subject.ty), &subject.id),
            action: EntityRef::new("Action", &action.name),
            resource: EntityRef::new(cedar_type(types, &resource.ty), &resource.id),
            context: Value::Object(self.context.clone().unwrap_or_default()),
            entities,
        })
    }
}

/// The Cedar type a PEP's type name stands for in a realm.
fn cedar_type<'a>(types: Option<&'a TypeMap>, name: &'a str) -> &'a str {
    types.map_or(name, |m| m.cedar_type(name))
}

/// A subject or resource in a search: the searched side names only its
/// `type`; the other names an entity.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchEntity {
    /// Entity type.
    #[serde(rename = "type")]
    pub ty: String,
    /// Entity id (absent on the searched side).
    #[serde(default)]
    pub id: Option<String>,
    /// Attributes: not taken by searches (the entities searched over are
    /// the realm's own; a caller may not redefine them).
    #[serde(default)]
    pub properties: Option<Map<String, Value>>,
}

/// A search's page request.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SearchPage {
    /// The `next_token` of the previous page (empty: the first page).
    #[serde(default)]
    pub token: Option<String>,
    /// At most this many results.
    #[serde(default)]
    pub limit: Option<usize>,
    /// Other paging parameters (none is understood; refused if given).
    #[serde(default)]
    pub properties: Option<Map<String, Value>>,
}

/// A search request (subject, resource or action search).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Search {
    /// Who (only `type` in a subject search).
    pub subject: Option<SearchEntity>,
    /// What (absent in an action search).
    pub action: Option<Action>,
    /// On what (only `type` in a resource search).
    pub resource: Option<SearchEntity>,
    /// Context.
    #[serde(default)]
    pub context: Option<Map<String, Value>>,
    /// Which page.
    #[serde(default)]
    pub page: Option<SearchPage>,
}

/// Which AuthZEN search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchKind {
    /// `/access/v1/search/subject`
    Subject,
    /// `/access/v1/search/resource`
    Resource,
    /// `/access/v1/search/action`
    Action,
}

impl Search {
    /// The page token given (an empty one is none).
    pub fn token(&self) -> Option<&str> {
        self.page
            .as_ref()
            .and_then(|p| p.token.as_deref())
            .filter(|t| !t.is_empty())
    }

    /// The pdp-core page.
    fn page(&self) -> Result<pdp_core::search::Page, String> {
        let page = self.page.clone().unwrap_or_default();
        if page.properties.as_ref().is_some_and(|p| !p.is_empty()) {
            return Err("page.properties: no paging property is supported".into());
        }
        Ok(pdp_core::search::Page {
            limit: page.limit,
            token: self.token().map(str::to_owned),
        })
    }

    fn entity(
        e: Option<&SearchEntity>,
        what: &str,
        types: Option<&TypeMap>,
    ) -> Result<EntityRef, String> {
        let e = e.ok_or(format!("{what} is required"))?;
        let id = e.id.as_ref().ok_or(format!("{what}.id is required"))?;
        Ok(EntityRef::new(cedar_type(types, &e.ty), id))
    }

    /// The searched side's type: (the PEP's name, the Cedar type).
    fn searched<'a>(
        e: Option<&'a SearchEntity>,
        what: &str,
        types: Option<&'a TypeMap>,
    ) -> Result<(&'a str, String), String> {
        let e = e.ok_or(format!("{what} is required (its type)"))?;
        if e.id.is_some() {
            return Err(format!("{what}.id: the searched side names only a type"));
        }
        Ok((&e.ty, cedar_type(types, &e.ty).to_owned()))
    }

    fn context(&self) -> Value {
        Value::Object(self.context.clone().unwrap_or_default())
    }

    /// Run this search of `kind` on `snap`: the AuthZEN response body.
    /// Results of a subject or resource search carry the type name the
    /// request used.
    pub fn run(&self, kind: SearchKind, snap: &pdp_core::Snapshot) -> Result<Value, SearchFailure> {
        let types = snap.authzen_types();
        if [&self.subject, &self.resource]
            .into_iter()
            .flatten()
            .any(|e| e.properties.as_ref().is_some_and(|p| !p.is_empty()))
        {
            return Err(SearchFailure::Invalid(
                "properties: a search runs over the realm's own entities; it takes none from the request".into(),
            ));
        }
        let page = self.page().map_err(SearchFailure::Invalid)?;
        let action = || -> Result<EntityRef, SearchFailure> {
            let a = self
                .action
                .as_ref()
                .ok_or_else(|| SearchFailure::Invalid("action is required".into()))?;
            Ok(EntityRef::new("Action", &a.name))
        };
        let invalid = SearchFailure::Invalid;
        // The searched type as the request named it: results carry it.
        let mut asked = "";
        let found = match kind {
            SearchKind::Subject => {
                let (name, subject_type) =
                    Self::searched(self.subject.as_ref(), "subject", types).map_err(invalid)?;
                asked = name;
                snap.search_subjects(&pdp_core::search::SubjectSearch {
                    subject_type,
                    action: action()?,
                    resource: Self::entity(self.resource.as_ref(), "resource", types)
                        .map_err(invalid)?,
                    context: self.context(),
                    page,
                })
            }
            SearchKind::Resource => {
                let (name, resource_type) =
                    Self::searched(self.resource.as_ref(), "resource", types).map_err(invalid)?;
                asked = name;
                snap.search_resources(&pdp_core::search::ResourceSearch {
                    principal: Self::entity(self.subject.as_ref(), "subject", types)
                        .map_err(invalid)?,
                    action: action()?,
                    resource_type,
                    context: self.context(),
                    page,
                })
            }
            SearchKind::Action => {
                if self.action.is_some() {
                    return Err(SearchFailure::Invalid(
                        "action: an action search names none".into(),
                    ));
                }
                snap.search_actions(&pdp_core::search::ActionSearch {
                    principal: Self::entity(self.subject.as_ref(), "subject", types)
                        .map_err(invalid)?,
                    resource: Self::entity(self.resource.as_ref(), "resource", types)
                        .map_err(invalid)?,
                    context: self.context(),
                    page,
                })
            }
        }
        .map_err(SearchFailure::Request)?;
        let results: Vec<Value> = found
            .results
            .iter()
            .map(|r| match kind {
                SearchKind::Action => json!({"name": r.id}),
                _ => json!({"type": asked, "id": r.id}),
            })
            .collect();
        let count = results.len();
        Ok(json!({
            "results": results,
            "page": {"next_token": found.next_token.unwrap_or_default(), "count": count},
            "context": {"revision": found.revision},
        }))
    }
}

/// Why a search was refused.
#[derive(Debug)]
pub enum SearchFailure {
    /// The request's shape.
    Invalid(String),
    /// pdp-core refused it (a type, a token, a context).
    Request(pdp_core::RequestError),
}
