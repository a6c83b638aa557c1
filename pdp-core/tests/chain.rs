//! The chain `HEAD` -> snapshot -> deltas: the planner, the loader over an
//! in-memory store, and compaction checked against applying the deltas one
//! by one (same decisions, same directory, same members).

mod common;

use pdp_core::bundle::{BundleError, BundleHeader, write_archive};
use pdp_core::chain::{self, Behind, ChainError, Folded, Link, Loaded, Plan, Step};
use pdp_core::decision::{Answer, Decision, EntityRef, Reason, Request};
use pdp_core::directory::UserRecord;
use pdp_core::layout::{HEAD_FORMAT, Head, RealmKeys};
use pdp_core::manifest::{BundleKind, IdentitySettings, member};
use pdp_core::sign::{BundleSigner, SignatureError};
use pdp_core::{Limits, LoadOptions, Snapshot, Trust, UserState};
use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;

type Store = HashMap<String, Vec<u8>>;

const REALM: &str = "default";

fn keys() -> RealmKeys {
    RealmKeys::new("bundles", REALM)
}

fn head(snapshot: u64, revision: u64) -> Head {
    Head {
        format: HEAD_FORMAT.into(),
        realm: REALM.into(),
        revision,
        snapshot,
        issued_at: 1_764_000_000,
        resign_interval_seconds: 30,
    }
}

fn with_options<T>(f: impl FnOnce(&LoadOptions<'_>) -> T) -> T {
    let ring = common::keyring();
    f(&LoadOptions {
        trust: Trust::Keyring(&ring),
        limits: Limits::default(),
    })
}

/// A "get object" over `store` that records every key asked for.
fn getter<'a>(
    store: &'a Store,
    asked: &'a mut Vec<String>,
) -> impl FnMut(&str) -> Result<Option<Vec<u8>>, Infallible> + 'a {
    move |key| {
        asked.push(key.to_owned());
        Ok(store.get(key).cloned())
    }
}

fn load(store: &Store, h: &Head, held: Option<&Snapshot>) -> Result<Loaded, ChainError> {
    let mut asked = Vec::new();
    with_options(|o| chain::load(getter(store, &mut asked), h, &keys(), held, o))
}

fn loaded(store: &Store, h: &Head, held: Option<&Snapshot>) -> Snapshot {
    match load(store, h, held) {
        Ok(Loaded::Updated(s)) => s,
        other => panic!("expected a new snapshot, got {other:?}"),
    }
}

fn compact(store: &Store, h: &Head) -> Result<Folded, ChainError> {
    let mut asked = Vec::new();
    with_options(|o| chain::compact(getter(store, &mut asked), h, &keys(), o))
}

fn delta_header(base: u64, revision: u64, identity: Option<IdentitySettings>) -> BundleHeader {
    BundleHeader {
        realm: REALM.into(),
        revision,
        kind: BundleKind::Delta,
        base_revision: Some(base),
        created_at: 1_764_000_000 + i64::try_from(revision).unwrap(),
        identity,
    }
}

fn delta(
    base: u64,
    revision: u64,
    members: &BTreeMap<String, Vec<u8>>,
    identity: Option<IdentitySettings>,
    signer: &BundleSigner,
) -> Vec<u8> {
    write_archive(
        &delta_header(base, revision, identity),
        members,
        Some(signer),
        true,
    )
    .unwrap()
}

fn users_member(lines: &[String]) -> BTreeMap<String, Vec<u8>> {
    let mut text = lines.join("\n");
    text.push('\n');
    BTreeMap::from([(member::USERS.to_owned(), text.into_bytes())])
}

fn identity(n: u64) -> IdentitySettings {
    IdentitySettings {
        issuer: format!("https://issuer.example/{n}"),
        audiences: vec!["app".into()],
        token_use: Vec::new(),
        jwks: serde_json::json!({"keys": []}),
        leeway_seconds: None,
    }
}

fn read_doc(user: &str) -> Request {
    Request {
        principal: EntityRef::new("User", user),
        action: EntityRef::new("Action", "readDocument"),
        resource: EntityRef::new("Document", "design-doc"),
        context: serde_json::json!({}),
        entities: vec![],
    }
}

fn alice(state: UserState) -> UserRecord {
    let mut r = common::reference_snapshot_cached()
        .user("alice")
        .unwrap()
        .to_record();
    r.state = state;
    r
}

/// The reference realm at revision 1, then delta 2 (alice suspended) and
/// delta 3 (bob removed, a new issuer).
fn reference_chain() -> (Store, Head) {
    let k = keys();
    let signer = common::signer();
    let mut store = Store::new();
    store.insert(
        k.snapshot(1),
        common::build_signed(&common::reference_files(), 1),
    );
    let suspend = pdp_core::directory::UserChange::Upsert(alice(UserState::Suspended));
    store.insert(
        k.delta(2),
        delta(
            1,
            2,
            &users_member(&[suspend.to_json_line()]),
            None,
            &signer,
        ),
    );
    let remove = pdp_core::directory::UserChange::Remove("bob".into());
    store.insert(
        k.delta(3),
        delta(
            2,
            3,
            &users_member(&[remove.to_json_line()]),
            Some(identity(3)),
            &signer,
        ),
    );
    (store, head(1, 3))
}

fn step(kind: BundleKind, revision: u64) -> Step {
    let key = match kind {
        BundleKind::Snapshot => keys().snapshot(revision),
        BundleKind::Delta => keys().delta(revision),
    };
    Step {
        key,
        kind,
        revision,
    }
}

#[test]
fn the_planner_fetches_what_is_missing_and_nothing_else() {
    use BundleKind::{Delta, Snapshot};
    let h = head(10, 14);
    let plan = |held| {
        chain::steps(held, &h, &keys())
            .map(|s| s.collect::<Vec<_>>())
            .map_err(|b: Behind| (b.held, b.head))
    };
    let from_snapshot: Vec<Step> = [
        step(Snapshot, 10),
        step(Delta, 11),
        step(Delta, 12),
        step(Delta, 13),
        step(Delta, 14),
    ]
    .into();
    assert_eq!(plan(None), Ok(from_snapshot.clone()));
    // Older than HEAD's snapshot: the snapshot replaces what is held.
    assert_eq!(plan(Some(3)), Ok(from_snapshot.clone()));
    assert_eq!(plan(Some(9)), Ok(from_snapshot));
    // At or after it: deltas only.
    assert_eq!(
        plan(Some(10)),
        Ok(vec![
            step(Delta, 11),
            step(Delta, 12),
            step(Delta, 13),
            step(Delta, 14)
        ])
    );
    assert_eq!(plan(Some(13)), Ok(vec![step(Delta, 14)]));
    assert_eq!(plan(Some(14)), Ok(vec![]));
    assert_eq!(plan(Some(15)), Err((15, 14)));
    assert_eq!(
        chain::steps(Some(14), &h, &keys()).unwrap().plan(),
        &Plan::Current
    );
    // A fresh snapshot with no deltas after it.
    let compacted = head(14, 14);
    assert_eq!(
        chain::steps(None, &compacted, &keys())
            .unwrap()
            .collect::<Vec<_>>(),
        vec![step(Snapshot, 14)]
    );
    assert_eq!(
        chain::steps(Some(12), &compacted, &keys())
            .unwrap()
            .collect::<Vec<_>>(),
        vec![step(Snapshot, 14)]
    );
    // HEAD is unsigned: a huge revision is planned lazily, not allocated.
    let absurd = head(0, u64::MAX);
    let mut s = chain::steps(Some(5), &absurd, &keys()).unwrap();
    assert_eq!(s.next(), Some(step(Delta, 6)));
    assert!(s.size_hint().0 > 1 << 60);
    let last = chain::steps(Some(u64::MAX - 1), &absurd, &keys())
        .unwrap()
        .collect::<Vec<_>>();
    assert_eq!(last, vec![step(Delta, u64::MAX)]);
    // `layout::Plan` is the same planner.
    assert_eq!(
        pdp_core::layout::Plan::new(Some(12), &h),
        Plan::Deltas { from: 13, to: 14 }
    );
}

#[test]
fn a_chain_loads_from_its_snapshot_or_extends_what_is_held() {
    let (mut store, h) = reference_chain();
    let snap = loaded(&store, &h, None);
    assert_eq!(snap.revision(), 3);
    assert_eq!(
        snap.is_authorized(&read_doc("alice")).unwrap().reason,
        Reason::UserState(UserState::Suspended)
    );
    assert!(snap.user("bob").is_none());
    assert_eq!(snap.issuer(), Some("https://issuer.example/3"));

    // Held at revision 1: only the deltas are fetched.
    let first = common::reference_snapshot();
    let mut asked = Vec::new();
    let from_held =
        with_options(|o| chain::load(getter(&store, &mut asked), &h, &keys(), Some(&first), o));
    assert!(matches!(from_held, Ok(Loaded::Updated(ref s)) if s.revision() == 3));
    assert_eq!(asked, vec![keys().delta(2), keys().delta(3)]);
    assert_eq!(first.revision(), 1, "what is held is untouched");

    // Current: nothing fetched.
    let mut asked = Vec::new();
    let current =
        with_options(|o| chain::load(getter(&store, &mut asked), &h, &keys(), Some(&snap), o));
    assert!(matches!(current, Ok(Loaded::Current)));
    assert!(asked.is_empty());

    // The store went backwards.
    assert!(matches!(
        load(&store, &head(1, 2), Some(&snap)),
        Err(ChainError::Behind { held: 3, head: 2 })
    ));

    // After a compaction to revision 3 and a delta 4, a reader at revision
    // 1 loads the new snapshot, not the old deltas.
    let folded = compact(&store, &h).unwrap();
    let signer = common::signer();
    let bytes = write_archive(
        &folded.header(1_764_000_500),
        &folded.into_members(),
        Some(&signer),
        true,
    )
    .unwrap();
    store.insert(keys().snapshot(3), bytes);
    let back = pdp_core::directory::UserChange::Upsert(alice(UserState::Active));
    store.insert(
        keys().delta(4),
        delta(3, 4, &users_member(&[back.to_json_line()]), None, &signer),
    );
    store.remove(&keys().delta(2));
    let mut asked = Vec::new();
    let h4 = head(3, 4);
    let again =
        with_options(|o| chain::load(getter(&store, &mut asked), &h4, &keys(), Some(&first), o));
    let Ok(Loaded::Updated(again)) = again else {
        panic!("{again:?}")
    };
    assert_eq!(asked, vec![keys().snapshot(3), keys().delta(4)]);
    assert_eq!(again.revision(), 4);
    assert_eq!(
        again.is_authorized(&read_doc("alice")).unwrap().decision,
        Decision::Allow
    );
    assert_eq!(again.issuer(), Some("https://issuer.example/3"));
}

#[test]
fn a_missing_or_misplaced_bundle_names_its_key() {
    let (store, h) = reference_chain();
    let signer = common::signer();

    let mut missing = store.clone();
    missing.remove(&keys().delta(2));
    match load(&missing, &h, None) {
        Err(ChainError::Missing { key }) => assert_eq!(key, keys().delta(2)),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        compact(&missing, &h),
        Err(ChainError::Missing { key }) if key == keys().delta(2)
    ));
    let mut no_snapshot = store.clone();
    no_snapshot.remove(&keys().snapshot(1));
    assert!(matches!(
        load(&no_snapshot, &h, None),
        Err(ChainError::Missing { key }) if key == keys().snapshot(1)
    ));

    // A delta on the wrong base, at the place of delta 3.
    let mut wrong_base = store.clone();
    wrong_base.insert(
        keys().delta(3),
        delta(1, 3, &BTreeMap::new(), None, &signer),
    );
    let want = Link {
        kind: BundleKind::Delta,
        revision: 3,
        base: Some(2),
    };
    for result in [
        load(&wrong_base, &h, None).map(|_| ()),
        compact(&wrong_base, &h).map(|_| ()),
    ] {
        match result {
            Err(ChainError::Misplaced {
                key,
                expected,
                found,
            }) => {
                assert_eq!(key, keys().delta(3));
                assert_eq!(expected, want);
                assert_eq!(
                    found,
                    Link {
                        kind: BundleKind::Delta,
                        revision: 3,
                        base: Some(1)
                    }
                );
            }
            other => panic!("{other:?}"),
        }
    }

    // Another revision than its key says; a snapshot where a delta belongs.
    let mut ahead = store.clone();
    ahead.insert(
        keys().delta(3),
        delta(3, 4, &BTreeMap::new(), None, &signer),
    );
    assert!(matches!(
        load(&ahead, &h, None),
        Err(ChainError::Misplaced {
            found: Link { revision: 4, .. },
            ..
        })
    ));
    let mut snapshot_as_delta = store.clone();
    snapshot_as_delta.insert(
        keys().delta(3),
        common::build_signed(&common::reference_files(), 3),
    );
    assert!(matches!(
        load(&snapshot_as_delta, &h, None),
        Err(ChainError::Misplaced {
            found: Link {
                kind: BundleKind::Snapshot,
                ..
            },
            ..
        })
    ));

    // Another realm's delta.
    let mut foreign = store.clone();
    let mut header = delta_header(1, 2, None);
    header.realm = "other".into();
    foreign.insert(
        keys().delta(2),
        write_archive(&header, &BTreeMap::new(), Some(&signer), true).unwrap(),
    );
    assert!(matches!(
        load(&foreign, &h, None),
        Err(ChainError::Realm { key, found, .. }) if key == keys().delta(2) && found == "other"
    ));

    // Held of another realm.
    let mut other_head = h.clone();
    other_head.realm = "other".into();
    let held = common::reference_snapshot();
    assert!(matches!(
        load(&store, &other_head, Some(&held)),
        Err(ChainError::Realm { expected, found, .. }) if expected == REALM && found == "other"
    ));
}

#[test]
fn a_tampered_or_foreign_bundle_is_refused() {
    let (store, h) = reference_chain();
    let signer = common::signer();

    // Delta 2 as a plain tar, its users.jsonl changed after signing.
    let suspend = pdp_core::directory::UserChange::Upsert(alice(UserState::Suspended));
    let plain = write_archive(
        &delta_header(1, 2, None),
        &users_member(&[suspend.to_json_line()]),
        Some(&signer),
        false,
    )
    .unwrap();
    let needle = b"\"Suspended\"";
    let at = plain
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap();
    let mut tampered = plain.clone();
    tampered[at..at + needle.len()].copy_from_slice(b"\"Activeeee\"");
    let mut bad = store.clone();
    bad.insert(keys().delta(2), tampered);
    for result in [
        load(&bad, &h, None).map(|_| ()),
        compact(&bad, &h).map(|_| ()),
    ] {
        match result {
            Err(ChainError::Bundle { key, source }) => {
                assert_eq!(key, keys().delta(2));
                assert_eq!(source, BundleError::HashMismatch(member::USERS.into()));
            }
            other => panic!("{other:?}"),
        }
    }

    // A snapshot signed by a key the keyring does not hold.
    let stranger = BundleSigner::from_seed(&[99; 32]);
    let mut foreign = store.clone();
    foreign.insert(
        keys().snapshot(1),
        pdp_core::source::build(
            &common::reference_files(),
            &common::opts(1),
            Some(&stranger),
        )
        .unwrap(),
    );
    assert!(matches!(
        load(&foreign, &h, None),
        Err(ChainError::Bundle { key, source: BundleError::Signature(SignatureError::UnknownKid(_)) })
            if key == keys().snapshot(1)
    ));

    // A delta whose users.jsonl does not parse: refused with its key, by
    // the loader and by compaction alike.
    let mut broken = store.clone();
    broken.insert(
        keys().delta(2),
        delta(1, 2, &users_member(&["{\"id\":".to_owned()]), None, &signer),
    );
    for result in [
        load(&broken, &h, None).map(|_| ()),
        compact(&broken, &h).map(|_| ()),
    ] {
        assert!(
            matches!(&result, Err(ChainError::Bundle { key, source: BundleError::Invalid { member: m, .. } })
                if *key == keys().delta(2) && m == member::USERS),
            "{result:?}"
        );
    }

    // The store's own failure comes back as it was.
    let e = with_options(|o| {
        chain::load(
            |_: &str| Err::<Option<Vec<u8>>, _>("unreachable"),
            &h,
            &keys(),
            None,
            o,
        )
    })
    .unwrap_err();
    assert!(matches!(e, ChainError::Get("unreachable")));
    assert_eq!(e.kind(), "store_unreachable");
}

#[test]
fn compaction_is_deterministic_and_equals_the_loaded_chain() {
    let (store, h) = reference_chain();
    let a = compact(&store, &h).unwrap();
    let b = compact(&store, &h).unwrap();
    assert_eq!((a.revision, a.users()), (3, 11));
    assert_eq!(a.identity, Some(identity(3)));
    let loaded = loaded(&store, &h, None);
    let members = a.into_members();
    assert_eq!(members, b.into_members());
    assert_eq!(members, loaded.to_folded().into_members());
}

// ---------------------------------------------------------------------
// Differential: compaction against applying the deltas one by one.
// ---------------------------------------------------------------------

/// splitmix64: a small deterministic generator, so a failing seed is
/// reproducible from the assertion message.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % u64::try_from(n).unwrap()).unwrap()
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<'a>(&mut self, xs: &'a [&'a str]) -> &'a str {
        xs[self.below(xs.len())]
    }
    fn subset(&mut self, xs: &[&str], percent: u64) -> Vec<String> {
        xs.iter()
            .filter(|_| self.chance(percent))
            .map(|s| (*s).to_owned())
            .collect()
    }
}

const SCHEMA: &str = r#"
entity Role;
entity Group in [Group, Role];
entity User in [Group, Role] {
  state: String,
  email: String,
  realm: String,
  level?: Long,
  dept?: String,
};
entity Document {
  owner: User,
  dept: String,
};
action view, edit appliesTo { principal: User, resource: Document };
action viewProfile appliesTo { principal: User, resource: User };
"#;

const POLICIES: [&str; 8] = [
    r#"@id("role-view") permit (principal in Role::"r0", action == Action::"view", resource);"#,
    r#"@id("owner") permit (principal, action in [Action::"view", Action::"edit"], resource is Document) when { resource.owner == principal };"#,
    r#"@id("level-edit") permit (principal, action == Action::"edit", resource is Document) when { principal has level && principal.level >= 3 };"#,
    r#"@id("dept-view") permit (principal, action == Action::"view", resource is Document) when { principal has dept && principal.dept == resource.dept };"#,
    r#"@id("g1-no-edit") forbid (principal in Group::"g1", action == Action::"edit", resource);"#,
    r#"@id("self") permit (principal, action == Action::"viewProfile", resource) when { resource == principal };"#,
    r#"@id("r1-profiles") permit (principal in Role::"r1", action == Action::"viewProfile", resource is User) when { resource.state == "Active" };"#,
    r#"@id("r2-low") forbid (principal in Role::"r2", action, resource) when { principal has level && principal.level < 1 };"#,
];

/// Ids ever used: the snapshot holds some, deltas add, change and remove
/// others, and requests ask about every one (absent ones too).
const USER_IDS: [&str; 8] = ["u0", "u1", "u2", "u3", "u4", "u5", "u6", "u7"];
const GROUPS: [&str; 4] = ["g0", "g1", "g2", "g3"];
const ROLES: [&str; 3] = ["r0", "r1", "r2"];
const DOCS: [&str; 4] = ["d0", "d1", "d2", "d3"];
const DEPTS: [&str; 3] = ["eng", "ops", "law"];

fn random_user(rng: &mut Rng, id: &str) -> UserRecord {
    let states = [
        UserState::Active,
        UserState::Active,
        UserState::Active,
        UserState::Suspended,
        UserState::Unverified,
        UserState::Deleted,
    ];
    let mut attrs = serde_json::Map::new();
    if rng.chance(70) {
        attrs.insert("level".into(), serde_json::json!(rng.below(5)));
    }
    if rng.chance(60) {
        attrs.insert("dept".into(), serde_json::json!(rng.pick(&DEPTS)));
    }
    UserRecord {
        id: id.to_owned(),
        username: format!("user-{id}"),
        email: format!("{id}@example.com"),
        state: states[rng.below(states.len())],
        groups: rng.subset(&GROUPS, 35),
        roles: rng.subset(&ROLES, 25),
        attrs,
        tokens_valid_after: 0,
        updated_at: 1_764_000_000 + i64::try_from(rng.below(1000)).unwrap(),
    }
}

fn random_entities(rng: &mut Rng) -> Vec<u8> {
    let mut out = Vec::new();
    for r in ROLES {
        out.push(serde_json::json!({"uid": {"type": "Role", "id": r}, "attrs": {}, "parents": []}));
    }
    for (i, g) in GROUPS.iter().enumerate() {
        let mut parents: Vec<serde_json::Value> = ROLES
            .iter()
            .filter(|_| rng.chance(30))
            .map(|r| serde_json::json!({"type": "Role", "id": r}))
            .collect();
        // Groups only inside earlier groups: no cycles.
        parents.extend(
            GROUPS[..i]
                .iter()
                .filter(|_| rng.chance(30))
                .map(|p| serde_json::json!({"type": "Group", "id": p})),
        );
        out.push(
            serde_json::json!({"uid": {"type": "Group", "id": g}, "attrs": {}, "parents": parents}),
        );
    }
    for d in DOCS {
        out.push(serde_json::json!({
            "uid": {"type": "Document", "id": d},
            "attrs": {
                "owner": {"__entity": {"type": "User", "id": rng.pick(&USER_IDS)}},
                "dept": rng.pick(&DEPTS),
            },
            "parents": [],
        }));
    }
    serde_json::to_vec_pretty(&out).unwrap()
}

fn random_policies(rng: &mut Rng) -> Vec<u8> {
    let mut chosen: Vec<&str> = POLICIES
        .iter()
        .copied()
        .filter(|_| rng.chance(50))
        .collect();
    if chosen.is_empty() {
        chosen.push(POLICIES[rng.below(POLICIES.len())]);
    }
    (chosen.join("\n") + "\n").into_bytes()
}

fn user_lines(records: &[UserRecord]) -> Vec<u8> {
    records
        .iter()
        .map(|r| serde_json::to_string(r).unwrap() + "\n")
        .collect::<String>()
        .into_bytes()
}

/// Every request the differential compares: each user id (present or not)
/// viewing and editing each document and viewing each profile.
fn requests() -> Vec<Request> {
    let mut out = Vec::new();
    for p in USER_IDS {
        for d in DOCS {
            for a in ["view", "edit"] {
                out.push(Request {
                    principal: EntityRef::new("User", p),
                    action: EntityRef::new("Action", a),
                    resource: EntityRef::new("Document", d),
                    context: serde_json::json!({}),
                    entities: vec![],
                });
            }
        }
        for r in USER_IDS {
            out.push(Request {
                principal: EntityRef::new("User", p),
                action: EntityRef::new("Action", "viewProfile"),
                resource: EntityRef::new("User", r),
                context: serde_json::json!({}),
                entities: vec![],
            });
        }
    }
    out
}

fn answers(snap: &Snapshot, requests: &[Request]) -> Vec<Result<Answer, String>> {
    requests
        .iter()
        .map(|r| snap.is_authorized(r).map_err(|e| e.to_string()))
        .collect()
}

/// Fail on the first request answered differently, naming it.
fn same_answers(
    seed: u64,
    requests: &[Request],
    want: &[Result<Answer, String>],
    got: &[Result<Answer, String>],
) {
    assert_eq!(want.len(), got.len());
    for ((r, w), g) in requests.iter().zip(want).zip(got) {
        assert_eq!(
            w, g,
            "seed {seed}: {} {} {}",
            r.principal.id, r.action.id, r.resource.id
        );
    }
}

/// A random realm and `n` random deltas on it, stored as a chain.
fn random_chain(rng: &mut Rng, n: u64) -> (Store, Head) {
    let signer = common::signer();
    let mut files = BTreeMap::new();
    files.insert(member::SCHEMA.to_owned(), SCHEMA.as_bytes().to_vec());
    files.insert(member::POLICIES.to_owned(), random_policies(rng));
    files.insert(member::ENTITIES.to_owned(), random_entities(rng));
    // Now and then a realm without a directory (plain Cedar) until a delta
    // brings users.
    if rng.chance(85) {
        let users: Vec<UserRecord> = USER_IDS[..rng.below(6)]
            .iter()
            .map(|id| random_user(rng, id))
            .collect();
        files.insert(member::USERS.to_owned(), user_lines(&users));
    }
    if rng.chance(30) {
        files.insert(
            member::IDENTITY.to_owned(),
            serde_json::to_vec(&identity(1)).unwrap(),
        );
    }
    let mut store = Store::new();
    store.insert(keys().snapshot(1), common::build_signed(&files, 1));
    for revision in 2..=n + 1 {
        let mut members = BTreeMap::new();
        if rng.chance(70) {
            let mut lines = Vec::new();
            for _ in 0..=rng.below(3) {
                let id = rng.pick(&USER_IDS);
                let change = if rng.chance(70) {
                    pdp_core::directory::UserChange::Upsert(random_user(rng, id))
                } else {
                    pdp_core::directory::UserChange::Remove(id.to_owned())
                };
                lines.push(change.to_json_line());
            }
            members = users_member(&lines);
        }
        if rng.chance(25) {
            members.insert(member::POLICIES.to_owned(), random_policies(rng));
        }
        if rng.chance(25) {
            members.insert(member::ENTITIES.to_owned(), random_entities(rng));
        }
        let identity = rng.chance(20).then(|| identity(revision));
        store.insert(
            keys().delta(revision),
            delta(revision - 1, revision, &members, identity, &signer),
        );
    }
    (store, head(1, n + 1))
}

#[test]
fn compaction_answers_like_the_deltas_applied_one_by_one() {
    let requests = requests();
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    for seed in 0..48u64 {
        let mut rng = Rng(seed);
        let n = u64::try_from(rng.below(7)).unwrap();
        let (store, h) = random_chain(&mut rng, n);

        // The deltas applied one by one with Snapshot::apply_delta.
        let mut stepwise = common::load_signed(&store[&keys().snapshot(1)], None).unwrap();
        for revision in 2..=h.revision {
            stepwise = common::load_signed(&store[&keys().delta(revision)], Some(&stepwise))
                .unwrap_or_else(|e| panic!("seed {seed}: delta {revision}: {e}"));
        }

        // The chain folded into one snapshot, written and loaded like any.
        let folded = compact(&store, &h).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        assert_eq!(folded.revision, h.revision, "seed {seed}");
        let signer = common::signer();
        let bytes = write_archive(
            &folded.header(1_764_001_000),
            &folded.clone().into_members(),
            Some(&signer),
            true,
        )
        .unwrap();
        let compacted = common::load_signed(&bytes, None)
            .unwrap_or_else(|e| panic!("seed {seed}: the compacted snapshot: {e}"));

        let want = answers(&stepwise, &requests);
        same_answers(seed, &requests, &want, &answers(&compacted, &requests));
        assert_eq!(
            stepwise.directory().map(|d| d.to_jsonl()),
            compacted.directory().map(|d| d.to_jsonl()),
            "seed {seed}"
        );
        assert_eq!(
            stepwise.manifest().identity,
            compacted.manifest().identity,
            "seed {seed}"
        );
        assert_eq!(stepwise.issuer(), compacted.issuer(), "seed {seed}");
        let members = folded.into_members();
        assert_eq!(members, stepwise.to_folded().into_members(), "seed {seed}");
        assert_eq!(members, compacted.to_folded().into_members(), "seed {seed}");

        // The loader agrees too.
        let through_chain = loaded(&store, &h, None);
        same_answers(seed, &requests, &want, &answers(&through_chain, &requests));

        for a in want.iter().flatten() {
            let kind = a.reason.to_string();
            let kind = kind.split(':').next().unwrap_or_default().to_owned();
            *reasons.entry(kind).or_default() += 1;
        }
    }
    // The generator reaches every kind of answer.
    for kind in [
        "permit",
        "no_permit",
        "forbid",
        "user_state",
        "unknown_user",
    ] {
        assert!(reasons.get(kind).is_some_and(|n| *n >= 20), "{reasons:?}");
    }
}
