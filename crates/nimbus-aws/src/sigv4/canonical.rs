//! The canonical request, the string to sign and the signing key, exactly as
//! botocore builds them.

use super::*;

/// `Method \n CanonicalURI \n CanonicalQuery \n CanonicalHeaders \n SignedHeaders \n PayloadHash`.
pub fn canonical_request(
    req: &SignedRequest<'_>,
    service: &str,
    signed_headers: &str,
    payload_hash: &str,
) -> Result<String, SigV4Error> {
    let headers = canonical_headers(req.headers, signed_headers)?;
    Ok(format!(
        "{}\n{}\n{}\n{headers}\n{signed_headers}\n{payload_hash}",
        req.method.to_ascii_uppercase(),
        canonical_uri(req.raw_path, service),
        canonical_query(req.raw_query),
    ))
}

/// `AWS4-HMAC-SHA256 \n <amz date> \n <scope> \n hex(sha256(canonical request))`.
pub fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &str) -> String {
    let hash = hex::encode(Sha256::digest(canonical_request.as_bytes()));
    format!("{ALGORITHM}\n{amz_date}\n{scope}\n{hash}")
}

/// `kSigning` = HMAC chain over `"AWS4"+secret`, date, region, service, `aws4_request`.
pub fn derive_signing_key(secret: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    let k_date = hmac_sha256(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac_sha256(&k_date, region.as_bytes());
    let k_service = hmac_sha256(&k_region, service.as_bytes());
    hmac_sha256(&k_service, SCOPE_TERMINATOR.as_bytes())
}

pub(super) fn new_mac(key: &[u8]) -> HmacSha256 {
    <HmacSha256 as KeyInit>::new_from_slice(key).expect("HMAC accepts keys of any length")
}

pub(super) fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    new_mac(key)
        .chain_update(data)
        .finalize()
        .into_bytes()
        .into()
}

/// Every service but S3: drop `.`, `..` and empty segments (keeping a trailing
/// `/`), then percent-encode the still-encoded path again. S3: the raw path.
pub(super) fn canonical_uri(raw_path: &str, service: &str) -> String {
    if raw_path.is_empty() {
        return "/".to_owned();
    }
    if is_s3(service) {
        return raw_path.to_owned();
    }
    uri_encode(remove_dot_segments(raw_path).as_bytes(), true)
}

/// RFC 3986 §5.2.4 plus removal of empty segments, exactly as botocore does it.
pub(super) fn remove_dot_segments(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            other => segments.push(other),
        }
    }
    let first = if path.starts_with('/') { "/" } else { "" };
    let last = if path.ends_with('/') && !segments.is_empty() {
        "/"
    } else {
        ""
    };
    format!("{first}{}{last}", segments.join("/"))
}

/// Decode each `key=value`, re-encode strictly, sort by key then value, join
/// with `&`. `X-Amz-Signature` (presigned URLs) is left out.
pub(super) fn canonical_query(raw_query: Option<&str>) -> String {
    let mut pairs: Vec<(String, String)> = query_pairs(raw_query.unwrap_or(""))
        .filter(|(key, _)| key.as_slice() != SIGNATURE_PARAM.as_bytes())
        .map(|(key, value)| (uri_encode(&key, false), uri_encode(&value, false)))
        .collect();
    pairs.sort_unstable();
    pairs
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// Decoded `(key, value)` pairs of a raw query; `key` alone gives an empty value.
pub(super) fn query_pairs(raw_query: &str) -> impl Iterator<Item = (Vec<u8>, Vec<u8>)> + '_ {
    raw_query
        .split('&')
        .filter(|item| !item.is_empty())
        .map(|item| {
            let (key, value) = item.split_once('=').unwrap_or((item, ""));
            (percent_decode(key), percent_decode(value))
        })
}

pub(super) fn query_param(raw_query: &str, name: &str) -> Option<String> {
    query_pairs(raw_query)
        .find(|(key, _)| key.as_slice() == name.as_bytes())
        .map(|(_, value)| String::from_utf8_lossy(&value).into_owned())
}

pub(super) fn has_presign_params(raw_query: &str) -> bool {
    query_pairs(raw_query).any(|(key, _)| {
        [
            b"X-Amz-Algorithm".as_slice(),
            b"X-Amz-Credential",
            b"X-Amz-Signature",
        ]
        .contains(&key.as_slice())
    })
}

/// `name:value\n` for each signed header, sorted by name. Values are trimmed,
/// inner whitespace collapsed to one space, repeated headers joined with `,`.
pub(super) fn canonical_headers(
    headers: &HeaderMap,
    signed_headers: &str,
) -> Result<String, SigV4Error> {
    let mut names: Vec<String> = signed_headers
        .split(';')
        .map(str::to_ascii_lowercase)
        .collect();
    names.sort_unstable();
    names.dedup();
    let mut out = String::new();
    for name in names {
        let values: Vec<String> = headers
            .get_all(name.as_str())
            .iter()
            .map(|v| trim_all(&header_text(v)))
            .collect();
        if values.is_empty() {
            return Err(SigV4Error::SignedHeaderMissing(name));
        }
        out.push_str(&name);
        out.push(':');
        out.push_str(&values.join(","));
        out.push('\n');
    }
    Ok(out)
}

/// Header bytes as text: UTF-8 if valid, else Latin-1, which is how Python's
/// `http.client` puts botocore's header strings on the wire.
pub(super) fn header_text(value: &HeaderValue) -> Cow<'_, str> {
    let bytes = value.as_bytes();
    match std::str::from_utf8(bytes) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => Cow::Owned(bytes.iter().map(|&b| char::from(b)).collect()),
    }
}

pub(super) fn trim_all(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Percent-encodes everything but `A-Za-z0-9-_.~` (and `/` if asked), upper-case hex.
pub(super) fn uri_encode(bytes: &[u8], keep_slash: bool) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        let unreserved = b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~');
        if unreserved || (keep_slash && b == b'/') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
    }
    out
}

/// `%XX` → byte; a `%` not followed by two hex digits stays literal; `+` stays `+`.
pub(crate) fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex_pair = (b == b'%')
            .then(|| {
                Some((
                    hex_digit(*bytes.get(i + 1)?)?,
                    hex_digit(*bytes.get(i + 2)?)?,
                ))
            })
            .flatten();
        match hex_pair {
            Some((high, low)) => {
                out.push(high << 4 | low);
                i += 3;
            }
            None => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

pub(super) fn hex_digit(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}
