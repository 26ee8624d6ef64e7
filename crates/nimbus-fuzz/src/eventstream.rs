//! The event-stream encoder (InvokeWithResponseStream's framing), checked by
//! an independent decoder written from the format's description: both CRCs,
//! the lengths, the three string headers and the payload must come back.
//!
//! Input: `event type\ncontent type\npayload` (the payload is the rest).

/// Header value type 7: a string with a 16-bit big-endian length.
const STRING: u8 = 7;

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes(b.try_into().expect("4 bytes"))
}

/// Decodes one message: (headers, payload). Panics on any framing error.
fn decode(m: &[u8]) -> (Vec<(String, String)>, &[u8]) {
    assert!(m.len() >= 16, "a message is at least 16 bytes");
    let total = be32(&m[0..4]) as usize;
    let headers_len = be32(&m[4..8]) as usize;
    assert_eq!(total, m.len(), "total length");
    assert_eq!(be32(&m[8..12]), crc32fast::hash(&m[..8]), "prelude CRC");
    assert_eq!(
        be32(&m[total - 4..]),
        crc32fast::hash(&m[..total - 4]),
        "message CRC"
    );
    assert!(12 + headers_len + 4 <= total, "headers fit");
    let mut h = &m[12..12 + headers_len];
    let mut headers = Vec::new();
    while !h.is_empty() {
        let name_len = h[0] as usize;
        let name = std::str::from_utf8(&h[1..1 + name_len]).expect("UTF-8 name");
        assert_eq!(h[1 + name_len], STRING, "string header");
        let at = 2 + name_len;
        let value_len = u16::from_be_bytes([h[at], h[at + 1]]) as usize;
        let value = std::str::from_utf8(&h[at + 2..at + 2 + value_len]).expect("UTF-8 value");
        headers.push((name.to_owned(), value.to_owned()));
        h = &h[at + 2 + value_len..];
    }
    (headers, &m[12 + headers_len..total - 4])
}

pub fn run(data: &[u8]) {
    let mut parts = data.splitn(3, |&b| b == b'\n');
    let (Some(event_type), Some(content_type)) = (parts.next(), parts.next()) else {
        return;
    };
    let payload = parts.next().unwrap_or(b"");
    let (Ok(event_type), Ok(content_type)) = (
        std::str::from_utf8(event_type),
        std::str::from_utf8(content_type),
    ) else {
        return;
    };
    let message = nimbus_aws::fuzzing::eventstream_event(event_type, content_type, payload);
    let (headers, decoded) = decode(&message);
    let expected = [
        (":event-type", event_type),
        (":content-type", content_type),
        (":message-type", "event"),
    ];
    assert_eq!(headers.len(), expected.len());
    for ((name, value), (want_name, want_value)) in headers.iter().zip(expected) {
        assert_eq!((name.as_str(), value.as_str()), (want_name, want_value));
    }
    assert_eq!(decoded, payload, "payload round trip");
}
