//! Storage behind narrow interfaces.
//!
//! The rest of Nimbus sees five things: a [`MetadataStore`] (functions and, later,
//! versions and aliases), a [`KeyStore`] (access keys), a [`GatewayStore`] (routes, function URLs, gateway keys), a [`LogStore`] (invocation logs with retention) and a
//! [`CodeBlobs`] (content-addressed code packages, unpacked per node by a
//! [`CodeCache`]). The embedded backends here are
//! SQLite in WAL mode and plain files in the data directory; cluster backends
//! (PostgreSQL, object storage) implement the same traits.

pub mod body;
mod code;
mod error;
mod gateway;
mod group_commit;
mod keys;
mod logs;
mod messages;
mod metadata;
mod objects;
mod queue;
mod schedules;
mod sqlite;
mod workflows;

pub use body::ByteStream;
pub use code::{CodeBlobs, CodeCache, CodeInfo, FsCodeBlobs, Package, symlink_stays_inside};
pub use error::StoreError;
pub use gateway::{
    FunctionUrlRow, GatewayKeyRow, GatewayRouteRow, GatewayStore, SqliteGatewayStore,
};
pub use keys::{
    AccessKey, FunctionCredentials, KeyStore, NewAccessKey, SqliteKeyStore,
    load_or_create_master_key,
};
pub use logs::{
    LogQuery, LogRecord, LogStore, PruneReport, RetentionPolicy, SqliteLogStore, StoredLog,
    UsageRecord, charged_bytes, move_logs_from, open_log_database,
};
pub use messages::{
    MessageQueues, QueueCounts, QueueRecord, ReceiveOptions, Redrive, SourceMappings,
    SqliteMessages, StoredMapping, StoredMessage, SubscriptionRecord, TopicRecord, Topics,
    VisibilityChange,
};
pub use metadata::{MetadataStore, SqliteMetadataStore};
pub use objects::{
    BucketInfo, ByteRange, FsObjectStore, ListEntry, ListPage, ListQuery, ObjectAttrs, ObjectError,
    ObjectMeta, ObjectRead, ObjectStore, PartInfo, PutBody, UploadInfo, multipart_etag,
};
pub use queue::{BudgetFn, EventQueue, LeaseFn, QueuedEvent, SqliteEventQueue};
pub use schedules::{ScheduleStore, SqliteScheduleStore};
pub use sqlite::open_database;
pub use workflows::{
    ExecutionQuery, ExecutionRecord, ExecutionUpdate, SqliteWorkflowStore, StateMachineRecord,
    StoredEvent, WorkflowStore,
};
