//! The admin REST API (`/v1/...`), each realm's public identity endpoints
//! (`/realms/{realm}/...`: discovery, JWKS, login), operability
//! (`/healthz`, `/readyz`, `/metrics`), the OpenAPI 3.1 document generated
//! from these handlers (`/openapi.json`) and a docs page that reads it
//! (`/docs`).
//!
//! A handler parses its input, calls the [`Service`] with the [`Caller`]
//! (the bearer token the request carried) and renders the result; the
//! service authorizes every `/v1` call with the admin realm's Cedar
//! policies before anything is read or written. Errors are RFC 9457
//! problem documents ([`problem`]).

pub mod problem;

use crate::domain::error::Error;
use crate::domain::group::{Kind, NewNode, Node};
use crate::domain::import::{Format, Imported};
use crate::domain::policy::{Link, PolicyInput, SchemaVersion, StoredPolicy};
use crate::domain::realm::{NewRealm, Realm};
use crate::domain::user::{NewUser, User, UserPage, UserQuery};
use crate::ports::identity::{
    Alg, ChallengeAnswer, KeyInfo, LoginResult, TotpEnrollment, VerificationCode, redacted_debug,
};
use crate::service::publish::{PublishStatus, Published};
use crate::service::{Caller, Service};
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use pdp_core::LifecycleAction;
use problem::{ApiError, Problem};
use serde::Deserialize;
use serde::de::DeserializeOwned;
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

type St = State<Arc<Service>>;
type ApiResult<T> = Result<T, ApiError>;

/// The caller of an admin endpoint: the bearer token of its
/// `Authorization` header, if any (verified by the service).
impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Caller, Self::Rejection> {
        Ok(Caller::Bearer(bearer(&parts.headers)))
    }
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

fn query<T>(q: Result<Query<T>, QueryRejection>) -> ApiResult<T> {
    q.map(|Query(q)| q)
        .map_err(|e| ApiError(Error::BadRequest(e.body_text())))
}

fn created<T>(v: T) -> (StatusCode, Json<T>) {
    (StatusCode::CREATED, Json(v))
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
    State(s): St,
    caller: Caller,
    q: Result<Query<RealmListQuery>, QueryRejection>,
) -> ApiResult<Json<Vec<Realm>>> {
    let q = query(q)?;
    Ok(Json(s.realms(&caller, q.include_deleted).await?))
}

/// Create a realm (reference schema unless one is given), with its first
/// signing key and app client.
#[utoipa::path(post, path = "/v1/realms", tag = "realms", request_body = NewRealm,
    responses((status = 201, body = Realm), (status = "4XX", body = Problem)))]
async fn create_realm(
    State(s): St,
    caller: Caller,
    bytes: Bytes,
) -> ApiResult<(StatusCode, Json<Realm>)> {
    let new: NewRealm = body(&bytes)?;
    Ok(created(s.create_realm(&caller, &new).await?))
}

/// Show a realm.
#[utoipa::path(get, path = "/v1/realms/{realm}", tag = "realms",
    params(("realm" = String, Path)),
    responses((status = 200, body = Realm), (status = "4XX", body = Problem)))]
async fn get_realm(
    State(s): St,
    caller: Caller,
    Path(realm): Path<String>,
) -> ApiResult<Json<Realm>> {
    Ok(Json(s.realm(&caller, &realm).await?))
}

/// Soft-delete a realm: its users, policies and keys stay, invisible; a
/// last delta forbidding everything is published so decision points deny.
#[utoipa::path(delete, path = "/v1/realms/{realm}", tag = "realms",
    params(("realm" = String, Path)),
    responses((status = 200, body = Realm), (status = "4XX", body = Problem)))]
async fn delete_realm(
    State(s): St,
    caller: Caller,
    Path(realm): Path<String>,
) -> ApiResult<Json<Realm>> {
    Ok(Json(s.delete_realm(&caller, &realm).await?))
}

// ----------------------------------------------------------------- users

/// Search users by email or username prefix and by state; pages follow
/// `next`.
#[utoipa::path(get, path = "/v1/realms/{realm}/users", tag = "users",
    params(("realm" = String, Path), UserQuery),
    responses((status = 200, body = UserPage), (status = "4XX", body = Problem)))]
async fn list_users(
    State(s): St,
    caller: Caller,
    Path(realm): Path<String>,
    q: Result<Query<UserQuery>, QueryRejection>,
) -> ApiResult<Json<UserPage>> {
    let q = query(q)?;
    Ok(Json(s.search_users(&caller, &realm, &q).await?))
}

/// Create a user (state Created).
#[utoipa::path(post, path = "/v1/realms/{realm}/users", tag = "users",
    params(("realm" = String, Path)), request_body = NewUser,
    responses((status = 201, body = User), (status = "4XX", body = Problem)))]
async fn create_user(
    State(s): St,
    caller: Caller,
    Path(realm): Path<String>,
    bytes: Bytes,
) -> ApiResult<(StatusCode, Json<User>)> {
    let new: NewUser = body(&bytes)?;
    Ok(created(s.create_user(&caller, &realm, &new).await?))
}

/// Show a user.
#[utoipa::path(get, path = "/v1/realms/{realm}/users/{id}", tag = "users",
    params(("realm" = String, Path), ("id" = String, Path)),
    responses((status = 200, body = User), (status = "4XX", body = Problem)))]
async fn get_user(
    State(s): St,
    caller: Caller,
    Path((realm, id)): Path<(String, String)>,
) -> ApiResult<Json<User>> {
    Ok(Json(s.user(&caller, &realm, &id).await?))
}

/// Merge attributes into a user's (`null` removes one); validated against
/// the realm's schema.
#[utoipa::path(patch, path = "/v1/realms/{realm}/users/{id}", tag = "users",
    params(("realm" = String, Path), ("id" = String, Path)),
    request_body(content = Object, description = "attributes to set (null removes)"),
    responses((status = 200, body = User), (status = "4XX", body = Problem)))]
async fn update_user(
    State(s): St,
    caller: Caller,
    Path((realm, id)): Path<(String, String)>,
    bytes: Bytes,
) -> ApiResult<Json<User>> {
    let patch: Map<String, Value> = body(&bytes)?;
    Ok(Json(
        s.update_user_attrs(&caller, &realm, &id, &patch).await?,
    ))
}

/// Apply a lifecycle action (`invite`, `verify`, `require_password_reset`,
/// `complete_password_reset`, `suspend`, `resume`, `deactivate`, `delete`,
/// `restore`, `sign_out_everywhere`); an illegal one is 409 and changes
/// nothing.
#[utoipa::path(post, path = "/v1/realms/{realm}/users/{id}/lifecycle/{action}", tag = "users",
    params(("realm" = String, Path), ("id" = String, Path), ("action" = String, Path)),
    responses((status = 200, body = User), (status = "4XX", body = Problem)))]
async fn lifecycle(
    State(s): St,
    caller: Caller,
    Path((realm, id, action)): Path<(String, String, String)>,
) -> ApiResult<Json<User>> {
    let parsed: LifecycleAction = action.parse().map_err(|e: pdp_core::LifecycleError| {
        ApiError(Error::NotFound {
            kind: "lifecycle action",
            id: format!("{action} ({e})"),
        })
    })?;
    Ok(Json(s.lifecycle(&caller, &realm, &id, parsed).await?))
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
    State(s): St,
    caller: Caller,
    Path((realm, id)): Path<(String, String)>,
    bytes: Bytes,
) -> ApiResult<StatusCode> {
    let p: SetPassword = body(&bytes)?;
    s.set_password(&caller, &realm, &id, &p.password, p.temporary)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Start TOTP enrolment for a user (the secret is shown once).
#[utoipa::path(post, path = "/v1/realms/{realm}/users/{id}/mfa/totp", tag = "users",
    params(("realm" = String, Path), ("id" = String, Path)),
    responses((status = 201, body = TotpEnrollment), (status = "4XX", body = Problem)))]
async fn totp_enroll(
    State(s): St,
    caller: Caller,
    Path((realm, id)): Path<(String, String)>,
) -> ApiResult<(StatusCode, Json<TotpEnrollment>)> {
    Ok(created(s.totp_enroll(&caller, &realm, &id).await?))
}

/// Send a Created or Unverified user a new email verification code (a
/// Created user becomes Unverified). The control plane sends no mail: the
/// caller delivers the code; the user answers `EMAIL_VERIFICATION` with it
/// at their next login.
#[utoipa::path(post, path = "/v1/realms/{realm}/users/{id}/verification", tag = "users",
    params(("realm" = String, Path), ("id" = String, Path)),
    responses((status = 201, body = VerificationCode), (status = "4XX", body = Problem)))]
async fn start_verification(
    State(s): St,
    caller: Caller,
    Path((realm, id)): Path<(String, String)>,
) -> ApiResult<(StatusCode, Json<VerificationCode>)> {
    Ok(created(s.start_verification(&caller, &realm, &id).await?))
}

/// Issue a password-reset code to an Active user or one who must reset
/// their password. The control plane sends no mail: the caller delivers
/// the code; the user sets a new password with it at
/// `POST /realms/{realm}/password-reset`. It lives 15 minutes and dies
/// after 5 wrong answers.
#[utoipa::path(post, path = "/v1/realms/{realm}/users/{id}/password-reset", tag = "users",
    params(("realm" = String, Path), ("id" = String, Path)),
    responses((status = 201, body = VerificationCode), (status = "4XX", body = Problem)))]
async fn start_password_reset(
    State(s): St,
    caller: Caller,
    Path((realm, id)): Path<(String, String)>,
) -> ApiResult<(StatusCode, Json<VerificationCode>)> {
    Ok(created(s.start_password_reset(&caller, &realm, &id).await?))
}

/// A new password, with the reset code that allows it.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordResetRequest {
    /// Username or email.
    pub username: String,
    /// The code from `POST /v1/realms/{realm}/users/{id}/password-reset`.
    pub code: String,
    /// The new password (the realm's password rules; not the old one).
    pub new_password: String,
}

/// Set a new password with a reset code. A user who had to reset their
/// password becomes Active; any other user's sessions end.
#[utoipa::path(post, path = "/realms/{realm}/password-reset", tag = "identity",
    security(()), params(("realm" = String, Path)), request_body = PasswordResetRequest,
    responses((status = 204, description = "The new password is set"), (status = "4XX", body = Problem)))]
async fn confirm_password_reset(
    State(s): St,
    Path(realm): Path<String>,
    bytes: Bytes,
) -> ApiResult<StatusCode> {
    let r: PasswordResetRequest = body(&bytes)?;
    s.confirm_password_reset(&realm, &r.username, &r.code, &r.new_password)
        .await?;
    Ok(StatusCode::NO_CONTENT)
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
    State(s): St,
    caller: Caller,
    Path((realm, id)): Path<(String, String)>,
    bytes: Bytes,
) -> ApiResult<StatusCode> {
    let c: TotpCode = body(&bytes)?;
    s.totp_confirm(&caller, &realm, &id, &c.code).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Remove a user's TOTP.
#[utoipa::path(delete, path = "/v1/realms/{realm}/users/{id}/mfa/totp", tag = "users",
    params(("realm" = String, Path), ("id" = String, Path)),
    responses((status = 204), (status = "4XX", body = Problem)))]
async fn totp_remove(
    State(s): St,
    caller: Caller,
    Path((realm, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    s.totp_remove(&caller, &realm, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Import users, all or nothing: JSON Lines (`application/x-ndjson`) or
/// CSV (`text/csv`).
#[utoipa::path(post, path = "/v1/realms/{realm}/users/import", tag = "users",
    params(("realm" = String, Path)),
    request_body(content = String, content_type = "application/x-ndjson"),
    responses((status = 200, body = Imported), (status = "4XX", body = Problem)))]
async fn import_users(
    State(s): St,
    caller: Caller,
    headers: HeaderMap,
    Path(realm): Path<String>,
    body: axum::body::Body,
) -> ApiResult<Json<Imported>> {
    // The caller is checked before a byte of the (up to 256 MiB) body is
    // read: an unauthenticated client costs no memory.
    s.authorize(
        &caller,
        crate::domain::admin::AdminAction::UserImport,
        Some(&realm),
    )
    .await?;
    let bytes = axum::body::to_bytes(body, IMPORT_LIMIT)
        .await
        .map_err(|e| {
            ApiError(Error::BadRequest(format!(
                "import body (at most {IMPORT_LIMIT} bytes): {e}"
            )))
        })?;
    let csv = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/csv"));
    let format = if csv { Format::Csv } else { Format::JsonLines };
    Ok(Json(
        s.import_users(
            &caller,
            &realm,
            Box::new(std::io::Cursor::new(bytes)),
            format,
        )
        .await?,
    ))
}

/// Add a user to a group.
#[utoipa::path(put, path = "/v1/realms/{realm}/users/{id}/groups/{group}", tag = "users",
    params(("realm" = String, Path), ("id" = String, Path), ("group" = String, Path)),
    responses((status = 200, body = User), (status = "4XX", body = Problem)))]
async fn add_user_group(
    State(s): St,
    caller: Caller,
    Path((realm, id, group)): Path<(String, String, String)>,
) -> ApiResult<Json<User>> {
    Ok(Json(
        s.set_user_group(&caller, &realm, &id, &group, true).await?,
    ))
}

/// Remove a user from a group.
#[utoipa::path(delete, path = "/v1/realms/{realm}/users/{id}/groups/{group}", tag = "users",
    params(("realm" = String, Path), ("id" = String, Path), ("group" = String, Path)),
    responses((status = 200, body = User), (status = "4XX", body = Problem)))]
async fn remove_user_group(
    State(s): St,
    caller: Caller,
    Path((realm, id, group)): Path<(String, String, String)>,
) -> ApiResult<Json<User>> {
    Ok(Json(
        s.set_user_group(&caller, &realm, &id, &group, false)
            .await?,
    ))
}

/// Assign a role to a user.
#[utoipa::path(put, path = "/v1/realms/{realm}/users/{id}/roles/{role}", tag = "users",
    params(("realm" = String, Path), ("id" = String, Path), ("role" = String, Path)),
    responses((status = 200, body = User), (status = "4XX", body = Problem)))]
async fn add_user_role(
    State(s): St,
    caller: Caller,
    Path((realm, id, role)): Path<(String, String, String)>,
) -> ApiResult<Json<User>> {
    Ok(Json(
        s.set_user_role(&caller, &realm, &id, &role, true).await?,
    ))
}

/// Take a role from a user.
#[utoipa::path(delete, path = "/v1/realms/{realm}/users/{id}/roles/{role}", tag = "users",
    params(("realm" = String, Path), ("id" = String, Path), ("role" = String, Path)),
    responses((status = 200, body = User), (status = "4XX", body = Problem)))]
async fn remove_user_role(
    State(s): St,
    caller: Caller,
    Path((realm, id, role)): Path<(String, String, String)>,
) -> ApiResult<Json<User>> {
    Ok(Json(
        s.set_user_role(&caller, &realm, &id, &role, false).await?,
    ))
}

// -------------------------------------------------------- groups, roles

fn kind_of(segment: &str) -> ApiResult<Kind> {
    match segment {
        "groups" => Ok(Kind::Group),
        "roles" => Ok(Kind::Role),
        other => Err(ApiError(Error::not_found("collection", other))),
    }
}

/// List the realm's groups or roles (`kind`: `groups` or `roles`).
#[utoipa::path(get, path = "/v1/realms/{realm}/{kind}", tag = "groups and roles",
    params(("realm" = String, Path), ("kind" = String, Path, description = "groups or roles")),
    responses((status = 200, body = Vec<Node>), (status = "4XX", body = Problem)))]
async fn list_nodes(
    State(s): St,
    caller: Caller,
    Path((realm, kind)): Path<(String, String)>,
) -> ApiResult<Json<Vec<Node>>> {
    let kind = kind_of(&kind)?;
    Ok(Json(s.nodes(&caller, &realm, kind).await?))
}

/// Create a group or role.
#[utoipa::path(post, path = "/v1/realms/{realm}/{kind}", tag = "groups and roles",
    params(("realm" = String, Path), ("kind" = String, Path, description = "groups or roles")),
    request_body = NewNode,
    responses((status = 201, body = Node), (status = "4XX", body = Problem)))]
async fn create_node(
    State(s): St,
    caller: Caller,
    Path((realm, kind)): Path<(String, String)>,
    bytes: Bytes,
) -> ApiResult<(StatusCode, Json<Node>)> {
    let kind = kind_of(&kind)?;
    let new: NewNode = body(&bytes)?;
    Ok(created(s.create_node(&caller, &realm, kind, &new).await?))
}

/// Show a group or role.
#[utoipa::path(get, path = "/v1/realms/{realm}/{kind}/{id}", tag = "groups and roles",
    params(("realm" = String, Path), ("kind" = String, Path, description = "groups or roles"),
        ("id" = String, Path)),
    responses((status = 200, body = Node), (status = "4XX", body = Problem)))]
async fn get_node(
    State(s): St,
    caller: Caller,
    Path((realm, kind, id)): Path<(String, String, String)>,
) -> ApiResult<Json<Node>> {
    let kind = kind_of(&kind)?;
    Ok(Json(s.node(&caller, &realm, kind, &id).await?))
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
    State(s): St,
    caller: Caller,
    Path((realm, kind, id)): Path<(String, String, String)>,
    bytes: Bytes,
) -> ApiResult<Json<Node>> {
    let kind = kind_of(&kind)?;
    let patch: NodePatch = body(&bytes)?;
    Ok(Json(
        s.describe_node(&caller, &realm, kind, &id, &patch.description)
            .await?,
    ))
}

/// Delete a group or role, with every membership and assignment naming it.
#[utoipa::path(delete, path = "/v1/realms/{realm}/{kind}/{id}", tag = "groups and roles",
    params(("realm" = String, Path), ("kind" = String, Path, description = "groups or roles"),
        ("id" = String, Path)),
    responses((status = 204), (status = "4XX", body = Problem)))]
async fn delete_node(
    State(s): St,
    caller: Caller,
    Path((realm, kind, id)): Path<(String, String, String)>,
) -> ApiResult<StatusCode> {
    let kind = kind_of(&kind)?;
    s.delete_node(&caller, &realm, kind, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The users directly in a group.
#[utoipa::path(get, path = "/v1/realms/{realm}/groups/{id}/members", tag = "groups and roles",
    params(("realm" = String, Path), ("id" = String, Path)),
    responses((status = 200, body = Vec<String>), (status = "4XX", body = Problem)))]
async fn group_members(
    State(s): St,
    caller: Caller,
    Path((realm, id)): Path<(String, String)>,
) -> ApiResult<Json<Vec<String>>> {
    Ok(Json(s.group_members(&caller, &realm, &id).await?))
}

/// Nest a group in another (cycles are refused with 409).
#[utoipa::path(put, path = "/v1/realms/{realm}/groups/{id}/parents/{parent}", tag = "groups and roles",
    params(("realm" = String, Path), ("id" = String, Path), ("parent" = String, Path)),
    responses((status = 204), (status = "4XX", body = Problem)))]
async fn add_group_parent(
    State(s): St,
    caller: Caller,
    Path((realm, id, parent)): Path<(String, String, String)>,
) -> ApiResult<StatusCode> {
    s.set_group_parent(&caller, &realm, &id, &parent, true)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Un-nest a group.
#[utoipa::path(delete, path = "/v1/realms/{realm}/groups/{id}/parents/{parent}", tag = "groups and roles",
    params(("realm" = String, Path), ("id" = String, Path), ("parent" = String, Path)),
    responses((status = 204), (status = "4XX", body = Problem)))]
async fn remove_group_parent(
    State(s): St,
    caller: Caller,
    Path((realm, id, parent)): Path<(String, String, String)>,
) -> ApiResult<StatusCode> {
    s.set_group_parent(&caller, &realm, &id, &parent, false)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Give a group a role (its members, nested ones too, hold it).
#[utoipa::path(put, path = "/v1/realms/{realm}/groups/{id}/roles/{role}", tag = "groups and roles",
    params(("realm" = String, Path), ("id" = String, Path), ("role" = String, Path)),
    responses((status = 204), (status = "4XX", body = Problem)))]
async fn add_group_role(
    State(s): St,
    caller: Caller,
    Path((realm, id, role)): Path<(String, String, String)>,
) -> ApiResult<StatusCode> {
    s.set_group_role(&caller, &realm, &id, &role, true).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Take a role from a group.
#[utoipa::path(delete, path = "/v1/realms/{realm}/groups/{id}/roles/{role}", tag = "groups and roles",
    params(("realm" = String, Path), ("id" = String, Path), ("role" = String, Path)),
    responses((status = 204), (status = "4XX", body = Problem)))]
async fn remove_group_role(
    State(s): St,
    caller: Caller,
    Path((realm, id, role)): Path<(String, String, String)>,
) -> ApiResult<StatusCode> {
    s.set_group_role(&caller, &realm, &id, &role, false).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ------------------------------------------------ policies and schema

/// The realm's policies and templates.
#[utoipa::path(get, path = "/v1/realms/{realm}/policies", tag = "policies",
    params(("realm" = String, Path)),
    responses((status = 200, body = Vec<StoredPolicy>), (status = "4XX", body = Problem)))]
async fn list_policies(
    State(s): St,
    caller: Caller,
    Path(realm): Path<String>,
) -> ApiResult<Json<Vec<StoredPolicy>>> {
    Ok(Json(s.policies(&caller, &realm).await?))
}

/// Show a policy.
#[utoipa::path(get, path = "/v1/realms/{realm}/policies/{id}", tag = "policies",
    params(("realm" = String, Path), ("id" = String, Path)),
    responses((status = 200, body = StoredPolicy), (status = "4XX", body = Problem)))]
async fn get_policy(
    State(s): St,
    caller: Caller,
    Path((realm, id)): Path<(String, String)>,
) -> ApiResult<Json<StoredPolicy>> {
    Ok(Json(s.policy(&caller, &realm, &id).await?))
}

/// Create or replace a policy or template. The realm's whole policy set is
/// validated against its schema; failures are 422 with Cedar's
/// diagnostics.
#[utoipa::path(put, path = "/v1/realms/{realm}/policies/{id}", tag = "policies",
    params(("realm" = String, Path), ("id" = String, Path)), request_body = PolicyInput,
    responses((status = 200, body = StoredPolicy), (status = "4XX", body = Problem)))]
async fn put_policy(
    State(s): St,
    caller: Caller,
    Path((realm, id)): Path<(String, String)>,
    bytes: Bytes,
) -> ApiResult<Json<StoredPolicy>> {
    let input: PolicyInput = body(&bytes)?;
    Ok(Json(s.put_policy(&caller, &realm, &id, &input).await?))
}

/// Delete a policy (a template with links is refused with 409).
#[utoipa::path(delete, path = "/v1/realms/{realm}/policies/{id}", tag = "policies",
    params(("realm" = String, Path), ("id" = String, Path)),
    responses((status = 204), (status = "4XX", body = Problem)))]
async fn delete_policy(
    State(s): St,
    caller: Caller,
    Path((realm, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    s.delete_policy(&caller, &realm, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The realm's template links.
#[utoipa::path(get, path = "/v1/realms/{realm}/links", tag = "policies",
    params(("realm" = String, Path)),
    responses((status = 200, body = Vec<Link>), (status = "4XX", body = Problem)))]
async fn list_links(
    State(s): St,
    caller: Caller,
    Path(realm): Path<String>,
) -> ApiResult<Json<Vec<Link>>> {
    Ok(Json(s.links(&caller, &realm).await?))
}

/// Link a template (validated like a policy).
#[utoipa::path(post, path = "/v1/realms/{realm}/links", tag = "policies",
    params(("realm" = String, Path)), request_body = Link,
    responses((status = 201, body = Link), (status = "4XX", body = Problem)))]
async fn create_link(
    State(s): St,
    caller: Caller,
    Path(realm): Path<String>,
    bytes: Bytes,
) -> ApiResult<(StatusCode, Json<Link>)> {
    let link: Link = body(&bytes)?;
    Ok(created(s.create_link(&caller, &realm, &link).await?))
}

/// Remove a template link.
#[utoipa::path(delete, path = "/v1/realms/{realm}/links/{id}", tag = "policies",
    params(("realm" = String, Path), ("id" = String, Path)),
    responses((status = 204), (status = "4XX", body = Problem)))]
async fn delete_link(
    State(s): St,
    caller: Caller,
    Path((realm, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    s.delete_link(&caller, &realm, &id).await?;
    Ok(StatusCode::NO_CONTENT)
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
    State(s): St,
    caller: Caller,
    Path(realm): Path<String>,
    q: Result<Query<SchemaQuery>, QueryRejection>,
) -> ApiResult<Json<SchemaVersion>> {
    let q = query(q)?;
    Ok(Json(s.schema(&caller, &realm, q.version).await?))
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
    State(s): St,
    caller: Caller,
    Path(realm): Path<String>,
    bytes: Bytes,
) -> ApiResult<Json<SchemaVersion>> {
    let input: SchemaInput = body(&bytes)?;
    Ok(Json(s.put_schema(&caller, &realm, &input.text).await?))
}

/// Replace the realm's resource entities (Cedar JSON entity list; users,
/// groups and roles are managed by their own endpoints).
#[utoipa::path(put, path = "/v1/realms/{realm}/entities", tag = "policies",
    params(("realm" = String, Path)), request_body(content = Vec<Object>),
    responses((status = 204), (status = "4XX", body = Problem)))]
async fn put_entities(
    State(s): St,
    caller: Caller,
    Path(realm): Path<String>,
    bytes: Bytes,
) -> ApiResult<StatusCode> {
    let v: Value = body(&bytes)?;
    s.put_resources(&caller, &realm, &v).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The realm's forward-auth route table (`routes.json` of its bundles).
#[utoipa::path(get, path = "/v1/realms/{realm}/routes", tag = "policies",
    params(("realm" = String, Path)),
    responses((status = 200, body = Object), (status = "4XX", body = Problem)))]
async fn get_routes(
    State(s): St,
    caller: Caller,
    Path(realm): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(s.routes(&caller, &realm).await?))
}

/// Replace the realm's forward-auth route table (`{"routes": [...]}`:
/// method + path pattern -> action and resource), checked as decision
/// points check it when they load a bundle; 422 when it does not parse.
#[utoipa::path(put, path = "/v1/realms/{realm}/routes", tag = "policies",
    params(("realm" = String, Path)), request_body(content = Object),
    responses((status = 200, body = Object), (status = "4XX", body = Problem)))]
async fn put_routes(
    State(s): St,
    caller: Caller,
    Path(realm): Path<String>,
    bytes: Bytes,
) -> ApiResult<Json<Value>> {
    let v: Value = body(&bytes)?;
    Ok(Json(s.put_routes(&caller, &realm, &v).await?))
}

/// The realm's AuthZEN type names (`authzen.json` of its bundles).
#[utoipa::path(get, path = "/v1/realms/{realm}/authzen-types", tag = "policies",
    params(("realm" = String, Path)),
    responses((status = 200, body = Object), (status = "4XX", body = Problem)))]
async fn get_authzen_types(
    State(s): St,
    caller: Caller,
    Path(realm): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(s.authzen_types(&caller, &realm).await?))
}

/// Replace the realm's AuthZEN type names (`{"types": {"user": "User"}}`:
/// the names an AuthZEN client uses -> entity types of the realm's
/// schema); 422 when one does not parse or names no type of the schema.
#[utoipa::path(put, path = "/v1/realms/{realm}/authzen-types", tag = "policies",
    params(("realm" = String, Path)), request_body(content = Object),
    responses((status = 200, body = Object), (status = "4XX", body = Problem)))]
async fn put_authzen_types(
    State(s): St,
    caller: Caller,
    Path(realm): Path<String>,
    bytes: Bytes,
) -> ApiResult<Json<Value>> {
    let v: Value = body(&bytes)?;
    Ok(Json(s.put_authzen_types(&caller, &realm, &v).await?))
}

// --------------------------------------------------- keys and bundles

/// The realm's token signing keys, newest first.
#[utoipa::path(get, path = "/v1/realms/{realm}/keys", tag = "keys and bundles",
    params(("realm" = String, Path)),
    responses((status = 200, body = Vec<KeyInfo>), (status = "4XX", body = Problem)))]
async fn list_keys(
    State(s): St,
    caller: Caller,
    Path(realm): Path<String>,
) -> ApiResult<Json<Vec<KeyInfo>>> {
    Ok(Json(s.signing_keys(&caller, &realm).await?))
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
    State(s): St,
    caller: Caller,
    Path(realm): Path<String>,
    bytes: Bytes,
) -> ApiResult<(StatusCode, Json<KeyInfo>)> {
    let k: RotateKey = if bytes.is_empty() {
        RotateKey { alg: None }
    } else {
        body(&bytes)?
    };
    Ok(created(
        s.rotate_signing_key(&caller, &realm, k.alg.unwrap_or(Alg::EdDSA))
            .await?,
    ))
}

/// Publish the realm's pending changes now.
#[utoipa::path(post, path = "/v1/realms/{realm}/bundle/publish", tag = "keys and bundles",
    params(("realm" = String, Path)),
    responses((status = 200, body = Published), (status = "4XX", body = Problem)))]
async fn publish(
    State(s): St,
    caller: Caller,
    Path(realm): Path<String>,
) -> ApiResult<Json<Published>> {
    Ok(Json(s.publish(&caller, &realm).await?))
}

/// Compact the realm's snapshot and deltas into a new snapshot.
#[utoipa::path(post, path = "/v1/realms/{realm}/bundle/compact", tag = "keys and bundles",
    params(("realm" = String, Path)),
    responses((status = 200, body = Published), (status = "4XX", body = Problem)))]
async fn compact(
    State(s): St,
    caller: Caller,
    Path(realm): Path<String>,
) -> ApiResult<Json<Published>> {
    Ok(Json(s.compact(&caller, &realm).await?))
}

/// What is published and what waits, and the key to trust.
#[utoipa::path(get, path = "/v1/realms/{realm}/bundle", tag = "keys and bundles",
    params(("realm" = String, Path)),
    responses((status = 200, body = PublishStatus), (status = "4XX", body = Problem)))]
async fn bundle_status(
    State(s): St,
    caller: Caller,
    Path(realm): Path<String>,
) -> ApiResult<Json<PublishStatus>> {
    Ok(Json(s.publish_status(&caller, &realm).await?))
}

// ------------------------------------------- a realm's public endpoints

/// The realm's OpenID discovery document.
#[utoipa::path(get, path = "/realms/{realm}/.well-known/openid-configuration", tag = "identity",
    security(()), params(("realm" = String, Path)),
    responses((status = 200, body = Object), (status = "4XX", body = Problem)))]
async fn openid_configuration(State(s): St, Path(realm): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(s.openid_configuration(&realm).await?))
}

/// The realm's JWKS (the active and the retiring signing key).
#[utoipa::path(get, path = "/realms/{realm}/.well-known/jwks.json", tag = "identity",
    security(()), params(("realm" = String, Path)),
    responses((status = 200, body = Object), (status = "4XX", body = Problem)))]
async fn jwks(State(s): St, Path(realm): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(s.jwks(&realm).await?))
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
    State(s): St,
    Path(realm): Path<String>,
    bytes: Bytes,
) -> ApiResult<Json<LoginResult>> {
    let l: LoginRequest = body(&bytes)?;
    Ok(Json(
        s.login(&realm, &l.username, &l.password, l.client_id.as_deref())
            .await?,
    ))
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
    State(s): St,
    Path(realm): Path<String>,
    bytes: Bytes,
) -> ApiResult<Json<LoginResult>> {
    let c: ChallengeRequest = body(&bytes)?;
    Ok(Json(
        s.respond(&realm, &c.answer, c.client_id.as_deref()).await?,
    ))
}

// ---------------------------------------------------------- operability

async fn readyz(State(s): St) -> Response {
    match s.ready().await {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "not ready");
            (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
        }
    }
}

async fn metrics(State(s): St) -> Response {
    match s.metrics_text().await {
        Ok(text) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response(),
        Err(e) => ApiError(e).into_response(),
    }
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
        description = "Realms, users and their lifecycle, groups, roles, Cedar policies, routes, signing keys and bundle publishing. Every /v1 call is authorized by the admin realm's Cedar policies.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    servers((url = "/", description = "this control plane")),
    security(("admin_token" = [])),
    modifiers(&BearerAuth),
    tags(
        (name = "realms", description = "Tenants: isolated sets of users, policies, keys and bundles."),
        (name = "users", description = "Users, their lifecycle, credentials and memberships."),
        (name = "groups and roles", description = "Groups (nestable) and roles, and their assignments."),
        (name = "policies", description = "Cedar policies, templates, links, the schema, resource entities and forward-auth routes."),
        (name = "keys and bundles", description = "Token signing keys and signed bundle publishing."),
        (name = "identity", description = "A realm's public identity endpoints (no admin token)."),
    ),
)]
struct ApiDoc;

/// The router with every route, and the OpenAPI document of them.
fn routes() -> (Router<Arc<Service>>, utoipa::openapi::OpenApi) {
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
        .routes(routes!(start_password_reset))
        .routes(routes!(confirm_password_reset))
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
        .routes(routes!(get_routes, put_routes))
        .routes(routes!(get_authzen_types, put_authzen_types))
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

redacted_debug!(SetPassword { temporary ; password });
redacted_debug!(TotpCode { ; code });
redacted_debug!(LoginRequest { username, client_id ; password });

/// The whole HTTP application over `service`.
pub fn app(service: Arc<Service>) -> Router {
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
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(|| async {
            ApiError(Error::NotFound {
                kind: "route",
                id: "no such endpoint".into(),
            })
        })
        .layer(axum::middleware::from_fn_with_state(
            service.clone(),
            authenticated_first,
        ))
        .with_state(service)
}

/// Every admin endpoint (`/v1/...`) checks that its caller holds a token
/// the admin realm verifies before a byte of the request body is read (up
/// to 256 MiB for an import): an unauthenticated client costs no memory.
/// What the caller may do is decided later, per call.
async fn authenticated_first(
    State(s): St,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if request.uri().path().starts_with("/v1/") {
        let caller = Caller::Bearer(bearer(request.headers()));
        if let Err(e) = s.authenticate(&caller).await {
            return ApiError(e).into_response();
        }
    }
    next.run(request).await
}

/// The interactive docs page: reads `/openapi.json` and renders every
/// operation with a form to call it (no external scripts or styles).
const DOCS_PAGE: &str = include_str!("docs.html");
