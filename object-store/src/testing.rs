//! Real S3 in tests: a private `moto_server` on a free loopback port, a
//! bucket on it, and a way to run a test with the AWS environment the SDK's
//! standard chain reads (a test cannot set its own environment safely while
//! other tests run, so the test runs itself again as a child process).
//! Shared by every crate's S3 tests; production code never calls it.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Set in the child process a test runs itself in.
const CHILD: &str = "GATEHOUSE_S3_TEST_CHILD";

/// A running `moto_server` (PyPI `moto[server]>=5.2.1`, named by
/// `GATEHOUSE_MOTO_SERVER`), killed when dropped.
#[derive(Debug)]
pub struct Moto {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Moto {
    /// Start one; its request log is drained so a full pipe cannot stall
    /// it (`DEBUG_MOTO=1` prints it).
    pub fn start() -> Moto {
        let bin = std::env::var("GATEHOUSE_MOTO_SERVER").unwrap_or_else(|_| "moto_server".into());
        let mut child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", "0"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{bin}: {e} (install moto[server]>=5.2.1)"));
        let Some(stderr) = child.stderr.take() else {
            panic!("moto_server without stderr")
        };
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(at) = line.find("http://127.0.0.1:") {
                    let _ = tx.send(line[at..].trim().to_owned());
                }
                if std::env::var_os("DEBUG_MOTO").is_some() {
                    eprintln!("MOTO {line}");
                }
            }
        });
        let url = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(url) => url,
            Err(e) => panic!("moto_server printed no address within 30 s: {e}"),
        };
        Moto { child, url }
    }

    /// A plain SDK client on this server with dummy credentials (for what
    /// stores do not do, such as creating buckets, and for reading objects
    /// past a fault proxy).
    pub fn client(&self) -> aws_sdk_s3::Client {
        client(&self.url)
    }

    /// Create a bucket.
    pub async fn create_bucket(&self, bucket: &str) {
        if let Err(e) = self.client().create_bucket().bucket(bucket).send().await {
            panic!(
                "create bucket {bucket}: {}",
                aws_sdk_s3::error::DisplayErrorContext(&e)
            );
        }
    }
}

/// A plain SDK client on the S3 service at `url` with dummy credentials.
pub fn client(url: &str) -> aws_sdk_s3::Client {
    use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
        .region(Region::new("us-east-1"))
        .endpoint_url(url)
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

/// Whether this process is the child [`isolated`] started.
pub fn in_child() -> bool {
    std::env::var_os(CHILD).is_some()
}

/// In the parent: run the ignored test `name` of the current test binary
/// alone in a child process with dummy AWS credentials and region set and
/// no endpoint, profile or instance metadata to find, and require that it
/// ran and passed. In the child: run `body` (on a multi-threaded runtime)
/// with a fresh [`Moto`].
pub fn isolated<F: std::future::Future<Output = ()>>(name: &str, body: impl FnOnce(Moto) -> F) {
    if in_child() {
        let rt = match tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => panic!("runtime: {e}"),
        };
        rt.block_on(body(Moto::start()));
        return;
    }
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => panic!("current exe: {e}"),
    };
    let out = Command::new(exe)
        .args([
            name,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/nonexistent/aws-config")
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/aws-credentials",
        )
        .env_remove("AWS_ENDPOINT_URL")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_SESSION_TOKEN")
        .output();
    let out = match out {
        Ok(out) => out,
        Err(e) => panic!("{name} in a child process: {e}"),
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // What the child printed is the test's (timings it reports); its
    // runner's tally is not shown, so a run's counts stay the parent's.
    for line in stdout.lines() {
        let line = match line
            .strip_prefix("test ")
            .and_then(|l| l.split_once(" ... "))
        {
            Some((_, rest)) => rest.trim_end_matches("ok").trim(),
            None => line,
        };
        let tally = line.starts_with("test result:") || line.starts_with("running ");
        if !tally && !line.trim().is_empty() {
            println!("{line}");
        }
    }
    assert!(
        out.status.success() && stdout.contains("test result: ok. 1 passed"),
        "{name} in a child process: {}\n{stdout}\n{stderr}",
        out.status
    );
}
