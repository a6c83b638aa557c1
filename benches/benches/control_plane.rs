//! Control-plane benchmarks: one lifecycle change committed and published
//! as a signed delta to the local store (the path behind every admin
//! call with auto-publish), on a realm of 10,000 users in a SQLite file.
//! The 1M-user import and compaction are one-shot measurements:
//! `benches/control-plane/run` (example `cp_scale`).

#![allow(
    missing_docs,
    reason = "criterion macros generate undocumented functions"
)]

use control_plane::Db;
use control_plane::import::Format;
use control_plane::objstore::LocalDirStore;
use control_plane::publish::Publisher;
use control_plane::realm::NewRealm;
use criterion::{Criterion, criterion_group, criterion_main};
use gatehouse_benches::percentiles;
use pdp_core::LifecycleAction;
use std::hint::black_box;

const USERS: usize = 10_000;

fn lifecycle_to_delta(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(&dir.path().join("cp.db")).expect("db");
    db.create_realm(
        &NewRealm {
            name: "bench".into(),
            ..NewRealm::default()
        },
        "https://cp.bench",
        1,
    )
    .expect("realm");
    let mut lines = String::new();
    for i in 0..USERS {
        lines.push_str(&format!(
            "{{\"id\":\"u{i}\",\"username\":\"user{i}\",\"email\":\"user{i}@example.com\",\"state\":\"Active\",\"attrs\":{{\"department\":\"eng\",\"level\":{}}}}}\n",
            i % 7
        ));
    }
    db.import_users("bench", lines.as_bytes(), Format::JsonLines, 1)
        .expect("import");
    let store = LocalDirStore::open(dir.path().join("store")).expect("store");
    let publisher = Publisher::new(&db, &store, "", 0);
    publisher.publish("bench", 1).expect("first snapshot");

    // Suspend and resume alternately, each published at once.
    let mut n = 0_usize;
    let mut step = || {
        let user = format!("u{}", (n / 2) % USERS);
        let action = if n.is_multiple_of(2) {
            LifecycleAction::Suspend
        } else {
            LifecycleAction::Resume
        };
        n += 1;
        db.lifecycle("bench", &user, action, 2).expect("lifecycle");
        let p = publisher.publish("bench", 2).expect("publish");
        assert_eq!(p.kind, "delta");
        black_box(p);
    };
    let (p50, p99) = percentiles(400, |_| step());
    println!(
        "lifecycle change -> delta published ({USERS} users, SQLite file, local store): p50 {:.2} ms, p99 {:.2} ms",
        p50 as f64 / 1e6,
        p99 as f64 / 1e6
    );
    c.bench_function("lifecycle change -> delta published (10k users)", |b| {
        b.iter(&mut step)
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30);
    targets = lifecycle_to_delta
}
criterion_main!(benches);
