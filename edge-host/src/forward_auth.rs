//! `/v1/forward-auth`: the check a reverse proxy makes before it forwards a
//! request (nginx `auth_request`, Traefik `forwardAuth`, Envoy `ext_authz`
//! in HTTP mode).
//!
//! The original request is read from the proxy's headers —
//! `X-Forwarded-Method`/`X-Forwarded-Uri` (Traefik, and what the nginx
//! example sets), else `X-Original-Method`/`X-Original-URI` — or, for Envoy,
//! from this request itself (method, and the path after `/v1/forward-auth`).
//! The bundle's route table turns method + path into an action and a
//! resource; the bearer token names the principal. Answers:
//!
//! - 200: allowed; `X-Gatehouse-User` carries the token's `sub`.
//! - 401 + `WWW-Authenticate: Bearer`: no token, or the token was refused
//!   (bad signature, expired, revoked, unknown user, ...).
//! - 403: a valid token, but denied (no route, a policy, the user's state).
//! - 503: no bundle, or a stale one.
//!
//! Every answer carries `X-Gatehouse-Reason`; nothing else is ever allowed.

use crate::api::{AppState, outcome, token_decision, unverified_claims};
use crate::metrics::Outcome;
use crate::realm::now;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use pdp_core::decision::{Decision, Reason, TokenRequest};
use serde_json::{Map, Value, json};
use std::sync::Arc;
use std::time::Instant;

/// Path of the endpoint; Envoy appends the original path to it.
pub const PREFIX: &str = "/v1/forward-auth";

/// Any method on `/v1/forward-auth` and below it.
pub async fn forward_auth(
    State(s): State<Arc<AppState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let started = Instant::now();
    let (o, resp) = check(&s, &method, &uri, &headers);
    s.metrics.record(o, started.elapsed());
    resp
}

fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// The proxied request's method and URI.
fn original(method: &Method, uri: &Uri, headers: &HeaderMap) -> (String, String) {
    let m = header_str(headers, "x-forwarded-method")
        .or_else(|| header_str(headers, "x-original-method"))
        .map_or_else(|| method.as_str().to_owned(), str::to_owned);
    let u = header_str(headers, "x-forwarded-uri")
        .or_else(|| header_str(headers, "x-original-uri"))
        .map(str::to_owned)
        .unwrap_or_else(|| {
            let path = uri.path().strip_prefix(PREFIX).unwrap_or("");
            let path = if path.is_empty() { "/" } else { path };
            match uri.query() {
                Some(q) => format!("{path}?{q}"),
                None => path.to_owned(),
            }
        });
    (m, u)
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = header_str(headers, "authorization")?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// The client address the proxy reports (`X-Real-IP`, else the first
/// `X-Forwarded-For` entry), if it is an IP address.
fn client_ip(headers: &HeaderMap) -> Option<std::net::IpAddr> {
    header_str(headers, "x-real-ip")
        .or_else(|| {
            header_str(headers, "x-forwarded-for").and_then(|v| v.split(',').next().map(str::trim))
        })
        .and_then(|v| v.parse().ok())
}

fn answer(status: StatusCode, reason: &str, revision: Option<u64>, user: Option<&str>) -> Response {
    let mut resp = (
        status,
        axum::Json(json!({
            "decision": if status == StatusCode::OK { "Allow" } else { "Deny" },
            "reason": reason,
            "revision": revision,
        })),
    )
        .into_response();
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(reason) {
        h.insert("x-gatehouse-reason", v);
    }
    if let Some(v) = revision.and_then(|r| HeaderValue::from_str(&r.to_string()).ok()) {
        h.insert("x-gatehouse-revision", v);
    }
    if let Some(v) = user.and_then(|u| HeaderValue::from_str(u).ok()) {
        h.insert("x-gatehouse-user", v);
    }
    if status == StatusCode::UNAUTHORIZED {
        let challenge = if reason == "no_token" {
            "Bearer realm=\"gatehouse\"".to_owned()
        } else {
            "Bearer realm=\"gatehouse\", error=\"invalid_token\"".to_owned()
        };
        if let Ok(v) = HeaderValue::from_str(&challenge) {
            h.insert(header::WWW_AUTHENTICATE, v);
        }
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn check(s: &AppState, method: &Method, uri: &Uri, headers: &HeaderMap) -> (Outcome, Response) {
    let deny = |status, reason: &str, rev| (Outcome::Deny, answer(status, reason, rev, None));
    let Some(token) = bearer(headers) else {
        return deny(StatusCode::UNAUTHORIZED, "no_token", None);
    };
    // Decoded once: the issuer picks the realm; `sub` is reported only
    // after the token has been verified.
    let claims = unverified_claims(token);
    let claim = |name: &str| {
        claims
            .as_ref()
            .and_then(|c| c.get(name))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let issuer = claim("iss");
    let Ok(realm) = s
        .realms
        .pick(None, issuer.as_deref())
        .or_else(|_| s.realms.pick(None, None))
    else {
        return deny(StatusCode::UNAUTHORIZED, "token:wrong_issuer", None);
    };
    let Some(snap) = realm.snapshot() else {
        return (
            Outcome::Failure,
            answer(StatusCode::SERVICE_UNAVAILABLE, "no_bundle", None, None),
        );
    };
    let rev = Some(snap.revision());
    if s.realms.is_stale(realm, &snap, now()) {
        return deny(StatusCode::SERVICE_UNAVAILABLE, "stale_bundle", rev);
    }
    let (m, u) = original(method, uri, headers);
    let Some(route) = snap.routes().and_then(|r| r.resolve(&m, &u)) else {
        return deny(StatusCode::FORBIDDEN, "no_route", rev);
    };
    let mut context = Map::new();
    if snap.accepts_context(&route.action, "now") {
        context.insert("now".into(), json!(now()));
    }
    if let Some(ip) =
        client_ip(headers).filter(|_| snap.accepts_context(&route.action, "source_ip"))
    {
        context.insert(
            "source_ip".into(),
            json!({"__extn": {"fn": "ip", "arg": ip.to_string()}}),
        );
    }
    let req = TokenRequest {
        token: token.to_owned(),
        action: route.action,
        resource: route.resource,
        context: Value::Object(context),
        entities: Vec::new(),
    };
    let a = match token_decision(s, realm, &snap, &req) {
        Ok(a) => a,
        // A route that yields an invalid request (say, an action the schema
        // does not know) is a configuration error: deny.
        Err(p) => {
            tracing::warn!(route = %u, error = ?p.detail, "forward-auth route gives an invalid request");
            return (
                Outcome::Failure,
                answer(StatusCode::FORBIDDEN, "invalid_route", rev, None),
            );
        }
    };
    let reason = a.reason.to_string();
    let status = match (&a.decision, &a.reason) {
        (Decision::Allow, _) => StatusCode::OK,
        (_, Reason::Token(_)) => StatusCode::UNAUTHORIZED,
        (_, Reason::StaleBundle) => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::FORBIDDEN,
    };
    let user = (status == StatusCode::OK).then(|| claim("sub")).flatten();
    (outcome(&a), answer(status, &reason, rev, user.as_deref()))
}
