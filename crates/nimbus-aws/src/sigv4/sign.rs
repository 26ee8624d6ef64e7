//! Producing signatures (header and presigned forms), for the tests, the fuzz
//! harness and callers of Nimbus itself.

use super::*;

/// Who signs, where, and when.
#[derive(Debug, Clone, Copy)]
pub struct SigningParams<'a> {
    pub access_key_id: &'a str,
    pub secret: &'a str,
    pub region: &'a str,
    pub service: Service,
    pub time: DateTime<Utc>,
}

impl SigningParams<'_> {
    fn credential(&self) -> Credential {
        Credential {
            access_key_id: self.access_key_id.to_owned(),
            date: self.time.format("%Y%m%d").to_string(),
            region: self.region.to_owned(),
            service: self.service.name().to_owned(),
        }
    }

    fn signature(&self, credential: &Credential, canonical_request: &str) -> String {
        let sts = string_to_sign(
            &format_amz_date(self.time),
            &credential.scope(),
            canonical_request,
        );
        let key = derive_signing_key(
            self.secret,
            &credential.date,
            &credential.region,
            &credential.service,
        );
        hex::encode(hmac_sha256(&key, sts.as_bytes()))
    }
}

/// Produces the `Authorization` header value for `req`, signing the named
/// headers (case-insensitive, any order). `req.headers` must already hold them,
/// `host` and `x-amz-date` (equal to `params.time`) included. The payload hash is
/// taken as [`verify`] takes it: `X-Amz-Content-SHA256`, else `body_sha256_hex`.
pub fn sign(
    req: &SignedRequest<'_>,
    params: &SigningParams<'_>,
    signed_headers: &[&str],
) -> Result<String, SigV4Error> {
    let mut names: Vec<String> = signed_headers
        .iter()
        .map(|n| n.to_ascii_lowercase())
        .collect();
    names.sort_unstable();
    names.dedup();
    let signed_headers = names.join(";");
    let service = params.service.name();
    let payload_hash = payload_hash(req, service, AuthLocation::Header)?;
    let canonical_request = canonical_request(req, service, &signed_headers, &payload_hash)?;
    let credential = params.credential();
    let signature = params.signature(&credential, &canonical_request);
    Ok(format!(
        "{ALGORITHM} Credential={}/{}, SignedHeaders={signed_headers}, Signature={signature}",
        credential.access_key_id,
        credential.scope()
    ))
}

/// Produces the query string of a presigned URL for `req` (its own query first,
/// then the `X-Amz-*` parameters, `X-Amz-Signature` last), signing only `host`,
/// as botocore's `generate_presigned_url` does. `req.headers` must hold `host`.
pub fn presign(
    req: &SignedRequest<'_>,
    params: &SigningParams<'_>,
    expires_secs: u64,
) -> Result<String, SigV4Error> {
    if expires_secs == 0 || expires_secs > MAX_PRESIGNED_EXPIRES_SECS {
        return Err(Form::Query.malformed(format!(
            "X-Amz-Expires must be between 1 and {MAX_PRESIGNED_EXPIRES_SECS} seconds"
        )));
    }
    let credential = params.credential();
    let full_credential = format!("{}/{}", credential.access_key_id, credential.scope());
    let mut query = req
        .raw_query
        .filter(|q| !q.is_empty())
        .map(|q| format!("{q}&"))
        .unwrap_or_default();
    query.push_str(&format!(
        "X-Amz-Algorithm={ALGORITHM}&X-Amz-Credential={}&X-Amz-Date={}&X-Amz-Expires={expires_secs}\
         &X-Amz-SignedHeaders=host",
        uri_encode(full_credential.as_bytes(), false),
        format_amz_date(params.time),
    ));
    let presigned = SignedRequest {
        raw_query: Some(&query),
        ..*req
    };
    let service = params.service.name();
    let payload_hash = payload_hash(&presigned, service, AuthLocation::Query { expires_secs })?;
    let canonical_request = canonical_request(&presigned, service, "host", &payload_hash)?;
    let signature = params.signature(&credential, &canonical_request);
    Ok(format!("{query}&{SIGNATURE_PARAM}={signature}"))
}
