//! The admin REST API (`/v1/...`), each realm's public identity endpoints
//! (`/realms/{realm}/...`: discovery, JWKS, login), the OpenAPI 3.1
//! document generated from these handlers (`/openapi.json`) and a docs
//! page that reads it (`/docs`).
//!
//! Every `/v1` call carries a bearer token of the admin realm and is
//! decided by that realm's Cedar policies ([`crate::admin::CedarAdmin`])
//! before anything is read or written. Errors are RFC 9457 problem
//! documents. Database work runs on the blocking pool; with
//! `auto_publish` every committed change is published before the answer.

use crate::Db;
use crate::admin::CedarAdmin;
use crate::config::Config;
use crate::error::{Diagnostic, Error};
use crate::group::{Kind, NewNode, Node};
use crate::identity::keys::{Alg, KeyInfo};
use crate::identity::provider::IdentityProvider;
use crate::identity::{ChallengeAnswer, LoginResult, TotpEnrollment, VerificationCode};
use crate::import::{Format, Imported};
use crate::objstore::ObjectStore;
use crate::policy::{Link, PolicyInput, SchemaVersion, StoredPolicy};
use crate::publish::{PublishStatus, Published, Publisher};
use crate::realm::{NewRealm, Realm};
use crate::user::{NewUser, User, UserPage, UserQuery};
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use pdp_core::LifecycleAction;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::sync::Arc;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Largest JSON body, bytes.
pub const JSON_LIMIT: usize = 1 << 20;
/// Largest import body, bytes.
pub const IMPORT_LIMIT: usize = 256 << 20;

/// What every handler shares.
pub struct Api {
    /// The database.
    pub db: Arc<Db>,
    /// Settings.
    pub config: Config,
    /// Where bundles are published.
    pub store: Arc<dyn ObjectStore>,
    /// The admin realm's policies.
    pub admin: CedarAdmin,
    /// Credentials, logins, tokens and keys.
    pub identity: Arc<dyn IdentityProvider>,
}

type St = State<Arc<Api>>;

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
            Error::Db(_) | Error::Publish(_) | Error::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal error",
            ),
        };
        let detail = if status == StatusCode::INTERNAL_SERVER_ERROR {
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
                Error::Throttled { retry_after } => Some(*retry_after),
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
        if let Error::Throttled { retry_after } = &self.0
            && let Ok(v) = HeaderValue::from_str(&retry_after.to_string())
        {
            h.insert(header::RETRY_AFTER, v);
        }
        resp
    }
}

type ApiResult<T> = Result<T, ApiError>;

fn now() -> i64 {
    crate::cli::now()
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}

/// A JSON body, refused with a positioned message when malformed.
fn body<T: DeserializeOwned>(bytes: &Bytes) -> ApiResult<T> {
    serde_json::from_slice(bytes).map_err(|e| {
        ApiError(Error::BadRequest(format!(
            "request body, line {} column {}: {e}",
            e.line(),
            e.column()
        )))
    })
}

fn is_read(action: &str) -> bool {
    action.ends_with(":read") || action.ends_with(":list") || action.ends_with(":status")
}

/// Authorize `action` on `realm` for the caller, run `f` on the blocking
/// pool, and publish the realm afterwards if `f` changed it.
async fn admin<T: Send + 'static>(
    api: &Arc<Api>,
    headers: &HeaderMap,
    action: &'static str,
    realm: Option<String>,
    f: impl FnOnce(&Api, i64) -> crate::Result<T> + Send + 'static,
) -> ApiResult<T> {
    let token = bearer(headers);
    let api = api.clone();
    tokio::task::spawn_blocking(move || {
        let now = now();
        api.admin
            .authorize(token.as_deref(), action, realm.as_deref(), now)?;
        let out = f(&api, now)?;
        // The change is committed; if publishing fails, the next publish
        // carries it.
        if !is_read(action)
            && api.config.auto_publish
            && let Some(realm) = &realm
            && action != "realm:delete"
            && let Err(e) = api.publisher().publish(realm, now)
        {
            tracing::warn!(realm, error = %e, "auto-publish failed");
        }
        Ok(out)
    })
    .await
    .map_err(|e| ApiError(Error::Internal(format!("worker: {e}"))))?
    .map_err(ApiError)
}

/// Run `f` on the blocking pool without admin authorization (the realm's
/// public endpoints).
async fn public<T: Send + 'static>(
    api: &Arc<Api>,
    f: impl FnOnce(&Api, i64) -> crate::Result<T> + Send + 'static,
) -> ApiResult<T> {
    let api = api.clone();
    tokio::task::spawn_blocking(move || f(&api, now()))
        .await
        .map_err(|e| ApiError(Error::Internal(format!("worker: {e}"))))?
        .map_err(ApiError)
}

impl Api {
    fn publisher(&self) -> Publisher<'_> {
        Publisher::new(
            &self.db,
            self.store.as_ref(),
            &self.config.store_prefix,
            self.config.compact_after_deltas,
        )
    }
}

// ---------------------------------------------------------------- realms

/// Query of `GET /v1/realms`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RealmListQuery {
    /// Include soft-deleted realms.
    #[serde(default)]
    pub include_deleted: bool,
}

/// List realms.
#[utoipa::path(get, path = "/v1/realms", tag = "realms", params(RealmListQuery),
    responses((status = 200, body = Vec<Realm>), (status = "4XX", body = Problem)))]
async fn list_realms(
    State(api): St,
    headers: HeaderMap,
    q: Result<Query<RealmListQuery>, QueryRejection>,
) -> ApiResult<Json<Vec<Realm>>> {
    let Query(q) = q.map_err(|e| ApiError(Error::BadRequest(e.body_text())))?;
    admin(&api, &headers, "realm:list", None, move |a, _| {
        a.db.realms(q.include_deleted)
    })
    .await
    .map(Json)
}

/// Create a realm (reference schema unless one is given), with its first
/// signing key and app client.
#[utoipa::path(post, path = "/v1/realms", tag = "realms", request_body = NewRealm,
    responses((status = 201, body = Realm), (status = "4XX", body = Problem)))]
async fn create_realm(
    State(api): St,
    headers: HeaderMap,
    bytes: Bytes,
) -> ApiResult<(StatusCode, Json<Realm>)> {
    let new: NewRealm = body(&bytes)?;
    let name = new.name.clone();
    let realm = admin(&api, &headers, "realm:create", None, move |a, now| {
        a.db.create_realm(&new, &a.config.issuer_base, now)
    })
    .await?;
    if api.config.auto_publish {
        let _ = public(&api, move |a, now| a.publisher().publish(&name, now)).await;
    }
    Ok((StatusCode::CREATED, Json(realm)))
}

/// Show a realm.
#[utoipa::path(get, path = "/v1/realms/{realm}", tag = "realms",
    params(("realm" = String, Path)),
    responses((status = 200, body = Realm), (status = "4XX", body = Problem)))]
async fn get_realm(
    State(api): St,
    headers: HeaderMap,
    Path(realm): Path<String>,
) -> ApiResult<Json<Realm>> {
    let r = realm.clone();
    admin(&api, &headers, "realm:read", Some(realm), move |a, _| {
        a.db.realm(&r)
    })
    .await
    .map(Json)
}

/// Soft-delete a realm: its users, policies and keys stay, invisible; a
/// last delta forbidding everything is published so decision points deny.
#[utoipa::path(delete, path = "/v1/realms/{realm}", tag = "realms",
    params(("realm" = String, Path)),
    responses((status = 200, body = Realm), (status = "4XX", body = Problem)))]
async fn delete_realm(
    State(api): St,
    headers: HeaderMap,
    Path(realm): Path<String>,
) -> ApiResult<Json<Realm>> {
    let r = realm.clone();
    admin(
        &api,
        &headers,
        "realm:delete",
        Some(realm),
        move |a, now| {
            let deleted = a.db.delete_realm(&r, now)?;
            // Decision points stop authorizing in the realm.
            if let Err(e) = a.publisher().withdraw(&r, now) {
                tracing::warn!(realm = %r, error = %e, "withdrawing the deleted realm's bundles failed");
            }
            Ok(deleted)
        },
    )
    .await
    .map(Json)
}

// ----------------------------------------------------------------- users

/// Search users by email or username prefix and by state; pages follow
/// `next`.
#[utoipa::path(get, path = "/v1/realms/{realm}/users", tag = "users",
    params(("realm" = String, Path), UserQuery),
    responses((status = 200, body = UserPage), (status = "4XX", body = Problem)))]
async fn list_users(
    State(api): St,
    headers: HeaderMap,
    Path(realm): Path<String>,
    q: Result<Query<UserQuery>, QueryRejection>,
) -> ApiResult<Json<UserPage>> {
    let Query(q) = q.map_err(|e| ApiError(Error::BadRequest(e.body_text())))?;
    let r = realm.clone();
    admin(&api, &headers, "user:list", Some(realm), move |a, _| {
        a.db.search_users(&r, &q)
    })
    .await
    .map(Json)
}

/// Create a user (state Created).
#[utoipa::path(post, path = "/v1/realms/{realm}/users", tag = "users",
    params(("realm" = String, Path)), request_body = NewUser,
    responses((status = 201, body = User), (status = "4XX", body = Problem)))]
async fn create_user(
    State(api): St,
    headers: HeaderMap,
    Path(realm): Path<String>,
    bytes: Bytes,
) -> ApiResult<(StatusCode, Json<User>)> {
    let new: NewUser = body(&bytes)?;
    let r = realm.clone();
    admin(&api, &headers, "user:create", Some(realm), move |a, now| {
        a.db.create_user(&r, &new, now)
    })
    .await
    .map(|u| (StatusCode::CREATED, Json(u)))
}

/// Show a user.
#[utoipa::path(get, path = "/v1/realms/{realm}/users/{id}", tag = "users",
    params(("realm" = String, Path), ("id" = String, Path)),
    responses((status = 200, body = User), (status = "4XX", body = Problem)))]
async fn get_user(
    State(api): St,
    headers: HeaderMap,
    Path((realm, id)): Path<(String, String)>,
) -> ApiResult<Json<User>> {
    let r = realm.clone();
    admin(&api, &headers, "user:read", Some(realm), move |a, _| {
        a.db.user(&r, &id)
    })
    .await
    .map(Json)
}

/// Merge attributes into a user's (`null` removes one); validated against
/// the realm's schema.
#[utoipa::path(patch, path = "/v1/realms/{realm}/users/{id}", tag = "users",
    params(("realm" = String, Path), ("id" = String, Path)),
    request_body(content = Object, description = "attributes to set (null removes)"),
    responses((status = 200, body = User), (status = "4XX", body = Problem)))]
async fn update_user(
    State(api): St,
    headers: HeaderMap,
    Path((realm, id)): Path<(String, String)>,
    bytes: Bytes,
) -> ApiResult<Json<User>> {
    let patch: Map<String, Value> = body(&bytes)?;
    let r = realm.clone();
    admin(&api, &headers, "user:update", Some(realm), move |a, now| {
        a.db.update_user_attrs(&r, &id, &patch, now)
    })
    .await
    .map(Json)
}

/// Apply a lifecycle action (`invite`, `verify`, `require_password_reset`,
/// `complete_password_reset`, `suspend`, `resume`, `deactivate`, `delete`,
/// `restore`, `sign_out_everywhere`); an illegal one is 409 and changes
/// nothing.
#[utoipa::path(post, path = "/v1/realms/{realm}/users/{id}/lifecycle/{action}", tag = "users",
    params(("realm" = String, Path), ("id" = String, Path), ("action" = String, Path)),
    responses((status = 200, body = User), (status = "4XX", body = Problem)))]
async fn lifecycle(
    State(api): St,
    headers: HeaderMap,
    Path((realm, id, action)): Path<(String, String, String)>,
) -> ApiResult<Json<User>> {
    let parsed: LifecycleAction = action.parse().map_err(|e: pdp_core::LifecycleError| {
        ApiError(Error::NotFound {
            kind: "lifecycle action",
            id: format!("{action} ({e})"),
        })
    })?;
    let cedar_action = admin_action_of(parsed);
    let revokes = matches!(
        parsed,
        LifecycleAction::Suspend
            | LifecycleAction::Deactivate
            | LifecycleAction::Delete
            | LifecycleAction::RequirePasswordReset
            | LifecycleAction::SignOutEverywhere
    );
    // Revoking actions are published before the identity provider follows,
    // enabling ones after it did: a crash in between never leaves more
    // access than intended. (`admin` publishes after the closure returns.)
    let r = realm.clone();
    let user = admin(
        &api,
        &headers,
        cedar_action,
        Some(realm.clone()),
        move |a, now| {
            let user = a.db.lifecycle(&r, &id, parsed, now)?;
            if !revokes {
                a.identity.lifecycle_applied(&r, &user, parsed)?;
            }
            Ok(user)
        },
    )
    .await?;
    if revokes {
        let u = user.clone();
        public(&api, move |a, _| {
            a.identity.lifecycle_applied(&realm, &u, parsed)
        })
        .await?;
    }
    Ok(Json(user))
}

fn admin_action_of(a: LifecycleAction) -> &'static str {
    match a {
        LifecycleAction::Invite => "user:invite",
        LifecycleAction::Verify => "user:verify",
        LifecycleAction::RequirePasswordReset => "user:require_password_reset",
        LifecycleAction::CompletePasswordReset => "user:complete_password_reset",
        LifecycleAction::Suspend => "user:suspend",
        LifecycleAction::Resume => "user:resume",
        LifecycleAction::Deactivate => "user:deactivate",
        LifecycleAction::Delete => "user:delete",
        LifecycleAction::Restore => "user:restore",
        LifecycleAction::SignOutEverywhere => "user:sign_out_everywhere",
    }
}

/// A new password for a user.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetPassword {
    /// The password (ASVS rules: 8 to 128 characters, not common, not the
    /// username or email).
    pub password: String,
    /// The user must choose a new one at the next login.
    #[serde(default)]
    pub temporary: bool,
}

/// Set a user's password; every session of theirs ends.
#[utoipa::path(put, path = "/v1/realms/{realm}/users/{id}/password", tag = "users",
    params(("realm" = String, Path), ("id" = String, Path)), request_body = SetPassword,
    responses((status = 204), (status = "4XX", body = Problem)))]
async fn set_password(
    State(api): St,
    headers: HeaderMap,
    Path((realm, id)): Path<(String, String)>,
    bytes: Bytes,
) -> ApiResult<StatusCode> {
    let p: SetPassword = body(&bytes)?;
    let r = realm.clone();
    admin(
        &api,
        &headers,
        "user:set_password",
        Some(realm),
        move |a, now| {
            a.identity
                .set_password(&r, &id, &p.password, p.temporary, now)
        },
    )
    .await
    .map(|()| StatusCode::NO_CONTENT)
}

/// Start TOTP enrolment for a user (the secret is shown once).
#[utoipa::path(post, path = "/v1/realms/{realm}/users/{id}/mfa/totp", tag = "users",
    params(("realm" = String, Path), ("id" = String, Path)),
    responses((status = 201, body = TotpEnrollment), (status = "4XX", body = Problem)))]
async fn totp_enroll(
    State(api): St,
    headers: HeaderMap,
    Path((realm, id)): Path<(String, String)>,
) -> ApiResult<(StatusCode, Json<TotpEnrollment>)> {
    let r = realm.clone();
    admin(&api, &headers, "user:update", Some(realm), move |a, _| {
        a.identity.totp_enroll(&r, &id)
    })
    .await
    .map(|e| (StatusCode::CREATED, Json(e)))
}

/// Send a Created or Unverified user a new email verification code (a
/// Created user becomes Unverified). The control plane sends no mail: the
/// caller delivers the code; the user answers `EMAIL_VERIFICATION` with it
/// at their next login.
#[utoipa::path(post, path = "/v1/realms/{realm}/users/{id}/verification", tag = "users",
    params(("realm" = String, Path), ("id" = String, Path)),
    responses((status = 201, body = VerificationCode), (status = "4XX", body = Problem)))]
async fn start_verification(
    State(api): St,
    headers: HeaderMap,
    Path((realm, id)): Path<(String, String)>,
) -> ApiResult<(StatusCode, Json<VerificationCode>)> {
    let r = realm.clone();
    admin(&api, &headers, "user:invite", Some(realm), move |a, now| {
        a.identity.start_verification(&r, &id, now)
    })
    .await
    .map(|c| (StatusCode::CREATED, Json(c)))
}

/// A TOTP code.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TotpCode {
    /// Six digits.
    pub code: String,
}

/// Confirm TOTP enrolment with a current code.
#[utoipa::path(post, path = "/v1/realms/{realm}/users/{id}/mfa/totp/confirm", tag = "users",
    params(("realm" = String, Path), ("id" = String, Path)), request_body = TotpCode,
    responses((status = 204), (status = "4XX", body = Problem)))]
async fn totp_confirm(
    State(api): St,
    headers: HeaderMap,
    Path((realm, id)): Path<(String, String)>,
    bytes: Bytes,
) -> ApiResult<StatusCode> {
    let c: TotpCode = body(&bytes)?;
    let r = realm.clone();
    admin(&api, &headers, "user:update", Some(realm), move |a, now| {
        a.identity.totp_confirm(&r, &id, &c.code, now)
    })
    .await
    .map(|()| StatusCode::NO_CONTENT)
}

/// Remove a user's TOTP.
#[utoipa::path(delete, path = "/v1/realms/{realm}/users/{id}/mfa/totp", tag = "users",
    params(("realm" = String, Path), ("id" = String, Path)),
    responses((status = 204), (status = "4XX", body = Problem)))]
async fn totp_remove(
    State(api): St,
    headers: HeaderMap,
    Path((realm, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let r = realm.clone();
    admin(&api, &headers, "user:update", Some(realm), move |a, _| {
        a.identity.totp_remove(&r, &id)
    })
    .await
    .map(|()| StatusCode::NO_CONTENT)
}

/// Import users, all or nothing: JSON Lines (`application/x-ndjson`) or
/// CSV (`text/csv`).
#[utoipa::path(post, path = "/v1/realms/{realm}/users/import", tag = "users",
    params(("realm" = String, Path)),
    request_body(content = String, content_type = "application/x-ndjson"),
    responses((status = 200, body = Imported), (status = "4XX", body = Problem)))]
async fn import_users(
    State(api): St,
    headers: HeaderMap,
    Path(realm): Path<String>,
    bytes: Bytes,
) -> ApiResult<Json<Imported>> {
    let csv = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/csv"));
    let format = if csv { Format::Csv } else { Format::JsonLines };
    let r = realm.clone();
    admin(&api, &headers, "user:import", Some(realm), move |a, now| {
        a.db.import_users(&r, &bytes[..], format, now)
    })
    .await
    .map(Json)
}

/// Add a user to a group.
#[utoipa::path(put, path = "/v1/realms/{realm}/users/{id}/groups/{group}", tag = "users",
    params(("realm" = String, Path), ("id" = String, Path), ("group" = String, Path)),
    responses((status = 200, body = User), (status = "4XX", body = Problem)))]
async fn add_user_group(
    State(api): St,
    headers: HeaderMap,
    Path((realm, id, group)): Path<(String, String, String)>,
) -> ApiResult<Json<User>> {
    let r = realm.clone();
    admin(
        &api,
        &headers,
        "group:members",
        Some(realm),
        move |a, now| {
            a.db.add_user_to_group(&r, &id, &group, now)?;
            a.db.user(&r, &id)
        },
    )
    .await
    .map(Json)
}

/// Remove a user from a group.
#[utoipa::path(delete, path = "/v1/realms/{realm}/users/{id}/groups/{group}", tag = "users",
    params(("realm" = String, Path), ("id" = String, Path), ("group" = String, Path)),
    responses((status = 200, body = User), (status = "4XX", body = Problem)))]
async fn remove_user_group(
    State(api): St,
    headers: HeaderMap,
    Path((realm, id, group)): Path<(String, String, String)>,
) -> ApiResult<Json<User>> {
    let r = realm.clone();
    admin(
        &api,
        &headers,
        "group:members",
        Some(realm),
        move |a, now| {
            a.db.remove_user_from_group(&r, &id, &group, now)?;
            a.db.user(&r, &id)
        },
    )
    .await
    .map(Json)
}

/// Assign a role to a user.
#[utoipa::path(put, path = "/v1/realms/{realm}/users/{id}/roles/{role}", tag = "users",
    params(("realm" = String, Path), ("id" = String, Path), ("role" = String, Path)),
    responses((status = 200, body = User), (status = "4XX", body = Problem)))]
async fn add_user_role(
    State(api): St,
    headers: HeaderMap,
    Path((realm, id, role)): Path<(String, String, String)>,
) -> ApiResult<Json<User>> {
    let r = realm.clone();
    admin(&api, &headers, "role:update", Some(realm), move |a, now| {
        a.db.assign_user_role(&r, &id, &role, now)?;
        a.db.user(&r, &id)
    })
    .await
    .map(Json)
}

/// Take a role from a user.
#[utoipa::path(delete, path = "/v1/realms/{realm}/users/{id}/roles/{role}", tag = "users",
    params(("realm" = String, Path), ("id" = String, Path), ("role" = String, Path)),
    responses((status = 200, body = User), (status = "4XX", body = Problem)))]
async fn remove_user_role(
    State(api): St,
    headers: HeaderMap,
    Path((realm, id, role)): Path<(String, String, String)>,
) -> ApiResult<Json<User>> {
    let r = realm.clone();
    admin(&api, &headers, "role:update", Some(realm), move |a, now| {
        a.db.unassign_user_role(&r, &id, &role, now)?;
        a.db.user(&r, &id)
    })
    .await
    .map(Json)
}

// -------------------------------------------------------- groups, roles

fn kind_of(segment: &str) -> ApiResult<(Kind, &'static str)> {
    match segment {
        "groups" => Ok((Kind::Group, "group")),
        "roles" => Ok((Kind::Role, "role")),
        other => Err(ApiError(Error::not_found("collection", other))),
    }
}

fn node_action(noun: &'static str, verb: &str) -> &'static str {
    match (noun, verb) {
        ("group", "create") => "group:create",
        ("group", "read") => "group:read",
        ("group", "delete") => "group:delete",
        ("group", _) => "group:update",
        ("role", "create") => "role:create",
        ("role", "read") => "role:read",
        ("role", "delete") => "role:delete",
        _ => "role:update",
    }
}

/// List the realm's groups or roles (`kind`: `groups` or `roles`).
#[utoipa::path(get, path = "/v1/realms/{realm}/{kind}", tag = "groups and roles",
    params(("realm" = String, Path), ("kind" = String, Path, description = "groups or roles")),
    responses((status = 200, body = Vec<Node>), (status = "4XX", body = Problem)))]
async fn list_nodes(
    State(api): St,
    headers: HeaderMap,
    Path((realm, kind)): Path<(String, String)>,
) -> ApiResult<Json<Vec<Node>>> {
    let (kind, noun) = kind_of(&kind)?;
    let r = realm.clone();
    admin(
        &api,
        &headers,
        node_action(noun, "read"),
        Some(realm),
        move |a, _| a.db.nodes(&r, kind),
    )
    .await
    .map(Json)
}

/// Create a group or role.
#[utoipa::path(post, path = "/v1/realms/{realm}/{kind}", tag = "groups and roles",
    params(("realm" = String, Path), ("kind" = String, Path, description = "groups or roles")),
    request_body = NewNode,
    responses((status = 201, body = Node), (status = "4XX", body = Problem)))]
async fn create_node(
    State(api): St,
    headers: HeaderMap,
    Path((realm, kind)): Path<(String, String)>,
    bytes: Bytes,
) -> ApiResult<(StatusCode, Json<Node>)> {
    let (kind, noun) = kind_of(&kind)?;
    let new: NewNode = body(&bytes)?;
    let r = realm.clone();
    admin(
        &api,
        &headers,
        node_action(noun, "create"),
        Some(realm),
        move |a, now| a.db.create_node(&r, kind, &new, now),
    )
    .await
    .map(|n| (StatusCode::CREATED, Json(n)))
}

/// Show a group or role.
#[utoipa::path(get, path = "/v1/realms/{realm}/{kind}/{id}", tag = "groups and roles",
    params(("realm" = String, Path), ("kind" = String, Path, description = "groups or roles"),
        ("id" = String, Path)),
    responses((status = 200, body = Node), (status = "4XX", body = Problem)))]
async fn get_node(
    State(api): St,
    headers: HeaderMap,
    Path((realm, kind, id)): Path<(String, String, String)>,
) -> ApiResult<Json<Node>> {
    let (kind, noun) = kind_of(&kind)?;
    let r = realm.clone();
    admin(
        &api,
        &headers,
        node_action(noun, "read"),
        Some(realm),
        move |a, _| a.db.node(&r, kind, &id),
    )
    .await
    .map(Json)
}

/// A new description.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NodePatch {
    /// Free text.
    pub description: String,
}

/// Change a group's or role's description.
#[utoipa::path(patch, path = "/v1/realms/{realm}/{kind}/{id}", tag = "groups and roles",
    params(("realm" = String, Path), ("kind" = String, Path, description = "groups or roles"),
        ("id" = String, Path)),
    request_body = NodePatch,
    responses((status = 200, body = Node), (status = "4XX", body = Problem)))]
async fn update_node(
    State(api): St,
    headers: HeaderMap,
    Path((realm, kind, id)): Path<(String, String, String)>,
    bytes: Bytes,
) -> ApiResult<Json<Node>> {
    let (kind, noun) = kind_of(&kind)?;
    let patch: NodePatch = body(&bytes)?;
    let r = realm.clone();
    admin(
        &api,
        &headers,
        node_action(noun, "update"),
        Some(realm),
        move |a, _| a.db.describe_node(&r, kind, &id, &patch.description),
    )
    .await
    .map(Json)
}

/// Delete a group or role, with every membership and assignment naming it.
#[utoipa::path(delete, path = "/v1/realms/{realm}/{kind}/{id}", tag = "groups and roles",
    params(("realm" = String, Path), ("kind" = String, Path, description = "groups or roles"),
        ("id" = String, Path)),
    responses((status = 204), (status = "4XX", body = Problem)))]
async fn delete_node(
    State(api): St,
    headers: HeaderMap,
    Path((realm, kind, id)): Path<(String, String, String)>,
) -> ApiResult<StatusCode> {
    let (kind, noun) = kind_of(&kind)?;
    let r = realm.clone();
    admin(
        &api,
        &headers,
        node_action(noun, "delete"),
        Some(realm),
        move |a, now| a.db.delete_node(&r, kind, &id, now),
    )
    .await
    .map(|()| StatusCode::NO_CONTENT)
}

/// The users directly in a group.
#[utoipa::path(get, path = "/v1/realms/{realm}/groups/{id}/members", tag = "groups and roles",
    params(("realm" = String, Path), ("id" = String, Path)),
    responses((status = 200, body = Vec<String>), (status = "4XX", body = Problem)))]
async fn group_members(
    State(api): St,
    headers: HeaderMap,
    Path((realm, id)): Path<(String, String)>,
) -> ApiResult<Json<Vec<String>>> {
    let r = realm.clone();
    admin(&api, &headers, "group:read", Some(realm), move |a, _| {
        a.db.group_members(&r, &id)
    })
    .await
    .map(Json)
}

/// Nest a group in another (cycles are refused with 409).
#[utoipa::path(put, path = "/v1/realms/{realm}/groups/{id}/parents/{parent}", tag = "groups and roles",
    params(("realm" = String, Path), ("id" = String, Path), ("parent" = String, Path)),
    responses((status = 204), (status = "4XX", body = Problem)))]
async fn add_group_parent(
    State(api): St,
    headers: HeaderMap,
    Path((realm, id, parent)): Path<(String, String, String)>,
) -> ApiResult<StatusCode> {
    let r = realm.clone();
    admin(
        &api,
        &headers,
        "group:update",
        Some(realm),
        move |a, now| a.db.add_group_parent(&r, &id, &parent, now),
    )
    .await
    .map(|()| StatusCode::NO_CONTENT)
}

/// Un-nest a group.
#[utoipa::path(delete, path = "/v1/realms/{realm}/groups/{id}/parents/{parent}", tag = "groups and roles",
    params(("realm" = String, Path), ("id" = String, Path), ("parent" = String, Path)),
    responses((status = 204), (status = "4XX", body = Problem)))]
async fn remove_group_parent(
    State(api): St,
    headers: HeaderMap,
    Path((realm, id, parent)): Path<(String, String, String)>,
) -> ApiResult<StatusCode> {
    let r = realm.clone();
    admin(
        &api,
        &headers,
        "group:update",
        Some(realm),
        move |a, now| a.db.remove_group_parent(&r, &id, &parent, now),
    )
    .await
    .map(|()| StatusCode::NO_CONTENT)
}

/// Give a group a role (its members, nested ones too, hold it).
#[utoipa::path(put, path = "/v1/realms/{realm}/groups/{id}/roles/{role}", tag = "groups and roles",
    params(("realm" = String, Path), ("id" = String, Path), ("role" = String, Path)),
    responses((status = 204), (status = "4XX", body = Problem)))]
async fn add_group_role(
    State(api): St,
    headers: HeaderMap,
    Path((realm, id, role)): Path<(String, String, String)>,
) -> ApiResult<StatusCode> {
    let r = realm.clone();
    admin(&api, &headers, "role:update", Some(realm), move |a, now| {
        a.db.set_group_role(&r, &id, &role, true, now)
    })
    .await
    .map(|()| StatusCode::NO_CONTENT)
}

/// Take a role from a group.
#[utoipa::path(delete, path = "/v1/realms/{realm}/groups/{id}/roles/{role}", tag = "groups and roles",
    params(("realm" = String, Path), ("id" = String, Path), ("role" = String, Path)),
    responses((status = 204), (status = "4XX", body = Problem)))]
async fn remove_group_role(
    State(api): St,
    headers: HeaderMap,
    Path((realm, id, role)): Path<(String, String, String)>,
) -> ApiResult<StatusCode> {
    let r = realm.clone();
    admin(&api, &headers, "role:update", Some(realm), move |a, now| {
        a.db.set_group_role(&r, &id, &role, false, now)
    })
    .await
    .map(|()| StatusCode::NO_CONTENT)
}

// ------------------------------------------------ policies and schema

/// The realm's policies and templates.
#[utoipa::path(get, path = "/v1/realms/{realm}/policies", tag = "policies",
    params(("realm" = String, Path)),
    responses((status = 200, body = Vec<StoredPolicy>), (status = "4XX", body = Problem)))]
async fn list_policies(
    State(api): St,
    headers: HeaderMap,
    Path(realm): Path<String>,
) -> ApiResult<Json<Vec<StoredPolicy>>> {
    let r = realm.clone();
    admin(&api, &headers, "policy:read", Some(realm), move |a, _| {
        a.db.policies(&r)
    })
    .await
    .map(Json)
}

/// Show a policy.
#[utoipa::path(get, path = "/v1/realms/{realm}/policies/{id}", tag = "policies",
    params(("realm" = String, Path), ("id" = String, Path)),
    responses((status = 200, body = StoredPolicy), (status = "4XX", body = Problem)))]
async fn get_policy(
    State(api): St,
    headers: HeaderMap,
    Path((realm, id)): Path<(String, String)>,
) -> ApiResult<Json<StoredPolicy>> {
    let r = realm.clone();
    admin(&api, &headers, "policy:read", Some(realm), move |a, _| {
        a.db.policy(&r, &id)
    })
    .await
    .map(Json)
}

/// Create or replace a policy or template. The realm's whole policy set is
/// validated against its schema; failures are 422 with Cedar's
/// diagnostics.
#[utoipa::path(put, path = "/v1/realms/{realm}/policies/{id}", tag = "policies",
    params(("realm" = String, Path), ("id" = String, Path)), request_body = PolicyInput,
    responses((status = 200, body = StoredPolicy), (status = "4XX", body = Problem)))]
async fn put_policy(
    State(api): St,
    headers: HeaderMap,
    Path((realm, id)): Path<(String, String)>,
    bytes: Bytes,
) -> ApiResult<Json<StoredPolicy>> {
    let input: PolicyInput = body(&bytes)?;
    let r = realm.clone();
    admin(
        &api,
        &headers,
        "policy:write",
        Some(realm),
        move |a, now| match a.db.policy(&r, &id) {
            Ok(_) => a.db.update_policy(&r, &id, &input, now),
            Err(Error::NotFound { .. }) => a.db.create_policy(&r, &id, &input, now),
            Err(e) => Err(e),
        },
    )
    .await
    .map(Json)
}

/// Delete a policy (a template with links is refused with 409).
#[utoipa::path(delete, path = "/v1/realms/{realm}/policies/{id}", tag = "policies",
    params(("realm" = String, Path), ("id" = String, Path)),
    responses((status = 204), (status = "4XX", body = Problem)))]
async fn delete_policy(
    State(api): St,
    headers: HeaderMap,
    Path((realm, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let r = realm.clone();
    admin(
        &api,
        &headers,
        "policy:delete",
        Some(realm),
        move |a, now| a.db.delete_policy(&r, &id, now),
    )
    .await
    .map(|()| StatusCode::NO_CONTENT)
}

/// The realm's template links.
#[utoipa::path(get, path = "/v1/realms/{realm}/links", tag = "policies",
    params(("realm" = String, Path)),
    responses((status = 200, body = Vec<Link>), (status = "4XX", body = Problem)))]
async fn list_links(
    State(api): St,
    headers: HeaderMap,
    Path(realm): Path<String>,
) -> ApiResult<Json<Vec<Link>>> {
    let r = realm.clone();
    admin(&api, &headers, "policy:read", Some(realm), move |a, _| {
        a.db.links(&r)
    })
    .await
    .map(Json)
}

/// Link a template (validated like a policy).
#[utoipa::path(post, path = "/v1/realms/{realm}/links", tag = "policies",
    params(("realm" = String, Path)), request_body = Link,
    responses((status = 201, body = Link), (status = "4XX", body = Problem)))]
async fn create_link(
    State(api): St,
    headers: HeaderMap,
    Path(realm): Path<String>,
    bytes: Bytes,
) -> ApiResult<(StatusCode, Json<Link>)> {
    let link: Link = body(&bytes)?;
    let r = realm.clone();
    admin(
        &api,
        &headers,
        "policy:write",
        Some(realm),
        move |a, now| a.db.create_link(&r, &link, now),
    )
    .await
    .map(|l| (StatusCode::CREATED, Json(l)))
}

/// Remove a template link.
#[utoipa::path(delete, path = "/v1/realms/{realm}/links/{id}", tag = "policies",
    params(("realm" = String, Path), ("id" = String, Path)),
    responses((status = 204), (status = "4XX", body = Problem)))]
async fn delete_link(
    State(api): St,
    headers: HeaderMap,
    Path((realm, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let r = realm.clone();
    admin(
        &api,
        &headers,
        "policy:delete",
        Some(realm),
        move |a, now| a.db.delete_link(&r, &id, now),
    )
    .await
    .map(|()| StatusCode::NO_CONTENT)
}

/// Query of `GET /v1/realms/{realm}/schema`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SchemaQuery {
    /// A past version (default: the current one).
    pub version: Option<i64>,
}

/// The realm's schema (a version of it).
#[utoipa::path(get, path = "/v1/realms/{realm}/schema", tag = "policies",
    params(("realm" = String, Path), SchemaQuery),
    responses((status = 200, body = SchemaVersion), (status = "4XX", body = Problem)))]
async fn get_schema(
    State(api): St,
    headers: HeaderMap,
    Path(realm): Path<String>,
    q: Result<Query<SchemaQuery>, QueryRejection>,
) -> ApiResult<Json<SchemaVersion>> {
    let Query(q) = q.map_err(|e| ApiError(Error::BadRequest(e.body_text())))?;
    let r = realm.clone();
    admin(&api, &headers, "schema:read", Some(realm), move |a, _| {
        a.db.schema(&r, q.version)
    })
    .await
    .map(Json)
}

/// A new schema version.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SchemaInput {
    /// Cedar schema, human form.
    pub text: String,
}

/// Replace the schema with a new version; refused (422) unless every
/// policy, entity and user still validates.
#[utoipa::path(put, path = "/v1/realms/{realm}/schema", tag = "policies",
    params(("realm" = String, Path)), request_body = SchemaInput,
    responses((status = 200, body = SchemaVersion), (status = "4XX", body = Problem)))]
async fn put_schema(
    State(api): St,
    headers: HeaderMap,
    Path(realm): Path<String>,
    bytes: Bytes,
) -> ApiResult<Json<SchemaVersion>> {
    let s: SchemaInput = body(&bytes)?;
    let r = realm.clone();
    admin(
        &api,
        &headers,
        "schema:write",
        Some(realm),
        move |a, now| a.db.put_schema(&r, &s.text, now),
    )
    .await
    .map(Json)
}

/// Replace the realm's resource entities (Cedar JSON entity list; users,
/// groups and roles are managed by their own endpoints).
#[utoipa::path(put, path = "/v1/realms/{realm}/entities", tag = "policies",
    params(("realm" = String, Path)), request_body(content = Vec<Object>),
    responses((status = 204), (status = "4XX", body = Problem)))]
async fn put_entities(
    State(api): St,
    headers: HeaderMap,
    Path(realm): Path<String>,
    bytes: Bytes,
) -> ApiResult<StatusCode> {
    let v: Value = body(&bytes)?;
    let r = realm.clone();
    admin(
        &api,
        &headers,
        "entities:write",
        Some(realm),
        move |a, now| a.db.put_resources(&r, &v, now),
    )
    .await
    .map(|()| StatusCode::NO_CONTENT)
}

// --------------------------------------------------- keys and bundles

/// The realm's token signing keys, newest first.
#[utoipa::path(get, path = "/v1/realms/{realm}/keys", tag = "keys and bundles",
    params(("realm" = String, Path)),
    responses((status = 200, body = Vec<KeyInfo>), (status = "4XX", body = Problem)))]
async fn list_keys(
    State(api): St,
    headers: HeaderMap,
    Path(realm): Path<String>,
) -> ApiResult<Json<Vec<KeyInfo>>> {
    let r = realm.clone();
    admin(&api, &headers, "realm:read", Some(realm), move |a, _| {
        a.identity.signing_keys(&r)
    })
    .await
    .map(Json)
}

/// Which algorithm a rotated-in key uses.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateKey {
    /// `EdDSA` (default) or `ES256`.
    #[serde(default)]
    pub alg: Option<Alg>,
}

/// Rotate the realm's token signing key.
#[utoipa::path(post, path = "/v1/realms/{realm}/keys", tag = "keys and bundles",
    params(("realm" = String, Path)), request_body = RotateKey,
    responses((status = 201, body = KeyInfo), (status = "4XX", body = Problem)))]
async fn rotate_key(
    State(api): St,
    headers: HeaderMap,
    Path(realm): Path<String>,
    bytes: Bytes,
) -> ApiResult<(StatusCode, Json<KeyInfo>)> {
    let k: RotateKey = if bytes.is_empty() {
        RotateKey { alg: None }
    } else {
        body(&bytes)?
    };
    let r = realm.clone();
    admin(&api, &headers, "key:rotate", Some(realm), move |a, now| {
        a.identity
            .rotate_signing_key(&r, k.alg.unwrap_or(Alg::EdDSA), now)
    })
    .await
    .map(|k| (StatusCode::CREATED, Json(k)))
}

/// Publish the realm's pending changes now.
#[utoipa::path(post, path = "/v1/realms/{realm}/bundle/publish", tag = "keys and bundles",
    params(("realm" = String, Path)),
    responses((status = 200, body = Published), (status = "4XX", body = Problem)))]
async fn publish(
    State(api): St,
    headers: HeaderMap,
    Path(realm): Path<String>,
) -> ApiResult<Json<Published>> {
    let r = realm.clone();
    admin(
        &api,
        &headers,
        "bundle:publish",
        Some(realm),
        move |a, now| a.publisher().publish(&r, now),
    )
    .await
    .map(Json)
}

/// Compact the realm's snapshot and deltas into a new snapshot.
#[utoipa::path(post, path = "/v1/realms/{realm}/bundle/compact", tag = "keys and bundles",
    params(("realm" = String, Path)),
    responses((status = 200, body = Published), (status = "4XX", body = Problem)))]
async fn compact(
    State(api): St,
    headers: HeaderMap,
    Path(realm): Path<String>,
) -> ApiResult<Json<Published>> {
    let r = realm.clone();
    admin(
        &api,
        &headers,
        "bundle:publish",
        Some(realm),
        move |a, now| a.publisher().compact(&r, now),
    )
    .await
    .map(Json)
}

/// What is published and what waits, and the key to trust.
#[utoipa::path(get, path = "/v1/realms/{realm}/bundle", tag = "keys and bundles",
    params(("realm" = String, Path)),
    responses((status = 200, body = PublishStatus), (status = "4XX", body = Problem)))]
async fn bundle_status(
    State(api): St,
    headers: HeaderMap,
    Path(realm): Path<String>,
) -> ApiResult<Json<PublishStatus>> {
    let r = realm.clone();
    admin(&api, &headers, "bundle:status", Some(realm), move |a, _| {
        a.publisher().status(&r)
    })
    .await
    .map(Json)
}

// ------------------------------------------- a realm's public endpoints

/// The realm's OpenID discovery document.
#[utoipa::path(get, path = "/realms/{realm}/.well-known/openid-configuration", tag = "identity",
    security(()), params(("realm" = String, Path)),
    responses((status = 200, body = Object), (status = "4XX", body = Problem)))]
async fn openid_configuration(State(api): St, Path(realm): Path<String>) -> ApiResult<Json<Value>> {
    public(&api, move |a, _| a.identity.openid_configuration(&realm))
        .await
        .map(Json)
}

/// The realm's JWKS (the active and the retiring signing key).
#[utoipa::path(get, path = "/realms/{realm}/.well-known/jwks.json", tag = "identity",
    security(()), params(("realm" = String, Path)),
    responses((status = 200, body = Object), (status = "4XX", body = Problem)))]
async fn jwks(State(api): St, Path(realm): Path<String>) -> ApiResult<Json<Value>> {
    public(&api, move |a, _| a.identity.jwks(&realm))
        .await
        .map(Json)
}

/// A login with username (or email) and password.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// Username or email.
    pub username: String,
    /// Password.
    pub password: String,
    /// App client id (default: the realm's first).
    #[serde(default)]
    pub client_id: Option<String>,
}

/// Log in: tokens, or a challenge to answer at `/login/challenge`.
#[utoipa::path(post, path = "/realms/{realm}/login", tag = "identity",
    security(()), params(("realm" = String, Path)), request_body = LoginRequest,
    responses((status = 200, body = LoginResult), (status = "4XX", body = Problem)))]
async fn login(
    State(api): St,
    Path(realm): Path<String>,
    bytes: Bytes,
) -> ApiResult<Json<LoginResult>> {
    let l: LoginRequest = body(&bytes)?;
    public(&api, move |a, now| {
        a.identity.login(
            &realm,
            &l.username,
            &l.password,
            l.client_id.as_deref(),
            now,
        )
    })
    .await
    .map(Json)
}

/// An answer to a login challenge, with the client it is for.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ChallengeRequest {
    /// The answer.
    #[serde(flatten)]
    pub answer: ChallengeAnswer,
    /// App client id.
    #[serde(default)]
    pub client_id: Option<String>,
}

/// Answer a login challenge (`new_password` or `code`).
#[utoipa::path(post, path = "/realms/{realm}/login/challenge", tag = "identity",
    security(()), params(("realm" = String, Path)), request_body = ChallengeAnswer,
    responses((status = 200, body = LoginResult), (status = "4XX", body = Problem)))]
async fn login_challenge(
    State(api): St,
    Path(realm): Path<String>,
    bytes: Bytes,
) -> ApiResult<Json<LoginResult>> {
    let c: ChallengeRequest = body(&bytes)?;
    public(&api, move |a, now| {
        a.identity
            .respond(&realm, &c.answer, c.client_id.as_deref(), now)
    })
    .await
    .map(Json)
}

// ------------------------------------------------------------ the app

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "An ID or access token of the admin realm (POST /realms/admin/login).",
                    ))
                    .build(),
            ),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Gatehouse control plane",
        description = "Realms, users and their lifecycle, groups, roles, Cedar policies, signing keys and bundle publishing. Every /v1 call is authorized by the admin realm's Cedar policies.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    servers((url = "/", description = "this control plane")),
    security(("admin_token" = [])),
    modifiers(&BearerAuth),
    tags(
        (name = "realms", description = "Tenants: isolated sets of users, policies, keys and bundles."),
        (name = "users", description = "Users, their lifecycle, credentials and memberships."),
        (name = "groups and roles", description = "Groups (nestable) and roles, and their assignments."),
        (name = "policies", description = "Cedar policies, templates, links, the schema and resource entities."),
        (name = "keys and bundles", description = "Token signing keys and signed bundle publishing."),
        (name = "identity", description = "A realm's public identity endpoints (no admin token)."),
    ),
)]
struct ApiDoc;

/// The router with every route, and the OpenAPI document of them.
fn routes() -> (Router<Arc<Api>>, utoipa::openapi::OpenApi) {
    let (imports, import_doc) = OpenApiRouter::new()
        .routes(routes!(import_users))
        .layer(DefaultBodyLimit::max(IMPORT_LIMIT))
        .split_for_parts();
    let (router, mut doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(list_realms, create_realm))
        .routes(routes!(get_realm, delete_realm))
        .routes(routes!(list_users, create_user))
        .routes(routes!(get_user, update_user))
        .routes(routes!(lifecycle))
        .routes(routes!(set_password))
        .routes(routes!(start_verification))
        .routes(routes!(totp_enroll, totp_remove))
        .routes(routes!(totp_confirm))
        .routes(routes!(add_user_group, remove_user_group))
        .routes(routes!(add_user_role, remove_user_role))
        .routes(routes!(list_nodes, create_node))
        .routes(routes!(get_node, update_node, delete_node))
        .routes(routes!(group_members))
        .routes(routes!(add_group_parent, remove_group_parent))
        .routes(routes!(add_group_role, remove_group_role))
        .routes(routes!(list_policies))
        .routes(routes!(get_policy, put_policy, delete_policy))
        .routes(routes!(list_links, create_link))
        .routes(routes!(delete_link))
        .routes(routes!(get_schema, put_schema))
        .routes(routes!(put_entities))
        .routes(routes!(list_keys, rotate_key))
        .routes(routes!(publish))
        .routes(routes!(compact))
        .routes(routes!(bundle_status))
        .routes(routes!(openid_configuration))
        .routes(routes!(jwks))
        .routes(routes!(login))
        .routes(routes!(login_challenge))
        .layer(DefaultBodyLimit::max(JSON_LIMIT))
        .split_for_parts();
    doc.merge(import_doc);
    (router.merge(imports), doc)
}

/// The OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes().1
}

crate::identity::redacted_debug!(SetPassword { temporary ; password });
crate::identity::redacted_debug!(TotpCode { ; code });
crate::identity::redacted_debug!(LoginRequest { username, client_id ; password });

/// The whole HTTP application.
pub fn app(api: Arc<Api>) -> Router {
    let (router, doc) = routes();
    let doc = Arc::new(doc.to_pretty_json().unwrap_or_default());
    router
        .route(
            "/openapi.json",
            get(move || {
                let doc = doc.clone();
                async move { ([(header::CONTENT_TYPE, "application/json")], (*doc).clone()) }
            }),
        )
        .route("/docs", get(|| async { Html(DOCS_PAGE) }))
        .route("/healthz", get(|| async { "ok\n" }))
        .fallback(|| async {
            ApiError(Error::NotFound {
                kind: "route",
                id: "no such endpoint".into(),
            })
        })
        .with_state(api)
}

/// The interactive docs page: reads `/openapi.json` and renders every
/// operation with a form to call it (no external scripts or styles).
const DOCS_PAGE: &str = include_str!("docs.html");
