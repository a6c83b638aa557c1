//! Decision benchmarks: pdp-core at 1k and 1M users, a batch of 30, a token
//! decision, bundle load of 1M users — and raw `cedar-policy` evaluating
//! the same request over a full pre-built `Entities`, in the same run.
//!
//! Besides criterion's timings, the setup prints p50/p99 latency over
//! 100k individually timed decisions and the resident memory of the 1M
//! directory (criterion does not report either).

#![allow(
    missing_docs,
    reason = "criterion macros generate undocumented functions"
)]

use cedar_policy::{Authorizer, Context, Entities, EntityUid, Request as CedarRequest};
use criterion::{Criterion, criterion_group};
use gatehouse_benches::{bundle, load_dev, load_report, percentiles, realm_files, rss_bytes};
use pdp_core::decision::{BatchRequest, EntityRef, Request, TokenRequest};
use pdp_core::synth::user_id;
use pdp_core::{Decision, Snapshot};
use std::hint::black_box;
use std::str::FromStr;
use std::time::Instant;

/// mimalloc: with a million users most decisions build entities from
/// cold memory, and glibc's allocator spent a fifth of the time in
/// `malloc`/`free` bookkeeping there (perf, 2026-12-01). Every program in a
/// side-by-side run uses the same allocator.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn request(users: usize, i: usize) -> Request {
    // Active users only (every 50th synthetic user is suspended).
    let mut u = (i * 7919) % users;
    if u % 50 == 49 {
        u -= 1;
    }
    Request {
        principal: EntityRef::new("User", user_id(u)),
        action: EntityRef::new("Action", "readDocument"),
        resource: EntityRef::new("Document", format!("doc{}", i % 500)),
        context: serde_json::json!({"mfa": true}),
        entities: vec![],
    }
}

fn setup(users: usize) -> Snapshot {
    let files = realm_files(users);
    let bytes = bundle(&files);
    drop(files);
    load_dev(&bytes).expect("synthetic realm loads")
}

/// Requests built once: parsing the wire request is not part of a decision.
fn requests(users: usize, n: usize) -> Vec<Request> {
    (0..n).map(|i| request(users, i)).collect()
}

fn report(label: &str, snap: &Snapshot, reqs: &[Request]) -> (u64, u64) {
    let (p50, p99) = percentiles(100_000, |i| {
        let _ = black_box(
            snap.is_authorized(&reqs[i % reqs.len()])
                .map(|a| a.decision),
        );
    });
    eprintln!(
        "[percentiles] {label}: p50 {:.2} us, p99 {:.2} us",
        p50 as f64 / 1e3,
        p99 as f64 / 1e3
    );
    (p50, p99)
}

fn decisions(c: &mut Criterion) {
    let small = setup(1_000);
    let allowed = (0..1000)
        .filter(|i| {
            small.is_authorized(&request(1_000, *i)).map(|a| a.decision) == Ok(Decision::Allow)
        })
        .count();
    eprintln!("[info] 1k realm: {allowed}/1000 sample requests allowed");
    let reqs_1k = requests(1_000, 1_000);
    let (s50, _) = report("pdp-core 1k users (user cache warm)", &small, &reqs_1k);
    let small_cold = small.clone().with_user_cache(0);
    let (c50_small, _) = report("pdp-core 1k users (no user cache)", &small_cold, &reqs_1k);

    let mut g = c.benchmark_group("decision");
    let mut i = 0;
    g.bench_function("pdp-core/1k-users", |b| {
        b.iter(|| {
            i += 1;
            black_box(small.is_authorized(&reqs_1k[i % 1_000]).map(|a| a.decision))
        })
    });

    let mut i2 = 0;
    g.bench_function("pdp-core/1k-users-no-user-cache", |b| {
        b.iter(|| {
            i2 += 1;
            black_box(
                small_cold
                    .is_authorized(&reqs_1k[i2 % 1_000])
                    .map(|a| a.decision),
            )
        })
    });

    // Raw cedar-policy: the same requests over a full Entities (statics + all users).
    let full: Entities = small.full_entities(&[]).expect("full entities");
    eprintln!(
        "[info] raw cedar full Entities for 1k users: {} entities",
        full.len()
    );
    let schema = small.schema().cloned();
    let authz = Authorizer::new();
    let uid = |e: &EntityRef| EntityUid::from_str(&format!("{}::{:?}", e.ty, e.id)).expect("uid");
    let cedar_reqs: Vec<_> = reqs_1k
        .iter()
        .map(|r| {
            (
                uid(&r.principal),
                uid(&r.action),
                uid(&r.resource),
                r.context.clone(),
            )
        })
        .collect();
    // Per request, raw cedar does what a service must: parse the context
    // against the schema, build and validate the request, evaluate.
    let cedar = |i: usize| {
        let (p, a, r, c) = &cedar_reqs[i % cedar_reqs.len()];
        let ctx =
            Context::from_json_value(c.clone(), schema.as_ref().map(|s| (s, a))).expect("ctx");
        let req =
            CedarRequest::new(p.clone(), a.clone(), r.clone(), ctx, schema.as_ref()).expect("req");
        authz
            .is_authorized(&req, small.policy_set(), &full)
            .decision()
    };
    let (c50, c99) = percentiles(100_000, |i| {
        black_box(cedar(i));
    });
    eprintln!(
        "[percentiles] raw cedar-policy 1k users full Entities: p50 {:.2} us, p99 {:.2} us",
        c50 as f64 / 1e3,
        c99 as f64 / 1e3
    );
    let mut j = 0;
    g.bench_function("raw-cedar-policy/1k-users-full-entities", |b| {
        b.iter(|| {
            j += 1;
            black_box(cedar(j))
        })
    });

    let batch = BatchRequest {
        requests: (0..30)
            .map(|k| {
                let mut r = request(1_000, 1);
                r.resource = EntityRef::new("Document", format!("doc{k}"));
                r
            })
            .collect(),
        entities: vec![],
    };
    g.bench_function("pdp-core/batch-30-shared-principal-1k-users", |b| {
        b.iter(|| black_box(small.batch_is_authorized(&batch).map(|a| a.results.len())))
    });
    g.finish();
    drop(full);

    // 1M users: load time, memory, decision latency.
    let before = rss_bytes();
    let files = realm_files(1_000_000);
    let bytes = bundle(&files);
    drop(files);
    let after_bytes = rss_bytes();
    let t = Instant::now();
    let big = load_dev(&bytes).expect("1M realm loads");
    let load_s = t.elapsed().as_secs_f64();
    let after_load = rss_bytes();
    eprintln!(
        "[memory] 1M users, this process: bundle {} MB; load {:.2} s; RSS {} MB before the realm, {} MB with its bundle, {} MB loaded; directory heap ~{} MB",
        bytes.len() >> 20,
        load_s,
        before >> 20,
        after_bytes >> 20,
        after_load >> 20,
        big.directory().map_or(0, |d| d.heap_bytes()) >> 20
    );
    fresh_process_load(&bytes);
    // At 1k users the 4,096 sample requests are 1,000 distinct ones (the
    // principal repeats every 1,000, the document every 500); at 1M they are
    // 4,096 distinct principals, four times the working set in the caches.
    // The same shape at 1M (1,000 distinct requests, principals spread over
    // the whole directory) isolates what the directory's size costs.
    let reqs_1m = requests(1_000_000, 4_096);
    let reqs_1m_same: Vec<Request> = (0..4_096).map(|i| request(1_000_000, i % 1_000)).collect();
    let (b50, _) = report("pdp-core 1M users (user cache warm)", &big, &reqs_1m);
    let (w50, _) = report(
        "pdp-core 1M users, 1k run's working set (user cache warm)",
        &big,
        &reqs_1m_same,
    );
    let big_cold = big.clone().with_user_cache(0);
    let (n50, _) = report("pdp-core 1M users (no user cache)", &big_cold, &reqs_1m);
    report(
        "pdp-core 1M users, 1k run's working set (no user cache)",
        &big_cold,
        &reqs_1m_same,
    );
    drop(big_cold);
    let ratio = |a: u64, b: u64| a as f64 / b.max(1) as f64;
    eprintln!(
        "[ratio] 1M/1k p50: {:.2} with 4,096 distinct requests at 1M, {:.2} with the 1k run's working set; no user cache {:.2}",
        ratio(b50, s50),
        ratio(w50, s50),
        ratio(n50, c50_small),
    );
    let mut g = c.benchmark_group("decision");
    let mut k = 0;
    g.bench_function("pdp-core/1M-users", |b| {
        b.iter(|| {
            k += 1;
            black_box(
                big.is_authorized(&reqs_1m[k % reqs_1m.len()])
                    .map(|a| a.decision),
            )
        })
    });
    g.finish();
    let mut g = c.benchmark_group("load");
    g.sample_size(10);
    g.bench_function("pdp-core/bundle-load-1M-users", |b| {
        b.iter(|| black_box(load_dev(&bytes).map(|s| s.revision())))
    });
    g.finish();
}

fn token(c: &mut Criterion) {
    // The reference realm with the identity settings that trust the test
    // keys (policies/ itself trusts none): an RS256 ID token.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = std::collections::BTreeMap::new();
    for n in pdp_core::manifest::member::SOURCE {
        files.insert(
            n.to_owned(),
            std::fs::read(root.join("policies").join(n)).expect("policies/"),
        );
    }
    files.insert(
        "identity.json".to_owned(),
        std::fs::read(root.join("pdp-core/tests/keys/identity.json")).expect("test identity"),
    );
    let opts = pdp_core::source::BuildOptions {
        realm: "default".into(),
        revision: 1,
        created_at: 0,
        gzip: false,
    };
    let snap =
        load_dev(&pdp_core::source::build(&files, &opts, None).expect("build")).expect("load");
    let key = std::fs::read(root.join("pdp-core/tests/keys/rs256.key.pem")).expect("key");
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    h.kid = Some("test-rs256".into());
    let now = 1_800_000_000;
    let claims = serde_json::json!({"sub": "alice", "iss": "https://gatehouse.local/realms/default", "aud": "gatehouse-demo-client",
        "token_use": "id", "iat": now - 10, "exp": now + 3600});
    let jwt = jsonwebtoken::encode(
        &h,
        &claims,
        &jsonwebtoken::EncodingKey::from_rsa_pem(&key).expect("pem"),
    )
    .expect("sign");
    let req = TokenRequest {
        token: jwt,
        action: EntityRef::new("Action", "readDocument"),
        resource: EntityRef::new("Document", "design-doc"),
        context: serde_json::json!({}),
        entities: vec![],
    };
    assert_eq!(
        snap.is_authorized_with_token(&req, now).map(|a| a.decision),
        Ok(Decision::Allow)
    );
    let verified = snap.verify_token(&req.token, now).expect("token");
    let mut g = c.benchmark_group("token");
    g.bench_function("pdp-core/rs256-verify-and-decide", |b| {
        b.iter(|| black_box(snap.is_authorized_with_token(&req, now).map(|a| a.decision)))
    });
    g.bench_function("pdp-core/cached-token-decide", |b| {
        b.iter(|| black_box(snap.decide_verified(&verified, &req).map(|a| a.decision)))
    });
    g.finish();
}

/// Environment variable naming a bundle file: the bench binary then only
/// loads it and reports (see [`probe`]).
const PROBE: &str = "GATEHOUSE_RESIDENT_PROBE";

/// Load the 1M bundle in a fresh child process and print its load time and
/// resident growth. In this process the pages the generated realm freed are
/// reused by the load, which hides part of its cost; a fresh process gives
/// the figure an edge host booting on the bundle would see.
fn fresh_process_load(bytes: &[u8]) {
    let run = || -> Result<String, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let path = dir.path().join("bundle.tar");
        std::fs::write(&path, bytes).map_err(|e| e.to_string())?;
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let out = std::process::Command::new(exe)
            .env(PROBE, &path)
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    match run() {
        Ok(line) => eprintln!("[memory] 1M users, fresh process: {line}"),
        Err(e) => eprintln!("[memory] fresh-process probe failed: {e}"),
    }
}

/// The child side of [`fresh_process_load`] (see [`load_report`]).
fn probe(path: &str) {
    match load_report(path) {
        Ok(line) => println!("{line}"),
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    }
}

criterion_group!(benches, token, decisions);

fn main() {
    if let Ok(path) = std::env::var(PROBE) {
        probe(&path);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
