//! Message attributes and the MD5 digests SQS clients check.
//!
//! SDKs verify `MD5OfMessageBody` and `MD5OfMessageAttributes`, so both are
//! computed exactly as SQS does: the body's MD5, and for attributes, sorted by
//! name, each name, data type and value as a 4-byte big-endian length and its
//! bytes, with a transport byte (1 string, 2 binary) before the value.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use md5::{Digest, Md5};
use serde_json::{Map, Value, json};

use super::MessagingError;

/// One message attribute (`String`, `Number`, `Binary`, optionally `.suffix`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageAttribute {
    pub data_type: String,
    pub string_value: Option<String>,
    pub binary_value: Option<Vec<u8>>,
}

pub type Attributes = BTreeMap<String, MessageAttribute>;

/// Most attributes on one message.
const MAX_ATTRIBUTES: usize = 10;

/// Bytes the attributes count towards a message's size (SQS and SNS count
/// names, types and values).
pub fn size(attributes: &Attributes) -> usize {
    attributes
        .iter()
        .map(|(k, a)| {
            k.len()
                + a.data_type.len()
                + a.string_value.as_ref().map_or(0, String::len)
                + a.binary_value.as_ref().map_or(0, Vec::len)
        })
        .sum()
}

pub fn md5_hex(bytes: &[u8]) -> String {
    hex::encode(Md5::digest(bytes))
}

/// SQS's digest of message attributes; `None` without attributes.
pub fn md5_of_attributes(attributes: &Attributes) -> Option<String> {
    if attributes.is_empty() {
        return None;
    }
    let mut buf = Vec::new();
    let put = |buf: &mut Vec<u8>, b: &[u8]| {
        buf.extend_from_slice(&(b.len() as u32).to_be_bytes());
        buf.extend_from_slice(b);
    };
    for (name, a) in attributes {
        put(&mut buf, name.as_bytes());
        put(&mut buf, a.data_type.as_bytes());
        match (&a.string_value, &a.binary_value) {
            (_, Some(b)) => {
                buf.push(2);
                put(&mut buf, b);
            }
            (Some(s), None) => {
                buf.push(1);
                put(&mut buf, s.as_bytes());
            }
            (None, None) => {}
        }
    }
    Some(md5_hex(&buf))
}

/// Parses the SQS JSON shape `{"name": {"DataType", "StringValue" | "BinaryValue"}}`
/// (binary values base64, as the JSON protocol sends them).
pub fn from_sqs_json(v: Option<&Value>) -> Result<Attributes, MessagingError> {
    let mut out = Attributes::new();
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(out);
    };
    let obj = v.as_object().ok_or_else(|| {
        MessagingError::InvalidParameter("MessageAttributes must be a map".into())
    })?;
    for (name, a) in obj {
        let field = |k: &str| a.get(k).and_then(Value::as_str).map(str::to_string);
        let binary = match field("BinaryValue") {
            Some(b) => Some(B64.decode(b).map_err(|_| {
                MessagingError::InvalidParameter(format!(
                    "The message attribute '{name}' has an invalid binary value."
                ))
            })?),
            None => None,
        };
        out.insert(
            name.clone(),
            MessageAttribute {
                data_type: field("DataType").unwrap_or_default(),
                string_value: field("StringValue"),
                binary_value: binary,
            },
        );
    }
    validate(&out)?;
    Ok(out)
}

pub fn validate(attributes: &Attributes) -> Result<(), MessagingError> {
    if attributes.len() > MAX_ATTRIBUTES {
        return Err(MessagingError::InvalidParameter(format!(
            "Number of message attributes [{}] exceeds the allowed maximum [{MAX_ATTRIBUTES}].",
            attributes.len()
        )));
    }
    for (name, a) in attributes {
        let bad = |why: &str| {
            Err(MessagingError::InvalidParameter(format!(
                "The message attribute '{name}' {why}"
            )))
        };
        if name.is_empty()
            || name.len() > 256
            || name.starts_with('.')
            || name.ends_with('.')
            || name.contains("..")
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
        {
            return bad("has an invalid name.");
        }
        let base = a.data_type.split('.').next().unwrap_or("");
        match base {
            "String" | "Number" if a.string_value.is_none() => {
                return bad(
                    "must contain a non-empty message attribute value for message attribute type 'String'.",
                );
            }
            "Number"
                if a.string_value
                    .as_deref()
                    .and_then(|s| s.parse::<f64>().ok())
                    .is_none() =>
            {
                return bad(
                    "has an invalid message attribute value for message attribute type 'Number'.",
                );
            }
            "Binary" if a.binary_value.is_none() => {
                return bad(
                    "must contain a non-empty message attribute value for message attribute type 'Binary'.",
                );
            }
            "String" | "Number" | "Binary" => {}
            _ => {
                return bad(&format!(
                    "has an invalid message attribute type '{}'.",
                    a.data_type
                ));
            }
        }
    }
    Ok(())
}

/// SNS attributes: also `String.Array` (a JSON array in `StringValue`).
pub fn validate_sns(attributes: &Attributes) -> Result<(), MessagingError> {
    let mut sqs_like = Attributes::new();
    for (name, a) in attributes {
        if a.data_type == "String.Array" {
            let ok = a
                .string_value
                .as_deref()
                .and_then(|s| serde_json::from_str::<Value>(s).ok())
                .is_some_and(|v| v.is_array());
            if !ok {
                return Err(MessagingError::InvalidParameter(format!(
                    "Invalid parameter: Message attribute '{name}' of type String.Array must be a JSON array"
                )));
            }
        } else {
            sqs_like.insert(name.clone(), a.clone());
        }
    }
    validate(&sqs_like)
}

/// The SQS JSON protocol's rendering (ReceiveMessage, storage).
pub fn to_sqs_json(attributes: &Attributes) -> Value {
    let mut m = Map::new();
    for (name, a) in attributes {
        let mut v = json!({"DataType": a.data_type});
        if let Some(s) = &a.string_value {
            v["StringValue"] = json!(s);
        }
        if let Some(b) = &a.binary_value {
            v["BinaryValue"] = json!(B64.encode(b));
        }
        m.insert(name.clone(), v);
    }
    Value::Object(m)
}

/// The Lambda SQS event's rendering (camelCase, list fields present).
pub fn to_event_json(attributes: &Attributes) -> Value {
    let mut m = Map::new();
    for (name, a) in attributes {
        let mut v =
            json!({"stringListValues": [], "binaryListValues": [], "dataType": a.data_type});
        if let Some(s) = &a.string_value {
            v["stringValue"] = json!(s);
        }
        if let Some(b) = &a.binary_value {
            v["binaryValue"] = json!(B64.encode(b));
        }
        m.insert(name.clone(), v);
    }
    Value::Object(m)
}

/// The SNS rendering: `{"name": {"Type": …, "Value": …}}` (binary as base64).
pub fn to_sns_json(attributes: &Attributes) -> Value {
    let mut m = Map::new();
    for (name, a) in attributes {
        let value = match (&a.string_value, &a.binary_value) {
            (_, Some(b)) => B64.encode(b),
            (Some(s), None) => s.clone(),
            (None, None) => String::new(),
        };
        m.insert(name.clone(), json!({"Type": a.data_type, "Value": value}));
    }
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5s_match_sqs() {
        // Values from botocore's / the AWS SDKs' published test vectors.
        assert_eq!(md5_hex(b"hello"), "5d41402abc4b2a76b9719d911017c592");
        let mut a = Attributes::new();
        a.insert(
            "kind".into(),
            MessageAttribute {
                data_type: "String".into(),
                string_value: Some("order".into()),
                binary_value: None,
            },
        );
        let mut buf = Vec::new();
        for part in [&b"kind"[..], b"String"] {
            buf.extend_from_slice(&(part.len() as u32).to_be_bytes());
            buf.extend_from_slice(part);
        }
        buf.push(1);
        buf.extend_from_slice(&5u32.to_be_bytes());
        buf.extend_from_slice(b"order");
        assert_eq!(md5_of_attributes(&a), Some(md5_hex(&buf)));
        assert_eq!(md5_of_attributes(&Attributes::new()), None);
    }

    #[test]
    fn invalid_attributes_are_refused() {
        let v = json!({"n": {"DataType": "Number", "StringValue": "x"}});
        assert!(from_sqs_json(Some(&v)).is_err());
        let v = json!({"n": {"DataType": "Weird", "StringValue": "x"}});
        assert!(from_sqs_json(Some(&v)).is_err());
        let v = json!({"n": {"DataType": "Number.int", "StringValue": "4"}});
        assert_eq!(from_sqs_json(Some(&v)).unwrap().len(), 1);
    }
}
