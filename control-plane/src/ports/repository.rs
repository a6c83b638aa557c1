//! The repository port: everything the control plane keeps — realms,
//! users, credentials, groups, roles, policies, schemas, resources,
//! routes, signing keys and the change log that publishing drains —
//! behind one trait, with transactions and no database types in sight.
//!
//! A unit of work is a closure over a [`Tx`], run by
//! [`Repository::transact`] as one transaction: committed when it returns
//! `Ok`, rolled back (changing nothing) when it returns `Err`. The closure
//! is synchronous and runs where the backend chooses (SQLite: the blocking
//! pool); the port itself is async. Nothing that talks to the network
//! (identity provider, object store) runs inside a transaction.

use super::BoxFuture;
use crate::domain::error::{Error, Result};
use crate::domain::group::{Kind, NewNode, Node};
use crate::domain::policy::{Content, Link, PolicyBody, SchemaVersion, StoredPolicy};
use crate::domain::realm::Realm;
use crate::domain::throttle::Throttle;
use crate::domain::user::{Search, User};
use pdp_core::{LifecycleAction, Memory, UserRecord, UserState};
use serde_json::{Map, Value};
use std::any::Any;

/// Whether a unit of work writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A consistent read; nothing may be written.
    Read,
    /// A write transaction; concurrent writers serialise.
    Write,
}

/// A unit of work, boxed for the object-safe [`Repository::transact`].
pub type Work = Box<dyn FnOnce(&mut dyn Tx) -> Result<Box<dyn Any + Send>> + Send>;

/// Held while this control plane is a realm's publisher; dropping it lets
/// the next one in.
pub type PublisherLock = Box<dyn Any + Send>;

/// Where the control plane keeps its state.
pub trait Repository: Send + Sync + std::fmt::Debug {
    /// Run `work` as one transaction.
    fn transact(&self, mode: Mode, work: Work) -> BoxFuture<'_, Result<Box<dyn Any + Send>>>;
    /// Become the realm's only publisher among every control plane on this
    /// repository, or `None` while another one is. The lock ends with the
    /// returned value, or with the holder's process.
    fn lock_publisher<'a>(&'a self, realm: &'a str)
    -> BoxFuture<'a, Result<Option<PublisherLock>>>;
    /// Check that the repository answers (readiness).
    fn ping(&self) -> BoxFuture<'_, Result<()>>;
    /// Which repository this is, for logs (no secrets).
    fn describe(&self) -> String;
}

impl dyn Repository {
    /// Run `f` in one read transaction (a consistent view).
    pub async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dyn Tx) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        self.run(Mode::Read, f).await
    }

    /// Run `f` in one write transaction, committed only if it succeeds.
    pub async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dyn Tx) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        self.run(Mode::Write, f).await
    }

    async fn run<T: Send + 'static>(
        &self,
        mode: Mode,
        f: impl FnOnce(&mut dyn Tx) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let out = self
            .transact(
                mode,
                Box::new(move |tx| f(tx).map(|v| Box::new(v) as Box<dyn Any + Send>)),
            )
            .await?;
        out.downcast::<T>()
            .map(|b| *b)
            .map_err(|_| Error::Internal("repository returned another type".into()))
    }
}

/// A realm as first stored. Its `Debug` output leaves the bundle seed
/// out.
#[derive(Clone, PartialEq, Eq)]
pub struct NewRealmRecord {
    /// Name.
    pub name: String,
    /// Display name.
    pub display_name: String,
    /// Token issuer (from the identity provider).
    pub issuer: String,
    /// App client ids (from the identity provider).
    pub clients: Vec<String>,
    /// The identity provider's name.
    pub identity: String,
    /// Ed25519 seed that signs the realm's bundles (a secret).
    pub bundle_seed: [u8; 32],
    /// Creation time.
    pub created_at: i64,
}

impl std::fmt::Debug for NewRealmRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewRealmRecord")
            .field("name", &self.name)
            .field("display_name", &self.display_name)
            .field("issuer", &self.issuer)
            .field("clients", &self.clients)
            .field("identity", &self.identity)
            .field("bundle_seed", &"<redacted>")
            .field("created_at", &self.created_at)
            .finish()
    }
}

/// What a change in the log is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// One user's record.
    User(String),
    /// Every user at once (a bulk import): publish a snapshot.
    AllUsers,
    /// Non-user content: policies, schema, groups, roles, resources,
    /// routes, token settings.
    Content,
}

/// A realm's bundle documents stored whole, one row per realm: the
/// backends keep each in a table of its own (`realm`, `body`) and read and
/// write them the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RealmDocument {
    /// `routes.json`.
    Routes,
    /// `authzen.json`.
    AuthzenTypes,
}

impl RealmDocument {
    /// Its table (a fixed name, never from input).
    pub fn table(self) -> &'static str {
        match self {
            RealmDocument::Routes => "routes",
            RealmDocument::AuthzenTypes => "authzen_types",
        }
    }
}

/// The changes committed and not yet published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// The newest change included; everything up to it is covered.
    pub upto: i64,
    /// Users changed, by id.
    pub users: Vec<String>,
    /// Every user changed.
    pub all_users: bool,
    /// Non-user content changed.
    pub content: bool,
}

/// Which identity a new user's email, username or id collides with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    /// The id.
    Id,
    /// The email.
    Email,
    /// The username.
    Username,
}

/// A user's password, TOTP and email-verification state (embedded
/// identity). Secrets: never logged.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    /// PHC hash (Argon2id; bcrypt or older Argon2 from imports).
    pub password_hash: Option<String>,
    /// The password is temporary: a new one is required at login.
    pub new_password_required: bool,
    /// TOTP secret, base32.
    pub totp_secret: Option<String>,
    /// TOTP enrolment confirmed.
    pub totp_confirmed: bool,
    /// The last TOTP time step accepted (no replay).
    pub totp_last_step: i64,
    /// sha256 of the pending email verification code.
    pub verify_code_hash: Option<String>,
    /// When that code expires, unix seconds.
    pub verify_expires: i64,
    /// Wrong answers that code has taken.
    pub verify_attempts: i64,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field(
                "password_hash",
                &self.password_hash.as_ref().map(|_| "<redacted>"),
            )
            .field("new_password_required", &self.new_password_required)
            .field(
                "totp_secret",
                &self.totp_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("totp_confirmed", &self.totp_confirmed)
            .finish_non_exhaustive()
    }
}

/// One user of a bulk insert ([`Tx::insert_users`]).
#[derive(Clone)]
pub struct NewUserRow {
    /// The user, with groups and roles.
    pub user: User,
    /// What the lifecycle table remembers.
    pub memory: Memory,
    /// An imported password hash.
    pub password_hash: Option<String>,
}

impl std::fmt::Debug for NewUserRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewUserRow")
            .field("user", &self.user.id)
            .field(
                "password_hash",
                &self.password_hash.as_ref().map(|_| "<redacted>"),
            )
            .finish_non_exhaustive()
    }
}

/// A login challenge waiting for its answer.
#[derive(Clone, PartialEq, Eq)]
pub struct Session {
    /// Opaque handle (a secret).
    pub id: String,
    /// Realm.
    pub realm: String,
    /// User.
    pub user_id: String,
    /// The challenge's name (`NEW_PASSWORD_REQUIRED`, ...).
    pub challenge: String,
    /// Unix seconds.
    pub expires_at: i64,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("realm", &self.realm)
            .field("user_id", &self.user_id)
            .field("challenge", &self.challenge)
            .finish_non_exhaustive()
    }
}

/// A token signing key as stored: its private part is opaque to the
/// repository (the identity backend encodes it).
#[derive(Clone, PartialEq, Eq)]
pub struct StoredKey {
    /// Key id.
    pub kid: String,
    /// The private key, as the identity backend serialised it (a secret).
    pub private: String,
    /// The public JWK.
    pub public_jwk: Value,
    /// Retired keys are out of the JWKS.
    pub retired: bool,
    /// Creation time.
    pub created_at: i64,
}

impl std::fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredKey")
            .field("kid", &self.kid)
            .field("retired", &self.retired)
            .finish_non_exhaustive()
    }
}

/// What kind of value a column holds, as a copy between repositories
/// carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    /// A 64-bit integer.
    Int,
    /// UTF-8 text.
    Text,
    /// Bytes.
    Bytes,
    /// A boolean (an integer 0/1 in SQLite).
    Bool,
}

/// One value of a copied row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cell {
    /// SQL `NULL`.
    Null,
    /// An integer.
    Int(i64),
    /// Text.
    Text(String),
    /// Bytes.
    Bytes(Vec<u8>),
    /// A boolean.
    Bool(bool),
}

impl Cell {
    /// Feed the value, tagged by kind, into a digest.
    pub fn digest_into(&self, h: &mut impl sha2::Digest) {
        let (tag, body): (u8, std::borrow::Cow<'_, [u8]>) = match self {
            Cell::Null => (0, (&[][..]).into()),
            Cell::Int(v) => (1, v.to_be_bytes().to_vec().into()),
            Cell::Text(t) => (2, t.as_bytes().into()),
            Cell::Bytes(b) => (3, b.as_slice().into()),
            Cell::Bool(b) => (4, vec![u8::from(*b)].into()),
        };
        h.update([tag]);
        h.update(u64::try_from(body.len()).unwrap_or(u64::MAX).to_be_bytes());
        h.update(&body);
    }
}

/// A table as both repositories lay it out, for copying and verifying.
#[derive(Debug)]
pub struct TableSpec {
    /// Its name.
    pub name: &'static str,
    /// Its columns, in order.
    pub columns: &'static [(&'static str, Column)],
    /// The `ORDER BY` that lists its rows in key order; `{insertion}`
    /// stands for the backend's insertion order (SQLite's `rowid`).
    pub order: &'static str,
}

use Column::{Bool as B, Bytes as Y, Int as I, Text as T};

/// Every table, parents before children.
pub const TABLES: &[TableSpec] = &[
    TableSpec {
        name: "realms",
        columns: &[
            ("name", T),
            ("display_name", T),
            ("issuer", T),
            ("clients", T),
            ("identity", T),
            ("bundle_key", Y),
            ("version", I),
            ("created_at", I),
            ("deleted_at", I),
        ],
        order: "name",
    },
    TableSpec {
        name: "users",
        columns: &[
            ("realm", T),
            ("id", T),
            ("username", T),
            ("username_lc", T),
            ("email", T),
            ("email_lc", T),
            ("state", T),
            ("suspended_from", T),
            ("deleted_from", T),
            ("attrs", T),
            ("tokens_valid_after", I),
            ("created_at", I),
            ("updated_at", I),
        ],
        order: "realm, id",
    },
    TableSpec {
        name: "groups",
        columns: &[
            ("realm", T),
            ("id", T),
            ("description", T),
            ("created_at", I),
        ],
        order: "realm, id",
    },
    TableSpec {
        name: "roles",
        columns: &[
            ("realm", T),
            ("id", T),
            ("description", T),
            ("created_at", I),
        ],
        order: "realm, id",
    },
    TableSpec {
        name: "user_groups",
        columns: &[("realm", T), ("user_id", T), ("group_id", T)],
        order: "realm, user_id, group_id",
    },
    TableSpec {
        name: "user_roles",
        columns: &[("realm", T), ("user_id", T), ("role_id", T)],
        order: "realm, user_id, role_id",
    },
    TableSpec {
        name: "group_parents",
        columns: &[("realm", T), ("group_id", T), ("parent_id", T)],
        order: "realm, group_id, parent_id",
    },
    TableSpec {
        name: "group_roles",
        columns: &[("realm", T), ("group_id", T), ("role_id", T)],
        order: "realm, group_id, role_id",
    },
    TableSpec {
        name: "policies",
        columns: &[
            ("realm", T),
            ("id", T),
            ("template", B),
            ("body", T),
            ("description", T),
            ("created_at", I),
            ("updated_at", I),
        ],
        order: "realm, id",
    },
    TableSpec {
        name: "template_links",
        columns: &[
            ("realm", T),
            ("id", T),
            ("template_id", T),
            ("slots", T),
            ("created_at", I),
        ],
        order: "realm, id",
    },
    TableSpec {
        name: "schemas",
        columns: &[("realm", T), ("version", I), ("text", T), ("created_at", I)],
        order: "realm, version",
    },
    TableSpec {
        name: "resources",
        columns: &[("realm", T), ("entities", T)],
        order: "realm",
    },
    TableSpec {
        name: "routes",
        columns: &[("realm", T), ("body", Y)],
        order: "realm",
    },
    TableSpec {
        name: "authzen_types",
        columns: &[("realm", T), ("body", Y)],
        order: "realm",
    },
    TableSpec {
        name: "changes",
        columns: &[("seq", I), ("realm", T), ("user_id", T), ("at", I)],
        order: "seq",
    },
    TableSpec {
        name: "signing_keys",
        columns: &[
            ("realm", T),
            ("kid", T),
            ("key", T),
            ("public_jwk", T),
            ("retired", B),
            ("created_at", I),
        ],
        order: "realm, created_at, {insertion}",
    },
    TableSpec {
        name: "published",
        columns: &[("realm", T), ("revision", I), ("at", I)],
        order: "realm",
    },
    TableSpec {
        name: "publish_intents",
        columns: &[("realm", T), ("revision", I), ("upto", I)],
        order: "realm, revision",
    },
    TableSpec {
        name: "credentials",
        columns: &[
            ("realm", T),
            ("user_id", T),
            ("password_hash", T),
            ("new_password_required", B),
            ("totp_secret", T),
            ("totp_confirmed", B),
            ("totp_last_step", I),
            ("verify_code_hash", T),
            ("verify_expires", I),
            ("verify_attempts", I),
        ],
        order: "realm, user_id",
    },
    TableSpec {
        name: "login_throttle",
        columns: &[("realm", T), ("username_lc", T), ("record", T)],
        order: "realm, username_lc",
    },
    TableSpec {
        name: "login_sessions",
        columns: &[
            ("id", T),
            ("realm", T),
            ("user_id", T),
            ("challenge", T),
            ("expires_at", I),
        ],
        order: "id",
    },
];

/// One transaction's view of the repository. Every realm-scoped method
/// sees only live realms (a deleted realm is `NotFound`) unless it says
/// otherwise, and only the rows of the realm it is given.
pub trait Tx {
    // ------------------------------------------------------------ realms
    /// Whether a realm of this name exists, deleted ones included.
    fn realm_exists(&mut self, name: &str) -> Result<bool>;
    /// Store a new realm.
    fn insert_realm(&mut self, realm: &NewRealmRecord) -> Result<()>;
    /// Fail with `NotFound` unless `name` is a live realm.
    fn live_realm(&mut self, name: &str) -> Result<()>;
    /// A live realm.
    fn realm(&mut self, name: &str) -> Result<Realm>;
    /// Every realm by name; soft-deleted ones only when asked.
    fn realms(&mut self, include_deleted: bool) -> Result<Vec<Realm>>;
    /// Soft-delete a live realm.
    fn delete_realm(&mut self, name: &str, now: i64) -> Result<()>;
    /// A deleted realm's record (for its withdrawal).
    fn deleted_realm(&mut self, name: &str) -> Result<Realm>;
    /// A counter that differs after every committed change of the realm.
    fn realm_version(&mut self, name: &str) -> Result<i64>;
    /// The seed of the realm's bundle signing key (deleted realms too).
    fn bundle_seed(&mut self, name: &str) -> Result<[u8; 32]>;

    // ------------------------------------------------------------- users
    /// What of `id`, `email`, `username` another user of the realm has
    /// (case-insensitively for email and username).
    fn user_taken(
        &mut self,
        realm: &str,
        id: &str,
        email: &str,
        username: &str,
    ) -> Result<Option<Taken>>;
    /// Store a new user with its memberships (groups and roles must exist:
    /// `NotFound` otherwise), lifecycle memory and an imported password hash.
    fn insert_user(
        &mut self,
        realm: &str,
        user: &User,
        memory: &Memory,
        password_hash: Option<&str>,
    ) -> Result<()>;
    /// Store new users as [`Tx::insert_user`] does, in order; when one is
    /// refused, its index and why (the transaction is then to be given
    /// up). A backend may send them in bulk.
    fn insert_users(
        &mut self,
        realm: &str,
        users: &[NewUserRow],
    ) -> std::result::Result<(), (usize, Error)> {
        for (i, u) in users.iter().enumerate() {
            self.insert_user(realm, &u.user, &u.memory, u.password_hash.as_deref())
                .map_err(|e| (i, e))?;
        }
        Ok(())
    }
    /// A user.
    fn user(&mut self, realm: &str, id: &str) -> Result<User>;
    /// The id of the user whose username (preferred) or email is `login`,
    /// case-insensitively.
    fn user_id_by_login(&mut self, realm: &str, login: &str) -> Result<Option<String>>;
    /// A user's state and what the lifecycle table remembers for them.
    fn user_state(&mut self, realm: &str, id: &str) -> Result<(UserState, Memory)>;
    /// Replace a user's attributes.
    fn set_user_attrs(
        &mut self,
        realm: &str,
        id: &str,
        attrs: &Map<String, Value>,
        now: i64,
    ) -> Result<()>;
    /// Store a lifecycle transition (state, memory; `tokens_valid_after`
    /// raised to `now` when it revokes).
    fn set_user_state(
        &mut self,
        realm: &str,
        id: &str,
        transition: &pdp_core::Transition,
        now: i64,
    ) -> Result<()>;
    /// Mark a user changed (its record is republished).
    fn touch_user(&mut self, realm: &str, id: &str, now: i64) -> Result<()>;
    /// One page of a search: (id, key) pairs in (key, id) order, at most
    /// `search.limit + 1` of them (the extra one says there is more).
    fn search_users(&mut self, realm: &str, search: &Search) -> Result<Vec<(String, String)>>;
    /// Every user record of the realm in id order, until `f` says stop.
    fn for_each_user(
        &mut self,
        realm: &str,
        f: &mut dyn FnMut(UserRecord) -> Result<bool>,
    ) -> Result<()>;

    // ---------------------------------------------------- groups, roles
    /// Whether the group or role exists.
    fn node_exists(&mut self, realm: &str, kind: Kind, id: &str) -> Result<bool>;
    /// Store a new group or role.
    fn insert_node(&mut self, realm: &str, kind: Kind, new: &NewNode, now: i64) -> Result<()>;
    /// A group or role.
    fn node(&mut self, realm: &str, kind: Kind, id: &str) -> Result<Node>;
    /// Every group or role, by id.
    fn nodes(&mut self, realm: &str, kind: Kind) -> Result<Vec<Node>>;
    /// Change a description; false when there is no such node.
    fn describe_node(&mut self, realm: &str, kind: Kind, id: &str, text: &str) -> Result<bool>;
    /// Delete a node and every membership naming it; the users that were
    /// its direct members.
    fn delete_node(&mut self, realm: &str, kind: Kind, id: &str) -> Result<Vec<String>>;
    /// Add (or remove) a user's membership of a group or role; whether
    /// anything changed.
    fn set_user_link(
        &mut self,
        realm: &str,
        user: &str,
        kind: Kind,
        target: &str,
        add: bool,
    ) -> Result<bool>;
    /// `group` and every group it is nested in, transitively.
    fn group_and_ancestors(&mut self, realm: &str, group: &str) -> Result<Vec<String>>;
    /// Nest (or un-nest) a group; whether anything changed.
    fn set_group_parent(
        &mut self,
        realm: &str,
        group: &str,
        parent: &str,
        add: bool,
    ) -> Result<bool>;
    /// Assign (or take away) a group's role; whether anything changed.
    fn set_group_role(&mut self, realm: &str, group: &str, role: &str, add: bool) -> Result<bool>;
    /// Direct members of a group, by id.
    fn group_members(&mut self, realm: &str, group: &str) -> Result<Vec<String>>;
    /// Whether any user has the role directly.
    fn role_has_users(&mut self, realm: &str, role: &str) -> Result<bool>;

    // ---------------------------------- policies, schema, entities, routes
    /// Every policy and template, by id.
    fn policies(&mut self, realm: &str) -> Result<Vec<StoredPolicy>>;
    /// Store a policy (insert or replace).
    fn put_policy(&mut self, realm: &str, policy: &StoredPolicy) -> Result<()>;
    /// Delete a policy; false when there is none.
    fn delete_policy(&mut self, realm: &str, id: &str) -> Result<bool>;
    /// Every template link, by id.
    fn links(&mut self, realm: &str) -> Result<Vec<Link>>;
    /// Store a new link.
    fn insert_link(&mut self, realm: &str, link: &Link, now: i64) -> Result<()>;
    /// Delete a link; false when there is none.
    fn delete_link(&mut self, realm: &str, id: &str) -> Result<bool>;
    /// A schema version (the newest for `None`).
    fn schema(&mut self, realm: &str, version: Option<i64>) -> Result<Option<SchemaVersion>>;
    /// Store the next schema version; its number.
    fn insert_schema(&mut self, realm: &str, text: &str, now: i64) -> Result<i64>;
    /// The resource entities (Cedar JSON list; `[]` when none).
    fn resources(&mut self, realm: &str) -> Result<Value>;
    /// Replace the resource entities.
    fn put_resources(&mut self, realm: &str, entities: &Value) -> Result<()>;
    /// The route table's bytes, when the realm has one.
    fn routes(&mut self, realm: &str) -> Result<Option<Vec<u8>>>;
    /// Replace (or, with `None`, remove) the route table.
    fn put_routes(&mut self, realm: &str, routes: Option<&[u8]>) -> Result<()>;
    /// The AuthZEN type map's bytes, when the realm has one.
    fn authzen_types(&mut self, realm: &str) -> Result<Option<Vec<u8>>>;
    /// Replace (or, with `None`, remove) the AuthZEN type map.
    fn put_authzen_types(&mut self, realm: &str, types: Option<&[u8]>) -> Result<()>;

    // ------------------------------------------------------ signing keys
    /// The realm's token signing keys, newest first.
    fn signing_keys(&mut self, realm: &str) -> Result<Vec<StoredKey>>;
    /// Store a new signing key.
    fn insert_signing_key(&mut self, realm: &str, key: &StoredKey) -> Result<()>;
    /// Retire every key of the realm but those named.
    fn retire_signing_keys(&mut self, realm: &str, keep: &[String]) -> Result<()>;

    // ------------------------------------------------------- credentials
    /// A user's credentials (all empty when none were ever set).
    fn credentials(&mut self, realm: &str, user: &str) -> Result<Credentials>;
    /// Replace a user's credentials.
    fn put_credentials(&mut self, realm: &str, user: &str, c: &Credentials) -> Result<()>;
    /// The brute-force record of a login name.
    fn throttle(&mut self, realm: &str, login_lc: &str) -> Result<Throttle>;
    /// Replace (or, with `None`, clear) a login name's record.
    fn put_throttle(&mut self, realm: &str, login_lc: &str, t: Option<&Throttle>) -> Result<()>;
    /// Store a challenge session, dropping expired ones.
    fn insert_session(&mut self, session: &Session, now: i64) -> Result<()>;
    /// Take (delete and return) a session of the realm.
    fn take_session(&mut self, realm: &str, id: &str) -> Result<Option<Session>>;

    // -------------------------------------------------------- change log
    /// Record a change for publishing (and bump the realm's version).
    fn record_change(&mut self, realm: &str, change: Change, now: i64) -> Result<()>;
    /// What waits to be published, or `None`.
    fn pending(&mut self, realm: &str) -> Result<Option<Pending>>;
    /// Whether any change up to `seq` (a [`Pending::upto`]) still waits to
    /// be published.
    fn unpublished_through(&mut self, realm: &str, seq: i64) -> Result<bool>;
    /// How many changes wait.
    fn pending_count(&mut self, realm: &str) -> Result<u64>;
    /// When the oldest waiting change was committed, unix seconds.
    fn oldest_pending(&mut self, realm: &str) -> Result<Option<i64>>;
    /// Every change up to `upto` is in the store at `revision`.
    fn mark_published(&mut self, realm: &str, upto: i64, revision: u64, now: i64) -> Result<()>;
    /// The newest revision this repository's changes reached, and when.
    fn published(&mut self, realm: &str) -> Result<Option<(u64, i64)>>;
    /// Before a delta at `revision` is written: it carries the changes up
    /// to `upto`. Kept only if no intent for that revision exists (the
    /// first publisher to try a revision is the one whose bundle may be
    /// there); removed by [`Transaction::mark_published`] at or past it.
    fn record_intent(&mut self, realm: &str, revision: u64, upto: i64) -> Result<()>;
    /// The changes a delta at `revision` carries, when its publisher
    /// recorded them: what adopting that bundle publishes.
    fn intent(&mut self, realm: &str, revision: u64) -> Result<Option<i64>>;

    // ------------------------------------------------------------- copy
    /// Every row of a table, in its key order, each value by its column's
    /// kind (copying between repositories, verifying a copy).
    fn export_rows(
        &mut self,
        table: &TableSpec,
        f: &mut dyn FnMut(Vec<Cell>) -> Result<()>,
    ) -> Result<()>;
    /// Insert rows exported from another repository, as they are.
    fn import_rows(&mut self, table: &TableSpec, rows: &[Vec<Cell>]) -> Result<()>;
    /// After an import: bring generated sequences past what was imported.
    fn copied(&mut self) -> Result<()>;

    // ------------------------------------------------- secrets at rest
    /// Bring every stored secret (bundle seeds, signing keys, TOTP
    /// secrets; deleted realms' too) under the current key-encryption
    /// key as `pass` says: at a start, seal any still in clear (or refuse
    /// them, [`crate::secrets::Pass::Start`]); for `kek rewrap`, re-wrap
    /// the data keys of those sealed under a retired KEK. Each value is
    /// rewritten only if it is still the one read, and counted only if
    /// rewritten. Every realm's bundle seed is opened in either mode (and,
    /// at a start, its newest signing key), so the pass each start makes
    /// refuses a KEK that does not open this database. Fails, changing nothing, when one does not open.
    fn reseal_secrets(&mut self, pass: crate::secrets::Pass) -> Result<crate::secrets::Rewrapped>;
    /// Whether a start has recorded that no secret is left in clear.
    fn sealed_only(&mut self) -> Result<bool>;
    /// Record that no secret is left in clear: from now on a clear value
    /// is refused, at every start too.
    fn record_sealed_only(&mut self) -> Result<()>;

    /// The pass every start makes: seal what an older build left in clear
    /// and record that none is left — or, once that is recorded, refuse a
    /// clear value ([`crate::domain::error::SecretFailure::InClear`]): one
    /// now was written around the control plane (a sealed secret swapped
    /// for one of someone's choosing), and sealing it would adopt it.
    fn seal_at_start(&mut self) -> Result<crate::secrets::Rewrapped> {
        let seal_clear = !self.sealed_only()?;
        let out = self.reseal_secrets(crate::secrets::Pass::Start { seal_clear })?;
        if seal_clear {
            self.record_sealed_only()?;
        }
        Ok(out)
    }

    // ------------------------------------------- rules over the above
    /// Apply a lifecycle action by the table of `pdp_core::lifecycle`.
    /// Illegal transitions are refused (`Error::Lifecycle`) and change
    /// nothing; revoking actions set `tokens_valid_after` to `now`.
    fn lifecycle(
        &mut self,
        realm: &str,
        id: &str,
        action: LifecycleAction,
        now: i64,
    ) -> Result<User> {
        self.live_realm(realm)?;
        let (state, memory) = self.user_state(realm, id)?;
        let t = state.apply(action, memory)?;
        self.set_user_state(realm, id, &t, now)?;
        self.record_change(realm, Change::User(id.to_owned()), now)?;
        self.user(realm, id)
    }

    /// The current schema's text.
    fn current_schema_text(&mut self, realm: &str) -> Result<String> {
        self.live_realm(realm)?;
        self.schema(realm, None)?
            .map(|s| s.text)
            .ok_or_else(|| Error::not_found("schema of realm", realm))
    }

    /// Everything of the realm that Cedar validates together.
    fn content(&mut self, realm: &str) -> Result<Content> {
        let schema = self.current_schema_text(realm)?;
        let policies = self
            .policies(realm)?
            .into_iter()
            .map(|p| PolicyBody {
                id: p.id,
                template: p.template,
                body: p.body,
            })
            .collect();
        Ok(Content {
            schema,
            policies,
            links: self.links(realm)?,
            resources: self.resources(realm)?,
            roles: self.nodes(realm, Kind::Role)?,
            groups: self.nodes(realm, Kind::Group)?,
            routes: self.routes(realm)?,
            authzen: self.authzen_types(realm)?,
        })
    }
}
