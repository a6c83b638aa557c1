//! Amazon Cognito as a realm's identity provider: realm = user pool.
//!
//! The repository stays the source of truth for users, their lifecycle
//! state, attributes, groups and roles; the pool holds credentials and
//! sessions and mints the tokens (RS256, its own keys), which decision
//! points verify with the pool's issuer and JWKS carried in the realm's
//! bundles. A realm's pool is the last path segment of its issuer
//! (`https://cognito-idp.<region>.amazonaws.com/<pool>`), and the pool id
//! starts with its region, so the realm record needs nothing more.
//!
//! No SDK type leaves this folder: errors become [`Error`] here, and
//! [`status::user_state`] is the one reading of a user's `UserStatus`.
//!
//! Whether Cognito mails new users its invitation is a realm setting kept
//! on the pool itself, as the tag `gatehouse:invitations` (`send` or
//! `suppress`; absent: suppress): the repository has no per-realm
//! identity settings yet.

pub mod status;

use crate::domain::error::{Error, Result};
use crate::domain::realm::{NewRealm, Realm};
use crate::domain::user::User;
use crate::ports::BoxFuture;
use crate::ports::identity::{
    Alg, ChallengeAnswer, ChallengeName, IdentityProvider, KeyInfo, LoginResult, Provisioned,
    Tokens, TotpEnrollment, VerificationCode,
};
use crate::ports::repository::Repository;
use aws_sdk_cognitoidentityprovider as cognito;
use aws_sdk_cognitoidentityprovider::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_cognitoidentityprovider::types::{
    AdminCreateUserConfigType, AttributeType, AuthFlowType, ChallengeNameType, DeliveryMediumType,
    ExplicitAuthFlowsType, MessageActionType, TimeUnitsType, TokenValidityUnitsType,
    UsernameConfigurationType,
};
use base64::Engine as _;
use pdp_core::{IdentitySettings, LifecycleAction, UserState};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The provider's name, as realms record it.
pub const COGNITO_IDENTITY: &str = "cognito";

/// The pool tag holding the realm's invitation setting.
const INVITATIONS_TAG: &str = "gatehouse:invitations";

/// Lifetime of the ID and access tokens of an app client Gatehouse
/// creates, minutes.
const TOKEN_MINUTES: i32 = 60;

/// Lifetime of its refresh tokens, days.
const REFRESH_DAYS: i32 = 30;

/// The Cognito provider. It connects (reads the AWS settings) at its
/// first use, so a control plane without Cognito realms never does.
pub struct CognitoIdentity {
    repo: Arc<dyn Repository>,
    endpoint_override: Option<String>,
    conn: tokio::sync::OnceCell<Conn>,
    /// The last JWKS fetched per pool: a publish while the pool's JWKS
    /// cannot be fetched carries the last one seen.
    jwks: Mutex<HashMap<String, Value>>,
}

/// The connection, made once.
struct Conn {
    client: cognito::Client,
    /// The configured region: pools of other regions are refused.
    region: String,
    /// Where the pools' well-known documents are served: the configured
    /// endpoint (`AWS_ENDPOINT_URL`, a test's moto) or Cognito's own.
    endpoint: Option<String>,
    http: reqwest::Client,
}

impl std::fmt::Debug for CognitoIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CognitoIdentity")
            .field("endpoint_override", &self.endpoint_override)
            .finish_non_exhaustive()
    }
}

impl CognitoIdentity {
    /// A provider over the standard AWS settings (credentials, region,
    /// `AWS_ENDPOINT_URL`), `endpoint` overriding the last. Reads and
    /// sends nothing until a Cognito realm needs it.
    pub fn new(repo: Arc<dyn Repository>, endpoint: Option<&str>) -> CognitoIdentity {
        CognitoIdentity {
            repo,
            endpoint_override: endpoint.map(str::to_owned),
            conn: tokio::sync::OnceCell::new(),
            jwks: Mutex::new(HashMap::new()),
        }
    }

    async fn conn(&self) -> Result<&Conn> {
        self.conn
            .get_or_try_init(|| async {
                let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
                if let Some(e) = &self.endpoint_override {
                    loader = loader.endpoint_url(e);
                }
                let config = loader.load().await;
                let region = config
                    .region()
                    .map(|r| r.as_ref().to_owned())
                    .unwrap_or_default();
                let endpoint = config
                    .endpoint_url()
                    .map(|e| e.trim_end_matches('/').to_owned());
                let http = reqwest::Client::builder()
                    .timeout(std::time::Duration::from_secs(10))
                    .build()
                    .map_err(|e| Error::Internal(format!("HTTP client: {e}")))?;
                Ok(Conn {
                    client: cognito::Client::new(&config),
                    region,
                    endpoint,
                    http,
                })
            })
            .await
    }

    async fn client(&self) -> Result<&cognito::Client> {
        Ok(&self.conn().await?.client)
    }

    /// The base URL of `pool`'s well-known documents.
    async fn pool_url(&self, pool: &str) -> Result<String> {
        Ok(match &self.conn().await?.endpoint {
            Some(e) => format!("{e}/{pool}"),
            None => format!(
                "https://cognito-idp.{}.amazonaws.com/{pool}",
                region_of(pool)
            ),
        })
    }

    /// The pool's OpenID discovery document: its `issuer` is the `iss` of
    /// the pool's tokens and its `jwks_uri` where their keys are. The one
    /// source of both (Cognito's and any stand-in's).
    async fn discovery(&self, pool: &str) -> Result<Value> {
        self.get_json(&format!(
            "{}/.well-known/openid-configuration",
            self.pool_url(pool).await?
        ))
        .await
    }

    async fn get_json(&self, url: &str) -> Result<Value> {
        let resp = self
            .conn()
            .await?
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| Error::Identity(format!("GET {url}: {e}")))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(Error::Identity(format!("GET {url}: {status}")));
        }
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| Error::Identity(format!("GET {url}: {e}")))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| Error::Identity(format!("GET {url}: not JSON: {e}")))
    }

    /// The issuer of `pool`'s tokens, checked to name the pool.
    async fn issuer(&self, pool: &str) -> Result<String> {
        let doc = self.discovery(pool).await?;
        let issuer = doc
            .get("issuer")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::Identity(format!("pool {pool}: discovery has no issuer")))?;
        if issuer.rsplit('/').next() != Some(pool) {
            return Err(Error::Identity(format!(
                "pool {pool}: discovery names issuer {issuer:?}"
            )));
        }
        Ok(issuer.to_owned())
    }

    /// The pool's JWKS as its discovery document names it now.
    async fn current_jwks(&self, pool: &str) -> Result<Value> {
        let doc = self.discovery(pool).await?;
        let uri = doc
            .get("jwks_uri")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::Identity(format!("pool {pool}: discovery has no jwks_uri")))?
            .to_owned();
        let jwks = self.get_json(&uri).await?;
        if !jwks.get("keys").is_some_and(Value::is_array) {
            return Err(Error::Identity(format!("{uri}: not a JWKS")));
        }
        Ok(jwks)
    }

    /// The pool's JWKS for a publish: the one this process last read,
    /// fetched only when it has none. Publishing (every committed change)
    /// makes no call to Cognito for it; the re-signing pass reads the
    /// pool's JWKS each round ([`IdentityProvider::token_settings_changed`])
    /// and publishes when it changed, which is how a rotation arrives.
    async fn fetch_jwks(&self, pool: &str) -> Result<Value> {
        if let Some(known) = self
            .jwks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(pool)
        {
            return Ok(known.clone());
        }
        let jwks = self.current_jwks(pool).await?;
        self.jwks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(pool.to_owned(), jwks.clone());
        Ok(jwks)
    }

    async fn check_region(&self, pool: &str) -> Result<()> {
        let region = &self.conn().await?.region;
        if region_of(pool) == region {
            Ok(())
        } else {
            Err(Error::BadRequest(format!(
                "user pool {pool:?} is not in the configured region {region:?}"
            )))
        }
    }

    /// Create a pool and an app client for `realm`; the pool is deleted
    /// again if the rest fails.
    async fn create_pool(&self, realm: &str, send_invitations: bool) -> Result<(String, String)> {
        let pool = self
            .client()
            .await?
            .create_user_pool()
            .pool_name(format!("gatehouse-{realm}"))
            .username_configuration(
                UsernameConfigurationType::builder()
                    .case_sensitive(false)
                    .build()
                    .map_err(build_error)?,
            )
            .admin_create_user_config(
                AdminCreateUserConfigType::builder()
                    .allow_admin_create_user_only(true)
                    .build(),
            )
            .user_pool_tags("gatehouse:realm", realm)
            .user_pool_tags(INVITATIONS_TAG, invitations_value(send_invitations))
            .send()
            .await
            .map_err(|e| failure("CreateUserPool", e))?;
        let pool_id = pool
            .user_pool()
            .and_then(|p| p.id())
            .ok_or_else(|| Error::Identity("CreateUserPool answered no pool id".into()))?
            .to_owned();
        let client = async {
            let units = TokenValidityUnitsType::builder()
                .access_token(TimeUnitsType::Minutes)
                .id_token(TimeUnitsType::Minutes)
                .refresh_token(TimeUnitsType::Days)
                .build();
            let out = self
                .client()
                .await?
                .create_user_pool_client()
                .user_pool_id(&pool_id)
                .client_name(format!("gatehouse-{realm}"))
                .generate_secret(false)
                .explicit_auth_flows(ExplicitAuthFlowsType::AllowUserPasswordAuth)
                .explicit_auth_flows(ExplicitAuthFlowsType::AllowRefreshTokenAuth)
                .access_token_validity(TOKEN_MINUTES)
                .id_token_validity(TOKEN_MINUTES)
                .refresh_token_validity(REFRESH_DAYS)
                .token_validity_units(units)
                .send()
                .await
                .map_err(|e| failure("CreateUserPoolClient", e))?;
            out.user_pool_client()
                .and_then(|c| c.client_id())
                .map(str::to_owned)
                .ok_or_else(|| Error::Identity("CreateUserPoolClient answered no client id".into()))
        }
        .await;
        match client {
            Ok(c) => Ok((pool_id, c)),
            Err(e) => {
                self.delete_pool(&pool_id).await;
                Err(e)
            }
        }
    }

    async fn delete_pool(&self, pool: &str) {
        let Ok(client) = self.client().await else {
            return;
        };
        if let Err(e) = client.delete_user_pool().user_pool_id(pool).send().await {
            tracing::warn!(pool, error = %failure("DeleteUserPool", e),
                "a user pool created for a realm that was not created is left behind");
        }
    }

    /// Check that `pool` and its `client` exist and that Gatehouse can log
    /// in through the client; set the invitation tag when asked.
    async fn bind_pool(&self, pool: &str, client: &str, send: Option<bool>) -> Result<()> {
        self.check_region(pool).await?;
        let described = self
            .client()
            .await?
            .describe_user_pool()
            .user_pool_id(pool)
            .send()
            .await
            .map_err(|e| match code(&e) {
                Some("ResourceNotFoundException") => Error::not_found("cognito user pool", pool),
                _ => failure("DescribeUserPool", e),
            })?;
        let c = self
            .client()
            .await?
            .describe_user_pool_client()
            .user_pool_id(pool)
            .client_id(client)
            .send()
            .await
            .map_err(|e| match code(&e) {
                Some("ResourceNotFoundException") => {
                    Error::not_found("cognito app client", format!("{pool}/{client}"))
                }
                _ => failure("DescribeUserPoolClient", e),
            })?;
        let c = c
            .user_pool_client()
            .ok_or_else(|| Error::not_found("cognito app client", format!("{pool}/{client}")))?;
        if c.client_secret().is_some() {
            return Err(Error::BadRequest(format!(
                "app client {client:?} has a secret; bind a public client (no secret)"
            )));
        }
        let flows = c.explicit_auth_flows();
        if !flows.iter().any(|f| {
            matches!(
                f,
                ExplicitAuthFlowsType::AllowUserPasswordAuth
                    | ExplicitAuthFlowsType::UserPasswordAuth
            )
        }) {
            return Err(Error::BadRequest(format!(
                "app client {client:?} does not allow USER_PASSWORD_AUTH"
            )));
        }
        if let Some(send) = send {
            let arn = described
                .user_pool()
                .and_then(|p| p.arn())
                .ok_or_else(|| Error::Identity(format!("pool {pool}: no ARN")))?;
            self.client()
                .await?
                .tag_resource()
                .resource_arn(arn)
                .tags(INVITATIONS_TAG, invitations_value(send))
                .send()
                .await
                .map_err(|e| failure("TagResource", e))?;
        }
        Ok(())
    }

    /// A live realm's user, and the realm.
    async fn user_of(&self, realm: &str, id: &str) -> Result<(Realm, User)> {
        let (r, i) = (realm.to_owned(), id.to_owned());
        self.repo
            .read(move |tx| {
                let realm = tx.realm(&r)?;
                let user = tx.user(&r, &i)?;
                Ok((realm, user))
            })
            .await
    }

    /// The app client a login uses: the one asked for, if the realm's.
    fn client_of<'r>(realm: &'r Realm, asked: Option<&'r str>) -> Result<&'r str> {
        match asked {
            Some(c) if realm.clients.iter().any(|k| k == c) => Ok(c),
            Some(c) => Err(Error::BadRequest(format!(
                "client {c:?} is not a client of realm {:?}",
                realm.name
            ))),
            None => realm.clients.first().map(String::as_str).ok_or_else(|| {
                Error::Conflict(format!("realm {:?} has no app client", realm.name))
            }),
        }
    }

    async fn login_now(
        &self,
        realm: &str,
        login: &str,
        password: &str,
        client_id: Option<&str>,
    ) -> Result<LoginResult> {
        let (r, l) = (realm.to_owned(), login.to_owned());
        let found = self
            .repo
            .read(move |tx| {
                let realm = tx.realm(&r)?;
                let user = match tx.user_id_by_login(&r, &l)? {
                    Some(id) => Some(tx.user(&r, &id)?),
                    None => None,
                };
                Ok((realm, user))
            })
            .await?;
        let (record, Some(user)) = found else {
            return Err(bad_login());
        };
        // Gatehouse's state first: a user it revoked is refused before
        // Cognito is asked (which may not have followed yet).
        refuse_revoked(&user)?;
        pool_of(&record)?;
        let client = Self::client_of(&record, client_id)?;
        // A token of the very second of a revocation is refused by every
        // decision point (`iat` must be after `tokens_valid_after`), and
        // Cognito's `iat` cannot be chosen: a login that lands in that
        // second is asked again once the second has passed.
        for _ in 0..3 {
            let out = self
                .client()
                .await?
                .initiate_auth()
                .client_id(client)
                .auth_flow(AuthFlowType::UserPasswordAuth)
                .auth_parameters("USERNAME", &user.username)
                .auth_parameters("PASSWORD", password)
                .send()
                .await
                .map_err(|e| auth_failure("InitiateAuth", e))?;
            if let Some(name) = out.challenge_name() {
                return challenge(&user, name, out.session());
            }
            let result = out
                .authentication_result()
                .ok_or_else(|| Error::Identity("InitiateAuth answered nothing".into()))?;
            let tokens = tokens_of(result)?;
            let user = self.user_of(realm, &user.id).await?.1;
            refuse_inactive(&user)?;
            match issued_at(&tokens.access_token) {
                Some(iat) if iat <= user.tokens_valid_after => {
                    let wait = (user.tokens_valid_after + 1 - iat).clamp(1, 2);
                    tokio::time::sleep(std::time::Duration::from_secs(
                        u64::try_from(wait).unwrap_or(1),
                    ))
                    .await;
                }
                _ => return Ok(LoginResult::Tokens(tokens)),
            }
        }
        Err(Error::Busy {
            what: "a login right after a revocation",
            retry_after: 1,
        })
    }

    async fn respond_now(
        &self,
        realm: &str,
        answer: &ChallengeAnswer,
        client_id: Option<&str>,
        now: i64,
    ) -> Result<LoginResult> {
        let (user_id, session) = answer.session.split_once('.').ok_or_else(|| {
            Error::Unauthenticated("the session is unknown, used or expired; log in again".into())
        })?;
        let (record, user) = self.user_of(realm, user_id).await?;
        refuse_revoked(&user)?;
        let new = answer.new_password.as_deref().ok_or_else(|| {
            Error::BadRequest("NEW_PASSWORD_REQUIRED is answered with new_password".into())
        })?;
        crate::domain::password::check(new, &[&user.username, &user.email])?;
        let client = Self::client_of(&record, client_id)?;
        let out = self
            .client()
            .await?
            .respond_to_auth_challenge()
            .client_id(client)
            .challenge_name(ChallengeNameType::NewPasswordRequired)
            .session(session)
            .challenge_responses("USERNAME", &user.username)
            .challenge_responses("NEW_PASSWORD", new)
            .send()
            .await
            .map_err(|e| auth_failure("RespondToAuthChallenge", e))?;
        // The new password is set: the transition it implies, as with the
        // embedded provider (Created -> Active needs the email verified).
        let action = match user.state {
            UserState::Created => Some(LifecycleAction::Verify),
            UserState::PasswordResetRequired => Some(LifecycleAction::CompletePasswordReset),
            _ => None,
        };
        if let Some(action) = action {
            self.lifecycle_now(&record, &user, action).await?;
            let (r, i) = (realm.to_owned(), user.id.clone());
            self.repo
                .write(move |tx| tx.lifecycle(&r, &i, action, now).map(|_| ()))
                .await?;
        }
        if let Some(name) = out.challenge_name() {
            return challenge(&user, name, out.session());
        }
        let result = out
            .authentication_result()
            .ok_or_else(|| Error::Identity("RespondToAuthChallenge answered nothing".into()))?;
        let mut tokens = tokens_of(result)?;
        // A new password ended every session (`tokens_valid_after` is now):
        // tokens of that very second would be refused by every decision
        // point, and the challenge's session is spent, so such tokens are
        // renewed with the refresh token once the second has passed.
        for _ in 0..3 {
            let user = self.user_of(realm, &user.id).await?.1;
            refuse_inactive(&user)?;
            let Some(iat) = issued_at(&tokens.access_token) else {
                return Ok(LoginResult::Tokens(tokens));
            };
            if iat > user.tokens_valid_after {
                return Ok(LoginResult::Tokens(tokens));
            }
            let Some(refresh) = result.refresh_token() else {
                break;
            };
            let wait = (user.tokens_valid_after + 1 - iat).clamp(1, 2);
            tokio::time::sleep(std::time::Duration::from_secs(
                u64::try_from(wait).unwrap_or(1),
            ))
            .await;
            let renewed = self
                .client()
                .await?
                .initiate_auth()
                .client_id(client)
                .auth_flow(AuthFlowType::RefreshTokenAuth)
                .auth_parameters("REFRESH_TOKEN", refresh)
                .send()
                .await
                .map_err(|e| auth_failure("InitiateAuth", e))?;
            let fresh = renewed
                .authentication_result()
                .ok_or_else(|| Error::Identity("InitiateAuth answered nothing".into()))?;
            tokens = tokens_of(fresh)?;
        }
        Err(Error::Busy {
            what: "a login right after a new password",
            retry_after: 1,
        })
    }

    /// Mirror a lifecycle action on the user's Cognito account.
    async fn lifecycle_now(
        &self,
        realm: &Realm,
        user: &User,
        action: LifecycleAction,
    ) -> Result<()> {
        let pool = pool_of(realm)?;
        let name = user.username.as_str();
        use LifecycleAction as A;
        match action {
            A::Suspend | A::Deactivate | A::Delete => {
                self.client()
                    .await?
                    .admin_disable_user()
                    .user_pool_id(pool)
                    .username(name)
                    .send()
                    .await
                    .map_err(|e| failure("AdminDisableUser", e))?;
                self.sign_out(pool, name).await
            }
            A::Resume | A::Restore => {
                // Enabled only if the action brings the user back to a
                // state that may sign in (restore may return to Suspended).
                let (r, i) = (realm.name.clone(), user.id.clone());
                let (state, memory) = self.repo.read(move |tx| tx.user_state(&r, &i)).await?;
                let to = state.apply(action, memory)?.to;
                if matches!(
                    to,
                    UserState::Suspended | UserState::Deactivated | UserState::Deleted
                ) {
                    return Ok(());
                }
                self.client()
                    .await?
                    .admin_enable_user()
                    .user_pool_id(pool)
                    .username(name)
                    .send()
                    .await
                    .map_err(|e| failure("AdminEnableUser", e))?;
                Ok(())
            }
            A::RequirePasswordReset => {
                self.client()
                    .await?
                    .admin_reset_user_password()
                    .user_pool_id(pool)
                    .username(name)
                    .send()
                    .await
                    .map_err(|e| failure("AdminResetUserPassword", e))?;
                self.sign_out(pool, name).await
            }
            A::SignOutEverywhere => self.sign_out(pool, name).await,
            A::Verify => {
                self.client()
                    .await?
                    .admin_update_user_attributes()
                    .user_pool_id(pool)
                    .username(name)
                    .user_attributes(attribute("email_verified", "true")?)
                    .send()
                    .await
                    .map_err(|e| failure("AdminUpdateUserAttributes", e))?;
                Ok(())
            }
            A::Invite | A::CompletePasswordReset => Ok(()),
        }
    }

    async fn sign_out(&self, pool: &str, name: &str) -> Result<()> {
        self.client()
            .await?
            .admin_user_global_sign_out()
            .user_pool_id(pool)
            .username(name)
            .send()
            .await
            .map_err(|e| failure("AdminUserGlobalSignOut", e))?;
        Ok(())
    }

    /// Whether the pool's tag asks Cognito to mail invitations, and the
    /// custom attributes the pool declares (`custom:NAME`).
    async fn pool_settings(&self, pool: &str) -> Result<(bool, Vec<String>)> {
        let out = self
            .client()
            .await?
            .describe_user_pool()
            .user_pool_id(pool)
            .send()
            .await
            .map_err(|e| failure("DescribeUserPool", e))?;
        let p = out
            .user_pool()
            .ok_or_else(|| Error::Identity(format!("pool {pool}: not described")))?;
        let send = p
            .user_pool_tags()
            .and_then(|t| t.get(INVITATIONS_TAG))
            .is_some_and(|v| v == "send");
        let custom = p
            .schema_attributes()
            .iter()
            .filter_map(|a| a.name())
            .filter_map(|n| n.strip_prefix("custom:"))
            .map(str::to_owned)
            .collect();
        Ok((send, custom))
    }
}

fn invitations_value(send: bool) -> &'static str {
    if send { "send" } else { "suppress" }
}

/// The region a pool id starts with (`us-east-1_AbC`).
fn region_of(pool: &str) -> &str {
    pool.split_once('_').map_or("", |(r, _)| r)
}

/// A Cognito realm's pool: its issuer's last path segment.
fn pool_of(realm: &Realm) -> Result<&str> {
    realm
        .issuer
        .rsplit('/')
        .next()
        .filter(|p| p.contains('_'))
        .ok_or_else(|| {
            Error::Internal(format!(
                "realm {:?}: issuer {:?} names no user pool",
                realm.name, realm.issuer
            ))
        })
}

fn bad_login() -> Error {
    Error::Unauthenticated("incorrect username or password".into())
}

/// Users Gatehouse revoked never reach Cognito's login. Their password
/// was not checked, so the refusal is the one a wrong password or an
/// unknown login gets: nobody learns from it that the account exists, or
/// its state.
fn refuse_revoked(user: &User) -> Result<()> {
    match user.state {
        UserState::Suspended | UserState::Deactivated | UserState::Deleted => Err(bad_login()),
        _ => Ok(()),
    }
}

/// Tokens only for Active users (as the embedded provider).
fn refuse_inactive(user: &User) -> Result<()> {
    match user.state {
        UserState::Active => Ok(()),
        UserState::Created => Err(Error::Forbidden(
            "user is Created: verify them or set a temporary password first".into(),
        )),
        other => Err(Error::Forbidden(format!("user is {other}"))),
    }
}

fn challenge(user: &User, name: &ChallengeNameType, session: Option<&str>) -> Result<LoginResult> {
    let session = session
        .ok_or_else(|| Error::Identity(format!("challenge {} without a session", name.as_str())))?;
    match name {
        ChallengeNameType::NewPasswordRequired => Ok(LoginResult::Challenge {
            challenge: ChallengeName::NewPasswordRequired,
            // The user's id names whom the answer is for; Cognito checks
            // that its session belongs to that user.
            session: format!("{}.{session}", user.id),
        }),
        other => Err(Error::Conflict(format!(
            "Cognito asks for challenge {}, which Gatehouse does not answer yet",
            other.as_str()
        ))),
    }
}

fn tokens_of(r: &cognito::types::AuthenticationResultType) -> Result<Tokens> {
    let missing = |what: &str| Error::Identity(format!("Cognito answered no {what}"));
    Ok(Tokens {
        id_token: r.id_token().ok_or_else(|| missing("ID token"))?.to_owned(),
        access_token: r
            .access_token()
            .ok_or_else(|| missing("access token"))?
            .to_owned(),
        token_type: "Bearer".into(),
        expires_in: i64::from(r.expires_in()),
    })
}

/// A JWT's `iat`, read without verifying (only to avoid handing out a
/// token every decision point would refuse).
fn issued_at(jwt: &str) -> Option<i64> {
    let payload = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice::<Value>(&bytes)
        .ok()?
        .get("iat")?
        .as_i64()
}

fn attribute(name: &str, value: &str) -> Result<AttributeType> {
    AttributeType::builder()
        .name(name)
        .value(value)
        .build()
        .map_err(build_error)
}

fn build_error(e: cognito::error::BuildError) -> Error {
    Error::Internal(format!("Cognito request: {e}"))
}

/// The error code Cognito answered, if it answered one.
fn code<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> Option<&str> {
    match e {
        SdkError::ServiceError(s) => s.err().code(),
        _ => None,
    }
}

/// A failed call: the caller's mistakes (a bad password, a name taken) as
/// such, throttling as `Busy`, the rest as the provider failing (503).
fn failure<E, R>(op: &str, e: SdkError<E, R>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let message = match &e {
        SdkError::ServiceError(s) => s.err().message().unwrap_or_default().to_owned(),
        other => aws_smithy_error_text(other),
    };
    match code(&e) {
        Some("InvalidPasswordException") => {
            Error::BadRequest(format!("the password is refused: {message}"))
        }
        Some("UsernameExistsException" | "AliasExistsException") => {
            Error::Conflict(format!("Cognito: {message}"))
        }
        Some("UserNotFoundException") => Error::Conflict(format!(
            "the user is not in the realm's user pool ({op}): {message}"
        )),
        Some("TooManyRequestsException" | "LimitExceededException") => Error::Busy {
            what: "Cognito",
            retry_after: 1,
        },
        Some(c) => Error::Identity(format!("{op}: {c}: {message}")),
        None => Error::Identity(format!("{op}: {message}")),
    }
}

/// A login call that failed: wrong credentials say only that.
fn auth_failure<E, R>(op: &str, e: SdkError<E, R>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match code(&e) {
        Some("NotAuthorizedException" | "UserNotFoundException") => bad_login(),
        Some("PasswordResetRequiredException") => Error::Forbidden(
            "a password reset is required: set a new password with a reset code".into(),
        ),
        Some("UserNotConfirmedException") => Error::Forbidden("user is Unverified".into()),
        Some("CodeMismatchException" | "ExpiredCodeException") => {
            Error::Unauthenticated("the session is unknown, used or expired; log in again".into())
        }
        _ => failure(op, e),
    }
}

fn aws_smithy_error_text<E, R>(e: &SdkError<E, R>) -> String
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

impl IdentityProvider for CognitoIdentity {
    fn name(&self) -> &'static str {
        COGNITO_IDENTITY
    }

    fn provision<'a>(&'a self, new: &'a NewRealm) -> BoxFuture<'a, Result<Provisioned>> {
        Box::pin(async move {
            let (pool, client, created) = match (&new.pool_id, &new.client_id) {
                (Some(pool), Some(client)) => {
                    self.bind_pool(pool, client, new.send_invitations).await?;
                    (pool.clone(), client.clone(), false)
                }
                (None, None) => {
                    let send = new.send_invitations.unwrap_or(false);
                    let (p, c) = self.create_pool(&new.name, send).await?;
                    (p, c, true)
                }
                _ => {
                    return Err(Error::BadRequest(
                        "binding a user pool takes both pool_id and client_id".into(),
                    ));
                }
            };
            match self.issuer(&pool).await {
                Ok(issuer) => Ok(Provisioned {
                    issuer,
                    clients: vec![client],
                    setup: None,
                }),
                Err(e) => {
                    if created {
                        self.delete_pool(&pool).await;
                    }
                    Err(e)
                }
            }
        })
    }

    /// A pool Gatehouse created for the realm is deleted; a bound one is
    /// left as it was.
    fn discard_realm<'a>(
        &'a self,
        new: &'a NewRealm,
        issuer: &'a str,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            if new.pool_id.is_none()
                && let Some(pool) = issuer.rsplit('/').next()
            {
                self.delete_pool(pool).await;
            }
            Ok(())
        })
    }

    fn token_settings<'a>(
        &'a self,
        realm: &'a Realm,
    ) -> BoxFuture<'a, Result<Option<IdentitySettings>>> {
        Box::pin(async move {
            let pool = pool_of(realm)?;
            let jwks = self.fetch_jwks(pool).await?;
            Ok(Some(IdentitySettings {
                issuer: realm.issuer.clone(),
                audiences: realm.clients.clone(),
                token_use: vec![],
                jwks,
                leeway_seconds: None,
            }))
        })
    }

    fn keeps_users(&self) -> bool {
        true
    }

    /// Compares the pool's JWKS now with the one this process last read
    /// and keeps the new one for the publish that follows; a process that
    /// has read none says changed (one publish per realm after a start,
    /// instead of missing a rotation that happened while no control plane
    /// ran).
    fn token_settings_changed<'a>(&'a self, realm: &'a Realm) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let pool = pool_of(realm)?;
            let now = self.current_jwks(pool).await?;
            let mut cache = self.jwks.lock().unwrap_or_else(|p| p.into_inner());
            let changed = cache.get(pool) != Some(&now);
            if changed {
                cache.insert(pool.to_owned(), now);
            }
            Ok(changed)
        })
    }

    fn create_user<'a>(
        &'a self,
        realm: &'a Realm,
        user: &'a User,
    ) -> BoxFuture<'a, Result<Option<String>>> {
        Box::pin(async move {
            let pool = pool_of(realm)?;
            let (send, custom) = self.pool_settings(pool).await?;
            let mut req = self
                .client()
                .await?
                .admin_create_user()
                .user_pool_id(pool)
                .username(&user.username)
                .user_attributes(attribute("email", &user.email)?)
                .user_attributes(attribute("email_verified", "false")?);
            // Attributes the pool declares go with the user (the
            // repository keeps them all: bundles carry them from there).
            for (name, value) in &user.attrs {
                if custom.iter().any(|c| c == name) {
                    let text = match value {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    req = req.user_attributes(attribute(&format!("custom:{name}"), &text)?);
                }
            }
            req = if send {
                req.desired_delivery_mediums(DeliveryMediumType::Email)
            } else {
                req.message_action(MessageActionType::Suppress)
            };
            let out = req
                .send()
                .await
                .map_err(|e| failure("AdminCreateUser", e))?;
            let created = out
                .user()
                .ok_or_else(|| Error::Identity("AdminCreateUser answered no user".into()))?;
            if let Some(status) = created.user_status() {
                let state = status::user_state(status, created.enabled())?;
                if state != UserState::Created {
                    tracing::warn!(realm = %realm.name, user = %user.username, %state,
                        "Cognito created a user in another state than Created");
                }
            }
            let sub = created
                .attributes()
                .iter()
                .find(|a| a.name() == "sub")
                .and_then(|a| a.value())
                .ok_or_else(|| Error::Identity("AdminCreateUser answered no sub".into()))?;
            Ok(Some(sub.to_owned()))
        })
    }

    fn discard_user<'a>(&'a self, realm: &'a Realm, user: &'a User) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.client()
                .await?
                .admin_delete_user()
                .user_pool_id(pool_of(realm)?)
                .username(&user.username)
                .send()
                .await
                .map_err(|e| failure("AdminDeleteUser", e))?;
            Ok(())
        })
    }

    fn set_password<'a>(
        &'a self,
        realm: &'a str,
        user_id: &'a str,
        password: &'a str,
        temporary: bool,
        now: i64,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let (record, user) = self.user_of(realm, user_id).await?;
            crate::domain::password::check(password, &[&user.username, &user.email])?;
            let pool = pool_of(&record)?;
            self.client()
                .await?
                .admin_set_user_password()
                .user_pool_id(pool)
                .username(&user.username)
                .password(password)
                .permanent(!temporary)
                .send()
                .await
                .map_err(|e| failure("AdminSetUserPassword", e))?;
            // A changed password ends every session: issued tokens at
            // decision points (committed first, published by the service),
            // then refresh tokens at Cognito.
            let (r, u) = (realm.to_owned(), user_id.to_owned());
            self.repo
                .write(move |tx| {
                    match tx.lifecycle(&r, &u, LifecycleAction::SignOutEverywhere, now) {
                        Ok(_) | Err(Error::Lifecycle(_)) => Ok(()),
                        Err(e) => Err(e),
                    }
                })
                .await?;
            self.sign_out(pool, &user.username).await
        })
    }

    fn login<'a>(
        &'a self,
        realm: &'a str,
        username: &'a str,
        password: &'a str,
        client_id: Option<&'a str>,
        _now: i64,
    ) -> BoxFuture<'a, Result<LoginResult>> {
        Box::pin(self.login_now(realm, username, password, client_id))
    }

    fn respond<'a>(
        &'a self,
        realm: &'a str,
        answer: &'a ChallengeAnswer,
        client_id: Option<&'a str>,
        now: i64,
    ) -> BoxFuture<'a, Result<LoginResult>> {
        Box::pin(self.respond_now(realm, answer, client_id, now))
    }

    fn start_verification<'a>(
        &'a self,
        _realm: &'a str,
        _user_id: &'a str,
        _now: i64,
    ) -> BoxFuture<'a, Result<VerificationCode>> {
        Box::pin(async {
            Err(Error::Conflict(
                "the cognito identity provider sends no verification codes through Gatehouse yet"
                    .into(),
            ))
        })
    }

    fn totp_enroll<'a>(&'a self, _: &'a str, _: &'a str) -> BoxFuture<'a, Result<TotpEnrollment>> {
        Box::pin(async { Err(not_yet("TOTP enrolment")) })
    }

    fn totp_confirm<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
        _: &'a str,
        _: i64,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async { Err(not_yet("TOTP enrolment")) })
    }

    fn totp_remove<'a>(&'a self, _: &'a str, _: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async { Err(not_yet("TOTP removal")) })
    }

    /// Cognito keeps a pool's signing keys; Gatehouse holds none.
    fn signing_keys<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<Vec<KeyInfo>>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    fn rotate_signing_key<'a>(
        &'a self,
        _: &'a str,
        _: Alg,
        _: i64,
    ) -> BoxFuture<'a, Result<KeyInfo>> {
        Box::pin(async {
            Err(Error::Conflict(
                "Cognito rotates a user pool's keys itself; the next publish carries its JWKS"
                    .into(),
            ))
        })
    }

    fn openid_configuration<'a>(&'a self, realm: &'a Realm) -> BoxFuture<'a, Result<Value>> {
        Box::pin(async move { self.discovery(pool_of(realm)?).await })
    }

    fn lifecycle_applied<'a>(
        &'a self,
        realm: &'a str,
        user: &'a User,
        action: LifecycleAction,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let r = realm.to_owned();
            let record = self.repo.read(move |tx| tx.realm(&r)).await?;
            self.lifecycle_now(&record, user, action).await
        })
    }

    fn groups_changed<'a>(&'a self, realm: &'a str, user: &'a User) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let r = realm.to_owned();
            let record = self.repo.read(move |tx| tx.realm(&r)).await?;
            self.mirror_groups(&record, user).await
        })
    }
}

impl CognitoIdentity {
    /// Put the user in exactly `user.groups` of the realm's pool, creating
    /// a group the pool lacks.
    async fn mirror_groups(&self, realm: &Realm, user: &User) -> Result<()> {
        let pool = pool_of(realm)?;
        let name = user.username.as_str();
        let client = self.client().await?;
        let mut have = std::collections::BTreeSet::new();
        let mut next: Option<String> = None;
        loop {
            let page = client
                .admin_list_groups_for_user()
                .user_pool_id(pool)
                .username(name)
                .set_next_token(next.take())
                .send()
                .await
                .map_err(|e| failure("AdminListGroupsForUser", e))?;
            have.extend(
                page.groups()
                    .iter()
                    .filter_map(|g| g.group_name().map(str::to_owned)),
            );
            match page.next_token() {
                Some(t) => next = Some(t.to_owned()),
                None => break,
            }
        }
        let want: std::collections::BTreeSet<String> = user.groups.iter().cloned().collect();
        for group in want.difference(&have) {
            match client
                .create_group()
                .user_pool_id(pool)
                .group_name(group)
                .send()
                .await
            {
                Ok(_) => {}
                Err(e) if code(&e) == Some("GroupExistsException") => {}
                Err(e) => return Err(failure("CreateGroup", e)),
            }
            client
                .admin_add_user_to_group()
                .user_pool_id(pool)
                .username(name)
                .group_name(group)
                .send()
                .await
                .map_err(|e| failure("AdminAddUserToGroup", e))?;
        }
        for group in have.difference(&want) {
            client
                .admin_remove_user_from_group()
                .user_pool_id(pool)
                .username(name)
                .group_name(group)
                .send()
                .await
                .map_err(|e| failure("AdminRemoveUserFromGroup", e))?;
        }
        Ok(())
    }
}

fn not_yet(what: &str) -> Error {
    Error::Conflict(format!(
        "{what} is not available with the cognito identity provider yet"
    ))
}
