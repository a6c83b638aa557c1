//! Arbitrary bytes into every parser: never a panic, always a typed error
//! (or a tagged failure), and the held snapshot keeps answering.

mod common;

use pdp_core::decision::Tagged;
use pdp_core::{Directory, Keyring, Limits, LoadOptions, Trust, load};
use proptest::prelude::*;

/// The kind of a failure's first error; `None` for an answer.
fn first_kind<T>(t: &Tagged<T>) -> Option<&str> {
    match t {
        Tagged::Failure { errors } => Some(errors.first().map_or("", |e| e.kind.as_str())),
        Tagged::Success(_) => None,
    }
}

fn mutate(base: &[u8], edits: &[(usize, u8)]) -> Vec<u8> {
    let mut out = base.to_vec();
    for (i, b) in edits {
        if !out.is_empty() {
            let n = out.len();
            out[i % n] = *b;
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn bundle_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let ring = common::keyring();
        let _ = load(&bytes, &LoadOptions { trust: Trust::Keyring(&ring), limits: Limits::default() }, None);
        let _ = load(&bytes, &LoadOptions { trust: Trust::Dev, limits: Limits::default() }, None);
    }

    #[test]
    fn mutated_real_bundles_never_panic_and_load_only_unchanged_content(edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8), gz in any::<bool>()) {
        let mut o = common::opts(2);
        o.gzip = gz;
        let good = pdp_core::source::build(&common::reference_files(), &o, Some(&common::signer())).unwrap();
        let bad = mutate(&good, &edits);
        let ring = common::keyring();
        let r = load(&bad, &LoadOptions { trust: Trust::Keyring(&ring), limits: Limits::default() }, None);
        if bad != good {
            // A change either breaks the archive or is caught by hash/signature,
            // unless it only touched tar padding or gzip metadata; then the
            // loaded snapshot must equal the original's content.
            if let Ok(s) = r {
                prop_assert_eq!(s.revision(), 2);
                prop_assert_eq!(s.directory().unwrap().len(), 12);
            }
        }
    }

    #[test]
    fn directory_lines_never_panic(text in "\\PC{0,300}") {
        let _ = Directory::parse(&text);
        let _ = Directory::parse_changes(&text);
    }

    #[test]
    fn request_json_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512), text in "\\PC{0,200}") {
        let snap = common::reference_snapshot_cached();
        // Whatever is not even JSON is an `invalid_json` failure, and
        // whatever is not a request object a failure of some kind.
        for input in [bytes.as_slice(), text.as_bytes()] {
            let tagged = snap.is_authorized_json(input);
            match serde_json::from_slice::<serde_json::Value>(input) {
                Err(_) => prop_assert_eq!(first_kind(&tagged), Some("invalid_json")),
                Ok(v) if v.get("principal").is_none() => prop_assert!(first_kind(&tagged).is_some()),
                Ok(_) => {}
            }
        }
        let _ = snap.verify_token(&text, 0);
        let _ = Keyring::new().verify(&bytes, &text);
    }

    #[test]
    fn structured_garbage_requests_are_tagged(ty in "[A-Za-z:\"]{0,12}", id in "\\PC{0,12}", ctx in "\\PC{0,40}") {
        let snap = common::reference_snapshot_cached();
        let json = format!(r#"{{"principal":{{"type":"{ty}","id":"{id}"}},"action":{{"type":"Action","id":"readDocument"}},"resource":{{"type":"Document","id":"d"}},"context":{ctx}}}"#);
        let tagged = snap.is_authorized_json(json.as_bytes());
        let parsed = serde_json::from_str::<serde_json::Value>(&json);
        let context_is_object = parsed.as_ref().is_ok_and(|v| v["context"].is_object());
        // `readDocument` takes a User principal: any other type, or a
        // context that is not an object, is a failure with a kind; what
        // does not parse at all, `invalid_json`. Only a User with an
        // object context may be decided.
        match parsed {
            Err(_) => prop_assert_eq!(first_kind(&tagged), Some("invalid_json")),
            Ok(_) if ty != "User" || !context_is_object => {
                prop_assert!(first_kind(&tagged).is_some(), "{json} was decided");
            }
            Ok(_) => {}
        }
    }
}

#[test]
fn a_gzip_bomb_stops_at_the_member_limit() {
    use std::io::Write;
    let mut tar = tar::Builder::new(Vec::new());
    let zeros = vec![0u8; 64 << 20];
    let mut h = tar::Header::new_ustar();
    h.set_size(zeros.len() as u64);
    h.set_mode(0o644);
    tar.append_data(&mut h, "users.jsonl", zeros.as_slice())
        .unwrap();
    let raw = tar.into_inner().unwrap();
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(&raw).unwrap();
    let bomb = enc.finish().unwrap();
    assert!(bomb.len() < 1 << 20);
    let limits = Limits {
        users: 1 << 20,
        ..Limits::default()
    };
    let e = load(
        &bomb,
        &LoadOptions {
            trust: Trust::Dev,
            limits,
        },
        None,
    )
    .unwrap_err();
    assert_eq!(e.kind(), "member_too_large");
}

#[test]
fn the_manifest_is_authenticated_before_any_member_is_read() {
    // A gzip'd bundle whose users.jsonl is cut off half way: had the
    // member been decompressed before the signature was checked, the
    // broken stream would be the error. It is refused as unsigned (and as
    // signed by an unknown key) from the manifest alone.
    use std::io::Write;
    let users: String = (0..20_000)
        .map(|i| format!("{{\"id\":\"u{i}\",\"username\":\"u{i}\",\"email\":\"u{i}@x.io\",\"state\":\"Active\"}}\n"))
        .collect();
    let header = pdp_core::bundle::BundleHeader {
        realm: "default".into(),
        revision: 7,
        kind: pdp_core::BundleKind::Snapshot,
        base_revision: None,
        created_at: 0,
        identity: None,
    };
    let members =
        std::collections::BTreeMap::from([("users.jsonl".to_owned(), users.into_bytes())]);
    let stranger = pdp_core::BundleSigner::from_seed(&[99; 32]);
    for (signer, want) in [(None, "unsigned"), (Some(&stranger), "unknown_kid")] {
        let whole = pdp_core::bundle::write_archive(&header, &members, signer, false).unwrap();
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&whole).unwrap();
        let gz = enc.finish().unwrap();
        let cut = &gz[..gz.len() / 2];
        let ring = common::keyring();
        let e = load(
            cut,
            &LoadOptions {
                trust: Trust::Keyring(&ring),
                limits: Limits::default(),
            },
            None,
        )
        .unwrap_err();
        assert_eq!(e.kind(), want, "{e}");
        // In dev mode (nothing to authenticate) the broken member is read
        // and is the error.
        let e = load(
            cut,
            &LoadOptions {
                trust: Trust::Dev,
                limits: Limits::default(),
            },
            None,
        )
        .unwrap_err();
        assert_eq!(e.kind(), "not_an_archive", "{e}");
    }
}

#[test]
fn manifest_and_signature_come_first() {
    let archive = |members: &[(&str, &[u8])]| {
        let mut tar = tar::Builder::new(Vec::new());
        for (name, bytes) in members {
            let mut h = tar::Header::new_ustar();
            h.set_size(bytes.len() as u64);
            h.set_mode(0o644);
            tar.append_data(&mut h, name, *bytes).unwrap();
        }
        tar.into_inner().unwrap()
    };
    let policy: &[u8] = b"permit(principal, action, resource);\n";
    let dev = LoadOptions {
        trust: Trust::Dev,
        limits: Limits::default(),
    };
    for (members, want) in [
        (
            vec![
                ("policies.cedar", policy),
                ("manifest.json", b"{}".as_slice()),
            ],
            "missing_member",
        ),
        (
            vec![
                ("manifest.sig", b"x".as_slice()),
                ("manifest.json", b"{}".as_slice()),
            ],
            "misplaced_member",
        ),
        (
            vec![
                ("manifest.json", b"{}".as_slice()),
                ("manifest.json", b"{}".as_slice()),
            ],
            "duplicate_member",
        ),
    ] {
        let e = load(&archive(&members), &dev, None).unwrap_err();
        assert_eq!(e.kind(), want, "{members:?}: {e}");
    }
}

#[test]
fn after_a_storm_of_bad_input_the_snapshot_still_answers() {
    let snap = common::reference_snapshot_cached();
    for junk in [
        &b"{"[..],
        b"null",
        b"[]",
        b"{\"principal\":1}",
        &[0xff, 0xfe][..],
    ] {
        assert!(matches!(
            snap.is_authorized_json(junk),
            Tagged::Failure { .. }
        ));
    }
    let ok = snap.is_authorized_json(br#"{"principal":{"type":"User","id":"alice"},"action":{"type":"Action","id":"readDocument"},"resource":{"type":"Document","id":"design-doc"}}"#);
    assert!(matches!(ok, Tagged::Success(a) if a.decision == pdp_core::Decision::Allow));
}
