//! The service over the embedded backends: realms, users and their
//! lifecycle, groups, roles, policies and schemas — successes, refusals
//! that change nothing, and isolation between realms.

mod support;

use control_plane::Error;
use control_plane::domain::group::{Kind, NewNode};
use control_plane::domain::policy::{Link, PolicyInput};
use control_plane::domain::realm::NewRealm;
use control_plane::domain::user::{NewUser, UserQuery};
use pdp_core::{LifecycleAction, UserState};
use proptest::prelude::*;
use serde_json::json;
use support::{Cp, NOW, OP};

fn new_realm(name: &str) -> NewRealm {
    NewRealm {
        name: name.into(),
        ..NewRealm::default()
    }
}

#[tokio::test]
async fn realms_are_created_listed_and_soft_deleted() {
    let cp = Cp::with_realms(&["acme", "globex"]).await;
    let s = &cp.service;
    let r = s.realm(OP, "acme").await.unwrap();
    assert_eq!(r.issuer, "https://cp.example/realms/acme");
    assert_eq!(r.schema_version, 1);
    assert_eq!(r.clients.len(), 1);
    assert_eq!(r.identity, "local");
    assert!(matches!(
        s.create_realm(OP, &new_realm("acme")).await,
        Err(Error::AlreadyExists { .. })
    ));
    for bad in ["", "Acme", "a/b", "-x", &"x".repeat(64)] {
        assert!(
            matches!(
                s.create_realm(OP, &new_realm(bad)).await,
                Err(Error::BadRequest(_))
            ),
            "{bad:?}"
        );
    }
    // An identity provider that is not configured is refused.
    let other = NewRealm {
        identity: Some("cognito".into()),
        ..new_realm("initech")
    };
    assert!(matches!(
        s.create_realm(OP, &other).await,
        Err(Error::BadRequest(_))
    ));
    assert!(matches!(
        s.realm(OP, "initech").await,
        Err(Error::NotFound { .. })
    ));
    cp.at(NOW + 1).delete_realm(OP, "globex").await.unwrap();
    let names: Vec<_> = s
        .realms(OP, false)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(names, ["acme"]);
    assert_eq!(s.realms(OP, true).await.unwrap().len(), 2);
    assert!(matches!(
        s.realm(OP, "globex").await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        s.delete_realm(OP, "globex").await,
        Err(Error::NotFound { .. })
    ));
    // A deleted realm's name stays taken (its data is retained).
    assert!(matches!(
        s.create_realm(OP, &new_realm("globex")).await,
        Err(Error::AlreadyExists { .. })
    ));
    let new = NewUser {
        email: "a@b.c".into(),
        ..NewUser::default()
    };
    assert!(matches!(
        s.create_user(OP, "globex", &new).await,
        Err(Error::NotFound { kind: "realm", .. })
    ));
}

#[tokio::test]
async fn emails_are_unique_per_realm_case_insensitively() {
    let cp = Cp::with_realms(&["acme", "globex"]).await;
    let s = &cp.service;
    cp.user("acme", "Alice@Example.com").await;
    let again = s
        .create_user(
            OP,
            "acme",
            &NewUser {
                email: "alice@EXAMPLE.com".into(),
                username: Some("other".into()),
                ..NewUser::default()
            },
        )
        .await;
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
    cp.user("globex", "alice@example.com").await;
    for bad in ["no-at", "a@", "@b", "a b@c.d", "a@b@c"] {
        let new = NewUser {
            email: bad.into(),
            ..NewUser::default()
        };
        let r = s.create_user(OP, "acme", &new).await;
        assert!(matches!(r, Err(Error::BadRequest(_))), "{bad}");
    }
}

#[tokio::test]
async fn attributes_are_validated_against_the_schema() {
    let cp = Cp::with_realms(&["acme"]).await;
    let s = &cp.service;
    let new = NewUser {
        email: "a@x.io".into(),
        attrs: json!({"department": "eng", "level": 3})
            .as_object()
            .unwrap()
            .clone(),
        ..NewUser::default()
    };
    let id = s.create_user(OP, "acme", &new).await.unwrap().id;
    let patch = |v: serde_json::Value| v.as_object().unwrap().clone();
    let bad = s
        .update_user_attrs(OP, "acme", &id, &patch(json!({"level": "three"})))
        .await;
    let Err(Error::Invalid { diagnostics, .. }) = bad else {
        panic!("{bad:?}")
    };
    assert!(diagnostics[0].message.contains("level"), "{diagnostics:?}");
    assert_eq!(
        s.user(OP, "acme", &id).await.unwrap().attrs["level"],
        json!(3)
    );
    let unknown = s
        .update_user_attrs(OP, "acme", &id, &patch(json!({"shoe_size": 9})))
        .await;
    assert!(matches!(unknown, Err(Error::Invalid { .. })));
    let reserved = s
        .update_user_attrs(OP, "acme", &id, &patch(json!({"state": "Active"})))
        .await;
    assert!(matches!(reserved, Err(Error::Invalid { .. })));
    // Entity references are stored in Cedar's explicit form; null removes.
    let boss = cp.user("acme", "boss@x.io").await;
    let u = cp
        .at(NOW + 5)
        .update_user_attrs(
            OP,
            "acme",
            &id,
            &patch(json!({"manager": {"type": "User", "id": boss}, "level": null})),
        )
        .await
        .unwrap();
    assert_eq!(
        u.attrs["manager"],
        json!({"__entity": {"type": "User", "id": boss}})
    );
    assert!(!u.attrs.contains_key("level"));
    assert_eq!(u.updated_at, NOW + 5);
}

#[tokio::test]
async fn lifecycle_follows_the_table_and_revokes_tokens() {
    let cp = Cp::with_realms(&["acme"]).await;
    let s = &cp.service;
    let id = cp.user("acme", "a@x.io").await;
    let act = |a: LifecycleAction, t: i64| {
        let id = id.clone();
        let cp = &cp;
        async move { cp.at(t).lifecycle(OP, "acme", &id, a).await }
    };
    assert_eq!(
        act(LifecycleAction::Invite, NOW).await.unwrap().state,
        UserState::Unverified
    );
    assert_eq!(
        act(LifecycleAction::Verify, NOW).await.unwrap().state,
        UserState::Active
    );
    let refused = act(LifecycleAction::Resume, NOW + 1).await;
    assert!(matches!(refused, Err(Error::Lifecycle(_))), "{refused:?}");
    let u = s.user(OP, "acme", &id).await.unwrap();
    assert_eq!(
        (u.state, u.tokens_valid_after, u.updated_at),
        (UserState::Active, 0, NOW)
    );
    let su = act(LifecycleAction::Suspend, NOW + 10).await.unwrap();
    assert_eq!(
        (su.state, su.tokens_valid_after),
        (UserState::Suspended, NOW + 10)
    );
    let r = act(LifecycleAction::Resume, NOW + 20).await.unwrap();
    assert_eq!(
        (r.state, r.tokens_valid_after),
        (UserState::Active, NOW + 10)
    );
    let so = act(LifecycleAction::SignOutEverywhere, NOW + 30)
        .await
        .unwrap();
    assert_eq!(
        (so.state, so.tokens_valid_after),
        (UserState::Active, NOW + 30)
    );
    act(LifecycleAction::Delete, NOW + 40).await.unwrap();
    // Deleted users vanish from default searches but not from state searches.
    let page = s
        .search_users(OP, "acme", &UserQuery::default())
        .await
        .unwrap();
    assert!(page.users.is_empty());
    let q = UserQuery {
        state: Some("Deleted".into()),
        ..UserQuery::default()
    };
    let page = s.search_users(OP, "acme", &q).await.unwrap();
    assert_eq!(page.users.len(), 1);
    assert_eq!(
        act(LifecycleAction::Restore, NOW + 50).await.unwrap().state,
        UserState::Active
    );
    assert!(matches!(
        s.lifecycle(OP, "acme", "nobody", LifecycleAction::Suspend)
            .await,
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
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let cp = Cp::with_realms(&["acme"]).await;
            let id = cp.user("acme", "p@x.io").await;
            let mut state = UserState::Created;
            let mut memory = pdp_core::Memory::default();
            let mut tva = 0;
            for (i, a) in actions.into_iter().enumerate() {
                let action = LifecycleAction::ALL[a];
                let now = NOW + i as i64;
                let expected = state.apply(action, memory);
                let got = cp.at(now).lifecycle(OP, "acme", &id, action).await;
                match (expected, got) {
                    (Ok(t), Ok(u)) => {
                        prop_assert_eq!(u.state, t.to);
                        if t.revokes_tokens { tva = now; }
                        prop_assert_eq!(u.tokens_valid_after, tva);
                        state = t.to;
                        memory = t.memory;
                    }
                    (Err(_), Err(Error::Lifecycle(_))) => {
                        let u = cp.service.user(OP, "acme", &id).await.unwrap();
                        prop_assert_eq!(u.state, state);
                        prop_assert_eq!(u.tokens_valid_after, tva);
                    }
                    (e, g) => prop_assert!(false, "table {:?} but store {:?}", e, g),
                }
            }
            Ok(())
        })?;
    }
}

#[tokio::test]
async fn search_pages_by_prefix_and_stays_correct_under_writes() {
    let cp = Cp::with_realms(&["acme"]).await;
    let s = &cp.service;
    let mut ids = Vec::new();
    for i in 0..30 {
        ids.push(cp.user("acme", &format!("u{i:02}@x.io")).await);
    }
    cp.user("acme", "zed@x.io").await;
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
        let page = s.search_users(OP, "acme", &q(cursor)).await.unwrap();
        pages += 1;
        seen.extend(page.users.iter().map(|u| u.email.clone()));
        if pages == 2 {
            // Writes between pages: one before the cursor, one after, and a
            // deletion of a user not yet seen.
            cp.user("acme", "u00a@x.io").await;
            cp.user("acme", "u99@x.io").await;
            s.lifecycle(OP, "acme", &ids[20], LifecycleAction::Delete)
                .await
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
    let bad = UserQuery {
        cursor: Some("garbage!".into()),
        ..UserQuery::default()
    };
    assert!(matches!(
        s.search_users(OP, "acme", &bad).await,
        Err(Error::BadRequest(_))
    ));
}

#[tokio::test]
async fn groups_nest_without_cycles_and_feed_memberships() {
    let cp = Cp::with_realms(&["acme"]).await;
    let s = &cp.service;
    for (kind, id) in [
        (Kind::Group, "eng"),
        (Kind::Group, "platform"),
        (Kind::Group, "sre"),
        (Kind::Role, "editor"),
    ] {
        let new = NewNode {
            id: id.into(),
            description: String::new(),
        };
        s.create_node(OP, "acme", kind, &new).await.unwrap();
    }
    s.set_group_parent(OP, "acme", "platform", "eng", true)
        .await
        .unwrap();
    s.set_group_parent(OP, "acme", "sre", "platform", true)
        .await
        .unwrap();
    for (g, p) in [("eng", "sre"), ("eng", "eng"), ("platform", "sre")] {
        let r = s.set_group_parent(OP, "acme", g, p, true).await;
        assert!(matches!(r, Err(Error::Conflict(_))), "{g} in {p}: {r:?}");
    }
    assert_eq!(
        s.node(OP, "acme", Kind::Group, "eng")
            .await
            .unwrap()
            .parents,
        Vec::<String>::new()
    );
    s.set_group_role(OP, "acme", "eng", "editor", true)
        .await
        .unwrap();
    let alice = cp.user("acme", "alice@x.io").await;
    s.set_user_group(OP, "acme", &alice, "sre", true)
        .await
        .unwrap();
    s.set_user_role(OP, "acme", &alice, "editor", true)
        .await
        .unwrap();
    let u = s.user(OP, "acme", &alice).await.unwrap();
    assert_eq!(
        (u.groups.as_slice(), u.roles.as_slice()),
        (&["sre".to_owned()][..], &["editor".to_owned()][..])
    );
    assert_eq!(
        s.group_members(OP, "acme", "sre").await.unwrap(),
        std::slice::from_ref(&alice)
    );
    assert!(matches!(
        s.set_user_group(OP, "acme", &alice, "nope", true).await,
        Err(Error::NotFound { kind: "group", .. })
    ));
    assert!(matches!(
        s.set_user_group(OP, "acme", &alice, "eng", false).await,
        Err(Error::NotFound {
            kind: "membership",
            ..
        })
    ));
    s.delete_node(OP, "acme", Kind::Group, "sre").await.unwrap();
    assert!(s.user(OP, "acme", &alice).await.unwrap().groups.is_empty());
    assert!(
        s.node(OP, "acme", Kind::Group, "platform")
            .await
            .unwrap()
            .parents
            == ["eng"]
    );
    s.delete_node(OP, "acme", Kind::Role, "editor")
        .await
        .unwrap();
    assert!(s.user(OP, "acme", &alice).await.unwrap().roles.is_empty());
    assert!(
        s.node(OP, "acme", Kind::Group, "eng")
            .await
            .unwrap()
            .roles
            .is_empty()
    );
}

#[tokio::test]
async fn policies_are_validated_with_cedar_diagnostics() {
    let cp = Cp::with_realms(&["acme"]).await;
    let s = &cp.service;
    let input = |body: &str| PolicyInput {
        body: body.into(),
        description: String::new(),
    };
    s.create_policy(
        OP,
        "acme",
        "own-profile",
        &input("permit (principal, action == Action::\"viewProfile\", resource)\nwhen { resource == principal };"),
    )
    .await
    .unwrap();
    // A type error: level is a Long.
    let bad = s
        .create_policy(
            OP,
            "acme",
            "typo",
            &input("permit (principal, action == Action::\"viewProfile\", resource)\nwhen { principal.level == \"high\" };"),
        )
        .await;
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
                s.create_policy(OP, "acme", "x", &input(body)).await,
                Err(Error::Invalid { .. })
            ),
            "{body}"
        );
    }
    assert!(matches!(
        s.create_policy(
            OP,
            "acme",
            "y",
            &input("@id(\"y\") permit (principal, action, resource);")
        )
        .await,
        Err(Error::Invalid { .. })
    ));
    // create refuses an existing id; update refuses a missing one.
    assert!(matches!(
        s.create_policy(
            OP,
            "acme",
            "own-profile",
            &input("permit (principal, action, resource);")
        )
        .await,
        Err(Error::AlreadyExists { .. })
    ));
    assert!(matches!(
        s.update_policy(
            OP,
            "acme",
            "nope",
            &input("permit (principal, action, resource);")
        )
        .await,
        Err(Error::NotFound { .. })
    ));
    let ids: Vec<_> = s
        .policies(OP, "acme")
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.id)
        .collect();
    assert_eq!(ids, ["active-users-only", "own-profile"]);
    // Templates and links.
    let t = s
        .create_policy(
            OP,
            "acme",
            "folder-reader",
            &input("permit (principal == ?principal, action == Action::\"readDocument\", resource in ?resource);"),
        )
        .await
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
    s.create_link(OP, "acme", &link).await.unwrap();
    assert!(matches!(
        s.delete_policy(OP, "acme", "folder-reader").await,
        Err(Error::Conflict(_))
    ));
    let mut wrong = link.clone();
    wrong.id = "bad-link".into();
    wrong
        .values
        .insert("?resource".into(), json!({"type": "Spaceship", "id": "x"}));
    assert!(matches!(
        s.create_link(OP, "acme", &wrong).await,
        Err(Error::Invalid { .. })
    ));
    s.delete_link(OP, "acme", "carol-eng").await.unwrap();
    s.delete_policy(OP, "acme", "folder-reader").await.unwrap();
}

#[tokio::test]
async fn schema_versions_are_refused_when_content_breaks() {
    let cp = Cp::with_realms(&["acme"]).await;
    let s = &cp.service;
    let new = NewUser {
        email: "a@x.io".into(),
        attrs: json!({"level": 2}).as_object().unwrap().clone(),
        ..NewUser::default()
    };
    let id = s.create_user(OP, "acme", &new).await.unwrap().id;
    let v1 = s.schema(OP, "acme", None).await.unwrap();
    // Dropping `level` from User breaks the user's attributes.
    let narrower = v1.text.replace("  level?: Long,\n", "");
    assert_ne!(narrower, v1.text);
    let r = s.put_schema(OP, "acme", &narrower).await;
    let Err(Error::Invalid { diagnostics, .. }) = r else {
        panic!("{r:?}")
    };
    assert!(diagnostics[0].subject.contains(&id), "{diagnostics:?}");
    assert_eq!(s.schema(OP, "acme", None).await.unwrap().version, 1);
    // Not a schema at all.
    assert!(matches!(
        s.put_schema(OP, "acme", "entity ;").await,
        Err(Error::Invalid { .. })
    ));
    // A compatible addition is version 2; version 1 stays readable.
    let wider = format!("{}\nentity Project;\n", v1.text);
    assert_eq!(s.put_schema(OP, "acme", &wider).await.unwrap().version, 2);
    assert_eq!(s.schema(OP, "acme", Some(1)).await.unwrap().text, v1.text);
    assert_eq!(s.realm(OP, "acme").await.unwrap().schema_version, 2);
}

#[tokio::test]
async fn routes_are_checked_as_decision_points_check_them() {
    let cp = Cp::with_realms(&["acme"]).await;
    let s = &cp.service;
    assert_eq!(s.routes(OP, "acme").await.unwrap(), json!({"routes": []}));
    let table = json!({"routes": [
        {"method": "GET", "path": "/documents/{id}", "action": "readDocument",
         "resource": {"type": "Document", "id": "{id}"}}
    ]});
    s.put_routes(OP, "acme", &table).await.unwrap();
    assert_eq!(s.routes(OP, "acme").await.unwrap(), table);
    // A capture that the path does not have, and a pattern that is no
    // pattern: refused with a diagnostic, the old table kept.
    for bad in [
        json!({"routes": [{"method": "GET", "path": "/d/{id}", "action": "readDocument",
            "resource": {"type": "Document", "id": "{nope}"}}]}),
        json!({"routes": 3}),
    ] {
        let r = s.put_routes(OP, "acme", &bad).await;
        assert!(matches!(r, Err(Error::Invalid { .. })), "{bad}: {r:?}");
    }
    assert_eq!(s.routes(OP, "acme").await.unwrap(), table);
}

/// Issue 18: a realm's AuthZEN type names are checked as decision points
/// check them and against the realm's schema (also when the schema
/// changes), kept on refusal, and published as `authzen.json`.
#[tokio::test]
async fn authzen_types_name_schema_types_and_are_published() {
    let cp = Cp::with_realms(&["acme"]).await;
    let s = &cp.service;
    assert_eq!(
        s.authzen_types(OP, "acme").await.unwrap(),
        json!({"types": {}})
    );
    let v1 = s.schema(OP, "acme", None).await.unwrap();
    let wider = format!("{}\nentity Project;\n", v1.text);
    s.put_schema(OP, "acme", &wider).await.unwrap();
    let map = json!({"types": {"user": "User", "project": "Project"}});
    s.put_authzen_types(OP, "acme", &map).await.unwrap();
    assert_eq!(s.authzen_types(OP, "acme").await.unwrap(), map);
    for bad in [
        json!({"types": {"todo": "Todo"}}),
        json!({"types": {"user": "not a type"}}),
        json!({"types": {"op": "Action"}}),
        json!({"types": []}),
        json!({"names": {}}),
    ] {
        let r = s.put_authzen_types(OP, "acme", &bad).await;
        let Err(Error::Invalid { diagnostics, .. }) = &r else {
            panic!("{bad}: {r:?}")
        };
        assert_eq!(diagnostics[0].subject, "authzen", "{bad}: {diagnostics:?}");
    }
    assert_eq!(s.authzen_types(OP, "acme").await.unwrap(), map);
    // A schema without a mapped type is refused; the old one stays.
    let r = s.put_schema(OP, "acme", &v1.text).await;
    let Err(Error::Invalid { diagnostics, .. }) = &r else {
        panic!("{r:?}")
    };
    assert!(
        diagnostics.iter().any(|d| d.subject == "authzen"),
        "{diagnostics:?}"
    );
    assert_eq!(s.schema(OP, "acme", None).await.unwrap().text, wider);
    s.publish(OP, "acme").await.unwrap();
    let snap = cp.published("acme").await.unwrap();
    let types = snap.authzen_types().expect("published");
    assert_eq!(
        (types.cedar_type("project"), types.cedar_type("user")),
        ("Project", "User")
    );
}

#[tokio::test]
async fn realms_never_see_each_other() {
    let cp = Cp::with_realms(&["acme", "globex"]).await;
    let s = &cp.service;
    let a = cp.user("acme", "a@acme.io").await;
    let new = NewNode {
        id: "eng".into(),
        description: String::new(),
    };
    s.create_node(OP, "acme", Kind::Group, &new).await.unwrap();
    assert!(matches!(
        s.user(OP, "globex", &a).await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        s.lifecycle(OP, "globex", &a, LifecycleAction::Suspend)
            .await,
        Err(Error::NotFound { .. })
    ));
    assert!(
        s.search_users(OP, "globex", &UserQuery::default())
            .await
            .unwrap()
            .users
            .is_empty()
    );
    assert!(matches!(
        s.node(OP, "globex", Kind::Group, "eng").await,
        Err(Error::NotFound { .. })
    ));
    assert!(s.nodes(OP, "globex", Kind::Group).await.unwrap().is_empty());
    assert!(matches!(
        s.set_user_group(OP, "globex", &a, "eng", true).await,
        Err(Error::NotFound { .. })
    ));
    assert_ne!(
        s.bundle_key(OP, "acme").await.unwrap(),
        s.bundle_key(OP, "globex").await.unwrap()
    );
}

/// An admin realm bootstrapped by an older build lacks the admin actions
/// added since; `upgrade_admin_realm` (run by `serve` at start) widens its
/// schema, once, and an administrator may then use the new action.
#[tokio::test]
async fn an_older_admin_realm_is_widened_to_this_builds_actions() {
    let cp = Cp::with_realms(&["acme"]).await;
    let s = &cp.service;
    assert!(
        !s.upgrade_admin_realm().await.unwrap(),
        "no admin realm yet"
    );
    s.bootstrap("root", "root@example.com", "root passphrase for tests")
        .await
        .unwrap();
    assert!(!s.upgrade_admin_realm().await.unwrap(), "already current");
    // The schema an older build wrote: without `bundle:status`.
    let current = control_plane::domain::admin::admin_schema();
    let older: String = current
        .lines()
        .filter(|l| !l.contains("\"bundle:status\""))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(older, current);
    s.put_schema(OP, "admin", &older).await.unwrap();
    let login = s
        .login("admin", "root", "root passphrase for tests", None)
        .await
        .unwrap();
    let token = match login {
        control_plane::ports::identity::LoginResult::Tokens(t) => t.access_token,
        other => panic!("{other:?}"),
    };
    let root = control_plane::service::Caller::Bearer(Some(token));
    // The older schema cannot authorize the action at all: refused.
    assert!(s.publish_status(&root, "acme").await.is_err());
    assert!(s.upgrade_admin_realm().await.unwrap());
    assert_eq!(s.schema(OP, "admin", None).await.unwrap().text, current);
    assert!(!s.upgrade_admin_realm().await.unwrap(), "once");
    s.publish_status(&root, "acme").await.unwrap();
}
