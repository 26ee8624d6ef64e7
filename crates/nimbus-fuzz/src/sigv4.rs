//! SigV4: canonicalisation, the `Authorization` header and presigned URLs.
//!
//! Input: a mode byte, then `\n`-separated fields. Mode 0 hands arbitrary
//! headers (`name: value` lines after the first two fields, method and
//! `path?query`) to `parse` and, when they parse, to `verify`: neither may
//! panic. Modes 1 and 2 sign an arbitrary request (method, path, query,
//! region, extra signed headers) with `sign` or `presign` and assert that
//! `parse` + `verify` accept it: whatever the path, query and header bytes,
//! what Nimbus signs (as botocore would) it must verify.

use std::time::Duration;

use chrono::{DateTime, Utc};
use http::{HeaderMap, HeaderName, HeaderValue};
use nimbus_aws::sigv4::{
    self, EMPTY_SHA256, MAX_PRESIGNED_EXPIRES_SECS, Service, SignedRequest, SigningParams,
};
use percent_encoding::percent_decode_str;

const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const ACCESS_KEY: &str = "AKIDEXAMPLE";
const SKEW: Duration = Duration::from_secs(15 * 60);

/// Headers the round trips set themselves.
const OWN_HEADERS: [&str; 6] = [
    "host",
    "authorization",
    "x-amz-date",
    "date",
    "x-amz-content-sha256",
    "x-amz-security-token",
];

pub fn run(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    match mode % 3 {
        0 => parse_anything(&text),
        1 => round_trip(&text, mode, false),
        _ => round_trip(&text, mode, true),
    }
}

fn header_lines<'t>(lines: impl Iterator<Item = &'t str>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for line in lines {
        let (name, value) = line.split_once(':').unwrap_or((line, ""));
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.trim().as_bytes()),
            HeaderValue::from_str(value.trim_start()),
        ) {
            headers.append(name, value);
        }
    }
    headers
}

fn parse_anything(text: &str) {
    let mut lines = text.split('\n');
    let method = lines.next().unwrap_or("GET");
    let target = lines.next().unwrap_or("/");
    let (raw_path, raw_query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let headers = header_lines(lines);
    let req = SignedRequest {
        method,
        raw_path,
        raw_query,
        headers: &headers,
        body_sha256_hex: Some(EMPTY_SHA256),
    };
    if let Ok(parsed) = sigv4::parse(&req) {
        let _ = sigv4::check_service(&parsed, Service::Lambda);
        let _ = sigv4::verify(&req, &parsed, SECRET, parsed.request_time, SKEW);
        let _ = sigv4::canonical_request(&req, "s3", &parsed.signed_headers, EMPTY_SHA256);
    }
}

fn round_trip(text: &str, mode: u8, presigned: bool) {
    let f = crate::fields(text, 6);
    let get = |i: usize| f.get(i).copied().unwrap_or("");
    let method = match get(0) {
        "" => "GET",
        m => m,
    };
    let raw_path = match get(1) {
        "" => "/",
        p => p,
    };
    let raw_query = Some(get(2)).filter(|q| !q.is_empty());
    let region = Some(get(3))
        .filter(|r| !r.is_empty() && r.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        .unwrap_or("us-east-1");
    let service = if mode & 0x80 != 0 {
        Service::S3
    } else {
        Service::Lambda
    };
    let time: DateTime<Utc> = DateTime::from_timestamp(1_765_080_000, 0).expect("valid");
    let host = match get(4) {
        h if HeaderValue::from_str(h).is_ok() && !h.is_empty() => h,
        _ => "localhost:9000",
    };

    let mut headers = HeaderMap::new();
    headers.insert("host", HeaderValue::from_str(host).expect("checked"));
    let mut signed = vec!["host".to_owned()];
    if !presigned {
        let amz_date = time.format("%Y%m%dT%H%M%SZ").to_string();
        headers.insert(
            "x-amz-date",
            HeaderValue::from_str(&amz_date).expect("ascii"),
        );
        signed.push("x-amz-date".to_owned());
    }
    let extra = header_lines(get(5).split('\n'));
    for (name, value) in &extra {
        if OWN_HEADERS.contains(&name.as_str()) {
            continue;
        }
        headers.append(name.clone(), value.clone());
        if !presigned {
            signed.push(name.as_str().to_owned());
        }
    }
    let params = SigningParams {
        access_key_id: ACCESS_KEY,
        secret: SECRET,
        region,
        service,
        time,
    };
    let body_sha256_hex = Some(EMPTY_SHA256);
    if presigned {
        // A query that already carries presign parameters is not one a client
        // presigns (the parameters would be read twice).
        let decoded = percent_decode_str(raw_query.unwrap_or("")).decode_utf8_lossy();
        if decoded.contains("X-Amz-") {
            return;
        }
        let unsigned = SignedRequest {
            method,
            raw_path,
            raw_query,
            headers: &headers,
            body_sha256_hex,
        };
        let expires = u64::from(mode) * 2_371 % MAX_PRESIGNED_EXPIRES_SECS + 1;
        let query = sigv4::presign(&unsigned, &params, expires).expect("presign");
        let req = SignedRequest {
            raw_query: Some(&query),
            ..unsigned
        };
        let parsed = sigv4::parse(&req).unwrap_or_else(|e| panic!("parse {query:?}: {e}"));
        if let Err(e) = sigv4::verify(&req, &parsed, SECRET, time, SKEW) {
            panic!("presigned {method} {raw_path}?{query} does not verify: {e:?}");
        }
    } else {
        let names: Vec<&str> = signed.iter().map(String::as_str).collect();
        let unsigned = SignedRequest {
            method,
            raw_path,
            raw_query,
            headers: &headers,
            body_sha256_hex,
        };
        let authorization = sigv4::sign(&unsigned, &params, &names).expect("sign");
        let mut signed_headers = headers.clone();
        signed_headers.insert(
            "authorization",
            HeaderValue::from_str(&authorization).expect("ascii"),
        );
        let req = SignedRequest {
            headers: &signed_headers,
            ..unsigned
        };
        let parsed = sigv4::parse_authorization(&signed_headers)
            .unwrap_or_else(|e| panic!("parse {authorization:?}: {e}"));
        if let Err(e) = sigv4::verify(&req, &parsed, SECRET, time, SKEW) {
            panic!("signed {method} {raw_path}?{raw_query:?} does not verify: {e:?}");
        }
    }
}
