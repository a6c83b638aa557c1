//! A loaded bundle: the immutable state decisions are made from.
//!
//! [`load`] is the one entry point hosts use: it opens and verifies a
//! bundle, refuses rollbacks and deltas on the wrong base, and returns a new
//! [`Snapshot`] — or an error, leaving whatever the caller holds untouched
//! (nothing is mutated in place; the caller swaps the `Arc`).

use crate::bundle::{Bundle, BundleError, Limits, Trust};
use crate::chain::{Changes, Folded};
use crate::decision::{
    Answer, BatchAnswer, BatchRequest, Decision, MAX_BATCH, Reason, Request, RequestError, Tagged,
    TokenRequest,
};
use crate::directory::{Directory, UserRef};
use crate::manifest::{BundleKind, Manifest, member};
use crate::policies::{self, CompiledPolicies};
use crate::routes::RouteTable;
use crate::slice::{self, Found, SliceInput, Statics, Supplied};
use crate::token::{TokenFailure, TokenUse, VerifiedToken, Verifier};
use crate::values::TypeNames;
use cedar_policy::{
    Context, Entities, EntityId, EntityTypeName, EntityUid, RestrictedExpression, Schema,
    SchemaFragment,
};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::str::FromStr;
use std::sync::Arc;

/// A snapshot's content members but `users.jsonl`, kept (shared) so a
/// delta folds onto them and recompiles what it does not replace.
type Members = BTreeMap<String, Arc<[u8]>>;

/// Context attribute names an action declares (`None`: no schema, anything goes).
type ContextShapes = HashMap<EntityUid, BTreeSet<String>>;

/// Users whose built entities a snapshot keeps by default.
pub const DEFAULT_USER_CACHE: usize = 65_536;

/// Everything a decision needs, immutable and cheap to share.
#[derive(Clone)]
pub struct Snapshot {
    manifest: Arc<Manifest>,
    signed_by: Option<String>,
    members: Arc<Members>,
    schema: Option<Arc<Schema>>,
    context_shapes: Arc<ContextShapes>,
    policies: Arc<CompiledPolicies>,
    index: Arc<policies::PolicyIndex>,
    prepared: Arc<crate::authorize::PreparedSet>,
    /// Built user entities; new (empty) for every new snapshot, since users
    /// and the entities their parents come from may change with it.
    users: Arc<crate::user_cache::UserCache>,
    users_capacity: usize,
    statics: Arc<Statics>,
    directory: Option<Directory>,
    verifier: Option<Arc<Verifier>>,
    routes: Option<Arc<RouteTable>>,
    /// The AuthZEN type names (`authzen.json`), if the bundle has them.
    authzen_types: Option<Arc<crate::authzen::TypeMap>>,
    /// Every id of an entity type, sorted, built on a search's first need
    /// (new, empty, for every new snapshot): pages resume in it by position.
    search_ids: Arc<crate::search::SortedIds>,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("realm", &self.manifest.realm)
            .field("revision", &self.manifest.revision)
            .field("policies", &self.policies.set.num_of_policies())
            .field("entities", &self.statics.map.len())
            .field("users", &self.directory.as_ref().map(Directory::len))
            .finish_non_exhaustive()
    }
}

/// How [`load`] checks what it is given.
#[derive(Debug, Clone, Copy)]
pub struct LoadOptions<'a> {
    /// Signature policy.
    pub trust: Trust<'a>,
    /// Size limits.
    pub limits: Limits,
}

/// Open, verify and apply a bundle (snapshot or delta) on top of `held`.
///
/// Refuses: a bad archive or signature; a realm other than `held`'s; a
/// revision not newer than `held`'s; a delta whose base is not `held`'s
/// revision (or with nothing held). On error `held` is, as always, untouched.
pub fn load(
    bytes: &[u8],
    options: &LoadOptions<'_>,
    held: Option<&Snapshot>,
) -> Result<Snapshot, BundleError> {
    let bundle = Bundle::open(bytes, options.trust, &options.limits)?;
    let m = &bundle.manifest;
    if let Some(h) = held {
        if h.realm() != m.realm {
            return Err(BundleError::RealmMismatch {
                held: h.realm().into(),
                offered: m.realm.clone(),
            });
        }
        if m.revision <= h.revision() {
            return Err(BundleError::Rollback {
                held: h.revision(),
                offered: m.revision,
            });
        }
    }
    match m.kind {
        BundleKind::Snapshot => Snapshot::compile(&bundle),
        BundleKind::Delta => match held {
            Some(h) => h.apply_delta(&bundle),
            None => Err(BundleError::DeltaWithoutBase {
                revision: m.revision,
                why: "no snapshot is held",
            }),
        },
    }
}

fn utf8<'a>(name: &str, bytes: &'a [u8]) -> Result<&'a str, BundleError> {
    std::str::from_utf8(bytes)
        .map_err(|e| BundleError::invalid(name, None, format!("not UTF-8: {e}")))
}

fn compile_schema(text: &str) -> Result<(Schema, ContextShapes), BundleError> {
    let bad = |e: &dyn miette::Diagnostic| {
        BundleError::invalid(
            member::SCHEMA,
            policies::diag_position(e, text),
            policies::diag_message(e),
        )
    };
    let (schema, _warnings) = Schema::from_cedarschema_str(text).map_err(|e| bad(&e))?;
    let shapes = match SchemaFragment::from_cedarschema_str(text) {
        Ok((frag, _)) => frag
            .to_json_value()
            .map(|j| context_shapes(&j))
            .unwrap_or_default(),
        Err(e) => return Err(bad(&e)),
    };
    Ok((schema, shapes))
}

/// Declared context attribute names per action, read from the JSON form of
/// the schema (following one level of common-type reference).
fn context_shapes(json: &Value) -> ContextShapes {
    let mut out = HashMap::new();
    let Some(namespaces) = json.as_object() else {
        return out;
    };
    for (ns, body) in namespaces {
        let common = body.get("commonTypes").and_then(Value::as_object);
        let Some(actions) = body.get("actions").and_then(Value::as_object) else {
            continue;
        };
        for (name, action) in actions {
            let mut ctx = action.pointer("/appliesTo/context");
            let name_of = |v: &Value| {
                v.get("name")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .or_else(|| match v.get("type").and_then(Value::as_str) {
                        Some("Record") | None => None,
                        Some(t) => Some(t.to_owned()),
                    })
            };
            if let (Some(c), Some(common)) = (ctx, common)
                && let Some(n) = name_of(c)
            {
                ctx = common.get(n.rsplit("::").next().unwrap_or(&n));
            }
            let attrs: BTreeSet<String> = ctx
                .and_then(|c| c.get("attributes"))
                .and_then(Value::as_object)
                .map(|a| a.keys().cloned().collect())
                .unwrap_or_default();
            let ty = if ns.is_empty() {
                "Action".to_owned()
            } else {
                format!("{ns}::Action")
            };
            if let Ok(t) = EntityTypeName::from_str(&ty) {
                out.insert(
                    EntityUid::from_type_name_and_id(t, EntityId::new(name)),
                    attrs,
                );
            }
        }
    }
    out
}

impl Snapshot {
    /// Compile a verified snapshot bundle.
    pub fn compile(bundle: &Bundle<'_>) -> Result<Snapshot, BundleError> {
        let Folded {
            members, directory, ..
        } = Folded::from_snapshot_bundle(bundle)?;
        let routes = match members.get(member::ROUTES) {
            Some(b) => Some(Arc::new(parse_routes(b)?)),
            None => None,
        };
        Snapshot::assemble(
            bundle.manifest.clone(),
            bundle.signed_by.clone(),
            members,
            directory,
            routes,
        )
    }

    fn assemble(
        manifest: Manifest,
        signed_by: Option<String>,
        members: Members,
        directory: Option<Directory>,
        routes: Option<Arc<RouteTable>>,
    ) -> Result<Snapshot, BundleError> {
        let text = |name: &str| members.get(name).map(|b| utf8(name, b)).transpose();
        let schema_text = text(member::SCHEMA)?;
        let policies_text = text(member::POLICIES)?
            .ok_or_else(|| BundleError::MissingMember(member::POLICIES.into()))?;
        let links_text = text(member::LINKS)?;
        let entities_text = text(member::ENTITIES)?;
        let (schema, context_shapes) = match schema_text {
            Some(t) => {
                let (s, c) = compile_schema(t)?;
                (Some(s), c)
            }
            None => (None, HashMap::new()),
        };
        let policies = policies::compile(policies_text, links_text, schema.as_ref())?;
        let entities = match entities_text {
            Some(t) => {
                let json: Value = serde_json::from_str(t).map_err(|e| {
                    BundleError::invalid(
                        member::ENTITIES,
                        Some((e.line(), e.column())),
                        e.to_string(),
                    )
                })?;
                Entities::from_json_value(json, schema.as_ref()).map_err(|e| {
                    let message = policies::diag_message(&e);
                    BundleError::invalid(member::ENTITIES, entity_position(t, &message), message)
                })?
            }
            None => match &schema {
                Some(s) => s
                    .action_entities()
                    .map_err(|e| BundleError::invalid(member::SCHEMA, None, e.to_string()))?,
                None => Entities::empty(),
            },
        };
        let authzen_types = match members.get(member::AUTHZEN) {
            Some(b) => {
                let map = crate::authzen::TypeMap::parse(b)
                    .map_err(|e| BundleError::invalid(member::AUTHZEN, None, e.to_string()))?;
                if let Some(s) = &schema {
                    map.check(s)
                        .map_err(|e| BundleError::invalid(member::AUTHZEN, None, e.to_string()))?;
                }
                Some(Arc::new(map))
            }
            None => None,
        };
        let statics = Statics::new(&entities, schema.as_ref())
            .map_err(|e| BundleError::invalid(member::ENTITIES, None, e))?;
        if directory.is_some()
            && let Some(u) = statics
                .map
                .keys()
                .find(|u| u.type_name() == &statics.user_type)
        {
            return Err(BundleError::invalid(
                member::ENTITIES,
                None,
                format!("{u} is a user: with a users.jsonl directory, users belong there"),
            ));
        }
        let verifier = match &manifest.identity {
            Some(i) => {
                Some(Arc::new(Verifier::new(i).map_err(|e| {
                    BundleError::Manifest(format!("identity: {e}"))
                })?))
            }
            None => None,
        };
        let index = match &schema {
            Some(schema) => policies::PolicyIndex::build(&policies.set, schema, &|a| {
                statics
                    .map
                    .get(a)
                    .map(|s| s.ancestors.to_vec())
                    .unwrap_or_default()
            }),
            None => policies::PolicyIndex::default(),
        };
        Ok(Snapshot {
            manifest: Arc::new(manifest),
            signed_by,
            index: Arc::new(index),
            prepared: Arc::new(crate::authorize::PreparedSet::new(&policies.set)),
            users: Arc::new(crate::user_cache::UserCache::new(DEFAULT_USER_CACHE)),
            users_capacity: DEFAULT_USER_CACHE,
            members: Arc::new(members),
            schema: schema.map(Arc::new),
            context_shapes: Arc::new(context_shapes),
            policies: Arc::new(policies),
            statics: Arc::new(statics),
            directory,
            verifier,
            routes,
            authzen_types,
            search_ids: Arc::default(),
        })
    }

    /// Apply a verified delta bundle, producing a new snapshot.
    ///
    /// What the delta changes is decided by [`Changes::of`] and applied by
    /// [`Folded::apply`], the member-level fold compaction uses too; this
    /// then recompiles only what the fold replaced: the Cedar state when a
    /// Cedar member changed, the routes or token verifier when those did,
    /// and otherwise shares everything compiled (a users-only delta costs
    /// the size of the directory's overlay, never of the directory).
    pub fn apply_delta(&self, bundle: &Bundle<'_>) -> Result<Snapshot, BundleError> {
        let changes = Changes::of(bundle)?;
        let replaces_cedar = changes.replaces_cedar();
        let replaces_routes = changes.replaces(member::ROUTES);
        let replaces_identity = changes.identity.is_some();
        let Folded {
            members,
            directory,
            identity,
            ..
        } = self.to_folded().apply(changes)?;
        let routes = match (replaces_routes, members.get(member::ROUTES)) {
            (true, Some(b)) => Some(Arc::new(parse_routes(b)?)),
            (true, None) => None,
            (false, _) => self.routes.clone(),
        };
        let mut manifest = bundle.manifest.clone();
        manifest.kind = BundleKind::Snapshot;
        manifest.base_revision = None;
        manifest.identity = identity;
        if replaces_cedar {
            return Snapshot::assemble(
                manifest,
                bundle.signed_by.clone(),
                members,
                directory,
                routes,
            )
            .map(|s| s.with_user_cache(self.users_capacity));
        }
        // Users (and maybe routes or identity) only: share everything else.
        let verifier = match (replaces_identity, &manifest.identity) {
            (true, Some(i)) => {
                Some(Arc::new(Verifier::new(i).map_err(|e| {
                    BundleError::Manifest(format!("identity: {e}"))
                })?))
            }
            _ => self.verifier.clone(),
        };
        Ok(Snapshot {
            manifest: Arc::new(manifest),
            signed_by: bundle.signed_by.clone(),
            members: Arc::new(members),
            directory,
            routes,
            verifier,
            // The directory changed: nothing built for the old one is valid.
            users: Arc::new(crate::user_cache::UserCache::new(self.users_capacity)),
            search_ids: Arc::default(),
            ..self.clone()
        })
    }

    /// This snapshot's content as members: what a snapshot bundle of its
    /// revision holds (see [`Folded`]). Cheap: members and directory are
    /// shared, not copied.
    pub fn to_folded(&self) -> Folded {
        Folded {
            realm: self.manifest.realm.clone(),
            revision: self.manifest.revision,
            members: (*self.members).clone(),
            directory: self.directory.clone(),
            identity: self.manifest.identity.clone(),
        }
    }

    /// This snapshot with a user-entity cache of `capacity` users (0: none).
    /// Snapshots produced from it by deltas keep the capacity.
    pub fn with_user_cache(mut self, capacity: usize) -> Snapshot {
        self.users = Arc::new(crate::user_cache::UserCache::new(capacity));
        self.users_capacity = capacity;
        self
    }

    /// The realm.
    pub fn realm(&self) -> &str {
        &self.manifest.realm
    }
    /// The revision.
    pub fn revision(&self) -> u64 {
        self.manifest.revision
    }
    /// The manifest (for a delta-applied snapshot: the delta's, as a snapshot).
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }
    /// Key id that signed the last applied bundle (`None` in dev mode).
    pub fn signed_by(&self) -> Option<&str> {
        self.signed_by.as_deref()
    }
    /// The user directory, if the bundle has one.
    pub fn directory(&self) -> Option<&Directory> {
        self.directory.as_ref()
    }
    /// The attributes of a bundle entity (not a directory user), in
    /// Cedar's JSON form; `None` when the bundle holds no such entity. For
    /// reporting (the edge host's decision log picks from it what its
    /// allowlist names), not for deciding: it converts the whole entity.
    pub fn entity_attrs(&self, entity: &crate::decision::EntityRef) -> Option<Map<String, Value>> {
        let ty = EntityTypeName::from_str(&entity.ty).ok()?;
        let uid = EntityUid::from_type_name_and_id(ty, EntityId::new(&entity.id));
        let json = self.statics.map.get(&uid)?.entity.to_json_value().ok()?;
        json.get("attrs").and_then(Value::as_object).cloned()
    }
    /// Look a user up.
    pub fn user(&self, id: &str) -> Option<UserRef<'_>> {
        self.directory.as_ref()?.get(id)
    }
    /// The forward-auth route table, if any.
    pub fn routes(&self) -> Option<&RouteTable> {
        self.routes.as_deref()
    }
    /// The AuthZEN type names (`authzen.json`), if any.
    pub fn authzen_types(&self) -> Option<&crate::authzen::TypeMap> {
        self.authzen_types.as_deref()
    }

    /// Whether `action`'s context may carry `name` (always, without a
    /// schema): hosts add facts they know (`now`, `source_ip`) only where
    /// the schema declares them, so strict validation never refuses them.
    pub fn accepts_context(&self, action: &crate::decision::EntityRef, name: &str) -> bool {
        if self.schema.is_none() {
            return true;
        }
        entity_uid(&self.statics.types, action)
            .ok()
            .and_then(|uid| self.context_shapes.get(&uid))
            .is_some_and(|names| names.contains(name))
    }
    /// Number of policies (static and linked).
    pub fn policy_count(&self) -> usize {
        self.policies.set.policies().count()
    }
    /// Number of non-user entities (including action entities).
    pub fn entity_count(&self) -> usize {
        self.statics.map.len()
    }
    /// The token issuer, if the realm takes tokens.
    pub fn issuer(&self) -> Option<&str> {
        self.verifier.as_deref().map(Verifier::issuer)
    }
    /// The sorted ids of every entity of a type (searches' candidates).
    pub(crate) fn search_ids(&self) -> &crate::search::SortedIds {
        &self.search_ids
    }

    /// The bundle's non-user entities and the type names in use.
    pub(crate) fn statics(&self) -> &Statics {
        &self.statics
    }

    /// The policies whose scope can match requests of this action and these
    /// types (`None`: not indexed, every policy may match).
    pub(crate) fn scoped_policies(
        &self,
        action: &EntityUid,
        principal: &EntityTypeName,
        resource: &EntityTypeName,
    ) -> Option<&cedar_policy::PolicySet> {
        self.index
            .get(action, principal, resource)
            .map(|scoped| &scoped.set)
    }

    /// The Cedar policy set (for tooling and differential tests).
    pub fn policy_set(&self) -> &cedar_policy::PolicySet {
        &self.policies.set
    }
    /// The schema, if any.
    pub fn schema(&self) -> Option<&Schema> {
        self.schema.as_deref()
    }

    /// Every entity of the realm as one Cedar `Entities` — users included.
    /// Expensive for large directories; meant for tests and tooling, never
    /// for the decision path.
    pub fn full_entities(&self, extra: &[Value]) -> Result<Entities, RequestError> {
        let mut all: Vec<cedar_policy::Entity> = self
            .statics
            .map
            .values()
            .map(|s| s.entity.clone())
            .collect();
        if let Some(dir) = &self.directory {
            for u in dir.iter() {
                let mut refs = Vec::new();
                all.push(cedar_policy::Entity::from(
                    slice::user_entity(&self.statics, self.realm(), u, &mut refs)
                        .map_err(RequestError::Directory)?,
                ));
            }
        }
        let known: HashSet<EntityUid> = all.iter().map(cedar_policy::Entity::uid).collect();
        for v in extra {
            let s = Supplied::parse(v).map_err(RequestError::InvalidEntities)?;
            if !known.contains(&s.entity.uid()) {
                all.push(s.entity);
            }
        }
        Entities::from_entities(all, None).map_err(|e| RequestError::InvalidEntities(e.to_string()))
    }

    /// Decide one request.
    pub fn is_authorized(&self, req: &Request) -> Result<Answer, RequestError> {
        let supplied = parse_supplied(&req.entities)?;
        self.decide(req, &supplied, None, None)
    }

    /// Decide one request given as JSON bytes; always a tagged answer.
    pub fn is_authorized_json(&self, json: &[u8]) -> Tagged<Answer> {
        match serde_json::from_slice::<Request>(json) {
            Ok(r) => self.is_authorized(&r).into(),
            Err(e) => Tagged::failure("invalid_json", e.to_string()),
        }
    }

    /// Decide a batch of requests that share a principal or a resource.
    pub fn batch_is_authorized(&self, batch: &BatchRequest) -> Result<BatchAnswer, RequestError> {
        let n = batch.requests.len();
        if n == 0 || n > MAX_BATCH {
            return Err(RequestError::InvalidRequest(format!(
                "a batch holds 1 to {MAX_BATCH} requests, not {n}"
            )));
        }
        let Some(first) = batch.requests.first() else {
            return Err(RequestError::InvalidRequest("empty batch".into()));
        };
        let shared_principal = batch
            .requests
            .iter()
            .all(|r| r.principal == first.principal);
        let shared_resource = batch.requests.iter().all(|r| r.resource == first.resource);
        if !shared_principal && !shared_resource {
            return Err(RequestError::InvalidRequest(
                "every request of a batch must share its principal or its resource".into(),
            ));
        }
        let shared = parse_supplied(&batch.entities)?;
        let results = batch
            .requests
            .iter()
            .map(|r| {
                let own = match parse_supplied(&r.entities) {
                    Ok(o) => o,
                    Err(e) => return Err(e).into(),
                };
                let all: Vec<Supplied> = shared.iter().cloned().chain(own).collect();
                self.decide(r, &all, None, None).into()
            })
            .collect();
        Ok(BatchAnswer { results })
    }

    /// Decide a request whose principal is the subject of `req.token`,
    /// verified at unix time `now`. A refused token is a Deny answer with a
    /// `token:<why>` reason, not an error.
    pub fn is_authorized_with_token(
        &self,
        req: &TokenRequest,
        now: i64,
    ) -> Result<Answer, RequestError> {
        let revision = self.revision();
        let Some(verifier) = &self.verifier else {
            return Ok(Answer::deny(
                Reason::Token(TokenFailure::NoIdentity),
                revision,
            ));
        };
        let token = match verifier.verify(&req.token, now) {
            Ok(t) => t,
            Err(f) => return Ok(Answer::deny(Reason::Token(f), revision)),
        };
        self.decide_verified(&token, req)
    }

    /// Identifies the token verifier (issuer, audiences, keys) this snapshot
    /// uses: equal for snapshots that share it (a users-only delta keeps it),
    /// different once identity settings change. Hosts key verified-token
    /// caches on it, so a removed signing key is never trusted from a cache.
    pub fn verifier_epoch(&self) -> Option<u64> {
        self.verifier.as_deref().map(Verifier::epoch)
    }

    /// Verify a token only (signature, issuer, audience, time), no user checks.
    pub fn verify_token(&self, token: &str, now: i64) -> Result<VerifiedToken, TokenFailure> {
        self.verifier
            .as_ref()
            .ok_or(TokenFailure::NoIdentity)?
            .verify(token, now)
    }

    /// Decide for a token that already passed [`Snapshot::verify_token`]
    /// (hosts cache those). The directory checks — user exists, is Active,
    /// token issued after `tokens_valid_after` — always run here.
    pub fn decide_verified(
        &self,
        token: &VerifiedToken,
        req: &TokenRequest,
    ) -> Result<Answer, RequestError> {
        let revision = self.revision();
        let principal =
            crate::decision::EntityRef::new(crate::directory::USER_TYPE, token.sub.clone());
        let mut override_entity = None;
        let mut found = None;
        if let Some(dir) = &self.directory {
            let Some(user) = Found::lookup(&self.users, dir, &token.sub) else {
                return Ok(Answer::deny(
                    Reason::Token(TokenFailure::UnknownUser),
                    revision,
                ));
            };
            if !user.state().is_authorizable() {
                return Ok(Answer::deny(Reason::UserState(user.state()), revision));
            }
            if crate::token::revoked(token.iat, user.tokens_valid_after()) {
                return Ok(Answer::deny(Reason::Token(TokenFailure::Revoked), revision));
            }
            found = Some(user);
        } else {
            // No directory: the AVP mapping builds the principal from the token.
            override_entity = Some(self.token_principal(token)?);
        }
        let context = self.token_context(token, &req.action, &req.context)?;
        let request = Request {
            principal,
            action: req.action.clone(),
            resource: req.resource.clone(),
            context,
            entities: Vec::new(),
        };
        let supplied = parse_supplied(&req.entities)?;
        self.decide(&request, &supplied, override_entity, found)
    }

    /// The principal entity of a token when there is no directory:
    /// `sub` -> `User`, `cognito:groups` -> `Group` parents, ID-token claims
    /// -> attributes.
    fn token_principal(&self, token: &VerifiedToken) -> Result<cedar_policy::Entity, RequestError> {
        let mut attrs = HashMap::new();
        if token.token_use == TokenUse::Id {
            for (k, v) in &token.claims {
                if let Some(x) = claim_value(v) {
                    attrs.insert(k.clone(), x);
                }
            }
        }
        let parents: HashSet<EntityUid> = token
            .groups()
            .iter()
            .flat_map(|g| {
                let uid = Statics::uid(&self.statics.group_type, g);
                let mut v = vec![uid.clone()];
                if let Some(s) = self.statics.map.get(&uid) {
                    v.extend(s.ancestors.iter().cloned());
                }
                v
            })
            .collect();
        cedar_policy::Entity::new(
            Statics::uid(&self.statics.user_type, &token.sub),
            attrs,
            parents,
        )
        .map_err(|e| RequestError::InvalidRequest(format!("token claims: {e}")))
    }

    /// Caller context plus what the token says (the token wins): `token_use`,
    /// `mfa` (from `amr`), and access-token claims — each only where the
    /// action's context declares it (everything when there is no schema).
    fn token_context(
        &self,
        token: &VerifiedToken,
        action: &crate::decision::EntityRef,
        caller: &Value,
    ) -> Result<Value, RequestError> {
        let mut ctx: Map<String, Value> = match caller {
            Value::Object(m) => m.clone(),
            _ => {
                return Err(RequestError::InvalidRequest(
                    "context must be a JSON object".into(),
                ));
            }
        };
        let declared = match &self.schema {
            None => None,
            Some(_) => {
                let uid = entity_uid(&self.statics.types, action)?;
                Some(self.context_shapes.get(&uid).cloned().unwrap_or_default())
            }
        };
        let wanted = |k: &str| declared.as_ref().is_none_or(|d| d.contains(k));
        if token.token_use == TokenUse::Access {
            for (k, v) in &token.claims {
                if wanted(k) && claim_value(v).is_some() {
                    ctx.insert(k.clone(), v.clone());
                }
            }
        }
        let use_name = if token.token_use == TokenUse::Id {
            "id"
        } else {
            "access"
        };
        if wanted("token_use") {
            ctx.insert("token_use".into(), Value::String(use_name.into()));
        }
        if wanted("mfa") {
            ctx.insert("mfa".into(), Value::Bool(token.mfa()));
        }
        Ok(Value::Object(ctx))
    }

    fn decide(
        &self,
        req: &Request,
        supplied: &[Supplied],
        principal_override: Option<cedar_policy::Entity>,
        found: Option<Found<'_>>,
    ) -> Result<Answer, RequestError> {
        let revision = self.revision();
        let types = &self.statics.types;
        let principal = entity_uid(types, &req.principal)?;
        let action = entity_uid(types, &req.action)?;
        let resource = entity_uid(types, &req.resource)?;
        // Lifecycle gating, before Cedar runs.
        let mut found_principal = None;
        if let Some(dir) = &self.directory
            && principal.type_name() == &self.statics.user_type
        {
            // Found already when the caller checked the user (a token).
            let Some(found) = found.or_else(|| Found::lookup(&self.users, dir, &req.principal.id))
            else {
                return Ok(Answer::deny(Reason::UnknownUser, revision));
            };
            let state = found.state();
            if !state.is_authorizable() {
                return Ok(Answer::deny(Reason::UserState(state), revision));
            }
            found_principal = Some((req.principal.id.as_str(), found));
        }
        let schema = self.schema.as_deref();
        let build = |context| {
            cedar_policy::Request::new(
                principal.clone(),
                action.clone(),
                resource.clone(),
                context,
                schema,
            )
            .map_err(|e| RequestError::InvalidRequest(policies::diag_message(&e)))
        };
        let fast = fast_context(&req.context, types).map(&build);
        let request = match fast {
            Some(Ok(r)) => r,
            _ => {
                let context =
                    Context::from_json_value(req.context.clone(), schema.map(|s| (s, &action)))
                        .map_err(|e| {
                            RequestError::InvalidRequest(format!(
                                "context: {}",
                                policies::diag_message(&e)
                            ))
                        })?;
                build(context)?
            }
        };
        let (action_uid, principal_type, resource_type) =
            (action.clone(), principal.type_name(), resource.type_name());
        use policies::Root;
        let mut context_roots = Vec::new();
        slice::context_refs(&req.context, &self.statics.types, &mut context_roots);
        let roots = [
            (principal.clone(), Root::Principal),
            (action, Root::Action),
            (resource.clone(), Root::Resource),
        ]
        .into_iter()
        .chain(context_roots.into_iter().map(|u| (u, Root::Context)))
        .chain(
            self.policies
                .literals
                .iter()
                .cloned()
                .map(|u| (u, Root::Literal)),
        );
        let input = SliceInput {
            statics: &self.statics,
            directory: self.directory.as_ref(),
            realm: self.realm(),
            supplied,
            principal_override,
            depths: self.policies.depths,
            users: &self.users,
            principal: found_principal,
        };
        let slice = slice::slice(&input, roots).map_err(RequestError::InvalidEntities)?;
        // Request-supplied entities could give the action ancestors the
        // schema does not know; then the whole set is evaluated.
        let prepared = match supplied.is_empty() {
            true => self
                .index
                .get(&action_uid, principal_type, resource_type)
                .map_or(&*self.prepared, |scoped| &scoped.prepared),
            false => &*self.prepared,
        };
        let outcome = prepared.authorize(&request, slice.entities());
        let (decision, reason) = match (outcome.allow, outcome.determining.first()) {
            (true, _) => (Decision::Allow, Reason::Permit),
            (false, Some(id)) => (Decision::Deny, Reason::Forbid(id.clone())),
            (false, None) => (Decision::Deny, Reason::NoPermit),
        };
        let (determining, errors) = (outcome.determining, outcome.errors);
        Ok(Answer {
            decision,
            determining_policies: determining,
            errors,
            reason,
            revision,
        })
    }
}

/// Where in `entities.json` the entity a Cedar error names is defined:
/// Cedar reports entities by uid (`Type::"id"`), not by position.
fn entity_position(text: &str, message: &str) -> Option<(usize, usize)> {
    let start = message.find("::\"")?;
    let rest = message.get(start + 3..)?;
    let id = rest.get(..rest.find('"')?)?;
    let needle = format!("\"{id}\"");
    let at = text.find(&needle)?;
    Some(policies::line_col(text, at))
}

fn parse_routes(bytes: &[u8]) -> Result<RouteTable, BundleError> {
    RouteTable::parse(bytes).map_err(|e| BundleError::invalid(member::ROUTES, None, e.to_string()))
}

fn parse_supplied(entities: &[Value]) -> Result<Vec<Supplied>, RequestError> {
    entities
        .iter()
        .map(|v| Supplied::parse(v).map_err(RequestError::InvalidEntities))
        .collect()
}

fn entity_uid(
    types: &TypeNames,
    r: &crate::decision::EntityRef,
) -> Result<EntityUid, RequestError> {
    types
        .uid(&r.ty, &r.id)
        .map_err(|e| RequestError::InvalidRequest(format!("entity type {:?}: {e}", r.ty)))
}

/// The request context. Fast path: plain JSON values straight into Cedar's
/// core types (`Request::new` then checks them against the schema). When
/// the JSON needs the schema to be read right (an `ipaddr` given as a
/// string, an entity in implicit form) the fast path's request fails
/// validation and the caller retries with Cedar's schema-based parser, so
/// the result is always what that parser gives.
fn fast_context(json: &Value, types: &TypeNames) -> Option<Context> {
    let map = json.as_object()?;
    let mut refs = Vec::new();
    let pairs: Option<
        std::collections::BTreeMap<smol_str::SmolStr, cedar_policy_core::ast::Value>,
    > = map
        .iter()
        .map(|(k, v)| {
            Some((
                smol_str::SmolStr::new(k),
                crate::values::to_value(v, types, &mut refs)?,
            ))
        })
        .collect();
    let core = cedar_policy_core::ast::Context::Value(Arc::new(pairs?));
    Some(<Context as ref_cast::RefCast>::ref_cast(&core).clone())
}

/// A JWT claim as a Cedar attribute value, when it has one.
fn claim_value(v: &Value) -> Option<RestrictedExpression> {
    match v {
        Value::String(s) => Some(RestrictedExpression::new_string(s.clone())),
        Value::Bool(b) => Some(RestrictedExpression::new_bool(*b)),
        Value::Number(n) => n.as_i64().map(RestrictedExpression::new_long),
        Value::Array(items) => {
            let strings: Option<Vec<_>> = items
                .iter()
                .map(|i| {
                    i.as_str()
                        .map(|s| RestrictedExpression::new_string(s.to_owned()))
                })
                .collect();
            strings.map(RestrictedExpression::new_set)
        }
        _ => None,
    }
}
