//! `edge-host`: parse configuration, build the app, serve, map the outcome
//! to an exit code. Everything else lives in the library.

use anyhow::Context as _;
use clap::Parser;
use edge_host::Config;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

/// mimalloc: with a million users most decisions build entities from
/// cold memory, and glibc's allocator spent a fifth of the time in
/// `malloc`/`free` bookkeeping there (perf, 2026-12-01). Every program in a
/// side-by-side run uses the same allocator.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Gatehouse edge host: local authorization decisions over HTTP.
///
/// Settings come from defaults, then the --config TOML file, then
/// GATEHOUSE_* environment variables, then these flags. With no bundle or
/// source configured it serves the demo realm built from policies/, whose
/// token key is generated at start: it prints a token for alice, and
/// GET /demo/token?user=NAME mints more (on a loopback address only).
#[derive(Parser)]
#[command(name = "edge-host", version)]
struct Args {
    /// TOML file with any of the settings below (same names, snake_case).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Address to listen on [env GATEHOUSE_LISTEN; default 127.0.0.1:8180].
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Bundle file (.tar/.tar.gz) or, in dev mode, a source directory; one
    /// realm each; repeatable [env GATEHOUSE_BUNDLES, comma-separated].
    #[arg(long = "bundle")]
    bundles: Vec<PathBuf>,
    /// Store to poll for a realm's bundles: s3://bucket/prefix/REALM,
    /// https://host/path/REALM, or a local store directory /path/REALM
    /// (holding HEAD); repeatable [env GATEHOUSE_SOURCES, comma-separated].
    /// S3 region, endpoint and credentials come from the standard AWS
    /// settings (AWS_REGION, AWS_ENDPOINT_URL, profiles, roles).
    #[arg(long = "source")]
    sources: Vec<String>,
    /// Keep the last known good bundles of store-sourced realms here, and
    /// serve them at boot while the store is down [env GATEHOUSE_STATE_DIR].
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Path-style S3 addressing, for S3-compatible services
    /// [env GATEHOUSE_S3_FORCE_PATH_STYLE].
    #[arg(long)]
    s3_force_path_style: bool,
    /// Time limit of one request to a store, ms [env GATEHOUSE_SOURCE_TIMEOUT_MS; default 10000].
    #[arg(long)]
    source_timeout_ms: Option<u64>,
    /// Largest bundle archive fetched or loaded, bytes [env GATEHOUSE_MAX_BUNDLE_BYTES; default 1073741824].
    #[arg(long)]
    max_bundle_bytes: Option<u64>,
    /// Trusted bundle-signing public key (SPKI PEM) and the realm it signs,
    /// as REALM=PATH; repeatable (key rotation, a key for several realms)
    /// [env GATEHOUSE_TRUST_KEYS, comma-separated].
    #[arg(long = "trust-key")]
    trust_keys: Vec<String>,
    /// Accept unsigned bundles and source directories. Development only
    /// [env GATEHOUSE_DEV].
    #[arg(long)]
    dev: bool,
    /// Deny with reason stale_bundle, and fail /readyz, once the bundle is
    /// older than this many seconds [env GATEHOUSE_MAX_STALENESS_SECONDS].
    #[arg(long)]
    max_staleness_seconds: Option<u64>,
    /// Largest request body, bytes [env GATEHOUSE_MAX_BODY_BYTES; default 1048576].
    #[arg(long)]
    max_body_bytes: Option<usize>,
    /// Largest request head (request line + headers), bytes; more gets 431
    /// [env GATEHOUSE_MAX_HEADER_BYTES; default 16384, at least 8192].
    #[arg(long)]
    max_header_bytes: Option<usize>,
    /// Most header fields in a request; more gets 431 [env GATEHOUSE_MAX_HEADERS; default 64].
    #[arg(long)]
    max_headers: Option<usize>,
    /// Time a client has to send its request head, ms; slower clients are
    /// disconnected [env GATEHOUSE_HEADER_READ_TIMEOUT_MS; default 10000].
    #[arg(long)]
    header_read_timeout_ms: Option<u64>,
    /// Per-request time limit, ms [env GATEHOUSE_REQUEST_TIMEOUT_MS; default 5000].
    #[arg(long)]
    request_timeout_ms: Option<u64>,
    /// Requests served at once (more wait) [env GATEHOUSE_MAX_CONCURRENCY; default 4096].
    #[arg(long)]
    max_concurrency: Option<usize>,
    /// Check bundle files and stores for a new version every this many seconds; 0: never
    /// [env GATEHOUSE_RELOAD_INTERVAL_SECONDS; default 5].
    #[arg(long)]
    reload_interval_seconds: Option<u64>,
    /// Verified tokens remembered until their exp (user state is always
    /// re-checked); 0 disables [env GATEHOUSE_TOKEN_CACHE_CAPACITY; default 100000].
    #[arg(long)]
    token_cache_capacity: Option<usize>,
    /// A service bearer secret allowed to call /v1/introspect and
    /// /v1/users/{id} for one realm, as REALM:HEX (HEX its SHA-256; the
    /// secret itself is never configured); repeatable
    /// [env GATEHOUSE_SERVICE_TOKEN_SHA256, comma-separated].
    #[arg(long = "service-token-sha256")]
    service_token_sha256: Vec<String>,
}

fn config(args: Args) -> anyhow::Result<Config> {
    let env = std::env::vars().filter(|(k, _)| k.starts_with("GATEHOUSE_"));
    let mut c = Config::load(args.config.as_deref(), env)?;
    if let Some(l) = args.listen {
        c.listen = l;
    }
    if !args.bundles.is_empty() {
        c.bundles = args.bundles;
    }
    if !args.sources.is_empty() {
        c.sources = args.sources;
    }
    if args.state_dir.is_some() {
        c.state_dir = args.state_dir;
    }
    c.s3_force_path_style |= args.s3_force_path_style;
    c.source_timeout_ms = args.source_timeout_ms.unwrap_or(c.source_timeout_ms);
    c.max_bundle_bytes = args.max_bundle_bytes.unwrap_or(c.max_bundle_bytes);
    if !args.trust_keys.is_empty() {
        c.trust_keys = args.trust_keys;
    }
    c.dev |= args.dev;
    c.max_staleness_seconds = args.max_staleness_seconds.or(c.max_staleness_seconds);
    c.max_body_bytes = args.max_body_bytes.unwrap_or(c.max_body_bytes);
    c.request_timeout_ms = args.request_timeout_ms.unwrap_or(c.request_timeout_ms);
    c.max_header_bytes = args.max_header_bytes.unwrap_or(c.max_header_bytes);
    c.max_headers = args.max_headers.unwrap_or(c.max_headers);
    c.header_read_timeout_ms = args
        .header_read_timeout_ms
        .unwrap_or(c.header_read_timeout_ms);
    c.max_concurrency = args.max_concurrency.unwrap_or(c.max_concurrency);
    c.reload_interval_seconds = args
        .reload_interval_seconds
        .unwrap_or(c.reload_interval_seconds);
    c.token_cache_capacity = args.token_cache_capacity.unwrap_or(c.token_cache_capacity);
    if !args.service_token_sha256.is_empty() {
        c.service_token_sha256 = args.service_token_sha256;
    }
    Ok(c)
}

async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { () = ctrl_c => {}, () = term => {} }
    tracing::info!("shutting down: finishing in-flight requests");
}

async fn run(args: Args) -> anyhow::Result<()> {
    let config = config(args)?;
    if config.dev {
        tracing::warn!(
            "DEV MODE: unsigned bundles and source directories are accepted. Never run production like this."
        );
    }
    let (app, state) = edge_host::app(&config)?;
    if let Some(demo) = &state.demo {
        tracing::warn!(
            kid = demo.kid(),
            "DEMO REALM: no --bundle or --source is configured, so this host serves the demo realm \
             built from policies/ (fictional users), trusting only a token key generated at start \
             that dies with this process, and minting tokens for any user on request \
             (GET /demo/token, on loopback). Never run production like this."
        );
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    for realm in state.realms.iter() {
        if let Some(s) = realm.snapshot() {
            tracing::info!(
                realm = realm.name(),
                revision = s.revision(),
                users = s.directory().map(|d| d.len()),
                policies = s.policy_count(),
                source = %realm.source(),
                "serving"
            );
        }
    }
    // Store-sourced realms: one poll before saying we listen, so a host
    // whose store answers starts ready (one whose store is down serves its
    // last known good bundle, or denies, and keeps trying).
    log_syncs(edge_host::sync::sync_all(&state).await);
    if config.reload_interval_seconds > 0 {
        let state = std::sync::Arc::clone(&state);
        let every = std::time::Duration::from_secs(config.reload_interval_seconds);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let s = std::sync::Arc::clone(&state);
                if let Ok(results) =
                    tokio::task::spawn_blocking(move || s.realms.reload_files()).await
                {
                    for (realm, r) in results {
                        match r {
                            Ok(rev) => {
                                tracing::info!(realm, revision = rev, "bundle file reloaded")
                            }
                            Err(e) => {
                                tracing::warn!(realm, error = %e, "new bundle file refused; keeping the current one")
                            }
                        }
                    }
                }
                log_syncs(edge_host::sync::sync_all(&state).await);
            }
        });
    }
    println!("gatehouse edge-host listening on http://{addr}");
    if let Some(demo) = &state.demo {
        print_demo_token(demo, addr)?;
    }
    edge_host::serve(listener, app, &config, shutdown()).await;
    Ok(())
}

/// Demo mode: a ready-made token for alice, and how to get more. Written
/// to stdout like the address; a reader that stopped reading (closed its
/// end of a pipe) does not stop the host.
fn print_demo_token(demo: &edge_host::demo::Demo, addr: SocketAddr) -> anyhow::Result<()> {
    use pdp_core::token::TokenUse;
    use std::io::Write as _;
    let token = demo
        .token("alice", TokenUse::Id, edge_host::realm::now())
        .map_err(anyhow::Error::msg)?;
    let hours = edge_host::demo::TOKEN_TTL_SECONDS / 3600;
    let more = if addr.ip().is_loopback() {
        format!(
            "more (any user of policies/users.jsonl; &token_use=access for an access token): \
             curl -s 'http://{addr}{}?user=dave'",
            edge_host::demo::TOKEN_PATH
        )
    } else {
        "more tokens are minted only for a host listening on a loopback address \
         (--listen 127.0.0.1:PORT)"
            .to_owned()
    };
    let _ = writeln!(
        std::io::stdout().lock(),
        "demo realm: an ID token for alice, valid for {hours} h:\n{token}\n{more}"
    );
    Ok(())
}

fn log_syncs(
    results: Vec<(
        String,
        Result<edge_host::sync::Synced, edge_host::sync::SyncError>,
    )>,
) {
    for (realm, r) in results {
        match r {
            Ok(s) if s.installed.is_empty() => {
                tracing::debug!(realm, revision = s.revision, "store: up to date")
            }
            Ok(s) => {
                tracing::info!(realm, revision = s.revision, installed = ?s.installed, "store: new bundles installed")
            }
            Err(e) => {
                tracing::warn!(realm, kind = e.kind(), error = %e, "store poll failed; keeping the current bundle")
            }
        }
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("GATEHOUSE_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("edge-host: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("edge-host: {}", format!("{e:#}").replace('\n', " "));
            ExitCode::from(2)
        }
    }
}
