//! Decision logs, in-process: off by default; every field of a record for
//! each protocol, allowlisted attributes only and never a token; sampling
//! with injected draws; a stalled sink that holds up no decision, with the
//! counters accounting for every one; file rotation; refused settings.
//! (S3 batches against moto are in `s3.rs`.)

mod common;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use edge_host::decision_log::{Clock, Counts, Hooks, Record, Sampler, Sink};
use edge_host::{Config, api::AppState};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tower::ServiceExt;

/// 2026-12-07T23:00:00.123Z.
const NOW_MS: i64 = 1_796_684_400_123;
/// How long a test waits for the log's own thread, at most.
const DEADLINE: Duration = Duration::from_secs(60);

#[derive(Debug)]
struct FixedClock(i64);
impl Clock for FixedClock {
    fn now_ms(&self) -> i64 {
        self.0
    }
}

/// Draws taken in turn from a list, round and round.
#[derive(Debug)]
struct Draws(Vec<f64>, AtomicUsize);
impl Sampler for Draws {
    fn draw(&self) -> f64 {
        self.0[self.1.fetch_add(1, Ordering::SeqCst) % self.0.len()]
    }
}

/// A sink keeping every line in memory.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<String>>>);
impl Sink for Capture {
    fn write(&mut self, record: &Record) -> std::io::Result<()> {
        self.0.lock().unwrap().push(record.line.clone());
        Ok(())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
impl Capture {
    fn records(&self) -> Vec<Value> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
    fn text(&self) -> String {
        self.0.lock().unwrap().join("\n")
    }
}

/// A sink whose first write never returns: it hands the line to a channel
/// of no capacity that nobody reads.
struct Stalled(std::sync::mpsc::SyncSender<String>);
impl Sink for Stalled {
    fn write(&mut self, record: &Record) -> std::io::Result<()> {
        self.0
            .send(record.line.clone())
            .map_err(std::io::Error::other)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("gh-dlog-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The reference realm with the test keys (a source directory, dev mode),
/// forward-auth behind nginx.
fn keyed(config: Config) -> Config {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    let dir = DIR.get_or_init(|| common::test_realm_dir(&tmp("realm")));
    Config {
        bundles: vec![dir.clone()],
        dev: true,
        forward_auth_proxy: Some(edge_host::config::ForwardAuthProxy::Nginx),
        ..config
    }
}

fn hooks(draws: &[f64]) -> Hooks {
    Hooks {
        clock: Arc::new(FixedClock(NOW_MS)),
        sampler: Arc::new(Draws(draws.to_vec(), AtomicUsize::new(0))),
        ..Hooks::default()
    }
}

/// An app logging to a capture sink with `config`'s decision log settings.
fn captured(config: Config, draws: &[f64]) -> (Router, Arc<AppState>, Capture) {
    let capture = Capture::default();
    let config = keyed(Config {
        decision_log: Some("stdout".into()),
        ..config
    });
    let (app, state) =
        edge_host::app_with(&config, hooks(draws).with_sink(Box::new(capture.clone()))).unwrap();
    (app, state, capture)
}

async fn send(app: &Router, req: Request<Body>) -> (StatusCode, Value) {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn post(path: &str, id: &str, body: &Value) -> Request<Body> {
    Request::post(path)
        .header("content-type", "application/json")
        .header("x-request-id", id)
        .header(
            "traceparent",
            format!("00-0af7651916cd43dd8448eb211c80319c-{:0>16}-01", id.len()),
        )
        .body(Body::from(body.to_string()))
        .unwrap()
}

fn v1(p: &str, a: &str, doc: &str) -> Value {
    json!({"principal": {"type": "User", "id": p}, "action": {"type": "Action", "id": a},
           "resource": {"type": "Document", "id": doc}, "context": {"mfa": true, "client_id": "web-app"}})
}

async fn decide(app: &Router, id: &str, p: &str, doc: &str) -> Value {
    send(
        app,
        post("/v1/is_authorized", id, &v1(p, "readDocument", doc)),
    )
    .await
    .1
}

/// Let the log's thread write everything, and stop it.
async fn flushed(state: &AppState) -> Counts {
    let log = state.decision_log.as_ref().unwrap();
    assert!(
        log.close(DEADLINE).await,
        "the decision log did not flush in time"
    );
    log.counts()
}

/// Every decision is accounted for.
fn balanced(c: &Counts) {
    assert_eq!(
        c.sampled_out + c.dropped + c.logged + c.failed + c.pending,
        c.decisions,
        "{c:?}"
    );
}

async fn metrics(app: &Router) -> String {
    let resp = app
        .clone()
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    String::from_utf8(
        resp.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap()
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} not in metrics"))
}

fn decisions_total(text: &str) -> u64 {
    ["allow", "deny", "failure"]
        .iter()
        .map(|o| {
            metric(
                text,
                &format!("gatehouse_decisions_total{{outcome=\"{o}\"}}"),
            )
        })
        .sum()
}

#[tokio::test]
async fn off_by_default_nothing_is_logged_and_only_decisions_count() {
    assert_eq!(Config::default().decision_log, None);
    let (app, state) = edge_host::app(&keyed(Config::default())).unwrap();
    assert!(state.decision_log.is_none());
    for i in 0..5 {
        decide(&app, &format!("r{i}"), "alice", "design-doc").await;
    }
    let m = metrics(&app).await;
    assert_eq!(decisions_total(&m), 5);
    assert_eq!(metric(&m, "gatehouse_decision_log_enabled"), 0);
    assert_eq!(metric(&m, "gatehouse_decision_log_decisions_total"), 0);
    for r in ["sampled_out", "dropped", "logged", "failed"] {
        assert_eq!(
            metric(
                &m,
                &format!("gatehouse_decision_log_records_total{{result=\"{r}\"}}")
            ),
            0
        );
    }
    let (_, status) = send(
        &app,
        Request::get("/v1/status").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status["decision_log"], json!({"enabled": false}));
}

#[tokio::test]
async fn every_field_for_each_protocol_allowlisted_attributes_only_and_never_a_token() {
    let (app, state, capture) = captured(
        Config {
            decision_log_allowlist: vec![
                "default:context.mfa".into(),
                "default:principal.department".into(),
                "default:resource.classification".into(),
                "*:claim.token_use".into(),
            ],
            ..Config::default()
        },
        &[0.5],
    );
    let token = common::token("alice", "rs256.key.pem", "test-rs256");
    let bearer = format!("Bearer {token}");
    let doc = json!({"type": "Document", "id": "design-doc"});
    let read = json!({"type": "Action", "id": "readDocument"});

    let (_, a) = decide_full(&app, "v1-one", "alice", "design-doc").await;
    let revision = a["revision"].as_u64().unwrap();
    let policies = a["determining_policies"].clone();
    send(
        &app,
        post(
            "/v1/batch_is_authorized",
            "v1-batch",
            &json!({"requests": [v1("alice", "readDocument", "design-doc"), v1("dave", "readDocument", "design-doc")]}),
        ),
    )
    .await;
    send(
        &app,
        post(
            "/v1/is_authorized_with_token",
            "v1-token",
            &json!({"token": token, "action": read, "resource": doc, "context": {"mfa": true, "client_id": "web-app"}}),
        ),
    )
    .await;
    send(
        &app,
        post(
            "/access/v1/evaluation",
            "zen",
            &json!({"subject": {"type": "User", "id": "alice"}, "action": {"name": "readDocument"},
                    "resource": {"type": "Document", "id": "design-doc"}, "context": {"mfa": true, "client_id": "web-app"}}),
        ),
    )
    .await;
    let avp = |op: &str, id: &str, body: Value| {
        Request::post("/")
            .header("x-amz-target", format!("VerifiedPermissions.{op}"))
            .header("x-request-id", id)
            .body(Body::from(body.to_string()))
            .unwrap()
    };
    let avp_item = json!({"policyStoreId": "default",
        "principal": {"entityType": "User", "entityId": "alice"},
        "action": {"actionType": "Action", "actionId": "readDocument"},
        "resource": {"entityType": "Document", "entityId": "design-doc"},
        "context": {"contextMap": {"mfa": {"boolean": true}, "client_id": {"string": "web-app"}}}});
    send(&app, avp("IsAuthorized", "avp-one", avp_item)).await;
    send(
        &app,
        avp(
            "IsAuthorizedWithToken",
            "avp-token",
            json!({"policyStoreId": "default", "identityToken": token,
               "action": {"actionType": "Action", "actionId": "readDocument"},
               "resource": {"entityType": "Document", "entityId": "design-doc"}}),
        ),
    )
    .await;
    send(
        &app,
        Request::get("/v1/forward-auth")
            .header("authorization", &bearer)
            .header("x-original-method", "GET")
            .header("x-original-uri", "/documents/design-doc")
            .header("x-request-id", "fwd")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    // A refused token: no subject, no claim.
    let forged = common::token("alice", "attacker-rs256.key.pem", "test-rs256");
    send(
        &app,
        post(
            "/v1/is_authorized_with_token",
            "forged",
            &json!({"token": forged, "action": read, "resource": doc}),
        ),
    )
    .await;
    // Not answered at all.
    send(
        &app,
        Request::post("/v1/is_authorized")
            .header("x-request-id", "broken")
            .body(Body::from("{not json"))
            .unwrap(),
    )
    .await;

    let c = flushed(&state).await;
    assert_eq!((c.decisions, c.logged, c.dropped), (10, 10, 0), "{c:?}");
    balanced(&c);
    let records = capture.records();
    let by_id = |id: &str| -> Vec<&Value> {
        records
            .iter()
            .filter(|r| r["request_id"] == id)
            .collect::<Vec<_>>()
    };
    let cases = [
        ("v1-one", "v1", "/v1/is_authorized", false),
        ("v1-token", "v1", "/v1/is_authorized_with_token", true),
        ("zen", "authzen", "/access/v1/evaluation", false),
        ("avp-one", "avp", "VerifiedPermissions.IsAuthorized", false),
        (
            "avp-token",
            "avp",
            "VerifiedPermissions.IsAuthorizedWithToken",
            true,
        ),
        ("fwd", "forward_auth", "/v1/forward-auth", true),
    ];
    for (id, protocol, endpoint, with_token) in cases {
        let r = by_id(id);
        assert_eq!(r.len(), 1, "{id}");
        let r = r[0];
        assert_eq!(r["time"], NOW_MS, "{id}");
        assert_eq!(r["realm"], "default", "{id}");
        assert_eq!(r["revision"], revision, "{id}");
        assert_eq!(r["protocol"], protocol, "{id}");
        assert_eq!(r["endpoint"], endpoint, "{id}");
        assert_eq!(r["token"], with_token, "{id}");
        assert_eq!(
            r["principal"],
            json!({"type": "User", "id": "alice"}),
            "{id}"
        );
        assert_eq!(r["action"], read, "{id}");
        assert_eq!(r["resource"], doc, "{id}");
        assert_eq!(r["decision"], "Allow", "{id}");
        assert_eq!(r["reason"], "permit", "{id}");
        assert_eq!(r["determining_policies"], policies, "{id}");
        assert_eq!(r["errored_policies"], json!([]), "{id}");
        assert!(r["latency_us"].is_u64(), "{id}");
        if protocol == "v1" || protocol == "authzen" {
            let tp = r["traceparent"].as_str().unwrap();
            assert!(
                tp.starts_with("00-0af7651916cd43dd8448eb211c80319c-"),
                "{id}"
            );
        } else {
            assert_eq!(r["traceparent"], Value::Null, "{id}");
        }
        // Allowlisted only: mfa but not client_id; the department of the
        // directory user (not its level); the document's classification
        // (a bundle entity; not its owner); token_use but no other claim.
        if protocol == "forward_auth" || id == "avp-token" {
            assert_eq!(r.get("context"), None, "{id}: {r}");
        } else {
            assert_eq!(r["context"], json!({"mfa": true}), "{id}");
        }
        assert_eq!(
            r["principal_attributes"],
            json!({"department": "engineering"}),
            "{id}"
        );
        assert_eq!(
            r["resource_attributes"],
            json!({"classification": "internal"}),
            "{id}"
        );
        if with_token {
            assert_eq!(r["claims"], json!({"token_use": "id"}), "{id}");
        } else {
            assert_eq!(r.get("claims"), None, "{id}");
        }
    }
    let batch = by_id("v1-batch");
    assert_eq!(batch.len(), 2);
    assert_eq!(
        (batch[0]["decision"].as_str(), batch[1]["decision"].as_str()),
        (Some("Allow"), Some("Deny"))
    );
    // The real reason, even where the caller is told only no_permit.
    assert_eq!(batch[1]["reason"], "user_state:Suspended");
    assert_eq!(batch[1]["endpoint"], "/v1/batch_is_authorized");
    let forged_record = by_id("forged")[0];
    assert_eq!(
        (
            &forged_record["decision"],
            &forged_record["reason"],
            &forged_record["principal"]
        ),
        (&json!("Deny"), &json!("token:bad_signature"), &Value::Null)
    );
    assert_eq!(forged_record.get("claims"), None);
    let broken = by_id("broken")[0];
    assert_eq!(
        (&broken["decision"], &broken["reason"], &broken["realm"]),
        (&json!("Error"), &json!("invalid_json"), &Value::Null)
    );
    // No token's text, whole or in part (its signature; its payload), in
    // any record; nor a header's other than the ids.
    let text = capture.text();
    for t in [&token, &forged] {
        for part in t.split('.') {
            assert!(!text.contains(part), "a token part is in the log");
        }
    }
    for never in [
        "Bearer",
        "authorization",
        "web-app",
        "\"iss\"",
        "gatehouse.local",
    ] {
        assert!(!text.contains(never), "{never} is in the log");
    }
    // Metrics and status say the same.
    let m = metrics(&app).await;
    assert_eq!(metric(&m, "gatehouse_decision_log_enabled"), 1);
    assert_eq!(metric(&m, "gatehouse_decision_log_decisions_total"), 10);
    assert_eq!(
        metric(
            &m,
            "gatehouse_decision_log_records_total{result=\"logged\"}"
        ),
        10
    );
    let (_, status) = send(
        &app,
        Request::get("/v1/status").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(
        (
            &status["decision_log"]["enabled"],
            &status["decision_log"]["logged"]
        ),
        (&json!(true), &json!(10))
    );
}

async fn decide_full(app: &Router, id: &str, p: &str, doc: &str) -> (StatusCode, Value) {
    send(
        app,
        post("/v1/is_authorized", id, &v1(p, "readDocument", doc)),
    )
    .await
}

#[tokio::test]
async fn sampling_keeps_the_drawn_share_and_denials_and_errors_when_asked() {
    // Ten allowed decisions at each rate; draws cycle 0.05, 0.35, 0.65, 0.95.
    let draws = [0.05, 0.35, 0.65, 0.95];
    for (rate, kept) in [
        (0.0, vec![]),
        (1.0, (0..10).collect::<Vec<_>>()),
        // Draws below 0.5: the 1st and 2nd of every four.
        (0.5, vec![0, 1, 4, 5, 8, 9]),
        (0.3, vec![0, 4, 8]),
    ] {
        let (app, state, capture) = captured(
            Config {
                decision_log_sample_rate: rate,
                ..Config::default()
            },
            &draws,
        );
        for i in 0..10 {
            let a = decide(&app, &format!("r{i}"), "alice", "design-doc").await;
            assert_eq!(a["decision"], "Allow");
        }
        let c = flushed(&state).await;
        balanced(&c);
        let ids: Vec<String> = capture
            .records()
            .iter()
            .map(|r| r["request_id"].as_str().unwrap().to_owned())
            .collect();
        let want: Vec<String> = kept.iter().map(|i| format!("r{i}")).collect();
        assert_eq!(ids, want, "rate {rate}");
        assert_eq!(
            (c.decisions, c.logged, c.sampled_out),
            (10, want.len() as u64, 10 - want.len() as u64),
            "rate {rate}"
        );
    }
    // At 0%: denials kept when asked, errors when asked, nothing else.
    for (denies, errors, want) in [
        (true, false, vec!["deny"]),
        (false, true, vec!["error"]),
        (true, true, vec!["deny", "error"]),
        (false, false, vec![]),
    ] {
        let (app, state, capture) = captured(
            Config {
                decision_log_sample_rate: 0.0,
                decision_log_denies: denies,
                decision_log_errors: errors,
                ..Config::default()
            },
            &draws,
        );
        decide(&app, "allow", "alice", "design-doc").await;
        let d = decide(&app, "deny", "dave", "design-doc").await;
        assert_eq!(d["decision"], "Deny");
        send(
            &app,
            Request::post("/v1/is_authorized")
                .header("x-request-id", "error")
                .body(Body::from("[]"))
                .unwrap(),
        )
        .await;
        let c = flushed(&state).await;
        balanced(&c);
        let ids: Vec<String> = capture
            .records()
            .iter()
            .map(|r| r["request_id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(ids, want, "denies {denies}, errors {errors}");
        assert_eq!(c.sampled_out, 3 - want.len() as u64);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_sink_holds_up_no_decision_and_every_one_is_counted() {
    const REQUESTS: usize = 2_000;
    const BUFFER: usize = 16;
    // Nobody ever receives: the sink's first write blocks for good.
    let (stall, _never_read) = std::sync::mpsc::sync_channel(0);
    let config = keyed(Config {
        decision_log: Some("stdout".into()),
        decision_log_buffer: BUFFER,
        ..Config::default()
    });
    let (app, state) =
        edge_host::app_with(&config, hooks(&[0.5]).with_sink(Box::new(Stalled(stall)))).unwrap();
    let answered = Arc::new(AtomicUsize::new(0));
    let all = async {
        let mut tasks = Vec::new();
        for t in 0..8 {
            let app = app.clone();
            let answered = Arc::clone(&answered);
            tasks.push(tokio::spawn(async move {
                for i in 0..REQUESTS / 8 {
                    let who = if i % 3 == 0 { "dave" } else { "alice" };
                    let a = decide(&app, &format!("t{t}-{i}"), who, "design-doc").await;
                    assert!(a["decision"].is_string(), "{a}");
                    answered.fetch_add(1, Ordering::SeqCst);
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    };
    tokio::time::timeout(DEADLINE, all)
        .await
        .expect("decisions were held up by a stalled decision log");
    assert_eq!(answered.load(Ordering::SeqCst), REQUESTS);
    let log = state.decision_log.as_ref().unwrap();
    let c = log.counts();
    balanced(&c);
    assert_eq!(c.decisions, REQUESTS as u64);
    assert_eq!((c.logged, c.failed, c.sampled_out), (0, 0, 0), "{c:?}");
    // In flight: the buffer, and the batch the sink is stuck on (taken
    // from a buffer of 16, plus the record that woke the drain).
    assert!(c.pending <= 2 * BUFFER as u64 + 1, "{c:?}");
    assert_eq!(c.dropped, REQUESTS as u64 - c.pending);
    let m = metrics(&app).await;
    assert_eq!(decisions_total(&m), REQUESTS as u64);
    assert_eq!(
        metric(
            &m,
            "gatehouse_decision_log_records_total{result=\"dropped\"}"
        ),
        c.dropped
    );
    assert_eq!(metric(&m, "gatehouse_decision_log_pending"), c.pending);
    // Closing gives up after its deadline instead of hanging the host.
    assert!(!log.close(Duration::from_millis(50)).await);
}

#[tokio::test]
async fn the_file_sink_rotates_by_size_and_keeps_the_newest_files() {
    let dir = tmp("rotation");
    let path = dir.join("decisions.log");
    let config = keyed(Config {
        decision_log: Some(format!("file:{}", path.display())),
        decision_log_file_max_bytes: 2_000,
        decision_log_file_keep: 2,
        ..Config::default()
    });
    let (app, state) = edge_host::app_with(&config, hooks(&[0.5])).unwrap();
    for i in 0..40 {
        decide(&app, &format!("r{i:02}"), "alice", "design-doc").await;
    }
    let c = flushed(&state).await;
    assert_eq!((c.decisions, c.logged), (40, 40), "{c:?}");
    let file = |n: Option<u32>| match n {
        None => path.clone(),
        Some(n) => dir.join(format!("decisions.log.{n}")),
    };
    assert!(!file(Some(3)).exists(), "only two rotated files are kept");
    let mut ids = Vec::new();
    for f in [file(Some(2)), file(Some(1)), file(None)] {
        let text = std::fs::read_to_string(&f).unwrap();
        assert!(text.len() <= 2_000, "{}: {} bytes", f.display(), text.len());
        assert!(text.ends_with('\n'));
        for line in text.lines() {
            let r: Value = serde_json::from_str(line).unwrap();
            ids.push(r["request_id"].as_str().unwrap().to_owned());
        }
    }
    // The newest records, oldest first, none missing in between.
    let first: usize = ids[0][1..].parse().unwrap();
    assert!(first > 0, "nothing was rotated away");
    let want: Vec<String> = (first..40).map(|i| format!("r{i:02}")).collect();
    assert_eq!(ids, want);
    // Appending: a new host on the same file adds to it.
    let before = std::fs::metadata(&path).unwrap().len();
    let (app, state) = edge_host::app_with(&config, hooks(&[0.5])).unwrap();
    decide(&app, "again", "alice", "design-doc").await;
    flushed(&state).await;
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.len() as u64 > before || file(Some(1)).exists(),
        "appended or rotated"
    );
    assert!(text.contains("\"again\""));
}

#[test]
fn decision_log_settings_are_declared_once_and_bad_or_unknown_ones_refused() {
    let load = |pairs: &[(&str, &str)]| {
        Config::load(
            None,
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        )
    };
    let c = load(&[
        ("GATEHOUSE_DECISION_LOG", "file:/tmp/d.log"),
        ("GATEHOUSE_DECISION_LOG_SAMPLE_RATE", "0.01"),
        ("GATEHOUSE_DECISION_LOG_DENIES", "yes"),
        (
            "GATEHOUSE_DECISION_LOG_ALLOWLIST",
            "acme:context.mfa,*:claim.email",
        ),
    ])
    .unwrap();
    assert_eq!(c.decision_log.as_deref(), Some("file:/tmp/d.log"));
    assert_eq!(c.decision_log_sample_rate, 0.01);
    assert!(c.decision_log_denies && !c.decision_log_errors);
    assert_eq!(c.decision_log_allowlist.len(), 2);
    for (typo, meant) in [
        (
            "GATEHOUSE_DECISION_LOG_SAMPLERATE",
            "GATEHOUSE_DECISION_LOG_SAMPLE_RATE",
        ),
        ("GATEHOUSE_DECISION_LOGS", "GATEHOUSE_DECISION_LOG"),
        (
            "GATEHOUSE_DECISION_LOG_ALLOW_LIST",
            "GATEHOUSE_DECISION_LOG_ALLOWLIST",
        ),
    ] {
        let e = load(&[(typo, "1")]).unwrap_err().to_string();
        assert!(e.contains(&format!("did you mean {meant}?")), "{e}");
    }
    for (name, bad) in [
        ("GATEHOUSE_DECISION_LOG", "syslog"),
        ("GATEHOUSE_DECISION_LOG", "s3://"),
        ("GATEHOUSE_DECISION_LOG_SAMPLE_RATE", "1.5"),
        ("GATEHOUSE_DECISION_LOG_SAMPLE_RATE", "-0.1"),
        ("GATEHOUSE_DECISION_LOG_SAMPLE_RATE", "often"),
        ("GATEHOUSE_DECISION_LOG_BUFFER", "0"),
        (
            "GATEHOUSE_DECISION_LOG_ALLOWLIST",
            "acme:headers.authorization",
        ),
        ("GATEHOUSE_DECISION_LOG_ALLOWLIST", "mfa"),
    ] {
        let e = load(&[("GATEHOUSE_DECISION_LOG", "stdout"), (name, bad)]);
        assert!(e.is_err(), "{name}={bad} accepted");
    }
    let dir = tmp("toml");
    let file = dir.join("edge.toml");
    std::fs::write(
        &file,
        "decision_log = \"stdout\"\ndecision_log_sampling = 0.5\n",
    )
    .unwrap();
    let e = Config::load(Some(&file), []).unwrap_err().to_string();
    assert!(e.contains("decision_log_sampling"), "{e}");
    std::fs::write(
        &file,
        "decision_log = \"stdout\"\ndecision_log_sample_rate = 1\ndecision_log_buffer = 8\n",
    )
    .unwrap();
    let c = Config::load(Some(&file), []).unwrap();
    assert_eq!(
        (c.decision_log_sample_rate, c.decision_log_buffer),
        (1.0, 8)
    );
    // A configuration built in code is checked at start too.
    let bad = Config {
        decision_log: Some("stdout".into()),
        decision_log_sample_rate: 2.0,
        ..Config::default()
    };
    assert!(matches!(
        edge_host::app(&keyed(bad)),
        Err(edge_host::StartError::Config(m)) if m.contains("decision_log_sample_rate")
    ));
}
