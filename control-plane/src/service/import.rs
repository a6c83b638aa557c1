//! Bulk import of users: parsed and checked by `domain::import`, written
//! in one transaction (all or nothing), then published as a snapshot.

use super::{Caller, Service};
use crate::domain::admin::AdminAction;
use crate::domain::error::{Error, Result};
use crate::domain::import::{Format, Imported, check_record, line_error, read_records};
use crate::domain::policy::parse_schema;
use crate::ports::repository::{Change, NewUserRow, Tx};

/// Users sent to the repository at once.
const BATCH: usize = 1000;
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
        let idp = self.identity_of(realm).await?;
        if idp.keeps_users() {
            // TODO(issue 17): bulk provisioning into the provider's
            // directory (bounded concurrency, throttling-aware retries).
            return Err(Error::Conflict(format!(
                "realm {realm:?}'s users live in its {} identity provider: \
                 importing them from a file is not supported yet",
                idp.name()
            )));
        }
        let now = self.now();
        let r = realm.to_owned();
        let imported = self
            .repo
            .write(move |tx| {
                let schema = parse_schema(&tx.current_schema_text(&r)?)?;
                let mut count = 0u64;
                // Users go to the repository in batches (one round trip
                // each on PostgreSQL), with the line each came from.
                let mut batch: Vec<(u64, NewUserRow)> = Vec::with_capacity(BATCH);
                let flush = |tx: &mut dyn Tx, batch: &mut Vec<(u64, NewUserRow)>| {
                    let rows: Vec<NewUserRow> = batch.iter().map(|(_, u)| u.clone()).collect();
                    let lines: Vec<u64> = batch.iter().map(|(l, _)| *l).collect();
                    batch.clear();
                    tx.insert_users(&r, &rows).map_err(|(i, e)| {
                        let line = lines.get(i).copied().unwrap_or(0);
                        let u = rows.get(i).map(|u| &u.user);
                        match e {
                            Error::AlreadyExists { .. } => line_error(
                                line,
                                format!(
                                    "a user with id {:?}, email {:?} or username {:?} already exists",
                                    u.map(|u| u.id.as_str()).unwrap_or_default(),
                                    u.map(|u| u.email.as_str()).unwrap_or_default(),
                                    u.map(|u| u.username.as_str()).unwrap_or_default()
                                ),
                            ),
                            Error::NotFound { kind, id } => {
                                line_error(line, format!("{kind} {id:?} does not exist"))
                            }
                            e => e,
                        }
                    })
                };
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
                    batch.push((
                        line,
                        NewUserRow {
                            user: u.user,
                            memory,
                            password_hash: u.password_hash,
                        },
                    ));
                    if batch.len() >= BATCH {
                        flush(&mut *tx, &mut batch)?;
                    }
                    count += 1;
                    Ok(())
                })?;
                flush(&mut *tx, &mut batch)?;
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
