//! Entry points for the fuzz targets (`crates/nimbus-fuzz`, `fuzz/`), not an
//! API: they reach parsers and encoders that are private to this crate, so
//! the targets exercise the code the server runs rather than a copy of it.

use bytes::Bytes;
use s3s::dto::NotificationConfiguration;

/// One event-stream `event` message, as InvokeWithResponseStream frames it.
pub fn eventstream_event(event_type: &str, content_type: &str, payload: &[u8]) -> Bytes {
    crate::eventstream::event(event_type, content_type, payload)
}

/// PutBucketNotificationConfiguration's reading of a configuration, rendered
/// back as GetBucketNotificationConfiguration answers it; `Err` carries the
/// S3 error code the request would get.
pub fn s3_notification(
    config: &NotificationConfiguration,
) -> Result<NotificationConfiguration, String> {
    crate::s3::notify::parse_rules(config)
        .map(crate::s3::notify::render)
        .map_err(|e| e.code().as_str().to_owned())
}
