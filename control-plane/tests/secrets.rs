//! Secrets at rest: bundle seeds, signing keys and TOTP secrets are stored
//! sealed under the key-encryption key, bound to their rows; a wrong KEK
//! is a typed error that changes nothing; KEKs rotate; secrets an older
//! build stored in clear are sealed at the next start; the binary refuses
//! to start without a KEK. On SQLite, and on PostgreSQL when
//! `GATEHOUSE_TEST_POSTGRES` is set (the raw rows are read with SQL on
//! both).

mod support;

use control_plane::Error;
use control_plane::error::SecretFailure;
use control_plane::ports::repository::{NewRealmRecord, Repository};
use control_plane::secrets::{Keyring, Slot};
use control_plane::service::kek;
use std::sync::Arc;
use support::{Cp, Db, OP, Options, TEST_KEK, TEST_KEK_2, keyring};

/// Raw SQL on a test's database, under the repository's feet.
enum Raw {
    Sqlite(rusqlite::Connection),
    Postgres(tokio_postgres::Client),
}

impl Raw {
    async fn open(db: &Db) -> Raw {
        match db {
            Db::File(path) => Raw::Sqlite(rusqlite::Connection::open(path).unwrap()),
            Db::Postgres { url, schema } => {
                let client = support::raw_postgres(url).await;
                client
                    .batch_execute(&format!("SET search_path TO {schema}"))
                    .await
                    .unwrap();
                Raw::Postgres(client)
            }
            Db::Memory => panic!("raw SQL needs a database file"),
        }
    }

    /// The first column of every row, as bytes (BLOB/BYTEA or TEXT).
    async fn values(&self, sql: &str) -> Vec<Vec<u8>> {
        match self {
            Raw::Sqlite(c) => {
                use rusqlite::types::Value;
                let mut stmt = c.prepare(sql).unwrap();
                stmt.query_map([], |r| r.get::<_, Value>(0))
                    .unwrap()
                    .map(|v| match v.unwrap() {
                        Value::Blob(b) => b,
                        Value::Text(t) => t.into_bytes(),
                        other => panic!("{other:?}"),
                    })
                    .collect()
            }
            Raw::Postgres(c) => c
                .query(sql, &[])
                .await
                .unwrap()
                .iter()
                .map(|r| {
                    r.try_get::<_, Vec<u8>>(0)
                        .or_else(|_| r.try_get::<_, String>(0).map(String::into_bytes))
                        .unwrap()
                })
                .collect(),
        }
    }

    async fn exec(&self, sql: &str) {
        match self {
            Raw::Sqlite(c) => {
                c.execute_batch(sql).unwrap();
            }
            Raw::Postgres(c) => c.batch_execute(sql).await.unwrap(),
        }
    }

    /// Every stored secret, as stored, in a fixed order.
    async fn secrets(&self) -> Vec<Vec<u8>> {
        let mut out = self
            .values("SELECT bundle_key FROM realms ORDER BY name")
            .await;
        out.extend(
            self.values("SELECT key FROM signing_keys ORDER BY realm, kid")
                .await,
        );
        out.extend(
            self.values(
                "SELECT totp_secret FROM credentials WHERE totp_secret IS NOT NULL
                 ORDER BY realm, user_id",
            )
            .await,
        );
        out
    }

    /// Make the database one an older build left: no record that every
    /// secret is sealed (clear values are then legacy ones, sealed at the
    /// next start).
    async fn forget_sealed_only(&self) {
        self.exec("DELETE FROM secrets_at_rest WHERE format = 'sealed-only'")
            .await;
    }

    /// Set a realm's bundle seed column to these bytes.
    async fn set_seed(&self, realm: &str, bytes: &[u8]) {
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        match self {
            Raw::Sqlite(_) => {
                self.exec(&format!(
                    "UPDATE realms SET bundle_key = X'{hex}' WHERE name = '{realm}'"
                ))
                .await
            }
            Raw::Postgres(_) => {
                self.exec(&format!(
                    "UPDATE realms SET bundle_key = '\\x{hex}'::bytea WHERE name = '{realm}'"
                ))
                .await
            }
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn ring(spec: &str) -> Arc<Keyring> {
    Arc::new(Keyring::parse(spec).unwrap())
}

/// What the port returns for the realm's secrets (in clear).
#[derive(Debug, PartialEq)]
struct Opened {
    seeds: Vec<[u8; 32]>,
    keys: Vec<String>,
    totps: Vec<Option<String>>,
}

async fn opened(repo: &Arc<dyn Repository>, users: &[String]) -> control_plane::Result<Opened> {
    let users = users.to_vec();
    repo.read(move |tx| {
        Ok(Opened {
            seeds: vec![tx.bundle_seed("acme")?, tx.bundle_seed("other")?],
            keys: tx
                .signing_keys("acme")?
                .into_iter()
                .map(|k| k.private)
                .collect(),
            totps: users
                .iter()
                .map(|u| Ok(tx.credentials("acme", u)?.totp_secret))
                .collect::<control_plane::Result<_>>()?,
        })
    })
    .await
}

/// Two realms, two users enrolled in TOTP, under [`TEST_KEK`]; the
/// users' ids and TOTP secrets.
async fn setup() -> (Cp, Vec<String>, Vec<String>) {
    let cp = Cp::open(Options {
        file_db: true,
        ..Options::default()
    })
    .await;
    cp.realm("acme").await;
    cp.realm("other").await;
    let mut users = Vec::new();
    let mut totps = Vec::new();
    for email in ["ann@acme.io", "bob@acme.io"] {
        let id = cp.user("acme", email).await;
        totps.push(
            cp.service
                .totp_enroll(OP, "acme", &id)
                .await
                .unwrap()
                .secret,
        );
        users.push(id);
    }
    (cp, users, totps)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stored_bytes_hold_no_secret_and_a_value_moved_to_another_row_does_not_open() {
    let (cp, users, totps) = setup().await;
    let clear = opened(&cp.repo, &users).await.unwrap();
    assert_eq!(
        clear.totps,
        totps.iter().cloned().map(Some).collect::<Vec<_>>()
    );
    let raw = Raw::open(&cp.db).await;
    let stored = raw.secrets().await;
    // Two seeds, at least one signing key, two TOTP secrets.
    assert!(stored.len() >= 5, "{}", stored.len());
    for value in &stored {
        for seed in &clear.seeds {
            assert!(!contains(value, seed), "a bundle seed is stored in clear");
        }
        for key in &clear.keys {
            let pkcs8: serde_json::Value = serde_json::from_str(key).unwrap();
            let pkcs8 = pkcs8["pkcs8"].as_str().unwrap();
            assert!(
                !contains(value, pkcs8.as_bytes()) && !contains(value, b"pkcs8"),
                "a signing key is stored in clear"
            );
        }
        for t in &totps {
            assert!(
                !contains(value, t.as_bytes()),
                "a TOTP secret is stored in clear"
            );
        }
    }

    // Bob's sealed TOTP secret copied onto Ann's row does not open there.
    raw.exec(&format!(
        "UPDATE credentials SET totp_secret =
             (SELECT totp_secret FROM credentials WHERE user_id = '{bob}')
         WHERE user_id = '{ann}'",
        ann = users[0],
        bob = users[1]
    ))
    .await;
    let ann = users[0].clone();
    let e = cp
        .repo
        .read(move |tx| tx.credentials("acme", &ann))
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::Secret { why: SecretFailure::DoesNotOpen(ref k), .. } if k == "test-1"),
        "{e}"
    );
    // Nor does one realm's seed in another realm.
    raw.exec(
        "UPDATE realms SET bundle_key = (SELECT bundle_key FROM realms WHERE name = 'other')
         WHERE name = 'acme'",
    )
    .await;
    let e = cp.repo.read(|tx| tx.bundle_seed("acme")).await.unwrap_err();
    assert!(
        matches!(
            e,
            Error::Secret {
                why: SecretFailure::DoesNotOpen(_),
                ..
            }
        ),
        "{e}"
    );
    // The service says so too (a typed error, not a panic).
    assert!(matches!(
        cp.service.bundle_key(OP, "acme").await,
        Err(Error::Secret { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_kek_is_a_typed_error_and_changes_nothing() {
    let (cp, users, _) = setup().await;
    let raw = Raw::open(&cp.db).await;
    let before = raw.secrets().await;
    // A start with the same id and other bytes is refused...
    let e = cp
        .db
        .open_with(ring("test-1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="))
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::Secret { why: SecretFailure::DoesNotOpen(ref k), .. } if k == "test-1"),
        "{e}"
    );
    // ...and with another KEK altogether, naming the missing one and the
    // settings.
    let e = cp.db.open_with(ring(TEST_KEK_2)).await.unwrap_err();
    assert!(
        matches!(e, Error::Secret { why: SecretFailure::UnknownKek(ref k), .. } if k == "test-1"),
        "{e}"
    );
    assert!(e.to_string().contains("GATEHOUSE_CP_KEK"), "{e}");
    assert_eq!(raw.secrets().await, before);

    // A rewrap that meets a value that does not open (here one moved to
    // another row) fails whole: the values before it stay as they were.
    raw.exec(&format!(
        "UPDATE credentials SET totp_secret =
             (SELECT totp_secret FROM credentials WHERE user_id = '{bob}')
         WHERE user_id = '{ann}'",
        ann = users[0],
        bob = users[1]
    ))
    .await;
    let before = raw.secrets().await;
    let both = cp
        .db
        .open_with(ring(&format!("{TEST_KEK_2},{TEST_KEK}")))
        .await
        .unwrap();
    assert!(matches!(
        kek::rewrap(&both).await,
        Err(Error::Secret {
            why: SecretFailure::DoesNotOpen(_),
            ..
        })
    ));
    assert_eq!(raw.secrets().await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_rewraps_every_secret_and_the_retired_kek_can_then_go() {
    let (cp, users, _) = setup().await;
    let clear = opened(&cp.repo, &users).await.unwrap();
    let raw = Raw::open(&cp.db).await;
    let count = u64::try_from(raw.secrets().await.len()).unwrap();

    // K2 current, K1 retired: everything still opens.
    let both = cp
        .db
        .open_with(ring(&format!("{TEST_KEK_2},{TEST_KEK}")))
        .await
        .unwrap();
    assert_eq!(opened(&both, &users).await.unwrap(), clear);
    let r = kek::rewrap(&both).await.unwrap();
    assert_eq!(r.kek, "test-2");
    assert_eq!((r.rewrapped, r.sealed, r.unchanged), (count, 0, 0), "{r:?}");
    let again = kek::rewrap(&both).await.unwrap();
    assert_eq!((again.rewrapped, again.unchanged), (0, count));

    // K1 is no longer needed; K2 alone opens everything, K1 alone nothing.
    let k2 = cp.db.open_with(ring(TEST_KEK_2)).await.unwrap();
    assert_eq!(opened(&k2, &users).await.unwrap(), clear);
    assert!(matches!(
        cp.db.open_with(ring(TEST_KEK)).await,
        Err(Error::Secret { why: SecretFailure::UnknownKek(ref k), .. }) if k == "test-2"
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_an_older_build_stored_in_clear_are_sealed_at_the_next_start() {
    let (cp, users, totps) = setup().await;
    let clear = opened(&cp.repo, &users).await.unwrap();
    let raw = Raw::open(&cp.db).await;
    // What a build before sealing wrote.
    raw.forget_sealed_only().await;
    raw.set_seed("acme", &clear.seeds[0]).await;
    raw.exec(&format!(
        "UPDATE credentials SET totp_secret = '{}' WHERE user_id = '{}'",
        totps[0], users[0]
    ))
    .await;
    raw.exec(&format!(
        "UPDATE signing_keys SET key = '{}' WHERE realm = 'acme'",
        clear.keys[0].replace('\'', "''")
    ))
    .await;
    // Refused meanwhile (this control plane's start sealed everything).
    assert!(matches!(
        opened(&cp.repo, &users).await,
        Err(Error::Secret {
            why: SecretFailure::InClear,
            ..
        })
    ));
    // The next start seals them.
    let restarted = cp.db.open().await;
    for value in raw.secrets().await {
        assert!(!contains(&value, &clear.seeds[0]));
        assert!(!contains(&value, totps[0].as_bytes()));
        assert!(!contains(&value, b"pkcs8"));
    }
    assert_eq!(opened(&restarted, &users).await.unwrap(), clear);
}

/// The binary, with no `GATEHOUSE_CP_*` variable of this environment.
fn binary(dir: &std::path::Path) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_control-plane"));
    for (name, _) in std::env::vars() {
        if name.starts_with("GATEHOUSE_CP_") {
            cmd.env_remove(name);
        }
    }
    cmd.arg("--db")
        .arg(dir.join("cp.db"))
        .arg("--store")
        .arg(dir.join("store"));
    cmd
}

#[test]
fn the_binary_refuses_to_start_without_a_kek_and_says_how() {
    let dir = tempfile::tempdir().unwrap();
    let out = binary(dir.path()).args(["realm", "list"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("GATEHOUSE_CP_KEK") && err.contains("--dev-ephemeral-kek"),
        "{err}"
    );
    assert!(!dir.path().join("cp.db").exists(), "no database was opened");
    // A misspelt setting is refused, not ignored.
    let out = binary(dir.path())
        .env("GATEHOUSE_CP_KEKFILE", "/nowhere")
        .args(["realm", "list"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("GATEHOUSE_CP_KEKFILE"), "{err}");

    // The development flag starts, and says loudly what it costs...
    let out = binary(dir.path())
        .args(["--dev-ephemeral-kek", "realm", "create", "acme"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("WARNING") && err.contains("UNREADABLE"),
        "{err}"
    );
    // ...which is the truth: the next process cannot read what it sealed.
    let out = binary(dir.path())
        .env("GATEHOUSE_CP_KEK", TEST_KEK)
        .args(["realm", "bundle-key", "acme"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("dev-ephemeral"), "{err}");

    // With a KEK from a file: a realm, then a rewrap under a new one.
    let file = dir.path().join("kek");
    std::fs::write(&file, format!("{TEST_KEK}\n")).unwrap();
    let db2 = tempfile::tempdir().unwrap();
    let ok = binary(db2.path())
        .env("GATEHOUSE_CP_KEK_FILE", &file)
        .args(["realm", "create", "acme"])
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    std::fs::write(&file, format!("{TEST_KEK_2}\n{TEST_KEK}\n")).unwrap();
    let out = binary(db2.path())
        .env("GATEHOUSE_CP_KEK_FILE", &file)
        .args(["kek", "rewrap"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["kek"], "test-2");
    assert!(report["rewrapped"].as_u64().unwrap() >= 2, "{report}");
    std::fs::write(&file, format!("{TEST_KEK_2}\n")).unwrap();
    let out = binary(db2.path())
        .env("GATEHOUSE_CP_KEK_FILE", &file)
        .args(["realm", "bundle-key", "acme"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("PUBLIC KEY"));
}

/// A realm record as `Tx::insert_realm` takes it.
fn realm_record(name: &str, seed: [u8; 32]) -> NewRealmRecord {
    NewRealmRecord {
        name: name.into(),
        display_name: name.into(),
        issuer: format!("https://cp.example/realms/{name}"),
        clients: vec!["app".into()],
        identity: "local".into(),
        bundle_seed: seed,
        created_at: 1,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ephemeral_kek_opens_only_a_database_it_created_and_changes_nothing_else() {
    let (cp, users, totps) = setup().await;
    let clear = opened(&cp.repo, &users).await.unwrap();
    let raw = Raw::open(&cp.db).await;
    let dev = Arc::new(Keyring::ephemeral().unwrap());
    // A database an older build left in clear: refused, and left as it
    // is (sealing its secrets under a key that dies with this process
    // would destroy them).
    raw.forget_sealed_only().await;
    for realm in ["acme", "other"] {
        let keys = cp
            .repo
            .read(move |tx| tx.signing_keys(realm))
            .await
            .unwrap();
        for k in keys {
            raw.exec(&format!(
                "UPDATE signing_keys SET key = '{}' WHERE realm = '{realm}' AND kid = '{}'",
                k.private.replace('\'', "''"),
                k.kid
            ))
            .await;
        }
    }
    raw.set_seed("acme", &clear.seeds[0]).await;
    raw.set_seed("other", &clear.seeds[1]).await;
    for (user, totp) in users.iter().zip(&totps) {
        raw.exec(&format!(
            "UPDATE credentials SET totp_secret = '{totp}' WHERE user_id = '{user}'"
        ))
        .await;
    }
    let before = raw.secrets().await;
    let e = cp.db.open_with(dev.clone()).await.unwrap_err();
    assert!(
        matches!(
            e,
            Error::Secret {
                why: SecretFailure::EphemeralKek,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(raw.secrets().await, before);
    assert!(before.contains(&clear.seeds[0].to_vec()));

    // Its own KEK still opens it, and seals it.
    let restarted = cp.db.open().await;
    assert_eq!(opened(&restarted, &users).await.unwrap(), clear);

    // Secrets sealed under a real KEK: refused, saying why and what to do.
    let before = raw.secrets().await;
    let e = cp.db.open_with(dev.clone()).await.unwrap_err();
    assert!(
        matches!(
            e,
            Error::Secret {
                why: SecretFailure::EphemeralKek,
                ..
            }
        ),
        "{e}"
    );
    assert!(
        e.to_string().contains("--dev-ephemeral-kek") && e.to_string().contains("GATEHOUSE_CP_KEK"),
        "{e}"
    );
    assert_eq!(raw.secrets().await, before);

    // A fresh database: what this process sealed under the throwaway key
    // it opens again; another process's throwaway key is refused.
    let dir = tempfile::tempdir().unwrap();
    let fresh = Db::fresh(dir.path(), true);
    let repo = fresh.open_with(dev.clone()).await.unwrap();
    repo.write(|tx| tx.insert_realm(&realm_record("dev", [9; 32])))
        .await
        .unwrap();
    let again = fresh.open_with(dev.clone()).await.unwrap();
    assert_eq!(
        again.read(|tx| tx.bundle_seed("dev")).await.unwrap(),
        [9; 32]
    );
    let other = Arc::new(Keyring::ephemeral().unwrap());
    assert!(matches!(
        fresh.open_with(other).await,
        Err(Error::Secret {
            why: SecretFailure::EphemeralKek,
            ..
        })
    ));
}

#[test]
fn the_binary_refuses_kek_rewrap_and_copy_with_an_ephemeral_kek() {
    let dir = tempfile::tempdir().unwrap();
    let ok = binary(dir.path())
        .env("GATEHOUSE_CP_KEK", TEST_KEK)
        .args(["realm", "create", "acme"])
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let db = dir.path().join("cp.db");
    let before = std::fs::read(&db).unwrap();
    for args in [
        vec!["kek".to_owned(), "rewrap".to_owned()],
        vec![
            "copy".to_owned(),
            "--from".to_owned(),
            db.display().to_string(),
            "--to".to_owned(),
            dir.path().join("copy.db").display().to_string(),
        ],
    ] {
        let out = binary(dir.path())
            .arg("--dev-ephemeral-kek")
            .args(&args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains("--dev-ephemeral-kek") && err.contains("GATEHOUSE_CP_KEK"),
            "{args:?}: {err}"
        );
        assert!(!dir.path().join("copy.db").exists());
    }
    assert_eq!(
        std::fs::read(&db).unwrap(),
        before,
        "the database is untouched"
    );
}

#[test]
fn a_malformed_kek_line_in_the_configuration_file_is_never_echoed() {
    const KEY: &str = "RdBHtUSM8izDlOxjlxsx4kMO6RvWoT7dOD5YIUxQP1A=";
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cp.toml");
    for (n, text) in [
        format!("db = \"x.db\"\nkek = test-1:{KEY}\n"),
        format!("kek = [\"test-1:{KEY}\"]\n"),
        format!("kek = \"test-1:{KEY}\n"),
        format!("kek = 'test-1:{KEY}' 'x'\n"),
        // The key given to the wrong setting: serde's message quotes it.
        format!("dev_ephemeral_kek = \"test-1:{KEY}\"\n"),
    ]
    .iter()
    .enumerate()
    {
        std::fs::write(&file, text).unwrap();
        let e = control_plane::config::Config::load(Some(&file), [])
            .unwrap_err()
            .to_string();
        assert!(!e.contains(&KEY[..12]) && !e.contains("test-1"), "{n}: {e}");
        assert!(e.contains("line "), "{n}: {e}");
        // Through the binary too.
        let out = binary(dir.path())
            .arg("--config")
            .arg(&file)
            .args(["realm", "list"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{n}: {err}");
        assert!(!err.contains(&KEY[..12]), "{n}: {err}");
    }
}

#[test]
fn a_new_realm_record_never_shows_its_seed() {
    let debug = format!("{:?}", realm_record("acme", [9; 32]));
    assert!(debug.contains("acme") && !debug.contains("9, 9"), "{debug}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewrap_counts_only_the_values_its_compare_and_swap_wrote() {
    // Only PostgreSQL lets another writer change a value between the
    // pass's read and its write (SQLite's pass holds the write lock).
    if support::postgres_url().is_none() {
        return;
    }
    let (cp, users, totps) = setup().await;
    let raw = Raw::open(&cp.db).await;
    let count = u64::try_from(raw.secrets().await.len()).unwrap();
    let both = cp
        .db
        .open_with(ring(&format!("{TEST_KEK_2},{TEST_KEK}")))
        .await
        .unwrap();
    // A writer holds Ann's credentials row, sealing her secret under the
    // new KEK itself, and commits only once the rewrap waits on the row.
    let theirs = ring(TEST_KEK_2)
        .seal_text(&Slot::totp("acme", &users[0]), &totps[0])
        .unwrap();
    let writer = Raw::open(&cp.db).await;
    writer
        .exec(&format!(
            "BEGIN; UPDATE credentials SET totp_secret = '{theirs}' WHERE user_id = '{}'",
            users[0]
        ))
        .await;
    let rewrap = tokio::spawn(async move { kek::rewrap(&both).await });
    loop {
        let waiting = raw
            .values(
                "SELECT pid::text FROM pg_stat_activity WHERE wait_event_type = 'Lock'
                 AND query LIKE 'UPDATE credentials SET totp_secret = $1%'",
            )
            .await;
        if !waiting.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    writer.exec("COMMIT").await;
    let r = rewrap.await.unwrap().unwrap();
    assert_eq!(
        (r.rewrapped, r.sealed, r.unchanged),
        (count - 1, 0, 0),
        "{r:?}"
    );
    let ann = &raw
        .values(&format!(
            "SELECT totp_secret FROM credentials WHERE user_id = '{}'",
            users[0]
        ))
        .await[0];
    assert_eq!(ann, theirs.as_bytes(), "the writer's value stands");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clear_value_in_a_sealed_database_is_refused_not_read_nor_sealed() {
    let (cp, users, totps) = setup().await;
    let clear = opened(&cp.repo, &users).await.unwrap();
    let raw = Raw::open(&cp.db).await;
    // Someone with write access to the database swaps Ann's sealed TOTP
    // secret for a clear one of their choosing, and a seed for theirs.
    raw.exec(&format!(
        "UPDATE credentials SET totp_secret = 'JBSWY3DPEHPK3PXP' WHERE user_id = '{}'",
        users[0]
    ))
    .await;
    let ann = users[0].clone();
    let e = cp
        .repo
        .read(move |tx| tx.credentials("acme", &ann))
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::Secret {
                why: SecretFailure::InClear,
                ..
            }
        ),
        "{e}"
    );
    raw.set_seed("other", &[5; 32]).await;
    let e = cp
        .repo
        .read(|tx| tx.bundle_seed("other"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::Secret {
                why: SecretFailure::InClear,
                ..
            }
        ),
        "{e}"
    );
    // The next start refuses it too, and seals nothing.
    let before = raw.secrets().await;
    let e = cp.db.open_with(keyring()).await.unwrap_err();
    assert!(
        matches!(
            e,
            Error::Secret {
                why: SecretFailure::InClear,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(raw.secrets().await, before);
    let _ = (clear, totps);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_opens_each_realms_newest_signing_key_too() {
    let (cp, _, _) = setup().await;
    let raw = Raw::open(&cp.db).await;
    // Acme's token signing keys sealed under a KEK this control plane
    // does not have (its seed still opens): refused at start, not at the
    // first login.
    let keys = cp.repo.read(|tx| tx.signing_keys("acme")).await.unwrap();
    assert!(!keys.is_empty());
    for k in keys {
        let sealed = ring(TEST_KEK_2)
            .seal_text(&Slot::signing_key("acme", &k.kid), &k.private)
            .unwrap();
        raw.exec(&format!(
            "UPDATE signing_keys SET key = '{sealed}' WHERE realm = 'acme' AND kid = '{}'",
            k.kid
        ))
        .await;
    }
    let e = cp.db.open_with(keyring()).await.unwrap_err();
    assert!(
        matches!(e, Error::Secret { why: SecretFailure::UnknownKek(ref k), .. } if k == "test-2"),
        "{e}"
    );
    assert!(e.to_string().contains("signing_keys.key"), "{e}");
}
