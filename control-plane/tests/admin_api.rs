//! The admin API in process (no socket): every resource, its refusals as
//! problem documents, authentication and Cedar authorization of every
//! call, and isolation between realms — through HTTP requests as a client
//! sends them.

mod support;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use control_plane::backend::local_identity::LocalIdentity;
use control_plane::ports::identity::IdentityProvider;
use control_plane::ports::repository::Repository;
use control_plane::{Settings, http::app};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use std::sync::Arc;
use support::{Cp, OP, Options};
use tower::ServiceExt;

const ROOT_PW: &str = "root passphrase for tests";

struct Harness {
    app: Router,
    cp: Cp,
    rt: tokio::runtime::Runtime,
    root: String,
}

struct Reply {
    status: StatusCode,
    content_type: String,
    headers: axum::http::HeaderMap,
    json: Value,
}

impl Harness {
    fn new() -> Harness {
        Harness::with_identity(|repo| {
            Arc::new(LocalIdentity::new(repo, support::ISSUER_BASE, 3600))
        })
    }

    fn with_identity(
        identity: impl FnOnce(Arc<dyn Repository>) -> Arc<dyn IdentityProvider> + 'static,
    ) -> Harness {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let cp = rt.block_on(Cp::open(Options {
            settings: Settings::default(),
            file_db: true,
            identity: Some(Box::new(identity)),
        }));
        rt.block_on(cp.service.bootstrap("root", "root@example.com", ROOT_PW))
            .unwrap();
        let mut h = Harness {
            app: app(cp.service.clone()),
            cp,
            rt,
            root: String::new(),
        };
        h.root = h.token("admin", "root", ROOT_PW);
        h
    }

    /// Run a future of the service on the harness's runtime.
    fn block<T>(&self, f: impl std::future::Future<Output = T>) -> T {
        self.rt.block_on(f)
    }

    fn token(&self, realm: &str, username: &str, password: &str) -> String {
        let r = self.call(
            "POST",
            &format!("/realms/{realm}/login"),
            None,
            Some(json!({"username": username, "password": password})),
        );
        assert_eq!(r.status, StatusCode::OK, "login {username}: {}", r.json);
        r.json["access_token"].as_str().unwrap().to_owned()
    }

    fn raw(&self, method: &str, path: &str, token: Option<&str>, body: Body, ctype: &str) -> Reply {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let req = req.header(header::CONTENT_TYPE, ctype).body(body).unwrap();
        self.rt.block_on(async {
            let resp = self.app.clone().oneshot(req).await.unwrap();
            let status = resp.status();
            let headers = resp.headers().clone();
            let content_type = headers
                .get(header::CONTENT_TYPE)
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default();
            let bytes = resp.into_body().collect().await.unwrap().to_bytes();
            let json = serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
            Reply {
                status,
                content_type,
                headers,
                json,
            }
        })
    }

    fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> Reply {
        let body = body.map_or_else(Body::empty, |b| Body::from(b.to_string()));
        self.raw(method, path, token, body, "application/json")
    }

    /// A call as the root administrator.
    fn root(&self, method: &str, path: &str, body: Option<Value>) -> Reply {
        self.call(method, path, Some(&self.root.clone()), body)
    }
}

/// The reply must be a problem document with this status.
fn problem(r: &Reply, status: StatusCode) -> &Value {
    assert_eq!(r.status, status, "{}", r.json);
    assert_eq!(r.content_type, "application/problem+json", "{}", r.json);
    assert_eq!(r.json["status"], status.as_u16());
    assert!(
        r.json["type"]
            .as_str()
            .unwrap()
            .starts_with("urn:gatehouse:problem:")
    );
    assert!(!r.json["detail"].as_str().unwrap().is_empty());
    &r.json
}

fn ok(r: &Reply, status: StatusCode) -> &Value {
    assert_eq!(r.status, status, "{}", r.json);
    &r.json
}

#[test]
fn every_call_is_authenticated_and_authorized() {
    let h = Harness::new();
    // No token, a malformed one, a forged one.
    let r = h.call("GET", "/v1/realms", None, None);
    problem(&r, StatusCode::UNAUTHORIZED);
    assert!(r.headers.contains_key(header::WWW_AUTHENTICATE));
    problem(
        &h.call("GET", "/v1/realms", Some("nonsense"), None),
        StatusCode::UNAUTHORIZED,
    );
    // The signature's first character changed: a different signature.
    let sig_at = h.root.rfind('.').unwrap() + 1;
    let mut forged = h.root.clone();
    let flipped = if &forged[sig_at..=sig_at] == "A" {
        "B"
    } else {
        "A"
    };
    forged.replace_range(sig_at..=sig_at, flipped);
    problem(
        &h.call("GET", "/v1/realms", Some(&forged), None),
        StatusCode::UNAUTHORIZED,
    );

    // An admin-realm user without a role: authenticated, not permitted.
    let u = ok(
        &h.root(
            "POST",
            "/v1/realms/admin/users",
            Some(json!({"email": "clerk@example.com", "username": "clerk"})),
        ),
        StatusCode::CREATED,
    )["id"]
        .as_str()
        .unwrap()
        .to_owned();
    ok(
        &h.root(
            "POST",
            &format!("/v1/realms/admin/users/{u}/lifecycle/verify"),
            None,
        ),
        StatusCode::OK,
    );
    ok(
        &h.root(
            "PUT",
            &format!("/v1/realms/admin/users/{u}/password"),
            Some(json!({"password": "clerk passphrase 1"})),
        ),
        StatusCode::NO_CONTENT,
    );
    let clerk = h.token("admin", "clerk", "clerk passphrase 1");
    let r = h.call(
        "POST",
        "/v1/realms",
        Some(&clerk),
        Some(json!({"name": "nope"})),
    );
    problem(&r, StatusCode::FORBIDDEN);
    problem(
        &h.call("GET", "/v1/realms", Some(&clerk), None),
        StatusCode::FORBIDDEN,
    );
    // Nothing was created.
    problem(
        &h.root("GET", "/v1/realms/nope", None),
        StatusCode::NOT_FOUND,
    );

    // A realm administrator manages exactly the realms listed on them.
    for name in ["acme", "globex"] {
        ok(
            &h.root("POST", "/v1/realms", Some(json!({"name": name}))),
            StatusCode::CREATED,
        );
    }
    ok(
        &h.root(
            "PUT",
            &format!("/v1/realms/admin/users/{u}/roles/realm-admin"),
            None,
        ),
        StatusCode::OK,
    );
    // The realms they manage are an attribute of the admin schema's User.
    let r = h.root(
        "PATCH",
        &format!("/v1/realms/admin/users/{u}"),
        Some(json!({"managed_realms": ["acme"]})),
    );
    ok(&r, StatusCode::OK);
    let clerk = h.token("admin", "clerk", "clerk passphrase 1");
    ok(
        &h.call("GET", "/v1/realms/acme/users", Some(&clerk), None),
        StatusCode::OK,
    );
    ok(
        &h.call(
            "POST",
            "/v1/realms/acme/users",
            Some(&clerk),
            Some(json!({"email": "x@acme.io"})),
        ),
        StatusCode::CREATED,
    );
    problem(
        &h.call("GET", "/v1/realms/globex/users", Some(&clerk), None),
        StatusCode::FORBIDDEN,
    );
    problem(
        &h.call(
            "POST",
            "/v1/realms/globex/users",
            Some(&clerk),
            Some(json!({"email": "x@globex.io"})),
        ),
        StatusCode::FORBIDDEN,
    );
    problem(
        &h.call(
            "POST",
            "/v1/realms",
            Some(&clerk),
            Some(json!({"name": "new"})),
        ),
        StatusCode::FORBIDDEN,
    );

    // Suspending the clerk revokes their token at once.
    ok(
        &h.root(
            "POST",
            &format!("/v1/realms/admin/users/{u}/lifecycle/suspend"),
            None,
        ),
        StatusCode::OK,
    );
    problem(
        &h.call("GET", "/v1/realms/acme/users", Some(&clerk), None),
        StatusCode::UNAUTHORIZED,
    );
}

#[test]
fn realms_are_isolated() {
    let h = Harness::new();
    for name in ["acme", "globex"] {
        ok(
            &h.root("POST", "/v1/realms", Some(json!({"name": name}))),
            StatusCode::CREATED,
        );
    }
    let alice = ok(
        &h.root(
            "POST",
            "/v1/realms/acme/users",
            Some(json!({"email": "alice@acme.io"})),
        ),
        StatusCode::CREATED,
    )["id"]
        .as_str()
        .unwrap()
        .to_owned();
    ok(
        &h.root("POST", "/v1/realms/acme/groups", Some(json!({"id": "eng"}))),
        StatusCode::CREATED,
    );
    // The same email is free in the other realm: nothing is shared.
    ok(
        &h.root(
            "POST",
            "/v1/realms/globex/users",
            Some(json!({"email": "alice@acme.io"})),
        ),
        StatusCode::CREATED,
    );
    // acme's user, group and policies cannot be reached through globex.
    problem(
        &h.root("GET", &format!("/v1/realms/globex/users/{alice}"), None),
        StatusCode::NOT_FOUND,
    );
    problem(
        &h.root(
            "POST",
            &format!("/v1/realms/globex/users/{alice}/lifecycle/suspend"),
            None,
        ),
        StatusCode::NOT_FOUND,
    );
    problem(
        &h.root("GET", "/v1/realms/globex/groups/eng", None),
        StatusCode::NOT_FOUND,
    );
    problem(
        &h.root(
            "PUT",
            &format!("/v1/realms/globex/users/{alice}/groups/eng"),
            None,
        ),
        StatusCode::NOT_FOUND,
    );
    let page = ok(
        &h.root("GET", "/v1/realms/globex/users", None),
        StatusCode::OK,
    )
    .clone();
    assert!(
        page["users"]
            .as_array()
            .unwrap()
            .iter()
            .all(|u| u["id"] != alice.as_str())
    );
    // Keys and bundles are per realm too.
    let ka = ok(&h.root("GET", "/v1/realms/acme/keys", None), StatusCode::OK)[0]["kid"].clone();
    let kg = ok(
        &h.root("GET", "/v1/realms/globex/keys", None),
        StatusCode::OK,
    )[0]["kid"]
        .clone();
    assert_ne!(ka, kg);
    let sa = ok(
        &h.root("GET", "/v1/realms/acme/bundle", None),
        StatusCode::OK,
    )
    .clone();
    let sg = ok(
        &h.root("GET", "/v1/realms/globex/bundle", None),
        StatusCode::OK,
    )
    .clone();
    assert_ne!(sa["bundle_kid"], sg["bundle_kid"]);
    // A token of one realm is no admin token, and not one of another realm.
    let id = alice.clone();
    ok(
        &h.root(
            "POST",
            &format!("/v1/realms/acme/users/{id}/lifecycle/verify"),
            None,
        ),
        StatusCode::OK,
    );
    ok(
        &h.root(
            "PUT",
            &format!("/v1/realms/acme/users/{id}/password"),
            Some(json!({"password": "alice passphrase 1"})),
        ),
        StatusCode::NO_CONTENT,
    );
    let alice_token = h.token("acme", "alice@acme.io", "alice passphrase 1");
    problem(
        &h.call("GET", "/v1/realms/acme/users", Some(&alice_token), None),
        StatusCode::UNAUTHORIZED,
    );
    // alice does not exist in globex's login.
    problem(
        &h.call(
            "POST",
            "/realms/globex/login",
            None,
            Some(json!({"username": "alice@acme.io", "password": "alice passphrase 1"})),
        ),
        StatusCode::UNAUTHORIZED,
    );
    // A deleted realm is gone from every endpoint.
    ok(&h.root("DELETE", "/v1/realms/globex", None), StatusCode::OK);
    problem(
        &h.root("GET", "/v1/realms/globex", None),
        StatusCode::NOT_FOUND,
    );
    problem(
        &h.root("GET", "/v1/realms/globex/users", None),
        StatusCode::NOT_FOUND,
    );
    problem(
        &h.call("GET", "/realms/globex/.well-known/jwks.json", None, None),
        StatusCode::NOT_FOUND,
    );
    let listed = ok(&h.root("GET", "/v1/realms", None), StatusCode::OK).clone();
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["name"] != "globex")
    );
    let all = ok(
        &h.root("GET", "/v1/realms?include_deleted=true", None),
        StatusCode::OK,
    )
    .clone();
    assert!(
        all.as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "globex")
    );
}

#[test]
fn realms_resource() {
    let h = Harness::new();
    let r = ok(
        &h.root(
            "POST",
            "/v1/realms",
            Some(json!({"name": "acme", "display_name": "Acme"})),
        ),
        StatusCode::CREATED,
    )
    .clone();
    assert_eq!(r["issuer"], "https://cp.example/realms/acme");
    problem(
        &h.root("POST", "/v1/realms", Some(json!({"name": "acme"}))),
        StatusCode::CONFLICT,
    );
    problem(
        &h.root("POST", "/v1/realms", Some(json!({"name": "Bad Name"}))),
        StatusCode::BAD_REQUEST,
    );
    problem(
        &h.root("POST", "/v1/realms", Some(json!({"name": "x", "bogus": 1}))),
        StatusCode::BAD_REQUEST,
    );
    let bad_schema = h.root(
        "POST",
        "/v1/realms",
        Some(json!({"name": "y", "schema": "entity User {"})),
    );
    assert!(bad_schema.status.is_client_error(), "{}", bad_schema.json);
    ok(
        &h.root("POST", "/v1/realms", Some(json!({"name": "y"}))),
        StatusCode::CREATED,
    );
    let r = h.raw(
        "POST",
        "/v1/realms",
        Some(&h.root),
        Body::from("{\"name\":"),
        "application/json",
    );
    let p = problem(&r, StatusCode::BAD_REQUEST);
    assert!(p["detail"].as_str().unwrap().contains("line 1"), "{p}");
    ok(&h.root("GET", "/v1/realms/acme", None), StatusCode::OK);
    problem(
        &h.root("GET", "/v1/realms/missing", None),
        StatusCode::NOT_FOUND,
    );
    problem(
        &h.root("DELETE", "/v1/realms/missing", None),
        StatusCode::NOT_FOUND,
    );
    problem(
        &h.root("GET", "/v1/no/such/route", None),
        StatusCode::NOT_FOUND,
    );
}

#[test]
fn users_resource_lifecycle_search_and_credentials() {
    let h = Harness::new();
    ok(
        &h.root("POST", "/v1/realms", Some(json!({"name": "acme"}))),
        StatusCode::CREATED,
    );
    let u = ok(
        &h.root("POST", "/v1/realms/acme/users", Some(json!({"email": "Alice@Acme.io", "username": "alice", "attrs": {"department": "eng"}}))),
        StatusCode::CREATED,
    )
    .clone();
    let id = u["id"].as_str().unwrap().to_owned();
    assert_eq!(u["state"], "Created");
    // Email unique per realm, case-insensitive; bad email; bad attrs.
    problem(
        &h.root(
            "POST",
            "/v1/realms/acme/users",
            Some(json!({"email": "alice@ACME.io"})),
        ),
        StatusCode::CONFLICT,
    );
    problem(
        &h.root(
            "POST",
            "/v1/realms/acme/users",
            Some(json!({"email": "not-an-email"})),
        ),
        StatusCode::BAD_REQUEST,
    );
    let p = problem(
        &h.root(
            "POST",
            "/v1/realms/acme/users",
            Some(json!({"email": "b@acme.io", "attrs": {"level": "high"}})),
        ),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .clone();
    assert!(!p["diagnostics"].as_array().unwrap().is_empty(), "{p}");
    // Get, update attributes (validated), remove one with null.
    assert_eq!(
        ok(
            &h.root("GET", &format!("/v1/realms/acme/users/{id}"), None),
            StatusCode::OK
        )["email"],
        "Alice@Acme.io"
    );
    let u = ok(
        &h.root(
            "PATCH",
            &format!("/v1/realms/acme/users/{id}"),
            Some(json!({"level": 3})),
        ),
        StatusCode::OK,
    )
    .clone();
    assert_eq!(u["attrs"], json!({"department": "eng", "level": 3}));
    problem(
        &h.root(
            "PATCH",
            &format!("/v1/realms/acme/users/{id}"),
            Some(json!({"level": "x"})),
        ),
        StatusCode::UNPROCESSABLE_ENTITY,
    );
    problem(
        &h.root(
            "PATCH",
            &format!("/v1/realms/acme/users/{id}"),
            Some(json!({"state": "Active"})),
        ),
        StatusCode::UNPROCESSABLE_ENTITY,
    );
    let u = ok(
        &h.root(
            "PATCH",
            &format!("/v1/realms/acme/users/{id}"),
            Some(json!({"level": null})),
        ),
        StatusCode::OK,
    )
    .clone();
    assert_eq!(u["attrs"], json!({"department": "eng"}));
    problem(
        &h.root("GET", "/v1/realms/acme/users/nobody", None),
        StatusCode::NOT_FOUND,
    );

    // Lifecycle: legal moves, illegal ones refused with nothing changed.
    let life = |action: &str| {
        h.root(
            "POST",
            &format!("/v1/realms/acme/users/{id}/lifecycle/{action}"),
            None,
        )
    };
    problem(&life("resume"), StatusCode::CONFLICT);
    problem(&life("teleport"), StatusCode::NOT_FOUND);
    assert_eq!(ok(&life("verify"), StatusCode::OK)["state"], "Active");
    problem(&life("verify"), StatusCode::CONFLICT);
    assert_eq!(
        h.block(h.cp.service.user(OP, "acme", &id)).unwrap().state,
        pdp_core::UserState::Active
    );
    let s = ok(&life("suspend"), StatusCode::OK).clone();
    assert_eq!(s["state"], "Suspended");
    assert!(s["tokens_valid_after"].as_i64().unwrap() > 0);
    assert_eq!(ok(&life("resume"), StatusCode::OK)["state"], "Active");
    ok(&life("sign_out_everywhere"), StatusCode::OK);
    assert_eq!(ok(&life("delete"), StatusCode::OK)["state"], "Deleted");
    assert_eq!(ok(&life("restore"), StatusCode::OK)["state"], "Active");

    // Passwords: rules enforced; a set password logs in; TOTP enrolment.
    let pw = |p: &str| {
        h.root(
            "PUT",
            &format!("/v1/realms/acme/users/{id}/password"),
            Some(json!({"password": p})),
        )
    };
    problem(&pw("short"), StatusCode::UNPROCESSABLE_ENTITY);
    problem(&pw("password123"), StatusCode::UNPROCESSABLE_ENTITY);
    ok(&pw("alice passphrase 1"), StatusCode::NO_CONTENT);
    let t = h.call(
        "POST",
        "/realms/acme/login",
        None,
        Some(json!({"username": "alice", "password": "alice passphrase 1"})),
    );
    assert!(ok(&t, StatusCode::OK)["id_token"].is_string());
    let e = ok(
        &h.root(
            "POST",
            &format!("/v1/realms/acme/users/{id}/mfa/totp"),
            None,
        ),
        StatusCode::CREATED,
    )
    .clone();
    let secret = data_encoding::BASE32_NOPAD
        .decode(e["secret"].as_str().unwrap().as_bytes())
        .unwrap();
    problem(
        &h.root(
            "POST",
            &format!("/v1/realms/acme/users/{id}/mfa/totp/confirm"),
            Some(json!({"code": "abc"})),
        ),
        StatusCode::BAD_REQUEST,
    );
    let now = h.cp.service.now();
    let code = control_plane::backend::local_identity::totp::code_at(&secret, now);
    let valid: Vec<String> = [-30, 0, 30]
        .iter()
        .map(|d| control_plane::backend::local_identity::totp::code_at(&secret, now + d))
        .collect();
    let wrong_code = ["000000", "111111", "222222", "333333"]
        .into_iter()
        .find(|c| !valid.iter().any(|v| v == c))
        .unwrap();
    ok(
        &h.root(
            "POST",
            &format!("/v1/realms/acme/users/{id}/mfa/totp/confirm"),
            Some(json!({"code": code})),
        ),
        StatusCode::NO_CONTENT,
    );
    let c = h.call(
        "POST",
        "/realms/acme/login",
        None,
        Some(json!({"username": "alice", "password": "alice passphrase 1"})),
    );
    let c = ok(&c, StatusCode::OK).clone();
    assert_eq!(c["challenge"], "SOFTWARE_TOKEN_MFA");
    let r = h.call(
        "POST",
        "/realms/acme/login/challenge",
        None,
        Some(json!({"session": c["session"], "code": wrong_code})),
    );
    assert!(matches!(r.status, StatusCode::UNAUTHORIZED), "{}", r.json);
    ok(
        &h.root(
            "DELETE",
            &format!("/v1/realms/acme/users/{id}/mfa/totp"),
            None,
        ),
        StatusCode::NO_CONTENT,
    );

    // Search: prefixes, state, and pages that follow `next`.
    for i in 0..7 {
        ok(
            &h.root(
                "POST",
                "/v1/realms/acme/users",
                Some(json!({"email": format!("p{i}@acme.io")})),
            ),
            StatusCode::CREATED,
        );
    }
    let mut seen = Vec::new();
    let mut path = "/v1/realms/acme/users?email_prefix=p&limit=3".to_owned();
    loop {
        let page = ok(&h.root("GET", &path, None), StatusCode::OK).clone();
        for u in page["users"].as_array().unwrap() {
            seen.push(u["email"].as_str().unwrap().to_owned());
        }
        match page["next"].as_str() {
            Some(next) => {
                path = format!("/v1/realms/acme/users?email_prefix=p&limit=3&cursor={next}")
            }
            None => break,
        }
    }
    seen.sort();
    assert_eq!(
        seen,
        (0..7).map(|i| format!("p{i}@acme.io")).collect::<Vec<_>>()
    );
    let active = ok(
        &h.root("GET", "/v1/realms/acme/users?state=Active", None),
        StatusCode::OK,
    )
    .clone();
    assert_eq!(active["users"].as_array().unwrap().len(), 1);
    problem(
        &h.root("GET", "/v1/realms/acme/users?limit=lots", None),
        StatusCode::BAD_REQUEST,
    );
    problem(
        &h.root("GET", "/v1/realms/acme/users?state=Sleeping", None),
        StatusCode::BAD_REQUEST,
    );
    problem(
        &h.root("GET", "/v1/realms/acme/users?cursor=garbage", None),
        StatusCode::BAD_REQUEST,
    );

    // Bulk import, all or nothing, with line numbers.
    let lines = "{\"email\":\"i1@acme.io\",\"state\":\"Active\"}\n{\"email\":\"i2@acme.io\",\"state\":\"Nope\"}\n";
    let r = h.raw(
        "POST",
        "/v1/realms/acme/users/import",
        Some(&h.root),
        Body::from(lines),
        "application/x-ndjson",
    );
    let p = problem(&r, StatusCode::UNPROCESSABLE_ENTITY).clone();
    assert_eq!(p["diagnostics"][0]["line"], 2, "{p}");
    let none = ok(
        &h.root("GET", "/v1/realms/acme/users?email_prefix=i1", None),
        StatusCode::OK,
    )
    .clone();
    assert!(
        none["users"].as_array().unwrap().is_empty(),
        "import was not all-or-nothing: {none}"
    );
    let csv = "email,state,attr:department\ni1@acme.io,Active,eng\n";
    let r = h.raw(
        "POST",
        "/v1/realms/acme/users/import",
        Some(&h.root),
        Body::from(csv),
        "text/csv",
    );
    assert_eq!(ok(&r, StatusCode::OK)["users"], 1);
}

/// A request body that never ends (nor sends a byte).
struct Endless;

impl hyper::body::Body for Endless {
    type Data = axum::body::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        std::task::Poll::Pending
    }
}

#[test]
fn an_admin_call_is_refused_before_its_body_is_read() {
    // An import body is up to 256 MiB: a caller who may not import is
    // answered without a byte of it being read (a handler that read
    // first would wait here forever).
    let h = Harness::new();
    ok(
        &h.root("POST", "/v1/realms", Some(json!({"name": "acme"}))),
        StatusCode::CREATED,
    );
    for (token, path) in [
        (None, "/v1/realms/acme/users/import"),
        (Some("not-a-token"), "/v1/realms/acme/users/import"),
        // Every admin endpoint: the caller is authenticated before the
        // (1 MiB) body is read.
        (None, "/v1/realms"),
        (Some("not-a-token"), "/v1/realms/acme/users"),
    ] {
        let mut req = Request::builder()
            .method("POST")
            .uri(path)
            .header(header::CONTENT_TYPE, "application/x-ndjson");
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let req = req.body(Body::new(Endless)).unwrap();
        let started = std::time::Instant::now();
        let app = h.app.clone();
        let resp = h
            .block(async move {
                tokio::time::timeout(std::time::Duration::from_secs(30), app.oneshot(req)).await
            })
            .expect("the import waited for its body before checking the caller")
            .unwrap();
        println!("refused in {:?}", started.elapsed());
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{path}");
    }
}

#[test]
fn groups_roles_and_memberships() {
    let h = Harness::new();
    ok(
        &h.root("POST", "/v1/realms", Some(json!({"name": "acme"}))),
        StatusCode::CREATED,
    );
    let id = ok(
        &h.root(
            "POST",
            "/v1/realms/acme/users",
            Some(json!({"email": "a@acme.io"})),
        ),
        StatusCode::CREATED,
    )["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for g in ["eng", "staff", "all"] {
        ok(
            &h.root("POST", "/v1/realms/acme/groups", Some(json!({"id": g}))),
            StatusCode::CREATED,
        );
    }
    problem(
        &h.root("POST", "/v1/realms/acme/groups", Some(json!({"id": "eng"}))),
        StatusCode::CONFLICT,
    );
    problem(
        &h.root(
            "POST",
            "/v1/realms/acme/groups",
            Some(json!({"id": "bad id!"})),
        ),
        StatusCode::BAD_REQUEST,
    );
    ok(
        &h.root(
            "POST",
            "/v1/realms/acme/roles",
            Some(json!({"id": "reader", "description": "reads"})),
        ),
        StatusCode::CREATED,
    );
    problem(
        &h.root("POST", "/v1/realms/acme/teams", Some(json!({"id": "x"}))),
        StatusCode::NOT_FOUND,
    );
    assert_eq!(
        ok(
            &h.root("GET", "/v1/realms/acme/groups", None),
            StatusCode::OK
        )
        .as_array()
        .unwrap()
        .len(),
        3
    );
    assert_eq!(
        ok(
            &h.root("GET", "/v1/realms/acme/roles/reader", None),
            StatusCode::OK
        )["description"],
        "reads"
    );
    let n = ok(
        &h.root(
            "PATCH",
            "/v1/realms/acme/roles/reader",
            Some(json!({"description": "reads documents"})),
        ),
        StatusCode::OK,
    )
    .clone();
    assert_eq!(n["description"], "reads documents");
    problem(
        &h.root(
            "PATCH",
            "/v1/realms/acme/groups/ghost",
            Some(json!({"description": "x"})),
        ),
        StatusCode::NOT_FOUND,
    );
    problem(
        &h.root(
            "PATCH",
            "/v1/realms/acme/groups/eng",
            Some(json!({"name": "x"})),
        ),
        StatusCode::BAD_REQUEST,
    );
    // Nesting, and cycles refused.
    ok(
        &h.root("PUT", "/v1/realms/acme/groups/eng/parents/staff", None),
        StatusCode::NO_CONTENT,
    );
    ok(
        &h.root("PUT", "/v1/realms/acme/groups/staff/parents/all", None),
        StatusCode::NO_CONTENT,
    );
    problem(
        &h.root("PUT", "/v1/realms/acme/groups/all/parents/eng", None),
        StatusCode::CONFLICT,
    );
    problem(
        &h.root("PUT", "/v1/realms/acme/groups/eng/parents/eng", None),
        StatusCode::CONFLICT,
    );
    problem(
        &h.root("PUT", "/v1/realms/acme/groups/eng/parents/ghost", None),
        StatusCode::NOT_FOUND,
    );
    ok(
        &h.root("PUT", "/v1/realms/acme/groups/staff/roles/reader", None),
        StatusCode::NO_CONTENT,
    );
    // Memberships and assignments.
    let u = ok(
        &h.root(
            "PUT",
            &format!("/v1/realms/acme/users/{id}/groups/eng"),
            None,
        ),
        StatusCode::OK,
    )
    .clone();
    assert_eq!(u["groups"], json!(["eng"]));
    let u = ok(
        &h.root(
            "PUT",
            &format!("/v1/realms/acme/users/{id}/roles/reader"),
            None,
        ),
        StatusCode::OK,
    )
    .clone();
    assert_eq!(u["roles"], json!(["reader"]));
    problem(
        &h.root(
            "PUT",
            &format!("/v1/realms/acme/users/{id}/groups/ghost"),
            None,
        ),
        StatusCode::NOT_FOUND,
    );
    assert_eq!(
        ok(
            &h.root("GET", "/v1/realms/acme/groups/eng/members", None),
            StatusCode::OK
        ),
        &json!([id])
    );
    ok(
        &h.root(
            "DELETE",
            &format!("/v1/realms/acme/users/{id}/roles/reader"),
            None,
        ),
        StatusCode::OK,
    );
    ok(
        &h.root("DELETE", "/v1/realms/acme/groups/staff/roles/reader", None),
        StatusCode::NO_CONTENT,
    );
    ok(
        &h.root("DELETE", "/v1/realms/acme/groups/eng/parents/staff", None),
        StatusCode::NO_CONTENT,
    );
    // Deleting a group drops its memberships.
    ok(
        &h.root("DELETE", "/v1/realms/acme/groups/eng", None),
        StatusCode::NO_CONTENT,
    );
    assert_eq!(
        h.block(h.cp.service.user(OP, "acme", &id)).unwrap().groups,
        Vec::<String>::new()
    );
    problem(
        &h.root("DELETE", "/v1/realms/acme/groups/eng", None),
        StatusCode::NOT_FOUND,
    );
    ok(
        &h.root("DELETE", "/v1/realms/acme/roles/reader", None),
        StatusCode::NO_CONTENT,
    );
}

#[test]
fn policies_schema_entities_keys_and_bundles() {
    let h = Harness::new();
    ok(
        &h.root("POST", "/v1/realms", Some(json!({"name": "acme"}))),
        StatusCode::CREATED,
    );
    let good = "permit (principal, action == Action::\"viewProfile\", resource) when { principal == resource };";
    ok(
        &h.root(
            "PUT",
            "/v1/realms/acme/policies/self-view",
            Some(json!({"body": good})),
        ),
        StatusCode::OK,
    );
    // Invalid against the schema: 422 with Cedar's diagnostics, nothing stored.
    let bad = "permit (principal, action == Action::\"viewProfile\", resource) when { principal.nickname == \"x\" };";
    let p = problem(
        &h.root(
            "PUT",
            "/v1/realms/acme/policies/bad",
            Some(json!({"body": bad})),
        ),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .clone();
    assert!(!p["diagnostics"].as_array().unwrap().is_empty(), "{p}");
    problem(
        &h.root("GET", "/v1/realms/acme/policies/bad", None),
        StatusCode::NOT_FOUND,
    );
    problem(
        &h.root(
            "PUT",
            "/v1/realms/acme/policies/bad",
            Some(json!({"body": "permit (principal"})),
        ),
        StatusCode::UNPROCESSABLE_ENTITY,
    );
    // Update in place; list; get.
    ok(
        &h.root(
            "PUT",
            "/v1/realms/acme/policies/self-view",
            Some(json!({"body": good, "description": "own profile"})),
        ),
        StatusCode::OK,
    );
    assert_eq!(
        ok(
            &h.root("GET", "/v1/realms/acme/policies/self-view", None),
            StatusCode::OK
        )["description"],
        "own profile"
    );
    assert!(
        ok(
            &h.root("GET", "/v1/realms/acme/policies", None),
            StatusCode::OK
        )
        .as_array()
        .unwrap()
        .len()
            >= 2
    );
    // Templates and links.
    let tpl = "permit (principal == ?principal, action == Action::\"readDocument\", resource in ?resource);";
    ok(
        &h.root(
            "PUT",
            "/v1/realms/acme/policies/reader-of",
            Some(json!({"body": tpl})),
        ),
        StatusCode::OK,
    );
    ok(
        &h.root(
            "PUT",
            "/v1/realms/acme/entities",
            Some(json!([
                {"uid": {"type": "Folder", "id": "specs"}, "attrs": {}, "parents": []}
            ])),
        ),
        StatusCode::NO_CONTENT,
    );
    problem(
        &h.root(
            "PUT",
            "/v1/realms/acme/entities",
            Some(json!([{"uid": {"type": "Planet", "id": "x"}, "attrs": {}, "parents": []}])),
        ),
        StatusCode::UNPROCESSABLE_ENTITY,
    );
    let uid = ok(
        &h.root(
            "POST",
            "/v1/realms/acme/users",
            Some(json!({"email": "a@acme.io"})),
        ),
        StatusCode::CREATED,
    )["id"]
        .clone();
    ok(&h.root("POST", "/v1/realms/acme/links", Some(json!({
        "id": "a-reads-specs", "template_id": "reader-of",
        "values": {"?principal": {"type": "User", "id": uid}, "?resource": {"type": "Folder", "id": "specs"}}
    }))), StatusCode::CREATED);
    problem(
        &h.root(
            "POST",
            "/v1/realms/acme/links",
            Some(json!({
                "id": "l2", "template_id": "self-view", "values": {}
            })),
        ),
        StatusCode::NOT_FOUND,
    );
    assert_eq!(
        ok(
            &h.root("GET", "/v1/realms/acme/links", None),
            StatusCode::OK
        )
        .as_array()
        .unwrap()
        .len(),
        1
    );
    problem(
        &h.root("DELETE", "/v1/realms/acme/policies/reader-of", None),
        StatusCode::CONFLICT,
    );
    ok(
        &h.root("DELETE", "/v1/realms/acme/links/a-reads-specs", None),
        StatusCode::NO_CONTENT,
    );
    ok(
        &h.root("DELETE", "/v1/realms/acme/policies/reader-of", None),
        StatusCode::NO_CONTENT,
    );
    problem(
        &h.root("DELETE", "/v1/realms/acme/policies/reader-of", None),
        StatusCode::NOT_FOUND,
    );

    // Schema: versioned; a change that breaks a policy is refused.
    let v1 = ok(
        &h.root("GET", "/v1/realms/acme/schema", None),
        StatusCode::OK,
    )
    .clone();
    assert_eq!(v1["version"], 1);
    let text = v1["text"].as_str().unwrap();
    let no_profile = text.replace("action viewProfile, editProfile", "action editProfile");
    problem(
        &h.root(
            "PUT",
            "/v1/realms/acme/schema",
            Some(json!({"text": no_profile})),
        ),
        StatusCode::UNPROCESSABLE_ENTITY,
    );
    let more = format!("{text}\nentity Printer;\n");
    assert_eq!(
        ok(
            &h.root("PUT", "/v1/realms/acme/schema", Some(json!({"text": more}))),
            StatusCode::OK
        )["version"],
        2
    );
    assert_eq!(
        ok(
            &h.root("GET", "/v1/realms/acme/schema?version=1", None),
            StatusCode::OK
        )["text"],
        v1["text"]
    );
    problem(
        &h.root("GET", "/v1/realms/acme/schema?version=9", None),
        StatusCode::NOT_FOUND,
    );

    // Keys: rotate (ES256), the JWKS carries both.
    let k = ok(
        &h.root(
            "POST",
            "/v1/realms/acme/keys",
            Some(json!({"alg": "ES256"})),
        ),
        StatusCode::CREATED,
    )
    .clone();
    assert_eq!(k["status"], "active");
    problem(
        &h.root(
            "POST",
            "/v1/realms/acme/keys",
            Some(json!({"alg": "HS256"})),
        ),
        StatusCode::BAD_REQUEST,
    );
    let jwks = ok(
        &h.call("GET", "/realms/acme/.well-known/jwks.json", None, None),
        StatusCode::OK,
    )
    .clone();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);
    let oidc = ok(
        &h.call(
            "GET",
            "/realms/acme/.well-known/openid-configuration",
            None,
            None,
        ),
        StatusCode::OK,
    )
    .clone();
    assert_eq!(oidc["issuer"], "https://cp.example/realms/acme");

    // Bundles: every change above was auto-published; status says so.
    let s = ok(
        &h.root("GET", "/v1/realms/acme/bundle", None),
        StatusCode::OK,
    )
    .clone();
    assert_eq!(s["pending_changes"], 0);
    let head = s["head_revision"].as_u64().unwrap();
    assert!(head > 5, "{s}");
    let p = ok(
        &h.root("POST", "/v1/realms/acme/bundle/publish", None),
        StatusCode::OK,
    )
    .clone();
    assert_eq!(p["kind"], "none");
    let c = ok(
        &h.root("POST", "/v1/realms/acme/bundle/compact", None),
        StatusCode::OK,
    )
    .clone();
    assert_eq!(
        (c["kind"].as_str(), c["revision"].as_u64()),
        (Some("snapshot"), Some(head))
    );
    let snap = h.block(h.cp.published("acme")).unwrap();
    assert_eq!(snap.revision(), head);
    assert!(
        snap.policy_set()
            .policies()
            .any(|p| p.id().to_string() == "self-view")
    );
}

#[test]
fn a_password_reset_through_the_api() {
    let h = Harness::new();
    ok(
        &h.root("POST", "/v1/realms", Some(json!({"name": "acme"}))),
        StatusCode::CREATED,
    );
    let id = ok(
        &h.root(
            "POST",
            "/v1/realms/acme/users",
            Some(json!({"email": "ann@acme.io", "username": "ann"})),
        ),
        StatusCode::CREATED,
    )["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/v1/realms/acme/users/{id}/password-reset");
    // A Created user gets no reset code; only administrators issue them.
    problem(&h.root("POST", &path, None), StatusCode::CONFLICT);
    ok(
        &h.root(
            "POST",
            &format!("/v1/realms/acme/users/{id}/lifecycle/verify"),
            None,
        ),
        StatusCode::OK,
    );
    problem(&h.call("POST", &path, None, None), StatusCode::UNAUTHORIZED);
    let code = ok(&h.root("POST", &path, None), StatusCode::CREATED)["code"]
        .as_str()
        .unwrap()
        .to_owned();
    let confirm = |code: &str, pw: &str| {
        h.call(
            "POST",
            "/realms/acme/password-reset",
            None,
            Some(json!({"username": "ann", "code": code, "new_password": pw})),
        )
    };
    problem(
        &confirm("not-the-code", "ann passphrase 2"),
        StatusCode::UNAUTHORIZED,
    );
    problem(
        &h.call(
            "POST",
            "/realms/acme/password-reset",
            None,
            Some(json!({"username": "ann", "code": code})),
        ),
        StatusCode::BAD_REQUEST,
    );
    let r = confirm(&code, "ann passphrase 2");
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.json);
    h.token("acme", "ann", "ann passphrase 2");
    problem(
        &confirm(&code, "ann passphrase 3"),
        StatusCode::UNAUTHORIZED,
    );
}

#[test]
fn login_endpoint_refusals_and_throttling() {
    let h = Harness::new();
    let login = |pw: &str| {
        h.call(
            "POST",
            "/realms/admin/login",
            None,
            Some(json!({"username": "root", "password": pw})),
        )
    };
    problem(&login("wrong"), StatusCode::UNAUTHORIZED);
    problem(
        &h.call(
            "POST",
            "/realms/admin/login",
            None,
            Some(json!({"username": "root"})),
        ),
        StatusCode::BAD_REQUEST,
    );
    problem(
        &h.call(
            "POST",
            "/realms/nowhere/login",
            None,
            Some(json!({"username": "root", "password": "x"})),
        ),
        StatusCode::NOT_FOUND,
    );
    problem(
        &h.call(
            "POST",
            "/realms/admin/login/challenge",
            None,
            Some(json!({"session": "forged", "code": "123456"})),
        ),
        StatusCode::UNAUTHORIZED,
    );
    // Five more failures are free; the sixth locks the name for 1 s, the
    // seventh for 2 s. Keep failing (waiting out a lock that is about to
    // end, since a slow machine can take a second per attempt) until a lock
    // has at least a second left, so the right password is refused too.
    let mut attempts = 0;
    loop {
        attempts += 1;
        assert!(attempts <= 12, "never throttled");
        let r = login("wrong");
        if r.status != StatusCode::TOO_MANY_REQUESTS {
            problem(&r, StatusCode::UNAUTHORIZED);
            continue;
        }
        let left = problem(&r, StatusCode::TOO_MANY_REQUESTS)["retry_after"]
            .as_u64()
            .unwrap();
        assert!(attempts > 5, "throttled after {attempts} failures");
        assert_eq!(
            r.headers[header::RETRY_AFTER].to_str().unwrap(),
            left.to_string()
        );
        if left >= 2 {
            break;
        }
        // Time passes by the service's clock, not the wall's.
        h.cp.clock.advance(1);
    }
    let r = login(ROOT_PW);
    let p = problem(&r, StatusCode::TOO_MANY_REQUESTS);
    assert!(p["retry_after"].as_u64().unwrap() >= 1);
    assert!(r.headers.contains_key(header::RETRY_AFTER));
}

#[test]
fn a_suspension_through_the_api_is_published_and_enforced() {
    let h = Harness::new();
    ok(
        &h.root("POST", "/v1/realms", Some(json!({"name": "acme"}))),
        StatusCode::CREATED,
    );
    let id = ok(
        &h.root(
            "POST",
            "/v1/realms/acme/users",
            Some(json!({"email": "a@acme.io"})),
        ),
        StatusCode::CREATED,
    )["id"]
        .as_str()
        .unwrap()
        .to_owned();
    ok(
        &h.root(
            "POST",
            &format!("/v1/realms/acme/users/{id}/lifecycle/verify"),
            None,
        ),
        StatusCode::OK,
    );
    let good = "permit (principal, action == Action::\"viewProfile\", resource) when { principal == resource };";
    ok(
        &h.root(
            "PUT",
            "/v1/realms/acme/policies/self-view",
            Some(json!({"body": good})),
        ),
        StatusCode::OK,
    );
    let req = pdp_core::Request {
        principal: pdp_core::EntityRef::new("User", &id),
        action: pdp_core::EntityRef::new("Action", "viewProfile"),
        resource: pdp_core::EntityRef::new("User", &id),
        context: json!({}),
        entities: vec![],
    };
    let snap = h.block(h.cp.published("acme")).unwrap();
    assert_eq!(
        snap.is_authorized(&req).unwrap().decision,
        pdp_core::Decision::Allow
    );
    ok(
        &h.root(
            "POST",
            &format!("/v1/realms/acme/users/{id}/lifecycle/suspend"),
            None,
        ),
        StatusCode::OK,
    );
    let snap = h.block(h.cp.published("acme")).unwrap();
    let a = snap.is_authorized(&req).unwrap();
    assert_eq!(a.decision, pdp_core::Decision::Deny);
    assert_eq!(
        a.reason,
        pdp_core::decision::Reason::UserState(pdp_core::UserState::Suspended)
    );
}

#[test]
fn openapi_and_docs_are_served() {
    let h = Harness::new();
    let r = h.call("GET", "/openapi.json", None, None);
    let doc = ok(&r, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.1.0");
    // Every operation the router serves is in the document.
    for path in [
        "/v1/realms/{realm}/users/{id}/lifecycle/{action}",
        "/v1/realms/{realm}/bundle/publish",
        "/realms/{realm}/login",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} missing");
    }
    let r = h.call("GET", "/docs", None, None);
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.content_type.starts_with("text/html"));
    assert!(r.json.as_str().unwrap().contains("openapi.json"));
}

/// An identity provider that notes, when told of a lifecycle action, the
/// user's state in the store at that moment.
struct Recording {
    inner: LocalIdentity,
    store: std::sync::Mutex<Option<Arc<dyn control_plane::ports::ObjectStore>>>,
    ring: std::sync::Mutex<Option<pdp_core::Keyring>>,
    seen: std::sync::Mutex<Vec<(LifecycleAction, Option<pdp_core::UserState>)>>,
    /// Answered (once) by `token_settings_changed`: keys rotated outside.
    keys_rotated: std::sync::atomic::AtomicBool,
}

use control_plane::domain::realm::{NewRealm, Realm};
use control_plane::domain::user::User;
use control_plane::ports::BoxFuture;
use control_plane::ports::identity::{
    Alg, ChallengeAnswer, KeyInfo, LoginResult, Provisioned, TotpEnrollment, VerificationCode,
};
use pdp_core::LifecycleAction;

type R<T> = control_plane::Result<T>;

impl IdentityProvider for Recording {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn provision<'a>(&'a self, new: &'a NewRealm) -> BoxFuture<'a, R<Provisioned>> {
        self.inner.provision(new)
    }
    fn token_settings<'a>(
        &'a self,
        realm: &'a Realm,
    ) -> BoxFuture<'a, R<Option<pdp_core::IdentitySettings>>> {
        self.inner.token_settings(realm)
    }
    fn set_password<'a>(
        &'a self,
        r: &'a str,
        u: &'a str,
        p: &'a str,
        t: bool,
        n: i64,
    ) -> BoxFuture<'a, R<()>> {
        self.inner.set_password(r, u, p, t, n)
    }
    fn login<'a>(
        &'a self,
        r: &'a str,
        u: &'a str,
        p: &'a str,
        c: Option<&'a str>,
        n: i64,
    ) -> BoxFuture<'a, R<LoginResult>> {
        self.inner.login(r, u, p, c, n)
    }
    fn respond<'a>(
        &'a self,
        r: &'a str,
        a: &'a ChallengeAnswer,
        c: Option<&'a str>,
        n: i64,
    ) -> BoxFuture<'a, R<LoginResult>> {
        self.inner.respond(r, a, c, n)
    }
    fn start_verification<'a>(
        &'a self,
        r: &'a str,
        u: &'a str,
        n: i64,
    ) -> BoxFuture<'a, R<VerificationCode>> {
        self.inner.start_verification(r, u, n)
    }
    fn totp_enroll<'a>(&'a self, r: &'a str, u: &'a str) -> BoxFuture<'a, R<TotpEnrollment>> {
        self.inner.totp_enroll(r, u)
    }
    fn totp_confirm<'a>(
        &'a self,
        r: &'a str,
        u: &'a str,
        c: &'a str,
        n: i64,
    ) -> BoxFuture<'a, R<()>> {
        self.inner.totp_confirm(r, u, c, n)
    }
    fn totp_remove<'a>(&'a self, r: &'a str, u: &'a str) -> BoxFuture<'a, R<()>> {
        self.inner.totp_remove(r, u)
    }
    fn signing_keys<'a>(&'a self, r: &'a str) -> BoxFuture<'a, R<Vec<KeyInfo>>> {
        self.inner.signing_keys(r)
    }
    fn rotate_signing_key<'a>(&'a self, r: &'a str, a: Alg, n: i64) -> BoxFuture<'a, R<KeyInfo>> {
        self.inner.rotate_signing_key(r, a, n)
    }
    fn openid_configuration<'a>(&'a self, r: &'a Realm) -> BoxFuture<'a, R<Value>> {
        self.inner.openid_configuration(r)
    }
    fn token_settings_changed<'a>(&'a self, _: &'a Realm) -> BoxFuture<'a, R<bool>> {
        Box::pin(async move {
            Ok(self
                .keys_rotated
                .swap(false, std::sync::atomic::Ordering::SeqCst))
        })
    }
    fn lifecycle_applied<'a>(
        &'a self,
        realm: &'a str,
        user: &'a User,
        action: LifecycleAction,
    ) -> BoxFuture<'a, R<()>> {
        Box::pin(async move {
            // Not recording yet (the admin realm's bootstrap).
            let (Some(ring), Some(store)) = (
                self.ring.lock().unwrap().clone(),
                self.store.lock().unwrap().clone(),
            ) else {
                return Ok(());
            };
            let snap =
                control_plane::service::publish::load_published(store.as_ref(), "", realm, &ring)
                    .await?;
            let published = snap.user(&user.id).map(|u| u.state());
            self.seen.lock().unwrap().push((action, published));
            Ok(())
        })
    }
}

#[test]
fn the_identity_provider_follows_revocations_after_publishing_and_enablings_before() {
    let recorder: Arc<std::sync::Mutex<Option<Arc<Recording>>>> = Arc::default();
    let slot = recorder.clone();
    let h = Harness::with_identity(move |repo| {
        let r = Arc::new(Recording {
            inner: LocalIdentity::new(repo, support::ISSUER_BASE, 3600),
            store: std::sync::Mutex::new(None),
            ring: std::sync::Mutex::new(None),
            seen: std::sync::Mutex::new(Vec::new()),
            keys_rotated: std::sync::atomic::AtomicBool::new(false),
        });
        *slot.lock().unwrap() = Some(r.clone());
        r
    });
    let rec = recorder.lock().unwrap().clone().unwrap();
    ok(
        &h.root("POST", "/v1/realms", Some(json!({"name": "acme"}))),
        StatusCode::CREATED,
    );
    // The recorder reads the harness's store with the realm's key.
    *rec.store.lock().unwrap() = Some(h.cp.store.clone());
    *rec.ring.lock().unwrap() = Some(h.block(h.cp.keyring("acme")));
    let id = ok(
        &h.root(
            "POST",
            "/v1/realms/acme/users",
            Some(json!({"email": "a@acme.io"})),
        ),
        StatusCode::CREATED,
    )["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for action in ["verify", "suspend", "resume", "deactivate"] {
        ok(
            &h.root(
                "POST",
                &format!("/v1/realms/acme/users/{id}/lifecycle/{action}"),
                None,
            ),
            StatusCode::OK,
        );
    }
    use pdp_core::UserState::*;
    assert_eq!(
        *rec.seen.lock().unwrap(),
        vec![
            // Enabling: the provider is told while the store still has the old state.
            (LifecycleAction::Verify, Some(Created)),
            // Revoking: the store already denies when the provider is told.
            (LifecycleAction::Suspend, Some(Suspended)),
            (LifecycleAction::Resume, Some(Suspended)),
            (LifecycleAction::Deactivate, Some(Deactivated)),
        ]
    );
}

#[test]
fn keys_the_provider_rotated_by_itself_are_published_by_the_resigning_pass() {
    let recorder: Arc<std::sync::Mutex<Option<Arc<Recording>>>> = Arc::default();
    let slot = recorder.clone();
    let h = Harness::with_identity(move |repo| {
        let r = Arc::new(Recording {
            inner: LocalIdentity::new(repo, support::ISSUER_BASE, 3600),
            store: std::sync::Mutex::new(None),
            ring: std::sync::Mutex::new(None),
            seen: std::sync::Mutex::new(Vec::new()),
            keys_rotated: std::sync::atomic::AtomicBool::new(false),
        });
        *slot.lock().unwrap() = Some(r.clone());
        r
    });
    let rec = recorder.lock().unwrap().clone().unwrap();
    ok(
        &h.root("POST", "/v1/realms", Some(json!({"name": "acme"}))),
        StatusCode::CREATED,
    );
    let revision = |h: &Harness| h.block(h.cp.published("acme")).unwrap().revision();
    let before = revision(&h);
    // Nothing rotated: the pass publishes nothing.
    h.block(h.cp.service.resign_heads()).unwrap();
    assert_eq!(revision(&h), before);
    // Rotated at the provider: the pass publishes the realm again.
    rec.keys_rotated
        .store(true, std::sync::atomic::Ordering::SeqCst);
    h.block(h.cp.service.resign_heads()).unwrap();
    assert_eq!(revision(&h), before + 1);
    h.block(h.cp.service.resign_heads()).unwrap();
    assert_eq!(revision(&h), before + 1);
}
