//! Randomness from the operating system: user ids, client ids, secrets,
//! session handles. The one place that asks for it.

use crate::error::{Error, Result};

/// `N` random bytes.
pub fn bytes<const N: usize>() -> Result<[u8; N]> {
    let mut out = [0u8; N];
    getrandom::getrandom(&mut out).map_err(|e| Error::Internal(format!("random: {e}")))?;
    Ok(out)
}

/// A random UUID (version 4) in its usual text form: user ids look like
/// Cognito's `sub`.
pub fn uuid_v4() -> Result<String> {
    let mut b = bytes::<16>()?;
    if let Some(x) = b.get_mut(6) {
        *x = (*x & 0x0f) | 0x40;
    }
    if let Some(x) = b.get_mut(8) {
        *x = (*x & 0x3f) | 0x80;
    }
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}
