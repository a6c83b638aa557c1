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

/// The costliest stored hashes accepted (at import) and ever verified: a
/// hash is work an attacker who can log in makes the server do, so its
/// parameters are bounded. Argon2: memory (KiB), passes, lanes.
pub const MAX_ARGON2: (u32, u32, u32) = (64 * 1024, 4, 4);
/// bcrypt's largest cost (2^14 rounds).
pub const MAX_BCRYPT_COST: u32 = 14;

/// Whether a stored PHC hash is one this control plane checks: bcrypt
/// (`$2a$`, `$2b$`, `$2y$`) of cost at most [`MAX_BCRYPT_COST`], or Argon2
/// (`$argon2id$`, `$argon2i$`, `$argon2d$`) within [`MAX_ARGON2`]. The
/// message says what is wrong.
pub fn check_hash(h: &str) -> std::result::Result<(), String> {
    let parts: Vec<&str> = h.split('$').collect();
    match parts.get(1).copied() {
        Some("2a" | "2b" | "2y") => {
            let cost: u32 = parts
                .get(2)
                .and_then(|c| c.parse().ok())
                .ok_or_else(|| "a bcrypt hash without a cost".to_owned())?;
            if cost > MAX_BCRYPT_COST {
                return Err(format!(
                    "bcrypt cost {cost} is above the largest accepted ({MAX_BCRYPT_COST})"
                ));
            }
            Ok(())
        }
        Some("argon2id" | "argon2i" | "argon2d") => {
            let params = parts
                .iter()
                .find(|p| p.contains("m="))
                .ok_or_else(|| "an Argon2 hash without parameters".to_owned())?;
            let mut got = (None, None, None);
            for kv in params.split(',') {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                let v: Option<u32> = v.parse().ok();
                match k {
                    "m" => got.0 = v,
                    "t" => got.1 = v,
                    "p" => got.2 = v,
                    _ => {}
                }
            }
            let (Some(m), Some(t), Some(p)) = got else {
                return Err("an Argon2 hash without m, t and p".into());
            };
            let (max_m, max_t, max_p) = MAX_ARGON2;
            if m > max_m || t > max_t || p > max_p {
                return Err(format!(
                    "Argon2 parameters m={m},t={t},p={p} are above the largest accepted \
                     (m={max_m},t={max_t},p={max_p})"
                ));
            }
            Ok(())
        }
        _ => Err("not a bcrypt or Argon2 hash".into()),
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
    fn stored_hashes_are_bounded_in_cost() {
        assert!(check_hash("$2b$12$abcdefghijklmnopqrstuuabcdefghijklmnopqrstuvwxyz01234").is_ok());
        assert!(check_hash("$2b$14$x").is_ok());
        assert!(check_hash("$2y$15$x").unwrap_err().contains("cost 15"));
        assert!(check_hash("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA").is_ok());
        assert!(check_hash("$argon2id$v=19$m=65536,t=4,p=4$c2FsdA$aGFzaA").is_ok());
        for over in ["m=65537,t=1,p=1", "m=1024,t=5,p=1", "m=1024,t=1,p=5"] {
            let h = format!("$argon2id$v=19${over}$c2FsdA$aGFzaA");
            assert!(check_hash(&h).unwrap_err().contains("above"), "{h}");
        }
        assert!(check_hash("$argon2id$v=19$c2FsdA$aGFzaA").is_err());
        assert!(check_hash("$5$rounds=5000$x").is_err());
        assert!(check_hash("plain").is_err());
    }

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
