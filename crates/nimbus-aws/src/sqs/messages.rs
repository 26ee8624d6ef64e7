//! The message operations: send, receive (long polling), delete and
//! visibility, single and batched. Batches answer per entry
//! (`Successful` / `Failed`); only malformed batches fail as a whole.

use std::collections::HashSet;
use std::time::Duration;

use nimbus_engine::messaging::attributes;
use nimbus_engine::messaging::queues::{ReceiveRequest, Received, SendRequest};
use serde_json::{Value, json};

use super::{Call, Result, SqsError, int_of, string_list};

const MAX_BATCH: usize = 10;

fn send_request(c: &Call<'_>, v: &Value) -> Result<SendRequest> {
    let body = match v.get("MessageBody") {
        Some(Value::String(s)) => s.clone(),
        None | Some(Value::Null) => return Err(SqsError::missing("MessageBody")),
        Some(_) => return Err(SqsError::invalid("MessageBody must be a string")),
    };
    let delay = int_of(v, "DelaySeconds")?;
    if let Some(d) = delay
        && !(0..=900).contains(&d)
    {
        return Err(SqsError::invalid(format!(
            "Value {d} for parameter DelaySeconds is invalid. Reason: must be between 0 and 900, if provided."
        )));
    }
    Ok(SendRequest {
        body,
        attributes: attributes::from_sqs_json(v.get("MessageAttributes"))?,
        delay_s: delay.map(|d| d as u32),
        sender_id: c.sender_id(),
        trace: c
            .s
            .messaging
            .trace_of(c.principal.function(), c.principal.sent_trace()),
    })
}

pub async fn send(c: &Call<'_>) -> Result<Value> {
    let q = c.queue("sqs:SendMessage")?;
    let req = send_request(c, &c.input)?;
    let sent = c.s.messaging.queues.send(&q, req).await?;
    let mut out = json!({"MessageId": sent.id, "MD5OfMessageBody": sent.md5_body});
    if let Some(md5) = sent.md5_attributes {
        out["MD5OfMessageAttributes"] = json!(md5);
    }
    Ok(out)
}

/// The entries of a batch request, checked as SQS does.
fn entries<'a>(c: &'a Call<'_>, key: &str) -> Result<Vec<(&'a str, &'a Value)>> {
    let list = c
        .input
        .get(key)
        .and_then(Value::as_array)
        .ok_or_else(|| SqsError::missing(key))?;
    if list.is_empty() {
        return Err(SqsError::new(
            "EmptyBatchRequest",
            "AWS.SimpleQueueService.EmptyBatchRequest",
            "There should be at least one entry in the request.",
        ));
    }
    if list.len() > MAX_BATCH {
        return Err(SqsError::new(
            "TooManyEntriesInBatchRequest",
            "AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
            format!(
                "Maximum number of entries per request are {MAX_BATCH}. You have sent {}.",
                list.len()
            ),
        ));
    }
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for e in list {
        let id = e.get("Id").and_then(Value::as_str).unwrap_or("");
        if id.is_empty()
            || id.len() > 80
            || !id
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
        {
            return Err(SqsError::new(
                "InvalidBatchEntryId",
                "AWS.SimpleQueueService.InvalidBatchEntryId",
                "A batch entry id can only contain alphanumeric characters, hyphens and underscores. It can be at most 80 letters long.",
            ));
        }
        if !seen.insert(id) {
            return Err(SqsError::new(
                "BatchEntryIdsNotDistinct",
                "AWS.SimpleQueueService.BatchEntryIdsNotDistinct",
                format!("Id {id} repeated."),
            ));
        }
        out.push((id, e));
    }
    Ok(out)
}

fn failed(id: &str, e: SqsError) -> Value {
    json!({"Id": id, "SenderFault": !e.status.is_server_error(), "Code": e.query_code, "Message": e.message})
}

pub async fn send_batch(c: &Call<'_>) -> Result<Value> {
    let q = c.queue("sqs:SendMessage")?;
    let list = entries(c, "Entries")?;
    let mut ok_reqs = Vec::new();
    let mut ok_ids = Vec::new();
    let mut failures = Vec::new();
    for (id, e) in &list {
        match send_request(c, e) {
            Ok(r) => {
                ok_reqs.push(r);
                ok_ids.push(*id);
            }
            Err(err) => failures.push(failed(id, err)),
        }
    }
    let mut successful = Vec::new();
    let results = c.s.messaging.queues.send_batch(&q, ok_reqs).await?;
    for (id, r) in ok_ids.into_iter().zip(results) {
        match r {
            Ok(sent) => {
                let mut v =
                    json!({"Id": id, "MessageId": sent.id, "MD5OfMessageBody": sent.md5_body});
                if let Some(md5) = sent.md5_attributes {
                    v["MD5OfMessageAttributes"] = json!(md5);
                }
                successful.push(v);
            }
            Err(e) => failures.push(failed(id, e.into())),
        }
    }
    Ok(json!({"Successful": successful, "Failed": failures}))
}

/// Which message attributes a receive asked for: `All`, `.*`, names, `prefix.*`.
fn wants_attribute(wanted: &[String], name: &str) -> bool {
    wanted.iter().any(|w| {
        w == "All"
            || w == ".*"
            || w == name
            || w.strip_suffix(".*")
                .is_some_and(|p| name.starts_with(p) && name[p.len()..].starts_with('.'))
    })
}

fn render(r: &Received, system: &[String], wanted_attrs: &[String]) -> Value {
    let m = &r.message;
    let mut v = json!({
        "MessageId": m.id,
        "ReceiptHandle": r.receipt_handle,
        "MD5OfBody": m.md5_body,
        "Body": m.body,
    });
    let mut sys = serde_json::Map::new();
    let all = system.iter().any(|s| s == "All");
    let mut put = |k: &str, val: String| {
        if all || system.iter().any(|s| s == k) {
            sys.insert(k.to_string(), json!(val));
        }
    };
    put("SenderId", m.sender_id.clone());
    put("SentTimestamp", m.sent_ms.to_string());
    put("ApproximateReceiveCount", m.receive_count.to_string());
    put(
        "ApproximateFirstReceiveTimestamp",
        m.first_receive_ms.unwrap_or(m.sent_ms).to_string(),
    );
    if let Some(src) = &m.dead_letter_source {
        put("DeadLetterQueueSourceArn", src.clone());
    }
    if !sys.is_empty() {
        v["Attributes"] = Value::Object(sys);
    }
    let attrs = r.attributes();
    let chosen: attributes::Attributes = attrs
        .into_iter()
        .filter(|(k, _)| wants_attribute(wanted_attrs, k))
        .collect();
    if !chosen.is_empty() {
        v["MessageAttributes"] = attributes::to_sqs_json(&chosen);
        if let Some(md5) = attributes::md5_of_attributes(&chosen) {
            v["MD5OfMessageAttributes"] = json!(md5);
        }
    }
    v
}

pub async fn receive(c: &Call<'_>) -> Result<Value> {
    let q = c.queue("sqs:ReceiveMessage")?;
    let max = c.int("MaxNumberOfMessages")?.unwrap_or(1);
    if !(1..=10).contains(&max) {
        return Err(SqsError::invalid(format!(
            "Value {max} for parameter MaxNumberOfMessages is invalid. Reason: Must be between 1 and 10, if provided."
        )));
    }
    let wait = c.int("WaitTimeSeconds")?;
    if let Some(w) = wait
        && !(0..=20).contains(&w)
    {
        return Err(SqsError::invalid(format!(
            "Value {w} for parameter WaitTimeSeconds is invalid. Reason: Must be >= 0 and <= 20, if provided."
        )));
    }
    let visibility = c.int("VisibilityTimeout")?;
    if let Some(v) = visibility
        && !(0..=43_200).contains(&v)
    {
        return Err(SqsError::invalid(format!(
            "Value {v} for parameter VisibilityTimeout is invalid. Reason: Must be between 0 and 43200."
        )));
    }
    let got =
        c.s.messaging
            .queues
            .receive(
                &q,
                ReceiveRequest {
                    max: max as usize,
                    visibility_s: visibility.map(|v| v as u32),
                    wait: wait.map(|w| Duration::from_secs(w as u64)),
                },
                None,
            )
            .await?;
    let mut system = string_list(c.input.get("AttributeNames"));
    system.extend(string_list(c.input.get("MessageSystemAttributeNames")));
    let wanted = string_list(c.input.get("MessageAttributeNames"));
    let messages: Vec<Value> = got.iter().map(|r| render(r, &system, &wanted)).collect();
    Ok(if messages.is_empty() {
        json!({})
    } else {
        json!({ "Messages": messages })
    })
}

pub async fn delete(c: &Call<'_>) -> Result<Value> {
    let q = c.queue("sqs:DeleteMessage")?;
    let handle = c.required("ReceiptHandle")?;
    c.s.messaging.queues.delete_message(&q, &handle).await?;
    Ok(json!({}))
}

pub async fn delete_batch(c: &Call<'_>) -> Result<Value> {
    let q = c.queue("sqs:DeleteMessage")?;
    let (mut ok, mut failures) = (Vec::new(), Vec::new());
    for (id, e) in entries(c, "Entries")? {
        let handle = e.get("ReceiptHandle").and_then(Value::as_str).unwrap_or("");
        match c.s.messaging.queues.delete_message(&q, handle).await {
            Ok(()) => ok.push(json!({"Id": id})),
            Err(err) => failures.push(failed(id, err.into())),
        }
    }
    Ok(json!({"Successful": ok, "Failed": failures}))
}

pub async fn change_visibility(c: &Call<'_>) -> Result<Value> {
    let q = c.queue("sqs:ChangeMessageVisibility")?;
    let handle = c.required("ReceiptHandle")?;
    let timeout = c
        .int("VisibilityTimeout")?
        .ok_or_else(|| SqsError::missing("VisibilityTimeout"))?;
    let timeout = u32::try_from(timeout)
        .map_err(|_| SqsError::invalid("VisibilityTimeout must be between 0 and 43200"))?;
    c.s.messaging
        .queues
        .change_visibility(&q, &handle, timeout)
        .await?;
    Ok(json!({}))
}

pub async fn change_visibility_batch(c: &Call<'_>) -> Result<Value> {
    let q = c.queue("sqs:ChangeMessageVisibility")?;
    let (mut ok, mut failures) = (Vec::new(), Vec::new());
    for (id, e) in entries(c, "Entries")? {
        let handle = e.get("ReceiptHandle").and_then(Value::as_str).unwrap_or("");
        let timeout = e
            .get("VisibilityTimeout")
            .and_then(Value::as_u64)
            .unwrap_or(0)
            .min(u64::from(u32::MAX)) as u32;
        match c
            .s
            .messaging
            .queues
            .change_visibility(&q, handle, timeout)
            .await
        {
            Ok(()) => ok.push(json!({"Id": id})),
            Err(err) => failures.push(failed(id, err.into())),
        }
    }
    Ok(json!({"Successful": ok, "Failed": failures}))
}
