//! The embedded repository: one SQLite database (WAL) holding every
//! realm's users, groups, roles, policies, schemas, keys, credentials and
//! the change log that publishing drains.
//!
//! Every unit of work is one `IMMEDIATE` (write) or deferred (read)
//! transaction, run in place on a multi-threaded runtime
//! (`block_in_place`) and on the blocking pool otherwise: it commits whole or changes nothing,
//! and two processes on one database file serialise on SQLite's write lock
//! (with a busy timeout) instead of failing. The SQL lives in [`tx`]; no
//! `rusqlite` type leaves this folder.

mod tx;

use super::blocking;
use crate::domain::error::{Error, Result};
use crate::ports::BoxFuture;
use crate::ports::repository::{Mode, PublisherLock, Repository, Tx as _, Work};
use crate::secrets::Keyring;
use rusqlite::{Connection, TransactionBehavior};
use std::any::Any;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// The schema, applied in order; `PRAGMA user_version` records how many ran.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE realms (
    name          TEXT PRIMARY KEY,
    display_name  TEXT NOT NULL,
    issuer        TEXT NOT NULL,
    clients       TEXT NOT NULL,          -- JSON array of app client ids
    bundle_key    BLOB NOT NULL,          -- Ed25519 seed signing this realm's bundles
    version       INTEGER NOT NULL DEFAULT 0,  -- bumped by every change of the realm
    created_at    INTEGER NOT NULL,
    deleted_at    INTEGER
);
CREATE TABLE users (
    realm               TEXT NOT NULL REFERENCES realms(name),
    id                  TEXT NOT NULL,
    username            TEXT NOT NULL,
    username_lc         TEXT NOT NULL,
    email               TEXT NOT NULL,
    email_lc            TEXT NOT NULL,
    state               TEXT NOT NULL,
    suspended_from      TEXT,
    deleted_from        TEXT,
    attrs               TEXT NOT NULL,    -- JSON object, canonical Cedar JSON values
    tokens_valid_after  INTEGER NOT NULL,
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL,
    PRIMARY KEY (realm, id),
    UNIQUE (realm, email_lc),
    UNIQUE (realm, username_lc)
);
CREATE INDEX users_state ON users (realm, state, id);
CREATE TABLE groups (
    realm        TEXT NOT NULL REFERENCES realms(name),
    id           TEXT NOT NULL,
    description  TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (realm, id)
);
CREATE TABLE roles (
    realm        TEXT NOT NULL REFERENCES realms(name),
    id           TEXT NOT NULL,
    description  TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (realm, id)
);
CREATE TABLE user_groups (
    realm     TEXT NOT NULL,
    user_id   TEXT NOT NULL,
    group_id  TEXT NOT NULL,
    PRIMARY KEY (realm, user_id, group_id),
    FOREIGN KEY (realm, user_id) REFERENCES users(realm, id),
    FOREIGN KEY (realm, group_id) REFERENCES groups(realm, id)
);
CREATE INDEX user_groups_group ON user_groups (realm, group_id);
CREATE TABLE user_roles (
    realm    TEXT NOT NULL,
    user_id  TEXT NOT NULL,
    role_id  TEXT NOT NULL,
    PRIMARY KEY (realm, user_id, role_id),
    FOREIGN KEY (realm, user_id) REFERENCES users(realm, id),
    FOREIGN KEY (realm, role_id) REFERENCES roles(realm, id)
);
CREATE INDEX user_roles_role ON user_roles (realm, role_id);
CREATE TABLE group_parents (
    realm      TEXT NOT NULL,
    group_id   TEXT NOT NULL,
    parent_id  TEXT NOT NULL,
    PRIMARY KEY (realm, group_id, parent_id),
    FOREIGN KEY (realm, group_id) REFERENCES groups(realm, id),
    FOREIGN KEY (realm, parent_id) REFERENCES groups(realm, id)
);
CREATE TABLE group_roles (
    realm     TEXT NOT NULL,
    group_id  TEXT NOT NULL,
    role_id   TEXT NOT NULL,
    PRIMARY KEY (realm, group_id, role_id),
    FOREIGN KEY (realm, group_id) REFERENCES groups(realm, id),
    FOREIGN KEY (realm, role_id) REFERENCES roles(realm, id)
);
CREATE TABLE policies (
    realm       TEXT NOT NULL REFERENCES realms(name),
    id          TEXT NOT NULL,
    template    INTEGER NOT NULL,        -- 1 for a template (has slots)
    body        TEXT NOT NULL,
    description TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (realm, id)
);
CREATE TABLE template_links (
    realm        TEXT NOT NULL,
    id           TEXT NOT NULL,
    template_id  TEXT NOT NULL,
    slots        TEXT NOT NULL,          -- JSON {"?principal": {type,id}, ...}
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (realm, id),
    FOREIGN KEY (realm, template_id) REFERENCES policies(realm, id)
);
CREATE TABLE schemas (
    realm       TEXT NOT NULL REFERENCES realms(name),
    version     INTEGER NOT NULL,
    text        TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (realm, version)
);
CREATE TABLE resources (
    realm     TEXT PRIMARY KEY REFERENCES realms(name),
    entities  TEXT NOT NULL              -- Cedar JSON entity list (non-user, non-group, non-role)
);
CREATE TABLE changes (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    realm          TEXT NOT NULL,
    user_id        TEXT,                 -- NULL: non-user content (policies, groups, ...); '*': every user
    at             INTEGER NOT NULL,
    published_rev  INTEGER
);
CREATE INDEX changes_pending ON changes (realm, published_rev, seq);
CREATE TABLE signing_keys (
    realm       TEXT NOT NULL REFERENCES realms(name),
    kid         TEXT NOT NULL,
    key         TEXT NOT NULL,           -- JSON of identity::keys::SigningKey (private part included)
    public_jwk  TEXT NOT NULL,           -- JSON, served in the JWKS while not retired
    retired     INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (realm, kid)
);
CREATE TABLE published (
    realm       TEXT PRIMARY KEY,
    revision    INTEGER NOT NULL,        -- the newest revision this database's changes reached
    at          INTEGER NOT NULL
);
CREATE TABLE credentials (
    realm             TEXT NOT NULL,
    user_id           TEXT NOT NULL,
    password_hash     TEXT,
    new_password_required INTEGER NOT NULL DEFAULT 0,
    totp_secret       TEXT,
    totp_confirmed    INTEGER NOT NULL DEFAULT 0,
    totp_last_step    INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (realm, user_id),
    FOREIGN KEY (realm, user_id) REFERENCES users(realm, id)
);
CREATE TABLE login_throttle (
    realm        TEXT NOT NULL,
    username_lc  TEXT NOT NULL,
    record       TEXT NOT NULL,          -- JSON of identity::throttle state
    PRIMARY KEY (realm, username_lc)
);
CREATE TABLE login_sessions (
    id          TEXT PRIMARY KEY,
    realm       TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    challenge   TEXT NOT NULL,
    expires_at  INTEGER NOT NULL
);
"#,
    r#"
-- Email verification: the code an Unverified user answers EMAIL_VERIFICATION with.
ALTER TABLE credentials ADD COLUMN verify_code_hash TEXT;
ALTER TABLE credentials ADD COLUMN verify_expires INTEGER NOT NULL DEFAULT 0;
"#,
    r#"
-- Realms name their identity provider; realms may carry forward-auth routes.
ALTER TABLE realms ADD COLUMN identity TEXT NOT NULL DEFAULT 'local';
CREATE TABLE routes (
    realm  TEXT PRIMARY KEY REFERENCES realms(name),
    body   BLOB NOT NULL                 -- routes.json bytes
);
"#,
    r#"
-- A verification code takes a bounded number of wrong answers.
ALTER TABLE credentials ADD COLUMN verify_attempts INTEGER NOT NULL DEFAULT 0;
"#,
    r#"
-- Secrets at rest are sealed under a key-encryption key (crate::secrets):
-- realms.bundle_key, signing_keys.key and credentials.totp_secret hold
-- envelopes. The values an older build stored in clear are sealed by the
-- pass that follows every migration run (SqliteRepository::init); the new
-- version keeps older builds, which would write clear values, out.
CREATE TABLE IF NOT EXISTS secrets_at_rest (format TEXT NOT NULL);
INSERT INTO secrets_at_rest (format)
    SELECT 'ghs1' WHERE NOT EXISTS (SELECT 1 FROM secrets_at_rest);
"#,
    r#"
-- Realms may carry AuthZEN type names (a PEP's `user` -> `User`).
CREATE TABLE authzen_types (
    realm  TEXT PRIMARY KEY REFERENCES realms(name),
    body   BLOB NOT NULL                 -- authzen.json bytes
);
"#,
    r#"
-- What a delta carries, recorded before it is written: a publisher that
-- adopts a dead one's delta marks exactly those changes published.
CREATE TABLE publish_intents (
    realm     TEXT NOT NULL,
    revision  INTEGER NOT NULL,
    upto      INTEGER NOT NULL,          -- changes.seq covered
    PRIMARY KEY (realm, revision)
);
"#,
];

/// The SQLite repository. One connection behind a mutex: SQLite
/// serialises writers anyway, and reads are short.
#[derive(Debug, Clone)]
pub struct SqliteRepository {
    conn: Arc<Mutex<Connection>>,
    path: Option<PathBuf>,
    /// Publisher locks of an in-memory database, by realm (a database
    /// file's are lock files beside it).
    publishers: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
    /// The key-encryption keys secrets are sealed under.
    keyring: Arc<Keyring>,
}

/// A rusqlite error as the control plane's.
pub(crate) fn db_err(e: rusqlite::Error) -> Error {
    Error::Repository(e.to_string())
}

/// `.sql()?` turns a rusqlite result into the control plane's.
pub(crate) trait Sql<T> {
    /// Map the error.
    fn sql(self) -> Result<T>;
}

impl<T> Sql<T> for rusqlite::Result<T> {
    fn sql(self) -> Result<T> {
        self.map_err(db_err)
    }
}

impl SqliteRepository {
    /// Open (creating if needed) the database file, bring its schema up
    /// to date and seal any secret still stored in clear; secrets are
    /// sealed and opened with `keyring`.
    pub fn open(path: &Path, keyring: Arc<Keyring>) -> Result<SqliteRepository> {
        let conn = Connection::open(path)
            .map_err(|e| Error::Repository(format!("{}: {e}", path.display())))?;
        SqliteRepository::init(conn, Some(path.to_owned()), keyring)
    }

    /// A private in-memory database (tests, benchmarks).
    pub fn open_in_memory(keyring: Arc<Keyring>) -> Result<SqliteRepository> {
        SqliteRepository::init(Connection::open_in_memory().sql()?, None, keyring)
    }

    fn init(
        mut conn: Connection,
        path: Option<PathBuf>,
        keyring: Arc<Keyring>,
    ) -> Result<SqliteRepository> {
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .sql()?;
        conn.pragma_update(None, "journal_mode", "WAL").sql()?;
        conn.pragma_update(None, "synchronous", "NORMAL").sql()?;
        conn.pragma_update(None, "foreign_keys", "ON").sql()?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .sql()?;
        let known = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
        if version > known {
            return Err(Error::Repository(format!(
                "{}: the schema is at version {version}, newer than this build knows ({known}); \
                 run a newer control plane",
                path.as_deref()
                    .map_or_else(|| ":memory:".into(), |p| p.display().to_string())
            )));
        }
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .sql()?;
        for (i, sql) in MIGRATIONS.iter().enumerate() {
            let n = i64::try_from(i).unwrap_or(i64::MAX) + 1;
            if n > version {
                tx.execute_batch(sql).sql()?;
                tx.pragma_update(None, "user_version", n).sql()?;
            }
        }
        // Secrets an older build stored in clear (before the migration
        // above) are sealed now, in the same transaction, and that none
        // is left is recorded: from then on a clear value is refused.
        let sealed = tx::SqliteTx {
            tx: &tx,
            writable: true,
            keyring: &keyring,
        }
        .seal_at_start()?;
        tx.commit().sql()?;
        if sealed.sealed > 0 {
            tracing::warn!(
                sealed = sealed.sealed,
                kek = %sealed.kek,
                "sealed secrets that were stored in clear"
            );
        }
        Ok(SqliteRepository {
            conn: Arc::new(Mutex::new(conn)),
            path,
            publishers: Arc::default(),
            keyring,
        })
    }

    fn lock(conn: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (the
        // transaction rolls back on drop), so a poisoned lock is usable.
        conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Run `work` in one transaction on the calling thread.
    fn run(
        conn: &Mutex<Connection>,
        keyring: &Keyring,
        mode: Mode,
        work: Work,
    ) -> Result<Box<dyn Any + Send>> {
        let mut conn = SqliteRepository::lock(conn);
        let behavior = match mode {
            Mode::Read => TransactionBehavior::Deferred,
            Mode::Write => TransactionBehavior::Immediate,
        };
        let tx = conn.transaction_with_behavior(behavior).sql()?;
        let mut view = tx::SqliteTx {
            tx: &tx,
            writable: mode == Mode::Write,
            keyring,
        };
        let out = work(&mut view)?;
        tx.commit().sql()?;
        Ok(out)
    }
}

/// The publisher lock file of `realm` for the database at `db`.
fn lock_file(db: &Path, realm: &str) -> PathBuf {
    use sha2::Digest;
    let name = data_encoding::HEXLOWER.encode(&sha2::Sha256::digest(realm.as_bytes())[..16]);
    let mut dir = db.as_os_str().to_owned();
    dir.push(".publish");
    PathBuf::from(dir).join(format!("{name}.lock"))
}

impl Repository for SqliteRepository {
    fn transact(&self, mode: Mode, work: Work) -> BoxFuture<'_, Result<Box<dyn Any + Send>>> {
        let conn = Arc::clone(&self.conn);
        let keyring = Arc::clone(&self.keyring);
        Box::pin(blocking(move || {
            SqliteRepository::run(&conn, &keyring, mode, work)
        }))
    }

    fn lock_publisher<'a>(
        &'a self,
        realm: &'a str,
    ) -> BoxFuture<'a, Result<Option<PublisherLock>>> {
        if let Some(path) = &self.path {
            // An exclusive lock on a file of the realm's beside the
            // database: it excludes every other holder, in this process or
            // another, and dies with its process.
            let file = lock_file(path, realm);
            return Box::pin(blocking(move || {
                if let Some(dir) = file.parent() {
                    std::fs::create_dir_all(dir)
                        .map_err(|e| Error::Repository(format!("{}: {e}", dir.display())))?;
                }
                let f = std::fs::OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(&file)
                    .map_err(|e| Error::Repository(format!("{}: {e}", file.display())))?;
                match f.try_lock() {
                    Ok(()) => Ok(Some(Box::new(f) as PublisherLock)),
                    Err(std::fs::TryLockError::WouldBlock) => Ok(None),
                    Err(std::fs::TryLockError::Error(e)) => {
                        Err(Error::Repository(format!("{}: {e}", file.display())))
                    }
                }
            }));
        }
        let lock = {
            let mut map = self.publishers.lock().unwrap_or_else(|p| p.into_inner());
            Arc::clone(map.entry(realm.to_owned()).or_default())
        };
        Box::pin(async move {
            Ok(lock
                .try_lock_owned()
                .ok()
                .map(|guard| Box::new(guard) as PublisherLock))
        })
    }

    fn ping(&self) -> BoxFuture<'_, Result<()>> {
        let conn = Arc::clone(&self.conn);
        Box::pin(blocking(move || {
            SqliteRepository::lock(&conn)
                .query_row("SELECT 1", [], |_| Ok(()))
                .sql()
        }))
    }

    fn describe(&self) -> String {
        match &self.path {
            Some(p) => format!("sqlite:{}", p.display()),
            None => "sqlite::memory:".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_schema_newer_than_this_build_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cp.db");
        let keyring = Arc::new(Keyring::ephemeral().unwrap());
        drop(SqliteRepository::open(&path, keyring.clone()).unwrap());
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        let err = SqliteRepository::open(&path, keyring).unwrap_err();
        assert!(err.to_string().contains("newer than this build"), "{err}");
    }
}
