//! Key-encryption-key rotation: bring every stored secret under the
//! current KEK (`control-plane kek rewrap`). The envelopes themselves are
//! `crate::secrets`; the repository seals and opens them.

use crate::domain::error::Result;
use crate::ports::repository::Repository;
use crate::secrets::Rewrapped;
use std::sync::Arc;

/// Re-wrap every stored secret's data key under the current KEK (a clear
/// one is refused: the start before sealed them all), in one write
/// transaction: all of them or, when one
/// does not open (its KEK is not configured, or it does not
/// authenticate), none.
pub async fn rewrap(repo: &Arc<dyn Repository>) -> Result<Rewrapped> {
    repo.write(|tx| tx.reseal_secrets(crate::secrets::Pass::Rewrap))
        .await
}
