//! Groups and roles, and the memberships between users, groups and roles:
//! user -> group, user -> role, group -> group (nesting, never a cycle),
//! group -> role. They become Cedar parents: `User in [Group, Role]`,
//! `Group in [Group, Role]`.

use super::error::{Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Groups or roles: the two tables have the same shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `Group` entities.
    Group,
    /// `Role` entities.
    Role,
}

impl Kind {
    /// The Cedar entity type: `Group` or `Role`.
    pub fn entity_type(self) -> &'static str {
        match self {
            Kind::Group => "Group",
            Kind::Role => "Role",
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

impl NewNode {
    /// Check the id.
    pub fn check(&self, kind: Kind) -> Result<()> {
        super::realm::check_id(kind.name(), &self.id)
    }
}

/// Refuse nesting `group` in `parent` when `parent` is `group` or already
/// inside it: `parent_and_ancestors` is `parent` with every group it is
/// nested in, transitively. Cedar's hierarchy must stay acyclic.
pub fn check_nesting(group: &str, parent: &str, parent_and_ancestors: &[String]) -> Result<()> {
    if parent_and_ancestors.iter().any(|g| g == group) {
        return Err(Error::Conflict(format!(
            "group {parent:?} is {group:?} or inside it: nesting would make a cycle"
        )));
    }
    Ok(())
}

/// The realm's roles and groups as Cedar JSON entities (`Role`, then
/// `Group` with its parents and roles), for `entities.json`.
pub fn cedar_entities(roles: &[Node], groups: &[Node]) -> Vec<Value> {
    let mut out = Vec::with_capacity(roles.len() + groups.len());
    for (kind, nodes) in [(Kind::Role, roles), (Kind::Group, groups)] {
        for n in nodes {
            let parents: Vec<Value> = n
                .parents
                .iter()
                .map(|p| json!({"type": "Group", "id": p}))
                .chain(n.roles.iter().map(|r| json!({"type": "Role", "id": r})))
                .collect();
            out.push(json!({"uid": {"type": kind.entity_type(), "id": n.id}, "attrs": {}, "parents": parents}));
        }
    }
    out
}
