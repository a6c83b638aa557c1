//! Configuration: defaults, then a TOML file, then `GATEHOUSE_CP_*`
//! environment variables, then command-line flags (each overriding the
//! last). The `CP_` infix keeps the control plane's variables apart from an
//! edge host's on the same machine (both read `GATEHOUSE_*`).

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Everything the control plane can be told.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The SQLite database file (`GATEHOUSE_CP_DB`).
    pub db: PathBuf,
    /// The object store bundles are published to: a local directory
    /// (`GATEHOUSE_CP_STORE`).
    pub store: PathBuf,
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
}

impl Default for Config {
    fn default() -> Self {
        Config {
            db: PathBuf::from("gatehouse.db"),
            store: PathBuf::from("gatehouse-store"),
            store_prefix: String::new(),
            listen: SocketAddr::from(([127, 0, 0, 1], 8900)),
            issuer_base: "http://127.0.0.1:8900".into(),
            admin_realm: "admin".into(),
            auto_publish: true,
            compact_after_deltas: 100,
            token_ttl_seconds: 3600,
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
}

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
            "GATEHOUSE_CP_DB" => self.db = PathBuf::from(value),
            "GATEHOUSE_CP_STORE" => self.store = PathBuf::from(value),
            "GATEHOUSE_CP_STORE_PREFIX" => self.store_prefix = value.to_owned(),
            "GATEHOUSE_CP_LISTEN" => self.listen = num(value).map_err(bad)?,
            "GATEHOUSE_CP_ISSUER_BASE" => self.issuer_base = value.to_owned(),
            "GATEHOUSE_CP_ADMIN_REALM" => self.admin_realm = value.to_owned(),
            "GATEHOUSE_CP_AUTO_PUBLISH" => {
                self.auto_publish = match value {
                    "1" | "true" | "yes" => true,
                    "0" | "false" | "no" | "" => false,
                    other => return Err(bad(format!("{other:?} is not a boolean"))),
                }
            }
            "GATEHOUSE_CP_COMPACT_AFTER_DELTAS" => {
                self.compact_after_deltas = num(value).map_err(bad)?;
            }
            "GATEHOUSE_CP_TOKEN_TTL_SECONDS" => {
                self.token_ttl_seconds = num(value).map_err(bad)?;
            }
            // Other programs' settings are not ours to refuse.
            _ => {}
        }
        Ok(())
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
        assert_eq!(c.db, PathBuf::from("/var/lib/gh.db"));
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
}
