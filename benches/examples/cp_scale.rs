//! One-shot control-plane scale run: bulk import of a `pdp synth` realm's
//! users (1,000,000 by default) into a SQLite file (or, with
//! `--postgres`, a fresh schema in the database `GATEHOUSE_BENCH_POSTGRES`
//! names), publication of the
//! first snapshot, 100 lifecycle changes each published as a delta, and a
//! compaction of snapshot + deltas into a new snapshot — each step timed,
//! with the process's peak resident memory after it.
//!
//! `cargo run --profile bench -p gatehouse-benches --example cp_scale -- [--postgres] SYNTH_DIR`
//! (a directory from `pdp synth --users N -o SYNTH_DIR`).

use control_plane::domain::group::{Kind, NewNode};
use control_plane::domain::import::Format;
use control_plane::domain::realm::NewRealm;
use control_plane::{Caller, Settings};
use gatehouse_benches::{Db, service_with};
use pdp_core::LifecycleAction;
use std::time::Instant;

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let op = &Caller::Operator;
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let postgres = args.iter().any(|a| a == "--postgres");
    args.retain(|a| a != "--postgres");
    let synth = std::path::PathBuf::from(
        args.first()
            .ok_or("usage: cp_scale [--postgres] SYNTH_DIR [WORK_DIR]")?,
    );
    let keep = args.get(1).is_some();
    let work = match args.get(1) {
        Some(w) => std::path::PathBuf::from(w),
        None => std::env::temp_dir().join(format!("cp-scale-{}", std::process::id())),
    };
    std::fs::create_dir_all(&work)?;
    let db = Db::for_run(&work, "cp", postgres)
        .ok_or("--postgres: set GATEHOUSE_BENCH_POSTGRES to a postgres:// URL")?;
    println!("repository: {}", db.backend());
    let store = std::sync::Arc::new(object_store::LocalDirStore::new(work.join("store")));
    let s = service_with(
        db.open().await,
        store,
        Settings {
            auto_publish: false,
            compact_after_deltas: 0,
            ..Settings::default()
        },
    );
    s.create_realm(
        op,
        &NewRealm {
            name: "bench".into(),
            schema: Some(std::fs::read_to_string(synth.join("schema.cedarschema"))?),
            ..NewRealm::default()
        },
    )
    .await?;
    // The realm's roles and groups (with their nesting and roles), as an
    // operator would create them before importing users into them.
    let entities: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(synth.join("entities.json"))?)?;
    let of = |ty: &str| {
        entities
            .iter()
            .filter(move |e| e["uid"]["type"] == ty)
            .collect::<Vec<_>>()
    };
    for kind in [Kind::Role, Kind::Group] {
        let ty = if kind == Kind::Role { "Role" } else { "Group" };
        for e in of(ty) {
            let id = e["uid"]["id"].as_str().unwrap_or_default();
            s.create_node(
                op,
                "bench",
                kind,
                &NewNode {
                    id: id.into(),
                    description: String::new(),
                },
            )
            .await?;
        }
    }
    for e in of("Group") {
        let id = e["uid"]["id"].as_str().unwrap_or_default();
        for p in e["parents"].as_array().into_iter().flatten() {
            let pid = p["id"].as_str().unwrap_or_default();
            if p["type"] == "Group" {
                s.set_group_parent(op, "bench", id, pid, true).await?;
            } else {
                s.set_group_role(op, "bench", id, pid, true).await?;
            }
        }
    }
    println!(
        "setup: {} roles and groups, peak RSS {:.0} MiB",
        of("Role").len() + of("Group").len(),
        peak_rss_mib()
    );

    let t = Instant::now();
    let file = std::io::BufReader::new(std::fs::File::open(synth.join("users.jsonl"))?);
    let imported = s
        .import_users(op, "bench", Box::new(file), Format::JsonLines)
        .await?;
    let import_s = t.elapsed().as_secs_f64();
    println!(
        "import: {} users in {import_s:.1} s, peak RSS {:.0} MiB",
        imported.users,
        peak_rss_mib()
    );

    let t = Instant::now();
    let first = s.publish(op, "bench").await?;
    println!(
        "first snapshot: {} users, {:.1} MiB gzip, {:.1} s, peak RSS {:.0} MiB",
        first.users,
        first.bytes as f64 / 1048576.0,
        t.elapsed().as_secs_f64(),
        peak_rss_mib()
    );

    let mut times = Vec::new();
    for i in 0..100 {
        // An Active user (every 50th synthetic user is Suspended).
        let mut k = (i * 9973) % usize::try_from(imported.users)?;
        if k % 50 == 49 {
            k -= 1;
        }
        let user = pdp_core::synth::user_id(k);
        let t = Instant::now();
        match s
            .lifecycle(op, "bench", &user, LifecycleAction::Suspend)
            .await
        {
            Ok(_) => {}
            Err(control_plane::Error::Lifecycle(_)) => {
                s.lifecycle(op, "bench", &user, LifecycleAction::Resume)
                    .await?;
            }
            Err(e) => return Err(e.into()),
        }
        let p = s.publish(op, "bench").await?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(p.kind, "delta");
    }
    times.sort_by(f64::total_cmp);
    println!(
        "lifecycle change -> delta published at {} users: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        imported.users, times[49], times[98], times[99]
    );

    let t = Instant::now();
    let c = s.compact(op, "bench").await?;
    let compact_s = t.elapsed().as_secs_f64();
    println!(
        "compaction (snapshot + 100 deltas -> snapshot {}): {} users, {:.1} MiB gzip, {compact_s:.1} s, peak RSS {:.0} MiB",
        c.revision,
        c.users,
        c.bytes as f64 / 1048576.0,
        peak_rss_mib()
    );
    println!("import + compaction: {:.1} s", import_s + compact_s);
    if !keep {
        std::fs::remove_dir_all(&work)?;
    }
    Ok(())
}
