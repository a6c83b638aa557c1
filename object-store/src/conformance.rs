//! The one conformance suite every writable [`ObjectStore`] must pass (the
//! local directory, S3 against moto, and any store added later): run it
//! from an integration test on a fresh store or an empty prefix.
//!
//! It panics, with a message naming the broken promise, on the first one
//! that does not hold.

use crate::{Condition, Fetched, ObjectStore, Put, StoreError};
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::Poll;

/// Keys every store refuses with [`StoreError::BadKey`].
pub const ESCAPING_KEYS: &[&str] = &[
    "", "../x", "a//b", "a/./b", "/abs", "a/b.lock", "a/.tmp-1", "a\\b", "a/..", "a/",
];

/// Concurrent compare-and-swap writers, and increments each.
const WRITERS: usize = 8;
const INCREMENTS: usize = 10;

/// Check every promise of [`ObjectStore`] on `store`, writing only under
/// `scratch_prefix` (a folder that must be empty; the caller removes it, if
/// at all). Panics on the first broken promise.
pub async fn run(store: &dyn ObjectStore, scratch_prefix: &str) {
    let at = |name: &str| format!("{scratch_prefix}/{name}");
    let what = store.describe();
    let listed = store.list(scratch_prefix).await;
    assert!(
        matches!(&listed, Ok(keys) if keys.is_empty()),
        "{what}: scratch prefix {scratch_prefix:?} must start empty: {listed:?}"
    );

    // A missing key.
    let missing = get(store, &at("missing"), None, 1024).await;
    assert_eq!(missing, Fetched::Missing, "{what}: get of a missing key");

    // Create-only: once.
    let obj = at("obj");
    let e1 = written(
        store,
        &obj,
        b"one",
        Condition::IfAbsent,
        "first create-only put",
    )
    .await;
    assert_found(store, &obj, b"one", &e1, "after the create-only put").await;
    let again = put(store, &obj, b"two", Condition::IfAbsent).await;
    assert_eq!(
        again,
        Put::PreconditionFailed,
        "{what}: second create-only put of {obj}"
    );
    assert_found(store, &obj, b"one", &e1, "after a refused create-only put").await;

    // If-Match with a wrong tag, or on a missing key: nothing changes.
    for wrong in ["\"wrong\"", "wrong", "*", ""] {
        let r = put(store, &obj, b"two", Condition::IfMatch(wrong.into())).await;
        assert_eq!(
            r,
            Put::PreconditionFailed,
            "{what}: If-Match {wrong:?} on {obj}"
        );
    }
    assert_found(store, &obj, b"one", &e1, "after If-Match with wrong tags").await;
    let none = at("none");
    let r = put(store, &none, b"x", Condition::IfMatch(e1.clone())).await;
    assert_eq!(
        r,
        Put::PreconditionFailed,
        "{what}: If-Match on a missing key"
    );
    assert_eq!(
        get(store, &none, None, 1024).await,
        Fetched::Missing,
        "{what}: a refused If-Match created {none}"
    );

    // If-Match with the current tag: swapped; the old tag is stale.
    let e2 = written(
        store,
        &obj,
        b"two",
        Condition::IfMatch(e1.clone()),
        "If-Match with the current tag",
    )
    .await;
    assert_ne!(e1, e2, "{what}: new bytes, same entity tag");
    assert_found(store, &obj, b"two", &e2, "after a compare-and-swap").await;
    let stale = put(store, &obj, b"three", Condition::IfMatch(e1.clone())).await;
    assert_eq!(
        stale,
        Put::PreconditionFailed,
        "{what}: If-Match with a stale tag"
    );
    assert_found(store, &obj, b"two", &e2, "after If-Match with a stale tag").await;

    // An unconditional put overwrites.
    let e3 = written(store, &obj, b"three", Condition::None, "unconditional put").await;
    assert_found(store, &obj, b"three", &e3, "after an unconditional put").await;

    // If-None-Match.
    assert_eq!(
        get(store, &obj, Some(&e3), 1024).await,
        Fetched::NotModified,
        "{what}: If-None-Match with the current tag"
    );
    assert_eq!(
        get(store, &obj, Some(&e1), 1024).await,
        Fetched::Found {
            bytes: b"three".to_vec(),
            etag: Some(e3.clone())
        },
        "{what}: If-None-Match with an old tag"
    );

    // The size limit.
    let big = at("big");
    let e_big = written(store, &big, &[7; 100], Condition::None, "a 100-byte put").await;
    match store.get(&big, None, 99).await {
        Err(StoreError::TooLarge { key, limit: 99 }) if key == big => {}
        other => panic!("{what}: get of 100 bytes with limit 99: {other:?}"),
    }
    assert_found_limit(store, &big, &[7; 100], &e_big, 100).await;

    // Listing: exactly the keys under the folder, at any depth, sorted.
    let mut expected = Vec::new();
    for name in ["list/b", "list/a", "list/sub/c", "list2/x", "listx"] {
        written(
            store,
            &at(name),
            name.as_bytes(),
            Condition::None,
            "put to list",
        )
        .await;
        if name.starts_with("list/") {
            expected.push(at(name));
        }
    }
    expected.sort();
    assert_eq!(
        list(store, &at("list")).await,
        expected,
        "{what}: list of {}",
        at("list")
    );
    assert_eq!(list(store, &at("list2")).await, vec![at("list2/x")]);
    assert_eq!(list(store, &at("list/nothing")).await, Vec::<String>::new());

    // Keys that try to escape.
    for key in ESCAPING_KEYS {
        let scoped = at(key);
        for key in [key.to_string(), scoped] {
            assert!(
                matches!(
                    store.put(&key, b"x", Condition::None).await,
                    Err(StoreError::BadKey(_))
                ),
                "{what}: put of {key:?} not refused"
            );
            assert!(
                matches!(
                    store.get(&key, None, 1024).await,
                    Err(StoreError::BadKey(_))
                ),
                "{what}: get of {key:?} not refused"
            );
            if !key.is_empty() {
                assert!(
                    matches!(store.list(&key).await, Err(StoreError::BadKey(_))),
                    "{what}: list of {key:?} not refused"
                );
            }
        }
    }

    // Concurrent compare-and-swap: no increment lost, no tag repeated.
    let counter = at("counter");
    let e0 = written(store, &counter, b"0", Condition::IfAbsent, "counter").await;
    let etags = Mutex::new(vec![e0]);
    let writers = (0..WRITERS).map(|_| increment(store, &counter, &etags));
    join_all(writers.collect()).await;
    match get(store, &counter, None, 64).await {
        Fetched::Found { bytes, .. } => assert_eq!(
            String::from_utf8_lossy(&bytes),
            (WRITERS * INCREMENTS).to_string(),
            "{what}: {WRITERS} writers x {INCREMENTS} compare-and-swap increments"
        ),
        other => panic!("{what}: counter: {other:?}"),
    }
    let mut etags = etags.into_inner().unwrap_or_else(|e| e.into_inner());
    let all = etags.len();
    etags.sort();
    etags.dedup();
    assert_eq!(all, WRITERS * INCREMENTS + 1, "{what}: successful writes");
    assert_eq!(etags.len(), all, "{what}: an entity tag was given twice");

    // Nothing else appeared under the prefix.
    let mut keys = vec![obj, big, counter];
    keys.extend(
        ["list/b", "list/a", "list/sub/c", "list2/x", "listx"]
            .into_iter()
            .map(at),
    );
    keys.sort();
    assert_eq!(list(store, scratch_prefix).await, keys, "{what}: all keys");
}

/// `INCREMENTS` times: read the counter, write it plus one if unchanged,
/// else read again (a bounded number of times).
async fn increment(store: &dyn ObjectStore, key: &str, etags: &Mutex<Vec<String>>) {
    let what = store.describe();
    for _ in 0..INCREMENTS {
        let mut tries = 0;
        loop {
            tries += 1;
            assert!(tries <= 1000, "{what}: {key}: no increment in 1000 tries");
            let Fetched::Found {
                bytes,
                etag: Some(etag),
            } = get(store, key, None, 64).await
            else {
                panic!("{what}: counter {key} vanished or has no tag");
            };
            let n: usize = std::str::from_utf8(&bytes)
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("{what}: counter {key} holds {bytes:?}"));
            let next = (n + 1).to_string();
            match put(store, key, next.as_bytes(), Condition::IfMatch(etag)).await {
                Put::Written(e) => {
                    etags.lock().unwrap_or_else(|e| e.into_inner()).push(e);
                    break;
                }
                Put::PreconditionFailed => continue,
            }
        }
    }
}

async fn get(store: &dyn ObjectStore, key: &str, inm: Option<&str>, limit: u64) -> Fetched {
    store
        .get(key, inm, limit)
        .await
        .unwrap_or_else(|e| panic!("{}: get {key}: {e}", store.describe()))
}

async fn put(store: &dyn ObjectStore, key: &str, bytes: &[u8], condition: Condition) -> Put {
    store
        .put(key, bytes, condition)
        .await
        .unwrap_or_else(|e| panic!("{}: put {key}: {e}", store.describe()))
}

async fn list(store: &dyn ObjectStore, prefix: &str) -> Vec<String> {
    store
        .list(prefix)
        .await
        .unwrap_or_else(|e| panic!("{}: list {prefix}: {e}", store.describe()))
}

/// A put that must succeed; its quoted entity tag.
async fn written(
    store: &dyn ObjectStore,
    key: &str,
    bytes: &[u8],
    condition: Condition,
    doing: &str,
) -> String {
    match put(store, key, bytes, condition).await {
        Put::Written(etag) => {
            assert!(
                etag.len() >= 2 && etag.starts_with('"') && etag.ends_with('"'),
                "{}: {doing}: entity tag {etag:?} is not quoted",
                store.describe()
            );
            etag
        }
        Put::PreconditionFailed => panic!("{}: {doing} of {key} refused", store.describe()),
    }
}

async fn assert_found(store: &dyn ObjectStore, key: &str, bytes: &[u8], etag: &str, when: &str) {
    let got = get(store, key, None, 1024).await;
    assert_eq!(
        got,
        Fetched::Found {
            bytes: bytes.to_vec(),
            etag: Some(etag.to_owned())
        },
        "{}: {key} {when}",
        store.describe()
    );
}

async fn assert_found_limit(
    store: &dyn ObjectStore,
    key: &str,
    bytes: &[u8],
    etag: &str,
    limit: u64,
) {
    let got = get(store, key, None, limit).await;
    assert_eq!(
        got,
        Fetched::Found {
            bytes: bytes.to_vec(),
            etag: Some(etag.to_owned())
        },
        "{}: {key} with limit {limit}",
        store.describe()
    );
}

/// Drive `futures` concurrently on this task until all are done (the
/// suite holds a borrowed store, so it cannot spawn).
async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    Poll::Ready(v) => *output = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}
