//! The embedded default realm: the reference source directory `policies/`,
//! compiled into the binary and built into a bundle at start. It is part of
//! the program itself, so it is trusted like the program (no signature);
//! bundles from anywhere else must be signed unless the host is in dev mode.

use std::collections::BTreeMap;

/// The source files of `policies/`, by member name.
pub fn files() -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let add = |files: &mut BTreeMap<String, Vec<u8>>, name: &str, text: &str| {
        files.insert(name.to_owned(), text.as_bytes().to_vec());
    };
    add(
        &mut files,
        "schema.cedarschema",
        include_str!("../../policies/schema.cedarschema"),
    );
    add(
        &mut files,
        "policies.cedar",
        include_str!("../../policies/policies.cedar"),
    );
    add(
        &mut files,
        "links.json",
        include_str!("../../policies/links.json"),
    );
    add(
        &mut files,
        "entities.json",
        include_str!("../../policies/entities.json"),
    );
    add(
        &mut files,
        "users.jsonl",
        include_str!("../../policies/users.jsonl"),
    );
    add(
        &mut files,
        "routes.json",
        include_str!("../../policies/routes.json"),
    );
    add(
        &mut files,
        "identity.json",
        include_str!("../../policies/identity.json"),
    );
    files
}
