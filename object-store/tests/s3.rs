//! The S3 store against a real S3 implementation (`moto_server`): the
//! conformance suite, and retries through the fault proxy.
//!
//! Needs `moto_server` (PyPI `moto[server]>=5.2.1`), named by
//! `GATEHOUSE_MOTO_SERVER`:
//! `GATEHOUSE_MOTO_SERVER=.../moto_server cargo test -p object-store --test s3 -- --ignored`.
//!
//! Credentials and region come from the standard AWS chain, that is from
//! the environment; a test cannot set its own environment safely while
//! other tests run, so each test runs itself again as a child process with
//! dummy credentials set.

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use object_store::fault::FaultProxy;
use object_store::{Condition, Connect, Fetched, ObjectStore, Put, StoreError, conformance, open};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

const CHILD: &str = "GATEHOUSE_OBJECT_STORE_S3_CHILD";
const BUCKET: &str = "bundles";

/// In the parent: run test `name` alone in a child process with the AWS
/// environment set, and require that it ran and passed. In the child: run
/// `body` on a fresh moto.
fn isolated<F: std::future::Future<Output = ()>>(name: &str, body: impl FnOnce(String) -> F) {
    if std::env::var_os(CHILD).is_some() {
        let (_moto, url) = moto();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            create_bucket(&url).await;
            body(url).await;
        });
        return;
    }
    let exe = std::env::current_exe().unwrap();
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
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("test result: ok. 1 passed"),
        "{name} in a child process: {}\n{stdout}\n{stderr}",
        out.status
    );
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `moto_server` on a free loopback port (as edge-host/tests/s3.rs starts
/// it); its request log is drained so a full pipe cannot stall it.
fn moto() -> (Killed, String) {
    let bin = std::env::var("GATEHOUSE_MOTO_SERVER").unwrap_or_else(|_| "moto_server".into());
    let mut child = Command::new(&bin)
        .args(["-H", "127.0.0.1", "-p", "0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{bin}: {e} (install moto[server]>=5.2.1)"));
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines() {
            let Ok(line) = line else { break };
            if let Some(at) = line.find("http://127.0.0.1:") {
                let _ = tx.send(line[at..].trim().to_owned());
            }
            if std::env::var_os("DEBUG_MOTO").is_some() {
                eprintln!("MOTO {line}");
            }
        }
    });
    let url = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("moto_server printed no address");
    (Killed(child), url)
}

/// A plain SDK client on moto, for what the store does not do (buckets)
/// and to read objects past the proxy.
fn raw_client(url: &str) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
        .region(Region::new("us-east-1"))
        .endpoint_url(url)
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

async fn create_bucket(url: &str) {
    raw_client(url)
        .create_bucket()
        .bucket(BUCKET)
        .send()
        .await
        .unwrap();
}

fn connect(endpoint: &str, max_attempts: u32) -> Connect {
    Connect {
        s3_force_path_style: true,
        endpoint: Some(endpoint.to_owned()),
        max_attempts,
        ..Connect::default()
    }
}

async fn store(location: &str, endpoint: &str, max_attempts: u32) -> Arc<dyn ObjectStore> {
    open(location, &connect(endpoint, max_attempts))
        .await
        .unwrap()
}

async fn written(store: &dyn ObjectStore, key: &str, bytes: &[u8], condition: Condition) -> String {
    match store.put(key, bytes, condition).await.unwrap() {
        Put::Written(etag) => etag,
        Put::PreconditionFailed => panic!("put {key} refused"),
    }
}

async fn assert_holds(store: &dyn ObjectStore, key: &str, bytes: &[u8], etag: &str) {
    assert_eq!(
        store.get(key, None, 1024).await.unwrap(),
        Fetched::Found {
            bytes: bytes.to_vec(),
            etag: Some(etag.to_owned())
        },
        "{key} read back from moto directly"
    );
}

#[test]
#[ignore = "needs moto_server (GATEHOUSE_MOTO_SERVER)"]
fn s3_conforms() {
    isolated("s3_conforms", |url| async move {
        let prefixed = store("s3://bundles/gatehouse/prod", &url, 4).await;
        assert_eq!(prefixed.describe(), "s3://bundles/gatehouse/prod");
        conformance::run(prefixed.as_ref(), "scratch").await;
        // Keys are relative to the prefix: in the bucket they are under it.
        let listed = raw_client(&url)
            .list_objects_v2()
            .bucket(BUCKET)
            .prefix("gatehouse/prod/scratch/obj")
            .send()
            .await
            .unwrap();
        let keys: Vec<_> = listed.contents().iter().filter_map(|o| o.key()).collect();
        assert_eq!(keys, ["gatehouse/prod/scratch/obj"]);
        // The whole bucket as a store, too.
        let whole = store("s3://bundles", &url, 4).await;
        conformance::run(whole.as_ref(), "root-scratch").await;
        assert!(
            whole
                .list("gatehouse/prod/scratch")
                .await
                .unwrap()
                .contains(&"gatehouse/prod/scratch/obj".to_owned())
        );
        // Listings page: more keys than one ListObjectsV2 page holds.
        let many = store("s3://bundles/many", &url, 4).await;
        let mut expected = Vec::new();
        for i in 0..1005 {
            let key = format!("p/{i:04}");
            written(many.as_ref(), &key, b"x", Condition::None).await;
            expected.push(key);
        }
        assert_eq!(many.list("p").await.unwrap(), expected);
    });
}

#[test]
#[ignore = "needs moto_server (GATEHOUSE_MOTO_SERVER)"]
fn a_burst_of_503s_is_absorbed_by_retries() {
    isolated("a_burst_of_503s_is_absorbed_by_retries", |url| async move {
        let proxy = FaultProxy::start(&url).await.unwrap();
        let direct = store("s3://bundles", &url, 1).await;
        let through = store("s3://bundles", &proxy.url(), 4).await;
        let e1 = written(through.as_ref(), "acme/HEAD", b"1", Condition::IfAbsent).await;
        assert_holds(direct.as_ref(), "acme/HEAD", b"1", &e1).await;

        proxy.fail_next(2, 503);
        let before = (proxy.requests(), proxy.forwarded());
        let e2 = written(
            through.as_ref(),
            "acme/HEAD",
            b"2",
            Condition::IfMatch(e1.clone()),
        )
        .await;
        assert_eq!(
            (proxy.requests() - before.0, proxy.forwarded() - before.1),
            (3, 1),
            "two 503s, then the retry that was forwarded"
        );
        assert_ne!(e1, e2);
        assert_holds(direct.as_ref(), "acme/HEAD", b"2", &e2).await;

        // Reads retry the same way (500 is transient too).
        proxy.fail_next(2, 500);
        assert_eq!(
            through.get("acme/HEAD", Some(&e1), 1024).await.unwrap(),
            Fetched::Found {
                bytes: b"2".to_vec(),
                etag: Some(e2.clone())
            }
        );

        // Retries are bounded: 4 failures in a row exhaust 4 attempts.
        proxy.fail_next(4, 503);
        let before = proxy.requests();
        let failed = through
            .put("acme/HEAD", b"3", Condition::IfMatch(e2.clone()))
            .await;
        assert!(
            matches!(&failed, Err(StoreError::Refused { message, .. }) if message.starts_with("503")),
            "{failed:?}"
        );
        assert_eq!(proxy.requests() - before, 4);
        assert_holds(direct.as_ref(), "acme/HEAD", b"2", &e2).await;
    });
}

#[test]
#[ignore = "needs moto_server (GATEHOUSE_MOTO_SERVER)"]
fn without_retries_a_fault_surfaces_and_changes_nothing() {
    isolated(
        "without_retries_a_fault_surfaces_and_changes_nothing",
        |url| async move {
            let proxy = FaultProxy::start(&url).await.unwrap();
            let direct = store("s3://bundles", &url, 1).await;
            let through = store("s3://bundles", &proxy.url(), 1).await;
            let e1 = written(direct.as_ref(), "acme/HEAD", b"1", Condition::IfAbsent).await;

            proxy.fail_next(1, 503);
            let failed = through
                .put("acme/HEAD", b"2", Condition::IfMatch(e1.clone()))
                .await;
            assert!(
                matches!(&failed, Err(StoreError::Refused { key, message }) if key == "acme/HEAD" && message.starts_with("503")),
                "{failed:?}"
            );
            assert_holds(direct.as_ref(), "acme/HEAD", b"1", &e1).await;

            // The store gone: unreachable, for writes and reads alike.
            proxy.set_down(true);
            let failed = through
                .put("acme/HEAD", b"2", Condition::IfMatch(e1.clone()))
                .await;
            assert!(
                matches!(&failed, Err(StoreError::Unreachable(_))),
                "{failed:?}"
            );
            let read = through.get("acme/HEAD", None, 1024).await;
            assert!(matches!(&read, Err(StoreError::Unreachable(_))), "{read:?}");
            assert_holds(direct.as_ref(), "acme/HEAD", b"1", &e1).await;

            // Back: the same write goes through.
            proxy.set_down(false);
            let e2 = written(through.as_ref(), "acme/HEAD", b"2", Condition::IfMatch(e1)).await;
            assert_holds(direct.as_ref(), "acme/HEAD", b"2", &e2).await;
        },
    );
}
