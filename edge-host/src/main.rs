//! `edge-host`: parse configuration, build the app, serve, map the outcome
//! to an exit code. Everything else lives in the library.

use anyhow::Context as _;
use edge_host::Config;
use std::net::SocketAddr;
use std::process::ExitCode;

/// mimalloc: with a million users most decisions build entities from
/// cold memory, and glibc's allocator spent a fifth of the time in
/// `malloc`/`free` bookkeeping there (perf, 2026-12-01). Every program in a
/// side-by-side run uses the same allocator.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

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

async fn run(args: clap::ArgMatches) -> anyhow::Result<()> {
    // Defaults < --config file < GATEHOUSE_* variables < flags; every
    // setting is declared once, in edge_host::config.
    let env = std::env::vars().filter(|(k, _)| k.starts_with(edge_host::config::ENV_PREFIX));
    let config = Config::from_matches(&args, env)?;
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
             (GET /demo/token, to callers on this machine). Never run production like this."
        );
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    // Config::serves_demo refuses a demo beyond loopback before this; should
    // that ever change, the demo (and the token it prints) still never
    // starts on an address reachable from elsewhere.
    anyhow::ensure!(
        state.demo.is_none() || addr.ip().to_canonical().is_loopback(),
        "not serving the demo realm on {addr}: not a loopback address"
    );
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
    let first = edge_host::sync::sync_all(&state).await;
    // A staleness limit the realm's control plane cannot keep (it re-signs
    // HEAD too rarely) would deny at random: refuse to start instead.
    for (_, r) in &first {
        if let Err(e @ edge_host::sync::SyncError::StalenessLimit(_)) = r {
            anyhow::bail!("{e}");
        }
    }
    log_syncs(first);
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
    // Decision logs: write (or upload) what is buffered before exiting; a
    // sink that does not finish in time loses it (the counters say how much).
    if let Some(log) = &state.decision_log {
        let c = log.counts();
        if !log.close(std::time::Duration::from_secs(30)).await {
            tracing::warn!(pending = c.pending, "decision log: not flushed within 30 s");
        }
    }
    Ok(())
}

/// Demo mode: a ready-made token for alice, and how to get more, for a
/// host on a loopback address only. Written to stdout like the address; a reader that stopped reading (closed its
/// end of a pipe) does not stop the host.
fn print_demo_token(demo: &edge_host::demo::Demo, addr: SocketAddr) -> anyhow::Result<()> {
    use pdp_core::token::TokenUse;
    use std::io::Write as _;
    let token = demo
        .token("alice", TokenUse::Id, edge_host::realm::now())
        .map_err(anyhow::Error::msg)?;
    let hours = edge_host::demo::TOKEN_TTL_SECONDS / 3600;
    let more = format!(
        "more (any user of policies/users.jsonl; &token_use=access for an access token): \
         curl -s 'http://{addr}{}?user=dave'",
        edge_host::demo::TOKEN_PATH
    );
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
    let args = Config::command().get_matches();
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
