//! The data-driven corpus in `policies/corpus/`: every file is a list of
//! requests against the reference bundle with the expected decision,
//! reason and determining policies (or the expected failure kind). Every
//! successful case is also checked against Cedar evaluating the same
//! request over *all* entities of the realm, so the slicer is exercised on
//! every case.
//!
//! And the search corpus, `policies/search-corpus.json`: searches with the
//! ids expected on each page, following `next_token`, or the failure
//! expected (the wasm module's and the bindings' tests run the same file
//! against `pdp search`).

mod common;

use cedar_policy::{Authorizer, Context, EntityUid, Request as CedarRequest};
use pdp_core::decision::{Decision, Request, Tagged};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::str::FromStr;

#[derive(Deserialize)]
struct CorpusFile {
    description: String,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    request: Request,
    decision: Option<Decision>,
    reason: Option<String>,
    determining_policies: Option<Vec<String>>,
    failure: Option<String>,
}

fn uid(r: &pdp_core::EntityRef) -> EntityUid {
    EntityUid::from_str(&format!("{}::{:?}", r.ty, r.id)).unwrap()
}

#[test]
fn reference_corpus() {
    let snap = common::reference_snapshot();
    let dir = common::repo_root().join("policies/corpus");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let (mut checked, mut failures) = (0, Vec::new());
    for path in files {
        let file: CorpusFile = serde_json::from_slice(&std::fs::read(&path).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(!file.description.is_empty());
        for case in file.cases {
            checked += 1;
            let where_ = format!(
                "{} / {}",
                path.file_name().unwrap().to_string_lossy(),
                case.name
            );
            let got: Tagged<_> = snap.is_authorized(&case.request).into();
            match (&case.failure, got) {
                (Some(kind), Tagged::Failure { errors }) => {
                    if errors.first().map(|e| e.kind.as_str()) != Some(kind.as_str()) {
                        failures.push(format!("{where_}: expected failure {kind}, got {errors:?}"));
                    }
                }
                (Some(kind), Tagged::Success(a)) => {
                    failures.push(format!("{where_}: expected failure {kind}, got {a:?}"));
                }
                (None, Tagged::Failure { errors }) => {
                    failures.push(format!("{where_}: failed: {errors:?}"))
                }
                (None, Tagged::Success(a)) => {
                    if Some(a.decision) != case.decision
                        || Some(a.reason.to_string()) != case.reason
                    {
                        failures.push(format!(
                            "{where_}: expected {:?} {:?}, got {:?} {}",
                            case.decision, case.reason, a.decision, a.reason
                        ));
                    }
                    if let Some(want) = &case.determining_policies
                        && want != &a.determining_policies
                    {
                        failures.push(format!(
                            "{where_}: policies {want:?} != {:?}",
                            a.determining_policies
                        ));
                    }
                    // Differential: Cedar over every entity of the realm. Gated
                    // denials are excluded: for an unknown principal Cedar
                    // alone would skip the erroring forbid and may allow —
                    // exactly what the gate exists to prevent.
                    if matches!(
                        a.reason,
                        pdp_core::Reason::UserState(_) | pdp_core::Reason::UnknownUser
                    ) {
                        continue;
                    }
                    let all = snap.full_entities(&case.request.entities).unwrap();
                    let action = uid(&case.request.action);
                    let ctx = Context::from_json_value(
                        case.request.context.clone(),
                        Some((snap.schema().unwrap(), &action)),
                    )
                    .unwrap();
                    let req = CedarRequest::new(
                        uid(&case.request.principal),
                        action,
                        uid(&case.request.resource),
                        ctx,
                        snap.schema(),
                    )
                    .unwrap();
                    let full = Authorizer::new().is_authorized(&req, snap.policy_set(), &all);
                    let full_allow = full.decision() == cedar_policy::Decision::Allow;
                    if full_allow != (a.decision == Decision::Allow) {
                        failures.push(format!(
                            "{where_}: full evaluation disagrees ({:?})",
                            full.decision()
                        ));
                    }
                    // Same determining and erroring policies: the slice and the
                    // scope index change only what is evaluated, never the answer.
                    let mut reason: Vec<String> = full
                        .diagnostics()
                        .reason()
                        .map(ToString::to_string)
                        .collect();
                    reason.sort();
                    if reason != a.determining_policies {
                        failures.push(format!("{where_}: full evaluation determined {reason:?}"));
                    }
                    let errs = full.diagnostics().errors().count();
                    if errs != a.errors.len() {
                        failures.push(format!(
                            "{where_}: full evaluation had {errs} errors, we had {}",
                            a.errors.len()
                        ));
                    }
                }
            }
        }
    }
    assert!(checked >= 40, "only {checked} corpus cases");
    assert!(
        failures.is_empty(),
        "{} of {checked} corpus cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchFile {
    description: String,
    cases: Vec<SearchCase>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchCase {
    name: String,
    /// `resource`, `subject` or `action`.
    kind: String,
    /// Sent as JSON; a string is sent as it is.
    query: Value,
    /// A case whose first page's `next_token` this query carries.
    #[serde(default)]
    token_from: Option<String>,
    /// The ids on each page, in order.
    #[serde(default)]
    pages: Option<Vec<Vec<String>>>,
    /// The failure kind expected of the first page.
    #[serde(default)]
    failure: Option<String>,
}

/// `query` as the line sent, with `token` as its page token.
fn search_line(query: &Value, token: Option<&str>) -> String {
    match (query, token) {
        (Value::String(raw), _) => raw.clone(),
        (q, None) => q.to_string(),
        (q, Some(t)) => {
            let mut q = q.clone();
            q["page"]["token"] = Value::String(t.to_owned());
            q.to_string()
        }
    }
}

#[test]
fn search_corpus() {
    let snap = common::reference_snapshot();
    let path = common::repo_root().join("policies/search-corpus.json");
    let file: SearchFile = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert!(!file.description.is_empty());
    // Each case's answers, page by page, as JSON.
    let mut answered: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    let mut failures = Vec::new();
    let (mut pages_seen, mut failed_seen) = (BTreeMap::new(), 0);
    for case in &file.cases {
        let name = &case.name;
        assert!(
            case.pages.is_some() != case.failure.is_some(),
            "{name}: give pages or failure"
        );
        let mut token = case.token_from.as_ref().map(|from| {
            let first = answered
                .get(from)
                .and_then(|a| a.first())
                .unwrap_or_else(|| panic!("{name}: token_from {from:?} is not an earlier case"));
            first["next_token"]
                .as_str()
                .unwrap_or_else(|| panic!("{name}: {from:?} has one page only"))
                .to_owned()
        });
        let mut answers = Vec::new();
        loop {
            let line = search_line(&case.query, token.as_deref());
            let answer: Value =
                serde_json::from_str(&snap.search_json(&case.kind, line.as_bytes()).to_json())
                    .unwrap();
            token = answer["next_token"].as_str().map(str::to_owned);
            answers.push(answer);
            if token.is_none() || answers.len() > 100 {
                break;
            }
        }
        let first = &answers[0];
        match (&case.failure, &case.pages) {
            (Some(kind), _) => {
                failed_seen += 1;
                if first["type"] != "failure" || first["errors"][0]["kind"] != kind.as_str() {
                    failures.push(format!("{name}: expected failure {kind}, got {first}"));
                }
            }
            (None, Some(pages)) => {
                let ty = match case.kind.as_str() {
                    "resource" => case.query["resource_type"].as_str(),
                    "subject" => case.query["subject_type"].as_str(),
                    _ => Some("Action"),
                };
                let got: Vec<Vec<String>> = answers
                    .iter()
                    .map(|a| {
                        a["results"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .map(|r| {
                                assert_eq!(r["type"].as_str(), ty, "{name}: {a}");
                                r["id"].as_str().unwrap_or_default().to_owned()
                            })
                            .collect()
                    })
                    .collect();
                if answers
                    .iter()
                    .any(|a| a["type"] != "success" || a["revision"] != 1)
                {
                    failures.push(format!("{name}: {answers:?}"));
                } else if &got != pages {
                    failures.push(format!("{name}: expected pages {pages:?}, got {got:?}"));
                }
                // Every result is exactly an Allow of the same question.
                for id in got.iter().flatten() {
                    let q = &case.query;
                    let mut r = q.clone();
                    let side = match case.kind.as_str() {
                        "resource" => "resource",
                        "subject" => "principal",
                        _ => "action",
                    };
                    r[side] = serde_json::json!({"type": ty, "id": id});
                    let obj = r.as_object_mut().unwrap();
                    for k in ["resource_type", "subject_type", "page"] {
                        obj.remove(k);
                    }
                    let request: Request = serde_json::from_value(r).unwrap();
                    let a = snap.is_authorized(&request).unwrap();
                    if a.decision != Decision::Allow {
                        failures.push(format!("{name}: {id} is found but not allowed"));
                    }
                }
                if pages.iter().any(|p| !p.is_empty()) {
                    *pages_seen.entry(case.kind.clone()).or_insert(0) += pages.len();
                }
            }
            (None, None) => unreachable!(),
        }
        answered.insert(name.clone(), answers);
    }
    // Every kind pages through several results; failures are covered.
    for kind in ["resource", "subject", "action"] {
        let n = pages_seen.get(kind).copied().unwrap_or(0);
        assert!(n >= 4, "only {n} non-empty {kind} pages");
    }
    assert!(failed_seen >= 10, "only {failed_seen} bad queries");
    assert!(
        failures.is_empty(),
        "{} of {} search cases failed:\n{}",
        failures.len(),
        file.cases.len(),
        failures.join("\n")
    );
}
