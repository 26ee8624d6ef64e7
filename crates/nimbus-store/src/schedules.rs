//! Schedule definitions (rate and cron rules that invoke functions).
//!
//! Definitions are small, read whole and change rarely: one JSON document per
//! row, as for functions. When each schedule last fired is *not* kept here but
//! in the [`crate::FireLedger`] of the event queue, written atomically with the
//! event it enqueues ([`crate::FireLedger::enqueue_once`]), so that a crash can
//! neither lose a fire nor repeat one.

use async_trait::async_trait;
use nimbus_core::schedule::ScheduleRecord;

use crate::StoreError;

#[async_trait]
pub trait ScheduleStore: Send + Sync + 'static {
    /// Creates (`create`: Conflict when the name is taken) or replaces
    /// (NotFound when missing) a schedule.
    async fn put(&self, record: &ScheduleRecord, create: bool) -> Result<(), StoreError>;
    async fn get(&self, name: &str) -> Result<Option<ScheduleRecord>, StoreError>;
    async fn list(&self) -> Result<Vec<ScheduleRecord>, StoreError>;
    async fn delete(&self, name: &str) -> Result<bool, StoreError>;
}
