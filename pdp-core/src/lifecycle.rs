//! User lifecycle: the states a user can be in and the one transition table
//! every component (decision core, control plane, bindings) obeys.
//!
//! The table is data, not scattered `if`s: [`UserState::apply`] is the only
//! place a transition is decided, and the control plane calls it before it
//! writes anything.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Where a user is in its lifecycle. Only [`UserState::Active`] users are
/// authorized or may authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[repr(u8)]
pub enum UserState {
    /// Created by an administrator; no verification sent yet.
    Created = 0,
    /// Verification sent, not yet completed.
    Unverified = 1,
    /// Must set a new password before anything else.
    PasswordResetRequired = 2,
    /// The only state that is authorized.
    Active = 3,
    /// Temporarily blocked; `resume` returns to the state it was suspended from.
    Suspended = 4,
    /// Permanently blocked; never leaves this state except through delete.
    Deactivated = 5,
    /// Soft-deleted, data retained; `restore` returns to the state before delete.
    Deleted = 6,
}

impl UserState {
    /// Every state, in declaration order.
    pub const ALL: [UserState; 7] = [
        UserState::Created,
        UserState::Unverified,
        UserState::PasswordResetRequired,
        UserState::Active,
        UserState::Suspended,
        UserState::Deactivated,
        UserState::Deleted,
    ];

    /// The state's name as it appears in bundles, Cedar attributes and reasons.
    pub const fn as_str(self) -> &'static str {
        match self {
            UserState::Created => "Created",
            UserState::Unverified => "Unverified",
            UserState::PasswordResetRequired => "PasswordResetRequired",
            UserState::Active => "Active",
            UserState::Suspended => "Suspended",
            UserState::Deactivated => "Deactivated",
            UserState::Deleted => "Deleted",
        }
    }

    /// Decode the one-byte form (`state as u8`).
    pub const fn from_u8(v: u8) -> Option<UserState> {
        match v {
            0 => Some(UserState::Created),
            1 => Some(UserState::Unverified),
            2 => Some(UserState::PasswordResetRequired),
            3 => Some(UserState::Active),
            4 => Some(UserState::Suspended),
            5 => Some(UserState::Deactivated),
            6 => Some(UserState::Deleted),
            _ => None,
        }
    }

    /// Whether a user in this state may be authorized at all.
    pub const fn is_authorizable(self) -> bool {
        matches!(self, UserState::Active)
    }

    /// Apply `action` to a user in this state.
    ///
    /// `memory` holds the states saved by earlier `suspend` and `delete`
    /// actions (needed by `resume` and `restore`). On success the caller
    /// stores [`Transition::to`] and [`Transition::memory`]; on error nothing
    /// may change.
    pub fn apply(
        self,
        action: LifecycleAction,
        memory: Memory,
    ) -> Result<Transition, LifecycleError> {
        use LifecycleAction as A;
        use UserState as S;
        let refused = || LifecycleError::Refused { from: self, action };
        let nothing = || LifecycleError::NothingToReturnTo { from: self, action };
        let mut next = memory;
        let to = match (action, self) {
            (A::Invite, S::Created) => S::Unverified,
            (A::Verify, S::Created | S::Unverified) => S::Active,
            (A::RequirePasswordReset, S::Active) => S::PasswordResetRequired,
            (A::CompletePasswordReset, S::PasswordResetRequired) => S::Active,
            (A::Suspend, S::Unverified | S::PasswordResetRequired | S::Active) => {
                next.suspended_from = Some(self);
                S::Suspended
            }
            (A::Resume, S::Suspended) => {
                let back = memory
                    .suspended_from
                    .filter(|s| matches!(s, S::Unverified | S::PasswordResetRequired | S::Active))
                    .ok_or_else(nothing)?;
                next.suspended_from = None;
                back
            }
            (A::Deactivate, s) if !matches!(s, S::Deleted | S::Deactivated) => {
                next.suspended_from = None;
                S::Deactivated
            }
            (A::Delete, s) if s != S::Deleted => {
                next.deleted_from = Some(self);
                S::Deleted
            }
            (A::Restore, S::Deleted) => {
                let back = memory
                    .deleted_from
                    .filter(|s| *s != S::Deleted)
                    .ok_or_else(nothing)?;
                next.deleted_from = None;
                back
            }
            (A::SignOutEverywhere, s) if s != S::Deleted => s,
            _ => return Err(refused()),
        };
        Ok(Transition {
            from: self,
            to,
            memory: next,
            revokes_tokens: action.revokes_tokens(),
        })
    }
}

/// States remembered across a suspension or a soft delete, so `resume` and
/// `restore` return exactly where the user was (a user deleted while
/// suspended is restored suspended, and can still be resumed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Memory {
    /// The state `suspend` left; `resume` returns to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspended_from: Option<UserState>,
    /// The state `delete` left; `restore` returns to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_from: Option<UserState>,
}

impl fmt::Display for UserState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for UserState {
    type Err = LifecycleError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        UserState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| LifecycleError::UnknownState(s.to_owned()))
    }
}

/// An administrative or self-service action on a user's lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LifecycleAction {
    /// Send the verification (Created -> Unverified).
    Invite,
    /// Email verified and credential set (Created/Unverified -> Active).
    Verify,
    /// Force a password change (Active -> PasswordResetRequired).
    RequirePasswordReset,
    /// The forced password change happened (-> Active).
    CompletePasswordReset,
    /// Block temporarily.
    Suspend,
    /// Lift a suspension.
    Resume,
    /// Block permanently.
    Deactivate,
    /// Soft delete.
    Delete,
    /// Undo a soft delete.
    Restore,
    /// Revoke every issued token without changing state.
    SignOutEverywhere,
}

impl LifecycleAction {
    /// Every action, in declaration order.
    pub const ALL: [LifecycleAction; 10] = [
        LifecycleAction::Invite,
        LifecycleAction::Verify,
        LifecycleAction::RequirePasswordReset,
        LifecycleAction::CompletePasswordReset,
        LifecycleAction::Suspend,
        LifecycleAction::Resume,
        LifecycleAction::Deactivate,
        LifecycleAction::Delete,
        LifecycleAction::Restore,
        LifecycleAction::SignOutEverywhere,
    ];

    /// The action's wire name (`require_password_reset`, ...).
    pub const fn as_str(self) -> &'static str {
        match self {
            LifecycleAction::Invite => "invite",
            LifecycleAction::Verify => "verify",
            LifecycleAction::RequirePasswordReset => "require_password_reset",
            LifecycleAction::CompletePasswordReset => "complete_password_reset",
            LifecycleAction::Suspend => "suspend",
            LifecycleAction::Resume => "resume",
            LifecycleAction::Deactivate => "deactivate",
            LifecycleAction::Delete => "delete",
            LifecycleAction::Restore => "restore",
            LifecycleAction::SignOutEverywhere => "sign_out_everywhere",
        }
    }

    /// Whether the action sets `tokens_valid_after` to now, killing every
    /// token issued in or before that second. These actions only take access away: the
    /// control plane publishes them before touching an external identity
    /// provider, and the others after, so a crash in between never leaves
    /// extra access.
    pub const fn revokes_tokens(self) -> bool {
        matches!(
            self,
            LifecycleAction::Suspend
                | LifecycleAction::Deactivate
                | LifecycleAction::Delete
                | LifecycleAction::RequirePasswordReset
                | LifecycleAction::SignOutEverywhere
        )
    }
}

impl fmt::Display for LifecycleAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for LifecycleAction {
    type Err = LifecycleError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.replace('-', "_");
        LifecycleAction::ALL
            .into_iter()
            .find(|a| a.as_str() == wanted)
            .ok_or_else(|| LifecycleError::UnknownAction(s.to_owned()))
    }
}

/// The outcome of an allowed lifecycle action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// State before the action.
    pub from: UserState,
    /// State after the action.
    pub to: UserState,
    /// What to remember for a later `resume`/`restore`.
    pub memory: Memory,
    /// Whether `tokens_valid_after` must be set to now.
    pub revokes_tokens: bool,
}

/// Why a lifecycle action or name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LifecycleError {
    /// The table does not allow `action` from `from`.
    #[error("cannot {action} a user who is {from}")]
    Refused {
        /// Current state.
        from: UserState,
        /// Refused action.
        action: LifecycleAction,
    },
    /// `resume` or `restore` without a remembered state to return to.
    #[error("cannot {action} a user who is {from}: no earlier state is recorded")]
    NothingToReturnTo {
        /// Current state.
        from: UserState,
        /// Refused action.
        action: LifecycleAction,
    },
    /// Not one of the seven state names.
    #[error("unknown user state {0:?}")]
    UnknownState(String),
    /// Not one of the action names.
    #[error("unknown lifecycle action {0:?}")]
    UnknownAction(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use LifecycleAction as A;
    use UserState as S;

    /// The table from DESIGN.md, written out independently of `apply`.
    fn expected(action: A, from: S, m: Memory) -> Option<S> {
        let live = |r: &S| matches!(r, S::Unverified | S::PasswordResetRequired | S::Active);
        match action {
            A::Invite => (from == S::Created).then_some(S::Unverified),
            A::Verify => matches!(from, S::Created | S::Unverified).then_some(S::Active),
            A::RequirePasswordReset => (from == S::Active).then_some(S::PasswordResetRequired),
            A::CompletePasswordReset => (from == S::PasswordResetRequired).then_some(S::Active),
            A::Suspend => live(&from).then_some(S::Suspended),
            A::Resume => (from == S::Suspended)
                .then_some(())
                .and(m.suspended_from.filter(live)),
            A::Deactivate => {
                (!matches!(from, S::Deleted | S::Deactivated)).then_some(S::Deactivated)
            }
            A::Delete => (from != S::Deleted).then_some(S::Deleted),
            A::Restore => (from == S::Deleted)
                .then_some(())
                .and(m.deleted_from.filter(|r| *r != S::Deleted)),
            A::SignOutEverywhere => (from != S::Deleted).then_some(from),
        }
    }

    fn memories() -> Vec<Memory> {
        let opts: Vec<Option<S>> = std::iter::once(None).chain(S::ALL.map(Some)).collect();
        let mut out = Vec::new();
        for a in &opts {
            for b in &opts {
                out.push(Memory {
                    suspended_from: *a,
                    deleted_from: *b,
                });
            }
        }
        out
    }

    #[test]
    fn every_pair_of_state_and_action_matches_the_table() {
        let (mut allowed, mut refused) = (0, 0);
        for from in S::ALL {
            for action in A::ALL {
                for m in memories() {
                    let got = from.apply(action, m).ok().map(|t| t.to);
                    assert_eq!(
                        got,
                        expected(action, from, m),
                        "{action} from {from} ({m:?})"
                    );
                    if got.is_some() {
                        allowed += 1;
                    } else {
                        refused += 1;
                    }
                }
            }
        }
        assert!(allowed > 1000 && refused > 1000, "{allowed} {refused}");
    }

    #[test]
    fn refusals_name_the_state_and_action() {
        let err = S::Deactivated
            .apply(A::Resume, Memory::default())
            .unwrap_err();
        assert_eq!(
            err,
            LifecycleError::Refused {
                from: S::Deactivated,
                action: A::Resume
            }
        );
        assert_eq!(err.to_string(), "cannot resume a user who is Deactivated");
        let err = S::Suspended
            .apply(A::Resume, Memory::default())
            .unwrap_err();
        assert!(matches!(err, LifecycleError::NothingToReturnTo { .. }));
    }

    #[test]
    fn suspend_then_resume_returns_to_the_suspended_from_state() {
        for start in [S::Unverified, S::PasswordResetRequired, S::Active] {
            let t = start.apply(A::Suspend, Memory::default()).unwrap();
            assert_eq!(t.to, S::Suspended);
            assert_eq!(t.memory.suspended_from, Some(start));
            assert!(t.revokes_tokens);
            let back = t.to.apply(A::Resume, t.memory).unwrap();
            assert_eq!(back.to, start);
            assert_eq!(back.memory, Memory::default());
            assert!(!back.revokes_tokens);
        }
    }

    #[test]
    fn a_user_deleted_while_suspended_is_restored_suspended_and_can_resume() {
        let s = S::Active.apply(A::Suspend, Memory::default()).unwrap();
        let d = s.to.apply(A::Delete, s.memory).unwrap();
        assert_eq!(d.to, S::Deleted);
        let r = d.to.apply(A::Restore, d.memory).unwrap();
        assert_eq!(r.to, S::Suspended);
        assert_eq!(r.to.apply(A::Resume, r.memory).unwrap().to, S::Active);
    }

    #[test]
    fn delete_then_restore_returns_to_the_state_before_delete() {
        for start in S::ALL.into_iter().filter(|s| *s != S::Deleted) {
            let t = start.apply(A::Delete, Memory::default()).unwrap();
            assert_eq!((t.to, t.memory.deleted_from), (S::Deleted, Some(start)));
            assert_eq!(t.to.apply(A::Restore, t.memory).unwrap().to, start);
        }
        assert!(S::Deleted.apply(A::Restore, Memory::default()).is_err());
    }

    #[test]
    fn revoking_actions_are_exactly_the_designed_ones() {
        let revoking: Vec<A> = A::ALL.into_iter().filter(|a| a.revokes_tokens()).collect();
        assert_eq!(
            revoking,
            vec![
                A::RequirePasswordReset,
                A::Suspend,
                A::Deactivate,
                A::Delete,
                A::SignOutEverywhere
            ]
        );
    }

    #[test]
    fn names_round_trip() {
        for s in S::ALL {
            assert_eq!(s.as_str().parse::<S>().unwrap(), s);
            assert_eq!(S::from_u8(s as u8), Some(s));
        }
        for a in A::ALL {
            assert_eq!(a.as_str().parse::<A>().unwrap(), a);
        }
        assert_eq!(
            "sign-out-everywhere".parse::<A>().unwrap(),
            A::SignOutEverywhere
        );
        assert!("Banned".parse::<S>().is_err());
        assert_eq!(S::from_u8(7), None);
    }

    proptest::proptest! {
        /// Arbitrary action sequences, applied as the control plane applies
        /// them (a refusal changes nothing), never leave the table, and
        /// deactivation is permanent (only delete/restore may follow).
        #[test]
        fn arbitrary_sequences_stay_inside_the_table(actions in proptest::collection::vec(0usize..10, 0..64)) {
            let mut state = S::Created;
            let mut memory = Memory::default();
            let mut ever_deactivated = false;
            for i in actions {
                let action = A::ALL[i % A::ALL.len()];
                let want = expected(action, state, memory);
                match state.apply(action, memory) {
                    Ok(t) => {
                        proptest::prop_assert_eq!(Some(t.to), want);
                        proptest::prop_assert_eq!(t.from, state);
                        state = t.to;
                        memory = t.memory;
                    }
                    Err(_) => proptest::prop_assert_eq!(want, None),
                }
                ever_deactivated |= state == S::Deactivated;
                if ever_deactivated {
                    proptest::prop_assert!(matches!(state, S::Deactivated | S::Deleted));
                }
                if state == S::Suspended {
                    proptest::prop_assert!(memory.suspended_from.is_some());
                }
            }
        }
    }
}
