//! The embedded store: one SQLite database (WAL mode) holding every realm's
//! users, groups, roles, policies, schemas, keys, credentials and the
//! change log that publishing drains.
//!
//! Every operation is one `IMMEDIATE` transaction: it either commits whole
//! or changes nothing, and two processes on one database file serialise on
//! SQLite's write lock (with a busy timeout) instead of failing.

use crate::error::{Error, Result};
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

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
];

/// The database handle. Cheap operations run under one connection mutex;
/// callers on an async runtime use `spawn_blocking`.
#[derive(Debug)]
pub struct Db {
    conn: Mutex<Connection>,
}

impl Db {
    /// Open (creating if needed) the database file and bring its schema up
    /// to date.
    pub fn open(path: &Path) -> Result<Db> {
        let conn = Connection::open(path)?;
        Db::init(conn)
    }

    /// A private in-memory database (tests, benchmarks).
    pub fn open_in_memory() -> Result<Db> {
        Db::init(Connection::open_in_memory()?)
    }

    fn init(mut conn: Connection) -> Result<Db> {
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        for (i, sql) in MIGRATIONS.iter().enumerate() {
            let n = i64::try_from(i).unwrap_or(i64::MAX) + 1;
            if n > version {
                tx.execute_batch(sql)?;
                tx.pragma_update(None, "user_version", n)?;
            }
        }
        tx.commit()?;
        Ok(Db {
            conn: Mutex::new(conn),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (the
        // transaction rolls back on drop), so a poisoned lock is usable.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Run `f` in one immediate (write-locking) transaction, committed only
    /// if `f` succeeds.
    pub fn write<T>(&self, f: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }

    /// Run `f` in one read transaction (a consistent view).
    pub fn read<T>(&self, f: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }
}

/// Record a change for publishing: a user's record (`Some(id)`) or the
/// realm's non-user content (`None`).
pub(crate) fn record_change(
    tx: &Transaction<'_>,
    realm: &str,
    user_id: Option<&str>,
    now: i64,
) -> Result<()> {
    tx.execute(
        "INSERT INTO changes (realm, user_id, at) VALUES (?1, ?2, ?3)",
        params![realm, user_id, now],
    )?;
    tx.execute(
        "UPDATE realms SET version = version + 1 WHERE name = ?1",
        [realm],
    )?;
    Ok(())
}

/// The realm's change counter: different after any committed change.
pub(crate) fn realm_version(tx: &Transaction<'_>, realm: &str) -> Result<i64> {
    tx.query_row(
        "SELECT version FROM realms WHERE name = ?1 AND deleted_at IS NULL",
        [realm],
        |r| r.get(0),
    )
    .optional()?
    .ok_or_else(|| Error::not_found("realm", realm))
}

/// Fail with `NotFound` unless `realm` exists and is not deleted.
pub(crate) fn live_realm(tx: &Transaction<'_>, realm: &str) -> Result<()> {
    let found: Option<i64> = tx
        .query_row(
            "SELECT 1 FROM realms WHERE name = ?1 AND deleted_at IS NULL",
            [realm],
            |r| r.get(0),
        )
        .optional()?;
    match found {
        Some(_) => Ok(()),
        None => Err(Error::not_found("realm", realm)),
    }
}

/// Random bytes from the operating system.
pub(crate) fn random<const N: usize>() -> Result<[u8; N]> {
    let mut out = [0u8; N];
    getrandom::getrandom(&mut out).map_err(|e| Error::Internal(format!("random: {e}")))?;
    Ok(out)
}

/// A random UUID (version 4) in its usual text form: user ids look like
/// Cognito's `sub`.
pub(crate) fn uuid_v4() -> Result<String> {
    let mut b = random::<16>()?;
    if let Some(x) = b.get_mut(6) {
        *x = (*x & 0x0f) | 0x40;
    }
    if let Some(x) = b.get_mut(8) {
        *x = (*x & 0x3f) | 0x80;
    }
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}
