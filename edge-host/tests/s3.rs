//! The S3 bundle source against a real S3 implementation (`moto_server`)
//! and the real binary: publish a snapshot, a delta, a tampered delta, a
//! rolled-back HEAD, a gap; take S3 away and bring it back; restart the host
//! while S3 is down and serve the persisted bundle.
//!
//! Needs `moto_server` (PyPI `moto[server]`): `scripts/test` installs it and
//! runs this with `--ignored`, pointing `GATEHOUSE_MOTO_SERVER` at it.

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use pdp_core::bundle::{BundleHeader, write_archive};
use pdp_core::layout::{HEAD_FORMAT, Head, RealmKeys};
use pdp_core::source::{BuildOptions, build};
use pdp_core::{BundleKind, BundleSigner};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const REALM: &str = "acme";
/// Bundles are built "an hour ago": freshness then comes only from signed
/// `HEAD` records, which is what the staleness checks test.
const AN_HOUR: i64 = 3600;
/// The hosts' staleness limit, seconds, and the control plane's re-signing
/// interval it allows (a quarter of it).
const STALENESS: u64 = 12;
const RESIGN: u64 = STALENESS / 4;

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `moto_server` on a free loopback port; its request log is drained (a
/// full pipe would stall it) and its 304 answers to `HEAD` polls counted.
fn moto() -> (Killed, String, Arc<AtomicUsize>) {
    let bin = std::env::var("GATEHOUSE_MOTO_SERVER").unwrap_or_else(|_| "moto_server".into());
    let mut child = Command::new(&bin)
        .args(["-H", "127.0.0.1", "-p", "0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{bin}: {e} (install moto[server], or run scripts/test)"));
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let not_modified = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&not_modified);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines() {
            let Ok(line) = line else { break };
            if let Some(at) = line.find("http://127.0.0.1:") {
                let _ = tx.send(line[at..].trim().to_owned());
            }
            if std::env::var("DEBUG_MOTO").is_ok() {
                eprintln!("MOTO {line}");
            }
            if line.contains("/HEAD?") && line.contains(" 304 ") {
                counter.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    let url = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("moto_server printed no address");
    (Killed(child), url, not_modified)
}

/// A loopback TCP relay in front of moto that can be switched off (new
/// connections are closed at once): "S3 is down" without losing its data.
struct Relay {
    addr: String,
    up: Arc<AtomicBool>,
}

impl Relay {
    fn start(target: &str) -> Relay {
        let target = target.trim_start_matches("http://").to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let up = Arc::new(AtomicBool::new(true));
        let flag = Arc::clone(&up);
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(client) = conn else { continue };
                if !flag.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(&target) else {
                    continue;
                };
                let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
                    continue;
                };
                std::thread::spawn(move || pipe(client, server));
                std::thread::spawn(move || pipe(s2, c2));
            }
        });
        Relay { addr, up }
    }
    fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let _ = std::io::copy(&mut from, &mut to);
    let _ = to.shutdown(std::net::Shutdown::Both);
}

/// The control plane's side, reduced to what the test needs.
struct Publisher {
    client: aws_sdk_s3::Client,
    bucket: String,
    keys: RealmKeys,
    rt: tokio::runtime::Runtime,
}

impl Publisher {
    fn new(moto_url: &str, bucket: &str) -> Publisher {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
            .region(Region::new("us-east-1"))
            .endpoint_url(moto_url)
            .force_path_style(true)
            .build();
        let client = aws_sdk_s3::Client::from_conf(config);
        rt.block_on(client.create_bucket().bucket(bucket).send())
            .unwrap();
        Publisher {
            client,
            bucket: bucket.to_owned(),
            keys: RealmKeys::new("gatehouse", REALM),
            rt,
        }
    }

    fn put(&self, key: &str, bytes: Vec<u8>) {
        self.rt
            .block_on(
                self.client
                    .put_object()
                    .bucket(&self.bucket)
                    .key(key)
                    .body(bytes.into())
                    .send(),
            )
            .unwrap();
    }

    fn delete(&self, key: &str) {
        self.rt
            .block_on(
                self.client
                    .delete_object()
                    .bucket(&self.bucket)
                    .key(key)
                    .send(),
            )
            .unwrap();
    }

    /// A `HEAD` signed now, as a control plane re-signing every
    /// [`RESIGN`] seconds writes it.
    fn head(&self, snapshot: u64, revision: u64) -> i64 {
        let head = Head {
            format: HEAD_FORMAT.into(),
            realm: REALM.into(),
            revision,
            snapshot,
            issued_at: now(),
            resign_interval_seconds: RESIGN,
        };
        self.put(&self.keys.head(), head.seal(&signer()));
        head.issued_at
    }

    fn snapshot(&self, revision: u64, users: &[Value]) {
        self.put(&self.keys.snapshot(revision), snapshot(revision, users));
    }

    fn delta(&self, revision: u64, changes: &[Value]) {
        self.put(
            &self.keys.delta(revision),
            delta(revision, changes, &signer()),
        );
    }
}

fn now() -> i64 {
    edge_host::realm::now()
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn signer() -> BundleSigner {
    BundleSigner::from_seed(&[5; 32])
}

fn users() -> Vec<Value> {
    std::fs::read_to_string(root().join("policies/users.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn with_state(user: &str, state: &str) -> Value {
    let mut u = users().into_iter().find(|u| u["id"] == user).unwrap();
    u["state"] = json!(state);
    u
}

fn jsonl(lines: &[Value]) -> Vec<u8> {
    lines
        .iter()
        .map(|v| format!("{v}\n"))
        .collect::<String>()
        .into_bytes()
}

fn snapshot(revision: u64, users: &[Value]) -> Vec<u8> {
    let mut files = BTreeMap::new();
    for n in pdp_core::manifest::member::SOURCE {
        if let Ok(b) = std::fs::read(root().join("policies").join(n)) {
            files.insert(n.to_owned(), b);
        }
    }
    files.insert("users.jsonl".into(), jsonl(users));
    let opts = BuildOptions {
        realm: REALM.into(),
        revision,
        created_at: now() - AN_HOUR,
        gzip: true,
    };
    build(&files, &opts, Some(&signer())).unwrap()
}

fn delta(revision: u64, changes: &[Value], signer: &BundleSigner) -> Vec<u8> {
    let header = BundleHeader {
        realm: REALM.into(),
        revision,
        kind: BundleKind::Delta,
        base_revision: Some(revision - 1),
        created_at: now() - AN_HOUR,
        identity: None,
    };
    let members = BTreeMap::from([("users.jsonl".to_owned(), jsonl(changes))]);
    write_archive(&header, &members, Some(signer), true).unwrap()
}

/// The edge host binary, polling the realm through the relay every second.
struct Host {
    _child: Killed,
    addr: String,
}

impl Host {
    fn start(relay: &Relay, bucket: &str, dir: &Path, state_dir: Option<&Path>) -> Host {
        let key = dir.join("trust.pub.pem");
        std::fs::write(&key, signer().public_pem().unwrap()).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_edge-host"));
        cmd.args(["--listen", "127.0.0.1:0", "--reload-interval-seconds", "1"])
            .args(["--source", &format!("s3://{bucket}/gatehouse/{REALM}")])
            .arg("--trust-key")
            .arg(format!("{REALM}={}", key.display()))
            .args(["--s3-force-path-style", "--source-timeout-ms", "2000"])
            .args(["--max-staleness-seconds", &STALENESS.to_string()])
            .env("GATEHOUSE_USER_STATE_DETAIL", REALM)
            .env("AWS_ENDPOINT_URL", format!("http://{}", relay.addr))
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONFIG_FILE", dir.join("no-aws-config"))
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                dir.join("no-aws-credentials"),
            )
            .env("GATEHOUSE_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if let Some(s) = state_dir {
            cmd.arg("--state-dir").arg(s);
        }
        let mut child = cmd.spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line.trim().rsplit("http://").next().unwrap().to_owned();
        assert!(line.contains("listening on"), "{line:?}");
        Host {
            _child: Killed(child),
            addr,
        }
    }

    fn call(&self, method: &str, path: &str, body: &str) -> (u16, Value) {
        let mut s = TcpStream::connect(&self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.addr,
            body.len()
        )
        .unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        let status = resp[9..12].parse().unwrap();
        let body = resp.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        (status, serde_json::from_str(body).unwrap_or(Value::Null))
    }

    /// (HTTP status, decision, reason, revision) for `user` reading a document.
    fn decide(&self, user: &str) -> (u16, String, String, u64) {
        let body = json!({"principal": {"type": "User", "id": user}, "action": {"type": "Action", "id": "readDocument"}, "resource": {"type": "Document", "id": "design-doc"}});
        let (s, v) = self.call("POST", "/v1/is_authorized", &body.to_string());
        (
            s,
            v["decision"].as_str().unwrap_or("").to_owned(),
            v["reason"].as_str().unwrap_or("").to_owned(),
            v["revision"].as_u64().unwrap_or(0),
        )
    }

    fn status(&self) -> Value {
        self.call("GET", "/v1/status", "").1["realms"][0].clone()
    }

    fn ready(&self) -> u16 {
        self.call("GET", "/readyz", "").0
    }

    /// Wait (bounded) until `f` holds.
    fn until(&self, what: &str, f: impl Fn(&Host) -> bool) {
        let start = Instant::now();
        while !f(self) {
            assert!(
                start.elapsed() < Duration::from_secs(40),
                "timed out waiting for: {what}; status {}",
                self.status()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("gh-s3-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn allow(rev: u64) -> (u16, String, String, u64) {
    (200, "Allow".into(), "permit".into(), rev)
}

fn deny(reason: &str, rev: u64) -> (u16, String, String, u64) {
    (200, "Deny".into(), reason.into(), rev)
}

/// The revision at which `user` is denied (fails if allowed).
fn denied_at(host: &Host, user: &str) -> u64 {
    let (status, decision, reason, rev) = host.decide(user);
    assert_eq!((status, decision.as_str()), (200, "Deny"), "{reason}");
    assert!(
        ["user_state:Suspended", "stale_bundle"].contains(&reason.as_str()),
        "{reason}"
    );
    rev
}

#[test]
#[ignore = "needs moto_server; scripts/test runs it"]
fn an_s3_source_follows_the_store_and_survives_its_outages() {
    let (_moto, moto_url, not_modified) = moto();
    let relay = Relay::start(&moto_url);
    let s3 = Publisher::new(&moto_url, "bundles");
    let dir = tmp("main");
    let state = dir.join("state");

    // Nothing published yet: the host starts, fails closed, not ready.
    let host = Host::start(&relay, "bundles", &dir, Some(&state));
    assert_eq!(host.decide("alice").0, 503);
    assert_eq!(host.ready(), 503);
    assert_eq!(host.status()["revision"], Value::Null);

    // A snapshot appears: served within a poll.
    s3.snapshot(1, &users());
    s3.head(1, 1);
    host.until("revision 1", |h| h.decide("alice") == allow(1));
    assert_eq!(host.ready(), 200);
    // Polls of an unchanged HEAD are conditional: S3 answers 304.
    let start = Instant::now();
    while not_modified.load(Ordering::SeqCst) == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no conditional GET of HEAD"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // A delta suspends alice: her next decision denies, with the reason.
    s3.delta(2, &[with_state("alice", "Suspended")]);
    s3.head(1, 2);
    host.until("revision 2", |h| {
        h.decide("alice") == deny("user_state:Suspended", 2)
    });
    assert_eq!(host.decide("sam"), allow(2));

    // A tampered delta (signed by another key) is refused; revision 2 stays.
    let failures = host.status()["reload_failures"].as_u64().unwrap();
    s3.put(
        &s3.keys.delta(3),
        delta(
            3,
            &[with_state("alice", "Active")],
            &BundleSigner::from_seed(&[6; 32]),
        ),
    );
    s3.head(1, 3);
    host.until("the forged delta refused", |h| {
        h.status()["reload_failures"].as_u64().unwrap() > failures
    });
    // Still revision 2, denied (for her state, or as stale: HEAD names a
    // revision 3 this host cannot reach, so nothing confirms revision 2).
    assert_eq!(denied_at(&host, "alice"), 2);
    let err = host.status()["source_error"].as_str().unwrap().to_owned();
    assert!(err.contains("deltas/3.tar.gz"), "{err}");

    // A member changed after signing: refused by its hash.
    let mut bytes = delta(3, &[with_state("alice", "Active")], &signer());
    let pos = bytes.len() / 2;
    bytes[pos] ^= 0x55;
    s3.put(&s3.keys.delta(3), bytes);
    let failures = host.status()["reload_failures"].as_u64().unwrap();
    host.until("the corrupted delta refused", |h| {
        h.status()["reload_failures"].as_u64().unwrap() > failures
    });
    assert_eq!(host.decide("alice").3, 2);

    // HEAD rolled back to revision 1: refused, revision 2 stays.
    s3.head(1, 1);
    host.until("rollback refused", |h| {
        h.status()["source_error"]
            .as_str()
            .is_some_and(|e| e.contains("older than revision 2"))
    });
    assert_eq!(denied_at(&host, "alice"), 2);

    // A gap (delta 3 missing, HEAD at 4 on snapshot 1): refused until a
    // newer snapshot exists, then the host jumps to it.
    s3.delete(&s3.keys.delta(3));
    s3.delta(4, &[with_state("alice", "Active")]);
    s3.head(1, 4);
    host.until("gap reported", |h| {
        h.status()["source_error"]
            .as_str()
            .is_some_and(|e| e.contains("deltas/3.tar.gz is missing"))
    });
    assert_eq!(host.decide("alice").3, 2);
    let mut now_users = users();
    now_users.retain(|u| u["id"] != "bob");
    now_users.push(with_state("bob", "Deactivated"));
    s3.snapshot(4, &now_users);
    s3.delta(5, &[with_state("sam", "Suspended")]);
    s3.head(4, 5);
    host.until("snapshot 4 + delta 5", |h| h.decide("alice") == allow(5));
    assert_eq!(host.decide("bob"), deny("user_state:Deactivated", 5));
    assert_eq!(host.decide("sam"), deny("user_state:Suspended", 5));
    // The poll that installed revision 5 clears the error it reported
    // earlier once it ends, a moment after the swap a decision sees.
    host.until("the gap's error cleared", |h| {
        h.status()["source_error"].is_null()
    });

    // S3 goes away: the host keeps serving revision 5 until the staleness
    // limit (12 s), then denies with stale_bundle and is not ready.
    relay.set_up(false);
    s3.delta(6, &[with_state("sam", "Active")]);
    s3.head(4, 6);
    host.until("outage noticed", |h| {
        h.status()["source_error"]
            .as_str()
            .is_some_and(|e| e.contains("unreachable"))
    });
    assert_eq!(host.decide("sam"), deny("user_state:Suspended", 5));
    host.until("stale", |h| h.decide("alice") == deny("stale_bundle", 5));
    assert_eq!(host.ready(), 503);

    // S3 is back, and the control plane re-signs HEAD (as it does every
    // interval): the host catches up and is fresh again.
    relay.set_up(true);
    s3.head(4, 6);
    host.until("revision 6 after the outage", |h| {
        h.decide("sam") == allow(6)
    });
    assert_eq!(host.ready(), 200);
    assert_eq!(host.decide("alice"), allow(6));
    // The control plane re-signs once more; the host keeps that record.
    let signed = s3.head(4, 6);
    host.until("the re-signed HEAD counted", |h| {
        h.status()["fresh_at"].as_i64() == Some(signed)
    });
    drop(host);

    // Restart while S3 is down: the persisted chain (snapshot 4 + deltas 5,
    // 6) is verified and served at once.
    relay.set_up(false);
    let host = Host::start(&relay, "bundles", &dir, Some(&state));
    assert_eq!(host.decide("sam"), allow(6));
    assert_eq!(host.decide("bob"), deny("user_state:Deactivated", 6));
    // Without a state directory there is nothing to serve: fail closed.
    let bare = Host::start(&relay, "bundles", &tmp("bare"), None);
    assert_eq!(bare.decide("alice").0, 503);
    drop(bare);

    // And when S3 returns, the restarted host follows it again.
    relay.set_up(true);
    s3.delta(7, &[with_state("alice", "Suspended")]);
    s3.head(4, 7);
    host.until("revision 7 after restart", |h| {
        h.decide("alice") == deny("user_state:Suspended", 7)
    });
}

/// Decision logs to S3 (moto), in-process: batches of at most
/// `decision_log_s3_max_batch` records, uploaded create-only under
/// `<prefix>/<realm>/YYYY/MM/DD/HH/<start-ms>-<host>-<seq>.jsonl` (the
/// injected clock's hour), the rest at shutdown; an S3 that does not
/// answer costs the batch, counted, after the retries.
#[test]
#[ignore = "needs moto_server; scripts/test runs it"]
fn decision_logs_are_uploaded_to_s3_in_time_partitioned_batches() {
    use axum::body::Body;
    use edge_host::decision_log::{Clock, Hooks};
    use tower::ServiceExt;

    #[derive(Debug)]
    struct Fixed;
    impl Clock for Fixed {
        fn now_ms(&self) -> i64 {
            // 2026-12-07T23:00:00.123Z
            1_796_684_400_123
        }
    }
    object_store::testing::isolated(
        "decision_logs_are_uploaded_to_s3_in_time_partitioned_batches",
        |moto| async move {
            moto.create_bucket("logs").await;
            let realm = tmp("dlog-realm");
            for n in pdp_core::manifest::member::SOURCE {
                std::fs::copy(root().join("policies").join(n), realm.join(n)).unwrap();
            }
            std::fs::copy(
                root().join("pdp-core/tests/keys/identity.json"),
                realm.join("identity.json"),
            )
            .unwrap();
            let config = edge_host::Config {
                bundles: vec![realm],
                dev: true,
                decision_log: Some("s3://logs/edge/decisions".into()),
                decision_log_s3_max_batch: 5,
                s3_force_path_style: true,
                ..edge_host::Config::default()
            };
            let hooks = |endpoint: String| Hooks {
                clock: Arc::new(Fixed),
                s3_endpoint: Some(endpoint),
                host_id: Some("edge-a".into()),
                ..Hooks::default()
            };
            let decide = |app: axum::Router, id: String| async move {
                let body = json!({"principal": {"type": "User", "id": "alice"},
                    "action": {"type": "Action", "id": "readDocument"},
                    "resource": {"type": "Document", "id": "design-doc"}});
                let req = axum::http::Request::post("/v1/is_authorized")
                    .header("x-request-id", id)
                    .body(Body::from(body.to_string()))
                    .unwrap();
                let resp = app.oneshot(req).await.unwrap();
                assert_eq!(resp.status(), 200);
            };
            let deadline = Duration::from_secs(60);

            let (app, state) = edge_host::app_with(&config, hooks(moto.url.clone())).unwrap();
            for i in 0..12 {
                decide(app.clone(), format!("r{i:02}")).await;
            }
            let log = state.decision_log.as_ref().unwrap();
            assert!(log.close(deadline).await, "not uploaded in time");
            let c = log.counts();
            assert_eq!(
                (
                    c.decisions,
                    c.logged,
                    c.failed,
                    c.upload_failures,
                    c.pending
                ),
                (12, 12, 0, 0, 0),
                "{c:?}"
            );
            let s3 = moto.client();
            let listed = s3.list_objects_v2().bucket("logs").send().await.unwrap();
            let keys: Vec<String> = listed
                .contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_owned))
                .collect();
            let want: Vec<String> = (0..3)
                .map(|seq| {
                    format!("edge/decisions/default/2026/12/07/23/1796684400123-edge-a-{seq}.jsonl")
                })
                .collect();
            assert_eq!(keys, want);
            let mut ids = Vec::new();
            for key in &keys {
                let got = s3
                    .get_object()
                    .bucket("logs")
                    .key(key)
                    .send()
                    .await
                    .unwrap();
                let bytes = got.body.collect().await.unwrap().into_bytes();
                let text = String::from_utf8(bytes.to_vec()).unwrap();
                assert!(text.ends_with('\n'));
                for line in text.lines() {
                    let r: Value = serde_json::from_str(line).unwrap();
                    assert_eq!(
                        (&r["time"], &r["realm"], &r["decision"]),
                        (
                            &json!(1_796_684_400_123_i64),
                            &json!("default"),
                            &json!("Allow")
                        )
                    );
                    ids.push(r["request_id"].as_str().unwrap().to_owned());
                }
            }
            let sent: Vec<String> = (0..12).map(|i| format!("r{i:02}")).collect();
            assert_eq!(ids, sent, "every record once, in order");

            // An S3 that is not there: a closed loopback port.
            let closed = {
                let l = TcpListener::bind("127.0.0.1:0").unwrap();
                l.local_addr().unwrap().port()
            };
            let (app, state) =
                edge_host::app_with(&config, hooks(format!("http://127.0.0.1:{closed}"))).unwrap();
            for i in 0..3 {
                decide(app.clone(), format!("lost{i}")).await;
            }
            let log = state.decision_log.as_ref().unwrap();
            assert!(log.close(deadline).await, "retries did not end in time");
            let c = log.counts();
            assert_eq!(
                (
                    c.decisions,
                    c.logged,
                    c.failed,
                    c.upload_failures,
                    c.pending
                ),
                (3, 0, 3, 1, 0),
                "{c:?}"
            );
            drop(moto);
        },
    );
}
