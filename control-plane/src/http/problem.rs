//! RFC 9457 problem documents: the one place a control-plane error
//! becomes an HTTP status and body.

use crate::domain::error::{Diagnostic, Error};
use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// An RFC 9457 problem document.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem.
    #[serde(rename = "type")]
    pub kind: String,
    /// Short summary of the kind.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong this time.
    pub detail: String,
    /// Diagnostics (validation failures), with positions where known.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub diagnostics: Vec<Diagnostic>,
    /// Seconds to wait (429).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
}

/// An error on its way to becoming a problem response.
#[derive(Debug)]
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, kind, title) = match &self.0 {
            Error::NotFound { .. } => (StatusCode::NOT_FOUND, "not-found", "Not found"),
            Error::AlreadyExists { .. } => {
                (StatusCode::CONFLICT, "already-exists", "Already exists")
            }
            Error::Lifecycle(_) => (
                StatusCode::CONFLICT,
                "illegal-transition",
                "Illegal lifecycle transition",
            ),
            Error::Conflict(_) => (StatusCode::CONFLICT, "conflict", "Conflict"),
            Error::Invalid { .. } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                "Validation failed",
            ),
            Error::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad-request", "Bad request"),
            Error::Unauthenticated(_) => (
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "Not authenticated",
            ),
            Error::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden", "Not permitted"),
            Error::Throttled { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "throttled",
                "Too many attempts",
            ),
            Error::Busy { .. } => (StatusCode::SERVICE_UNAVAILABLE, "busy", "Busy"),
            Error::Repository(_) | Error::Store(_) | Error::Identity(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "A backend is unavailable",
            ),
            Error::Publish(_) | Error::Internal(_) | Error::Secret { .. } => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal error",
            ),
        };
        let detail = if status.is_server_error() && !matches!(self.0, Error::Busy { .. }) {
            tracing::error!(error = %self.0, "request failed");
            "the request failed inside the control plane; see its log".to_owned()
        } else {
            self.0.to_string()
        };
        let problem = Problem {
            kind: format!("urn:gatehouse:problem:{kind}"),
            title: title.into(),
            status: status.as_u16(),
            detail,
            diagnostics: match &self.0 {
                Error::Invalid { diagnostics, .. } => diagnostics.clone(),
                _ => Vec::new(),
            },
            retry_after: match &self.0 {
                Error::Throttled { retry_after } | Error::Busy { retry_after, .. } => {
                    Some(*retry_after)
                }
                _ => None,
            },
        };
        let mut resp = (status, Json(problem)).into_response();
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if status == StatusCode::UNAUTHORIZED {
            h.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"gatehouse-admin\""),
            );
        }
        if let Error::Throttled { retry_after } | Error::Busy { retry_after, .. } = &self.0
            && let Ok(v) = HeaderValue::from_str(&retry_after.to_string())
        {
            h.insert(header::RETRY_AFTER, v);
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_is_503_with_retry_after_and_says_why() {
        let resp = ApiError(Error::Busy {
            what: "too many password checks at once",
            retry_after: 1,
        })
        .into_response();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "1");
        let resp = ApiError(Error::Throttled { retry_after: 7 }).into_response();
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "7");
        let resp = ApiError(Error::Internal("x".into())).into_response();
        assert!(resp.headers().get(header::RETRY_AFTER).is_none());
    }
}
