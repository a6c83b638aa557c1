//! Differential test: a decision over the per-request slice equals Cedar's
//! decision over every entity of the realm — same decision, same
//! determining policies, same erroring policies — on random realms with
//! deep group hierarchies, users whose attributes reference other users and
//! groups, documents in nested folders, and policies that read data through
//! entity references (one and two hops) and through entity literals.

mod common;

use cedar_policy::{Authorizer, Context, EntityUid, Request as CedarRequest};
use pdp_core::Snapshot;
use pdp_core::decision::{Decision, EntityRef, Reason, Request};
use pdp_core::synth::Rng;
use proptest::prelude::*;
use serde_json::json;
use std::collections::BTreeMap;
use std::str::FromStr;

const POLICIES: &str = r#"
@id("p-group") permit(principal in Group::"g1", action == Action::"read", resource);
@id("p-owner") permit(principal, action, resource) when { resource.owner == principal };
@id("p-manager") permit(principal, action == Action::"read", resource) when { resource.owner.manager == principal };
@id("p-owner-in-team") permit(principal, action == Action::"edit", resource) when { resource.owner in principal.team };
@id("p-team-data") permit(principal, action == Action::"read", resource) when { principal.team.level > 3 };
@id("p-literal") permit(principal, action == Action::"edit", resource) when { Group::"g2".level > principal.level };
@id("p-role") permit(principal in Role::"r1", action, resource in Folder::"f1");
@id("f-two-hops") forbid(principal in Group::"g5", action == Action::"edit", resource) when { resource.owner.manager.manager == principal };
@id("f-folder") forbid(principal, action, resource in Folder::"f3") unless { principal in Role::"r0" };
@id("f-state") forbid(principal is User, action, resource) unless { principal.state == "Active" };
"#;

/// Shallow policies (one dereference): the slicer cuts everything past the
/// first hop, and must still agree.
const SHALLOW: &str = r#"
@id("s-owner") permit(principal, action, resource) when { resource.owner == principal };
@id("s-group") permit(principal in Group::"g1", action == Action::"read", resource);
@id("s-level") forbid(principal, action == Action::"edit", resource) when { principal.level < 2 };
@id("s-folder") permit(principal in Role::"r2", action, resource in Folder::"f2");
@id("s-state") forbid(principal is User, action, resource) unless { principal.state == "Active" };
"#;

/// Asymmetric depths: the principal is read one hop deep, the resource four;
/// when a document's owner is the principal itself, the slicer must follow
/// that user's references again with the resource's larger budget.
const ASYMMETRIC: &str = r#"
@id("a-level") permit(principal, action == Action::"read", resource) when { principal.level > 2 };
@id("a-chain") forbid(principal, action, resource) when { resource.owner has manager && resource.owner.manager has manager && resource.owner.manager.manager.level < 2 };
@id("a-self") permit(principal, action == Action::"edit", resource) when { resource.owner == principal };
@id("a-state") forbid(principal is User, action, resource) unless { principal.state == "Active" };
"#;

/// Every scope form with a schema, so decisions go through the policy
/// index, whose prepared conditions leave out the scope tests the index
/// already settled (action constraints, `is` types). One policy errors
/// (overflow) for most users, to compare erroring policies too.
const SCOPES: &str = r#"
@id("sc-eq") permit(principal == User::"u1", action, resource);
@id("sc-is-in") permit(principal is User in Group::"g2", action == Action::"read", resource is Doc in Folder::"f1");
@id("sc-in-list") permit(principal in Role::"r1", action in [Action::"read", Action::"edit"], resource in Folder::"f2");
@id("sc-group") forbid(principal in Group::"g3", action in Action::"all", resource) when { resource.owner == principal };
@id("sc-res-eq") permit(principal, action == Action::"edit", resource == Doc::"d0") when { principal.level > 2 };
@id("sc-owner") permit(principal is User, action, resource is Doc) when { resource.owner == principal };
@id("sc-wrong-type") permit(principal is User, action, resource is Folder);
@id("sc-overflow") permit(principal, action == Action::"read", resource) when { principal.level * 9223372036854775807 > 0 };
@id("sc-state") forbid(principal is User, action, resource) unless { principal.state == "Active" };
"#;

const SCOPES_SCHEMA: &str = r#"
entity Role;
entity Group in [Group, Role] { level: Long };
entity User in [Group, Role] {
  state: String, email: String, realm: String, level: Long,
  manager?: User, team?: Group,
};
entity Folder in [Folder];
entity Doc in [Folder] { owner: User };
action all;
action read, edit in [Action::"all"] appliesTo { principal: User, resource: Doc };
"#;

/// Policies reading user attributes of every kind the directory stores:
/// sets, records holding entity references, extension values (the
/// directory's slow road), next to the plain ones.
const KINDS: &str = r#"
@id("k-tags") permit(principal, action == Action::"read", resource) when { principal has tags && principal.tags.contains("a") && resource.owner has office && resource.owner.office.floor > 2 };
@id("k-mentor") permit(principal, action == Action::"edit", resource) when { resource.owner has office && resource.owner.office.mentor == principal };
@id("k-mentor-level") permit(principal, action, resource) when { principal has office && principal.office.mentor.level > 5 };
@id("k-net") forbid(principal, action == Action::"edit", resource) when { principal has net && principal.net.isInRange(ip("10.0.0.0/30")) };
@id("k-owner-net") permit(principal, action == Action::"read", resource) when { resource.owner has net && resource.owner.net.isLoopback() == false && principal.level > 3 };
@id("k-state") forbid(principal is User, action, resource) unless { principal.state == "Active" };
"#;

struct Realm {
    snap: Snapshot,
    users: usize,
    docs: usize,
}

fn realm(seed: u64, groups: usize, users: usize, docs: usize) -> Realm {
    realm_with(POLICIES, seed, groups, users, docs)
}

fn realm_with(policies: &str, seed: u64, groups: usize, users: usize, docs: usize) -> Realm {
    realm_full(policies, None, seed, groups, users, docs)
}

fn realm_full(
    policies: &str,
    schema: Option<&str>,
    seed: u64,
    groups: usize,
    users: usize,
    docs: usize,
) -> Realm {
    let mut rng = Rng::new(seed);
    let mut ents = Vec::new();
    for r in 0..3 {
        ents.push(
            json!({"uid": {"type": "Role", "id": format!("r{r}")}, "attrs": {}, "parents": []}),
        );
    }
    for g in 0..groups {
        let mut parents = Vec::new();
        if g > 0 {
            // Parent is an earlier group: hierarchies up to `groups` deep.
            parents.push(json!({"type": "Group", "id": format!("g{}", rng.below(g))}));
        }
        if rng.below(3) == 0 {
            parents.push(json!({"type": "Role", "id": format!("r{}", rng.below(3))}));
        }
        ents.push(json!({"uid": {"type": "Group", "id": format!("g{g}")}, "attrs": {"level": rng.below(7)}, "parents": parents}));
    }
    for f in 0..6 {
        let parents = if f == 0 {
            vec![]
        } else {
            vec![json!({"type": "Folder", "id": format!("f{}", rng.below(f))})]
        };
        ents.push(json!({"uid": {"type": "Folder", "id": format!("f{f}")}, "attrs": {}, "parents": parents}));
    }
    for d in 0..docs {
        ents.push(json!({"uid": {"type": "Doc", "id": format!("d{d}")},
            "attrs": {"owner": {"__entity": {"type": "User", "id": format!("u{}", rng.below(users))}}},
            "parents": [{"type": "Folder", "id": format!("f{}", rng.below(6))}]}));
    }
    let mut lines = String::new();
    for u in 0..users {
        let mut attrs = serde_json::Map::new();
        attrs.insert("level".into(), json!(rng.below(7)));
        if u > 0 && rng.below(3) != 0 {
            attrs.insert(
                "manager".into(),
                json!({"__entity": {"type": "User", "id": format!("u{}", rng.below(u))}}),
            );
        }
        if rng.below(2) == 0 {
            attrs.insert(
                "team".into(),
                json!({"__entity": {"type": "Group", "id": format!("g{}", rng.below(groups))}}),
            );
        }
        // Values of every other kind, where no schema constrains them.
        if schema.is_none() {
            let tags: Vec<&str> = ["a", "b", "c"]
                .into_iter()
                .filter(|_| rng.below(2) == 0)
                .collect();
            attrs.insert("tags".into(), json!(tags));
            if rng.below(2) == 0 {
                attrs.insert(
                    "office".into(),
                    json!({"floor": rng.below(5), "mentor": {"__entity": {"type": "User", "id": format!("u{}", rng.below(users))}}}),
                );
            }
            if rng.below(4) == 0 {
                attrs.insert(
                    "net".into(),
                    json!({"__extn": {"fn": "ip", "arg": format!("10.0.0.{}", rng.below(8))}}),
                );
            }
        }
        let gs: Vec<String> = (0..rng.below(3))
            .map(|_| format!("g{}", rng.below(groups)))
            .collect();
        let mut gs = gs;
        gs.sort();
        gs.dedup();
        let roles: Vec<String> = if rng.below(4) == 0 {
            vec![format!("r{}", rng.below(3))]
        } else {
            vec![]
        };
        let state = if rng.below(8) == 0 {
            "Suspended"
        } else {
            "Active"
        };
        lines.push_str(
            &json!({"id": format!("u{u}"), "username": format!("u{u}"), "email": format!("u{u}@x"),
            "state": state, "groups": gs, "roles": roles, "attrs": attrs})
            .to_string(),
        );
        lines.push('\n');
    }
    let mut files = BTreeMap::from([
        ("policies.cedar".to_owned(), policies.as_bytes().to_vec()),
        (
            "entities.json".to_owned(),
            serde_json::to_vec(&ents).unwrap(),
        ),
        ("users.jsonl".to_owned(), lines.into_bytes()),
    ]);
    if let Some(schema) = schema {
        files.insert("schema.cedarschema".to_owned(), schema.as_bytes().to_vec());
    }
    let snap = common::build_dev(&files);
    Realm { snap, users, docs }
}

fn uid(r: &EntityRef) -> EntityUid {
    EntityUid::from_str(&format!("{}::{:?}", r.ty, r.id)).unwrap()
}

fn check(realm: &Realm, seed: u64, requests: usize) -> Result<usize, TestCaseError> {
    let all = realm.snap.full_entities(&[]).unwrap();
    let mut rng = Rng::new(seed ^ 0xDEAD_BEEF);
    let mut compared = 0;
    for _ in 0..requests {
        let principal = EntityRef::new("User", format!("u{}", rng.below(realm.users)));
        let action = EntityRef::new("Action", if rng.below(2) == 0 { "read" } else { "edit" });
        let resource = EntityRef::new("Doc", format!("d{}", rng.below(realm.docs)));
        let req = Request {
            principal,
            action,
            resource,
            context: json!({}),
            entities: vec![],
        };
        let ours = realm.snap.is_authorized(&req).unwrap();
        let cedar_req = CedarRequest::new(
            uid(&req.principal),
            uid(&req.action),
            uid(&req.resource),
            Context::empty(),
            None,
        )
        .unwrap();
        let full = Authorizer::new().is_authorized(&cedar_req, realm.snap.policy_set(), &all);
        let full_allow = full.decision() == cedar_policy::Decision::Allow;
        prop_assert_eq!(ours.decision == Decision::Allow, full_allow, "{:?}", req);
        if let Reason::UserState(_) = ours.reason {
            // Gated before Cedar; Cedar agrees through f-state (checked above).
            continue;
        }
        let mut full_reason: Vec<String> = full
            .diagnostics()
            .reason()
            .map(ToString::to_string)
            .collect();
        full_reason.sort();
        prop_assert_eq!(&ours.determining_policies, &full_reason, "{:?}", req);
        let mut full_errors: Vec<String> = full
            .diagnostics()
            .errors()
            .map(|e| match e {
                cedar_policy::AuthorizationError::PolicyEvaluationError(p) => {
                    p.policy_id().to_string()
                }
            })
            .collect();
        full_errors.sort();
        let mut our_errors: Vec<String> = ours.errors.iter().map(|e| e.policy_id.clone()).collect();
        our_errors.sort();
        prop_assert_eq!(our_errors, full_errors, "{:?}", req);
        compared += 1;
    }
    Ok(compared)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
    #[test]
    fn slices_decide_exactly_like_the_full_entity_set(seed in any::<u64>(), groups in 2usize..24, users in 2usize..40, docs in 1usize..20) {
        let r = realm(seed, groups, users, docs);
        check(&r, seed, 60)?;
    }

    #[test]
    fn asymmetric_depths_agree_too(seed in any::<u64>(), groups in 2usize..24, users in 2usize..12, docs in 1usize..20) {
        let r = realm_with(ASYMMETRIC, seed, groups, users, docs);
        check(&r, seed, 80)?;
    }

    #[test]
    fn every_scope_form_agrees_through_the_policy_index(seed in any::<u64>(), groups in 4usize..24, users in 2usize..40, docs in 1usize..20) {
        let r = realm_full(SCOPES, Some(SCOPES_SCHEMA), seed, groups, users, docs);
        check(&r, seed, 80)?;
    }

    #[test]
    fn user_attribute_values_of_every_kind_agree(seed in any::<u64>(), groups in 2usize..24, users in 2usize..40, docs in 1usize..20) {
        let realm = realm_with(KINDS, seed, groups, users, docs);
        check(&realm, seed, 60)?;
    }

    #[test]
    fn shallow_policy_sets_agree_too(seed in any::<u64>(), groups in 2usize..24, users in 2usize..40, docs in 1usize..20) {
        let r = realm_with(SHALLOW, seed, groups, users, docs);
        check(&r, seed, 60)?;
    }
}

#[test]
fn a_fixed_deep_realm_compares_many_requests() {
    // One larger realm so the comparison covers plenty of non-gated answers
    // on every run, whatever proptest draws.
    let r = realm(7, 30, 60, 40);
    let compared = check(&r, 7, 600).unwrap();
    assert!(compared > 400, "only {compared} compared");
}

/// Scope constraints on both sides for every permit, so searches narrow
/// their candidates (to group and role members, folder contents, single
/// entities) instead of asking about every entity of the type.
const NARROW: &str = r#"
@id("n-group") permit(principal in Group::"g1", action == Action::"read", resource in Folder::"f1");
@id("n-role") permit(principal in Role::"r1", action in [Action::"read", Action::"edit"], resource == Doc::"d0");
@id("n-eq") permit(principal == User::"u1", action == Action::"edit", resource in Folder::"f2") when { principal.level > 2 };
@id("n-nested") permit(principal is User in Group::"g2", action == Action::"edit", resource is Doc in Folder::"f0") when { resource.owner != principal };
@id("n-forbid") forbid(principal in Group::"g3", action, resource) when { resource.owner == principal };
@id("n-state") forbid(principal is User, action, resource) unless { principal.state == "Active" };
"#;

/// Every page of a search, concatenated (at most 1,000 pages).
fn all_pages(mut search: impl FnMut(Option<String>) -> pdp_core::search::Found) -> Vec<String> {
    let (mut out, mut token) = (Vec::new(), None);
    for _ in 0..1000 {
        let page = search(token.take());
        out.extend(page.results.into_iter().map(|r| r.id));
        match page.next_token {
            Some(t) => token = Some(t),
            None => return out,
        }
    }
    panic!("more than 1,000 pages");
}

fn allows(snap: &Snapshot, p: EntityRef, a: &str, r: EntityRef) -> bool {
    let req = Request {
        principal: p,
        action: EntityRef::new("Action", a),
        resource: r,
        context: json!({}),
        entities: vec![],
    };
    snap.is_authorized(&req)
        .is_ok_and(|answer| answer.decision == Decision::Allow)
}

/// Searches return exactly the entities `is_authorized` allows, in both
/// directions, across pages of `limit`.
fn check_search(realm: &Realm, limit: usize) -> Result<usize, TestCaseError> {
    use pdp_core::search::{ActionSearch, Page, ResourceSearch, SubjectSearch};
    let snap = &realm.snap;
    let page = |token| Page {
        limit: Some(limit),
        token,
    };
    let user = |u: usize| EntityRef::new("User", format!("u{u}"));
    let doc = |d: usize| EntityRef::new("Doc", format!("d{d}"));
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    let mut allowed = 0;
    for a in ["read", "edit"] {
        for u in 0..realm.users.min(10) {
            let expected = sorted(
                (0..realm.docs)
                    .filter(|d| allows(snap, user(u), a, doc(*d)))
                    .map(|d| format!("d{d}"))
                    .collect(),
            );
            let got = all_pages(|token| {
                snap.search_resources(&ResourceSearch {
                    principal: user(u),
                    action: EntityRef::new("Action", a),
                    resource_type: "Doc".into(),
                    context: json!({}),
                    page: page(token),
                })
                .unwrap()
            });
            prop_assert_eq!(&got, &expected, "resources u{} {}", u, a);
            allowed += got.len();
        }
        for d in 0..realm.docs.min(10) {
            let expected = sorted(
                (0..realm.users)
                    .filter(|u| allows(snap, user(*u), a, doc(d)))
                    .map(|u| format!("u{u}"))
                    .collect(),
            );
            let got = all_pages(|token| {
                snap.search_subjects(&SubjectSearch {
                    subject_type: "User".into(),
                    action: EntityRef::new("Action", a),
                    resource: doc(d),
                    context: json!({}),
                    page: page(token),
                })
                .unwrap()
            });
            prop_assert_eq!(&got, &expected, "subjects d{} {}", d, a);
            allowed += got.len();
        }
    }
    for u in 0..realm.users.min(6) {
        for d in 0..realm.docs.min(6) {
            let expected: Vec<String> = ["edit", "read"]
                .into_iter()
                .filter(|a| allows(snap, user(u), a, doc(d)))
                .map(String::from)
                .collect();
            let got = all_pages(|token| {
                snap.search_actions(&ActionSearch {
                    principal: user(u),
                    resource: doc(d),
                    context: json!({}),
                    page: Page {
                        limit: Some(1),
                        token,
                    },
                })
                .unwrap()
            });
            prop_assert_eq!(&got, &expected, "actions u{} d{}", u, d);
        }
    }
    Ok(allowed)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
    #[test]
    fn searches_return_exactly_what_is_authorized_allows(seed in any::<u64>(), groups in 4usize..16, users in 2usize..30, docs in 1usize..20, limit in 1usize..5) {
        // Narrowed by scope constraints (through the policy index)...
        check_search(&realm_full(NARROW, Some(SCOPES_SCHEMA), seed, groups, users, docs), limit)?;
        // ...with open scopes and the index...
        check_search(&realm_full(SCOPES, Some(SCOPES_SCHEMA), seed, groups, users, docs), limit)?;
        // ...and without a schema (no index: every entity of the type asked about).
        check_search(&realm(seed, groups, users, docs), limit)?;
    }
}

#[test]
fn a_fixed_realm_searches_find_something_on_both_sides() {
    // Whatever proptest draws, one realm where searches do return entities.
    let narrow = realm_full(NARROW, Some(SCOPES_SCHEMA), 11, 12, 40, 30);
    let open = realm(11, 12, 40, 30);
    let (a, b) = (
        check_search(&narrow, 2).unwrap(),
        check_search(&open, 3).unwrap(),
    );
    assert!(a > 10 && b > 10, "allowed {a} and {b}");
}

#[test]
fn page_tokens_are_bound_to_their_query_and_revision() {
    use pdp_core::search::{Page, ResourceSearch};
    let r = realm(3, 8, 20, 30);
    let q = |token: Option<String>, principal: &str| ResourceSearch {
        principal: EntityRef::new("User", principal),
        action: EntityRef::new("Action", "read"),
        resource_type: "Doc".into(),
        context: json!({}),
        page: Page {
            limit: Some(1),
            token,
        },
    };
    // A user allowed at least two documents, so there is a second page.
    let (user, first) = (0..20)
        .map(|u| format!("u{u}"))
        .find_map(|u| {
            let f = r.snap.search_resources(&q(None, &u)).unwrap();
            f.next_token.is_some().then_some((u, f))
        })
        .unwrap();
    let token = first.next_token.unwrap();
    assert_eq!(
        pdp_core::search::token_revision(&token),
        Some(r.snap.revision())
    );
    assert!(
        r.snap
            .search_resources(&q(Some(token.clone()), &user))
            .is_ok()
    );
    let other = if user == "u0" { "u1" } else { "u0" };
    let e = r
        .snap
        .search_resources(&q(Some(token.clone()), other))
        .unwrap_err();
    assert_eq!(e.kind(), "invalid_cursor");
    let e = r
        .snap
        .search_resources(&q(Some("bm9wZQ".into()), &user))
        .unwrap_err();
    assert_eq!(e.kind(), "invalid_cursor");
    // The same realm at another revision: the token has expired there.
    let mut files = BTreeMap::new();
    files.insert("policies.cedar".to_owned(), POLICIES.as_bytes().to_vec());
    let elsewhere = common::build_dev_at(&files, r.snap.revision() + 1);
    let e = elsewhere
        .search_resources(&q(Some(token), &user))
        .unwrap_err();
    assert_eq!(e.kind(), "cursor_expired", "{e}");
    // Bad limits and unknown types are refused.
    let mut bad = q(None, &user);
    bad.page.limit = Some(0);
    assert_eq!(
        r.snap.search_resources(&bad).unwrap_err().kind(),
        "invalid_request"
    );
    bad.page.limit = Some(1001);
    assert_eq!(
        r.snap.search_resources(&bad).unwrap_err().kind(),
        "invalid_request"
    );
    let mut unknown = q(None, &user);
    unknown.resource_type = "Nope".into();
    assert_eq!(
        r.snap.search_resources(&unknown).unwrap_err().kind(),
        "invalid_request"
    );
}
