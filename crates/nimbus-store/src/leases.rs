//! Named leases: which node owns a piece of background work (a workflow
//! execution, the armer of the schedules, a mapping's poller) for a while.
//!
//! A lease is held by one owner (a node's id) until it expires; the owner
//! renews it well before then, and a node that dies stops renewing, so its
//! work passes to another node within one TTL. This is what a PostgreSQL
//! table `(name PRIMARY KEY, owner, expires_ms, epoch)` with conditional
//! upserts implements.
//!
//! Times are the caller's clock in milliseconds, as everywhere in storage:
//! the nodes of a cluster must keep their clocks within a small fraction of a
//! TTL of each other (NTP), or two could believe they hold one lease.
//!
//! Single node: [`LocalLeases`], an in-memory table. With one node there is
//! one owner, so every lease it asks for is granted.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;

use crate::StoreError;

/// A lease as held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub name: String,
    pub owner: String,
    /// When it lapses unless renewed (exclusive: at `expires_ms` it is free).
    pub expires_ms: i64,
    /// Grows by one each time the lease is taken while free, so two
    /// holdings never share an epoch (a fencing token: work done under an
    /// older epoch is stale). Renewals, and acquires by the holder, keep it.
    pub epoch: u64,
}

/// Named, expiring, exclusive leases.
///
/// A lease is *free* when it was never taken, was released, or its
/// `expires_ms` is at or before `now_ms`. At any `now_ms` at most one owner
/// holds a lease.
#[async_trait]
pub trait Leases: Send + Sync + 'static {
    /// Takes `name` for `owner` until `now_ms + ttl_ms` if it is free or
    /// already `owner`'s (then it is renewed, epoch kept). Returns the lease
    /// now held, or `None` if another owner holds it.
    async fn acquire(
        &self,
        name: &str,
        owner: &str,
        ttl_ms: i64,
        now_ms: i64,
    ) -> Result<Option<Lease>, StoreError>;
    /// Extends `owner`'s lease to `now_ms + ttl_ms`. `None` (and nothing
    /// changes) if `owner` does not hold it at `now_ms`: it expired or was
    /// released, and the work it covered may be someone else's now.
    async fn renew(
        &self,
        name: &str,
        owner: &str,
        ttl_ms: i64,
        now_ms: i64,
    ) -> Result<Option<Lease>, StoreError>;
    /// Frees `name` if `owner` holds it; returns whether it did.
    async fn release(&self, name: &str, owner: &str, now_ms: i64) -> Result<bool, StoreError>;
    /// Who holds `name` at `now_ms`, if anyone.
    async fn holder(&self, name: &str, now_ms: i64) -> Result<Option<Lease>, StoreError>;
}

/// The single-node leases: an in-memory table (leases end with the process,
/// as the work they cover does).
#[derive(Default)]
pub struct LocalLeases {
    /// Name → the lease last granted (possibly expired or released) and the
    /// epoch it reached, which outlives a release.
    table: Mutex<HashMap<String, (Option<Lease>, u64)>>,
}

impl LocalLeases {
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, (Option<Lease>, u64)>) -> T) -> T {
        f(&mut self.table.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// The lease of an entry if it is held at `now_ms`.
fn held(entry: Option<&(Option<Lease>, u64)>, now_ms: i64) -> Option<&Lease> {
    entry
        .and_then(|(l, _)| l.as_ref())
        .filter(|l| l.expires_ms > now_ms)
}

#[async_trait]
impl Leases for LocalLeases {
    async fn acquire(
        &self,
        name: &str,
        owner: &str,
        ttl_ms: i64,
        now_ms: i64,
    ) -> Result<Option<Lease>, StoreError> {
        Ok(self.with(|t| {
            let entry = t.entry(name.to_string()).or_insert((None, 0));
            let epoch = match held(Some(entry), now_ms) {
                Some(l) if l.owner != owner => return None,
                Some(l) => l.epoch,
                None => entry.1 + 1,
            };
            let lease = Lease {
                name: name.to_string(),
                owner: owner.to_string(),
                expires_ms: now_ms + ttl_ms,
                epoch,
            };
            *entry = (Some(lease.clone()), epoch);
            Some(lease)
        }))
    }

    async fn renew(
        &self,
        name: &str,
        owner: &str,
        ttl_ms: i64,
        now_ms: i64,
    ) -> Result<Option<Lease>, StoreError> {
        Ok(self.with(|t| {
            let entry = t.get_mut(name)?;
            let mine = held(Some(entry), now_ms).is_some_and(|l| l.owner == owner);
            let lease = entry.0.as_mut().filter(|_| mine)?;
            lease.expires_ms = now_ms + ttl_ms;
            Some(lease.clone())
        }))
    }

    async fn release(&self, name: &str, owner: &str, now_ms: i64) -> Result<bool, StoreError> {
        Ok(self.with(|t| {
            let Some(entry) = t.get_mut(name) else {
                return false;
            };
            if held(Some(entry), now_ms).is_some_and(|l| l.owner == owner) {
                entry.0 = None;
                true
            } else {
                false
            }
        }))
    }

    async fn holder(&self, name: &str, now_ms: i64) -> Result<Option<Lease>, StoreError> {
        Ok(self.with(|t| held(t.get(name), now_ms).cloned()))
    }
}
