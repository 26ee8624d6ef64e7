//! The SQS API (2012-11-05) in the JSON 1.0 protocol current SDKs speak:
//! `POST /` with `X-Amz-Target: AmazonSQS.<Operation>`, signed for `sqs`.
//!
//! Errors carry both forms SQS uses: `__type` (`com.amazonaws.sqs#QueueDoesNotExist`)
//! and, because SQS moved from the Query protocol, the
//! `x-amzn-query-error: AWS.SimpleQueueService.NonExistentQueue;Sender`
//! header, from which botocore takes the error code while raising the modelled
//! exception class. Queue URLs are `http://<host the client used>/<account>/<queue>`;
//! any URL whose last path segment is the queue name is accepted.
//!
//! Every operation checks the caller: a function's credentials reach only the
//! queues its `sqs:` grants name.

mod messages;

use std::collections::BTreeMap;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use nimbus_core::ErrorCode;
use nimbus_engine::messaging::MessagingError;
use serde_json::{Value, json};

use super::Principal;
use crate::AwsState;

pub const TARGET_PREFIX: &str = "AmazonSQS.";
/// A 10-message batch of 1 MiB messages, JSON-escaped, with room to spare.
const MAX_REQUEST_BYTES: usize = 24 * 1024 * 1024;
const CONTENT_TYPE: &str = "application/x-amz-json-1.0";

#[derive(Debug)]
pub struct SqsError {
    status: StatusCode,
    /// The modelled shape name (`__type`).
    shape: &'static str,
    /// The Query-protocol code (`x-amzn-query-error`).
    query_code: &'static str,
    message: String,
    /// The detail of an internal error, logged, never sent.
    internal: Option<String>,
}

impl SqsError {
    pub fn new(shape: &'static str, query_code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            shape,
            query_code,
            message: message.into(),
            internal: None,
        }
    }

    /// SQS's answer for a row of the error table; an internal error's
    /// message is masked (and logged by the listener's layer).
    pub fn from_code(code: ErrorCode, message: impl Into<String>) -> Self {
        let ex = code.row().sqs;
        let (message, internal) = nimbus_api::mask(code, message.into());
        Self {
            status: StatusCode::from_u16(ex.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            internal,
            ..Self::new(ex.name, ex.query_code, message)
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::from_code(ErrorCode::InvalidParameter, message)
    }

    pub fn missing(param: &str) -> Self {
        Self::new(
            "MissingRequiredParameterException",
            "MissingParameter",
            format!("The request must contain the parameter {param}."),
        )
    }

    pub fn access_denied(message: String) -> Self {
        Self::from_code(ErrorCode::Forbidden, message)
    }
}

impl From<MessagingError> for SqsError {
    fn from(e: MessagingError) -> Self {
        Self::from_code(e.code(), e.to_string())
    }
}

impl IntoResponse for SqsError {
    fn into_response(self) -> Response {
        let body = json!({
            "__type": format!("com.amazonaws.sqs#{}", self.shape),
            "message": self.message,
        });
        let mut resp = (self.status, body.to_string()).into_response();
        let h = resp.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        let sender = if self.status.is_server_error() {
            "Receiver"
        } else {
            "Sender"
        };
        if let Ok(v) = HeaderValue::from_str(&format!("{};{sender}", self.query_code)) {
            h.insert("x-amzn-query-error", v);
        }
        if let Some(detail) = self.internal {
            nimbus_api::InternalDetail::attach(&mut resp, detail);
        }
        resp
    }
}

type Result<T> = std::result::Result<T, SqsError>;

/// The request context every operation needs.
pub(super) struct Call<'a> {
    pub s: &'a AwsState,
    pub principal: &'a Principal,
    /// Base of queue URLs: `http://<host>/<account>`.
    pub url_base: String,
    pub input: Value,
}

impl Call<'_> {
    pub fn str(&self, key: &str) -> Result<Option<String>> {
        match self.input.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(SqsError::invalid(format!("{key} must be a string"))),
        }
    }

    pub fn required(&self, key: &str) -> Result<String> {
        self.str(key)?.ok_or_else(|| SqsError::missing(key))
    }

    pub fn int(&self, key: &str) -> Result<Option<i64>> {
        int_of(&self.input, key)
    }

    /// The queue named by `QueueUrl`, after checking `action` on it.
    pub fn queue(&self, action: &str) -> Result<String> {
        let url = self.required("QueueUrl")?;
        let name = url
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or("")
            .to_string();
        self.allowed(action, &name)?;
        Ok(name)
    }

    /// AccessDenied unless the caller may perform `action` on `queue`.
    pub fn allowed(&self, action: &str, queue: &str) -> Result<()> {
        let arn = self.s.messaging.queues.arns.queue_arn(queue);
        if self.principal.allows(self.s, action, &arn) {
            Ok(())
        } else {
            Err(SqsError::access_denied(self.principal.denial(action, &arn)))
        }
    }

    /// Whether the caller may see `queue` in listings (ListQueues,
    /// ListDeadLetterSourceQueues): only queues it was granted.
    fn visible(&self, queue: &str) -> bool {
        let arn = self.s.messaging.queues.arns.queue_arn(queue);
        self.principal.allows(self.s, "sqs:ListQueues", &arn)
    }

    /// Attributes to set, after checking that a RedrivePolicy's dead-letter
    /// queue is one the caller may send to (a redrive moves messages there).
    fn settable_attributes(&self) -> Result<BTreeMap<String, String>> {
        let attrs = string_map(self.input.get("Attributes"))?;
        if let Some(policy) = attrs.get("RedrivePolicy").filter(|p| !p.is_empty()) {
            let target = serde_json::from_str::<Value>(policy)
                .ok()
                .and_then(|v| v.get("deadLetterTargetArn")?.as_str().map(str::to_string));
            // A malformed policy is refused by the queue rules; a target that
            // is not a plain queue ARN of this server is checked as written.
            if let Some(target) = target {
                match nimbus_engine::messaging::arn_resource(&target, "sqs")
                    .filter(|q| !q.contains(':'))
                {
                    Some(dlq) => self.allowed("sqs:SendMessage", dlq)?,
                    None if !self.principal.is_operator() => {
                        return Err(SqsError::access_denied(
                            self.principal.denial("sqs:SendMessage", &target),
                        ));
                    }
                    None => {}
                }
            }
        }
        Ok(attrs)
    }

    pub fn url(&self, queue: &str) -> String {
        format!("{}/{queue}", self.url_base)
    }

    /// Who sent a message (`SenderId`).
    pub fn sender_id(&self) -> String {
        match self.principal {
            Principal::Operator => self.s.control.config().account_id.clone(),
            Principal::Function { name, .. } => {
                format!("{}:{name}", self.s.control.config().account_id)
            }
        }
    }
}

pub(super) fn int_of(v: &Value, key: &str) -> Result<Option<i64>> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(n) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| SqsError::invalid(format!("{key} must be an integer"))),
    }
}

fn string_map(v: Option<&Value>) -> Result<BTreeMap<String, String>> {
    match v {
        None | Some(Value::Null) => Ok(BTreeMap::new()),
        Some(Value::Object(o)) => o
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                _ => Err(SqsError::invalid(format!("attribute {k} must be a string"))),
            })
            .collect(),
        Some(_) => Err(SqsError::invalid("Attributes must be a map")),
    }
}

fn string_list(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Handles one `AmazonSQS.*` request (already authenticated).
pub async fn handle(
    s: AwsState,
    principal: Principal,
    headers: &HeaderMap,
    operation: &str,
    body: Body,
) -> Response {
    let bytes = match nimbus_api::read_body(body, MAX_REQUEST_BYTES, "request").await {
        Ok(b) => b,
        Err(e) => return SqsError::invalid(e.message).into_response(),
    };
    let input: Value = if bytes.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        match serde_json::from_slice(&bytes) {
            Ok(v @ Value::Object(_)) => v,
            _ => {
                return SqsError::new(
                    "SerializationException",
                    "SerializationException",
                    "the body must be a JSON object",
                )
                .into_response();
            }
        }
    };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let call = Call {
        s: &s,
        principal: &principal,
        url_base: format!("http://{host}/{}", s.control.config().account_id),
        input,
    };
    match dispatch(&call, operation).await {
        Ok(v) => {
            let mut resp = (StatusCode::OK, v.to_string()).into_response();
            resp.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
            resp
        }
        Err(e) => e.into_response(),
    }
}

async fn dispatch(c: &Call<'_>, op: &str) -> Result<Value> {
    let queues = &c.s.messaging.queues;
    Ok(match op {
        "CreateQueue" => {
            let name = c.required("QueueName")?;
            c.allowed("sqs:CreateQueue", &name)?;
            let attrs = c.settable_attributes()?;
            queues.create(&name, &attrs, c.principal.function()).await?;
            json!({"QueueUrl": c.url(&name)})
        }
        "GetQueueUrl" => {
            let name = c.required("QueueName")?;
            c.allowed("sqs:GetQueueUrl", &name)?;
            queues.get(&name).await?;
            json!({"QueueUrl": c.url(&name)})
        }
        "ListQueues" => {
            let prefix = c.str("QueueNamePrefix")?.unwrap_or_default();
            let max = c.int("MaxResults")?.unwrap_or(1000).clamp(1, 1000) as usize;
            let after = c.str("NextToken")?.unwrap_or_default();
            let names: Vec<String> = queues
                .list(&prefix)
                .await?
                .into_iter()
                .map(|q| q.name)
                .filter(|n| n.as_str() > after.as_str())
                .filter(|n| c.visible(n))
                .collect();
            let page: Vec<String> = names.iter().take(max).map(|n| c.url(n)).collect();
            let mut out = json!({});
            if !page.is_empty() {
                out["QueueUrls"] = json!(page);
            }
            if names.len() > max && c.input.get("MaxResults").is_some() {
                out["NextToken"] = json!(names[max - 1]);
            }
            out
        }
        "DeleteQueue" => {
            queues.delete(&c.queue("sqs:DeleteQueue")?).await?;
            json!({})
        }
        "PurgeQueue" => {
            queues.purge(&c.queue("sqs:PurgeQueue")?).await?;
            json!({})
        }
        "GetQueueAttributes" => {
            let q = c.queue("sqs:GetQueueAttributes")?;
            let attrs = queues
                .attributes(&q, &string_list(c.input.get("AttributeNames")))
                .await?;
            if attrs.is_empty() {
                json!({})
            } else {
                json!({ "Attributes": attrs })
            }
        }
        "SetQueueAttributes" => {
            let q = c.queue("sqs:SetQueueAttributes")?;
            let attrs = c.settable_attributes()?;
            queues
                .set_attributes(&q, &attrs, c.principal.function())
                .await?;
            json!({})
        }
        "ListDeadLetterSourceQueues" => {
            let q = c.queue("sqs:ListDeadLetterSourceQueues")?;
            let mut urls = Vec::new();
            for other in queues.list("").await? {
                let redrive = nimbus_engine::messaging::queues::QueueSettings::of(&other).redrive;
                // Only source queues the caller may see (review finding L12).
                if redrive.is_some_and(|r| r.dead_letter_queue == q) && c.visible(&other.name) {
                    urls.push(c.url(&other.name));
                }
            }
            json!({ "queueUrls": urls })
        }
        "SendMessage" => messages::send(c).await?,
        "SendMessageBatch" => messages::send_batch(c).await?,
        "ReceiveMessage" => messages::receive(c).await?,
        "DeleteMessage" => messages::delete(c).await?,
        "DeleteMessageBatch" => messages::delete_batch(c).await?,
        "ChangeMessageVisibility" => messages::change_visibility(c).await?,
        "ChangeMessageVisibilityBatch" => messages::change_visibility_batch(c).await?,
        other => {
            return Err(SqsError::new(
                "UnsupportedOperation",
                "AWS.SimpleQueueService.UnsupportedOperation",
                format!("The SQS operation {other} is not supported by Nimbus"),
            ));
        }
    })
}
