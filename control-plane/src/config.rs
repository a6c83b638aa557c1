//! Configuration: defaults, then a TOML file, then `GATEHOUSE_CP_*`
//! environment variables, then command-line flags (each overriding the
//! last). The `CP_` infix keeps the control plane's variables apart from an
//! edge host's on the same machine (both read `GATEHOUSE_*`). Each setting
//! is declared once (`settings!`): its TOML key, variable, flag, default
//! and `--help` line all come from that declaration. An unknown key in
//! the file or an unknown `GATEHOUSE_CP_*` variable is refused, naming the
//! nearest setting.
//!
//! Secrets at rest are sealed under the key-encryption keys of `kek` or
//! `kek_file` ([`Config::keyring`]); without one, every command that opens
//! the repository is refused unless `dev_ephemeral_kek` says to make up a
//! throwaway key.
//!
//! [`Config::service`] assembles the service from the settings: the
//! repository named by `db`, the object store named by `store`, the
//! embedded identity provider, the system clock. It is the one place that
//! chooses backends.

use crate::backend::cognito::CognitoIdentity;
use crate::backend::local_identity::LocalIdentity;
use crate::backend::postgres::PostgresRepository;
use crate::backend::sqlite::SqliteRepository;
use crate::domain::error::{Error, Result as DomainResult};
use crate::ports::clock::SystemClock;
use crate::ports::identity::Identities;
use crate::ports::repository::Repository;
use crate::secrets::Keyring;
use crate::service::{Service, Settings};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Open the repository a `db` string names (a path, `sqlite:PATH` or
/// `postgres://...`), its schema brought up to date, its secrets sealed
/// and opened with `keyring`.
pub async fn open_repository(db: &str, keyring: Arc<Keyring>) -> DomainResult<Arc<dyn Repository>> {
    let config = Config {
        db: db.to_owned(),
        ..Config::default()
    };
    Ok(match config.database()? {
        Database::Sqlite(path) => Arc::new(SqliteRepository::open(&path, keyring)?),
        Database::Postgres(url) => Arc::new(PostgresRepository::connect(&url, keyring).await?),
    })
}

/// A setting whose value is a secret: never in `Debug` output.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct SecretSetting(String);

impl SecretSetting {
    /// Wrap a value.
    pub fn new(value: impl Into<String>) -> SecretSetting {
        SecretSetting(value.into())
    }
}

impl std::fmt::Debug for SecretSetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Which repository the `db` setting names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    /// A SQLite file (a path, or `sqlite:PATH`).
    Sqlite(PathBuf),
    /// A PostgreSQL database (`postgres://...`; see
    /// `backend::postgres` for TLS).
    Postgres(String),
}

/// A value a setting holds: read from a variable's or a flag's text (the
/// TOML file goes through serde), shown as a default in `--help`.
trait SettingValue: Sized {
    /// A boolean: its flag may stand alone (`--auto-publish` is
    /// `--auto-publish=true`).
    const SWITCH: bool = false;
    /// Whether it may be given as a flag at all (not a secret: a command
    /// line is visible to every user of the machine).
    const FLAG: bool = true;
    /// Parse the text of a variable or flag.
    fn parse_setting(text: &str) -> Result<Self, String>;
    /// The value as `--help` shows a default.
    fn show(&self) -> String;
}

impl SettingValue for String {
    fn parse_setting(text: &str) -> Result<Self, String> {
        Ok(text.to_owned())
    }
    fn show(&self) -> String {
        if self.is_empty() {
            "empty".into()
        } else {
            self.clone()
        }
    }
}

impl SettingValue for bool {
    const SWITCH: bool = true;
    fn parse_setting(text: &str) -> Result<Self, String> {
        match text {
            "1" | "true" | "yes" => Ok(true),
            "0" | "false" | "no" | "" => Ok(false),
            other => Err(format!("{other:?} is not a boolean")),
        }
    }
    fn show(&self) -> String {
        self.to_string()
    }
}

macro_rules! parsed_setting {
    ($($t:ty),*) => {$(
        impl SettingValue for $t {
            fn parse_setting(text: &str) -> Result<Self, String> {
                text.parse().map_err(|e: <$t as std::str::FromStr>::Err| e.to_string())
            }
            fn show(&self) -> String {
                self.to_string()
            }
        }
    )*};
}
parsed_setting!(u64, i64, SocketAddr);

impl SettingValue for Option<PathBuf> {
    fn parse_setting(text: &str) -> Result<Self, String> {
        Ok(Some(PathBuf::from(text)))
    }
    fn show(&self) -> String {
        match self {
            Some(p) => p.display().to_string(),
            None => "none".into(),
        }
    }
}

impl SettingValue for Option<SecretSetting> {
    const FLAG: bool = false;
    fn parse_setting(text: &str) -> Result<Self, String> {
        Ok(Some(SecretSetting::new(text)))
    }
    fn show(&self) -> String {
        "none".into()
    }
}

/// Declares every setting once: the field (its name is the TOML key; the
/// variable is `GATEHOUSE_CP_` and the name in capitals; the flag `--`
/// and the name with dashes), its type, its default and its `--help`
/// line. Everything else about settings is generated from this.
macro_rules! settings {
    ($( $(#[doc = $doc:literal])* $key:ident: $ty:ty = $default:expr => $help:literal, )*) => {
        /// Everything the control plane can be told, declared once each
        /// (see [`settings`] for the names in every place).
        #[derive(Debug, Clone, PartialEq, Deserialize)]
        #[serde(deny_unknown_fields, default)]
        pub struct Config {
            $( $(#[doc = $doc])* pub $key: $ty, )*
        }

        impl Default for Config {
            fn default() -> Self {
                Config { $( $key: $default, )* }
            }
        }

        /// Every setting's key, `--help` line, whether its flag may stand
        /// alone and whether it has one, in declaration order.
        const DECLARED: &[(&str, &str, bool, bool)] = &[
            $( (
                stringify!($key),
                $help,
                <$ty as SettingValue>::SWITCH,
                <$ty as SettingValue>::FLAG,
            ), )*
        ];

        impl Config {
            /// Set `key` from a variable's or flag's text; `None` when no
            /// setting has that key.
            fn set(&mut self, key: &str, text: &str) -> Option<Result<(), String>> {
                match key {
                    $( stringify!($key) => Some(
                        <$ty as SettingValue>::parse_setting(text).map(|v| self.$key = v),
                    ), )*
                    _ => None,
                }
            }

            /// Each setting's default as `--help` shows it, in declaration
            /// order.
            fn shown_defaults() -> Vec<String> {
                let d = Config::default();
                vec![ $( d.$key.show(), )* ]
            }
        }
    };
}

settings! {
    /// The repository: a SQLite file path, `sqlite:PATH`, or
    /// `postgres://user:password@host:port/database`
    /// (`?sslmode=require&sslrootcert=CA.pem` for TLS to a private CA).
    db: String = "gatehouse.db".into()
        => "SQLite file, sqlite:PATH or postgres://...; holds the realms' sealed keys",
    /// The object store bundles are published to: a local directory, or
    /// `s3://bucket[/prefix]` (credentials, region and endpoint from the
    /// standard AWS settings).
    store: String = "gatehouse-store".into()
        => "where bundles go: a directory or s3://bucket[/prefix]",
    /// Path-style S3 addressing, for S3-compatible services.
    s3_force_path_style: bool = false
        => "path-style S3 addressing (S3-compatible services)",
    /// Key prefix inside the store.
    store_prefix: String = String::new()
        => "key prefix inside the store",
    /// Address the admin API listens on.
    listen: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 8900))
        => "admin API address for `serve`",
    /// Public base URL of this service; realm issuers are
    /// `<issuer_base>/realms/<realm>`.
    issuer_base: String = "http://127.0.0.1:8900".into()
        => "public base URL; realm issuers are <issuer_base>/realms/<realm>",
    /// The realm whose users administer the service and whose Cedar
    /// policies authorize every admin call.
    admin_realm: String = "admin".into()
        => "realm whose users and Cedar policies guard the admin API",
    /// Publish every change as it is committed.
    auto_publish: bool = true
        => "publish each change as it is committed (API and CLI)",
    /// Compact a realm into a new snapshot after this many deltas since the
    /// last one; 0 never.
    compact_after_deltas: u64 = 100
        => "deltas after a snapshot that trigger a compaction; 0 never",
    /// Lifetime of minted ID and access tokens, seconds.
    token_ttl_seconds: i64 = 3600
        => "lifetime of minted ID and access tokens, seconds",
    /// Re-sign every realm's `HEAD` at least this often, seconds, even when
    /// nothing changed (while `serve` runs). Edge hosts count freshness only
    /// from signed `HEAD` records and refuse a staleness limit shorter than
    /// 4 times this. At least 1.
    head_resign_interval_seconds: u64 = pdp_core::layout::DEFAULT_RESIGN_INTERVAL_SECONDS
        => "re-sign every realm's HEAD this often while serving, seconds; edge hosts need a staleness limit of 4x",
    /// The key-encryption keys secrets at rest are sealed under: `ID:KEY`
    /// pairs, KEY 32 bytes in standard base64, separated by commas; the
    /// first seals, the others (retired) only open. Prefer `kek_file`
    /// outside development. No flag: a command line is visible to others.
    kek: Option<SecretSetting> = None
        => "key-encryption keys: ID:BASE64[,ID:BASE64...], the first current (required, or kek_file)",
    /// A file holding the `kek` value, one `ID:KEY` a line, the current
    /// one first.
    kek_file: Option<PathBuf> = None
        => "a file holding the kek value, one ID:BASE64 a line, the current first",
    /// Development only: seal secrets under a random key that dies with
    /// the process.
    dev_ephemeral_kek: bool = false
        => "development: a random KEK for this process only; its secrets die with it",
}

/// The prefix of every control-plane variable.
const ENV_PREFIX: &str = "GATEHOUSE_CP_";

/// One setting, as every place names it (generated from the declaration).
#[derive(Debug)]
pub struct Setting {
    /// The TOML key (and the field of [`Config`]).
    pub key: &'static str,
    /// The environment variable.
    pub variable: String,
    /// The command-line flag without its dashes; `None` for a secret.
    pub flag: Option<String>,
    /// What it is, on one line.
    pub help: &'static str,
    /// The default, as shown.
    pub default: String,
    /// A boolean: its flag may stand alone.
    pub switch: bool,
    /// What `--help` calls its value (the key in capitals).
    pub placeholder: String,
}

/// Every setting, in declaration order.
pub fn settings() -> &'static [Setting] {
    static ALL: std::sync::LazyLock<Vec<Setting>> = std::sync::LazyLock::new(|| {
        DECLARED
            .iter()
            .zip(Config::shown_defaults())
            .map(|(&(key, help, switch, flag), default)| Setting {
                key,
                variable: format!("{ENV_PREFIX}{}", key.to_ascii_uppercase()),
                flag: flag.then(|| key.replace('_', "-")),
                help,
                default,
                switch,
                placeholder: key.to_ascii_uppercase(),
            })
            .collect()
    });
    &ALL
}

/// `--help`'s table of settings.
pub fn settings_help() -> String {
    let mut out =
        String::from("Settings (TOML file given with --config, then environment, then flags):\n");
    let width = |f: fn(&Setting) -> usize| settings().iter().map(f).max().unwrap_or(0);
    let (wk, wv) = (width(|s| s.key.len()), width(|s| s.variable.len()));
    for s in settings() {
        let flag = s
            .flag
            .as_ref()
            .map_or_else(|| "(no flag)".to_owned(), |f| format!("--{f}"));
        out.push_str(&format!(
            "  {:wk$}  {:wv$}  {} [{}; {flag}]\n",
            s.key, s.variable, s.help, s.default
        ));
    }
    out.push_str(
        "S3 credentials, region and endpoint: the standard AWS settings (AWS_REGION, \
         AWS_ENDPOINT_URL, profiles).\n\
         An unknown GATEHOUSE_CP_* variable or file key is refused, naming the nearest setting.\n\
         Log level: GATEHOUSE_LOG (tracing filter syntax) [serve: info; other commands: warn, on stderr].",
    );
    out
}

/// The known name nearest to `name`, when it is near enough to be a typo
/// (case-insensitive edit distance at most a third of the name, or 2).
fn nearest<'a>(name: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let distance = |a: &str, b: &str| {
        let a: Vec<u8> = a.bytes().map(|c| c.to_ascii_lowercase()).collect();
        let b: Vec<u8> = b.bytes().map(|c| c.to_ascii_lowercase()).collect();
        // One row of the Levenshtein table at a time.
        let mut row: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.iter().enumerate() {
            let mut diagonal = i;
            let mut left = i + 1;
            for (j, cb) in b.iter().enumerate() {
                let up = row.get(j + 1).copied().unwrap_or(usize::MAX);
                let next = (up.saturating_add(1))
                    .min(left + 1)
                    .min(diagonal + usize::from(ca != cb));
                diagonal = up;
                if let Some(cell) = row.get_mut(j + 1) {
                    *cell = next;
                }
                left = next;
            }
            if let Some(first) = row.first_mut() {
                *first = i + 1;
            }
        }
        row.last().copied().unwrap_or(0)
    };
    known
        .into_iter()
        .map(|k| (distance(name, k), k))
        .min()
        .filter(|(d, k)| *d <= (k.len() / 3).max(2))
        .map(|(_, k)| k)
}

/// Every setting as a command-line flag (`--db PATH`,
/// `--auto-publish[=false]`), generated from the declarations: what was
/// given, by key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SettingFlags(pub Vec<(&'static str, String)>);

impl clap::FromArgMatches for SettingFlags {
    fn from_arg_matches(m: &clap::ArgMatches) -> Result<Self, clap::Error> {
        Ok(SettingFlags(
            settings()
                .iter()
                .filter(|s| s.flag.is_some())
                .filter_map(|s| m.get_one::<String>(s.key).map(|v| (s.key, v.clone())))
                .collect(),
        ))
    }

    fn update_from_arg_matches(&mut self, m: &clap::ArgMatches) -> Result<(), clap::Error> {
        *self = SettingFlags::from_arg_matches(m)?;
        Ok(())
    }
}

impl clap::Args for SettingFlags {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        settings().iter().fold(cmd, |cmd, s| {
            let Some(flag) = &s.flag else { return cmd };
            let arg = clap::Arg::new(s.key)
                .long(flag.as_str())
                .global(true)
                .help(s.help)
                .value_name(s.placeholder.as_str());
            cmd.arg(if s.switch {
                arg.num_args(0..=1)
                    .require_equals(true)
                    .default_missing_value("true")
            } else {
                arg
            })
        })
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        SettingFlags::augment_args(cmd)
    }
}

/// Why configuration could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this configuration.
    #[error("{path}: {message}")]
    Toml {
        /// The file.
        path: PathBuf,
        /// Parser message (names the line).
        message: String,
    },
    /// An environment variable has a bad value.
    #[error("{name}: {message}")]
    Env {
        /// The variable.
        name: String,
        /// Why.
        message: String,
    },
    /// A command-line flag has a bad value.
    #[error("{flag}: {message}")]
    Flag {
        /// The flag.
        flag: String,
        /// Why.
        message: String,
    },
    /// No key-encryption key, or an unusable one.
    #[error("{0}")]
    Kek(String),
}

/// What the control plane says when it has no key-encryption key.
pub const NO_KEK: &str = "no key-encryption key: set GATEHOUSE_CP_KEK=ID:BASE64 or \
GATEHOUSE_CP_KEK_FILE=PATH (kek / kek_file in the configuration file; the key is 32 bytes in \
base64, `openssl rand -base64 32`), or, for a throwaway development database, start with \
--dev-ephemeral-kek (GATEHOUSE_CP_DEV_EPHEMERAL_KEK=1)";

/// A TOML error as the line and column it is at and what is wrong —
/// never the source line `toml` quotes, nor a value its message quotes:
/// a malformed `kek = ID:KEY` line (unquoted, in a list) would otherwise
/// print the key-encryption key.
fn toml_failure(text: &str, e: &toml::de::Error) -> String {
    let mut what = String::new();
    let mut quoted = false;
    for c in e.message().chars() {
        match c {
            '"' => {
                quoted = !quoted;
                if quoted {
                    what.push_str("\"...\"");
                }
            }
            _ if quoted => {}
            '\n' => what.push(' '),
            c => what.push(c),
        }
    }
    match e.span() {
        Some(span) => {
            let before = text.get(..span.start).unwrap_or(text);
            let line = before.matches('\n').count() + 1;
            let column = before
                .rsplit_once('\n')
                .map_or(before, |(_, l)| l)
                .chars()
                .count()
                + 1;
            format!("line {line}, column {column}: {}", what.trim())
        }
        None => what.trim().to_owned(),
    }
}

/// What the control plane says when `kek rewrap` or `copy` is asked for
/// with the development flag's throwaway KEK.
pub const EPHEMERAL_REFUSED: &str = "--dev-ephemeral-kek is for a fresh development database \
only: kek rewrap and copy would seal a database's secrets under a key that dies with this \
process; set the database's key-encryption key (GATEHOUSE_CP_KEK or GATEHOUSE_CP_KEK_FILE)";

impl Config {
    /// Defaults, overridden by `file` (if given), then by `GATEHOUSE_CP_*`
    /// variables in `env`.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut config = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                let toml_error = |message: String| ConfigError::Toml {
                    path: path.to_owned(),
                    message,
                };
                // Unknown keys first, to name the nearest known one; then
                // empty values, refused as an empty variable is.
                let table: toml::Table =
                    toml::from_str(&text).map_err(|e| toml_error(toml_failure(&text, &e)))?;
                for (key, value) in &table {
                    let is_blank =
                        |v: &toml::Value| v.as_str().is_some_and(|s| s.trim().is_empty());
                    let empty_item = value.as_array().is_some_and(|a| a.iter().any(is_blank));
                    if settings().iter().any(|s| s.key == key) && (is_blank(value) || empty_item) {
                        return Err(toml_error(format!(
                            "{key}: empty value (or list item); drop the key for the default"
                        )));
                    }
                    if !settings().iter().any(|s| s.key == key) {
                        return Err(toml_error(
                            match nearest(key, settings().iter().map(|s| s.key)) {
                                Some(k) => format!("unknown setting {key:?}; did you mean {k:?}?"),
                                None => format!("unknown setting {key:?} (see --help)"),
                            },
                        ));
                    }
                }
                toml::from_str(&text).map_err(|e| toml_error(toml_failure(&text, &e)))?
            }
            None => Config::default(),
        };
        for (name, value) in env {
            config.apply_env(&name, &value)?;
        }
        config.check()?;
        Ok(config)
    }

    /// Values no setting may take, whichever layer gave them.
    fn check(&self) -> Result<(), ConfigError> {
        if self.head_resign_interval_seconds == 0 {
            return Err(ConfigError::Env {
                name: "head_resign_interval_seconds".into(),
                message: "must be at least 1 (seconds)".into(),
            });
        }
        Ok(())
    }

    fn apply_env(&mut self, name: &str, value: &str) -> Result<(), ConfigError> {
        // Other programs' settings are not ours to refuse.
        if !name.starts_with(ENV_PREFIX) {
            return Ok(());
        }
        let bad = |message: String| ConfigError::Env {
            name: name.to_owned(),
            message,
        };
        match settings().iter().find(|s| s.variable == name) {
            Some(s) => self.set(s.key, value).unwrap_or(Ok(())).map_err(bad),
            None => Err(bad(
                match nearest(name, settings().iter().map(|s| s.variable.as_str())) {
                    Some(v) => format!("not a control-plane setting; did you mean {v}?"),
                    None => "not a control-plane setting (see --help)".into(),
                },
            )),
        }
    }

    /// Apply the command line's flags (the last word on every setting).
    pub fn apply_flags(&mut self, flags: &SettingFlags) -> Result<(), ConfigError> {
        for (key, value) in &flags.0 {
            if let Some(Err(message)) = self.set(key, value) {
                return Err(ConfigError::Flag {
                    flag: format!("--{}", key.replace('_', "-")),
                    message,
                });
            }
        }
        self.check()
    }

    /// The repository `db` names.
    pub fn database(&self) -> DomainResult<Database> {
        let db = self.db.as_str();
        if db.starts_with("postgres://") || db.starts_with("postgresql://") {
            return Ok(Database::Postgres(db.to_owned()));
        }
        if let Some((scheme, _)) = db.split_once("://") {
            return Err(Error::BadRequest(format!(
                "db: unknown scheme {scheme:?} (a path, sqlite:PATH or postgres://...)"
            )));
        }
        Ok(Database::Sqlite(PathBuf::from(
            db.strip_prefix("sqlite:").unwrap_or(db),
        )))
    }

    /// The key-encryption keys `kek` or `kek_file` give; with neither, a
    /// random one when `dev_ephemeral_kek` is on (the caller says so
    /// loudly: [`crate::secrets::EPHEMERAL_WARNING`]), else refused with
    /// [`NO_KEK`]. Both, or a KEK and the development flag, are refused.
    pub fn keyring(&self) -> Result<Arc<Keyring>, ConfigError> {
        let text = match (&self.kek, &self.kek_file) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::Kek(
                    "kek and kek_file (GATEHOUSE_CP_KEK, GATEHOUSE_CP_KEK_FILE): set one".into(),
                ));
            }
            (Some(SecretSetting(text)), None) => {
                Some(("kek (GATEHOUSE_CP_KEK)".to_owned(), text.clone()))
            }
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| ConfigError::Kek(format!("kek_file {}: {e}", path.display())))?;
                Some((format!("kek_file {}", path.display()), text))
            }
            (None, None) => None,
        };
        match (text, self.dev_ephemeral_kek) {
            (Some(_), true) => Err(ConfigError::Kek(
                "a key-encryption key and --dev-ephemeral-kek: choose one".into(),
            )),
            (Some((what, text)), false) => Keyring::parse(&text)
                .map(Arc::new)
                .map_err(|e| ConfigError::Kek(format!("{what}: {e}"))),
            (None, true) => Keyring::ephemeral()
                .map(Arc::new)
                .map_err(|e| ConfigError::Kek(e.to_string())),
            (None, false) => Err(ConfigError::Kek(NO_KEK.into())),
        }
    }

    /// Open the repository `db` names, its schema brought up to date.
    pub async fn repository(&self, keyring: Arc<Keyring>) -> DomainResult<Arc<dyn Repository>> {
        open_repository(&self.db, keyring).await
    }

    /// The service these settings describe, its backends opened.
    pub async fn service(&self, keyring: Arc<Keyring>) -> DomainResult<Service> {
        let repo = self.repository(keyring).await?;
        let connect = object_store::Connect {
            s3_force_path_style: self.s3_force_path_style,
            ..object_store::Connect::default()
        };
        let store = object_store::open(&self.store, &connect)
            .await
            .map_err(|e| Error::Store(format!("{}: {e}", self.store)))?;
        let identity = Arc::new(LocalIdentity::new(
            repo.clone(),
            &self.issuer_base,
            self.token_ttl_seconds,
        ));
        // Cognito realms use the standard AWS settings (credentials,
        // region, `AWS_ENDPOINT_URL`), read at the first use.
        let cognito = Arc::new(CognitoIdentity::new(repo.clone(), None));
        Ok(Service::new(
            repo,
            Identities::new(identity).with(cognito),
            store,
            Arc::new(SystemClock),
            self.settings(),
        ))
    }

    /// The settings the service follows.
    pub fn settings(&self) -> Settings {
        Settings {
            admin_realm: self.admin_realm.clone(),
            auto_publish: self.auto_publish,
            compact_after_deltas: self.compact_after_deltas,
            store_prefix: self.store_prefix.clone(),
            head_resign_interval_seconds: self.head_resign_interval_seconds,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_then_environment_override_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cp.toml");
        std::fs::write(&file, "db = \"/var/lib/gh.db\"\nadmin_realm = \"ops\"\n").unwrap();
        let c = Config::load(
            Some(&file),
            [
                ("GATEHOUSE_CP_ADMIN_REALM".to_owned(), "root".to_owned()),
                ("GATEHOUSE_LISTEN".to_owned(), "not ours".to_owned()),
            ],
        )
        .unwrap();
        assert_eq!(c.db, "/var/lib/gh.db");
        let unknown = Config::load(None, [("GATEHOUSE_CP_DBB".to_owned(), "x".to_owned())]);
        assert!(matches!(unknown, Err(ConfigError::Env { .. })));
        assert_eq!(c.admin_realm, "root");
        assert_eq!(c.listen, Config::default().listen);
        let bad = Config::load(None, [("GATEHOUSE_CP_LISTEN".to_owned(), "x".to_owned())]);
        assert!(matches!(bad, Err(ConfigError::Env { .. })));
        std::fs::write(&file, "dbb = 1\n").unwrap();
        assert!(matches!(
            Config::load(Some(&file), []),
            Err(ConfigError::Toml { .. })
        ));
        // An empty value in the file is refused as an empty variable is.
        for text in ["db = \"\"\n", "issuer_base = \"  \"\n", "store = \"\"\n"] {
            std::fs::write(&file, text).unwrap();
            let e = Config::load(Some(&file), []).expect_err(text).to_string();
            assert!(e.contains(text.split(' ').next().unwrap()), "{text}: {e}");
        }
    }

    /// The setting flags of a command line (as the binary's `Cli`
    /// flattens them).
    fn flags<I: Into<std::ffi::OsString> + Clone>(
        args: impl IntoIterator<Item = I>,
    ) -> Result<SettingFlags, clap::Error> {
        use clap::{Args as _, FromArgMatches as _};
        let matches = SettingFlags::augment_args(clap::Command::new("control-plane"))
            .try_get_matches_from(args)?;
        SettingFlags::from_arg_matches(&matches)
    }

    #[test]
    fn every_declared_setting_is_a_toml_key_a_variable_and_a_flag_alike() {
        let candidates = [
            ("true", "true"),
            ("false", "false"),
            ("7", "7"),
            ("127.0.0.1:1", "\"127.0.0.1:1\""),
            ("x", "\"x\""),
        ];
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cp.toml");
        assert_eq!(settings().len(), DECLARED.len());
        for s in settings() {
            let from_env = |text: &str| Config::load(None, [(s.variable.clone(), text.to_owned())]);
            let from_toml = |toml: &str| {
                std::fs::write(&file, format!("{} = {toml}\n", s.key)).unwrap();
                Config::load(Some(&file), [])
            };
            let (text, via_env, via_toml) = candidates
                .iter()
                .find_map(|(text, toml)| match (from_env(text), from_toml(toml)) {
                    (Ok(e), Ok(t)) if e != Config::default() => Some((*text, e, t)),
                    _ => None,
                })
                .unwrap_or_else(|| panic!("{}: no sample value sets it", s.key));
            assert_eq!(via_env, via_toml, "{}", s.key);
            if let Some(flag) = &s.flag {
                let given =
                    flags(["control-plane".to_owned(), format!("--{flag}={text}")]).unwrap();
                let mut via_flag = Config::default();
                via_flag.apply_flags(&given).unwrap();
                assert_eq!(via_flag, via_env, "{}", s.key);
            }
        }
        // Flags are the last word, over the environment.
        let given = flags(["control-plane", "--db", "flag.db"]).unwrap();
        let mut c =
            Config::load(None, [("GATEHOUSE_CP_DB".to_owned(), "env.db".to_owned())]).unwrap();
        c.apply_flags(&given).unwrap();
        assert_eq!(c.db, "flag.db");
        // A secret has no flag.
        assert!(flags(["control-plane", "--kek=k1:x"]).is_err());
    }

    #[test]
    fn an_unknown_variable_or_key_is_refused_naming_the_nearest_setting() {
        let e = Config::load(None, [("GATEHOUSE_CP_KEKFILE".to_owned(), "x".to_owned())])
            .unwrap_err()
            .to_string();
        assert!(e.contains("did you mean GATEHOUSE_CP_KEK_FILE?"), "{e}");
        let e = Config::load(
            None,
            [(
                "GATEHOUSE_CP_COMPACT_AFTER_DELTA".to_owned(),
                "1".to_owned(),
            )],
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("did you mean GATEHOUSE_CP_COMPACT_AFTER_DELTAS?"),
            "{e}"
        );
        let e = Config::load(
            None,
            [("GATEHOUSE_CP_NOTHING_LIKE_IT".to_owned(), "1".to_owned())],
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("not a control-plane setting") && !e.contains("did you mean"),
            "{e}"
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cp.toml");
        std::fs::write(&file, "kek_flie = \"/etc/kek\"\n").unwrap();
        let e = Config::load(Some(&file), []).unwrap_err().to_string();
        assert!(
            e.contains("unknown setting \"kek_flie\"; did you mean \"kek_file\"?"),
            "{e}"
        );
        assert_eq!(
            nearest("lisen", settings().iter().map(|s| s.key)),
            Some("listen")
        );
        assert_eq!(nearest("zzzzzz", settings().iter().map(|s| s.key)), None);
    }

    #[test]
    fn a_kek_is_required_from_one_place_and_never_printed() {
        const KEK: &str = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
        let env = |pairs: &[(&str, &str)]| {
            Config::load(
                None,
                pairs
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect::<Vec<_>>(),
            )
            .unwrap()
        };
        // None: refused, naming the settings and the development flag.
        let e = Config::default().keyring().unwrap_err().to_string();
        assert!(
            e.contains("GATEHOUSE_CP_KEK=")
                && e.contains("GATEHOUSE_CP_KEK_FILE")
                && e.contains("--dev-ephemeral-kek"),
            "{e}"
        );
        let c = env(&[("GATEHOUSE_CP_KEK", KEK)]);
        assert_eq!(c.keyring().unwrap().current_id(), "k1");
        assert!(!format!("{c:?}").contains("AAECAwQF"), "{c:?}");
        // From a file, the current key first.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("kek");
        std::fs::write(
            &file,
            format!("k2:ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=\n{KEK}\n"),
        )
        .unwrap();
        let c = env(&[("GATEHOUSE_CP_KEK_FILE", file.to_str().unwrap())]);
        assert_eq!(c.keyring().unwrap().current_id(), "k2");
        let toml = dir.path().join("cp.toml");
        std::fs::write(&toml, format!("kek_file = {:?}\n", file.to_str().unwrap())).unwrap();
        let c = Config::load(Some(&toml), []).unwrap();
        assert_eq!(c.keyring().unwrap().current_id(), "k2");
        // Two sources, or a key and the development flag: refused.
        let both = env(&[
            ("GATEHOUSE_CP_KEK", KEK),
            ("GATEHOUSE_CP_KEK_FILE", file.to_str().unwrap()),
        ]);
        assert!(matches!(both.keyring(), Err(ConfigError::Kek(_))));
        let dev = env(&[
            ("GATEHOUSE_CP_KEK", KEK),
            ("GATEHOUSE_CP_DEV_EPHEMERAL_KEK", "1"),
        ]);
        assert!(matches!(dev.keyring(), Err(ConfigError::Kek(_))));
        // A bad key is refused without echoing it.
        let bad = env(&[("GATEHOUSE_CP_KEK", "k1:c2VjcmV0")]);
        let e = bad.keyring().unwrap_err().to_string();
        assert!(e.contains("32 bytes") && !e.contains("c2VjcmV0"), "{e}");
        // The development flag: a throwaway key.
        let dev = env(&[("GATEHOUSE_CP_DEV_EPHEMERAL_KEK", "true")]);
        assert!(dev.keyring().unwrap().is_ephemeral());
    }

    #[test]
    fn the_db_setting_names_sqlite_or_postgres_and_nothing_else() {
        let db = |v: &str| {
            Config {
                db: v.into(),
                ..Config::default()
            }
            .database()
        };
        assert_eq!(
            db("/var/lib/gh.db").unwrap(),
            Database::Sqlite("/var/lib/gh.db".into())
        );
        assert_eq!(
            db("sqlite:gh.db").unwrap(),
            Database::Sqlite("gh.db".into())
        );
        assert_eq!(
            db("postgres://gh@db.internal/cp").unwrap(),
            Database::Postgres("postgres://gh@db.internal/cp".into())
        );
        assert!(matches!(db("mysql://x/y"), Err(Error::BadRequest(_))));
    }
}
