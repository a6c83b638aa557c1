//! Deterministic synthetic realms for benchmarks and scale tests: the
//! reference schema and policies (from `policies/`), a few hundred groups,
//! roles, folders and documents, and any number of users.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The reference schema shipped in `policies/`.
pub const REFERENCE_SCHEMA: &str = include_str!("../../policies/schema.cedarschema");
/// The reference policies shipped in `policies/`.
pub const REFERENCE_POLICIES: &str = include_str!("../../policies/policies.cedar");

const DEPARTMENTS: [&str; 10] = [
    "engineering",
    "sales",
    "finance",
    "it",
    "legal",
    "marketing",
    "support",
    "research",
    "ops",
    "hr",
];
const GROUPS: usize = 120;
const FOLDERS: usize = 80;
const DOCUMENTS: usize = 500;

/// A small deterministic generator (SplitMix64), so a seed means the same realm everywhere.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % (n.max(1) as u64)) as usize
    }
}

/// The id of synthetic user `i` (UUID-shaped, like a Cognito `sub`).
pub fn user_id(i: usize) -> String {
    let i = i as u64;
    let h = Rng::new(i ^ 0xA5A5_5A5A).next_u64();
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        (h >> 32) as u32,
        (h >> 16) as u16,
        (i >> 36) & 0xfff,
        (i >> 24) & 0xfff,
        i & 0xff_ffff_ffff
    )
}

fn department(i: usize) -> &'static str {
    DEPARTMENTS
        .get(i % DEPARTMENTS.len())
        .copied()
        .unwrap_or("engineering")
}

/// The files of a synthetic realm source directory with `users` users.
pub fn realm(users: usize, seed: u64) -> BTreeMap<String, Vec<u8>> {
    let mut rng = Rng::new(seed);
    let users = users.max(1);
    let mut entities = String::from("[\n");
    let push = |line: String, entities: &mut String| {
        if entities.len() > 2 {
            entities.push_str(",\n");
        }
        entities.push_str(&line);
    };
    for role in ["realm-admin", "editor", "reader"] {
        push(
            format!(r#"{{"uid":{{"type":"Role","id":"{role}"}},"attrs":{{}},"parents":[]}}"#),
            &mut entities,
        );
    }
    // Groups form a forest: group g's parent is a lower-numbered group, so
    // hierarchies are several levels deep; some groups grant roles.
    for g in 0..GROUPS {
        let mut parents = Vec::new();
        if g >= 10 {
            parents.push(format!(r#"{{"type":"Group","id":"g{}"}}"#, rng.below(g)));
        }
        match g % 10 {
            0 => parents.push(r#"{"type":"Role","id":"editor"}"#.to_owned()),
            1 => parents.push(r#"{"type":"Role","id":"reader"}"#.to_owned()),
            _ => {}
        }
        if g == 7 {
            parents.push(r#"{"type":"Role","id":"realm-admin"}"#.to_owned());
        }
        push(
            format!(
                r#"{{"uid":{{"type":"Group","id":"g{g}"}},"attrs":{{"name":"Group {g}"}},"parents":[{}]}}"#,
                parents.join(",")
            ),
            &mut entities,
        );
    }
    push(
        r#"{"uid":{"type":"Group","id":"auditors"},"attrs":{"name":"Auditors"},"parents":[]}"#
            .to_owned(),
        &mut entities,
    );
    for f in 0..FOLDERS {
        let parent = if f == 0 {
            String::new()
        } else {
            format!(r#"{{"type":"Folder","id":"f{}"}}"#, rng.below(f))
        };
        push(
            format!(
                r#"{{"uid":{{"type":"Folder","id":"f{f}"}},"attrs":{{"name":"folder {f}"}},"parents":[{parent}]}}"#
            ),
            &mut entities,
        );
    }
    push(r#"{"uid":{"type":"Folder","id":"compliance"},"attrs":{},"parents":[{"type":"Folder","id":"f0"}]}"#.to_owned(), &mut entities);
    for d in 0..DOCUMENTS {
        let owner = user_id(rng.below(users));
        let class = match rng.below(10) {
            0 => "secret",
            1 | 2 => "confidential",
            _ => "internal",
        };
        let folder = if d % 50 == 0 {
            "compliance".to_owned()
        } else {
            format!("f{}", rng.below(FOLDERS))
        };
        push(
            format!(
                r#"{{"uid":{{"type":"Document","id":"doc{d}"}},"attrs":{{"owner":{{"__entity":{{"type":"User","id":"{owner}"}}}},"department":"{}","classification":"{class}"}},"parents":[{{"type":"Folder","id":"{folder}"}}]}}"#,
                department(rng.below(DEPARTMENTS.len()))
            ),
            &mut entities,
        );
    }
    entities.push_str("\n]\n");

    let mut lines = String::with_capacity(users * 220);
    for i in 0..users {
        let id = user_id(i);
        let state = if i % 50 == 49 { "Suspended" } else { "Active" };
        let g1 = rng.below(GROUPS);
        let groups = if rng.below(3) == 0 {
            format!(r#""g{g1}","g{}""#, rng.below(GROUPS))
        } else {
            format!(r#""g{g1}""#)
        };
        let manager = if i > 0 && rng.below(2) == 0 {
            format!(
                r#","manager":{{"__entity":{{"type":"User","id":"{}"}}}}"#,
                user_id(rng.below(i))
            )
        } else {
            String::new()
        };
        let _ = writeln!(
            lines,
            r#"{{"id":"{id}","username":"user{i}","email":"user{i}@example.com","state":"{state}","groups":[{groups}],"roles":[],"attrs":{{"department":"{}","level":{}{manager}}},"tokens_valid_after":0,"updated_at":1764000000}}"#,
            department(rng.below(DEPARTMENTS.len())),
            rng.below(7)
        );
    }
    let mut files = BTreeMap::new();
    files.insert(
        "schema.cedarschema".to_owned(),
        REFERENCE_SCHEMA.as_bytes().to_vec(),
    );
    // The reference policies as they are (the folder-reader template stays
    // unlinked: a synthetic realm has no links.json).
    files.insert(
        "policies.cedar".to_owned(),
        REFERENCE_POLICIES.as_bytes().to_vec(),
    );
    files.insert("entities.json".to_owned(), entities.into_bytes());
    files.insert("users.jsonl".to_owned(), lines.into_bytes());
    files
}
