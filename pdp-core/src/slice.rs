//! Per-request entity slices.
//!
//! Evaluating a request needs only the entities evaluation can reach: the
//! principal, action and resource, the entities named in the context, in
//! request-supplied entities and in policy conditions, and — transitively —
//! every entity named in an attribute of one of those. Ancestor entities
//! themselves are not needed: `in` reads only the ancestor *set* of its left
//! operand, which each entity carries already closed. So a slice is a
//! handful of entities, cheap to build, and evaluating over it gives the same
//! answer as evaluating over every entity of the realm (the differential
//! tests in `tests/differential.rs` check exactly that).

use crate::directory::{Directory, UserRef};
use crate::user_cache::{Built, BuiltUser};
use crate::values::TypeNames;
use cedar_policy::{Entities, Entity, EntityId, EntityTypeName, EntityUid, RestrictedExpression};
use cedar_policy_core::ast::{
    Entity as CoreEntity, EntityUID as CoreUid, PartialValue, Value as CoreValue,
};
use cedar_policy_core::entities::{Entities as CoreEntities, NoEntitiesSchema, TCComputation};
use cedar_policy_core::extensions::Extensions;
use ref_cast::RefCast;
use rustc_hash::FxHashMap;
use serde_json::Value;
use smol_str::SmolStr;
use std::collections::{HashMap, HashSet, VecDeque};
use std::str::FromStr;
use std::sync::Arc;

/// A non-user entity of the bundle, with what the slicer needs precomputed.
#[derive(Debug, Clone)]
pub(crate) struct StaticEntity {
    pub entity: Entity,
    /// The same entity as Cedar's core type, shared into every slice
    /// without a copy. Its ancestor set is already transitively closed.
    pub core: Arc<CoreEntity>,
    /// Every ancestor (transitively closed).
    pub ancestors: Box<[EntityUid]>,
    /// The entity itself and every ancestor, as the set a member's parent
    /// set starts from (cloned, never re-hashed, per request).
    pub closure: HashSet<CoreUid>,
    /// Entities named in attribute or tag values.
    pub refs: Box<[EntityUid]>,
}

/// The bundle's non-user entities (including schema action entities).
#[derive(Debug)]
pub(crate) struct Statics {
    pub map: FxHashMap<EntityUid, StaticEntity>,
    pub user_type: EntityTypeName,
    pub group_type: EntityTypeName,
    pub role_type: EntityTypeName,
    /// Parsed type names (requests name types as text).
    pub types: TypeNames,
}

impl Statics {
    pub fn new(
        entities: &Entities,
        schema: Option<&cedar_policy::Schema>,
    ) -> Result<Statics, String> {
        let ty = |s: &str| EntityTypeName::from_str(s).map_err(|e| e.to_string());
        let mut map = FxHashMap::with_capacity_and_hasher(entities.len(), Default::default());
        for e in entities.iter() {
            let uid = e.uid();
            let ancestors: Box<[EntityUid]> = entities
                .ancestors(&uid)
                .map(|a| a.cloned().collect())
                .unwrap_or_default();
            let mut refs = Vec::new();
            if let Ok(json) = e.to_json_value() {
                for key in ["attrs", "tags"] {
                    if let Some(v) = json.get(key) {
                        crate::policies::collect_entity_refs(v, &mut |r| {
                            if let Ok(uid) = EntityUid::from_json(r.clone()) {
                                refs.push(uid);
                            }
                        });
                    }
                }
            }
            map.insert(
                uid.clone(),
                StaticEntity {
                    entity: e.clone(),
                    core: Arc::new(AsRef::<CoreEntity>::as_ref(e).clone()),
                    closure: ancestors
                        .iter()
                        .chain(std::iter::once(&uid))
                        .cloned()
                        .map(CoreUid::from)
                        .collect(),
                    ancestors,
                    refs: refs.into(),
                },
            );
        }
        let user_type = ty(crate::directory::USER_TYPE)?;
        let group_type = ty(crate::directory::GROUP_TYPE)?;
        let role_type = ty(crate::directory::ROLE_TYPE)?;
        let mut names: Vec<EntityTypeName> = map
            .keys()
            .map(|u: &EntityUid| u.type_name().clone())
            .collect();
        names.extend([
            user_type.clone(),
            group_type.clone(),
            role_type.clone(),
            ty("Action")?,
        ]);
        if let Some(schema) = schema {
            names.extend(schema.entity_types().cloned());
        }
        Ok(Statics {
            map,
            user_type,
            group_type,
            role_type,
            types: TypeNames::new(names),
        })
    }

    pub fn uid(ty: &EntityTypeName, id: &str) -> EntityUid {
        EntityUid::from_type_name_and_id(ty.clone(), EntityId::new(id))
    }
}

/// Convert one Cedar JSON value (explicit `__entity` / `__extn` forms; any
/// other object is a record) into a restricted expression, noting entity
/// references in `refs`. The slow path, for values [`crate::values::to_value`]
/// does not take.
pub(crate) fn restricted(
    v: &Value,
    types: &TypeNames,
    refs: &mut Vec<EntityUid>,
) -> Result<RestrictedExpression, String> {
    Ok(match v {
        Value::Null => return Err("null is not a Cedar value".into()),
        Value::Bool(b) => RestrictedExpression::new_bool(*b),
        Value::Number(n) => RestrictedExpression::new_long(
            n.as_i64()
                .ok_or_else(|| format!("{n} is not a 64-bit integer"))?,
        ),
        Value::String(s) => RestrictedExpression::new_string(s.clone()),
        Value::Array(items) => RestrictedExpression::new_set(
            items
                .iter()
                .map(|i| restricted(i, types, refs))
                .collect::<Result<Vec<_>, _>>()?,
        ),
        Value::Object(map) => {
            if let (1, Some(e)) = (map.len(), map.get("__entity")) {
                let uid = types.uid_json(e).ok_or("__entity needs a type and an id")?;
                refs.push(uid.clone());
                return Ok(RestrictedExpression::new_entity_uid(uid));
            }
            if let (1, Some(x)) = (map.len(), map.get("__extn")) {
                let f = x
                    .get("fn")
                    .and_then(Value::as_str)
                    .ok_or("__extn needs fn")?;
                let arg = x
                    .get("arg")
                    .and_then(Value::as_str)
                    .ok_or("__extn needs a string arg")?;
                return Ok(match f {
                    "ip" | "ipaddr" => RestrictedExpression::new_ip(arg),
                    "decimal" => RestrictedExpression::new_decimal(arg),
                    "datetime" => RestrictedExpression::new_datetime(arg),
                    "duration" => RestrictedExpression::new_duration(arg),
                    other => return Err(format!("unknown extension function {other:?}")),
                });
            }
            RestrictedExpression::new_record(
                map.iter()
                    .map(|(k, v)| Ok((k.clone(), restricted(v, types, refs)?)))
                    .collect::<Result<Vec<_>, String>>()?,
            )
            .map_err(|e| e.to_string())?
        }
    })
}

/// Build the Cedar entity of a directory user: its custom attributes plus
/// `state`, `email` and `realm` from the record, and as parents its groups
/// and roles with all their ancestors (a closed set).
pub(crate) fn user_entity(
    statics: &Statics,
    realm: &str,
    user: UserRef<'_>,
    refs: &mut Vec<EntityUid>,
) -> Result<CoreEntity, String> {
    let mut parents: Option<HashSet<CoreUid>> = None;
    let direct = user
        .groups()
        .map(|g| Statics::uid(&statics.group_type, g))
        .chain(user.roles().map(|r| Statics::uid(&statics.role_type, r)));
    for p in direct {
        match (statics.map.get(&p), &mut parents) {
            (Some(s), None) => parents = Some(s.closure.clone()),
            (Some(s), Some(set)) => set.extend(s.closure.iter().cloned()),
            (None, set) => {
                set.get_or_insert_default().insert(p.into());
            }
        }
    }
    let parents = parents.unwrap_or_default();
    let uid: CoreUid = Statics::uid(&statics.user_type, user.id()).into();
    let fixed = [
        ("state", user.state().as_str()),
        ("email", user.email()),
        ("realm", realm),
    ];
    // Fast path: plain values straight from their encoded form into Cedar's
    // core types.
    let (encoded, names) = user.encoded_attrs();
    let mark = refs.len();
    if let Some(mut pairs) = crate::encoded::to_core(encoded, names, &statics.types, refs) {
        pairs.reserve(fixed.len());
        for (k, v) in fixed {
            pairs.push((SmolStr::new_static(k), CoreValue::from(SmolStr::new(v))));
        }
        return Ok(CoreEntity::new_with_attr_partial_value(
            uid,
            pairs.into_iter().map(|(k, v)| (k, PartialValue::from(v))),
            HashSet::new(),
            parents,
            [],
        ));
    }
    // Slow path (extension values): Cedar's public constructor.
    refs.truncate(mark);
    let attrs = crate::encoded::to_json(encoded, names).ok_or("malformed user attributes")?;
    let mut out: HashMap<String, RestrictedExpression> = HashMap::with_capacity(attrs.len() + 3);
    for (k, v) in &attrs {
        out.insert(k.clone(), restricted(v, &statics.types, refs)?);
    }
    for (k, v) in fixed {
        out.insert(k.into(), RestrictedExpression::new_string(v.into()));
    }
    let api_parents: HashSet<EntityUid> = parents.into_iter().map(EntityUid::from).collect();
    let e = Entity::new(uid.into(), out, api_parents).map_err(|e| e.to_string())?;
    Ok(AsRef::<CoreEntity>::as_ref(&e).clone())
}

/// A request-supplied entity, parsed, with its outgoing references.
#[derive(Debug, Clone)]
pub(crate) struct Supplied {
    pub entity: Entity,
    pub parents: Vec<EntityUid>,
    pub refs: Vec<EntityUid>,
}

impl Supplied {
    pub fn parse(v: &Value) -> Result<Supplied, String> {
        let entity = Entity::from_json_value(v.clone(), None).map_err(|e| e.to_string())?;
        let mut refs = Vec::new();
        for key in ["attrs", "tags"] {
            if let Some(a) = v.get(key) {
                crate::policies::collect_entity_refs(a, &mut |r| {
                    if let Ok(uid) = EntityUid::from_json(r.clone()) {
                        refs.push(uid);
                    }
                });
            }
        }
        let parents = v
            .get("parents")
            .and_then(Value::as_array)
            .map(|ps| {
                ps.iter()
                    .filter_map(|p| EntityUid::from_json(p.clone()).ok())
                    .collect()
            })
            .unwrap_or_default();
        Ok(Supplied {
            entity,
            parents,
            refs,
        })
    }
}

/// Everything a slice is built from.
pub(crate) struct SliceInput<'a> {
    pub statics: &'a Statics,
    pub directory: Option<&'a Directory>,
    pub realm: &'a str,
    pub supplied: &'a [Supplied],
    /// Extra principal parents (token groups when there is no directory).
    pub principal_override: Option<Entity>,
    /// How many dereferences from each root any policy may read: entities
    /// further away (and what they reference) are left out.
    pub depths: crate::policies::Depths,
    /// Users already built for this snapshot.
    pub users: &'a crate::user_cache::UserCache,
    /// The principal as gating found it (its id and the user), so the
    /// slice does not look it up again.
    pub principal: Option<(&'a str, Found<'a>)>,
}

/// A directory user a request names: built already (from the snapshot's
/// user cache) or only found in the directory, to be built when a slice
/// needs it.
#[derive(Clone)]
pub(crate) enum Found<'a> {
    Built(Built),
    Record(UserRef<'a>),
}

impl<'a> Found<'a> {
    /// The user `id`: the cache first, the directory (a lookup in cold
    /// memory at scale) only on a miss.
    pub fn lookup(
        users: &crate::user_cache::UserCache,
        directory: &'a Directory,
        id: &str,
    ) -> Option<Found<'a>> {
        match users.get(id) {
            Some(b) => Some(Found::Built(b)),
            None => directory.get(id).map(Found::Record),
        }
    }

    /// The user's lifecycle state.
    pub fn state(&self) -> crate::lifecycle::UserState {
        match self {
            Found::Built(b) => b.state,
            Found::Record(u) => u.state(),
        }
    }

    /// Tokens issued in or before this unix second are refused.
    pub fn tokens_valid_after(&self) -> i64 {
        match self {
            Found::Built(b) => b.tokens_valid_after,
            Found::Record(u) => u.tokens_valid_after(),
        }
    }

    /// The built user; one found only in the directory is built now and
    /// offered to the cache.
    fn build(self, input: &SliceInput<'_>) -> Result<Built, String> {
        let user = match self {
            Found::Built(b) => return Ok(b),
            Found::Record(user) => user,
        };
        let mut refs = Vec::new();
        let entity = user_entity(input.statics, input.realm, user, &mut refs)?;
        let b: Built = Arc::new(BuiltUser {
            entity: Arc::new(entity),
            refs: refs.into(),
            state: user.state(),
            tokens_valid_after: user.tokens_valid_after(),
        });
        input.users.put(user.id(), Arc::clone(&b));
        Ok(b)
    }
}

/// The entities of one request.
pub(crate) enum Slice {
    /// Assembled without recomputing the transitive closure: every entity
    /// in it carries its closed ancestor set already.
    Closed(CoreEntities),
    /// Request-supplied entities were involved: built through the public
    /// API, which computes the closure.
    Computed(Entities),
}

impl Slice {
    pub fn entities(&self) -> &Entities {
        match self {
            Slice::Closed(core) => Entities::ref_cast(core),
            Slice::Computed(e) => e,
        }
    }
}

/// Build the slice reachable from `roots` within the policies' dereference
/// depths. An entity `h` hops from a root whose depth is `L` is included
/// when `h < L` (its data may be read); roots, and the parents of
/// request-supplied entities (needed for their ancestor closure), always.
/// When an entity is reached again with more budget left, its references
/// are followed again with that budget.
///
/// Why the closure need not be recomputed: static entities come from an
/// `Entities` whose closure was computed at load; a directory user's parent
/// set is its groups and roles plus their closed ancestors; the token
/// principal is built the same way. Only request-supplied entities arrive
/// with bare parents, and then the closure is computed by Cedar.
pub(crate) fn slice(
    input: &SliceInput<'_>,
    roots: impl IntoIterator<Item = (EntityUid, crate::policies::Root)>,
) -> Result<Slice, String> {
    // (entity, budget left, always include)
    let mut work: VecDeque<(EntityUid, i64, bool)> = roots
        .into_iter()
        .map(|(u, r)| (u, i64::from(input.depths.of(r)), true))
        .collect();
    let mut seen: FxHashMap<EntityUid, i64> = FxHashMap::default();
    let mut out: Vec<Arc<CoreEntity>> = Vec::with_capacity(work.len() + 4);
    let mut supplied_used: Vec<Entity> = Vec::new();
    if let Some(p) = &input.principal_override {
        seen.insert(
            p.uid(),
            i64::from(input.depths.of(crate::policies::Root::Principal)),
        );
        out.push(Arc::new(AsRef::<CoreEntity>::as_ref(p).clone()));
    }
    let mut principal = input.principal.clone();
    let by_uid: FxHashMap<EntityUid, &Supplied> =
        input.supplied.iter().map(|s| (s.entity.uid(), s)).collect();
    while let Some((uid, budget, always)) = work.pop_front() {
        if !always && budget < 1 {
            continue;
        }
        let first = match seen.get(&uid) {
            Some(old) if *old >= budget => continue,
            Some(_) => false,
            None => true,
        };
        seen.insert(uid.clone(), budget);
        let next = budget - 1;
        let is_user = uid.type_name() == &input.statics.user_type;
        let built = match (is_user, input.directory) {
            (true, Some(dir)) => {
                let id = uid.id().unescaped();
                principal
                    .take_if(|(p, _)| *p == id)
                    .map(|(_, found)| found)
                    .or_else(|| Found::lookup(input.users, dir, id))
                    .map(|found| found.build(input))
                    .transpose()?
            }
            _ => None,
        };
        if let Some(built) = built {
            if first {
                out.push(Arc::clone(&built.entity));
            }
            work.extend(built.refs.iter().map(|r| (r.clone(), next, false)));
        } else if let Some(s) = input.statics.map.get(&uid) {
            if first {
                out.push(Arc::clone(&s.core));
            }
            work.extend(s.refs.iter().map(|r| (r.clone(), next, false)));
        } else if let Some(s) = by_uid.get(&uid) {
            if first {
                supplied_used.push(s.entity.clone());
            }
            work.extend(s.parents.iter().map(|r| (r.clone(), budget, true)));
            work.extend(s.refs.iter().map(|r| (r.clone(), next, false)));
        }
    }
    if supplied_used.is_empty() {
        let core = CoreEntities::new()
            .add_entities(
                out,
                None::<&NoEntitiesSchema>,
                TCComputation::AssumeAlreadyComputed,
                Extensions::all_available(),
            )
            .map_err(|e| e.to_string())?;
        return Ok(Slice::Closed(core));
    }
    let all = out
        .into_iter()
        .map(|c| Entity::ref_cast(&c).clone())
        .chain(supplied_used);
    Entities::from_entities(all, None)
        .map(Slice::Computed)
        .map_err(|e| e.to_string())
}

/// Entity references in a context object: explicit `__entity` escapes and,
/// since schema-based parsing accepts it, the implicit `{"type","id"}` form.
pub(crate) fn context_refs(v: &Value, types: &TypeNames, out: &mut Vec<EntityUid>) {
    match v {
        Value::Object(map) => {
            if let Some(e) = map.get("__entity") {
                out.extend(types.uid_json(e));
            } else {
                out.extend(types.uid_json(v));
            }
            for child in map.values() {
                context_refs(child, types, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|i| context_refs(i, types, out)),
        _ => {}
    }
}
