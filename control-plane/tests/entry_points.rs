//! The command line and the HTTP API are two doors into the same use
//! cases: one realm's story told through each, on two control planes at
//! the same (injected) time, publishes the same bundles — the same
//! revisions and kinds, and the same members once the random parts (user
//! ids, app client ids, keys) are named alike.

mod support;

use axum::body::Body;
use axum::http::{Request, header};
use clap::Parser;
use control_plane::Settings;
use control_plane::cli::{Cli, run};
use http_body_util::BodyExt;
use pdp_core::manifest::member;
use pdp_core::{Bundle, Limits, Trust};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use support::{Cp, OP, Options};
use tower::ServiceExt;

const ROUTES: &str = r#"{"routes": [{"method": "GET", "path": "/users/{id}/profile", "action": "viewProfile", "resource": {"type": "User", "id": "{id}"}}]}"#;
const TYPES: &str = r#"{"types": {"user": "User", "team": "Group"}}"#;
const POLICY: &str = "permit (principal in Role::\"reader\", action == Action::\"viewProfile\", resource)\nwhen { principal has department && principal.department == \"eng\" };";

async fn auto_publishing() -> Cp {
    Cp::open(Options {
        settings: Settings::default(),
        ..Options::default()
    })
    .await
}

/// The story through `control-plane` subcommands (parsed as a shell gives
/// them); returns the user's id.
async fn through_the_cli(cp: &Cp) -> String {
    let dir = cp.dir.path();
    std::fs::write(dir.join("policy.cedar"), POLICY).unwrap();
    std::fs::write(dir.join("routes.json"), ROUTES).unwrap();
    std::fs::write(dir.join("authzen.json"), TYPES).unwrap();
    let cli = |args: &[&str]| {
        let cli = Cli::try_parse_from(std::iter::once("control-plane").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("{args:?}: {e}"));
        let s = cp.service.clone();
        async move { run(&s, cli.command).await.unwrap() }
    };
    cli(&["realm", "create", "acme"]).await;
    let user = cli(&[
        "user",
        "create",
        "acme",
        "--email",
        "alice@acme.io",
        "--username",
        "alice",
        "--attrs",
        r#"{"department":"eng"}"#,
    ])
    .await;
    let id = user["id"].as_str().unwrap().to_owned();
    cli(&["user", "lifecycle", "acme", &id, "verify"]).await;
    cli(&["group", "create", "acme", "eng"]).await;
    cli(&["role", "create", "acme", "reader"]).await;
    cli(&["group", "add-role", "acme", "eng", "reader"]).await;
    cli(&["user", "add-group", "acme", &id, "eng"]).await;
    let policy = dir.join("policy.cedar");
    cli(&["policy", "put", "acme", "readers", policy.to_str().unwrap()]).await;
    let routes = dir.join("routes.json");
    cli(&["routes", "put", "acme", routes.to_str().unwrap()]).await;
    let types = dir.join("authzen.json");
    cli(&["authzen-types", "put", "acme", types.to_str().unwrap()]).await;
    cli(&["user", "lifecycle", "acme", &id, "suspend"]).await;
    cli(&["publish", "acme"]).await;
    id
}

/// The same story through the admin API, as the bootstrapped root.
async fn through_the_api(cp: &Cp) -> String {
    cp.service
        .bootstrap("root", "root@example.com", "root passphrase for tests")
        .await
        .unwrap();
    let app = control_plane::http::app(cp.service.clone());
    let call = |method: &str, path: &str, token: Option<&str>, body: Option<Value>| {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let req = req
            .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
            .unwrap();
        let app = app.clone();
        async move {
            let resp = app.oneshot(req).await.unwrap();
            let status = resp.status();
            let bytes = resp.into_body().collect().await.unwrap().to_bytes();
            let json: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            assert!(status.is_success(), "{status}: {json}");
            json
        }
    };
    let login = json!({"username": "root", "password": "root passphrase for tests"});
    let t = call("POST", "/realms/admin/login", None, Some(login)).await;
    let t = t["access_token"].as_str().unwrap().to_owned();
    let root = Some(t.as_str());
    call("POST", "/v1/realms", root, Some(json!({"name": "acme"}))).await;
    let user = call(
        "POST",
        "/v1/realms/acme/users",
        root,
        Some(
            json!({"email": "alice@acme.io", "username": "alice", "attrs": {"department": "eng"}}),
        ),
    )
    .await;
    let id = user["id"].as_str().unwrap().to_owned();
    let u = format!("/v1/realms/acme/users/{id}");
    call("POST", &format!("{u}/lifecycle/verify"), root, None).await;
    call(
        "POST",
        "/v1/realms/acme/groups",
        root,
        Some(json!({"id": "eng"})),
    )
    .await;
    call(
        "POST",
        "/v1/realms/acme/roles",
        root,
        Some(json!({"id": "reader"})),
    )
    .await;
    call("PUT", "/v1/realms/acme/groups/eng/roles/reader", root, None).await;
    call("PUT", &format!("{u}/groups/eng"), root, None).await;
    call(
        "PUT",
        "/v1/realms/acme/policies/readers",
        root,
        Some(json!({"body": POLICY})),
    )
    .await;
    let routes: Value = serde_json::from_str(ROUTES).unwrap();
    call("PUT", "/v1/realms/acme/routes", root, Some(routes)).await;
    let types: Value = serde_json::from_str(TYPES).unwrap();
    call("PUT", "/v1/realms/acme/authzen-types", root, Some(types)).await;
    call("POST", &format!("{u}/lifecycle/suspend"), root, None).await;
    call("POST", "/v1/realms/acme/bundle/publish", root, None).await;
    id
}

/// Every bundle of the realm in the store, by key: its kind, revision and
/// members, with the user's id and the app client ids named alike.
async fn published(cp: &Cp, user: &str) -> BTreeMap<String, (String, BTreeMap<String, Vec<u8>>)> {
    let ring = cp.keyring("acme").await;
    let realm = cp.service.realm(OP, "acme").await.unwrap();
    let mut out = BTreeMap::new();
    for folder in ["acme/snapshots", "acme/deltas"] {
        for key in cp.store.list(folder).await.unwrap() {
            let object_store::Fetched::Found { bytes, .. } =
                cp.store.get(&key, None, 1 << 30).await.unwrap()
            else {
                panic!("{key} listed but missing")
            };
            let b = Bundle::open(&bytes, Trust::Keyring(&ring), &Limits::default()).unwrap();
            let mut members = BTreeMap::new();
            for name in b.member_names() {
                let mut text = String::from_utf8(b.member(name).unwrap().to_vec()).unwrap();
                text = text.replace(user, "USER");
                for c in &realm.clients {
                    text = text.replace(c.as_str(), "CLIENT");
                }
                members.insert(name.to_owned(), text.into_bytes());
            }
            let identity = b.manifest.identity.as_ref().map(|i| {
                (
                    i.issuer.clone(),
                    i.audiences.len(),
                    i.jwks["keys"].as_array().map(Vec::len),
                )
            });
            let what = format!(
                "{:?} rev {} base {:?} identity {identity:?}",
                b.manifest.kind, b.manifest.revision, b.manifest.base_revision
            );
            out.insert(key, (what, members));
        }
    }
    out
}

#[tokio::test]
async fn the_cli_and_the_api_publish_the_same_bundles() {
    let cli_side = auto_publishing().await;
    let api_side = auto_publishing().await;
    let a = through_the_cli(&cli_side).await;
    let b = through_the_api(&api_side).await;
    let from_cli = published(&cli_side, &a).await;
    let from_api = published(&api_side, &b).await;
    // Every change was published as it was committed, from both doors.
    assert!(from_cli.len() >= 10, "{:?}", from_cli.keys());
    assert_eq!(
        from_cli.keys().collect::<Vec<_>>(),
        from_api.keys().collect::<Vec<_>>()
    );
    for (key, (what, members)) in &from_cli {
        let (their_what, theirs) = &from_api[key];
        assert_eq!(what, their_what, "{key}");
        assert_eq!(
            members.keys().collect::<Vec<_>>(),
            theirs.keys().collect::<Vec<_>>(),
            "{key}"
        );
        for (name, bytes) in members {
            assert!(
                bytes == &theirs[name],
                "{key} {name} differs:\n--- cli\n{}\n--- api\n{}",
                String::from_utf8_lossy(bytes),
                String::from_utf8_lossy(&theirs[name])
            );
        }
    }
    // The story's end, as a decision point sees it: routes served, the
    // user suspended.
    let snap = cli_side.published("acme").await.unwrap();
    assert_eq!(
        snap.user(&a).map(|u| u.state()),
        Some(pdp_core::UserState::Suspended)
    );
    assert!(
        from_cli
            .values()
            .any(|(_, m)| m.get(member::ROUTES).is_some_and(|r| r.starts_with(b"{")))
    );
    let types = snap.authzen_types().expect("authzen.json published");
    assert_eq!(
        (types.cedar_type("user"), types.cedar_type("team")),
        ("User", "Group")
    );
}
