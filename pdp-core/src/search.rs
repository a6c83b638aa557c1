//! The list form of "may P do A on R?": which resources of a type may a
//! principal act on, which subjects may act on a resource, which actions
//! may a principal take on a resource (OpenID AuthZEN's search API).
//!
//! **Exact by construction.** Every entity returned is one for which
//! [`Snapshot::is_authorized`] allows, asked the same way (same gating,
//! same slicing, same policies); nothing else is returned. What makes it
//! fast is never *asking* about candidates that cannot be allowed:
//!
//! - An Allow needs a satisfied `permit`, and a policy whose scope cannot
//!   match is never satisfied (the scope index's argument). So when every
//!   `permit` that can apply to (action, principal type, resource type)
//!   constrains the searched side with `==` or `in`, only the entities
//!   those constraints admit are candidates: `== E` admits `E`, `in G`
//!   admits `G` and everything below it (through the bundle's hierarchy
//!   and, for users, their groups and roles). A `permit` that leaves the
//!   searched side open (no constraint, or only `is T`) makes every entity
//!   of the type a candidate.
//! - Subjects are only ever users who are `Active` (gating denies every
//!   other user before a policy runs).
//!
//! **Pages.** Results come in id order. A page holds at most `limit`
//! results and asks about at most [`MAX_EVALUATIONS_PER_PAGE`] candidates;
//! `next_token` resumes after the last result (or, when the page ended on
//! that bound, after the last candidate asked about), so a client follows
//! `next_token` until there is none, whatever each page holds. A token is bound to
//! the query and to the revision it was made on: on another revision it is
//! refused (`cursor_expired`), and a host that keeps the previous snapshot
//! for a while answers it from that one.

use crate::decision::{Decision, EntityRef, Request, RequestError, Tagged};
use crate::snapshot::Snapshot;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use cedar_policy::{
    ActionConstraint, Effect, EntityTypeName, EntityUid, PolicySet, PrincipalConstraint,
    ResourceConstraint,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;

/// Results per page when the query names no limit.
pub const DEFAULT_LIMIT: usize = 100;
/// The most results one page may hold.
pub const MAX_LIMIT: usize = 1000;
/// The most candidates one page asks `is_authorized` about. A page that
/// reaches it ends early, with fewer than `limit` results (maybe none)
/// and a `next_token` that resumes after the last candidate asked about,
/// so a sparse search over a large directory is answered in bounded
/// steps (each well under a second) instead of one unbounded call.
pub const MAX_EVALUATIONS_PER_PAGE: usize = 10_000;

fn empty_object() -> Value {
    Value::Object(serde_json::Map::new())
}

/// Which page to answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Page {
    /// At most this many results (default [`DEFAULT_LIMIT`], at most [`MAX_LIMIT`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// The `next_token` of the previous page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// Which entities of `resource_type` may `principal` do `action` on?
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceSearch {
    /// Who.
    pub principal: EntityRef,
    /// What.
    pub action: EntityRef,
    /// The type of the resources looked for.
    pub resource_type: String,
    /// What the caller knows about the call (Cedar JSON record).
    #[serde(default = "empty_object")]
    pub context: Value,
    /// Which page.
    #[serde(default)]
    pub page: Page,
}

/// Which entities of `subject_type` may do `action` on `resource`?
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubjectSearch {
    /// The type of the principals looked for.
    pub subject_type: String,
    /// What.
    pub action: EntityRef,
    /// On what.
    pub resource: EntityRef,
    /// What the caller knows about the call (Cedar JSON record).
    #[serde(default = "empty_object")]
    pub context: Value,
    /// Which page.
    #[serde(default)]
    pub page: Page,
}

/// Which actions may `principal` take on `resource`?
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionSearch {
    /// Who.
    pub principal: EntityRef,
    /// On what.
    pub resource: EntityRef,
    /// What the caller knows about the call (Cedar JSON record).
    #[serde(default = "empty_object")]
    pub context: Value,
    /// Which page.
    #[serde(default)]
    pub page: Page,
}

/// One page of results.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Found {
    /// The entities allowed, in id order.
    pub results: Vec<EntityRef>,
    /// Resumes after the last result; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
    /// The bundle revision searched.
    pub revision: u64,
}

/// What a page token carries.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Cursor {
    /// Revision searched.
    r: u64,
    /// The query it continues (a hash).
    q: String,
    /// The last id returned.
    a: String,
}

/// The revision a page token was made on (`None`: not a token of this
/// core). A host holding that revision still answers it there.
pub fn token_revision(token: &str) -> Option<u64> {
    let bytes = B64.decode(token).ok()?;
    serde_json::from_slice::<Cursor>(&bytes).ok().map(|c| c.r)
}

/// Every id of an entity type (bundle entities and, for the user type,
/// directory users), sorted, per type; built once per snapshot on a
/// search's first need, so a page resumes by position instead of building
/// and sorting the list again.
#[derive(Debug, Default)]
pub(crate) struct SortedIds {
    by_type:
        std::sync::Mutex<std::collections::HashMap<EntityTypeName, std::sync::Arc<[Box<str>]>>>,
    /// The candidates some scope constraints admit (keyed by type, side
    /// and constraints), sorted, so that the pages of a narrowed search
    /// resume by position too; at most [`NARROWED_KEPT`] lists are kept.
    narrowed: std::sync::Mutex<std::collections::HashMap<String, std::sync::Arc<[Box<str>]>>>,
}

/// How many narrowed candidate lists one snapshot keeps (one per distinct
/// set of scope constraints searched; a bound, not a working-set guess).
const NARROWED_KEPT: usize = 64;

impl SortedIds {
    /// The list kept under `key`, or `build`'s, kept.
    fn narrowed(
        &self,
        key: String,
        build: impl FnOnce() -> Vec<String>,
    ) -> std::sync::Arc<[Box<str>]> {
        if let Ok(map) = self.narrowed.lock()
            && let Some(ids) = map.get(&key)
        {
            return std::sync::Arc::clone(ids);
        }
        let mut ids = build();
        ids.sort_unstable();
        ids.dedup();
        let ids: std::sync::Arc<[Box<str>]> = ids.into_iter().map(String::into_boxed_str).collect();
        if let Ok(mut map) = self.narrowed.lock() {
            if map.len() >= NARROWED_KEPT {
                map.clear();
            }
            map.insert(key, std::sync::Arc::clone(&ids));
        }
        ids
    }

    fn of(&self, snap: &Snapshot, ty: &EntityTypeName) -> std::sync::Arc<[Box<str>]> {
        if let Ok(map) = self.by_type.lock()
            && let Some(ids) = map.get(ty)
        {
            return std::sync::Arc::clone(ids);
        }
        let statics = snap.statics();
        let mut ids: Vec<Box<str>> = statics
            .map
            .keys()
            .filter(|uid| uid.type_name() == ty)
            .map(|uid| uid.id().unescaped().into())
            .collect();
        if ty == &statics.user_type
            && let Some(dir) = snap.directory()
        {
            ids.extend(dir.iter().map(|u| u.id().into()));
        }
        ids.sort_unstable();
        ids.dedup();
        let ids: std::sync::Arc<[Box<str>]> = ids.into();
        if let Ok(mut map) = self.by_type.lock() {
            map.insert(ty.clone(), std::sync::Arc::clone(&ids));
        }
        ids
    }
}

/// Which side of the request is searched.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Principal,
    Resource,
}

impl Snapshot {
    /// The entities of `q.resource_type` that `q.principal` may do
    /// `q.action` on, one page.
    pub fn search_resources(&self, q: &ResourceSearch) -> Result<Found, RequestError> {
        self.search_resources_asking(q, MAX_EVALUATIONS_PER_PAGE)
    }

    /// [`Snapshot::search_resources`], asking about at most `budget`
    /// candidates (tests page with small budgets).
    fn search_resources_asking(
        &self,
        q: &ResourceSearch,
        budget: usize,
    ) -> Result<Found, RequestError> {
        let key = query_key(
            "resource",
            &(&q.principal, &q.action, &q.resource_type, &q.context),
        );
        let (limit, after) = self.page(&q.page, &key)?;
        let ty = self.type_name(&q.resource_type)?;
        let action = self.uid(&q.action)?;
        let principal = self.uid(&q.principal)?;
        self.applies(&action, principal.type_name(), &ty)?;
        // A user who may not be authorized at all is allowed nothing.
        if principal.type_name() == &self.statics().user_type
            && let Some(dir) = self.directory()
            && !dir
                .get(&q.principal.id)
                .is_some_and(|u| u.state().is_authorizable())
        {
            return Ok(self.found(Vec::new(), None, &key));
        }
        let scoped = self.scoped_policies(&action, principal.type_name(), &ty);
        let candidates = self.candidates(&ty, Side::Resource, scoped, after.as_deref());
        self.collect(candidates, (limit, budget), &key, &q.resource_type, |id| {
            Request {
                principal: q.principal.clone(),
                action: q.action.clone(),
                resource: EntityRef::new(q.resource_type.clone(), id),
                context: q.context.clone(),
                entities: Vec::new(),
            }
        })
    }

    /// The entities of `q.subject_type` that may do `q.action` on
    /// `q.resource`, one page. Users are returned only when `Active`.
    pub fn search_subjects(&self, q: &SubjectSearch) -> Result<Found, RequestError> {
        self.search_subjects_asking(q, MAX_EVALUATIONS_PER_PAGE)
    }

    /// [`Snapshot::search_subjects`], asking about at most `budget`
    /// candidates.
    fn search_subjects_asking(
        &self,
        q: &SubjectSearch,
        budget: usize,
    ) -> Result<Found, RequestError> {
        let key = query_key(
            "subject",
            &(&q.subject_type, &q.action, &q.resource, &q.context),
        );
        let (limit, after) = self.page(&q.page, &key)?;
        let ty = self.type_name(&q.subject_type)?;
        let action = self.uid(&q.action)?;
        let resource = self.uid(&q.resource)?;
        self.applies(&action, &ty, resource.type_name())?;
        let scoped = self.scoped_policies(&action, &ty, resource.type_name());
        let candidates = self.candidates(&ty, Side::Principal, scoped, after.as_deref());
        self.collect(candidates, (limit, budget), &key, &q.subject_type, |id| {
            Request {
                principal: EntityRef::new(q.subject_type.clone(), id),
                action: q.action.clone(),
                resource: q.resource.clone(),
                context: q.context.clone(),
                entities: Vec::new(),
            }
        })
    }

    /// The actions `q.principal` may take on `q.resource`, one page: every
    /// action the schema applies to their types (without a schema, every
    /// action a policy names) that is allowed. An action whose context
    /// does not fit what the caller sent is not allowed, so not returned.
    pub fn search_actions(&self, q: &ActionSearch) -> Result<Found, RequestError> {
        let key = query_key("action", &(&q.principal, &q.resource, &q.context));
        let (limit, after) = self.page(&q.page, &key)?;
        let principal = self.uid(&q.principal)?;
        let resource = self.uid(&q.resource)?;
        let mut actions: Vec<EntityUid> = match self.schema() {
            Some(schema) => schema
                .actions()
                .filter(|a| {
                    schema
                        .principals_for_action(a)
                        .is_some_and(|mut p| p.any(|t| t == principal.type_name()))
                        && schema
                            .resources_for_action(a)
                            .is_some_and(|mut r| r.any(|t| t == resource.type_name()))
                })
                .cloned()
                .collect(),
            None => named_actions(self.policy_set()),
        };
        actions.sort_by(|a, b| a.id().unescaped().cmp(b.id().unescaped()));
        actions.dedup();
        let mut results = Vec::new();
        let mut more = false;
        for a in actions {
            let id = a.id().unescaped().to_owned();
            if after.as_deref().is_some_and(|after| id.as_str() <= after) {
                continue;
            }
            let request = Request {
                principal: q.principal.clone(),
                action: EntityRef::new(a.type_name().to_string(), id.clone()),
                resource: q.resource.clone(),
                context: q.context.clone(),
                entities: Vec::new(),
            };
            // A context the action's schema refuses is no Allow.
            let Ok(answer) = self.is_authorized(&request) else {
                continue;
            };
            if answer.decision == Decision::Allow {
                if results.len() == limit {
                    more = true;
                    break;
                }
                results.push(request.action);
            }
        }
        let next = more.then(|| results.last().map(|r| r.id.clone())).flatten();
        Ok(self.found(results, next, &key))
    }

    /// A search from JSON: `kind` is `resource`, `subject` or `action`.
    pub fn search_json(&self, kind: &str, json: &[u8]) -> Tagged<Found> {
        fn parse<T: for<'de> Deserialize<'de>>(json: &[u8]) -> Result<T, RequestError> {
            serde_json::from_slice(json).map_err(|e| RequestError::InvalidJson(e.to_string()))
        }
        let result = match kind {
            "resource" => parse(json).and_then(|q| self.search_resources(&q)),
            "subject" => parse(json).and_then(|q| self.search_subjects(&q)),
            "action" => parse(json).and_then(|q| self.search_actions(&q)),
            other => Err(RequestError::InvalidRequest(format!(
                "unknown search {other:?} (resource, subject or action)"
            ))),
        };
        result.into()
    }

    fn type_name(&self, text: &str) -> Result<EntityTypeName, RequestError> {
        let ty = self
            .statics()
            .types
            .get(text)
            .map_err(|e| RequestError::InvalidRequest(format!("type {text:?}: {e}")))?;
        let known = self.schema().map_or_else(
            || {
                ty == self.statics().user_type
                    || self.statics().map.keys().any(|u| u.type_name() == &ty)
            },
            |schema| schema.entity_types().any(|t| t == &ty),
        );
        if !known {
            return Err(RequestError::InvalidRequest(format!(
                "unknown entity type {text:?}"
            )));
        }
        Ok(ty)
    }

    /// With a schema, the question must be one the schema lets be asked
    /// (the action exists and applies to these principal and resource
    /// types), as a decision would refuse it; refused up front, so the
    /// answer never depends on whether a candidate exists.
    fn applies(
        &self,
        action: &EntityUid,
        principal: &EntityTypeName,
        resource: &EntityTypeName,
    ) -> Result<(), RequestError> {
        let Some(schema) = self.schema() else {
            return Ok(());
        };
        if !schema.actions().any(|a| a == action) {
            return Err(RequestError::InvalidRequest(format!(
                "{action} is not an action of the schema"
            )));
        }
        let principals = schema
            .principals_for_action(action)
            .is_some_and(|mut p| p.any(|t| t == principal));
        let resources = schema
            .resources_for_action(action)
            .is_some_and(|mut r| r.any(|t| t == resource));
        if !(principals && resources) {
            return Err(RequestError::InvalidRequest(format!(
                "{action} does not apply to principals of type {principal} and resources of type {resource}"
            )));
        }
        Ok(())
    }

    fn uid(&self, r: &EntityRef) -> Result<EntityUid, RequestError> {
        let ty = self
            .statics()
            .types
            .get(&r.ty)
            .map_err(|e| RequestError::InvalidRequest(format!("type {:?}: {e}", r.ty)))?;
        Ok(crate::slice::Statics::uid(&ty, &r.id))
    }

    /// The limit and the id to resume after, from a page.
    fn page(&self, page: &Page, key: &str) -> Result<(usize, Option<String>), RequestError> {
        let limit = page.limit.unwrap_or(DEFAULT_LIMIT);
        if limit == 0 || limit > MAX_LIMIT {
            return Err(RequestError::InvalidRequest(format!(
                "page.limit must be 1 to {MAX_LIMIT}"
            )));
        }
        let Some(token) = &page.token else {
            return Ok((limit, None));
        };
        let cursor = B64
            .decode(token)
            .ok()
            .and_then(|b| serde_json::from_slice::<Cursor>(&b).ok())
            .ok_or_else(|| RequestError::InvalidCursor("not a page token".into()))?;
        if cursor.q != key {
            return Err(RequestError::InvalidCursor(
                "the page token belongs to another query".into(),
            ));
        }
        if cursor.r != self.revision() {
            return Err(RequestError::CursorExpired {
                token: cursor.r,
                served: self.revision(),
            });
        }
        Ok((limit, Some(cursor.a)))
    }

    fn found(&self, results: Vec<EntityRef>, next: Option<String>, key: &str) -> Found {
        let next_token = next.map(|a| {
            let cursor = Cursor {
                r: self.revision(),
                q: key.to_owned(),
                a,
            };
            B64.encode(serde_json::to_vec(&cursor).unwrap_or_default())
        });
        Found {
            results,
            next_token,
            revision: self.revision(),
        }
    }

    /// The ids of the entities of `ty` that the constraints on `side` of
    /// the `permit` policies in `scoped` (the policies that can apply;
    /// `None`: not indexed, so any) admit, in id order, after `after`.
    fn candidates<'s>(
        &'s self,
        ty: &EntityTypeName,
        side: Side,
        scoped: Option<&PolicySet>,
        after: Option<&str>,
    ) -> Box<dyn Iterator<Item = String> + 's> {
        // What the permits admit: `None` for any entity of the type.
        let mut exact: BTreeSet<EntityUid> = BTreeSet::new();
        let mut below: BTreeSet<EntityUid> = BTreeSet::new();
        let mut open = scoped.is_none();
        let permits = scoped
            .iter()
            .flat_map(|s| s.policies())
            .filter(|p| p.effect() == Effect::Permit);
        for p in permits {
            let (eq, within, any) = match side {
                Side::Principal => match p.principal_constraint() {
                    PrincipalConstraint::Any | PrincipalConstraint::Is(_) => (None, None, true),
                    PrincipalConstraint::Eq(u) => (Some(u), None, false),
                    PrincipalConstraint::In(u) | PrincipalConstraint::IsIn(_, u) => {
                        (None, Some(u), false)
                    }
                },
                Side::Resource => match p.resource_constraint() {
                    ResourceConstraint::Any | ResourceConstraint::Is(_) => (None, None, true),
                    ResourceConstraint::Eq(u) => (Some(u), None, false),
                    ResourceConstraint::In(u) | ResourceConstraint::IsIn(_, u) => {
                        (None, Some(u), false)
                    }
                },
            };
            open |= any;
            exact.extend(eq);
            below.extend(within);
        }
        let statics = self.statics();
        let is_user_type = ty == &statics.user_type;
        if open {
            // Every entity of the type: from the sorted ids, resuming by
            // position; users asked about as principals only when Active.
            let ids = self.search_ids().of(self, ty);
            let start = after.map_or(0, |a| ids.partition_point(|id| &**id <= a));
            let directory = self
                .directory()
                .filter(|_| is_user_type && side == Side::Principal);
            return Box::new((start..ids.len()).filter_map(move |i| {
                let id = ids.get(i)?;
                if let Some(dir) = directory
                    && !dir.get(id).is_none_or(|u| u.state().is_authorizable())
                {
                    return None;
                }
                Some(id.to_string())
            }));
        }
        // The narrowed list: built on the first page, then resumed by
        // position like the open one.
        let key = format!("{ty}|{}|{exact:?}|{below:?}", side == Side::Principal);
        let ids = self
            .search_ids()
            .narrowed(key, || self.narrowed(ty, side, &exact, &below));
        let start = after.map_or(0, |a| ids.partition_point(|id| &**id <= a));
        Box::new((start..ids.len()).filter_map(move |i| ids.get(i).map(|id| id.to_string())))
    }

    /// Every entity of `ty` that the `==` targets in `exact` or the `in`
    /// targets in `below` admit (for users, through their groups and
    /// roles; as principals, Active users only), unsorted.
    fn narrowed(
        &self,
        ty: &EntityTypeName,
        side: Side,
        exact: &BTreeSet<EntityUid>,
        below: &BTreeSet<EntityUid>,
    ) -> Vec<String> {
        let statics = self.statics();
        let is_user_type = ty == &statics.user_type;
        // The groups and roles at or below an `in` target: a user is below
        // the target when one of their direct groups or roles is.
        let containers: BTreeSet<&str> = if is_user_type {
            statics
                .map
                .iter()
                .filter(|(uid, e)| {
                    below.contains(*uid) || e.ancestors.iter().any(|a| below.contains(a))
                })
                .filter(|(uid, _)| {
                    uid.type_name() == &statics.group_type || uid.type_name() == &statics.role_type
                })
                .map(|(uid, _)| uid.id().unescaped())
                .collect()
        } else {
            BTreeSet::new()
        };
        let admits = |uid: &EntityUid, ancestors: &[EntityUid]| {
            exact.contains(uid)
                || below.contains(uid)
                || ancestors.iter().any(|a| below.contains(a))
        };
        let mut out: Vec<String> = statics
            .map
            .iter()
            .filter(|(uid, _)| uid.type_name() == ty)
            .filter(|(uid, e)| admits(uid, &e.ancestors))
            .map(|(uid, _)| uid.id().unescaped().to_owned())
            .collect();
        if is_user_type && let Some(dir) = self.directory() {
            let wanted = |u: &crate::directory::UserRef<'_>| {
                // Only Active users are ever allowed as principals.
                (side == Side::Resource || u.state().is_authorizable())
                    && (exact.contains(&crate::slice::Statics::uid(ty, u.id()))
                        || u.groups().chain(u.roles()).any(|g| containers.contains(g)))
            };
            if containers.is_empty() {
                // Only `==` constraints: look each one up.
                out.extend(
                    exact
                        .iter()
                        .filter(|u| u.type_name() == ty)
                        .filter_map(|u| dir.get(u.id().unescaped()))
                        .filter(|u| wanted(u))
                        .map(|u| u.id().to_owned()),
                );
            } else {
                out.extend(dir.iter().filter(|u| wanted(u)).map(|u| u.id().to_owned()));
            }
        }
        out
    }

    /// Ask about each candidate in order until a page is full (and one
    /// more is allowed, so the page knows whether another follows) or
    /// `budget` candidates were asked about.
    fn collect(
        &self,
        candidates: impl Iterator<Item = String>,
        (limit, budget): (usize, usize),
        key: &str,
        ty: &str,
        request: impl Fn(&str) -> Request,
    ) -> Result<Found, RequestError> {
        let mut results = Vec::new();
        let mut candidates = candidates.peekable();
        let mut asked = 0usize;
        let mut next = None;
        while let Some(id) = candidates.next() {
            let answer = self.is_authorized(&request(&id))?;
            asked += 1;
            if answer.decision == Decision::Allow {
                if results.len() == limit {
                    next = results.last().map(|r: &EntityRef| r.id.clone());
                    break;
                }
                results.push(EntityRef::new(ty, id.clone()));
            }
            if asked >= budget && candidates.peek().is_some() {
                next = Some(id);
                break;
            }
        }
        Ok(self.found(results, next, key))
    }
}

/// Every action a policy names in its scope (searching without a schema).
fn named_actions(set: &PolicySet) -> Vec<EntityUid> {
    let mut out = Vec::new();
    for p in set.policies() {
        match p.action_constraint() {
            ActionConstraint::Any => {}
            ActionConstraint::Eq(a) => out.push(a),
            ActionConstraint::In(list) => out.extend(list),
        }
    }
    out
}

/// A short hash naming the query a page token continues.
fn query_key(kind: &str, parts: &impl Serialize) -> String {
    let mut h = Sha256::new();
    h.update(kind.as_bytes());
    h.update(serde_json::to_vec(parts).unwrap_or_default());
    let digest = h.finalize();
    digest.iter().take(12).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::{BundleHeader, Limits, Trust, write_archive};
    use crate::manifest::BundleKind;

    fn synthetic(users: usize) -> Snapshot {
        load_files(crate::synth::realm(users, 11))
    }

    fn load_files(files: std::collections::BTreeMap<String, Vec<u8>>) -> Snapshot {
        let header = BundleHeader {
            realm: "t".into(),
            revision: 1,
            kind: BundleKind::Snapshot,
            base_revision: None,
            created_at: 0,
            identity: None,
        };
        let bytes = write_archive(&header, &files, None, false).unwrap();
        let options = crate::LoadOptions {
            trust: Trust::Dev,
            limits: Limits::default(),
        };
        crate::load(&bytes, &options, None).unwrap()
    }

    fn allowed(snap: &Snapshot, principal: &str, resource: &str) -> bool {
        snap.is_authorized(&Request {
            principal: EntityRef::new("User", principal),
            action: EntityRef::new("Action", "readDocument"),
            resource: EntityRef::new("Document", resource),
            context: serde_json::json!({}),
            entities: Vec::new(),
        })
        .unwrap()
        .decision
            == Decision::Allow
    }

    /// A page ends after `budget` candidates however few results it has,
    /// and following `next_token` still yields exactly the allowed ones.
    #[test]
    fn pages_stop_at_the_evaluation_budget_and_lose_nothing() {
        let snap = synthetic(60);
        let users = snap.search_ids().of(&snap, &snap.statics().user_type);
        let doc = "doc1";
        let want: Vec<String> = users
            .iter()
            .filter(|u| allowed(&snap, u, doc))
            .map(|u| u.to_string())
            .collect();
        assert!(!want.is_empty() && want.len() < users.len(), "{want:?}");
        let (mut got, mut token, mut pages, mut short) = (Vec::new(), None, 0, 0);
        loop {
            let q = SubjectSearch {
                subject_type: "User".into(),
                action: EntityRef::new("Action", "readDocument"),
                resource: EntityRef::new("Document", doc),
                context: serde_json::json!({}),
                page: Page {
                    limit: Some(1000),
                    token: token.take(),
                },
            };
            let found = snap.search_subjects_asking(&q, 7).unwrap();
            pages += 1;
            assert!(found.results.len() <= 7);
            if found.next_token.is_some() && found.results.len() < 7 {
                short += 1;
            }
            got.extend(found.results.into_iter().map(|r| r.id));
            match found.next_token {
                Some(t) => token = Some(t),
                None => break,
            }
            assert!(pages < 100, "runaway paging");
        }
        assert_eq!(got, want);
        let active = users
            .iter()
            .filter(|u| snap.user(u).is_some_and(|x| x.state().is_authorizable()))
            .count();
        assert!(pages >= active / 7, "{pages} pages for {active} candidates");
        assert!(short > 0, "no page ended on the budget with room left");
    }

    /// A question the schema refuses (the action does not apply to the
    /// searched type) is refused whether or not entities of the type
    /// exist, as the decision on any one of them would be.
    #[test]
    fn a_question_the_schema_refuses_is_refused_with_or_without_candidates() {
        let with = synthetic(20);
        let mut files = crate::synth::realm(20, 11);
        files.insert("entities.json".into(), b"[]".to_vec());
        let without = load_files(files);
        let user = with.search_ids().of(&with, &with.statics().user_type)[0].to_string();
        for snap in [&with, &without] {
            let q = ResourceSearch {
                principal: EntityRef::new("User", user.clone()),
                action: EntityRef::new("Action", "readDocument"),
                resource_type: "Folder".into(),
                context: serde_json::json!({}),
                page: Page::default(),
            };
            assert!(
                matches!(
                    snap.search_resources(&q),
                    Err(RequestError::InvalidRequest(_))
                ),
                "{:?}",
                snap.search_resources(&q)
            );
            let unknown = ResourceSearch {
                action: EntityRef::new("Action", "fly"),
                resource_type: "Document".into(),
                ..q
            };
            assert!(matches!(
                snap.search_resources(&unknown),
                Err(RequestError::InvalidRequest(_))
            ));
        }
    }
}
