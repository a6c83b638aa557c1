//! Passwords: OWASP ASVS rules (8 to 128 characters, any characters, no
//! composition rules, refused when common or equal to the user's own
//! name or email), Argon2id hashes (OWASP's parameters: 19 MiB, 2
//! passes, 1 lane), and verification of imported bcrypt hashes, which are
//! upgraded to Argon2id at the next successful login.

use crate::domain::error::{Diagnostic, Error, Result};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

/// Shortest password accepted, in characters.
pub const MIN_CHARS: usize = 8;
/// Longest password accepted, in characters.
pub const MAX_CHARS: usize = 128;

/// The most common passwords of public breach corpora (lower case); a
/// password equal to one of them, ignoring case, is refused.
const COMMON: &str = include_str!("common-passwords.txt");

fn argon2() -> Result<Argon2<'static>> {
    let params = Params::new(19 * 1024, 2, 1, None)
        .map_err(|e| Error::Internal(format!("argon2 parameters: {e}")))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

fn refuse(message: String) -> Error {
    Error::Invalid {
        what: "password".into(),
        diagnostics: vec![Diagnostic {
            subject: "password".into(),
            message,
            line: None,
            column: None,
        }],
    }
}

/// Check a new password against the rules. `identities` are the user's
/// username and email, which the password may not equal.
pub fn check(password: &str, identities: &[&str]) -> Result<()> {
    let chars = password.chars().count();
    if chars < MIN_CHARS {
        return Err(refuse(format!(
            "must be at least {MIN_CHARS} characters (has {chars})"
        )));
    }
    if chars > MAX_CHARS {
        return Err(refuse(format!("must be at most {MAX_CHARS} characters")));
    }
    let lower = password.to_lowercase();
    if COMMON.lines().any(|c| c == lower) {
        return Err(refuse("is one of the most common passwords".into()));
    }
    for id in identities {
        let id = id.to_lowercase();
        let local = id.split('@').next().unwrap_or_default();
        if !id.is_empty() && (lower == id || lower == local) {
            return Err(refuse("must not be the username or email".into()));
        }
    }
    Ok(())
}

/// An Argon2id PHC string for `password`.
pub fn hash(password: &str) -> Result<String> {
    let salt_bytes = crate::random::bytes::<16>()?;
    let salt =
        SaltString::encode_b64(&salt_bytes).map_err(|e| Error::Internal(format!("salt: {e}")))?;
    Ok(argon2()?
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| Error::Internal(format!("hashing: {e}")))?
        .to_string())
}

/// Whether `password` matches `stored`, and whether the stored hash should
/// be replaced (bcrypt, or Argon2 with other parameters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verified {
    /// Does not match.
    No,
    /// Matches, and the hash is current.
    Yes,
    /// Matches; re-hash with the current scheme.
    YesUpgrade,
}

/// Check `password` against a stored bcrypt or Argon2 hash.
pub fn verify(password: &str, stored: &str) -> Result<Verified> {
    if stored.starts_with("$2") {
        let ok = bcrypt::verify(password, stored)
            .map_err(|e| Error::Internal(format!("bcrypt hash: {e}")))?;
        return Ok(if ok {
            Verified::YesUpgrade
        } else {
            Verified::No
        });
    }
    let parsed =
        PasswordHash::new(stored).map_err(|e| Error::Internal(format!("stored hash: {e}")))?;
    let a = argon2()?;
    // Verification uses the parameters in the hash, whatever they are.
    if Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_err()
    {
        return Ok(Verified::No);
    }
    let current = parsed.algorithm.as_str() == "argon2id"
        && Params::try_from(&parsed).is_ok_and(|p| {
            p.m_cost() == a.params().m_cost()
                && p.t_cost() == a.params().t_cost()
                && p.p_cost() == a.params().p_cost()
        });
    Ok(if current {
        Verified::Yes
    } else {
        Verified::YesUpgrade
    })
}

/// Spend the time of one verification without a user, so an unknown
/// username answers as slowly as a wrong password.
pub fn verify_nothing(password: &str) {
    static DUMMY: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    if let Some(h) = DUMMY.get_or_init(|| hash("gatehouse timing equaliser").ok()) {
        let _ = verify(password, h);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules() {
        assert!(check("short", &[]).is_err());
        assert!(check(&"x".repeat(129), &[]).is_err());
        assert!(
            check(&"é".repeat(128), &[]).is_ok(),
            "characters, not bytes"
        );
        assert!(check("Password1", &[]).is_err(), "common, any case");
        assert!(check("qwertyuiop", &[]).is_err());
        assert!(check("alice.smith", &["alice.smith", "a@x.io"]).is_err());
        assert!(check("ALICE.SMITH", &["bob", "alice.smith@x.io"]).is_err());
        // No composition rules: a long all-lowercase passphrase is fine.
        assert!(check("correct horse battery staple", &["alice"]).is_ok());
    }

    #[test]
    fn argon2id_round_trip_and_bcrypt_upgrade() {
        let h = hash("correct horse battery staple").unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert_eq!(
            verify("correct horse battery staple", &h).unwrap(),
            Verified::Yes
        );
        assert_eq!(
            verify("correct horse battery stapl", &h).unwrap(),
            Verified::No
        );
        let b = bcrypt::hash("hunter2hunter2", 4).unwrap();
        assert_eq!(verify("hunter2hunter2", &b).unwrap(), Verified::YesUpgrade);
        assert_eq!(verify("hunter2hunter3", &b).unwrap(), Verified::No);
        let weak = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(1024, 1, 1, None).unwrap(),
        )
        .hash_password(
            b"pw-pw-pw-pw",
            &SaltString::encode_b64(b"0123456789abcdef").unwrap(),
        )
        .unwrap()
        .to_string();
        assert_eq!(verify("pw-pw-pw-pw", &weak).unwrap(), Verified::YesUpgrade);
        assert!(verify("x", "not a hash").is_err());
    }
}
