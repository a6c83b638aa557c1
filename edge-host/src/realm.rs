//! Realms and their bundles: each realm holds one snapshot behind an atomic
//! pointer, swapped whole when a newer bundle verifies (in-flight requests
//! keep the snapshot they started with).

use crate::config::Config;
use crate::lkg::StateDir;
use crate::problem::Problem;
use crate::store::{Connect, Location, Store};
use arc_swap::{ArcSwap, ArcSwapOption};
use pdp_core::bundle::{BundleError, Limits, Trust};
use pdp_core::layout::{Head, MAX_CLOCK_SKEW_SECONDS, min_staleness};
use pdp_core::source::{BuildOptions, build_and_load};
use pdp_core::{Keyring, LoadOptions, Snapshot, load};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

/// Where a realm's bundles come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The demo realm: built into the binary from `policies/`.
    Embedded,
    /// A bundle archive on disk.
    File(PathBuf),
    /// A bundle source directory on disk (dev mode only).
    Dir(PathBuf),
    /// Polled from an object store (S3, HTTP(S), a local store directory).
    Store(Location),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Embedded => f.write_str("demo realm (policies/, token key generated at start)"),
            Source::File(p) => write!(f, "file {}", p.display()),
            Source::Dir(p) => write!(f, "directory {}", p.display()),
            Source::Store(l) => write!(f, "store {}", l.url),
        }
    }
}

/// One realm served by this host.
#[derive(Debug)]
pub struct Realm {
    name: String,
    source: Source,
    current: ArcSwapOption<Snapshot>,
    /// The snapshot the current one replaced, and when: searches whose
    /// page token was made on it are answered from it for
    /// [`SEARCH_GRACE_SECONDS`].
    replaced: std::sync::Mutex<Option<(Arc<Snapshot>, i64)>>,
    loaded_at: AtomicI64,
    reload_failures: AtomicU64,
    /// (modified time, length) of the bundle file last read.
    seen: std::sync::Mutex<Option<(std::time::SystemTime, u64)>>,
    /// Polling state of a store-sourced realm.
    pub(crate) remote: Option<Remote>,
}

/// Polling state of a realm whose bundles come from a store.
#[derive(Debug, Default)]
pub(crate) struct Remote {
    /// Connected on first use (S3 credentials are resolved asynchronously).
    pub(crate) store: tokio::sync::OnceCell<Store>,
    /// `ETag` of the `HEAD` last applied in full.
    pub(crate) etag: std::sync::Mutex<Option<String>>,
    /// The newest signed `HEAD` records verified and reached (see
    /// [`Signed`]): the only freshness this host counts for the realm.
    pub(crate) signed: ArcSwap<Signed>,
    /// The highest revision a signed `HEAD` named or this host installed
    /// (kept in the state directory): a store offering less is refused,
    /// also after a restart that lost the last known good chain.
    pub(crate) high_water: AtomicU64,
    /// One sync at a time.
    pub(crate) lock: tokio::sync::Mutex<()>,
    /// Why the last sync failed (cleared by a successful one).
    pub(crate) last_error: std::sync::Mutex<Option<String>>,
}

/// How long a replaced snapshot still answers searches continuing a page
/// token made on it, seconds.
pub const SEARCH_GRACE_SECONDS: i64 = 60;

/// Freshness from signed `HEAD` records: each says "revision R was the
/// newest at T". A snapshot of revision at least R is fresh as of T. The
/// record before the newest is kept too, so a request still holding the
/// previous snapshot at the moment a newer one is installed is judged by
/// the record that covered it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Signed {
    /// The newest record reached: (`revision`, `issued_at`).
    pub(crate) newest: Option<(u64, i64)>,
    /// The one before it.
    pub(crate) previous: Option<(u64, i64)>,
}

impl Signed {
    /// When a snapshot of `revision` was last confirmed newest (0: never).
    pub(crate) fn fresh_at(&self, revision: u64) -> i64 {
        [self.newest, self.previous]
            .into_iter()
            .flatten()
            .filter(|(r, _)| revision >= *r)
            .map(|(_, t)| t)
            .max()
            .unwrap_or(0)
    }

    /// After a record naming `revision` issued at `issued_at` was verified
    /// and the host holds that revision. Only a record at least as new as
    /// the newest counts; an older one (replayed, or from a lagging cache)
    /// changes nothing.
    pub(crate) fn with(self, revision: u64, issued_at: i64) -> Signed {
        match self.newest {
            Some((_, t)) if issued_at < t => self,
            Some((r, _)) if r == revision => Signed {
                newest: Some((revision, issued_at)),
                previous: self.previous,
            },
            _ => Signed {
                newest: Some((revision, issued_at)),
                previous: self.newest,
            },
        }
    }
}

/// Why the host could not start with its bundles.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A bundle file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A bundle was refused.
    #[error("{origin}: {source}")]
    Bundle {
        /// Where it came from.
        origin: String,
        /// Why.
        source: BundleError,
    },
    /// A trust key could not be read.
    #[error("trust key {path}: {message}")]
    TrustKey {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// A source directory or unsigned bundle without dev mode, or no key at all.
    #[error("{0}")]
    Policy(String),
    /// Two bundles for one realm.
    #[error("realm {0:?} is configured twice")]
    DuplicateRealm(String),
    /// A setting that cannot be used as given.
    #[error("{0}")]
    Config(String),
    /// What the state directory kept of a realm cannot be trusted (a
    /// `high_water` file that does not hold a revision): its rollback
    /// protection would start over, so the host does not start.
    #[error("realm {realm:?}: state directory: {source}")]
    State {
        /// The realm.
        realm: String,
        /// Why.
        source: std::io::Error,
    },
}

/// Unix seconds now.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

impl Realm {
    /// The realm's name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Where its bundles come from.
    pub fn source(&self) -> &Source {
        &self.source
    }
    /// The snapshot decisions use now (`None`: nothing loaded, fail closed).
    pub fn snapshot(&self) -> Option<Arc<Snapshot>> {
        self.current.load_full()
    }
    /// When the current snapshot was installed, unix seconds.
    pub fn loaded_at(&self) -> i64 {
        self.loaded_at.load(Relaxed)
    }
    /// Bundles refused (or sources failed) since start.
    pub fn reload_failures(&self) -> u64 {
        self.reload_failures.load(Relaxed)
    }

    pub(crate) fn count_failure(&self) {
        self.reload_failures.fetch_add(1, Relaxed);
    }

    /// When the revision held was last known to be the newest: the later
    /// of the bundle's build time (signed in its manifest) and, for a
    /// store, the newest signed `HEAD` record that named a revision it
    /// reaches. Nothing unsigned counts: not a 304, not an unchanged
    /// `HEAD`, not a successful poll.
    pub fn fresh_at(&self, snap: &Snapshot) -> i64 {
        let signed = self
            .remote
            .as_ref()
            .map_or(0, |r| r.signed.load().fresh_at(snap.revision()));
        // A build time ahead of this clock (a control plane's clock that
        // jumped) counts as no later than a minute after the install.
        let built = snap
            .manifest()
            .created_at
            .min(self.loaded_at().saturating_add(MAX_CLOCK_SKEW_SECONDS));
        built.max(signed)
    }

    /// Why the last poll of the store failed, if it did.
    pub fn last_error(&self) -> Option<String> {
        self.remote
            .as_ref()
            .and_then(|r| r.last_error.lock().ok().and_then(|e| e.clone()))
    }

    /// Offer a new bundle (snapshot or delta). It replaces the current
    /// snapshot only if it verifies and is newer; otherwise the current one
    /// stays and the failure is counted.
    /// Offering the revision already held again is not a failure.
    pub fn offer(&self, bytes: &[u8], options: &LoadOptions<'_>) -> Result<u64, BundleError> {
        let held = self.snapshot();
        match load(bytes, options, held.as_deref()) {
            Ok(s) if s.realm() != self.name => {
                self.reload_failures.fetch_add(1, Relaxed);
                Err(BundleError::RealmMismatch {
                    held: self.name.clone(),
                    offered: s.realm().to_owned(),
                })
            }
            Ok(s) => {
                let rev = s.revision();
                self.install(s);
                Ok(rev)
            }
            Err(BundleError::Rollback { held, offered }) if held == offered => Ok(held),
            Err(e) => {
                self.reload_failures.fetch_add(1, Relaxed);
                Err(e)
            }
        }
    }

    fn install(&self, s: Snapshot) {
        let t = now();
        let old = self.current.swap(Some(Arc::new(s)));
        if let Ok(mut replaced) = self.replaced.lock() {
            *replaced = old.map(|o| (o, t));
        }
        self.loaded_at.store(t, Relaxed);
    }

    /// The snapshot of `revision` for a search continuing a page token:
    /// the current one, or the one it replaced less than
    /// [`SEARCH_GRACE_SECONDS`] ago (`None`: neither; the token expired).
    /// A replaced snapshot past its grace is let go here.
    pub fn snapshot_for_search(&self, revision: u64, now: i64) -> Option<Arc<Snapshot>> {
        if let Some(current) = self.snapshot()
            && current.revision() == revision
        {
            return Some(current);
        }
        let mut replaced = self.replaced.lock().ok()?;
        match replaced.as_ref() {
            Some((snap, at)) if now.saturating_sub(*at) <= SEARCH_GRACE_SECONDS => {
                (snap.revision() == revision).then(|| Arc::clone(snap))
            }
            Some(_) => {
                *replaced = None;
                None
            }
            None => None,
        }
    }

    /// Let go of the replaced snapshot once its grace has passed (memory:
    /// a million-user realm holds two snapshots only during the grace).
    pub fn tidy(&self, now: i64) {
        if let Ok(mut replaced) = self.replaced.lock()
            && replaced
                .as_ref()
                .is_some_and(|(_, at)| now.saturating_sub(*at) > SEARCH_GRACE_SECONDS)
        {
            *replaced = None;
        }
    }
}

/// Every realm of the host, and how bundles are trusted.
#[derive(Debug)]
pub struct Realms {
    list: Vec<Arc<Realm>>,
    keyring: Keyring,
    dev: bool,
    max_staleness: Option<i64>,
    pub(crate) connect: Connect,
    pub(crate) state_dir: Option<StateDir>,
    pub(crate) limits: Limits,
}

impl Realms {
    /// Load every configured bundle, or the demo realm when `demo` is given.
    pub fn from_config(
        config: &Config,
        demo: Option<&crate::demo::Demo>,
    ) -> Result<Realms, StartError> {
        let mut keyring = Keyring::new();
        for (realm, path) in config.trust_key_bindings().map_err(StartError::Config)? {
            let pem = std::fs::read_to_string(&path).map_err(|e| StartError::TrustKey {
                path: path.clone(),
                message: e.to_string(),
            })?;
            keyring
                .add_pem_for(&pem, &realm)
                .map_err(|e| StartError::TrustKey {
                    path: path.clone(),
                    message: e.to_string(),
                })?;
        }
        let mut realms = Realms {
            list: Vec::new(),
            keyring,
            dev: config.dev,
            max_staleness: config
                .max_staleness_seconds
                .map(|s| i64::try_from(s).unwrap_or(i64::MAX)),
            connect: Connect {
                s3_force_path_style: config.s3_force_path_style,
                timeout: std::time::Duration::from_millis(config.source_timeout_ms),
                ..Connect::default()
            },
            state_dir: config.state_dir.as_ref().map(StateDir::new),
            limits: Limits {
                archive: config.max_bundle_bytes,
                ..Limits::default()
            },
        };
        if let Some(demo) = demo {
            let (_, snap) =
                build_and_load(&demo.files(), &build_options(), None).map_err(|source| {
                    StartError::Bundle {
                        origin: Source::Embedded.to_string(),
                        source,
                    }
                })?;
            realms.add(Source::Embedded, snap)?;
        }
        for path in &config.bundles {
            let (source, snap) = realms.load_path(path)?;
            realms.add(source, snap)?;
        }
        for url in &config.sources {
            let location = Location::parse(url).map_err(StartError::Policy)?;
            if !realms.dev && realms.keyring.is_empty() {
                return Err(StartError::Policy(format!(
                    "{url}: no trust key configured (--trust-key) and not in dev mode"
                )));
            }
            realms.add_remote(location)?;
        }
        Ok(realms)
    }

    /// A store-sourced realm starts with its last known good chain from the
    /// state directory, if there is one and it still verifies; else with
    /// nothing (decisions fail closed until the first poll succeeds).
    fn add_remote(&mut self, location: Location) -> Result<(), StartError> {
        let name = location.realm.clone();
        if self.list.iter().any(|r| r.name == name) {
            return Err(StartError::DuplicateRealm(name));
        }
        let realm = Realm {
            name,
            source: Source::Store(location),
            current: ArcSwapOption::empty(),
            replaced: std::sync::Mutex::new(None),
            loaded_at: AtomicI64::new(0),
            reload_failures: AtomicU64::new(0),
            seen: std::sync::Mutex::new(None),
            remote: Some(Remote::default()),
        };
        self.restore(&realm)?;
        self.list.push(Arc::new(realm));
        Ok(())
    }

    /// The staleness limit must leave room for 4 re-signing intervals of
    /// the realm's control plane (as its signed `HEAD` says): a shorter one
    /// would turn a poll or two lost to a slow store into denials.
    pub(crate) fn check_interval(&self, realm: &str, interval: u64) -> Result<(), String> {
        let min = min_staleness(interval);
        match self.max_staleness {
            Some(max) if u64::try_from(max).unwrap_or(0) < min => Err(format!(
                "realm {realm:?}: the staleness limit of {max} s is shorter than 4 times the \
                 {interval} s its control plane re-signs HEAD at; set max_staleness_seconds to at \
                 least {min}"
            )),
            _ => Ok(()),
        }
    }

    /// What the state directory kept of a store-sourced realm: the highest
    /// revision seen, the newest signed `HEAD` (verified again, and its
    /// freshness counted only once the revision it names is held), and the
    /// last known good chain.
    fn restore(&self, realm: &Realm) -> Result<(), StartError> {
        let (Some(dir), Some(remote)) = (&self.state_dir, &realm.remote) else {
            return Ok(());
        };
        let high_water = dir.high_water(&realm.name).map_err(|source| {
            tracing::error!(realm = realm.name, error = %source, "highest revision seen unreadable; not starting this realm");
            StartError::State {
                realm: realm.name.clone(),
                source,
            }
        })?;
        remote.high_water.store(high_water, Relaxed);
        match dir.head(&realm.name) {
            Ok(Some(bytes)) => match Head::open(&bytes, self.load_options().trust) {
                Ok(head) if head.realm == realm.name => {
                    self.check_interval(&realm.name, head.resign_interval_seconds)
                        .map_err(StartError::Config)?;
                    remote.high_water.fetch_max(head.revision, Relaxed);
                    let issued_at = head
                        .issued_at
                        .min(now().saturating_add(MAX_CLOCK_SKEW_SECONDS));
                    remote
                        .signed
                        .store(Arc::new(Signed::default().with(head.revision, issued_at)));
                }
                Ok(head) => {
                    tracing::warn!(
                        realm = realm.name,
                        found = head.realm,
                        "recorded HEAD is of another realm; ignored"
                    )
                }
                Err(e) => {
                    tracing::warn!(realm = realm.name, error = %e, "recorded HEAD refused; ignored")
                }
            },
            Ok(None) => {}
            Err(e) => tracing::warn!(realm = realm.name, error = %e, "recorded HEAD unreadable"),
        }
        let chain = match dir.restore(&realm.name) {
            Ok(Some(chain)) => chain,
            Ok(None) => return Ok(()),
            Err(e) => {
                tracing::warn!(realm = realm.name, error = %e, "last known good bundle unreadable");
                return Ok(());
            }
        };
        let options = self.load_options();
        for bytes in &chain {
            if let Err(e) = realm.offer(bytes, &options) {
                tracing::warn!(realm = realm.name, error = %e, "last known good bundle refused; stopping at the revision before");
                break;
            }
        }
        if let Some(s) = realm.snapshot() {
            tracing::info!(
                realm = realm.name,
                revision = s.revision(),
                "serving the last known good bundle until the store answers"
            );
        }
        Ok(())
    }

    fn load_path(&self, path: &Path) -> Result<(Source, Snapshot), StartError> {
        let origin = path.display().to_string();
        if path.is_dir() {
            if !self.dev {
                return Err(StartError::Policy(format!(
                    "{origin} is a source directory: unsigned, so it is served only in dev mode (--dev)"
                )));
            }
            let files = read_dir_files(path)?;
            let (_, snap) = build_and_load(&files, &build_options(), None)
                .map_err(|source| StartError::Bundle { origin, source })?;
            return Ok((Source::Dir(path.to_owned()), snap));
        }
        let bytes = std::fs::read(path).map_err(|source| StartError::Read {
            path: path.to_owned(),
            source,
        })?;
        if !self.dev && self.keyring.is_empty() {
            return Err(StartError::Policy(format!(
                "{origin}: no trust key configured (--trust-key) and not in dev mode"
            )));
        }
        let snap = load(&bytes, &self.load_options(), None)
            .map_err(|source| StartError::Bundle { origin, source })?;
        Ok((Source::File(path.to_owned()), snap))
    }

    fn add(&mut self, source: Source, snap: Snapshot) -> Result<(), StartError> {
        let name = snap.realm().to_owned();
        if self.list.iter().any(|r| r.name == name) {
            return Err(StartError::DuplicateRealm(name));
        }
        let realm = Realm {
            name,
            source,
            current: ArcSwapOption::empty(),
            replaced: std::sync::Mutex::new(None),
            loaded_at: AtomicI64::new(0),
            reload_failures: AtomicU64::new(0),
            seen: std::sync::Mutex::new(None),
            remote: None,
        };
        if let Source::File(p) = &realm.source {
            *realm
                .seen
                .lock()
                .map_err(|_| StartError::Policy("poisoned".into()))? = fingerprint(p);
        }
        realm.install(snap);
        self.list.push(Arc::new(realm));
        Ok(())
    }

    /// Re-read every file-sourced bundle whose file changed (modified time or
    /// length) and offer it to its realm. Returns, per realm that had a
    /// change, the revision now served or why the new file was refused (the
    /// old snapshot stays).
    pub fn reload_files(&self) -> Vec<(String, Result<u64, String>)> {
        let mut out = Vec::new();
        for realm in &self.list {
            realm.tidy(now());
            let Source::File(path) = &realm.source else {
                continue;
            };
            let now_seen = fingerprint(path);
            let Ok(mut seen) = realm.seen.lock() else {
                continue;
            };
            if now_seen.is_none() || *seen == now_seen {
                continue;
            }
            *seen = now_seen;
            let result = match std::fs::read(path) {
                Ok(bytes) => realm
                    .offer(&bytes, &self.load_options())
                    .map_err(|e| e.to_string()),
                Err(e) => {
                    realm.reload_failures.fetch_add(1, Relaxed);
                    Err(format!("{}: {e}", path.display()))
                }
            };
            out.push((realm.name.clone(), result));
        }
        out
    }

    /// How bundles offered to this host are verified.
    pub fn load_options(&self) -> LoadOptions<'_> {
        let trust = if self.keyring.is_empty() && self.dev {
            Trust::Dev
        } else {
            Trust::Keyring(&self.keyring)
        };
        LoadOptions {
            trust,
            limits: self.limits,
        }
    }

    /// Whether unsigned bundles are accepted.
    pub fn dev(&self) -> bool {
        self.dev
    }

    /// Every realm.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Realm>> {
        self.list.iter()
    }

    /// A realm by name.
    pub fn get(&self, name: &str) -> Option<&Arc<Realm>> {
        self.list.iter().find(|r| r.name == name)
    }

    /// Choose the realm for a request: an explicit name, else the realm whose
    /// issuer minted the token, else the only realm loaded.
    pub fn pick(
        &self,
        explicit: Option<&str>,
        issuer: Option<&str>,
    ) -> Result<&Arc<Realm>, Problem> {
        if let Some(name) = explicit {
            return self.get(name).ok_or_else(|| {
                Problem::unknown_realm(format!("no realm {name:?} is served here"))
            });
        }
        if let Some(iss) = issuer {
            return self
                .list
                .iter()
                .find(|r| r.snapshot().is_some_and(|s| s.issuer() == Some(iss)))
                .ok_or_else(|| {
                    Problem::unknown_realm("no realm here accepts tokens of this issuer")
                });
        }
        match self.list.as_slice() {
            [only] => Ok(only),
            _ => Err(Problem::unknown_realm(
                "several realms are served: name one with \"realm\"",
            )),
        }
    }

    /// Seconds the realm's bundle may age before decisions deny.
    pub fn max_staleness(&self) -> Option<i64> {
        self.max_staleness
    }

    /// Whether `snap`, served by `realm`, is older than allowed at `now`
    /// (see [`Realm::fresh_at`]).
    pub fn is_stale(&self, realm: &Realm, snap: &Snapshot, now: i64) -> bool {
        self.max_staleness
            .is_some_and(|max| now.saturating_sub(realm.fresh_at(snap)) > max)
    }
}

fn build_options() -> BuildOptions {
    BuildOptions {
        realm: "default".into(),
        revision: 1,
        created_at: now(),
        gzip: false,
    }
}

fn read_dir_files(dir: &Path) -> Result<std::collections::BTreeMap<String, Vec<u8>>, StartError> {
    let mut files = std::collections::BTreeMap::new();
    for name in pdp_core::manifest::member::SOURCE {
        let p = dir.join(name);
        if p.exists() {
            let bytes = std::fs::read(&p).map_err(|source| StartError::Read {
                path: p.clone(),
                source,
            })?;
            files.insert(name.to_owned(), bytes);
        }
    }
    Ok(files)
}

fn fingerprint(path: &Path) -> Option<(std::time::SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}
