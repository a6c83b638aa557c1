//! Bulk import of users: parsed and checked by `domain::import`, written
//! in one transaction (all or nothing), then published as a snapshot.

use super::{Caller, Service};
use crate::domain::admin::AdminAction;
use crate::domain::error::{Error, Result};
use crate::domain::import::{Format, Imported, check_record, line_error, read_records};
use crate::domain::policy::parse_schema;
use crate::ports::repository::Change;
use pdp_core::{Memory, UserState};

impl Service {
    /// Import users from `input`; all or nothing. The input is streamed
    /// inside the one transaction (a file of a million users is never held
    /// in memory whole).
    pub async fn import_users(
        &self,
        caller: &Caller,
        realm: &str,
        input: Box<dyn std::io::BufRead + Send>,
        format: Format,
    ) -> Result<Imported> {
        self.authorize(caller, AdminAction::UserImport, Some(realm))
            .await?;
        let now = self.now();
        let r = realm.to_owned();
        let imported = self
            .repo
            .write(move |tx| {
                let schema = parse_schema(&tx.current_schema_text(&r)?)?;
                let mut count = 0u64;
                read_records(input, format, |rec, line| {
                    let u = check_record(rec, line, &r, &schema, now, crate::random::uuid_v4)?;
                    // One imported Suspended or Deleted returns to Active on
                    // resume or restore: the state before is not known.
                    let memory = Memory {
                        suspended_from: (u.user.state == UserState::Suspended)
                            .then_some(UserState::Active),
                        deleted_from: (u.user.state == UserState::Deleted)
                            .then_some(UserState::Active),
                    };
                    tx.insert_user(&r, &u.user, &memory, u.password_hash.as_deref())
                        .map_err(|e| match e {
                            Error::AlreadyExists { .. } => line_error(
                                line,
                                format!(
                                    "a user with id {:?}, email {:?} or username {:?} already exists",
                                    u.user.id, u.user.email, u.user.username
                                ),
                            ),
                            Error::NotFound { kind, id } => {
                                line_error(line, format!("{kind} {id:?} does not exist"))
                            }
                            e => e,
                        })?;
                    count += 1;
                    Ok(())
                })?;
                // One change stands for every user: the next publish writes
                // a snapshot instead of a million-line delta.
                tx.record_change(&r, Change::AllUsers, now)?;
                Ok(Imported { users: count })
            })
            .await?;
        self.changed(realm).await;
        Ok(imported)
    }
}
