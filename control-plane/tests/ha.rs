//! Two control-plane processes on one PostgreSQL database and one S3
//! bucket (moto), both serving the admin API and publishing, under a
//! bounded concurrent load of admin calls on overlapping users; one of
//! them is killed with SIGKILL in the middle. Afterwards: no duplicate
//! email, no illegal state, nothing pending, every one-shot change in
//! exactly one delta, HEAD never went backwards, and the bundle a decision
//! point loads equals the database.
//!
//! Ignored: scripts/test runs it with its private PostgreSQL cluster
//! (`GATEHOUSE_TEST_POSTGRES`) and `moto_server` (`GATEHOUSE_MOTO_SERVER`).

mod support;

use control_plane::backend::postgres::PostgresRepository;
use control_plane::ports::repository::Repository;
use control_plane::service::publish::load_published;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use object_store::testing::{Moto, isolated};
use pdp_core::layout::{Head, RealmKeys};
use pdp_core::{Bundle, Keyring, Limits, Trust, UserState};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Admin calls in all (`GATEHOUSE_HA_CALLS` for a shorter run by hand).
fn calls() -> usize {
    std::env::var("GATEHOUSE_HA_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5_000)
}
const WORKERS: usize = 16;

const SHARED_USERS: usize = 40;
const EMAILS: usize = 400;
const ROOT_PW: &str = "root passphrase for the ha test";
const BUCKET: &str = "gatehouse";
const PREFIX: &str = "ha";

/// One admin call: status and JSON body, or why there was no answer.
async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Result<(u16, Value), String> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string())
        .header("content-type", "application/json");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let body = body.map(Value::to_string).unwrap_or_default();
    let resp = send
        .send_request(req.body(Full::new(Bytes::from(body))).unwrap())
        .await
        .map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    ))
}

/// The realm's `HEAD`, if any.
async fn head(store: &dyn object_store::ObjectStore, keys: &RealmKeys) -> Option<Head> {
    match store.get(&keys.head(), None, 1 << 16).await.unwrap() {
        object_store::Fetched::Found { bytes, .. } => {
            Some(Head::open(&bytes, pdp_core::Trust::Dev).unwrap())
        }
        _ => None,
    }
}

/// A control-plane process serving the admin API.
struct Process {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn control_plane(env: &[(String, String)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_control-plane"));
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    cmd
}

fn serve(env: &[(String, String)], log: &std::path::Path) -> Process {
    let mut child = control_plane(env)
        .arg("serve")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("control plane listening on http://") {
                let addr = rest.split_whitespace().next().unwrap_or("").to_owned();
                let _ = tx.send(addr);
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the control plane printed its address within 30 s");
    Process {
        child,
        addr: addr.parse().unwrap(),
    }
}

/// Prints the control planes' logs if the test fails.
struct PrintOnPanic(std::path::PathBuf);

impl Drop for PrintOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for name in ["a.log", "b.log"] {
                let text = std::fs::read_to_string(self.0.join(name)).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(30).collect();
                eprintln!("--- {name} (last lines)");
                for line in tail.iter().rev() {
                    eprintln!("{line}");
                }
            }
        }
    }
}

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        usize::try_from(x >> 33).unwrap_or(0) % n
    }
}

const ACTIONS: &[&str] = &[
    "suspend",
    "resume",
    "require_password_reset",
    "complete_password_reset",
    "delete",
    "restore",
    "sign_out_everywhere",
];

#[derive(Default)]
struct Tally {
    by_status: BTreeMap<String, usize>,
    /// One-shot users whose creation was answered 201.
    once: Vec<String>,
}

#[test]
#[ignore = "needs PostgreSQL (GATEHOUSE_TEST_POSTGRES) and moto_server (GATEHOUSE_MOTO_SERVER)"]
fn two_control_planes_one_database_one_bucket_one_killed() {
    isolated(
        "two_control_planes_one_database_one_bucket_one_killed",
        |moto: Moto| async move { run(moto).await },
    );
}

async fn run(moto: Moto) {
    let pg = support::postgres_url().expect("GATEHOUSE_TEST_POSTGRES");
    let schema = support::unique_name("ha");
    // Create the schema (and migrate), then point both processes at it.
    let repo: Arc<dyn Repository> = Arc::new(
        PostgresRepository::connect_in_schema(&pg, &schema, support::keyring())
            .await
            .unwrap(),
    );
    let db = format!("{pg}&options=-c%20search_path%3D{schema}");
    moto.create_bucket(BUCKET).await;
    let env: Vec<(String, String)> = [
        ("GATEHOUSE_CP_DB", db.as_str()),
        ("GATEHOUSE_CP_KEK", support::TEST_KEK),
        ("GATEHOUSE_CP_STORE", &format!("s3://{BUCKET}/{PREFIX}")),
        ("GATEHOUSE_CP_S3_FORCE_PATH_STYLE", "true"),
        ("GATEHOUSE_CP_LISTEN", "127.0.0.1:0"),
        ("GATEHOUSE_CP_ISSUER_BASE", "http://cp.test"),
        ("GATEHOUSE_CP_COMPACT_AFTER_DELTAS", "50"),
        ("AWS_ENDPOINT_URL", moto.url.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();

    let mut boot = control_plane(&env)
        .args([
            "bootstrap",
            "--username",
            "root",
            "--email",
            "root@example.com",
            "--password-stdin",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    {
        use std::io::Write as _;
        writeln!(boot.stdin.take().unwrap(), "{ROOT_PW}").unwrap();
    }
    assert!(boot.wait().unwrap().success(), "bootstrap");

    // Their logs, printed when the test fails.
    let logs = tempfile::tempdir().unwrap();
    let a = serve(&env, &logs.path().join("a.log"));
    let mut b = Some(serve(&env, &logs.path().join("b.log")));
    let _print_logs = PrintOnPanic(logs.path().to_owned());
    let addrs = [a.addr, b.as_ref().unwrap().addr];
    let (status, tokens) = call(
        a.addr,
        "POST",
        "/realms/admin/login",
        None,
        Some(&json!({"username": "root", "password": ROOT_PW})),
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{tokens}");
    let token: Arc<str> = tokens["access_token"].as_str().unwrap().into();
    let api = |addr, method: &'static str, path: String, body: Option<Value>| {
        let token = token.clone();
        async move { call(addr, method, &path, Some(&token), body.as_ref()).await }
    };

    // The realm, groups, and the shared users every worker contends on.
    assert_eq!(
        api(
            a.addr,
            "POST",
            "/v1/realms".into(),
            Some(json!({"name": "acme"}))
        )
        .await
        .unwrap()
        .0,
        201
    );
    for g in 0..4 {
        let (s, v) = api(
            addrs[g % 2],
            "POST",
            "/v1/realms/acme/groups".into(),
            Some(json!({"id": format!("g{g}")})),
        )
        .await
        .unwrap();
        assert_eq!(s, 201, "{v}");
    }
    let mut shared = Vec::new();
    for i in 0..SHARED_USERS {
        let (s, v) = api(
            addrs[i % 2],
            "POST",
            "/v1/realms/acme/users".into(),
            Some(json!({"email": format!("shared{i}@acme.io")})),
        )
        .await
        .unwrap();
        assert_eq!(s, 201, "{v}");
        let id = v["id"].as_str().unwrap().to_owned();
        let (s, v) = api(
            addrs[i % 2],
            "POST",
            format!("/v1/realms/acme/users/{id}/lifecycle/verify"),
            None,
        )
        .await
        .unwrap();
        assert_eq!(s, 200, "{v}");
        shared.push(id);
    }
    let store = object_store::open(
        &format!("s3://{BUCKET}/{PREFIX}"),
        &object_store::Connect {
            s3_force_path_style: true,
            endpoint: Some(moto.url.clone()),
            ..object_store::Connect::default()
        },
    )
    .await
    .unwrap();
    let keys = RealmKeys::new("", "acme");
    let base = head(store.as_ref(), &keys)
        .await
        .expect("published")
        .revision;

    // HEAD, sampled while the load runs, must never go backwards.
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (stop, store, keys) = (stop.clone(), store.clone(), keys.clone());
        tokio::spawn(async move {
            let mut seen = vec![base];
            while !stop.load(Ordering::Relaxed) {
                if let Some(h) = head(store.as_ref(), &keys).await
                    && h.revision != *seen.last().unwrap()
                {
                    seen.push(h.revision);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            seen
        })
    };

    // The load: WORKERS workers, half on each process, CALLS calls in all.
    let done = Arc::new(AtomicUsize::new(0));
    let b_dead = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let shared = Arc::new(shared);
    let (calls, kill_after) = (calls(), calls() * 2 / 5);
    let started = Instant::now();
    let mut workers = Vec::new();
    for w in 0..WORKERS {
        let (done, b_dead, tally, shared, token) = (
            done.clone(),
            b_dead.clone(),
            tally.clone(),
            shared.clone(),
            token.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (w as u64 + 1));
            let mut n = 0;
            loop {
                let i = done.fetch_add(1, Ordering::Relaxed);
                if i >= calls {
                    return;
                }
                let on_b = w % 2 == 1 && !b_dead.load(Ordering::Relaxed);
                let addr = addrs[usize::from(on_b)];
                let user = &shared[rng.below(shared.len())];
                let pick = rng.below(100);
                let (what, method, path, body) = if pick < 20 {
                    let e = rng.below(EMAILS);
                    (
                        "create",
                        "POST",
                        "/v1/realms/acme/users".to_owned(),
                        Some(json!({"email": format!("e{e}@acme.io")})),
                    )
                } else if pick < 25 {
                    n += 1;
                    (
                        "once",
                        "POST",
                        "/v1/realms/acme/users".to_owned(),
                        Some(json!({"email": format!("once-{w}-{n}@acme.io")})),
                    )
                } else if pick < 75 {
                    let action = ACTIONS[rng.below(ACTIONS.len())];
                    (
                        action,
                        "POST",
                        format!("/v1/realms/acme/users/{user}/lifecycle/{action}"),
                        None,
                    )
                } else {
                    let g = rng.below(4);
                    let method = if rng.below(2) == 0 { "PUT" } else { "DELETE" };
                    (
                        "group",
                        method,
                        format!("/v1/realms/acme/users/{user}/groups/g{g}"),
                        None,
                    )
                };
                let out = call(addr, method, &path, Some(&token), body.as_ref()).await;
                let mut t = tally.lock().unwrap();
                let key = match &out {
                    Ok((s, _)) => format!("{what} {s}"),
                    Err(_) => format!("{what} no answer"),
                };
                *t.by_status.entry(key).or_default() += 1;
                if let (Ok((201, v)), "once") = (&out, what) {
                    t.once.push(v["id"].as_str().unwrap().to_owned());
                }
                // 409: a refused transition or a taken email; 404: removing
                // a membership that is not there.
                let refused = if what == "group" { 404 } else { 409 };
                match out {
                    Ok((s, v)) => assert!(
                        [200, 201, 204, refused].contains(&s),
                        "{method} {path}: {s} {v}"
                    ),
                    Err(e) => assert!(on_b, "{method} {path} on the live process: {e}"),
                }
            }
        }));
    }
    // Kill B in the middle of it.
    while done.load(Ordering::Relaxed) < kill_after {
        assert!(
            !workers.iter().any(|w| w.is_finished()),
            "a worker stopped before the kill"
        );
        assert!(
            started.elapsed() < Duration::from_secs(900),
            "the load made no progress"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    b_dead.store(true, Ordering::Relaxed);
    let mut victim = b.take().unwrap();
    victim.child.kill().unwrap(); // SIGKILL
    victim.child.wait().unwrap();
    let killed_at = done.load(Ordering::Relaxed).min(calls);
    for w in workers {
        w.await.unwrap();
    }
    let elapsed = started.elapsed();
    // Whatever the killed process committed and did not publish is
    // published by the survivor.
    let (s, v) = api(
        a.addr,
        "POST",
        "/v1/realms/acme/bundle/publish".into(),
        None,
    )
    .await
    .unwrap();
    assert_eq!(s, 200, "{v}");
    stop.store(true, Ordering::Relaxed);
    let seen = sampler.await.unwrap();
    let tally = std::mem::take(&mut *tally.lock().unwrap());
    println!(
        "{calls} calls by {WORKERS} workers in {elapsed:?} ({:.0}/s); B killed after {killed_at}; \
         HEAD {} -> {} ({} distinct values seen)",
        calls as f64 / elapsed.as_secs_f64(),
        base,
        seen.last().unwrap(),
        seen.len()
    );
    println!("{:#?}", tally.by_status);
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "HEAD went backwards: {seen:?}"
    );

    // The database: unique emails, legal states, nothing pending.
    let users: Vec<(String, String, UserState, Vec<String>)> = repo
        .read(|tx| {
            let mut out = Vec::new();
            tx.for_each_user("acme", &mut |u| {
                out.push((u.id, u.email, u.state, u.groups));
                Ok(true)
            })?;
            Ok(out)
        })
        .await
        .unwrap();
    let emails: BTreeSet<String> = users.iter().map(|u| u.1.to_lowercase()).collect();
    assert_eq!(emails.len(), users.len(), "an email is taken twice");
    for (id, _, state, _) in &users {
        let (s, memory) = repo
            .read({
                let id = id.clone();
                move |tx| tx.user_state("acme", &id)
            })
            .await
            .unwrap();
        assert_eq!(s, *state);
        match state {
            UserState::Suspended => assert!(memory.suspended_from.is_some(), "{id}"),
            UserState::Deleted => assert!(memory.deleted_from.is_some(), "{id}"),
            _ => {}
        }
    }
    assert_eq!(
        repo.read(|tx| tx.pending_count("acme")).await.unwrap(),
        0,
        "changes left unpublished"
    );

    // The bundle a decision point loads equals the database.
    let (s, bundle) = api(a.addr, "GET", "/v1/realms/acme/bundle".into(), None)
        .await
        .unwrap();
    assert_eq!(s, 200);
    let mut ring = Keyring::new();
    ring.add_pem(bundle["bundle_key"].as_str().unwrap())
        .unwrap();
    let snap = load_published(store.as_ref(), "", "acme", &ring)
        .await
        .unwrap();
    assert_eq!(snap.directory().map(|d| d.len()), Some(users.len()));
    for (id, email, state, groups) in &users {
        let u = snap
            .user(id)
            .unwrap_or_else(|| panic!("{id} not published"));
        assert_eq!(u.state(), *state, "{id}");
        assert_eq!(u.email(), email.as_str(), "{id}");
        let mut published: Vec<String> = u.groups().map(str::to_owned).collect();
        published.sort();
        assert_eq!(&published, groups, "{id}");
    }

    // Every one-shot user (created once, never touched again) is in
    // exactly one delta: no change was published twice.
    let last = seen.last().copied().unwrap_or(base);
    let mut deltas_of: BTreeMap<String, usize> = BTreeMap::new();
    for rev in base + 1..=last {
        let bytes = match store.get(&keys.delta(rev), None, 64 << 20).await.unwrap() {
            object_store::Fetched::Found { bytes, .. } => bytes,
            other => panic!("delta {rev}: {other:?}"),
        };
        let b = Bundle::open(&bytes, Trust::Keyring(&ring), &Limits::default()).unwrap();
        for line in b
            .member("users.jsonl")
            .map(|m| String::from_utf8_lossy(m).into_owned())
            .unwrap_or_default()
            .lines()
        {
            let v: Value = serde_json::from_str(line).unwrap();
            *deltas_of
                .entry(v["id"].as_str().unwrap().to_owned())
                .or_default() += 1;
        }
    }
    let once: BTreeSet<&str> = users
        .iter()
        .filter(|u| u.1.starts_with("once-"))
        .map(|u| u.0.as_str())
        .collect();
    for id in &tally.once {
        assert!(
            once.contains(id.as_str()),
            "{id} answered 201 but is not stored"
        );
    }
    for id in &once {
        assert_eq!(deltas_of.get(*id), Some(&1), "one-shot user {id}");
    }
    println!(
        "{} users, {} one-shot users each in exactly one of {} deltas",
        users.len(),
        once.len(),
        last - base
    );
}
