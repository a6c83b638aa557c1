//! The SQLite domain layer: realms, users and their lifecycle, groups,
//! roles, policies and schemas — successes, refusals that change nothing,
//! and isolation between realms.

use control_plane::group::{Kind, NewNode};
use control_plane::policy::{Link, PolicyInput};
use control_plane::realm::NewRealm;
use control_plane::user::{NewUser, UserQuery};
use control_plane::{Db, Error};
use pdp_core::{LifecycleAction, UserState};
use proptest::prelude::*;
use serde_json::json;

const NOW: i64 = 1_800_000_000;

fn db_with(realms: &[&str]) -> Db {
    let db = Db::open_in_memory().unwrap();
    for r in realms {
        db.create_realm(
            &NewRealm {
                name: (*r).into(),
                ..NewRealm::default()
            },
            "https://cp.example",
            NOW,
        )
        .unwrap();
    }
    db
}

fn user(db: &Db, realm: &str, email: &str) -> String {
    db.create_user(
        realm,
        &NewUser {
            email: email.into(),
            ..NewUser::default()
        },
        NOW,
    )
    .unwrap()
    .id
}

#[test]
fn realms_are_created_listed_and_soft_deleted() {
    let db = db_with(&["acme", "globex"]);
    let r = db.realm("acme").unwrap();
    assert_eq!(r.issuer, "https://cp.example/realms/acme");
    assert_eq!(r.schema_version, 1);
    assert_eq!(r.clients.len(), 1);
    assert!(matches!(
        db.create_realm(
            &NewRealm {
                name: "acme".into(),
                ..NewRealm::default()
            },
            "x",
            NOW
        ),
        Err(Error::AlreadyExists { .. })
    ));
    for bad in ["", "Acme", "a/b", "-x", &"x".repeat(64)] {
        let new = NewRealm {
            name: bad.into(),
            ..NewRealm::default()
        };
        assert!(
            matches!(db.create_realm(&new, "x", NOW), Err(Error::BadRequest(_))),
            "{bad:?}"
        );
    }
    db.delete_realm("globex", NOW + 1).unwrap();
    let names: Vec<_> = db
        .realms(false)
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(names, ["acme"]);
    assert_eq!(db.realms(true).unwrap().len(), 2);
    assert!(matches!(db.realm("globex"), Err(Error::NotFound { .. })));
    assert!(matches!(
        db.delete_realm("globex", NOW),
        Err(Error::NotFound { .. })
    ));
    // A deleted realm's name stays taken (its data is retained).
    assert!(matches!(
        db.create_realm(
            &NewRealm {
                name: "globex".into(),
                ..NewRealm::default()
            },
            "x",
            NOW
        ),
        Err(Error::AlreadyExists { .. })
    ));
    assert!(matches!(
        db.create_user(
            "globex",
            &NewUser {
                email: "a@b.c".into(),
                ..NewUser::default()
            },
            NOW
        ),
        Err(Error::NotFound { kind: "realm", .. })
    ));
}

#[test]
fn emails_are_unique_per_realm_case_insensitively() {
    let db = db_with(&["acme", "globex"]);
    user(&db, "acme", "Alice@Example.com");
    let again = db.create_user(
        "acme",
        &NewUser {
            email: "alice@EXAMPLE.com".into(),
            username: Some("other".into()),
            ..NewUser::default()
        },
        NOW,
    );
    assert!(
        matches!(
            again,
            Err(Error::AlreadyExists {
                kind: "user with email",
                ..
            })
        ),
        "{again:?}"
    );
    // Another realm may hold the same address.
    user(&db, "globex", "alice@example.com");
    for bad in ["no-at", "a@", "@b", "a b@c.d", "a@b@c"] {
        let r = db.create_user(
            "acme",
            &NewUser {
                email: bad.into(),
                ..NewUser::default()
            },
            NOW,
        );
        assert!(matches!(r, Err(Error::BadRequest(_))), "{bad}");
    }
}

#[test]
fn attributes_are_validated_against_the_schema() {
    let db = db_with(&["acme"]);
    let id = db
        .create_user(
            "acme",
            &NewUser {
                email: "a@x.io".into(),
                attrs: json!({"department": "eng", "level": 3})
                    .as_object()
                    .unwrap()
                    .clone(),
                ..NewUser::default()
            },
            NOW,
        )
        .unwrap()
        .id;
    let bad = db.update_user_attrs(
        "acme",
        &id,
        json!({"level": "three"}).as_object().unwrap(),
        NOW,
    );
    let Err(Error::Invalid { diagnostics, .. }) = bad else {
        panic!("{bad:?}")
    };
    assert!(diagnostics[0].message.contains("level"), "{diagnostics:?}");
    assert_eq!(db.user("acme", &id).unwrap().attrs["level"], json!(3));
    let unknown = db.update_user_attrs(
        "acme",
        &id,
        json!({"shoe_size": 9}).as_object().unwrap(),
        NOW,
    );
    assert!(matches!(unknown, Err(Error::Invalid { .. })));
    let reserved = db.update_user_attrs(
        "acme",
        &id,
        json!({"state": "Active"}).as_object().unwrap(),
        NOW,
    );
    assert!(matches!(reserved, Err(Error::Invalid { .. })));
    // Entity references are stored in Cedar's explicit form; null removes.
    let boss = user(&db, "acme", "boss@x.io");
    let u = db
        .update_user_attrs(
            "acme",
            &id,
            json!({"manager": {"type": "User", "id": boss}, "level": null})
                .as_object()
                .unwrap(),
            NOW + 5,
        )
        .unwrap();
    assert_eq!(
        u.attrs["manager"],
        json!({"__entity": {"type": "User", "id": boss}})
    );
    assert!(!u.attrs.contains_key("level"));
    assert_eq!(u.updated_at, NOW + 5);
}

#[test]
fn lifecycle_follows_the_table_and_revokes_tokens() {
    let db = db_with(&["acme"]);
    let id = user(&db, "acme", "a@x.io");
    let act = |a: LifecycleAction, t: i64| db.lifecycle("acme", &id, a, t);
    assert_eq!(
        act(LifecycleAction::Invite, NOW).unwrap().state,
        UserState::Unverified
    );
    assert_eq!(
        act(LifecycleAction::Verify, NOW).unwrap().state,
        UserState::Active
    );
    let refused = act(LifecycleAction::Resume, NOW + 1);
    assert!(matches!(refused, Err(Error::Lifecycle(_))), "{refused:?}");
    let u = db.user("acme", &id).unwrap();
    assert_eq!(
        (u.state, u.tokens_valid_after, u.updated_at),
        (UserState::Active, 0, NOW)
    );
    let s = act(LifecycleAction::Suspend, NOW + 10).unwrap();
    assert_eq!(
        (s.state, s.tokens_valid_after),
        (UserState::Suspended, NOW + 10)
    );
    let r = act(LifecycleAction::Resume, NOW + 20).unwrap();
    assert_eq!(
        (r.state, r.tokens_valid_after),
        (UserState::Active, NOW + 10)
    );
    let so = act(LifecycleAction::SignOutEverywhere, NOW + 30).unwrap();
    assert_eq!(
        (so.state, so.tokens_valid_after),
        (UserState::Active, NOW + 30)
    );
    act(LifecycleAction::Delete, NOW + 40).unwrap();
    // Deleted users vanish from default searches but not from state searches.
    let page = db.search_users("acme", &UserQuery::default()).unwrap();
    assert!(page.users.is_empty());
    let page = db
        .search_users(
            "acme",
            &UserQuery {
                state: Some("Deleted".into()),
                ..UserQuery::default()
            },
        )
        .unwrap();
    assert_eq!(page.users.len(), 1);
    assert_eq!(
        act(LifecycleAction::Restore, NOW + 50).unwrap().state,
        UserState::Active
    );
    assert!(matches!(
        db.lifecycle("acme", "nobody", LifecycleAction::Suspend, NOW),
        Err(Error::NotFound { kind: "user", .. })
    ));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Random action sequences: the stored state always equals the pure
    /// table's answer, refused actions change nothing, and revoking actions
    /// move `tokens_valid_after` to their time.
    #[test]
    fn random_lifecycle_sequences_match_the_table(actions in prop::collection::vec(0usize..10, 1..40)) {
        let db = db_with(&["acme"]);
        let id = user(&db, "acme", "p@x.io");
        let mut state = UserState::Created;
        let mut memory = pdp_core::Memory::default();
        let mut tva = 0;
        for (i, a) in actions.into_iter().enumerate() {
            let action = LifecycleAction::ALL[a];
            let now = NOW + i as i64;
            let expected = state.apply(action, memory);
            let got = db.lifecycle("acme", &id, action, now);
            match (expected, got) {
                (Ok(t), Ok(u)) => {
                    prop_assert_eq!(u.state, t.to);
                    if t.revokes_tokens { tva = now; }
                    prop_assert_eq!(u.tokens_valid_after, tva);
                    state = t.to;
                    memory = t.memory;
                }
                (Err(_), Err(Error::Lifecycle(_))) => {
                    let u = db.user("acme", &id).unwrap();
                    prop_assert_eq!(u.state, state);
                    prop_assert_eq!(u.tokens_valid_after, tva);
                }
                (e, g) => prop_assert!(false, "table {:?} but store {:?}", e, g),
            }
        }
    }
}

#[test]
fn search_pages_by_prefix_and_stays_correct_under_writes() {
    let db = db_with(&["acme"]);
    let mut ids = Vec::new();
    for i in 0..30 {
        ids.push(user(&db, "acme", &format!("u{i:02}@x.io")));
    }
    user(&db, "acme", "zed@x.io");
    let q = |cursor: Option<String>| UserQuery {
        email_prefix: Some("U".into()),
        limit: Some(7),
        cursor,
        ..UserQuery::default()
    };
    let mut seen = Vec::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let page = db.search_users("acme", &q(cursor)).unwrap();
        pages += 1;
        seen.extend(page.users.iter().map(|u| u.email.clone()));
        if pages == 2 {
            // Writes between pages: one before the cursor, one after, and a
            // deletion of a user not yet seen.
            user(&db, "acme", "u00a@x.io");
            user(&db, "acme", "u99@x.io");
            db.lifecycle("acme", &ids[20], LifecycleAction::Delete, NOW)
                .unwrap();
        }
        match page.next {
            Some(n) => cursor = Some(n),
            None => break,
        }
    }
    let mut expected: Vec<String> = (0..30)
        .filter(|i| *i != 20)
        .map(|i| format!("u{i:02}@x.io"))
        .collect();
    expected.push("u99@x.io".into());
    assert_eq!(seen, expected, "sorted, no repeats, no skips");
    assert!(matches!(
        db.search_users(
            "acme",
            &UserQuery {
                cursor: Some("garbage!".into()),
                ..UserQuery::default()
            }
        ),
        Err(Error::BadRequest(_))
    ));
}

#[test]
fn groups_nest_without_cycles_and_feed_memberships() {
    let db = db_with(&["acme"]);
    let node = |kind, id: &str| {
        db.create_node(
            "acme",
            kind,
            &NewNode {
                id: id.into(),
                description: String::new(),
            },
            NOW,
        )
        .unwrap()
    };
    node(Kind::Group, "eng");
    node(Kind::Group, "platform");
    node(Kind::Group, "sre");
    node(Kind::Role, "editor");
    db.add_group_parent("acme", "platform", "eng", NOW).unwrap();
    db.add_group_parent("acme", "sre", "platform", NOW).unwrap();
    for (g, p) in [("eng", "sre"), ("eng", "eng"), ("platform", "sre")] {
        let r = db.add_group_parent("acme", g, p, NOW);
        assert!(matches!(r, Err(Error::Conflict(_))), "{g} in {p}: {r:?}");
    }
    assert_eq!(
        db.node("acme", Kind::Group, "eng").unwrap().parents,
        Vec::<String>::new()
    );
    db.set_group_role("acme", "eng", "editor", true, NOW)
        .unwrap();
    let alice = user(&db, "acme", "alice@x.io");
    db.add_user_to_group("acme", &alice, "sre", NOW).unwrap();
    db.assign_user_role("acme", &alice, "editor", NOW).unwrap();
    let u = db.user("acme", &alice).unwrap();
    assert_eq!(
        (u.groups.as_slice(), u.roles.as_slice()),
        (&["sre".to_owned()][..], &["editor".to_owned()][..])
    );
    assert_eq!(
        db.group_members("acme", "sre").unwrap(),
        std::slice::from_ref(&alice)
    );
    assert!(matches!(
        db.add_user_to_group("acme", &alice, "nope", NOW),
        Err(Error::NotFound { kind: "group", .. })
    ));
    assert!(matches!(
        db.remove_user_from_group("acme", &alice, "eng", NOW),
        Err(Error::NotFound {
            kind: "membership",
            ..
        })
    ));
    db.delete_node("acme", Kind::Group, "sre", NOW).unwrap();
    assert!(db.user("acme", &alice).unwrap().groups.is_empty());
    assert!(db.node("acme", Kind::Group, "platform").unwrap().parents == ["eng"]);
    db.delete_node("acme", Kind::Role, "editor", NOW).unwrap();
    assert!(db.user("acme", &alice).unwrap().roles.is_empty());
    assert!(
        db.node("acme", Kind::Group, "eng")
            .unwrap()
            .roles
            .is_empty()
    );
}

#[test]
fn policies_are_validated_with_cedar_diagnostics() {
    let db = db_with(&["acme"]);
    let input = |body: &str| PolicyInput {
        body: body.into(),
        description: String::new(),
    };
    db.create_policy(
        "acme",
        "own-profile",
        &input("permit (principal, action == Action::\"viewProfile\", resource)\nwhen { resource == principal };"),
        NOW,
    )
    .unwrap();
    // A type error: level is a Long.
    let bad = db.create_policy(
        "acme",
        "typo",
        &input("permit (principal, action == Action::\"viewProfile\", resource)\nwhen { principal.level == \"high\" };"),
        NOW,
    );
    let Err(Error::Invalid { diagnostics, .. }) = bad else {
        panic!("{bad:?}")
    };
    assert_eq!(diagnostics[0].subject, "typo");
    assert_eq!(diagnostics[0].line, Some(2), "{diagnostics:?}");
    // Syntax errors and unknown actions too; nothing was stored.
    for body in [
        "permit (principal, action, resource",
        "permit (principal, action == Action::\"fly\", resource);",
    ] {
        assert!(
            matches!(
                db.create_policy("acme", "x", &input(body), NOW),
                Err(Error::Invalid { .. })
            ),
            "{body}"
        );
    }
    assert!(matches!(
        db.create_policy(
            "acme",
            "y",
            &input("@id(\"y\") permit (principal, action, resource);"),
            NOW
        ),
        Err(Error::Invalid { .. })
    ));
    let ids: Vec<_> = db
        .policies("acme")
        .unwrap()
        .into_iter()
        .map(|p| p.id)
        .collect();
    assert_eq!(ids, ["active-users-only", "own-profile"]);
    // Templates and links.
    let t = db
        .create_policy(
            "acme",
            "folder-reader",
            &input("permit (principal == ?principal, action == Action::\"readDocument\", resource in ?resource);"),
            NOW,
        )
        .unwrap();
    assert!(t.template);
    let link = Link {
        id: "carol-eng".into(),
        template_id: "folder-reader".into(),
        values: [
            (
                "?principal".to_owned(),
                json!({"type": "User", "id": "carol"}),
            ),
            (
                "?resource".to_owned(),
                json!({"type": "Folder", "id": "eng"}),
            ),
        ]
        .into(),
    };
    db.create_link("acme", &link, NOW).unwrap();
    assert!(matches!(
        db.delete_policy("acme", "folder-reader", NOW),
        Err(Error::Conflict(_))
    ));
    let mut wrong = link.clone();
    wrong.id = "bad-link".into();
    wrong
        .values
        .insert("?resource".into(), json!({"type": "Spaceship", "id": "x"}));
    assert!(matches!(
        db.create_link("acme", &wrong, NOW),
        Err(Error::Invalid { .. })
    ));
    db.delete_link("acme", "carol-eng", NOW).unwrap();
    db.delete_policy("acme", "folder-reader", NOW).unwrap();
}

#[test]
fn schema_versions_are_refused_when_content_breaks() {
    let db = db_with(&["acme"]);
    let id = db
        .create_user(
            "acme",
            &NewUser {
                email: "a@x.io".into(),
                attrs: json!({"level": 2}).as_object().unwrap().clone(),
                ..NewUser::default()
            },
            NOW,
        )
        .unwrap()
        .id;
    let v1 = db.schema("acme", None).unwrap();
    // Dropping `level` from User breaks the user's attributes.
    let narrower = v1.text.replace("  level?: Long,\n", "");
    assert_ne!(narrower, v1.text);
    let r = db.put_schema("acme", &narrower, NOW);
    let Err(Error::Invalid { diagnostics, .. }) = r else {
        panic!("{r:?}")
    };
    assert!(diagnostics[0].subject.contains(&id), "{diagnostics:?}");
    assert_eq!(db.schema("acme", None).unwrap().version, 1);
    // Not a schema at all.
    assert!(matches!(
        db.put_schema("acme", "entity ;", NOW),
        Err(Error::Invalid { .. })
    ));
    // A compatible addition is version 2; version 1 stays readable.
    let wider = format!("{}\nentity Project;\n", v1.text);
    assert_eq!(db.put_schema("acme", &wider, NOW).unwrap().version, 2);
    assert_eq!(db.schema("acme", Some(1)).unwrap().text, v1.text);
    assert_eq!(db.realm("acme").unwrap().schema_version, 2);
}

#[test]
fn realms_never_see_each_other() {
    let db = db_with(&["acme", "globex"]);
    let a = user(&db, "acme", "a@acme.io");
    db.create_node(
        "acme",
        Kind::Group,
        &NewNode {
            id: "eng".into(),
            description: String::new(),
        },
        NOW,
    )
    .unwrap();
    assert!(matches!(db.user("globex", &a), Err(Error::NotFound { .. })));
    assert!(matches!(
        db.lifecycle("globex", &a, LifecycleAction::Suspend, NOW),
        Err(Error::NotFound { .. })
    ));
    assert!(
        db.search_users("globex", &UserQuery::default())
            .unwrap()
            .users
            .is_empty()
    );
    assert!(matches!(
        db.node("globex", Kind::Group, "eng"),
        Err(Error::NotFound { .. })
    ));
    assert!(db.nodes("globex", Kind::Group).unwrap().is_empty());
    assert!(matches!(
        db.add_user_to_group("globex", &a, "eng", NOW),
        Err(Error::NotFound { .. })
    ));
    assert_ne!(
        db.bundle_signer("acme").unwrap().kid(),
        db.bundle_signer("globex").unwrap().kid()
    );
}
