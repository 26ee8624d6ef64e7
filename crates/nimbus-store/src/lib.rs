//! Storage behind narrow interfaces.
//!
//! The rest of Nimbus sees five things: a [`MetadataStore`] (functions and, later,
//! versions and aliases), a [`KeyStore`] (access keys), a [`GatewayStore`] (routes, function URLs, gateway keys), a [`LogStore`] (invocation logs with retention) and a
//! [`CodeStore`] (content-addressed code packages). The embedded backends here are
//! SQLite in WAL mode and plain files in the data directory; cluster backends
//! (PostgreSQL, object storage) implement the same traits.

mod code;
mod error;
mod gateway;
mod keys;
mod logs;
mod metadata;
mod queue;
mod sqlite;
mod workflows;

pub use code::{CodeInfo, CodeStore};
pub use error::StoreError;
pub use gateway::{
    FunctionUrlRow, GatewayKeyRow, GatewayRouteRow, GatewayStore, SqliteGatewayStore,
};
pub use keys::{AccessKey, KeyStore, NewAccessKey, SqliteKeyStore, load_or_create_master_key};
pub use logs::{LogQuery, LogRecord, LogStore, SqliteLogStore, StoredLog, UsageRecord};
pub use metadata::{MetadataStore, SqliteMetadataStore};
pub use queue::{EventQueue, LeaseFn, QueuedEvent, SqliteEventQueue};
pub use sqlite::open_database;
pub use workflows::{
    ExecutionQuery, ExecutionRecord, ExecutionUpdate, SqliteWorkflowStore, StateMachineRecord,
    StoredEvent, WorkflowStore,
};
