//! Publisher locks: session-scoped advisory locks, every one of them held
//! on a single connection of their own. Holding each on a connection from
//! the transactions' pool would take a connection away from the work the
//! publisher does while it holds the lock: with as many realms publishing
//! at once as the pool has connections, every publisher would wait for a
//! connection that only a publisher can give back.
//!
//! Advisory locks are re-entrant within a session, so the server cannot
//! tell two publishers of one realm in this process apart; the set of keys
//! this process holds does (a second one is refused here, before the
//! server is asked). If the connection is lost, the server has released
//! every lock it held: the next acquisition opens a new one, and guards
//! from the old connection do not unlock on the new one.

use super::{Pg, pg_err};
use crate::domain::error::{Error, Result};
use crate::ports::repository::PublisherLock;
use deadpool_postgres::{Object, Pool};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

/// The lock connection and what this process holds on it.
#[derive(Clone)]
pub(super) struct Locks {
    inner: Arc<Inner>,
}

struct Inner {
    /// A pool of one connection: it opens (and re-opens) the connection
    /// the same way, TLS included, as the transactions' pool.
    pool: Pool,
    session: tokio::sync::Mutex<Session>,
    held: Mutex<HashSet<(i32, i32)>>,
}

#[derive(Default)]
struct Session {
    client: Option<Object>,
    /// Counts connections opened; a guard unlocks only on its own.
    generation: u64,
}

impl Locks {
    pub(super) fn new(pool: Pool) -> Locks {
        Locks {
            inner: Arc::new(Inner {
                pool,
                session: tokio::sync::Mutex::new(Session::default()),
                held: Mutex::new(HashSet::new()),
            }),
        }
    }

    /// Take the lock `key` unless anyone (in this process or another)
    /// holds it.
    pub(super) async fn try_lock(&self, key: (i32, i32)) -> Result<Option<PublisherLock>> {
        if !self.held().insert(key) {
            return Ok(None);
        }
        // From here on, dropping the guard gives the key back (and, once
        // it has a generation, unlocks it on the server).
        let mut guard = Guard {
            locks: self.clone(),
            key,
            generation: None,
            rt: tokio::runtime::Handle::current(),
        };
        let mut session = self.inner.session.lock().await;
        if session.client.as_ref().is_none_or(|c| c.is_closed()) {
            if let Some(dead) = session.client.take() {
                // Not back into the pool: it is closed.
                drop(Object::take(dead));
            }
            let client = self.inner.pool.get().await.map_err(|e| match e {
                deadpool_postgres::PoolError::Backend(e) => pg_err(e),
                e => Error::Repository(format!("postgres publisher lock connection: {e}")),
            })?;
            session.client = Some(client);
            session.generation += 1;
        }
        let generation = session.generation;
        let Some(client) = session.client.as_ref() else {
            return Err(Error::Repository(
                "postgres publisher lock connection: not open".into(),
            ));
        };
        let got: bool = match client
            .query_one("SELECT pg_try_advisory_lock($1, $2)", &[&key.0, &key.1])
            .await
        {
            Ok(row) => row.try_get(0).pg()?,
            Err(e) => {
                // Whatever it held is released with it; start afresh.
                if let Some(c) = session.client.take() {
                    drop(Object::take(c));
                }
                return Err(pg_err(e));
            }
        };
        if !got {
            return Ok(None);
        }
        guard.generation = Some(generation);
        Ok(Some(Box::new(guard)))
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashSet<(i32, i32)>> {
        self.inner
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A held (or being taken) publisher lock.
struct Guard {
    locks: Locks,
    key: (i32, i32),
    /// The connection it was taken on; `None` while it is not held there.
    generation: Option<u64>,
    /// Where the unlock runs: dropping happens in synchronous code.
    rt: tokio::runtime::Handle,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let (locks, key) = (self.locks.clone(), self.key);
        let Some(generation) = self.generation else {
            locks.held().remove(&key);
            return;
        };
        // Unlocked on the server before the key is free in this process:
        // the lock count on the session stays one per holder.
        self.rt.spawn(async move {
            let mut session = locks.inner.session.lock().await;
            if session.generation == generation
                && let Some(client) = session.client.as_ref()
                && client
                    .execute("SELECT pg_advisory_unlock($1, $2)", &[&key.0, &key.1])
                    .await
                    .is_err()
                && let Some(c) = session.client.take()
            {
                // Closing the connection releases the lock too.
                drop(Object::take(c));
            }
            drop(session);
            locks.held().remove(&key);
        });
    }
}
