//! Moving off the embedded default: copy every table of one repository
//! into another (SQLite to PostgreSQL, or back), then prove the copy.
//!
//! The source is read in one read transaction (one consistent snapshot,
//! streamed: a million users are never in memory at once) while the target
//! is written in one write transaction (all or nothing; an empty target is
//! required). Afterwards both are read again and compared table by table:
//! the number of rows and a SHA-256 over every row in key order must be
//! equal, or the copy is reported as failed.

use crate::domain::error::{Error, Result};
use crate::ports::repository::{Cell, Repository, TABLES, TableSpec};
use serde::Serialize;
use sha2::Digest;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

/// Rows in flight between the reader and the writer.
const IN_FLIGHT: usize = 4_096;
/// Rows written per statement batch.
const BATCH: usize = 500;

/// One table of a copy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableDigest {
    /// The table.
    pub table: String,
    /// Its rows.
    pub rows: u64,
    /// SHA-256 over its rows in key order, hex.
    pub sha256: String,
}

/// What a copy did and how it was checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CopyReport {
    /// The source, without secrets.
    pub from: String,
    /// The target, without secrets.
    pub to: String,
    /// Every table, as found in both (the copy is refused otherwise).
    pub tables: Vec<TableDigest>,
}

/// Count and digest every table of `repo` (one snapshot).
pub async fn digest(repo: &(dyn Repository + 'static)) -> Result<Vec<TableDigest>> {
    repo.read(|tx| {
        let mut out = Vec::new();
        for spec in TABLES {
            let mut h = sha2::Sha256::new();
            let mut rows = 0u64;
            tx.export_rows(spec, &mut |row| {
                rows += 1;
                for cell in &row {
                    cell.digest_into(&mut h);
                }
                Ok(())
            })?;
            out.push(TableDigest {
                table: spec.name.to_owned(),
                rows,
                sha256: data_encoding::HEXLOWER.encode(&h.finalize()),
            });
        }
        Ok(out)
    })
    .await
}

enum Item {
    Row(&'static TableSpec, Vec<Cell>),
    Done,
}

/// Copy everything from `from` into the empty `to`, then verify.
pub async fn copy(from: Arc<dyn Repository>, to: Arc<dyn Repository>) -> Result<CopyReport> {
    let (send, receive): (SyncSender<Item>, Receiver<Item>) = sync_channel(IN_FLIGHT);
    let reader = {
        let from = from.clone();
        tokio::spawn(async move {
            from.read(move |tx| {
                for spec in TABLES {
                    tx.export_rows(spec, &mut |row| {
                        send.send(Item::Row(spec, row))
                            .map_err(|_| Error::Internal("copy: the writer stopped".into()))
                    })?;
                }
                send.send(Item::Done)
                    .map_err(|_| Error::Internal("copy: the writer stopped".into()))
            })
            .await
        })
    };
    let writer = {
        let to = to.clone();
        tokio::spawn(async move {
            to.write(move |tx| {
                if !tx.realms(true)?.is_empty() {
                    return Err(Error::Conflict(
                        "copy: the target already holds realms; copy into an empty database".into(),
                    ));
                }
                let mut batch: Vec<Vec<Cell>> = Vec::with_capacity(BATCH);
                let mut table: Option<&'static TableSpec> = None;
                loop {
                    let item = receive
                        .recv()
                        .map_err(|_| Error::Internal("copy: the reader stopped".into()))?;
                    let next = match &item {
                        Item::Row(spec, _) => Some(*spec),
                        Item::Done => None,
                    };
                    let switching = next.map(|n| n.name) != table.map(|t| t.name);
                    if (switching || batch.len() >= BATCH)
                        && let Some(t) = table
                        && !batch.is_empty()
                    {
                        tx.import_rows(t, &batch)?;
                        batch.clear();
                    }
                    match item {
                        Item::Row(spec, row) => {
                            table = Some(spec);
                            batch.push(row);
                        }
                        Item::Done => break,
                    }
                }
                tx.copied()
            })
            .await
        })
    };
    let (read, written) = tokio::join!(reader, writer);
    let join = |e: tokio::task::JoinError| Error::Internal(format!("copy: {e}"));
    // The writer's error says more when both failed (the reader then only
    // saw the channel close).
    written.map_err(join)??;
    read.map_err(join)??;
    let (a, b) = tokio::join!(digest(from.as_ref()), digest(to.as_ref()));
    let (a, b) = (a?, b?);
    if a != b {
        let differ: Vec<String> = a
            .iter()
            .zip(&b)
            .filter(|(x, y)| x != y)
            .map(|(x, y)| format!("{}: {} rows vs {}", x.table, x.rows, y.rows))
            .collect();
        return Err(Error::Repository(format!(
            "copy: the target differs from the source after the copy ({})",
            differ.join("; ")
        )));
    }
    Ok(CopyReport {
        from: from.describe(),
        to: to.describe(),
        tables: a,
    })
}
