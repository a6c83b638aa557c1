//! Control-plane benchmarks: one lifecycle change committed and published
//! as a signed delta (the path behind every admin call with auto-publish),
//! on a realm of 10,000 users in a SQLite file: to the local store, and —
//! when `GATEHOUSE_MOTO_SERVER` names a `moto_server` and the AWS
//! environment is set (`benches/control-plane/run` does both) — to S3 on
//! loopback.
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
    let s: Service = rt.block_on(local_service(dir.path(), settings()));
    measure(c, &rt, &s, "local store");
    if std::env::var_os("GATEHOUSE_MOTO_SERVER").is_some() {
        let moto = object_store::testing::Moto::start();
        rt.block_on(moto.create_bucket("bench"));
        let store = rt
            .block_on(object_store::open(
                "s3://bench/cp",
                &object_store::Connect {
                    s3_force_path_style: true,
                    endpoint: Some(moto.url.clone()),
                    ..object_store::Connect::default()
                },
            ))
            .expect("s3 store");
        let dir = tempfile::tempdir().expect("tempdir");
        let s = rt.block_on(gatehouse_benches::service_on(dir.path(), store, settings()));
        measure(c, &rt, &s, "S3 (moto, loopback)");
    }
}

fn settings() -> Settings {
    Settings {
        auto_publish: false,
        compact_after_deltas: 0,
        ..Settings::default()
    }
}

fn measure(c: &mut Criterion, rt: &tokio::runtime::Runtime, s: &Service, store: &str) {
    let op = &Caller::Operator;
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
        "lifecycle change -> delta published ({USERS} users, SQLite file, {store}): p50 {:.2} ms, p99 {:.2} ms",
        p50 as f64 / 1e6,
        p99 as f64 / 1e6
    );
    c.bench_function(
        &format!("lifecycle change -> delta published (10k users, {store})"),
        |b| b.iter(&mut step),
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30);
    targets = lifecycle_to_delta
}
criterion_main!(benches);
