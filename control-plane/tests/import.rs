//! Bulk import: JSON Lines and CSV, all or nothing, bad lines named.

mod support;

use control_plane::Error;
use control_plane::domain::group::{Kind, NewNode};
use control_plane::domain::import::Format;
use control_plane::domain::user::UserQuery;
use pdp_core::{LifecycleAction, UserState};
use serde_json::json;
use support::{Cp, OP};

/// Realm `acme` with the group `eng`.
async fn realm() -> Cp {
    let cp = Cp::with_realms(&["acme"]).await;
    cp.service
        .create_node(
            OP,
            "acme",
            Kind::Group,
            &NewNode {
                id: "eng".into(),
                description: String::new(),
            },
        )
        .await
        .unwrap();
    cp
}

/// The input as the service reads it.
fn reader(input: &str) -> Box<dyn std::io::BufRead + Send> {
    Box::new(std::io::Cursor::new(input.as_bytes().to_vec()))
}

async fn import(cp: &Cp, input: &str, format: Format) -> control_plane::Result<u64> {
    cp.service
        .import_users(OP, "acme", reader(input), format)
        .await
        .map(|i| i.users)
}

/// Users of `acme` (the deleted ones aside).
async fn count(cp: &Cp) -> usize {
    let q = UserQuery {
        limit: Some(1000),
        ..UserQuery::default()
    };
    cp.service
        .search_users(OP, "acme", &q)
        .await
        .unwrap()
        .users
        .len()
}

#[tokio::test]
async fn json_lines_import_keeps_ids_states_groups_and_hashes() {
    let cp = realm().await;
    let s = &cp.service;
    let input = [
        json!({"id": "u1", "email": "a@x.io", "state": "Active", "groups": ["eng"],
               "attrs": {"level": 2}, "password_hash": "$2b$04$abcdefghijklmnopqrstuu5Hk4Ue7jG3i1Bq0yH4c6E0XnVbHn7Mi"}),
        json!({"id": "u2", "email": "b@x.io", "username": "bee",
               "attrs": {"manager": {"__entity": {"type": "User", "id": "u1"}}}}),
    ]
    .map(|v| v.to_string())
    .join("\n");
    assert_eq!(import(&cp, &input, Format::JsonLines).await.unwrap(), 2);
    let u1 = s.user(OP, "acme", "u1").await.unwrap();
    assert_eq!(
        (u1.state, u1.groups.as_slice()),
        (UserState::Active, &["eng".to_owned()][..])
    );
    assert_eq!(u1.attrs["level"], json!(2));
    let hash = cp
        .repo
        .read(|tx| tx.credentials("acme", "u1"))
        .await
        .unwrap()
        .password_hash;
    assert_eq!(
        hash.as_deref(),
        Some("$2b$04$abcdefghijklmnopqrstuu5Hk4Ue7jG3i1Bq0yH4c6E0XnVbHn7Mi")
    );
    let u2 = s.user(OP, "acme", "u2").await.unwrap();
    assert_eq!(
        (u2.state, u2.username.as_str()),
        (UserState::Created, "bee")
    );
    // One change stands for the whole import: the next publish is a snapshot.
    let pending = cp
        .repo
        .read(|tx| tx.pending("acme"))
        .await
        .unwrap()
        .unwrap();
    assert!(pending.all_users);
    s.publish(OP, "acme").await.unwrap();
    let u = import(&cp, "{\"email\":\"c@x.io\"}\n", Format::JsonLines).await;
    assert_eq!(u.unwrap(), 1);
    let p = s.publish(OP, "acme").await.unwrap();
    assert_eq!((p.kind.as_str(), p.revision, p.users), ("snapshot", 2, 3));
}

#[tokio::test]
async fn a_bad_line_imports_nothing_and_is_named() {
    let cp = realm().await;
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
    let mut cases: Vec<String> = cases.iter().map(|c| (*c).to_owned()).collect();
    let mut lines = vec![3, 2, 1, 2, 1];
    // Past the first batches the repository is sent (1,000 users each): a
    // duplicate of line 17 on line 2,345, an unknown group on line 1,777.
    let many = |bad_at: u64, bad: &str| {
        (1..=2500u64)
            .map(|i| {
                if i == bad_at {
                    format!("{bad}\n")
                } else {
                    format!("{{\"email\":\"u{i}@x.io\"}}\n")
                }
            })
            .collect::<String>()
    };
    cases.push(many(
        2345,
        "{\"email\":\"U17@x.io\",\"username\":\"someone\"}",
    ));
    lines.push(2345);
    cases.push(many(1777, "{\"email\":\"g@x.io\",\"groups\":[\"nope\"]}"));
    lines.push(1777);
    for (input, line) in cases.iter().zip(lines) {
        let input = input.as_str();
        let r = import(&cp, input, Format::JsonLines).await;
        let Err(Error::Invalid { diagnostics, .. }) = r else {
            panic!("line {line}: {r:?}")
        };
        assert_eq!(diagnostics[0].line, Some(line), "{diagnostics:?}");
        assert_eq!(count(&cp).await, 0, "line {line}");
    }
}

#[tokio::test]
async fn csv_import_reads_attribute_columns_as_json_literals() {
    let cp = realm().await;
    let s = &cp.service;
    let input = "id,email,username,state,groups,attr:level,attr:department\n\
                 c1,c1@x.io,cee,Active,eng,4,\"\"\"007\"\"\"\n\
                 c2,c2@x.io,,Suspended,,,ops\n";
    assert_eq!(import(&cp, input, Format::Csv).await.unwrap(), 2);
    let c1 = s.user(OP, "acme", "c1").await.unwrap();
    assert_eq!(c1.attrs["level"], json!(4));
    assert_eq!(c1.attrs["department"], json!("007"));
    assert_eq!(c1.groups, ["eng"]);
    let c2 = s.user(OP, "acme", "c2").await.unwrap();
    assert_eq!(
        (c2.state, c2.username.as_str()),
        (UserState::Suspended, "c2@x.io")
    );
    assert_eq!(c2.attrs["department"], json!("ops"));
    let bad = import(&cp, "email,shoe\nz@x.io,9\n", Format::Csv).await;
    assert!(matches!(bad, Err(Error::Invalid { .. })), "{bad:?}");
    let bad = import(&cp, "name\nz\n", Format::Csv).await;
    assert!(matches!(bad, Err(Error::Invalid { .. })), "{bad:?}");
}

#[tokio::test]
async fn imported_suspended_and_deleted_users_can_be_resumed_and_restored() {
    let cp = Cp::with_realms(&["acme"]).await;
    let lines = "{\"id\":\"s\",\"email\":\"s@acme.io\",\"state\":\"Suspended\",\"groups\":[]}\n\
                 {\"id\":\"d\",\"email\":\"d@acme.io\",\"state\":\"Deleted\"}\n";
    assert_eq!(import(&cp, lines, Format::JsonLines).await.unwrap(), 2);
    let s = cp
        .service
        .lifecycle(OP, "acme", "s", LifecycleAction::Resume)
        .await
        .unwrap();
    assert_eq!(s.state, UserState::Active);
    let d = cp
        .service
        .lifecycle(OP, "acme", "d", LifecycleAction::Restore)
        .await
        .unwrap();
    assert_eq!(d.state, UserState::Active);
}
