//! `/v1/forward-auth`: the check a reverse proxy makes before it forwards a
//! request (nginx `auth_request`, Traefik `forwardAuth`, Envoy `ext_authz`
//! in HTTP mode).
//!
//! The original request is read from the headers of the proxy the
//! configuration names (`forward_auth_proxy`), and from no other: nginx
//! sets `X-Original-Method`/`X-Original-URI`, Traefik
//! `X-Forwarded-Method`/`X-Forwarded-Uri`, and Envoy sends the original
//! method with the original path after `/v1/forward-auth`. A proxy passes
//! on headers the client sent, so a check that carries the other family's
//! headers is refused (400) instead of read: a client cannot choose what
//! its request is checked as. The client address (`source_ip`) is the
//! `X-Forwarded-For` entry that the configured number of trusted hops puts
//! it at, counted from the right (what the proxies appended), never an
//! entry the client wrote. The bundle's route table turns method + path
//! into an action and a resource; the bearer token names the principal.
//! Answers:
//!
//! - 400: headers of another proxy's family, or the configured family's
//!   missing (`forward_auth:...`).
//! - 200: allowed; `X-Gatehouse-User` carries the token's `sub`.
//! - 401 + `WWW-Authenticate: Bearer`: no token, or the token was refused
//!   (bad signature, expired, revoked, unknown user, ...).
//! - 403: a valid token, but denied (no route, a policy, the user's state).
//! - 503: no bundle, or a stale one; or no proxy configured.
//!
//! Every answer carries `X-Gatehouse-Reason`; nothing else is ever allowed.

use crate::api::{AppState, outcome, token_decision, unverified_claims};
use crate::config::ForwardAuthProxy;
use crate::decision_log::{Event, Protocol, Verdict};
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
    let (o, resp) = check(&s, &method, &uri, &headers, started);
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

/// What forward-auth trusts, from the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trust {
    /// Whose headers carry the original request; `None`: forward-auth is
    /// not set up and refuses every check.
    pub proxy: Option<ForwardAuthProxy>,
    /// Proxies that append to `X-Forwarded-For` before this host.
    pub trusted_hops: usize,
}

/// The header families, as (method, URI) names.
const NGINX: (&str, &str) = ("x-original-method", "x-original-uri");
const TRAEFIK: (&str, &str) = ("x-forwarded-method", "x-forwarded-uri");

/// Why a check's headers do not describe a request this host may check.
#[derive(Debug, PartialEq, Eq)]
enum HeaderError {
    /// It carries a header of a family the configured proxy never sets
    /// (so a client put it there).
    Foreign(&'static str),
    /// The configured proxy's headers are missing.
    Missing(&'static str),
}

/// The proxied request's method and URI, read from `proxy`'s headers only.
fn original(
    proxy: ForwardAuthProxy,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<(String, String), HeaderError> {
    let suffix = uri.path().strip_prefix(PREFIX).unwrap_or("");
    let (own, foreign): ((&str, &str), &[(&str, &str)]) = match proxy {
        ForwardAuthProxy::Nginx => (NGINX, &[TRAEFIK]),
        ForwardAuthProxy::Traefik => (TRAEFIK, &[NGINX]),
        ForwardAuthProxy::Envoy => (("", ""), &[NGINX, TRAEFIK]),
    };
    for (m, u) in foreign {
        for name in [*m, *u] {
            if headers.contains_key(name) {
                return Err(HeaderError::Foreign(name));
            }
        }
    }
    if proxy == ForwardAuthProxy::Envoy {
        let path = if suffix.is_empty() { "/" } else { suffix };
        let u = match uri.query() {
            Some(q) => format!("{path}?{q}"),
            None => path.to_owned(),
        };
        return Ok((method.as_str().to_owned(), u));
    }
    // nginx and Traefik call the endpoint itself; a path below it is
    // Envoy's way of saying what the request was.
    if !suffix.is_empty() {
        return Err(HeaderError::Foreign("path below /v1/forward-auth"));
    }
    let m = header_str(headers, own.0).ok_or(HeaderError::Missing(own.0))?;
    let u = header_str(headers, own.1).ok_or(HeaderError::Missing(own.1))?;
    Ok((m.to_owned(), u.to_owned()))
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = header_str(headers, "authorization")?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// The client address: the `X-Forwarded-For` entry `hops` from the right
/// (each trusted proxy appended the address it was called from; entries
/// further left are whatever the client sent), if it is an IP address.
/// Every `X-Forwarded-For` field counts, in order, as one list.
fn client_ip(headers: &HeaderMap, hops: usize) -> Option<std::net::IpAddr> {
    if hops == 0 {
        return None;
    }
    let mut entries = Vec::new();
    for v in headers.get_all("x-forwarded-for") {
        entries.extend(v.to_str().ok()?.split(',').map(str::trim));
    }
    let at = entries.len().checked_sub(hops)?;
    entries.get(at)?.parse().ok()
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

fn check(
    s: &AppState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    started: Instant,
) -> (Outcome, Response) {
    let log = s.decision_log.as_ref();
    macro_rules! event {
        ($verdict:expr) => {
            Event::new(Protocol::ForwardAuth, PREFIX, $verdict, started).headers(headers)
        };
    }
    let offer = |ev: Event<'_>| {
        if let Some(log) = log {
            log.offer(&ev);
        }
    };
    let deny = |status, reason: &str, rev| (Outcome::Deny, answer(status, reason, rev, None));
    let Some(proxy) = s.forward_auth.proxy else {
        offer(event!(Verdict::Error("forward_auth:no_proxy_configured")));
        return (
            Outcome::Failure,
            answer(
                StatusCode::SERVICE_UNAVAILABLE,
                "forward_auth:no_proxy_configured",
                None,
                None,
            ),
        );
    };
    // Before anything else: which request is being checked.
    let (m, u) = match original(proxy, method, uri, headers) {
        Ok(mu) => mu,
        Err(e) => {
            let reason = match e {
                HeaderError::Foreign(h) => {
                    // Not a warning per request: a client controls how often.
                    tracing::debug!(
                        header = h,
                        ?proxy,
                        "forward-auth check with another proxy's header refused"
                    );
                    "forward_auth:foreign_header"
                }
                HeaderError::Missing(_) => "forward_auth:missing_header",
            };
            offer(event!(Verdict::Deny(reason)));
            return deny(StatusCode::BAD_REQUEST, reason, None);
        }
    };
    let Some(token) = bearer(headers) else {
        offer(event!(Verdict::Deny("no_token")));
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
        offer(event!(Verdict::Deny("token:wrong_issuer")));
        return deny(StatusCode::UNAUTHORIZED, "token:wrong_issuer", None);
    };
    let Some(snap) = realm.snapshot() else {
        offer(event!(Verdict::Error("no_bundle")).realm(realm.name(), None));
        return (
            Outcome::Failure,
            answer(StatusCode::SERVICE_UNAVAILABLE, "no_bundle", None, None),
        );
    };
    let rev = Some(snap.revision());
    if s.realms.is_stale(realm, &snap, now()) {
        offer(event!(Verdict::Deny("stale_bundle")).realm(realm.name(), Some(&snap)));
        return deny(StatusCode::SERVICE_UNAVAILABLE, "stale_bundle", rev);
    }
    let Some(route) = snap.routes().and_then(|r| r.resolve(&m, &u)) else {
        offer(event!(Verdict::Deny("no_route")).realm(realm.name(), Some(&snap)));
        return deny(StatusCode::FORBIDDEN, "no_route", rev);
    };
    let mut context = Map::new();
    if snap.accepts_context(&route.action, "now") {
        context.insert("now".into(), json!(now()));
    }
    if let Some(ip) = client_ip(headers, s.forward_auth.trusted_hops)
        .filter(|_| snap.accepts_context(&route.action, "source_ip"))
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
            offer(
                event!(Verdict::Error("invalid_route"))
                    .realm(realm.name(), Some(&snap))
                    .token_request(&req),
            );
            tracing::warn!(route = %u, error = ?p.detail, "forward-auth route gives an invalid request");
            return (
                Outcome::Failure,
                answer(StatusCode::FORBIDDEN, "invalid_route", rev, None),
            );
        }
    };
    offer(
        event!(Verdict::Answer(&a))
            .realm(realm.name(), Some(&snap))
            .token_request(&req),
    );
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
