//! TOTP (RFC 6238 over RFC 4226 HOTP): HMAC-SHA1, 6 digits, 30-second
//! steps, one step of drift either way, and no step accepted twice.

use hmac::{Hmac, Mac};
use sha1::Sha1;

/// Seconds per step.
pub const PERIOD: i64 = 30;
/// Digits per code.
pub const DIGITS: u32 = 6;

/// The HOTP value of `secret` at `counter`, `digits` long.
pub fn hotp(secret: &[u8], counter: u64, digits: u32) -> u32 {
    let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(secret) else {
        return u32::MAX;
    };
    mac.update(&counter.to_be_bytes());
    let h = mac.finalize().into_bytes();
    let offset = usize::from(h[19] & 0x0f);
    let bin = (u32::from(h[offset] & 0x7f) << 24)
        | (u32::from(h[offset + 1]) << 16)
        | (u32::from(h[offset + 2]) << 8)
        | u32::from(h[offset + 3]);
    bin % 10u32.pow(digits)
}

/// The step containing unix time `now`.
pub fn step(now: i64) -> i64 {
    now.div_euclid(PERIOD)
}

/// The step `code` is valid for, if it matches the step of `now` or one
/// next to it and that step is after `last_step` (a code is good once).
pub fn verify(secret: &[u8], code: &str, now: i64, last_step: i64) -> Option<i64> {
    let code = code.trim();
    if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let want: u32 = code.parse().ok()?;
    let here = step(now);
    let mut found = None;
    // Every candidate is computed, so timing does not say which matched.
    for s in [here - 1, here, here + 1] {
        if s > last_step && u64::try_from(s).is_ok_and(|c| hotp(secret, c, DIGITS) == want) {
            found = found.or(Some(s));
        }
    }
    found
}

/// The current code (for tests and for clients built on this crate).
pub fn code_at(secret: &[u8], now: i64) -> String {
    let c = u64::try_from(step(now)).unwrap_or(0);
    format!(
        "{:0width$}",
        hotp(secret, c, DIGITS),
        width = DIGITS as usize
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6238_sha1_vectors() {
        let secret = b"12345678901234567890";
        for (t, want) in [
            (59_i64, 94_287_082_u32),
            (1_111_111_109, 7_081_804),
            (1_111_111_111, 14_050_471),
            (1_234_567_890, 89_005_924),
            (2_000_000_000, 69_279_037),
            (20_000_000_000, 65_353_130),
        ] {
            assert_eq!(hotp(secret, (t / 30) as u64, 8), want, "t={t}");
        }
    }

    #[test]
    fn window_and_replay() {
        let secret = b"12345678901234567890";
        let now = 1_800_000_015;
        let code = code_at(secret, now);
        assert_eq!(verify(secret, &code, now, 0), Some(step(now)));
        assert_eq!(
            verify(secret, &code, now + 30, 0),
            Some(step(now)),
            "one step late"
        );
        assert_eq!(verify(secret, &code, now + 90, 0), None, "too late");
        assert_eq!(verify(secret, &code, now, step(now)), None, "replayed");
        assert_eq!(verify(secret, "12345", now, 0), None);
        assert_eq!(verify(secret, "abcdef", now, 0), None);
    }
}
