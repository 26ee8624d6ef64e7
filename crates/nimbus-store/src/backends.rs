//! Every store of a server, opened from one [`StorageConfig`]: the only
//! place that names a backend's types, so the composition root (the `nimbus`
//! binary) chooses a backend by configuration and holds trait objects only.

use std::path::PathBuf;
use std::sync::Arc;

use crate::sqlite;
use crate::{
    ChangeFeed, CodeBlobs, DeadLetters, FireLedger, FsCodeBlobs, FsObjectStore, GatewayStore,
    InvocationQueue, KeyStore, Leases, LocalChangeFeed, LocalLeases, LogStore, MetadataStore,
    ObjectStore, QueueCatalog, QueueData, ScheduleStore, SourceMappings, StoreError, Topics,
    WorkflowStore,
};

/// Where a server keeps its state.
#[derive(Debug, Clone)]
pub enum StorageConfig {
    /// One node: SQLite files in the data directory (`nimbus.db`, `logs.db`,
    /// `events.db`, `workflows.db`, `messages.db`, `objects.db`; code packages
    /// and object bodies as files beside them); in-process change feed
    /// and leases.
    Sqlite { data_dir: PathBuf },
    /// A cluster: every store in the PostgreSQL database at `url`, the only
    /// thing the nodes share; the change feed over `LISTEN`/`NOTIFY` and
    /// the leases in a table. Code packages are unpacked per node under the
    /// engine's cache directory, not here.
    Postgres { url: String },
}

/// The stores, as the engine uses them: one trait object per contract.
/// Several may be one object underneath (the SQLite event queue is the
/// invocation queue, the dead letters and the fire ledger; its messages
/// database holds queues, topics and mappings).
#[derive(Clone)]
pub struct Backends {
    pub metadata: Arc<dyn MetadataStore>,
    pub keys: Arc<dyn KeyStore>,
    pub gateway: Arc<dyn GatewayStore>,
    pub logs: Arc<dyn LogStore>,
    pub schedules: Arc<dyn ScheduleStore>,
    pub workflows: Arc<dyn WorkflowStore>,
    pub invocations: Arc<dyn InvocationQueue>,
    pub dead_letters: Arc<dyn DeadLetters>,
    /// Paired with `invocations`: its fires enqueue there.
    pub fires: Arc<dyn FireLedger>,
    pub queue_catalog: Arc<dyn QueueCatalog>,
    /// Paired with `queue_catalog`: the messages of its queues.
    pub queue_data: Arc<dyn QueueData>,
    pub topics: Arc<dyn Topics>,
    pub mappings: Arc<dyn SourceMappings>,
    /// Code packages by sha256 (unpacked per node by a `CodeCache`).
    pub code: Arc<dyn CodeBlobs>,
    /// Buckets and objects (the S3 API's store).
    pub objects: Arc<dyn ObjectStore>,
    pub changes: Arc<dyn ChangeFeed>,
    pub leases: Arc<dyn Leases>,
}

impl Backends {
    /// Opens (creating and migrating as needed) every store of `config`.
    /// `master_key` seals secrets at rest (access keys, JWT secrets); a
    /// PostgreSQL database whose secrets another key sealed is refused.
    pub async fn open(config: &StorageConfig, master_key: &[u8; 32]) -> Result<Self, StoreError> {
        match config {
            StorageConfig::Sqlite { data_dir } => open_sqlite(data_dir, master_key),
            StorageConfig::Postgres { url } => open_postgres(url, master_key).await,
        }
    }
}

async fn open_postgres(url: &str, master_key: &[u8; 32]) -> Result<Backends, StoreError> {
    use crate::postgres::{self, Pg};
    let pg = Pg::connect(url).await?;
    postgres::check_master_key(&pg, master_key).await?;
    let changes: Arc<dyn ChangeFeed> = Arc::new(crate::PgChangeFeed::open(&pg).await?);
    let events = Arc::new(crate::PgEventQueue::open(&pg).await?);
    let messages = Arc::new(crate::PgMessages::open(&pg).await?);
    Ok(Backends {
        metadata: Arc::new(crate::PgMetadataStore::open(&pg).await?),
        keys: Arc::new(crate::PgKeyStore::open(&pg, master_key, changes.clone()).await?),
        gateway: Arc::new(crate::PgGatewayStore::open(&pg, master_key).await?),
        logs: Arc::new(crate::PgLogStore::open(&pg).await?),
        schedules: Arc::new(crate::PgScheduleStore::open(&pg).await?),
        workflows: Arc::new(crate::PgWorkflowStore::open(&pg).await?),
        invocations: events.clone(),
        dead_letters: events.clone(),
        fires: events,
        queue_catalog: messages.clone(),
        queue_data: messages.clone(),
        topics: messages.clone(),
        mappings: messages,
        code: Arc::new(crate::PgCodeBlobs::open(&pg).await?),
        objects: Arc::new(crate::PgObjectStore::open(&pg).await?),
        changes,
        leases: Arc::new(crate::PgLeases::open(&pg).await?),
    })
}

fn open_sqlite(data_dir: &std::path::Path, master_key: &[u8; 32]) -> Result<Backends, StoreError> {
    let db_path = data_dir.join("nimbus.db");
    let open = || sqlite::open_database(&db_path);
    let metadata = Arc::new(sqlite::metadata::SqliteMetadataStore::new(open()?));
    let logs = Arc::new(sqlite::logs::open_log_store(data_dir, &db_path)?);
    let keys = Arc::new(sqlite::keys::SqliteKeyStore::new(open()?, master_key));
    let gateway = Arc::new(sqlite::gateway::SqliteGatewayStore::new(
        open()?,
        master_key,
    ));
    let schedules = Arc::new(sqlite::schedules::SqliteScheduleStore::new(open()?));
    let events = Arc::new(sqlite::queue::SqliteEventQueue::open(
        &data_dir.join("events.db"),
    )?);
    let workflows = Arc::new(sqlite::workflows::SqliteWorkflowStore::open(
        &data_dir.join("workflows.db"),
    )?);
    let messages = Arc::new(sqlite::messages::SqliteMessages::open(
        &data_dir.join("messages.db"),
    )?);
    let code = Arc::new(FsCodeBlobs::open(data_dir.join("code"))?);
    let objects = Arc::new(
        FsObjectStore::open(&data_dir.join("objects.db"), &data_dir.join("objects"))
            .map_err(StoreError::backend)?,
    );
    Ok(Backends {
        metadata,
        keys,
        gateway,
        logs,
        schedules,
        workflows,
        invocations: events.clone(),
        dead_letters: events.clone(),
        fires: events,
        queue_catalog: messages.clone(),
        queue_data: messages.clone(),
        topics: messages.clone(),
        mappings: messages,
        code,
        objects,
        changes: Arc::new(LocalChangeFeed::default()),
        leases: Arc::new(LocalLeases::default()),
    })
}
