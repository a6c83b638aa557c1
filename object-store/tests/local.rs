//! The conformance suite on a local directory, and what is particular to
//! it: a store is created by its first write, and leaves no temporaries.

use object_store::{
    Condition, Connect, Fetched, LocalDirStore, ObjectStore, Put, conformance, open,
};
use std::path::Path;

fn files(dir: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            files(&entry.path(), out);
        } else {
            out.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_local_directory_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let store = LocalDirStore::new(&root);
    conformance::run(&store, "scratch").await;
    // The same store through `open`, under another prefix.
    let opened = open(&root.display().to_string(), &Connect::default())
        .await
        .unwrap();
    conformance::run(opened.as_ref(), "again/nested").await;
    let mut names = Vec::new();
    files(&root, &mut names);
    assert!(
        names.iter().all(|n| !n.starts_with(".tmp-")),
        "temporary files left: {names:?}"
    );
}

#[tokio::test]
async fn opening_and_reading_create_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("not-yet");
    let store = open(&root.display().to_string(), &Connect::default())
        .await
        .unwrap();
    assert_eq!(
        store.get("acme/HEAD", None, 10).await.unwrap(),
        Fetched::Missing
    );
    assert_eq!(store.list("acme").await.unwrap(), Vec::<String>::new());
    assert_eq!(store.list("").await.unwrap(), Vec::<String>::new());
    assert!(!root.exists(), "a read created the store");
    let written = store.put("acme/HEAD", b"1", Condition::None).await.unwrap();
    assert_eq!(written, Put::Written(LocalDirStore::etag(b"1")));
    assert!(root.join("acme/HEAD").is_file());
    assert_eq!(store.list("").await.unwrap(), ["acme/HEAD"]);
}

#[tokio::test]
async fn entity_tags_are_the_quoted_sha256() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalDirStore::new(dir.path());
    let Put::Written(etag) = store.put("k", b"abc", Condition::IfAbsent).await.unwrap() else {
        panic!("create-only write refused");
    };
    assert_eq!(
        etag,
        "\"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\""
    );
    // A file written by someone else (as a test or an operator would) has
    // the tag of its bytes, and a folder is not an object.
    std::fs::write(dir.path().join("other"), b"abc").unwrap();
    std::fs::create_dir(dir.path().join("folder")).unwrap();
    assert_eq!(
        store.get("other", None, 3).await.unwrap(),
        Fetched::Found {
            bytes: b"abc".to_vec(),
            etag: Some(etag)
        }
    );
    assert_eq!(
        store.get("folder", None, 3).await.unwrap(),
        Fetched::Missing
    );
    assert_eq!(
        store.get("k/below", None, 3).await.unwrap(),
        Fetched::Missing
    );
}

#[tokio::test]
async fn locations_open_the_right_store() {
    let c = Connect::default();
    let http = open("https://cdn.example/b", &c).await.unwrap();
    assert_eq!(http.describe(), "https://cdn.example/b");
    assert!(matches!(
        http.put("k", b"x", Condition::None).await,
        Err(object_store::StoreError::ReadOnly(_))
    ));
    assert!(matches!(
        http.list("k").await,
        Err(object_store::StoreError::ReadOnly(_))
    ));
    for bad in [
        "",
        "s3://",
        "https://user:pw@host/x",
        "https://host/x?token=1",
        "ftp://x",
    ] {
        let err = open(bad, &c).await.map(|s| s.describe());
        assert!(
            matches!(&err, Err(object_store::StoreError::BadLocation(m)) if !m.contains("pw") && !m.contains("token")),
            "{bad:?}: {err:?}"
        );
    }
}
