//! The pdp-wasm module in wasmtime, through its C ABI only, against native
//! pdp-core: every corpus case (single, batched, and as token requests)
//! must give a byte-identical answer, and bad input must give tagged
//! failures after which the module still answers correctly.
//!
//! The module is named by `PDP_WASM` (a path; scripts/test-wasm runs this
//! for the cargo output and for the wasm-bindgen output the npm package
//! ships).

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use pdp_core::bundle::{BundleHeader, write_archive};
use pdp_core::decision::{BatchRequest, Tagged, TokenRequest};
use pdp_core::manifest::BundleKind;
use pdp_core::source::{BuildOptions, build};
use pdp_core::{BundleSigner, Keyring, Limits, LoadOptions, Snapshot, Trust, load};
use pdp_wasm_host_test::{WasmPdp, compile};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::OnceLock;

const NOW: i64 = 1_800_000_000;
const ISS: &str = "https://gatehouse.local/realms/default";
const AUD: &str = "gatehouse-demo-client";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn module() -> &'static (wasmtime::Engine, wasmtime::Module) {
    static M: OnceLock<(wasmtime::Engine, wasmtime::Module)> = OnceLock::new();
    M.get_or_init(|| {
        let path = std::env::var_os("PDP_WASM")
            .map(PathBuf::from)
            .expect("PDP_WASM names the module to test (scripts/test-wasm sets it)");
        compile(&path).unwrap()
    })
}

fn instance() -> WasmPdp {
    let (e, m) = module();
    WasmPdp::new(e, m).unwrap()
}

/// The reference realm, with the identity settings that trust the
/// committed test keys (`policies/identity.json` trusts none).
fn files() -> BTreeMap<String, Vec<u8>> {
    let dir = root().join("policies");
    let mut files: BTreeMap<String, Vec<u8>> = pdp_core::manifest::member::SOURCE
        .iter()
        .filter_map(|n| Some(((*n).to_owned(), std::fs::read(dir.join(n)).ok()?)))
        .collect();
    files.insert(
        "identity.json".to_owned(),
        std::fs::read(root().join("pdp-core/tests/keys/identity.json")).unwrap(),
    );
    files
}

fn signer() -> BundleSigner {
    BundleSigner::from_seed(&[11; 32])
}

fn bundle(revision: u64) -> Vec<u8> {
    let o = BuildOptions {
        realm: "default".into(),
        revision,
        created_at: 1_764_000_000,
        gzip: true,
    };
    build(&files(), &o, Some(&signer())).unwrap()
}

fn options() -> Vec<u8> {
    json!({ "trust_keys": [signer().public_pem().unwrap()] })
        .to_string()
        .into_bytes()
}

fn native(bytes: &[u8], held: Option<&Snapshot>) -> Snapshot {
    let mut ring = Keyring::new();
    ring.add(signer().verifying_key());
    load(
        bytes,
        &LoadOptions {
            trust: Trust::Keyring(&ring),
            limits: Limits::default(),
        },
        held,
    )
    .unwrap()
}

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

/// Load the reference bundle; the handle.
fn loaded(w: &mut WasmPdp, bytes: &[u8]) -> u32 {
    let a = json(&w.load(bytes, &options()).unwrap());
    assert_eq!(a["type"], "success", "{a}");
    u32::try_from(a["handle"].as_u64().unwrap()).unwrap()
}

/// Every corpus request, as the raw JSON of the file.
fn corpus() -> Vec<(String, Value)> {
    let mut paths: Vec<_> = std::fs::read_dir(root().join("policies/corpus"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    let mut out = Vec::new();
    for p in paths {
        let file = json(&std::fs::read_to_string(&p).unwrap());
        for case in file["cases"].as_array().unwrap() {
            let name = format!(
                "{} / {}",
                p.file_name().unwrap().to_string_lossy(),
                case["name"]
            );
            out.push((name, case["request"].clone()));
        }
    }
    assert!(out.len() >= 40, "only {} corpus cases", out.len());
    out
}

fn native_batch(snap: &Snapshot, bytes: &[u8]) -> String {
    let t: Tagged<_> = match serde_json::from_slice::<BatchRequest>(bytes) {
        Ok(b) => snap.batch_is_authorized(&b).into(),
        Err(e) => Tagged::failure("invalid_json", e.to_string()),
    };
    t.to_json()
}

fn native_token(snap: &Snapshot, bytes: &[u8], now: i64) -> String {
    let t: Tagged<_> = match serde_json::from_slice::<TokenRequest>(bytes) {
        Ok(r) => snap.is_authorized_with_token(&r, now).into(),
        Err(e) => Tagged::failure("invalid_json", e.to_string()),
    };
    t.to_json()
}

/// The whole corpus, one request at a time.
fn check_corpus(w: &mut WasmPdp, handle: u32, snap: &Snapshot) -> usize {
    let mut n = 0;
    for (name, req) in corpus() {
        let bytes = serde_json::to_vec(&req).unwrap();
        let got = w.is_authorized(handle, &bytes).unwrap();
        let want = snap.is_authorized_json(&bytes).to_json();
        assert_eq!(got, want, "{name}");
        n += 1;
    }
    n
}

#[test]
fn every_corpus_case_answers_byte_identically() {
    let bytes = bundle(1);
    let snap = native(&bytes, None);
    let mut w = instance();
    let h = loaded(&mut w, &bytes);
    assert_eq!(w.revision(h).unwrap(), 1);
    let n = check_corpus(&mut w, h, &snap);
    // Pretty-printed request bytes too: answers do not depend on layout.
    for (name, req) in corpus() {
        let pretty = serde_json::to_vec_pretty(&req).unwrap();
        assert_eq!(
            w.is_authorized(h, &pretty).unwrap(),
            snap.is_authorized_json(&pretty).to_json(),
            "{name} (pretty)"
        );
    }
    println!("{n} corpus cases identical through the C ABI");
}

#[test]
fn batches_of_corpus_cases_answer_byte_identically() {
    let bytes = bundle(1);
    let snap = native(&bytes, None);
    let mut w = instance();
    let h = loaded(&mut w, &bytes);
    // Group by principal (batches share one), then also by resource.
    for key in ["principal", "resource"] {
        let mut groups: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        for (_, req) in corpus() {
            groups.entry(req[key].to_string()).or_default().push(req);
        }
        for (k, reqs) in groups {
            let batch = serde_json::to_vec(&json!({ "requests": reqs })).unwrap();
            let got = w.batch_is_authorized(h, &batch).unwrap();
            assert_eq!(got, native_batch(&snap, &batch), "batch by {key} {k}");
            assert!(got.starts_with(r#"{"type":"success","results":["#), "{got}");
        }
    }
    // Neither shared: a tagged failure, the same as native.
    let all: Vec<Value> = corpus().into_iter().map(|(_, r)| r).take(20).collect();
    let mixed = serde_json::to_vec(&json!({ "requests": all })).unwrap();
    let got = w.batch_is_authorized(h, &mixed).unwrap();
    assert_eq!(got, native_batch(&snap, &mixed));
    assert_eq!(json(&got)["type"], "failure");
}

fn key(name: &str) -> Vec<u8> {
    std::fs::read(root().join("pdp-core/tests/keys").join(name)).unwrap()
}

fn sign(alg: Algorithm, kid: &str, file: &str, claims: &Value) -> String {
    let pem = key(file);
    let k = match alg {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(&pem).unwrap(),
        Algorithm::ES256 => EncodingKey::from_ec_pem(&pem).unwrap(),
        _ => EncodingKey::from_ed_pem(&pem).unwrap(),
    };
    let mut h = Header::new(alg);
    h.kid = Some(kid.into());
    jsonwebtoken::encode(&h, claims, &k).unwrap()
}

/// Tokens of every algorithm the realm trusts, and refused ones.
fn tokens(sub: &str) -> Vec<String> {
    let id = json!({"sub": sub, "iss": ISS, "aud": AUD, "token_use": "id", "iat": NOW - 60,
                    "exp": NOW + 3600, "email": format!("{sub}@example.com"),
                    "cognito:groups": ["platform"], "amr": ["pwd", "mfa"]});
    let access = json!({"sub": sub, "iss": ISS, "client_id": AUD, "token_use": "access",
                        "scope": "openid", "iat": NOW - 5, "exp": NOW + 300});
    let expired = json!({"sub": sub, "iss": ISS, "aud": AUD, "token_use": "id",
                         "iat": NOW - 7200, "exp": NOW - 3600});
    vec![
        sign(Algorithm::RS256, "test-rs256", "rs256.key.pem", &id),
        sign(Algorithm::ES256, "test-es256", "es256.key.pem", &access),
        sign(Algorithm::EdDSA, "test-eddsa", "eddsa.key.pem", &id),
        format!(
            "Bearer {}",
            sign(Algorithm::RS256, "test-rs256", "rs256.key.pem", &access)
        ),
        sign(Algorithm::RS256, "test-rs256", "rs256.key.pem", &expired),
        sign(
            Algorithm::RS256,
            "test-rs256",
            "attacker-rs256.key.pem",
            &id,
        ),
        "not.a.token".into(),
    ]
}

#[test]
fn token_requests_answer_byte_identically() {
    let bytes = bundle(1);
    let snap = native(&bytes, None);
    let mut w = instance();
    let h = loaded(&mut w, &bytes);
    let mut n = 0;
    let mut allowed = 0;
    for (name, req) in corpus() {
        if req["principal"]["type"] != "User" {
            continue;
        }
        let sub = req["principal"]["id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        for token in tokens(&sub) {
            let mut body = req.clone();
            let obj = body.as_object_mut().unwrap();
            obj.remove("principal");
            obj.insert("token".into(), Value::String(token));
            let bytes = serde_json::to_vec(&body).unwrap();
            let got = w.is_authorized_with_token(h, &bytes, NOW).unwrap();
            assert_eq!(got, native_token(&snap, &bytes, NOW), "{name} ({sub})");
            allowed += usize::from(got.contains(r#""decision":"Allow""#));
            n += 1;
        }
    }
    assert!(
        allowed > 0,
        "no token request was allowed: the check proves little"
    );
    println!("{n} token requests identical ({allowed} allowed)");
}

#[test]
fn deltas_and_users_match_native() {
    let base = bundle(1);
    let snap = native(&base, None);
    let mut w = instance();
    let h = loaded(&mut w, &base);
    let user = json(&w.user(h, "alice").unwrap());
    assert_eq!(user["user"]["state"], "Active", "{user}");
    assert_eq!(json(&w.user(h, "nobody").unwrap())["user"], Value::Null);
    // A users-only delta suspends alice.
    let mut record = user["user"].clone();
    record["state"] = json!("Suspended");
    let mut members = BTreeMap::new();
    members.insert("users.jsonl".to_owned(), format!("{record}\n").into_bytes());
    let header = BundleHeader {
        realm: "default".into(),
        revision: 2,
        kind: BundleKind::Delta,
        base_revision: Some(1),
        created_at: 1_764_000_100,
        identity: None,
    };
    let delta = write_archive(&header, &members, Some(&signer()), true).unwrap();
    let a = json(&w.apply_delta(h, &delta).unwrap());
    assert_eq!(a["type"], "success", "{a}");
    assert_eq!(w.revision(h).unwrap(), 2);
    let next = native(&delta, Some(&snap));
    let n = check_corpus(&mut w, h, &next);
    assert!(n > 0);
    assert_eq!(
        json(&w.user(h, "alice").unwrap())["user"]["state"],
        "Suspended"
    );
    // The same delta again: refused, and revision 2 keeps answering.
    let again = json(&w.apply_delta(h, &delta).unwrap());
    assert_eq!(again["errors"][0]["kind"], "rollback", "{again}");
    check_corpus(&mut w, h, &next);
}

fn failure_kind(s: &str) -> String {
    let v = json(s);
    assert_eq!(v["type"], "failure", "{s}");
    v["errors"][0]["kind"].as_str().unwrap().to_owned()
}

#[test]
fn bad_input_is_a_tagged_failure_and_the_module_keeps_answering() {
    let bytes = bundle(1);
    let snap = native(&bytes, None);
    let mut w = instance();
    let h = loaded(&mut w, &bytes);
    let shapes: [&[u8]; 12] = [
        b"",
        b"not json",
        b"\xff\xfe\x00",
        b"[]",
        b"null",
        b"42",
        b"{}",
        br#"{"principal": "alice"}"#,
        br#"{"principal": {"type": "User", "id": "alice"}, "action": 1, "resource": []}"#,
        br#"{"principal": {"type": "User", "id": "alice"}, "action": {"type": "Action", "id": "readDocument"}, "resource": {"type": "Document", "id": "design-doc"}, "extra": 1}"#,
        br#"{"principal": {"type": "User", "id": "alice"}, "action": {"type": "Action", "id": "readDocument"}, "resource": {"type": "Document", "id": "design-doc"}, "entities": [{"uid": 5}]}"#,
        b"{\"principal\": {\"type\": \"User\", \"id\": \"alice\"",
    ];
    for bad in shapes {
        let got = w.is_authorized(h, bad).unwrap();
        assert_eq!(got, snap.is_authorized_json(bad).to_json());
        failure_kind(&got);
        failure_kind(&w.batch_is_authorized(h, bad).unwrap());
        failure_kind(&w.is_authorized_with_token(h, bad, NOW).unwrap());
    }
    // A 100 MB request: refused by size, before it is read.
    let huge = vec![b'x'; 100 << 20];
    assert_eq!(
        failure_kind(&w.is_authorized(h, &huge).unwrap()),
        "request_too_large"
    );
    assert_eq!(
        failure_kind(&w.batch_is_authorized(h, &huge).unwrap()),
        "request_too_large"
    );
    // Unknown handles.
    assert_eq!(
        failure_kind(&w.is_authorized(h + 1000, b"{}").unwrap()),
        "unknown_handle"
    );
    assert_eq!(w.revision(h + 1000).unwrap(), -1);
    // Corrupt, truncated, unsigned and foreign bundles.
    let mut corrupt = bytes.clone();
    let mid = corrupt.len() / 2;
    for b in corrupt.iter_mut().skip(mid).take(64) {
        *b ^= 0x5a;
    }
    let unsigned = {
        let o = BuildOptions {
            realm: "default".into(),
            revision: 1,
            created_at: 0,
            gzip: false,
        };
        build(&files(), &o, None).unwrap()
    };
    for (bundle, opts, kind) in [
        (&corrupt[..], options(), None),
        (&bytes[..bytes.len() / 3], options(), None),
        (&b"\x1f\x8bgarbage"[..], options(), Some("not_an_archive")),
        (&unsigned[..], options(), Some("unsigned")),
        (
            &bytes[..],
            b"{\"dev\": tru".to_vec(),
            Some("invalid_options"),
        ),
        (&bytes[..], Vec::new(), Some("invalid_options")),
        (
            &bytes[..],
            br#"{"trust_keys": ["not a key"]}"#.to_vec(),
            Some("invalid_options"),
        ),
        (&huge[..], options(), Some("not_an_archive")),
    ] {
        let got = failure_kind(&w.load(bundle, &opts).unwrap());
        if let Some(k) = kind {
            assert_eq!(got, k);
        }
    }
    // A bad delta: the held snapshot stays.
    assert_eq!(
        failure_kind(&w.apply_delta(h, &corrupt).unwrap()),
        failure_kind(&w.load(&corrupt, &options()).unwrap())
    );
    // The unsigned bundle loads in dev mode, as a second handle.
    let dev = json(&w.load(&unsigned, br#"{"dev": true}"#).unwrap());
    assert_eq!(dev["type"], "success", "{dev}");
    assert_eq!(dev["signed_by"], Value::Null);
    let h2 = u32::try_from(dev["handle"].as_u64().unwrap()).unwrap();
    assert_ne!(h, h2);
    // A raised limit lets 100 MB through to the JSON parser: still a failure.
    let big = json(
        &w.load(&bytes, br#"{"dev": true, "max_request_bytes": 209715200}"#)
            .unwrap(),
    );
    let h3 = u32::try_from(big["handle"].as_u64().unwrap()).unwrap();
    let got = w.is_authorized(h3, &huge).unwrap();
    assert_eq!(got, snap.is_authorized_json(&huge).to_json());
    assert_eq!(failure_kind(&got), "invalid_json");
    let mut long_id = br#"{"principal": {"type": "User", "id": ""#.to_vec();
    long_id.extend(std::iter::repeat_n(b'a', 100 << 20));
    long_id.extend(br#""}, "action": {"type": "Action", "id": "readDocument"}, "resource": {"type": "Document", "id": "design-doc"}}"#);
    let got = w.is_authorized(h3, &long_id).unwrap();
    assert_eq!(got, snap.is_authorized_json(&long_id).to_json());
    assert_eq!(w.free(h3).unwrap(), 1);
    assert_eq!(w.free(h3).unwrap(), 0);
    // After all that, every handle still answers the corpus exactly.
    check_corpus(&mut w, h, &snap);
    check_corpus(&mut w, h2, &native_dev(&unsigned));
    println!(
        "module memory after the bad inputs: {} MiB",
        w.memory_bytes() >> 20
    );
}

fn native_dev(bytes: &[u8]) -> Snapshot {
    load(
        bytes,
        &LoadOptions {
            trust: Trust::Dev,
            limits: Limits::default(),
        },
        None,
    )
    .unwrap()
}

/// A small deterministic PRNG (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Each corpus request mangled many ways (bytes flipped, dropped,
/// duplicated, JSON punctuation inserted): the module must answer every
/// one exactly as native does — never trap, never differ.
#[test]
fn mangled_requests_answer_byte_identically() {
    let bytes = bundle(1);
    let snap = native(&bytes, None);
    let mut w = instance();
    let h = loaded(&mut w, &bytes);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let punct = b"{}[]\":,0-e.\\ntfu\xff";
    let mut n = 0;
    let mut succeeded = 0;
    for (name, req) in corpus() {
        let base = serde_json::to_vec(&req).unwrap();
        for _ in 0..40 {
            let mut m = base.clone();
            for _ in 0..=rng.below(3) {
                let at = rng.below(m.len());
                match rng.below(4) {
                    0 => {
                        m.remove(at);
                    }
                    1 => m.insert(at, punct[rng.below(punct.len())]),
                    2 => {
                        let b = m[at];
                        m[at] = b ^ (1 << rng.below(8));
                    }
                    _ => {
                        let end = (at + rng.below(16)).min(m.len());
                        let piece = m[at..end].to_vec();
                        m.splice(at..at, piece);
                    }
                }
            }
            let got = w.is_authorized(h, &m).unwrap();
            assert_eq!(
                got,
                snap.is_authorized_json(&m).to_json(),
                "{name}: {}",
                String::from_utf8_lossy(&m)
            );
            let batch = [b"{\"requests\":[".as_slice(), &m, b"]}"].concat();
            assert_eq!(
                w.batch_is_authorized(h, &batch).unwrap(),
                native_batch(&snap, &batch)
            );
            succeeded += usize::from(got.starts_with(r#"{"type":"success""#));
            n += 1;
        }
    }
    assert!(succeeded > 0 && succeeded < n, "{succeeded} of {n}");
    check_corpus(&mut w, h, &snap);
    println!("{n} mangled requests identical ({succeeded} still decided)");
}

#[test]
fn alloc_beyond_memory_answers_zero_and_the_module_lives_on() {
    let bytes = bundle(1);
    let snap = native(&bytes, None);
    let mut w = instance();
    let h = loaded(&mut w, &bytes);
    assert_eq!(w.alloc_raw(u32::MAX).unwrap(), 0);
    assert_eq!(w.alloc_raw(0xF000_0000).unwrap(), 0);
    assert_ne!(w.alloc_raw(16).unwrap(), 0);
    check_corpus(&mut w, h, &snap);
}

/// One case of `policies/search-corpus.json`: its kind, its query, and the
/// lines sent and answers given, page by page, by `pdp search`.
struct SearchChain {
    name: String,
    kind: String,
    query: Value,
    lines: Vec<String>,
    answers: Vec<String>,
}

/// `query` as the line sent, with `token` as its page token (a string
/// query is sent as it is).
fn search_line(query: &Value, token: Option<&str>) -> String {
    match (query, token) {
        (Value::String(raw), _) => raw.clone(),
        (q, None) => q.to_string(),
        (q, Some(t)) => {
            let mut q = q.clone();
            q["page"]["token"] = json!(t);
            q.to_string()
        }
    }
}

fn next_token(answer: &str) -> Option<String> {
    json(answer)["next_token"].as_str().map(str::to_owned)
}

/// `pdp search KIND` over `lines`, one answer line each.
fn cli_search(
    pdp: &std::path::Path,
    dir: &std::path::Path,
    kind: &str,
    lines: &[&str],
) -> Vec<String> {
    use std::io::Write as _;
    use std::process::{Command, Stdio};
    let mut child = Command::new(pdp)
        .arg("search")
        .arg(kind)
        .arg("--bundle")
        .arg(dir.join("bundle1.tar.gz"))
        .arg("--trust-key")
        .arg(dir.join("k.pub.pem"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", pdp.display()));
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(lines.join("\n").as_bytes()).unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "pdp search {kind} failed");
    let answers: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(answers.len(), lines.len());
    answers
}

/// Every search of the corpus, followed page by page through `pdp search`
/// (the CLI named by `PDP_BIN`, over the bundle `bytes` written to a
/// temporary directory): a round asks every unfinished search its next
/// page, with the `next_token` its previous page gave.
fn search_reference(bytes: &[u8]) -> Vec<SearchChain> {
    let pdp = std::env::var_os("PDP_BIN")
        .map(PathBuf::from)
        .expect("PDP_BIN names the pdp CLI (scripts/test-wasm sets it)");
    let dir = std::env::temp_dir().join(format!("gatehouse-host-search-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("bundle1.tar.gz"), bytes).unwrap();
    std::fs::write(dir.join("k.pub.pem"), signer().public_pem().unwrap()).unwrap();
    let file = json(&std::fs::read_to_string(root().join("policies/search-corpus.json")).unwrap());
    let cases = file["cases"].as_array().unwrap();
    let mut chains: Vec<SearchChain> = cases
        .iter()
        .map(|c| SearchChain {
            name: c["name"].as_str().unwrap().to_owned(),
            kind: c["kind"].as_str().unwrap().to_owned(),
            query: c["query"].clone(),
            lines: Vec::new(),
            answers: Vec::new(),
        })
        .collect();
    for _round in 0..100 {
        let mut pending: Vec<(usize, String)> = Vec::new();
        for (i, case) in cases.iter().enumerate() {
            let chain = &chains[i];
            let token = match chain.answers.last() {
                Some(last) => match next_token(last) {
                    Some(t) => Some(t),
                    None => continue,
                },
                None => match case["token_from"].as_str() {
                    None => None,
                    Some(from) => {
                        let j = chains.iter().position(|c| c.name == from).unwrap();
                        let Some(first) = chains[j].answers.first() else {
                            continue;
                        };
                        Some(next_token(first).expect("token_from names a case of several pages"))
                    }
                },
            };
            pending.push((i, search_line(&chain.query, token.as_deref())));
        }
        if pending.is_empty() {
            std::fs::remove_dir_all(&dir).ok();
            return chains;
        }
        for kind in ["resource", "subject", "action"] {
            let asked: Vec<&(usize, String)> = pending
                .iter()
                .filter(|(i, _)| chains[*i].kind == kind)
                .collect();
            if asked.is_empty() {
                continue;
            }
            let lines: Vec<&str> = asked.iter().map(|(_, l)| l.as_str()).collect();
            for ((i, line), answer) in asked.iter().zip(cli_search(&pdp, &dir, kind, &lines)) {
                chains[*i].lines.push(line.clone());
                chains[*i].answers.push(answer);
            }
        }
    }
    panic!("a search did not end within 100 pages");
}

/// Every search of the corpus through the C ABI, following the module's
/// own `next_token` from page to page: each page byte-identical to `pdp
/// search`'s answer line (and to pdp-core in this process).
#[test]
fn searches_answer_byte_identically_page_by_page() {
    let bytes = bundle(1);
    let snap = native(&bytes, None);
    let chains = search_reference(&bytes);
    let mut w = instance();
    let h = loaded(&mut w, &bytes);
    let (mut pages, mut found, mut failed) = (0, 0, 0);
    for c in &chains {
        let mut line = c.lines[0].clone();
        for (i, want) in c.answers.iter().enumerate() {
            let got = w.search(h, &c.kind, line.as_bytes()).unwrap();
            assert_eq!(&got, want, "{} page {}", c.name, i + 1);
            assert_eq!(
                got,
                snap.search_json(&c.kind, line.as_bytes()).to_json(),
                "{} page {} (in-process)",
                c.name,
                i + 1
            );
            let v = json(&got);
            pages += 1;
            found += usize::from(v["results"].as_array().is_some_and(|r| !r.is_empty()));
            failed += usize::from(v["type"] == "failure");
            match next_token(&got) {
                Some(t) => line = search_line(&c.query, Some(&t)),
                None => assert_eq!(i + 1, c.answers.len(), "{}", c.name),
            }
            if let Some(next) = c.lines.get(i + 1) {
                assert_eq!(&line, next, "{}: following the module's token", c.name);
            }
        }
    }
    assert!(
        found > 0 && failed > 0,
        "{found} non-empty pages, {failed} failures"
    );
    // A token of revision 1 on revision 2: refused as expired, as natively.
    let multi = chains.iter().find(|c| c.answers.len() > 1).unwrap();
    let token = next_token(&multi.answers[0]).unwrap();
    let newer = bundle(2);
    assert_eq!(json(&w.apply_delta(h, &newer).unwrap())["type"], "success");
    let line = search_line(&multi.query, Some(&token));
    let got = w.search(h, &multi.kind, line.as_bytes()).unwrap();
    assert_eq!(
        got,
        native(&newer, Some(&snap))
            .search_json(&multi.kind, line.as_bytes())
            .to_json()
    );
    assert_eq!(failure_kind(&got), "cursor_expired");
    // Oversized, unknown handle, and every kind of bad bytes.
    let huge = vec![b' '; 100 << 20];
    for kind in ["resource", "subject", "action"] {
        assert_eq!(
            failure_kind(&w.search(h, kind, &huge).unwrap()),
            "request_too_large"
        );
        assert_eq!(
            failure_kind(&w.search(h + 1000, kind, b"{}").unwrap()),
            "unknown_handle"
        );
        for bad in [&b""[..], b"\xff\xfe", b"null", b"{\"page\":"] {
            let got = w.search(h, kind, bad).unwrap();
            assert_eq!(got, snap.search_json(kind, bad).to_json());
            failure_kind(&got);
        }
    }
    println!(
        "{} searches, {pages} pages identical through the C ABI ({found} non-empty, {failed} failures)",
        chains.len()
    );
}
