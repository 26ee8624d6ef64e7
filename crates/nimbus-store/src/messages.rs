//! Durable message queues, topics and event source mappings.
//!
//! Queues (the SQS model: visibility timeouts, delays, receive counts, redrive
//! to a dead-letter queue) and topics with their subscriptions (the SNS model)
//! are storage with a few rules, and the rules that must hold under concurrent
//! receivers (a message is handed to one receiver per visibility period; a
//! redrive moves it exactly once) live here, inside one transaction each. The
//! protocol and policy (attribute validation, MD5s, long polling, fan-out)
//! live in the engine.
//!
//! The contracts: [`QueueCatalog`] (queue definitions) and [`QueueData`]
//! (their messages: send, receive, visibility), [`Topics`] and
//! [`SourceMappings`]. They are the seams a cluster backend (PostgreSQL)
//! implements; a backend pairs a catalog with its data plane (deleting a queue
//! deletes its messages; sending needs the queue; a redrive needs its
//! dead-letter queue to exist). The embedded one is `SqliteMessages`, one
//! SQLite file with group commit implementing all four.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::StoreError;

/// A queue and its attributes (SQS names: `VisibilityTimeout`, `RedrivePolicy`, …).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueRecord {
    pub name: String,
    pub created_ms: i64,
    pub modified_ms: i64,
    pub attributes: BTreeMap<String, String>,
}

/// One message as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub id: String,
    pub body: String,
    /// The message attributes, as the SQS JSON protocol renders them (a JSON object).
    pub attributes: String,
    pub md5_body: String,
    pub md5_attributes: Option<String>,
    pub sent_ms: i64,
    pub sender_id: String,
    /// When it is (or becomes again) visible: delays and visibility timeouts.
    pub visible_ms: i64,
    pub receive_count: u32,
    pub first_receive_ms: Option<i64>,
    /// The token of the latest receive; part of the receipt handle.
    pub receipt: Option<String>,
    /// The queue a redriven message came from.
    pub dead_letter_source: Option<String>,
    /// The sender's trace header (SQS's `AWSTraceHeader`); a mapping that
    /// invokes a function continues its lineage (recursive loop detection).
    pub trace: Option<String>,
}

/// Where messages received too often go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redrive {
    pub max_receive_count: u32,
    pub dead_letter_queue: String,
}

#[derive(Debug, Clone)]
pub struct ReceiveOptions {
    pub now_ms: i64,
    pub max: usize,
    /// How long received messages stay hidden.
    pub visibility_ms: i64,
    pub redrive: Option<Redrive>,
    /// Messages sent longer ago than this are dropped (`MessageRetentionPeriod`).
    pub retention_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VisibilityChange {
    Changed,
    /// The message exists but is not in flight under this receipt.
    NotInflight,
    NotFound,
}

/// (visible, in flight, delayed) message counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueCounts {
    pub visible: u64,
    pub in_flight: u64,
    pub delayed: u64,
}

/// Queue definitions: names and attributes.
#[async_trait]
pub trait QueueCatalog: Send + Sync + 'static {
    /// Creates the queue; when it exists, returns the existing record unchanged.
    async fn create_queue(&self, queue: &QueueRecord) -> Result<QueueRecord, StoreError>;
    async fn get_queue(&self, name: &str) -> Result<Option<QueueRecord>, StoreError>;
    async fn list_queues(&self) -> Result<Vec<QueueRecord>, StoreError>;
    /// Merges attributes into the queue's. Returns whether the queue exists.
    async fn set_queue_attributes(
        &self,
        name: &str,
        attributes: BTreeMap<String, String>,
        now_ms: i64,
    ) -> Result<bool, StoreError>;
    /// Deletes the queue and its messages. Returns whether it existed.
    async fn delete_queue(&self, name: &str) -> Result<bool, StoreError>;
}

/// The messages of the queues of a [`QueueCatalog`].
///
/// A message is *visible* from its `visible_ms` on (its delay); a receive
/// hides it until `now_ms + visibility_ms` under a new receipt and counts the
/// receive, so one message goes to one receiver per visibility period, and a
/// receiver that never deletes it sees it again (at least once). Receives
/// take visible messages oldest-visible first.
#[async_trait]
pub trait QueueData: Send + Sync + 'static {
    /// Durably stores messages (all or none); `NotFound` without the queue.
    async fn send(&self, queue: &str, messages: Vec<StoredMessage>) -> Result<(), StoreError>;
    /// Takes up to `max` visible messages and hides them for the visibility
    /// timeout; messages past the redrive's receive count move to its queue.
    async fn receive(
        &self,
        queue: &str,
        options: ReceiveOptions,
    ) -> Result<Vec<StoredMessage>, StoreError>;
    /// Deletes a message. Returns whether it was there.
    async fn delete_message(&self, queue: &str, id: &str) -> Result<bool, StoreError>;
    /// Makes an in-flight message visible at `visible_ms`, if `receipt` is its latest.
    async fn change_visibility(
        &self,
        queue: &str,
        id: &str,
        receipt: &str,
        visible_ms: i64,
    ) -> Result<VisibilityChange, StoreError>;
    /// Deletes every message of the queue; returns how many.
    async fn purge(&self, queue: &str) -> Result<u64, StoreError>;
    async fn counts(&self, queue: &str, now_ms: i64) -> Result<QueueCounts, StoreError>;
    /// When the next hidden or delayed message becomes visible.
    async fn next_visible(&self, queue: &str, now_ms: i64) -> Result<Option<i64>, StoreError>;
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicRecord {
    pub name: String,
    pub created_ms: i64,
    pub attributes: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionRecord {
    pub arn: String,
    pub topic: String,
    /// `lambda` or `sqs`.
    pub protocol: String,
    /// A function ARN or a queue ARN.
    pub endpoint: String,
    /// `FilterPolicy`, `FilterPolicyScope`, `RawMessageDelivery`, …
    pub attributes: BTreeMap<String, String>,
    pub created_ms: i64,
}

#[async_trait]
pub trait Topics: Send + Sync + 'static {
    /// Creates the topic; when it exists, returns the existing record
    /// (unchanged: the attributes and time of the first create). Concurrent
    /// creates of one name store one topic and all answer with it.
    async fn create_topic(&self, topic: &TopicRecord) -> Result<TopicRecord, StoreError>;
    async fn get_topic(&self, name: &str) -> Result<Option<TopicRecord>, StoreError>;
    /// Every topic, by name in byte order.
    async fn list_topics(&self) -> Result<Vec<TopicRecord>, StoreError>;
    /// Merges: the given attributes replace those of the same name, the
    /// others stay, and an empty value is stored as one. Returns whether
    /// the topic exists.
    async fn set_topic_attributes(
        &self,
        name: &str,
        attributes: BTreeMap<String, String>,
    ) -> Result<bool, StoreError>;
    /// Deletes the topic and its subscriptions. Returns whether it existed.
    async fn delete_topic(&self, name: &str) -> Result<bool, StoreError>;
    /// Stores a subscription; the same topic, protocol and endpoint again
    /// returns the existing one. `NotFound` without the topic.
    async fn subscribe(&self, sub: &SubscriptionRecord) -> Result<SubscriptionRecord, StoreError>;
    /// Returns whether the subscription existed.
    async fn unsubscribe(&self, arn: &str) -> Result<bool, StoreError>;
    async fn get_subscription(&self, arn: &str) -> Result<Option<SubscriptionRecord>, StoreError>;
    /// All subscriptions, or one topic's, by creation time then ARN.
    async fn list_subscriptions(
        &self,
        topic: Option<&str>,
    ) -> Result<Vec<SubscriptionRecord>, StoreError>;
    /// Merges: the given attributes replace those of the same name, the
    /// others stay, and an empty value removes the attribute (clearing a
    /// `FilterPolicy`). Returns whether the subscription exists.
    async fn set_subscription_attributes(
        &self,
        arn: &str,
        attributes: BTreeMap<String, String>,
    ) -> Result<bool, StoreError>;
}

/// An event source mapping; its settings are the engine's JSON document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMapping {
    pub uuid: String,
    pub function: String,
    pub source_arn: String,
    pub config: String,
}

#[async_trait]
pub trait SourceMappings: Send + Sync + 'static {
    /// Inserts or replaces (every field) the mapping with `mapping.uuid`.
    /// Which sources feed which functions is the engine's rule, not checked here.
    async fn put_mapping(&self, mapping: &StoredMapping) -> Result<(), StoreError>;
    async fn get_mapping(&self, uuid: &str) -> Result<Option<StoredMapping>, StoreError>;
    /// Every mapping, by UUID in byte order.
    async fn list_mappings(&self) -> Result<Vec<StoredMapping>, StoreError>;
    /// Returns whether the mapping existed.
    async fn delete_mapping(&self, uuid: &str) -> Result<bool, StoreError>;
}
