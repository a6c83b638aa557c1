//! Shared setup for the Gatehouse benchmarks: synthetic realms loaded
//! without per-user schema validation (synthetic users are generated in
//! canonical form already), and percentile measurement.

use pdp_core::bundle::{BundleHeader, write_archive};
use pdp_core::manifest::BundleKind;
use pdp_core::{Limits, LoadOptions, Snapshot, Trust, load};
use std::collections::BTreeMap;
use std::time::Instant;

/// The files of a synthetic realm.
pub fn realm_files(users: usize) -> BTreeMap<String, Vec<u8>> {
    pdp_core::synth::realm(users, 42)
}

/// A bundle archive (plain tar) of those files.
pub fn bundle(files: &BTreeMap<String, Vec<u8>>) -> Vec<u8> {
    let header = BundleHeader {
        realm: "bench".into(),
        revision: 1,
        kind: BundleKind::Snapshot,
        base_revision: None,
        created_at: 0,
        identity: None,
    };
    write_archive(&header, files, None, false).unwrap_or_default()
}

/// Load a bundle in dev mode.
pub fn load_dev(bytes: &[u8]) -> Option<Snapshot> {
    load(
        bytes,
        &LoadOptions {
            trust: Trust::Dev,
            limits: Limits::default(),
        },
        None,
    )
    .ok()
}

/// Resident set size of this process, bytes (Linux).
pub fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u64>().ok())
        })
        .map_or(0, |pages| pages * 4096)
}

/// Run `f` `n` times timing each call; return (p50, p99) in nanoseconds.
pub fn percentiles(n: usize, mut f: impl FnMut(usize)) -> (u64, u64) {
    let mut t = Vec::with_capacity(n);
    for i in 0..n {
        let s = Instant::now();
        f(i);
        t.push(u64::try_from(s.elapsed().as_nanos()).unwrap_or(u64::MAX));
    }
    t.sort_unstable();
    let at = |q: f64| t.get(((n as f64) * q) as usize).copied().unwrap_or(0);
    (at(0.50), at(0.99))
}
