//! The SQL of every [`Tx`] method, over one PostgreSQL transaction.
//!
//! In a write transaction every realm-scoped method first takes the
//! realm's advisory lock (once per transaction; see the module above).

use super::{LOCK_REALM_WRITE, Pg, lock_key};
use crate::backend::take_for;
use crate::domain::error::{Error, Result};
use crate::domain::group::{Kind, NewNode, Node};
use crate::domain::policy::{Link, SchemaVersion, StoredPolicy};
use crate::domain::realm::Realm;
use crate::domain::throttle::Throttle;
use crate::domain::user::{Search, SearchKey, User};
use crate::ports::repository::{
    Cell, Change, Column, Credentials, NewRealmRecord, NewUserRow, Pending, RealmDocument, Session,
    StoredKey, TableSpec, Taken, Tx,
};
use crate::secrets::{Keyring, Pass, Resealed, Rewrapped, SEALED_TEXT_PREFIX, Slot};
use deadpool_postgres::Transaction;
use pdp_core::{Memory, Transition, UserRecord, UserState};
use serde_json::{Map, Value};
use std::collections::VecDeque;
use tokio::runtime::Handle;
use tokio_postgres::Row;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{FromSql, ToSql};

/// Parameters of one statement.
type Params<'p> = &'p [&'p (dyn ToSql + Sync)];

/// One transaction.
pub(super) struct PgTx<'t, 'c> {
    tx: &'t Transaction<'c>,
    rt: &'t Handle,
    scope: &'t str,
    writable: bool,
    /// Seals and opens the secrets this transaction writes and reads.
    keyring: &'t Keyring,
    /// Realms whose write lock this transaction holds.
    locked: Vec<String>,
}

impl<'t, 'c> PgTx<'t, 'c> {
    pub(super) fn new(
        tx: &'t Transaction<'c>,
        rt: &'t Handle,
        scope: &'t str,
        writable: bool,
        keyring: &'t Keyring,
    ) -> Self {
        PgTx {
            tx,
            rt,
            scope,
            writable,
            keyring,
            locked: Vec::new(),
        }
    }

    /// Take the realm's write lock, in a write transaction, before the
    /// first statement about it.
    fn enter(&mut self, realm: &str) -> Result<()> {
        if !self.writable || self.locked.iter().any(|r| r == realm) {
            return Ok(());
        }
        let (ns, key) = lock_key(LOCK_REALM_WRITE, self.scope, realm);
        let tx = self.tx;
        self.rt
            .block_on(tx.execute("SELECT pg_advisory_xact_lock($1, $2)", &[&ns, &key]))
            .pg()?;
        self.locked.push(realm.to_owned());
        Ok(())
    }

    /// Every row of a (cached) statement, without taking a realm lock.
    fn query(&self, sql: &str, params: Params<'_>) -> Result<Vec<Row>> {
        let tx = self.tx;
        self.rt
            .block_on(async {
                let stmt = tx.prepare_cached(sql).await?;
                tx.query(&stmt, params).await
            })
            .pg()
    }

    /// Every row of a (cached) statement about `realm`.
    fn rows(&mut self, realm: &str, sql: &str, params: Params<'_>) -> Result<Vec<Row>> {
        self.enter(realm)?;
        self.query(sql, params)
    }

    /// At most one row.
    fn row(&mut self, realm: &str, sql: &str, params: Params<'_>) -> Result<Option<Row>> {
        self.enter(realm)?;
        let tx = self.tx;
        self.rt
            .block_on(async {
                let stmt = tx.prepare_cached(sql).await?;
                tx.query_opt(&stmt, params).await
            })
            .pg()
    }

    /// Run a write; how many rows it changed.
    fn exec(&mut self, realm: &str, sql: &str, params: Params<'_>) -> Result<u64> {
        self.exec_raw(realm, sql, params)?.pg()
    }

    /// A write whose driver error the caller interprets.
    fn exec_raw(
        &mut self,
        realm: &str,
        sql: &str,
        params: Params<'_>,
    ) -> Result<std::result::Result<u64, tokio_postgres::Error>> {
        self.w()?;
        self.enter(realm)?;
        let tx = self.tx;
        Ok(self.rt.block_on(async {
            let stmt = tx.prepare_cached(sql).await?;
            tx.execute(&stmt, params).await
        }))
    }

    fn w(&self) -> Result<()> {
        if self.writable {
            Ok(())
        } else {
            Err(Error::Internal("a write in a read transaction".into()))
        }
    }

    fn strings(&mut self, realm: &str, sql: &str, params: Params<'_>) -> Result<Vec<String>> {
        self.rows(realm, sql, params)?
            .iter()
            .map(|r| get(r, 0))
            .collect()
    }

    fn exists(&mut self, realm: &str, sql: &str, params: Params<'_>) -> Result<bool> {
        Ok(self.row(realm, sql, params)?.is_some())
    }
}

/// `INSERT INTO table (columns) VALUES (...), (...), ...` of `rows`, in
/// statements of at most `per` rows (PostgreSQL takes 65,535 parameters).
async fn insert_rows(
    tx: &Transaction<'_>,
    table: &str,
    columns: &[&str],
    rows: &[Vec<&(dyn ToSql + Sync)>],
    per: usize,
) -> std::result::Result<(), tokio_postgres::Error> {
    for chunk in rows.chunks(per.max(1)) {
        let mut sql = format!("INSERT INTO {table} ({}) VALUES ", columns.join(", "));
        let mut params: Vec<&(dyn ToSql + Sync)> = Vec::with_capacity(chunk.len() * columns.len());
        for (i, row) in chunk.iter().enumerate() {
            sql.push_str(if i == 0 { "(" } else { ", (" });
            for (j, value) in row.iter().enumerate() {
                if j > 0 {
                    sql.push_str(", ");
                }
                params.push(*value);
                sql.push_str(&format!("${}", params.len()));
            }
            sql.push(')');
        }
        let stmt = tx.prepare_cached(&sql).await?;
        tx.execute(&stmt, &params).await?;
    }
    Ok(())
}

/// The rows of [`Tx::insert_users`] for `users`: the users, their groups
/// and roles, and imported password hashes.
async fn bulk_insert_users(
    tx: &Transaction<'_>,
    realm: &str,
    users: &[NewUserRow],
) -> std::result::Result<(), tokio_postgres::Error> {
    struct Owned {
        username_lc: String,
        email_lc: String,
        attrs: String,
    }
    let owned: Vec<Owned> = users
        .iter()
        .map(|u| Owned {
            username_lc: u.user.username.to_lowercase(),
            email_lc: u.user.email.to_lowercase(),
            attrs: serde_json::to_string(&u.user.attrs).unwrap_or_default(),
        })
        .collect();
    let states: Vec<(&str, Option<&str>, Option<&str>)> = users
        .iter()
        .map(|u| {
            (
                u.user.state.as_str(),
                u.memory.suspended_from.map(UserState::as_str),
                u.memory.deleted_from.map(UserState::as_str),
            )
        })
        .collect();
    let realm: &(dyn ToSql + Sync) = &realm;
    let user_rows: Vec<Vec<&(dyn ToSql + Sync)>> = users
        .iter()
        .zip(&owned)
        .zip(&states)
        .map(|((u, o), s)| {
            vec![
                realm,
                &u.user.id as &(dyn ToSql + Sync),
                &u.user.username,
                &o.username_lc,
                &u.user.email,
                &o.email_lc,
                &s.0,
                &o.attrs,
                &u.user.tokens_valid_after,
                &u.user.created_at,
                &u.user.updated_at,
                &s.1,
                &s.2,
            ]
        })
        .collect();
    insert_rows(
        tx,
        "users",
        &[
            "realm",
            "id",
            "username",
            "username_lc",
            "email",
            "email_lc",
            "state",
            "attrs",
            "tokens_valid_after",
            "created_at",
            "updated_at",
            "suspended_from",
            "deleted_from",
        ],
        &user_rows,
        1000,
    )
    .await?;
    let mut groups: Vec<Vec<&(dyn ToSql + Sync)>> = Vec::new();
    let mut roles: Vec<Vec<&(dyn ToSql + Sync)>> = Vec::new();
    let mut hashes: Vec<Vec<&(dyn ToSql + Sync)>> = Vec::new();
    for u in users {
        for g in &u.user.groups {
            groups.push(vec![realm, &u.user.id, g]);
        }
        for r in &u.user.roles {
            roles.push(vec![realm, &u.user.id, r]);
        }
        if let Some(h) = &u.password_hash {
            hashes.push(vec![realm, &u.user.id, h]);
        }
    }
    insert_rows(
        tx,
        "user_groups",
        &["realm", "user_id", "group_id"],
        &groups,
        5000,
    )
    .await?;
    insert_rows(
        tx,
        "user_roles",
        &["realm", "user_id", "role_id"],
        &roles,
        5000,
    )
    .await?;
    insert_rows(
        tx,
        "credentials",
        &["realm", "user_id", "password_hash"],
        &hashes,
        5000,
    )
    .await
}

fn get<'a, T: FromSql<'a>>(row: &'a Row, i: usize) -> Result<T> {
    row.try_get(i).pg()
}

fn groups_table(kind: Kind) -> &'static str {
    match kind {
        Kind::Group => "groups",
        Kind::Role => "roles",
    }
}

fn json<T: serde::de::DeserializeOwned>(what: &str, text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| Error::Internal(format!("stored {what}: {e}")))
}

fn state(text: &str) -> Result<UserState> {
    text.parse::<UserState>().map_err(Error::from)
}

/// Rows of a portal, fetched a batch at a time: a million-user scan never
/// holds every row.
struct Scan<'t, 'c> {
    tx: &'t Transaction<'c>,
    rt: &'t Handle,
    portal: tokio_postgres::Portal,
    buf: VecDeque<Row>,
    done: bool,
}

const SCAN_BATCH: i32 = 5_000;

impl<'t, 'c> Scan<'t, 'c> {
    fn open(pg: &PgTx<'t, 'c>, sql: &str, realm: &str) -> Result<Self> {
        let tx = pg.tx;
        let portal = pg
            .rt
            .block_on(async {
                let stmt = tx.prepare_cached(sql).await?;
                tx.bind(&stmt, &[&realm]).await
            })
            .pg()?;
        Ok(Scan {
            tx,
            rt: pg.rt,
            portal,
            buf: VecDeque::new(),
            done: false,
        })
    }

    fn next_row(&mut self) -> Result<Option<Row>> {
        if self.buf.is_empty() && !self.done {
            let rows = self
                .rt
                .block_on(self.tx.query_portal(&self.portal, SCAN_BATCH))
                .pg()?;
            self.done = rows.len() < usize::try_from(SCAN_BATCH).unwrap_or(0);
            self.buf.extend(rows);
        }
        Ok(self.buf.pop_front())
    }
}

impl Iterator for Scan<'_, '_> {
    type Item = Result<(String, String)>;
    fn next(&mut self) -> Option<Self::Item> {
        match self.next_row() {
            Ok(Some(r)) => Some(get(&r, 0).and_then(|a| Ok((a, get(&r, 1)?)))),
            Ok(None) => None,
            Err(e) => Some(Err(e)),
        }
    }
}

impl PgTx<'_, '_> {
    /// A realm's stored bundle document (one row per realm in its table).
    fn realm_document(&mut self, doc: RealmDocument, realm: &str) -> Result<Option<Vec<u8>>> {
        let sql = format!("SELECT body FROM {} WHERE realm = $1", doc.table());
        self.row(realm, &sql, &[&realm])?
            .map(|r| get(&r, 0))
            .transpose()
    }

    /// Replace (or, with `None`, remove) a realm's bundle document.
    fn put_realm_document(
        &mut self,
        doc: RealmDocument,
        realm: &str,
        body: Option<&[u8]>,
    ) -> Result<()> {
        let table = doc.table();
        self.w()?;
        match body {
            Some(body) => self.exec(
                realm,
                &format!(
                    "INSERT INTO {table} (realm, body) VALUES ($1, $2)
                     ON CONFLICT (realm) DO UPDATE SET body = excluded.body"
                ),
                &[&realm, &body],
            ),
            None => self.exec(
                realm,
                &format!("DELETE FROM {table} WHERE realm = $1"),
                &[&realm],
            ),
        }?;
        Ok(())
    }

    fn realm_row(&mut self, name: &str, lock: bool) -> Result<Option<Realm>> {
        if lock {
            self.enter(name)?;
        }
        let Some(r) = self
            .query(
                "SELECT display_name, issuer, clients, identity, created_at, deleted_at,
                    (SELECT COALESCE(MAX(version), 0) FROM schemas WHERE realm = $1)
             FROM realms WHERE name = $1",
                &[&name],
            )?
            .into_iter()
            .next()
        else {
            return Ok(None);
        };
        let clients: String = get(&r, 2)?;
        Ok(Some(Realm {
            name: name.to_owned(),
            display_name: get(&r, 0)?,
            issuer: get(&r, 1)?,
            clients: json("realm clients", &clients)?,
            identity: get(&r, 3)?,
            created_at: get(&r, 4)?,
            deleted_at: get(&r, 5)?,
            schema_version: get(&r, 6)?,
        }))
    }

    fn node_links(&mut self, realm: &str, sql: &str, id: &str) -> Result<Vec<String>> {
        self.strings(realm, sql, &[&realm, &id])
    }
}

impl Tx for PgTx<'_, '_> {
    // ------------------------------------------------------------ realms
    fn realm_exists(&mut self, name: &str) -> Result<bool> {
        self.exists(name, "SELECT 1 FROM realms WHERE name = $1", &[&name])
    }

    fn insert_realm(&mut self, r: &NewRealmRecord) -> Result<()> {
        let clients = serde_json::to_string(&r.clients).unwrap_or_default();
        let seed = self
            .keyring
            .seal(&Slot::bundle_seed(&r.name), &r.bundle_seed)?;
        self.exec_raw(
            &r.name,
            "INSERT INTO realms (name, display_name, issuer, clients, identity, bundle_key, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &r.name,
                &r.display_name,
                &r.issuer,
                &clients,
                &r.identity,
                &seed,
                &r.created_at,
            ],
        )?
        .map_err(|e| match e.code() {
            Some(&SqlState::UNIQUE_VIOLATION) => Error::AlreadyExists {
                kind: "realm",
                id: r.name.clone(),
            },
            _ => super::pg_err(e),
        })?;
        Ok(())
    }

    fn live_realm(&mut self, name: &str) -> Result<()> {
        if self.exists(
            name,
            "SELECT 1 FROM realms WHERE name = $1 AND deleted_at IS NULL",
            &[&name],
        )? {
            Ok(())
        } else {
            Err(Error::not_found("realm", name))
        }
    }

    fn realm(&mut self, name: &str) -> Result<Realm> {
        match self.realm_row(name, true)? {
            Some(r) if r.deleted_at.is_none() => Ok(r),
            _ => Err(Error::not_found("realm", name)),
        }
    }

    fn realms(&mut self, include_deleted: bool) -> Result<Vec<Realm>> {
        // The list takes no realm lock, even in a write transaction: it is
        // what was committed when it was read.
        let names: Vec<String> = self
            .query(
                "SELECT name FROM realms WHERE $1 OR deleted_at IS NULL ORDER BY name",
                &[&include_deleted],
            )?
            .iter()
            .map(|r| get(r, 0))
            .collect::<Result<_>>()?;
        names
            .iter()
            .filter_map(|n| self.realm_row(n, false).transpose())
            .collect()
    }

    fn delete_realm(&mut self, name: &str, now: i64) -> Result<()> {
        self.w()?;
        self.live_realm(name)?;
        self.exec(
            name,
            "UPDATE realms SET deleted_at = $2 WHERE name = $1",
            &[&name, &now],
        )?;
        Ok(())
    }

    fn deleted_realm(&mut self, name: &str) -> Result<Realm> {
        match self.realm_row(name, true)? {
            Some(r) if r.deleted_at.is_some() => Ok(r),
            _ => Err(Error::not_found("deleted realm", name)),
        }
    }

    fn realm_version(&mut self, name: &str) -> Result<i64> {
        self.row(
            name,
            "SELECT version FROM realms WHERE name = $1 AND deleted_at IS NULL",
            &[&name],
        )?
        .map(|r| get(&r, 0))
        .transpose()?
        .ok_or_else(|| Error::not_found("realm", name))
    }

    fn bundle_seed(&mut self, name: &str) -> Result<[u8; 32]> {
        let seed: Vec<u8> = self
            .row(
                name,
                "SELECT bundle_key FROM realms WHERE name = $1",
                &[&name],
            )?
            .map(|r| get(&r, 0))
            .transpose()?
            .ok_or_else(|| Error::not_found("realm", name))?;
        self.keyring
            .open(&Slot::bundle_seed(name), &seed)?
            .try_into()
            .map_err(|_| Error::Internal(format!("realm {name:?}: bad bundle key")))
    }

    // ------------------------------------------------------------- users
    fn user_taken(
        &mut self,
        realm: &str,
        id: &str,
        email: &str,
        username: &str,
    ) -> Result<Option<Taken>> {
        let (email, username) = (email.to_lowercase(), username.to_lowercase());
        let taken: Option<String> = self
            .row(
                realm,
                "SELECT CASE WHEN id = $2 THEN 'id' WHEN email_lc = $3 THEN 'email' ELSE 'username' END
                 FROM users WHERE realm = $1 AND (id = $2 OR email_lc = $3 OR username_lc = $4) LIMIT 1",
                &[&realm, &id, &email, &username],
            )?
            .map(|r| get(&r, 0))
            .transpose()?;
        Ok(taken.map(|t| match t.as_str() {
            "id" => Taken::Id,
            "email" => Taken::Email,
            _ => Taken::Username,
        }))
    }

    fn insert_user(
        &mut self,
        realm: &str,
        user: &User,
        memory: &Memory,
        password_hash: Option<&str>,
    ) -> Result<()> {
        self.w()?;
        let attrs = serde_json::to_string(&user.attrs).unwrap_or_default();
        let suspended_from = memory.suspended_from.map(UserState::as_str);
        let deleted_from = memory.deleted_from.map(UserState::as_str);
        self.exec_raw(
            realm,
            "INSERT INTO users (realm, id, username, username_lc, email, email_lc, state, attrs,
                                tokens_valid_after, created_at, updated_at,
                                suspended_from, deleted_from)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
            &[
                &realm,
                &user.id,
                &user.username,
                &user.username.to_lowercase(),
                &user.email,
                &user.email.to_lowercase(),
                &user.state.as_str(),
                &attrs,
                &user.tokens_valid_after,
                &user.created_at,
                &user.updated_at,
                &suspended_from,
                &deleted_from,
            ],
        )?
        .map_err(|e| match e.code() {
            Some(&SqlState::UNIQUE_VIOLATION) => Error::AlreadyExists {
                kind: "user with id, email or username",
                id: format!("{} / {} / {}", user.id, user.email, user.username),
            },
            _ => super::pg_err(e),
        })?;
        for g in &user.groups {
            self.exec_raw(
                realm,
                "INSERT INTO user_groups (realm, user_id, group_id) VALUES ($1, $2, $3)",
                &[&realm, &user.id, g],
            )?
            .map_err(|_| Error::not_found("group", g.clone()))?;
        }
        for r in &user.roles {
            self.exec_raw(
                realm,
                "INSERT INTO user_roles (realm, user_id, role_id) VALUES ($1, $2, $3)",
                &[&realm, &user.id, r],
            )?
            .map_err(|_| Error::not_found("role", r.clone()))?;
        }
        if let Some(h) = password_hash {
            self.exec(
                realm,
                "INSERT INTO credentials (realm, user_id, password_hash) VALUES ($1, $2, $3)",
                &[&realm, &user.id, &h],
            )?;
        }
        Ok(())
    }

    fn insert_users(
        &mut self,
        realm: &str,
        users: &[NewUserRow],
    ) -> std::result::Result<(), (usize, Error)> {
        if users.is_empty() {
            return Ok(());
        }
        self.w().map_err(|e| (0, e))?;
        self.enter(realm).map_err(|e| (0, e))?;
        // The whole batch in a few multi-row statements; if any is
        // refused, back to the savepoint and one user at a time, to say
        // which.
        let tx = self.tx;
        let bulk = self.rt.block_on(async {
            tx.batch_execute("SAVEPOINT gatehouse_bulk").await?;
            bulk_insert_users(tx, realm, users).await?;
            tx.batch_execute("RELEASE SAVEPOINT gatehouse_bulk").await
        });
        match bulk {
            Ok(()) => Ok(()),
            Err(bulk_error) => {
                self.rt
                    .block_on(tx.batch_execute("ROLLBACK TO SAVEPOINT gatehouse_bulk"))
                    .map_err(|e| (0, super::pg_err(e)))?;
                for (i, u) in users.iter().enumerate() {
                    self.insert_user(realm, &u.user, &u.memory, u.password_hash.as_deref())
                        .map_err(|e| (i, e))?;
                }
                // One at a time went through (the bulk error was of the
                // statement, not of a user): the users are in.
                tracing::debug!(error = %bulk_error, "bulk user insert retried one by one");
                Ok(())
            }
        }
    }

    fn user(&mut self, realm: &str, id: &str) -> Result<User> {
        let r = self
            .row(
                realm,
                "SELECT username, email, state, attrs, tokens_valid_after, created_at, updated_at
                 FROM users WHERE realm = $1 AND id = $2",
                &[&realm, &id],
            )?
            .ok_or_else(|| Error::not_found("user", id))?;
        let attrs: String = get(&r, 3)?;
        let st: String = get(&r, 2)?;
        Ok(User {
            id: id.to_owned(),
            username: get(&r, 0)?,
            email: get(&r, 1)?,
            state: state(&st)?,
            attrs: json("user attributes", &attrs)?,
            groups: self.node_links(
                realm,
                "SELECT group_id FROM user_groups WHERE realm = $1 AND user_id = $2 ORDER BY group_id",
                id,
            )?,
            roles: self.node_links(
                realm,
                "SELECT role_id FROM user_roles WHERE realm = $1 AND user_id = $2 ORDER BY role_id",
                id,
            )?,
            tokens_valid_after: get(&r, 4)?,
            created_at: get(&r, 5)?,
            updated_at: get(&r, 6)?,
        })
    }

    fn user_id_by_login(&mut self, realm: &str, login: &str) -> Result<Option<String>> {
        let login = login.to_lowercase();
        self.row(
            realm,
            "SELECT id FROM users WHERE realm = $1 AND (username_lc = $2 OR email_lc = $2)
             ORDER BY username_lc = $2 DESC LIMIT 1",
            &[&realm, &login],
        )?
        .map(|r| get(&r, 0))
        .transpose()
    }

    fn user_state(&mut self, realm: &str, id: &str) -> Result<(UserState, Memory)> {
        let r = self
            .row(
                realm,
                "SELECT state, suspended_from, deleted_from FROM users WHERE realm = $1 AND id = $2",
                &[&realm, &id],
            )?
            .ok_or_else(|| Error::not_found("user", id))?;
        let st: String = get(&r, 0)?;
        let suspended_from: Option<String> = get(&r, 1)?;
        let deleted_from: Option<String> = get(&r, 2)?;
        Ok((
            state(&st)?,
            Memory {
                suspended_from: suspended_from.as_deref().map(state).transpose()?,
                deleted_from: deleted_from.as_deref().map(state).transpose()?,
            },
        ))
    }

    fn set_user_attrs(
        &mut self,
        realm: &str,
        id: &str,
        attrs: &Map<String, Value>,
        now: i64,
    ) -> Result<()> {
        self.w()?;
        let attrs = serde_json::to_string(attrs).unwrap_or_default();
        self.exec(
            realm,
            "UPDATE users SET attrs = $3, updated_at = $4 WHERE realm = $1 AND id = $2",
            &[&realm, &id, &attrs, &now],
        )?;
        Ok(())
    }

    fn set_user_state(&mut self, realm: &str, id: &str, t: &Transition, now: i64) -> Result<()> {
        self.w()?;
        let suspended_from = t.memory.suspended_from.map(UserState::as_str);
        let deleted_from = t.memory.deleted_from.map(UserState::as_str);
        self.exec(
            realm,
            "UPDATE users SET state = $3, suspended_from = $4, deleted_from = $5,
                tokens_valid_after = CASE WHEN $6::boolean THEN GREATEST(tokens_valid_after, $7)
                                          ELSE tokens_valid_after END,
                updated_at = $7
             WHERE realm = $1 AND id = $2",
            &[
                &realm,
                &id,
                &t.to.as_str(),
                &suspended_from,
                &deleted_from,
                &t.revokes_tokens,
                &now,
            ],
        )?;
        Ok(())
    }

    fn touch_user(&mut self, realm: &str, id: &str, now: i64) -> Result<()> {
        self.w()?;
        self.exec(
            realm,
            "UPDATE users SET updated_at = $3 WHERE realm = $1 AND id = $2",
            &[&realm, &id, &now],
        )?;
        Ok(())
    }

    fn search_users(&mut self, realm: &str, q: &Search) -> Result<Vec<(String, String)>> {
        let key = match q.key {
            SearchKey::Email => "email_lc",
            SearchKey::Username => "username_lc",
            SearchKey::Id => "id",
        };
        let sql = format!(
            "SELECT id, {key} FROM users
             WHERE realm = $1
               AND {key} >= $2 AND ($7::text IS NULL OR {key} < $7)
               AND ($3::text IS NULL OR state = $3)
               AND ($3::text IS NOT NULL OR state <> 'Deleted')
               AND ($4::text IS NULL OR ({key}, id) > ($4, $5::text))
             ORDER BY {key}, id
             LIMIT $6"
        );
        let (ak, aid) = q.after.clone().unzip();
        // Every string with the prefix sorts below prefix + U+10FFFF (byte
        // order over UTF-8), so the range uses the index.
        let upper = (!q.prefix.is_empty()).then(|| format!("{}\u{10FFFF}", q.prefix));
        let state = q.state.map(UserState::as_str);
        let limit = i64::from(q.limit) + 1;
        self.rows(
            realm,
            &sql,
            &[&realm, &q.prefix, &state, &ak, &aid, &limit, &upper],
        )?
        .iter()
        .map(|r| Ok((get(r, 0)?, get(r, 1)?)))
        .collect()
    }

    fn for_each_user(
        &mut self,
        realm: &str,
        f: &mut dyn FnMut(UserRecord) -> Result<bool>,
    ) -> Result<()> {
        // Three ordered scans merged (one query per user would be millions
        // of queries at a million users).
        self.enter(realm)?;
        let mut groups = Scan::open(
            self,
            "SELECT user_id, group_id FROM user_groups WHERE realm = $1 ORDER BY user_id, group_id",
            realm,
        )?
        .peekable();
        let mut roles = Scan::open(
            self,
            "SELECT user_id, role_id FROM user_roles WHERE realm = $1 ORDER BY user_id, role_id",
            realm,
        )?
        .peekable();
        let mut users = Scan::open(
            self,
            "SELECT id, username, email, state, attrs, tokens_valid_after, updated_at
             FROM users WHERE realm = $1 ORDER BY id",
            realm,
        )?;
        while let Some(r) = users.next_row()? {
            let st: String = get(&r, 3)?;
            let attrs: String = get(&r, 4)?;
            let mut record = UserRecord {
                id: get(&r, 0)?,
                username: get(&r, 1)?,
                email: get(&r, 2)?,
                state: state(&st)?,
                groups: Vec::new(),
                roles: Vec::new(),
                attrs: json("user attributes", &attrs)?,
                tokens_valid_after: get(&r, 5)?,
                updated_at: get(&r, 6)?,
            };
            take_for(&mut groups, &record.id, &mut record.groups)?;
            take_for(&mut roles, &record.id, &mut record.roles)?;
            if !f(record)? {
                break;
            }
        }
        Ok(())
    }

    // ---------------------------------------------------- groups, roles
    fn node_exists(&mut self, realm: &str, kind: Kind, id: &str) -> Result<bool> {
        self.exists(
            realm,
            &format!(
                "SELECT 1 FROM {} WHERE realm = $1 AND id = $2",
                groups_table(kind)
            ),
            &[&realm, &id],
        )
    }

    fn insert_node(&mut self, realm: &str, kind: Kind, new: &NewNode, now: i64) -> Result<()> {
        self.w()?;
        self.exec(
            realm,
            &format!(
                "INSERT INTO {} (realm, id, description, created_at) VALUES ($1, $2, $3, $4)",
                groups_table(kind)
            ),
            &[&realm, &new.id, &new.description, &now],
        )?;
        Ok(())
    }

    fn node(&mut self, realm: &str, kind: Kind, id: &str) -> Result<Node> {
        let r = self
            .row(
                realm,
                &format!(
                    "SELECT description, created_at FROM {} WHERE realm = $1 AND id = $2",
                    groups_table(kind)
                ),
                &[&realm, &id],
            )?
            .ok_or_else(|| Error::not_found(kind.name(), id))?;
        let (parents, roles) = match kind {
            Kind::Group => (
                self.node_links(
                    realm,
                    "SELECT parent_id FROM group_parents WHERE realm = $1 AND group_id = $2 ORDER BY parent_id",
                    id,
                )?,
                self.node_links(
                    realm,
                    "SELECT role_id FROM group_roles WHERE realm = $1 AND group_id = $2 ORDER BY role_id",
                    id,
                )?,
            ),
            Kind::Role => (vec![], vec![]),
        };
        Ok(Node {
            id: id.to_owned(),
            description: get(&r, 0)?,
            parents,
            roles,
            created_at: get(&r, 1)?,
        })
    }

    fn nodes(&mut self, realm: &str, kind: Kind) -> Result<Vec<Node>> {
        let ids = self.strings(
            realm,
            &format!(
                "SELECT id FROM {} WHERE realm = $1 ORDER BY id",
                groups_table(kind)
            ),
            &[&realm],
        )?;
        ids.iter().map(|id| self.node(realm, kind, id)).collect()
    }

    fn describe_node(&mut self, realm: &str, kind: Kind, id: &str, text: &str) -> Result<bool> {
        self.w()?;
        let n = self.exec(
            realm,
            &format!(
                "UPDATE {} SET description = $3 WHERE realm = $1 AND id = $2",
                groups_table(kind)
            ),
            &[&realm, &id, &text],
        )?;
        Ok(n > 0)
    }

    fn delete_node(&mut self, realm: &str, kind: Kind, id: &str) -> Result<Vec<String>> {
        self.w()?;
        let (members, deletes): (&str, &[&str]) = match kind {
            Kind::Group => (
                "SELECT user_id FROM user_groups WHERE realm = $1 AND group_id = $2 ORDER BY user_id",
                &[
                    "DELETE FROM user_groups WHERE realm = $1 AND group_id = $2",
                    "DELETE FROM group_parents WHERE realm = $1 AND (group_id = $2 OR parent_id = $2)",
                    "DELETE FROM group_roles WHERE realm = $1 AND group_id = $2",
                    "DELETE FROM groups WHERE realm = $1 AND id = $2",
                ],
            ),
            Kind::Role => (
                "SELECT user_id FROM user_roles WHERE realm = $1 AND role_id = $2 ORDER BY user_id",
                &[
                    "DELETE FROM user_roles WHERE realm = $1 AND role_id = $2",
                    "DELETE FROM group_roles WHERE realm = $1 AND role_id = $2",
                    "DELETE FROM roles WHERE realm = $1 AND id = $2",
                ],
            ),
        };
        let users = self.node_links(realm, members, id)?;
        for sql in deletes {
            self.exec(realm, sql, &[&realm, &id])?;
        }
        Ok(users)
    }

    fn set_user_link(
        &mut self,
        realm: &str,
        user: &str,
        kind: Kind,
        target: &str,
        add: bool,
    ) -> Result<bool> {
        self.w()?;
        let (table, col) = match kind {
            Kind::Group => ("user_groups", "group_id"),
            Kind::Role => ("user_roles", "role_id"),
        };
        let sql = if add {
            format!(
                "INSERT INTO {table} (realm, user_id, {col}) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING"
            )
        } else {
            format!("DELETE FROM {table} WHERE realm = $1 AND user_id = $2 AND {col} = $3")
        };
        Ok(self.exec(realm, &sql, &[&realm, &user, &target])? > 0)
    }

    fn group_and_ancestors(&mut self, realm: &str, group: &str) -> Result<Vec<String>> {
        self.strings(
            realm,
            "WITH RECURSIVE up(id) AS (
                 SELECT $2::text COLLATE \"C\"
                 UNION
                 SELECT gp.parent_id FROM group_parents gp JOIN up ON gp.group_id = up.id
                 WHERE gp.realm = $1)
             SELECT id FROM up ORDER BY id",
            &[&realm, &group],
        )
    }

    fn set_group_parent(
        &mut self,
        realm: &str,
        group: &str,
        parent: &str,
        add: bool,
    ) -> Result<bool> {
        self.w()?;
        let sql = if add {
            "INSERT INTO group_parents (realm, group_id, parent_id) VALUES ($1, $2, $3)
             ON CONFLICT DO NOTHING"
        } else {
            "DELETE FROM group_parents WHERE realm = $1 AND group_id = $2 AND parent_id = $3"
        };
        Ok(self.exec(realm, sql, &[&realm, &group, &parent])? > 0)
    }

    fn set_group_role(&mut self, realm: &str, group: &str, role: &str, add: bool) -> Result<bool> {
        self.w()?;
        let sql = if add {
            "INSERT INTO group_roles (realm, group_id, role_id) VALUES ($1, $2, $3)
             ON CONFLICT DO NOTHING"
        } else {
            "DELETE FROM group_roles WHERE realm = $1 AND group_id = $2 AND role_id = $3"
        };
        Ok(self.exec(realm, sql, &[&realm, &group, &role])? > 0)
    }

    fn group_members(&mut self, realm: &str, group: &str) -> Result<Vec<String>> {
        self.node_links(
            realm,
            "SELECT user_id FROM user_groups WHERE realm = $1 AND group_id = $2 ORDER BY user_id",
            group,
        )
    }

    fn role_has_users(&mut self, realm: &str, role: &str) -> Result<bool> {
        self.exists(
            realm,
            "SELECT 1 FROM user_roles WHERE realm = $1 AND role_id = $2 LIMIT 1",
            &[&realm, &role],
        )
    }

    // ---------------------------------- policies, schema, entities, routes
    fn policies(&mut self, realm: &str) -> Result<Vec<StoredPolicy>> {
        self.rows(
            realm,
            "SELECT id, template, body, description, created_at, updated_at FROM policies
             WHERE realm = $1 ORDER BY id",
            &[&realm],
        )?
        .iter()
        .map(|r| {
            Ok(StoredPolicy {
                id: get(r, 0)?,
                template: get(r, 1)?,
                body: get(r, 2)?,
                description: get(r, 3)?,
                created_at: get(r, 4)?,
                updated_at: get(r, 5)?,
            })
        })
        .collect()
    }

    fn put_policy(&mut self, realm: &str, p: &StoredPolicy) -> Result<()> {
        self.w()?;
        self.exec(
            realm,
            "INSERT INTO policies (realm, id, template, body, description, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (realm, id) DO UPDATE SET template = excluded.template,
                 body = excluded.body, description = excluded.description,
                 updated_at = excluded.updated_at",
            &[
                &realm,
                &p.id,
                &p.template,
                &p.body,
                &p.description,
                &p.created_at,
                &p.updated_at,
            ],
        )?;
        Ok(())
    }

    fn delete_policy(&mut self, realm: &str, id: &str) -> Result<bool> {
        self.w()?;
        Ok(self.exec(
            realm,
            "DELETE FROM policies WHERE realm = $1 AND id = $2",
            &[&realm, &id],
        )? > 0)
    }

    fn links(&mut self, realm: &str) -> Result<Vec<Link>> {
        self.rows(
            realm,
            "SELECT id, template_id, slots FROM template_links WHERE realm = $1 ORDER BY id",
            &[&realm],
        )?
        .iter()
        .map(|r| {
            let slots: String = get(r, 2)?;
            Ok(Link {
                id: get(r, 0)?,
                template_id: get(r, 1)?,
                values: json("link slots", &slots)?,
            })
        })
        .collect()
    }

    fn insert_link(&mut self, realm: &str, link: &Link, now: i64) -> Result<()> {
        self.w()?;
        let slots = serde_json::to_string(&link.values).unwrap_or_default();
        self.exec(
            realm,
            "INSERT INTO template_links (realm, id, template_id, slots, created_at)
             VALUES ($1, $2, $3, $4, $5)",
            &[&realm, &link.id, &link.template_id, &slots, &now],
        )?;
        Ok(())
    }

    fn delete_link(&mut self, realm: &str, id: &str) -> Result<bool> {
        self.w()?;
        Ok(self.exec(
            realm,
            "DELETE FROM template_links WHERE realm = $1 AND id = $2",
            &[&realm, &id],
        )? > 0)
    }

    fn schema(&mut self, realm: &str, version: Option<i64>) -> Result<Option<SchemaVersion>> {
        self.row(
            realm,
            "SELECT version, text, created_at FROM schemas WHERE realm = $1
             AND ($2::bigint IS NULL OR version = $2) ORDER BY version DESC LIMIT 1",
            &[&realm, &version],
        )?
        .map(|r| {
            Ok(SchemaVersion {
                version: get(&r, 0)?,
                text: get(&r, 1)?,
                created_at: get(&r, 2)?,
            })
        })
        .transpose()
    }

    fn insert_schema(&mut self, realm: &str, text: &str, now: i64) -> Result<i64> {
        self.w()?;
        let r = self
            .row(
                realm,
                "INSERT INTO schemas (realm, version, text, created_at)
                 SELECT $1, COALESCE(MAX(version), 0) + 1, $2, $3 FROM schemas WHERE realm = $1
                 RETURNING version",
                &[&realm, &text, &now],
            )?
            .ok_or_else(|| Error::Internal("schema insert returned nothing".into()))?;
        get(&r, 0)
    }

    fn resources(&mut self, realm: &str) -> Result<Value> {
        let text: Option<String> = self
            .row(
                realm,
                "SELECT entities FROM resources WHERE realm = $1",
                &[&realm],
            )?
            .map(|r| get(&r, 0))
            .transpose()?;
        match text {
            Some(t) => json("resources", &t),
            None => Ok(Value::Array(vec![])),
        }
    }

    fn put_resources(&mut self, realm: &str, entities: &Value) -> Result<()> {
        self.w()?;
        let text = entities.to_string();
        self.exec(
            realm,
            "INSERT INTO resources (realm, entities) VALUES ($1, $2)
             ON CONFLICT (realm) DO UPDATE SET entities = excluded.entities",
            &[&realm, &text],
        )?;
        Ok(())
    }

    fn routes(&mut self, realm: &str) -> Result<Option<Vec<u8>>> {
        self.realm_document(RealmDocument::Routes, realm)
    }

    fn put_routes(&mut self, realm: &str, routes: Option<&[u8]>) -> Result<()> {
        self.put_realm_document(RealmDocument::Routes, realm, routes)
    }

    fn authzen_types(&mut self, realm: &str) -> Result<Option<Vec<u8>>> {
        self.realm_document(RealmDocument::AuthzenTypes, realm)
    }

    fn put_authzen_types(&mut self, realm: &str, types: Option<&[u8]>) -> Result<()> {
        self.put_realm_document(RealmDocument::AuthzenTypes, realm, types)
    }

    // ------------------------------------------------------ signing keys
    fn signing_keys(&mut self, realm: &str) -> Result<Vec<StoredKey>> {
        self.rows(
            realm,
            "SELECT kid, key, public_jwk, retired, created_at FROM signing_keys WHERE realm = $1
             ORDER BY created_at DESC, seq DESC",
            &[&realm],
        )?
        .iter()
        .map(|r| {
            let jwk: String = get(r, 2)?;
            let kid: String = get(r, 0)?;
            let private: String = get(r, 1)?;
            Ok(StoredKey {
                private: self
                    .keyring
                    .open_text(&Slot::signing_key(realm, &kid), &private)?,
                kid,
                public_jwk: json("public JWK", &jwk)?,
                retired: get(r, 3)?,
                created_at: get(r, 4)?,
            })
        })
        .collect()
    }

    fn insert_signing_key(&mut self, realm: &str, key: &StoredKey) -> Result<()> {
        self.w()?;
        let jwk = key.public_jwk.to_string();
        let private = self
            .keyring
            .seal_text(&Slot::signing_key(realm, &key.kid), &key.private)?;
        self.exec(
            realm,
            "INSERT INTO signing_keys (realm, kid, key, public_jwk, retired, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &realm,
                &key.kid,
                &private,
                &jwk,
                &key.retired,
                &key.created_at,
            ],
        )?;
        Ok(())
    }

    fn retire_signing_keys(&mut self, realm: &str, keep: &[String]) -> Result<()> {
        self.w()?;
        let keep = keep.to_vec();
        self.exec(
            realm,
            "UPDATE signing_keys SET retired = TRUE WHERE realm = $1 AND NOT retired
             AND kid <> ALL($2::text[])",
            &[&realm, &keep],
        )?;
        Ok(())
    }

    // ------------------------------------------------------- credentials
    fn credentials(&mut self, realm: &str, user: &str) -> Result<Credentials> {
        self.row(
            realm,
            "SELECT password_hash, new_password_required, totp_secret, totp_confirmed,
                    totp_last_step, verify_code_hash, verify_expires, verify_attempts
             FROM credentials WHERE realm = $1 AND user_id = $2",
            &[&realm, &user],
        )?
        .map(|r| {
            Ok(Credentials {
                password_hash: get(&r, 0)?,
                new_password_required: get(&r, 1)?,
                totp_secret: get(&r, 2)?,
                totp_confirmed: get(&r, 3)?,
                totp_last_step: get(&r, 4)?,
                verify_code_hash: get(&r, 5)?,
                verify_expires: get(&r, 6)?,
                verify_attempts: get(&r, 7)?,
            })
        })
        .transpose()
        .map(Option::unwrap_or_default)
        .and_then(|mut c| {
            if let Some(stored) = c.totp_secret.take() {
                c.totp_secret = Some(self.keyring.open_text(&Slot::totp(realm, user), &stored)?);
            }
            Ok(c)
        })
    }

    fn put_credentials(&mut self, realm: &str, user: &str, c: &Credentials) -> Result<()> {
        self.w()?;
        let totp_secret = c
            .totp_secret
            .as_deref()
            .map(|t| self.keyring.seal_text(&Slot::totp(realm, user), t))
            .transpose()?;
        self.exec(
            realm,
            "INSERT INTO credentials (realm, user_id, password_hash, new_password_required,
                 totp_secret, totp_confirmed, totp_last_step, verify_code_hash, verify_expires,
                 verify_attempts)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             ON CONFLICT (realm, user_id) DO UPDATE SET
                 password_hash = excluded.password_hash,
                 new_password_required = excluded.new_password_required,
                 totp_secret = excluded.totp_secret,
                 totp_confirmed = excluded.totp_confirmed,
                 totp_last_step = excluded.totp_last_step,
                 verify_code_hash = excluded.verify_code_hash,
                 verify_expires = excluded.verify_expires,
                     verify_attempts = excluded.verify_attempts",
            &[
                &realm,
                &user,
                &c.password_hash,
                &c.new_password_required,
                &totp_secret,
                &c.totp_confirmed,
                &c.totp_last_step,
                &c.verify_code_hash,
                &c.verify_expires,
                &c.verify_attempts,
            ],
        )?;
        Ok(())
    }

    fn throttle(&mut self, realm: &str, login_lc: &str) -> Result<Throttle> {
        let rec: Option<String> = self
            .row(
                realm,
                "SELECT record FROM login_throttle WHERE realm = $1 AND username_lc = $2",
                &[&realm, &login_lc],
            )?
            .map(|r| get(&r, 0))
            .transpose()?;
        Ok(rec
            .and_then(|r| serde_json::from_str(&r).ok())
            .unwrap_or_default())
    }

    fn put_throttle(&mut self, realm: &str, login_lc: &str, t: Option<&Throttle>) -> Result<()> {
        self.w()?;
        match t {
            Some(t) => {
                let rec = serde_json::to_string(t).map_err(|e| Error::Internal(e.to_string()))?;
                self.exec(
                    realm,
                    "INSERT INTO login_throttle (realm, username_lc, record) VALUES ($1, $2, $3)
                     ON CONFLICT (realm, username_lc) DO UPDATE SET record = excluded.record",
                    &[&realm, &login_lc, &rec],
                )
            }
            None => self.exec(
                realm,
                "DELETE FROM login_throttle WHERE realm = $1 AND username_lc = $2",
                &[&realm, &login_lc],
            ),
        }?;
        Ok(())
    }

    fn insert_session(&mut self, s: &Session, now: i64) -> Result<()> {
        self.w()?;
        self.exec(
            &s.realm,
            "DELETE FROM login_sessions WHERE expires_at < $1",
            &[&now],
        )?;
        self.exec(
            &s.realm,
            "INSERT INTO login_sessions (id, realm, user_id, challenge, expires_at)
             VALUES ($1, $2, $3, $4, $5)",
            &[&s.id, &s.realm, &s.user_id, &s.challenge, &s.expires_at],
        )?;
        Ok(())
    }

    fn take_session(&mut self, realm: &str, id: &str) -> Result<Option<Session>> {
        self.w()?;
        // Deleted whatever realm it belongs to (a handle is used once),
        // returned only to its own realm.
        let row = self.row(
            realm,
            "DELETE FROM login_sessions WHERE id = $1 RETURNING realm, user_id, challenge, expires_at",
            &[&id],
        )?;
        let Some(r) = row else {
            return Ok(None);
        };
        let owner: String = get(&r, 0)?;
        if owner != realm {
            return Ok(None);
        }
        Ok(Some(Session {
            id: id.to_owned(),
            realm: realm.to_owned(),
            user_id: get(&r, 1)?,
            challenge: get(&r, 2)?,
            expires_at: get(&r, 3)?,
        }))
    }

    // -------------------------------------------------------- change log
    fn record_change(&mut self, realm: &str, change: Change, now: i64) -> Result<()> {
        self.w()?;
        let user = match &change {
            Change::User(id) => Some(id.as_str()),
            Change::AllUsers => Some("*"),
            Change::Content => None,
        };
        self.exec(
            realm,
            "INSERT INTO changes (realm, user_id, at) VALUES ($1, $2, $3)",
            &[&realm, &user, &now],
        )?;
        self.exec(
            realm,
            "UPDATE realms SET version = version + 1 WHERE name = $1",
            &[&realm],
        )?;
        Ok(())
    }

    fn unpublished_through(&mut self, realm: &str, seq: i64) -> Result<bool> {
        self.row(
            realm,
            "SELECT EXISTS (SELECT 1 FROM changes WHERE realm = $1 AND seq <= $2)",
            &[&realm, &seq],
        )?
        .map_or(Ok(false), |r| get(&r, 0))
    }

    fn pending(&mut self, realm: &str) -> Result<Option<Pending>> {
        let upto: Option<i64> = self
            .row(
                realm,
                "SELECT MAX(seq) FROM changes WHERE realm = $1",
                &[&realm],
            )?
            .map(|r| get(&r, 0))
            .transpose()?
            .flatten();
        let Some(upto) = upto else {
            return Ok(None);
        };
        let changed: Vec<Option<String>> = self
            .rows(
                realm,
                "SELECT DISTINCT user_id FROM changes WHERE realm = $1 AND seq <= $2 ORDER BY user_id",
                &[&realm, &upto],
            )?
            .iter()
            .map(|r| get(r, 0))
            .collect::<Result<_>>()?;
        let content = changed.iter().any(Option::is_none);
        let all_users = changed.iter().any(|c| c.as_deref() == Some("*"));
        let users = changed.into_iter().flatten().filter(|u| u != "*").collect();
        Ok(Some(Pending {
            upto,
            users,
            all_users,
            content,
        }))
    }

    fn pending_count(&mut self, realm: &str) -> Result<u64> {
        let n: i64 = self
            .row(
                realm,
                "SELECT COUNT(*) FROM changes WHERE realm = $1",
                &[&realm],
            )?
            .map(|r| get(&r, 0))
            .transpose()?
            .unwrap_or(0);
        Ok(u64::try_from(n).unwrap_or(0))
    }

    fn oldest_pending(&mut self, realm: &str) -> Result<Option<i64>> {
        Ok(self
            .row(
                realm,
                "SELECT MIN(at) FROM changes WHERE realm = $1",
                &[&realm],
            )?
            .map(|r| get(&r, 0))
            .transpose()?
            .flatten())
    }

    fn mark_published(&mut self, realm: &str, upto: i64, revision: u64, now: i64) -> Result<()> {
        self.w()?;
        let rev =
            i64::try_from(revision).map_err(|_| Error::Internal("revision overflow".into()))?;
        self.exec(
            realm,
            "DELETE FROM changes WHERE realm = $1 AND seq <= $2",
            &[&realm, &upto],
        )?;
        self.exec(
            realm,
            "INSERT INTO published (realm, revision, at) VALUES ($1, $2, $3)
             ON CONFLICT (realm) DO UPDATE SET revision = GREATEST(published.revision, excluded.revision),
                 at = excluded.at",
            &[&realm, &rev, &now],
        )?;
        self.exec(
            realm,
            "DELETE FROM publish_intents WHERE realm = $1 AND revision <= $2",
            &[&realm, &rev],
        )?;
        Ok(())
    }

    fn record_intent(&mut self, realm: &str, revision: u64, upto: i64) -> Result<()> {
        self.w()?;
        let rev =
            i64::try_from(revision).map_err(|_| Error::Internal("revision overflow".into()))?;
        self.exec(
            realm,
            "INSERT INTO publish_intents (realm, revision, upto) VALUES ($1, $2, $3)
             ON CONFLICT (realm, revision) DO NOTHING",
            &[&realm, &rev, &upto],
        )?;
        Ok(())
    }

    fn intent(&mut self, realm: &str, revision: u64) -> Result<Option<i64>> {
        let rev =
            i64::try_from(revision).map_err(|_| Error::Internal("revision overflow".into()))?;
        self.row(
            realm,
            "SELECT upto FROM publish_intents WHERE realm = $1 AND revision = $2",
            &[&realm, &rev],
        )?
        .map(|r| get(&r, 0))
        .transpose()
    }

    fn published(&mut self, realm: &str) -> Result<Option<(u64, i64)>> {
        self.row(
            realm,
            "SELECT revision, at FROM published WHERE realm = $1",
            &[&realm],
        )?
        .map(|r| {
            let rev: i64 = get(&r, 0)?;
            Ok((u64::try_from(rev).unwrap_or(0), get(&r, 1)?))
        })
        .transpose()
    }

    // ------------------------------------------------------------- copy
    fn export_rows(
        &mut self,
        t: &TableSpec,
        f: &mut dyn FnMut(Vec<Cell>) -> Result<()>,
    ) -> Result<()> {
        let cols: Vec<&str> = t.columns.iter().map(|(c, _)| *c).collect();
        let sql = format!(
            "SELECT {} FROM {} ORDER BY {}",
            cols.join(", "),
            t.name,
            t.order.replace("{insertion}", "seq")
        );
        let tx = self.tx;
        let portal = self
            .rt
            .block_on(async {
                let stmt = tx.prepare(&sql).await?;
                tx.bind(&stmt, &[]).await
            })
            .pg()?;
        loop {
            let rows = self
                .rt
                .block_on(tx.query_portal(&portal, SCAN_BATCH))
                .pg()?;
            let last = rows.len() < usize::try_from(SCAN_BATCH).unwrap_or(0);
            for r in &rows {
                let mut out = Vec::with_capacity(t.columns.len());
                for (i, (_, kind)) in t.columns.iter().enumerate() {
                    out.push(match kind {
                        Column::Int => get::<Option<i64>>(r, i)?.map_or(Cell::Null, Cell::Int),
                        Column::Text => get::<Option<String>>(r, i)?.map_or(Cell::Null, Cell::Text),
                        Column::Bytes => {
                            get::<Option<Vec<u8>>>(r, i)?.map_or(Cell::Null, Cell::Bytes)
                        }
                        Column::Bool => get::<Option<bool>>(r, i)?.map_or(Cell::Null, Cell::Bool),
                    });
                }
                f(out)?;
            }
            if last {
                return Ok(());
            }
        }
    }

    fn import_rows(&mut self, t: &TableSpec, rows: &[Vec<Cell>]) -> Result<()> {
        self.w()?;
        if rows.is_empty() {
            return Ok(());
        }
        let cols: Vec<&str> = t.columns.iter().map(|(c, _)| *c).collect();
        let width = cols.len();
        let tuples: Vec<String> = (0..rows.len())
            .map(|r| {
                let marks: Vec<String> =
                    (1..=width).map(|c| format!("${}", r * width + c)).collect();
                format!("({})", marks.join(", "))
            })
            .collect();
        // Identity columns (the change log's sequence) keep their values.
        let overriding = if t.name == "changes" {
            " OVERRIDING SYSTEM VALUE"
        } else {
            ""
        };
        let sql = format!(
            "INSERT INTO {} ({}){overriding} VALUES {}",
            t.name,
            cols.join(", "),
            tuples.join(", ")
        );
        let mut values: Vec<Box<dyn ToSql + Sync + Send>> = Vec::with_capacity(rows.len() * width);
        for row in rows {
            for (cell, (name, kind)) in row.iter().zip(t.columns) {
                values.push(match (cell, kind) {
                    (Cell::Null, Column::Int) => Box::new(None::<i64>),
                    (Cell::Null, Column::Text) => Box::new(None::<String>),
                    (Cell::Null, Column::Bytes) => Box::new(None::<Vec<u8>>),
                    (Cell::Null, Column::Bool) => Box::new(None::<bool>),
                    (Cell::Int(n), Column::Int) => Box::new(*n),
                    (Cell::Text(s), Column::Text) => Box::new(s.clone()),
                    (Cell::Bytes(b), Column::Bytes) => Box::new(b.clone()),
                    (Cell::Bool(b), Column::Bool) => Box::new(*b),
                    (c, k) => {
                        return Err(Error::Internal(format!(
                            "{}.{name}: {c:?} where {k:?} belongs",
                            t.name
                        )));
                    }
                });
            }
        }
        let params: Vec<&(dyn ToSql + Sync)> = values
            .iter()
            .map(|v| v.as_ref() as &(dyn ToSql + Sync))
            .collect();
        let tx = self.tx;
        self.rt
            .block_on(async {
                let stmt = tx.prepare(&sql).await?;
                tx.execute(&stmt, &params).await
            })
            .pg()?;
        Ok(())
    }

    fn copied(&mut self) -> Result<()> {
        self.w()?;
        let tx = self.tx;
        self.rt
            .block_on(tx.batch_execute(
                "SELECT setval(pg_get_serial_sequence('changes', 'seq'),
                               COALESCE((SELECT MAX(seq) FROM changes), 0) + 1, false)",
            ))
            .pg()
    }

    // ------------------------------------------------- secrets at rest
    fn reseal_secrets(&mut self, pass: Pass) -> Result<Rewrapped> {
        self.w()?;
        let keyring = self.keyring;
        let mut out = Rewrapped {
            kek: keyring.current_id().to_owned(),
            ..Rewrapped::default()
        };
        // Every start makes the clear-only pass: it reads only what SQL
        // can tell is in clear, and every realm's bundle seed and newest
        // signing key (a handful), which it opens: a KEK that does not open this database is
        // refused at start, not at the first publish. No realm lock: each value is rewritten
        // only if it is still the one read (a writer that changed it
        // meanwhile sealed it under the current KEK already).
        let only_clear = |cond: String| match pass {
            Pass::Start { .. } => cond,
            Pass::Rewrap => "TRUE".to_owned(),
        };
        let clear_text = |col: &str| {
            format!(
                "left({col}, {}) <> '{SEALED_TEXT_PREFIX}'",
                SEALED_TEXT_PREFIX.len()
            )
        };
        let text = |v: Vec<u8>| {
            String::from_utf8(v).map_err(|_| Error::Internal("sealed text is not UTF-8".into()))
        };
        let tx = self.tx;
        let exec = |sql: &str, params: Params<'_>| -> Result<u64> {
            self.rt.block_on(tx.execute(sql, params)).pg()
        };

        let seeds = self.query("SELECT name, bundle_key FROM realms ORDER BY name", &[])?;
        for r in &seeds {
            let (name, stored): (String, Vec<u8>) = (get(r, 0)?, get(r, 1)?);
            // Resealing first: the throwaway KEK refuses what it did
            // not seal before anything else is said about it. A value it
            // left as it was is opened (one it sealed was clear; one it
            // re-wrapped it opened).
            let resealed = keyring.reseal(&Slot::bundle_seed(&name), &stored, pass)?;
            if resealed == Resealed::Unchanged {
                keyring.open(&Slot::bundle_seed(&name), &stored)?;
            }
            out.count(resealed, |new| {
                exec(
                    "UPDATE realms SET bundle_key = $1 WHERE name = $2 AND bundle_key = $3",
                    &[&new, &name, &stored],
                )
            })?;
        }

        let keys = self.query(
            &format!(
                "SELECT realm, kid, key FROM signing_keys WHERE {} ORDER BY realm, kid",
                only_clear(clear_text("key"))
            ),
            &[],
        )?;
        for r in &keys {
            let (realm, kid, stored): (String, String, String) =
                (get(r, 0)?, get(r, 1)?, get(r, 2)?);
            let resealed = keyring.reseal_text(&Slot::signing_key(&realm, &kid), &stored, pass)?;
            out.count(resealed, |new| {
                exec(
                    "UPDATE signing_keys SET key = $1 WHERE realm = $2 AND kid = $3 AND key = $4",
                    &[&text(new)?, &realm, &kid, &stored],
                )
            })?;
        }

        if matches!(pass, Pass::Start { .. }) {
            // And each realm's newest signing key, opened: a KEK that
            // opens the seeds but not the token keys (a retired KEK
            // removed too early) is refused at start too.
            let newest = self.query(
                "SELECT DISTINCT ON (realm) realm, kid, key FROM signing_keys
                 ORDER BY realm, created_at DESC, kid",
                &[],
            )?;
            for r in &newest {
                let (realm, kid, stored): (String, String, String) =
                    (get(r, 0)?, get(r, 1)?, get(r, 2)?);
                if stored.starts_with(SEALED_TEXT_PREFIX) {
                    keyring.open_text(&Slot::signing_key(&realm, &kid), &stored)?;
                }
            }
        }

        let totps = self.query(
            &format!(
                "SELECT realm, user_id, totp_secret FROM credentials
                 WHERE totp_secret IS NOT NULL AND {} ORDER BY realm, user_id",
                only_clear(clear_text("totp_secret"))
            ),
            &[],
        )?;
        for r in &totps {
            let (realm, user, stored): (String, String, String) =
                (get(r, 0)?, get(r, 1)?, get(r, 2)?);
            let resealed = keyring.reseal_text(&Slot::totp(&realm, &user), &stored, pass)?;
            out.count(resealed, |new| {
                exec(
                    "UPDATE credentials SET totp_secret = $1
                     WHERE realm = $2 AND user_id = $3 AND totp_secret = $4",
                    &[&text(new)?, &realm, &user, &stored],
                )
            })?;
        }
        Ok(out)
    }

    fn sealed_only(&mut self) -> Result<bool> {
        Ok(!self
            .query(
                "SELECT 1 FROM secrets_at_rest WHERE format = 'sealed-only'",
                &[],
            )?
            .is_empty())
    }

    fn record_sealed_only(&mut self) -> Result<()> {
        self.w()?;
        let tx = self.tx;
        // Two starts racing may both insert it: a second row changes
        // nothing.
        self.rt
            .block_on(tx.execute(
                "INSERT INTO secrets_at_rest (format) SELECT 'sealed-only'
                 WHERE NOT EXISTS (SELECT 1 FROM secrets_at_rest WHERE format = 'sealed-only')",
                &[],
            ))
            .pg()?;
        Ok(())
    }
}
