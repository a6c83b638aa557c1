//! A loop of decisions over a synthetic realm, for `perf record`.
//! `cargo run --profile bench -p gatehouse-benches --example profile_decide -- USERS N [DISTINCT]`
//! (N decisions cycling over DISTINCT requests, 4,096 in the `decision`
//! bench; every request distinct by default)

use gatehouse_benches::{bundle, load_dev, realm_files};
use pdp_core::decision::{EntityRef, Request};
use pdp_core::synth::user_id;
use std::hint::black_box;
use std::time::Instant;

/// The allocator the edge host and the benches use.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let mut args = std::env::args().skip(1);
    let users: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(200_000);
    let distinct: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(n).max(1);
    let bytes = bundle(&realm_files(users));
    let t = Instant::now();
    let snap = load_dev(&bytes).unwrap_or_else(|| std::process::exit(1));
    println!("load {:.3} s", t.elapsed().as_secs_f64());
    drop(bytes);
    let t = Instant::now();
    for i in (0..n).map(|i| i % distinct) {
        let mut u = (i * 7919) % users;
        if u % 50 == 49 {
            u -= 1;
        }
        let r = Request {
            principal: EntityRef::new("User", user_id(u)),
            action: EntityRef::new("Action", "readDocument"),
            resource: EntityRef::new("Document", format!("doc{}", i % 500)),
            context: serde_json::json!({"mfa": true}),
            entities: vec![],
        };
        let _ = black_box(snap.is_authorized(&r));
    }
    println!(
        "{:.2} us/decision",
        t.elapsed().as_secs_f64() * 1e6 / n as f64
    );
}
