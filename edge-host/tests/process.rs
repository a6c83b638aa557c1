//! The real binary over a real socket: it starts on the embedded default,
//! prints its address, answers a decision, and exits cleanly on SIGTERM.

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
