//! Queues with the SQS rules: attribute validation and defaults, message size
//! and content checks, MD5s, delays, visibility, long polling and redrive.
//!
//! Long polling: every receive that finds nothing waits on the queue's
//! `Notify` (armed before the receive, so a send in between is not missed) or
//! until the next hidden or delayed message becomes visible, whichever comes
//! first, up to its wait time. Shutdown ends every wait at once.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nimbus_store::{
    QueueCatalog, QueueCounts, QueueData, QueueRecord, ReceiveOptions, Redrive, StoreError,
    StoredMessage, VisibilityChange,
};
use serde_json::Value;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::attributes::{self, Attributes};
use super::{ArnScope, MessagingError, arn_resource};

const DEFAULT_VISIBILITY_S: u32 = 30;
const DEFAULT_MAX_SIZE: u32 = 262_144;
const DEFAULT_RETENTION_S: u32 = 345_600;
/// Longest wait of one receive (SQS: 20 s).
pub const MAX_WAIT: Duration = Duration::from_secs(20);

/// Attributes a caller may set, with their bounds.
const SETTABLE: &[(&str, u32, u32)] = &[
    ("DelaySeconds", 0, 900),
    ("MaximumMessageSize", 1024, 1_048_576),
    ("MessageRetentionPeriod", 60, 1_209_600),
    ("ReceiveMessageWaitTimeSeconds", 0, 20),
    ("VisibilityTimeout", 0, 43_200),
];
/// Accepted and stored, with no effect here.
const OPAQUE: &[&str] = &[
    "Policy",
    "KmsMasterKeyId",
    "KmsDataKeyReusePeriodSeconds",
    "SqsManagedSseEnabled",
];

/// A queue's effective settings (defaults filled in).
#[derive(Debug, Clone)]
pub struct QueueSettings {
    pub visibility_s: u32,
    pub delay_s: u32,
    pub max_size: u32,
    pub retention_s: u32,
    pub receive_wait_s: u32,
    pub redrive: Option<Redrive>,
}

impl QueueSettings {
    pub fn of(q: &QueueRecord) -> Self {
        let num = |k: &str, d: u32| {
            q.attributes
                .get(k)
                .and_then(|v| v.parse().ok())
                .unwrap_or(d)
        };
        Self {
            visibility_s: num("VisibilityTimeout", DEFAULT_VISIBILITY_S),
            delay_s: num("DelaySeconds", 0),
            max_size: num("MaximumMessageSize", DEFAULT_MAX_SIZE),
            retention_s: num("MessageRetentionPeriod", DEFAULT_RETENTION_S),
            receive_wait_s: num("ReceiveMessageWaitTimeSeconds", 0),
            redrive: q
                .attributes
                .get("RedrivePolicy")
                .and_then(|p| parse_redrive(p).ok()),
        }
    }
}

fn parse_redrive(policy: &str) -> Result<Redrive, MessagingError> {
    let bad =
        |why: &str| MessagingError::InvalidAttributeValue("RedrivePolicy".into(), why.to_string());
    let v: Value = serde_json::from_str(policy).map_err(|_| bad("must be a JSON object"))?;
    let arn = v
        .get("deadLetterTargetArn")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("deadLetterTargetArn is required"))?;
    let queue =
        arn_resource(arn, "sqs").ok_or_else(|| bad("deadLetterTargetArn is not a queue ARN"))?;
    let count = match v.get("maxReceiveCount") {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.parse().ok(),
        _ => None,
    }
    .filter(|n| (1..=1000).contains(n))
    .ok_or_else(|| bad("maxReceiveCount must be between 1 and 1000"))?;
    Ok(Redrive {
        max_receive_count: count as u32,
        dead_letter_queue: queue.to_string(),
    })
}

/// One message to send.
#[derive(Debug, Clone, Default)]
pub struct SendRequest {
    pub body: String,
    pub attributes: Attributes,
    pub delay_s: Option<u32>,
    pub sender_id: String,
    /// The sender's trace header (recursive loop detection).
    pub trace: Option<String>,
}

impl SendRequest {
    pub fn body(body: String, sender_id: &str) -> Self {
        Self {
            body,
            sender_id: sender_id.to_string(),
            ..Self::default()
        }
    }
}

#[derive(Debug, Clone)]
pub struct Sent {
    pub id: String,
    pub md5_body: String,
    pub md5_attributes: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct ReceiveRequest {
    pub max: usize,
    pub visibility_s: Option<u32>,
    /// `None`: the queue's `ReceiveMessageWaitTimeSeconds`.
    pub wait: Option<Duration>,
}

/// A received message and the handle that deletes it.
#[derive(Debug, Clone)]
pub struct Received {
    pub message: StoredMessage,
    pub receipt_handle: String,
}

impl Received {
    pub fn attributes(&self) -> Attributes {
        stored_attributes(&self.message.attributes)
    }
}

fn stored_attributes(json: &str) -> Attributes {
    serde_json::from_str::<Value>(json)
        .ok()
        .and_then(|v| attributes::from_sqs_json(Some(&v)).ok())
        .unwrap_or_default()
}

pub struct Queues {
    catalog: Arc<dyn QueueCatalog>,
    /// The messages of `catalog`'s queues.
    data: Arc<dyn QueueData>,
    pub arns: ArnScope,
    arrivals: Mutex<HashMap<String, Arc<Notify>>>,
    stop: CancellationToken,
    grants: Arc<super::DeliveryGrants>,
    /// Wall time.
    clock: nimbus_core::Clock,
}

/// Which source queues may use a queue as their dead-letter queue
/// (`RedriveAllowPolicy`, as SQS defines it): `allowAll` (also the default,
/// when the attribute is absent), `denyAll`, or `byQueue` with 1 to 10
/// `sourceQueueArns`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedriveAllow {
    AllowAll,
    DenyAll,
    ByQueue(Vec<String>),
}

impl RedriveAllow {
    pub fn parse(policy: &str) -> Result<RedriveAllow, MessagingError> {
        let bad = |why: &str| {
            MessagingError::InvalidAttributeValue("RedriveAllowPolicy".into(), why.to_string())
        };
        let v: Value = serde_json::from_str(policy).map_err(|_| bad("must be a JSON object"))?;
        let arns = v.get("sourceQueueArns");
        match v.get("redrivePermission").and_then(Value::as_str) {
            Some("allowAll") | Some("denyAll") if arns.is_some() => Err(bad(
                "sourceQueueArns is allowed only when redrivePermission is byQueue",
            )),
            Some("allowAll") => Ok(RedriveAllow::AllowAll),
            Some("denyAll") => Ok(RedriveAllow::DenyAll),
            Some("byQueue") => {
                let list: Vec<String> = arns
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default();
                if list.is_empty() || list.len() > 10 {
                    return Err(bad("byQueue needs 1 to 10 sourceQueueArns"));
                }
                Ok(RedriveAllow::ByQueue(list))
            }
            _ => Err(bad(
                "redrivePermission must be allowAll, denyAll or byQueue",
            )),
        }
    }

    /// The policy of a queue record (absent or unreadable: `allowAll`, the
    /// default; unreadable ones are refused when set).
    pub fn of(q: &QueueRecord) -> RedriveAllow {
        q.attributes
            .get("RedriveAllowPolicy")
            .and_then(|p| RedriveAllow::parse(p).ok())
            .unwrap_or(RedriveAllow::AllowAll)
    }

    pub fn allows(&self, source_arn: &str) -> bool {
        match self {
            RedriveAllow::AllowAll => true,
            RedriveAllow::DenyAll => false,
            RedriveAllow::ByQueue(arns) => arns.iter().any(|a| a == source_arn),
        }
    }
}

pub fn valid_queue_name(name: &str) -> bool {
    (1..=80).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

impl Queues {
    pub fn new(
        catalog: Arc<dyn QueueCatalog>,
        data: Arc<dyn QueueData>,
        arns: ArnScope,
        grants: Arc<super::DeliveryGrants>,
    ) -> Self {
        Self {
            catalog,
            data,
            arns,
            arrivals: Mutex::new(HashMap::new()),
            stop: CancellationToken::new(),
            grants,
            clock: nimbus_core::Clock::system(),
        }
    }

    /// Ends every long poll now and refuses new waits.
    pub fn shutdown(&self) {
        self.stop.cancel();
    }

    fn arrivals(&self, queue: &str) -> Arc<Notify> {
        let mut m = self.arrivals.lock().unwrap_or_else(|p| p.into_inner());
        m.entry(queue.to_string()).or_default().clone()
    }

    fn arrived(&self, queue: &str) {
        self.arrivals(queue).notify_waiters();
    }

    /// Wakes the long polls waiting on `queue` on this node, if any, to look
    /// again (messages were sent, or the queue changed, through another node).
    fn wake(&self, queue: &str) {
        let arrivals = self.arrivals.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(waiting) = arrivals.get(queue) {
            waiting.notify_waiters();
        }
    }

    /// Wakes every long poll on this node to look again.
    fn wake_all(&self) {
        let arrivals = self.arrivals.lock().unwrap_or_else(|p| p.into_inner());
        for waiting in arrivals.values() {
            waiting.notify_waiters();
        }
    }

    /// Checks attributes to set on the queue `source`; returns them
    /// normalised. A RedrivePolicy records `creator` (the function whose
    /// credentials set it; none for operators), so delivery can re-check it.
    async fn check_attributes(
        &self,
        source: &str,
        attrs: &BTreeMap<String, String>,
        creator: Option<&str>,
    ) -> Result<BTreeMap<String, String>, MessagingError> {
        let mut out = BTreeMap::new();
        for (k, v) in attrs {
            if let Some((_, lo, hi)) = SETTABLE.iter().find(|(n, ..)| n == k) {
                let n: u32 = v.trim().parse().map_err(|_| {
                    MessagingError::InvalidAttributeValue(
                        k.clone(),
                        format!("'{v}' is not a number"),
                    )
                })?;
                if !(*lo..=*hi).contains(&n) {
                    return Err(MessagingError::InvalidAttributeValue(
                        k.clone(),
                        format!("must be between {lo} and {hi}"),
                    ));
                }
                out.insert(k.clone(), n.to_string());
            } else if k == "RedrivePolicy" {
                if !v.is_empty() {
                    let r = parse_redrive(v)?;
                    let Some(dlq) = self.catalog.get_queue(&r.dead_letter_queue).await? else {
                        return Err(MessagingError::InvalidAttributeValue(
                            k.clone(),
                            "Dead letter target does not exist.".into(),
                        ));
                    };
                    if !RedriveAllow::of(&dlq).allows(&self.arns.queue_arn(source)) {
                        return Err(MessagingError::InvalidAttributeValue(
                            k.clone(),
                            format!(
                                "the dead-letter queue {}'s RedriveAllowPolicy does not allow {source} as a source queue",
                                dlq.name
                            ),
                        ));
                    }
                }
                out.insert(k.clone(), v.clone());
                // An empty creator (operator) clears a function's record.
                out.insert(
                    super::CREATOR_ATTRIBUTE.into(),
                    creator.unwrap_or_default().into(),
                );
            } else if k == "RedriveAllowPolicy" {
                if !v.is_empty() {
                    RedriveAllow::parse(v)?;
                }
                out.insert(k.clone(), v.clone());
            } else if k == "FifoQueue" || k == "ContentBasedDeduplication" {
                if v != "false" {
                    return Err(MessagingError::InvalidAttributeValue(
                        k.clone(),
                        "FIFO queues are not supported by Nimbus".into(),
                    ));
                }
            } else if OPAQUE.contains(&k.as_str()) {
                out.insert(k.clone(), v.clone());
            } else {
                return Err(MessagingError::InvalidAttributeName(k.clone()));
            }
        }
        Ok(out)
    }

    /// Creates a queue; the same name with the same attributes is a success.
    pub async fn create(
        &self,
        name: &str,
        attrs: &BTreeMap<String, String>,
        creator: Option<&str>,
    ) -> Result<QueueRecord, MessagingError> {
        if !valid_queue_name(name) {
            return Err(MessagingError::InvalidParameter(
                "Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length".into(),
            ));
        }
        let mut attributes = self.check_attributes(name, attrs, creator).await?;
        if attributes
            .get(super::CREATOR_ATTRIBUTE)
            .is_some_and(String::is_empty)
        {
            attributes.remove(super::CREATOR_ATTRIBUTE);
        }
        let now = self.clock.now_ms();
        let record = QueueRecord {
            name: name.to_string(),
            created_ms: now,
            modified_ms: now,
            attributes: attributes.clone(),
        };
        let stored = self.catalog.create_queue(&record).await?;
        if stored.created_ms != now || stored.attributes != attributes {
            let current = self.attributes_of(&stored, &[]).await?;
            for (k, v) in &attributes {
                if k != super::CREATOR_ATTRIBUTE && current.get(k) != Some(v) {
                    return Err(MessagingError::QueueExists(k.clone()));
                }
            }
        }
        Ok(stored)
    }

    pub async fn get(&self, name: &str) -> Result<QueueRecord, MessagingError> {
        self.catalog
            .get_queue(name)
            .await?
            .ok_or_else(|| MessagingError::QueueDoesNotExist(name.to_string()))
    }

    pub async fn list(&self, prefix: &str) -> Result<Vec<QueueRecord>, MessagingError> {
        Ok(self
            .catalog
            .list_queues()
            .await?
            .into_iter()
            .filter(|q| q.name.starts_with(prefix))
            .collect())
    }

    pub async fn delete(&self, name: &str) -> Result<(), MessagingError> {
        if !self.catalog.delete_queue(name).await? {
            return Err(MessagingError::QueueDoesNotExist(name.to_string()));
        }
        self.arrived(name);
        Ok(())
    }

    pub async fn purge(&self, name: &str) -> Result<(), MessagingError> {
        self.get(name).await?;
        self.data.purge(name).await?;
        Ok(())
    }

    pub async fn set_attributes(
        &self,
        name: &str,
        attrs: &BTreeMap<String, String>,
        creator: Option<&str>,
    ) -> Result<(), MessagingError> {
        let attrs = self.check_attributes(name, attrs, creator).await?;
        if !self
            .catalog
            .set_queue_attributes(name, attrs, self.clock.now_ms())
            .await?
        {
            return Err(MessagingError::QueueDoesNotExist(name.to_string()));
        }
        Ok(())
    }

    /// `GetQueueAttributes`: `wanted` empty or containing `All` means every one.
    pub async fn attributes(
        &self,
        name: &str,
        wanted: &[String],
    ) -> Result<BTreeMap<String, String>, MessagingError> {
        let q = self.get(name).await?;
        self.attributes_of(&q, wanted).await
    }

    async fn attributes_of(
        &self,
        q: &QueueRecord,
        wanted: &[String],
    ) -> Result<BTreeMap<String, String>, MessagingError> {
        let s = QueueSettings::of(q);
        let QueueCounts {
            visible,
            in_flight,
            delayed,
        } = self.data.counts(&q.name, self.clock.now_ms()).await?;
        let mut all: BTreeMap<String, String> = q.attributes.clone();
        all.remove(super::CREATOR_ATTRIBUTE);
        for (k, v) in [
            ("VisibilityTimeout", s.visibility_s),
            ("DelaySeconds", s.delay_s),
            ("MaximumMessageSize", s.max_size),
            ("MessageRetentionPeriod", s.retention_s),
            ("ReceiveMessageWaitTimeSeconds", s.receive_wait_s),
        ] {
            all.insert(k.into(), v.to_string());
        }
        all.insert("QueueArn".into(), self.arns.queue_arn(&q.name));
        all.insert("ApproximateNumberOfMessages".into(), visible.to_string());
        all.insert(
            "ApproximateNumberOfMessagesNotVisible".into(),
            in_flight.to_string(),
        );
        all.insert(
            "ApproximateNumberOfMessagesDelayed".into(),
            delayed.to_string(),
        );
        all.insert("CreatedTimestamp".into(), (q.created_ms / 1000).to_string());
        all.insert(
            "LastModifiedTimestamp".into(),
            (q.modified_ms / 1000).to_string(),
        );
        all.entry("SqsManagedSseEnabled".into())
            .or_insert_with(|| "false".into());
        if wanted.is_empty() || wanted.iter().any(|w| w == "All") {
            return Ok(all);
        }
        let known = |w: &str| {
            all.contains_key(w)
                || SETTABLE.iter().any(|(n, ..)| *n == w)
                || OPAQUE.contains(&w)
                || [
                    "RedrivePolicy",
                    "RedriveAllowPolicy",
                    "FifoQueue",
                    "ContentBasedDeduplication",
                ]
                .contains(&w)
        };
        let mut out = BTreeMap::new();
        for w in wanted {
            if !known(w) {
                return Err(MessagingError::InvalidAttributeName(w.clone()));
            }
            if let Some(v) = all.get(w) {
                out.insert(w.clone(), v.clone());
            }
        }
        Ok(out)
    }

    fn build(
        &self,
        settings: &QueueSettings,
        req: SendRequest,
        now: i64,
    ) -> Result<(StoredMessage, Sent), MessagingError> {
        if req.body.is_empty() {
            return Err(MessagingError::InvalidParameter(
                "The request must contain the parameter MessageBody.".into(),
            ));
        }
        let valid_char = |c: char| matches!(c, '\u{9}' | '\u{a}' | '\u{d}' | '\u{20}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}' | '\u{10000}'..);
        if !req.body.chars().all(valid_char) {
            return Err(MessagingError::InvalidParameter(
                "Invalid characters found in the message body.".into(),
            ));
        }
        attributes::validate(&req.attributes)?;
        let size = req.body.len() + attributes::size(&req.attributes);
        if size > settings.max_size as usize {
            return Err(MessagingError::InvalidParameter(format!(
                "One or more parameters are invalid. Reason: Message must be shorter than {} bytes.",
                settings.max_size
            )));
        }
        let delay = req.delay_s.unwrap_or(settings.delay_s);
        if delay > 900 {
            return Err(MessagingError::InvalidParameter(format!(
                "Value {delay} for parameter DelaySeconds is invalid. Reason: must be between 0 and 900."
            )));
        }
        let sent = Sent {
            id: uuid::Uuid::new_v4().to_string(),
            md5_body: attributes::md5_hex(req.body.as_bytes()),
            md5_attributes: attributes::md5_of_attributes(&req.attributes),
        };
        let message = StoredMessage {
            id: sent.id.clone(),
            body: req.body,
            attributes: attributes::to_sqs_json(&req.attributes).to_string(),
            md5_body: sent.md5_body.clone(),
            md5_attributes: sent.md5_attributes.clone(),
            sent_ms: now,
            sender_id: req.sender_id,
            visible_ms: now + i64::from(delay) * 1000,
            receive_count: 0,
            first_receive_ms: None,
            receipt: None,
            dead_letter_source: None,
            trace: req.trace,
        };
        Ok((message, sent))
    }

    pub async fn send(&self, queue: &str, req: SendRequest) -> Result<Sent, MessagingError> {
        self.send_batch(queue, vec![req])
            .await?
            .pop()
            .unwrap_or_else(|| Err(MessagingError::InvalidParameter("nothing sent".into())))
    }

    /// Sends several messages in one durable write; each is checked on its own.
    pub async fn send_batch(
        &self,
        queue: &str,
        reqs: Vec<SendRequest>,
    ) -> Result<Vec<Result<Sent, MessagingError>>, MessagingError> {
        let settings = QueueSettings::of(&self.get(queue).await?);
        let now = self.clock.now_ms();
        let mut results = Vec::with_capacity(reqs.len());
        let mut messages = Vec::new();
        for req in reqs {
            results.push(self.build(&settings, req, now).map(|(m, sent)| {
                messages.push(m);
                sent
            }));
        }
        if !messages.is_empty() {
            self.data.send(queue, messages).await.map_err(|e| match e {
                StoreError::NotFound(_) => MessagingError::QueueDoesNotExist(queue.into()),
                e => e.into(),
            })?;
            self.arrived(queue);
        }
        Ok(results)
    }

    /// Receives, waiting up to the wait time for a first message (long poll);
    /// `cancel` (a stopping poller) ends the wait early.
    pub async fn receive(
        &self,
        queue: &str,
        req: ReceiveRequest,
        cancel: Option<&CancellationToken>,
    ) -> Result<Vec<Received>, MessagingError> {
        let q = self.get(queue).await?;
        let mut settings = QueueSettings::of(&q);
        settings.redrive = self.redrive_allowed(&q, settings.redrive).await?;
        let wait = req
            .wait
            .unwrap_or(Duration::from_secs(settings.receive_wait_s.into()))
            .min(MAX_WAIT);
        let deadline = tokio::time::Instant::now() + wait;
        let arrivals = self.arrivals(queue);
        let never = CancellationToken::new();
        let cancel = cancel.unwrap_or(&never);
        loop {
            let notified = arrivals.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let now = self.clock.now_ms();
            let got = self
                .data
                .receive(
                    queue,
                    ReceiveOptions {
                        now_ms: now,
                        max: req.max.max(1),
                        visibility_ms: i64::from(req.visibility_s.unwrap_or(settings.visibility_s))
                            * 1000,
                        redrive: settings.redrive.clone(),
                        retention_ms: i64::from(settings.retention_s) * 1000,
                    },
                )
                .await?;
            if !got.is_empty() {
                return Ok(got
                    .into_iter()
                    .map(|m| Received {
                        receipt_handle: format!("{}:{}", m.id, m.receipt.as_deref().unwrap_or("")),
                        message: m,
                    })
                    .collect());
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() || self.stop.is_cancelled() || cancel.is_cancelled() {
                return Ok(Vec::new());
            }
            let until_visible = match self.data.next_visible(queue, now).await? {
                Some(t) => Duration::from_millis((t - self.clock.now_ms()).clamp(1, 60_000) as u64),
                None => left,
            };
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep(left.min(until_visible)) => {}
                _ = self.stop.cancelled() => {}
                _ = cancel.cancelled() => {}
            }
        }
    }

    /// The redrive a receive may apply now: none when the dead-letter queue's
    /// RedriveAllowPolicy no longer admits this source, or when the function
    /// that set the redrive may no longer send to the dead-letter queue
    /// (messages then stay in the source queue).
    async fn redrive_allowed(
        &self,
        q: &QueueRecord,
        redrive: Option<Redrive>,
    ) -> Result<Option<Redrive>, MessagingError> {
        let Some(r) = redrive else {
            return Ok(None);
        };
        let Some(dlq) = self.catalog.get_queue(&r.dead_letter_queue).await? else {
            return Ok(Some(r));
        };
        let dlq_arn = self.arns.queue_arn(&dlq.name);
        if !RedriveAllow::of(&dlq).allows(&self.arns.queue_arn(&q.name)) {
            tracing::debug!(
                "redrive from {} to {} skipped: the dead-letter queue's RedriveAllowPolicy does not allow it",
                q.name,
                dlq.name
            );
            return Ok(None);
        }
        let creator = q
            .attributes
            .get(super::CREATOR_ATTRIBUTE)
            .map(String::as_str)
            .filter(|c| !c.is_empty());
        let what = format!("redrive from {} to {}", q.name, dlq.name);
        Ok(self
            .grants
            .setting_allowed(creator, "sqs:SendMessage", &dlq_arn, &what)
            .then_some(r))
    }

    fn parse_handle(handle: &str) -> Result<(&str, &str), MessagingError> {
        handle
            .split_once(':')
            .filter(|(id, r)| !id.is_empty() && !r.is_empty())
            .ok_or_else(|| MessagingError::ReceiptHandleIsInvalid(handle.to_string()))
    }

    pub async fn delete_message(&self, queue: &str, handle: &str) -> Result<(), MessagingError> {
        let (id, _) = Self::parse_handle(handle)?;
        if !self.data.delete_message(queue, id).await? {
            // Already deleted is a success on SQS; a missing queue is not.
            self.get(queue).await?;
        }
        Ok(())
    }

    pub async fn change_visibility(
        &self,
        queue: &str,
        handle: &str,
        timeout_s: u32,
    ) -> Result<(), MessagingError> {
        if timeout_s > 43_200 {
            return Err(MessagingError::InvalidParameter(format!(
                "Value {timeout_s} for parameter VisibilityTimeout is invalid. Reason: Must be between 0 and 43200."
            )));
        }
        let (id, receipt) = Self::parse_handle(handle)?;
        let at = self.clock.now_ms() + i64::from(timeout_s) * 1000;
        match self.data.change_visibility(queue, id, receipt, at).await? {
            VisibilityChange::Changed => {
                if timeout_s == 0 {
                    self.arrived(queue);
                }
                Ok(())
            }
            VisibilityChange::NotInflight => Err(MessagingError::MessageNotInflight),
            VisibilityChange::NotFound => {
                self.get(queue).await?;
                Err(MessagingError::ReceiptHandleIsInvalid(handle.to_string()))
            }
        }
    }
}

/// Long polls follow other nodes' sends: a send through any node wakes the
/// polls waiting on that queue here at once, instead of at their next look.
/// A deleted queue wakes them too, so they find it gone. Queue records are
/// not kept in memory, so there is nothing else to follow.
#[async_trait::async_trait]
impl crate::follow::Follower for Queues {
    fn name(&self) -> &'static str {
        "queue long polls"
    }

    fn follows(&self, kind: nimbus_store::ChangeKind) -> bool {
        matches!(
            kind,
            nimbus_store::ChangeKind::Messages | nimbus_store::ChangeKind::Queue
        )
    }

    async fn changed(
        self: Arc<Self>,
        change: &nimbus_store::Change,
    ) -> Result<(), crate::follow::FollowError> {
        self.wake(&change.key);
        Ok(())
    }

    async fn resync(self: Arc<Self>) -> Result<(), crate::follow::FollowError> {
        self.wake_all();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redrive_allow_policies_follow_sqs() {
        let src = "arn:aws:sqs:us-east-1:000000000000:src";
        let all = RedriveAllow::parse(r#"{"redrivePermission":"allowAll"}"#).unwrap();
        assert!(all.allows(src));
        let none = RedriveAllow::parse(r#"{"redrivePermission":"denyAll"}"#).unwrap();
        assert!(!none.allows(src));
        let by = RedriveAllow::parse(&format!(
            r#"{{"redrivePermission":"byQueue","sourceQueueArns":["{src}"]}}"#
        ))
        .unwrap();
        assert!(by.allows(src));
        assert!(!by.allows("arn:aws:sqs:us-east-1:000000000000:src2"));
        for bad in [
            "not json",
            r#"{"redrivePermission":"some"}"#,
            r#"{"redrivePermission":"byQueue"}"#,
            r#"{"redrivePermission":"byQueue","sourceQueueArns":[]}"#,
            r#"{"redrivePermission":"denyAll","sourceQueueArns":["x"]}"#,
        ] {
            assert!(RedriveAllow::parse(bad).is_err(), "{bad}");
        }
        let eleven: Vec<String> = (0..11)
            .map(|i| format!("\"arn:aws:sqs:r:a:q{i}\""))
            .collect();
        assert!(
            RedriveAllow::parse(&format!(
                r#"{{"redrivePermission":"byQueue","sourceQueueArns":[{}]}}"#,
                eleven.join(",")
            ))
            .is_err()
        );
        // Absent: allowAll, SQS's default.
        let q = QueueRecord {
            name: "dlq".into(),
            created_ms: 0,
            modified_ms: 0,
            attributes: BTreeMap::new(),
        };
        assert_eq!(RedriveAllow::of(&q), RedriveAllow::AllowAll);
    }
}
