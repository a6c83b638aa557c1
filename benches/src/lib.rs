//! Shared setup for the Gatehouse benchmarks: synthetic realms loaded
//! without per-user schema validation (synthetic users are generated in
//! canonical form already), and percentile measurement.

use pdp_core::bundle::{BundleHeader, write_archive};
use pdp_core::manifest::BundleKind;
use pdp_core::{Limits, LoadOptions, Snapshot, Trust, load};
use std::collections::BTreeMap;
use std::time::Instant;

/// The files of a synthetic realm.
pub fn realm_files(users: usize) -> BTreeMap<String, Vec<u8>> {
    pdp_core::synth::realm(users, 42)
}

/// A bundle archive (plain tar) of those files.
pub fn bundle(files: &BTreeMap<String, Vec<u8>>) -> Vec<u8> {
    let header = BundleHeader {
        realm: "bench".into(),
        revision: 1,
        kind: BundleKind::Snapshot,
        base_revision: None,
        created_at: 0,
        identity: None,
    };
    write_archive(&header, files, None, false).unwrap_or_default()
}

/// Load a bundle in dev mode.
pub fn load_dev(bytes: &[u8]) -> Option<Snapshot> {
    load(
        bytes,
        &LoadOptions {
            trust: Trust::Dev,
            limits: Limits::default(),
        },
        None,
    )
    .ok()
}

/// Resident set size of this process, bytes (Linux).
pub fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u64>().ok())
        })
        .map_or(0, |pages| pages * 4096)
}

/// Load the bundle file at `path` in this process and describe what it
/// cost: load time, growth of the resident set beyond the bundle's own
/// bytes (which a server drops once loaded), and what the process holds
/// once the bundle is dropped and the allocator has returned the load's
/// transient buffers (mimalloc does so a second after they are freed, on
/// later allocator activity: a serving process gets there by itself). Run
/// it in a fresh process: pages freed earlier would hide part of the cost.
pub fn load_report(path: &str) -> Result<String, String> {
    let start = rss_bytes();
    let bytes = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
    let before = rss_bytes();
    let t = Instant::now();
    let snap = load_dev(&bytes).ok_or_else(|| format!("{path}: the bundle does not load"))?;
    let load_s = t.elapsed().as_secs_f64();
    let after = rss_bytes();
    let bundle_mb = bytes.len() >> 20;
    drop(bytes);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    for i in 0..10_000 {
        std::hint::black_box(vec![0u8; 64 + i % 4096]);
    }
    let settled = rss_bytes();
    Ok(format!(
        "load {load_s:.2} s; resident growth {} MB beyond the {bundle_mb} MB bundle already read (RSS {} -> {} MB); settled with the bundle dropped: {} MB beyond the process at start; directory heap ~{} MB",
        after.saturating_sub(before) >> 20,
        before >> 20,
        after >> 20,
        settled.saturating_sub(start) >> 20,
        snap.directory().map_or(0, |d| d.heap_bytes()) >> 20
    ))
}

/// Run `f` `n` times timing each call; return (p50, p99) in nanoseconds.
pub fn percentiles(n: usize, mut f: impl FnMut(usize)) -> (u64, u64) {
    let mut t = Vec::with_capacity(n);
    for i in 0..n {
        let s = Instant::now();
        f(i);
        t.push(u64::try_from(s.elapsed().as_nanos()).unwrap_or(u64::MAX));
    }
    t.sort_unstable();
    let at = |q: f64| t.get(((n as f64) * q) as usize).copied().unwrap_or(0);
    (at(0.50), at(0.99))
}

/// A control-plane service on the embedded backends under `dir`: a SQLite
/// file `cp.db`, a local-directory store `store/`, the local identity
/// provider, the system clock.
pub async fn local_service(
    dir: &std::path::Path,
    settings: control_plane::Settings,
) -> control_plane::Service {
    let store = std::sync::Arc::new(object_store::LocalDirStore::new(dir.join("store")));
    service_on(dir, store, settings).await
}

/// A control-plane service on a SQLite file `dir/cp.db` publishing to
/// `store`, with the local identity provider and the system clock.
pub async fn service_on(
    dir: &std::path::Path,
    store: std::sync::Arc<dyn object_store::ObjectStore>,
    settings: control_plane::Settings,
) -> control_plane::Service {
    let repo = Db::Sqlite(dir.join("cp.db")).open().await;
    service_with(repo, store, settings)
}

/// A control-plane service on `repo` publishing to `store`, with the local
/// identity provider and the system clock.
pub fn service_with(
    repo: std::sync::Arc<dyn control_plane::ports::repository::Repository>,
    store: std::sync::Arc<dyn object_store::ObjectStore>,
    settings: control_plane::Settings,
) -> control_plane::Service {
    use control_plane::backend::local_identity::LocalIdentity;
    use std::sync::Arc;
    let identity = Arc::new(LocalIdentity::new(repo.clone(), "https://cp.bench", 3600));
    control_plane::Service::new(
        repo,
        control_plane::ports::identity::Identities::new(identity),
        store,
        Arc::new(control_plane::ports::clock::SystemClock),
        settings,
    )
}

/// A benchmark's database: each [`Db::open`] is one more control plane's
/// repository on it (its own connections).
#[derive(Debug, Clone)]
pub enum Db {
    /// A SQLite file.
    Sqlite(std::path::PathBuf),
    /// A schema of its own in the PostgreSQL database `url` names.
    Postgres {
        /// `postgres://...` (`GATEHOUSE_BENCH_POSTGRES`).
        url: String,
        /// Created if missing.
        schema: String,
    },
}

impl Db {
    /// The database of a benchmark run: PostgreSQL when
    /// `GATEHOUSE_BENCH_POSTGRES` names one and `postgres` is asked for
    /// (a fresh schema named after `name` and this process), else a SQLite
    /// file under `dir`.
    pub fn for_run(dir: &std::path::Path, name: &str, postgres: bool) -> Option<Db> {
        if !postgres {
            return Some(Db::Sqlite(dir.join(format!("{name}.db"))));
        }
        let url = std::env::var("GATEHOUSE_BENCH_POSTGRES").ok()?;
        Some(Db::Postgres {
            url,
            schema: format!("bench_{name}_{}", std::process::id()),
        })
    }

    /// Which backend, for reports.
    pub fn backend(&self) -> &'static str {
        match self {
            Db::Sqlite(_) => "SQLite",
            Db::Postgres { .. } => "PostgreSQL",
        }
    }

    /// One more repository on this database.
    pub async fn open(&self) -> std::sync::Arc<dyn control_plane::ports::repository::Repository> {
        use control_plane::backend::postgres::PostgresRepository;
        use control_plane::backend::sqlite::SqliteRepository;
        match self {
            Db::Sqlite(path) => match SqliteRepository::open(path, bench_keyring()) {
                Ok(r) => std::sync::Arc::new(r),
                Err(e) => panic!("{}: {e}", path.display()),
            },
            Db::Postgres { url, schema } => {
                match PostgresRepository::connect_in_schema(url, schema, bench_keyring()).await {
                    Ok(r) => std::sync::Arc::new(r),
                    Err(e) => panic!("{schema}: {e}"),
                }
            }
        }
    }
}

/// The key-encryption key of benchmark databases: fixed, so every
/// repository a run opens on one database reads the others' secrets.
pub fn bench_keyring() -> std::sync::Arc<control_plane::secrets::Keyring> {
    match control_plane::secrets::Keyring::parse(
        "bench-1:Yl1ZbdyhvIi8Fw+7xJ2mg0wDkJ6vDfJqUQTzbh9tF0A=",
    ) {
        Ok(k) => std::sync::Arc::new(k),
        Err(e) => panic!("bench KEK: {e}"),
    }
}
