//! Password hashes: Argon2id (OWASP's parameters: 19 MiB, 2 passes, 1
//! lane), and verification of imported bcrypt hashes, which are upgraded to
//! Argon2id at the next successful login. The rules a new password must
//! meet are `domain::password`'s.
//!
//! Hashing is bounded: at most two hashes per core at once per provider
//! ([`Hashing`]; beyond that [`Error::Busy`], which the API answers with
//! 503 and `Retry-After`), each on the blocking pool (not a runtime
//! worker); and no stored hash costlier than
//! `domain::password::check_hash` allows is ever verified.

use crate::domain::error::{Error, Result};
pub use crate::domain::password::check;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

fn argon2() -> Result<Argon2<'static>> {
    let params = Params::new(19 * 1024, 2, 1, None)
        .map_err(|e| Error::Internal(format!("argon2 parameters: {e}")))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
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
    crate::domain::password::check_hash(stored)
        .map_err(|why| Error::Internal(format!("stored password hash refused: {why}")))?;
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

/// Password hashes computed at once by one provider, at most.
pub fn slots() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get) * 2
}

/// Where a provider hashes and verifies passwords: in a bounded number of
/// slots, on the blocking pool; a call that finds every slot taken is
/// refused at once with [`Error::Busy`].
#[derive(Debug, Clone)]
pub struct Hashing {
    slots: std::sync::Arc<tokio::sync::Semaphore>,
}

impl Default for Hashing {
    fn default() -> Self {
        Hashing::new(slots())
    }
}

impl Hashing {
    /// At most `slots` hashes at once.
    pub fn new(slots: usize) -> Hashing {
        Hashing {
            slots: std::sync::Arc::new(tokio::sync::Semaphore::new(slots)),
        }
    }

    async fn in_slot<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let _slot = self.slots.try_acquire().map_err(|_| Error::Busy {
            what: "too many password checks at once",
            retry_after: 1,
        })?;
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| Error::Internal(format!("password hashing: {e}")))?
    }

    /// [`hash`] in a slot.
    pub async fn hash(&self, password: &str) -> Result<String> {
        let p = password.to_owned();
        self.in_slot(move || hash(&p)).await
    }

    /// [`verify`] in a slot; without a stored hash, [`verify_nothing`] (the
    /// same time spent, so an unknown username answers as slowly).
    pub async fn verify(&self, password: &str, stored: Option<&str>) -> Result<Verified> {
        let (p, s) = (password.to_owned(), stored.map(str::to_owned));
        self.in_slot(move || match s {
            Some(s) => verify(&p, &s),
            None => {
                verify_nothing(&p);
                Ok(Verified::No)
            }
        })
        .await
    }
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

    /// An Argon2id hash of `pw` with these parameters (KiB, passes, lanes).
    fn argon2id_of(pw: &str, m: u32, t: u32, p: u32) -> String {
        Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(m, t, p, None).unwrap(),
        )
        .hash_password(
            pw.as_bytes(),
            &SaltString::encode_b64(b"0123456789abcdef").unwrap(),
        )
        .unwrap()
        .to_string()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hashing_beyond_its_slots_is_refused_at_once() {
        let hashing = Hashing::new(2);
        let all = hashing.slots.clone().try_acquire_many_owned(2).unwrap();
        assert!(matches!(
            hashing.hash("correct horse battery staple").await,
            Err(Error::Busy { retry_after: 1, .. })
        ));
        assert!(matches!(
            hashing.verify("x", None).await,
            Err(Error::Busy { .. })
        ));
        drop(all);
        let h = hashing.hash("correct horse battery staple").await.unwrap();
        assert_eq!(
            hashing
                .verify("correct horse battery staple", Some(&h))
                .await
                .unwrap(),
            Verified::Yes
        );
    }

    #[test]
    fn hashes_above_the_cost_limits_are_never_verified() {
        let costly = argon2id_of("pw-pw-pw-pw", 8, 5, 1);
        let e = verify("pw-pw-pw-pw", &costly).unwrap_err();
        assert!(e.to_string().contains("above"), "{e}");
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
        let weak = argon2id_of("pw-pw-pw-pw", 1024, 1, 1);
        assert_eq!(verify("pw-pw-pw-pw", &weak).unwrap(), Verified::YesUpgrade);
        assert!(verify("x", "not a hash").is_err());
    }
}
