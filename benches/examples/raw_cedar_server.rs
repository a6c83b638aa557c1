//! The peer for the edge host's load test: the smallest reasonable HTTP
//! decision service built on raw `cedar-policy` — one full `Entities` of
//! the realm built at start, and per request what such a service must do
//! (parse the JSON, build the context against the schema, validate the
//! request, evaluate). Same wire shape as `/v1/is_authorized`, same
//! realm (`policies/`), same server stack (axum on tokio).
//!
//! `cargo run --release -p gatehouse-benches --example raw_cedar_server [ADDR]`
//!
//! `raw_cedar_server --write-entities FILE` writes that `Entities` as Cedar
//! JSON and exits (the load test hands it to cedar-agent).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cedar_policy::{Authorizer, Context, Entities, EntityUid, PolicySet, Request, Schema};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;

/// mimalloc: with a million users most decisions build entities from
/// cold memory, and glibc's allocator spent a fifth of the time in
/// `malloc`/`free` bookkeeping there (perf, 2026-12-01). Every program in a
/// side-by-side run uses the same allocator.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Peer {
    policies: PolicySet,
    entities: Entities,
    schema: Option<Schema>,
    authorizer: Authorizer,
}

fn uid(v: &Value) -> Option<EntityUid> {
    let ty = v.get("type")?.as_str()?;
    let id = v.get("id")?.as_str()?;
    EntityUid::from_str(&format!("{ty}::{id:?}")).ok()
}

fn decide(peer: &Peer, body: &[u8]) -> Result<Value, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let field = |k: &str| v.get(k).and_then(uid).ok_or(format!("bad {k}"));
    let (p, a, r) = (field("principal")?, field("action")?, field("resource")?);
    let ctx = Context::from_json_value(
        v.get("context").cloned().unwrap_or_else(|| json!({})),
        peer.schema.as_ref().map(|s| (s, &a)),
    )
    .map_err(|e| e.to_string())?;
    let req = Request::new(p, a, r, ctx, peer.schema.as_ref()).map_err(|e| e.to_string())?;
    let resp = peer
        .authorizer
        .is_authorized(&req, &peer.policies, &peer.entities);
    let mut determining: Vec<String> = resp
        .diagnostics()
        .reason()
        .map(ToString::to_string)
        .collect();
    determining.sort();
    Ok(json!({
        "decision": format!("{:?}", resp.decision()),
        "determining_policies": determining,
    }))
}

async fn is_authorized(State(peer): State<Arc<Peer>>, body: Bytes) -> Response {
    match decide(&peer, &body) {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, e).into_response(),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let addr = args
        .first()
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:0".into());
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
    let mut files = BTreeMap::new();
    for n in pdp_core::manifest::member::SOURCE {
        if let Ok(b) = std::fs::read(dir.join(n)) {
            files.insert(n.to_owned(), b);
        }
    }
    let options = pdp_core::source::BuildOptions {
        realm: "default".into(),
        revision: 1,
        created_at: 0,
        gzip: false,
    };
    let (_, snap) =
        pdp_core::source::build_and_load(&files, &options, None).expect("policies/ builds");
    let peer = Arc::new(Peer {
        policies: snap.policy_set().clone(),
        entities: snap.full_entities(&[]).expect("entities"),
        schema: snap.schema().cloned(),
        authorizer: Authorizer::new(),
    });
    if let (Some("--write-entities"), Some(path)) = (args.first().map(String::as_str), args.get(1))
    {
        let file = std::fs::File::create(path).expect("entities file");
        peer.entities.write_to_json(file).expect("entities written");
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&addr).await.expect("bind");
        println!(
            "raw cedar-policy server listening on http://{}",
            listener.local_addr().expect("addr")
        );
        let app = axum::Router::new()
            .route("/v1/is_authorized", axum::routing::post(is_authorized))
            .with_state(peer);
        axum::serve(listener, app).await.expect("serve");
    });
}
