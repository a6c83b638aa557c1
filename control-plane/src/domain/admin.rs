//! The admin realm's vocabulary: every admin operation as a typed
//! [`AdminAction`] (its Cedar action id, whether it only reads, whether it
//! is about no particular realm), the admin realm's schema and its starting
//! policies. The product guards itself: the service decides every admin
//! call with these policies through `pdp-core`, exactly as an edge host
//! decides for applications.

use pdp_core::LifecycleAction;

macro_rules! admin_actions {
    ($($variant:ident = $name:literal $(, $flag:ident)*;)*) => {
        /// One admin operation. The admin realm's schema declares one Cedar
        /// action per variant, named by [`AdminAction::name`].
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum AdminAction {
            $(
                #[doc = concat!("`", $name, "`")]
                $variant,
            )*
        }

        impl AdminAction {
            /// Every admin action, in schema order.
            pub const ALL: &'static [AdminAction] = &[$(AdminAction::$variant),*];

            /// The Cedar action id.
            pub fn name(self) -> &'static str {
                match self {
                    $(AdminAction::$variant => $name,)*
                }
            }

            fn flags(self) -> &'static [&'static str] {
                match self {
                    $(AdminAction::$variant => &[$(stringify!($flag)),*],)*
                }
            }
        }
    };
}

admin_actions! {
    RealmList = "realm:list", read, global;
    RealmCreate = "realm:create", global;
    RealmRead = "realm:read", read;
    RealmDelete = "realm:delete";
    UserCreate = "user:create";
    UserRead = "user:read", read;
    UserList = "user:list", read;
    UserUpdate = "user:update";
    UserInvite = "user:invite";
    UserVerify = "user:verify";
    UserRequirePasswordReset = "user:require_password_reset";
    UserCompletePasswordReset = "user:complete_password_reset";
    UserSuspend = "user:suspend";
    UserResume = "user:resume";
    UserDeactivate = "user:deactivate";
    UserDelete = "user:delete";
    UserRestore = "user:restore";
    UserSignOutEverywhere = "user:sign_out_everywhere";
    UserSetPassword = "user:set_password";
    UserImport = "user:import";
    GroupCreate = "group:create";
    GroupRead = "group:read", read;
    GroupUpdate = "group:update";
    GroupDelete = "group:delete";
    GroupMembers = "group:members";
    RoleCreate = "role:create";
    RoleRead = "role:read", read;
    RoleUpdate = "role:update";
    RoleDelete = "role:delete";
    PolicyRead = "policy:read", read;
    PolicyWrite = "policy:write";
    PolicyDelete = "policy:delete";
    SchemaRead = "schema:read", read;
    SchemaWrite = "schema:write";
    EntitiesWrite = "entities:write";
    RoutesRead = "routes:read", read;
    RoutesWrite = "routes:write";
    KeyRotate = "key:rotate";
    BundlePublish = "bundle:publish";
    BundleStatus = "bundle:status", read;
}

impl AdminAction {
    /// Whether the operation only reads (nothing to publish after it).
    pub fn is_read(self) -> bool {
        self.flags().contains(&"read")
    }

    /// Whether the operation is about no particular realm (listing and
    /// creating realms); every other one is in the `realm-scoped` group.
    pub fn is_global(self) -> bool {
        self.flags().contains(&"global")
    }

    /// The admin action that performs a lifecycle action.
    pub fn of_lifecycle(a: LifecycleAction) -> AdminAction {
        match a {
            LifecycleAction::Invite => AdminAction::UserInvite,
            LifecycleAction::Verify => AdminAction::UserVerify,
            LifecycleAction::RequirePasswordReset => AdminAction::UserRequirePasswordReset,
            LifecycleAction::CompletePasswordReset => AdminAction::UserCompletePasswordReset,
            LifecycleAction::Suspend => AdminAction::UserSuspend,
            LifecycleAction::Resume => AdminAction::UserResume,
            LifecycleAction::Deactivate => AdminAction::UserDeactivate,
            LifecycleAction::Delete => AdminAction::UserDelete,
            LifecycleAction::Restore => AdminAction::UserRestore,
            LifecycleAction::SignOutEverywhere => AdminAction::UserSignOutEverywhere,
        }
    }
}

impl std::fmt::Display for AdminAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The admin realm's schema: the reference `User`/`Group`/`Role` shape plus
/// `managed_realms`, a `Realm` resource, and one action per operation, all
/// members of `realm-scoped` except the global ones.
pub fn admin_schema() -> String {
    let mut s = String::from(
        "// Gatehouse admin realm: who may administer the control plane.\n\
         type AdminContext = {\n  realm?: String,\n  mfa?: Bool,\n  token_use?: String,\n  \
         scope?: String,\n  client_id?: String,\n};\n\
         entity Role;\nentity Group in [Group, Role] { name?: String };\n\
         entity User in [Group, Role] {\n  state: String,\n  email: String,\n  realm: String,\n  \
         managed_realms?: Set<String>,\n};\n\
         entity Realm;\n\
         action \"realm-scoped\";\n",
    );
    for a in AdminAction::ALL {
        let scoped = if a.is_global() {
            ""
        } else {
            " in [\"realm-scoped\"]"
        };
        s.push_str(&format!(
            "action \"{}\"{scoped} appliesTo {{ principal: User, resource: Realm, context: AdminContext }};\n",
            a.name()
        ));
    }
    s
}

/// The admin realm's starting policies (ids, bodies).
pub const ADMIN_POLICIES: &[(&str, &str)] = &[
    (
        "admins-do-everything",
        "permit (principal in Role::\"admin\", action, resource);",
    ),
    (
        "realm-admins-manage-their-realms",
        "permit (principal in Role::\"realm-admin\", action in Action::\"realm-scoped\", resource)\n\
         when { principal has managed_realms && context has realm && principal.managed_realms.contains(context.realm) };",
    ),
];

/// The admin realm's starting roles.
pub const ADMIN_ROLES: &[&str] = &["admin", "realm-admin"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_are_named_once_and_classified() {
        let mut names: Vec<&str> = AdminAction::ALL.iter().map(|a| a.name()).collect();
        let n = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), n, "an action name is used twice");
        assert!(AdminAction::RealmList.is_read() && AdminAction::RealmList.is_global());
        assert!(!AdminAction::RealmCreate.is_read() && AdminAction::RealmCreate.is_global());
        assert!(!AdminAction::RealmDelete.is_global());
        assert!(AdminAction::BundleStatus.is_read() && !AdminAction::BundlePublish.is_read());
        let schema = admin_schema();
        for a in AdminAction::ALL {
            assert!(schema.contains(&format!("action \"{}\"", a.name())), "{a}");
        }
        assert!(cedar_policy::Schema::from_cedarschema_str(&schema).is_ok());
    }
}
