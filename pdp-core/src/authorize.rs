//! Cedar's authorization algorithm over policies prepared once per snapshot.
//!
//! `cedar_policy::Authorizer` rebuilds every policy's condition expression
//! (scope constraints and-ed with the body) on every request and assembles a
//! partial-evaluation response; here the conditions are built once at load
//! and evaluated with Cedar's own evaluator. The decision rule is Cedar's:
//! any satisfied forbid denies (those forbids determine), else any
//! satisfied permit allows (those permits determine), else deny; a policy
//! that errors is skipped and reported. The corpus and differential tests
//! compare every answer with `cedar_policy::Authorizer` over all entities.

use crate::decision::PolicyError;
use cedar_policy::{Entities, PolicySet, Request};
use cedar_policy_core::ast::{self, Effect, Expr, Literal, SlotEnv, ValueKind};
use cedar_policy_core::evaluator::Evaluator;
use cedar_policy_core::extensions::Extensions;

struct Prepared {
    policy: ast::Policy,
    id: String,
    effect: Effect,
    condition: Expr,
    env: SlotEnv,
}

/// A policy set whose conditions are built, in a fixed order.
pub(crate) struct PreparedSet {
    policies: Vec<Prepared>,
}

impl std::fmt::Debug for PreparedSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedSet")
            .field("policies", &self.policies.len())
            .finish()
    }
}

/// The part of a principal or resource scope constraint that is not a
/// type test: `== e` or `in e` (`None` for none or a bare `is`).
fn scope_test(
    c: &ast::PrincipalOrResourceConstraint,
    var: ast::Var,
    slot: ast::SlotId,
) -> Option<Expr> {
    use ast::PrincipalOrResourceConstraint as C;
    match c {
        C::Any | C::Is(_) => None,
        C::Eq(r) => Some(Expr::is_eq(Expr::var(var), r.into_expr(slot))),
        C::In(r) | C::IsIn(_, r) => Some(Expr::is_in(Expr::var(var), r.into_expr(slot))),
    }
}

/// What Cedar decided.
pub(crate) struct Outcome {
    pub allow: bool,
    /// Determining policies, sorted.
    pub determining: Vec<String>,
    pub errors: Vec<PolicyError>,
}

impl PreparedSet {
    pub fn new(set: &PolicySet) -> PreparedSet {
        PreparedSet::build(set, ast::Policy::condition)
    }

    /// For a subset the policy index chose for one (action, principal
    /// type, resource type): every policy's action constraint and its
    /// `is` type tests are known to hold for every request it is used for
    /// (that is how the index chose it), so they are left out of the
    /// condition; `==` and `in` tests on principal and resource stay.
    /// Dropping conjuncts that are true changes no result and no error
    /// (scope tests never error), only the time spent.
    pub fn new_scoped(set: &PolicySet) -> PreparedSet {
        PreparedSet::build(set, |p| {
            let parts = [
                scope_test(
                    p.principal_constraint().as_inner(),
                    ast::Var::Principal,
                    ast::SlotId::principal(),
                ),
                scope_test(
                    p.resource_constraint().as_inner(),
                    ast::Var::Resource,
                    ast::SlotId::resource(),
                ),
                p.non_scope_constraints().cloned(),
            ];
            parts
                .into_iter()
                .flatten()
                .reduce(Expr::and)
                .unwrap_or_else(|| Expr::val(true))
        })
    }

    fn build(set: &PolicySet, condition: impl Fn(&ast::Policy) -> Expr) -> PreparedSet {
        let core: &ast::PolicySet = set.as_ref();
        let mut policies: Vec<Prepared> = core
            .policies()
            .map(|p| Prepared {
                policy: p.clone(),
                id: p.id().to_string(),
                effect: p.effect(),
                condition: condition(p),
                env: p.env().clone(),
            })
            .collect();
        policies.sort_by(|a, b| a.id.cmp(&b.id));
        PreparedSet { policies }
    }

    pub fn authorize(&self, request: &Request, entities: &Entities) -> Outcome {
        let core_request: &ast::Request = request.as_ref();
        let eval = Evaluator::new(
            core_request.clone(),
            entities.as_ref(),
            Extensions::all_available(),
        );
        let (mut permits, mut forbids, mut errors) = (Vec::new(), Vec::new(), Vec::new());
        for p in &self.policies {
            let satisfied = match eval.interpret(&p.condition, &p.env) {
                Ok(v) => match v.value_kind() {
                    ValueKind::Lit(Literal::Bool(b)) => Ok(*b),
                    // Not a boolean: let Cedar's own entry point word the error.
                    _ => eval.evaluate(&p.policy),
                },
                Err(e) => Err(e),
            };
            match satisfied {
                Ok(true) if p.effect == Effect::Permit => permits.push(p.id.clone()),
                Ok(true) => forbids.push(p.id.clone()),
                Ok(false) => {}
                Err(e) => errors.push(PolicyError {
                    policy_id: p.id.clone(),
                    message: e.to_string(),
                }),
            }
        }
        // Policies are sorted by id, so both lists already are.
        if forbids.is_empty() && !permits.is_empty() {
            Outcome {
                allow: true,
                determining: permits,
                errors,
            }
        } else {
            Outcome {
                allow: false,
                determining: forbids,
                errors,
            }
        }
    }
}
