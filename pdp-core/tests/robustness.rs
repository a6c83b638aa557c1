//! Arbitrary bytes into every parser: never a panic, always a typed error
//! (or a tagged failure), and the held snapshot keeps answering.

mod common;

use pdp_core::decision::Tagged;
use pdp_core::{Directory, Keyring, Limits, LoadOptions, Trust, load};
use proptest::prelude::*;

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
        let tagged = snap.is_authorized_json(&bytes);
        let is_failure = matches!(tagged, Tagged::Failure { .. });
        // Random bytes are essentially never a valid request.
        let starts_with_brace = bytes.first() == Some(&b'{');
        prop_assert!(is_failure || starts_with_brace);
        let _ = snap.is_authorized_json(text.as_bytes());
        let _ = snap.verify_token(&text, 0);
        let _ = Keyring::new().verify(&bytes, &text);
    }

    #[test]
    fn structured_garbage_requests_are_tagged(ty in "[A-Za-z:\"]{0,12}", id in "\\PC{0,12}", ctx in "\\PC{0,40}") {
        let snap = common::reference_snapshot_cached();
        let json = format!(r#"{{"principal":{{"type":"{ty}","id":"{id}"}},"action":{{"type":"Action","id":"readDocument"}},"resource":{{"type":"Document","id":"d"}},"context":{ctx}}}"#);
        let _ = snap.is_authorized_json(json.as_bytes());
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
