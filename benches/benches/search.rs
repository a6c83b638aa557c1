//! Search benchmarks (pdp-core `search`), each side by side with the naive
//! way in the same run: asking `is_authorized` about every candidate.
//!
//! - resources: every page of "which of 10,000 documents may this user
//!   read" (the synthetic realm's documents copied up to 10,000);
//! - subjects: every page of "who may read this document", over 10,000
//!   users (criterion) and once over 1,000,000 (timed, printed);
//! - actions: "what may this user do to this document".
//!
//! The reference policies leave the resource side open (`owners`,
//! department and classification rules read attributes), so every
//! document is a candidate; on the subject side group and role scopes
//! narrow only when no permit leaves the principal open. The figures say
//! how much the narrowing and the shared setup save over the naive loop.

#![allow(
    missing_docs,
    reason = "criterion macros generate undocumented functions"
)]

use criterion::{Criterion, criterion_group};
use gatehouse_benches::{bundle, load_dev, realm_files};
use pdp_core::Snapshot;
use pdp_core::decision::{Decision, EntityRef, Request};
use pdp_core::search::{ActionSearch, Found, Page, ResourceSearch, SubjectSearch};
use pdp_core::synth::user_id;
use serde_json::{Value, json};
use std::hint::black_box;
use std::time::Instant;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const DOCUMENTS: usize = 10_000;

/// A synthetic realm of `users` users and `DOCUMENTS` documents.
fn setup(users: usize) -> Snapshot {
    let mut files = realm_files(users);
    let entities: Vec<Value> =
        serde_json::from_slice(&files["entities.json"]).expect("synthetic entities");
    let docs: Vec<Value> = entities
        .iter()
        .filter(|e| e["uid"]["type"] == "Document")
        .cloned()
        .collect();
    let mut all = entities.clone();
    for d in docs.len()..DOCUMENTS {
        let mut doc = docs[d % docs.len()].clone();
        doc["uid"]["id"] = json!(format!("doc{d}"));
        all.push(doc);
    }
    files.insert(
        "entities.json".into(),
        serde_json::to_vec(&all).expect("entities"),
    );
    let bytes = bundle(&files);
    load_dev(&bytes).expect("synthetic realm loads")
}

/// Every page of a search, concatenated.
fn all_pages(mut page: impl FnMut(Option<String>) -> Found) -> Vec<EntityRef> {
    let (mut out, mut token) = (Vec::new(), None);
    loop {
        let found = page(token.take());
        out.extend(found.results);
        match found.next_token {
            Some(t) => token = Some(t),
            None => return out,
        }
    }
}

fn resources(snap: &Snapshot, user: &str) -> Vec<EntityRef> {
    all_pages(|token| {
        snap.search_resources(&ResourceSearch {
            principal: EntityRef::new("User", user),
            action: EntityRef::new("Action", "readDocument"),
            resource_type: "Document".into(),
            context: json!({"mfa": true}),
            page: Page {
                limit: Some(1000),
                token,
            },
        })
        .expect("search")
    })
}

/// The first page only, at the AuthZEN default size (what a PEP filling
/// one screen asks for).
fn first_page(snap: &Snapshot, user: &str) -> usize {
    snap.search_resources(&ResourceSearch {
        principal: EntityRef::new("User", user),
        action: EntityRef::new("Action", "readDocument"),
        resource_type: "Document".into(),
        context: json!({"mfa": true}),
        page: Page::default(),
    })
    .expect("search")
    .results
    .len()
}

/// Who may suspend `target`: the only permit for `suspendUser` scopes
/// the principal `in Role::"realm-admin"`, so the candidates are the
/// members of the groups below that role, not the whole directory.
fn admins(snap: &Snapshot, target: &str) -> Vec<EntityRef> {
    all_pages(|token| {
        snap.search_subjects(&SubjectSearch {
            subject_type: "User".into(),
            action: EntityRef::new("Action", "suspendUser"),
            resource: EntityRef::new("User", target),
            context: json!({"mfa": true}),
            page: Page {
                limit: Some(1000),
                token,
            },
        })
        .expect("search")
    })
}

fn naive_admins(snap: &Snapshot, users: usize, target: &str) -> usize {
    (0..users)
        .filter(|u| {
            snap.is_authorized(&Request {
                principal: EntityRef::new("User", user_id(*u)),
                action: EntityRef::new("Action", "suspendUser"),
                resource: EntityRef::new("User", target),
                context: json!({"mfa": true}),
                entities: vec![],
            })
            .is_ok_and(|a| a.decision == Decision::Allow)
        })
        .count()
}

fn naive_resources(snap: &Snapshot, user: &str) -> usize {
    (0..DOCUMENTS)
        .filter(|d| {
            snap.is_authorized(&Request {
                principal: EntityRef::new("User", user),
                action: EntityRef::new("Action", "readDocument"),
                resource: EntityRef::new("Document", format!("doc{d}")),
                context: json!({"mfa": true}),
                entities: vec![],
            })
            .is_ok_and(|a| a.decision == Decision::Allow)
        })
        .count()
}

fn subjects(snap: &Snapshot, doc: &str) -> Vec<EntityRef> {
    all_pages(|token| {
        snap.search_subjects(&SubjectSearch {
            subject_type: "User".into(),
            action: EntityRef::new("Action", "readDocument"),
            resource: EntityRef::new("Document", doc),
            context: json!({"mfa": true}),
            page: Page {
                limit: Some(1000),
                token,
            },
        })
        .expect("search")
    })
}

fn naive_subjects(snap: &Snapshot, users: usize, doc: &str) -> usize {
    (0..users)
        .filter(|u| {
            snap.is_authorized(&Request {
                principal: EntityRef::new("User", user_id(*u)),
                action: EntityRef::new("Action", "readDocument"),
                resource: EntityRef::new("Document", doc),
                context: json!({"mfa": true}),
                entities: vec![],
            })
            .is_ok_and(|a| a.decision == Decision::Allow)
        })
        .count()
}

fn timed<T>(label: &str, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = f();
    eprintln!(
        "[timed] {label}: {:.1} ms",
        start.elapsed().as_secs_f64() * 1e3
    );
    out
}

fn search(c: &mut Criterion) {
    let snap = setup(10_000);
    let user = user_id(0);
    let found = resources(&snap, &user);
    assert_eq!(found.len(), naive_resources(&snap, &user), "exact");
    eprintln!(
        "[info] {user} reads {} of {DOCUMENTS} documents",
        found.len()
    );
    let readers = subjects(&snap, "doc1");
    assert_eq!(
        readers.len(),
        naive_subjects(&snap, 10_000, "doc1"),
        "exact"
    );
    eprintln!("[info] {} of 10,000 users read doc1", readers.len());

    let mut g = c.benchmark_group("search");
    g.sample_size(10);
    g.bench_function("resources/10k-docs/search", |b| {
        b.iter(|| black_box(resources(&snap, &user).len()))
    });
    g.bench_function("resources/10k-docs/first-page-of-100", |b| {
        b.iter(|| black_box(first_page(&snap, &user)))
    });
    g.bench_function("resources/10k-docs/naive", |b| {
        b.iter(|| black_box(naive_resources(&snap, &user)))
    });
    g.bench_function("subjects/10k-users/search", |b| {
        b.iter(|| black_box(subjects(&snap, "doc1").len()))
    });
    g.bench_function("subjects/10k-users/naive", |b| {
        b.iter(|| black_box(naive_subjects(&snap, 10_000, "doc1")))
    });
    g.bench_function("actions/search", |b| {
        b.iter(|| {
            black_box(
                snap.search_actions(&ActionSearch {
                    principal: EntityRef::new("User", user.clone()),
                    resource: EntityRef::new("Document", "doc1"),
                    context: json!({"mfa": true}),
                    page: Page::default(),
                })
                .map(|f| f.results.len()),
            )
        })
    });
    g.finish();

    // One million users: too slow for criterion's repetitions; one timed
    // run of each, after a warm-up pass of the search.
    let big = timed("load 1M users + 10k documents", || setup(1_000_000));
    let _ = subjects(&big, "doc1");
    let n = timed("subjects/1M-users/search", || subjects(&big, "doc1").len());
    let m = timed("subjects/1M-users/naive", || {
        naive_subjects(&big, 1_000_000, "doc1")
    });
    assert_eq!(n, m, "exact");
    eprintln!("[info] {n} of 1,000,000 users read doc1");
    let target = user_id(5);
    // The first page at the AuthZEN default size: cold (the narrowed
    // candidate list is built on this snapshot's first need), then warm.
    let first = |snap: &Snapshot| {
        snap.search_subjects(&SubjectSearch {
            subject_type: "User".into(),
            action: EntityRef::new("Action", "suspendUser"),
            resource: EntityRef::new("User", target.clone()),
            context: json!({"mfa": true}),
            page: Page::default(),
        })
        .expect("search")
        .results
        .len()
    };
    timed(
        "subjects/1M-users/suspendUser first page of 100, cold",
        || first(&big),
    );
    let mut warm: Vec<f64> = (0..9)
        .map(|_| {
            let start = Instant::now();
            black_box(first(&big));
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    warm.sort_by(f64::total_cmp);
    eprintln!(
        "[timed] subjects/1M-users/suspendUser first page of 100, warm: median of 9 {:.2} ms (min {:.2}, max {:.2})",
        warm[4], warm[0], warm[8]
    );
    let _ = admins(&big, &target);
    let mut runs: Vec<f64> = (0..5)
        .map(|_| {
            let start = Instant::now();
            black_box(admins(&big, &target).len());
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    runs.sort_by(f64::total_cmp);
    eprintln!(
        "[timed] subjects/1M-users/suspendUser (role-narrowed) search: median of 5 {:.1} ms (min {:.1}, max {:.1})",
        runs[2], runs[0], runs[4]
    );
    let a = admins(&big, &target).len();
    let m = timed("subjects/1M-users/suspendUser naive", || {
        naive_admins(&big, 1_000_000, &target)
    });
    assert_eq!(a, m, "exact");
    eprintln!("[info] {a} of 1,000,000 users may suspend {target}");
}

criterion_group!(benches, search);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
