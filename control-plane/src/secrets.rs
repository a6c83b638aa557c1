//! Secrets at rest: the key-encryption keys (KEKs) and the envelope every
//! stored secret is sealed in — the realms' bundle-signing seeds, the
//! local identity's token signing keys and users' TOTP secrets.
//!
//! Envelope encryption: each secret gets a fresh random 256-bit data key;
//! the secret is encrypted under the data key (AES-256-GCM), and the data
//! key is encrypted ("wrapped") under the current KEK (AES-256-GCM). The
//! stored value carries the KEK's id in clear, so the KEK can be rotated:
//! new values use the current KEK, old ones open with any configured
//! retired KEK, and [`Keyring::reseal`] re-wraps a data key under the
//! current KEK without touching the secret's ciphertext. Both encryptions
//! authenticate the value's [`Slot`] (what it is, its realm, its row id)
//! as associated data: a value copied to another row does not open.
//!
//! The repository backends (SQLite and PostgreSQL) call this module as
//! they write and read; nothing above the repository port sees ciphertext.
//!
//! Stored form (bytes): `GHS1`, the KEK id's length (1 byte), the KEK id,
//! the wrapping nonce (12), the wrapped data key (32 + 16 tag), the
//! secret's nonce (12), the secret's ciphertext and tag. Text columns hold
//! `ghs1:` and that, base64url without padding. A value without the
//! marker is a secret stored in clear by an older build (a 32-byte seed,
//! a JSON signing key, a base32 TOTP secret): the first start of a build
//! that seals seals it ([`Pass::Start`]) and records in the repository
//! that no secret is left in clear. From then on a clear value is
//! refused ([`SecretFailure::InClear`]) when it is read and at every
//! start: whoever can write the database cannot swap a sealed secret for
//! one of their choosing.

use crate::domain::error::{Error, Result, SecretFailure};
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

const MAGIC: &[u8; 4] = b"GHS1";
const TEXT_PREFIX: &str = "ghs1:";
const KEY_LEN: usize = 32;
const TAG_LEN: usize = 16;
/// The length of a clear bundle seed; every envelope is longer.
const CLEAR_SEED_LEN: usize = 32;

/// What the binary prints (and `serve` logs) when the development flag
/// stands in for a KEK.
pub const EPHEMERAL_WARNING: &str = "WARNING: --dev-ephemeral-kek: the key-encryption key is random \
and lives only in this process. Every secret written now (bundle-signing seeds, token signing \
keys, TOTP secrets) is UNREADABLE after this process exits, and no other process can read it. \
It opens only a database this process creates (one holding secrets from before is refused, \
so that they are not sealed under this key). For development and tests only; set GATEHOUSE_CP_KEK or GATEHOUSE_CP_KEK_FILE for anything \
that must survive.";

/// What kind of secret a value is (part of its associated data).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A realm's bundle-signing Ed25519 seed (`realms.bundle_key`).
    BundleSeed,
    /// A token signing key of the local identity (`signing_keys.key`).
    SigningKey,
    /// A user's TOTP secret (`credentials.totp_secret`).
    Totp,
}

impl Purpose {
    fn tag(self) -> &'static str {
        match self {
            Purpose::BundleSeed => "realms.bundle_key",
            Purpose::SigningKey => "signing_keys.key",
            Purpose::Totp => "credentials.totp_secret",
        }
    }
}

/// The row a secret belongs to: sealed into it, so that it opens only
/// there.
#[derive(Debug, Clone, Copy)]
pub struct Slot<'a> {
    /// What it is.
    pub purpose: Purpose,
    /// Its realm.
    pub realm: &'a str,
    /// Its row within the realm (a key id, a user id; empty for the realm
    /// itself).
    pub id: &'a str,
}

impl<'a> Slot<'a> {
    /// A realm's bundle seed.
    pub fn bundle_seed(realm: &'a str) -> Slot<'a> {
        Slot {
            purpose: Purpose::BundleSeed,
            realm,
            id: "",
        }
    }

    /// A signing key of a realm.
    pub fn signing_key(realm: &'a str, kid: &'a str) -> Slot<'a> {
        Slot {
            purpose: Purpose::SigningKey,
            realm,
            id: kid,
        }
    }

    /// A user's TOTP secret.
    pub fn totp(realm: &'a str, user: &'a str) -> Slot<'a> {
        Slot {
            purpose: Purpose::Totp,
            realm,
            id: user,
        }
    }

    /// For error messages: never the value.
    fn describe(&self) -> String {
        if self.id.is_empty() {
            format!("{} of realm {:?}", self.purpose.tag(), self.realm)
        } else {
            format!(
                "{} of realm {:?}, {:?}",
                self.purpose.tag(),
                self.realm,
                self.id
            )
        }
    }

    /// The associated data of one layer: a label, then each field
    /// length-prefixed (no two slots share an encoding).
    fn aad(&self, label: &str, kek: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        for field in [label, kek, self.purpose.tag(), self.realm, self.id] {
            out.extend_from_slice(&u32::try_from(field.len()).unwrap_or(u32::MAX).to_be_bytes());
            out.extend_from_slice(field.as_bytes());
        }
        out
    }
}

/// Why a KEK setting was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct KekError(pub String);

/// One key-encryption key.
struct Kek {
    id: String,
    key: LessSafeKey,
}

/// The configured KEKs: the current one seals, every one opens.
pub struct Keyring {
    current: Kek,
    retired: Vec<Kek>,
    ephemeral: bool,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("current", &self.current.id)
            .field(
                "retired",
                &self.retired.iter().map(|k| &k.id).collect::<Vec<_>>(),
            )
            .field("ephemeral", &self.ephemeral)
            .finish_non_exhaustive()
    }
}

/// Whether `id` may name a KEK. An id that may not is never echoed in an
/// error: it could be the key itself, given the wrong way round.
fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn kek(id: &str, bytes: &[u8]) -> std::result::Result<Kek, KekError> {
    if !valid_id(id) {
        return Err(KekError(
            "a key id is 1 to 64 letters, digits, '-', '_' or '.'".into(),
        ));
    }
    if bytes.len() != KEY_LEN {
        return Err(KekError(format!(
            "key {id:?}: {} bytes; a KEK is 32 bytes, base64 (`openssl rand -base64 32`)",
            bytes.len()
        )));
    }
    let key = UnboundKey::new(&AES_256_GCM, bytes)
        .map_err(|_| KekError(format!("key {id:?}: not an AES-256 key")))?;
    Ok(Kek {
        id: id.to_owned(),
        key: LessSafeKey::new(key),
    })
}

fn nonce() -> Result<[u8; NONCE_LEN]> {
    crate::random::bytes::<NONCE_LEN>()
}

fn failed(slot: &Slot<'_>, why: SecretFailure) -> Error {
    Error::Secret {
        what: slot.describe(),
        why,
    }
}

/// A stored value taken apart (borrowing it).
struct Parsed<'v> {
    kek: &'v str,
    wrap_nonce: [u8; NONCE_LEN],
    wrapped: &'v [u8],
    /// The secret's nonce, ciphertext and tag.
    body: &'v [u8],
}

fn parse(stored: &[u8]) -> Option<Parsed<'_>> {
    let rest = stored.strip_prefix(MAGIC)?;
    let (&id_len, rest) = rest.split_first()?;
    let (id, rest) = rest.split_at_checked(usize::from(id_len))?;
    let kek = std::str::from_utf8(id).ok()?;
    let (wrap_nonce, rest) = rest.split_at_checked(NONCE_LEN)?;
    let (wrapped, body) = rest.split_at_checked(KEY_LEN + TAG_LEN)?;
    if body.len() < NONCE_LEN + TAG_LEN {
        return None;
    }
    Some(Parsed {
        kek,
        wrap_nonce: wrap_nonce.try_into().ok()?,
        wrapped,
        body,
    })
}

/// Which pass over the stored secrets [`Keyring::reseal`] serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// The pass every start makes: sealed values are left as they are; a
    /// clear one is sealed if `seal_clear` (the repository has not yet
    /// recorded that none is left in clear), else refused.
    Start {
        /// Seal clear values (else refuse them).
        seal_clear: bool,
    },
    /// `kek rewrap`: every value re-wrapped under the current KEK; a clear
    /// one is refused (the start before it sealed them all).
    Rewrap,
}

/// What [`Keyring::reseal`] made of a stored value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resealed {
    /// Already sealed under the current KEK (or, at a start, sealed at
    /// all): nothing to write.
    Unchanged,
    /// Its data key was re-wrapped under the current KEK: write this.
    Rewrapped(Vec<u8>),
    /// It was in clear and is now sealed: write this.
    Sealed(Vec<u8>),
}

/// Counts of a pass over every stored secret ([`Keyring::reseal`] over the
/// repository).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Rewrapped {
    /// The KEK every secret is now sealed under.
    pub kek: String,
    /// Secrets whose data key was re-wrapped under it.
    pub rewrapped: u64,
    /// Secrets that were stored in clear and are now sealed.
    pub sealed: u64,
    /// Secrets already sealed under it.
    pub unchanged: u64,
}

impl Rewrapped {
    /// Count one outcome, writing its new value (if any) with `write`,
    /// which says how many rows it changed. A compare-and-swap that
    /// changed none (a writer replaced the value meanwhile, sealing it
    /// under the current KEK itself) is not counted: the counts say what
    /// this pass wrote.
    pub fn count(&mut self, r: Resealed, write: impl FnOnce(Vec<u8>) -> Result<u64>) -> Result<()> {
        match r {
            Resealed::Unchanged => self.unchanged += 1,
            Resealed::Rewrapped(v) => {
                if write(v)? > 0 {
                    self.rewrapped += 1;
                }
            }
            Resealed::Sealed(v) => {
                if write(v)? > 0 {
                    self.sealed += 1;
                }
            }
        }
        Ok(())
    }
}

impl Keyring {
    /// A keyring from its setting: `ID:KEY` pairs (KEY: 32 bytes in
    /// standard base64) separated by commas or newlines; the first is the
    /// current KEK, the others are retired (they only open).
    pub fn parse(text: &str) -> std::result::Result<Keyring, KekError> {
        let mut keks = Vec::new();
        for (n, entry) in text
            .split([',', '\n'])
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .enumerate()
        {
            let n = n + 1;
            let (id, key) = entry.split_once(':').ok_or_else(|| {
                KekError(
                    "each key is ID:BASE64 (for example `k2026:` then `openssl rand -base64 32`)"
                        .into(),
                )
            })?;
            let id = id.trim();
            if !valid_id(id) {
                return Err(KekError(format!(
                    "key {n}: its id (before ':') is 1 to 64 letters, digits, '-', '_' or '.'"
                )));
            }
            let bytes = STANDARD
                .decode(key.trim())
                .map_err(|_| KekError(format!("key {id:?}: not standard base64")))?;
            if keks.iter().any(|k: &Kek| k.id == id) {
                return Err(KekError(format!("key id {id:?} given twice")));
            }
            keks.push(kek(id, &bytes)?);
        }
        let mut keks = keks.into_iter();
        let current = keks.next().ok_or_else(|| KekError("no key given".into()))?;
        Ok(Keyring {
            current,
            retired: keks.collect(),
            ephemeral: false,
        })
    }

    /// A random KEK that lives only in this process (`--dev-ephemeral-kek`).
    pub fn ephemeral() -> Result<Keyring> {
        let bytes = crate::random::bytes::<KEY_LEN>()?;
        let current = kek("dev-ephemeral", &bytes).map_err(|e| Error::Internal(e.0))?;
        Ok(Keyring {
            current,
            retired: Vec::new(),
            ephemeral: true,
        })
    }

    /// Whether this is the development flag's throwaway KEK.
    pub fn is_ephemeral(&self) -> bool {
        self.ephemeral
    }

    /// The id of the KEK that seals.
    pub fn current_id(&self) -> &str {
        &self.current.id
    }

    fn by_id(&self, id: &str) -> Option<&Kek> {
        std::iter::once(&self.current)
            .chain(&self.retired)
            .find(|k| k.id == id)
    }

    /// Seal `clear` for `slot` under the current KEK.
    pub fn seal(&self, slot: &Slot<'_>, clear: &[u8]) -> Result<Vec<u8>> {
        let dek_bytes = crate::random::bytes::<KEY_LEN>()?;
        let dek = UnboundKey::new(&AES_256_GCM, &dek_bytes)
            .map(LessSafeKey::new)
            .map_err(|_| Error::Internal("data key".into()))?;
        let body_nonce = nonce()?;
        let mut body = clear.to_vec();
        dek.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(body_nonce),
            Aad::from(slot.aad("secret", "")),
            &mut body,
        )
        .map_err(|_| Error::Internal("sealing a secret".into()))?;
        let mut out = Vec::with_capacity(
            MAGIC.len() + 1 + 64 + NONCE_LEN * 2 + KEY_LEN + TAG_LEN + body.len(),
        );
        out.extend_from_slice(MAGIC);
        self.wrap_into(slot, dek_bytes, &mut out)?;
        out.extend_from_slice(&body_nonce);
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// Append the current KEK's id and `dek` wrapped under it.
    fn wrap_into(&self, slot: &Slot<'_>, dek: [u8; KEY_LEN], out: &mut Vec<u8>) -> Result<()> {
        let id = &self.current.id;
        let wrap_nonce = nonce()?;
        let mut wrapped = dek.to_vec();
        self.current
            .key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(wrap_nonce),
                Aad::from(slot.aad("data key", id)),
                &mut wrapped,
            )
            .map_err(|_| Error::Internal("wrapping a data key".into()))?;
        out.push(u8::try_from(id.len()).unwrap_or(u8::MAX));
        out.extend_from_slice(id.as_bytes());
        out.extend_from_slice(&wrap_nonce);
        out.extend_from_slice(&wrapped);
        Ok(())
    }

    /// The data key of a parsed value, unwrapped.
    fn unwrap_dek(&self, slot: &Slot<'_>, p: &Parsed<'_>) -> Result<[u8; KEY_LEN]> {
        let kek = self
            .by_id(p.kek)
            .ok_or_else(|| failed(slot, SecretFailure::UnknownKek(p.kek.to_owned())))?;
        let mut wrapped = p.wrapped.to_vec();
        let dek = kek
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(p.wrap_nonce),
                Aad::from(slot.aad("data key", p.kek)),
                &mut wrapped,
            )
            .map_err(|_| failed(slot, SecretFailure::DoesNotOpen(p.kek.to_owned())))?;
        <[u8; KEY_LEN]>::try_from(&*dek).map_err(|_| failed(slot, SecretFailure::Malformed))
    }

    /// Open a sealed value of `slot`. A value without the envelope's
    /// marker is refused ([`SecretFailure::InClear`]): the start before
    /// any read sealed every clear value, so one now was written around
    /// the control plane.
    pub fn open(&self, slot: &Slot<'_>, stored: &[u8]) -> Result<Vec<u8>> {
        if !is_sealed(slot, stored) {
            return Err(failed(slot, SecretFailure::InClear));
        }
        let p = parse(stored).ok_or_else(|| failed(slot, SecretFailure::Malformed))?;
        let dek_bytes = self.unwrap_dek(slot, &p)?;
        let dek = UnboundKey::new(&AES_256_GCM, &dek_bytes)
            .map(LessSafeKey::new)
            .map_err(|_| failed(slot, SecretFailure::Malformed))?;
        let (body_nonce, body) = p.body.split_at(NONCE_LEN);
        let body_nonce: [u8; NONCE_LEN] = body_nonce
            .try_into()
            .map_err(|_| failed(slot, SecretFailure::Malformed))?;
        let mut body = body.to_vec();
        let clear = dek
            .open_in_place(
                Nonce::assume_unique_for_key(body_nonce),
                Aad::from(slot.aad("secret", "")),
                &mut body,
            )
            .map_err(|_| failed(slot, SecretFailure::DoesNotOpen(p.kek.to_owned())))?;
        Ok(clear.to_vec())
    }

    /// Bring a stored value under the current KEK, as `pass` says: a
    /// clear one is sealed (or refused, [`SecretFailure::InClear`]); a
    /// sealed one under another KEK has its data key re-wrapped (its
    /// ciphertext stays), except at a start, which leaves sealed values
    /// as they are.
    ///
    /// The development flag's throwaway KEK refuses
    /// ([`SecretFailure::EphemeralKek`]) any value it did not seal itself,
    /// clear ones included: sealing a database's secrets under a key that
    /// dies with the process would destroy them.
    pub fn reseal(&self, slot: &Slot<'_>, stored: &[u8], pass: Pass) -> Result<Resealed> {
        if !is_sealed(slot, stored) {
            self.may_seal_clear(slot, pass)?;
            return Ok(Resealed::Sealed(self.seal(slot, stored)?));
        }
        let p = parse(stored).ok_or_else(|| failed(slot, SecretFailure::Malformed))?;
        if self.ephemeral {
            self.open(slot, stored)
                .map_err(|_| failed(slot, SecretFailure::EphemeralKek))?;
        }
        if matches!(pass, Pass::Start { .. }) || p.kek == self.current.id {
            return Ok(Resealed::Unchanged);
        }
        let dek = self.unwrap_dek(slot, &p)?;
        // Prove the whole value opens before it is rewritten.
        self.open(slot, stored)?;
        let mut out = Vec::with_capacity(stored.len() + 64);
        out.extend_from_slice(MAGIC);
        self.wrap_into(slot, dek, &mut out)?;
        out.extend_from_slice(p.body);
        Ok(Resealed::Rewrapped(out))
    }

    /// Whether a clear value may be sealed in this pass. The throwaway
    /// KEK refuses it first: the database existed before this process
    /// (nothing this process writes is clear).
    fn may_seal_clear(&self, slot: &Slot<'_>, pass: Pass) -> Result<()> {
        if self.ephemeral {
            Err(failed(slot, SecretFailure::EphemeralKek))
        } else if pass == (Pass::Start { seal_clear: true }) {
            Ok(())
        } else {
            Err(failed(slot, SecretFailure::InClear))
        }
    }

    /// [`Keyring::seal`] for a text column.
    pub fn seal_text(&self, slot: &Slot<'_>, clear: &str) -> Result<String> {
        Ok(to_text(&self.seal(slot, clear.as_bytes())?))
    }

    /// [`Keyring::open`] for a text column.
    pub fn open_text(&self, slot: &Slot<'_>, stored: &str) -> Result<String> {
        let Some(b64) = stored.strip_prefix(TEXT_PREFIX) else {
            return Err(failed(slot, SecretFailure::InClear));
        };
        let bytes = URL_SAFE_NO_PAD
            .decode(b64)
            .map_err(|_| failed(slot, SecretFailure::Malformed))?;
        String::from_utf8(self.open(slot, &bytes)?)
            .map_err(|_| failed(slot, SecretFailure::Malformed))
    }

    /// [`Keyring::reseal`] for a text column.
    pub fn reseal_text(&self, slot: &Slot<'_>, stored: &str, pass: Pass) -> Result<Resealed> {
        let bytes = match stored.strip_prefix(TEXT_PREFIX) {
            Some(b64) => URL_SAFE_NO_PAD
                .decode(b64)
                .map_err(|_| failed(slot, SecretFailure::Malformed))?,
            None => {
                self.may_seal_clear(slot, pass)?;
                return Ok(Resealed::Sealed(self.seal_text(slot, stored)?.into_bytes()));
            }
        };
        Ok(match self.reseal(slot, &bytes, pass)? {
            Resealed::Unchanged => Resealed::Unchanged,
            Resealed::Rewrapped(v) => Resealed::Rewrapped(to_text(&v).into_bytes()),
            Resealed::Sealed(v) => Resealed::Sealed(to_text(&v).into_bytes()),
        })
    }
}

fn to_text(bytes: &[u8]) -> String {
    format!("{TEXT_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// Whether a stored value is an envelope (else a clear legacy value). A
/// clear bundle seed is exactly 32 bytes and every envelope is longer.
fn is_sealed(slot: &Slot<'_>, stored: &[u8]) -> bool {
    match slot.purpose {
        Purpose::BundleSeed => stored.len() > CLEAR_SEED_LEN && stored.starts_with(MAGIC),
        Purpose::SigningKey | Purpose::Totp => stored.starts_with(MAGIC),
    }
}

/// The prefix of a sealed text value, for backends that look for clear
/// ones in SQL.
pub const SEALED_TEXT_PREFIX: &str = TEXT_PREFIX;

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(spec: &str) -> Keyring {
        Keyring::parse(spec).unwrap()
    }

    const K1: &str = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const K2: &str = "k2:ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";

    #[test]
    fn a_sealed_value_opens_only_in_its_slot_and_under_its_kek() {
        let r = ring(K1);
        let slot = Slot::totp("acme", "u1");
        let sealed = r.seal_text(&slot, "JBSWY3DPEHPK3PXP").unwrap();
        assert!(sealed.starts_with("ghs1:"));
        assert!(!sealed.contains("JBSWY3DPEHPK3PXP"));
        assert_eq!(r.open_text(&slot, &sealed).unwrap(), "JBSWY3DPEHPK3PXP");
        // Another row, another purpose, another realm.
        for other in [
            Slot::totp("acme", "u2"),
            Slot::totp("other", "u1"),
            Slot::signing_key("acme", "u1"),
        ] {
            let e = r.open_text(&other, &sealed).unwrap_err();
            assert!(
                matches!(e, Error::Secret { why: SecretFailure::DoesNotOpen(ref k), .. } if k == "k1"),
                "{e}"
            );
        }
        // The same id with other bytes.
        let wrong = ring("k1:ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=");
        assert!(matches!(
            wrong.open_text(&slot, &sealed),
            Err(Error::Secret {
                why: SecretFailure::DoesNotOpen(_),
                ..
            })
        ));
        // Another id.
        assert!(matches!(
            ring(K2).open_text(&slot, &sealed),
            Err(Error::Secret { why: SecretFailure::UnknownKek(ref k), .. }) if k == "k1"
        ));
        // A flipped byte anywhere in the body.
        let mut bytes = r.seal(&slot, b"secret").unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert!(r.open(&slot, &bytes).is_err());
    }

    #[test]
    fn rotation_rewraps_under_the_current_kek_and_retired_keks_still_open() {
        let slot = Slot::bundle_seed("acme");
        let seed = [7u8; 32];
        let old = ring(K1).seal(&slot, &seed).unwrap();
        let both = ring(&format!("{K2},{K1}"));
        assert_eq!(both.open(&slot, &old).unwrap(), seed);
        let Resealed::Rewrapped(new) = both.reseal(&slot, &old, Pass::Rewrap).unwrap() else {
            panic!("not rewrapped")
        };
        assert_eq!(
            both.reseal(&slot, &new, Pass::Rewrap).unwrap(),
            Resealed::Unchanged
        );
        assert_eq!(ring(K2).open(&slot, &new).unwrap(), seed);
        // Clear legacy values are sealed by a start that may seal them,
        // and refused by anything else.
        let start = Pass::Start { seal_clear: true };
        assert!(matches!(
            ring(K2).reseal(&slot, &seed, start).unwrap(),
            Resealed::Sealed(_)
        ));
        for refused in [
            ring(K2).open(&slot, &seed),
            ring(K2)
                .reseal(&slot, &seed, Pass::Start { seal_clear: false })
                .map(|_| Vec::new()),
            ring(K2)
                .reseal(&slot, &seed, Pass::Rewrap)
                .map(|_| Vec::new()),
        ] {
            assert!(matches!(
                refused,
                Err(Error::Secret {
                    why: SecretFailure::InClear,
                    ..
                })
            ));
        }
        assert_eq!(
            ring(K2).reseal(&slot, &old, start).unwrap(),
            Resealed::Unchanged
        );
    }

    #[test]
    fn kek_settings_are_checked_and_never_printed() {
        for bad in [
            "",
            "k1",
            "k1:short",
            "k 1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
            &format!("{K1},{K1}"),
        ] {
            assert!(Keyring::parse(bad).is_err(), "{bad:?}");
        }
        // The key given before its id is refused without being echoed.
        let e = Keyring::parse("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=:k1")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("AAEC") && e.contains("key 1"), "{e}");
        let r = ring(&format!("{K1}\n{K2}\n"));
        assert_eq!(r.current_id(), "k1");
        let debug = format!("{r:?}");
        assert!(debug.contains("k2") && !debug.contains("AAEC"), "{debug}");
    }
}
