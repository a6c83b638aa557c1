//! The shared repository: PostgreSQL, for several control planes on one
//! database (Amazon RDS / Aurora in production).
//!
//! Concurrency, and why it is done this way: every write transaction runs
//! at `READ COMMITTED` and, before it first touches a realm, takes that
//! realm's transaction-scoped advisory lock (`pg_advisory_xact_lock`). So
//! the writers of one realm run one after another, across every control
//! plane, exactly as on SQLite's single write lock — but per realm — and
//! each of their statements sees everything committed before it. That
//! makes the check-then-write rules of the domain (email and username
//! uniqueness, the lifecycle table, group cycles, login throttling) hold
//! without retry loops: a serializable transaction that failed would have
//! to be re-run, and a unit of work is a closure that runs once. The
//! change log's sequence numbers are drawn under the same lock, so within
//! a realm they commit in order, and "everything up to `upto`" never skips
//! a change still in flight. Reads run as `REPEATABLE READ READ ONLY`: one
//! consistent snapshot. Unique constraints back the checks all the same.
//!
//! Publishing is serialised per realm by a session-scoped advisory lock
//! ([`Repository::lock_publisher`]), held on one connection kept for
//! publisher locks alone (`locks`); a control plane that dies while
//! holding one loses that connection, and the server releases its locks
//! at once.
//!
//! The unit of work is synchronous (see `ports::repository`): it runs in
//! place on a multi-threaded runtime (`block_in_place`), on the blocking
//! pool otherwise, and waits for each statement on the runtime's handle.
//! Statements are prepared once per connection (`prepare_cached`). No
//! `tokio_postgres` type leaves this folder.

mod locks;
mod tls;
mod tx;

use super::blocking;
use crate::domain::error::{Error, Result};
use crate::ports::BoxFuture;
use crate::ports::repository::{Mode, PublisherLock, Repository, Work};
use crate::secrets::Keyring;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use std::any::Any;
use std::time::Duration;
use tokio_postgres::IsolationLevel;

/// The schema, applied in order; `gatehouse_schema.version` records how
/// many ran. The SQLite schema with PostgreSQL's types: `BIGINT` for every
/// integer the domain keeps as `i64`, `BYTEA` for bytes, `TEXT` for JSON
/// (stored byte for byte as written, so bundles are the same from both),
/// and every text column in byte order (`COLLATE "C"`), as SQLite sorts.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE realms (
    name          TEXT COLLATE "C" PRIMARY KEY,
    display_name  TEXT COLLATE "C" NOT NULL,
    issuer        TEXT COLLATE "C" NOT NULL,
    clients       TEXT COLLATE "C" NOT NULL,
    identity      TEXT COLLATE "C" NOT NULL DEFAULT 'local',
    bundle_key    BYTEA NOT NULL,
    version       BIGINT NOT NULL DEFAULT 0,
    created_at    BIGINT NOT NULL,
    deleted_at    BIGINT
);
CREATE TABLE users (
    realm               TEXT COLLATE "C" NOT NULL REFERENCES realms(name),
    id                  TEXT COLLATE "C" NOT NULL,
    username            TEXT COLLATE "C" NOT NULL,
    username_lc         TEXT COLLATE "C" NOT NULL,
    email               TEXT COLLATE "C" NOT NULL,
    email_lc            TEXT COLLATE "C" NOT NULL,
    state               TEXT COLLATE "C" NOT NULL,
    suspended_from      TEXT COLLATE "C",
    deleted_from        TEXT COLLATE "C",
    attrs               TEXT COLLATE "C" NOT NULL,
    tokens_valid_after  BIGINT NOT NULL,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL,
    PRIMARY KEY (realm, id),
    UNIQUE (realm, email_lc),
    UNIQUE (realm, username_lc)
);
CREATE INDEX users_state ON users (realm, state, id);
CREATE TABLE groups (
    realm        TEXT COLLATE "C" NOT NULL REFERENCES realms(name),
    id           TEXT COLLATE "C" NOT NULL,
    description  TEXT COLLATE "C" NOT NULL,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (realm, id)
);
CREATE TABLE roles (
    realm        TEXT COLLATE "C" NOT NULL REFERENCES realms(name),
    id           TEXT COLLATE "C" NOT NULL,
    description  TEXT COLLATE "C" NOT NULL,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (realm, id)
);
CREATE TABLE user_groups (
    realm     TEXT COLLATE "C" NOT NULL,
    user_id   TEXT COLLATE "C" NOT NULL,
    group_id  TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (realm, user_id, group_id),
    FOREIGN KEY (realm, user_id) REFERENCES users(realm, id),
    FOREIGN KEY (realm, group_id) REFERENCES groups(realm, id)
);
CREATE INDEX user_groups_group ON user_groups (realm, group_id);
CREATE TABLE user_roles (
    realm    TEXT COLLATE "C" NOT NULL,
    user_id  TEXT COLLATE "C" NOT NULL,
    role_id  TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (realm, user_id, role_id),
    FOREIGN KEY (realm, user_id) REFERENCES users(realm, id),
    FOREIGN KEY (realm, role_id) REFERENCES roles(realm, id)
);
CREATE INDEX user_roles_role ON user_roles (realm, role_id);
CREATE TABLE group_parents (
    realm      TEXT COLLATE "C" NOT NULL,
    group_id   TEXT COLLATE "C" NOT NULL,
    parent_id  TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (realm, group_id, parent_id),
    FOREIGN KEY (realm, group_id) REFERENCES groups(realm, id),
    FOREIGN KEY (realm, parent_id) REFERENCES groups(realm, id)
);
CREATE TABLE group_roles (
    realm     TEXT COLLATE "C" NOT NULL,
    group_id  TEXT COLLATE "C" NOT NULL,
    role_id   TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (realm, group_id, role_id),
    FOREIGN KEY (realm, group_id) REFERENCES groups(realm, id),
    FOREIGN KEY (realm, role_id) REFERENCES roles(realm, id)
);
CREATE TABLE policies (
    realm       TEXT COLLATE "C" NOT NULL REFERENCES realms(name),
    id          TEXT COLLATE "C" NOT NULL,
    template    BOOLEAN NOT NULL,
    body        TEXT COLLATE "C" NOT NULL,
    description TEXT COLLATE "C" NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (realm, id)
);
CREATE TABLE template_links (
    realm        TEXT COLLATE "C" NOT NULL,
    id           TEXT COLLATE "C" NOT NULL,
    template_id  TEXT COLLATE "C" NOT NULL,
    slots        TEXT COLLATE "C" NOT NULL,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (realm, id),
    FOREIGN KEY (realm, template_id) REFERENCES policies(realm, id)
);
CREATE TABLE schemas (
    realm       TEXT COLLATE "C" NOT NULL REFERENCES realms(name),
    version     BIGINT NOT NULL,
    text        TEXT COLLATE "C" NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (realm, version)
);
CREATE TABLE resources (
    realm     TEXT COLLATE "C" PRIMARY KEY REFERENCES realms(name),
    entities  TEXT COLLATE "C" NOT NULL
);
CREATE TABLE routes (
    realm  TEXT COLLATE "C" PRIMARY KEY REFERENCES realms(name),
    body   BYTEA NOT NULL
);
CREATE TABLE changes (
    seq            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    realm          TEXT COLLATE "C" NOT NULL,
    user_id        TEXT COLLATE "C",
    at             BIGINT NOT NULL
);
CREATE INDEX changes_realm ON changes (realm, seq);
CREATE TABLE signing_keys (
    realm       TEXT COLLATE "C" NOT NULL REFERENCES realms(name),
    kid         TEXT COLLATE "C" NOT NULL,
    key         TEXT COLLATE "C" NOT NULL,
    public_jwk  TEXT COLLATE "C" NOT NULL,
    retired     BOOLEAN NOT NULL DEFAULT FALSE,
    created_at  BIGINT NOT NULL,
    seq         BIGINT GENERATED ALWAYS AS IDENTITY,
    PRIMARY KEY (realm, kid)
);
CREATE TABLE published (
    realm       TEXT COLLATE "C" PRIMARY KEY,
    revision    BIGINT NOT NULL,
    at          BIGINT NOT NULL
);
CREATE TABLE credentials (
    realm                  TEXT COLLATE "C" NOT NULL,
    user_id                TEXT COLLATE "C" NOT NULL,
    password_hash          TEXT COLLATE "C",
    new_password_required  BOOLEAN NOT NULL DEFAULT FALSE,
    totp_secret            TEXT COLLATE "C",
    totp_confirmed         BOOLEAN NOT NULL DEFAULT FALSE,
    totp_last_step         BIGINT NOT NULL DEFAULT 0,
    verify_code_hash       TEXT COLLATE "C",
    verify_expires         BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (realm, user_id),
    FOREIGN KEY (realm, user_id) REFERENCES users(realm, id)
);
CREATE TABLE login_throttle (
    realm        TEXT COLLATE "C" NOT NULL,
    username_lc  TEXT COLLATE "C" NOT NULL,
    record       TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (realm, username_lc)
);
CREATE TABLE login_sessions (
    id          TEXT COLLATE "C" PRIMARY KEY,
    realm       TEXT COLLATE "C" NOT NULL,
    user_id     TEXT COLLATE "C" NOT NULL,
    challenge   TEXT COLLATE "C" NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX login_sessions_expiry ON login_sessions (expires_at);
"#,
    r#"
-- A verification code takes a bounded number of wrong answers.
ALTER TABLE credentials ADD COLUMN verify_attempts BIGINT NOT NULL DEFAULT 0;
"#,
    r#"
-- Secrets at rest are sealed under a key-encryption key (crate::secrets):
-- realms.bundle_key, signing_keys.key and credentials.totp_secret hold
-- envelopes. Values an older build stored in clear are sealed by the pass
-- every connect makes after migrating; the new version keeps older builds,
-- which would write clear values, out.
CREATE TABLE IF NOT EXISTS secrets_at_rest (format TEXT NOT NULL);
INSERT INTO secrets_at_rest (format)
    SELECT 'ghs1' WHERE NOT EXISTS (SELECT 1 FROM secrets_at_rest);
"#,
    r#"
-- Realms may carry AuthZEN type names (a PEP's `user` -> `User`).
CREATE TABLE authzen_types (
    realm  TEXT COLLATE "C" PRIMARY KEY REFERENCES realms(name),
    body   BYTEA NOT NULL
);
"#,
    r#"
-- What a delta carries, recorded before it is written: a publisher that
-- adopts a dead one's delta marks exactly those changes published.
CREATE TABLE publish_intents (
    realm     TEXT COLLATE "C" NOT NULL,
    revision  BIGINT NOT NULL,
    upto      BIGINT NOT NULL,
    PRIMARY KEY (realm, revision)
);
"#,
];

/// Advisory-lock namespaces (the first key of the two-key form).
const LOCK_MIGRATE: i32 = 0x4748_0001;
const LOCK_REALM_WRITE: i32 = 0x4748_0002;
const LOCK_PUBLISH: i32 = 0x4748_0003;

/// How many connections one control plane keeps at most.
const POOL_SIZE: usize = 16;
/// How long a unit of work waits for a free connection.
const POOL_WAIT: Duration = Duration::from_secs(10);

/// The PostgreSQL repository: a pool of connections to one database.
#[derive(Clone)]
pub struct PostgresRepository {
    pool: Pool,
    locks: locks::Locks,
    describe: String,
    /// The schema the tables are in (the scope of advisory locks).
    scope: std::sync::Arc<str>,
    /// The key-encryption keys secrets are sealed under.
    keyring: std::sync::Arc<Keyring>,
}

impl std::fmt::Debug for PostgresRepository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresRepository")
            .field("db", &self.describe)
            .finish_non_exhaustive()
    }
}

/// A driver error as the control plane's (the message names the SQLSTATE).
pub(crate) fn pg_err(e: tokio_postgres::Error) -> Error {
    match e.as_db_error() {
        Some(db) => Error::Repository(format!("postgres {}: {}", db.code().code(), db.message())),
        None => {
            // The driver's message names the step; its sources say why
            // (an untrusted certificate, a refused connection).
            let mut message = format!("postgres: {e}");
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                message.push_str(&format!(": {s}"));
                source = s.source();
            }
            Error::Repository(message)
        }
    }
}

/// `.pg()?` turns a driver result into the control plane's.
pub(crate) trait Pg<T> {
    /// Map the error.
    fn pg(self) -> Result<T>;
}

impl<T> Pg<T> for std::result::Result<T, tokio_postgres::Error> {
    fn pg(self) -> Result<T> {
        self.map_err(pg_err)
    }
}

/// The two advisory-lock keys of a name within a namespace. Advisory
/// locks are per database; `scope` (the schema the tables live in) keeps
/// two Gatehouse schemas in one database from contending.
fn lock_key(namespace: i32, scope: &str, name: &str) -> (i32, i32) {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(scope.as_bytes());
    h.update([0]);
    h.update(name.as_bytes());
    let h = h.finalize();
    (namespace, i32::from_be_bytes([h[0], h[1], h[2], h[3]]))
}

impl PostgresRepository {
    /// Connect to the database `url` names (`postgres://user:pass@host:port/db?sslmode=..`,
    /// plus `sslrootcert=PATH` for a private CA) and bring its schema up
    /// to date, then seal any secret still stored in clear; refuses a
    /// schema newer than this build knows. Secrets are sealed and opened
    /// with `keyring`.
    pub async fn connect(
        url: &str,
        keyring: std::sync::Arc<Keyring>,
    ) -> Result<PostgresRepository> {
        PostgresRepository::connect_in(url, None, keyring).await
    }

    /// Like [`PostgresRepository::connect`], with the tables in a schema of
    /// their own (created if missing): several independent repositories
    /// in one database (tests, benchmarks).
    pub async fn connect_in_schema(
        url: &str,
        schema: &str,
        keyring: std::sync::Arc<Keyring>,
    ) -> Result<PostgresRepository> {
        if schema.is_empty()
            || !schema
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(Error::BadRequest(format!(
                "schema {schema:?}: lowercase letters, digits and _ only"
            )));
        }
        PostgresRepository::connect_in(url, Some(schema), keyring).await
    }

    async fn connect_in(
        url: &str,
        schema: Option<&str>,
        keyring: std::sync::Arc<Keyring>,
    ) -> Result<PostgresRepository> {
        let mut repo = PostgresRepository::open(url, schema, keyring)?;
        let client = repo.client().await?;
        if let Some(schema) = schema {
            // `IF NOT EXISTS` is not safe against a concurrent creation:
            // two control planes starting together may both try, and the
            // loser gets a unique violation on the catalog. The schema is
            // there either way.
            if let Err(e) = client
                .batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
                .await
            {
                let raced = matches!(
                    e.code(),
                    Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION)
                        | Some(&tokio_postgres::error::SqlState::DUPLICATE_SCHEMA)
                );
                if !raced {
                    return Err(pg_err(e));
                }
            }
        }
        let scope: Option<String> = client
            .query_one("SELECT current_schema()", &[])
            .await
            .pg()?
            .try_get(0)
            .pg()?;
        let scope = scope.ok_or_else(|| {
            Error::Repository(format!(
                "{}: no schema to create tables in (search_path)",
                repo.describe
            ))
        })?;
        drop(client);
        repo.scope = scope.into();
        // The development flag's throwaway KEK opens only a database this
        // process created: one that existed before is refused before
        // anything is written to it, migrations included (the pass below
        // writes nothing under that KEK; it only refuses).
        if repo.keyring.is_ephemeral() && repo.schema_version().await? > 0 {
            (&repo as &dyn Repository)
                .write(|tx| tx.reseal_secrets(crate::secrets::Pass::Start { seal_clear: false }))
                .await?;
        }
        repo.migrate().await?;
        // Secrets an older build stored in clear (before the migration)
        // are sealed now, and that none is left is recorded: from then on
        // a clear value is refused.
        let sealed = (&repo as &dyn Repository)
            .write(|tx| tx.seal_at_start())
            .await?;
        if sealed.sealed > 0 {
            tracing::warn!(
                sealed = sealed.sealed,
                kek = %sealed.kek,
                "sealed secrets that were stored in clear"
            );
        }
        Ok(repo)
    }

    /// The pool, without touching the database yet.
    fn open(
        url: &str,
        schema: Option<&str>,
        keyring: std::sync::Arc<Keyring>,
    ) -> Result<PostgresRepository> {
        let mut settings = tls::Settings::parse(url)?;
        if let Some(schema) = schema {
            // After any options the URL gives (`options=-c ...`).
            let options = match settings.config.get_options() {
                Some(given) if !given.trim().is_empty() => {
                    format!("{given} -c search_path={schema}")
                }
                _ => format!("-c search_path={schema}"),
            };
            settings.config.options(options);
        }
        let tls = settings.connector()?;
        let describe = settings.describe();
        let build = |size: usize| {
            let manager = Manager::from_config(
                settings.config.clone(),
                tls.clone(),
                ManagerConfig {
                    recycling_method: RecyclingMethod::Fast,
                },
            );
            Pool::builder(manager)
                .max_size(size)
                .wait_timeout(Some(POOL_WAIT))
                .create_timeout(Some(POOL_WAIT))
                .runtime(deadpool_postgres::Runtime::Tokio1)
                .build()
                .map_err(|e| Error::Repository(format!("postgres pool: {e}")))
        };
        let pool = build(POOL_SIZE)?;
        let locks = locks::Locks::new(build(1)?);
        Ok(PostgresRepository {
            pool,
            locks,
            describe,
            scope: "".into(),
            keyring,
        })
    }

    async fn client(&self) -> Result<Object> {
        self.pool.get().await.map_err(|e| match e {
            deadpool_postgres::PoolError::Backend(e) => pg_err(e),
            e => Error::Repository(format!("postgres {}: {e}", self.describe)),
        })
    }

    /// Apply the migrations this database lacks (one transaction, under a
    /// lock, so control planes starting together run them once); how many
    /// the schema has now.
    pub async fn migrate(&self) -> Result<usize> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.pg()?;
        let (ns, key) = lock_key(LOCK_MIGRATE, &self.scope, "schema");
        tx.execute("SELECT pg_advisory_xact_lock($1, $2)", &[&ns, &key])
            .await
            .pg()?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS gatehouse_schema (
                 one      BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one),
                 version  BIGINT NOT NULL)",
        )
        .await
        .pg()?;
        let have: i64 = tx
            .query_opt("SELECT version FROM gatehouse_schema", &[])
            .await
            .pg()?
            .map_or(Ok(0), |r| r.try_get(0))
            .pg()?;
        let known = MIGRATIONS.len();
        let have = usize::try_from(have).unwrap_or(usize::MAX);
        if have > known {
            return Err(Error::Repository(format!(
                "{}: the schema is at version {have}, newer than this build knows ({known}); \
                 run a newer control plane",
                self.describe
            )));
        }
        for sql in &MIGRATIONS[have..] {
            tx.batch_execute(sql).await.pg()?;
        }
        let version = i64::try_from(known).unwrap_or(i64::MAX);
        tx.execute(
            "INSERT INTO gatehouse_schema (one, version) VALUES (TRUE, $1)
             ON CONFLICT (one) DO UPDATE SET version = excluded.version",
            &[&version],
        )
        .await
        .pg()?;
        tx.commit().await.pg()?;
        Ok(known)
    }

    /// The schema version the database records (0 before any migration).
    pub async fn schema_version(&self) -> Result<usize> {
        let client = self.client().await?;
        let exists: bool = client
            .query_one("SELECT to_regclass('gatehouse_schema') IS NOT NULL", &[])
            .await
            .pg()?
            .try_get(0)
            .pg()?;
        if !exists {
            return Ok(0);
        }
        let v: Option<i64> = client
            .query_opt("SELECT version FROM gatehouse_schema", &[])
            .await
            .pg()?
            .map(|r| r.try_get(0))
            .transpose()
            .pg()?;
        Ok(v.map_or(0, |v| usize::try_from(v).unwrap_or(0)))
    }
}

impl Repository for PostgresRepository {
    fn transact(&self, mode: Mode, work: Work) -> BoxFuture<'_, Result<Box<dyn Any + Send>>> {
        Box::pin(async move {
            let mut client = self.client().await?;
            let rt = tokio::runtime::Handle::current();
            let scope = std::sync::Arc::clone(&self.scope);
            let keyring = std::sync::Arc::clone(&self.keyring);
            blocking(move || {
                let tx = rt
                    .block_on(match mode {
                        Mode::Read => client
                            .build_transaction()
                            .isolation_level(IsolationLevel::RepeatableRead)
                            .read_only(true)
                            .start(),
                        Mode::Write => client
                            .build_transaction()
                            .isolation_level(IsolationLevel::ReadCommitted)
                            .start(),
                    })
                    .pg()?;
                let mut view = tx::PgTx::new(&tx, &rt, &scope, mode == Mode::Write, &keyring);
                let out = work(&mut view)?;
                drop(view);
                rt.block_on(tx.commit()).pg()?;
                Ok(out)
            })
            .await
        })
    }

    fn lock_publisher<'a>(
        &'a self,
        realm: &'a str,
    ) -> BoxFuture<'a, Result<Option<PublisherLock>>> {
        Box::pin(async move {
            self.locks
                .try_lock(lock_key(LOCK_PUBLISH, &self.scope, realm))
                .await
        })
    }

    fn ping(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            self.client()
                .await?
                .query_one("SELECT 1", &[])
                .await
                .pg()
                .map(|_| ())
        })
    }

    fn describe(&self) -> String {
        self.describe.clone()
    }
}
