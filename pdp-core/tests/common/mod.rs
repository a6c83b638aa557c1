//! Helpers shared by the integration tests.
#![allow(dead_code, reason = "each test binary uses a different subset")]

use pdp_core::source::{BuildOptions, build};
use pdp_core::{BundleSigner, Keyring, Limits, LoadOptions, Snapshot, Trust, load};
use std::collections::BTreeMap;
use std::path::PathBuf;

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The files of the reference `policies/` source directory.
pub fn reference_files() -> BTreeMap<String, Vec<u8>> {
    let dir = repo_root().join("policies");
    let mut files = BTreeMap::new();
    for name in pdp_core::manifest::member::SOURCE {
        if let Ok(bytes) = std::fs::read(dir.join(name)) {
            files.insert(name.to_owned(), bytes);
        }
    }
    files
}

/// The reference files with the identity settings of
/// `tests/keys/identity.json`, which trust the committed test keys
/// (`policies/identity.json` trusts no key).
pub fn test_key_files() -> BTreeMap<String, Vec<u8>> {
    let mut files = reference_files();
    files.insert(
        "identity.json".to_owned(),
        std::fs::read(repo_root().join("pdp-core/tests/keys/identity.json")).unwrap(),
    );
    files
}

/// The reference realm trusting the test keys, signed and loaded.
pub fn test_key_snapshot() -> Snapshot {
    load_signed(&build_signed(&test_key_files(), 1), None).unwrap()
}

pub fn opts(revision: u64) -> BuildOptions {
    BuildOptions {
        realm: "default".into(),
        revision,
        created_at: 1_764_000_000,
        gzip: true,
    }
}

pub fn signer() -> BundleSigner {
    BundleSigner::from_seed(&[11; 32])
}

pub fn keyring() -> Keyring {
    let mut k = Keyring::new();
    k.add(signer().verifying_key());
    k
}

pub fn build_signed(files: &BTreeMap<String, Vec<u8>>, revision: u64) -> Vec<u8> {
    build(files, &opts(revision), Some(&signer())).unwrap()
}

pub fn load_signed(
    bytes: &[u8],
    held: Option<&Snapshot>,
) -> Result<Snapshot, pdp_core::BundleError> {
    let ring = keyring();
    load(
        bytes,
        &LoadOptions {
            trust: Trust::Keyring(&ring),
            limits: Limits::default(),
        },
        held,
    )
}

pub fn reference_snapshot() -> Snapshot {
    load_signed(&build_signed(&reference_files(), 1), None).unwrap()
}

/// The reference snapshot, built once per test binary.
pub fn reference_snapshot_cached() -> &'static Snapshot {
    static SNAP: std::sync::OnceLock<Snapshot> = std::sync::OnceLock::new();
    SNAP.get_or_init(reference_snapshot)
}

/// Build `files` into a bundle and load it in dev mode (unsigned).
pub fn build_dev(files: &BTreeMap<String, Vec<u8>>) -> Snapshot {
    build_dev_at(files, 1)
}

/// [`build_dev`] at a given revision.
pub fn build_dev_at(files: &BTreeMap<String, Vec<u8>>, revision: u64) -> Snapshot {
    let bytes = build(files, &opts(revision), None).unwrap();
    load(
        &bytes,
        &LoadOptions {
            trust: Trust::Dev,
            limits: Limits::default(),
        },
        None,
    )
    .unwrap()
}
