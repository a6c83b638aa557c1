//! Configuration: defaults, then a TOML file, then `GATEHOUSE_*`
//! environment variables, then command-line flags (each overriding the last).

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Everything the host can be told.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address to listen on (`GATEHOUSE_LISTEN`).
    pub listen: SocketAddr,
    /// Bundle files (`.tar`/`.tar.gz`) or source directories, one realm
    /// each (`GATEHOUSE_BUNDLES`, comma-separated). Empty: the embedded
    /// default built from `policies/`.
    pub bundles: Vec<PathBuf>,
    /// Stores polled for bundles, one realm each (`GATEHOUSE_SOURCES`,
    /// comma-separated): `s3://bucket/prefix/realm`, `https://host/path/realm`,
    /// or a local store directory `/path/realm` (holding `HEAD`). The last
    /// path segment names the realm.
    pub sources: Vec<String>,
    /// Where the last known good bundles of store-sourced realms are kept,
    /// to serve at boot while the store is down (`GATEHOUSE_STATE_DIR`).
    /// Unset: nothing is kept.
    pub state_dir: Option<PathBuf>,
    /// Path-style S3 addressing, for S3-compatible services
    /// (`GATEHOUSE_S3_FORCE_PATH_STYLE`). Region, endpoint and credentials
    /// come from the standard AWS settings (`AWS_REGION`, `AWS_ENDPOINT_URL`,
    /// profiles, instance roles).
    pub s3_force_path_style: bool,
    /// Time limit of one request to a store, milliseconds (`GATEHOUSE_SOURCE_TIMEOUT_MS`).
    pub source_timeout_ms: u64,
    /// Largest bundle archive fetched or loaded, bytes (`GATEHOUSE_MAX_BUNDLE_BYTES`).
    pub max_bundle_bytes: u64,
    /// Trusted bundle-signing public keys, SPKI PEM, each bound to the
    /// realm whose bundles it may sign: `REALM=PATH`, listed once per realm
    /// (`GATEHOUSE_TRUST_KEYS`, comma-separated). A bundle signed by a key
    /// not bound to its realm is refused.
    pub trust_keys: Vec<String>,
    /// Accept unsigned bundles and source directories (`GATEHOUSE_DEV`).
    /// Never in production; the host says so loudly at start.
    pub dev: bool,
    /// Beyond this age (seconds since the bundle was built) decisions deny
    /// with `stale_bundle` and `/readyz` fails (`GATEHOUSE_MAX_STALENESS_SECONDS`).
    /// Unset: no limit.
    pub max_staleness_seconds: Option<u64>,
    /// Largest request body accepted, bytes (`GATEHOUSE_MAX_BODY_BYTES`).
    pub max_body_bytes: usize,
    /// Largest request head (request line and headers), bytes; larger
    /// heads get 431 (`GATEHOUSE_MAX_HEADER_BYTES`; at least 8192).
    pub max_header_bytes: usize,
    /// Most header fields in one request; more get 431 (`GATEHOUSE_MAX_HEADERS`).
    pub max_headers: usize,
    /// Time a client has to send its request head, milliseconds
    /// (`GATEHOUSE_HEADER_READ_TIMEOUT_MS`); slow clients are disconnected.
    pub header_read_timeout_ms: u64,
    /// Per-request time limit, milliseconds (`GATEHOUSE_REQUEST_TIMEOUT_MS`).
    pub request_timeout_ms: u64,
    /// Requests served at once; more wait (`GATEHOUSE_MAX_CONCURRENCY`).
    pub max_concurrency: usize,
    /// How often bundle files are checked for a new version, seconds; 0
    /// turns it off (`GATEHOUSE_RELOAD_INTERVAL_SECONDS`).
    pub reload_interval_seconds: u64,
    /// Verified tokens remembered (signature checks skipped until `exp`;
    /// user state always re-checked); 0 disables (`GATEHOUSE_TOKEN_CACHE_CAPACITY`).
    pub token_cache_capacity: usize,
    /// The bearer secrets that services present to call `/v1/introspect`
    /// and `/v1/users/{id}`, each bound to one realm: `REALM:HEX`, HEX the
    /// SHA-256 of the secret (the secrets themselves are never configured
    /// or logged); a secret for several realms is listed once per realm
    /// (`GATEHOUSE_SERVICE_TOKEN_SHA256`, comma-separated). Empty: those
    /// endpoints refuse every caller.
    pub service_token_sha256: Vec<String>,
    /// The reverse proxy in front of `/v1/forward-auth`, which decides the
    /// headers the original request is read from (`GATEHOUSE_FORWARD_AUTH_PROXY`:
    /// `nginx`, `traefik` or `envoy`). Unset: forward-auth answers 503.
    pub forward_auth_proxy: Option<ForwardAuthProxy>,
    /// How many proxies append to `X-Forwarded-For` on the way to this
    /// host; the client address is the entry that many from the right
    /// (`GATEHOUSE_FORWARD_AUTH_TRUSTED_HOPS`). 0: never read it.
    pub forward_auth_trusted_hops: usize,
    /// Realms whose decisions for a principal named by id say why a user
    /// was denied before any policy ran (`unknown_user`,
    /// `user_state:Suspended`, ...) to any caller
    /// (`GATEHOUSE_USER_STATE_DETAIL`, comma-separated). Elsewhere only a
    /// caller presenting the realm's service credential learns it; others
    /// get `no_permit`, so an unauthenticated caller cannot probe which
    /// users exist or are suspended. Token requests always say it (the
    /// caller holds that user's own token).
    pub user_state_detail: Vec<String>,
    /// This PDP's AuthZEN identifier, the base URL PEPs reach it at
    /// (`GATEHOUSE_AUTHZEN_PDP_URL`); the metadata document
    /// (`/.well-known/authzen-configuration`) names its endpoints under it.
    /// Unset: `http://` and the listen address.
    pub authzen_pdp_url: Option<String>,
}

/// Which proxy sends forward-auth checks, and so which headers carry the
/// original request. Only that family is read; a check carrying another
/// is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ForwardAuthProxy {
    /// nginx `auth_request`: `X-Original-Method` and `X-Original-URI`,
    /// which the location block sets (overwriting what the client sent).
    Nginx,
    /// Traefik `forwardAuth` (`trustForwardHeader: false`):
    /// `X-Forwarded-Method` and `X-Forwarded-Uri`, which Traefik sets.
    Traefik,
    /// Envoy HTTP `ext_authz` with `path_prefix: /v1/forward-auth`: the
    /// check's own method, and its path after the prefix.
    Envoy,
}

impl std::str::FromStr for ForwardAuthProxy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "nginx" => Ok(ForwardAuthProxy::Nginx),
            "traefik" => Ok(ForwardAuthProxy::Traefik),
            "envoy" => Ok(ForwardAuthProxy::Envoy),
            other => Err(format!(
                "{other:?} is not a proxy this host knows (nginx, traefik, envoy)"
            )),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8180)),
            bundles: Vec::new(),
            sources: Vec::new(),
            state_dir: None,
            s3_force_path_style: false,
            source_timeout_ms: 10_000,
            max_bundle_bytes: 1 << 30,
            trust_keys: Vec::new(),
            dev: false,
            max_staleness_seconds: None,
            max_body_bytes: 1 << 20,
            max_header_bytes: 16 << 10,
            max_headers: 64,
            header_read_timeout_ms: 10_000,
            request_timeout_ms: 5_000,
            max_concurrency: 4_096,
            reload_interval_seconds: 5,
            token_cache_capacity: 100_000,
            service_token_sha256: Vec::new(),
            forward_auth_proxy: None,
            forward_auth_trusted_hops: 1,
            user_state_detail: Vec::new(),
            authzen_pdp_url: None,
        }
    }
}

/// Every `GATEHOUSE_*` variable this host reads.
pub const ENV: &[&str] = &[
    "GATEHOUSE_LISTEN",
    "GATEHOUSE_BUNDLES",
    "GATEHOUSE_TRUST_KEYS",
    "GATEHOUSE_DEV",
    "GATEHOUSE_SOURCES",
    "GATEHOUSE_STATE_DIR",
    "GATEHOUSE_S3_FORCE_PATH_STYLE",
    "GATEHOUSE_SOURCE_TIMEOUT_MS",
    "GATEHOUSE_MAX_BUNDLE_BYTES",
    "GATEHOUSE_MAX_STALENESS_SECONDS",
    "GATEHOUSE_MAX_BODY_BYTES",
    "GATEHOUSE_MAX_HEADER_BYTES",
    "GATEHOUSE_MAX_HEADERS",
    "GATEHOUSE_HEADER_READ_TIMEOUT_MS",
    "GATEHOUSE_REQUEST_TIMEOUT_MS",
    "GATEHOUSE_RELOAD_INTERVAL_SECONDS",
    "GATEHOUSE_SERVICE_TOKEN_SHA256",
    "GATEHOUSE_TOKEN_CACHE_CAPACITY",
    "GATEHOUSE_FORWARD_AUTH_PROXY",
    "GATEHOUSE_FORWARD_AUTH_TRUSTED_HOPS",
    "GATEHOUSE_USER_STATE_DETAIL",
    "GATEHOUSE_AUTHZEN_PDP_URL",
    "GATEHOUSE_MAX_CONCURRENCY",
    // The log filter, read by the binary.
    "GATEHOUSE_LOG",
];

/// `GATEHOUSE_*` names that belong to the other Gatehouse programs and to
/// the project's own test and benchmark tooling, by prefix or whole: not
/// this host's to refuse. Any other unknown `GATEHOUSE_*` variable is a
/// typo of one of [`ENV`] and stops the host at start.
const OTHER_PROGRAMS: &[&str] = &[
    "GATEHOUSE_CP_",
    "GATEHOUSE_TEST_",
    "GATEHOUSE_BENCH_",
    "GATEHOUSE_PDP_WASM",
    "GATEHOUSE_URL",
    "GATEHOUSE_MOTO_SERVER",
    "GATEHOUSE_NGINX",
    "GATEHOUSE_VENV",
    "GATEHOUSE_WASM_VENV",
    "GATEHOUSE_CARGO_FLAGS",
    "GATEHOUSE_WORKSPACE_CHECKED",
    "GATEHOUSE_HA_CALLS",
    "GATEHOUSE_RESIDENT_PROBE",
];

/// Edit distance (insertions, deletions, substitutions) between `a` and
/// `b`, ASCII case-insensitive.
fn distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<u8>, Vec<u8>) = (
        a.bytes().map(|c| c.to_ascii_lowercase()).collect(),
        b.bytes().map(|c| c.to_ascii_lowercase()).collect(),
    );
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (row[j] + 1)
                .min(row[j + 1] + 1)
                .min(diagonal + usize::from(ca != cb));
            diagonal = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

/// The known name nearest to `name`, when it is near enough to be a typo.
pub fn nearest<'a>(name: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    known
        .into_iter()
        .map(|k| (distance(name, k), k))
        .min()
        .filter(|(d, k)| *d <= (k.len() / 3).max(2))
        .map(|(_, k)| k)
}

/// TOML keys of [`Config`] (the variables' names without the prefix).
fn toml_keys() -> impl Iterator<Item = String> {
    ENV.iter()
        .filter(|n| **n != "GATEHOUSE_LOG")
        .map(|n| n.trim_start_matches("GATEHOUSE_").to_ascii_lowercase())
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

/// A service credential: the realm it may read, and the hex SHA-256 of
/// its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceCredential {
    /// The one realm it is for.
    pub realm: String,
    /// Lower-case hex SHA-256 of the bearer secret.
    pub sha256: String,
}

impl Config {
    /// The service credentials, parsed from `service_token_sha256`; the
    /// message names the entry that is not `REALM:HEX`.
    pub fn service_credentials(&self) -> Result<Vec<ServiceCredential>, String> {
        self.service_token_sha256
            .iter()
            .map(|entry| {
                let Some((realm, hex)) = entry.rsplit_once(':') else {
                    return Err(format!(
                        "{entry:?}: a service credential names its realm: REALM:SHA256HEX"
                    ));
                };
                let hex = hex.trim().to_ascii_lowercase();
                if realm.trim().is_empty() {
                    return Err(format!("{entry:?}: no realm before the ':'"));
                }
                if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(format!("{entry:?}: {hex:?} is not a hex SHA-256"));
                }
                Ok(ServiceCredential {
                    realm: realm.trim().to_owned(),
                    sha256: hex,
                })
            })
            .collect()
    }

    /// Whether this configuration serves the demo realm: only when no
    /// bundle and no source is configured and no setting says that bundles
    /// were meant (trust keys, a state directory). A configuration that
    /// names trust keys but lost its `--bundle`/`--source` (an empty
    /// variable, a typo in a deployment template) is refused with a message
    /// instead of falling into the demo.
    pub fn serves_demo(&self) -> Result<bool, String> {
        if !self.bundles.is_empty() || !self.sources.is_empty() {
            return Ok(false);
        }
        let meant: Vec<&str> = [
            ("trust_keys", !self.trust_keys.is_empty()),
            ("state_dir", self.state_dir.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, set)| set.then_some(name))
        .collect();
        if meant.is_empty() {
            return Ok(true);
        }
        Err(format!(
            "{} set, but no bundle or source: not serving the demo realm \
             (configure --bundle or --source, or remove {})",
            meant.join(" and "),
            meant.join(" and ")
        ))
    }

    /// The trust keys as (realm, file); the message names an entry that is
    /// not `REALM=PATH`.
    pub fn trust_key_bindings(&self) -> Result<Vec<(String, PathBuf)>, String> {
        self.trust_keys
            .iter()
            .map(|entry| match entry.split_once('=') {
                Some((realm, path)) if !realm.trim().is_empty() && !path.trim().is_empty() => {
                    Ok((realm.trim().to_owned(), PathBuf::from(path.trim())))
                }
                _ => Err(format!(
                    "trust key {entry:?}: name the realm it signs, as REALM=PATH"
                )),
            })
            .collect()
    }

    /// Defaults, overridden by `file` (if given), then by `GATEHOUSE_*` variables in `env`.
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
                toml::from_str(&text).map_err(|e| {
                    let mut message = e.to_string().replace('\n', " ");
                    // serde names the unknown key; say which one was meant.
                    if let Some(key) = message
                        .split("unknown field `")
                        .nth(1)
                        .and_then(|rest| rest.split('`').next())
                    {
                        let keys: Vec<String> = toml_keys().collect();
                        if let Some(k) = nearest(key, keys.iter().map(String::as_str)) {
                            message =
                                format!("unknown setting {key:?}; did you mean {k:?}? ({message})");
                        }
                    }
                    ConfigError::Toml {
                        path: path.to_owned(),
                        message,
                    }
                })?
            }
            None => Config::default(),
        };
        for (name, value) in env {
            config.apply_env(&name, &value)?;
        }
        if let Err(message) = config.service_credentials() {
            return Err(ConfigError::Toml {
                path: file.map(Path::to_path_buf).unwrap_or_default(),
                message: format!("service_token_sha256: {message}"),
            });
        }
        Ok(config)
    }

    fn apply_env(&mut self, name: &str, value: &str) -> Result<(), ConfigError> {
        let bad = |m: String| ConfigError::Env {
            name: name.to_owned(),
            message: m,
        };
        let list = |v: &str| -> Vec<PathBuf> {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(PathBuf::from)
                .collect()
        };
        let boolean = |v: &str| match v {
            "1" | "true" | "yes" => Ok(true),
            "0" | "false" | "no" | "" => Ok(false),
            other => Err(bad(format!("{other:?} is not a boolean"))),
        };
        match name {
            "GATEHOUSE_LISTEN" => self.listen = value.parse().map_err(|e| bad(format!("{e}")))?,
            "GATEHOUSE_BUNDLES" => self.bundles = list(value),
            "GATEHOUSE_TRUST_KEYS" => {
                self.trust_keys = list(value)
                    .into_iter()
                    .map(|p| p.to_string_lossy().into_owned())
                    .collect();
            }
            "GATEHOUSE_DEV" => self.dev = boolean(value)?,
            "GATEHOUSE_SOURCES" => {
                self.sources = list(value)
                    .into_iter()
                    .map(|p| p.to_string_lossy().into_owned())
                    .collect();
            }
            "GATEHOUSE_STATE_DIR" => {
                self.state_dir = Some(PathBuf::from(value)).filter(|p| !p.as_os_str().is_empty());
            }
            "GATEHOUSE_S3_FORCE_PATH_STYLE" => self.s3_force_path_style = boolean(value)?,
            "GATEHOUSE_SOURCE_TIMEOUT_MS" => {
                self.source_timeout_ms = value.parse().map_err(|e| bad(format!("{e}")))?;
            }
            "GATEHOUSE_MAX_BUNDLE_BYTES" => {
                self.max_bundle_bytes = value.parse().map_err(|e| bad(format!("{e}")))?;
            }
            "GATEHOUSE_MAX_STALENESS_SECONDS" => {
                self.max_staleness_seconds = Some(value.parse().map_err(|e| bad(format!("{e}")))?);
            }
            "GATEHOUSE_MAX_BODY_BYTES" => {
                self.max_body_bytes = value.parse().map_err(|e| bad(format!("{e}")))?
            }
            "GATEHOUSE_MAX_HEADER_BYTES" => {
                self.max_header_bytes = value.parse().map_err(|e| bad(format!("{e}")))?;
            }
            "GATEHOUSE_MAX_HEADERS" => {
                self.max_headers = value.parse().map_err(|e| bad(format!("{e}")))?;
            }
            "GATEHOUSE_HEADER_READ_TIMEOUT_MS" => {
                self.header_read_timeout_ms = value.parse().map_err(|e| bad(format!("{e}")))?;
            }
            "GATEHOUSE_REQUEST_TIMEOUT_MS" => {
                self.request_timeout_ms = value.parse().map_err(|e| bad(format!("{e}")))?;
            }
            "GATEHOUSE_RELOAD_INTERVAL_SECONDS" => {
                self.reload_interval_seconds = value.parse().map_err(|e| bad(format!("{e}")))?;
            }
            "GATEHOUSE_SERVICE_TOKEN_SHA256" => {
                self.service_token_sha256 = value
                    .split(',')
                    .map(|h| h.trim().to_owned())
                    .filter(|h| !h.is_empty())
                    .collect();
                self.service_credentials().map_err(bad)?;
            }
            "GATEHOUSE_TOKEN_CACHE_CAPACITY" => {
                self.token_cache_capacity = value.parse().map_err(|e| bad(format!("{e}")))?;
            }
            "GATEHOUSE_FORWARD_AUTH_PROXY" => {
                self.forward_auth_proxy = match value.trim() {
                    "" => None,
                    v => Some(v.parse().map_err(bad)?),
                };
            }
            "GATEHOUSE_FORWARD_AUTH_TRUSTED_HOPS" => {
                self.forward_auth_trusted_hops = value.parse().map_err(|e| bad(format!("{e}")))?;
            }
            "GATEHOUSE_USER_STATE_DETAIL" => {
                self.user_state_detail = list(value)
                    .into_iter()
                    .map(|p| p.to_string_lossy().into_owned())
                    .collect();
            }
            "GATEHOUSE_AUTHZEN_PDP_URL" => {
                self.authzen_pdp_url = Some(value.trim().to_owned()).filter(|v| !v.is_empty());
            }
            "GATEHOUSE_MAX_CONCURRENCY" => {
                self.max_concurrency = value.parse().map_err(|e| bad(format!("{e}")))?;
            }
            "GATEHOUSE_LOG" => {}
            other if OTHER_PROGRAMS.iter().any(|p| other.starts_with(p)) => {}
            other if other.starts_with("GATEHOUSE_") => {
                return Err(bad(match nearest(other, ENV.iter().copied()) {
                    Some(k) => format!("not a setting of the edge host; did you mean {k}?"),
                    None => "not a setting of the edge host (see edge-host --help)".into(),
                }));
            }
            // Variables of other programs altogether.
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
        let dir = std::env::temp_dir().join(format!("gh-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("edge.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:9000\"\nmax_staleness_seconds = 60\nbundles = [\"a.tar.gz\"]\n",
        )
        .unwrap();
        let c = Config::load(
            Some(&file),
            [
                ("GATEHOUSE_LISTEN".to_owned(), "127.0.0.1:9100".to_owned()),
                ("GATEHOUSE_DEV".into(), "true".into()),
            ],
        )
        .unwrap();
        assert_eq!(c.listen.port(), 9100);
        assert_eq!(c.max_staleness_seconds, Some(60));
        assert_eq!(c.bundles, [PathBuf::from("a.tar.gz")]);
        assert!(c.dev);
        assert_eq!(c.max_body_bytes, 1 << 20);
    }

    #[test]
    fn unknown_variables_and_keys_are_refused_with_the_nearest_name() {
        // The typos the review found: each would have been ignored.
        for (typo, meant) in [
            (
                "GATEHOUSE_MAX_STALENES_SECONDS",
                "GATEHOUSE_MAX_STALENESS_SECONDS",
            ),
            ("GATEHOUSE_SOURCE", "GATEHOUSE_SOURCES"),
            ("GATEHOUSE_TRUST_KEY", "GATEHOUSE_TRUST_KEYS"),
        ] {
            let e = Config::load(None, [(typo.to_owned(), "1".to_owned())]).unwrap_err();
            let e = e.to_string();
            assert!(
                e.starts_with(typo) && e.contains(&format!("did you mean {meant}?")),
                "{e}"
            );
        }
        let e = Config::load(
            None,
            [("GATEHOUSE_WHATEVER_ELSE".to_owned(), "1".to_owned())],
        )
        .unwrap_err();
        assert!(e.to_string().contains("not a setting"), "{e}");
        // The control plane's, the tooling's, and other programs' are left.
        for other in [
            "GATEHOUSE_CP_DB",
            "GATEHOUSE_TEST_POSTGRES",
            "GATEHOUSE_MOTO_SERVER",
            "PATH",
        ] {
            assert!(
                Config::load(None, [(other.to_owned(), "x".to_owned())]).is_ok(),
                "{other}"
            );
        }
        // Every name in ENV is one apply_env knows (a bad value may be
        // refused, but never as an unknown name).
        for name in ENV {
            if let Err(e) = Config::load(None, [((*name).to_owned(), "not-a-value".to_owned())]) {
                assert!(!e.to_string().contains("not a setting"), "{name}: {e}");
            }
        }
        let dir = std::env::temp_dir().join(format!("gh-config-typo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("edge.toml");
        std::fs::write(&file, "max_stalenes_seconds = 60\n").unwrap();
        let e = Config::load(Some(&file), []).unwrap_err().to_string();
        assert!(e.contains("did you mean \"max_staleness_seconds\"?"), "{e}");
    }

    #[test]
    fn bad_values_name_their_source() {
        let e = Config::load(
            None,
            [("GATEHOUSE_LISTEN".to_owned(), "nowhere".to_owned())],
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("GATEHOUSE_LISTEN:"), "{e}");
        let dir = std::env::temp_dir().join(format!("gh-config-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("edge.toml");
        // One fault per file: a wrong type, then an unknown key alone (a
        // typo of a real one), each refused and named.
        std::fs::write(&file, "listen = 3\n").unwrap();
        let e = Config::load(Some(&file), []).unwrap_err();
        assert!(matches!(e, ConfigError::Toml { .. }), "{e}");
        assert!(e.to_string().contains("listen"), "{e}");
        std::fs::write(&file, "max_stalenes_seconds = 60\n").unwrap();
        let e = Config::load(Some(&file), []).unwrap_err();
        assert!(matches!(e, ConfigError::Toml { .. }), "{e}");
        assert!(e.to_string().contains("max_stalenes_seconds"), "{e}");
        std::fs::write(&file, "forward_auth_proxy = \"apache\"\n").unwrap();
        let e = Config::load(Some(&file), []).unwrap_err();
        assert!(e.to_string().contains("apache"), "{e}");
        let e = Config::load(
            None,
            [(
                "GATEHOUSE_FORWARD_AUTH_PROXY".to_owned(),
                "apache".to_owned(),
            )],
        )
        .unwrap_err();
        assert!(
            e.to_string().starts_with("GATEHOUSE_FORWARD_AUTH_PROXY:"),
            "{e}"
        );
        let c = Config::load(
            None,
            [
                (
                    "GATEHOUSE_FORWARD_AUTH_PROXY".to_owned(),
                    "envoy".to_owned(),
                ),
                (
                    "GATEHOUSE_FORWARD_AUTH_TRUSTED_HOPS".to_owned(),
                    "2".to_owned(),
                ),
            ],
        )
        .unwrap();
        assert_eq!(
            (c.forward_auth_proxy, c.forward_auth_trusted_hops),
            (Some(ForwardAuthProxy::Envoy), 2)
        );
    }
}
