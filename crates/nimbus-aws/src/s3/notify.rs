//! Bucket notifications to functions.
//!
//! PutBucketNotificationConfiguration stores the bucket's
//! `LambdaFunctionConfigurations` (events such as `s3:ObjectCreated:*`,
//! prefix/suffix key filters, the function's ARN or name) with the bucket,
//! as JSON the store does not interpret. Setting it needs the bucket grant
//! and, for a function caller, a `lambda:<target>` grant too, so a function
//! cannot make a bucket invoke functions it may not invoke itself.
//!
//! Ordering: the object is committed first (fsynced data, committed row),
//! then each matching rule's S3 event record is handed to
//! [`AsyncInvoker::submit`](nimbus_engine::AsyncInvoker::submit), which
//! returns once the event is durably in the queue, and only then is the
//! response sent. So an acknowledged write's notification is never lost; a
//! crash between commit and enqueue loses the event of a write that was not
//! acknowledged (the client retries it, S3's at-least-once in spirit).

use nimbus_core::{FunctionName, InvokeRequest};
use nimbus_store::{BucketInfo, ObjectMeta};
use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};
use serde::{Deserialize, Serialize};

use super::convert::store_error;
use super::{NimbusS3, principal};

/// One stored `LambdaFunctionConfiguration`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Rule {
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

const EVENTS: [&str; 2] = ["s3:ObjectCreated:", "s3:ObjectRemoved:"];

pub(crate) fn parse_rules(config: &NotificationConfiguration) -> S3Result<Vec<Rule>> {
    let unsupported = config
        .queue_configurations
        .as_ref()
        .is_some_and(|q| !q.is_empty())
        || config
            .topic_configurations
            .as_ref()
            .is_some_and(|t| !t.is_empty())
        || config.event_bridge_configuration.is_some();
    if unsupported {
        return Err(s3_error!(
            NotImplemented,
            "only LambdaFunctionConfigurations are supported"
        ));
    }
    let mut rules = Vec::new();
    for c in config.lambda_function_configurations.iter().flatten() {
        let events: Vec<String> = c
            .events
            .iter()
            .map(|e| AsRef::<str>::as_ref(e).to_string())
            .collect();
        if events.is_empty()
            || !events
                .iter()
                .all(|e| EVENTS.iter().any(|p| e.starts_with(p)))
        {
            return Err(s3_error!(
                InvalidArgument,
                "The event is not supported for notifications: {events:?}"
            ));
        }
        let mut rule = Rule {
            id: c.id.clone(),
            function_arn: c.lambda_function_arn.clone(),
            events,
            prefix: None,
            suffix: None,
            creator: None,
        };
        let filter_rules = c
            .filter
            .as_ref()
            .and_then(|f| f.key.as_ref())
            .and_then(|k| k.filter_rules.as_ref());
        for fr in filter_rules.into_iter().flatten() {
            let name = fr.name.as_ref().map(|n| n.as_str().to_ascii_lowercase());
            let value = fr.value.clone();
            match name.as_deref() {
                Some("prefix") if rule.prefix.is_none() => rule.prefix = value,
                Some("suffix") if rule.suffix.is_none() => rule.suffix = value,
                _ => {
                    return Err(s3_error!(
                        InvalidArgument,
                        "filter rule name must be either prefix or suffix, once each"
                    ));
                }
            }
        }
        rules.push(rule);
    }
    Ok(rules)
}

pub(crate) fn render(rules: Vec<Rule>) -> NotificationConfiguration {
    let configs = rules
        .into_iter()
        .map(|r| {
            let mut filter_rules = Vec::new();
            for (name, value) in [("prefix", r.prefix), ("suffix", r.suffix)] {
                if let Some(v) = value {
                    filter_rules.push(FilterRule {
                        name: Some(FilterRuleName::from(name.to_string())),
                        value: Some(v),
                    });
                }
            }
            LambdaFunctionConfiguration {
                id: r.id,
                lambda_function_arn: r.function_arn,
                events: r.events.into_iter().map(Event::from).collect(),
                filter: (!filter_rules.is_empty()).then_some(NotificationConfigurationFilter {
                    key: Some(S3KeyFilter {
                        filter_rules: Some(filter_rules),
                    }),
                }),
            }
        })
        .collect();
    NotificationConfiguration {
        lambda_function_configurations: Some(configs),
        ..Default::default()
    }
}

fn stored_rules(bucket: &BucketInfo) -> Vec<Rule> {
    bucket
        .notifications
        .as_deref()
        .and_then(|j| serde_json::from_str(j).ok())
        .unwrap_or_default()
}

/// A key as S3 writes it into event records: form-encoded (space → `+`),
/// `/` and unreserved characters kept.
pub(crate) fn event_key(key: &str) -> String {
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
pub(crate) fn record(
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

impl NimbusS3 {
    pub(super) async fn put_notifications(
        &self,
        req: S3Request<PutBucketNotificationConfigurationInput>,
    ) -> S3Result<S3Response<PutBucketNotificationConfigurationOutput>> {
        let who = principal(&req);
        let input = req.input;
        self.require_bucket(&input.bucket).await?;
        let rules = parse_rules(&input.notification_configuration)?;
        for rule in &rules {
            let Some((name, _)) = rule.target() else {
                return Err(s3_error!(
                    InvalidArgument,
                    "Unable to validate the following destination configurations: {}",
                    rule.function_arn
                ));
            };
            if self.state.control.registry().get(&name).is_none() {
                return Err(s3_error!(
                    InvalidArgument,
                    "Unable to validate the following destination configurations: function {name} does not exist"
                ));
            }
            let (name, qualifier) = rule.target().expect("checked above");
            let arn = super::super::principal::arns(&self.state)
                .function(name.as_str(), qualifier.as_deref());
            super::auth::check(&self.state, &who, "lambda:InvokeFunction", &arn)?;
        }
        let rules: Vec<Rule> = rules
            .into_iter()
            .map(|r| Rule {
                creator: who.function().map(str::to_string),
                ..r
            })
            .collect();
        let json =
            (!rules.is_empty()).then(|| serde_json::to_string(&rules).expect("rules serialize"));
        self.state
            .objects
            .set_notifications(&input.bucket, json)
            .await
            .map_err(store_error)?;
        Ok(S3Response::new(PutBucketNotificationConfigurationOutput {}))
    }

    pub(super) async fn get_notifications(
        &self,
        req: S3Request<GetBucketNotificationConfigurationInput>,
    ) -> S3Result<S3Response<GetBucketNotificationConfigurationOutput>> {
        let bucket = self.require_bucket(&req.input.bucket).await?;
        let config = render(stored_rules(&bucket));
        Ok(S3Response::new(GetBucketNotificationConfigurationOutput {
            lambda_function_configurations: config.lambda_function_configurations,
            ..Default::default()
        }))
    }

    /// Enqueues (durably) the event for every matching rule. Failures are
    /// logged: the write itself has already succeeded.
    pub(super) async fn notify(
        &self,
        writer: &crate::Principal,
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
            let target = super::super::principal::arns(&self.state)
                .function(function.as_str(), qualifier.as_deref());
            if !self.state.messaging.grants.still_allowed(
                rule.creator.as_deref(),
                "lambda:InvokeFunction",
                &target,
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
            let mut req = InvokeRequest::new(function.clone(), payload.to_string().into());
            req.qualifier = qualifier;
            req.on_behalf_of = rule.creator.clone();
            // A function writing while it handles an event passes that event's
            // chain on, so a bucket feeding the function that writes to it is
            // stopped as a recursive loop like a queue or a topic.
            req.trace_id = self.state.messaging.trace_of(writer.function());
            if let Err(e) = self.state.events.submit(req).await {
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
