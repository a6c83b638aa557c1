//! The demo realm, served when nothing else is configured: the reference
//! source directory `policies/`, compiled into the binary and built into a
//! bundle at start. It is part of the program itself, so it is trusted like
//! the program (no signature); bundles from anywhere else must be signed
//! unless the host is in dev mode.
//!
//! Its token key is generated at start (Ed25519) and its private half never
//! leaves this process: `policies/identity.json` carries no key, so no key
//! whose private half is published anywhere (the repository's test keys
//! included) is trusted by the demo. Tokens for its users are minted by
//! [`Demo::token`], printed at start and served by `GET /demo/token` (only
//! in demo mode, and only to a caller on this machine: see [`token`]).

use crate::problem::Problem;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair as _};
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use pdp_core::token::TokenUse;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

/// How long a demo token is valid, seconds (an hour, like Cognito's
/// default ID and access tokens).
pub const TOKEN_TTL_SECONDS: i64 = 3600;

/// The path that mints demo tokens.
pub const TOKEN_PATH: &str = "/demo/token";

/// The source files of `policies/`, by member name, as compiled in.
fn policies() -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let add = |files: &mut BTreeMap<String, Vec<u8>>, name: &str, text: &str| {
        files.insert(name.to_owned(), text.as_bytes().to_vec());
    };
    add(
        &mut files,
        "schema.cedarschema",
        include_str!("../../policies/schema.cedarschema"),
    );
    add(
        &mut files,
        "policies.cedar",
        include_str!("../../policies/policies.cedar"),
    );
    add(
        &mut files,
        "links.json",
        include_str!("../../policies/links.json"),
    );
    add(
        &mut files,
        "entities.json",
        include_str!("../../policies/entities.json"),
    );
    add(
        &mut files,
        "users.jsonl",
        include_str!("../../policies/users.jsonl"),
    );
    add(
        &mut files,
        "routes.json",
        include_str!("../../policies/routes.json"),
    );
    add(
        &mut files,
        "authzen.json",
        include_str!("../../policies/authzen.json"),
    );
    add(
        &mut files,
        "identity.json",
        include_str!("../../policies/identity.json"),
    );
    files
}

/// The demo realm's token key and identity settings.
pub struct Demo {
    /// PKCS#8 of the Ed25519 key generated at start; in memory only.
    key: jsonwebtoken::EncodingKey,
    /// The public JWK, with its `kid`.
    jwk: Value,
    kid: String,
    issuer: String,
    audience: String,
}

impl std::fmt::Debug for Demo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("Demo")
            .field("kid", &self.kid)
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

impl Demo {
    /// A demo realm with a freshly generated token key.
    pub fn generate() -> Result<Demo, String> {
        let no_key =
            |e: &dyn std::fmt::Display| format!("demo realm: generating its token key: {e}");
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).map_err(|e| no_key(&e))?;
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|e| no_key(&e))?;
        let x = B64.encode(pair.public_key().as_ref());
        // RFC 7638 thumbprint: the required members in lexicographic order.
        let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
        let kid = B64.encode(aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA256,
            canonical.as_bytes(),
        ));
        let identity: Value = serde_json::from_slice(&policies()["identity.json"])
            .map_err(|e| format!("policies/identity.json: {e}"))?;
        let text = |v: &Value| v.as_str().map(str::to_owned);
        let issuer = text(&identity["issuer"]).ok_or("policies/identity.json: no issuer")?;
        let audience =
            text(&identity["audiences"][0]).ok_or("policies/identity.json: no audience")?;
        Ok(Demo {
            key: jsonwebtoken::EncodingKey::from_ed_der(pkcs8.as_ref()),
            jwk: json!({"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "alg": "EdDSA", "use": "sig"}),
            kid,
            issuer,
            audience,
        })
    }

    /// The source files of the demo realm: `policies/`, its identity
    /// settings trusting the generated key alone.
    pub fn files(&self) -> BTreeMap<String, Vec<u8>> {
        let mut files = policies();
        let identity = files
            .get("identity.json")
            .and_then(|b| serde_json::from_slice::<Value>(b).ok());
        if let Some(mut identity) = identity {
            identity["jwks"] = json!({ "keys": [self.jwk] });
            files.insert("identity.json".into(), identity.to_string().into_bytes());
        }
        files
    }

    /// The `kid` of the generated key.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// A token of the demo realm for `user`, issued at `now` and valid for
    /// [`TOKEN_TTL_SECONDS`]: an ID token (`aud`) or an access token
    /// (`client_id`, `scope`), shaped like Cognito's.
    pub fn token(&self, user: &str, token_use: TokenUse, now: i64) -> Result<String, String> {
        let exp = now + TOKEN_TTL_SECONDS;
        let claims = match token_use {
            TokenUse::Id => json!({"sub": user, "iss": self.issuer, "aud": self.audience,
                "token_use": "id", "iat": now, "exp": exp}),
            TokenUse::Access => json!({"sub": user, "iss": self.issuer, "client_id": self.audience,
                "token_use": "access", "scope": "openid", "iat": now, "exp": exp}),
        };
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.key).map_err(|e| format!("demo token: {e}"))
    }
}

/// The query of `GET /demo/token`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenQuery {
    /// The token's `sub`: a user of the demo directory (any other name
    /// gets a token that is refused as `token:unknown_user`).
    user: Option<String>,
    /// `id` (the default) or `access`.
    token_use: Option<String>,
}

/// Headers that a proxy adds: a request carrying one came through a proxy
/// (one on this machine, forwarding to loopback, included), so its real
/// sender is elsewhere.
const PROXY_HEADERS: &[&str] = &[
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-real-ip",
    "via",
];

/// Whether a `Host` header names this machine by a loopback name:
/// `localhost`, `127.0.0.1` or `[::1]`, with any port or none. A page whose
/// own name was rebound to 127.0.0.1 (DNS rebinding) still sends its name.
fn is_local_host(host: &str) -> bool {
    let (name, port) = match host.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((inside, port)) => (&host[..inside.len() + 2], port),
            None => return false,
        },
        None => host.split_at(host.find(':').unwrap_or(host.len())),
    };
    let port_ok = match port.strip_prefix(':') {
        Some(p) => !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()),
        None => port.is_empty(),
    };
    port_ok && (name.eq_ignore_ascii_case("localhost") || name == "127.0.0.1" || name == "[::1]")
}

/// Why a request may not have a demo token, if it may not: the caller
/// must be a program on this machine. Decided from what the connection and
/// the request say, never from where the host listens (a proxy on this
/// machine forwarding to 127.0.0.1, or a second listener a library user
/// binds, would pass that).
fn refuse(peer: Option<&ConnectInfo<SocketAddr>>, headers: &HeaderMap) -> Option<Problem> {
    let forbidden = |kind: &str, title: &str, detail: String| {
        Some(Problem::new(StatusCode::FORBIDDEN, kind, title, detail))
    };
    // The connection's address, which `crate::serve` supplies; without it
    // (in-process, another server) nothing says the caller is local.
    if !peer.is_some_and(|ConnectInfo(a)| a.ip().to_canonical().is_loopback()) {
        return forbidden(
            "demo_token_not_local",
            "Demo tokens are minted for callers on this machine only",
            "the connection does not come from a loopback address; use the token printed at start"
                .into(),
        );
    }
    if let Some(name) = PROXY_HEADERS.iter().find(|h| headers.contains_key(**h)) {
        return forbidden(
            "demo_token_proxied",
            "Demo tokens are not minted through a proxy",
            format!("the request carries {name}: it came through a proxy, from elsewhere"),
        );
    }
    let mut hosts = headers.get_all(header::HOST).iter();
    let local = match (hosts.next(), hosts.next()) {
        (Some(h), None) => h.to_str().is_ok_and(is_local_host),
        _ => false,
    };
    if !local {
        return forbidden(
            "demo_token_host",
            "Demo tokens are minted for a local Host only",
            "ask http://localhost:PORT, http://127.0.0.1:PORT or http://[::1]:PORT".into(),
        );
    }
    None
}

/// `GET /demo/token?user=NAME[&token_use=access]`: a demo token as plain
/// text. Routed only in demo mode; answered (else 403) only to a loopback
/// peer ([`ConnectInfo`], supplied by [`crate::serve`]; none, as
/// in-process, is refused) whose request carries no proxy's headers
/// (`Forwarded`, `X-Forwarded-*`, `X-Real-IP`, `Via`) and a `Host` of
/// `localhost`, `127.0.0.1` or `[::1]` (any port).
pub async fn token(
    State(s): State<Arc<crate::api::AppState>>,
    peer: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    query: Result<Query<TokenQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Some(demo) = &s.demo else {
        return Problem::not_found("demo tokens exist only in demo mode").into_response();
    };
    if let Some(problem) = refuse(peer.as_ref().map(|p| &p.0), &headers) {
        return problem.into_response();
    }
    let Ok(Query(q)) = query else {
        return Problem::bad_request("invalid_request", "the query takes user and token_use")
            .into_response();
    };
    let user = q.user.unwrap_or_default();
    if user.is_empty() || user.len() > 256 {
        return Problem::bad_request(
            "invalid_request",
            "name the user: /demo/token?user=alice (up to 256 bytes)",
        )
        .into_response();
    }
    let token_use = match q.token_use.as_deref() {
        None | Some("id") => TokenUse::Id,
        Some("access") => TokenUse::Access,
        Some(_) => {
            return Problem::bad_request("invalid_request", "token_use is id or access")
                .into_response();
        }
    };
    match demo.token(&user, token_use, crate::realm::now()) {
        Ok(t) => {
            let mut resp = format!("{t}\n").into_response();
            resp.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            resp
        }
        Err(e) => Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "The token could not be minted",
            e,
        )
        .into_response(),
    }
}
