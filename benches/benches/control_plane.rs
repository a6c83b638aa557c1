//! Control-plane benchmarks: one lifecycle change committed and published
//! as a signed delta to the local store (the path behind every admin
//! call with auto-publish), on a realm of 10,000 users in a SQLite file.
//! The 1M-user import and compaction are one-shot measurements:
//! `benches/control-plane/run` (example `cp_scale`).

#![allow(
    missing_docs,
    reason = "criterion macros generate undocumented functions"
)]

use control_plane::domain::import::Format;
use control_plane::domain::realm::NewRealm;
use control_plane::{Caller, Service, Settings};
use criterion::{Criterion, criterion_group, criterion_main};
use gatehouse_benches::{local_service, percentiles};
use pdp_core::LifecycleAction;
use std::hint::black_box;

const USERS: usize = 10_000;

fn lifecycle_to_delta(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let op = &Caller::Operator;
    let s: Service = rt.block_on(local_service(
        dir.path(),
        Settings {
            auto_publish: false,
            compact_after_deltas: 0,
            ..Settings::default()
        },
    ));
    rt.block_on(s.create_realm(
        op,
        &NewRealm {
            name: "bench".into(),
            ..NewRealm::default()
        },
    ))
    .expect("realm");
    let mut lines = String::new();
    for i in 0..USERS {
        lines.push_str(&format!(
            "{{\"id\":\"u{i}\",\"username\":\"user{i}\",\"email\":\"user{i}@example.com\",\"state\":\"Active\",\"attrs\":{{\"department\":\"eng\",\"level\":{}}}}}\n",
            i % 7
        ));
    }
    rt.block_on(s.import_users(
        op,
        "bench",
        Box::new(std::io::Cursor::new(lines.into_bytes())),
        Format::JsonLines,
    ))
    .expect("import");
    rt.block_on(s.publish(op, "bench")).expect("first snapshot");

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
        rt.block_on(s.lifecycle(op, "bench", &user, action))
            .expect("lifecycle");
        let p = rt.block_on(s.publish(op, "bench")).expect("publish");
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
