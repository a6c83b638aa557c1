//! What only the PostgreSQL repository has: TLS to the server, verified;
//! migrations that run once when control planes start together and refuse
//! a schema newer than the build. Ignored unless asked for: scripts/test
//! runs them against its private cluster (`GATEHOUSE_TEST_POSTGRES`, a
//! TLS-only server with a certificate from a CA of its own).

mod support;

use control_plane::Error;
use control_plane::backend::postgres::PostgresRepository;
use control_plane::ports::repository::Repository;

use support::{raw_postgres as raw, with_query};

fn url() -> String {
    support::postgres_url().expect("GATEHOUSE_TEST_POSTGRES names the test database")
}

#[tokio::test]
#[ignore = "needs the private PostgreSQL cluster scripts/test starts"]
async fn tls_is_required_and_verified() {
    let url = url();
    let schema = support::unique_name("tls");
    PostgresRepository::connect_in_schema(&url, &schema, support::keyring())
        .await
        .expect("TLS with the cluster's CA");
    // Without the CA the server's certificate is not trusted.
    let err = PostgresRepository::connect_in_schema(
        &with_query(&url, "sslmode=require"),
        &schema,
        support::keyring(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, Error::Repository(m) if m.to_lowercase().contains("certificate")),
        "{err}"
    );
    // Without TLS the server refuses the connection.
    let err = PostgresRepository::connect_in_schema(
        &with_query(&url, "sslmode=disable"),
        &schema,
        support::keyring(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, Error::Repository(m) if m.contains("no encryption")),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the private PostgreSQL cluster scripts/test starts"]
async fn migrations_run_once_and_a_newer_schema_is_refused() {
    let url = url();
    let schema = support::unique_name("mig");
    // Control planes starting together: one migrates, the others wait and
    // find the schema current.
    let mut starts = Vec::new();
    for _ in 0..4 {
        let (url, schema) = (url.clone(), schema.clone());
        starts.push(tokio::spawn(async move {
            PostgresRepository::connect_in_schema(&url, &schema, support::keyring()).await
        }));
    }
    for s in starts {
        let repo = s.await.unwrap().unwrap();
        assert_eq!(repo.schema_version().await.unwrap(), 5);
        repo.ping().await.unwrap();
    }
    let client = raw(&url).await;
    // A database of the first version (before verification codes counted
    // their wrong answers, and before AuthZEN type names) is brought up to
    // date, and only the missing migrations run.
    client
        .batch_execute(&format!(
            "ALTER TABLE {schema}.credentials DROP COLUMN verify_attempts;
             DROP TABLE {schema}.authzen_types;
             DROP TABLE {schema}.publish_intents;
             UPDATE {schema}.gatehouse_schema SET version = 1"
        ))
        .await
        .unwrap();
    let repo = PostgresRepository::connect_in_schema(&url, &schema, support::keyring())
        .await
        .unwrap();
    assert_eq!(repo.schema_version().await.unwrap(), 5);
    let n: i64 = client
        .query_one(
            "SELECT count(*) FROM information_schema.columns
             WHERE table_schema = $1 AND table_name = 'credentials' AND column_name = 'verify_attempts'",
            &[&schema],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    client
        .batch_execute(&format!(
            "UPDATE {schema}.gatehouse_schema SET version = 99"
        ))
        .await
        .unwrap();
    let err = PostgresRepository::connect_in_schema(&url, &schema, support::keyring())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("newer than this build"), "{err}");
    // Nothing was changed by the refusal.
    let v: i64 = client
        .query_one(
            &format!("SELECT version FROM {schema}.gatehouse_schema"),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(v, 99);
}
