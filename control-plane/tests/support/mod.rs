//! What the control plane's tests share: a service on a private database
//! and a local-directory store, with a clock the test moves.
//!
//! The database is SQLite, or — when `GATEHOUSE_TEST_POSTGRES` holds a
//! `postgres://` URL (scripts/test starts a private cluster and sets it) —
//! a schema of its own in that PostgreSQL database, so every test runs on
//! both backends unchanged.

#![allow(dead_code, reason = "each test binary uses a part of it")]

use control_plane::backend::local_identity::LocalIdentity;
use control_plane::backend::postgres::PostgresRepository;
use control_plane::backend::sqlite::SqliteRepository;
use control_plane::domain::realm::NewRealm;
use control_plane::domain::user::NewUser;
use control_plane::ports::ObjectStore;
use control_plane::ports::clock::ManualClock;
use control_plane::ports::identity::{Identities, IdentityProvider};
use control_plane::ports::repository::Repository;
use control_plane::secrets::Keyring;
use control_plane::{Caller, Service, Settings};
use rustls::pki_types::pem::PemObject as _;
use std::sync::Arc;

/// The time tests start at.
pub const NOW: i64 = 1_800_000_000;

/// The operator (the command line's caller).
pub const OP: &Caller = &Caller::Operator;

/// Realm issuers are `<ISSUER_BASE>/realms/<realm>`.
pub const ISSUER_BASE: &str = "https://cp.example";

/// The key-encryption key every test seals secrets under: a fixed one, so
/// that a second control plane on a test's database (a restart, a child
/// process, the `control-plane` binary given it as `GATEHOUSE_CP_KEK`)
/// opens the first one's secrets. A test key, in the clear on purpose.
pub const TEST_KEK: &str = "test-1:RdBHtUSM8izDlOxjlxsx4kMO6RvWoT7dOD5YIUxQP1A=";

/// Another key, for rotation tests.
pub const TEST_KEK_2: &str = "test-2:N6XqFRBjDSRd0qnTw60JsQQF5YYokP2JTF166ymzETM=";

/// The keyring of [`TEST_KEK`].
pub fn keyring() -> Arc<Keyring> {
    Arc::new(Keyring::parse(TEST_KEK).unwrap())
}

/// The variable naming the PostgreSQL database tests run on.
pub const POSTGRES: &str = "GATEHOUSE_TEST_POSTGRES";

/// The PostgreSQL URL tests run on, when there is one.
pub fn postgres_url() -> Option<String> {
    std::env::var(POSTGRES).ok().filter(|u| !u.is_empty())
}

/// A name no other test (or run) uses.
pub fn unique_name(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{prefix}_{}_{}_{}",
        std::process::id(),
        nanos % 1_000_000_000,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Where a test's repository lives: open it again from here (a restart,
/// another control plane, a child process).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Db {
    /// A private in-memory SQLite database (cannot be reopened).
    Memory,
    /// A SQLite file.
    File(std::path::PathBuf),
    /// A schema of a PostgreSQL database.
    Postgres { url: String, schema: String },
}

impl Db {
    /// A fresh database for one test: PostgreSQL when configured, else
    /// SQLite (in a file under `dir` when `file`).
    pub fn fresh(dir: &std::path::Path, file: bool) -> Db {
        match postgres_url() {
            Some(url) => Db::Postgres {
                url,
                schema: unique_name("t"),
            },
            None if file => Db::File(dir.join("cp.db")),
            None => Db::Memory,
        }
    }

    /// Open (another connection to) it, with [`TEST_KEK`].
    pub async fn open(&self) -> Arc<dyn Repository> {
        self.open_with(keyring()).await.unwrap()
    }

    /// Open (another connection to) it with these key-encryption keys.
    pub async fn open_with(
        &self,
        keyring: Arc<Keyring>,
    ) -> control_plane::Result<Arc<dyn Repository>> {
        Ok(match self {
            Db::Memory => Arc::new(SqliteRepository::open_in_memory(keyring)?),
            Db::File(path) => Arc::new(SqliteRepository::open(path, keyring)?),
            Db::Postgres { url, schema } => {
                Arc::new(PostgresRepository::connect_in_schema(url, schema, keyring).await?)
            }
        })
    }

    /// As a string for a child process (`Db::from_env_value`).
    pub fn to_env_value(&self) -> String {
        match self {
            Db::Memory => String::new(),
            Db::File(path) => format!("file\n{}", path.display()),
            Db::Postgres { url, schema } => format!("postgres\n{url}\n{schema}"),
        }
    }

    /// What `to_env_value` wrote.
    pub fn from_env_value(v: &str) -> Db {
        let parts: Vec<&str> = v.split('\n').collect();
        match parts.as_slice() {
            ["file", path] => Db::File(path.into()),
            ["postgres", url, schema] => Db::Postgres {
                url: (*url).into(),
                schema: (*schema).into(),
            },
            _ => Db::Memory,
        }
    }
}

/// A service and what it runs on.
pub struct Cp {
    pub service: Arc<Service>,
    pub clock: ManualClock,
    pub repo: Arc<dyn Repository>,
    pub store: Arc<dyn ObjectStore>,
    pub dir: tempfile::TempDir,
    /// Where `repo` lives.
    pub db: Db,
}

/// Builds the identity provider of a test's service over its repository.
pub type MakeIdentity = Box<dyn FnOnce(Arc<dyn Repository>) -> Arc<dyn IdentityProvider>>;

/// How a test wants its service.
pub struct Options {
    pub settings: Settings,
    pub file_db: bool,
    pub identity: Option<MakeIdentity>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            settings: Settings {
                auto_publish: false,
                ..Settings::default()
            },
            file_db: false,
            identity: None,
        }
    }
}

impl Cp {
    /// A service (no auto-publish) with these realms.
    pub async fn with_realms(realms: &[&str]) -> Cp {
        let cp = Cp::open(Options::default()).await;
        for r in realms {
            cp.realm(r).await;
        }
        cp
    }

    /// A service as `options` say.
    pub async fn open(options: Options) -> Cp {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::fresh(dir.path(), options.file_db);
        let repo = db.open().await;
        let store: Arc<dyn ObjectStore> =
            Arc::new(object_store::LocalDirStore::new(dir.path().join("store")));
        let clock = ManualClock::at(NOW);
        let identity = match options.identity {
            Some(f) => f(repo.clone()),
            None => Arc::new(LocalIdentity::new(repo.clone(), ISSUER_BASE, 3600)),
        };
        let service = Arc::new(Service::new(
            repo.clone(),
            Identities::new(identity),
            store.clone(),
            Arc::new(clock.clone()),
            options.settings,
        ));
        Cp {
            service,
            clock,
            repo,
            store,
            dir,
            db,
        }
    }

    /// Create a realm with the reference schema.
    pub async fn realm(&self, name: &str) {
        self.service
            .create_realm(
                OP,
                &NewRealm {
                    name: name.into(),
                    ..NewRealm::default()
                },
            )
            .await
            .unwrap();
    }

    /// Create a user with this email; its id.
    pub async fn user(&self, realm: &str, email: &str) -> String {
        self.service
            .create_user(
                OP,
                realm,
                &NewUser {
                    email: email.into(),
                    ..NewUser::default()
                },
            )
            .await
            .unwrap()
            .id
    }

    /// Another control plane on the same database (connections of its
    /// own) and store, at the same clock, with the local identity provider.
    pub async fn twin(&self, settings: Settings) -> Arc<Service> {
        assert_ne!(
            self.db,
            Db::Memory,
            "a twin needs a database it can open again"
        );
        let repo = self.db.open().await;
        let identity = Arc::new(LocalIdentity::new(repo.clone(), ISSUER_BASE, 3600));
        Arc::new(Service::new(
            repo,
            Identities::new(identity),
            self.store.clone(),
            Arc::new(self.clock.clone()),
            settings,
        ))
    }

    /// Set the clock.
    pub fn at(&self, now: i64) -> &Service {
        self.clock.set(now);
        &self.service
    }
}

impl Cp {
    /// The keyring that trusts `realm`'s bundles.
    pub async fn keyring(&self, realm: &str) -> pdp_core::Keyring {
        let pem = self.service.bundle_key(OP, realm).await.unwrap();
        let mut ring = pdp_core::Keyring::new();
        ring.add_pem(&pem).unwrap();
        ring
    }

    /// What a decision point loads from the store for `realm`.
    pub async fn published(&self, realm: &str) -> control_plane::Result<pdp_core::Snapshot> {
        let ring = self.keyring(realm).await;
        control_plane::service::publish::load_published(self.store.as_ref(), "", realm, &ring).await
    }
}

/// A store that kills the whole process (as a kill would) when a
/// publisher advances `HEAD`: just before the write (`after: false`: the
/// bundle is written, `HEAD` still names the one before), or just after
/// it succeeded (`after: true`: `HEAD` names the bundle, and the
/// publisher never marked its changes published).
#[derive(Debug)]
pub struct DiesAtHead {
    /// The store written through.
    pub inner: Arc<dyn ObjectStore>,
    /// Die after the `HEAD` write instead of before it.
    pub after: bool,
}

impl ObjectStore for DiesAtHead {
    fn get<'a>(
        &'a self,
        key: &'a str,
        if_none_match: Option<&'a str>,
        limit: u64,
    ) -> control_plane::ports::BoxFuture<
        'a,
        Result<control_plane::ports::Fetched, control_plane::ports::StoreError>,
    > {
        self.inner.get(key, if_none_match, limit)
    }
    fn put<'a>(
        &'a self,
        key: &'a str,
        bytes: &'a [u8],
        condition: control_plane::ports::Condition,
    ) -> control_plane::ports::BoxFuture<
        'a,
        Result<control_plane::ports::Put, control_plane::ports::StoreError>,
    > {
        let advancing = key.ends_with("/HEAD")
            && matches!(condition, control_plane::ports::Condition::IfMatch(_));
        if advancing && !self.after {
            std::process::abort();
        }
        Box::pin(async move {
            let put = self.inner.put(key, bytes, condition).await;
            if advancing && matches!(put, Ok(control_plane::ports::Put::Written(_))) {
                std::process::abort();
            }
            put
        })
    }
    fn list<'a>(
        &'a self,
        prefix: &'a str,
    ) -> control_plane::ports::BoxFuture<'a, Result<Vec<String>, control_plane::ports::StoreError>>
    {
        self.inner.list(prefix)
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
}

/// The URL with its query parameters replaced.
pub fn with_query(url: &str, query: &str) -> String {
    let base = url.split_once('?').map_or(url, |(b, _)| b);
    format!("{base}?{query}")
}

pub fn root_cert(url: &str) -> String {
    url.split(['?', '&'])
        .find_map(|p| p.strip_prefix("sslrootcert="))
        .expect("the test URL pins the cluster's CA")
        .to_owned()
}

/// A plain driver connection (TLS with the test CA), for what the
/// repository will not do: tamper with its schema version, read raw rows.
pub async fn raw_postgres(url: &str) -> tokio_postgres::Client {
    let ca = root_cert(url);
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(&ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let (client, conn) = tokio_postgres::connect(
        &with_query(url, "sslmode=require"),
        tokio_postgres_rustls::MakeRustlsConnect::new(config),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    client
}
