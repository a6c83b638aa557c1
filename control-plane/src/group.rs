//! Groups and roles, and the memberships between users, groups and roles:
//! user -> group, user -> role, group -> group (nesting, never a cycle),
//! group -> role. They become Cedar parents: `User in [Group, Role]`,
//! `Group in [Group, Role]`.

use crate::db::{Db, live_realm, record_change};
use crate::error::{Error, Result};
use crate::realm::check_id;
use rusqlite::{OptionalExtension, Transaction, params};
use serde::{Deserialize, Serialize};

/// Groups or roles: the two tables have the same shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `Group` entities.
    Group,
    /// `Role` entities.
    Role,
}

impl Kind {
    fn table(self) -> &'static str {
        match self {
            Kind::Group => "groups",
            Kind::Role => "roles",
        }
    }

    /// `group` or `role`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Group => "group",
            Kind::Role => "role",
        }
    }
}

/// A group or a role as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Node {
    /// Id, unique per realm and kind; the Cedar entity id.
    pub id: String,
    /// Free text.
    pub description: String,
    /// Groups this group is nested in (groups only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parents: Vec<String>,
    /// Roles assigned to this group (groups only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// Creation time, unix seconds.
    pub created_at: i64,
}

/// What creating a group or role takes.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewNode {
    /// Id (`A-Za-z0-9 . - _ : @`, 1-128).
    pub id: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
}

impl Db {
    /// Create a group or role.
    pub fn create_node(&self, realm: &str, kind: Kind, new: &NewNode, now: i64) -> Result<Node> {
        check_id(kind.name(), &new.id)?;
        self.write(|tx| {
            live_realm(tx, realm)?;
            if exists(tx, realm, kind, &new.id)? {
                return Err(Error::AlreadyExists {
                    kind: kind.name(),
                    id: new.id.clone(),
                });
            }
            tx.execute(
                &format!(
                    "INSERT INTO {} (realm, id, description, created_at) VALUES (?1, ?2, ?3, ?4)",
                    kind.table()
                ),
                params![realm, new.id, new.description, now],
            )?;
            record_change(tx, realm, None, now)?;
            node_in(tx, realm, kind, &new.id)
        })
    }

    /// A group or role.
    pub fn node(&self, realm: &str, kind: Kind, id: &str) -> Result<Node> {
        self.read(|tx| {
            live_realm(tx, realm)?;
            node_in(tx, realm, kind, id)
        })
    }

    /// Every group or role of the realm, by id.
    pub fn nodes(&self, realm: &str, kind: Kind) -> Result<Vec<Node>> {
        self.read(|tx| {
            live_realm(tx, realm)?;
            let mut stmt = tx.prepare(&format!(
                "SELECT id FROM {} WHERE realm = ?1 ORDER BY id",
                kind.table()
            ))?;
            let ids: Vec<String> = stmt
                .query_map([realm], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            ids.iter().map(|id| node_in(tx, realm, kind, id)).collect()
        })
    }

    /// Change a group's or role's description.
    pub fn describe_node(
        &self,
        realm: &str,
        kind: Kind,
        id: &str,
        description: &str,
    ) -> Result<Node> {
        self.write(|tx| {
            live_realm(tx, realm)?;
            let n = tx.execute(
                &format!(
                    "UPDATE {} SET description = ?3 WHERE realm = ?1 AND id = ?2",
                    kind.table()
                ),
                params![realm, id, description],
            )?;
            if n == 0 {
                return Err(Error::not_found(kind.name(), id));
            }
            node_in(tx, realm, kind, id)
        })
    }

    /// Delete a group or role and every membership and assignment naming
    /// it; the users affected are republished.
    pub fn delete_node(&self, realm: &str, kind: Kind, id: &str, now: i64) -> Result<()> {
        self.write(|tx| {
            live_realm(tx, realm)?;
            if !exists(tx, realm, kind, id)? {
                return Err(Error::not_found(kind.name(), id));
            }
            let (members, deletes): (&str, &[&str]) = match kind {
                Kind::Group => (
                    "SELECT user_id FROM user_groups WHERE realm = ?1 AND group_id = ?2",
                    &[
                        "DELETE FROM user_groups WHERE realm = ?1 AND group_id = ?2",
                        "DELETE FROM group_parents WHERE realm = ?1 AND (group_id = ?2 OR parent_id = ?2)",
                        "DELETE FROM group_roles WHERE realm = ?1 AND group_id = ?2",
                        "DELETE FROM groups WHERE realm = ?1 AND id = ?2",
                    ],
                ),
                Kind::Role => (
                    "SELECT user_id FROM user_roles WHERE realm = ?1 AND role_id = ?2",
                    &[
                        "DELETE FROM user_roles WHERE realm = ?1 AND role_id = ?2",
                        "DELETE FROM group_roles WHERE realm = ?1 AND role_id = ?2",
                        "DELETE FROM roles WHERE realm = ?1 AND id = ?2",
                    ],
                ),
            };
            let users: Vec<String> = tx
                .prepare(members)?
                .query_map(params![realm, id], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            for sql in deletes {
                tx.execute(sql, params![realm, id])?;
            }
            for u in &users {
                touch_user(tx, realm, u, now)?;
            }
            record_change(tx, realm, None, now)
        })
    }

    /// Add a user to a group (idempotent).
    pub fn add_user_to_group(&self, realm: &str, user: &str, group: &str, now: i64) -> Result<()> {
        self.link_user(realm, user, Kind::Group, group, true, now)
    }

    /// Remove a user from a group.
    pub fn remove_user_from_group(
        &self,
        realm: &str,
        user: &str,
        group: &str,
        now: i64,
    ) -> Result<()> {
        self.link_user(realm, user, Kind::Group, group, false, now)
    }

    /// Assign a role to a user (idempotent).
    pub fn assign_user_role(&self, realm: &str, user: &str, role: &str, now: i64) -> Result<()> {
        self.link_user(realm, user, Kind::Role, role, true, now)
    }

    /// Take a role from a user.
    pub fn unassign_user_role(&self, realm: &str, user: &str, role: &str, now: i64) -> Result<()> {
        self.link_user(realm, user, Kind::Role, role, false, now)
    }

    fn link_user(
        &self,
        realm: &str,
        user: &str,
        kind: Kind,
        target: &str,
        add: bool,
        now: i64,
    ) -> Result<()> {
        self.write(|tx| {
            live_realm(tx, realm)?;
            crate::user::user_in(tx, realm, user)?;
            if !exists(tx, realm, kind, target)? {
                return Err(Error::not_found(kind.name(), target));
            }
            let (table, col) = match kind {
                Kind::Group => ("user_groups", "group_id"),
                Kind::Role => ("user_roles", "role_id"),
            };
            let sql = if add {
                format!("INSERT OR IGNORE INTO {table} (realm, user_id, {col}) VALUES (?1, ?2, ?3)")
            } else {
                format!("DELETE FROM {table} WHERE realm = ?1 AND user_id = ?2 AND {col} = ?3")
            };
            let n = tx.execute(&sql, params![realm, user, target])?;
            if n == 0 && !add {
                return Err(Error::NotFound {
                    kind: "membership",
                    id: format!("{user} -> {} {target}", kind.name()),
                });
            }
            if n > 0 {
                touch_user(tx, realm, user, now)?;
            }
            Ok(())
        })
    }

    /// Nest `group` inside `parent`. Refused (409) if `parent` is `group`
    /// or already inside it: Cedar's hierarchy must stay acyclic.
    pub fn add_group_parent(&self, realm: &str, group: &str, parent: &str, now: i64) -> Result<()> {
        self.write(|tx| {
            live_realm(tx, realm)?;
            for g in [group, parent] {
                if !exists(tx, realm, Kind::Group, g)? {
                    return Err(Error::not_found("group", g));
                }
            }
            let cycle: bool = tx.query_row(
                "WITH RECURSIVE up(id) AS (
                     SELECT ?3
                     UNION
                     SELECT gp.parent_id FROM group_parents gp JOIN up ON gp.group_id = up.id
                     WHERE gp.realm = ?1)
                 SELECT EXISTS (SELECT 1 FROM up WHERE id = ?2)",
                params![realm, group, parent],
                |r| r.get(0),
            )?;
            if cycle {
                return Err(Error::Conflict(format!(
                    "group {parent:?} is {group:?} or inside it: nesting would make a cycle"
                )));
            }
            tx.execute(
                "INSERT OR IGNORE INTO group_parents (realm, group_id, parent_id) VALUES (?1, ?2, ?3)",
                params![realm, group, parent],
            )?;
            record_change(tx, realm, None, now)
        })
    }

    /// Take `group` out of `parent`.
    pub fn remove_group_parent(
        &self,
        realm: &str,
        group: &str,
        parent: &str,
        now: i64,
    ) -> Result<()> {
        self.write(|tx| {
            live_realm(tx, realm)?;
            let n = tx.execute(
                "DELETE FROM group_parents WHERE realm = ?1 AND group_id = ?2 AND parent_id = ?3",
                params![realm, group, parent],
            )?;
            if n == 0 {
                return Err(Error::NotFound {
                    kind: "membership",
                    id: format!("group {group} -> group {parent}"),
                });
            }
            record_change(tx, realm, None, now)
        })
    }

    /// Assign (or, with `add = false`, take away) a role of a group.
    pub fn set_group_role(
        &self,
        realm: &str,
        group: &str,
        role: &str,
        add: bool,
        now: i64,
    ) -> Result<()> {
        self.write(|tx| {
            live_realm(tx, realm)?;
            if !exists(tx, realm, Kind::Group, group)? {
                return Err(Error::not_found("group", group));
            }
            if !exists(tx, realm, Kind::Role, role)? {
                return Err(Error::not_found("role", role));
            }
            let n = if add {
                tx.execute(
                    "INSERT OR IGNORE INTO group_roles (realm, group_id, role_id) VALUES (?1, ?2, ?3)",
                    params![realm, group, role],
                )?
            } else {
                tx.execute(
                    "DELETE FROM group_roles WHERE realm = ?1 AND group_id = ?2 AND role_id = ?3",
                    params![realm, group, role],
                )?
            };
            if n == 0 && !add {
                return Err(Error::NotFound {
                    kind: "membership",
                    id: format!("group {group} -> role {role}"),
                });
            }
            record_change(tx, realm, None, now)
        })
    }

    /// The user ids in a group (direct members), by id.
    pub fn group_members(&self, realm: &str, group: &str) -> Result<Vec<String>> {
        self.read(|tx| {
            live_realm(tx, realm)?;
            if !exists(tx, realm, Kind::Group, group)? {
                return Err(Error::not_found("group", group));
            }
            let mut stmt = tx.prepare(
                "SELECT user_id FROM user_groups WHERE realm = ?1 AND group_id = ?2 ORDER BY user_id",
            )?;
            let ids = stmt
                .query_map(params![realm, group], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            Ok(ids)
        })
    }
}

/// Mark a user changed (its record is republished).
fn touch_user(tx: &Transaction<'_>, realm: &str, user: &str, now: i64) -> Result<()> {
    tx.execute(
        "UPDATE users SET updated_at = ?3 WHERE realm = ?1 AND id = ?2",
        params![realm, user, now],
    )?;
    record_change(tx, realm, Some(user), now)
}

fn exists(tx: &Transaction<'_>, realm: &str, kind: Kind, id: &str) -> Result<bool> {
    let found: Option<i64> = tx
        .query_row(
            &format!(
                "SELECT 1 FROM {} WHERE realm = ?1 AND id = ?2",
                kind.table()
            ),
            params![realm, id],
            |r| r.get(0),
        )
        .optional()?;
    Ok(found.is_some())
}

fn node_in(tx: &Transaction<'_>, realm: &str, kind: Kind, id: &str) -> Result<Node> {
    let row: Option<(String, i64)> = tx
        .query_row(
            &format!(
                "SELECT description, created_at FROM {} WHERE realm = ?1 AND id = ?2",
                kind.table()
            ),
            params![realm, id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let (description, created_at) = row.ok_or_else(|| Error::not_found(kind.name(), id))?;
    let list = |sql: &str| -> Result<Vec<String>> {
        let mut stmt = tx.prepare_cached(sql)?;
        let out = stmt
            .query_map(params![realm, id], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        Ok(out)
    };
    let (parents, roles) = match kind {
        Kind::Group => (
            list(
                "SELECT parent_id FROM group_parents WHERE realm = ?1 AND group_id = ?2 ORDER BY parent_id",
            )?,
            list(
                "SELECT role_id FROM group_roles WHERE realm = ?1 AND group_id = ?2 ORDER BY role_id",
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

/// The realm's groups and roles as Cedar JSON entities (`Group` with its
/// parents and roles, `Role`), for `entities.json`.
pub(crate) fn cedar_entities(tx: &Transaction<'_>, realm: &str) -> Result<Vec<serde_json::Value>> {
    use serde_json::json;
    let mut out = Vec::new();
    for kind in [Kind::Role, Kind::Group] {
        let mut stmt = tx.prepare(&format!(
            "SELECT id FROM {} WHERE realm = ?1 ORDER BY id",
            kind.table()
        ))?;
        let ids: Vec<String> = stmt
            .query_map([realm], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        for id in ids {
            let n = node_in(tx, realm, kind, &id)?;
            let parents: Vec<_> = n
                .parents
                .iter()
                .map(|p| json!({"type": "Group", "id": p}))
                .chain(n.roles.iter().map(|r| json!({"type": "Role", "id": r})))
                .collect();
            let ty = match kind {
                Kind::Group => "Group",
                Kind::Role => "Role",
            };
            out.push(json!({"uid": {"type": ty, "id": id}, "attrs": {}, "parents": parents}));
        }
    }
    Ok(out)
}
