//! Durable state of workflows: state machines, executions and their histories.
//!
//! An execution is acknowledged (StartExecution answers) and every transition
//! acts (a function is invoked, a timer armed) only after its write is
//! durable; an execution's snapshot and the history events of its step are
//! written together, so they are never seen apart.
//!
//! The store knows nothing about the States Language: snapshots and event
//! details are opaque JSON text. [`WorkflowStore`] is the seam a cluster
//! backend (PostgreSQL) implements; the embedded one is `SqliteWorkflowStore`
//! (`workflows.db`).

use async_trait::async_trait;

use crate::StoreError;

/// A state machine as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StateMachineRecord {
    pub arn: String,
    pub name: String,
    /// The definition text, verbatim (DescribeStateMachine returns it as given).
    pub definition: String,
    pub role_arn: String,
    /// `STANDARD` or `EXPRESS`.
    pub machine_type: String,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub revision: String,
}

/// An execution as stored (without its history).
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionRecord {
    pub arn: String,
    pub name: String,
    pub state_machine_arn: String,
    /// `RUNNING`, `SUCCEEDED`, `FAILED`, `TIMED_OUT` or `ABORTED`.
    pub status: String,
    /// JSON text.
    pub input: String,
    /// JSON text, once succeeded.
    pub output: Option<String>,
    pub error: Option<String>,
    pub cause: Option<String>,
    pub start_ms: i64,
    pub stop_ms: Option<i64>,
    /// The definition the execution runs (a later update does not change it).
    pub definition: String,
    /// The serialized interpreter state while running; dropped once finished.
    pub snapshot: Option<String>,
}

/// The part of an execution that changes with each step.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionUpdate {
    pub status: String,
    pub output: Option<String>,
    pub error: Option<String>,
    pub cause: Option<String>,
    pub stop_ms: Option<i64>,
    pub snapshot: Option<String>,
}

/// One history event as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub id: u64,
    pub previous_id: u64,
    pub ts_ms: i64,
    /// The AWS event type name, e.g. `PassStateEntered`.
    pub event_type: String,
    /// JSON text of the event details.
    pub details: String,
}

/// Which executions to list.
#[derive(Debug, Clone, Default)]
pub struct ExecutionQuery {
    pub state_machine_arn: Option<String>,
    pub status: Option<String>,
    /// List only executions older (by start order) than this cursor.
    pub before_seq: Option<i64>,
    pub limit: usize,
}

#[async_trait]
pub trait WorkflowStore: Send + Sync + 'static {
    /// Stores a new state machine; `Conflict` if the ARN exists.
    async fn create_machine(&self, m: &StateMachineRecord) -> Result<(), StoreError>;
    /// Replaces a state machine's definition, role, update time and
    /// revision; its name, type and creation time never change. `NotFound`
    /// if it does not exist.
    async fn update_machine(&self, m: &StateMachineRecord) -> Result<(), StoreError>;
    /// Deletes a state machine (its executions are kept). Returns whether it existed.
    async fn delete_machine(&self, arn: &str) -> Result<bool, StoreError>;
    async fn get_machine(&self, arn: &str) -> Result<Option<StateMachineRecord>, StoreError>;
    /// All state machines, by name.
    async fn list_machines(&self) -> Result<Vec<StateMachineRecord>, StoreError>;

    /// Stores a new execution with its first events, durably; `Conflict` if
    /// the ARN exists, and then nothing of the call is stored. Of concurrent
    /// creates of one ARN exactly one succeeds.
    async fn create_execution(
        &self,
        e: &ExecutionRecord,
        events: Vec<StoredEvent>,
    ) -> Result<(), StoreError>;
    /// Records one step: the new state and the events it produced, atomically
    /// and durably. Every field of `update` is written (`None` clears).
    /// Event ids are unique per execution: an id stored again replaces the
    /// event. `NotFound` without the execution, and then nothing is stored.
    async fn save_step(
        &self,
        arn: &str,
        update: ExecutionUpdate,
        events: Vec<StoredEvent>,
    ) -> Result<(), StoreError>;
    async fn get_execution(&self, arn: &str) -> Result<Option<ExecutionRecord>, StoreError>;
    /// Executions, newest first (by creation, not `start_ms`), with the
    /// cursor of each (for paging): `before_seq` keeps those older than a
    /// cursor. At most `limit` (0: none). Listed records may leave out the
    /// definition (empty) and the snapshot (`None`).
    async fn list_executions(
        &self,
        q: ExecutionQuery,
    ) -> Result<Vec<(i64, ExecutionRecord)>, StoreError>;
    /// Every execution still `RUNNING` (to resume at startup), whole
    /// (definition and snapshot included), oldest first.
    async fn running_executions(&self) -> Result<Vec<ExecutionRecord>, StoreError>;
    /// History events with ids after `after` (or before it when `reverse`),
    /// at most `limit`: ascending, or descending when `reverse`; without
    /// `after`, from the first (or the last). `NotFound` without the execution.
    async fn history(
        &self,
        arn: &str,
        after: Option<u64>,
        limit: usize,
        reverse: bool,
    ) -> Result<Vec<StoredEvent>, StoreError>;
}
