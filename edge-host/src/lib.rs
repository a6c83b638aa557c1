#![doc = include_str!("../README.md")]

pub mod api;
pub mod authzen;
pub mod avp;
pub mod config;
pub mod decision_log;
pub mod demo;
pub mod forward_auth;
pub mod lkg;
pub mod metrics;
pub mod problem;
pub mod realm;
pub mod store;
pub mod sync;
pub mod token_cache;

use axum::Router;
use axum::routing::{any, get, post};
use std::sync::Arc;
use std::time::Duration;

pub use config::Config;
pub use realm::{Realms, StartError};

/// The whole service for `config`, ready to serve or to drive in-process
/// with `tower::ServiceExt::oneshot`. Loads every bundle first: a host that
/// cannot load its bundles does not start.
pub fn app(config: &Config) -> Result<(Router, Arc<api::AppState>), StartError> {
    app_with(config, decision_log::Hooks::default())
}

/// [`app`] with the decision log's clock, sampling draws, sink or S3
/// endpoint chosen by the caller (tests).
pub fn app_with(
    config: &Config,
    hooks: decision_log::Hooks,
) -> Result<(Router, Arc<api::AppState>), StartError> {
    let service_tokens = config
        .service_credentials()
        .map_err(|m| StartError::Config(format!("service_token_sha256: {m}")))?;
    // The demo realm, and so a token key generated here, only when nothing
    // else is configured (see `Config::serves_demo`).
    let demo = if config.serves_demo().map_err(StartError::Config)? {
        Some(demo::Demo::generate().map_err(StartError::Config)?)
    } else {
        None
    };
    let realms = Realms::from_config(config, demo.as_ref())?;
    let decision_log =
        decision_log::DecisionLog::start(config, hooks).map_err(StartError::Config)?;
    let state = Arc::new(api::AppState {
        realms,
        metrics: metrics::Metrics::default(),
        tokens: token_cache::TokenCache::new(config.token_cache_capacity),
        service_tokens,
        user_state_detail: config.user_state_detail.clone(),
        authzen_pdp_url: match &config.authzen_pdp_url {
            Some(u) => u.trim_end_matches('/').to_owned(),
            None => format!("http://{}", config.listen),
        },
        forward_auth: forward_auth::Trust {
            proxy: config.forward_auth_proxy,
            trusted_hops: config.forward_auth_trusted_hops,
        },
        demo,
        decision_log,
    });
    Ok((router(Arc::clone(&state), config), state))
}

/// The routes and hardening layers over `state`.
pub fn router(state: Arc<api::AppState>, config: &Config) -> Router {
    let mut routes = Router::<Arc<api::AppState>>::new();
    if state.demo.is_some() {
        // Demo mode only: with a bundle or a source there is no such route.
        routes = routes.route(demo::TOKEN_PATH, get(demo::token));
    }
    let routes = routes
        .route("/v1/is_authorized", post(api::is_authorized))
        .route("/v1/batch_is_authorized", post(api::batch_is_authorized))
        .route(
            "/v1/is_authorized_with_token",
            post(api::is_authorized_with_token),
        )
        .route("/access/v1/evaluation", post(api::authzen_evaluation))
        .route("/access/v1/evaluations", post(api::authzen_evaluations))
        .route(
            "/access/v1/search/subject",
            post(api::authzen_search_subject),
        )
        .route(
            "/access/v1/search/resource",
            post(api::authzen_search_resource),
        )
        .route("/access/v1/search/action", post(api::authzen_search_action))
        .route(
            "/.well-known/authzen-configuration",
            get(api::authzen_configuration),
        )
        .route("/", post(api::avp))
        .route(forward_auth::PREFIX, any(forward_auth::forward_auth))
        .route(
            &format!("{}/{{*path}}", forward_auth::PREFIX),
            any(forward_auth::forward_auth),
        )
        .route("/v1/introspect", post(api::introspect))
        .route("/v1/users/{id}", get(api::user))
        .route("/healthz", get(api::healthz))
        .route("/readyz", get(api::readyz))
        .route("/metrics", get(api::metrics))
        .route("/v1/status", get(api::status))
        .fallback(api::not_found)
        .with_state(Arc::clone(&state));
    harden(routes, &state, config)
}

/// The layers every route is served through: a handler that panics is
/// answered 500 (problem+json, counted in `/metrics`) and the host keeps
/// serving; an `X-Request-ID` is echoed on every response, errors
/// included; body size, time and concurrency are bounded.
pub fn harden(routes: Router, state: &Arc<api::AppState>, config: &Config) -> Router {
    let panicked = {
        let state = Arc::clone(state);
        move |_: Box<dyn std::any::Any + Send + 'static>| {
            state.metrics.record_panic();
            axum::response::IntoResponse::into_response(problem::Problem::internal())
        }
    };
    routes
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(panicked))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(
            config.max_body_bytes,
        ))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            Duration::from_millis(config.request_timeout_ms),
        ))
        .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
            config.max_concurrency,
        ))
        .layer(tower_http::propagate_header::PropagateHeaderLayer::new(
            axum::http::HeaderName::from_static("x-request-id"),
        ))
}

/// Serve `app` on `listener` until `shutdown` completes, then stop
/// accepting and let in-flight requests finish. HTTP/1.1 with keep-alive;
/// request heads limited in size, field count and time to arrive (the
/// body, time and concurrency limits are layers of [`router`]). When the
/// host serves the demo realm, every request carries its connection's peer
/// address as [`axum::extract::ConnectInfo`]`<SocketAddr>` (what the demo's
/// token endpoint tells local callers by); otherwise nothing is added to a
/// request (an extension is an allocation per request on the hot path).
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    config: &Config,
    shutdown: impl std::future::Future<Output = ()>,
) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(config.header_read_timeout_ms))
        .max_buf_size(config.max_header_bytes.max(8192))
        .max_headers(config.max_headers);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let demo = config.serves_demo().unwrap_or(false);
    let mut connections = app
        .clone()
        .into_make_service_with_connect_info::<std::net::SocketAddr>();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: back off, go on.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        if demo {
            // The router with this connection's ConnectInfo (never fails).
            let Ok(service) = tower::Service::call(&mut connections, peer).await;
            let service = hyper_util::service::TowerToHyperService::new(service);
            let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
            tokio::spawn(async move {
                let _ = conn.await;
            });
        } else {
            let service = hyper_util::service::TowerToHyperService::new(app.clone());
            let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
            tokio::spawn(async move {
                let _ = conn.await;
            });
        }
    }
    drop(listener);
    graceful.shutdown().await;
}
