//! The control plane on SQLite and on PostgreSQL, with one and with two
//! control planes on one database and one local store: admin writes per
//! second (user creates from 16 concurrent callers, with auto-publish on
//! and off), and one lifecycle change -> delta published (p50/p99; with
//! two control planes both change and publish at once, each timing its
//! own). Prints one Markdown table row per configuration.
//!
//! A "control plane" here is a repository with connections of its own and
//! the services on it, in this process; the database sees two clients
//! exactly as it would see two processes (locks, transactions, the change
//! log). `tests/ha.rs` runs two real processes.
//!
//! `cargo run --profile bench -p gatehouse-benches --example cp_backends`;
//! PostgreSQL rows when `GATEHOUSE_BENCH_POSTGRES` names a database (a
//! fresh schema per configuration): once as given, once with
//! `synchronous_commit=on` (each commit waits for its WAL flush, the
//! server default). `benches/control-plane/run` starts a private cluster.

use control_plane::domain::import::Format;
use control_plane::domain::realm::NewRealm;
use control_plane::domain::user::NewUser;
use control_plane::{Caller, Service, Settings};
use gatehouse_benches::{Db, service_with};
use pdp_core::LifecycleAction;
use std::sync::Arc;
use std::time::{Duration, Instant};

const USERS: usize = 10_000;
const WRITES: usize = 2_000;
const CALLERS: usize = 16;
const CHANGES: usize = 400;
const OP: &Caller = &Caller::Operator;

/// One control plane: the same repository behind a service that
/// publishes after every change and one that does not.
struct ControlPlane {
    publishing: Arc<Service>,
    quiet: Arc<Service>,
}

async fn control_planes(
    db: &Db,
    store: &Arc<dyn object_store::ObjectStore>,
    n: usize,
) -> Vec<ControlPlane> {
    let mut cps = Vec::new();
    for _ in 0..n {
        let repo = db.open().await;
        let settings = |auto_publish| Settings {
            auto_publish,
            compact_after_deltas: 0,
            ..Settings::default()
        };
        cps.push(ControlPlane {
            publishing: Arc::new(service_with(repo.clone(), store.clone(), settings(true))),
            quiet: Arc::new(service_with(repo, store.clone(), settings(false))),
        });
    }
    cps
}

/// Realm `bench` with `USERS` users, published as a snapshot.
async fn realm(s: &Service) -> Result<(), control_plane::Error> {
    s.create_realm(
        OP,
        &NewRealm {
            name: "bench".into(),
            ..NewRealm::default()
        },
    )
    .await?;
    let mut lines = String::new();
    for i in 0..USERS {
        lines.push_str(&format!(
            "{{\"id\":\"u{i}\",\"username\":\"user{i}\",\"email\":\"user{i}@example.com\",\"state\":\"Active\",\"attrs\":{{\"department\":\"eng\",\"level\":{}}}}}\n",
            i % 7
        ));
    }
    s.import_users(
        OP,
        "bench",
        Box::new(std::io::Cursor::new(lines.into_bytes())),
        Format::JsonLines,
    )
    .await?;
    s.publish(OP, "bench").await?;
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// p50 and p99 of `t`, milliseconds.
fn p50_p99(mut t: Vec<Duration>) -> (f64, f64) {
    t.sort_unstable();
    let at = |q: f64| t.get(((t.len() as f64) * q) as usize).copied();
    (at(0.50).map_or(0.0, ms), at(0.99).map_or(0.0, ms))
}

/// `WRITES` user creates from `CALLERS` callers, spread over the
/// services: writes per second and the calls' p99.
async fn writes(services: &[Arc<Service>], tag: &str) -> Result<(f64, f64), control_plane::Error> {
    let started = Instant::now();
    let mut callers = Vec::new();
    for k in 0..CALLERS {
        let s = services[k % services.len()].clone();
        let tag = tag.to_owned();
        callers.push(tokio::spawn(async move {
            let mut times = Vec::new();
            for j in 0..WRITES / CALLERS {
                let new = NewUser {
                    email: format!("{tag}-{k}-{j}@bench.io"),
                    ..NewUser::default()
                };
                let t = Instant::now();
                s.create_user(OP, "bench", &new).await?;
                times.push(t.elapsed());
            }
            Ok::<_, control_plane::Error>(times)
        }));
    }
    let mut all = Vec::new();
    for c in callers {
        all.extend(
            c.await
                .map_err(|e| control_plane::Error::Internal(e.to_string()))??,
        );
    }
    let per_s = all.len() as f64 / started.elapsed().as_secs_f64();
    Ok((per_s, p50_p99(all).1))
}

/// `CHANGES` suspensions of distinct users, each published before the
/// next: with several control planes, all at once (a publish that finds
/// its change already published by the other one returns when that
/// publish has finished). The change's and the publish's time, p50/p99.
async fn changes(
    services: &[Arc<Service>],
) -> Result<(f64, f64, u64, String), control_plane::Error> {
    let n = services.len();
    let mut tasks = Vec::new();
    for (k, s) in services.iter().enumerate() {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut times = Vec::new();
            let mut commits = Vec::new();
            let mut deltas = 0u64;
            for i in 0..CHANGES / n {
                let user = format!("u{}", i * n + k);
                let t = Instant::now();
                s.lifecycle(OP, "bench", &user, LifecycleAction::Suspend)
                    .await?;
                commits.push(t.elapsed());
                let p = s.publish(OP, "bench").await?;
                times.push(t.elapsed());
                deltas += u64::from(p.kind == "delta");
            }
            Ok::<_, control_plane::Error>((times, commits, deltas))
        }));
    }
    let (mut all, mut commits, mut deltas) = (Vec::new(), Vec::new(), 0);
    for t in tasks {
        let (times, c, d) = t
            .await
            .map_err(|e| control_plane::Error::Internal(e.to_string()))??;
        all.extend(times);
        commits.extend(c);
        deltas += d;
    }
    // Where the tail is: the commit alone, and p90/max of the whole.
    let mut sorted = all.clone();
    sorted.sort_unstable();
    let at = |q: f64| {
        sorted
            .get(((sorted.len() as f64) * q) as usize)
            .copied()
            .map_or(0.0, ms)
    };
    let (c50, c99) = p50_p99(commits);
    let detail = format!(
        "p90 {:.2} ms, max {:.2} ms; the commit alone p50 {c50:.2} ms, p99 {c99:.2} ms",
        at(0.90),
        sorted.last().copied().map_or(0.0, ms)
    );
    let (p50, p99) = p50_p99(all);
    Ok((p50, p99, deltas, detail))
}

async fn run(
    db: Db,
    label: &str,
    n: usize,
    dir: &std::path::Path,
) -> Result<(), Box<dyn std::error::Error>> {
    let store: Arc<dyn object_store::ObjectStore> = Arc::new(object_store::LocalDirStore::new(
        dir.join(
            format!("store-{label}-{n}")
                .replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "_"),
        ),
    ));
    let cps = control_planes(&db, &store, n).await;
    realm(&cps[0].quiet).await?;
    let quiet: Vec<_> = cps.iter().map(|c| c.quiet.clone()).collect();
    let publishing: Vec<_> = cps.iter().map(|c| c.publishing.clone()).collect();
    let (off, off_p99) = writes(&quiet, "off").await?;
    let (on, on_p99) = writes(&publishing, "on").await?;
    let (p50, p99, deltas, detail) = changes(&quiet).await?;
    println!(
        "| {label} | {n} | {on:.0} (p99 {on_p99:.1} ms) | {off:.0} (p99 {off_p99:.1} ms) | p50 {p50:.2} ms, p99 {p99:.2} ms ({deltas} deltas) |"
    );
    eprintln!("  {label}, {n}: lifecycle -> delta {detail}");
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().to_path_buf();
    println!("{USERS} users; {WRITES} creates from {CALLERS} callers; {CHANGES} lifecycle changes");
    println!(
        "| backend | control planes | admin writes/s, auto-publish on | auto-publish off | lifecycle change -> delta published |"
    );
    println!("|---|---|---|---|---|");
    for n in [1, 2] {
        let name = format!("sqlite{n}");
        if let Some(db) = Db::for_run(&dir, &name, false) {
            run(db, "SQLite (WAL, synchronous=NORMAL)", n, &dir).await?;
        }
    }
    for (label, extra) in [
        ("PostgreSQL (as configured)", ""),
        (
            "PostgreSQL (synchronous_commit=on)",
            "&options=-c%20synchronous_commit%3Don",
        ),
    ] {
        for n in [1, 2] {
            let name = format!("pg{}{n}", if extra.is_empty() { "" } else { "sync" });
            if let Some(Db::Postgres { url, schema }) = Db::for_run(&dir, &name, true) {
                let url = if extra.is_empty() {
                    url
                } else if url.contains('?') {
                    format!("{url}{extra}")
                } else {
                    format!("{url}?{}", &extra[1..])
                };
                run(Db::Postgres { url, schema }, label, n, &dir).await?;
            }
        }
    }
    Ok(())
}
