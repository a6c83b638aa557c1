//! The service: the only home of the control plane's use cases. The CLI
//! and the HTTP API parse their input, call these functions and render the
//! result; neither touches a backend. Everything that must be the same from
//! every entry point lives here: the one authorization step of admin calls
//! ([`Service::authorize`]), publishing after a change (`auto_publish`),
//! the publish-before-revoke / enable-after-publish ordering with the
//! identity provider, and the withdrawal of a deleted realm.

mod admin;
pub mod copy;
mod groups;
mod import;
pub mod kek;
mod login;
pub mod metrics;
mod policies;
pub mod publish;
mod realms;
mod users;

pub use admin::Actor;

use crate::domain::admin::AdminAction;
use crate::domain::error::{Error, Result};
use crate::ports::ObjectStore;
use crate::ports::clock::Clock;
use crate::ports::identity::{Identities, IdentityProvider};
use crate::ports::repository::Repository;
use std::sync::{Arc, Mutex};

/// The settings the use cases follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The realm whose users administer the service and whose Cedar
    /// policies authorize every admin call.
    pub admin_realm: String,
    /// Publish every change as it is committed.
    pub auto_publish: bool,
    /// Compact a realm after this many deltas since its snapshot; 0 never.
    pub compact_after_deltas: u64,
    /// Key prefix inside the object store.
    pub store_prefix: String,
    /// `HEAD` is re-signed at least this often, seconds, even when nothing
    /// changed: the freshness edge hosts count (they refuse a staleness
    /// limit under 4 times this).
    pub head_resign_interval_seconds: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            admin_realm: "admin".into(),
            auto_publish: true,
            compact_after_deltas: 100,
            store_prefix: String::new(),
            head_resign_interval_seconds: pdp_core::layout::DEFAULT_RESIGN_INTERVAL_SECONDS,
        }
    }
}

/// Who is asking: the operator at the command line (who holds the
/// database and so every key: trusted), or an admin API client with the
/// bearer token it sent (decided by the admin realm's policies).
#[derive(Clone, PartialEq, Eq)]
pub enum Caller {
    /// The command line, run by whoever holds the database.
    Operator,
    /// An API client; `None` when it sent no token.
    Bearer(Option<String>),
}

impl std::fmt::Debug for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Caller::Operator => f.write_str("Operator"),
            Caller::Bearer(t) => write!(
                f,
                "Bearer({})",
                if t.is_some() { "<redacted>" } else { "none" }
            ),
        }
    }
}

/// The control plane's use cases over its ports.
pub struct Service {
    repo: Arc<dyn Repository>,
    identities: Identities,
    store: Arc<dyn ObjectStore>,
    clock: Arc<dyn Clock>,
    settings: Settings,
    admin_cache: Mutex<Option<(i64, Arc<pdp_core::Snapshot>)>>,
    metrics: metrics::Metrics,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("repo", &self.repo.describe())
            .field("identities", &self.identities)
            .field("store", &self.store.describe())
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Service {
    /// A service over these ports.
    pub fn new(
        repo: Arc<dyn Repository>,
        identities: Identities,
        store: Arc<dyn ObjectStore>,
        clock: Arc<dyn Clock>,
        settings: Settings,
    ) -> Service {
        Service {
            repo,
            identities,
            store,
            clock,
            settings,
            admin_cache: Mutex::new(None),
            metrics: metrics::Metrics::default(),
        }
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The current time by the service's clock.
    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    /// The repository (for readiness checks and tests).
    pub fn repository(&self) -> &Arc<dyn Repository> {
        &self.repo
    }

    /// The object store bundles go to.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The identity provider of a live realm.
    async fn identity_of(&self, realm: &str) -> Result<Arc<dyn IdentityProvider>> {
        let r = self.realm_record(realm).await?;
        self.identities.of(&r)
    }

    /// A live realm.
    async fn realm_record(&self, realm: &str) -> Result<crate::domain::realm::Realm> {
        let r = realm.to_owned();
        self.repo.read(move |tx| tx.realm(&r)).await
    }

    /// After a committed change of `realm`: publish it when `auto_publish`
    /// is on. A failure is logged and counted, not returned: the change is
    /// committed and the next publish carries it.
    async fn changed(&self, realm: &str) {
        if !self.settings.auto_publish {
            return;
        }
        if let Err(e) = self.publish_now(realm).await {
            tracing::warn!(realm, error = %e, "auto-publish failed");
        }
    }

    /// Count an identity provider's failure for `/metrics`.
    fn identity_result<T>(&self, r: Result<T>) -> Result<T> {
        if matches!(r, Err(Error::Identity(_))) {
            self.metrics.identity_error();
        }
        r
    }

    /// Whether the repository and the store answer (readiness).
    pub async fn ready(&self) -> Result<()> {
        self.repo.ping().await?;
        self.store
            .get("gatehouse-readiness-probe", None, 1)
            .await
            .map_err(|e| {
                self.metrics.store_error();
                Error::Store(e.to_string())
            })?;
        Ok(())
    }

    /// Authorize `action` for `caller`; see [`admin`].
    pub async fn authorize(
        &self,
        caller: &Caller,
        action: AdminAction,
        realm: Option<&str>,
    ) -> Result<Actor> {
        self.authorize_at(caller, action, realm, self.now()).await
    }
}
