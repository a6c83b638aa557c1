//! The data-driven corpus in `policies/corpus/`: every file is a list of
//! requests against the reference bundle with the expected decision,
//! reason and determining policies (or the expected failure kind). Every
//! successful case is also checked against Cedar evaluating the same
//! request over *all* entities of the realm, so the slicer is exercised on
//! every case.

mod common;

use cedar_policy::{Authorizer, Context, EntityUid, Request as CedarRequest};
use pdp_core::decision::{Decision, Request, Tagged};
use serde::Deserialize;
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
