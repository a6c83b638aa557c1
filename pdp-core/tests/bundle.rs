//! Bundle loading: every refusal has its own error, and a refused bundle
//! never changes the snapshot already held.

mod common;

use base64::Engine as _;
use pdp_core::bundle::{BundleError, BundleHeader, Limits, Trust, write_archive};
use pdp_core::decision::{Decision, EntityRef, Reason, Request};
use pdp_core::manifest::BundleKind;
use pdp_core::sign::{BundleSigner, SignatureError};
use pdp_core::{LoadOptions, Snapshot, UserState, load};
use std::collections::BTreeMap;
use std::io::Read;

fn members(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        let mut buf = Vec::new();
        e.read_to_end(&mut buf).unwrap();
        out.push((name, buf));
    }
    out
}

fn retar(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, bytes) in files {
        let mut h = tar::Header::new_ustar();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, name, bytes.as_slice()).unwrap();
    }
    b.into_inner().unwrap()
}

fn read_doc(user: &str) -> Request {
    Request {
        principal: EntityRef::new("User", user),
        action: EntityRef::new("Action", "readDocument"),
        resource: EntityRef::new("Document", "design-doc"),
        context: serde_json::json!({}),
        entities: vec![],
    }
}

fn delta(
    base: u64,
    revision: u64,
    members: BTreeMap<String, Vec<u8>>,
    signer: &BundleSigner,
) -> Vec<u8> {
    let header = BundleHeader {
        realm: "default".into(),
        revision,
        kind: BundleKind::Delta,
        base_revision: Some(base),
        created_at: 1_764_000_100,
        identity: None,
    };
    write_archive(&header, &members, Some(signer), true).unwrap()
}

/// Assert `bytes` is refused with `want` and the held snapshot still answers as before.
fn refused(held: &Snapshot, bytes: &[u8], want: impl Fn(&BundleError) -> bool) {
    let before = held.is_authorized(&read_doc("alice")).unwrap();
    match common::load_signed(bytes, Some(held)) {
        Ok(s) => panic!("accepted revision {}", s.revision()),
        Err(e) => assert!(want(&e), "wrong error: {e:?}"),
    }
    assert_eq!(held.revision(), 1);
    assert_eq!(held.is_authorized(&read_doc("alice")).unwrap(), before);
}

#[test]
fn a_signed_bundle_loads_and_answers() {
    let snap = common::reference_snapshot();
    assert_eq!((snap.realm(), snap.revision()), ("default", 1));
    assert_eq!(snap.signed_by(), Some(common::signer().kid()));
    assert_eq!(snap.directory().unwrap().len(), 12);
    assert_eq!(
        snap.is_authorized(&read_doc("alice")).unwrap().decision,
        Decision::Allow
    );
}

#[test]
fn refusals_each_have_their_own_error() {
    let held = common::reference_snapshot();
    let good = common::build_signed(&common::reference_files(), 2);
    let files = members(&good);

    // Signature missing.
    let unsigned: Vec<_> = files
        .iter()
        .filter(|(n, _)| n != "manifest.sig")
        .cloned()
        .collect();
    refused(&held, &retar(&unsigned), |e| {
        matches!(e, BundleError::Unsigned)
    });

    // Unknown kid: signed by a key the keyring does not hold.
    let stranger = BundleSigner::from_seed(&[99; 32]);
    let mut resigned = files.clone();
    let manifest = resigned
        .iter()
        .find(|(n, _)| n == "manifest.json")
        .unwrap()
        .1
        .clone();
    resigned
        .iter_mut()
        .find(|(n, _)| n == "manifest.sig")
        .unwrap()
        .1 = stranger.sign(&manifest).into_bytes();
    refused(&held, &retar(&resigned), |e| {
        matches!(e, BundleError::Signature(SignatureError::UnknownKid(_)))
            && e.kind() == "unknown_kid"
    });

    // Wrong key: the header names the trusted kid, the signature is another key's.
    let forged_sig = stranger.sign(&manifest);
    let sig_part = forged_sig.rsplit('.').next().unwrap();
    let header = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!(
        r#"{{"alg":"EdDSA","kid":"{}"}}"#,
        common::signer().kid()
    ));
    let mut wrong_key = files.clone();
    wrong_key
        .iter_mut()
        .find(|(n, _)| n == "manifest.sig")
        .unwrap()
        .1 = format!("{header}..{sig_part}").into_bytes();
    refused(&held, &retar(&wrong_key), |e| e.kind() == "bad_signature");

    // Tampered member: users.jsonl changed after signing.
    let mut tampered = files.clone();
    let users = &mut tampered
        .iter_mut()
        .find(|(n, _)| n == "users.jsonl")
        .unwrap()
        .1;
    *users = String::from_utf8(users.clone())
        .unwrap()
        .replace("\"Suspended\"", "\"Active\"")
        .into_bytes();
    refused(
        &held,
        &retar(&tampered),
        |e| matches!(e, BundleError::HashMismatch(m) if m == "users.jsonl"),
    );

    // Tampered manifest (revision bumped): the signature no longer verifies.
    let mut bumped = files.clone();
    let m = &mut bumped
        .iter_mut()
        .find(|(n, _)| n == "manifest.json")
        .unwrap()
        .1;
    *m = String::from_utf8(m.clone())
        .unwrap()
        .replace("\"revision\": 2", "\"revision\": 9")
        .into_bytes();
    refused(&held, &retar(&bumped), |e| e.kind() == "bad_signature");

    // An extra member nobody signed.
    let mut extra = files.clone();
    extra.push(("routes.json.bak".into(), b"{}".to_vec()));
    refused(&held, &retar(&extra), |e| {
        matches!(e, BundleError::UnexpectedMember(_))
    });

    // Rolled-back revision: a validly signed revision 1 (and 0) while 1 is held.
    for rev in [0, 1] {
        let old = common::build_signed(&common::reference_files(), rev);
        refused(
            &held,
            &old,
            |e| matches!(e, BundleError::Rollback { held: 1, offered } if *offered == rev),
        );
    }

    // Oversized member.
    let ring = common::keyring();
    let tight = LoadOptions {
        trust: Trust::Keyring(&ring),
        limits: Limits {
            users: 100,
            ..Limits::default()
        },
    };
    let e = load(&good, &tight, Some(&held)).unwrap_err();
    assert!(
        matches!(&e, BundleError::MemberTooLarge { name, limit: 100 } if name == "users.jsonl"),
        "{e:?}"
    );
    let tiny = LoadOptions {
        trust: Trust::Keyring(&ring),
        limits: Limits {
            archive: 10,
            ..Limits::default()
        },
    };
    assert!(matches!(
        load(&good, &tiny, None),
        Err(BundleError::ArchiveTooLarge { .. })
    ));

    // Delta on the wrong base.
    let change = BTreeMap::from([(
        "users.jsonl".to_owned(),
        b"{\"id\":\"alice\",\"deleted\":true}\n".to_vec(),
    )]);
    let wrong_base = delta(5, 6, change.clone(), &common::signer());
    refused(&held, &wrong_base, |e| {
        matches!(e, BundleError::DeltaBase { held: 1, base: 5 })
    });

    // A delta with nothing held.
    let d = delta(1, 2, change, &common::signer());
    assert!(matches!(
        common::load_signed(&d, None),
        Err(BundleError::DeltaWithoutBase { .. })
    ));

    // Another realm.
    let mut other = common::opts(3);
    other.realm = "other".into();
    let other =
        pdp_core::source::build(&common::reference_files(), &other, Some(&common::signer()))
            .unwrap();
    refused(&held, &other, |e| {
        matches!(e, BundleError::RealmMismatch { .. })
    });

    // Not an archive at all.
    refused(
        &held,
        b"definitely not a tar file, just some bytes that are long enough to look like one? no",
        |e| {
            matches!(
                e,
                BundleError::NotAnArchive(_) | BundleError::MissingMember(_)
            )
        },
    );

    // Unsigned accepted only in dev mode.
    let dev = load(
        &retar(&unsigned),
        &LoadOptions {
            trust: Trust::Dev,
            limits: Limits::default(),
        },
        None,
    )
    .unwrap();
    assert_eq!(dev.signed_by(), None);
}

#[test]
fn deltas_apply_in_order_and_leave_the_base_untouched() {
    let base = common::reference_snapshot();
    let signer = common::signer();
    // Revision 2: suspend alice (state and tokens_valid_after), add a new user.
    let users = "{\"id\":\"alice\",\"username\":\"alice\",\"email\":\"alice@example.com\",\"state\":\"Suspended\",\"groups\":[\"platform\"],\"attrs\":{\"department\":\"engineering\",\"level\":3},\"tokens_valid_after\":1764000100}\n\
                 {\"id\":\"nina\",\"username\":\"nina\",\"email\":\"nina@example.com\",\"state\":\"Active\",\"groups\":[\"engineering\"],\"attrs\":{\"department\":\"engineering\"}}\n";
    let d2 = delta(
        1,
        2,
        BTreeMap::from([("users.jsonl".to_owned(), users.as_bytes().to_vec())]),
        &signer,
    );
    // alice's entity is built and cached in the base (kept from its second
    // build); the delta's snapshot must not see that cache.
    for _ in 0..3 {
        assert_eq!(
            base.is_authorized(&read_doc("alice")).unwrap().decision,
            Decision::Allow
        );
    }
    let s2 = common::load_signed(&d2, Some(&base)).unwrap();
    assert_eq!(s2.revision(), 2);
    let a = s2.is_authorized(&read_doc("alice")).unwrap();
    assert_eq!(
        (a.decision, a.reason),
        (Decision::Deny, Reason::UserState(UserState::Suspended))
    );
    // Suspended alice built and cached as the document's owner (bob's
    // requests) is still gated as a principal, from the cached state.
    for _ in 0..3 {
        s2.is_authorized(&read_doc("bob")).unwrap();
    }
    let a = s2.is_authorized(&read_doc("alice")).unwrap();
    assert_eq!(
        (a.decision, a.reason),
        (Decision::Deny, Reason::UserState(UserState::Suspended))
    );
    assert_eq!(
        s2.is_authorized(&read_doc("nina")).unwrap().decision,
        Decision::Allow
    );
    assert_eq!(s2.directory().unwrap().len(), 13);
    // The base is untouched.
    assert_eq!(
        base.is_authorized(&read_doc("alice")).unwrap().decision,
        Decision::Allow
    );

    // Revision 3: a policy change (forbid all reads) on top of revision 2.
    let mut policies =
        String::from_utf8(common::reference_files()["policies.cedar"].clone()).unwrap();
    policies.push_str(
        "\n@id(\"freeze\") forbid (principal, action == Action::\"readDocument\", resource);\n",
    );
    let d3 = delta(
        2,
        3,
        BTreeMap::from([("policies.cedar".to_owned(), policies.into_bytes())]),
        &signer,
    );
    let s3 = common::load_signed(&d3, Some(&s2)).unwrap();
    let n = s3.is_authorized(&read_doc("nina")).unwrap();
    assert_eq!(n.reason, Reason::Forbid("freeze".into()));
    // Users from revision 2 are kept.
    assert_eq!(s3.directory().unwrap().len(), 13);

    // Replaying revision 3 is a rollback; a delta skipping 4 is a wrong base.
    assert!(matches!(
        common::load_signed(&d3, Some(&s3)),
        Err(BundleError::Rollback { .. })
    ));
    let d5 = delta(4, 5, BTreeMap::new(), &signer);
    assert!(matches!(
        common::load_signed(&d5, Some(&s3)),
        Err(BundleError::DeltaBase { held: 3, base: 4 })
    ));

    // An invalid policy in a delta is refused with Cedar's diagnostics; s3 stays.
    let mut bad_text =
        String::from_utf8(common::reference_files()["policies.cedar"].clone()).unwrap();
    bad_text.push_str("\npermit(principal, action, resource) when { principal.nope };\n");
    let bad = delta(
        3,
        4,
        BTreeMap::from([("policies.cedar".to_owned(), bad_text.into_bytes())]),
        &signer,
    );
    let e = common::load_signed(&bad, Some(&s3)).unwrap_err();
    assert!(
        matches!(&e, BundleError::Invalid { member, .. } if member == "policies.cedar"),
        "{e:?}"
    );
    assert_eq!(s3.revision(), 3);
}

#[test]
fn a_build_fails_with_the_file_and_position_of_the_problem() {
    let mut files = common::reference_files();
    files.remove("links.json");
    files.insert(
        "policies.cedar".into(),
        b"permit(principal, action, resource)\nwhen { principal.department == 3 };".to_vec(),
    );
    let e = pdp_core::source::build(&files, &common::opts(1), None).unwrap_err();
    match e {
        BundleError::Invalid {
            member,
            position: Some((line, _)),
            message,
        } => {
            assert_eq!((member.as_str(), line), ("policies.cedar", 2), "{message}");
        }
        other => panic!("{other:?}"),
    }
    let mut files = common::reference_files();
    files.insert("users.jsonl".into(), b"{\"id\":\"x\",\"username\":\"x\",\"email\":\"x\",\"state\":\"Active\",\"attrs\":{\"level\":\"high\"}}\n".to_vec());
    let e = pdp_core::source::build(&files, &common::opts(1), None).unwrap_err();
    assert!(
        matches!(&e, BundleError::Invalid { member, position: Some((1, _)), .. } if member == "users.jsonl"),
        "{e:?}"
    );
    let mut files = common::reference_files();
    files.insert(
        "entities.json".into(),
        b"[{\"uid\":{\"type\":\"Document\",\"id\":\"d\"},\"attrs\":{},\"parents\":[]}]".to_vec(),
    );
    let e = pdp_core::source::build(&files, &common::opts(1), None).unwrap_err();
    assert!(
        matches!(&e, BundleError::Invalid { member, .. } if member == "entities.json"),
        "{e:?}"
    );
}

#[test]
fn plain_cedar_without_schema_or_users_is_a_valid_bundle() {
    let files = BTreeMap::from([
        ("policies.cedar".to_owned(), b"permit(principal in Group::\"g\", action, resource);".to_vec()),
        ("entities.json".to_owned(), b"[{\"uid\":{\"type\":\"User\",\"id\":\"u\"},\"attrs\":{},\"parents\":[{\"type\":\"Group\",\"id\":\"g\"}]}]".to_vec()),
    ]);
    let snap = common::build_dev(&files);
    let mut r = read_doc("u");
    r.action = EntityRef::new("Action", "anything");
    let a = snap.is_authorized(&r).unwrap();
    assert_eq!(
        (a.decision, a.determining_policies),
        (Decision::Allow, vec!["policy0".to_owned()])
    );
    r.principal = EntityRef::new("User", "other");
    assert_eq!(snap.is_authorized(&r).unwrap().reason, Reason::NoPermit);
}

#[test]
fn a_delta_never_answers_from_users_built_for_the_previous_snapshot() {
    let base = common::reference_snapshot();
    let edit = |user: &str| Request {
        principal: EntityRef::new("User", user),
        action: EntityRef::new("Action", "editDocument"),
        resource: EntityRef::new("Document", "launch-plan"),
        context: serde_json::json!({}),
        entities: vec![],
    };
    // Warm the base snapshot's user cache: victor (editor, sales) may edit.
    for _ in 0..3 {
        assert_eq!(
            base.is_authorized(&edit("victor")).unwrap().decision,
            Decision::Allow
        );
    }
    let moved = "{\"id\":\"victor\",\"username\":\"victor\",\"email\":\"victor@example.com\",\"state\":\"Active\",\"roles\":[\"editor\"],\"attrs\":{\"department\":\"it\",\"level\":6}}\n";
    let d = delta(
        1,
        2,
        BTreeMap::from([("users.jsonl".to_owned(), moved.as_bytes().to_vec())]),
        &common::signer(),
    );
    let next = common::load_signed(&d, Some(&base)).unwrap();
    assert_eq!(
        next.is_authorized(&edit("victor")).unwrap().reason,
        Reason::NoPermit
    );
    // The base still answers from its own (unchanged) users.
    assert_eq!(
        base.is_authorized(&edit("victor")).unwrap().decision,
        Decision::Allow
    );
    // Without a cache the answers are the same.
    let uncached = next.clone().with_user_cache(0);
    assert_eq!(
        uncached.is_authorized(&edit("victor")).unwrap().reason,
        Reason::NoPermit
    );
}

/// `authzen.json` (issue 18): checked against the schema at build and at
/// load; a delta that replaces it takes effect; a refused one leaves the
/// held map.
#[test]
fn the_authzen_type_map_is_checked_against_the_schema_and_follows_deltas() {
    let base = common::reference_snapshot();
    let types = base.authzen_types().expect("policies/authzen.json");
    assert_eq!(types.cedar_type("user"), "User");
    assert_eq!(types.cedar_type("document"), "Document");
    let mut files = common::reference_files();
    files.insert(
        "authzen.json".into(),
        br#"{"types": {"todo": "Todo"}}"#.to_vec(),
    );
    let e = pdp_core::source::build(&files, &common::opts(1), None).unwrap_err();
    assert!(
        matches!(&e, BundleError::Invalid { member, message, .. } if member == "authzen.json" && message.contains("todo")),
        "{e:?}"
    );
    let signer = common::signer();
    let bad = delta(
        1,
        2,
        BTreeMap::from([(
            "authzen.json".to_owned(),
            br#"{"types": {"todo": "Todo"}}"#.to_vec(),
        )]),
        &signer,
    );
    refused(
        &base,
        &bad,
        |e| matches!(e, BundleError::Invalid { member, .. } if member == "authzen.json"),
    );
    assert_eq!(
        base.authzen_types().map(|t| t.cedar_type("user")),
        Some("User")
    );
    let good = delta(
        1,
        2,
        BTreeMap::from([(
            "authzen.json".to_owned(),
            br#"{"types": {"todo": "Document"}}"#.to_vec(),
        )]),
        &signer,
    );
    let s2 = common::load_signed(&good, Some(&base)).unwrap();
    let t2 = s2.authzen_types().unwrap();
    assert_eq!(
        (t2.cedar_type("todo"), t2.cedar_type("user")),
        ("Document", "user")
    );
}
