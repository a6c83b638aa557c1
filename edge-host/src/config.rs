//! Configuration: defaults, then a TOML file, then `GATEHOUSE_*`
//! environment variables, then command-line flags (each overriding the last).
//!
//! Every setting is declared once, in the `settings!` list below: its
//! name (the TOML key; `GATEHOUSE_` and the name in capitals is its
//! variable, `--` and the name with dashes its flag unless `#[flag]` names
//! another), its type (which says how a variable or a flag is read: see
//! [`Value`]), its default and its documentation (the field's doc and the
//! flag's help; `#[meta]` names the flag's argument) and what the demo
//! realm allows of it (`#[demo = ...]`, see [`InDemo`]). [`Config`], its
//! `Default`, [`SETTINGS`], the variables' reader and the flags
//! ([`Config::command`]) are all generated from that one list, so a
//! setting cannot have a key without a variable or a flag, and
//! `every_setting_has_a_flag_a_variable_a_key_and_help` checks each.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// How a setting's text becomes its value: from a `GATEHOUSE_*` variable
/// (lists comma-separated, an empty one the empty list; switches
/// `1`/`true`/`yes` or `0`/`false`/`no`; an empty value is refused for
/// every setting but a list, never read as "unset" or "off": a deployment
/// template whose substitution came out empty must not quietly drop a
/// staleness limit) or from its flag (repeated for a list, no argument
/// for a switch). TOML values are read by serde.
pub trait Value: Sized {
    /// How the flag takes its argument.
    const FLAG: FlagKind;
    /// The flag's argument as help names it.
    const META: &'static str;
    /// The value of a variable.
    fn from_env(text: &str) -> Result<Self, String>;
    /// The value of the flag's arguments, one per occurrence (none for a switch).
    fn from_flag(values: &[String]) -> Result<Self, String>;
    /// The value as help shows a default; `None` when there is nothing to
    /// show (an empty list, an unset option, a switch that is off).
    fn show(&self) -> Option<String>;
}

/// How a flag takes its argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagKind {
    /// `--flag VALUE`, once.
    One,
    /// `--flag VALUE`, repeatable: each occurrence one item of the list.
    Many,
    /// `--flag`, no argument: turns the setting on.
    Switch,
}

/// A type a setting holds directly or in an `Option` or a `Vec`.
trait Scalar: Sized {
    const META: &'static str;
    fn parse(text: &str) -> Result<Self, String>;
    fn show(&self) -> String;
}

macro_rules! scalar {
    ($($ty:ty => $meta:literal),* $(,)?) => {$(
        impl Scalar for $ty {
            const META: &'static str = $meta;
            fn parse(text: &str) -> Result<Self, String> {
                text.trim().parse().map_err(|e| format!("{text:?}: {e}"))
            }
            fn show(&self) -> String {
                self.to_string()
            }
        }
    )*};
}

scalar!(SocketAddr => "ADDR", u64 => "N", usize => "N", f64 => "X", String => "TEXT");

impl Scalar for PathBuf {
    const META: &'static str = "PATH";
    fn parse(text: &str) -> Result<Self, String> {
        Ok(PathBuf::from(text.trim()))
    }
    fn show(&self) -> String {
        self.display().to_string()
    }
}

impl Scalar for ForwardAuthProxy {
    const META: &'static str = "nginx|traefik|envoy";
    fn parse(text: &str) -> Result<Self, String> {
        text.trim().parse()
    }
    fn show(&self) -> String {
        self.to_string()
    }
}

/// `text` unless it is empty (or blank): an empty value is refused for
/// every setting that is not a list.
fn non_empty(text: &str) -> Result<&str, String> {
    match text.trim() {
        "" => Err("empty value; unset the variable (or drop the flag) for the default".into()),
        t => Ok(t),
    }
}

macro_rules! direct {
    ($($ty:ty),*) => {$(
        impl Value for $ty {
            const FLAG: FlagKind = FlagKind::One;
            const META: &'static str = <$ty as Scalar>::META;
            fn from_env(text: &str) -> Result<Self, String> {
                Scalar::parse(non_empty(text)?)
            }
            fn from_flag(values: &[String]) -> Result<Self, String> {
                Scalar::parse(values.last().map_or("", String::as_str))
            }
            fn show(&self) -> Option<String> {
                Some(Scalar::show(self))
            }
        }
    )*};
}

direct!(SocketAddr, u64, usize, f64);

impl<T: Scalar> Value for Option<T> {
    const FLAG: FlagKind = FlagKind::One;
    const META: &'static str = T::META;
    fn from_env(text: &str) -> Result<Self, String> {
        T::parse(non_empty(text)?).map(Some)
    }
    fn from_flag(values: &[String]) -> Result<Self, String> {
        Self::from_env(values.last().map_or("", String::as_str))
    }
    fn show(&self) -> Option<String> {
        self.as_ref().map(T::show)
    }
}

impl<T: Scalar> Value for Vec<T> {
    const FLAG: FlagKind = FlagKind::Many;
    const META: &'static str = T::META;
    fn from_env(text: &str) -> Result<Self, String> {
        text.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(T::parse)
            .collect()
    }
    fn from_flag(values: &[String]) -> Result<Self, String> {
        values.iter().map(|v| T::parse(v)).collect()
    }
    fn show(&self) -> Option<String> {
        (!self.is_empty()).then(|| self.iter().map(T::show).collect::<Vec<_>>().join(","))
    }
}

impl Value for bool {
    const FLAG: FlagKind = FlagKind::Switch;
    const META: &'static str = "";
    fn from_env(text: &str) -> Result<Self, String> {
        match non_empty(text)? {
            "1" | "true" | "yes" => Ok(true),
            "0" | "false" | "no" => Ok(false),
            other => Err(format!(
                "{other:?} is not a boolean (1/true/yes, 0/false/no)"
            )),
        }
    }
    fn from_flag(_: &[String]) -> Result<Self, String> {
        Ok(true)
    }
    fn show(&self) -> Option<String> {
        self.then(|| "on".to_owned())
    }
}

/// One setting, as declared: what help, the variables' reader and the
/// "did you mean" suggestions know of it.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    /// The TOML key and the field of [`Config`].
    pub key: &'static str,
    /// The flag's name, when it is not the key with dashes (a list's
    /// singular: `--bundle` for `bundles`).
    flag: Option<&'static str>,
    /// The documentation, one line each.
    doc: &'static [&'static str],
    /// How the flag takes its argument.
    pub kind: FlagKind,
    /// The flag's argument as help names it (the type's unless declared).
    meta: &'static str,
    /// What the demo realm allows of it.
    pub demo: InDemo,
}

/// What the demo realm, served when no bundle and no source is configured,
/// allows of a setting: declared with it (`#[demo = any]`,
/// `#[demo = loopback]`, or nothing for [`InDemo::Default`]), so a new
/// setting keeps the demo away until it says otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InDemo {
    /// Only its default: a setting that only a deployment sets (trust keys,
    /// a state directory, a staleness limit, service credentials, a proxy,
    /// dev mode...). Set without a bundle or source, it says a real
    /// deployment lost its source, which must not become the demo.
    Default,
    /// Any value: a resource limit that changes nothing of what is trusted
    /// or answered.
    Any,
    /// A loopback address (`listen`): the demo is for this machine only.
    Loopback,
}

/// The [`InDemo`] of a declaration's `#[demo = ...]`.
macro_rules! in_demo {
    () => {
        InDemo::Default
    };
    (any) => {
        InDemo::Any
    };
    (loopback) => {
        InDemo::Loopback
    };
}

/// Why `value` of setting `key` keeps the demo realm away, as its
/// `#[demo = ...]` says, pushed on `out`.
macro_rules! demo_refusal {
    ($out:ident, $key:expr, $value:expr, $default:expr,) => {
        if $value != $default {
            $out.push(format!("{} is set", $key));
        }
    };
    ($out:ident, $key:expr, $value:expr, $default:expr, any) => {};
    ($out:ident, $key:expr, $value:expr, $default:expr, loopback) => {
        if !$value.ip().to_canonical().is_loopback() {
            $out.push(format!("{} {} is not a loopback address", $key, $value));
        }
    };
}

/// The prefix of every variable of the edge host.
pub const ENV_PREFIX: &str = "GATEHOUSE_";

impl Setting {
    /// The environment variable: `GATEHOUSE_` and the key in capitals.
    pub fn env(&self) -> String {
        format!("{ENV_PREFIX}{}", self.key.to_ascii_uppercase())
    }
    /// The flag, without its dashes.
    pub fn flag(&self) -> String {
        self.flag
            .map_or_else(|| self.key.replace('_', "-"), str::to_owned)
    }
    /// The documentation as one paragraph.
    pub fn doc(&self) -> String {
        self.doc
            .iter()
            .map(|l| l.trim())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// `Some` of the literal, or `None` without one.
macro_rules! some {
    () => {
        None
    };
    ($x:literal) => {
        Some($x)
    };
}

/// The settings: one declaration each (see the module documentation).
macro_rules! settings {
    ($(
        $(#[doc = $doc:literal])*
        $(#[flag = $flag:literal])?
        $(#[meta = $meta:literal])?
        $(#[demo = $demo:ident])?
        $name:ident: $ty:ty = $default:expr;
    )*) => {
        /// Everything the host can be told. Each field is a setting: its
        /// name is the TOML key, `GATEHOUSE_` and the name in capitals the
        /// environment variable, and `--` and the name with dashes the flag
        /// (a list's flag is its singular, repeated: `--bundle`,
        /// `--source`, `--trust-key`); `edge-host --help` lists them all.
        #[derive(Debug, Clone, PartialEq, Deserialize)]
        #[serde(deny_unknown_fields, default)]
        pub struct Config {$(
            $(#[doc = $doc])*
            pub $name: $ty,
        )*}

        impl Default for Config {
            fn default() -> Self {
                Config {$($name: $default,)*}
            }
        }

        /// Every setting, in declaration order.
        pub const SETTINGS: &[Setting] = &[$(
            Setting {
                key: stringify!($name),
                flag: some!($($flag)?),
                doc: &[$($doc),*],
                kind: <$ty as Value>::FLAG,
                meta: match some!($($meta)?) {
                    Some(m) => m,
                    None => <$ty as Value>::META,
                },
                demo: in_demo!($($demo)?),
            },
        )*];

        impl Config {
            /// Set the setting `key` from a variable's text; `Ok(false)`
            /// when there is no such setting.
            fn set_from_env(&mut self, key: &str, text: &str) -> Result<bool, String> {
                match key {
                    $(stringify!($name) => self.$name = <$ty as Value>::from_env(text)?,)*
                    _ => return Ok(false),
                }
                Ok(true)
            }

            /// Set the setting `key` from its flag's arguments.
            fn set_from_flag(&mut self, key: &str, values: &[String]) -> Result<(), String> {
                match key {
                    $(stringify!($name) => self.$name = <$ty as Value>::from_flag(values)?,)*
                    _ => return Err(format!("{key}: no such setting")),
                }
                Ok(())
            }

            /// Why this configuration may not serve the demo realm, one
            /// entry per setting whose `#[demo = ...]` its value breaks.
            fn demo_refusals(&self) -> Vec<String> {
                let defaults = Config::default();
                let mut out = Vec::new();
                $(demo_refusal!(out, stringify!($name), self.$name, defaults.$name, $($demo)?);)*
                out
            }

            /// The setting `key`'s value as help shows a default.
            fn show(&self, key: &str) -> Option<String> {
                match key {
                    $(stringify!($name) => Value::show(&self.$name),)*
                    _ => None,
                }
            }
        }
    };
}

settings! {
    /// Address to listen on.
    #[demo = loopback]
    listen: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 8180));
    /// Bundle files (`.tar`/`.tar.gz`; reloaded when they change) or, in
    /// dev mode, source directories, one realm each. With no bundle and no
    /// source the host serves the demo realm built from `policies/`, whose
    /// token key is generated at start.
    #[flag = "bundle"]
    bundles: Vec<PathBuf> = Vec::new();
    /// Stores polled for bundles, one realm each: `s3://bucket/prefix/realm`,
    /// `https://host/path/realm`, or a local store directory `/path/realm`
    /// (holding `HEAD`); the last path segment names the realm. S3 region,
    /// endpoint and credentials come from the standard AWS settings
    /// (`AWS_REGION`, `AWS_ENDPOINT_URL`, profiles, instance roles).
    #[flag = "source"]
    #[meta = "URL|DIR"]
    sources: Vec<String> = Vec::new();
    /// Where the last known good bundles of store-sourced realms are kept,
    /// to serve at boot while the store is down. Unset: nothing is kept.
    state_dir: Option<PathBuf> = None;
    /// Path-style S3 addressing, for S3-compatible services.
    s3_force_path_style: bool = false;
    /// Time limit of one request to a store, milliseconds.
    source_timeout_ms: u64 = 10_000;
    /// Largest bundle archive fetched or loaded, bytes.
    max_bundle_bytes: u64 = 1 << 30;
    /// Trusted bundle-signing public keys, SPKI PEM, each bound to the
    /// realm whose bundles it may sign: `REALM=PATH`, listed once per realm
    /// (key rotation, a key for several realms). A bundle signed by a key
    /// not bound to its realm is refused.
    #[flag = "trust-key"]
    #[meta = "REALM=PATH"]
    trust_keys: Vec<String> = Vec::new();
    /// Accept unsigned bundles and source directories. Never in
    /// production; the host says so loudly at start.
    dev: bool = false;
    /// Beyond this age (seconds since the bundle was built, or since the
    /// store last confirmed it is the newest) decisions deny with
    /// `stale_bundle` and `/readyz` fails. Unset: no limit.
    max_staleness_seconds: Option<u64> = None;
    /// Largest request body accepted, bytes.
    #[demo = any]
    max_body_bytes: usize = 1 << 20;
    /// Largest request head (request line and headers), bytes; larger
    /// heads get 431 (at least 8192).
    #[demo = any]
    max_header_bytes: usize = 16 << 10;
    /// Most header fields in one request; more get 431.
    #[demo = any]
    max_headers: usize = 64;
    /// Time a client has to send its request head, milliseconds; slower
    /// clients are disconnected.
    #[demo = any]
    header_read_timeout_ms: u64 = 10_000;
    /// Per-request time limit, milliseconds.
    #[demo = any]
    request_timeout_ms: u64 = 5_000;
    /// Requests served at once; more wait.
    #[demo = any]
    max_concurrency: usize = 4_096;
    /// How often bundle files and stores are checked for a new version,
    /// seconds; 0 turns it off.
    #[demo = any]
    reload_interval_seconds: u64 = 5;
    /// Verified tokens remembered (signature checks skipped until `exp`;
    /// user state always re-checked); 0 disables.
    #[demo = any]
    token_cache_capacity: usize = 100_000;
    /// The bearer secrets that services present to call `/v1/introspect`
    /// and `/v1/users/{id}`, each bound to one realm: `REALM:HEX`, HEX the
    /// SHA-256 of the secret (the secrets themselves are never configured
    /// or logged); a secret for several realms is listed once per realm.
    /// Empty: those endpoints refuse every caller.
    #[meta = "REALM:HEX"]
    service_token_sha256: Vec<String> = Vec::new();
    /// The reverse proxy in front of `/v1/forward-auth`, which decides the
    /// headers the original request is read from: `nginx`, `traefik` or
    /// `envoy`. Unset: forward-auth answers 503.
    forward_auth_proxy: Option<ForwardAuthProxy> = None;
    /// How many proxies append to `X-Forwarded-For` on the way to this
    /// host; the client address is the entry that many from the right. 0:
    /// never read it.
    forward_auth_trusted_hops: usize = 1;
    /// Realms whose decisions for a principal named by id say why a user
    /// was denied before any policy ran (`unknown_user`,
    /// `user_state:Suspended`, ...) to any caller. Elsewhere only a caller
    /// presenting the realm's service credential learns it; others get
    /// `no_permit`, so an unauthenticated caller cannot probe which users
    /// exist or are suspended. Token requests always say it (the caller
    /// holds that user's own token).
    #[meta = "REALM"]
    user_state_detail: Vec<String> = Vec::new();
    /// This PDP's AuthZEN identifier, the base URL PEPs reach it at; the
    /// metadata document (`/.well-known/authzen-configuration`) names its
    /// endpoints under it. Unset: `http://` and the listen address.
    #[meta = "URL"]
    authzen_pdp_url: Option<String> = None;
    /// Decision logs, one JSON line per decision, written to `stdout`,
    /// `file:PATH` (rotated by size) or `s3://bucket/prefix` (batched JSON
    /// Lines objects under time-partitioned keys). Unset: off, and the
    /// decision path does no logging work at all. Logging never holds up a
    /// decision: a record that does not fit the buffer is dropped and
    /// counted. (A deployment's setting, like the others of decision logs:
    /// set without a bundle or source, it keeps the demo realm away.)
    #[meta = "stdout|file:PATH|s3://BUCKET/PREFIX"]
    decision_log: Option<String> = None;
    /// Share of decisions logged, 0 to 1 (each decision drawn at random);
    /// denials and errors may be logged whatever the draw (the next two
    /// settings).
    decision_log_sample_rate: f64 = 1.0;
    /// Log every denial, whatever the sample rate.
    decision_log_denies: bool = false;
    /// Log every decision that failed (a bad request, no bundle) or whose
    /// evaluation reported policy errors, whatever the sample rate.
    decision_log_errors: bool = false;
    /// Records waiting for the sink, at most; a decision that finds the
    /// buffer full drops its record (counted), never waits.
    decision_log_buffer: usize = 65_536;
    /// `file:` sink: the size at which the file is rotated
    /// (`decisions.log` becomes `decisions.log.1`, `.1` becomes `.2`, ...),
    /// bytes.
    decision_log_file_max_bytes: u64 = 100 << 20;
    /// `file:` sink: rotated files kept (`.1` to `.N`); older ones are
    /// deleted.
    decision_log_file_keep: usize = 5;
    /// `s3:` sink: the longest a record waits before its batch is uploaded,
    /// seconds.
    decision_log_s3_interval_seconds: u64 = 60;
    /// `s3:` sink: records in one uploaded object, at most; a full batch is
    /// uploaded at once.
    decision_log_s3_max_batch: usize = 10_000;
    /// What of a request a decision log record may carry beyond its
    /// principal, action and resource: `REALM:context.NAME`,
    /// `REALM:principal.NAME`, `REALM:resource.NAME` (an entity attribute)
    /// or `REALM:claim.NAME` (a verified token's claim); REALM `*` is every
    /// realm. Nothing else of a request is ever logged, and a token never.
    #[meta = "REALM:FIELD.NAME"]
    decision_log_allowlist: Vec<String> = Vec::new();
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

impl std::fmt::Display for ForwardAuthProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ForwardAuthProxy::Nginx => "nginx",
            ForwardAuthProxy::Traefik => "traefik",
            ForwardAuthProxy::Envoy => "envoy",
        })
    }
}

/// `GATEHOUSE_*` variables this host reads that are not settings: the log
/// filter, read by the binary before the configuration.
const OTHER_VARIABLES: &[&str] = &["GATEHOUSE_LOG"];

/// `GATEHOUSE_*` names that belong to the other Gatehouse programs and to
/// the project's own test and benchmark tooling, by prefix or whole: not
/// this host's to refuse. Any other unknown `GATEHOUSE_*` variable is a
/// typo of one of [`env_names`] and stops the host at start.
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

/// Every `GATEHOUSE_*` variable this host reads: one per setting, and the
/// log filter.
pub fn env_names() -> Vec<String> {
    SETTINGS
        .iter()
        .map(Setting::env)
        .chain(OTHER_VARIABLES.iter().map(|v| (*v).to_owned()))
        .collect()
}

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
    /// A flag has a bad value.
    #[error("--{flag}: {message}")]
    Flag {
        /// The flag, without its dashes.
        flag: String,
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

/// The flag naming the TOML file; not a setting itself.
const CONFIG_FLAG: &str = "config";

impl Config {
    /// The command line: `--config FILE` and one flag per setting, each
    /// documented with its variable and default.
    pub fn command() -> clap::Command {
        let defaults = Config::default();
        let mut command = clap::Command::new("edge-host")
            .version(env!("CARGO_PKG_VERSION"))
            .about("Gatehouse edge host: local authorization decisions over HTTP.")
            .long_about(
                "Gatehouse edge host: local authorization decisions over HTTP.\n\n\
                 Settings come from defaults, then the --config TOML file, then GATEHOUSE_* \
                 environment variables, then these flags; each flag below names its TOML key \
                 and its variable. With no bundle or source configured it serves the demo realm \
                 built from policies/, whose token key is generated at start: it prints a \
                 token for alice, and GET /demo/token?user=NAME mints more (for callers on \
                 this machine only).",
            )
            .arg(
                clap::Arg::new(CONFIG_FLAG)
                    .long(CONFIG_FLAG)
                    .value_name("FILE")
                    .value_parser(clap::value_parser!(PathBuf))
                    .help("TOML file with any of the settings below, by their toml names."),
            );
        for s in SETTINGS {
            let mut help = s.doc();
            help.push_str(&format!("\n[toml {}; env {}", s.key, s.env()));
            if let Some(d) = defaults.show(s.key) {
                help.push_str(&format!("; default {d}"));
            }
            help.push(']');
            let arg = clap::Arg::new(s.key).long(s.flag()).help(help);
            command = command.arg(match s.kind {
                FlagKind::One => arg.value_name(s.meta).action(clap::ArgAction::Set),
                FlagKind::Many => arg.value_name(s.meta).action(clap::ArgAction::Append),
                FlagKind::Switch => arg.action(clap::ArgAction::SetTrue),
            });
        }
        command
    }

    /// Defaults, then the `--config` file of `matches`, then the
    /// `GATEHOUSE_*` variables in `env`, then the flags in `matches`
    /// (parsed by [`Config::command`]).
    pub fn from_matches(
        matches: &clap::ArgMatches,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let file = matches.get_one::<PathBuf>(CONFIG_FLAG);
        let mut config = Config::load(file.map(PathBuf::as_path), env)?;
        for s in SETTINGS {
            let values: Vec<String> = match s.kind {
                FlagKind::Switch if matches.get_flag(s.key) => Vec::new(),
                FlagKind::Switch => continue,
                FlagKind::One | FlagKind::Many => match matches.get_many::<String>(s.key) {
                    Some(v) => v.cloned().collect(),
                    None => continue,
                },
            };
            config
                .set_from_flag(s.key, &values)
                .map_err(|message| ConfigError::Flag {
                    flag: s.flag(),
                    message,
                })?;
        }
        Ok(config)
    }

    /// Whether this configuration serves the demo realm: only when no
    /// bundle and no source is configured, the host listens on a loopback
    /// address and every setting that only a deployment sets has its
    /// default (each setting's `#[demo = ...]` in the one declaration says
    /// which: see [`InDemo`]). A production configuration whose
    /// `--bundle`/`--source` went missing (an empty variable, a typo in a
    /// deployment template) is refused with a message instead of falling
    /// into the demo.
    pub fn serves_demo(&self) -> Result<bool, String> {
        if !self.bundles.is_empty() || !self.sources.is_empty() {
            return Ok(false);
        }
        let refusals = self.demo_refusals();
        if refusals.is_empty() {
            return Ok(true);
        }
        Err(format!(
            "no bundle or source is configured, but {}: not serving the demo realm, which \
             serves only on a loopback address with the settings of a deployment at their \
             defaults; configure --bundle or --source",
            refusals.join(", ")
        ))
    }

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
                let empty = |message: String| ConfigError::Toml {
                    path: path.to_owned(),
                    message,
                };
                let table: toml::Table =
                    toml::from_str(&text).map_err(|e| empty(e.to_string().replace('\n', " ")))?;
                // As for a variable: an empty (or blank) value is refused,
                // not taken as "unset" or as a value; a list may be empty
                // but may not hold an empty item.
                for (key, value) in &table {
                    let blank = |v: &toml::Value| v.as_str().is_some_and(|s| s.trim().is_empty());
                    if blank(value) {
                        return Err(empty(format!(
                            "{key}: empty value; drop the key for the default"
                        )));
                    }
                    if value
                        .as_array()
                        .is_some_and(|items| items.iter().any(blank))
                    {
                        return Err(empty(format!("{key}: a list item is empty")));
                    }
                }
                table.try_into::<Config>().map_err(|e| {
                    let mut message = e.to_string().replace('\n', " ");
                    // serde names the unknown key; say which one was meant.
                    if let Some(key) = message
                        .split("unknown field `")
                        .nth(1)
                        .and_then(|rest| rest.split('`').next())
                        && let Some(k) = nearest(key, SETTINGS.iter().map(|s| s.key))
                    {
                        message =
                            format!("unknown setting {key:?}; did you mean {k:?}? ({message})");
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
        if let Err(message) = crate::decision_log::Settings::from_config(&config) {
            return Err(ConfigError::Toml {
                path: file.map(Path::to_path_buf).unwrap_or_default(),
                message,
            });
        }
        Ok(config)
    }

    fn apply_env(&mut self, name: &str, value: &str) -> Result<(), ConfigError> {
        let bad = |message: String| ConfigError::Env {
            name: name.to_owned(),
            message,
        };
        let Some(key) = name.strip_prefix(ENV_PREFIX) else {
            // Variables of other programs altogether.
            return Ok(());
        };
        // Only the exact spelling: GATEHOUSE_listen is a typo, not a setting.
        if key.bytes().all(|b| !b.is_ascii_lowercase())
            && self
                .set_from_env(&key.to_ascii_lowercase(), value)
                .map_err(bad)?
        {
            if key == "SERVICE_TOKEN_SHA256" {
                self.service_credentials().map_err(bad)?;
            }
            return Ok(());
        }
        if OTHER_VARIABLES.contains(&name) || OTHER_PROGRAMS.iter().any(|p| name.starts_with(p)) {
            return Ok(());
        }
        let known = env_names();
        Err(bad(match nearest(name, known.iter().map(String::as_str)) {
            Some(k) => format!("not a setting of the edge host; did you mean {k}?"),
            None => "not a setting of the edge host (see edge-host --help)".into(),
        }))
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

    fn from_args(args: &[&str], env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let matches = Config::command()
            .try_get_matches_from(std::iter::once("edge-host").chain(args.iter().copied()))
            .unwrap();
        Config::from_matches(
            &matches,
            env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        )
    }

    #[test]
    fn flags_override_variables_override_the_file_override_defaults() {
        let dir = std::env::temp_dir().join(format!("gh-config-flags-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("edge.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:9000\"\nmax_headers = 10\nmax_concurrency = 7\n\
             bundles = [\"file.tar.gz\"]\nuser_state_detail = [\"a\"]\n",
        )
        .unwrap();
        let file = file.display().to_string();
        let c = from_args(
            &[
                "--config",
                &file,
                "--listen",
                "127.0.0.1:9300",
                "--bundle",
                "one.tar.gz",
                "--bundle",
                "two,with-comma.tar.gz",
                "--dev",
                "--forward-auth-proxy",
                "nginx",
                "--forward-auth-trusted-hops",
                "2",
                "--user-state-detail",
                "b",
                "--authzen-pdp-url",
                "https://pdp.example",
            ],
            &[
                ("GATEHOUSE_LISTEN", "127.0.0.1:9100"),
                ("GATEHOUSE_MAX_HEADERS", "20"),
                ("GATEHOUSE_BUNDLES", "env.tar.gz"),
                ("GATEHOUSE_FORWARD_AUTH_PROXY", "traefik"),
            ],
        )
        .unwrap();
        assert_eq!(c.listen.port(), 9300, "flag over variable and file");
        assert_eq!(c.max_headers, 20, "variable over file");
        assert_eq!(c.max_concurrency, 7, "file over default");
        assert_eq!(c.max_body_bytes, 1 << 20, "default");
        // A repeated flag is a list, each occurrence one item (no splitting
        // at commas, which a path may hold); it replaces the variable's.
        assert_eq!(
            c.bundles,
            [
                PathBuf::from("one.tar.gz"),
                PathBuf::from("two,with-comma.tar.gz")
            ]
        );
        assert!(c.dev);
        // The four settings that had no flag before.
        assert_eq!(c.forward_auth_proxy, Some(ForwardAuthProxy::Nginx));
        assert_eq!(c.forward_auth_trusted_hops, 2);
        assert_eq!(c.user_state_detail, ["b"]);
        assert_eq!(c.authzen_pdp_url.as_deref(), Some("https://pdp.example"));
        // A variable's list is comma-separated; no flag leaves it.
        let c = from_args(&[], &[("GATEHOUSE_BUNDLES", "a.tar.gz, b.tar.gz,")]).unwrap();
        assert_eq!(
            c.bundles,
            [PathBuf::from("a.tar.gz"), PathBuf::from("b.tar.gz")]
        );
        // Bad flag values name the flag.
        let e = from_args(&["--forward-auth-proxy", "apache"], &[]).unwrap_err();
        assert!(e.to_string().starts_with("--forward-auth-proxy:"), "{e}");
        let e = from_args(&["--max-headers", "many"], &[]).unwrap_err();
        assert!(e.to_string().starts_with("--max-headers:"), "{e}");
    }

    /// The one declaration gives each setting a flag, a variable and a TOML
    /// key, and help shows each with its variable and default: checked
    /// for every setting, so none can be left without.
    #[test]
    fn every_setting_has_a_flag_a_variable_a_key_and_help() {
        let command = Config::command();
        // Help as one line of words (clap may wrap it).
        let help = Config::command().render_long_help().to_string();
        let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
        let defaults = Config::default();
        let mut flags = std::collections::BTreeSet::new();
        for s in SETTINGS {
            // The flag: parsed by the command, and the setting's own.
            let flag = format!("--{}", s.flag());
            assert!(flags.insert(flag.clone()), "{flag} twice");
            let arg = command
                .get_arguments()
                .find(|a| a.get_id().as_str() == s.key)
                .unwrap_or_else(|| panic!("{}: no flag", s.key));
            assert_eq!(arg.get_long(), Some(&flag[2..]));
            assert!(
                s.flag() == s.key.replace('_', "-")
                    || format!("{}s", s.flag().replace('-', "_")) == s.key,
                "{}: flag {flag} is neither the key nor its singular",
                s.key
            );
            // Help names the variable, and the default when there is one.
            assert!(help.contains(&flag), "{flag} not in help");
            let env = s.env();
            let names = format!("[toml {}; env {env}", s.key);
            assert!(help.contains(&names), "{names} not in help");
            if let Some(d) = defaults.show(s.key) {
                assert!(
                    help.contains(&format!("{names}; default {d}]")),
                    "{env}: default {d} not in help"
                );
            }
            assert!(!s.doc().is_empty(), "{}: undocumented", s.key);
            // The variable: read as this setting (a bad value may be
            // refused, but never as an unknown name).
            assert!(env_names().contains(&env));
            if let Err(e) = Config::load(None, [(env.clone(), "not a value".to_owned())]) {
                assert!(!e.to_string().contains("not a setting"), "{env}: {e}");
            }
            // The TOML key: known to the file's reader (a value of the
            // wrong type may be refused, but never as an unknown key).
            let dir = std::env::temp_dir().join(format!("gh-config-key-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let file = dir.join(format!("{}.toml", s.key));
            std::fs::write(&file, format!("{} = \"x\"\n", s.key)).unwrap();
            if let Err(e) = Config::load(Some(&file), []) {
                assert!(!e.to_string().contains("unknown field"), "{}: {e}", s.key);
            }
        }
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
            ("GATEHOUSE_listen", "GATEHOUSE_LISTEN"),
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
        // The control plane's, the tooling's, the log filter and other
        // programs' are left.
        for other in [
            "GATEHOUSE_CP_DB",
            "GATEHOUSE_TEST_POSTGRES",
            "GATEHOUSE_BENCH_USERS",
            "GATEHOUSE_MOTO_SERVER",
            "GATEHOUSE_LOG",
            "PATH",
        ] {
            assert!(
                Config::load(None, [(other.to_owned(), "x".to_owned())]).is_ok(),
                "{other}"
            );
        }
        let dir = std::env::temp_dir().join(format!("gh-config-typo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("edge.toml");
        std::fs::write(&file, "max_stalenes_seconds = 60\n").unwrap();
        let e = Config::load(Some(&file), []).unwrap_err().to_string();
        assert!(e.contains("did you mean \"max_staleness_seconds\"?"), "{e}");
    }

    /// Review finding: a production configuration whose source came out
    /// empty served the demo unless it named trust keys or a state
    /// directory. Every setting declared without `#[demo = ...]`, set to
    /// anything but its default, keeps the demo away (and is named);
    /// `#[demo = any]` ones do not; `listen` must be loopback.
    #[test]
    fn the_demo_needs_loopback_and_every_deployment_setting_at_its_default() {
        assert_eq!(Config::default().serves_demo(), Ok(true));
        let hex = "a".repeat(64);
        let candidates = ["2", "1", "nginx", "/tmp/x", &format!("r:{hex}")];
        for s in SETTINGS {
            if s.demo == InDemo::Loopback {
                continue;
            }
            let changed = candidates
                .iter()
                .find_map(|text| {
                    let mut c = Config::default();
                    (c.set_from_env(s.key, text) == Ok(true) && c != Config::default()).then_some(c)
                })
                .unwrap_or_else(|| panic!("{}: no candidate value changes it", s.key));
            match (s.demo, changed.serves_demo()) {
                (InDemo::Default, Err(e)) if e.contains(s.key) => {}
                (InDemo::Any, Ok(true)) => {}
                // A bundle or a source: no demo to refuse.
                (InDemo::Default, Ok(false)) if ["bundles", "sources"].contains(&s.key) => {}
                (demo, r) => panic!("{} ({demo:?}): {r:?}", s.key),
            }
        }
        for listen in ["0.0.0.0:8180", "[::]:8180", "192.0.2.7:1"] {
            let c = Config {
                listen: listen.parse().unwrap(),
                ..Config::default()
            };
            let e = c.serves_demo().unwrap_err();
            assert!(
                e.contains(&format!("listen {listen} is not a loopback")),
                "{e}"
            );
        }
        for listen in ["127.0.0.1:0", "127.0.0.2:9", "[::1]:8180"] {
            let c = Config {
                listen: listen.parse().unwrap(),
                ..Config::default()
            };
            assert_eq!(c.serves_demo(), Ok(true), "{listen}");
        }
    }

    /// The file's reading of the same rule: an empty or blank string is
    /// refused for any key, and so is an empty item of a list (the
    /// AuthZEN URL, the state directory, a trust key were taken as given).
    #[test]
    fn an_empty_value_in_the_file_is_refused() {
        let dir = std::env::temp_dir().join(format!("gh-config-empty-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("edge.toml");
        for text in [
            "authzen_pdp_url = \"\"",
            "state_dir = \"  \"",
            "trust_keys = [\"demo=/k.pem\", \"\"]",
        ] {
            std::fs::write(&file, text).unwrap();
            let e = Config::load(Some(&file), []).expect_err(text).to_string();
            let key = text.split(' ').next().unwrap();
            assert!(e.contains(key), "{text}: {e}");
        }
        std::fs::write(
            &file,
            "trust_keys = []\nauthzen_pdp_url = \"https://pdp.example\"",
        )
        .unwrap();
        let c = Config::load(Some(&file), []).unwrap();
        assert_eq!(c.authzen_pdp_url.as_deref(), Some("https://pdp.example"));
    }

    /// Review finding: since the settings were declared once, an empty
    /// variable unset an optional setting (`GATEHOUSE_MAX_STALENESS_SECONDS=""`
    /// removed the staleness limit, an error before; the state directory,
    /// the forward-auth proxy and the AuthZEN URL were unset by one before
    /// too) or turned a switch off. An empty value is refused, naming the
    /// variable, for every setting but the lists, where it is the empty
    /// list as it always was.
    #[test]
    fn an_empty_variable_is_refused_except_for_a_list() {
        for name in [
            "GATEHOUSE_MAX_STALENESS_SECONDS",
            "GATEHOUSE_STATE_DIR",
            "GATEHOUSE_FORWARD_AUTH_PROXY",
            "GATEHOUSE_AUTHZEN_PDP_URL",
            "GATEHOUSE_DEV",
            "GATEHOUSE_S3_FORCE_PATH_STYLE",
            "GATEHOUSE_LISTEN",
            "GATEHOUSE_MAX_BODY_BYTES",
        ] {
            for empty in ["", "  "] {
                let e = Config::load(None, [(name.to_owned(), empty.to_owned())])
                    .map(|c| format!("accepted as {c:?}"));
                let e = e.expect_err(name).to_string();
                assert!(
                    e.starts_with(&format!("{name}:")) && e.contains("empty"),
                    "{e}"
                );
            }
        }
        // The flag too.
        let e = from_args(&["--max-staleness-seconds", ""], &[]).unwrap_err();
        assert!(e.to_string().starts_with("--max-staleness-seconds:"), "{e}");
        // A list's empty variable is the empty list (as before d307531).
        let c = Config::load(
            None,
            [
                ("GATEHOUSE_BUNDLES".to_owned(), String::new()),
                ("GATEHOUSE_SOURCES".to_owned(), " ".to_owned()),
                ("GATEHOUSE_USER_STATE_DETAIL".to_owned(), String::new()),
            ],
        )
        .unwrap();
        assert!(c.bundles.is_empty() && c.sources.is_empty() && c.user_state_detail.is_empty());
    }

    #[test]
    fn bad_values_name_their_source() {
        let e = Config::load(
            None,
            [("GATEHOUSE_LISTEN".to_owned(), "nowhere".to_owned())],
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("GATEHOUSE_LISTEN:"), "{e}");
        let e = Config::load(
            None,
            [(
                "GATEHOUSE_SERVICE_TOKEN_SHA256".to_owned(),
                "no-realm".to_owned(),
            )],
        )
        .unwrap_err();
        assert!(
            e.to_string().starts_with("GATEHOUSE_SERVICE_TOKEN_SHA256:"),
            "{e}"
        );
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
