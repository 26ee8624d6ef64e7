//! SQS/SNS message attributes and SNS filter policies.
//!
//! Input: a selector byte, then JSON. Attributes (the SQS JSON protocol's
//! `MessageAttributes` map): parsing and both validations never panic, and
//! accepted attributes survive the stored rendering (same attributes, same
//! MD5, the digest SDKs check). Filter policies: `validate`, then `matches`
//! against the `"attributes"` of the document, never panic.
//!
//! Input for policies: `policy\nmessage attributes as a JSON object`.

use nimbus_engine::messaging::attributes::{
    from_sqs_json, md5_of_attributes, to_event_json, to_sns_json, to_sqs_json, validate_sns,
};
use nimbus_engine::messaging::filter;
use serde_json::Value;

pub fn run(data: &[u8]) {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    if which % 2 == 0 {
        let Ok(json) = serde_json::from_str::<Value>(text) else {
            return;
        };
        let Ok(attributes) = from_sqs_json(Some(&json)) else {
            return;
        };
        let _ = validate_sns(&attributes);
        let _ = (to_event_json(&attributes), to_sns_json(&attributes));
        let stored = to_sqs_json(&attributes);
        let back = from_sqs_json(Some(&stored)).expect("stored attributes parse back");
        assert_eq!(back, attributes, "attributes change through storage");
        assert_eq!(md5_of_attributes(&back), md5_of_attributes(&attributes));
    } else {
        let (policy, message) = text.split_once('\n').unwrap_or((text, "{}"));
        let Ok(policy) = filter::validate(policy) else {
            return;
        };
        let message: Value = serde_json::from_str(message).unwrap_or(Value::Null);
        let _ = filter::matches(&policy, |k| message.get(k).cloned());
    }
}
