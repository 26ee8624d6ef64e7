//! Workflows: durable executions of Amazon States Language state machines.
//!
//! ```text
//! API ──► Workflows (this module: state machines, start/stop/describe)
//!            │ spawns one actor per running execution (executor.rs)
//!            ├──► WorkflowStore (snapshot + events, one group-committed write per step)
//!            └──► Invoker (Task states, tasks.rs)
//! ```
//!
//! The language itself (parsing, validation, the interpreter) is the pure
//! `nimbus-workflow` crate; this module adds the side effects: persistence
//! before every action, functions, timers, deadlines, stop, and resumption of
//! every `RUNNING` execution at startup.

mod error;
mod executor;
mod names;
mod tasks;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nimbus_store::{ExecutionQuery, WorkflowStore};
pub use nimbus_store::{ExecutionRecord, StateMachineRecord, StoredEvent};
use nimbus_workflow::{Config, Execution, ExecutionInfo, OsEntropy, StateMachine};
use serde_json::Value;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use error::WorkflowError;
pub use names::{ArnScope, check_name, machine_name};

use crate::Invoker;
use executor::{Actor, Handle, Msg};

/// Largest execution input (Step Functions: 256 KiB, as every state's).
pub const MAX_INPUT_BYTES: usize = nimbus_workflow::limits::MAX_PAYLOAD_BYTES;
/// Largest definition (Step Functions: 1 MB).
pub const MAX_DEFINITION_BYTES: usize = 1024 * 1024;

/// What the actors share.
pub(crate) struct Shared {
    store: Arc<dyn WorkflowStore>,
    invoker: Arc<Invoker>,
    running: Mutex<HashMap<String, Handle>>,
    draining: AtomicBool,
    limits: WorkflowLimits,
    /// Tells actors to exit (after the write in progress).
    stop: CancellationToken,
    clock: nimbus_core::Clock,
}

impl Shared {
    fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    fn forget(&self, arn: &str) {
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(arn);
    }

    fn handle(&self, arn: &str) -> Option<Handle> {
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(arn)
            .cloned()
    }
}

/// Server-wide bounds on workflows (server flags).
#[derive(Debug, Clone, Copy)]
pub struct WorkflowLimits {
    /// Most executions running at once (`--max-running-executions`): each is
    /// an actor in memory, and all are loaded again at startup.
    pub max_running: usize,
    /// History events per execution (`--max-history-events`; Step Functions:
    /// 25,000).
    pub max_history_events: u64,
}

impl Default for WorkflowLimits {
    fn default() -> Self {
        Self {
            max_running: 100_000,
            max_history_events: nimbus_workflow::limits::MAX_HISTORY_EVENTS,
        }
    }
}

/// A new state machine.
#[derive(Debug, Clone)]
pub struct CreateMachine {
    pub name: String,
    pub definition: String,
    pub role_arn: Option<String>,
    /// `STANDARD` (default) or `EXPRESS`.
    pub machine_type: Option<String>,
}

/// A new execution.
#[derive(Debug, Clone, Default)]
pub struct StartExecution {
    /// State machine ARN or name.
    pub machine: String,
    pub name: Option<String>,
    /// JSON text (`{}` when absent).
    pub input: Option<String>,
}

/// What [`Workflows::run`] did.
#[derive(Debug)]
pub enum Run {
    /// An EXPRESS execution, run to its end.
    Finished(ExecutionRecord),
    /// A STANDARD execution, durably started.
    Started(ExecutionRecord),
}

/// A page of results and the token of the next one.
pub type Page<T> = (Vec<T>, Option<String>);

pub struct Workflows {
    shared: Arc<Shared>,
    scope: ArnScope,
    tracker: TaskTracker,
}

fn parse_definition(text: &str) -> Result<StateMachine, WorkflowError> {
    if text.len() > MAX_DEFINITION_BYTES {
        return Err(WorkflowError::InvalidDefinition(format!(
            "Invalid State Machine Definition: the definition is larger than {MAX_DEFINITION_BYTES} bytes"
        )));
    }
    let json: Value = serde_json::from_str(text).map_err(|e| {
        WorkflowError::InvalidDefinition(format!(
            "Invalid State Machine Definition: 'INVALID_JSON_DESCRIPTION: {e}'"
        ))
    })?;
    StateMachine::parse(&json).map_err(|e| {
        WorkflowError::InvalidDefinition(format!(
            "Invalid State Machine Definition: 'SCHEMA_VALIDATION_FAILED: {e}'"
        ))
    })
}

fn parse_input(input: Option<&str>) -> Result<Value, WorkflowError> {
    let text = input.unwrap_or("{}");
    if text.len() > MAX_INPUT_BYTES {
        return Err(WorkflowError::InvalidExecutionInput(format!(
            "The input is larger than {MAX_INPUT_BYTES} bytes"
        )));
    }
    serde_json::from_str(text).map_err(|e| {
        WorkflowError::InvalidExecutionInput(format!(
            "Invalid State Machine Execution Input: 'Invalid JSON: {e}'"
        ))
    })
}

fn page_token(token: Option<&str>) -> Result<Option<i64>, WorkflowError> {
    token
        .map(|t| {
            t.parse::<i64>()
                .map_err(|_| WorkflowError::InvalidToken(format!("Invalid Token: '{t}'")))
        })
        .transpose()
}

fn page_size(max: Option<usize>, default: usize) -> Result<usize, WorkflowError> {
    match max {
        None | Some(0) => Ok(default),
        Some(n) if n <= 1000 => Ok(n),
        Some(n) => Err(WorkflowError::Validation(format!(
            "1 validation error detected: Value '{n}' at 'maxResults' failed to satisfy constraint: Member must have value less than or equal to 1000"
        ))),
    }
}

impl Workflows {
    pub fn new(
        store: Arc<dyn WorkflowStore>,
        invoker: Arc<Invoker>,
        scope: ArnScope,
        limits: WorkflowLimits,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                store,
                invoker,
                running: Mutex::new(HashMap::new()),
                draining: AtomicBool::new(false),
                limits,
                stop: CancellationToken::new(),
                clock: nimbus_core::Clock::system(),
            }),
            scope,
            tracker: TaskTracker::new(),
        }
    }

    pub fn scope(&self) -> &ArnScope {
        &self.scope
    }

    /// Resumes every execution that was running when the server stopped:
    /// pending tasks run again, timers are re-armed for their original instant.
    pub async fn resume(&self) -> Result<usize, WorkflowError> {
        let running = self.shared.store.running_executions().await?;
        let n = running.len();
        for record in running {
            let restored = parse_definition(&record.definition).and_then(|m| {
                let snapshot = record.snapshot.as_deref().unwrap_or("");
                serde_json::from_str::<Execution>(snapshot)
                    .map(|e| (m, e))
                    .map_err(|e| WorkflowError::Corrupt(e.to_string()))
            });
            match restored {
                Ok((machine, exec)) => {
                    let actions = exec.outstanding();
                    self.spawn(
                        record.arn.clone(),
                        Arc::new(machine),
                        exec,
                        true,
                        None,
                        Vec::new(),
                        actions,
                    );
                }
                Err(e) => {
                    tracing::error!("cannot resume the execution {}: {e}", record.arn);
                }
            }
        }
        Ok(n)
    }

    #[allow(
        clippy::too_many_arguments,
        reason = "the parts of the new actor, from resume and start_inner"
    )]
    fn spawn(
        &self,
        arn: String,
        machine: Arc<StateMachine>,
        exec: Execution,
        durable: bool,
        record: Option<ExecutionRecord>,
        events: Vec<StoredEvent>,
        actions: Vec<nimbus_workflow::Action>,
    ) -> Handle {
        let (actor, handle) = Actor::new(
            arn.clone(),
            machine,
            exec,
            durable,
            self.shared.clone(),
            record,
            events,
        );
        self.shared
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(arn, handle.clone());
        self.tracker.spawn(actor.run(actions));
        handle
    }

    // ---- state machines ----

    pub async fn create_machine(
        &self,
        req: CreateMachine,
    ) -> Result<StateMachineRecord, WorkflowError> {
        check_name(&req.name)?;
        parse_definition(&req.definition)?;
        let machine_type = match req.machine_type.as_deref().unwrap_or("STANDARD") {
            t @ ("STANDARD" | "EXPRESS") => t.to_string(),
            other => {
                return Err(WorkflowError::Validation(format!(
                    "1 validation error detected: Value '{other}' at 'type' failed to satisfy constraint: Member must satisfy enum value set: [STANDARD, EXPRESS]"
                )));
            }
        };
        let role_arn = self.role(req.role_arn)?;
        let now = self.shared.clock.now_ms();
        let record = StateMachineRecord {
            arn: self.scope.machine_arn(&req.name),
            name: req.name,
            definition: req.definition,
            role_arn,
            machine_type,
            created_ms: now,
            updated_ms: now,
            revision: uuid::Uuid::new_v4().to_string(),
        };
        match self.shared.store.create_machine(&record).await {
            Ok(()) => Ok(record),
            Err(nimbus_store::StoreError::Conflict(_)) => {
                // Idempotent when nothing differs, as on AWS.
                match self.shared.store.get_machine(&record.arn).await? {
                    Some(old)
                        if old.definition == record.definition
                            && old.role_arn == record.role_arn
                            && old.machine_type == record.machine_type =>
                    {
                        Ok(old)
                    }
                    _ => Err(WorkflowError::StateMachineAlreadyExists(record.arn)),
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    fn role(&self, role: Option<String>) -> Result<String, WorkflowError> {
        let role = role.unwrap_or_else(|| {
            format!(
                "arn:aws:iam::{}:role/nimbus-workflows",
                self.scope.account_id
            )
        });
        if !role.starts_with("arn:") {
            return Err(WorkflowError::InvalidArn(format!("Invalid Arn: '{role}'")));
        }
        Ok(role)
    }

    pub async fn describe_machine(&self, r: &str) -> Result<StateMachineRecord, WorkflowError> {
        let arn = self.scope.machine_ref(r)?;
        self.shared
            .store
            .get_machine(&arn)
            .await?
            .ok_or(WorkflowError::StateMachineDoesNotExist(arn))
    }

    pub async fn list_machines(
        &self,
        max: Option<usize>,
        token: Option<&str>,
    ) -> Result<Page<StateMachineRecord>, WorkflowError> {
        let limit = page_size(max, 100)?;
        let start = page_token(token)?.unwrap_or(0).max(0) as usize;
        let all = self.shared.store.list_machines().await?;
        let next = (all.len() > start + limit).then(|| (start + limit).to_string());
        Ok((all.into_iter().skip(start).take(limit).collect(), next))
    }

    /// Changes the definition and/or role; running executions keep the
    /// definition they started with.
    pub async fn update_machine(
        &self,
        r: &str,
        definition: Option<String>,
        role_arn: Option<String>,
    ) -> Result<StateMachineRecord, WorkflowError> {
        if definition.is_none() && role_arn.is_none() {
            return Err(WorkflowError::Validation(
                "Either the definition or the roleArn must be specified".into(),
            ));
        }
        let mut m = self.describe_machine(r).await?;
        if let Some(d) = definition {
            parse_definition(&d)?;
            m.definition = d;
        }
        if let Some(role) = role_arn {
            m.role_arn = self.role(Some(role))?;
        }
        m.updated_ms = self.shared.clock.now_ms();
        m.revision = uuid::Uuid::new_v4().to_string();
        match self.shared.store.update_machine(&m).await {
            Ok(()) => Ok(m),
            Err(nimbus_store::StoreError::NotFound(_)) => {
                Err(WorkflowError::StateMachineDoesNotExist(m.arn))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes a state machine; its running executions run to their end.
    /// Deleting one that does not exist succeeds (as on AWS).
    pub async fn delete_machine(&self, r: &str) -> Result<(), WorkflowError> {
        let arn = self.scope.machine_ref(r)?;
        self.shared.store.delete_machine(&arn).await?;
        Ok(())
    }

    // ---- executions ----

    /// Starts an execution; returns once it is durably recorded.
    pub async fn start(&self, req: StartExecution) -> Result<ExecutionRecord, WorkflowError> {
        let sm = self.describe_machine(&req.machine).await?;
        self.start_inner(req, &sm, true).await.map(|(r, _)| r)
    }

    /// Starts an execution of an EXPRESS state machine and waits for its end
    /// (StartSyncExecution: in memory, recorded once at the end).
    pub async fn start_sync(&self, req: StartExecution) -> Result<ExecutionRecord, WorkflowError> {
        let sm = self.describe_machine(&req.machine).await?;
        if sm.machine_type != "EXPRESS" {
            return Err(WorkflowError::StateMachineTypeNotSupported(
                "This operation is not supported by this type of state machine".into(),
            ));
        }
        let (record, handle) = self.start_inner(req, &sm, false).await?;
        self.wait_handle(&record.arn, handle, None).await
    }

    /// Runs an execution the way an event source (a gateway route, a queue)
    /// does: an EXPRESS machine to its end, as StartSyncExecution; a STANDARD
    /// one started durably, as StartExecution.
    pub async fn run(&self, req: StartExecution) -> Result<Run, WorkflowError> {
        let sm = self.describe_machine(&req.machine).await?;
        if sm.machine_type == "EXPRESS" {
            let (record, handle) = self.start_inner(req, &sm, false).await?;
            Ok(Run::Finished(
                self.wait_handle(&record.arn, handle, None).await?,
            ))
        } else {
            Ok(Run::Started(self.start_inner(req, &sm, true).await?.0))
        }
    }

    /// Waits for an execution to end (or `timeout` to pass) and returns it.
    pub async fn wait(
        &self,
        r: &str,
        timeout: Option<Duration>,
    ) -> Result<ExecutionRecord, WorkflowError> {
        let arn = self.scope.execution_ref(r)?;
        let handle = self.shared.handle(&arn);
        self.wait_handle(&arn, handle, timeout).await
    }

    async fn wait_handle(
        &self,
        arn: &str,
        handle: Option<Handle>,
        timeout: Option<Duration>,
    ) -> Result<ExecutionRecord, WorkflowError> {
        if let Some(mut h) = handle {
            let wait = h.done.wait_for(|d| *d);
            match timeout {
                Some(t) => {
                    let _ = tokio::time::timeout(t, wait).await;
                }
                None => {
                    let _ = wait.await;
                }
            }
        }
        self.shared.store.get_execution(arn).await?.ok_or_else(|| {
            if self.shared.is_draining() {
                WorkflowError::ShuttingDown
            } else {
                WorkflowError::ExecutionDoesNotExist(arn.to_string())
            }
        })
    }

    /// Starts an execution of `sm` (the machine `req` names, already looked up).
    async fn start_inner(
        &self,
        req: StartExecution,
        sm: &StateMachineRecord,
        durable: bool,
    ) -> Result<(ExecutionRecord, Option<Handle>), WorkflowError> {
        if self.shared.is_draining() {
            return Err(WorkflowError::ShuttingDown);
        }
        // Checked, not reserved: concurrent starts may pass it by a few.
        let running = self
            .shared
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len();
        if running >= self.shared.limits.max_running {
            return Err(WorkflowError::ExecutionLimitExceeded(format!(
                "Execution Limit Exceeded: {running} executions are running, the most this server runs at once (--max-running-executions {})",
                self.shared.limits.max_running
            )));
        }
        let name = match req.name {
            Some(n) => {
                check_name(&n)?;
                n
            }
            None => uuid::Uuid::new_v4().to_string(),
        };
        let input = parse_input(req.input.as_deref())?;
        let machine = Arc::new(parse_definition(&sm.definition)?);
        let arn = self.scope.execution_arn(&sm.name, &name);
        let start = executor::now(&self.shared.clock);
        let info = ExecutionInfo {
            id: arn.clone(),
            name: name.clone(),
            state_machine_id: sm.arn.clone(),
            state_machine_name: sm.name.clone(),
            role_arn: Some(sm.role_arn.clone()),
            input: input.clone(),
            start_time: start,
        };
        let config = Config {
            max_history_events: self.shared.limits.max_history_events,
            ..Config::default()
        };
        let (exec, step) = Execution::start(&machine, info, config, start, &mut OsEntropy);
        let u = executor::update_of(&self.shared.clock, &exec, None);
        let record = ExecutionRecord {
            arn: arn.clone(),
            name,
            state_machine_arn: sm.arn.clone(),
            status: u.status,
            input: input.to_string(),
            output: u.output,
            error: u.error,
            cause: u.cause,
            start_ms: start.unix_millis(),
            stop_ms: u.stop_ms,
            definition: sm.definition.clone(),
            snapshot: u.snapshot,
        };
        let events = executor::stored_events(&step.events);
        if !durable {
            let handle = self.spawn(
                arn,
                machine,
                exec,
                false,
                Some(record.clone()),
                events,
                step.actions,
            );
            return Ok((record, Some(handle)));
        }
        match self.shared.store.create_execution(&record, events).await {
            Ok(()) => {}
            Err(nimbus_store::StoreError::Conflict(_)) => {
                // Same name and input while still running: the same execution (AWS).
                return match self.shared.store.get_execution(&arn).await? {
                    Some(old)
                        if old.status == "RUNNING" && same_json(&old.input, &record.input) =>
                    {
                        let handle = self.shared.handle(&arn);
                        Ok((old, handle))
                    }
                    _ => Err(WorkflowError::ExecutionAlreadyExists(arn)),
                };
            }
            Err(e) => return Err(e.into()),
        }
        let handle = self.spawn(arn, machine, exec, true, None, Vec::new(), step.actions);
        Ok((record, Some(handle)))
    }

    pub async fn describe_execution(&self, r: &str) -> Result<ExecutionRecord, WorkflowError> {
        let arn = self.scope.execution_ref(r)?;
        self.shared
            .store
            .get_execution(&arn)
            .await?
            .ok_or(WorkflowError::ExecutionDoesNotExist(arn))
    }

    pub async fn list_executions(
        &self,
        machine: Option<&str>,
        status: Option<&str>,
        max: Option<usize>,
        token: Option<&str>,
    ) -> Result<Page<ExecutionRecord>, WorkflowError> {
        let machine = match machine {
            Some(m) => Some(self.describe_machine(m).await?.arn),
            None => None,
        };
        if let Some(s) = status
            && ![
                "RUNNING",
                "SUCCEEDED",
                "FAILED",
                "TIMED_OUT",
                "ABORTED",
                "PENDING_REDRIVE",
            ]
            .contains(&s)
        {
            return Err(WorkflowError::Validation(format!(
                "1 validation error detected: Value '{s}' at 'statusFilter' failed to satisfy constraint: Member must satisfy enum value set: [RUNNING, SUCCEEDED, FAILED, TIMED_OUT, ABORTED, PENDING_REDRIVE]"
            )));
        }
        let limit = page_size(max, 100)?;
        let rows = self
            .shared
            .store
            .list_executions(ExecutionQuery {
                state_machine_arn: machine,
                status: status.map(str::to_string),
                before_seq: page_token(token)?,
                limit: limit + 1,
            })
            .await?;
        let next = (rows.len() > limit).then(|| rows[limit - 1].0.to_string());
        Ok((rows.into_iter().take(limit).map(|(_, r)| r).collect(), next))
    }

    /// History events, oldest first (or newest first with `reverse`).
    pub async fn history(
        &self,
        r: &str,
        max: Option<usize>,
        token: Option<&str>,
        reverse: bool,
    ) -> Result<Page<StoredEvent>, WorkflowError> {
        let arn = self.scope.execution_ref(r)?;
        let limit = page_size(max, 100)?;
        let after = page_token(token)?.map(|t| t.max(0) as u64);
        let mut events = match self
            .shared
            .store
            .history(&arn, after, limit + 1, reverse)
            .await
        {
            Ok(e) => e,
            Err(nimbus_store::StoreError::NotFound(_)) => {
                return Err(WorkflowError::ExecutionDoesNotExist(arn));
            }
            Err(e) => return Err(e.into()),
        };
        let next = (events.len() > limit).then(|| events[limit - 1].id.to_string());
        events.truncate(limit);
        Ok((events, next))
    }

    /// Stops (aborts) an execution; returns the stop time (epoch ms).
    pub async fn stop(
        &self,
        r: &str,
        error: Option<String>,
        cause: Option<String>,
    ) -> Result<i64, WorkflowError> {
        let arn = self.scope.execution_ref(r)?;
        if let Some(h) = self.shared.handle(&arn) {
            let (reply, answer) = oneshot::channel();
            if h.tx
                .send(Msg::Stop {
                    error,
                    cause,
                    reply,
                })
                .is_ok()
                && let Ok(result) = answer.await
            {
                return result;
            }
        }
        let e = self.describe_execution(&arn).await?;
        match e.stop_ms {
            Some(t) => Ok(t),
            None => Err(WorkflowError::ShuttingDown),
        }
    }
}

/// Stopping takes no new executions and starts no tasks (running steps still
/// persist); draining stops every actor after its write in progress:
/// everything acknowledged is on disk, pending tasks and timers resume at the
/// next start.
#[async_trait::async_trait]
impl crate::lifecycle::Service for Workflows {
    fn name(&self) -> &'static str {
        "workflows"
    }

    fn stop_accepting(&self) {
        self.shared.draining.store(true, Ordering::SeqCst);
    }

    async fn drain(&self, _deadline: tokio::time::Instant) {
        self.shared.draining.store(true, Ordering::SeqCst);
        self.shared.stop.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }

    fn status(&self) -> String {
        format!("{} executions running", self.tracker.len())
    }
}

fn same_json(a: &str, b: &str) -> bool {
    match (
        serde_json::from_str::<Value>(a),
        serde_json::from_str::<Value>(b),
    ) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}
