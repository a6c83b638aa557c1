//! The password rules (OWASP ASVS): 8 to 128 characters, any characters,
//! no composition rules, refused when common or equal to the user's own
//! name or email. Every identity backend that sets passwords applies them.

use super::error::{Diagnostic, Error, Result};

/// Shortest password accepted, in characters.
pub const MIN_CHARS: usize = 8;
/// Longest password accepted, in characters.
pub const MAX_CHARS: usize = 128;

/// The most common passwords of public breach corpora (lower case); a
/// password equal to one of them, ignoring case, is refused.
const COMMON: &str = include_str!("common-passwords.txt");

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
}
