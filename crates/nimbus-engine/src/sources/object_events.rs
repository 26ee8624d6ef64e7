//! Bucket notifications: an object written or removed runs the functions its
//! bucket's rules name.
//!
//! The S3 API (PutBucketNotificationConfiguration) parses and renders the
//! XML configuration and stores the bucket's `LambdaFunctionConfigurations`
//! as [`Rule`]s, JSON the store does not interpret. Everything after that is
//! an event source like the others and lives here: which rules an event
//! matches, the S3 event record, and delivery through the [`Dispatcher`].
//!
//! Ordering: the object is committed first (fsynced data, committed row),
//! then each matching rule's S3 event record goes through the dispatcher's
//! async mode, which returns once the event is durably in the queue, and
//! only then is the response sent. So an acknowledged write's notification
//! is never lost; a crash between commit and enqueue loses the event of a
//! write that was not acknowledged (the client retries it, S3's
//! at-least-once in spirit).

use std::sync::Arc;

use nimbus_core::policy::ArnScope;
use nimbus_core::{FunctionName, Target};
use nimbus_store::{BucketInfo, ObjectMeta};
use serde::{Deserialize, Serialize};

use crate::dispatch::{Call, Dispatcher};
use crate::messaging::DeliveryGrants;

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

/// The S3 event record (event formats §4).
pub fn record(
    rule: &Rule,
    bucket: &str,
    event: &str,
    key: &str,
    object: Option<&ObjectMeta>,
    region: &str,
) -> serde_json::Value {
    let now = chrono::Utc::now();
    let mut obj = serde_json::json!({
        "key": event_key(key),
        "sequencer": format!("{:016X}", now.timestamp_nanos_opt().unwrap_or_default()),
    });
    if let Some(o) = object {
        obj["size"] = o.size.into();
        obj["eTag"] = o.etag.clone().into();
    }
    serde_json::json!({"Records": [{
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": region,
        "eventTime": now.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        "eventName": event,
        "userIdentity": {"principalId": "nimbus"},
        "requestParameters": {"sourceIPAddress": "127.0.0.1"},
        "responseElements": {
            "x-amz-request-id": uuid::Uuid::new_v4().simple().to_string().to_uppercase(),
            "x-amz-id-2": "nimbus",
        },
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": rule.id.clone().unwrap_or_default(),
            "bucket": {
                "name": bucket,
                "ownerIdentity": {"principalId": "nimbus"},
                "arn": format!("arn:aws:s3:::{bucket}"),
            },
            "object": obj,
        },
    }]})
}

/// The event source: delivers a bucket's events to the functions its rules name.
pub struct ObjectEvents {
    dispatcher: Arc<Dispatcher>,
    /// Re-checks the grant of the function that set a rule up.
    grants: Arc<DeliveryGrants>,
    arns: ArnScope,
}

impl ObjectEvents {
    pub fn new(dispatcher: Arc<Dispatcher>, grants: Arc<DeliveryGrants>, arns: ArnScope) -> Self {
        Self {
            dispatcher,
            grants,
            arns,
        }
    }

    /// Enqueues (durably) the event for every matching rule of `bucket`.
    /// `writer` is the function whose credentials made the change, if one
    /// did, and `sent` the trace header its request came with. Failures are
    /// logged: the write itself has already succeeded.
    #[expect(clippy::too_many_arguments, reason = "the write's facts, each its own")]
    pub async fn notify(
        &self,
        writer: Option<&str>,
        sent: Option<&str>,
        bucket: &BucketInfo,
        event: &str,
        key: &str,
        object: Option<&ObjectMeta>,
        region: Option<&str>,
    ) {
        for rule in stored_rules(bucket) {
            if !rule.matches(event, key) {
                continue;
            }
            let Some((function, qualifier)) = rule.target() else {
                continue;
            };
            let target = Target::function(function.as_str(), qualifier);
            if !self.grants.still_allowed(
                rule.creator.as_deref(),
                "lambda:InvokeFunction",
                &target.arn(&self.arns),
                &format!("S3 notification {event} for {}/{key}", bucket.name),
            ) {
                continue;
            }
            let payload = record(
                &rule,
                &bucket.name,
                event,
                key,
                object,
                region.unwrap_or("us-east-1"),
            );
            let mut call = Call::new(target, payload.to_string());
            call.on_behalf_of = rule.creator.clone();
            // A function writing while it handles an event passes that event's
            // chain on, so a bucket feeding the function that writes to it is
            // stopped as a recursive loop like a queue or a topic.
            call.trace = writer.and_then(|f| self.dispatcher.chain_of(f, sent));
            if let Err(e) = self.dispatcher.enqueue(call).await {
                tracing::warn!(
                    "S3 notification {event} for {}/{key} to {function} not delivered: {e}",
                    bucket.name
                );
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
        let meta = ObjectMeta {
            key: "a b".into(),
            size: 5,
            etag: "abc".into(),
            modified_ms: 0,
            attrs: Default::default(),
        };
        let r = rule(&["s3:ObjectCreated:*"], None, None);
        let v = record(
            &r,
            "photos",
            "ObjectCreated:Put",
            "a b",
            Some(&meta),
            "eu-west-1",
        );
        let rec = &v["Records"][0];
        assert_eq!(rec["eventSource"], "aws:s3");
        assert_eq!(rec["awsRegion"], "eu-west-1");
        assert_eq!(rec["s3"]["bucket"]["arn"], "arn:aws:s3:::photos");
        assert_eq!(rec["s3"]["object"]["key"], "a+b");
        assert_eq!(rec["s3"]["object"]["size"], 5);
        assert_eq!(rec["s3"]["object"]["eTag"], "abc");
        let removed = record(&r, "photos", "ObjectRemoved:Delete", "k", None, "us-east-1");
        assert!(removed["Records"][0]["s3"]["object"].get("size").is_none());
    }
}
