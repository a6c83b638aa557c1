//! The command line: every admin operation as a subcommand, so a shell
//! script can run a realm's whole lifecycle. A subcommand parses its
//! arguments, calls the same [`Service`] function the HTTP API calls (as
//! the operator, who holds the database) and renders the result: JSON on
//! stdout; a refusal is one line on stderr and exit code 2, a failure exit
//! code 1.

use crate::domain::error::Error;
use crate::domain::group::{Kind, NewNode};
use crate::domain::import::Format;
use crate::domain::policy::{Link, PolicyInput};
use crate::domain::realm::NewRealm;
use crate::domain::user::{NewUser, UserQuery};
use crate::ports::identity::ChallengeAnswer;
use crate::service::{Caller, Service};
use clap::{Args, Parser, Subcommand};
use pdp_core::LifecycleAction;
use serde_json::{Map, Value};
use std::path::PathBuf;

/// Gatehouse control plane: realms, users and their lifecycle, groups,
/// roles, Cedar policies, and signed bundles for decision points.
#[derive(Debug, Parser)]
#[command(name = "control-plane", version, after_help = crate::config::settings_help())]
pub struct Cli {
    /// TOML configuration file (every setting below is also a key of it
    /// and a `GATEHOUSE_CP_*` variable).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Every setting as a flag (`--db`, `--store`, `--dev-ephemeral-kek`,
    /// ...), over the file and the environment.
    #[command(flatten)]
    pub settings: crate::config::SettingFlags,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// `kek` subcommands.
#[derive(Debug, Subcommand)]
pub enum KekCmd {
    /// Re-wrap every stored secret's data key under the current KEK (the
    /// first of `kek`), and seal any still stored in clear, in one
    /// transaction; prints the counts. Afterwards retired KEKs can be
    /// removed from the settings.
    Rewrap,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Realms (tenants).
    #[command(subcommand)]
    Realm(RealmCmd),
    /// Users and their lifecycle.
    #[command(subcommand)]
    User(UserCmd),
    /// Groups and their nesting and roles.
    #[command(subcommand)]
    Group(GroupCmd),
    /// Roles.
    #[command(subcommand)]
    Role(RoleCmd),
    /// Cedar policies and templates.
    #[command(subcommand)]
    Policy(PolicyCmd),
    /// The realm's Cedar schema (versioned).
    #[command(subcommand)]
    Schema(SchemaCmd),
    /// Import users from a JSON Lines or CSV file (all or nothing).
    Import {
        /// Realm.
        realm: String,
        /// File (`-` for stdin).
        file: PathBuf,
        /// `jsonl` or `csv` (default: from the file name, else jsonl).
        #[arg(long)]
        format: Option<String>,
    },
    /// Replace the realm's resource entities (Cedar JSON entity list file).
    Entities {
        /// Realm.
        realm: String,
        /// JSON file.
        file: PathBuf,
    },
    /// The realm's forward-auth routes (`routes.json` of its bundles).
    #[command(subcommand)]
    Routes(RoutesCmd),
    /// The realm's AuthZEN type names (`authzen.json` of its bundles: a
    /// PEP's `user` -> the schema's `User`).
    #[command(subcommand)]
    AuthzenTypes(AuthzenTypesCmd),
    /// Log in as a user of a realm (password from stdin); prints tokens or
    /// the challenge to answer with `respond`.
    Login {
        /// Realm.
        realm: String,
        /// Username or email.
        #[arg(long)]
        username: String,
        /// Read the password from stdin.
        #[arg(long, required = true)]
        password_stdin: bool,
        /// App client id (default: the realm's first).
        #[arg(long)]
        client_id: Option<String>,
    },
    /// Answer a login challenge: a new password (stdin) or a TOTP code.
    Respond {
        /// Realm.
        realm: String,
        /// The session from the challenge.
        #[arg(long)]
        session: String,
        /// Read the new password from stdin.
        #[arg(long, conflicts_with = "code")]
        new_password_stdin: bool,
        /// The TOTP code.
        #[arg(long)]
        code: Option<String>,
        /// App client id.
        #[arg(long)]
        client_id: Option<String>,
    },
    /// Create the admin realm and its first administrator (password from
    /// stdin). Refused once an administrator exists.
    Bootstrap {
        /// Username.
        #[arg(long)]
        username: String,
        /// Email.
        #[arg(long)]
        email: String,
        /// Read the password from stdin.
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// Serve the admin API (and each realm's JWKS, discovery and login).
    Serve,
    /// Print the admin API's OpenAPI 3.1 document.
    Openapi,
    /// Bring the database's schema up to date (every other command does
    /// too) and say which database it is; refuses a schema newer than this
    /// build knows.
    Migrate,
    /// Copy everything (realms, users with credentials, groups, roles,
    /// policies, schemas, keys, the change log, publish state) from one
    /// database into an empty one, then verify the copy (rows and a digest
    /// per table): `--from sqlite:gatehouse.db --to postgres://...`.
    Copy {
        /// The database copied (a path, `sqlite:PATH` or `postgres://...`).
        #[arg(long)]
        from: String,
        /// The empty database written.
        #[arg(long)]
        to: String,
    },
    /// The key-encryption keys of secrets at rest.
    #[command(subcommand)]
    Kek(KekCmd),
    /// Publish the realm's pending changes to the store (a signed delta; a
    /// snapshot the first time or after a bulk import).
    Publish {
        /// Realm.
        realm: String,
    },
    /// Fold the realm's newest snapshot and the deltas after it into a new
    /// snapshot.
    Compact {
        /// Realm.
        realm: String,
    },
    /// Re-sign the HEAD of every live realm whose record is half an
    /// interval old (what `serve` does in the background). Edge hosts count
    /// freshness from signed HEADs only: a deployment that publishes from
    /// the command line alone runs this from a timer.
    Resign,
    /// What is published for the realm and what waits.
    Status {
        /// Realm.
        realm: String,
    },
}

/// Realm subcommands.
#[derive(Debug, Subcommand)]
pub enum RealmCmd {
    /// Create a realm (reference schema unless `--schema`).
    Create {
        /// Name: a-z 0-9 - _.
        name: String,
        /// Human-readable name.
        #[arg(long)]
        display_name: Option<String>,
        /// Cedar schema file.
        #[arg(long)]
        schema: Option<PathBuf>,
        /// Identity provider: `local` (embedded, the default) or `cognito`
        /// (a user pool; created unless `--pool-id` binds one).
        #[arg(long)]
        identity: Option<String>,
        /// Cognito: bind this existing user pool (with `--client-id`).
        #[arg(long, requires = "client_id")]
        pool_id: Option<String>,
        /// Cognito: the existing app client of `--pool-id` to bind.
        #[arg(long, requires = "pool_id")]
        client_id: Option<String>,
        /// Cognito: let Cognito mail new users its invitation (default:
        /// suppressed).
        #[arg(long)]
        send_invitations: bool,
    },
    /// List realms.
    List {
        /// Include soft-deleted realms.
        #[arg(long)]
        all: bool,
    },
    /// Show a realm.
    Get {
        /// Name.
        name: String,
    },
    /// Soft-delete a realm (and publish a last delta that forbids
    /// everything, so decision points deny in it).
    Delete {
        /// Name.
        name: String,
    },
    /// Print the public key (SPKI PEM) that signs the realm's bundles, for
    /// decision points' `--trust-key`.
    BundleKey {
        /// Name.
        name: String,
    },
    /// Rotate the realm's token signing key (the previous one stays in the
    /// JWKS until the next rotation).
    RotateKey {
        /// Name.
        name: String,
        /// EdDSA or ES256.
        #[arg(long, default_value = "EdDSA")]
        alg: String,
    },
    /// List the realm's token signing keys.
    Keys {
        /// Name.
        name: String,
    },
    /// Print the realm's JWKS.
    Jwks {
        /// Name.
        name: String,
    },
}

/// User subcommands.
#[derive(Debug, Subcommand)]
pub enum UserCmd {
    /// Create a user (state Created).
    Create {
        /// Realm.
        realm: String,
        /// Email.
        #[arg(long)]
        email: String,
        /// Username (default: the email).
        #[arg(long)]
        username: Option<String>,
        /// Attributes, a JSON object.
        #[arg(long)]
        attrs: Option<String>,
    },
    /// Show a user.
    Get {
        /// Realm.
        realm: String,
        /// User id.
        id: String,
    },
    /// Search users.
    List {
        /// Realm.
        realm: String,
        /// Search filters.
        #[command(flatten)]
        query: ListArgs,
    },
    /// Merge attributes (JSON object; null removes one).
    Update {
        /// Realm.
        realm: String,
        /// User id.
        id: String,
        /// Attributes patch.
        #[arg(long)]
        attrs: String,
    },
    /// Apply a lifecycle action: invite, verify, require-password-reset,
    /// complete-password-reset, suspend, resume, deactivate, delete,
    /// restore, sign-out-everywhere.
    Lifecycle {
        /// Realm.
        realm: String,
        /// User id.
        id: String,
        /// Action.
        action: String,
    },
    /// Add the user to a group.
    AddGroup {
        /// Realm.
        realm: String,
        /// User id.
        id: String,
        /// Group id.
        group: String,
    },
    /// Remove the user from a group.
    RemoveGroup {
        /// Realm.
        realm: String,
        /// User id.
        id: String,
        /// Group id.
        group: String,
    },
    /// Assign a role to the user.
    AddRole {
        /// Realm.
        realm: String,
        /// User id.
        id: String,
        /// Role id.
        role: String,
    },
    /// Take a role from the user.
    RemoveRole {
        /// Realm.
        realm: String,
        /// User id.
        id: String,
        /// Role id.
        role: String,
    },
    /// Set a user's password, read from stdin (first line).
    SetPassword {
        /// Realm.
        realm: String,
        /// User id.
        id: String,
        /// Read the password from stdin (the only way: never on the command line).
        #[arg(long, required = true)]
        password_stdin: bool,
        /// The user must choose a new one at the next login.
        #[arg(long)]
        temporary: bool,
    },
    /// Send a verification code (prints it for delivery; a Created user
    /// becomes Unverified).
    Invite {
        /// Realm.
        realm: String,
        /// User id.
        id: String,
    },
    /// Issue a password-reset code (prints it for delivery; 15 minutes, 5
    /// wrong answers) to an Active user or one who must reset.
    ResetCode {
        /// Realm.
        realm: String,
        /// User id.
        id: String,
    },
    /// Start TOTP enrolment; prints the secret and the otpauth URI.
    TotpEnroll {
        /// Realm.
        realm: String,
        /// User id.
        id: String,
    },
    /// Confirm TOTP enrolment with a current code.
    TotpConfirm {
        /// Realm.
        realm: String,
        /// User id.
        id: String,
        /// The code.
        code: String,
    },
    /// Remove a user's TOTP.
    TotpRemove {
        /// Realm.
        realm: String,
        /// User id.
        id: String,
    },
}

/// Search filters.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Emails starting with this.
    #[arg(long)]
    email_prefix: Option<String>,
    /// Usernames starting with this.
    #[arg(long)]
    username_prefix: Option<String>,
    /// Only this state.
    #[arg(long)]
    state: Option<String>,
    /// Page size.
    #[arg(long)]
    limit: Option<u32>,
    /// Cursor from a previous page.
    #[arg(long)]
    cursor: Option<String>,
}

/// Group subcommands.
#[derive(Debug, Subcommand)]
pub enum GroupCmd {
    /// Create a group.
    Create {
        /// Realm.
        realm: String,
        /// Group id.
        id: String,
        /// Description.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List groups.
    List {
        /// Realm.
        realm: String,
    },
    /// Show a group.
    Get {
        /// Realm.
        realm: String,
        /// Group id.
        id: String,
    },
    /// Delete a group (and its memberships).
    Delete {
        /// Realm.
        realm: String,
        /// Group id.
        id: String,
    },
    /// Nest a group inside another.
    AddParent {
        /// Realm.
        realm: String,
        /// Group id.
        id: String,
        /// Parent group id.
        parent: String,
    },
    /// Take a group out of another.
    RemoveParent {
        /// Realm.
        realm: String,
        /// Group id.
        id: String,
        /// Parent group id.
        parent: String,
    },
    /// Assign a role to a group.
    AddRole {
        /// Realm.
        realm: String,
        /// Group id.
        id: String,
        /// Role id.
        role: String,
    },
    /// Take a role from a group.
    RemoveRole {
        /// Realm.
        realm: String,
        /// Group id.
        id: String,
        /// Role id.
        role: String,
    },
}

/// Role subcommands.
#[derive(Debug, Subcommand)]
pub enum RoleCmd {
    /// Create a role.
    Create {
        /// Realm.
        realm: String,
        /// Role id.
        id: String,
        /// Description.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List roles.
    List {
        /// Realm.
        realm: String,
    },
    /// Delete a role (and its assignments).
    Delete {
        /// Realm.
        realm: String,
        /// Role id.
        id: String,
    },
}

/// Policy subcommands.
#[derive(Debug, Subcommand)]
pub enum PolicyCmd {
    /// Create or replace a policy or template from a file (one policy, no
    /// `@id`).
    Put {
        /// Realm.
        realm: String,
        /// Policy id.
        id: String,
        /// Cedar file.
        file: PathBuf,
        /// Description.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Show a policy.
    Get {
        /// Realm.
        realm: String,
        /// Policy id.
        id: String,
    },
    /// List policies.
    List {
        /// Realm.
        realm: String,
    },
    /// Delete a policy.
    Delete {
        /// Realm.
        realm: String,
        /// Policy id.
        id: String,
    },
    /// Link a template: `--principal Type::id`, `--resource Type::id`.
    Link {
        /// Realm.
        realm: String,
        /// New policy id.
        id: String,
        /// Template id.
        #[arg(long)]
        template: String,
        /// `?principal` value, `Type::"id"` or `Type::id`.
        #[arg(long)]
        principal: Option<String>,
        /// `?resource` value.
        #[arg(long)]
        resource: Option<String>,
    },
    /// Remove a template link.
    Unlink {
        /// Realm.
        realm: String,
        /// Link id.
        id: String,
    },
}

/// Schema subcommands.
#[derive(Debug, Subcommand)]
pub enum SchemaCmd {
    /// Submit a new schema version from a file.
    Put {
        /// Realm.
        realm: String,
        /// Cedar schema file.
        file: PathBuf,
    },
    /// Show a schema version (default: current).
    Get {
        /// Realm.
        realm: String,
        /// Version.
        #[arg(long)]
        version: Option<i64>,
    },
}

/// Route subcommands.
#[derive(Debug, Subcommand)]
pub enum RoutesCmd {
    /// Replace the route table from a file (`{"routes": [...]}`), checked as
    /// decision points check it.
    Put {
        /// Realm.
        realm: String,
        /// JSON file.
        file: PathBuf,
    },
    /// Print the route table.
    Get {
        /// Realm.
        realm: String,
    },
}

/// AuthZEN type-name subcommands.
#[derive(Debug, Subcommand)]
pub enum AuthzenTypesCmd {
    /// Replace the type names from a file (`{"types": {"user": "User"}}`),
    /// each checked against the realm's schema.
    Put {
        /// Realm.
        realm: String,
        /// JSON file.
        file: PathBuf,
    },
    /// Print the type names.
    Get {
        /// Realm.
        realm: String,
    },
}

/// What a subcommand produced: JSON for stdout, or an error.
pub type Outcome = Result<Value, CliError>;

/// Why a command did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The control plane refused or failed.
    #[error(transparent)]
    Domain(#[from] Error),
    /// A file or argument problem.
    #[error("{0}")]
    Usage(String),
}

impl CliError {
    /// 2 for refusals (the input was wrong), 1 for failures.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Domain(
                Error::Repository(_)
                | Error::Store(_)
                | Error::Identity(_)
                | Error::Internal(_)
                | Error::Secret { .. }
                | Error::Busy { .. }
                | Error::Publish(_),
            ) => 1,
            _ => 2,
        }
    }
}

fn json_of<T: serde::Serialize>(v: &T) -> Outcome {
    serde_json::to_value(v).map_err(|e| CliError::Usage(e.to_string()))
}

fn read(path: &PathBuf) -> Result<String, CliError> {
    std::fs::read_to_string(path).map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))
}

fn object(text: &str, what: &str) -> Result<Map<String, Value>, CliError> {
    match serde_json::from_str(text) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(CliError::Usage(format!("{what} must be a JSON object"))),
        Err(e) => Err(CliError::Usage(format!("{what}: {e}"))),
    }
}

fn json_file(file: &PathBuf) -> Result<Value, CliError> {
    serde_json::from_str(&read(file)?)
        .map_err(|e| CliError::Usage(format!("{}: {e}", file.display())))
}

/// `Type::"id"` or `Type::id` as a Cedar JSON entity reference.
fn entity_ref(text: &str) -> Result<Value, CliError> {
    let (ty, id) = text
        .rsplit_once("::")
        .ok_or_else(|| CliError::Usage(format!("{text:?} is not Type::id")))?;
    let id = id.trim_matches('"');
    Ok(serde_json::json!({"type": ty, "id": id}))
}

/// The first line of stdin, without its line ending (a secret: never
/// echoed, never logged).
fn stdin_line() -> Result<String, CliError> {
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| CliError::Usage(format!("stdin: {e}")))?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}

impl Command {
    /// Whether the command works on the repository and the store (every
    /// one but `openapi`, which prints a document, and `serve`, `migrate`
    /// and `copy`, which the binary runs itself).
    pub fn needs_service(&self) -> bool {
        !matches!(
            self,
            Command::Openapi
                | Command::Serve
                | Command::Migrate
                | Command::Copy { .. }
                | Command::Kek(_)
        )
    }
}

/// The OpenAPI document, for `control-plane openapi` (needs no database).
pub fn openapi_text() -> Result<String, CliError> {
    Ok(crate::http::openapi()
        .to_pretty_json()
        .map_err(|e| CliError::Usage(e.to_string()))?
        + "\n")
}

/// Run a subcommand with the service, as the operator.
pub async fn run(s: &Service, command: Command) -> Outcome {
    let op = &Caller::Operator;
    match command {
        Command::Realm(c) => match c {
            RealmCmd::Create {
                name,
                display_name,
                schema,
                identity,
                pool_id,
                client_id,
                send_invitations,
            } => {
                let schema = schema.as_ref().map(read).transpose()?;
                json_of(
                    &s.create_realm(
                        op,
                        &NewRealm {
                            name,
                            display_name,
                            schema,
                            identity,
                            pool_id,
                            client_id,
                            send_invitations: send_invitations.then_some(true),
                        },
                    )
                    .await?,
                )
            }
            RealmCmd::List { all } => json_of(&s.realms(op, all).await?),
            RealmCmd::Get { name } => json_of(&s.realm(op, &name).await?),
            RealmCmd::Delete { name } => json_of(&s.delete_realm(op, &name).await?),
            RealmCmd::RotateKey { name, alg } => {
                json_of(&s.rotate_signing_key(op, &name, alg.parse()?).await?)
            }
            RealmCmd::Keys { name } => json_of(&s.signing_keys(op, &name).await?),
            RealmCmd::Jwks { name } => Ok(s.jwks(&name).await?),
            RealmCmd::BundleKey { name } => Ok(Value::String(s.bundle_key(op, &name).await?)),
        },
        Command::User(c) => match c {
            UserCmd::Create {
                realm,
                email,
                username,
                attrs,
            } => {
                let attrs = attrs
                    .as_deref()
                    .map(|a| object(a, "--attrs"))
                    .transpose()?
                    .unwrap_or_default();
                let new = NewUser {
                    username,
                    email,
                    attrs,
                    id: None,
                };
                json_of(&s.create_user(op, &realm, &new).await?)
            }
            UserCmd::Get { realm, id } => json_of(&s.user(op, &realm, &id).await?),
            UserCmd::List { realm, query } => {
                let q = UserQuery {
                    email_prefix: query.email_prefix,
                    username_prefix: query.username_prefix,
                    state: query.state,
                    limit: query.limit,
                    cursor: query.cursor,
                };
                json_of(&s.search_users(op, &realm, &q).await?)
            }
            UserCmd::Update { realm, id, attrs } => {
                let patch = object(&attrs, "--attrs")?;
                json_of(&s.update_user_attrs(op, &realm, &id, &patch).await?)
            }
            UserCmd::SetPassword {
                realm,
                id,
                temporary,
                ..
            } => {
                s.set_password(op, &realm, &id, &stdin_line()?, temporary)
                    .await?;
                json_of(&s.user(op, &realm, &id).await?)
            }
            UserCmd::Invite { realm, id } => json_of(&s.start_verification(op, &realm, &id).await?),
            UserCmd::ResetCode { realm, id } => {
                json_of(&s.start_password_reset(op, &realm, &id).await?)
            }
            UserCmd::TotpEnroll { realm, id } => json_of(&s.totp_enroll(op, &realm, &id).await?),
            UserCmd::TotpConfirm { realm, id, code } => {
                s.totp_confirm(op, &realm, &id, &code).await?;
                Ok(Value::Null)
            }
            UserCmd::TotpRemove { realm, id } => {
                s.totp_remove(op, &realm, &id).await?;
                Ok(Value::Null)
            }
            UserCmd::Lifecycle { realm, id, action } => {
                let action: LifecycleAction = action.parse().map_err(Error::from)?;
                json_of(&s.lifecycle(op, &realm, &id, action).await?)
            }
            UserCmd::AddGroup { realm, id, group } => {
                json_of(&s.set_user_group(op, &realm, &id, &group, true).await?)
            }
            UserCmd::RemoveGroup { realm, id, group } => {
                json_of(&s.set_user_group(op, &realm, &id, &group, false).await?)
            }
            UserCmd::AddRole { realm, id, role } => {
                json_of(&s.set_user_role(op, &realm, &id, &role, true).await?)
            }
            UserCmd::RemoveRole { realm, id, role } => {
                json_of(&s.set_user_role(op, &realm, &id, &role, false).await?)
            }
        },
        Command::Group(c) => match c {
            GroupCmd::Create {
                realm,
                id,
                description,
            } => {
                let new = NewNode { id, description };
                json_of(&s.create_node(op, &realm, Kind::Group, &new).await?)
            }
            GroupCmd::List { realm } => json_of(&s.nodes(op, &realm, Kind::Group).await?),
            GroupCmd::Get { realm, id } => json_of(&s.node(op, &realm, Kind::Group, &id).await?),
            GroupCmd::Delete { realm, id } => {
                s.delete_node(op, &realm, Kind::Group, &id).await?;
                Ok(Value::Null)
            }
            GroupCmd::AddParent { realm, id, parent } => {
                json_of(&s.set_group_parent(op, &realm, &id, &parent, true).await?)
            }
            GroupCmd::RemoveParent { realm, id, parent } => {
                json_of(&s.set_group_parent(op, &realm, &id, &parent, false).await?)
            }
            GroupCmd::AddRole { realm, id, role } => {
                json_of(&s.set_group_role(op, &realm, &id, &role, true).await?)
            }
            GroupCmd::RemoveRole { realm, id, role } => {
                json_of(&s.set_group_role(op, &realm, &id, &role, false).await?)
            }
        },
        Command::Role(c) => match c {
            RoleCmd::Create {
                realm,
                id,
                description,
            } => {
                let new = NewNode { id, description };
                json_of(&s.create_node(op, &realm, Kind::Role, &new).await?)
            }
            RoleCmd::List { realm } => json_of(&s.nodes(op, &realm, Kind::Role).await?),
            RoleCmd::Delete { realm, id } => {
                s.delete_node(op, &realm, Kind::Role, &id).await?;
                Ok(Value::Null)
            }
        },
        Command::Policy(c) => match c {
            PolicyCmd::Put {
                realm,
                id,
                file,
                description,
            } => {
                let input = PolicyInput {
                    body: read(&file)?,
                    description,
                };
                json_of(&s.put_policy(op, &realm, &id, &input).await?)
            }
            PolicyCmd::Get { realm, id } => json_of(&s.policy(op, &realm, &id).await?),
            PolicyCmd::List { realm } => json_of(&s.policies(op, &realm).await?),
            PolicyCmd::Delete { realm, id } => {
                s.delete_policy(op, &realm, &id).await?;
                Ok(Value::Null)
            }
            PolicyCmd::Link {
                realm,
                id,
                template,
                principal,
                resource,
            } => {
                let mut values = std::collections::BTreeMap::new();
                if let Some(p) = principal {
                    values.insert("?principal".to_owned(), entity_ref(&p)?);
                }
                if let Some(r) = resource {
                    values.insert("?resource".to_owned(), entity_ref(&r)?);
                }
                let link = Link {
                    id,
                    template_id: template,
                    values,
                };
                json_of(&s.create_link(op, &realm, &link).await?)
            }
            PolicyCmd::Unlink { realm, id } => {
                s.delete_link(op, &realm, &id).await?;
                Ok(Value::Null)
            }
        },
        Command::Schema(c) => match c {
            SchemaCmd::Put { realm, file } => {
                json_of(&s.put_schema(op, &realm, &read(&file)?).await?)
            }
            SchemaCmd::Get { realm, version } => json_of(&s.schema(op, &realm, version).await?),
        },
        Command::Import {
            realm,
            file,
            format,
        } => {
            let format = match format.as_deref() {
                Some("csv") => Format::Csv,
                Some("jsonl") => Format::JsonLines,
                Some(other) => return Err(CliError::Usage(format!("unknown format {other:?}"))),
                None if file.extension().is_some_and(|e| e == "csv") => Format::Csv,
                None => Format::JsonLines,
            };
            let input: Box<dyn std::io::BufRead + Send> = if file.as_os_str() == "-" {
                Box::new(std::io::BufReader::new(std::io::stdin()))
            } else {
                let f = std::fs::File::open(&file)
                    .map_err(|e| CliError::Usage(format!("{}: {e}", file.display())))?;
                Box::new(std::io::BufReader::new(f))
            };
            json_of(&s.import_users(op, &realm, input, format).await?)
        }
        Command::Entities { realm, file } => {
            s.put_resources(op, &realm, &json_file(&file)?).await?;
            Ok(Value::Null)
        }
        Command::Routes(c) => match c {
            RoutesCmd::Put { realm, file } => {
                Ok(s.put_routes(op, &realm, &json_file(&file)?).await?)
            }
            RoutesCmd::Get { realm } => Ok(s.routes(op, &realm).await?),
        },
        Command::AuthzenTypes(c) => match c {
            AuthzenTypesCmd::Put { realm, file } => {
                Ok(s.put_authzen_types(op, &realm, &json_file(&file)?).await?)
            }
            AuthzenTypesCmd::Get { realm } => Ok(s.authzen_types(op, &realm).await?),
        },
        Command::Login {
            realm,
            username,
            client_id,
            ..
        } => json_of(
            &s.login(&realm, &username, &stdin_line()?, client_id.as_deref())
                .await?,
        ),
        Command::Respond {
            realm,
            session,
            new_password_stdin,
            code,
            client_id,
        } => {
            let answer = ChallengeAnswer {
                session,
                new_password: if new_password_stdin {
                    Some(stdin_line()?)
                } else {
                    None
                },
                code,
            };
            json_of(&s.respond(&realm, &answer, client_id.as_deref()).await?)
        }
        Command::Bootstrap {
            username, email, ..
        } => json_of(&s.bootstrap(&username, &email, &stdin_line()?).await?),
        Command::Openapi => Ok(Value::String(openapi_text()?)),
        Command::Serve | Command::Migrate | Command::Copy { .. } | Command::Kek(_) => {
            Err(CliError::Usage(
                "serve, migrate, copy and kek run from the binary's main, not cli::run".into(),
            ))
        }
        Command::Publish { realm } => json_of(&s.publish(op, &realm).await?),
        Command::Compact { realm } => json_of(&s.compact(op, &realm).await?),
        Command::Status { realm } => json_of(&s.publish_status(op, &realm).await?),
        Command::Resign => json_of(&s.resign_heads().await?),
    }
}
