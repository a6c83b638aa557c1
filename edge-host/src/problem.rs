//! RFC 9457 problem details: the one place errors become HTTP responses.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use pdp_core::decision::FailureDetail;
use serde::Serialize;

/// An HTTP error as `application/problem+json`.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// A URI naming the problem kind.
    #[serde(rename = "type")]
    pub kind: String,
    /// Short summary of the kind.
    pub title: String,
    /// HTTP status.
    pub status: u16,
    /// What happened this time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The same typed errors the tagged `failure` answers carry.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FailureDetail>,
}

const BASE: &str = "https://gatehouse.dev/problems/";

impl Problem {
    /// A problem of `kind` (a stable snake_case name) with `status`.
    pub fn new(status: StatusCode, kind: &str, title: &str, detail: impl Into<String>) -> Problem {
        let detail = detail.into();
        Problem {
            kind: format!("{BASE}{kind}"),
            title: title.to_owned(),
            status: status.as_u16(),
            errors: vec![FailureDetail {
                kind: kind.to_owned(),
                message: detail.clone(),
            }],
            detail: Some(detail),
        }
    }

    /// The stable snake_case name of the kind (`kind` without its URI).
    pub fn kind_name(&self) -> &str {
        self.kind.strip_prefix(BASE).unwrap_or(&self.kind)
    }

    /// 400: the request body is not what the endpoint takes.
    pub fn bad_request(kind: &str, detail: impl Into<String>) -> Problem {
        Problem::new(
            StatusCode::BAD_REQUEST,
            kind,
            "The request cannot be answered",
            detail,
        )
    }

    /// 404: unknown route or entity.
    pub fn not_found(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::NOT_FOUND, "not_found", "Not found", detail)
    }

    /// 500: the host failed, not the request (a handler panicked). The
    /// detail never carries the panic's message: it may hold request data.
    pub fn internal() -> Problem {
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            "the host failed to answer this request; nothing was allowed, and the failure is counted in /metrics",
        )
    }

    /// 503: no bundle loaded for the realm (fail closed).
    pub fn no_bundle(realm: &str) -> Problem {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_bundle",
            "No policy bundle is loaded",
            format!("realm {realm:?} has no bundle loaded; every decision is denied until one is"),
        )
    }

    /// 503: the realm's bundle is older than the staleness limit allows.
    pub fn stale_bundle(realm: &str, revision: u64) -> Problem {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "stale_bundle",
            "The policy bundle is too old",
            format!("realm {realm:?} revision {revision} is older than the allowed staleness"),
        )
    }

    /// 400 naming the realm that could not be chosen.
    pub fn unknown_realm(detail: impl Into<String>) -> Problem {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "unknown_realm",
            "No such realm",
            detail,
        )
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut resp = (status, body).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        resp
    }
}
