//! Configuration: defaults, then a TOML file, then `GATEHOUSE_CP_*`
//! environment variables, then command-line flags (each overriding the
//! last). The `CP_` infix keeps the control plane's variables apart from an
//! edge host's on the same machine (both read `GATEHOUSE_*`). An unknown
//! key in the file or an unknown `GATEHOUSE_CP_*` variable is refused.
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

/// Everything the control plane can be told.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The repository (`GATEHOUSE_CP_DB`): a SQLite file path,
    /// `sqlite:PATH`, or `postgres://user:password@host:port/database`
    /// (`?sslmode=require&sslrootcert=CA.pem` for TLS to a private CA).
    pub db: String,
    /// The object store bundles are published to (`GATEHOUSE_CP_STORE`): a
    /// local directory, or `s3://bucket[/prefix]` (credentials, region and
    /// endpoint from the standard AWS settings).
    pub store: String,
    /// Path-style S3 addressing, for S3-compatible services
    /// (`GATEHOUSE_CP_S3_FORCE_PATH_STYLE`).
    pub s3_force_path_style: bool,
    /// Key prefix inside the store (`GATEHOUSE_CP_STORE_PREFIX`).
    pub store_prefix: String,
    /// Address the admin API listens on (`GATEHOUSE_CP_LISTEN`).
    pub listen: SocketAddr,
    /// Public base URL of this service; realm issuers are
    /// `<issuer_base>/realms/<realm>` (`GATEHOUSE_CP_ISSUER_BASE`).
    pub issuer_base: String,
    /// The realm whose users administer the service and whose Cedar
    /// policies authorize every admin call (`GATEHOUSE_CP_ADMIN_REALM`).
    pub admin_realm: String,
    /// Publish every change as it is committed (`GATEHOUSE_CP_AUTO_PUBLISH`).
    pub auto_publish: bool,
    /// Compact a realm into a new snapshot after this many deltas since the
    /// last one (`GATEHOUSE_CP_COMPACT_AFTER_DELTAS`); 0 never.
    pub compact_after_deltas: u64,
    /// Lifetime of minted ID and access tokens, seconds (`GATEHOUSE_CP_TOKEN_TTL_SECONDS`).
    pub token_ttl_seconds: i64,
    /// The key-encryption keys secrets at rest are sealed under
    /// (`GATEHOUSE_CP_KEK`): `ID:KEY` pairs, KEY 32 bytes in standard
    /// base64, separated by commas; the first seals, the others (retired)
    /// only open. Prefer `kek_file` outside development.
    pub kek: Option<SecretSetting>,
    /// A file holding the `kek` value, one `ID:KEY` a line, the current
    /// one first (`GATEHOUSE_CP_KEK_FILE`).
    pub kek_file: Option<PathBuf>,
    /// Development only: seal secrets under a random key that dies with
    /// the process (`GATEHOUSE_CP_DEV_EPHEMERAL_KEK`, `--dev-ephemeral-kek`).
    pub dev_ephemeral_kek: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            db: "gatehouse.db".into(),
            store: "gatehouse-store".into(),
            s3_force_path_style: false,
            store_prefix: String::new(),
            listen: SocketAddr::from(([127, 0, 0, 1], 8900)),
            issuer_base: "http://127.0.0.1:8900".into(),
            admin_realm: "admin".into(),
            auto_publish: true,
            compact_after_deltas: 100,
            token_ttl_seconds: 3600,
            kek: None,
            kek_file: None,
            dev_ephemeral_kek: false,
        }
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
    /// No key-encryption key, or an unusable one.
    #[error("{0}")]
    Kek(String),
}

/// What the control plane says when it has no key-encryption key.
pub const NO_KEK: &str = "no key-encryption key: set GATEHOUSE_CP_KEK=ID:BASE64 or \
GATEHOUSE_CP_KEK_FILE=PATH (kek / kek_file in the configuration file; the key is 32 bytes in \
base64, `openssl rand -base64 32`), or, for a throwaway development database, start with \
--dev-ephemeral-kek (GATEHOUSE_CP_DEV_EPHEMERAL_KEK=1)";

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
                toml::from_str(&text).map_err(|e| ConfigError::Toml {
                    path: path.to_owned(),
                    message: e.to_string().replace('\n', " "),
                })?
            }
            None => Config::default(),
        };
        for (name, value) in env {
            config.apply_env(&name, &value)?;
        }
        Ok(config)
    }

    fn apply_env(&mut self, name: &str, value: &str) -> Result<(), ConfigError> {
        let bad = |m: String| ConfigError::Env {
            name: name.to_owned(),
            message: m,
        };
        fn num<T: std::str::FromStr>(v: &str) -> Result<T, String>
        where
            T::Err: std::fmt::Display,
        {
            v.parse().map_err(|e: T::Err| e.to_string())
        }
        match name {
            "GATEHOUSE_CP_DB" => self.db = value.to_owned(),
            "GATEHOUSE_CP_STORE" => self.store = value.to_owned(),
            "GATEHOUSE_CP_S3_FORCE_PATH_STYLE" => self.s3_force_path_style = boolean(name, value)?,
            "GATEHOUSE_CP_STORE_PREFIX" => self.store_prefix = value.to_owned(),
            "GATEHOUSE_CP_LISTEN" => self.listen = num(value).map_err(bad)?,
            "GATEHOUSE_CP_ISSUER_BASE" => self.issuer_base = value.to_owned(),
            "GATEHOUSE_CP_ADMIN_REALM" => self.admin_realm = value.to_owned(),
            "GATEHOUSE_CP_AUTO_PUBLISH" => self.auto_publish = boolean(name, value)?,
            "GATEHOUSE_CP_COMPACT_AFTER_DELTAS" => {
                self.compact_after_deltas = num(value).map_err(bad)?;
            }
            "GATEHOUSE_CP_TOKEN_TTL_SECONDS" => {
                self.token_ttl_seconds = num(value).map_err(bad)?;
            }
            "GATEHOUSE_CP_KEK" => self.kek = Some(SecretSetting::new(value)),
            "GATEHOUSE_CP_KEK_FILE" => self.kek_file = Some(PathBuf::from(value)),
            "GATEHOUSE_CP_DEV_EPHEMERAL_KEK" => self.dev_ephemeral_kek = boolean(name, value)?,
            other if other.starts_with("GATEHOUSE_CP_") => {
                return Err(bad("is not a control-plane setting (see --help)".into()));
            }
            // Other programs' settings are not ours to refuse.
            _ => {}
        }
        Ok(())
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
        Ok(Service::new(
            repo,
            Identities::new(identity),
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
        }
    }
}

fn boolean(name: &str, value: &str) -> Result<bool, ConfigError> {
    match value {
        "1" | "true" | "yes" => Ok(true),
        "0" | "false" | "no" | "" => Ok(false),
        other => Err(ConfigError::Env {
            name: name.to_owned(),
            message: format!("{other:?} is not a boolean"),
        }),
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
