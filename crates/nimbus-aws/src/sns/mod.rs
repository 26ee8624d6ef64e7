//! The SNS API (2010-03-31) in the Query protocol botocore speaks for it:
//! `POST /` with a form body (`Action=Publish&Version=2010-03-31&…`), signed
//! for `sns`, answered in XML. Maps are `Attributes.entry.N.key/value`,
//! message attributes `MessageAttributes.entry.N.Name` and
//! `….Value.DataType/StringValue/BinaryValue`.
//!
//! A function's credentials reach only the topics its `sns:` grants name; a
//! denied call is SNS's `AuthorizationError` (403).

mod xml;

use std::collections::{BTreeMap, HashMap};

use axum::body::Body;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use nimbus_core::ErrorCode;
use nimbus_engine::messaging::attributes::{Attributes, MessageAttribute};
use nimbus_engine::messaging::topics::Publish;
use nimbus_engine::messaging::{MessagingError, arn_resource};
use nimbus_store::SubscriptionRecord;

use super::Principal;
use crate::AwsState;

const MAX_REQUEST_BYTES: usize = 2 * 1024 * 1024;

/// Whether a request is an SNS Query call (`POST /`, form-encoded, no target).
/// An authentication failure, in the Query protocol's XML error shape (the
/// SigV4 middleware answers before the handler runs).
pub fn auth_error(status: StatusCode, code: &str, message: &str) -> Response {
    xml::error(status, code, message)
}

pub fn is_sns(method: &axum::http::Method, path: &str, headers: &axum::http::HeaderMap) -> bool {
    method == axum::http::Method::POST
        && path == "/"
        && !headers.contains_key("x-amz-target")
        && headers
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"))
}

struct SnsError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// The detail of an internal error, logged, never sent.
    internal: Option<String>,
}

impl SnsError {
    /// A client error SNS names more finely than the table.
    fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code,
            message: message.into(),
            internal: None,
        }
    }

    /// SNS's answer for a row of the error table; an internal error's
    /// message is masked (and logged by the listener's layer).
    fn from_code(code: ErrorCode, message: impl Into<String>) -> Self {
        let ex = code.row().sns;
        let (message, internal) = nimbus_api::mask(code, message.into());
        Self {
            status: StatusCode::from_u16(ex.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            code: ex.name,
            message,
            internal,
        }
    }

    fn invalid(message: impl Into<String>) -> Self {
        Self::from_code(ErrorCode::InvalidParameter, message)
    }

    fn missing(param: &str) -> Self {
        Self::invalid(format!("Invalid parameter: {param}: must not be empty"))
    }
}

impl IntoResponse for SnsError {
    fn into_response(self) -> Response {
        let mut resp = xml::error(self.status, self.code, &self.message);
        if let Some(detail) = self.internal {
            nimbus_api::InternalDetail::attach(&mut resp, detail);
        }
        resp
    }
}

impl From<MessagingError> for SnsError {
    fn from(e: MessagingError) -> Self {
        Self::from_code(e.code(), e.to_string())
    }
}

type Result<T> = std::result::Result<T, SnsError>;

struct Call<'a> {
    s: &'a AwsState,
    principal: &'a Principal,
    params: HashMap<String, String>,
}

impl Call<'_> {
    fn get(&self, key: &str) -> Option<String> {
        self.params.get(key).cloned()
    }

    fn required(&self, key: &str) -> Result<String> {
        self.get(key)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| SnsError::missing(key))
    }

    /// AuthorizationError unless the caller may perform `action` on `topic`.
    fn allowed(&self, action: &str, topic: &str) -> Result<()> {
        let arn = self.s.messaging.topics.arns.topic_arn(topic);
        self.allowed_arn(action, &arn)
    }

    fn allowed_arn(&self, action: &str, arn: &str) -> Result<()> {
        if self.principal.allows(self.s, action, arn) {
            return Ok(());
        }
        Err(SnsError::from_code(
            ErrorCode::Forbidden,
            self.principal.denial(action, arn),
        ))
    }

    /// The topic named by an ARN parameter, after checking `action` on it.
    fn topic(&self, key: &str, action: &str) -> Result<String> {
        let arn = self.required(key)?;
        let name = arn_resource(&arn, "sns")
            .filter(|n| !n.contains(':'))
            .ok_or_else(|| {
                SnsError::invalid(format!(
                    "Invalid parameter: {key} Reason: An ARN must have 6 elements"
                ))
            })?
            .to_string();
        self.allowed(action, &name)?;
        Ok(name)
    }

    /// A subscription ARN (`<topic arn>:<id>`) and its topic, after checking
    /// `action` on the topic.
    fn subscription(&self, action: &str) -> Result<(String, String)> {
        let arn = self.required("SubscriptionArn")?;
        let topic = arn_resource(&arn, "sns")
            .and_then(|r| r.split(':').next())
            .ok_or_else(|| SnsError::invalid("Invalid parameter: SubscriptionArn"))?
            .to_string();
        self.allowed(action, &topic)?;
        Ok((arn, topic))
    }

    /// `Prefix.entry.N.key` / `.value` pairs.
    fn map(&self, prefix: &str) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for n in 1.. {
            let Some(k) = self.get(&format!("{prefix}.entry.{n}.key")) else {
                break;
            };
            let v = self
                .get(&format!("{prefix}.entry.{n}.value"))
                .unwrap_or_default();
            out.insert(k, v);
        }
        out
    }

    fn message_attributes(&self, prefix: &str) -> Result<Attributes> {
        let mut out = Attributes::new();
        for n in 1.. {
            let base = format!("{prefix}.entry.{n}");
            let Some(name) = self.get(&format!("{base}.Name")) else {
                break;
            };
            let binary = match self.get(&format!("{base}.Value.BinaryValue")) {
                Some(b) => Some(
                    base64::engine::general_purpose::STANDARD
                        .decode(b)
                        .map_err(|_| {
                            SnsError::invalid(format!("Invalid binary value for attribute {name}"))
                        })?,
                ),
                None => None,
            };
            out.insert(
                name,
                MessageAttribute {
                    data_type: self
                        .get(&format!("{base}.Value.DataType"))
                        .unwrap_or_default(),
                    string_value: self.get(&format!("{base}.Value.StringValue")),
                    binary_value: binary,
                },
            );
        }
        Ok(out)
    }
}

/// Handles one SNS Query request (already authenticated).
pub async fn handle(s: AwsState, principal: Principal, body: Body) -> Response {
    let bytes = match nimbus_api::read_body(body, MAX_REQUEST_BYTES, "request").await {
        Ok(b) => b,
        Err(e) => {
            return xml::error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "InvalidParameter",
                &e.message,
            );
        }
    };
    let params: HashMap<String, String> = form_urlencoded::parse(&bytes).into_owned().collect();
    let action = params.get("Action").cloned().unwrap_or_default();
    let call = Call {
        s: &s,
        principal: &principal,
        params,
    };
    match dispatch(&call, &action).await {
        Ok(result) => xml::ok(&action, result),
        Err(e) => e.into_response(),
    }
}

fn subscriptions_xml(subs: &[SubscriptionRecord], c: &Call<'_>) -> String {
    let topics = &c.s.messaging.topics;
    let mut out = String::from("<Subscriptions>");
    for s in subs {
        out.push_str("<member>");
        out.push_str(&xml::element("SubscriptionArn", &s.arn));
        out.push_str(&xml::element("Owner", &topics.arns.account_id));
        out.push_str(&xml::element("Protocol", &s.protocol));
        out.push_str(&xml::element("Endpoint", &s.endpoint));
        out.push_str(&xml::element("TopicArn", &topics.arns.topic_arn(&s.topic)));
        out.push_str("</member>");
    }
    out.push_str("</Subscriptions>");
    out
}

async fn dispatch(c: &Call<'_>, action: &str) -> Result<Option<String>> {
    let topics = &c.s.messaging.topics;
    Ok(match action {
        "CreateTopic" => {
            let name = c.required("Name")?;
            c.allowed("sns:CreateTopic", &name)?;
            let attrs = c.map("Attributes");
            if attrs.get("FifoTopic").is_some_and(|v| v == "true") || name.ends_with(".fifo") {
                return Err(SnsError::invalid(
                    "Invalid parameter: FIFO topics are not supported by Nimbus",
                ));
            }
            topics.create_topic(&name, attrs).await?;
            Some(xml::element("TopicArn", &topics.arns.topic_arn(&name)))
        }
        "DeleteTopic" => {
            topics
                .delete_topic(&c.topic("TopicArn", "sns:DeleteTopic")?)
                .await?;
            None
        }
        "ListTopics" => {
            let mut out = String::from("<Topics>");
            for t in topics.list_topics().await? {
                if c.principal
                    .allows(c.s, "sns:ListTopics", &topics.arns.topic_arn(&t.name))
                {
                    out.push_str(&format!(
                        "<member>{}</member>",
                        xml::element("TopicArn", &topics.arns.topic_arn(&t.name))
                    ));
                }
            }
            out.push_str("</Topics>");
            Some(out)
        }
        "GetTopicAttributes" => {
            let attrs = topics
                .topic_attributes(&c.topic("TopicArn", "sns:GetTopicAttributes")?)
                .await?;
            Some(xml::map("Attributes", &attrs))
        }
        "SetTopicAttributes" => {
            let topic = c.topic("TopicArn", "sns:SetTopicAttributes")?;
            let name = c.required("AttributeName")?;
            let value = c.get("AttributeValue").unwrap_or_default();
            topics.set_topic_attribute(&topic, &name, &value).await?;
            None
        }
        "Subscribe" => {
            let topic = c.topic("TopicArn", "sns:Subscribe")?;
            let protocol = c.required("Protocol")?;
            let endpoint = c.required("Endpoint")?;
            // The endpoint is a resource too: subscribing it makes every
            // publish invoke it or write to it (review finding C2).
            // (Endpoints with no grant to check are refused by the topic
            // service: it accepts exactly the endpoints delivery understands.)
            if let Some((action, target)) =
                nimbus_engine::messaging::topics::endpoint_grant(&topics.arns, &protocol, &endpoint)
            {
                c.allowed_arn(action, &target)?;
            }
            let sub = topics
                .subscribe(
                    &topic,
                    &protocol,
                    &endpoint,
                    c.map("Attributes"),
                    c.principal.function(),
                )
                .await?;
            Some(xml::element("SubscriptionArn", &sub.arn))
        }
        "ConfirmSubscription" => {
            return Err(SnsError::invalid(
                "Invalid parameter: Token: lambda and sqs subscriptions are confirmed at once",
            ));
        }
        "Unsubscribe" => {
            let (arn, _) = c.subscription("sns:Unsubscribe")?;
            topics.unsubscribe(&arn).await?;
            None
        }
        "ListSubscriptions" => {
            let subs: Vec<SubscriptionRecord> = topics
                .subscriptions(None)
                .await?
                .into_iter()
                .filter(|s| {
                    c.principal.allows(
                        c.s,
                        "sns:ListSubscriptions",
                        &topics.arns.topic_arn(&s.topic),
                    )
                })
                .collect();
            Some(subscriptions_xml(&subs, c))
        }
        "ListSubscriptionsByTopic" => {
            let topic = c.topic("TopicArn", "sns:ListSubscriptionsByTopic")?;
            let subs = topics.subscriptions(Some(&topic)).await?;
            Some(subscriptions_xml(&subs, c))
        }
        "GetSubscriptionAttributes" => {
            let (arn, _) = c.subscription("sns:GetSubscriptionAttributes")?;
            let sub = topics.subscription(&arn).await?;
            Some(xml::map(
                "Attributes",
                &topics.subscription_attributes(&sub),
            ))
        }
        "SetSubscriptionAttributes" => {
            let (arn, _) = c.subscription("sns:SetSubscriptionAttributes")?;
            let name = c.required("AttributeName")?;
            let value = c.get("AttributeValue").unwrap_or_default();
            topics
                .set_subscription_attribute(&arn, &name, &value)
                .await?;
            None
        }
        "Publish" => {
            let topic = match (c.get("TopicArn"), c.get("TargetArn")) {
                (Some(_), _) => c.topic("TopicArn", "sns:Publish")?,
                (None, Some(_)) => c.topic("TargetArn", "sns:Publish")?,
                (None, None) => {
                    return Err(SnsError::invalid(
                        "Invalid parameter: TopicArn or TargetArn Reason: no value for required parameter",
                    ));
                }
            };
            let id = topics
                .publish(
                    &topic,
                    Publish {
                        message: c.required("Message")?,
                        subject: c.get("Subject"),
                        attributes: c.message_attributes("MessageAttributes")?,
                        message_structure: c.get("MessageStructure"),
                        trace: c
                            .s
                            .messaging
                            .trace_of(c.principal.function(), c.principal.sent_trace()),
                    },
                )
                .await?;
            Some(xml::element("MessageId", &id))
        }
        "PublishBatch" => {
            let topic = c.topic("TopicArn", "sns:Publish")?;
            let prefix = "PublishBatchRequestEntries.member";
            let (mut ok, mut failed) = (String::new(), String::new());
            for n in 1.. {
                let base = format!("{prefix}.{n}");
                let Some(id) = c.get(&format!("{base}.Id")) else {
                    break;
                };
                if n > 10 {
                    return Err(SnsError::new(
                        "TooManyEntriesInBatchRequest",
                        "The batch request contains more entries than permissible.",
                    ));
                }
                let publish = Publish {
                    message: c.get(&format!("{base}.Message")).unwrap_or_default(),
                    subject: c.get(&format!("{base}.Subject")),
                    attributes: c.message_attributes(&format!("{base}.MessageAttributes"))?,
                    message_structure: c.get(&format!("{base}.MessageStructure")),
                    trace: c
                        .s
                        .messaging
                        .trace_of(c.principal.function(), c.principal.sent_trace()),
                };
                match topics.publish(&topic, publish).await {
                    Ok(mid) => ok.push_str(&format!(
                        "<member>{}{}</member>",
                        xml::element("Id", &id),
                        xml::element("MessageId", &mid)
                    )),
                    Err(e) => {
                        let e = SnsError::from(e);
                        if let Some(detail) = &e.internal {
                            nimbus_api::InternalDetail::log(detail);
                        }
                        failed.push_str(&format!(
                            "<member>{}{}{}<SenderFault>{}</SenderFault></member>",
                            xml::element("Id", &id),
                            xml::element("Code", e.code),
                            xml::element("Message", &e.message),
                            !e.status.is_server_error()
                        ));
                    }
                }
            }
            Some(format!(
                "<Successful>{ok}</Successful><Failed>{failed}</Failed>"
            ))
        }
        "" => return Err(SnsError::invalid("Missing Action parameter")),
        other => {
            return Err(SnsError::new(
                "InvalidAction",
                format!("The SNS action {other} is not supported by Nimbus"),
            ));
        }
    })
}
