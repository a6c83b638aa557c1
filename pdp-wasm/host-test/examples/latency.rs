//! Decision latency through the C ABI in wasmtime next to native pdp-core,
//! over the corpus requests that decide (p50 and p99 of single calls, each
//! request copied in and the answer copied out, as a host would).
//!
//! `PDP_WASM=path/to/pdp_wasm_bg.wasm cargo run --release --example latency`

use pdp_core::source::{BuildOptions, build};
use pdp_core::{LoadOptions, Trust};
use pdp_wasm_host_test::{WasmPdp, compile};
use std::path::PathBuf;
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let files = pdp_core::manifest::member::SOURCE
        .iter()
        .filter_map(|n| {
            Some((
                (*n).to_owned(),
                std::fs::read(root.join("policies").join(n)).ok()?,
            ))
        })
        .collect();
    let o = BuildOptions {
        realm: "default".into(),
        revision: 1,
        created_at: 0,
        gzip: true,
    };
    let bundle = build(&files, &o, None)?;
    let opts = LoadOptions {
        trust: Trust::Dev,
        limits: Default::default(),
    };
    let snap = pdp_core::load(&bundle, &opts, None)?;
    let mut requests = Vec::new();
    for f in std::fs::read_dir(root.join("policies/corpus"))? {
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(f?.path())?)?;
        for c in v["cases"].as_array().into_iter().flatten() {
            if c.get("failure").is_none() {
                requests.push(serde_json::to_vec(&c["request"])?);
            }
        }
    }
    let path = std::env::var_os("PDP_WASM")
        .map(PathBuf::from)
        .ok_or_else(|| anyhow::anyhow!("set PDP_WASM"))?;
    let (engine, module) = compile(&path)?;
    let mut w = WasmPdp::new(&engine, &module)?;
    let loaded: serde_json::Value = serde_json::from_str(&w.load(&bundle, br#"{"dev":true}"#)?)?;
    let h = u32::try_from(loaded["handle"].as_u64().unwrap_or(0))?;
    let rounds = 200;
    let mut native = Vec::new();
    let mut wasm = Vec::new();
    for _ in 0..rounds {
        for r in &requests {
            let t = Instant::now();
            std::hint::black_box(snap.is_authorized_json(r).to_json());
            native.push(t.elapsed().as_nanos());
            let t = Instant::now();
            std::hint::black_box(w.is_authorized(h, r)?);
            wasm.push(t.elapsed().as_nanos());
        }
    }
    let pct = |v: &mut Vec<u128>, p: usize| {
        v.sort_unstable();
        v.get(v.len() * p / 100).copied().unwrap_or(0) as f64 / 1000.0
    };
    let (n50, n99) = (pct(&mut native, 50), pct(&mut native, 99));
    let (w50, w99) = (pct(&mut wasm, 50), pct(&mut wasm, 99));
    println!(
        "{} decisions each ({} requests x {rounds})",
        native.len(),
        requests.len()
    );
    println!("native pdp-core : p50 {n50:.1} us, p99 {n99:.1} us");
    println!(
        "wasmtime C ABI  : p50 {w50:.1} us, p99 {w99:.1} us ({:.2}x native at p50)",
        w50 / n50
    );
    Ok(())
}
