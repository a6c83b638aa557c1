//! The edge host in-process: every endpoint, success and failure, through
//! `tower::ServiceExt::oneshot` with real HTTP requests and bodies.

mod common;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use edge_host::{Config, StartError};
use http_body_util::BodyExt;
use pdp_core::BundleSigner;
use pdp_core::source::{BuildOptions, build};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::PathBuf;
use tower::ServiceExt;

use common::{root, token};

/// The reference realm trusting the committed test keys (never the
/// default: the demo realm trusts only the key it generates at start).
fn policies() -> BTreeMap<String, Vec<u8>> {
    common::test_realm_files()
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("gh-edge-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn signer() -> BundleSigner {
    BundleSigner::from_seed(&[5; 32])
}

/// A signed bundle file of the reference realm and a trust key for it.
fn signed_bundle(dir: &std::path::Path, revision: u64, created_at: i64) -> (PathBuf, PathBuf) {
    let opts = BuildOptions {
        realm: "demo".into(),
        revision,
        created_at,
        gzip: true,
    };
    let bytes = build(&policies(), &opts, Some(&signer())).unwrap();
    let file = dir.join(format!("demo-{revision}.tar.gz"));
    std::fs::write(&file, bytes).unwrap();
    let key = dir.join("trust.pub.pem");
    std::fs::write(&key, signer().public_pem().unwrap()).unwrap();
    (file, key)
}

fn now() -> i64 {
    edge_host::realm::now()
}

async fn call(
    app: &Router,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, String, Value) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .body(body.map_or(Body::empty(), |b| Body::from(b.to_string())))
        .unwrap();
    raw(app, req).await
}

async fn raw(app: &Router, req: Request<Body>) -> (StatusCode, String, Value) {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let ctype = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, ctype, value)
}

fn req(p: &str, a: &str, r: (&str, &str)) -> Value {
    json!({"principal": {"type": "User", "id": p}, "action": {"type": "Action", "id": a}, "resource": {"type": r.0, "id": r.1}})
}

/// alice reads design-doc: the request most tests ask.
async fn alice_reads(app: &Router) -> (StatusCode, String, Value) {
    call(
        app,
        "POST",
        "/v1/is_authorized",
        Some(req("alice", "readDocument", ("Document", "design-doc"))),
    )
    .await
}

/// The demo realm: what the binary serves with nothing configured.
fn default_app() -> Router {
    edge_host::app(&Config::default()).unwrap().0
}

/// `config` serving the reference realm with the test keys, as a source
/// directory in dev mode (`--bundle DIR --dev`): for the tests that sign
/// tokens with those keys.
fn keyed(config: Config) -> Config {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    let dir = DIR.get_or_init(|| common::test_realm_dir(&tmp("keyed-realm")));
    Config {
        bundles: vec![dir.clone()],
        dev: true,
        ..config
    }
}

fn keyed_app() -> Router {
    edge_host::app(&keyed(Config::default())).unwrap().0
}

#[tokio::test]
async fn v1_decisions_on_the_embedded_default() {
    let app = default_app();
    let (s, ct, v) = alice_reads(&app).await;
    assert_eq!((s, ct.as_str()), (StatusCode::OK, "application/json"));
    assert_eq!(
        (
            v["type"].as_str(),
            v["decision"].as_str(),
            v["reason"].as_str()
        ),
        (Some("success"), Some("Allow"), Some("permit"))
    );
    // dave is Suspended: an unauthenticated by-id request learns only
    // that nothing permits it (no probing which users exist or are
    // suspended), like one for a user who does not exist.
    for who in ["dave", "nobody-at-all"] {
        let (_, _, v) = call(
            &app,
            "POST",
            "/v1/is_authorized",
            Some(req(who, "readDocument", ("Document", "design-doc"))),
        )
        .await;
        assert_eq!(
            (v["decision"].as_str(), v["reason"].as_str()),
            (Some("Deny"), Some("no_permit")),
            "{who}"
        );
    }
    // With the detail configured for the realm, it says why.
    // (A deployment's setting: the reference realm as a bundle, since the
    // demo realm serves only with such settings at their defaults.)
    let detailed = edge_host::app(&keyed(Config {
        user_state_detail: vec!["default".into()],
        ..Config::default()
    }))
    .unwrap()
    .0;
    for (who, why) in [
        ("dave", "user_state:Suspended"),
        ("nobody-at-all", "unknown_user"),
    ] {
        let (_, _, v) = call(
            &detailed,
            "POST",
            "/v1/is_authorized",
            Some(req(who, "readDocument", ("Document", "design-doc"))),
        )
        .await;
        assert_eq!(v["reason"], why, "{who}");
    }
    let mut named = req("carol", "viewProfile", ("User", "alice"));
    named["realm"] = json!("default");
    let (_, _, v) = call(&app, "POST", "/v1/is_authorized", Some(named)).await;
    assert_eq!(v["reason"], "no_permit");
}

#[tokio::test]
async fn bad_input_is_problem_json_with_a_typed_kind() {
    let app = default_app();
    let cases: Vec<(Option<&str>, Value, &str)> = vec![
        (Some("{not json"), Value::Null, "invalid_json"),
        (None, json!({"principal": 1}), "invalid_json"),
        (
            None,
            req("alice", "fly", ("Document", "design-doc")),
            "invalid_request",
        ),
        (
            None,
            {
                let mut r = req("alice", "readDocument", ("Document", "d"));
                r["realm"] = json!("nowhere");
                r
            },
            "unknown_realm",
        ),
    ];
    for (text, value, kind) in cases {
        let body = text.map_or_else(|| value.to_string(), str::to_owned);
        let r = Request::post("/v1/is_authorized")
            .body(Body::from(body))
            .unwrap();
        let (s, ct, v) = raw(&app, r).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
        assert_eq!(ct, "application/problem+json");
        assert_eq!(v["errors"][0]["kind"], kind, "{v}");
        assert_eq!(v["status"], 400);
        assert!(v["type"].as_str().unwrap().ends_with(kind));
    }
    let (s, ct, _) = call(&app, "GET", "/nope", None).await;
    assert_eq!(
        (s, ct.as_str()),
        (StatusCode::NOT_FOUND, "application/problem+json")
    );
    // Still answering afterwards.
    let (_, _, v) = alice_reads(&app).await;
    assert_eq!(v["decision"], "Allow");
}

#[tokio::test]
async fn oversized_bodies_are_refused() {
    let config = Config {
        max_body_bytes: 1024,
        ..Config::default()
    };
    let (app, _) = edge_host::app(&config).unwrap();
    let mut r = req("alice", "readDocument", ("Document", "design-doc"));
    r["context"] = json!({"pad": "x".repeat(4096)});
    let (s, _, _) = call(&app, "POST", "/v1/is_authorized", Some(r)).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn batch_answers_each_request_in_order() {
    let app = default_app();
    let body = json!({"requests": [
        req("alice", "readDocument", ("Document", "design-doc")),
        req("alice", "readDocument", ("Document", "salaries")),
        req("alice", "deleteDocument", ("Document", "design-doc")),
    ]});
    let (s, _, v) = call(&app, "POST", "/v1/batch_is_authorized", Some(body)).await;
    assert_eq!(s, StatusCode::OK);
    let reasons: Vec<&str> = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["reason"].as_str().unwrap())
        .collect();
    assert_eq!(
        reasons,
        [
            "permit",
            "forbid:secret-needs-clearance",
            "forbid:sensitive-needs-mfa"
        ]
    );
    let mixed = json!({"requests": [req("alice", "readDocument", ("Document", "a")), req("bob", "readDocument", ("Document", "b"))]});
    let (s, _, v) = call(&app, "POST", "/v1/batch_is_authorized", Some(mixed)).await;
    assert_eq!(
        (s, v["errors"][0]["kind"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request"))
    );
}

#[tokio::test]
async fn token_decisions_pick_the_realm_by_issuer_and_refuse_forgeries() {
    let app = keyed_app();
    let cases = [
        (token("alice", "rs256.key.pem", "test-rs256"), "permit"),
        (
            token("alice", "attacker-rs256.key.pem", "test-rs256"),
            "token:bad_signature",
        ),
        (
            token("dave", "rs256.key.pem", "test-rs256"),
            "user_state:Suspended",
        ),
        ("garbage".to_owned(), "token:malformed"),
    ];
    for (t, reason) in cases {
        let body = json!({"token": t, "action": {"type": "Action", "id": "readDocument"},
            "resource": {"type": "Document", "id": "design-doc"}});
        let (s, _, v) = call(&app, "POST", "/v1/is_authorized_with_token", Some(body)).await;
        assert_eq!(
            (s, v["reason"].as_str()),
            (StatusCode::OK, Some(reason)),
            "{v}"
        );
    }
}

#[tokio::test]
async fn authzen_request_ids_are_echoed_and_the_metadata_names_the_endpoints() {
    let app = default_app();
    let one = json!({"subject": {"type": "User", "id": "alice"}, "action": {"name": "readDocument"}, "resource": {"type": "Document", "id": "design-doc"}});
    for (path, body) in [
        ("/access/v1/evaluation", one.clone()),
        (
            "/access/v1/evaluations",
            json!({"evaluations": [one.clone()]}),
        ),
        ("/access/v1/evaluation", json!({"subject": 3})),
        ("/access/v1/nowhere", one.clone()),
    ] {
        let req = Request::post(path)
            .header("content-type", "application/json")
            .header("x-request-id", "req-7f3a")
            .body(Body::from(body.to_string()))
            .unwrap();
        let resp = app.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.headers()["x-request-id"], "req-7f3a", "{path} {body}");
    }
    let req = Request::get("/.well-known/authzen-configuration")
        .header("host", "pdp.example:8180")
        .body(Body::empty())
        .unwrap();
    let (s, ct, v) = raw(&app, req).await;
    assert_eq!((s, ct.as_str()), (StatusCode::OK, "application/json"));
    // Unconfigured: the listen address, never the Host a client sent.
    assert_eq!(v["policy_decision_point"], "http://127.0.0.1:8180");
    assert_eq!(
        v["access_evaluations_endpoint"],
        "http://127.0.0.1:8180/access/v1/evaluations"
    );
    // Configured: the configured identifier, whatever the Host says.
    let configured = edge_host::app(&keyed(Config {
        authzen_pdp_url: Some("https://pdp.acme.io/".into()),
        ..Config::default()
    }))
    .unwrap()
    .0;
    let req = Request::get("/.well-known/authzen-configuration")
        .header("host", "evil.example")
        .body(Body::empty())
        .unwrap();
    let (_, _, v) = raw(&configured, req).await;
    assert_eq!(v["policy_decision_point"], "https://pdp.acme.io");
    assert_eq!(
        v["access_evaluation_endpoint"],
        "https://pdp.acme.io/access/v1/evaluation"
    );
    assert_eq!(
        v["capabilities"],
        json!(edge_host::api::AUTHZEN_CAPABILITIES)
    );
    assert!(
        v["capabilities"]
            .as_array()
            .unwrap()
            .contains(&json!("urn:gatehouse:authzen:type-map"))
    );
    // The search endpoints are served, so advertised.
    for kind in ["subject", "resource", "action"] {
        assert_eq!(
            v[format!("search_{kind}_endpoint")],
            format!("https://pdp.acme.io/access/v1/search/{kind}")
        );
    }
}

#[tokio::test]
async fn authzen_evaluation_and_evaluations() {
    let app = default_app();
    let one = json!({"subject": {"type": "User", "id": "alice"}, "action": {"name": "readDocument"}, "resource": {"type": "Document", "id": "design-doc"}});
    let (s, _, v) = call(&app, "POST", "/access/v1/evaluation", Some(one)).await;
    assert_eq!((s, v["decision"].as_bool()), (StatusCode::OK, Some(true)));
    assert_eq!(v["context"]["reason"], "permit");
    // Resource properties become the resource's attributes for this request.
    let memo = json!({"subject": {"type": "User", "id": "carol"}, "action": {"name": "readDocument"},
        "resource": {"type": "Document", "id": "memo", "properties": {"owner": {"__entity": {"type": "User", "id": "carol"}}, "department": "x", "classification": "internal"}}});
    let (_, _, v) = call(&app, "POST", "/access/v1/evaluation", Some(memo)).await;
    assert_eq!(v["decision"], true, "{v}");
    let many = |semantic: &str| {
        json!({
            "subject": {"type": "User", "id": "alice"}, "action": {"name": "readDocument"},
            "evaluations": [
                {"resource": {"type": "Document", "id": "design-doc"}},
                {"resource": {"type": "Document", "id": "salaries"}},
                {"resource": {"type": "Document", "id": "incident-report"}}
            ],
            "options": {"evaluations_semantic": semantic}
        })
    };
    let decisions = |v: &Value| {
        v["evaluations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["decision"].as_bool().unwrap())
            .collect::<Vec<_>>()
    };
    let (_, _, v) = call(
        &app,
        "POST",
        "/access/v1/evaluations",
        Some(many("execute_all")),
    )
    .await;
    assert_eq!(decisions(&v), [true, false, true]);
    let (_, _, v) = call(
        &app,
        "POST",
        "/access/v1/evaluations",
        Some(many("deny_on_first_deny")),
    )
    .await;
    assert_eq!(decisions(&v), [true, false]);
    let (_, _, v) = call(
        &app,
        "POST",
        "/access/v1/evaluations",
        Some(many("permit_on_first_permit")),
    )
    .await;
    assert_eq!(decisions(&v), [true]);
    let (s, _, _) = call(
        &app,
        "POST",
        "/access/v1/evaluations",
        Some(many("sometimes")),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // As many evaluations as a batch may hold, and one more: refused
    // before any is decided (a 1 MiB body of `{}` would be ~350k).
    let n = pdp_core::decision::MAX_BATCH;
    let mut body = many("execute_all");
    let item = json!({"resource": {"type": "Document", "id": "design-doc"}});
    body["evaluations"] = Value::Array(vec![item.clone(); n]);
    let (s, _, v) = call(&app, "POST", "/access/v1/evaluations", Some(body.clone())).await;
    assert_eq!(
        (s, v["evaluations"].as_array().map(Vec::len)),
        (StatusCode::OK, Some(n))
    );
    body["evaluations"] = Value::Array(vec![item; n + 1]);
    let (s, _, v) = call(&app, "POST", "/access/v1/evaluations", Some(body)).await;
    assert_eq!(
        (s, v["errors"][0]["kind"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request")),
        "{v}"
    );
    let (s, _, v) = call(
        &app,
        "POST",
        "/access/v1/evaluation",
        Some(json!({"subject": {"type": "User", "id": "a"}})),
    )
    .await;
    assert_eq!(
        (s, v["errors"][0]["kind"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request"))
    );
}

#[tokio::test]
async fn health_readiness_status_and_metrics() {
    let app = default_app();
    let (s, _, _) = call(&app, "GET", "/healthz", None).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _, _) = call(&app, "GET", "/readyz", None).await;
    assert_eq!(s, StatusCode::OK);
    let (_, _, v) = call(&app, "GET", "/v1/status", None).await;
    assert_eq!(v["realms"][0]["realm"], "default");
    assert_eq!(v["realms"][0]["users"], 12);
    assert_eq!(
        v["realms"][0]["issuer"],
        "https://gatehouse.local/realms/default"
    );
    let _ = alice_reads(&app).await;
    let _ = call(
        &app,
        "POST",
        "/v1/is_authorized",
        Some(req("dave", "readDocument", ("Document", "design-doc"))),
    )
    .await;
    let _ = call(&app, "POST", "/v1/is_authorized", Some(json!({}))).await;
    let (s, ct, v) = call(&app, "GET", "/metrics", None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(ct.starts_with("text/plain"));
    let text = v.as_str().unwrap();
    for line in [
        "gatehouse_decisions_total{outcome=\"allow\"} 1",
        "gatehouse_decisions_total{outcome=\"deny\"} 1",
        "gatehouse_decisions_total{outcome=\"failure\"} 1",
        "gatehouse_decision_duration_seconds_count 3",
        "gatehouse_bundle_revision{realm=\"default\"} 1",
        "gatehouse_bundle_reload_failures_total{realm=\"default\"} 0",
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }
}

#[tokio::test]
async fn signed_bundles_load_unsigned_ones_only_in_dev_mode() {
    let dir = tmp("signed");
    let (file, key) = signed_bundle(&dir, 3, now());
    let config = Config {
        bundles: vec![file.clone()],
        trust_keys: vec![format!("demo={}", key.display())],
        ..Config::default()
    };
    let (app, state) = edge_host::app(&config).unwrap();
    let (_, _, v) = alice_reads(&app).await;
    assert_eq!(
        (v["decision"].as_str(), v["revision"].as_u64()),
        (Some("Allow"), Some(3))
    );
    assert_eq!(
        state
            .realms
            .get("demo")
            .unwrap()
            .snapshot()
            .unwrap()
            .signed_by(),
        Some(signer().kid())
    );

    // No trust key and no dev mode: refuse to start.
    let e = edge_host::app(&Config {
        bundles: vec![file.clone()],
        ..Config::default()
    })
    .unwrap_err();
    assert!(matches!(e, StartError::Policy(_)), "{e}");
    // A key that did not sign it.
    let other = dir.join("other.pub.pem");
    std::fs::write(
        &other,
        BundleSigner::from_seed(&[6; 32]).public_pem().unwrap(),
    )
    .unwrap();
    let e = edge_host::app(&Config {
        bundles: vec![file.clone()],
        trust_keys: vec![format!("demo={}", other.display())],
        ..Config::default()
    })
    .unwrap_err();
    assert!(e.to_string().contains("unknown key id"), "{e}");
    // The right key, bound to another realm: a key signs the bundles of
    // the realms it is bound to only (realm A's key cannot publish for B).
    let e = edge_host::app(&Config {
        bundles: vec![file.clone()],
        trust_keys: vec![format!("acme={}", key.display())],
        ..Config::default()
    })
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("does not sign bundles of realm \"demo\""),
        "{e}"
    );
    // Bound to both: loads.
    assert!(
        edge_host::app(&Config {
            bundles: vec![file.clone()],
            trust_keys: vec![
                format!("acme={}", key.display()),
                format!("demo={}", key.display())
            ],
            ..Config::default()
        })
        .is_ok()
    );
    // A key that names no realm is refused at start.
    let e = edge_host::app(&Config {
        bundles: vec![file.clone()],
        trust_keys: vec![key.display().to_string()],
        ..Config::default()
    })
    .unwrap_err();
    assert!(e.to_string().contains("REALM=PATH"), "{e}");
    // A source directory: dev mode only.
    let policies_dir = root().join("policies");
    let e = edge_host::app(&Config {
        bundles: vec![policies_dir.clone()],
        ..Config::default()
    })
    .unwrap_err();
    assert!(matches!(e, StartError::Policy(_)));
    assert!(
        edge_host::app(&Config {
            bundles: vec![policies_dir],
            dev: true,
            ..Config::default()
        })
        .is_ok()
    );
}

#[tokio::test]
async fn a_stale_bundle_denies_and_fails_readiness() {
    let dir = tmp("stale");
    let (file, key) = signed_bundle(&dir, 1, now() - 3600);
    let config = Config {
        bundles: vec![file],
        trust_keys: vec![format!("demo={}", key.display())],
        max_staleness_seconds: Some(600),
        ..Config::default()
    };
    let (app, _) = edge_host::app(&config).unwrap();
    let (s, _, v) = alice_reads(&app).await;
    assert_eq!(
        (s, v["decision"].as_str(), v["reason"].as_str()),
        (StatusCode::OK, Some("Deny"), Some("stale_bundle"))
    );
    let (_, _, v) = call(&app, "POST", "/access/v1/evaluation", Some(json!({"subject": {"type": "User", "id": "alice"}, "action": {"name": "readDocument"}, "resource": {"type": "Document", "id": "design-doc"}}))).await;
    assert_eq!(
        (v["decision"].as_bool(), v["context"]["reason"].as_str()),
        (Some(false), Some("stale_bundle"))
    );
    let (s, _, v) = call(&app, "GET", "/readyz", None).await;
    assert_eq!(
        (s, v["errors"][0]["kind"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("stale_bundle"))
    );
}

#[tokio::test]
async fn hot_swap_takes_newer_bundles_and_refuses_rollbacks() {
    let dir = tmp("swap");
    let (file, key) = signed_bundle(&dir, 5, now());
    let config = Config {
        bundles: vec![file],
        trust_keys: vec![format!("demo={}", key.display())],
        ..Config::default()
    };
    let (app, state) = edge_host::app(&config).unwrap();
    let realm = state.realms.get("demo").unwrap();
    let held = realm.snapshot().unwrap();
    let (newer, _) = signed_bundle(&dir, 6, now());
    assert_eq!(
        realm
            .offer(&std::fs::read(newer).unwrap(), &state.realms.load_options())
            .unwrap(),
        6
    );
    let (older, _) = signed_bundle(&dir, 4, now());
    let e = realm
        .offer(&std::fs::read(older).unwrap(), &state.realms.load_options())
        .unwrap_err();
    assert_eq!(e.kind(), "rollback");
    // The snapshot a request already held is untouched by the swap.
    assert_eq!(held.revision(), 5);
    let (_, _, v) = alice_reads(&app).await;
    assert_eq!(v["revision"], 6);
    let (_, _, v) = call(&app, "GET", "/metrics", None).await;
    assert!(
        v.as_str()
            .unwrap()
            .contains("gatehouse_bundle_reload_failures_total{realm=\"demo\"} 1")
    );
}

#[tokio::test]
async fn changed_bundle_files_are_reloaded_and_bad_ones_refused() {
    let dir = tmp("reload");
    let (file, key) = signed_bundle(&dir, 7, now());
    let config = Config {
        bundles: vec![file.clone()],
        trust_keys: vec![format!("demo={}", key.display())],
        ..Config::default()
    };
    let (app, state) = edge_host::app(&config).unwrap();
    assert!(
        state.realms.reload_files().is_empty(),
        "unchanged file: nothing to do"
    );
    // A newer revision replaces the file (atomically, as a publisher would).
    let (newer, _) = signed_bundle(&dir, 8, now());
    std::fs::rename(&newer, &file).unwrap();
    let results = state.realms.reload_files();
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].1, Ok(8));
    let (_, _, v) = alice_reads(&app).await;
    assert_eq!(v["revision"], 8);
    // A corrupt file is refused; revision 8 keeps serving.
    std::fs::write(&file, b"not a bundle at all").unwrap();
    let results = state.realms.reload_files();
    assert!(results[0].1.is_err());
    let (_, _, v) = alice_reads(&app).await;
    assert_eq!(
        (v["decision"].as_str(), v["revision"].as_u64()),
        (Some("Allow"), Some(8))
    );
    assert_eq!(state.realms.get("demo").unwrap().reload_failures(), 1);
}

#[tokio::test]
async fn cached_tokens_skip_only_the_signature_never_the_user_checks() {
    use pdp_core::bundle::{BundleHeader, write_archive};
    let dir = tmp("tokens");
    let (file, key) = signed_bundle(&dir, 1, now());
    let config = Config {
        bundles: vec![file],
        trust_keys: vec![format!("demo={}", key.display())],
        ..Config::default()
    };
    let (app, state) = edge_host::app(&config).unwrap();
    let body = json!({"token": token("alice", "rs256.key.pem", "test-rs256"),
        "action": {"type": "Action", "id": "readDocument"}, "resource": {"type": "Document", "id": "design-doc"}});
    for _ in 0..2 {
        let (_, _, v) = call(
            &app,
            "POST",
            "/v1/is_authorized_with_token",
            Some(body.clone()),
        )
        .await;
        assert_eq!(v["decision"], "Allow", "{v}");
    }
    assert_eq!(state.tokens.counts(), (1, 1));
    // Suspend alice with a users-only delta: the verifier is shared, so the
    // token is still a cache hit — and is denied by the user check.
    let users = "{\"id\":\"alice\",\"username\":\"alice\",\"email\":\"alice@example.com\",\"state\":\"Suspended\",\"groups\":[\"platform\"],\"attrs\":{\"department\":\"engineering\",\"level\":3}}\n";
    let header = BundleHeader {
        realm: "demo".into(),
        revision: 2,
        kind: pdp_core::BundleKind::Delta,
        base_revision: Some(1),
        created_at: now(),
        identity: None,
    };
    let delta = write_archive(
        &header,
        &BTreeMap::from([("users.jsonl".to_owned(), users.as_bytes().to_vec())]),
        Some(&signer()),
        true,
    )
    .unwrap();
    let realm = state.realms.get("demo").unwrap();
    assert_eq!(
        realm.offer(&delta, &state.realms.load_options()).unwrap(),
        2
    );
    let (_, _, v) = call(
        &app,
        "POST",
        "/v1/is_authorized_with_token",
        Some(body.clone()),
    )
    .await;
    assert_eq!(v["reason"], "user_state:Suspended");
    assert_eq!(state.tokens.counts(), (2, 1));
    // A new snapshot brings a new verifier (its keys may differ): no hits from before.
    let (newer, _) = signed_bundle(&dir, 3, now());
    realm
        .offer(&std::fs::read(newer).unwrap(), &state.realms.load_options())
        .unwrap();
    let (_, _, v) = call(&app, "POST", "/v1/is_authorized_with_token", Some(body)).await;
    assert_eq!(v["decision"], "Allow");
    assert_eq!(state.tokens.counts(), (2, 2));
    let (_, _, m) = call(&app, "GET", "/metrics", None).await;
    assert!(
        m.as_str()
            .unwrap()
            .contains("gatehouse_token_cache_total{result=\"hit\"} 2")
    );
}

const SERVICE_SECRET: &str = "s3rvice-secret-for-tests";
/// A service credential of another realm.
const OTHER_SECRET: &str = "s3rvice-secret-of-another-realm";

fn service_app() -> Router {
    let config = keyed(Config {
        service_token_sha256: vec![
            format!(
                "default:{}",
                pdp_core::manifest::sha256_hex(SERVICE_SECRET.as_bytes())
            ),
            format!(
                "elsewhere:{}",
                pdp_core::manifest::sha256_hex(OTHER_SECRET.as_bytes())
            ),
        ],
        ..Config::default()
    });
    edge_host::app(&config).unwrap().0
}

#[test]
fn a_service_credential_names_its_realm() {
    let hex = pdp_core::manifest::sha256_hex(SERVICE_SECRET.as_bytes());
    for bad in [hex.clone(), format!(":{hex}"), "default:abc".to_owned()] {
        let e = edge_host::app(&Config {
            service_token_sha256: vec![bad.clone()],
            ..Config::default()
        })
        .err()
        .unwrap_or_else(|| panic!("{bad:?} was accepted"));
        assert!(e.to_string().contains("service_token_sha256"), "{e}");
    }
}

async fn introspect(app: &Router, auth: Option<&str>, form: &str) -> (StatusCode, String, Value) {
    let mut r =
        Request::post("/v1/introspect").header("content-type", "application/x-www-form-urlencoded");
    if let Some(a) = auth {
        r = r.header("authorization", format!("Bearer {a}"));
    }
    raw(app, r.body(Body::from(form.to_owned())).unwrap()).await
}

#[tokio::test]
async fn introspection_needs_a_service_credential_and_reflects_user_state() {
    let app = service_app();
    let alice = token("alice", "rs256.key.pem", "test-rs256");
    let (s, ct, _) = introspect(&app, None, &format!("token={alice}")).await;
    assert_eq!(
        (s, ct.as_str()),
        (StatusCode::UNAUTHORIZED, "application/problem+json")
    );
    let (s, _, _) = introspect(&app, Some("wrong-secret"), &format!("token={alice}")).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // Default config: no service credential configured, nobody gets in.
    let (s, _, _) = introspect(
        &default_app(),
        Some(SERVICE_SECRET),
        &format!("token={alice}"),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    let (s, _, v) = introspect(
        &app,
        Some(SERVICE_SECRET),
        &format!("token={alice}&token_type_hint=access_token"),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        (
            v["active"].as_bool(),
            v["sub"].as_str(),
            v["username"].as_str()
        ),
        (Some(true), Some("alice"), Some("alice"))
    );
    assert_eq!(v["realm"], "default");
    for inactive in [
        token("dave", "rs256.key.pem", "test-rs256"),
        token("alice", "attacker-rs256.key.pem", "test-rs256"),
        "not-a-token".to_owned(),
    ] {
        let (s, _, v) = introspect(&app, Some(SERVICE_SECRET), &format!("token={inactive}")).await;
        assert_eq!((s, v), (StatusCode::OK, json!({"active": false})));
    }
    let (s, _, _) = introspect(&app, Some(SERVICE_SECRET), "token_type_hint=x").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // Another realm's credential learns nothing about this realm's tokens.
    let (s, _, v) = introspect(&app, Some(OTHER_SECRET), &format!("token={alice}")).await;
    assert_eq!((s, v), (StatusCode::OK, json!({"active": false})));
}

#[tokio::test]
async fn user_lookup_needs_a_service_credential() {
    let app = service_app();
    let get = |auth: Option<&'static str>, path: &'static str| {
        let mut r = Request::get(path);
        if let Some(a) = auth {
            r = r.header("authorization", format!("Bearer {a}"));
        }
        r.body(Body::empty()).unwrap()
    };
    let (s, _, _) = raw(&app, get(None, "/v1/users/alice")).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _, v) = raw(&app, get(Some(SERVICE_SECRET), "/v1/users/dave")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        (
            v["state"].as_str(),
            v["email"].as_str(),
            v["realm"].as_str()
        ),
        (Some("Suspended"), Some("dave@example.com"), Some("default"))
    );
    assert_eq!(v["groups"], json!(["platform"]));
    let (s, ct, _) = raw(&app, get(Some(SERVICE_SECRET), "/v1/users/nobody")).await;
    assert_eq!(
        (s, ct.as_str()),
        (StatusCode::NOT_FOUND, "application/problem+json")
    );
    let (s, _, _) = raw(
        &app,
        get(Some(SERVICE_SECRET), "/v1/users/alice?realm=elsewhere"),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // Another realm's credential reads no profile of this one.
    let (s, _, v) = raw(&app, get(Some(OTHER_SECRET), "/v1/users/dave")).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert!(v.get("email").is_none());
    // By-id decisions say why a user was denied before the policies only
    // to this realm's service credential (and AuthZEN the same).
    let decide = |auth: Option<&'static str>, path: &'static str, body: Value| {
        let mut r = Request::post(path).header("content-type", "application/json");
        if let Some(a) = auth {
            r = r.header("authorization", format!("Bearer {a}"));
        }
        r.body(Body::from(body.to_string())).unwrap()
    };
    let v1 = req("dave", "readDocument", ("Document", "design-doc"));
    let zen = json!({"subject": {"type": "User", "id": "dave"}, "action": {"name": "readDocument"},
        "resource": {"type": "Document", "id": "design-doc"}});
    for (auth, want) in [
        (Some(SERVICE_SECRET), "user_state:Suspended"),
        (Some(OTHER_SECRET), "no_permit"),
        (None, "no_permit"),
    ] {
        let (_, _, v) = raw(&app, decide(auth, "/v1/is_authorized", v1.clone())).await;
        assert_eq!(v["reason"], want, "{auth:?}");
        let (_, _, v) = raw(&app, decide(auth, "/access/v1/evaluation", zen.clone())).await;
        assert_eq!(v["context"]["reason"], want, "{auth:?}: {v}");
    }
}

async fn avp(app: &Router, op: &str, body: Value) -> (StatusCode, String, Value) {
    let r = Request::post("/")
        .header("content-type", "application/x-amz-json-1.0")
        .header("x-amz-target", format!("VerifiedPermissions.{op}"))
        .body(Body::from(body.to_string()))
        .unwrap();
    raw(app, r).await
}

#[tokio::test]
async fn the_avp_wire_protocol_gives_the_same_decisions_as_v1() {
    let app = keyed_app();
    let (s, ct, v) = avp(
        &app,
        "IsAuthorized",
        json!({
            "policyStoreId": "default",
            "principal": {"entityType": "User", "entityId": "alice"},
            "action": {"actionType": "Action", "actionId": "readDocument"},
            "resource": {"entityType": "Document", "entityId": "design-doc"}
        }),
    )
    .await;
    assert_eq!(
        (s, ct.as_str()),
        (StatusCode::OK, "application/x-amz-json-1.0")
    );
    assert_eq!(v["decision"], "ALLOW");
    let ids: Vec<&str> = v["determiningPolicies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["policyId"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "department-colleagues-read",
            "editors-edit-own-department",
            "owners"
        ]
    );

    // Typed context and entities: an ipaddr from outside the office, an entity with a record.
    let (_, _, v) = avp(&app, "IsAuthorized", json!({
        "policyStoreId": "default",
        "principal": {"entityType": "User", "entityId": "carol"},
        "action": {"actionType": "Action", "actionId": "editDocument"},
        "resource": {"entityType": "Document", "entityId": "memo"},
        "context": {"contextMap": {"source_ip": {"ipaddr": "192.168.0.9"}, "mfa": {"boolean": true}}},
        "entities": {"entityList": [{
            "identifier": {"entityType": "Document", "entityId": "memo"},
            "attributes": {"owner": {"entityIdentifier": {"entityType": "User", "entityId": "carol"}},
                           "department": {"string": "sales"}, "classification": {"string": "internal"}},
            "parents": [{"entityType": "Folder", "entityId": "sales"}]
        }]}
    })).await;
    assert_eq!(v["decision"], "DENY", "{v}");
    assert_eq!(
        v["determiningPolicies"][0]["policyId"],
        "edits-from-office-network"
    );

    let (_, _, v) = avp(
        &app,
        "IsAuthorizedWithToken",
        json!({
            "policyStoreId": "default",
            "identityToken": token("dave", "rs256.key.pem", "test-rs256"),
            "action": {"actionType": "Action", "actionId": "readDocument"},
            "resource": {"entityType": "Document", "entityId": "design-doc"}
        }),
    )
    .await;
    assert_eq!(v["decision"], "DENY");

    let (_, _, v) = avp(&app, "BatchIsAuthorized", json!({
        "policyStoreId": "default",
        "requests": [
            {"principal": {"entityType": "User", "entityId": "alice"}, "action": {"actionType": "Action", "actionId": "readDocument"}, "resource": {"entityType": "Document", "entityId": "design-doc"}},
            {"principal": {"entityType": "User", "entityId": "bob"}, "action": {"actionType": "Action", "actionId": "readDocument"}, "resource": {"entityType": "Document", "entityId": "salaries"}}
        ]
    })).await;
    let decisions: Vec<&str> = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["decision"].as_str().unwrap())
        .collect();
    assert_eq!(decisions, ["ALLOW", "DENY"]);
    assert_eq!(v["results"][1]["request"]["principal"]["entityId"], "bob");

    // Errors in AWS JSON form.
    let (s, _, v) = avp(
        &app,
        "IsAuthorized",
        json!({"policyStoreId": "default", "action": {"actionType": "Action", "actionId": "x"}}),
    )
    .await;
    assert_eq!(
        (s, v["__type"].as_str()),
        (StatusCode::BAD_REQUEST, Some("ValidationException"))
    );
    let (_, _, v) = avp(&app, "IsAuthorized", json!({"policyStoreId": "nope"})).await;
    assert_eq!(v["__type"], "ResourceNotFoundException");
    let (_, _, v) = avp(&app, "CreatePolicy", json!({"policyStoreId": "default"})).await;
    assert_eq!(v["__type"], "UnknownOperationException");
}

async fn forward(
    app: &Router,
    headers: &[(&str, &str)],
    path: &str,
) -> (StatusCode, axum::http::HeaderMap) {
    let mut b = Request::builder().method("GET").uri(path);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let resp = app
        .clone()
        .oneshot(b.body(Body::empty()).unwrap())
        .await
        .unwrap();
    (resp.status(), resp.headers().clone())
}

#[tokio::test]
async fn forward_auth_maps_routes_and_tokens_to_status_codes() {
    use edge_host::config::ForwardAuthProxy::{Envoy, Nginx, Traefik};
    let app_for = |proxy| {
        edge_host::app(&keyed(Config {
            forward_auth_proxy: proxy,
            ..Config::default()
        }))
        .unwrap()
        .0
    };
    let apps = [
        (None, app_for(None)),
        (Some(Nginx), app_for(Some(Nginx))),
        (Some(Traefik), app_for(Some(Traefik))),
        (Some(Envoy), app_for(Some(Envoy))),
    ];
    let alice = format!("Bearer {}", token("alice", "rs256.key.pem", "test-rs256"));
    let judy = format!("Bearer {}", token("judy", "rs256.key.pem", "test-rs256"));
    let dave = format!("Bearer {}", token("dave", "rs256.key.pem", "test-rs256"));
    let forged = format!(
        "Bearer {}",
        token("alice", "attacker-rs256.key.pem", "test-rs256")
    );
    let ghost = format!("Bearer {}", token("nobody", "rs256.key.pem", "test-rs256"));
    let sam = format!("Bearer {}", token("sam", "rs256.key.pem", "test-rs256"));
    let traefik = |auth: &str, method: &'static str, uri: &'static str| {
        vec![
            ("authorization", auth.to_owned()),
            ("x-forwarded-method", method.to_owned()),
            ("x-forwarded-uri", uri.to_owned()),
        ]
    };
    let nginx = |auth: &str, method: &'static str, uri: &'static str| {
        vec![
            ("authorization", auth.to_owned()),
            ("x-original-method", method.to_owned()),
            ("x-original-uri", uri.to_owned()),
        ]
    };
    let with = |mut h: Vec<(&'static str, String)>, name: &'static str, value: &str| {
        h.push((name, value.to_owned()));
        h
    };
    type Case<'a> = (Vec<(&'a str, String)>, &'a str, StatusCode, &'a str);
    let traefik_cases: Vec<Case<'_>> = vec![
        (
            traefik(&alice, "GET", "/documents/design-doc?x=1"),
            "/v1/forward-auth",
            StatusCode::OK,
            "permit",
        ),
        (
            traefik(&judy, "GET", "/documents/design-doc"),
            "/v1/forward-auth",
            StatusCode::FORBIDDEN,
            "no_permit",
        ),
        (
            traefik(&dave, "GET", "/documents/design-doc"),
            "/v1/forward-auth",
            StatusCode::FORBIDDEN,
            "user_state:Suspended",
        ),
        (
            traefik(&forged, "GET", "/documents/design-doc"),
            "/v1/forward-auth",
            StatusCode::UNAUTHORIZED,
            "token:bad_signature",
        ),
        (
            traefik(&ghost, "GET", "/documents/design-doc"),
            "/v1/forward-auth",
            StatusCode::UNAUTHORIZED,
            "token:unknown_user",
        ),
        (
            traefik("Bearer garbage", "GET", "/documents/design-doc"),
            "/v1/forward-auth",
            StatusCode::UNAUTHORIZED,
            "token:malformed",
        ),
        (
            vec![
                ("x-forwarded-method", "GET".into()),
                ("x-forwarded-uri", "/documents/design-doc".into()),
            ],
            "/v1/forward-auth",
            StatusCode::UNAUTHORIZED,
            "no_token",
        ),
        (
            traefik("Basic YWxpY2U6eA==", "GET", "/documents/design-doc"),
            "/v1/forward-auth",
            StatusCode::UNAUTHORIZED,
            "no_token",
        ),
        (
            traefik(&alice, "GET", "/nowhere"),
            "/v1/forward-auth",
            StatusCode::FORBIDDEN,
            "no_route",
        ),
        (
            traefik(&alice, "POST", "/documents/design-doc"),
            "/v1/forward-auth",
            StatusCode::FORBIDDEN,
            "no_route",
        ),
        (
            traefik(&alice, "GET", "/documents/../admin"),
            "/v1/forward-auth",
            StatusCode::FORBIDDEN,
            "no_route",
        ),
        (
            traefik(&alice, "GET", "/users/alice/profile"),
            "/v1/forward-auth",
            StatusCode::OK,
            "permit",
        ),
    ];
    let nginx_cases: Vec<Case<'_>> = vec![
        (
            nginx(&alice, "GET", "/documents/design-doc"),
            "/v1/forward-auth",
            StatusCode::OK,
            "permit",
        ),
        // A client's own X-Forwarded-Method reaches the check (nginx
        // passes every client header on): a DELETE dressed as a read is
        // refused, not checked as a read.
        (
            with(
                nginx(&alice, "DELETE", "/documents/design-doc"),
                "x-forwarded-method",
                "GET",
            ),
            "/v1/forward-auth",
            StatusCode::BAD_REQUEST,
            "forward_auth:foreign_header",
        ),
        (
            with(
                nginx(&alice, "GET", "/documents/design-doc"),
                "x-forwarded-uri",
                "/documents/design-doc",
            ),
            "/v1/forward-auth",
            StatusCode::BAD_REQUEST,
            "forward_auth:foreign_header",
        ),
        (
            vec![
                ("authorization", alice.clone()),
                ("x-original-method", "GET".into()),
            ],
            "/v1/forward-auth",
            StatusCode::BAD_REQUEST,
            "forward_auth:missing_header",
        ),
        (
            nginx(&alice, "GET", "/documents/design-doc"),
            "/v1/forward-auth/documents/design-doc",
            StatusCode::BAD_REQUEST,
            "forward_auth:foreign_header",
        ),
        // The client address is the entry nginx appended, not the ones
        // the client wrote before it: an edit from outside the office
        // network claiming an office address is forbidden.
        (
            with(
                nginx(&sam, "PUT", "/documents/design-doc"),
                "x-forwarded-for",
                "10.1.2.3, 192.168.1.1",
            ),
            "/v1/forward-auth",
            StatusCode::FORBIDDEN,
            "forbid:edits-from-office-network",
        ),
        (
            with(
                nginx(&sam, "PUT", "/documents/design-doc"),
                "x-forwarded-for",
                "10.1.2.3",
            ),
            "/v1/forward-auth",
            StatusCode::OK,
            "permit",
        ),
        // X-Real-IP is not read (a client can send it).
        (
            with(
                with(
                    nginx(&sam, "PUT", "/documents/design-doc"),
                    "x-real-ip",
                    "10.1.2.3",
                ),
                "x-forwarded-for",
                "192.168.1.1",
            ),
            "/v1/forward-auth",
            StatusCode::FORBIDDEN,
            "forbid:edits-from-office-network",
        ),
    ];
    let envoy_cases: Vec<Case<'_>> = vec![
        // The original path is appended to the endpoint's.
        (
            vec![("authorization", alice.clone())],
            "/v1/forward-auth/documents/design-doc",
            StatusCode::OK,
            "permit",
        ),
        (
            vec![("authorization", judy.clone())],
            "/v1/forward-auth/documents/design-doc",
            StatusCode::FORBIDDEN,
            "no_permit",
        ),
        (
            vec![
                ("authorization", alice.clone()),
                ("x-original-uri", "/documents/design-doc".into()),
            ],
            "/v1/forward-auth/users/judy/profile",
            StatusCode::BAD_REQUEST,
            "forward_auth:foreign_header",
        ),
        (
            vec![
                ("authorization", alice.clone()),
                ("x-forwarded-method", "GET".into()),
            ],
            "/v1/forward-auth/documents/design-doc",
            StatusCode::BAD_REQUEST,
            "forward_auth:foreign_header",
        ),
    ];
    let unconfigured: Vec<Case<'_>> = vec![
        (
            traefik(&alice, "GET", "/documents/design-doc"),
            "/v1/forward-auth",
            StatusCode::SERVICE_UNAVAILABLE,
            "forward_auth:no_proxy_configured",
        ),
        (
            vec![("authorization", alice.clone())],
            "/v1/forward-auth/documents/design-doc",
            StatusCode::SERVICE_UNAVAILABLE,
            "forward_auth:no_proxy_configured",
        ),
    ];
    let mut traefik_cases = traefik_cases;
    traefik_cases.extend([
        (
            with(
                traefik(&alice, "DELETE", "/documents/design-doc"),
                "x-original-method",
                "GET",
            ),
            "/v1/forward-auth",
            StatusCode::BAD_REQUEST,
            "forward_auth:foreign_header",
        ),
        (
            vec![
                ("authorization", alice.clone()),
                ("x-forwarded-uri", "/documents/design-doc".into()),
            ],
            "/v1/forward-auth",
            StatusCode::BAD_REQUEST,
            "forward_auth:missing_header",
        ),
    ]);
    let cases = [
        (None, unconfigured),
        (Some(Nginx), nginx_cases),
        (Some(Traefik), traefik_cases),
        (Some(Envoy), envoy_cases),
    ]
    .into_iter()
    .flat_map(|(proxy, cases)| cases.into_iter().map(move |c| (proxy, c)));
    for (proxy, (headers, path, want_status, want_reason)) in cases {
        let app = &apps.iter().find(|(p, _)| *p == proxy).unwrap().1;
        let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, got) = forward(app, &h, path).await;
        let reason = got.get("x-gatehouse-reason").and_then(|v| v.to_str().ok());
        assert_eq!(
            (status, reason),
            (want_status, Some(want_reason)),
            "{proxy:?} {headers:?} {path}"
        );
        match status {
            StatusCode::OK => {
                let user = got["x-gatehouse-user"].to_str().unwrap();
                assert!(user == "alice" || user == "sam", "{user}");
            }
            _ => assert!(got.get("x-gatehouse-user").is_none()),
        }
        if status == StatusCode::UNAUTHORIZED {
            let challenge = got[axum::http::header::WWW_AUTHENTICATE].to_str().unwrap();
            assert!(challenge.starts_with("Bearer "), "{challenge}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swaps_during_a_stream_of_requests_fail_none_of_them() {
    let dir = tmp("swap-load");
    let (file, key) = signed_bundle(&dir, 1, now());
    let config = Config {
        bundles: vec![file],
        trust_keys: vec![format!("demo={}", key.display())],
        ..Config::default()
    };
    let (app, state) = edge_host::app(&config).unwrap();
    let bundles: Vec<Vec<u8>> = (2..=9)
        .map(|rev| std::fs::read(signed_bundle(&dir, rev, now()).0).unwrap())
        .collect();
    // Four clients keep asking until the last swap; after each swap the
    // swapper waits until every client has finished three more requests,
    // so each swap happens while requests run and every client sees every
    // revision.
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    const CLIENTS: usize = 4;
    let served: std::sync::Arc<Vec<AtomicUsize>> =
        std::sync::Arc::new((0..CLIENTS).map(|_| AtomicUsize::new(0)).collect());
    let done = std::sync::Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let (app, served, done) = (app.clone(), served.clone(), done.clone());
            tokio::spawn(async move {
                let mut revisions = Vec::new();
                while !done.load(Ordering::Acquire) {
                    assert!(revisions.len() < 1_000_000, "the swapper never finished");
                    let (s, _, v) = alice_reads(&app).await;
                    assert_eq!(
                        (s, v["decision"].as_str()),
                        (StatusCode::OK, Some("Allow")),
                        "{v}"
                    );
                    revisions.push(v["revision"].as_u64().unwrap());
                    served[i].fetch_add(1, Ordering::Release);
                    tokio::task::yield_now().await;
                }
                revisions
            })
        })
        .collect();
    let swapper = {
        let (state, served, done) = (std::sync::Arc::clone(&state), served.clone(), done.clone());
        tokio::task::spawn_blocking(move || {
            let realm = state.realms.get("demo").unwrap();
            let started = std::time::Instant::now();
            let wait_for_three_more = || {
                let from: Vec<usize> = served.iter().map(|n| n.load(Ordering::Acquire)).collect();
                while served
                    .iter()
                    .zip(&from)
                    .any(|(n, f)| n.load(Ordering::Acquire) < f + 3)
                {
                    assert!(
                        started.elapsed() < std::time::Duration::from_secs(60),
                        "clients stopped answering"
                    );
                    std::thread::yield_now();
                }
            };
            wait_for_three_more();
            for b in &bundles {
                realm.offer(b, &state.realms.load_options()).unwrap();
                wait_for_three_more();
            }
            done.store(true, Ordering::Release);
            println!("8 swaps under load in {:?}", started.elapsed());
        })
    };
    swapper.await.unwrap();
    for c in clients {
        let revs = c.await.unwrap();
        // Each client sees revisions only move forward, and saw each one.
        assert!(revs.windows(2).all(|w| w[0] <= w[1]), "{revs:?}");
        let mut seen = revs.clone();
        seen.dedup();
        assert_eq!(seen, (1..=9).collect::<Vec<u64>>(), "{revs:?}");
    }
    let (_, _, v) = alice_reads(&app).await;
    assert_eq!(v["revision"], 9);
}

/// A token request for reading design-doc.
fn reads_with(token: &str) -> Value {
    json!({"token": token, "action": {"type": "Action", "id": "readDocument"},
        "resource": {"type": "Document", "id": "design-doc"}})
}

async fn reason_with_token(app: &Router, token: &str) -> String {
    let (s, _, v) = call(
        app,
        "POST",
        "/v1/is_authorized_with_token",
        Some(reads_with(token)),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v["reason"].as_str().unwrap().to_owned()
}

/// Issue 16 item 2: the demo realm trusted the committed test keys, so
/// anyone holding the repository could sign a token it accepted.
#[tokio::test]
async fn the_demo_realm_trusts_no_committed_key_only_the_one_it_generated() {
    use jsonwebtoken::Algorithm::{ES256, EdDSA, RS256};
    let (app, state) = edge_host::app(&Config::default()).unwrap();
    for (alg, kid, file) in [
        (RS256, "test-rs256", "rs256.key.pem"),
        (ES256, "test-es256", "es256.key.pem"),
        (EdDSA, "test-eddsa", "eddsa.key.pem"),
    ] {
        let t = common::signed(alg, kid, file, &common::id_claims("alice"));
        assert_eq!(
            reason_with_token(&app, &t).await,
            "token:unknown_kid",
            "{kid}"
        );
    }
    // Ready, and answering by id, all the same.
    let (s, _, _) = call(&app, "GET", "/readyz", None).await;
    assert_eq!(s, StatusCode::OK);
    let (_, _, v) = alice_reads(&app).await;
    assert_eq!(v["decision"], "Allow");

    // Its own key: tokens it mints, in-process and over GET /demo/token.
    let demo = state.demo.as_ref().expect("demo mode");
    let minted = |user: &str| {
        demo.token(user, pdp_core::token::TokenUse::Id, now())
            .unwrap()
    };
    assert_eq!(reason_with_token(&app, &minted("alice")).await, "permit");
    assert_eq!(
        reason_with_token(&app, &minted("dave")).await,
        "user_state:Suspended"
    );
    for (query, reason) in [
        ("user=alice", "permit"),
        ("user=alice&token_use=access", "permit"),
        ("user=judy", "no_permit"),
        ("user=nobody", "token:unknown_user"),
    ] {
        let resp = app
            .clone()
            .oneshot(local(Request::get(format!("/demo/token?{query}"))))
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{query}");
        assert_eq!(resp.headers()["cache-control"], "no-store");
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let token = String::from_utf8(bytes.to_vec()).unwrap();
        assert_eq!(
            reason_with_token(&app, token.trim()).await,
            reason,
            "{query}"
        );
    }
    for bad in ["", "?user=", "?user=alice&token_use=refresh", "?who=alice"] {
        let (s, ct, v) = raw(&app, local(Request::get(format!("/demo/token{bad}")))).await;
        assert_eq!(
            (s, ct.as_str(), v["errors"][0]["kind"].as_str()),
            (
                StatusCode::BAD_REQUEST,
                "application/problem+json",
                Some("invalid_request")
            ),
            "{bad}"
        );
    }

    // Another start, another key: one demo host's tokens mean nothing to
    // another.
    let other = default_app();
    assert_eq!(
        reason_with_token(&other, &minted("alice")).await,
        "token:unknown_kid"
    );
}

/// A request to the demo realm's token endpoint as a program on this
/// machine sends it: from a loopback peer (the connection's address, which
/// `edge_host::serve` supplies) to `Host: localhost:8180`.
fn local(builder: axum::http::request::Builder) -> Request<Body> {
    builder
        .header("host", "localhost:8180")
        .extension(axum::extract::ConnectInfo(std::net::SocketAddr::from((
            [127, 0, 0, 1],
            50_000,
        ))))
        .body(Body::empty())
        .unwrap()
}

/// Review finding: `/demo/token` decided "local only" from the address the
/// host listens on, so a proxy on the same machine forwarding to
/// 127.0.0.1, a web page using DNS rebinding, or a second listener of a
/// library user could mint tokens. It answers only a loopback peer, never
/// through a proxy, asked for a local `Host`.
#[tokio::test]
async fn demo_tokens_go_only_to_a_loopback_peer_asking_for_a_local_host() {
    let app = default_app();
    let refused = |req: Request<Body>, kind: &'static str| {
        let app = app.clone();
        async move {
            let what = format!(
                "{:?} {:?}",
                req.headers(),
                req.extensions()
                    .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            );
            let (s, ct, v) = raw(&app, req).await;
            assert_eq!(
                (s, ct.as_str(), v["errors"][0]["kind"].as_str()),
                (
                    StatusCode::FORBIDDEN,
                    "application/problem+json",
                    Some(kind)
                ),
                "{what}"
            );
        }
    };
    let get = || Request::get("/demo/token?user=alice");
    // The accepted shape, for contrast: every host spelling, any port.
    for host in [
        "localhost",
        "localhost:8180",
        "LocalHost:1",
        "127.0.0.1",
        "127.0.0.1:8180",
        "[::1]",
        "[::1]:8180",
    ] {
        let mut req = local(get());
        req.headers_mut().insert("host", host.parse().unwrap());
        let (s, _, v) = raw(&app, req).await;
        assert_eq!(s, StatusCode::OK, "{host}: {v}");
    }
    let from_v6 = get()
        .header("host", "[::1]:8180")
        .extension(axum::extract::ConnectInfo(std::net::SocketAddr::from((
            std::net::Ipv6Addr::LOCALHOST,
            50_000,
        ))))
        .body(Body::empty())
        .unwrap();
    assert_eq!(raw(&app, from_v6).await.0, StatusCode::OK);

    // No connection address at all (in-process, or a listener that does
    // not supply one): fail closed.
    refused(
        get()
            .header("host", "localhost")
            .body(Body::empty())
            .unwrap(),
        "demo_token_not_local",
    )
    .await;
    // A peer beyond loopback, whatever it claims.
    for peer in [
        std::net::SocketAddr::from(([203, 0, 113, 5], 40_000)),
        std::net::SocketAddr::from(([0, 0, 0, 0], 40_000)),
        "[2001:db8::1]:40000".parse().unwrap(),
    ] {
        refused(
            get()
                .header("host", "localhost")
                .extension(axum::extract::ConnectInfo(peer))
                .body(Body::empty())
                .unwrap(),
            "demo_token_not_local",
        )
        .await;
    }
    // Through a proxy on this machine: the peer is loopback, but the
    // request came from elsewhere.
    for (name, value) in [
        ("forwarded", "for=203.0.113.5"),
        ("x-forwarded-for", "203.0.113.5"),
        ("x-forwarded-for", "127.0.0.1"),
        ("x-forwarded-host", "localhost"),
        ("x-forwarded-proto", "http"),
        ("x-real-ip", "127.0.0.1"),
        ("via", "1.1 nginx"),
    ] {
        let mut req = local(get());
        req.headers_mut().insert(name, value.parse().unwrap());
        refused(req, "demo_token_proxied").await;
    }
    // DNS rebinding: a page of evil.example, its name now resolving to
    // 127.0.0.1, asks with its own Host.
    for host in [
        "evil.example",
        "evil.example:8180",
        "localhost.evil.example",
        "127.0.0.1.evil.example",
        "localhost:http",
        "[::1]x",
        "",
    ] {
        let mut req = local(get());
        req.headers_mut().insert("host", host.parse().unwrap());
        refused(req, "demo_token_host").await;
    }
    let mut no_host = local(get());
    no_host.headers_mut().remove("host");
    refused(no_host, "demo_token_host").await;
    let mut two_hosts = local(get());
    two_hosts
        .headers_mut()
        .append("host", "evil.example".parse().unwrap());
    refused(two_hosts, "demo_token_host").await;
}

/// Tokens are minted only by the demo realm, and a configured host never
/// falls back to it: not with a bundle, not with a store that is down, not
/// with trust keys whose bundle or source went missing.
#[tokio::test]
async fn only_a_host_with_nothing_configured_serves_the_demo() {
    let no_demo = |config: &Config| {
        let (app, state) = edge_host::app(config).unwrap();
        assert!(state.demo.is_none());
        app
    };
    // A bundle (the test-key realm, dev mode), a signed bundle.
    let dir = tmp("no-demo");
    let (file, key) = signed_bundle(&dir, 1, now());
    for config in [
        keyed(Config::default()),
        Config {
            bundles: vec![file],
            trust_keys: vec![format!("demo={}", key.display())],
            ..Config::default()
        },
    ] {
        let app = no_demo(&config);
        let (s, _, _) = call(&app, "GET", "/demo/token?user=alice", None).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{config:?}");
    }
    // A store that is down: its realm only, failing closed; no demo realm.
    let config = Config {
        sources: vec![dir.join("no-store/acme").display().to_string()],
        dev: true,
        ..Config::default()
    };
    let app = no_demo(&config);
    let (s, _, v) = alice_reads(&app).await;
    assert_eq!(
        (s, v["errors"][0]["kind"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("no_bundle"))
    );
    let mut named = req("alice", "readDocument", ("Document", "design-doc"));
    named["realm"] = json!("default");
    let (s, _, v) = call(&app, "POST", "/v1/is_authorized", Some(named)).await;
    assert_eq!(
        (s, v["errors"][0]["kind"].as_str()),
        (StatusCode::BAD_REQUEST, Some("unknown_realm"))
    );
    let (s, _, _) = call(&app, "GET", "/readyz", None).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    let (s, _, _) = call(&app, "GET", "/demo/token?user=alice", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // Settings that only a deployment sets, without a bundle or source:
    // the host does not start (a production configuration whose
    // GATEHOUSE_SOURCES came out empty must not become the demo), and
    // neither does one listening beyond loopback.
    let hex = pdp_core::manifest::sha256_hex(b"secret");
    for (config, names) in [
        (
            Config {
                trust_keys: vec![format!("default={}", key.display())],
                ..Config::default()
            },
            "trust_keys",
        ),
        (
            Config {
                state_dir: Some(dir.join("state")),
                ..Config::default()
            },
            "state_dir",
        ),
        (
            Config {
                listen: "0.0.0.0:8180".parse().unwrap(),
                ..Config::default()
            },
            "0.0.0.0:8180",
        ),
        (
            Config {
                listen: "[::]:8180".parse().unwrap(),
                ..Config::default()
            },
            "[::]:8180",
        ),
        (
            Config {
                listen: "192.0.2.7:8180".parse().unwrap(),
                ..Config::default()
            },
            "192.0.2.7:8180",
        ),
        (
            Config {
                service_token_sha256: vec![format!("default:{hex}")],
                ..Config::default()
            },
            "service_token_sha256",
        ),
        (
            Config {
                forward_auth_proxy: Some(edge_host::config::ForwardAuthProxy::Nginx),
                ..Config::default()
            },
            "forward_auth_proxy",
        ),
        (
            Config {
                max_staleness_seconds: Some(300),
                ..Config::default()
            },
            "max_staleness_seconds",
        ),
        (
            Config {
                user_state_detail: vec!["default".into()],
                ..Config::default()
            },
            "user_state_detail",
        ),
        (
            Config {
                authzen_pdp_url: Some("https://pdp.acme.io".into()),
                ..Config::default()
            },
            "authzen_pdp_url",
        ),
        (
            Config {
                dev: true,
                ..Config::default()
            },
            "dev",
        ),
        (
            Config {
                listen: "0.0.0.0:8180".parse().unwrap(),
                max_staleness_seconds: Some(300),
                dev: true,
                ..Config::default()
            },
            "max_staleness_seconds",
        ),
    ] {
        let e = edge_host::app(&config).unwrap_err();
        let text = e.to_string();
        assert!(
            matches!(e, StartError::Config(_))
                && text.contains(names)
                && text.contains("not serving the demo realm")
                && text.contains("--bundle or --source"),
            "{names}: {e}"
        );
    }
    // Another loopback address or port, and resource limits: still the demo.
    for config in [
        Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..Config::default()
        },
        Config {
            listen: "[::1]:9000".parse().unwrap(),
            max_body_bytes: 1024,
            request_timeout_ms: 100,
            token_cache_capacity: 0,
            ..Config::default()
        },
    ] {
        let (_, state) = edge_host::app(&config).unwrap();
        assert!(state.demo.is_some(), "{config:?}");
    }
}

/// POST an AuthZEN search with an `X-Request-ID` and, optionally, a
/// service credential; the answer's request id must be echoed.
async fn search(
    app: &Router,
    kind: &str,
    credential: Option<&str>,
    body: Value,
) -> (StatusCode, Value) {
    let mut req = Request::post(format!("/access/v1/search/{kind}"))
        .header("content-type", "application/json")
        .header("x-request-id", "search-1");
    if let Some(c) = credential {
        req = req.header("authorization", format!("Bearer {c}"));
    }
    let resp = app
        .clone()
        .oneshot(req.body(Body::from(body.to_string())).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"], "search-1", "{kind} {body}");
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap())
}

/// Every page of an AuthZEN search (limit 1), and how many pages it took.
async fn every_page(
    app: &Router,
    kind: &str,
    credential: Option<&str>,
    body: Value,
) -> (Vec<Value>, usize) {
    let (mut out, mut token, mut pages) = (Vec::new(), String::new(), 0);
    loop {
        let mut b = body.clone();
        b["page"] = json!({"limit": 1, "token": token});
        let (s, v) = search(app, kind, credential, b).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        pages += 1;
        out.extend(v["results"].as_array().unwrap().iter().cloned());
        token = v["page"]["next_token"].as_str().unwrap().to_owned();
        if token.is_empty() {
            return (out, pages);
        }
        assert!(pages < 100, "runaway paging");
    }
}

fn ids_of(entities: &str, ty: &str) -> Vec<String> {
    let text = &common::test_realm_files()[entities];
    if entities.ends_with(".jsonl") {
        return std::str::from_utf8(text)
            .unwrap()
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["id"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
    }
    let all: Vec<Value> = serde_json::from_slice(text).unwrap();
    all.iter()
        .filter(|e| e["uid"]["type"] == ty)
        .map(|e| e["uid"]["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn evaluates(app: &Router, subject: &str, action: &str, resource: (&str, &str)) -> bool {
    let body = json!({"subject": {"type": "User", "id": subject}, "action": {"name": action},
        "resource": {"type": resource.0, "id": resource.1}});
    let (s, _, v) = call(app, "POST", "/access/v1/evaluation", Some(body)).await;
    assert_eq!(s, StatusCode::OK);
    v["decision"].as_bool().unwrap()
}

/// Issue 18 item 2: the three AuthZEN searches, page by page, equal the
/// evaluations of every candidate; subject search needs the realm's
/// service credential (401 without, 403 with another realm's); a page
/// token survives a swap to a newer revision (the replaced one answers
/// it) and is refused when it names a revision not held.
#[tokio::test]
async fn authzen_searches_page_through_exactly_what_evaluation_allows() {
    let app = service_app();
    let mut docs = ids_of("entities.json", "Document");
    docs.sort();
    let mut expected = Vec::new();
    for d in &docs {
        if evaluates(&app, "alice", "readDocument", ("Document", d)).await {
            expected.push(json!({"type": "Document", "id": d}));
        }
    }
    assert!(expected.len() >= 2, "alice reads {expected:?}");
    let q = json!({"subject": {"type": "User", "id": "alice"}, "action": {"name": "readDocument"}, "resource": {"type": "Document"}});
    let (got, pages) = every_page(&app, "resource", None, q.clone()).await;
    assert_eq!(got, expected);
    assert_eq!(pages, expected.len(), "one result a page, the last says so");

    // Who may read design-doc: the service credential of the realm only.
    let who = json!({"subject": {"type": "User"}, "action": {"name": "readDocument"}, "resource": {"type": "Document", "id": "design-doc"}});
    assert_eq!(
        search(&app, "subject", None, who.clone()).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        search(&app, "subject", Some(OTHER_SECRET), who.clone())
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    let mut users = ids_of("users.jsonl", "User");
    users.sort();
    let mut expected = Vec::new();
    for u in &users {
        if evaluates(&app, u, "readDocument", ("Document", "design-doc")).await {
            expected.push(json!({"type": "User", "id": u}));
        }
    }
    let (got, _) = every_page(&app, "subject", Some(SERVICE_SECRET), who).await;
    assert_eq!(got, expected);
    assert!(
        !got.contains(&json!({"type": "User", "id": "dave"})),
        "suspended dave"
    );

    // What alice may do to design-doc.
    let what = json!({"subject": {"type": "User", "id": "alice"}, "resource": {"type": "Document", "id": "design-doc"}});
    let (got, _) = every_page(&app, "action", None, what.clone()).await;
    assert!(got.contains(&json!({"name": "readDocument"})), "{got:?}");
    for a in &got {
        let name = a["name"].as_str().unwrap();
        assert!(
            evaluates(&app, "alice", name, ("Document", "design-doc")).await,
            "{name}"
        );
    }

    // Bad input: an unknown type, an id on the searched side, properties,
    // a token that is not one, a token of a revision not held.
    let mut unknown = q.clone();
    unknown["resource"]["type"] = json!("Nope");
    let bad_token = |t: &str| {
        let mut b = q.clone();
        b["page"] = json!({"token": t});
        b
    };
    let forged = {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(br#"{"r":999,"q":"x","a":"design-doc"}"#)
    };
    for (body, kind) in [
        (unknown, "invalid_request"),
        (
            json!({"subject": {"type": "User", "id": "alice"}, "action": {"name": "readDocument"}, "resource": {"type": "Document", "id": "d"}}),
            "invalid_request",
        ),
        (
            json!({"subject": {"type": "User", "id": "alice", "properties": {"level": 9}}, "action": {"name": "readDocument"}, "resource": {"type": "Document"}}),
            "invalid_request",
        ),
        (bad_token("not-a-token"), "invalid_cursor"),
        (bad_token(&forged), "cursor_expired"),
    ] {
        let (s, v) = search(&app, "resource", None, body.clone()).await;
        assert_eq!(
            (s, v["errors"][0]["kind"].as_str()),
            (StatusCode::BAD_REQUEST, Some(kind)),
            "{body} {v}"
        );
    }
}

#[tokio::test]
async fn a_search_page_token_outlives_a_swap_to_a_newer_revision() {
    let dir = tmp("search-swap");
    let (file, key) = signed_bundle(&dir, 5, now());
    let config = Config {
        bundles: vec![file],
        trust_keys: vec![format!("demo={}", key.display())],
        ..Config::default()
    };
    let (app, state) = edge_host::app(&config).unwrap();
    let q = json!({"subject": {"type": "User", "id": "alice"}, "action": {"name": "readDocument"}, "resource": {"type": "Document"}, "page": {"limit": 1}});
    let (s, first) = search(&app, "resource", None, q.clone()).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(first["context"]["revision"], 5);
    let token = first["page"]["next_token"].as_str().unwrap().to_owned();
    let (newer, _) = signed_bundle(&dir, 6, now());
    let realm = state.realms.get("demo").unwrap();
    realm
        .offer(&std::fs::read(newer).unwrap(), &state.realms.load_options())
        .unwrap();
    let mut next = q.clone();
    next["page"]["token"] = json!(token);
    let (s, second) = search(&app, "resource", None, next.clone()).await;
    assert_eq!(
        (s, &second["context"]["revision"]),
        (StatusCode::OK, &json!(5)),
        "{second}"
    );
    assert_ne!(second["results"], first["results"]);
    // A second swap lets revision 5 go: its token has expired.
    let (newest, _) = signed_bundle(&dir, 7, now());
    realm
        .offer(
            &std::fs::read(newest).unwrap(),
            &state.realms.load_options(),
        )
        .unwrap();
    let (s, v) = search(&app, "resource", None, next).await;
    assert_eq!(
        (s, v["errors"][0]["kind"].as_str()),
        (StatusCode::BAD_REQUEST, Some("cursor_expired")),
        "{v}"
    );
}

/// Issue 18 item 2: an AuthZEN PEP's own type names (the realm's
/// `authzen.json`: `user` -> `User`, `document` -> `Document`) reach the
/// directory and the policies unchanged, in evaluations and searches;
/// a name neither mapped nor a Cedar type is refused; searches answer in
/// the name they were asked in.
#[tokio::test]
async fn authzen_type_names_of_the_pep_map_onto_the_realm() {
    let app = service_app();
    let names = |user: &str, doc: &str, id: &str, rid: &str| {
        json!({"subject": {"type": user, "id": id}, "action": {"name": "readDocument"},
            "resource": {"type": doc, "id": rid}})
    };
    for (id, rid, allowed) in [
        ("alice", "design-doc", true),
        ("alice", "salaries", false),
        ("bob", "design-doc", false),
        ("dave", "design-doc", false),
    ] {
        let mut answers = Vec::new();
        for (user, doc) in [("User", "Document"), ("user", "document")] {
            let (s, _, v) = call(
                &app,
                "POST",
                "/access/v1/evaluation",
                Some(names(user, doc, id, rid)),
            )
            .await;
            assert_eq!(s, StatusCode::OK, "{v}");
            answers.push(v);
        }
        assert_eq!(answers[0], answers[1], "{id} {rid}");
        assert_eq!(answers[0]["decision"], allowed, "{id} {rid}");
    }
    let batch = json!({"subject": {"type": "user", "id": "alice"}, "action": {"name": "readDocument"},
        "evaluations": [{"resource": {"type": "document", "id": "design-doc"}},
                        {"resource": {"type": "document", "id": "salaries"}}]});
    let (_, _, v) = call(&app, "POST", "/access/v1/evaluations", Some(batch)).await;
    assert_eq!(v["evaluations"][0]["decision"], true, "{v}");
    assert_eq!(v["evaluations"][1]["decision"], false, "{v}");

    // Searches: the same ids whichever name is used, typed as asked.
    let docs = |ty: &str| {
        json!({"subject": {"type": "user", "id": "alice"}, "action": {"name": "readDocument"},
            "resource": {"type": ty}})
    };
    let (pep, _) = every_page(&app, "resource", None, docs("document")).await;
    let (cedar, _) = every_page(&app, "resource", None, docs("Document")).await;
    assert!(pep.len() >= 2, "{pep:?}");
    assert_eq!(pep.len(), cedar.len());
    for (p, c) in pep.iter().zip(&cedar) {
        assert_eq!((&p["type"], &p["id"]), (&json!("document"), &c["id"]));
        assert_eq!(c["type"], "Document");
    }
    let who = json!({"subject": {"type": "user"}, "action": {"name": "readDocument"},
        "resource": {"type": "document", "id": "design-doc"}});
    let (users, _) = every_page(&app, "subject", Some(SERVICE_SECRET), who).await;
    assert!(
        users.contains(&json!({"type": "user", "id": "alice"})),
        "{users:?}"
    );
    let what = json!({"subject": {"type": "user", "id": "alice"}, "resource": {"type": "document", "id": "design-doc"}});
    let (actions, _) = every_page(&app, "action", None, what).await;
    assert!(
        actions.contains(&json!({"name": "readDocument"})),
        "{actions:?}"
    );

    // A name the map does not hold and the schema does not know.
    let (s, _, v) = call(
        &app,
        "POST",
        "/access/v1/evaluation",
        Some(names("user", "todo", "alice", "t1")),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, v) = search(&app, "resource", None, docs("todo")).await;
    assert_eq!(
        (s, v["errors"][0]["kind"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request")),
        "{v}"
    );
}

/// Issue 18 item 2: `properties` sent for a directory user (or a bundle
/// entity) never override the realm's record, under either type name.
#[tokio::test]
async fn authzen_properties_never_override_the_directory() {
    let app = default_app();
    for ty in ["User", "user"] {
        // alice is level 3: the secret document needs 5.
        let elevate = json!({"subject": {"type": ty, "id": "alice", "properties": {"level": 9, "department": "finance"}},
            "action": {"name": "readDocument"}, "resource": {"type": "Document", "id": "salaries"}});
        let (s, _, v) = call(&app, "POST", "/access/v1/evaluation", Some(elevate)).await;
        assert_eq!((s, &v["decision"]), (StatusCode::OK, &json!(false)), "{v}");
        // dave is Suspended whatever the request says.
        let revive = json!({"subject": {"type": ty, "id": "dave", "properties": {"state": "Active"}},
            "action": {"name": "readDocument"}, "resource": {"type": "Document", "id": "design-doc"}});
        let (_, _, v) = call(&app, "POST", "/access/v1/evaluation", Some(revive)).await;
        assert_eq!(v["decision"], false, "{v}");
        assert_eq!(v["context"]["reason"], "no_permit", "{v}");
    }
    // A bundle document's owner cannot be claimed either.
    let claim = json!({"subject": {"type": "User", "id": "bob"}, "action": {"name": "readDocument"},
        "resource": {"type": "Document", "id": "design-doc", "properties": {"owner": {"__entity": {"type": "User", "id": "bob"}},
            "department": "it", "classification": "internal"}}});
    let (_, _, v) = call(&app, "POST", "/access/v1/evaluation", Some(claim)).await;
    assert_eq!(v["decision"], false, "{v}");
}

/// The AuthZEN 500: a handler that fails (panics) is answered with an
/// `internal` problem through the layers every route is served with, the
/// request id echoed, the panic counted, and the host keeps answering.
#[tokio::test]
async fn a_failing_handler_is_answered_500_and_counted() {
    let config = keyed(Config::default());
    let (_, state) = edge_host::app(&config).unwrap();
    let routes = Router::new()
        .route(
            "/access/v1/evaluation",
            // A defect: reads past the end of the body it was given.
            axum::routing::post(|body: String| async move {
                let bytes = body.as_bytes();
                bytes[bytes.len() + 1].to_string()
            }),
        )
        .route("/healthz", axum::routing::get(|| async { "ok" }));
    let app = edge_host::harden(routes, &state, &config);
    for n in 1..=2 {
        let req = Request::post("/access/v1/evaluation")
            .header("x-request-id", "req-500")
            .body(Body::from("{}"))
            .unwrap();
        let resp = app.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(resp.headers()["x-request-id"], "req-500");
        assert_eq!(resp.headers()["content-type"], "application/problem+json");
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["errors"][0]["kind"], "internal", "{v}");
        assert!(!v.to_string().contains("index out of bounds"), "{v}");
        assert_eq!(state.metrics.panics(), n);
    }
    let (s, _, _) = call(&app, "GET", "/healthz", None).await;
    assert_eq!(s, StatusCode::OK);
    let mut text = String::new();
    state.metrics.render(&mut text);
    assert!(text.contains("gatehouse_handler_panics_total 2"), "{text}");
}
