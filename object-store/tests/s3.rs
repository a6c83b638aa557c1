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

use object_store::fault::FaultProxy;
use object_store::{
    Condition, Connect, Fetched, ObjectStore, Put, StoreError, conformance, open, testing,
};
use std::sync::Arc;

const BUCKET: &str = "bundles";

/// Run `body` in a child process with the AWS environment set, on a fresh
/// moto holding the bucket.
fn isolated<F: std::future::Future<Output = ()>>(name: &str, body: impl FnOnce(String) -> F) {
    testing::isolated(name, |moto| async move {
        moto.create_bucket(BUCKET).await;
        let url = moto.url.clone();
        body(url).await;
        drop(moto);
    });
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
        let listed = testing::client(&url)
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
