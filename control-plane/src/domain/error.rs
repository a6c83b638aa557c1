//! The control plane's one error type. Every variant carries what a caller
//! needs to act on it; `http::problem` is the one place it becomes HTTP and
//! `cli` the one place it becomes an exit code. No backend's error type
//! appears here: backends translate theirs into these variants.

use pdp_core::LifecycleError;

/// One finding of a validation (Cedar's diagnostics, a schema check, an
/// attribute check), positioned where possible.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Diagnostic {
    /// What was checked: a policy id, `schema`, an attribute name, a user id.
    pub subject: String,
    /// The finding, on one line.
    pub message: String,
    /// 1-based line in the submitted text, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// 1-based column in the submitted text, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<usize>,
}

impl Diagnostic {
    /// A finding without a position.
    pub fn new(subject: impl Into<String>, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            subject: subject.into(),
            message: message.into(),
            line: None,
            column: None,
        }
    }
}

/// Why a control-plane operation was refused or failed. Refusals change
/// nothing: every write is one repository transaction.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The named thing does not exist (or belongs to another realm, or to a
    /// deleted realm: realms never see each other).
    #[error("{kind} {id:?} not found")]
    NotFound {
        /// `realm`, `user`, `group`, `role`, `policy`, ...
        kind: &'static str,
        /// The id asked for.
        id: String,
    },
    /// A thing with this identity already exists.
    #[error("{kind} {id:?} already exists")]
    AlreadyExists {
        /// What kind of thing.
        kind: &'static str,
        /// The conflicting id (or email, username).
        id: String,
    },
    /// The lifecycle table refuses the action.
    #[error(transparent)]
    Lifecycle(#[from] LifecycleError),
    /// The change would break an invariant (a group cycle, a template that
    /// still has links, ...).
    #[error("{0}")]
    Conflict(String),
    /// The submitted content does not validate (Cedar policy or schema,
    /// attributes against the schema).
    #[error("{what} does not validate: {}", first(.diagnostics))]
    Invalid {
        /// What was submitted.
        what: String,
        /// Every finding.
        diagnostics: Vec<Diagnostic>,
    },
    /// The request itself is malformed (a bad name, email, cursor, ...).
    #[error("{0}")]
    BadRequest(String),
    /// No or unacceptable credentials.
    #[error("not authenticated: {0}")]
    Unauthenticated(String),
    /// Authenticated, but the admin realm's policies do not permit it.
    #[error("not permitted: {0}")]
    Forbidden(String),
    /// Too many failed attempts; try again later.
    #[error("too many attempts; retry after {retry_after} s")]
    Throttled {
        /// Seconds until the next attempt is considered.
        retry_after: u64,
    },
    /// Too much work of one kind at once (password hashing); try again
    /// shortly.
    #[error("busy: {what}; retry after {retry_after} s")]
    Busy {
        /// What is saturated.
        what: &'static str,
        /// Seconds to wait.
        retry_after: u64,
    },
    /// The repository (database) failed or is unreachable.
    #[error("repository: {0}")]
    Repository(String),
    /// The object store failed or is unreachable.
    #[error("object store: {0}")]
    Store(String),
    /// The identity provider failed or is unreachable.
    #[error("identity provider: {0}")]
    Identity(String),
    /// Publishing failed (the change itself is committed and will be
    /// published by the next successful run).
    #[error("publish: {0}")]
    Publish(String),
    /// A stored secret (a bundle seed, a signing key, a TOTP secret)
    /// cannot be opened with the configured key-encryption keys. Nothing
    /// was changed.
    #[error("stored secret {what}: {why}")]
    Secret {
        /// Which secret (its kind, realm and row; never its value).
        what: String,
        /// Why.
        why: SecretFailure,
    },
    /// Anything else that should not happen.
    #[error("internal: {0}")]
    Internal(String),
}

/// Why a stored secret does not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretFailure {
    /// It was sealed under a key-encryption key whose id is not
    /// configured (a retired KEK removed too early, another database's).
    #[error(
        "sealed under key-encryption key {0:?}, which is not configured \
         (GATEHOUSE_CP_KEK / GATEHOUSE_CP_KEK_FILE)"
    )]
    UnknownKek(String),
    /// It does not authenticate under the configured KEK of that id: the
    /// wrong key under that id, a tampered value, or a value moved from
    /// another row.
    #[error(
        "does not authenticate under key-encryption key {0:?} (a different key under that id, \
         a tampered value, or a value moved from another row)"
    )]
    DoesNotOpen(String),
    /// Not an envelope this build can read.
    #[error("malformed envelope")]
    Malformed,
    /// Stored in clear in a database whose secrets are all sealed (every
    /// start's sealing pass records that it left none in clear): a value
    /// written around the control plane, refused rather than trusted.
    #[error(
        "stored in clear, but every secret of this database is sealed: a value written \
         around the control plane, refused"
    )]
    InClear,
    /// The development flag's throwaway KEK met a secret it did not seal:
    /// the database existed before this process. Sealing its clear values
    /// under a key that dies with the process would destroy them, so the
    /// database is not opened at all.
    #[error(
        "--dev-ephemeral-kek opens only a database it created: this one holds secrets from \
         before this process; start with the database's key-encryption key \
         (GATEHOUSE_CP_KEK / GATEHOUSE_CP_KEK_FILE), or give --db a new database"
    )]
    EphemeralKek,
}

fn first(d: &[Diagnostic]) -> String {
    match d.first() {
        Some(d) => format!("{}: {}", d.subject, d.message),
        None => "no details".into(),
    }
}

impl Error {
    /// `NotFound` for `kind`/`id`.
    pub fn not_found(kind: &'static str, id: impl Into<String>) -> Error {
        Error::NotFound {
            kind,
            id: id.into(),
        }
    }

    /// `Invalid` with one finding.
    pub fn invalid(what: impl Into<String>, d: Diagnostic) -> Error {
        Error::Invalid {
            what: what.into(),
            diagnostics: vec![d],
        }
    }
}

/// The control plane's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
