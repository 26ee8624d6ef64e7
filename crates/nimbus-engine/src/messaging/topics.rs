//! Topics: publish/subscribe with fan-out to functions and queues.
//!
//! A publish is answered once every matching subscription holds its copy
//! durably: functions get the SNS event through the dispatcher's async mode,
//! i.e. the async-invocation queue (so its retries and destinations apply), queues get the SNS envelope as a
//! message (or the bare message with `RawMessageDelivery`). Subscriptions
//! live in the store, so they survive restarts; there is no confirmation step
//! (Lambda and SQS subscriptions are confirmed at once on AWS too).

use std::collections::BTreeMap;
use std::sync::Arc;

use nimbus_core::{FunctionName, Target};
use nimbus_store::{StoreError, SubscriptionRecord, TopicRecord, Topics};
use serde_json::{Value, json};

use super::attributes::{self, Attributes, MessageAttribute};
use super::queues::{Queues, SendRequest};
use super::{ArnScope, MessagingError, arn_resource, filter};
use crate::dispatch::{Call, Dispatcher};

/// One message to publish.
#[derive(Debug, Clone, Default)]
pub struct Publish {
    pub message: String,
    pub subject: Option<String>,
    pub attributes: Attributes,
    /// `json`: `message` is an object of per-protocol messages with a `default`.
    pub message_structure: Option<String>,
    /// The publisher's trace header; deliveries to functions continue its
    /// lineage (recursive loop detection).
    pub trace: Option<String>,
}

impl Publish {
    pub fn message(message: String) -> Self {
        Self {
            message,
            ..Self::default()
        }
    }
}

/// Subscription attributes a caller may set.
const SUBSCRIPTION_ATTRIBUTES: &[&str] = &[
    "FilterPolicy",
    "FilterPolicyScope",
    "RawMessageDelivery",
    "RedrivePolicy",
    "DeliveryPolicy",
];
const TOPIC_ATTRIBUTES: &[&str] = &[
    "DisplayName",
    "Policy",
    "DeliveryPolicy",
    "KmsMasterKeyId",
    "TracingConfig",
    "SignatureVersion",
];
/// Largest message, attributes included (SNS: 256 KB).
const MAX_MESSAGE_BYTES: usize = 262_144;

pub struct TopicService {
    store: Arc<dyn Topics>,
    queues: Arc<Queues>,
    dispatcher: Arc<Dispatcher>,
    pub arns: ArnScope,
    grants: Arc<super::DeliveryGrants>,
    /// Wall time.
    clock: nimbus_core::Clock,
}

/// What delivering to a subscription endpoint does, as an IAM action and the
/// ARN of the resource it acts on (`lambda:InvokeFunction` on the function,
/// `sqs:SendMessage` on the queue), in this server's scope: what Subscribe
/// authorises and what delivery re-checks for the subscription's creator.
pub fn endpoint_grant(
    arns: &ArnScope,
    protocol: &str,
    endpoint: &str,
) -> Option<(&'static str, String)> {
    match protocol {
        "lambda" => {
            let resource = arn_resource(endpoint, "lambda")?;
            let mut parts = resource.split(':');
            if parts.next() != Some("function") {
                return None;
            }
            let name = parts.next().filter(|n| !n.is_empty())?;
            let qualifier = parts.next();
            if parts.next().is_some() {
                return None;
            }
            let scope = nimbus_core::policy::ArnScope {
                region: arns.region.clone(),
                account_id: arns.account_id.clone(),
            };
            Some(("lambda:InvokeFunction", scope.function(name, qualifier)))
        }
        "sqs" => {
            let queue = arn_resource(endpoint, "sqs").filter(|q| !q.contains(':'))?;
            Some(("sqs:SendMessage", arns.queue_arn(queue)))
        }
        _ => None,
    }
}

pub fn valid_topic_name(name: &str) -> bool {
    (1..=256).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

impl TopicService {
    pub fn new(
        store: Arc<dyn Topics>,
        queues: Arc<Queues>,
        dispatcher: Arc<Dispatcher>,
        arns: ArnScope,
        grants: Arc<super::DeliveryGrants>,
    ) -> Self {
        Self {
            store,
            queues,
            dispatcher,
            arns,
            grants,
            clock: nimbus_core::Clock::system(),
        }
    }

    /// The dispatcher deliveries to functions go through.
    pub(crate) fn dispatcher(&self) -> &Arc<Dispatcher> {
        &self.dispatcher
    }

    pub async fn create_topic(
        &self,
        name: &str,
        attrs: BTreeMap<String, String>,
    ) -> Result<TopicRecord, MessagingError> {
        if !valid_topic_name(name) {
            return Err(MessagingError::InvalidParameter(
                "Invalid parameter: Topic Name".into(),
            ));
        }
        check_names(&attrs, TOPIC_ATTRIBUTES)?;
        Ok(self
            .store
            .create_topic(&TopicRecord {
                name: name.into(),
                created_ms: self.clock.now_ms(),
                attributes: attrs,
            })
            .await?)
    }

    pub async fn topic(&self, name: &str) -> Result<TopicRecord, MessagingError> {
        self.store
            .get_topic(name)
            .await?
            .ok_or_else(|| MessagingError::TopicNotFound(name.into()))
    }

    pub async fn list_topics(&self) -> Result<Vec<TopicRecord>, MessagingError> {
        Ok(self.store.list_topics().await?)
    }

    pub async fn delete_topic(&self, name: &str) -> Result<(), MessagingError> {
        // Deleting a topic that does not exist is a success on SNS.
        self.store.delete_topic(name).await?;
        Ok(())
    }

    pub async fn topic_attributes(
        &self,
        name: &str,
    ) -> Result<BTreeMap<String, String>, MessagingError> {
        let t = self.topic(name).await?;
        let subs = self.store.list_subscriptions(Some(name)).await?;
        let mut a = t.attributes.clone();
        a.insert("TopicArn".into(), self.arns.topic_arn(name));
        a.insert("Owner".into(), self.arns.account_id.clone());
        a.entry("DisplayName".into()).or_default();
        a.insert("SubscriptionsConfirmed".into(), subs.len().to_string());
        a.insert("SubscriptionsPending".into(), "0".into());
        a.insert("SubscriptionsDeleted".into(), "0".into());
        Ok(a)
    }

    pub async fn set_topic_attribute(
        &self,
        name: &str,
        key: &str,
        value: &str,
    ) -> Result<(), MessagingError> {
        let attrs = BTreeMap::from([(key.to_string(), value.to_string())]);
        check_names(&attrs, TOPIC_ATTRIBUTES)?;
        if !self.store.set_topic_attributes(name, attrs).await? {
            return Err(MessagingError::TopicNotFound(name.into()));
        }
        Ok(())
    }

    pub async fn subscribe(
        &self,
        topic: &str,
        protocol: &str,
        endpoint: &str,
        attrs: BTreeMap<String, String>,
        creator: Option<&str>,
    ) -> Result<SubscriptionRecord, MessagingError> {
        match protocol {
            // Exactly the endpoints delivery understands, so what Subscribe
            // authorised is what delivery reaches.
            "lambda" | "sqs" if endpoint_grant(&self.arns, protocol, endpoint).is_some() => {}
            "lambda" | "sqs" => {
                return Err(MessagingError::InvalidParameter(format!(
                    "Invalid parameter: {protocol} endpoint ARN {endpoint}"
                )));
            }
            other => {
                return Err(MessagingError::InvalidParameter(format!(
                    "Invalid parameter: Protocol {other} is not supported by Nimbus (lambda, sqs)"
                )));
            }
        }
        check_subscription_attributes(&attrs)?;
        let mut attrs = attrs;
        if let Some(f) = creator {
            attrs.insert(super::CREATOR_ATTRIBUTE.into(), f.into());
        }
        let sub = SubscriptionRecord {
            arn: format!("{}:{}", self.arns.topic_arn(topic), uuid::Uuid::new_v4()),
            topic: topic.into(),
            protocol: protocol.into(),
            endpoint: endpoint.into(),
            attributes: attrs,
            created_ms: self.clock.now_ms(),
        };
        self.store.subscribe(&sub).await.map_err(|e| match e {
            StoreError::NotFound(_) => MessagingError::TopicNotFound(topic.into()),
            e => e.into(),
        })
    }

    pub async fn unsubscribe(&self, arn: &str) -> Result<(), MessagingError> {
        if !self.store.unsubscribe(arn).await? {
            return Err(MessagingError::SubscriptionNotFound(arn.into()));
        }
        Ok(())
    }

    pub async fn subscription(&self, arn: &str) -> Result<SubscriptionRecord, MessagingError> {
        self.store
            .get_subscription(arn)
            .await?
            .ok_or_else(|| MessagingError::SubscriptionNotFound(arn.into()))
    }

    pub async fn subscriptions(
        &self,
        topic: Option<&str>,
    ) -> Result<Vec<SubscriptionRecord>, MessagingError> {
        if let Some(t) = topic {
            self.topic(t).await?;
        }
        Ok(self.store.list_subscriptions(topic).await?)
    }

    pub fn subscription_attributes(&self, s: &SubscriptionRecord) -> BTreeMap<String, String> {
        let mut a = s.attributes.clone();
        a.remove(super::CREATOR_ATTRIBUTE);
        a.insert("SubscriptionArn".into(), s.arn.clone());
        a.insert("TopicArn".into(), self.arns.topic_arn(&s.topic));
        a.insert("Owner".into(), self.arns.account_id.clone());
        a.insert("Protocol".into(), s.protocol.clone());
        a.insert("Endpoint".into(), s.endpoint.clone());
        a.insert("ConfirmationWasAuthenticated".into(), "true".into());
        a.insert("PendingConfirmation".into(), "false".into());
        a.entry("RawMessageDelivery".into())
            .or_insert_with(|| "false".into());
        a
    }

    pub async fn set_subscription_attribute(
        &self,
        arn: &str,
        key: &str,
        value: &str,
    ) -> Result<(), MessagingError> {
        let attrs = BTreeMap::from([(key.to_string(), value.to_string())]);
        check_subscription_attributes(&attrs)?;
        if !self.store.set_subscription_attributes(arn, attrs).await? {
            return Err(MessagingError::SubscriptionNotFound(arn.into()));
        }
        Ok(())
    }

    /// Publishes; returns the message id once every matching subscriber holds it.
    pub async fn publish(&self, topic: &str, p: Publish) -> Result<String, MessagingError> {
        if p.message.is_empty() {
            return Err(MessagingError::InvalidParameter(
                "Invalid parameter: Empty message".into(),
            ));
        }
        if p.message.len() + attributes::size(&p.attributes) > MAX_MESSAGE_BYTES {
            return Err(MessagingError::InvalidParameter(
                "Invalid parameter: Message too long".into(),
            ));
        }
        attributes::validate_sns(&p.attributes)?;
        let per_protocol = match p.message_structure.as_deref() {
            None | Some("") => None,
            Some("json") => {
                let v: Value = serde_json::from_str(&p.message).map_err(|_| {
                    MessagingError::InvalidParameter(
                        "Invalid parameter: Message Structure - JSON message body failed to parse"
                            .into(),
                    )
                })?;
                if !v.get("default").is_some_and(Value::is_string) {
                    return Err(MessagingError::InvalidParameter(
                        "Invalid parameter: Message Structure - No default entry in JSON message body".into(),
                    ));
                }
                Some(v)
            }
            Some(other) => {
                return Err(MessagingError::InvalidParameter(format!(
                    "Invalid parameter: MessageStructure {other}"
                )));
            }
        };
        self.topic(topic).await?;
        let id = uuid::Uuid::new_v4().to_string();
        let timestamp = self
            .clock
            .now()
            .format("%Y-%m-%dT%H:%M:%S%.3fZ")
            .to_string();
        for sub in self.store.list_subscriptions(Some(topic)).await? {
            if !passes(&sub, &p) {
                continue;
            }
            let message = per_protocol
                .as_ref()
                .and_then(|v| v.get(&sub.protocol).or_else(|| v.get("default")))
                .and_then(Value::as_str)
                .unwrap_or(&p.message);
            let n = Notification {
                id: &id,
                topic_arn: self.arns.topic_arn(topic),
                message,
                publish: &p,
                timestamp: &timestamp,
            };
            if let Err(e) = self.deliver(&sub, &n).await {
                tracing::warn!("cannot deliver message {id} to {}: {e}", sub.endpoint);
            }
        }
        Ok(id)
    }

    async fn deliver(
        &self,
        sub: &SubscriptionRecord,
        n: &Notification<'_>,
    ) -> Result<(), MessagingError> {
        let creator = sub
            .attributes
            .get(super::CREATOR_ATTRIBUTE)
            .map(String::as_str);
        let allowed = match endpoint_grant(&self.arns, &sub.protocol, &sub.endpoint) {
            Some((action, target)) => self.grants.still_allowed(
                creator,
                action,
                &target,
                &format!("delivery of message {} to subscription {}", n.id, sub.arn),
            ),
            // Not an endpoint Subscribe accepts now: only an operator's.
            None => creator.is_none(),
        };
        if !allowed {
            return Ok(());
        }
        match sub.protocol.as_str() {
            "lambda" => {
                let resource = arn_resource(&sub.endpoint, "lambda").unwrap_or("");
                let mut parts = resource.split(':').skip(1);
                let name = parts
                    .next()
                    .and_then(|n| n.parse::<FunctionName>().ok())
                    .ok_or_else(|| MessagingError::FunctionNotFound(sub.endpoint.clone()))?;
                let event = json!({"Records": [{
                    "EventSource": "aws:sns",
                    "EventVersion": "1.0",
                    "EventSubscriptionArn": sub.arn,
                    "Sns": n.envelope(&sub.arn, "Url"),
                }]});
                let target = Target::function(name.as_str(), parts.next().map(str::to_string));
                let mut call = Call::new(target, event.to_string());
                call.on_behalf_of = creator.map(str::to_string);
                call.trace = n.publish.trace.clone();
                self.dispatcher
                    .enqueue(call)
                    .await
                    .map_err(|e| MessagingError::FunctionNotFound(e.to_string()))?;
                Ok(())
            }
            "sqs" => {
                let queue = arn_resource(&sub.endpoint, "sqs").unwrap_or("");
                let raw = sub
                    .attributes
                    .get("RawMessageDelivery")
                    .is_some_and(|v| v == "true");
                let req = if raw {
                    SendRequest {
                        body: n.message.to_string(),
                        attributes: raw_attributes(&n.publish.attributes),
                        delay_s: None,
                        sender_id: "sns".into(),
                        trace: n.publish.trace.clone(),
                    }
                } else {
                    SendRequest {
                        trace: n.publish.trace.clone(),
                        ..SendRequest::body(n.envelope(&sub.arn, "URL").to_string(), "sns")
                    }
                };
                self.queues.send(queue, req).await.map(|_| ())
            }
            other => Err(MessagingError::InvalidParameter(format!(
                "unsupported protocol {other}"
            ))),
        }
    }
}

struct Notification<'a> {
    id: &'a str,
    topic_arn: String,
    message: &'a str,
    publish: &'a Publish,
    timestamp: &'a str,
}

impl Notification<'_> {
    /// The notification document; Lambda spells the URL fields `…Url`, the
    /// queue envelope `…URL`.
    fn envelope(&self, subscription_arn: &str, url: &str) -> Value {
        let mut v = json!({
            "Type": "Notification",
            "MessageId": self.id,
            "TopicArn": self.topic_arn,
            "Subject": self.publish.subject,
            "Message": self.message,
            "Timestamp": self.timestamp,
            "SignatureVersion": "1",
            "Signature": "bmltYnVzLWRvZXMtbm90LXNpZ24=",
            format!("SigningCert{url}"): "https://sns.amazonaws.com/SimpleNotificationService-nimbus.pem",
            format!("Unsubscribe{url}"): format!("https://sns.amazonaws.com/?Action=Unsubscribe&SubscriptionArn={subscription_arn}"),
            "MessageAttributes": attributes::to_sns_json(&self.publish.attributes),
        });
        if url == "URL" {
            // The queue envelope leaves out what is absent.
            if self.publish.subject.is_none() {
                v.as_object_mut().map(|o| o.remove("Subject"));
            }
            if self.publish.attributes.is_empty() {
                v.as_object_mut().map(|o| o.remove("MessageAttributes"));
            }
        }
        v
    }
}

/// SNS attributes as SQS message attributes (raw delivery).
fn raw_attributes(a: &Attributes) -> Attributes {
    a.iter()
        .map(|(k, v)| {
            let data_type = if v.data_type == "String.Array" {
                "String".to_string()
            } else {
                v.data_type.clone()
            };
            (
                k.clone(),
                MessageAttribute {
                    data_type,
                    ..v.clone()
                },
            )
        })
        .collect()
}

fn passes(sub: &SubscriptionRecord, p: &Publish) -> bool {
    let Some(policy) = sub.attributes.get("FilterPolicy") else {
        return true;
    };
    let Ok(policy) = filter::validate(policy) else {
        return false;
    };
    if sub.attributes.get("FilterPolicyScope").map(String::as_str) == Some("MessageBody") {
        let Ok(body) = serde_json::from_str::<Value>(&p.message) else {
            return false;
        };
        return filter::matches(&policy, |k| body.get(k).cloned());
    }
    filter::matches(&policy, |k| {
        let a = p.attributes.get(k)?;
        let s = a.string_value.clone().unwrap_or_default();
        Some(match a.data_type.as_str() {
            "String.Array" => serde_json::from_str(&s).unwrap_or(Value::String(s)),
            t if t.starts_with("Number") => s
                .parse::<f64>()
                .ok()
                .and_then(|f| serde_json::Number::from_f64(f).map(Value::Number))
                .unwrap_or(Value::String(s)),
            _ => Value::String(s),
        })
    })
}

fn check_names(attrs: &BTreeMap<String, String>, known: &[&str]) -> Result<(), MessagingError> {
    for k in attrs.keys() {
        if !known.contains(&k.as_str()) {
            return Err(MessagingError::InvalidParameter(format!(
                "Invalid parameter: AttributeName {k}"
            )));
        }
    }
    Ok(())
}

fn check_subscription_attributes(attrs: &BTreeMap<String, String>) -> Result<(), MessagingError> {
    check_names(attrs, SUBSCRIPTION_ATTRIBUTES)?;
    if let Some(p) = attrs.get("FilterPolicy").filter(|p| !p.is_empty()) {
        filter::validate(p)?;
    }
    if let Some(s) = attrs.get("FilterPolicyScope")
        && !["MessageAttributes", "MessageBody"].contains(&s.as_str())
    {
        return Err(MessagingError::InvalidParameter(
            "Invalid parameter: FilterPolicyScope".into(),
        ));
    }
    if let Some(r) = attrs.get("RawMessageDelivery")
        && !["true", "false"].contains(&r.as_str())
    {
        return Err(MessagingError::InvalidParameter(
            "Invalid parameter: RawMessageDelivery must be true or false".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_resolve_to_the_resource_delivery_acts_on() {
        let arns = ArnScope {
            region: "us-east-1".into(),
            account_id: "000000000000".into(),
        };
        let f = |p: &str, e: &str| endpoint_grant(&arns, p, e);
        // Region and account of the endpoint do not matter to delivery (it
        // uses the name), so authorisation uses this server's.
        assert_eq!(
            f(
                "lambda",
                "arn:aws:lambda:eu-west-1:111111111111:function:victim"
            ),
            Some((
                "lambda:InvokeFunction",
                "arn:aws:lambda:us-east-1:000000000000:function:victim".into()
            ))
        );
        assert_eq!(
            f("lambda", "arn:aws:lambda:r:a:function:victim:live").map(|g| g.1),
            Some("arn:aws:lambda:us-east-1:000000000000:function:victim:live".into())
        );
        assert_eq!(
            f("sqs", "arn:aws:sqs:r:a:jobs"),
            Some((
                "sqs:SendMessage",
                "arn:aws:sqs:us-east-1:000000000000:jobs".into()
            ))
        );
        assert_eq!(f("lambda", "arn:aws:lambda:r:a:layer:x"), None);
        assert_eq!(f("lambda", "arn:aws:lambda:r:a:function:x:y:z"), None);
        assert_eq!(f("sqs", "arn:aws:sqs:r:a:jobs:x"), None);
        assert_eq!(f("http", "http://example.com"), None);
    }
}
