//! HTTP handlers. Each parses its body itself (so every bad input is a
//! problem+json with a typed kind), picks the realm, and asks the realm's
//! current snapshot; the snapshot is held for the whole request, so a hot
//! swap never changes an answer half-way.

use crate::authzen::{self, Semantic};
use crate::decision_log::{DecisionLog, Event, Protocol, Verdict};
use crate::metrics::{Metrics, Outcome};
use crate::problem::Problem;
use crate::realm::{Realm, Realms, now};
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use pdp_core::Snapshot;
use pdp_core::decision::{
    Answer, BatchRequest, Decision, Reason, Request, RequestError, Tagged, TokenRequest,
};
use serde_json::{Value, json};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Instant;

/// Everything handlers share.
#[derive(Debug)]
pub struct AppState {
    /// The realms served.
    pub realms: Realms,
    /// Counters.
    pub metrics: Metrics,
    /// Verified tokens.
    pub tokens: crate::token_cache::TokenCache,
    /// The service credentials, each bound to a realm.
    pub service_tokens: Vec<crate::config::ServiceCredential>,
    /// Realms whose by-id decisions name the user state to any caller.
    pub user_state_detail: Vec<String>,
    /// The AuthZEN PDP identifier (`policy_decision_point`).
    pub authzen_pdp_url: String,
    /// The proxy whose headers forward-auth reads, and how many hops of
    /// `X-Forwarded-For` it trusts.
    pub forward_auth: crate::forward_auth::Trust,
    /// The demo realm's token key, when this host serves the demo realm
    /// (nothing configured); `None` otherwise, and then no token can be
    /// minted here.
    pub demo: Option<crate::demo::Demo>,
    /// The decision log; `None` when logs are off (the default), and then
    /// no handler does any logging work.
    pub decision_log: Option<crate::decision_log::DecisionLog>,
}

type Shared = State<Arc<AppState>>;

/// Parse a JSON body, taking out the optional `realm` member.
fn parse_body(body: &[u8]) -> Result<(Option<String>, Value), Problem> {
    let mut value: Value = serde_json::from_slice(body)
        .map_err(|e| Problem::bad_request("invalid_json", e.to_string()))?;
    let realm = match value.as_object_mut().and_then(|m| m.remove("realm")) {
        None => None,
        Some(Value::String(s)) => Some(s),
        Some(_) => {
            return Err(Problem::bad_request(
                "invalid_request",
                "realm must be a string",
            ));
        }
    };
    Ok((realm, value))
}

/// The body as `T`, and the `realm` it names. Fast path: the body is
/// exactly a `T`, read straight from the bytes — only for the pdp-core wire
/// types, which refuse unknown fields, so a body with `realm` never takes
/// it. Otherwise through a JSON value, which takes
/// `realm` out and gives the error for anything else.
fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<(Option<String>, T), Problem> {
    if let Ok(t) = serde_json::from_slice::<T>(body) {
        return Ok((None, t));
    }
    let (realm, value) = parse_body(body)?;
    Ok((realm, shape(value)?))
}

fn shape<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, Problem> {
    serde_json::from_value(value).map_err(|e| Problem::bad_request("invalid_json", e.to_string()))
}

fn request_problem(e: &RequestError) -> Problem {
    Problem::bad_request(e.kind(), e.to_string())
}

/// The realm's snapshot, or 503 (fail closed).
fn snapshot(realm: &Realm) -> Result<Arc<Snapshot>, Problem> {
    realm
        .snapshot()
        .ok_or_else(|| Problem::no_bundle(realm.name()))
}

pub(crate) fn outcome(a: &Answer) -> Outcome {
    if a.decision == Decision::Allow {
        Outcome::Allow
    } else {
        Outcome::Deny
    }
}

/// Log a request that was not answered, when logs are on.
fn log_failure<T>(
    log: Option<&DecisionLog>,
    r: &Result<T, Problem>,
    protocol: Protocol,
    endpoint: &'static str,
    headers: &axum::http::HeaderMap,
    started: Instant,
) {
    if let (Some(log), Err(p)) = (log, r) {
        log.offer(
            &Event::new(protocol, endpoint, Verdict::Error(p.kind_name()), started)
                .headers(headers),
        );
    }
}

fn finish<T: serde::Serialize>(
    metrics: &Metrics,
    started: Instant,
    r: Result<(Outcome, T), Problem>,
) -> Response {
    match r {
        Ok((o, body)) => {
            metrics.record(o, started.elapsed());
            Json(body).into_response()
        }
        Err(p) => {
            metrics.record(Outcome::Failure, started.elapsed());
            p.into_response()
        }
    }
}

/// What this PDP does beyond the endpoints, for the metadata's
/// `capabilities` (URNs in Gatehouse's own namespace: none of these is an
/// IANA-registered AuthZEN capability, and clients ignore names they do
/// not know).
pub const AUTHZEN_CAPABILITIES: [&str; 4] = [
    // Every `evaluations_semantic` of the spec.
    "urn:gatehouse:authzen:evaluations-semantics",
    // Searches page with `page.limit` / `page.token`.
    "urn:gatehouse:authzen:search-pagination",
    // A realm's PEP type names map onto its Cedar types (`authzen.json`).
    "urn:gatehouse:authzen:type-map",
    // Subject searches return only Active directory users.
    "urn:gatehouse:authzen:lifecycle-gating",
];

/// `GET /.well-known/authzen-configuration`: the AuthZEN metadata of this
/// PDP (the evaluation endpoints it serves) under its configured
/// identifier. Never built from the request's `Host`: a client (or a cache
/// in between) could make the document name endpoints elsewhere.
pub async fn authzen_configuration(State(s): Shared) -> Response {
    let base = s.authzen_pdp_url.as_str();
    Json(json!({
        "policy_decision_point": base,
        "access_evaluation_endpoint": format!("{base}/access/v1/evaluation"),
        "access_evaluations_endpoint": format!("{base}/access/v1/evaluations"),
        "search_subject_endpoint": format!("{base}/access/v1/search/subject"),
        "search_resource_endpoint": format!("{base}/access/v1/search/resource"),
        "search_action_endpoint": format!("{base}/access/v1/search/action"),
        "capabilities": AUTHZEN_CAPABILITIES,
    }))
    .into_response()
}

/// Whether by-id answers in `realm` may say why a user was denied before
/// any policy ran: the realm is configured so, or the caller presents the
/// realm's service credential.
fn user_detail(s: &AppState, headers: &axum::http::HeaderMap, realm: &Realm) -> bool {
    s.user_state_detail.iter().any(|r| r == realm.name())
        || service_realms(s, headers).is_ok_and(|r| r.iter().any(|r| r == realm.name()))
}

/// A by-id answer denied for the principal's directory record (absent, or
/// not Active) reads as no permit unless [`user_detail`] allows the
/// detail; only such an answer pays for that check.
fn redact(s: &AppState, headers: &axum::http::HeaderMap, realm: &Realm, a: &mut Answer) {
    if matches!(a.reason, Reason::UnknownUser | Reason::UserState(_))
        && !user_detail(s, headers, realm)
    {
        a.reason = Reason::NoPermit;
    }
}

/// `POST /v1/is_authorized`
pub async fn is_authorized(
    State(s): Shared,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Response {
    const AT: &str = "/v1/is_authorized";
    let started = Instant::now();
    let log = s.decision_log.as_ref();
    let r = (|| {
        let (realm, req): (_, Request) = parse(&body)?;
        let realm = s.realms.pick(realm.as_deref(), None)?;
        let snap = snapshot(realm)?;
        let mut a = decide_fresh(&s.realms, realm, &snap, &req)?;
        if let Some(log) = log {
            log.offer(
                &Event::new(Protocol::V1, AT, Verdict::Answer(&a), started)
                    .headers(&headers)
                    .realm(realm.name(), Some(&snap))
                    .request(&req),
            );
        }
        redact(&s, &headers, realm, &mut a);
        Ok((outcome(&a), Tagged::Success(a)))
    })();
    log_failure(log, &r, Protocol::V1, AT, &headers, started);
    finish(&s.metrics, started, r)
}

/// `POST /v1/batch_is_authorized`
pub async fn batch_is_authorized(
    State(s): Shared,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Response {
    const AT: &str = "/v1/batch_is_authorized";
    let started = Instant::now();
    let log = s.decision_log.as_ref();
    let r = (|| {
        let (realm, batch): (_, BatchRequest) = parse(&body)?;
        let realm = s.realms.pick(realm.as_deref(), None)?;
        let snap = snapshot(realm)?;
        if s.realms.is_stale(realm, &snap, now()) {
            let results: Vec<_> = batch
                .requests
                .iter()
                .map(|_| Tagged::Success(Answer::deny(Reason::StaleBundle, snap.revision())))
                .collect();
            if let Some(log) = log {
                for (req, a) in batch.requests.iter().zip(&results) {
                    if let Tagged::Success(a) = a {
                        log.offer(
                            &Event::new(Protocol::V1, AT, Verdict::Answer(a), started)
                                .headers(&headers)
                                .realm(realm.name(), Some(&snap))
                                .request(req),
                        );
                    }
                }
            }
            return Ok((
                Outcome::Deny,
                Tagged::Success(pdp_core::BatchAnswer { results }),
            ));
        }
        let mut answers = snap
            .batch_is_authorized(&batch)
            .map_err(|e| request_problem(&e))?;
        if let Some(log) = log {
            for (req, a) in batch.requests.iter().zip(&answers.results) {
                let verdict = match a {
                    Tagged::Success(a) => Verdict::Answer(a),
                    Tagged::Failure { errors } => Verdict::Error(
                        errors
                            .first()
                            .map_or("invalid_request", |e| e.kind.as_str()),
                    ),
                };
                log.offer(
                    &Event::new(Protocol::V1, AT, verdict, started)
                        .headers(&headers)
                        .realm(realm.name(), Some(&snap))
                        .request(req),
                );
            }
        }
        for r in &mut answers.results {
            if let Tagged::Success(a) = r {
                redact(&s, &headers, realm, a);
            }
        }
        let any_allow = answers
            .results
            .iter()
            .any(|r| matches!(r, Tagged::Success(a) if a.decision == Decision::Allow));
        Ok((
            if any_allow {
                Outcome::Allow
            } else {
                Outcome::Deny
            },
            Tagged::Success(answers),
        ))
    })();
    log_failure(log, &r, Protocol::V1, AT, &headers, started);
    finish(&s.metrics, started, r)
}

/// The unverified `iss` of a JWT, used only to route it to a realm (the
/// realm then verifies everything).
fn token_issuer(token: &str) -> Option<String> {
    unverified_claim(token, "iss")
}

/// A string claim read WITHOUT verifying the token: only for routing (which
/// realm's keys verify it) or for a token that has already been verified.
pub(crate) fn unverified_claim(token: &str, name: &str) -> Option<String> {
    unverified_claims(token)?
        .get(name)?
        .as_str()
        .map(str::to_owned)
}

/// Every claim of `token`, read WITHOUT verifying it (see [`unverified_claim`]).
pub(crate) fn unverified_claims(token: &str) -> Option<Value> {
    use base64::Engine as _;
    let token = token.trim().strip_prefix("Bearer ").unwrap_or(token.trim());
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// `POST /v1/is_authorized_with_token`
pub async fn is_authorized_with_token(
    State(s): Shared,
    request: axum::extract::Request,
) -> Response {
    const AT: &str = "/v1/is_authorized_with_token";
    let started = Instant::now();
    let (headers, body) = match headers_and_body(request).await {
        Ok(hb) => hb,
        Err(rejected) => return rejected,
    };
    let log = s.decision_log.as_ref();
    let r = (|| {
        let (realm, req): (_, TokenRequest) = parse(&body)?;
        let issuer = token_issuer(&req.token);
        let realm = match (realm.as_deref(), issuer.as_deref()) {
            (None, Some(iss)) => s
                .realms
                .pick(None, Some(iss))
                .or_else(|_| s.realms.pick(None, None))?,
            (explicit, _) => s.realms.pick(explicit, None)?,
        };
        let snap = snapshot(realm)?;
        let a = token_decision(&s, realm, &snap, &req)?;
        if let Some(log) = log {
            log.offer(
                &Event::new(Protocol::V1, AT, Verdict::Answer(&a), started)
                    .headers(&headers)
                    .realm(realm.name(), Some(&snap))
                    .token_request(&req),
            );
        }
        Ok((outcome(&a), Tagged::Success(a)))
    })();
    log_failure(log, &r, Protocol::V1, AT, &headers, started);
    finish(&s.metrics, started, r)
}

/// The headers and the body of `request`: the headers moved out (the
/// `HeaderMap` extractor would copy them, an allocation per request), the
/// body read under the same limits as the `Bytes` extractor.
async fn headers_and_body(
    request: axum::extract::Request,
) -> Result<(axum::http::HeaderMap, Bytes), Response> {
    use axum::extract::FromRequest as _;
    let (mut parts, body) = request.into_parts();
    let headers = std::mem::take(&mut parts.headers);
    // The body's length limit is checked from the stream.
    let request = axum::extract::Request::from_parts(parts, body);
    match Bytes::from_request(request, &()).await {
        Ok(bytes) => Ok((headers, bytes)),
        Err(rejection) => Err(rejection.into_response()),
    }
}

/// A token decision through the verified-token cache. Only signature and
/// claim checks are cached; `decide_verified` always re-checks the user.
pub(crate) fn token_decision(
    state: &AppState,
    realm: &Realm,
    snap: &Snapshot,
    req: &TokenRequest,
) -> Result<Answer, Problem> {
    let t = now();
    if state.realms.is_stale(realm, snap, t) {
        return Ok(Answer::deny(Reason::StaleBundle, snap.revision()));
    }
    let cache = &state.tokens;
    let Some(epoch) = snap.verifier_epoch() else {
        return snap
            .is_authorized_with_token(req, t)
            .map_err(|e| request_problem(&e));
    };
    let token = req.token.trim();
    let token = token.strip_prefix("Bearer ").unwrap_or(token);
    let verified = match cache.get(token, epoch, t) {
        Some(v) => v,
        None => match snap.verify_token(token, t) {
            Ok(v) => {
                cache.put(token, epoch, v.clone(), t);
                v
            }
            Err(why) => return Ok(Answer::deny(Reason::Token(why), snap.revision())),
        },
    };
    snap.decide_verified(&verified, req)
        .map_err(|e| request_problem(&e))
}

/// `POST /access/v1/evaluation`
pub async fn authzen_evaluation(
    State(s): Shared,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Response {
    const AT: &str = "/access/v1/evaluation";
    let started = Instant::now();
    let log = s.decision_log.as_ref();
    let r = (|| {
        let (realm, value) = parse_body(&body)?;
        let eval: authzen::Evaluation = shape(value)?;
        let realm = s.realms.pick(realm.as_deref(), None)?;
        let snap = snapshot(realm)?;
        let req = eval
            .to_request(snap.authzen_types())
            .map_err(|m| Problem::bad_request("invalid_request", m))?;
        let mut a = decide_fresh(&s.realms, realm, &snap, &req)?;
        if let Some(log) = log {
            log.offer(
                &Event::new(Protocol::Authzen, AT, Verdict::Answer(&a), started)
                    .headers(&headers)
                    .realm(realm.name(), Some(&snap))
                    .request(&req),
            );
        }
        redact(&s, &headers, realm, &mut a);
        Ok((outcome(&a), authzen::Response::from(&a)))
    })();
    log_failure(log, &r, Protocol::Authzen, AT, &headers, started);
    finish(&s.metrics, started, r)
}

/// `POST /access/v1/evaluations`
pub async fn authzen_evaluations(
    State(s): Shared,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Response {
    const AT: &str = "/access/v1/evaluations";
    let started = Instant::now();
    let log = s.decision_log.as_ref();
    let r = (|| {
        let (realm, value) = parse_body(&body)?;
        let batch: authzen::Evaluations = shape(value)?;
        let semantic = match &batch.options {
            Some(o) => o
                .semantic()
                .map_err(|m| Problem::bad_request("invalid_request", m))?,
            None => Semantic::ExecuteAll,
        };
        let realm = s.realms.pick(realm.as_deref(), None)?;
        let snap = snapshot(realm)?;
        let items = batch
            .evaluations
            .clone()
            .unwrap_or_else(|| vec![authzen::Evaluation::default()]);
        // The cap of `/v1/batch_is_authorized`: one request body is not
        // an unbounded amount of work on a runtime worker.
        if items.len() > pdp_core::decision::MAX_BATCH {
            return Err(Problem::bad_request(
                "invalid_request",
                format!(
                    "evaluations holds at most {} items, not {}",
                    pdp_core::decision::MAX_BATCH,
                    items.len()
                ),
            ));
        }
        let mut out = Vec::with_capacity(items.len());
        let mut any_allow = false;
        for item in items {
            let req = item
                .or(&batch.defaults)
                .to_request(snap.authzen_types())
                .map_err(|m| Problem::bad_request("invalid_request", m))?;
            let mut a = decide_fresh(&s.realms, realm, &snap, &req)?;
            if let Some(log) = log {
                log.offer(
                    &Event::new(Protocol::Authzen, AT, Verdict::Answer(&a), started)
                        .headers(&headers)
                        .realm(realm.name(), Some(&snap))
                        .request(&req),
                );
            }
            redact(&s, &headers, realm, &mut a);
            let allowed = a.decision == Decision::Allow;
            any_allow |= allowed;
            out.push(authzen::Response::from(&a));
            match (semantic, allowed) {
                (Semantic::DenyOnFirstDeny, false) | (Semantic::PermitOnFirstPermit, true) => break,
                _ => {}
            }
        }
        Ok((
            if any_allow {
                Outcome::Allow
            } else {
                Outcome::Deny
            },
            json!({ "evaluations": out }),
        ))
    })();
    log_failure(log, &r, Protocol::Authzen, AT, &headers, started);
    finish(&s.metrics, started, r)
}

/// `POST /access/v1/search/subject`
pub async fn authzen_search_subject(
    state: Shared,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Response {
    authzen_search(authzen::SearchKind::Subject, state, headers, body).await
}

/// `POST /access/v1/search/resource`
pub async fn authzen_search_resource(
    state: Shared,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Response {
    authzen_search(authzen::SearchKind::Resource, state, headers, body).await
}

/// `POST /access/v1/search/action`
pub async fn authzen_search_action(
    state: Shared,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Response {
    authzen_search(authzen::SearchKind::Action, state, headers, body).await
}

/// An AuthZEN search. A page token is answered from the revision it was
/// made on while that is served, or for [`crate::realm::SEARCH_GRACE_SECONDS`]
/// after a newer one replaced it; later it is refused (`cursor_expired`).
/// A subject search lists a realm's users: like a by-id decision's
/// reasons, it is open to callers presenting the realm's service
/// credential, or to all where the realm is in `user_state_detail`.
///
/// The search itself runs on a blocking thread: a page may ask about up
/// to [`pdp_core::search::MAX_EVALUATIONS_PER_PAGE`] candidates, far more
/// than a decision, and must not hold up the decisions sharing a runtime
/// worker. If it fails (panics) the answer is 500, counted as a panic.
async fn authzen_search(
    kind: authzen::SearchKind,
    State(s): Shared,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    let prepared = (|| {
        let (realm, value) = parse_body(&body)?;
        let search: authzen::Search = shape(value)?;
        let realm = s.realms.pick(realm.as_deref(), None)?;
        if kind == authzen::SearchKind::Subject
            && !s.user_state_detail.iter().any(|r| r == realm.name())
        {
            let realms = service_realms(&s, &headers)?;
            if !realms.iter().any(|r| r == realm.name()) {
                return Err(Problem::new(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    "Not a credential of this realm",
                    format!(
                        "a subject search of realm {:?} needs its service credential",
                        realm.name()
                    ),
                ));
            }
        }
        let t = now();
        let snap = match search.token().and_then(pdp_core::search::token_revision) {
            Some(revision) => realm.snapshot_for_search(revision, t).ok_or_else(|| {
                Problem::bad_request(
                    "cursor_expired",
                    format!(
                        "the page token was made on revision {revision}, which is no longer served \
                         (a replaced revision answers for {} s): start the search again",
                        crate::realm::SEARCH_GRACE_SECONDS
                    ),
                )
            })?,
            None => snapshot(realm)?,
        };
        if s.realms.is_stale(realm, &snap, t) {
            return Err(Problem::stale_bundle(realm.name(), snap.revision()));
        }
        Ok((search, snap))
    })();
    let r = match prepared {
        Err(p) => Err(p),
        Ok((search, snap)) => {
            match tokio::task::spawn_blocking(move || search.run(kind, &snap)).await {
                Ok(Ok(body)) => {
                    let any = body["results"].as_array().is_some_and(|r| !r.is_empty());
                    Ok((if any { Outcome::Allow } else { Outcome::Deny }, body))
                }
                Ok(Err(authzen::SearchFailure::Invalid(m))) => {
                    Err(Problem::bad_request("invalid_request", m))
                }
                Ok(Err(authzen::SearchFailure::Request(e))) => Err(request_problem(&e)),
                Err(_) => {
                    s.metrics.record_panic();
                    Err(Problem::internal())
                }
            }
        }
    };
    finish(&s.metrics, started, r)
}

/// A by-id decision on a bundle that is not stale.
fn decide_fresh(
    realms: &Realms,
    realm: &Realm,
    snap: &Snapshot,
    req: &Request,
) -> Result<Answer, Problem> {
    if realms.is_stale(realm, snap, now()) {
        return Ok(Answer::deny(Reason::StaleBundle, snap.revision()));
    }
    snap.is_authorized(req).map_err(|e| request_problem(&e))
}

/// `GET /healthz`: the process answers.
pub async fn healthz() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

/// `GET /readyz`: every realm has a bundle, none older than allowed.
pub async fn readyz(State(s): Shared) -> Response {
    let t = now();
    for realm in s.realms.iter() {
        match realm.snapshot() {
            None => return Problem::no_bundle(realm.name()).into_response(),
            Some(snap) if s.realms.is_stale(realm, &snap, t) => {
                return Problem::stale_bundle(realm.name(), snap.revision()).into_response();
            }
            Some(_) => {}
        }
    }
    Json(json!({"status": "ready"})).into_response()
}

/// `GET /v1/status`: what each realm serves.
pub async fn status(State(s): Shared) -> Response {
    let t = now();
    let realms: Vec<Value> = s
        .realms
        .iter()
        .map(|r| match r.snapshot() {
            Some(snap) => json!({
                "realm": r.name(),
                "source": r.source().to_string(),
                "revision": snap.revision(),
                "created_at": snap.manifest().created_at,
                "loaded_at": r.loaded_at(),
                "age_seconds": t.saturating_sub(snap.manifest().created_at),
                "fresh_at": r.fresh_at(&snap),
                "stale": s.realms.is_stale(r, &snap, t),
                "source_error": r.last_error(),
                "signed_by": snap.signed_by(),
                "issuer": snap.issuer(),
                "policies": snap.policy_count(),
                "entities": snap.entity_count(),
                "users": snap.directory().map(|d| d.len()),
                "reload_failures": r.reload_failures(),
            }),
            None => json!({"realm": r.name(), "source": r.source().to_string(), "revision": null, "source_error": r.last_error()}),
        })
        .collect();
    Json(json!({"dev_mode": s.realms.dev(), "max_staleness_seconds": s.realms.max_staleness(), "realms": realms,
        "decision_log": crate::decision_log::status(s.decision_log.as_ref())}))
        .into_response()
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(State(s): Shared) -> Response {
    let mut out = String::with_capacity(4096);
    s.metrics.render(&mut out);
    crate::decision_log::render(s.decision_log.as_ref(), &mut out);
    let (hits, misses) = s.tokens.counts();
    out.push_str("# HELP gatehouse_token_cache_total Verified-token cache lookups.\n");
    out.push_str("# TYPE gatehouse_token_cache_total counter\n");
    let _ = writeln!(out, "gatehouse_token_cache_total{{result=\"hit\"}} {hits}");
    let _ = writeln!(
        out,
        "gatehouse_token_cache_total{{result=\"miss\"}} {misses}"
    );
    let t = now();
    out.push_str("# HELP gatehouse_bundle_revision Revision of the bundle each realm serves.\n");
    out.push_str("# TYPE gatehouse_bundle_revision gauge\n");
    for r in s.realms.iter() {
        if let Some(snap) = r.snapshot() {
            let _ = writeln!(
                out,
                "gatehouse_bundle_revision{{realm=\"{}\"}} {}",
                r.name(),
                snap.revision()
            );
        }
    }
    out.push_str(
        "# HELP gatehouse_bundle_age_seconds Seconds since the served bundle was built.\n",
    );
    out.push_str("# TYPE gatehouse_bundle_age_seconds gauge\n");
    for r in s.realms.iter() {
        if let Some(snap) = r.snapshot() {
            let age = t.saturating_sub(snap.manifest().created_at);
            let _ = writeln!(
                out,
                "gatehouse_bundle_age_seconds{{realm=\"{}\"}} {age}",
                r.name()
            );
        }
    }
    out.push_str("# HELP gatehouse_bundle_reload_failures_total Bundles refused since start.\n");
    out.push_str("# TYPE gatehouse_bundle_reload_failures_total counter\n");
    for r in s.realms.iter() {
        let _ = writeln!(
            out,
            "gatehouse_bundle_reload_failures_total{{realm=\"{}\"}} {}",
            r.name(),
            r.reload_failures()
        );
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

/// Anything else.
pub async fn not_found() -> Response {
    Problem::not_found("no such endpoint").into_response()
}

/// The realms the caller's service credential is for: it must present, as
/// a bearer token, a secret configured for at least one realm (else 401).
fn service_realms(
    state: &AppState,
    headers: &axum::http::HeaderMap,
) -> Result<Vec<String>, Problem> {
    let unauthorized = || {
        Problem::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Service credentials required",
            "present a service bearer token",
        )
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(unauthorized)?;
    let digest = pdp_core::manifest::sha256_hex(presented.trim().as_bytes());
    // Compare every configured digest fully (no early exit on a prefix).
    let mut realms = Vec::new();
    for cred in &state.service_tokens {
        let want = &cred.sha256;
        let same = want.len() == digest.len()
            && want
                .bytes()
                .zip(digest.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        if same {
            realms.push(cred.realm.clone());
        }
    }
    if realms.is_empty() {
        Err(unauthorized())
    } else {
        Ok(realms)
    }
}

/// Decode `application/x-www-form-urlencoded`.
fn form(body: &[u8]) -> Vec<(String, String)> {
    fn decode(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while let Some(&b) = bytes.get(i) {
            match b {
                b'+' => out.push(b' '),
                b'%' => {
                    let hex = bytes
                        .get(i + 1..i + 3)
                        .and_then(|h| std::str::from_utf8(h).ok());
                    match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                        Some(v) => {
                            out.push(v);
                            i += 2;
                        }
                        None => out.push(b'%'),
                    }
                }
                other => out.push(other),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    String::from_utf8_lossy(body)
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

/// `POST /v1/introspect` (RFC 7662): is this token active *now*? Active
/// means it verifies for a realm served here and its user exists, is
/// Active, and was not signed out after it was issued.
pub async fn introspect(State(s): Shared, headers: axum::http::HeaderMap, body: Bytes) -> Response {
    let allowed = match service_realms(&s, &headers) {
        Ok(r) => r,
        Err(p) => return p.into_response(),
    };
    let fields = form(&body);
    let Some(token) = fields
        .iter()
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.clone())
    else {
        return Problem::bad_request("invalid_request", "the token parameter is required")
            .into_response();
    };
    let inactive = || Json(json!({"active": false})).into_response();
    let Some(iss) = token_issuer(&token) else {
        return inactive();
    };
    let Ok(realm) = s.realms.pick(None, Some(&iss)) else {
        return inactive();
    };
    // A token of a realm this credential is not for: nothing said about it.
    if !allowed.iter().any(|r| r == realm.name()) {
        return inactive();
    }
    let Some(snap) = realm.snapshot() else {
        return inactive();
    };
    let t = now();
    if s.realms.is_stale(realm, &snap, t) {
        return inactive();
    }
    let Ok(v) = snap.verify_token(&token, t) else {
        return inactive();
    };
    if let Some(dir) = snap.directory() {
        match dir.get(&v.sub) {
            Some(u)
                if u.state().is_authorizable()
                    && !pdp_core::token::revoked(v.iat, u.tokens_valid_after()) => {}
            _ => return inactive(),
        }
    }
    let mut out = json!({
        "active": true,
        "sub": v.sub,
        "iss": iss,
        "exp": v.exp,
        "iat": v.iat,
        "token_use": if v.token_use == pdp_core::token::TokenUse::Id { "id" } else { "access" },
        "realm": realm.name(),
    });
    for claim in ["client_id", "scope", "username", "cognito:username", "aud"] {
        if let Some(c) = v.claims.get(claim) {
            out[claim] = c.clone();
        }
    }
    if let Some(u) = snap.directory().and_then(|d| d.get(&v.sub)) {
        out["username"] = json!(u.username());
    }
    Json(out).into_response()
}

/// `GET /v1/users/{id}`: the directory record (realm from `?realm=` or the
/// only realm).
pub async fn user(
    State(s): Shared,
    headers: axum::http::HeaderMap,
    axum::extract::Path(id): axum::extract::Path<String>,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Response {
    let allowed = match service_realms(&s, &headers) {
        Ok(r) => r,
        Err(p) => return p.into_response(),
    };
    let realm = match s.realms.pick(q.get("realm").map(String::as_str), None) {
        Ok(r) => r,
        Err(p) => return p.into_response(),
    };
    if !allowed.iter().any(|r| r == realm.name()) {
        return Problem::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "Not this realm",
            format!("the service credential is not for realm {:?}", realm.name()),
        )
        .into_response();
    }
    let Some(snap) = realm.snapshot() else {
        return Problem::no_bundle(realm.name()).into_response();
    };
    match snap.user(&id) {
        Some(u) => {
            let mut record = serde_json::to_value(u.to_record()).unwrap_or_default();
            record["realm"] = json!(realm.name());
            Json(record).into_response()
        }
        None => Problem::not_found(format!("no user {id:?} in realm {:?}", realm.name()))
            .into_response(),
    }
}

fn avp_response(status: StatusCode, body: &Value) -> Response {
    let mut resp = (status, body.to_string()).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/x-amz-json-1.0"),
    );
    resp
}

fn avp_error(status: StatusCode, kind: &str, message: &str) -> Response {
    avp_response(status, &json!({"__type": kind, "message": message}))
}

/// `POST /` with `X-Amz-Target: VerifiedPermissions.<Operation>`: the AVP
/// data-plane operations, for AWS SDK clients pointed here.
pub async fn avp(State(s): Shared, headers: axum::http::HeaderMap, body: Bytes) -> Response {
    use crate::avp::{self as wire, AvpError};
    let started = Instant::now();
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let Some(op) = target.strip_prefix("VerifiedPermissions.") else {
        return avp_error(
            StatusCode::BAD_REQUEST,
            "UnknownOperationException",
            "X-Amz-Target must name a VerifiedPermissions operation",
        );
    };
    let v: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return avp_error(
                StatusCode::BAD_REQUEST,
                "SerializationException",
                &e.to_string(),
            );
        }
    };
    let store = v.get("policyStoreId").and_then(Value::as_str);
    let realm = match s.realms.pick(store, None) {
        Ok(r) => r,
        Err(_) => {
            return avp_error(
                StatusCode::BAD_REQUEST,
                "ResourceNotFoundException",
                "no such policy store here",
            );
        }
    };
    let Some(snap) = realm.snapshot() else {
        return avp_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailableException",
            "no policy bundle is loaded",
        );
    };
    let problem = |p: Problem| AvpError::validation(p.detail.unwrap_or_default());
    let at: &'static str = match op {
        "IsAuthorized" => "VerifiedPermissions.IsAuthorized",
        "IsAuthorizedWithToken" => "VerifiedPermissions.IsAuthorizedWithToken",
        "BatchIsAuthorized" => "VerifiedPermissions.BatchIsAuthorized",
        "BatchIsAuthorizedWithToken" => "VerifiedPermissions.BatchIsAuthorizedWithToken",
        _ => "VerifiedPermissions",
    };
    let log = s.decision_log.as_ref();
    macro_rules! event {
        ($verdict:expr) => {
            Event::new(Protocol::Avp, at, $verdict, started)
                .headers(&headers)
                .realm(realm.name(), Some(&snap))
        };
    }
    let decide = |req: &Request| {
        let mut a = decide_fresh(&s.realms, realm, &snap, req).map_err(problem)?;
        if let Some(log) = log {
            log.offer(&event!(Verdict::Answer(&a)).request(req));
        }
        redact(&s, &headers, realm, &mut a);
        Ok::<_, AvpError>(a)
    };
    let token_decided = |req: &TokenRequest| {
        let a = token_decision(&s, realm, &snap, req).map_err(problem)?;
        if let Some(log) = log {
            log.offer(&event!(Verdict::Answer(&a)).token_request(req));
        }
        Ok::<_, AvpError>(a)
    };
    let one = |item: &Value, shared: &[Value]| -> Result<Request, AvpError> {
        let principal = item
            .get("principal")
            .ok_or_else(|| AvpError::validation("principal is required"))?;
        let mut entities = shared.to_vec();
        entities.extend(wire::entities(item.get("entities"))?);
        Ok(Request {
            principal: wire::entity(principal)?,
            action: wire::action(
                item.get("action")
                    .ok_or_else(|| AvpError::validation("action is required"))?,
            )?,
            resource: wire::entity(
                item.get("resource")
                    .ok_or_else(|| AvpError::validation("resource is required"))?,
            )?,
            context: wire::context(item.get("context"))?,
            entities,
        })
    };
    let token_of = || {
        v.get("identityToken")
            .or_else(|| v.get("accessToken"))
            .and_then(Value::as_str)
            .ok_or_else(|| AvpError::validation("identityToken or accessToken is required"))
    };
    // A token request for `token` from an item's action, resource and
    // context.
    let token_request = |token: &str, item: &Value, entities: Vec<Value>| {
        Ok::<_, AvpError>(TokenRequest {
            token: token.to_owned(),
            action: wire::action(
                item.get("action")
                    .ok_or_else(|| AvpError::validation("action is required"))?,
            )?,
            resource: wire::entity(
                item.get("resource")
                    .ok_or_else(|| AvpError::validation("resource is required"))?,
            )?,
            context: wire::context(item.get("context"))?,
            entities,
        })
    };
    // A batch: 1 to 30 `requests`, each decided by `decide_item` and
    // answered with the request echoed.
    let batch = |decide_item: &mut dyn FnMut(&Value) -> Result<Answer, AvpError>| {
        let items = v
            .get("requests")
            .and_then(Value::as_array)
            .ok_or_else(|| AvpError::validation("requests must be a list"))?;
        if items.is_empty() || items.len() > 30 {
            return Err(AvpError::validation("a batch holds 1 to 30 requests"));
        }
        let mut results = Vec::with_capacity(items.len());
        let mut any_allow = false;
        for item in items {
            let a = decide_item(item)?;
            any_allow |= a.decision == Decision::Allow;
            let mut r = wire::answer(&a);
            r["request"] = item.clone();
            results.push(r);
        }
        let o = if any_allow {
            Outcome::Allow
        } else {
            Outcome::Deny
        };
        Ok::<_, AvpError>((o, results))
    };
    let result: Result<(Outcome, Value), AvpError> = match op {
        "IsAuthorized" => one(&v, &[])
            .and_then(|r| decide(&r))
            .map(|a| (outcome(&a), wire::answer(&a))),
        "IsAuthorizedWithToken" => (|| {
            let token = token_of()?;
            let req = token_request(token, &v, wire::entities(v.get("entities"))?)?;
            let a = token_decided(&req)?;
            let mut body = wire::answer(&a);
            // As AVP does: the principal the token stands for, once the
            // token itself has been accepted.
            let accepted = !matches!(a.reason, Reason::Token(_));
            if let Some(sub) = unverified_claim(token, "sub").filter(|_| accepted) {
                body["principal"] = json!({"entityType": "User", "entityId": sub});
            }
            Ok((outcome(&a), body))
        })(),
        "BatchIsAuthorized" => (|| {
            let shared = wire::entities(v.get("entities"))?;
            let (o, results) = batch(&mut |item| decide(&one(item, &shared)?))?;
            Ok((o, json!({ "results": results })))
        })(),
        "BatchIsAuthorizedWithToken" => (|| {
            // One token (one principal), up to 30 actions on resources.
            let token = token_of()?;
            let shared = wire::entities(v.get("entities"))?;
            let mut accepted = true;
            let (o, results) = batch(&mut |item| {
                let req = token_request(token, item, shared.clone())?;
                let a = token_decided(&req)?;
                accepted &= !matches!(a.reason, Reason::Token(_));
                Ok(a)
            })?;
            let mut body = json!({ "results": results });
            if let Some(sub) = unverified_claim(token, "sub").filter(|_| accepted) {
                body["principal"] = json!({"entityType": "User", "entityId": sub});
            }
            Ok((o, body))
        })(),
        _ => {
            return avp_error(
                StatusCode::BAD_REQUEST,
                "UnknownOperationException",
                &format!("{op} is not served here"),
            );
        }
    };
    match result {
        Ok((o, body)) => {
            s.metrics.record(o, started.elapsed());
            avp_response(StatusCode::OK, &body)
        }
        Err(e) => {
            if let Some(log) = log {
                log.offer(&event!(Verdict::Error(e.kind)));
            }
            s.metrics.record(Outcome::Failure, started.elapsed());
            avp_error(StatusCode::BAD_REQUEST, e.kind, &e.message)
        }
    }
}
