//! A loopback HTTP proxy that can fail on purpose, for tests of what a
//! store's clients do when S3 (moto) answers 500/503 for a while or is not
//! there at all: point [`Connect::endpoint`](crate::Connect::endpoint) at
//! [`FaultProxy::url`], and switch faults on and off between calls.
//!
//! Requests are forwarded unchanged (`Host` included, so signatures still
//! hold), one upstream connection per request.

use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use tokio::net::{TcpListener, TcpStream};

type Body = BoxBody<Bytes, hyper::Error>;
type Failure = Box<dyn std::error::Error + Send + Sync>;

/// A proxy on `127.0.0.1:<free port>` in front of one HTTP server. Stops
/// (and drops its connections) when dropped.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: tokio::task::JoinHandle<()>,
}

#[derive(Debug)]
struct Shared {
    /// `host:port` of the server behind the proxy.
    target: String,
    down: AtomicBool,
    /// Requests still to fail, and with which status.
    fail: Mutex<(u32, u16)>,
    requests: AtomicU64,
    forwarded: AtomicU64,
}

impl FaultProxy {
    /// Start a proxy forwarding to `target` (`http://host:port` or
    /// `host:port`), on the current Tokio runtime, with no fault switched on.
    pub async fn start(target: &str) -> std::io::Result<FaultProxy> {
        let target = target
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            target,
            down: AtomicBool::new(false),
            fail: Mutex::new((0, 503)),
            requests: AtomicU64::new(0),
            forwarded: AtomicU64::new(0),
        });
        let accept = tokio::spawn(accept(listener, Arc::clone(&shared)));
        Ok(FaultProxy {
            addr,
            shared,
            accept,
        })
    }

    /// `http://127.0.0.1:<port>`: the endpoint to give clients.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address the proxy listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Answer the next `n` requests with `status` (500, 503, ...) and an S3
    /// error document, without forwarding them. Replaces any faults still
    /// pending; `n = 0` clears them.
    pub fn fail_next(&self, n: u32, status: u16) {
        *self.shared.fail.lock().unwrap_or_else(|e| e.into_inner()) = (n, status);
    }

    /// Down: every connection is closed without an answer (new ones at
    /// once, open ones at their next request), like a server that is gone.
    pub fn set_down(&self, down: bool) {
        self.shared.down.store(down, SeqCst);
    }

    /// Requests received so far: failed, forwarded, or dropped while down
    /// (a connection closed at once while down counts as one).
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(SeqCst)
    }

    /// Requests forwarded to the target so far.
    pub fn forwarded(&self) -> u64 {
        self.shared.forwarded.load(SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn accept(listener: TcpListener, shared: Arc<Shared>) {
    // Owned here, so aborting this task ends every connection too.
    let mut connections = tokio::task::JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let Ok((stream, _)) = listener.accept().await else {
            // Out of descriptors or the like: let other tasks run first.
            tokio::task::yield_now().await;
            continue;
        };
        if shared.down.load(SeqCst) {
            shared.requests.fetch_add(1, SeqCst);
            drop(stream);
            continue;
        }
        let shared = Arc::clone(&shared);
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |req| handle(Arc::clone(&shared), req));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Response<Body>, Failure> {
    shared.requests.fetch_add(1, SeqCst);
    if shared.down.load(SeqCst) {
        // An error from the service closes the connection unanswered.
        return Err("the fault proxy is down".into());
    }
    let fault = {
        let mut fail = shared.fail.lock().unwrap_or_else(|e| e.into_inner());
        match fail.0 {
            0 => None,
            _ => {
                fail.0 -= 1;
                Some(fail.1)
            }
        }
    };
    if let Some(status) = fault {
        return Ok(fault_response(status));
    }
    let stream = TcpStream::connect(&shared.target).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let response = sender.send_request(req).await?;
    shared.forwarded.fetch_add(1, SeqCst);
    Ok(response.map(BodyExt::boxed))
}

/// An S3-style error answer.
fn fault_response(status: u16) -> Response<Body> {
    let code = match status {
        500 => "InternalError",
        503 => "ServiceUnavailable",
        _ => "InjectedFault",
    };
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>injected by the fault proxy</Message></Error>"
    );
    let mut response = Response::new(Full::new(Bytes::from(xml)).map_err(|e| match e {}).boxed());
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/xml"),
    );
    response
}
