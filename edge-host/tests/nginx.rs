//! A real nginx (`auth_request`) in front of a tiny upstream, asking the
//! real edge-host binary: allowed requests reach the upstream with the
//! user's id, denied ones get 403, missing or invalid tokens 401, a
//! suspended user 403 — and the upstream never sees a refused request,
//! also when the client sends headers of its own to change what its
//! request is checked as (another proxy's method/URI headers, a forged
//! `X-Forwarded-For`).
//!
//! Needs nginx (Debian package `nginx-light` or `nginx`): `scripts/test`
//! installs it and runs this with `--ignored`.

mod common;

use common::token;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The upstream application: answers 200 and remembers what reached it.
fn upstream() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut head = Vec::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                head.push(line.trim_end().to_owned());
            }
            let request_line = head.first().cloned().unwrap_or_default();
            let user = head
                .iter()
                .find_map(|h| {
                    h.to_ascii_lowercase()
                        .strip_prefix("x-gatehouse-user:")
                        .map(|v| v.trim().to_owned())
                })
                .unwrap_or_default();
            log.lock()
                .unwrap()
                .push(format!("{request_line} user={user}"));
            let body = format!("upstream saw {request_line} as {user}");
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (port, seen)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn get(port: u16, path: &str, auth: Option<&str>) -> (u16, String, String) {
    send(port, "GET", path, auth, &[])
}

fn send(
    port: u16,
    method: &str,
    path: &str,
    auth: Option<&str>,
    extra: &[(&str, &str)],
) -> (u16, String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut headers = auth.map_or(String::new(), |a| format!("Authorization: Bearer {a}\r\n"));
    for (k, v) in extra {
        headers.push_str(&format!("{k}: {v}\r\n"));
    }
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: app.local\r\n{headers}Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    (status, head.to_owned(), body.to_owned())
}

#[test]
#[ignore = "needs nginx; scripts/test runs it"]
fn nginx_auth_request_in_front_of_an_upstream() {
    // The edge host on the reference realm trusting the test keys.
    let realm = common::test_realm_dir(
        &std::env::temp_dir().join(format!("gh-nginx-realm-{}", std::process::id())),
    );
    let mut edge = Command::new(env!("CARGO_BIN_EXE_edge-host"))
        .args(["--listen", "127.0.0.1:0", "--dev", "--bundle"])
        .arg(&realm)
        .env("GATEHOUSE_LOG", "warn")
        .env("GATEHOUSE_FORWARD_AUTH_PROXY", "nginx")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(edge.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _edge = Killed(edge);
    let edge_addr = line.trim().rsplit("http://").next().unwrap().to_owned();

    let (up_port, seen) = upstream();
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("gh-nginx-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    let conf = format!(
        r#"daemon off;
master_process off;
pid {dir}/nginx.pid;
error_log {dir}/logs/error.log warn;
events {{ worker_connections 64; }}
http {{
  access_log off;
  client_body_temp_path {dir}/body;
  proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi;
  scgi_temp_path {dir}/scgi;
  server {{
    listen 127.0.0.1:{port};
    location / {{
      auth_request /_gatehouse;
      auth_request_set $gatehouse_user $upstream_http_x_gatehouse_user;
      auth_request_set $gatehouse_reason $upstream_http_x_gatehouse_reason;
      add_header X-Gatehouse-Reason $gatehouse_reason always;
      proxy_set_header X-Gatehouse-User $gatehouse_user;
      proxy_pass http://127.0.0.1:{up_port};
    }}
    location = /_gatehouse {{
      internal;
      proxy_pass http://{edge_addr}/v1/forward-auth;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Original-Method $request_method;
      proxy_set_header X-Original-URI $request_uri;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    }}
  }}
}}
"#,
        dir = dir.display()
    );
    let conf_path = dir.join("nginx.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let bin = std::env::var("GATEHOUSE_NGINX").unwrap_or_else(|_| "nginx".into());
    let nginx = Command::new(&bin)
        .arg("-p")
        .arg(&dir)
        .arg("-c")
        .arg(&conf_path)
        .args(["-e", "stderr"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("{bin}: {e} (apt-get install nginx-light, or run scripts/test)")
        });
    let _nginx = Killed(nginx);
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "nginx did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // Allowed: the upstream answers, and learns who the user is.
    let alice = token("alice", "rs256.key.pem", "test-rs256");
    let (s, _, body) = get(port, "/documents/design-doc", Some(&alice));
    assert_eq!(s, 200, "{body}");
    assert_eq!(
        body,
        "upstream saw GET /documents/design-doc HTTP/1.0 as alice"
    );
    let (s, _, _) = get(port, "/users/alice/profile", Some(&alice));
    assert_eq!(s, 200);

    // Denied by policy, by route, by state; no or bad tokens.
    let judy = token("judy", "rs256.key.pem", "test-rs256");
    let dave = token("dave", "rs256.key.pem", "test-rs256");
    let forged = token("alice", "attacker-rs256.key.pem", "test-rs256");
    for (path, auth, want) in [
        ("/documents/design-doc", Some(judy.as_str()), 403),
        ("/documents/salaries", Some(alice.as_str()), 403),
        ("/admin", Some(alice.as_str()), 403),
        ("/documents/../admin", Some(alice.as_str()), 403),
        ("/documents/design-doc", Some(dave.as_str()), 403),
        ("/documents/design-doc", None, 401),
        ("/documents/design-doc", Some(forged.as_str()), 401),
        ("/documents/design-doc", Some("not-a-jwt"), 401),
    ] {
        let (s, _, body) = get(port, path, auth);
        assert_eq!(s, want, "{path} {auth:?}: {body}");
    }
    // Spoofing. A DELETE that alice may not make (403 as it is) ...
    let (s, head, body) = send(port, "DELETE", "/documents/design-doc", Some(&alice), &[]);
    assert_eq!(s, 403, "{body}");
    assert!(
        head.to_ascii_lowercase().contains("x-gatehouse-reason: "),
        "{head}"
    );
    // ... dressed as a read with Traefik's headers, which nginx passes on:
    // the check is refused (nginx answers 500 for an auth status other
    // than 2xx/401/403), and the DELETE never reaches the upstream.
    for (name, value) in [
        ("X-Forwarded-Method", "GET"),
        ("X-Forwarded-Uri", "/documents/design-doc"),
    ] {
        let (s, _, body) = send(
            port,
            "DELETE",
            "/documents/design-doc",
            Some(&alice),
            &[(name, value)],
        );
        assert_eq!(s, 500, "{name}: {body}");
    }
    // The client's own X-Original-* are overwritten by the location block.
    let (s, _, body) = send(
        port,
        "DELETE",
        "/documents/design-doc",
        Some(&alice),
        &[("X-Original-Method", "GET")],
    );
    assert_eq!(s, 403, "{body}");
    // An edit is allowed only from the office network (10.0.0.0/8). The
    // client is 127.0.0.1; claiming an office address in X-Forwarded-For
    // (or X-Real-IP) changes nothing: only the entry nginx appended counts.
    let sam = token("sam", "rs256.key.pem", "test-rs256");
    for extra in [
        [("X-Forwarded-For", "10.1.2.3")],
        [("X-Real-IP", "10.1.2.3")],
    ] {
        let (s, head, body) = send(port, "PUT", "/documents/design-doc", Some(&sam), &extra);
        assert_eq!(s, 403, "{extra:?}: {body}");
        assert!(
            head.to_ascii_lowercase()
                .contains("x-gatehouse-reason: forbid:edits-from-office-network"),
            "{extra:?}: {head}"
        );
    }

    let reached = seen.lock().unwrap().clone();
    assert_eq!(
        reached,
        [
            "GET /documents/design-doc HTTP/1.0 user=alice",
            "GET /users/alice/profile HTTP/1.0 user=alice"
        ],
        "only allowed requests reach the upstream"
    );
}
