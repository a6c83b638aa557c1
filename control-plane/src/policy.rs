//! Cedar policies, templates and template links, the realm's schema
//! (versioned) and its resource entities. Every change is validated, with
//! the change applied, against the schema before it is committed: a change
//! that does not validate is refused with Cedar's diagnostics and changes
//! nothing.

use crate::db::{Db, live_realm, record_change};
use crate::error::{Diagnostic, Error, Result};
use crate::realm::check_id;
use cedar_policy::{
    Entities, EntityUid, Policy, PolicyId, PolicySet, Schema, SlotId, Template, ValidationMode,
    Validator,
};
use rusqlite::{OptionalExtension, Transaction, params};
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
fn diagnostic(subject: &str, e: &dyn miette::Diagnostic, text: &str) -> Diagnostic {
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

/// Everything of a realm that Cedar validates together.
struct Content {
    schema: String,
    policies: Vec<(String, bool, String)>,
    links: Vec<Link>,
    resources: Value,
}

fn load_content(tx: &Transaction<'_>, realm: &str) -> Result<Content> {
    let schema = current_schema_text(tx, realm)?;
    let mut stmt =
        tx.prepare_cached("SELECT id, template, body FROM policies WHERE realm = ?1 ORDER BY id")?;
    let policies = stmt
        .query_map([realm], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    Ok(Content {
        schema,
        policies,
        links: links_in(tx, realm)?,
        resources: resources_in(tx, realm)?,
    })
}

/// Compile and validate a realm's content strictly against its schema;
/// every finding is returned, each naming the policy (or `schema`,
/// `entities`, a link id) it is about.
fn validate(tx: &Transaction<'_>, realm: &str, c: &Content) -> Result<()> {
    let schema = parse_schema(&c.schema)?;
    let mut diags = Vec::new();
    let mut set = PolicySet::new();
    let mut bodies = HashMap::new();
    for (id, template, body) in &c.policies {
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
    if let Err(e) = Entities::from_json_value(entities_json(tx, realm, c)?, Some(&schema)) {
        diags.push(Diagnostic::new("entities", e.to_string()));
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

fn entities_json(tx: &Transaction<'_>, realm: &str, c: &Content) -> Result<Value> {
    let mut all = crate::group::cedar_entities(tx, realm)?;
    if let Value::Array(r) = &c.resources {
        all.extend(r.iter().cloned());
    }
    Ok(Value::Array(all))
}

/// The current schema's text.
pub(crate) fn current_schema_text(tx: &Transaction<'_>, realm: &str) -> Result<String> {
    live_realm(tx, realm)?;
    tx.query_row(
        "SELECT text FROM schemas WHERE realm = ?1 ORDER BY version DESC LIMIT 1",
        [realm],
        |r| r.get(0),
    )
    .optional()?
    .ok_or_else(|| Error::not_found("schema of realm", realm))
}

/// The current schema, parsed.
pub(crate) fn current_schema(tx: &Transaction<'_>, realm: &str) -> Result<Schema> {
    parse_schema(&current_schema_text(tx, realm)?)
}

fn links_in(tx: &Transaction<'_>, realm: &str) -> Result<Vec<Link>> {
    let mut stmt = tx.prepare_cached(
        "SELECT id, template_id, slots FROM template_links WHERE realm = ?1 ORDER BY id",
    )?;
    let rows: Vec<(String, String, String)> = stmt
        .query_map([realm], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    rows.into_iter()
        .map(|(id, template_id, slots)| {
            Ok(Link {
                values: serde_json::from_str(&slots)
                    .map_err(|e| Error::Internal(format!("link {id:?}: {e}")))?,
                id,
                template_id,
            })
        })
        .collect()
}

fn resources_in(tx: &Transaction<'_>, realm: &str) -> Result<Value> {
    let text: Option<String> = tx
        .query_row(
            "SELECT entities FROM resources WHERE realm = ?1",
            [realm],
            |r| r.get(0),
        )
        .optional()?;
    match text {
        Some(t) => serde_json::from_str(&t).map_err(|e| Error::Internal(format!("resources: {e}"))),
        None => Ok(Value::Array(vec![])),
    }
}

/// Check one policy body: a single policy or template, no `@id` of its own
/// (the id is the resource's), and tell whether it is a template.
fn check_body(id: &str, body: &str) -> Result<bool> {
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

impl Db {
    /// Create a policy or template; validated with the rest of the realm.
    pub fn create_policy(
        &self,
        realm: &str,
        id: &str,
        input: &PolicyInput,
        now: i64,
    ) -> Result<StoredPolicy> {
        let template = check_body(id, &input.body)?;
        self.write(|tx| {
            let mut c = load_content(tx, realm)?;
            if c.policies.iter().any(|(p, _, _)| p == id) || c.links.iter().any(|l| l.id == id) {
                return Err(Error::AlreadyExists {
                    kind: "policy",
                    id: id.to_owned(),
                });
            }
            c.policies.push((id.to_owned(), template, input.body.clone()));
            validate(tx, realm, &c)?;
            tx.execute(
                "INSERT INTO policies (realm, id, template, body, description, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
                params![realm, id, template, input.body, input.description, now],
            )?;
            record_change(tx, realm, None, now)?;
            policy_in(tx, realm, id)
        })
    }

    /// Replace a policy's text; a template with links cannot become a
    /// static policy.
    pub fn update_policy(
        &self,
        realm: &str,
        id: &str,
        input: &PolicyInput,
        now: i64,
    ) -> Result<StoredPolicy> {
        let template = check_body(id, &input.body)?;
        self.write(|tx| {
            let mut c = load_content(tx, realm)?;
            let Some(slot) = c.policies.iter_mut().find(|(p, _, _)| p == id) else {
                return Err(Error::not_found("policy", id));
            };
            *slot = (id.to_owned(), template, input.body.clone());
            validate(tx, realm, &c)?;
            tx.execute(
                "UPDATE policies SET template = ?3, body = ?4, description = ?5, updated_at = ?6
                 WHERE realm = ?1 AND id = ?2",
                params![realm, id, template, input.body, input.description, now],
            )?;
            record_change(tx, realm, None, now)?;
            policy_in(tx, realm, id)
        })
    }

    /// Delete a policy; a template that still has links is refused (409).
    pub fn delete_policy(&self, realm: &str, id: &str, now: i64) -> Result<()> {
        self.write(|tx| {
            let c = load_content(tx, realm)?;
            if !c.policies.iter().any(|(p, _, _)| p == id) {
                return Err(Error::not_found("policy", id));
            }
            let linked: Vec<&str> = c
                .links
                .iter()
                .filter(|l| l.template_id == id)
                .map(|l| l.id.as_str())
                .collect();
            if !linked.is_empty() {
                return Err(Error::Conflict(format!(
                    "template {id:?} still has links: {}",
                    linked.join(", ")
                )));
            }
            tx.execute(
                "DELETE FROM policies WHERE realm = ?1 AND id = ?2",
                params![realm, id],
            )?;
            record_change(tx, realm, None, now)
        })
    }

    /// A policy or template.
    pub fn policy(&self, realm: &str, id: &str) -> Result<StoredPolicy> {
        self.read(|tx| {
            live_realm(tx, realm)?;
            policy_in(tx, realm, id)
        })
    }

    /// Every policy and template of the realm, by id.
    pub fn policies(&self, realm: &str) -> Result<Vec<StoredPolicy>> {
        self.read(|tx| {
            live_realm(tx, realm)?;
            let ids: Vec<String> = tx
                .prepare("SELECT id FROM policies WHERE realm = ?1 ORDER BY id")?
                .query_map([realm], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            ids.iter().map(|id| policy_in(tx, realm, id)).collect()
        })
    }

    /// Link a template; validated like a policy.
    pub fn create_link(&self, realm: &str, link: &Link, now: i64) -> Result<Link> {
        check_id("policy", &link.id)?;
        self.write(|tx| {
            let mut c = load_content(tx, realm)?;
            if c.policies.iter().any(|(p, _, _)| *p == link.id)
                || c.links.iter().any(|l| l.id == link.id)
            {
                return Err(Error::AlreadyExists {
                    kind: "policy",
                    id: link.id.clone(),
                });
            }
            if !c
                .policies
                .iter()
                .any(|(p, t, _)| *p == link.template_id && *t)
            {
                return Err(Error::not_found("template", &link.template_id));
            }
            c.links.push(link.clone());
            validate(tx, realm, &c)?;
            tx.execute(
                "INSERT INTO template_links (realm, id, template_id, slots, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    realm,
                    link.id,
                    link.template_id,
                    serde_json::to_string(&link.values).unwrap_or_default(),
                    now
                ],
            )?;
            record_change(tx, realm, None, now)?;
            Ok(link.clone())
        })
    }

    /// Remove a template link.
    pub fn delete_link(&self, realm: &str, id: &str, now: i64) -> Result<()> {
        self.write(|tx| {
            live_realm(tx, realm)?;
            let n = tx.execute(
                "DELETE FROM template_links WHERE realm = ?1 AND id = ?2",
                params![realm, id],
            )?;
            if n == 0 {
                return Err(Error::not_found("link", id));
            }
            record_change(tx, realm, None, now)
        })
    }

    /// Every template link of the realm.
    pub fn links(&self, realm: &str) -> Result<Vec<Link>> {
        self.read(|tx| {
            live_realm(tx, realm)?;
            links_in(tx, realm)
        })
    }

    /// Submit a new schema version. Refused (422) unless every policy,
    /// link, entity and user of the realm validates against it.
    pub fn put_schema(&self, realm: &str, text: &str, now: i64) -> Result<SchemaVersion> {
        let schema = parse_schema(text)?;
        self.write(|tx| {
            let mut c = load_content(tx, realm)?;
            c.schema = text.to_owned();
            validate(tx, realm, &c)?;
            let mut bad = Vec::new();
            for_each_user(tx, realm, |u| {
                if let Err(Error::Invalid { diagnostics, .. }) =
                    crate::user::canonical(&u, &schema, realm)
                {
                    bad.extend(diagnostics.into_iter().map(|mut d| {
                        d.subject = format!("user {}", u.id);
                        d
                    }));
                }
                Ok(bad.len() < 100)
            })?;
            if !bad.is_empty() {
                return Err(Error::Invalid {
                    what: "schema".into(),
                    diagnostics: bad,
                });
            }
            let version: i64 = tx.query_row(
                "SELECT COALESCE(MAX(version), 0) + 1 FROM schemas WHERE realm = ?1",
                [realm],
                |r| r.get(0),
            )?;
            tx.execute(
                "INSERT INTO schemas (realm, version, text, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![realm, version, text, now],
            )?;
            record_change(tx, realm, None, now)?;
            Ok(SchemaVersion {
                version,
                text: text.to_owned(),
                created_at: now,
            })
        })
    }

    /// A schema version (the current one when `version` is `None`).
    pub fn schema(&self, realm: &str, version: Option<i64>) -> Result<SchemaVersion> {
        self.read(|tx| {
            live_realm(tx, realm)?;
            tx.query_row(
                "SELECT version, text, created_at FROM schemas WHERE realm = ?1
                 AND (?2 IS NULL OR version = ?2) ORDER BY version DESC LIMIT 1",
                params![realm, version],
                |r| {
                    Ok(SchemaVersion {
                        version: r.get(0)?,
                        text: r.get(1)?,
                        created_at: r.get(2)?,
                    })
                },
            )
            .optional()?
            .ok_or_else(|| {
                Error::not_found(
                    "schema version",
                    version.map_or("current".into(), |v| v.to_string()),
                )
            })
        })
    }

    /// Replace the realm's resource entities (Cedar JSON entity list; not
    /// `User`, `Group` or `Role`, which come from the directory).
    pub fn put_resources(&self, realm: &str, entities: &Value, now: i64) -> Result<()> {
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
        self.write(|tx| {
            let mut c = load_content(tx, realm)?;
            c.resources = entities.clone();
            validate(tx, realm, &c)?;
            tx.execute(
                "INSERT INTO resources (realm, entities) VALUES (?1, ?2)
                 ON CONFLICT (realm) DO UPDATE SET entities = excluded.entities",
                params![realm, entities.to_string()],
            )?;
            record_change(tx, realm, None, now)
        })
    }
}

fn policy_in(tx: &Transaction<'_>, realm: &str, id: &str) -> Result<StoredPolicy> {
    tx.query_row(
        "SELECT template, body, description, created_at, updated_at FROM policies
         WHERE realm = ?1 AND id = ?2",
        params![realm, id],
        |r| {
            Ok(StoredPolicy {
                id: id.to_owned(),
                template: r.get(0)?,
                body: r.get(1)?,
                description: r.get(2)?,
                created_at: r.get(3)?,
                updated_at: r.get(4)?,
            })
        },
    )
    .optional()?
    .ok_or_else(|| Error::not_found("policy", id))
}

/// Call `f` with every user of the realm, by id, until it returns false.
pub(crate) fn for_each_user(
    tx: &Transaction<'_>,
    realm: &str,
    mut f: impl FnMut(crate::user::User) -> Result<bool>,
) -> Result<()> {
    let ids: Vec<String> = tx
        .prepare("SELECT id FROM users WHERE realm = ?1 ORDER BY id")?
        .query_map([realm], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for id in ids {
        if !f(crate::user::user_in(tx, realm, &id)?)? {
            break;
        }
    }
    Ok(())
}

/// The realm's Cedar members as a bundle carries them: `schema.cedarschema`,
/// `policies.cedar` (each policy with its `@id`), `links.json`,
/// `entities.json` (groups, roles and resources).
pub(crate) fn cedar_members(
    tx: &Transaction<'_>,
    realm: &str,
) -> Result<BTreeMap<String, Vec<u8>>> {
    use pdp_core::manifest::member;
    let c = load_content(tx, realm)?;
    let mut policies = String::new();
    for (id, _, body) in &c.policies {
        policies.push_str(&format!(
            "@id({})\n{}\n\n",
            Value::String(id.clone()),
            body.trim_end()
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
        serde_json::to_vec_pretty(&entities_json(tx, realm, &c)?).unwrap_or_default(),
    );
    Ok(out)
}
