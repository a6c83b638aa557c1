//! The one translation of a Cognito user's status into Gatehouse's
//! lifecycle state. Nothing else interprets `UserStatusType`.

use crate::domain::error::{Error, Result};
use aws_sdk_cognitoidentityprovider::types::UserStatusType;
use pdp_core::UserState;

/// The Gatehouse state a Cognito user with this `UserStatus` and
/// `Enabled` flag is in, as far as Cognito alone can say (reconcile and
/// import read pools with it; the repository stays the source of truth
/// for users it holds).
///
/// A disabled user is `Suspended` whatever their status: Cognito cannot
/// tell a suspension from a deactivation or a soft deletion, and
/// `Suspended` is the one of those a user can come back from. A
/// `COMPROMISED` user must set a new password, like `RESET_REQUIRED`; an
/// `ARCHIVED` one (a retired status) can no longer sign in at all. A
/// status this build does not know is refused, never guessed.
pub(crate) fn user_state(status: &UserStatusType, enabled: bool) -> Result<UserState> {
    if !enabled {
        return Ok(UserState::Suspended);
    }
    match status {
        UserStatusType::ForceChangePassword => Ok(UserState::Created),
        UserStatusType::Unconfirmed => Ok(UserState::Unverified),
        UserStatusType::Confirmed | UserStatusType::ExternalProvider => Ok(UserState::Active),
        UserStatusType::ResetRequired | UserStatusType::Compromised => {
            Ok(UserState::PasswordResetRequired)
        }
        UserStatusType::Archived => Ok(UserState::Deactivated),
        other => Err(Error::Identity(format!(
            "Cognito user status {:?} is not one Gatehouse knows",
            other.as_str()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_and_enabled_pair_maps_to_one_state() {
        use UserState::*;
        let expected: &[(&str, UserState)] = &[
            ("ARCHIVED", Deactivated),
            ("COMPROMISED", PasswordResetRequired),
            ("CONFIRMED", Active),
            ("EXTERNAL_PROVIDER", Active),
            ("FORCE_CHANGE_PASSWORD", Created),
            ("RESET_REQUIRED", PasswordResetRequired),
            ("UNCONFIRMED", Unverified),
        ];
        // Every status the SDK knows, so a new one in an SDK update fails
        // here until it is mapped on purpose.
        let known: Vec<&str> = UserStatusType::values()
            .iter()
            .copied()
            .filter(|s| *s != "UNKNOWN")
            .collect();
        let mut listed: Vec<&str> = expected.iter().map(|(s, _)| *s).collect();
        listed.sort_unstable();
        let mut known_sorted = known.clone();
        known_sorted.sort_unstable();
        assert_eq!(listed, known_sorted);
        for (name, state) in expected {
            let status = UserStatusType::from(*name);
            assert_eq!(user_state(&status, true).unwrap(), *state, "{name} enabled");
            assert_eq!(
                user_state(&status, false).unwrap(),
                Suspended,
                "{name} disabled"
            );
        }
        // Cognito's own UNKNOWN, and a status from the future: refused
        // while enabled (a disabled user is Suspended whatever the status).
        for name in ["UNKNOWN", "SOMETHING_NEW"] {
            let status = UserStatusType::from(name);
            assert!(matches!(user_state(&status, true), Err(Error::Identity(_))));
            assert_eq!(user_state(&status, false).unwrap(), Suspended);
        }
    }
}
