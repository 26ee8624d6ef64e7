//! Storage behind narrow interfaces.
//!
//! The rest of Nimbus sees storage only through contracts (traits), one per
//! concern: a [`MetadataStore`] (functions, versions, aliases), a [`KeyStore`]
//! (access keys), a [`GatewayStore`] (routes, function URLs, gateway keys), a
//! [`LogStore`] (invocation logs with retention), a [`ScheduleStore`], a
//! [`WorkflowStore`], the asynchronous invocations ([`InvocationQueue`],
//! [`DeadLetters`], [`FireLedger`]), the messaging stores ([`QueueCatalog`],
//! [`QueueData`], [`Topics`], [`SourceMappings`]), the cluster contracts
//! ([`ChangeFeed`], [`Leases`]), [`CodeBlobs`] (content-addressed code
//! packages, unpacked per node by a [`CodeCache`]) and an [`ObjectStore`]
//! (buckets and objects; bodies cross the contract as [`ByteStream`]s). Their errors are [`StoreError`], which
//! names no backend's types.
//!
//! Layout: a contract lives in `<area>.rs`; its embedded backend (SQLite in
//! WAL mode) in `sqlite/<area>.rs`, and a cluster backend (PostgreSQL) will be
//! a sibling directory implementing the same traits. [`Backends`] opens every
//! store of one [`StorageConfig`]; each contract has a conformance suite in
//! `tests/conformance/` that every backend must pass.

mod backends;
pub mod body;
mod change_feed;
mod code;
mod error;
mod gateway;
mod keys;
mod leases;
mod logs;
mod messages;
mod metadata;
mod objects;
pub mod postgres;
mod queue;
mod schedules;
mod sqlite;
mod workflows;

pub use backends::{Backends, StorageConfig};
pub use body::ByteStream;
pub use change_feed::{
    Change, ChangeFeed, ChangeKind, ChangeNotice, ChangeStream, LocalChangeFeed,
    MAX_CHANGE_KEY_BYTES, check_change_key, note_change, noting_changes,
};
pub use code::{CodeBlobs, CodeCache, CodeInfo, FsCodeBlobs, Package, symlink_stays_inside};
pub use error::StoreError;
pub use gateway::{FunctionUrlRow, GatewayKeyRow, GatewayRouteRow, GatewayStore};
pub use keys::{AccessKey, FunctionCredentials, KeyStore, NewAccessKey, load_or_create_master_key};
pub use leases::{Lease, Leases, LocalLeases};
pub use logs::{
    LogQuery, LogRecord, LogStore, PruneReport, RetentionPolicy, StoredLog, UsageRecord,
    charged_bytes,
};
pub use messages::{
    QueueCatalog, QueueCounts, QueueData, QueueRecord, ReceiveOptions, Redrive, SourceMappings,
    StoredMapping, StoredMessage, SubscriptionRecord, TopicRecord, Topics, VisibilityChange,
};
pub use metadata::MetadataStore;
pub use objects::{
    BucketInfo, ByteRange, CreatedObject, FsObjectStore, ListEntry, ListPage, ListQuery,
    Notification, ObjectAttrs, ObjectError, ObjectMeta, ObjectRead, ObjectStore, PartInfo,
    PendingNotification, PutBody, UploadInfo, multipart_etag,
};
pub use postgres::change_feed::PgChangeFeed;
pub use postgres::code::PgCodeBlobs;
pub use postgres::gateway::PgGatewayStore;
pub use postgres::keys::PgKeyStore;
pub use postgres::leases::PgLeases;
pub use postgres::logs::PgLogStore;
pub use postgres::messages::PgMessages;
pub use postgres::metadata::PgMetadataStore;
pub use postgres::objects::PgObjectStore;
pub use postgres::queue::PgEventQueue;
pub use postgres::schedules::PgScheduleStore;
pub use postgres::workflows::PgWorkflowStore;
pub use queue::{BudgetFn, DeadLetters, FireLedger, InvocationQueue, LeaseFn, QueuedEvent};
pub use schedules::ScheduleStore;
pub use sqlite::gateway::SqliteGatewayStore;
pub use sqlite::keys::SqliteKeyStore;
pub use sqlite::logs::{SqliteLogStore, move_logs_from, open_log_database};
pub use sqlite::messages::SqliteMessages;
pub use sqlite::metadata::SqliteMetadataStore;
pub use sqlite::open_database;
pub use sqlite::queue::SqliteEventQueue;
pub use sqlite::schedules::SqliteScheduleStore;
pub use sqlite::workflows::SqliteWorkflowStore;
pub use workflows::{
    ExecutionQuery, ExecutionRecord, ExecutionUpdate, StateMachineRecord, StoredEvent,
    WorkflowStore,
};
