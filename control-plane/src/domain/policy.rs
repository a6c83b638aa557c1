//! Cedar policies, templates and template links, the realm's schema
//! (versioned) and its resource entities, and the rules they obey: every
//! change is validated, with the change applied, against the schema before
//! it is committed ([`validate`]); a change that does not validate is
//! refused with Cedar's diagnostics and changes nothing. [`cedar_members`]
//! is what a bundle carries of them.

use super::error::{Diagnostic, Error, Result};
use super::group::Node;
use super::realm::check_id;
use cedar_policy::{
    Entities, EntityUid, Policy, PolicyId, PolicySet, Schema, SlotId, Template, ValidationMode,
    Validator,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};

/// A policy or template as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StoredPolicy {
    /// Id, unique per realm; the Cedar policy id.
    pub id: String,
    /// Whether it is a template (has `?principal` / `?resource` slots).
    pub template: bool,
    /// One Cedar policy, without an `@id` annotation (the id is `id`).
    pub body: String,
    /// Free text.
    pub description: String,
    /// Creation time, unix seconds.
    pub created_at: i64,
    /// Last change, unix seconds.
    pub updated_at: i64,
}

/// What creating or replacing a policy takes.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyInput {
    /// One Cedar policy or template.
    pub body: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
}

/// A template link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Link {
    /// The linked policy's id.
    pub id: String,
    /// The template it instantiates.
    pub template_id: String,
    /// Slot values: `?principal` and/or `?resource` -> Cedar entity reference.
    #[schema(value_type = Object)]
    pub values: BTreeMap<String, Value>,
}

/// One version of a realm's schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SchemaVersion {
    /// 1, 2, ...
    pub version: i64,
    /// Cedar schema text.
    pub text: String,
    /// When it was submitted, unix seconds.
    pub created_at: i64,
}

/// Parse a Cedar schema, or the diagnostics why not.
pub fn parse_schema(text: &str) -> Result<Schema> {
    Schema::from_cedarschema_str(text)
        .map(|(s, _warnings)| s)
        .map_err(|e| Error::invalid("schema", diagnostic("schema", &e, text)))
}

/// A Cedar diagnostic as a [`Diagnostic`], positioned in `text`.
pub fn diagnostic(subject: &str, e: &dyn miette::Diagnostic, text: &str) -> Diagnostic {
    let mut message = e.to_string();
    if let Some(help) = e.help() {
        message.push_str(&format!(" (help: {help})"));
    }
    if let Some(related) = e.related() {
        for r in related {
            message.push_str("; ");
            message.push_str(&r.to_string());
        }
    }
    let (line, column) = match first_offset(e) {
        Some(off) => {
            let before = text.get(..off.min(text.len())).unwrap_or("");
            let line = before.matches('\n').count() + 1;
            let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            (Some(line), Some(col))
        }
        None => (None, None),
    };
    Diagnostic {
        subject: subject.to_owned(),
        message,
        line,
        column,
    }
}

fn first_offset(e: &dyn miette::Diagnostic) -> Option<usize> {
    if let Some(mut labels) = e.labels()
        && let Some(l) = labels.next()
    {
        return Some(l.offset());
    }
    e.related()?.find_map(first_offset)
}

/// One policy or template of a realm, as validation sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyBody {
    /// Its id.
    pub id: String,
    /// Whether it is a template.
    pub template: bool,
    /// Its text.
    pub body: String,
}

/// Everything of a realm that Cedar validates together, and that a
/// bundle's Cedar members are made of.
#[derive(Debug, Clone, PartialEq)]
pub struct Content {
    /// The current schema's text.
    pub schema: String,
    /// Policies and templates, by id.
    pub policies: Vec<PolicyBody>,
    /// Template links, by id.
    pub links: Vec<Link>,
    /// Resource entities (Cedar JSON list).
    pub resources: Value,
    /// Roles, by id.
    pub roles: Vec<Node>,
    /// Groups, by id.
    pub groups: Vec<Node>,
    /// The forward-auth route table (`routes.json`), when the realm has one.
    pub routes: Option<Vec<u8>>,
    /// The AuthZEN type names (`authzen.json`), when the realm has them.
    pub authzen: Option<Vec<u8>>,
}

impl Content {
    /// Whether `id` names a policy, template or link.
    pub fn has_policy_id(&self, id: &str) -> bool {
        self.policies.iter().any(|p| p.id == id) || self.links.iter().any(|l| l.id == id)
    }

    /// Groups, roles and resources as one Cedar JSON entity list.
    pub fn entities_json(&self) -> Value {
        let mut all = super::group::cedar_entities(&self.roles, &self.groups);
        if let Value::Array(r) = &self.resources {
            all.extend(r.iter().cloned());
        }
        Value::Array(all)
    }
}

/// Compile and validate a realm's content strictly against its schema;
/// every finding is returned, each naming the policy (or `schema`,
/// `entities`, a link id) it is about.
pub fn validate(realm: &str, c: &Content) -> Result<()> {
    let schema = parse_schema(&c.schema)?;
    let mut diags = Vec::new();
    let mut set = PolicySet::new();
    let mut bodies = HashMap::new();
    for PolicyBody { id, template, body } in &c.policies {
        bodies.insert(id.clone(), body.clone());
        let pid = PolicyId::new(id);
        let added = if *template {
            Template::parse(Some(pid), body)
                .map_err(|e| diagnostic(id, &e, body))
                .and_then(|t| set.add_template(t).map_err(|e| diagnostic(id, &e, body)))
        } else {
            Policy::parse(Some(pid), body)
                .map_err(|e| diagnostic(id, &e, body))
                .and_then(|p| set.add(p).map_err(|e| diagnostic(id, &e, body)))
        };
        if let Err(d) = added {
            diags.push(d);
        }
    }
    for l in &c.links {
        let mut vals = HashMap::new();
        for (slot, v) in &l.values {
            let slot_id = match slot.as_str() {
                "?principal" => SlotId::principal(),
                "?resource" => SlotId::resource(),
                other => {
                    diags.push(Diagnostic::new(&l.id, format!("unknown slot {other:?}")));
                    continue;
                }
            };
            match EntityUid::from_json(v.clone()) {
                Ok(uid) => {
                    vals.insert(slot_id, uid);
                }
                Err(e) => diags.push(Diagnostic::new(&l.id, format!("{slot}: {e}"))),
            }
        }
        if let Err(e) = set.link(PolicyId::new(&l.template_id), PolicyId::new(&l.id), vals) {
            diags.push(Diagnostic::new(&l.id, e.to_string()));
        }
    }
    if diags.is_empty() {
        let result = Validator::new(schema.clone()).validate(&set, ValidationMode::Strict);
        for e in result.validation_errors() {
            let id = e.policy_id().to_string();
            let body = bodies.get(&id).map_or("", String::as_str);
            diags.push(diagnostic(&id, e, body));
        }
    }
    if let Err(e) = Entities::from_json_value(c.entities_json(), Some(&schema)) {
        diags.push(Diagnostic::new("entities", e.to_string()));
    }
    if let Some(bytes) = &c.authzen {
        let checked = pdp_core::authzen::TypeMap::parse(bytes).and_then(|m| m.check(&schema));
        if let Err(e) = checked {
            diags.push(Diagnostic::new("authzen", e.to_string()));
        }
    }
    if diags.is_empty() {
        Ok(())
    } else {
        Err(Error::Invalid {
            what: format!("realm {realm:?}"),
            diagnostics: diags,
        })
    }
}

/// Check a resource entity list before it is validated with the realm:
/// a JSON array, and no `User`, `Group` or `Role` (those come from the
/// directory).
pub fn check_resources(entities: &Value) -> Result<()> {
    let Value::Array(list) = entities else {
        return Err(Error::BadRequest("entities must be a JSON array".into()));
    };
    for e in list {
        let ty = e.pointer("/uid/type").and_then(Value::as_str).unwrap_or("");
        if matches!(ty, "User" | "Group" | "Role") {
            return Err(Error::invalid(
                "entities",
                Diagnostic::new(
                    "entities",
                    format!(
                        "{ty} entities come from the directory; use the users, groups and roles APIs"
                    ),
                ),
            ));
        }
    }
    Ok(())
}

/// The realm's Cedar members as a bundle carries them: `schema.cedarschema`,
/// `policies.cedar` (each policy with its `@id`), `links.json`,
/// `entities.json` (groups, roles and resources), and `routes.json` when
/// the realm has routes.
pub fn cedar_members(c: &Content) -> BTreeMap<String, Vec<u8>> {
    use pdp_core::manifest::member;
    let mut policies = String::new();
    for p in &c.policies {
        policies.push_str(&format!(
            "@id({})\n{}\n\n",
            Value::String(p.id.clone()),
            p.body.trim_end()
        ));
    }
    let links: Vec<Value> = c
        .links
        .iter()
        .map(|l| serde_json::json!({"template_id": l.template_id, "new_id": l.id, "values": l.values}))
        .collect();
    let mut out = BTreeMap::new();
    out.insert(member::SCHEMA.to_owned(), c.schema.clone().into_bytes());
    out.insert(member::POLICIES.to_owned(), policies.into_bytes());
    out.insert(
        member::LINKS.to_owned(),
        serde_json::to_vec_pretty(&links).unwrap_or_default(),
    );
    out.insert(
        member::ENTITIES.to_owned(),
        serde_json::to_vec_pretty(&c.entities_json()).unwrap_or_default(),
    );
    if let Some(routes) = &c.routes {
        out.insert(member::ROUTES.to_owned(), routes.clone());
    }
    if let Some(types) = &c.authzen {
        out.insert(member::AUTHZEN.to_owned(), types.clone());
    }
    out
}

/// Check one policy body: a single policy or template, no `@id` of its own
/// (the id is the resource's), and tell whether it is a template.
pub fn check_body(id: &str, body: &str) -> Result<bool> {
    check_id("policy", id)?;
    let template = match Policy::parse(Some(PolicyId::new(id)), body) {
        Ok(p) => {
            if p.annotation("id").is_some() {
                return Err(annotated(id));
            }
            false
        }
        Err(policy_err) => match Template::parse(Some(PolicyId::new(id)), body) {
            Ok(t) => {
                if t.annotation("id").is_some() {
                    return Err(annotated(id));
                }
                true
            }
            // Report the policy parser's error: that is what the text was
            // most likely meant to be.
            Err(_) => {
                return Err(Error::invalid(
                    format!("policy {id:?}"),
                    diagnostic(id, &policy_err, body),
                ));
            }
        },
    };
    Ok(template)
}

fn annotated(id: &str) -> Error {
    Error::invalid(
        format!("policy {id:?}"),
        Diagnostic::new(
            id,
            "remove the @id annotation: the policy's id is its resource id",
        ),
    )
}
