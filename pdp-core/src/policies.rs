//! Compiling `policies.cedar` (+ `links.json`) into a Cedar `PolicySet`:
//! ids from `@id("...")` annotations, template links, strict validation
//! against the schema, and the entity literals the policies dereference.

use crate::bundle::BundleError;
use crate::manifest::member;
use cedar_policy::{
    EntityTypeName, EntityUid, PolicyId, PolicySet, Schema, SlotId, ValidationMode, Validator,
};
use serde::Deserialize;
use std::collections::{BTreeSet, HashMap};
use std::str::FromStr;

/// A compiled policy set and what the slicer needs to know about it.
#[derive(Debug, Clone)]
pub(crate) struct CompiledPolicies {
    pub set: PolicySet,
    /// Entity literals inside policy conditions (their data may be read, so
    /// every slice includes them). Scope literals are not listed: `==` and
    /// `in` on them never read their data.
    pub literals: Vec<EntityUid>,
    /// The longest chain of entity dereferences any condition performs from
    /// each root (`resource.owner.manager` is 2 from `resource`; `x in y`
    /// and `x has a` dereference `x`). Entities further than this from every
    /// root are never read, so the slicer stops there.
    pub depths: Depths,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Link {
    template_id: String,
    new_id: String,
    values: HashMap<String, serde_json::Value>,
}

/// 1-based line and column of a byte offset.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset.min(text.len())).unwrap_or("");
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// Position of the first labelled span of a Cedar diagnostic.
pub(crate) fn diag_position(diag: &dyn miette::Diagnostic, text: &str) -> Option<(usize, usize)> {
    if let Some(mut labels) = diag.labels()
        && let Some(label) = labels.next()
    {
        return Some(line_col(text, label.offset()));
    }
    diag.related()?.find_map(|d| diag_position(d, text))
}

/// The whole message of a Cedar diagnostic on one line, help included.
pub(crate) fn diag_message(diag: &dyn miette::Diagnostic) -> String {
    let mut msg = diag.to_string();
    if let Some(related) = diag.related() {
        for r in related {
            msg.push_str("; ");
            msg.push_str(&r.to_string());
        }
    }
    if let Some(help) = diag.help() {
        msg.push_str(" (help: ");
        msg.push_str(&help.to_string());
        msg.push(')');
    }
    msg.replace('\n', " ")
}

pub(crate) fn compile(
    text: &str,
    links: Option<&str>,
    schema: Option<&Schema>,
) -> Result<CompiledPolicies, BundleError> {
    let invalid = |pos, msg: String| BundleError::invalid(member::POLICIES, pos, msg);
    let parsed = PolicySet::from_str(text)
        .map_err(|e| invalid(diag_position(&e, text), diag_message(&e)))?;
    let mut set = PolicySet::new();
    let id_of =
        |ann: Option<&str>, default: &PolicyId| ann.map_or_else(|| default.clone(), PolicyId::new);
    // Deterministic order: by source position of the default id (policy0, policy1, ...).
    let mut templates: Vec<_> = parsed.templates().collect();
    templates.sort_by_key(|t| default_index(t.id()));
    for t in templates {
        let id = id_of(t.annotation("id"), t.id());
        set.add_template(t.new_id(id.clone()))
            .map_err(|e| invalid(None, format!("template {id}: {e}")))?;
    }
    let mut statics: Vec<_> = parsed.policies().collect();
    statics.sort_by_key(|p| default_index(p.id()));
    for p in statics {
        let id = id_of(p.annotation("id"), p.id());
        set.add(p.new_id(id.clone()))
            .map_err(|e| invalid(None, format!("policy {id}: {e}")))?;
    }
    if let Some(links) = links {
        let links: Vec<Link> = serde_json::from_str(links).map_err(|e| {
            BundleError::invalid(member::LINKS, Some((e.line(), e.column())), e.to_string())
        })?;
        for (i, l) in links.into_iter().enumerate() {
            let bad = |m: String| {
                BundleError::invalid(member::LINKS, None, format!("link {i} ({}): {m}", l.new_id))
            };
            let mut values = HashMap::new();
            for (slot, v) in &l.values {
                let slot = match slot.as_str() {
                    "?principal" | "principal" => SlotId::principal(),
                    "?resource" | "resource" => SlotId::resource(),
                    other => return Err(bad(format!("unknown slot {other:?}"))),
                };
                let uid = EntityUid::from_json(v.clone()).map_err(|e| bad(e.to_string()))?;
                values.insert(slot, uid);
            }
            set.link(
                PolicyId::new(&l.template_id),
                PolicyId::new(&l.new_id),
                values,
            )
            .map_err(|e| bad(diag_message(&e)))?;
        }
    }
    if let Some(schema) = schema {
        let result = Validator::new(schema.clone()).validate(&set, ValidationMode::Strict);
        if !result.validation_passed() {
            let mut msgs = Vec::new();
            let mut pos = None;
            for e in result.validation_errors() {
                pos = pos.or_else(|| diag_position(e, text));
                msgs.push(diag_message(e));
            }
            return Err(invalid(
                pos,
                format!("fails validation against the schema: {}", msgs.join(" | ")),
            ));
        }
    }
    let literals = condition_literals(&set);
    let depths = depths(&set);
    Ok(CompiledPolicies {
        set,
        literals,
        depths,
    })
}

fn default_index(id: &PolicyId) -> (u64, String) {
    let s = id.to_string();
    let n = s
        .strip_prefix("policy")
        .and_then(|n| n.parse().ok())
        .unwrap_or(u64::MAX);
    (n, s)
}

/// Entity literals appearing in policy conditions, as Cedar JSON (EST) shows them.
fn condition_literals(set: &PolicySet) -> Vec<EntityUid> {
    let mut found = BTreeSet::new();
    let mut visit = |est: serde_json::Value| {
        if let Some(conds) = est.get("conditions") {
            collect_entity_refs(conds, &mut |v| {
                if let Ok(uid) = EntityUid::from_json(v.clone()) {
                    found.insert(uid.to_string());
                }
            });
        }
    };
    for p in set.policies() {
        if let Ok(est) = p.to_json() {
            visit(est);
        }
    }
    for t in set.templates() {
        if let Ok(est) = t.to_json() {
            visit(est);
        }
    }
    found
        .iter()
        .filter_map(|s| EntityUid::from_str(s).ok())
        .collect()
}

/// Where a dereference chain starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Root {
    /// `principal`.
    Principal = 0,
    /// `action`.
    Action = 1,
    /// `resource`.
    Resource = 2,
    /// `context` (its entity references).
    Context = 3,
    /// An entity literal in a condition.
    Literal = 4,
}

/// Longest dereference chain per root: how many entity hops from each root
/// any condition may read. `in` and `has` count as reading their left side.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Depths(pub [u32; 5]);

impl Depths {
    pub fn of(&self, root: Root) -> u32 {
        self.0.get(root as usize).copied().unwrap_or(u32::MAX)
    }
    fn merge(&mut self, other: &Depths) {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a = (*a).max(b);
        }
    }
}

/// The chain lengths, per root, of the value an expression evaluates to
/// (`None`: not reachable from that root).
#[derive(Debug, Clone, Copy, Default)]
struct Chain([Option<u32>; 5]);

impl Chain {
    fn root(r: Root) -> Chain {
        let mut c = Chain::default();
        if let Some(slot) = c.0.get_mut(r as usize) {
            *slot = Some(0);
        }
        c
    }
    fn union(mut self, other: Chain) -> Chain {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a = match (*a, b) {
                (Some(x), Some(y)) => Some(x.max(y)),
                (x, y) => x.or(y),
            };
        }
        self
    }
    /// One more hop; record the hop in `max`.
    fn deref(self, max: &mut Depths) -> Chain {
        let mut out = Chain::default();
        for (i, c) in self.0.iter().enumerate() {
            if let (Some(c), Some(o), Some(m)) = (c, out.0.get_mut(i), max.0.get_mut(i)) {
                *o = Some(c + 1);
                *m = (*m).max(c + 1);
            }
        }
        out
    }
}

/// Walk an EST expression. Operators that read an entity's data (`.`,
/// `has`, `getTag`, `hasTag`) or ancestors (`in`, `is .. in`) add a hop to
/// their left operand's chain. Every other node is treated as possibly
/// passing any child's value through (an over-count, which only makes the
/// slice larger, never wrong).
fn chain(v: &serde_json::Value, max: &mut Depths) -> Chain {
    use serde_json::Value;
    match v {
        Value::Object(map) if map.len() == 1 => {
            let Some((op, body)) = map.iter().next() else {
                return Chain::default();
            };
            let side =
                |k: &str, max: &mut Depths| body.get(k).map_or(Chain::default(), |e| chain(e, max));
            match op.as_str() {
                "Var" => match body.as_str() {
                    Some("principal") => Chain::root(Root::Principal),
                    Some("action") => Chain::root(Root::Action),
                    Some("resource") => Chain::root(Root::Resource),
                    Some("context") => Chain::root(Root::Context),
                    _ => Chain::default(),
                },
                "Value" => {
                    let mut literal = false;
                    collect_entity_refs(body, &mut |_| literal = true);
                    if literal {
                        Chain::root(Root::Literal)
                    } else {
                        Chain::default()
                    }
                }
                "Slot" | "Unknown" => Chain::default(),
                "." | "has" => side("left", max).deref(max),
                "getTag" | "hasTag" => {
                    let _ = side("right", max);
                    side("left", max).deref(max)
                }
                "in" => {
                    let _ = side("right", max);
                    let _ = side("left", max).deref(max);
                    Chain::default()
                }
                "is" => {
                    let left = side("left", max);
                    if body.get("in").is_some() {
                        let _ = side("in", max);
                        let _ = left.deref(max);
                    }
                    Chain::default()
                }
                _ => chain_children(body, max),
            }
        }
        other => chain_children(other, max),
    }
}

fn chain_children(v: &serde_json::Value, max: &mut Depths) -> Chain {
    use serde_json::Value;
    let kids: Box<dyn Iterator<Item = &Value>> = match v {
        Value::Object(m) => Box::new(m.values()),
        Value::Array(a) => Box::new(a.iter()),
        _ => return Chain::default(),
    };
    kids.fold(Chain::default(), |acc, k| acc.union(chain(k, max)))
}

/// The dereference depths of a policy set's conditions.
fn depths(set: &PolicySet) -> Depths {
    let mut all = Depths::default();
    let ests = set
        .policies()
        .filter_map(|p| p.to_json().ok())
        .chain(set.templates().filter_map(|t| t.to_json().ok()));
    for est in ests {
        let mut d = Depths::default();
        if let Some(c) = est.get("conditions") {
            let _ = chain(c, &mut d);
        }
        all.merge(&d);
    }
    all
}

/// Call `f` with every `{"type":..,"id":..}` found under an `__entity` key.
pub(crate) fn collect_entity_refs(v: &serde_json::Value, f: &mut dyn FnMut(&serde_json::Value)) {
    match v {
        serde_json::Value::Object(map) => {
            if let Some(e) = map.get("__entity") {
                f(e);
            }
            for child in map.values() {
                collect_entity_refs(child, f);
            }
        }
        serde_json::Value::Array(items) => {
            for child in items {
                collect_entity_refs(child, f);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_come_from_annotations_and_defaults_follow_file_order() {
        let c = compile(
            r#"permit(principal, action, resource);
@id("named") forbid(principal, action, resource) when { resource.owner == User::"x" && Group::"g".flag };
permit(principal == ?principal, action, resource);"#,
            Some(r#"[{"template_id":"policy2","new_id":"link1","values":{"?principal":{"type":"User","id":"a"}}}]"#),
            None,
        )
        .unwrap();
        let mut ids: Vec<String> = c.set.policies().map(|p| p.id().to_string()).collect();
        ids.sort();
        assert_eq!(ids, ["link1", "named", "policy0"]);
        let lits: Vec<String> = c.literals.iter().map(ToString::to_string).collect();
        assert_eq!(lits, [r#"Group::"g""#, r#"User::"x""#]);
        assert_eq!(c.depths, Depths([0, 0, 1, 0, 1]));
    }

    #[test]
    fn dereference_depths_count_the_longest_chain_per_root() {
        let d = |text: &str| compile(text, None, None).unwrap().depths.0;
        assert_eq!(
            d("permit(principal in Group::\"g\", action, resource);"),
            [0; 5]
        );
        assert_eq!(
            d("permit(principal, action, resource) when { resource.owner == principal };"),
            [0, 0, 1, 0, 0]
        );
        assert_eq!(
            d("permit(principal, action, resource) when { resource.owner has manager };"),
            [0, 0, 2, 0, 0]
        );
        assert_eq!(
            d("permit(principal, action, resource) when { resource.owner in principal.team };"),
            [1, 0, 2, 0, 0]
        );
        assert_eq!(
            d("permit(principal, action, resource) when { resource.a.b.c.d == 1 };"),
            [0, 0, 4, 0, 0]
        );
        assert_eq!(
            d(
                "permit(principal, action, resource) when { (if context.x then resource.o else principal.m).n == 1 };"
            ),
            // Conservative: the condition's chain is counted as if it flowed on.
            [2, 0, 2, 2, 0]
        );
        assert_eq!(
            d(
                "permit(principal, action, resource) when { principal.teams.contains(resource.owner.team) };"
            ),
            [1, 0, 2, 0, 0]
        );
        assert_eq!(
            d("permit(principal, action, resource) when { resource.owner.getTag(\"k\") == 1 };"),
            [0, 0, 2, 0, 0]
        );
        assert_eq!(
            d("permit(principal, action, resource) when { Group::\"x\".owner.level > 1 };"),
            [0, 0, 0, 0, 2]
        );
        assert_eq!(
            d("permit(principal, action, resource) when { context.doc.owner in Group::\"x\" };"),
            [0, 0, 0, 3, 0]
        );
    }

    #[test]
    fn the_scope_index_keeps_exactly_the_policies_that_can_match() {
        let schema_text = include_str!("../../policies/schema.cedarschema");
        let (schema, _) = Schema::from_cedarschema_str(schema_text).unwrap();
        let links = include_str!("../../policies/links.json");
        let c = compile(
            include_str!("../../policies/policies.cedar"),
            Some(links),
            Some(&schema),
        )
        .unwrap();
        let actions = schema.action_entities().unwrap();
        let index = PolicyIndex::build(&c.set, &schema, &|a| {
            actions
                .ancestors(a)
                .map(|i| i.cloned().collect())
                .unwrap_or_default()
        });
        let ty = |t: &str| EntityTypeName::from_str(t).unwrap();
        let act = |a: &str| EntityUid::from_str(&format!("Action::\"{a}\"")).unwrap();
        let ids = |a: &str, r: &str| {
            let mut v: Vec<String> = index
                .get(&act(a), &ty("User"), &ty(r))
                .unwrap()
                .set
                .policies()
                .map(|p| p.id().to_string())
                .collect();
            v.sort();
            v
        };
        assert_eq!(
            ids("readDocument", "Document"),
            [
                "active-users-only",
                "auditors-read-compliance",
                "department-colleagues-read",
                "editors-edit-own-department",
                "grant-carol-engineering-folder",
                "managers-read-reports",
                "owners",
                "readers-read",
                "secret-needs-clearance",
            ]
        );
        // suspendUser is in the `sensitive` and `manageUsers` action groups.
        assert_eq!(
            ids("suspendUser", "User"),
            [
                "active-users-only",
                "realm-admins-manage-users",
                "sensitive-needs-mfa"
            ]
        );
    }

    #[test]
    fn parse_errors_carry_a_position() {
        let e = compile("permit(principal, action, resource);\npermit(principal, action, resource) when { 1 + };", None, None)
            .unwrap_err();
        match e {
            BundleError::Invalid {
                member,
                position: Some((line, _)),
                ..
            } => {
                assert_eq!((member.as_str(), line), ("policies.cedar", 2));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// Policy sets pre-filtered by request scope: for each action the schema
/// declares and each principal and resource type it applies to, only the
/// policies whose scope can match such a request.
///
/// Why this gives the same answers: Cedar evaluates a policy as
/// `principal-scope && action-scope && resource-scope && conditions`, left to
/// right with short-circuit, and a scope test never errors. A policy whose
/// scope cannot match is therefore never satisfied and never reports an
/// error; leaving it out changes nothing but the time spent.
#[derive(Debug, Default)]
pub(crate) struct PolicyIndex {
    by_action: rustc_hash::FxHashMap<
        EntityUid,
        rustc_hash::FxHashMap<(EntityTypeName, EntityTypeName), Scoped>,
    >,
}

/// The policies that can match one request scope, as a Cedar set and
/// prepared for evaluation.
pub(crate) struct Scoped {
    pub set: PolicySet,
    pub prepared: crate::authorize::PreparedSet,
}

impl std::fmt::Debug for Scoped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scoped")
            .field("policies", &self.set.num_of_policies())
            .finish()
    }
}

impl PolicyIndex {
    /// Build the index for every (action, principal type, resource type)
    /// the schema allows. `action_ancestors` gives each action's groups.
    pub fn build(
        set: &PolicySet,
        schema: &Schema,
        action_ancestors: &dyn Fn(&EntityUid) -> Vec<EntityUid>,
    ) -> PolicyIndex {
        let mut by_action = rustc_hash::FxHashMap::default();
        for action in schema.actions() {
            let groups = action_ancestors(action);
            let (Some(principals), Some(resources)) = (
                schema.principals_for_action(action),
                schema.resources_for_action(action),
            ) else {
                continue;
            };
            let resources: Vec<EntityTypeName> = resources.cloned().collect();
            let mut per_types = rustc_hash::FxHashMap::default();
            for p in principals {
                for r in &resources {
                    if let Some(subset) = subset(set, action, &groups, p, r) {
                        let prepared = crate::authorize::PreparedSet::new_scoped(&subset);
                        per_types.insert(
                            (p.clone(), r.clone()),
                            Scoped {
                                set: subset,
                                prepared,
                            },
                        );
                    }
                }
            }
            by_action.insert(action.clone(), per_types);
        }
        PolicyIndex { by_action }
    }

    /// The pre-filtered set for this request scope, if indexed.
    pub fn get(
        &self,
        action: &EntityUid,
        principal: &EntityTypeName,
        resource: &EntityTypeName,
    ) -> Option<&Scoped> {
        self.by_action
            .get(action)?
            .get(&(principal.clone(), resource.clone()))
    }
}

fn type_may_match(constraint_type: Option<&EntityTypeName>, ty: &EntityTypeName) -> bool {
    constraint_type.is_none_or(|c| c == ty)
}

/// The policies of `set` whose scope can match; `None` if something could
/// not be copied (then the caller uses the whole set).
fn subset(
    set: &PolicySet,
    action: &EntityUid,
    groups: &[EntityUid],
    principal: &EntityTypeName,
    resource: &EntityTypeName,
) -> Option<PolicySet> {
    use cedar_policy::{ActionConstraint, PrincipalConstraint, ResourceConstraint};
    let mut out = PolicySet::new();
    for p in set.policies() {
        let action_ok = match p.action_constraint() {
            ActionConstraint::Any => true,
            ActionConstraint::Eq(a) => &a == action,
            ActionConstraint::In(list) => list.iter().any(|g| g == action || groups.contains(g)),
        };
        let principal_ok = match p.principal_constraint() {
            PrincipalConstraint::Any | PrincipalConstraint::In(_) => true,
            PrincipalConstraint::Eq(u) => type_may_match(Some(u.type_name()), principal),
            PrincipalConstraint::Is(t) | PrincipalConstraint::IsIn(t, _) => {
                type_may_match(Some(&t), principal)
            }
        };
        let resource_ok = match p.resource_constraint() {
            ResourceConstraint::Any | ResourceConstraint::In(_) => true,
            ResourceConstraint::Eq(u) => type_may_match(Some(u.type_name()), resource),
            ResourceConstraint::Is(t) | ResourceConstraint::IsIn(t, _) => {
                type_may_match(Some(&t), resource)
            }
        };
        if !(action_ok && principal_ok && resource_ok) {
            continue;
        }
        match (p.template_id(), p.template_links()) {
            (Some(tid), Some(values)) => {
                if out.template(tid).is_none() {
                    out.add_template(set.template(tid)?.clone()).ok()?;
                }
                out.link(tid.clone(), p.id().clone(), values).ok()?;
            }
            _ => out.add(p.clone()).ok()?,
        }
    }
    Some(out)
}
