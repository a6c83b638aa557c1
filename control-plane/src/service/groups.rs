//! Groups and roles, nesting (never a cycle) and group roles.

use super::{Caller, Service};
use crate::domain::admin::AdminAction;
use crate::domain::error::{Error, Result};
use crate::domain::group::{Kind, NewNode, Node, check_nesting};
use crate::ports::repository::Change;

/// The admin action of a verb on a group or a role.
fn action(kind: Kind, verb: &str) -> AdminAction {
    match (kind, verb) {
        (Kind::Group, "create") => AdminAction::GroupCreate,
        (Kind::Group, "read") => AdminAction::GroupRead,
        (Kind::Group, "delete") => AdminAction::GroupDelete,
        (Kind::Group, _) => AdminAction::GroupUpdate,
        (Kind::Role, "create") => AdminAction::RoleCreate,
        (Kind::Role, "read") => AdminAction::RoleRead,
        (Kind::Role, "delete") => AdminAction::RoleDelete,
        (Kind::Role, _) => AdminAction::RoleUpdate,
    }
}

impl Service {
    /// Create a group or role.
    pub async fn create_node(
        &self,
        caller: &Caller,
        realm: &str,
        kind: Kind,
        new: &NewNode,
    ) -> Result<Node> {
        self.authorize(caller, action(kind, "create"), Some(realm))
            .await?;
        new.check(kind)?;
        let now = self.now();
        let (r, new) = (realm.to_owned(), new.clone());
        let node = self
            .repo
            .write(move |tx| {
                tx.live_realm(&r)?;
                if tx.node_exists(&r, kind, &new.id)? {
                    return Err(Error::AlreadyExists {
                        kind: kind.name(),
                        id: new.id.clone(),
                    });
                }
                tx.insert_node(&r, kind, &new, now)?;
                tx.record_change(&r, Change::Content, now)?;
                tx.node(&r, kind, &new.id)
            })
            .await?;
        self.changed(realm).await;
        Ok(node)
    }

    /// A group or role.
    pub async fn node(&self, caller: &Caller, realm: &str, kind: Kind, id: &str) -> Result<Node> {
        self.authorize(caller, action(kind, "read"), Some(realm))
            .await?;
        let (r, id) = (realm.to_owned(), id.to_owned());
        self.repo
            .read(move |tx| {
                tx.live_realm(&r)?;
                tx.node(&r, kind, &id)
            })
            .await
    }

    /// Every group or role of the realm, by id.
    pub async fn nodes(&self, caller: &Caller, realm: &str, kind: Kind) -> Result<Vec<Node>> {
        self.authorize(caller, action(kind, "read"), Some(realm))
            .await?;
        let r = realm.to_owned();
        self.repo
            .read(move |tx| {
                tx.live_realm(&r)?;
                tx.nodes(&r, kind)
            })
            .await
    }

    /// Change a group's or role's description (not published: bundles do
    /// not carry descriptions).
    pub async fn describe_node(
        &self,
        caller: &Caller,
        realm: &str,
        kind: Kind,
        id: &str,
        description: &str,
    ) -> Result<Node> {
        self.authorize(caller, action(kind, "update"), Some(realm))
            .await?;
        let (r, id, d) = (realm.to_owned(), id.to_owned(), description.to_owned());
        self.repo
            .write(move |tx| {
                tx.live_realm(&r)?;
                if !tx.describe_node(&r, kind, &id, &d)? {
                    return Err(Error::not_found(kind.name(), id));
                }
                tx.node(&r, kind, &id)
            })
            .await
    }

    /// Delete a group or role and every membership and assignment naming
    /// it; the users affected are republished.
    pub async fn delete_node(
        &self,
        caller: &Caller,
        realm: &str,
        kind: Kind,
        id: &str,
    ) -> Result<()> {
        self.authorize(caller, action(kind, "delete"), Some(realm))
            .await?;
        let now = self.now();
        let (r, id) = (realm.to_owned(), id.to_owned());
        self.repo
            .write(move |tx| {
                tx.live_realm(&r)?;
                if !tx.node_exists(&r, kind, &id)? {
                    return Err(Error::not_found(kind.name(), id));
                }
                for u in tx.delete_node(&r, kind, &id)? {
                    tx.touch_user(&r, &u, now)?;
                    tx.record_change(&r, Change::User(u), now)?;
                }
                tx.record_change(&r, Change::Content, now)
            })
            .await?;
        self.changed(realm).await;
        Ok(())
    }

    /// The user ids in a group (direct members), by id.
    pub async fn group_members(
        &self,
        caller: &Caller,
        realm: &str,
        group: &str,
    ) -> Result<Vec<String>> {
        self.authorize(caller, AdminAction::GroupRead, Some(realm))
            .await?;
        let (r, g) = (realm.to_owned(), group.to_owned());
        self.repo
            .read(move |tx| {
                tx.live_realm(&r)?;
                if !tx.node_exists(&r, Kind::Group, &g)? {
                    return Err(Error::not_found("group", g));
                }
                tx.group_members(&r, &g)
            })
            .await
    }

    /// Nest `group` inside `parent` (refused with 409 if `parent` is
    /// `group` or already inside it), or with `add = false` take it out.
    pub async fn set_group_parent(
        &self,
        caller: &Caller,
        realm: &str,
        group: &str,
        parent: &str,
        add: bool,
    ) -> Result<Node> {
        self.authorize(caller, AdminAction::GroupUpdate, Some(realm))
            .await?;
        let now = self.now();
        let (r, g, p) = (realm.to_owned(), group.to_owned(), parent.to_owned());
        let node = self
            .repo
            .write(move |tx| {
                tx.live_realm(&r)?;
                for x in [&g, &p] {
                    if !tx.node_exists(&r, Kind::Group, x)? {
                        return Err(Error::not_found("group", x.clone()));
                    }
                }
                if add {
                    check_nesting(&g, &p, &tx.group_and_ancestors(&r, &p)?)?;
                }
                if !tx.set_group_parent(&r, &g, &p, add)? && !add {
                    return Err(Error::NotFound {
                        kind: "membership",
                        id: format!("group {g} -> group {p}"),
                    });
                }
                tx.record_change(&r, Change::Content, now)?;
                tx.node(&r, Kind::Group, &g)
            })
            .await?;
        self.changed(realm).await;
        Ok(node)
    }

    /// Assign (or, with `add = false`, take away) a role of a group.
    pub async fn set_group_role(
        &self,
        caller: &Caller,
        realm: &str,
        group: &str,
        role: &str,
        add: bool,
    ) -> Result<Node> {
        self.authorize(caller, AdminAction::RoleUpdate, Some(realm))
            .await?;
        let now = self.now();
        let (r, g, ro) = (realm.to_owned(), group.to_owned(), role.to_owned());
        let node = self
            .repo
            .write(move |tx| {
                tx.live_realm(&r)?;
                if !tx.node_exists(&r, Kind::Group, &g)? {
                    return Err(Error::not_found("group", g));
                }
                if !tx.node_exists(&r, Kind::Role, &ro)? {
                    return Err(Error::not_found("role", ro));
                }
                if !tx.set_group_role(&r, &g, &ro, add)? && !add {
                    return Err(Error::NotFound {
                        kind: "membership",
                        id: format!("group {g} -> role {ro}"),
                    });
                }
                tx.record_change(&r, Change::Content, now)?;
                tx.node(&r, Kind::Group, &g)
            })
            .await?;
        self.changed(realm).await;
        Ok(node)
    }
}
