//! `control-plane`: the admin API server and the command line. Everything
//! but argument parsing, choosing the backends from the settings and exit
//! codes lives in the library.

use clap::Parser;
use control_plane::cli::{Cli, Command, KekCmd, openapi_text, run};
use control_plane::config::Config;
use std::io::Write as _;
use std::process::ExitCode;
use std::sync::Arc;

/// Write to stdout; a reader that went away (`| head`) is not a panic.
fn out(text: &str) {
    let _ = std::io::stdout().write_all(text.as_bytes());
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut config = match Config::load(cli.config.as_deref(), std::env::vars()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = config.apply_flags(&cli.settings) {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    // A command that needs no database opens none.
    if matches!(cli.command, Command::Openapi) {
        return match openapi_text() {
            Ok(doc) => {
                out(&doc);
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(1)
            }
        };
    }
    init_logs(matches!(cli.command, Command::Serve));
    // Every other command opens the repository, whose secrets are sealed
    // under the key-encryption key: without one, nothing starts.
    let keyring = match config.keyring() {
        Ok(k) => k,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if keyring.is_ephemeral() {
        // Both would seal existing secrets under a key that dies with
        // this process.
        if matches!(cli.command, Command::Copy { .. } | Command::Kek(_)) {
            eprintln!("error: {}", control_plane::config::EPHEMERAL_REFUSED);
            return ExitCode::from(2);
        }
        eprintln!("{}", control_plane::secrets::EPHEMERAL_WARNING);
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: runtime: {e}");
            return ExitCode::from(1);
        }
    };
    rt.block_on(async move {
        if let Command::Copy { from, to } = &cli.command {
            let copied = async {
                // The copy carries ciphertext as it is: both sides share
                // the key-encryption keys.
                let from = control_plane::config::open_repository(from, keyring.clone()).await?;
                let to = control_plane::config::open_repository(to, keyring.clone()).await?;
                control_plane::service::copy::copy(from, to).await
            };
            return match copied.await {
                Ok(report) => {
                    out(&format!(
                        "{}\n",
                        serde_json::to_string_pretty(&report).unwrap_or_default()
                    ));
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(1)
                }
            };
        }
        if matches!(cli.command, Command::Kek(KekCmd::Rewrap)) {
            let rewrapped = async {
                let repo = config.repository(keyring.clone()).await?;
                control_plane::service::kek::rewrap(&repo).await
            };
            return match rewrapped.await {
                Ok(report) => {
                    out(&format!(
                        "{}\n",
                        serde_json::to_string_pretty(&report).unwrap_or_default()
                    ));
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(1)
                }
            };
        }
        if matches!(cli.command, Command::Migrate) {
            return match config.repository(keyring.clone()).await {
                Ok(repo) => {
                    out(&format!(
                        "{}\n",
                        serde_json::json!({"db": repo.describe(), "schema": "up to date"})
                    ));
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(1)
                }
            };
        }
        let service = match config.service(keyring.clone()).await {
            Ok(s) => Arc::new(s),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(1);
            }
        };
        if matches!(cli.command, Command::Serve) {
            return match serve(service, &config, keyring.is_ephemeral()).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(1)
                }
            };
        }
        match run(&service, cli.command).await {
            Ok(v) => {
                match v {
                    serde_json::Value::Null => {}
                    serde_json::Value::String(s) => out(&s),
                    v => out(&format!(
                        "{}\n",
                        serde_json::to_string_pretty(&v).unwrap_or_default()
                    )),
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(e.exit_code())
            }
        }
    })
}

/// Logs: `serve`'s on stdout from `info`; a command's on stderr (its
/// stdout is its JSON answer) from `warn`, so what the repository says as
/// it opens (secrets it sealed) is seen. `GATEHOUSE_LOG` overrides.
fn init_logs(serve: bool) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("GATEHOUSE_LOG").unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new(if serve { "info" } else { "warn" })
        });
    let logs = tracing_subscriber::fmt().with_env_filter(filter);
    if serve {
        logs.init();
    } else {
        logs.with_writer(std::io::stderr).init();
    }
}

/// Serve the admin API until interrupted.
async fn serve(
    service: Arc<control_plane::Service>,
    config: &Config,
    ephemeral_kek: bool,
) -> anyhow::Result<()> {
    if ephemeral_kek {
        tracing::warn!("{}", control_plane::secrets::EPHEMERAL_WARNING);
    }
    // Admin actions this build added are authorizable on an admin realm
    // made by an older one.
    service.upgrade_admin_realm().await?;
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let addr = listener.local_addr()?;
    println!("control plane listening on http://{addr} (docs: http://{addr}/docs)");
    tracing::info!(%addr, store = %service.store().describe(), "serving");
    // Edge hosts count a realm fresh only as long as its HEAD was signed
    // recently: keep every HEAD signed while serving.
    tokio::spawn(Arc::clone(&service).keep_heads_signed());
    // A bound on each request (an import of a million users takes about a
    // minute) and on how many run at once (the database serialises writes
    // anyway).
    let app = control_plane::http::app(service)
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            std::time::Duration::from_secs(300),
        ))
        .layer(tower::limit::GlobalConcurrencyLimitLayer::new(256));
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = async {
                    match term.as_mut() {
                        Some(t) => { t.recv().await; }
                        None => std::future::pending::<()>().await,
                    }
                } => {}
            }
            tracing::info!("shutting down");
        })
        .await?;
    Ok(())
}
