//! The SQL of every [`Tx`] method, over one rusqlite transaction.

use super::Sql;
use crate::backend::take_for;
use crate::domain::error::{Error, Result};
use crate::domain::group::{Kind, NewNode, Node};
use crate::domain::policy::{Link, SchemaVersion, StoredPolicy};
use crate::domain::realm::Realm;
use crate::domain::throttle::Throttle;
use crate::domain::user::{Search, SearchKey, User};
use crate::ports::repository::{
    Cell, Change, Column, Credentials, NewRealmRecord, Pending, RealmDocument, Session, StoredKey,
    TableSpec, Taken, Tx,
};
use crate::secrets::{Keyring, Pass, Resealed, Rewrapped, SEALED_TEXT_PREFIX, Slot};
use pdp_core::{Memory, Transition, UserRecord, UserState};
use rusqlite::{OptionalExtension, Transaction, params};
use serde_json::{Map, Value};

/// One transaction.
pub(super) struct SqliteTx<'c> {
    pub(super) tx: &'c Transaction<'c>,
    pub(super) writable: bool,
    /// Seals and opens the secrets this transaction writes and reads.
    pub(super) keyring: &'c Keyring,
}

impl SqliteTx<'_> {
    /// A realm's stored bundle document (one row per realm in its table).
    fn realm_document(&mut self, doc: RealmDocument, realm: &str) -> Result<Option<Vec<u8>>> {
        let sql = format!("SELECT body FROM {} WHERE realm = ?1", doc.table());
        self.tx
            .query_row(&sql, [realm], |r| r.get(0))
            .optional()
            .sql()
    }

    /// Replace (or, with `None`, remove) a realm's bundle document.
    fn put_realm_document(
        &mut self,
        doc: RealmDocument,
        realm: &str,
        body: Option<&[u8]>,
    ) -> Result<()> {
        let table = doc.table();
        let tx = self.w()?;
        match body {
            Some(body) => tx.execute(
                &format!(
                    "INSERT INTO {table} (realm, body) VALUES (?1, ?2)
                     ON CONFLICT (realm) DO UPDATE SET body = excluded.body"
                ),
                params![realm, body],
            ),
            None => tx.execute(&format!("DELETE FROM {table} WHERE realm = ?1"), [realm]),
        }
        .sql()?;
        Ok(())
    }

    fn w(&self) -> Result<&Transaction<'_>> {
        if self.writable {
            Ok(self.tx)
        } else {
            Err(Error::Internal("a write in a read transaction".into()))
        }
    }
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

fn realm_row(tx: &Transaction<'_>, name: &str) -> Result<Option<Realm>> {
    let row: Option<(String, String, String, String, i64, Option<i64>)> = tx
        .query_row(
            "SELECT display_name, issuer, clients, identity, created_at, deleted_at
             FROM realms WHERE name = ?1",
            [name],
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            },
        )
        .optional()
        .sql()?;
    let Some((display_name, issuer, clients, identity, created_at, deleted_at)) = row else {
        return Ok(None);
    };
    let schema_version: i64 = tx
        .query_row(
            "SELECT COALESCE(MAX(version), 0) FROM schemas WHERE realm = ?1",
            [name],
            |r| r.get(0),
        )
        .sql()?;
    Ok(Some(Realm {
        name: name.to_owned(),
        display_name,
        issuer,
        clients: json("realm clients", &clients)?,
        identity,
        schema_version,
        created_at,
        deleted_at,
    }))
}

fn strings(tx: &Transaction<'_>, sql: &str, a: &str, b: &str) -> Result<Vec<String>> {
    let mut stmt = tx.prepare_cached(sql).sql()?;
    let out = stmt
        .query_map(params![a, b], |r| r.get(0))
        .sql()?
        .collect::<rusqlite::Result<_>>()
        .sql()?;
    Ok(out)
}

fn exists(tx: &Transaction<'_>, sql: &str, p: impl rusqlite::Params) -> Result<bool> {
    Ok(tx.query_row(sql, p, |_| Ok(())).optional().sql()?.is_some())
}

impl Tx for SqliteTx<'_> {
    // ------------------------------------------------------------ realms
    fn realm_exists(&mut self, name: &str) -> Result<bool> {
        exists(self.tx, "SELECT 1 FROM realms WHERE name = ?1", [name])
    }

    fn insert_realm(&mut self, r: &NewRealmRecord) -> Result<()> {
        self.w()?
            .execute(
                "INSERT INTO realms (name, display_name, issuer, clients, identity, bundle_key, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    r.name,
                    r.display_name,
                    r.issuer,
                    serde_json::to_string(&r.clients).unwrap_or_default(),
                    r.identity,
                    self.keyring.seal(&Slot::bundle_seed(&r.name), &r.bundle_seed)?,
                    r.created_at
                ],
            )
            .sql()?;
        Ok(())
    }

    fn live_realm(&mut self, name: &str) -> Result<()> {
        if exists(
            self.tx,
            "SELECT 1 FROM realms WHERE name = ?1 AND deleted_at IS NULL",
            [name],
        )? {
            Ok(())
        } else {
            Err(Error::not_found("realm", name))
        }
    }

    fn realm(&mut self, name: &str) -> Result<Realm> {
        match realm_row(self.tx, name)? {
            Some(r) if r.deleted_at.is_none() => Ok(r),
            _ => Err(Error::not_found("realm", name)),
        }
    }

    fn realms(&mut self, include_deleted: bool) -> Result<Vec<Realm>> {
        let mut stmt = self
            .tx
            .prepare("SELECT name FROM realms WHERE ?1 OR deleted_at IS NULL ORDER BY name")
            .sql()?;
        let names: Vec<String> = stmt
            .query_map([include_deleted], |r| r.get(0))
            .sql()?
            .collect::<rusqlite::Result<_>>()
            .sql()?;
        names
            .iter()
            .filter_map(|n| realm_row(self.tx, n).transpose())
            .collect()
    }

    fn delete_realm(&mut self, name: &str, now: i64) -> Result<()> {
        self.live_realm(name)?;
        self.w()?
            .execute(
                "UPDATE realms SET deleted_at = ?2 WHERE name = ?1",
                params![name, now],
            )
            .sql()?;
        Ok(())
    }

    fn deleted_realm(&mut self, name: &str) -> Result<Realm> {
        match realm_row(self.tx, name)? {
            Some(r) if r.deleted_at.is_some() => Ok(r),
            _ => Err(Error::not_found("deleted realm", name)),
        }
    }

    fn realm_version(&mut self, name: &str) -> Result<i64> {
        self.tx
            .query_row(
                "SELECT version FROM realms WHERE name = ?1 AND deleted_at IS NULL",
                [name],
                |r| r.get(0),
            )
            .optional()
            .sql()?
            .ok_or_else(|| Error::not_found("realm", name))
    }

    fn bundle_seed(&mut self, name: &str) -> Result<[u8; 32]> {
        let seed: Vec<u8> = self
            .tx
            .query_row(
                "SELECT bundle_key FROM realms WHERE name = ?1",
                [name],
                |r| r.get(0),
            )
            .optional()
            .sql()?
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
        let taken: Option<String> = self
            .tx
            .query_row(
                "SELECT CASE WHEN id = ?2 THEN 'id' WHEN email_lc = ?3 THEN 'email' ELSE 'username' END
                 FROM users WHERE realm = ?1 AND (id = ?2 OR email_lc = ?3 OR username_lc = ?4) LIMIT 1",
                params![realm, id, email.to_lowercase(), username.to_lowercase()],
                |r| r.get(0),
            )
            .optional()
            .sql()?;
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
        let tx = self.w()?;
        let mut insert = tx
            .prepare_cached(
                "INSERT INTO users (realm, id, username, username_lc, email, email_lc, state, attrs,
                                    tokens_valid_after, created_at, updated_at,
                                    suspended_from, deleted_from)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            )
            .sql()?;
        insert
            .execute(params![
                realm,
                user.id,
                user.username,
                user.username.to_lowercase(),
                user.email,
                user.email.to_lowercase(),
                user.state.as_str(),
                serde_json::to_string(&user.attrs).unwrap_or_default(),
                user.tokens_valid_after,
                user.created_at,
                user.updated_at,
                memory.suspended_from.map(UserState::as_str),
                memory.deleted_from.map(UserState::as_str),
            ])
            .map_err(|e| match e {
                rusqlite::Error::SqliteFailure(f, _)
                    if f.code == rusqlite::ErrorCode::ConstraintViolation =>
                {
                    Error::AlreadyExists {
                        kind: "user with id, email or username",
                        id: format!("{} / {} / {}", user.id, user.email, user.username),
                    }
                }
                e => super::db_err(e),
            })?;
        let mut member = tx
            .prepare_cached(
                "INSERT INTO user_groups (realm, user_id, group_id) VALUES (?1, ?2, ?3)",
            )
            .sql()?;
        for g in &user.groups {
            member
                .execute(params![realm, user.id, g])
                .map_err(|_| Error::not_found("group", g.clone()))?;
        }
        let mut role = tx
            .prepare_cached("INSERT INTO user_roles (realm, user_id, role_id) VALUES (?1, ?2, ?3)")
            .sql()?;
        for r in &user.roles {
            role.execute(params![realm, user.id, r])
                .map_err(|_| Error::not_found("role", r.clone()))?;
        }
        if let Some(h) = password_hash {
            tx.prepare_cached(
                "INSERT INTO credentials (realm, user_id, password_hash) VALUES (?1, ?2, ?3)",
            )
            .sql()?
            .execute(params![realm, user.id, h])
            .sql()?;
        }
        Ok(())
    }

    fn user(&mut self, realm: &str, id: &str) -> Result<User> {
        let tx = self.tx;
        let mut stmt = tx
            .prepare_cached(
                "SELECT username, email, state, attrs, tokens_valid_after, created_at, updated_at
                 FROM users WHERE realm = ?1 AND id = ?2",
            )
            .sql()?;
        let row: Option<(String, String, String, String, i64, i64, i64)> = stmt
            .query_row(params![realm, id], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                ))
            })
            .optional()
            .sql()?;
        let (username, email, state, attrs, tva, created_at, updated_at) =
            row.ok_or_else(|| Error::not_found("user", id))?;
        Ok(User {
            id: id.to_owned(),
            username,
            email,
            state: state.parse()?,
            attrs: json("user attributes", &attrs)?,
            groups: strings(
                tx,
                "SELECT group_id FROM user_groups WHERE realm = ?1 AND user_id = ?2 ORDER BY group_id",
                realm,
                id,
            )?,
            roles: strings(
                tx,
                "SELECT role_id FROM user_roles WHERE realm = ?1 AND user_id = ?2 ORDER BY role_id",
                realm,
                id,
            )?,
            tokens_valid_after: tva,
            created_at,
            updated_at,
        })
    }

    fn user_id_by_login(&mut self, realm: &str, login: &str) -> Result<Option<String>> {
        self.tx
            .query_row(
                "SELECT id FROM users WHERE realm = ?1 AND (username_lc = ?2 OR email_lc = ?2)
                 ORDER BY username_lc = ?2 DESC LIMIT 1",
                params![realm, login.to_lowercase()],
                |r| r.get(0),
            )
            .optional()
            .sql()
    }

    fn user_state(&mut self, realm: &str, id: &str) -> Result<(UserState, Memory)> {
        let (state, suspended_from, deleted_from): (String, Option<String>, Option<String>) = self
            .tx
            .query_row(
                "SELECT state, suspended_from, deleted_from FROM users WHERE realm = ?1 AND id = ?2",
                params![realm, id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .sql()?
            .ok_or_else(|| Error::not_found("user", id))?;
        let parse = |s: &str| s.parse::<UserState>().map_err(Error::from);
        Ok((
            parse(&state)?,
            Memory {
                suspended_from: suspended_from.as_deref().map(parse).transpose()?,
                deleted_from: deleted_from.as_deref().map(parse).transpose()?,
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
        self.w()?
            .execute(
                "UPDATE users SET attrs = ?3, updated_at = ?4 WHERE realm = ?1 AND id = ?2",
                params![
                    realm,
                    id,
                    serde_json::to_string(attrs).unwrap_or_default(),
                    now
                ],
            )
            .sql()?;
        Ok(())
    }

    fn set_user_state(&mut self, realm: &str, id: &str, t: &Transition, now: i64) -> Result<()> {
        self.w()?
            .execute(
                "UPDATE users SET state = ?3, suspended_from = ?4, deleted_from = ?5,
                    tokens_valid_after = CASE WHEN ?6 THEN MAX(tokens_valid_after, ?7) ELSE tokens_valid_after END,
                    updated_at = ?7
                 WHERE realm = ?1 AND id = ?2",
                params![
                    realm,
                    id,
                    t.to.as_str(),
                    t.memory.suspended_from.map(UserState::as_str),
                    t.memory.deleted_from.map(UserState::as_str),
                    t.revokes_tokens,
                    now
                ],
            )
            .sql()?;
        Ok(())
    }

    fn touch_user(&mut self, realm: &str, id: &str, now: i64) -> Result<()> {
        self.w()?
            .execute(
                "UPDATE users SET updated_at = ?3 WHERE realm = ?1 AND id = ?2",
                params![realm, id, now],
            )
            .sql()?;
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
             WHERE realm = ?1
               AND {key} >= ?2 AND (?7 IS NULL OR {key} < ?7)
               AND (?3 IS NULL OR state = ?3)
               AND (?3 IS NOT NULL OR state != 'Deleted')
               AND (?4 IS NULL OR ({key}, id) > (?4, ?5))
             ORDER BY {key}, id
             LIMIT ?6"
        );
        let mut stmt = self.tx.prepare_cached(&sql).sql()?;
        let (ak, aid) = q.after.clone().unzip();
        // Every string with the prefix sorts below prefix + U+10FFFF
        // (binary collation over UTF-8), so the range uses the index.
        let upper = (!q.prefix.is_empty()).then(|| format!("{}\u{10FFFF}", q.prefix));
        let rows = stmt
            .query_map(
                params![
                    realm,
                    q.prefix,
                    q.state.map(UserState::as_str),
                    ak,
                    aid,
                    i64::from(q.limit) + 1,
                    upper
                ],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .sql()?
            .collect::<rusqlite::Result<_>>()
            .sql()?;
        Ok(rows)
    }

    fn for_each_user(
        &mut self,
        realm: &str,
        f: &mut dyn FnMut(UserRecord) -> Result<bool>,
    ) -> Result<()> {
        // Three ordered scans merged (one query per user would be millions
        // of queries at a million users).
        let tx = self.tx;
        let mut groups = tx
            .prepare(
                "SELECT user_id, group_id FROM user_groups WHERE realm = ?1 ORDER BY user_id, group_id",
            )
            .sql()?;
        let mut groups = groups
            .query_map([realm], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })
            .sql()?
            .map(Sql::sql)
            .peekable();
        let mut roles = tx
            .prepare(
                "SELECT user_id, role_id FROM user_roles WHERE realm = ?1 ORDER BY user_id, role_id",
            )
            .sql()?;
        let mut roles = roles
            .query_map([realm], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })
            .sql()?
            .map(Sql::sql)
            .peekable();
        let mut users = tx
            .prepare(
                "SELECT id, username, email, state, attrs, tokens_valid_after, updated_at
                 FROM users WHERE realm = ?1 ORDER BY id",
            )
            .sql()?;
        let mut rows = users.query([realm]).sql()?;
        while let Some(r) = rows.next().sql()? {
            let id: String = r.get(0).sql()?;
            let state: String = r.get(3).sql()?;
            let attrs: String = r.get(4).sql()?;
            let mut record = UserRecord {
                username: r.get(1).sql()?,
                email: r.get(2).sql()?,
                state: state.parse::<UserState>()?,
                groups: Vec::new(),
                roles: Vec::new(),
                attrs: json("user attributes", &attrs)?,
                tokens_valid_after: r.get(5).sql()?,
                updated_at: r.get(6).sql()?,
                id,
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
        exists(
            self.tx,
            &format!(
                "SELECT 1 FROM {} WHERE realm = ?1 AND id = ?2",
                groups_table(kind)
            ),
            params![realm, id],
        )
    }

    fn insert_node(&mut self, realm: &str, kind: Kind, new: &NewNode, now: i64) -> Result<()> {
        self.w()?
            .execute(
                &format!(
                    "INSERT INTO {} (realm, id, description, created_at) VALUES (?1, ?2, ?3, ?4)",
                    groups_table(kind)
                ),
                params![realm, new.id, new.description, now],
            )
            .sql()?;
        Ok(())
    }

    fn node(&mut self, realm: &str, kind: Kind, id: &str) -> Result<Node> {
        let tx = self.tx;
        let row: Option<(String, i64)> = tx
            .query_row(
                &format!(
                    "SELECT description, created_at FROM {} WHERE realm = ?1 AND id = ?2",
                    groups_table(kind)
                ),
                params![realm, id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .sql()?;
        let (description, created_at) = row.ok_or_else(|| Error::not_found(kind.name(), id))?;
        let (parents, roles) = match kind {
            Kind::Group => (
                strings(
                    tx,
                    "SELECT parent_id FROM group_parents WHERE realm = ?1 AND group_id = ?2 ORDER BY parent_id",
                    realm,
                    id,
                )?,
                strings(
                    tx,
                    "SELECT role_id FROM group_roles WHERE realm = ?1 AND group_id = ?2 ORDER BY role_id",
                    realm,
                    id,
                )?,
            ),
            Kind::Role => (vec![], vec![]),
        };
        Ok(Node {
            id: id.to_owned(),
            description,
            parents,
            roles,
            created_at,
        })
    }

    fn nodes(&mut self, realm: &str, kind: Kind) -> Result<Vec<Node>> {
        let mut stmt = self
            .tx
            .prepare_cached(&format!(
                "SELECT id FROM {} WHERE realm = ?1 ORDER BY id",
                groups_table(kind)
            ))
            .sql()?;
        let ids: Vec<String> = stmt
            .query_map([realm], |r| r.get(0))
            .sql()?
            .collect::<rusqlite::Result<_>>()
            .sql()?;
        ids.iter().map(|id| self.node(realm, kind, id)).collect()
    }

    fn describe_node(&mut self, realm: &str, kind: Kind, id: &str, text: &str) -> Result<bool> {
        let n = self
            .w()?
            .execute(
                &format!(
                    "UPDATE {} SET description = ?3 WHERE realm = ?1 AND id = ?2",
                    groups_table(kind)
                ),
                params![realm, id, text],
            )
            .sql()?;
        Ok(n > 0)
    }

    fn delete_node(&mut self, realm: &str, kind: Kind, id: &str) -> Result<Vec<String>> {
        let (members, deletes): (&str, &[&str]) = match kind {
            Kind::Group => (
                "SELECT user_id FROM user_groups WHERE realm = ?1 AND group_id = ?2 ORDER BY user_id",
                &[
                    "DELETE FROM user_groups WHERE realm = ?1 AND group_id = ?2",
                    "DELETE FROM group_parents WHERE realm = ?1 AND (group_id = ?2 OR parent_id = ?2)",
                    "DELETE FROM group_roles WHERE realm = ?1 AND group_id = ?2",
                    "DELETE FROM groups WHERE realm = ?1 AND id = ?2",
                ],
            ),
            Kind::Role => (
                "SELECT user_id FROM user_roles WHERE realm = ?1 AND role_id = ?2 ORDER BY user_id",
                &[
                    "DELETE FROM user_roles WHERE realm = ?1 AND role_id = ?2",
                    "DELETE FROM group_roles WHERE realm = ?1 AND role_id = ?2",
                    "DELETE FROM roles WHERE realm = ?1 AND id = ?2",
                ],
            ),
        };
        let users = strings(self.tx, members, realm, id)?;
        let tx = self.w()?;
        for sql in deletes {
            tx.execute(sql, params![realm, id]).sql()?;
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
        let (table, col) = match kind {
            Kind::Group => ("user_groups", "group_id"),
            Kind::Role => ("user_roles", "role_id"),
        };
        let sql = if add {
            format!("INSERT OR IGNORE INTO {table} (realm, user_id, {col}) VALUES (?1, ?2, ?3)")
        } else {
            format!("DELETE FROM {table} WHERE realm = ?1 AND user_id = ?2 AND {col} = ?3")
        };
        let n = self
            .w()?
            .execute(&sql, params![realm, user, target])
            .sql()?;
        Ok(n > 0)
    }

    fn group_and_ancestors(&mut self, realm: &str, group: &str) -> Result<Vec<String>> {
        let mut stmt = self
            .tx
            .prepare_cached(
                "WITH RECURSIVE up(id) AS (
                     SELECT ?2
                     UNION
                     SELECT gp.parent_id FROM group_parents gp JOIN up ON gp.group_id = up.id
                     WHERE gp.realm = ?1)
                 SELECT id FROM up ORDER BY id",
            )
            .sql()?;
        let ids = stmt
            .query_map(params![realm, group], |r| r.get(0))
            .sql()?
            .collect::<rusqlite::Result<_>>()
            .sql()?;
        Ok(ids)
    }

    fn set_group_parent(
        &mut self,
        realm: &str,
        group: &str,
        parent: &str,
        add: bool,
    ) -> Result<bool> {
        let sql = if add {
            "INSERT OR IGNORE INTO group_parents (realm, group_id, parent_id) VALUES (?1, ?2, ?3)"
        } else {
            "DELETE FROM group_parents WHERE realm = ?1 AND group_id = ?2 AND parent_id = ?3"
        };
        let n = self
            .w()?
            .execute(sql, params![realm, group, parent])
            .sql()?;
        Ok(n > 0)
    }

    fn set_group_role(&mut self, realm: &str, group: &str, role: &str, add: bool) -> Result<bool> {
        let sql = if add {
            "INSERT OR IGNORE INTO group_roles (realm, group_id, role_id) VALUES (?1, ?2, ?3)"
        } else {
            "DELETE FROM group_roles WHERE realm = ?1 AND group_id = ?2 AND role_id = ?3"
        };
        let n = self.w()?.execute(sql, params![realm, group, role]).sql()?;
        Ok(n > 0)
    }

    fn group_members(&mut self, realm: &str, group: &str) -> Result<Vec<String>> {
        strings(
            self.tx,
            "SELECT user_id FROM user_groups WHERE realm = ?1 AND group_id = ?2 ORDER BY user_id",
            realm,
            group,
        )
    }

    fn role_has_users(&mut self, realm: &str, role: &str) -> Result<bool> {
        exists(
            self.tx,
            "SELECT 1 FROM user_roles WHERE realm = ?1 AND role_id = ?2",
            params![realm, role],
        )
    }

    // ---------------------------------- policies, schema, entities, routes
    fn policies(&mut self, realm: &str) -> Result<Vec<StoredPolicy>> {
        let mut stmt = self
            .tx
            .prepare_cached(
                "SELECT id, template, body, description, created_at, updated_at FROM policies
                 WHERE realm = ?1 ORDER BY id",
            )
            .sql()?;
        let rows = stmt
            .query_map([realm], |r| {
                Ok(StoredPolicy {
                    id: r.get(0)?,
                    template: r.get(1)?,
                    body: r.get(2)?,
                    description: r.get(3)?,
                    created_at: r.get(4)?,
                    updated_at: r.get(5)?,
                })
            })
            .sql()?
            .collect::<rusqlite::Result<_>>()
            .sql()?;
        Ok(rows)
    }

    fn put_policy(&mut self, realm: &str, p: &StoredPolicy) -> Result<()> {
        self.w()?
            .execute(
                "INSERT INTO policies (realm, id, template, body, description, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (realm, id) DO UPDATE SET template = excluded.template,
                     body = excluded.body, description = excluded.description,
                     updated_at = excluded.updated_at",
                params![
                    realm,
                    p.id,
                    p.template,
                    p.body,
                    p.description,
                    p.created_at,
                    p.updated_at
                ],
            )
            .sql()?;
        Ok(())
    }

    fn delete_policy(&mut self, realm: &str, id: &str) -> Result<bool> {
        let n = self
            .w()?
            .execute(
                "DELETE FROM policies WHERE realm = ?1 AND id = ?2",
                params![realm, id],
            )
            .sql()?;
        Ok(n > 0)
    }

    fn links(&mut self, realm: &str) -> Result<Vec<Link>> {
        let mut stmt = self
            .tx
            .prepare_cached(
                "SELECT id, template_id, slots FROM template_links WHERE realm = ?1 ORDER BY id",
            )
            .sql()?;
        let rows: Vec<(String, String, String)> = stmt
            .query_map([realm], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .sql()?
            .collect::<rusqlite::Result<_>>()
            .sql()?;
        rows.into_iter()
            .map(|(id, template_id, slots)| {
                Ok(Link {
                    values: json("link slots", &slots)?,
                    id,
                    template_id,
                })
            })
            .collect()
    }

    fn insert_link(&mut self, realm: &str, link: &Link, now: i64) -> Result<()> {
        self.w()?
            .execute(
                "INSERT INTO template_links (realm, id, template_id, slots, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    realm,
                    link.id,
                    link.template_id,
                    serde_json::to_string(&link.values).unwrap_or_default(),
                    now
                ],
            )
            .sql()?;
        Ok(())
    }

    fn delete_link(&mut self, realm: &str, id: &str) -> Result<bool> {
        let n = self
            .w()?
            .execute(
                "DELETE FROM template_links WHERE realm = ?1 AND id = ?2",
                params![realm, id],
            )
            .sql()?;
        Ok(n > 0)
    }

    fn schema(&mut self, realm: &str, version: Option<i64>) -> Result<Option<SchemaVersion>> {
        self.tx
            .query_row(
                "SELECT version, text, created_at FROM schemas WHERE realm = ?1
                 AND (?2 IS NULL OR version = ?2) ORDER BY version DESC LIMIT 1",
                params![realm, version],
                |r| {
                    Ok(SchemaVersion {
                        version: r.get(0)?,
                        text: r.get(1)?,
                        created_at: r.get(2)?,
                    })
                },
            )
            .optional()
            .sql()
    }

    fn insert_schema(&mut self, realm: &str, text: &str, now: i64) -> Result<i64> {
        let tx = self.w()?;
        let version: i64 = tx
            .query_row(
                "SELECT COALESCE(MAX(version), 0) + 1 FROM schemas WHERE realm = ?1",
                [realm],
                |r| r.get(0),
            )
            .sql()?;
        tx.execute(
            "INSERT INTO schemas (realm, version, text, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![realm, version, text, now],
        )
        .sql()?;
        Ok(version)
    }

    fn resources(&mut self, realm: &str) -> Result<Value> {
        let text: Option<String> = self
            .tx
            .query_row(
                "SELECT entities FROM resources WHERE realm = ?1",
                [realm],
                |r| r.get(0),
            )
            .optional()
            .sql()?;
        match text {
            Some(t) => json("resources", &t),
            None => Ok(Value::Array(vec![])),
        }
    }

    fn put_resources(&mut self, realm: &str, entities: &Value) -> Result<()> {
        self.w()?
            .execute(
                "INSERT INTO resources (realm, entities) VALUES (?1, ?2)
                 ON CONFLICT (realm) DO UPDATE SET entities = excluded.entities",
                params![realm, entities.to_string()],
            )
            .sql()?;
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
        let mut stmt = self
            .tx
            .prepare_cached(
                "SELECT kid, key, public_jwk, retired, created_at FROM signing_keys WHERE realm = ?1
                 ORDER BY created_at DESC, rowid DESC",
            )
            .sql()?;
        let rows: Vec<(String, String, String, bool, i64)> = stmt
            .query_map([realm], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .sql()?
            .collect::<rusqlite::Result<_>>()
            .sql()?;
        rows.into_iter()
            .map(|(kid, private, jwk, retired, created_at)| {
                Ok(StoredKey {
                    public_jwk: json("public JWK", &jwk)?,
                    private: self
                        .keyring
                        .open_text(&Slot::signing_key(realm, &kid), &private)?,
                    kid,
                    retired,
                    created_at,
                })
            })
            .collect()
    }

    fn insert_signing_key(&mut self, realm: &str, key: &StoredKey) -> Result<()> {
        self.w()?
            .execute(
                "INSERT INTO signing_keys (realm, kid, key, public_jwk, retired, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    realm,
                    key.kid,
                    self.keyring
                        .seal_text(&Slot::signing_key(realm, &key.kid), &key.private)?,
                    key.public_jwk.to_string(),
                    key.retired,
                    key.created_at
                ],
            )
            .sql()?;
        Ok(())
    }

    fn retire_signing_keys(&mut self, realm: &str, keep: &[String]) -> Result<()> {
        let keep = serde_json::to_string(keep).unwrap_or_default();
        self.w()?
            .execute(
                "UPDATE signing_keys SET retired = 1 WHERE realm = ?1 AND retired = 0
                 AND kid NOT IN (SELECT value FROM json_each(?2))",
                params![realm, keep],
            )
            .sql()?;
        Ok(())
    }

    // ------------------------------------------------------- credentials
    fn credentials(&mut self, realm: &str, user: &str) -> Result<Credentials> {
        let row = self
            .tx
            .query_row(
                "SELECT password_hash, new_password_required, totp_secret, totp_confirmed,
                        totp_last_step, verify_code_hash, verify_expires, verify_attempts
                 FROM credentials WHERE realm = ?1 AND user_id = ?2",
                params![realm, user],
                |r| {
                    Ok(Credentials {
                        password_hash: r.get(0)?,
                        new_password_required: r.get(1)?,
                        totp_secret: r.get(2)?,
                        totp_confirmed: r.get(3)?,
                        totp_last_step: r.get(4)?,
                        verify_code_hash: r.get(5)?,
                        verify_expires: r.get(6)?,
                        verify_attempts: r.get(7)?,
                    })
                },
            )
            .optional()
            .sql()?;
        let mut c = row.unwrap_or_default();
        if let Some(stored) = c.totp_secret.take() {
            c.totp_secret = Some(self.keyring.open_text(&Slot::totp(realm, user), &stored)?);
        }
        Ok(c)
    }

    fn put_credentials(&mut self, realm: &str, user: &str, c: &Credentials) -> Result<()> {
        let totp_secret = c
            .totp_secret
            .as_deref()
            .map(|t| self.keyring.seal_text(&Slot::totp(realm, user), t))
            .transpose()?;
        self.w()?
            .execute(
                "INSERT INTO credentials (realm, user_id, password_hash, new_password_required,
                     totp_secret, totp_confirmed, totp_last_step, verify_code_hash, verify_expires,
                 verify_attempts)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                 ON CONFLICT (realm, user_id) DO UPDATE SET
                     password_hash = excluded.password_hash,
                     new_password_required = excluded.new_password_required,
                     totp_secret = excluded.totp_secret,
                     totp_confirmed = excluded.totp_confirmed,
                     totp_last_step = excluded.totp_last_step,
                     verify_code_hash = excluded.verify_code_hash,
                     verify_expires = excluded.verify_expires,
                     verify_attempts = excluded.verify_attempts",
                params![
                    realm,
                    user,
                    c.password_hash,
                    c.new_password_required,
                    totp_secret,
                    c.totp_confirmed,
                    c.totp_last_step,
                    c.verify_code_hash,
                    c.verify_expires,
                    c.verify_attempts
                ],
            )
            .sql()?;
        Ok(())
    }

    fn throttle(&mut self, realm: &str, login_lc: &str) -> Result<Throttle> {
        let rec: Option<String> = self
            .tx
            .query_row(
                "SELECT record FROM login_throttle WHERE realm = ?1 AND username_lc = ?2",
                params![realm, login_lc],
                |r| r.get(0),
            )
            .optional()
            .sql()?;
        Ok(rec
            .and_then(|r| serde_json::from_str(&r).ok())
            .unwrap_or_default())
    }

    fn put_throttle(&mut self, realm: &str, login_lc: &str, t: Option<&Throttle>) -> Result<()> {
        let tx = self.w()?;
        match t {
            Some(t) => {
                let rec = serde_json::to_string(t).map_err(|e| Error::Internal(e.to_string()))?;
                tx.execute(
                    "INSERT INTO login_throttle (realm, username_lc, record) VALUES (?1, ?2, ?3)
                     ON CONFLICT (realm, username_lc) DO UPDATE SET record = excluded.record",
                    params![realm, login_lc, rec],
                )
            }
            None => tx.execute(
                "DELETE FROM login_throttle WHERE realm = ?1 AND username_lc = ?2",
                params![realm, login_lc],
            ),
        }
        .sql()?;
        Ok(())
    }

    fn insert_session(&mut self, s: &Session, now: i64) -> Result<()> {
        let tx = self.w()?;
        tx.execute("DELETE FROM login_sessions WHERE expires_at < ?1", [now])
            .sql()?;
        tx.execute(
            "INSERT INTO login_sessions (id, realm, user_id, challenge, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![s.id, s.realm, s.user_id, s.challenge, s.expires_at],
        )
        .sql()?;
        Ok(())
    }

    fn take_session(&mut self, realm: &str, id: &str) -> Result<Option<Session>> {
        let tx = self.w()?;
        let row: Option<(String, String, i64)> = tx
            .query_row(
                "SELECT user_id, challenge, expires_at FROM login_sessions
                 WHERE id = ?1 AND realm = ?2",
                params![id, realm],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .sql()?;
        tx.execute("DELETE FROM login_sessions WHERE id = ?1", [id])
            .sql()?;
        Ok(row.map(|(user_id, challenge, expires_at)| Session {
            id: id.to_owned(),
            realm: realm.to_owned(),
            user_id,
            challenge,
            expires_at,
        }))
    }

    // -------------------------------------------------------- change log
    fn record_change(&mut self, realm: &str, change: Change, now: i64) -> Result<()> {
        let user = match &change {
            Change::User(id) => Some(id.as_str()),
            Change::AllUsers => Some("*"),
            Change::Content => None,
        };
        let tx = self.w()?;
        tx.prepare_cached("INSERT INTO changes (realm, user_id, at) VALUES (?1, ?2, ?3)")
            .sql()?
            .execute(params![realm, user, now])
            .sql()?;
        tx.prepare_cached("UPDATE realms SET version = version + 1 WHERE name = ?1")
            .sql()?
            .execute([realm])
            .sql()?;
        Ok(())
    }

    fn unpublished_through(&mut self, realm: &str, seq: i64) -> Result<bool> {
        self.tx
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM changes
                                WHERE realm = ?1 AND published_rev IS NULL AND seq <= ?2)",
                params![realm, seq],
                |r| r.get(0),
            )
            .sql()
    }

    fn pending(&mut self, realm: &str) -> Result<Option<Pending>> {
        let upto: Option<i64> = self
            .tx
            .query_row(
                "SELECT MAX(seq) FROM changes WHERE realm = ?1 AND published_rev IS NULL",
                [realm],
                |r| r.get(0),
            )
            .sql()?;
        let Some(upto) = upto else {
            return Ok(None);
        };
        let mut stmt = self
            .tx
            .prepare_cached(
                "SELECT DISTINCT user_id FROM changes
                 WHERE realm = ?1 AND published_rev IS NULL AND seq <= ?2 ORDER BY user_id",
            )
            .sql()?;
        let changed: Vec<Option<String>> = stmt
            .query_map(params![realm, upto], |r| r.get(0))
            .sql()?
            .collect::<rusqlite::Result<_>>()
            .sql()?;
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
            .tx
            .query_row(
                "SELECT COUNT(*) FROM changes WHERE realm = ?1 AND published_rev IS NULL",
                [realm],
                |r| r.get(0),
            )
            .sql()?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    fn oldest_pending(&mut self, realm: &str) -> Result<Option<i64>> {
        self.tx
            .query_row(
                "SELECT MIN(at) FROM changes WHERE realm = ?1 AND published_rev IS NULL",
                [realm],
                |r| r.get(0),
            )
            .sql()
    }

    fn mark_published(&mut self, realm: &str, upto: i64, revision: u64, now: i64) -> Result<()> {
        let rev =
            i64::try_from(revision).map_err(|_| Error::Internal("revision overflow".into()))?;
        let tx = self.w()?;
        tx.execute(
            "DELETE FROM changes WHERE realm = ?1 AND seq <= ?2",
            params![realm, upto],
        )
        .sql()?;
        tx.execute(
            "INSERT INTO published (realm, revision, at) VALUES (?1, ?2, ?3)
             ON CONFLICT (realm) DO UPDATE SET revision = MAX(revision, excluded.revision), at = excluded.at",
            params![realm, rev, now],
        )
        .sql()?;
        tx.execute(
            "DELETE FROM publish_intents WHERE realm = ?1 AND revision <= ?2",
            params![realm, rev],
        )
        .sql()?;
        Ok(())
    }

    fn record_intent(&mut self, realm: &str, revision: u64, upto: i64) -> Result<()> {
        let rev =
            i64::try_from(revision).map_err(|_| Error::Internal("revision overflow".into()))?;
        self.w()?
            .execute(
                "INSERT INTO publish_intents (realm, revision, upto) VALUES (?1, ?2, ?3)
                 ON CONFLICT (realm, revision) DO NOTHING",
                params![realm, rev, upto],
            )
            .sql()?;
        Ok(())
    }

    fn intent(&mut self, realm: &str, revision: u64) -> Result<Option<i64>> {
        let rev =
            i64::try_from(revision).map_err(|_| Error::Internal("revision overflow".into()))?;
        self.tx
            .query_row(
                "SELECT upto FROM publish_intents WHERE realm = ?1 AND revision = ?2",
                params![realm, rev],
                |r| r.get(0),
            )
            .optional()
            .sql()
    }

    fn published(&mut self, realm: &str) -> Result<Option<(u64, i64)>> {
        let row: Option<(i64, i64)> = self
            .tx
            .query_row(
                "SELECT revision, at FROM published WHERE realm = ?1",
                [realm],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .sql()?;
        Ok(row.map(|(r, at)| (u64::try_from(r).unwrap_or(0), at)))
    }

    // ------------------------------------------------------------- copy
    fn export_rows(
        &mut self,
        t: &TableSpec,
        f: &mut dyn FnMut(Vec<Cell>) -> Result<()>,
    ) -> Result<()> {
        use rusqlite::types::Value as V;
        let cols: Vec<&str> = t.columns.iter().map(|(c, _)| *c).collect();
        let sql = format!(
            "SELECT {} FROM {} ORDER BY {}",
            cols.join(", "),
            t.name,
            t.order.replace("{insertion}", "rowid")
        );
        let mut stmt = self.tx.prepare(&sql).sql()?;
        let mut rows = stmt.query([]).sql()?;
        while let Some(r) = rows.next().sql()? {
            let mut out = Vec::with_capacity(t.columns.len());
            for (i, (name, kind)) in t.columns.iter().enumerate() {
                let v: V = r.get(i).sql()?;
                out.push(match (v, kind) {
                    (V::Null, _) => Cell::Null,
                    (V::Integer(n), Column::Bool) => Cell::Bool(n != 0),
                    (V::Integer(n), Column::Int) => Cell::Int(n),
                    (V::Text(s), Column::Text) => Cell::Text(s),
                    (V::Blob(b), Column::Bytes) => Cell::Bytes(b),
                    (v, k) => {
                        return Err(Error::Internal(format!(
                            "{}.{name}: {:?} where {k:?} belongs",
                            t.name,
                            v.data_type()
                        )));
                    }
                });
            }
            f(out)?;
        }
        Ok(())
    }

    fn import_rows(&mut self, t: &TableSpec, rows: &[Vec<Cell>]) -> Result<()> {
        use rusqlite::types::Value as V;
        let tx = self.w()?;
        let cols: Vec<&str> = t.columns.iter().map(|(c, _)| *c).collect();
        let marks: Vec<String> = (1..=cols.len()).map(|i| format!("?{i}")).collect();
        let mut stmt = tx
            .prepare_cached(&format!(
                "INSERT INTO {} ({}) VALUES ({})",
                t.name,
                cols.join(", "),
                marks.join(", ")
            ))
            .sql()?;
        for row in rows {
            let values = row.iter().map(|c| match c {
                Cell::Null => V::Null,
                Cell::Int(n) => V::Integer(*n),
                Cell::Bool(b) => V::Integer(i64::from(*b)),
                Cell::Text(s) => V::Text(s.clone()),
                Cell::Bytes(b) => V::Blob(b.clone()),
            });
            stmt.execute(rusqlite::params_from_iter(values)).sql()?;
        }
        Ok(())
    }

    fn copied(&mut self) -> Result<()> {
        // AUTOINCREMENT keeps its counter at the largest key inserted.
        Ok(())
    }

    // ------------------------------------------------- secrets at rest
    fn reseal_secrets(&mut self, pass: Pass) -> Result<Rewrapped> {
        let keyring = self.keyring;
        let tx = self.w()?;
        let mut out = Rewrapped {
            kek: keyring.current_id().to_owned(),
            ..Rewrapped::default()
        };
        // Every start makes the clear-only pass: it reads only what SQL
        // can tell is in clear, and every realm's bundle seed and newest
        // signing key (a handful), which it opens: a KEK that does not open this database is
        // refused at start, not at the first publish.
        let only_clear = |cond: String| match pass {
            Pass::Start { .. } => cond,
            Pass::Rewrap => "1".to_owned(),
        };
        let text = |v: Vec<u8>| {
            String::from_utf8(v).map_err(|_| Error::Internal("sealed text is not UTF-8".into()))
        };
        // How many rows a compare-and-swap changed (only those count).
        let rows =
            |n: rusqlite::Result<usize>| n.sql().map(|n| u64::try_from(n).unwrap_or(u64::MAX));

        let seeds: Vec<(String, Vec<u8>)> = {
            let mut stmt = tx
                .prepare("SELECT name, bundle_key FROM realms ORDER BY name")
                .sql()?;
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .sql()?
                .collect::<rusqlite::Result<_>>()
                .sql()?
        };
        for (name, stored) in seeds {
            // Resealing first: the throwaway KEK refuses what it did
            // not seal before anything else is said about it. A value it
            // left as it was is opened (one it sealed was clear; one it
            // re-wrapped it opened).
            let r = keyring.reseal(&Slot::bundle_seed(&name), &stored, pass)?;
            if r == Resealed::Unchanged {
                keyring.open(&Slot::bundle_seed(&name), &stored)?;
            }
            out.count(r, |new| {
                rows(tx.execute(
                    "UPDATE realms SET bundle_key = ?1 WHERE name = ?2 AND bundle_key = ?3",
                    params![new, name, stored],
                ))
            })?;
        }

        let sealed_text = format!(
            "substr({{col}}, 1, {}) <> '{SEALED_TEXT_PREFIX}'",
            SEALED_TEXT_PREFIX.len()
        );
        let keys: Vec<(String, String, String)> = {
            let sql = format!(
                "SELECT realm, kid, key FROM signing_keys WHERE {} ORDER BY realm, kid",
                only_clear(sealed_text.replace("{col}", "key"))
            );
            let mut stmt = tx.prepare(&sql).sql()?;
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .sql()?
                .collect::<rusqlite::Result<_>>()
                .sql()?
        };
        for (realm, kid, stored) in keys {
            let r = keyring.reseal_text(&Slot::signing_key(&realm, &kid), &stored, pass)?;
            out.count(r, |new| {
                rows(tx.execute(
                    "UPDATE signing_keys SET key = ?1 WHERE realm = ?2 AND kid = ?3 AND key = ?4",
                    params![text(new)?, realm, kid, stored],
                ))
            })?;
        }

        if matches!(pass, Pass::Start { .. }) {
            // And each realm's newest signing key, opened: a KEK that
            // opens the seeds but not the token keys (a retired KEK
            // removed too early) is refused at start too.
            let newest: Vec<(String, String, String)> = {
                let mut stmt = tx
                    .prepare(
                        "SELECT realm, kid, key FROM signing_keys AS s
                         WHERE kid = (SELECT kid FROM signing_keys WHERE realm = s.realm
                                      ORDER BY created_at DESC, kid LIMIT 1)
                         ORDER BY realm",
                    )
                    .sql()?;
                stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .sql()?
                    .collect::<rusqlite::Result<_>>()
                    .sql()?
            };
            for (realm, kid, stored) in newest {
                if stored.starts_with(SEALED_TEXT_PREFIX) {
                    keyring.open_text(&Slot::signing_key(&realm, &kid), &stored)?;
                }
            }
        }

        let totps: Vec<(String, String, String)> = {
            let sql = format!(
                "SELECT realm, user_id, totp_secret FROM credentials
                 WHERE totp_secret IS NOT NULL AND {} ORDER BY realm, user_id",
                only_clear(sealed_text.replace("{col}", "totp_secret"))
            );
            let mut stmt = tx.prepare(&sql).sql()?;
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .sql()?
                .collect::<rusqlite::Result<_>>()
                .sql()?
        };
        for (realm, user, stored) in totps {
            let r = keyring.reseal_text(&Slot::totp(&realm, &user), &stored, pass)?;
            out.count(r, |new| {
                rows(tx.execute(
                    "UPDATE credentials SET totp_secret = ?1
                     WHERE realm = ?2 AND user_id = ?3 AND totp_secret = ?4",
                    params![text(new)?, realm, user, stored],
                ))
            })?;
        }
        Ok(out)
    }

    fn sealed_only(&mut self) -> Result<bool> {
        exists(
            self.tx,
            "SELECT 1 FROM secrets_at_rest WHERE format = 'sealed-only'",
            [],
        )
    }

    fn record_sealed_only(&mut self) -> Result<()> {
        self.w()?
            .execute(
                "INSERT INTO secrets_at_rest (format) SELECT 'sealed-only'
                 WHERE NOT EXISTS (SELECT 1 FROM secrets_at_rest WHERE format = 'sealed-only')",
                [],
            )
            .sql()?;
        Ok(())
    }
}
