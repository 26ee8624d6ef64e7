//! S3 XML bodies Nimbus acts on: NotificationConfiguration (read by s3s,
//! then turned into Nimbus's rules), Delete (DeleteObjects) and
//! CompletedMultipartUpload. Nothing may panic, and an accepted notification
//! configuration is a fixed point: what GetBucketNotificationConfiguration
//! answers, written back as XML and put again, gives the same rules.
//!
//! Input: a selector byte, then the XML body.

use nimbus_aws::fuzzing::s3_notification;
use s3s::dto::{CompletedMultipartUpload, Delete, NotificationConfiguration};
use s3s::xml::{Deserialize, Deserializer, Serialize, Serializer};

fn parse<'x, T: Deserialize<'x>>(xml: &'x [u8]) -> Option<T> {
    let mut d = Deserializer::new(xml);
    let value = T::deserialize(&mut d).ok()?;
    d.expect_eof().ok()?;
    Some(value)
}

fn to_xml<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    value
        .serialize(&mut Serializer::new(&mut out))
        .expect("serializes");
    out
}

pub fn run(data: &[u8]) {
    let Some((&which, xml)) = data.split_first() else {
        return;
    };
    match which % 3 {
        0 => {
            let Some(config) = parse::<NotificationConfiguration>(xml) else {
                return;
            };
            let Ok(rendered) = s3_notification(&config) else {
                return;
            };
            let again = s3_notification(&rendered).expect("a rendered configuration is accepted");
            assert!(again == rendered, "rendering is not a fixed point");
            let text = to_xml(&rendered);
            let reread: NotificationConfiguration =
                parse(&text).expect("a rendered configuration parses back");
            let reread = s3_notification(&reread).expect("and is accepted");
            assert!(
                reread == rendered,
                "rules change through XML: {}",
                String::from_utf8_lossy(&text)
            );
        }
        1 => {
            let _ = parse::<Delete>(xml);
        }
        _ => {
            let _ = parse::<CompletedMultipartUpload>(xml);
        }
    }
}
