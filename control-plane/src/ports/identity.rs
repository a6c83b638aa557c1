//! The identity-provider port: who holds a realm's credentials and
//! sessions, runs its logins, mints its tokens and says which issuer,
//! client ids and JWKS the realm's bundles carry. The provider is chosen
//! per realm ([`Identities`]), so an embedded realm and a Cognito realm
//! live side by side. The repository stays the source of truth for users,
//! their state, attributes, groups and roles.

use super::BoxFuture;
use super::repository::Tx;
use crate::domain::error::{Error, Result};
use crate::domain::realm::{NewRealm, Realm};
use crate::domain::user::User;
use pdp_core::{IdentitySettings, LifecycleAction};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

/// `Debug` that names the secret fields without showing them, so a
/// stray `{:?}` in a log line leaks nothing.
macro_rules! redacted_debug {
    ($t:ty { $($shown:ident),* ; $($hidden:ident),* }) => {
        impl std::fmt::Debug for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($t))
                    $(.field(stringify!($shown), &self.$shown))*
                    $(.field(stringify!($hidden), &"<redacted>"))*
                    .finish()
            }
        }
    };
}
pub(crate) use redacted_debug;

redacted_debug!(Tokens { token_type, expires_in ; id_token, access_token });
redacted_debug!(ChallengeAnswer { ; session, new_password, code });
redacted_debug!(VerificationCode { expires_at ; code });
redacted_debug!(TotpEnrollment { ; secret, otpauth_uri });

/// How long a challenge session lives, seconds.
pub const SESSION_TTL: i64 = 180;

/// Tokens for an authenticated user.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Tokens {
    /// ID token (`token_use: id`): who the user is.
    pub id_token: String,
    /// Access token (`token_use: access`): what the client may do.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until both expire.
    pub expires_in: i64,
}

/// A challenge the user must answer before getting tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ChallengeName {
    /// Set a new password (temporary password, or reset required).
    NewPasswordRequired,
    /// Give the current TOTP code.
    SoftwareTokenMfa,
    /// Give the code sent to the user's email.
    EmailVerification,
}

/// What a login step produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum LoginResult {
    /// Done.
    Tokens(Tokens),
    /// One more step.
    Challenge {
        /// What to answer.
        challenge: ChallengeName,
        /// Opaque, single-use; give it back with the answer.
        session: String,
    },
}

/// An answer to a challenge.
#[derive(Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChallengeAnswer {
    /// The session the challenge came with.
    pub session: String,
    /// For `NEW_PASSWORD_REQUIRED`.
    #[serde(default)]
    pub new_password: Option<String>,
    /// For `SOFTWARE_TOKEN_MFA`.
    #[serde(default)]
    pub code: Option<String>,
}

/// How long a verification code is good for, seconds.
pub const VERIFICATION_TTL: i64 = 15 * 60;

/// Wrong answers a verification code takes before it is void.
pub const VERIFICATION_ATTEMPTS: i64 = 5;

/// A verification code to deliver to the user's email (the embedded
/// backend sends no mail: the caller does).
#[derive(Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct VerificationCode {
    /// Eight digits.
    pub code: String,
    /// Unix seconds after which it is refused.
    pub expires_at: i64,
}

/// A TOTP enrolment to show the user (as a QR code of `otpauth_uri`).
#[derive(Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct TotpEnrollment {
    /// The shared secret, base32.
    pub secret: String,
    /// `otpauth://totp/...` for authenticator apps.
    pub otpauth_uri: String,
}

/// A signing algorithm for tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum Alg {
    /// Ed25519.
    EdDSA,
    /// ECDSA P-256 with SHA-256.
    ES256,
}

impl std::str::FromStr for Alg {
    type Err = Error;
    fn from_str(s: &str) -> Result<Alg> {
        match s {
            "EdDSA" => Ok(Alg::EdDSA),
            "ES256" => Ok(Alg::ES256),
            other => Err(Error::BadRequest(format!(
                "signing algorithm {other:?} is not EdDSA or ES256"
            ))),
        }
    }
}

/// A key as the API lists it (never the private part).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct KeyInfo {
    /// Key id.
    pub kid: String,
    /// Algorithm.
    pub alg: Alg,
    /// `active` (signs), `retiring` (in the JWKS), `retired`.
    pub status: String,
    /// Creation time, unix seconds.
    pub created_at: i64,
}

/// Work the provider asks to be done in the transaction that creates the
/// realm (storing its first signing key, say), so a realm never exists
/// half provisioned.
pub type Setup = Box<dyn FnOnce(&mut dyn Tx, i64) -> Result<()> + Send>;

/// What provisioning a realm at the provider produced.
pub struct Provisioned {
    /// The `iss` of the realm's tokens.
    pub issuer: String,
    /// Its app client ids.
    pub clients: Vec<String>,
    /// Work for the realm-creating transaction.
    pub setup: Option<Setup>,
}

impl std::fmt::Debug for Provisioned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provisioned")
            .field("issuer", &self.issuer)
            .field("clients", &self.clients)
            .finish_non_exhaustive()
    }
}

/// Credentials, logins, tokens and token keys of the realms it serves.
pub trait IdentityProvider: Send + Sync {
    /// The provider's name, as realms name it (`local`).
    fn name(&self) -> &'static str;
    /// Provision a new realm: its issuer, app clients and what to store.
    /// `new` says how (a remote provider may be asked to bind an existing
    /// user pool and app client instead of creating them; a provider
    /// refuses what it cannot do, and creates nothing then).
    fn provision<'a>(&'a self, new: &'a NewRealm) -> BoxFuture<'a, Result<Provisioned>>;
    /// Provisioning succeeded but the realm was not stored (a race on its
    /// name, the repository failing): undo what [`IdentityProvider::provision`]
    /// made for `new`, whose issuer came out as `issuer` (best effort).
    fn discard_realm<'a>(
        &'a self,
        new: &'a NewRealm,
        issuer: &'a str,
    ) -> BoxFuture<'a, Result<()>> {
        let _ = (new, issuer);
        Box::pin(async { Ok(()) })
    }
    /// The token settings the realm's bundles carry (issuer, audiences,
    /// JWKS); `None` while the realm has no key.
    fn token_settings<'a>(
        &'a self,
        realm: &'a Realm,
    ) -> BoxFuture<'a, Result<Option<IdentitySettings>>>;
    /// Whether the provider keeps a user directory of its own (every user
    /// must be created there through [`IdentityProvider::create_user`], so
    /// a bulk import that writes only the repository is refused).
    fn keeps_users(&self) -> bool {
        false
    }
    /// A user is about to be created (checked already, not yet stored): a
    /// provider that keeps its own user directory creates them there and
    /// may answer the id it gave them, which the user then gets (a Cognito
    /// user's `sub`, the token subject). A failure creates nothing.
    fn create_user<'a>(
        &'a self,
        realm: &'a Realm,
        user: &'a User,
    ) -> BoxFuture<'a, Result<Option<String>>> {
        let _ = (realm, user);
        Box::pin(async { Ok(None) })
    }
    /// Storing a user [`IdentityProvider::create_user`] created failed:
    /// undo it (best effort; the service logs a failure).
    fn discard_user<'a>(&'a self, realm: &'a Realm, user: &'a User) -> BoxFuture<'a, Result<()>> {
        let _ = (realm, user);
        Box::pin(async { Ok(()) })
    }
    /// Whether the realm's token settings changed outside Gatehouse since
    /// they were last given to a publish (a remote provider rotating its
    /// keys); the service then publishes them. Asked once per re-signing
    /// pass.
    fn token_settings_changed<'a>(&'a self, realm: &'a Realm) -> BoxFuture<'a, Result<bool>> {
        let _ = realm;
        Box::pin(async { Ok(false) })
    }
    /// Set a user's password (`temporary`: to be changed at next login);
    /// every session of the user ends.
    fn set_password<'a>(
        &'a self,
        realm: &'a str,
        user_id: &'a str,
        password: &'a str,
        temporary: bool,
        now: i64,
    ) -> BoxFuture<'a, Result<()>>;
    /// Start a login with a username (or email) and password.
    fn login<'a>(
        &'a self,
        realm: &'a str,
        username: &'a str,
        password: &'a str,
        client_id: Option<&'a str>,
        now: i64,
    ) -> BoxFuture<'a, Result<LoginResult>>;
    /// Answer a login challenge.
    fn respond<'a>(
        &'a self,
        realm: &'a str,
        answer: &'a ChallengeAnswer,
        client_id: Option<&'a str>,
        now: i64,
    ) -> BoxFuture<'a, Result<LoginResult>>;
    /// Send a Created or Unverified user a verification code (a Created
    /// user becomes Unverified).
    fn start_verification<'a>(
        &'a self,
        realm: &'a str,
        user_id: &'a str,
        now: i64,
    ) -> BoxFuture<'a, Result<VerificationCode>>;
    /// Issue a one-time password-reset code to a user who must reset
    /// their password (or forgot it); the caller delivers it. A provider
    /// without reset codes refuses.
    fn start_password_reset<'a>(
        &'a self,
        realm: &'a str,
        user_id: &'a str,
        now: i64,
    ) -> BoxFuture<'a, Result<VerificationCode>> {
        let _ = (realm, user_id, now);
        Box::pin(async move {
            Err(Error::Conflict(format!(
                "the {} identity provider issues no reset codes here",
                self.name()
            )))
        })
    }
    /// Set a new password with a reset code (the login names the user).
    fn confirm_password_reset<'a>(
        &'a self,
        realm: &'a str,
        login: &'a str,
        code: &'a str,
        new_password: &'a str,
        now: i64,
    ) -> BoxFuture<'a, Result<()>> {
        let _ = (realm, login, code, new_password, now);
        Box::pin(async move {
            Err(Error::Conflict(format!(
                "the {} identity provider takes no reset codes here",
                self.name()
            )))
        })
    }
    /// Start TOTP enrolment.
    fn totp_enroll<'a>(
        &'a self,
        realm: &'a str,
        user_id: &'a str,
    ) -> BoxFuture<'a, Result<TotpEnrollment>>;
    /// Confirm TOTP enrolment with a code.
    fn totp_confirm<'a>(
        &'a self,
        realm: &'a str,
        user_id: &'a str,
        code: &'a str,
        now: i64,
    ) -> BoxFuture<'a, Result<()>>;
    /// Remove a user's TOTP.
    fn totp_remove<'a>(&'a self, realm: &'a str, user_id: &'a str) -> BoxFuture<'a, Result<()>>;
    /// The realm's token signing keys, newest first.
    fn signing_keys<'a>(&'a self, realm: &'a str) -> BoxFuture<'a, Result<Vec<KeyInfo>>>;
    /// Rotate the realm's token signing key.
    fn rotate_signing_key<'a>(
        &'a self,
        realm: &'a str,
        alg: Alg,
        now: i64,
    ) -> BoxFuture<'a, Result<KeyInfo>>;
    /// The realm's OpenID discovery document.
    fn openid_configuration<'a>(&'a self, realm: &'a Realm) -> BoxFuture<'a, Result<Value>>;
    /// A user's group memberships changed and were committed: mirror them
    /// (a remote provider puts the user in exactly `user.groups`, so the
    /// group claims of its tokens agree with the directory). Decisions
    /// never depend on it: the bundle's directory names a user's groups.
    fn groups_changed<'a>(&'a self, realm: &'a str, user: &'a User) -> BoxFuture<'a, Result<()>> {
        let _ = (realm, user);
        Box::pin(async { Ok(()) })
    }
    /// Mirror a lifecycle action (a remote provider disables the user and
    /// ends their sessions on the revoking actions, enables them on the
    /// others). A revoking action was committed and published before this
    /// is called, with the user as they are now (its failure is logged and
    /// counted; the action stands); an enabling one is called
    /// before anything is committed, with the user as they were, and its
    /// failure refuses the action (nothing changes).
    fn lifecycle_applied<'a>(
        &'a self,
        realm: &'a str,
        user: &'a User,
        action: LifecycleAction,
    ) -> BoxFuture<'a, Result<()>>;
}

/// The identity providers of one control plane, by name; each realm names
/// its own.
#[derive(Clone, Default)]
pub struct Identities {
    providers: BTreeMap<&'static str, Arc<dyn IdentityProvider>>,
}

impl std::fmt::Debug for Identities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.providers.keys()).finish()
    }
}

impl Identities {
    /// A registry holding `provider` (more with [`Identities::with`]).
    pub fn new(provider: Arc<dyn IdentityProvider>) -> Identities {
        Identities::default().with(provider)
    }

    /// Add a provider under its name.
    pub fn with(mut self, provider: Arc<dyn IdentityProvider>) -> Identities {
        self.providers.insert(provider.name(), provider);
        self
    }

    /// The provider called `name`.
    pub fn get(&self, name: &str) -> Result<Arc<dyn IdentityProvider>> {
        self.providers.get(name).cloned().ok_or_else(|| {
            Error::BadRequest(format!(
                "identity provider {name:?} is not configured (have: {})",
                self.providers
                    .keys()
                    .copied()
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
    }

    /// The provider of `realm`.
    pub fn of(&self, realm: &Realm) -> Result<Arc<dyn IdentityProvider>> {
        self.get(&realm.identity)
    }
}
