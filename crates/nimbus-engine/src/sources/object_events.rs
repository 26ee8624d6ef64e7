//! Bucket notifications: an object written or removed runs the functions its
//! bucket's rules name.
//!
//! The S3 API (PutBucketNotificationConfiguration) parses and renders the
//! XML configuration and stores the bucket's `LambdaFunctionConfigurations`
//! as [`Rule`]s, JSON the store does not interpret. Everything after that is
//! an event source like the others and lives here: which rules an event
//! matches, the S3 event record, and delivery through the [`Dispatcher`].
//!
//! # A transactional outbox
//!
//! Why: delivering after the object's commit left a window where the
//! object was stored (and visible) but a crash lost its event. Now the S3
//! write asks [`ObjectEvents::notifications`] which rules the write
//! triggers *before* it commits, and the object store keeps them in an
//! outbox in the object's own transaction (see `nimbus_store::objects`):
//! the object and its events commit together or not at all.
//!
//! The relay ([`ObjectEvents`] as a [`Service`]) then claims outbox entries
//! under a lease, enqueues each event durably through the dispatcher and
//! removes the entry. Any node's relay may take any entry (the claim is
//! exclusive while leased), and an entry a dead relay claimed comes due
//! again when its lease ends. A local write wakes the relay at once; it also
//! polls every [`POLL_EVERY`] for entries other nodes left.
//!
//! Delivery is at least once: a relay that dies between the enqueue and the
//! removal delivers the event again. Everything in the event record is
//! derived from the stored entry, so a redelivery is the same event: the
//! request id the function runs under and the record's
//! `responseElements.x-amz-request-id` are the entry's id, and the event
//! time and sequencer are the write's commit time.

use std::sync::Arc;
use std::time::Duration;

use nimbus_core::policy::ArnScope;
use nimbus_core::{FunctionName, InvocationId, Target};
use nimbus_store::{BucketInfo, Notification, ObjectStore, PendingNotification};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::EngineError;
use crate::dispatch::{Call, DispatchError, Dispatcher};
use crate::lifecycle::{Context, Service, ServiceError};
use crate::messaging::DeliveryGrants;

/// How often the relay looks for entries no local write woke it for (other
/// nodes', or ones whose lease ended).
pub const POLL_EVERY: Duration = Duration::from_secs(1);
/// How long a claimed entry is the claiming relay's alone. Delivery is one
/// durable enqueue, far shorter; past it, another relay takes the entry.
const LEASE: Duration = Duration::from_secs(30);
/// Entries claimed (and delivered concurrently) at once.
const BATCH: usize = 64;
/// The region of events whose request named none.
const DEFAULT_REGION: &str = "us-east-1";

/// One stored `LambdaFunctionConfiguration`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub function_arn: String,
    pub events: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suffix: Option<String>,
    /// The function whose credentials set this rule, if one did: each
    /// delivery re-checks that it may still invoke the target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creator: Option<String>,
}

impl Rule {
    /// Whether `event` (`ObjectCreated:Put`) on `key` triggers this rule.
    pub fn matches(&self, event: &str, key: &str) -> bool {
        let (family, _) = event.split_once(':').unwrap_or((event, ""));
        let wanted = self.events.iter().any(|e| {
            let e = e.strip_prefix("s3:").unwrap_or(e);
            e == event || e == format!("{family}:*")
        });
        wanted
            && self.prefix.as_deref().is_none_or(|p| key.starts_with(p))
            && self.suffix.as_deref().is_none_or(|s| key.ends_with(s))
    }

    /// (function name, qualifier) from `arn:aws:lambda:<r>:<a>:function:<name>[:<q>]` or a name.
    pub fn target(&self) -> Option<(FunctionName, Option<String>)> {
        let rest = match self.function_arn.split_once(":function:") {
            Some((_, rest)) => rest,
            None => self.function_arn.as_str(),
        };
        let (name, qualifier) = match rest.split_once(':') {
            Some((n, q)) => (n, Some(q.to_string())),
            None => (rest, None),
        };
        name.parse().ok().map(|n| (n, qualifier))
    }
}

/// The rules stored with a bucket (none when it has none, or they are unreadable).
pub fn stored_rules(bucket: &BucketInfo) -> Vec<Rule> {
    bucket
        .notifications
        .as_deref()
        .and_then(|j| serde_json::from_str(j).ok())
        .unwrap_or_default()
}

/// A key as S3 writes it into event records: form-encoded (space → `+`),
/// `/` and unreserved characters kept.
pub fn event_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' | b'*' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// What an outbox entry says beyond the write itself: the rule it matched,
/// the event, and the context of the request that made it (its
/// [`Notification::detail`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Detail {
    pub rule: Rule,
    /// `ObjectCreated:Put`, `ObjectRemoved:Delete`, …
    pub event: String,
    pub region: String,
    /// The trace the writing function was continuing: a function writing
    /// while it handles an event passes that event's chain on, so a bucket
    /// feeding the function that writes to it is stopped as a recursive
    /// loop like a queue or a topic. Taken at the write: the function may
    /// have finished by the time the entry is relayed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
}

/// The S3 event record (event formats §4) of a stored notification: the
/// same for every delivery of it.
pub fn record(entry: &PendingNotification, detail: &Detail) -> serde_json::Value {
    let committed = chrono::DateTime::from_timestamp_millis(entry.committed_ms).unwrap_or_default();
    let mut obj = serde_json::json!({
        "key": event_key(&entry.key),
        "sequencer": format!("{:016X}", entry.committed_ms.max(0) as u64 * 1_000_000),
    });
    if let Some(o) = &entry.object {
        obj["size"] = o.size.into();
        obj["eTag"] = o.etag.clone().into();
    }
    let bucket = &entry.bucket;
    serde_json::json!({"Records": [{
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": detail.region,
        "eventTime": committed.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        "eventName": detail.event,
        "userIdentity": {"principalId": "nimbus"},
        "requestParameters": {"sourceIPAddress": "127.0.0.1"},
        "responseElements": {
            "x-amz-request-id": entry.id,
            "x-amz-id-2": "nimbus",
        },
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": detail.rule.id.clone().unwrap_or_default(),
            "bucket": {
                "name": bucket,
                "ownerIdentity": {"principalId": "nimbus"},
                "arn": format!("arn:aws:s3:::{bucket}"),
            },
            "object": obj,
        },
    }]})
}

/// What became of one relayed entry.
enum Relayed {
    /// Enqueued, or never deliverable (its rule names no function, its
    /// creator lost the grant, …): remove it.
    Done,
    /// Failed for now (the store, a shutdown): left to come due again.
    Retry,
}

/// The event source: matches a write against its bucket's rules (before the
/// write commits) and relays the stored events to the functions the rules
/// name. See the module docs.
pub struct ObjectEvents {
    dispatcher: Arc<Dispatcher>,
    /// Re-checks the grant of the function that set a rule up.
    grants: Arc<DeliveryGrants>,
    arns: ArnScope,
    objects: Arc<dyn ObjectStore>,
    /// Set by a local write that stored notifications.
    wake: Notify,
    /// How long the relay waits after starting before it relays anything.
    hold: Duration,
}

impl ObjectEvents {
    pub fn new(
        dispatcher: Arc<Dispatcher>,
        grants: Arc<DeliveryGrants>,
        arns: ArnScope,
        objects: Arc<dyn ObjectStore>,
    ) -> Self {
        Self {
            dispatcher,
            grants,
            arns,
            objects,
            wake: Notify::new(),
            hold: Duration::ZERO,
        }
    }

    /// Relays nothing until `hold` after the relay starts (tests: a crash
    /// between an acknowledged write and its delivery).
    pub fn with_hold(mut self, hold: Duration) -> Self {
        self.hold = hold;
        self
    }

    /// The notifications a write of `event` on `bucket`/`key` triggers, for
    /// the object store to keep with the write. `writer` is the function
    /// whose credentials make the change, if one does, and `sent` the trace
    /// header its request came with.
    pub fn notifications(
        &self,
        writer: Option<&str>,
        sent: Option<&str>,
        bucket: &BucketInfo,
        event: &str,
        key: &str,
        region: Option<&str>,
    ) -> Vec<Notification> {
        let rules: Vec<Rule> = stored_rules(bucket)
            .into_iter()
            .filter(|r| r.matches(event, key))
            .collect();
        if rules.is_empty() {
            return Vec::new();
        }
        // A function writing while it handles an event passes that event's
        // chain on, so a bucket feeding the function that writes to it is
        // stopped as a recursive loop like a queue or a topic.
        let trace = writer.and_then(|f| self.dispatcher.chain_of(f, sent));
        rules
            .into_iter()
            .map(|rule| {
                let detail = Detail {
                    rule,
                    event: event.to_string(),
                    region: region.unwrap_or(DEFAULT_REGION).to_string(),
                    trace: trace.clone(),
                };
                Notification::new(
                    InvocationId::new().as_str(),
                    serde_json::to_string(&detail).expect("a detail serializes"),
                )
            })
            .collect()
    }

    /// Tells the relay that a write stored notifications.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Relays every entry due now, a batch at a time.
    async fn relay_due(&self) {
        loop {
            let batch = match self.objects.claim_notifications(BATCH, LEASE).await {
                Ok(batch) => batch,
                Err(e) => {
                    tracing::warn!("claiming S3 notifications failed: {e}");
                    return;
                }
            };
            let full = batch.len() == BATCH;
            let relayed = futures::future::join_all(batch.iter().map(|n| self.relay(n))).await;
            let done: Vec<String> = batch
                .into_iter()
                .zip(relayed)
                .filter(|(_, r)| matches!(r, Relayed::Done))
                .map(|(n, _)| n.id)
                .collect();
            if let Err(e) = self.objects.remove_notifications(&done).await {
                // They come due again and are delivered once more.
                tracing::warn!("removing delivered S3 notifications failed: {e}");
                return;
            }
            if !full {
                return;
            }
        }
    }

    /// Enqueues (durably) the event of one stored notification.
    async fn relay(&self, entry: &PendingNotification) -> Relayed {
        let what = format!(
            "S3 notification {} for {}/{}",
            entry.id, entry.bucket, entry.key
        );
        let detail: Detail = match serde_json::from_str(&entry.detail) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!("{what} is unreadable and was dropped: {e}");
                return Relayed::Done;
            }
        };
        let Some((function, qualifier)) = detail.rule.target() else {
            return Relayed::Done;
        };
        let target = Target::function(function.as_str(), qualifier);
        let allowed = self.grants.still_allowed(
            detail.rule.creator.as_deref(),
            "lambda:InvokeFunction",
            &target.arn(&self.arns),
            &format!("{} {what}", detail.event),
        );
        if !allowed {
            return Relayed::Done;
        }
        let mut call = Call::new(target, record(entry, &detail).to_string());
        call.request_id = Some(InvocationId::from(entry.id.clone()));
        call.on_behalf_of = detail.rule.creator.clone();
        call.trace = detail.trace.clone();
        match self.dispatcher.enqueue(call).await {
            Ok(_) => Relayed::Done,
            Err(e) if is_transient(&e) => {
                tracing::warn!("{what} to {function} not delivered yet: {e}");
                Relayed::Retry
            }
            Err(e) => {
                tracing::warn!("{what} to {function} not delivered: {e}");
                Relayed::Done
            }
        }
    }
}

/// Whether a failed enqueue may succeed later as it is.
fn is_transient(e: &DispatchError) -> bool {
    matches!(
        e,
        DispatchError::Function(
            EngineError::Store(_) | EngineError::ShuttingDown | EngineError::TooManyRequests { .. }
        )
    )
}

#[async_trait::async_trait]
impl Service for ObjectEvents {
    fn name(&self) -> &'static str {
        "S3 notification relay"
    }

    async fn run(self: Arc<Self>, ctx: Context) -> Result<(), ServiceError> {
        tokio::select! {
            _ = ctx.cancel.cancelled() => return Ok(()),
            _ = tokio::time::sleep(self.hold) => {}
        }
        loop {
            self.relay_due().await;
            tokio::select! {
                _ = ctx.cancel.cancelled() => return Ok(()),
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(POLL_EVERY) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(events: &[&str], prefix: Option<&str>, suffix: Option<&str>) -> Rule {
        Rule {
            id: None,
            function_arn: "arn:aws:lambda:us-east-1:000000000000:function:thumb:live".into(),
            events: events.iter().map(|e| e.to_string()).collect(),
            prefix: prefix.map(Into::into),
            suffix: suffix.map(Into::into),
            creator: None,
        }
    }

    #[test]
    fn rules_match_events_and_filters() {
        let r = rule(&["s3:ObjectCreated:*"], Some("in/"), Some(".jpg"));
        assert!(r.matches("ObjectCreated:Put", "in/a.jpg"));
        assert!(r.matches("ObjectCreated:CompleteMultipartUpload", "in/a.jpg"));
        assert!(!r.matches("ObjectRemoved:Delete", "in/a.jpg"));
        assert!(!r.matches("ObjectCreated:Put", "out/a.jpg"));
        assert!(!r.matches("ObjectCreated:Put", "in/a.png"));
        let exact = rule(&["s3:ObjectRemoved:Delete"], None, None);
        assert!(exact.matches("ObjectRemoved:Delete", "x"));
        assert!(!exact.matches("ObjectCreated:Put", "x"));
        let (name, q) = r.target().unwrap();
        assert_eq!((name.as_str(), q.as_deref()), ("thumb", Some("live")));
    }

    #[test]
    fn event_keys_are_form_encoded() {
        assert_eq!(
            event_key("2025/summer trip(1).jpg"),
            "2025/summer+trip%281%29.jpg"
        );
        assert_eq!(event_key("a+b"), "a%2Bb");
    }

    #[test]
    fn records_follow_the_reference_shape() {
        let entry = PendingNotification {
            id: "0190a1b2-0000-7000-8000-000000000001".into(),
            bucket: "photos".into(),
            key: "a b".into(),
            object: Some(nimbus_store::CreatedObject {
                size: 5,
                etag: "abc".into(),
            }),
            committed_ms: 1_700_000_000_123,
            detail: String::new(),
            claims: 1,
        };
        let detail = Detail {
            rule: rule(&["s3:ObjectCreated:*"], None, None),
            event: "ObjectCreated:Put".into(),
            region: "eu-west-1".into(),
            trace: None,
        };
        let v = record(&entry, &detail);
        let rec = &v["Records"][0];
        assert_eq!(rec["eventSource"], "aws:s3");
        assert_eq!(rec["eventName"], "ObjectCreated:Put");
        assert_eq!(rec["awsRegion"], "eu-west-1");
        assert_eq!(rec["eventTime"], "2023-11-14T22:13:20.123Z");
        assert_eq!(
            rec["responseElements"]["x-amz-request-id"],
            entry.id.as_str()
        );
        assert_eq!(rec["s3"]["bucket"]["arn"], "arn:aws:s3:::photos");
        assert_eq!(rec["s3"]["object"]["key"], "a+b");
        assert_eq!(rec["s3"]["object"]["size"], 5);
        assert_eq!(rec["s3"]["object"]["eTag"], "abc");
        assert_eq!(v, record(&entry, &detail), "a redelivery is the same event");
        let removed = PendingNotification {
            object: None,
            ..entry
        };
        let v = record(&removed, &detail);
        assert!(v["Records"][0]["s3"]["object"].get("size").is_none());
    }
}
