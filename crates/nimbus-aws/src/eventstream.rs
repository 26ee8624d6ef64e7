//! The AWS event stream framing (`application/vnd.amazon.eventstream`), the
//! binary format of InvokeWithResponseStream's answer that the SDKs decode.
//!
//! A message is a prelude (total length, headers length, CRC32 of those eight
//! bytes, all big-endian), the headers, the payload and a CRC32 of everything
//! before it. Only string headers are written: that is all the events here use.

use bytes::{BufMut, Bytes, BytesMut};

/// Header value type 7: a UTF-8 string with a 16-bit length.
const STRING: u8 = 7;

/// One `event` message with `:event-type` and `:content-type` headers.
pub fn event(event_type: &str, content_type: &str, payload: &[u8]) -> Bytes {
    let headers: [(&str, &str); 3] = [
        (":event-type", event_type),
        (":content-type", content_type),
        (":message-type", "event"),
    ];
    let headers_len: usize = headers
        .iter()
        .map(|(n, v)| 1 + n.len() + 1 + 2 + v.len())
        .sum();
    let total = 12 + headers_len + payload.len() + 4;
    let mut m = BytesMut::with_capacity(total);
    m.put_u32(total as u32);
    m.put_u32(headers_len as u32);
    m.put_u32(crc32fast::hash(&m[..8]));
    for (name, value) in headers {
        m.put_u8(name.len() as u8);
        m.put_slice(name.as_bytes());
        m.put_u8(STRING);
        m.put_u16(value.len() as u16);
        m.put_slice(value.as_bytes());
    }
    m.put_slice(payload);
    m.put_u32(crc32fast::hash(&m));
    m.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_a_message_with_both_checksums() {
        let m = event("PayloadChunk", "application/octet-stream", b"hello");
        let total = u32::from_be_bytes(m[0..4].try_into().unwrap()) as usize;
        let headers = u32::from_be_bytes(m[4..8].try_into().unwrap()) as usize;
        assert_eq!(total, m.len());
        assert_eq!(
            u32::from_be_bytes(m[8..12].try_into().unwrap()),
            crc32fast::hash(&m[..8])
        );
        assert_eq!(&m[12 + headers..total - 4], b"hello");
        assert_eq!(
            u32::from_be_bytes(m[total - 4..].try_into().unwrap()),
            crc32fast::hash(&m[..total - 4])
        );
        // The first header, as the decoders read it.
        assert_eq!(m[12] as usize, ":event-type".len());
        assert_eq!(&m[13..24], b":event-type");
        assert_eq!(m[24], STRING);
        assert_eq!(u16::from_be_bytes([m[25], m[26]]), 12);
        assert_eq!(&m[27..39], b"PayloadChunk");
    }
}
