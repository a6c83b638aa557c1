//! Load time and resident memory of a bundle load, in a fresh process (the
//! figure the `decision` bench reports, without building the bench), for
//! `perf record` of the load path.
//! `load_probe write FILE [USERS]` writes a synthetic realm's bundle;
//! `load_probe load FILE` loads it and reports.

use gatehouse_benches::{bundle, load_report, realm_files};

/// The allocator the edge host and the benches use.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match (args.first().map(String::as_str), args.get(1)) {
        (Some("write"), Some(path)) => {
            let users = args
                .get(2)
                .and_then(|a| a.parse().ok())
                .unwrap_or(1_000_000);
            std::fs::write(path, bundle(&realm_files(users))).map_err(|e| format!("{path}: {e}"))
        }
        (Some("load"), Some(path)) => load_report(path).map(|line| println!("{line}")),
        _ => Err("usage: load_probe write|load FILE [USERS]".into()),
    };
    if let Err(e) = result {
        eprintln!("{e}");
        std::process::exit(2);
    }
}
