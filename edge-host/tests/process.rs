//! The real binary over a real socket: it starts on the demo realm, prints
//! its address and a demo token, answers decisions, and exits cleanly on
//! SIGTERM.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn the_binary_serves_the_embedded_default_and_shuts_down_gracefully() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_edge-host"))
        .args(["--listen", "127.0.0.1:0"])
        .env("GATEHOUSE_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line.trim().rsplit("http://").next().unwrap().to_owned();
    assert!(
        line.starts_with("gatehouse edge-host listening on http://127.0.0.1:"),
        "{line}"
    );

    // Request heads are bounded: a 20 KiB header, or 100 header fields, get 431.
    let raw = |head: String| {
        let mut s = TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(head.as_bytes()).unwrap();
        let mut resp = String::new();
        let _ = s.read_to_string(&mut resp);
        resp
    };
    let big = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(20 << 10)
    );
    let resp = raw(big);
    assert!(resp.starts_with("HTTP/1.1 431"), "{resp}");
    let many: String = (0..100).map(|i| format!("X-H{i}: v\r\n")).collect();
    let resp = raw(format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\n{many}Connection: close\r\n\r\n"
    ));
    assert!(resp.starts_with("HTTP/1.1 431"), "{resp}");
    let resp = raw("GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".into());
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");

    let body = r#"{"principal":{"type":"User","id":"alice"},"action":{"type":"Action","id":"readDocument"},"resource":{"type":"Document","id":"design-doc"}}"#;
    let mut s = TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "POST /v1/is_authorized HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains(r#""decision":"Allow""#), "{resp}");

    // SIGTERM: graceful shutdown, exit code 0.
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let mut waited = 0;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(waited < 100, "no exit 10 s after SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
        waited += 1;
    };
    assert!(status.success(), "{status}");
}

#[test]
fn a_client_that_never_finishes_its_request_head_is_disconnected() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_edge-host"))
        .args(["--listen", "127.0.0.1:0", "--header-read-timeout-ms", "300"])
        .env("GATEHOUSE_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line.trim().rsplit("http://").next().unwrap().to_owned();
    let mut s = TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let started = std::time::Instant::now();
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    let waited = started.elapsed();
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        waited < Duration::from_secs(5),
        "connection held for {waited:?}"
    );
    let resp = String::from_utf8_lossy(&resp);
    assert!(
        resp.is_empty() || resp.starts_with("HTTP/1.1 408"),
        "{resp}"
    );
}

#[test]
fn tokens_never_reach_the_logs() {
    let token = common::token("alice", "rs256.key.pem", "test-rs256");
    let signature = token.rsplit('.').next().unwrap().to_owned();
    let log = std::env::temp_dir().join(format!("gh-log-{}.txt", std::process::id()));
    let realm = common::test_realm_dir(
        &std::env::temp_dir().join(format!("gh-log-realm-{}", std::process::id())),
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_edge-host"))
        .args(["--listen", "127.0.0.1:0", "--dev", "--bundle"])
        .arg(&realm)
        .env("GATEHOUSE_LOG", "trace")
        .env("GATEHOUSE_FORWARD_AUTH_PROXY", "traefik")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line.trim().rsplit("http://").next().unwrap().to_owned();
    let send = |req: String| {
        let mut s = TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(req.as_bytes()).unwrap();
        let mut resp = String::new();
        let _ = s.read_to_string(&mut resp);
        resp
    };
    let tampered = format!("{}x", &token[..token.len() - 1]);
    for tok in [&token, &tampered] {
        let body = format!(
            r#"{{"token":"{tok}","action":{{"type":"Action","id":"readDocument"}},"resource":{{"type":"Document","id":"design-doc"}}}}"#
        );
        let resp = send(format!(
            "POST /v1/is_authorized_with_token HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ));
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
        let resp = send(format!(
            "GET /v1/forward-auth HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {tok}\r\nX-Forwarded-Method: GET\r\nX-Forwarded-Uri: /documents/design-doc\r\nConnection: close\r\n\r\n"
        ));
        let want = if tok == &token {
            "HTTP/1.1 200"
        } else {
            "HTTP/1.1 401"
        };
        assert!(resp.starts_with(want), "{resp}");
    }
    let resp = send(format!(
        "POST /v1/introspect HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer not-the-service-secret\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\ntoken={token}",
        token.len() + 6
    ));
    assert!(resp.starts_with("HTTP/1.1 401"), "{resp}");
    let _ = child.kill();
    let _ = child.wait();
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(!logged.is_empty(), "trace logging produced nothing");
    assert!(
        !logged.contains(&signature),
        "a token signature reached the log"
    );
    assert!(
        !logged.contains("not-the-service-secret"),
        "a service secret reached the log"
    );
}

/// The first command of the README: no settings, the demo realm. It says
/// so, prints a token for alice that works, mints more over HTTP, and
/// refuses tokens signed with the keys committed to the repository.
#[test]
fn the_demo_prints_a_working_token_and_trusts_no_committed_key() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_edge-host"))
        .args(["--listen", "127.0.0.1:0"])
        .env("GATEHOUSE_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut lines = Vec::new();
    for _ in 0..4 {
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        lines.push(line.trim_end().to_owned());
    }
    let addr = lines[0].rsplit("http://").next().unwrap().to_owned();
    assert!(lines[0].starts_with("gatehouse edge-host listening on http://127.0.0.1:"));
    assert_eq!(
        lines[1],
        "demo realm: an ID token for alice, valid for 1 h:"
    );
    let printed = lines[2].clone();
    assert!(
        lines[3].contains(&format!("curl -s 'http://{addr}/demo/token?user=dave'")),
        "{}",
        lines[3]
    );
    let send = |req: String| {
        let mut s = TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(req.as_bytes()).unwrap();
        let mut resp = String::new();
        let _ = s.read_to_string(&mut resp);
        resp
    };
    let decide = |token: &str| {
        let body = format!(
            r#"{{"token":"{token}","action":{{"type":"Action","id":"readDocument"}},"resource":{{"type":"Document","id":"design-doc"}}}}"#
        );
        send(format!(
            "POST /v1/is_authorized_with_token HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ))
    };
    let resp = decide(&printed);
    assert!(resp.contains(r#""decision":"Allow""#), "{resp}");
    // Over the socket, the peer is loopback (edge_host::serve supplies the
    // connection's address); the Host must be a local name, and a request
    // that came through a proxy is refused.
    let port = addr.rsplit(':').next().unwrap();
    for (headers, status) in [
        ("Host: x".to_owned(), "403"),
        (format!("Host: evil.example:{port}"), "403"),
        (
            format!("Host: {addr}\r\nX-Forwarded-For: 203.0.113.5"),
            "403",
        ),
        (format!("Host: localhost:{port}\r\nVia: 1.1 proxy"), "403"),
        (format!("Host: localhost:{port}"), "200"),
    ] {
        let resp = send(format!(
            "GET /demo/token?user=alice HTTP/1.1\r\n{headers}\r\nConnection: close\r\n\r\n"
        ));
        assert!(
            resp.starts_with(&format!("HTTP/1.1 {status}")),
            "{headers}: {resp}"
        );
    }
    let resp = send(format!(
        "GET /demo/token?user=dave HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    ));
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let dave = resp.split("\r\n\r\n").nth(1).unwrap().trim().to_owned();
    let resp = decide(&dave);
    assert!(
        resp.contains(r#""reason":"user_state:Suspended""#),
        "{resp}"
    );
    let committed = common::token("alice", "rs256.key.pem", "test-rs256");
    let resp = decide(&committed);
    assert!(resp.contains(r#""reason":"token:unknown_kid""#), "{resp}");
    let resp = send("GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".into());
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let _ = child.kill();
    let _ = child.wait();
    let mut log = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    assert!(log.contains("DEMO REALM"), "{log}");
    assert!(!log.contains("test keys"), "{log}");
    assert!(!log.contains(&printed), "the printed token reached the log");
}

/// Review finding: a demo host listening beyond loopback printed alice's
/// token to stdout. With nothing configured, only a loopback address
/// serves the demo: another does not start, and prints no token.
#[test]
fn a_demo_beyond_loopback_does_not_start_or_print_a_token() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_edge-host"))
        .args(["--listen", "0.0.0.0:0"])
        .env("GATEHOUSE_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut waited = 0;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break Some(st);
        }
        if waited == 100 {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
        waited += 1;
    };
    let (mut stdout, mut stderr) = (String::new(), String::new());
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(
        status.is_some_and(|s| !s.success()),
        "still serving after 10 s, or exit 0: {stdout} {stderr}"
    );
    assert!(!stdout.contains("eyJ"), "a token was printed: {stdout}");
    assert!(!stdout.contains("listening"), "{stdout}");
    assert!(
        stderr.contains("not serving the demo realm") && stderr.contains("0.0.0.0:0"),
        "{stderr}"
    );
}
