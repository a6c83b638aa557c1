//! Bulk import: JSON Lines and CSV, all or nothing, bad lines named.

use control_plane::group::{Kind, NewNode};
use control_plane::import::Format;
use control_plane::realm::NewRealm;
use control_plane::user::UserQuery;
use control_plane::{Db, Error};
use pdp_core::UserState;
use serde_json::json;

const NOW: i64 = 1_800_000_000;

fn realm() -> Db {
    let db = Db::open_in_memory().unwrap();
    db.create_realm(
        &NewRealm {
            name: "acme".into(),
            ..NewRealm::default()
        },
        "https://cp.example",
        NOW,
    )
    .unwrap();
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
    db
}

fn count(db: &Db) -> usize {
    db.search_users(
        "acme",
        &UserQuery {
            limit: Some(1000),
            ..UserQuery::default()
        },
    )
    .unwrap()
    .users
    .len()
}

#[test]
fn json_lines_import_keeps_ids_states_groups_and_hashes() {
    let db = realm();
    let input = [
        json!({"id": "u1", "email": "a@x.io", "state": "Active", "groups": ["eng"],
               "attrs": {"level": 2}, "password_hash": "$2b$04$abcdefghijklmnopqrstuu5Hk4Ue7jG3i1Bq0yH4c6E0XnVbHn7Mi"}),
        json!({"id": "u2", "email": "b@x.io", "username": "bee",
               "attrs": {"manager": {"__entity": {"type": "User", "id": "u1"}}}}),
    ]
    .map(|v| v.to_string())
    .join("\n");
    let out = db
        .import_users("acme", input.as_bytes(), Format::JsonLines, NOW)
        .unwrap();
    assert_eq!(out.users, 2);
    let u1 = db.user("acme", "u1").unwrap();
    assert_eq!(
        (u1.state, u1.groups.as_slice()),
        (UserState::Active, &["eng".to_owned()][..])
    );
    let u2 = db.user("acme", "u2").unwrap();
    assert_eq!(
        (u2.state, u2.username.as_str()),
        (UserState::Created, "bee")
    );
    // One change stands for the whole import: the next publish is a snapshot.
    let pending = db.pending_changes("acme").unwrap().unwrap();
    assert!(pending.all_users);
}

#[test]
fn a_bad_line_imports_nothing_and_is_named() {
    let db = realm();
    let cases = [
        // Third line: wrong attribute type.
        "{\"email\":\"a@x.io\"}\n{\"email\":\"b@x.io\"}\n{\"email\":\"c@x.io\",\"attrs\":{\"level\":\"x\"}}\n",
        // Second line: duplicate email, case-insensitively.
        "{\"email\":\"a@x.io\"}\n{\"email\":\"A@X.io\",\"username\":\"other\"}\n",
        // Unknown group.
        "{\"email\":\"a@x.io\",\"groups\":[\"nope\"]}\n",
        // Not JSON.
        "{\"email\":\"a@x.io\"}\nnot json\n",
        // Not a password hash.
        "{\"email\":\"a@x.io\",\"password_hash\":\"hunter2\"}\n",
    ];
    let lines = [3, 2, 1, 2, 1];
    for (input, line) in cases.iter().zip(lines) {
        let r = db.import_users("acme", input.as_bytes(), Format::JsonLines, NOW);
        let Err(Error::Invalid { diagnostics, .. }) = r else {
            panic!("{input}: {r:?}")
        };
        assert_eq!(diagnostics[0].line, Some(line), "{input}: {diagnostics:?}");
        assert_eq!(count(&db), 0, "{input}");
    }
}

#[test]
fn csv_import_reads_attribute_columns_as_json_literals() {
    let db = realm();
    let input = "id,email,username,state,groups,attr:level,attr:department\n\
                 c1,c1@x.io,cee,Active,eng,4,\"\"\"007\"\"\"\n\
                 c2,c2@x.io,,Suspended,,,ops\n";
    assert_eq!(
        db.import_users("acme", input.as_bytes(), Format::Csv, NOW)
            .unwrap()
            .users,
        2
    );
    let c1 = db.user("acme", "c1").unwrap();
    assert_eq!(c1.attrs["level"], json!(4));
    assert_eq!(c1.attrs["department"], json!("007"));
    assert_eq!(c1.groups, ["eng"]);
    let c2 = db.user("acme", "c2").unwrap();
    assert_eq!(
        (c2.state, c2.username.as_str()),
        (UserState::Suspended, "c2@x.io")
    );
    assert_eq!(c2.attrs["department"], json!("ops"));
    let bad = db.import_users(
        "acme",
        "email,shoe\nz@x.io,9\n".as_bytes(),
        Format::Csv,
        NOW,
    );
    assert!(matches!(bad, Err(Error::Invalid { .. })));
    let bad = db.import_users("acme", "name\nz\n".as_bytes(), Format::Csv, NOW);
    assert!(matches!(bad, Err(Error::Invalid { .. })));
}

#[test]
fn imported_suspended_and_deleted_users_can_be_resumed_and_restored() {
    let db = control_plane::Db::open_in_memory().unwrap();
    db.create_realm(
        &control_plane::realm::NewRealm {
            name: "acme".into(),
            ..Default::default()
        },
        "https://cp.example",
        1,
    )
    .unwrap();
    let lines = "{\"id\":\"s\",\"email\":\"s@acme.io\",\"state\":\"Suspended\",\"groups\":[]}\n\
                 {\"id\":\"d\",\"email\":\"d@acme.io\",\"state\":\"Deleted\"}\n";
    db.import_users(
        "acme",
        lines.as_bytes(),
        control_plane::import::Format::JsonLines,
        1,
    )
    .unwrap();
    let s = db
        .lifecycle("acme", "s", pdp_core::LifecycleAction::Resume, 2)
        .unwrap();
    assert_eq!(s.state, pdp_core::UserState::Active);
    let d = db
        .lifecycle("acme", "d", pdp_core::LifecycleAction::Restore, 2)
        .unwrap();
    assert_eq!(d.state, pdp_core::UserState::Active);
}
