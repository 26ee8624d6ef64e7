//! Reading the signature's claims (header or presigned query) without the secret.

use super::*;

/// Reads the signature from the `Authorization` header or, failing that, from
/// presigned-URL query parameters.
pub fn parse(req: &SignedRequest<'_>) -> Result<ParsedAuth, SigV4Error> {
    let presigned = req.raw_query.filter(|q| has_presign_params(q));
    match (req.headers.contains_key(AUTHORIZATION), presigned) {
        (true, Some(_)) => Err(SigV4Error::IncompleteSignature(ONLY_ONE_MECHANISM.into())),
        (true, None) => parse_authorization(req.headers),
        (false, Some(query)) => parse_presigned(query),
        (false, None) => Err(SigV4Error::MissingAuthenticationToken),
    }
}

/// Reads `Authorization: AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…`
/// and the request time (`X-Amz-Date`, else `Date`).
pub fn parse_authorization(headers: &HeaderMap) -> Result<ParsedAuth, SigV4Error> {
    let form = Form::Header;
    let value = headers
        .get(AUTHORIZATION)
        .ok_or(SigV4Error::MissingAuthenticationToken)?
        .to_str()
        .map_err(|_| form.malformed("The Authorization header contains invalid characters."))?
        .trim();
    let (algorithm, params) = value.split_once(' ').unwrap_or((value, ""));
    if algorithm != ALGORITHM {
        return Err(form.malformed(format!("Unsupported AWS 'algorithm': '{algorithm}'")));
    }
    let fields = AuthFields::parse(params)?;
    let credential = parse_credential(form, fields.credential)?;
    let (amz_date, request_time) = header_request_time(headers)?;
    check_scope_date(&credential, &amz_date)?;
    check_signed_headers(form, fields.signed_headers)?;
    let session_token = match headers.get(X_AMZ_SECURITY_TOKEN) {
        Some(token) => Some(
            token
                .to_str()
                .map_err(|_| form.malformed("X-Amz-Security-Token contains invalid characters."))?
                .to_owned(),
        ),
        None => None,
    };
    Ok(ParsedAuth {
        credential,
        signed_headers: fields.signed_headers.to_owned(),
        signature: fields.signature.to_owned(),
        amz_date,
        request_time,
        session_token,
        location: AuthLocation::Header,
    })
}

/// Reads the `X-Amz-*` parameters of a presigned URL from the raw query.
pub fn parse_presigned(raw_query: &str) -> Result<ParsedAuth, SigV4Error> {
    let form = Form::Query;
    let param = |name: &str| query_param(raw_query, name);
    let (
        Some(algorithm),
        Some(credential),
        Some(amz_date),
        Some(expires),
        Some(signed_headers),
        Some(signature),
    ) = (
        param("X-Amz-Algorithm"),
        param("X-Amz-Credential"),
        param("X-Amz-Date"),
        param("X-Amz-Expires"),
        param("X-Amz-SignedHeaders"),
        param(SIGNATURE_PARAM),
    )
    else {
        return Err(form.malformed(MISSING_PRESIGN_PARAMS));
    };
    if algorithm != ALGORITHM {
        return Err(form.malformed(format!("X-Amz-Algorithm only supports \"{ALGORITHM}\"")));
    }
    let credential = parse_credential(form, &credential)?;
    let request_time =
        parse_amz_date(&amz_date).ok_or_else(|| form.malformed(bad_amz_date_message(&amz_date)))?;
    let expires_secs = parse_expires(&expires)?;
    check_scope_date(&credential, &amz_date)?;
    check_signed_headers(form, &signed_headers)?;
    Ok(ParsedAuth {
        credential,
        signed_headers,
        signature,
        amz_date,
        request_time,
        session_token: param("X-Amz-Security-Token"),
        location: AuthLocation::Query { expires_secs },
    })
}

/// The three parameters of the `Authorization` header.
pub(super) struct AuthFields<'h> {
    credential: &'h str,
    signed_headers: &'h str,
    signature: &'h str,
}

impl<'h> AuthFields<'h> {
    fn parse(params: &'h str) -> Result<Self, SigV4Error> {
        let (mut credential, mut signed_headers, mut signature) = (None, None, None);
        for part in params.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = part.split_once('=').ok_or_else(|| {
                Form::Header.malformed(format!(
                    "Invalid key=value pair (missing equal-sign) in Authorization header: '{part}'"
                ))
            })?;
            match key.trim() {
                "Credential" => credential = Some(value.trim()),
                "SignedHeaders" => signed_headers = Some(value.trim()),
                "Signature" => signature = Some(value.trim()),
                _ => {}
            }
        }
        match (credential, signed_headers, signature) {
            (Some(credential), Some(signed_headers), Some(signature)) => Ok(AuthFields {
                credential,
                signed_headers,
                signature,
            }),
            _ => {
                let missing: Vec<String> = [
                    ("Credential", credential.is_none()),
                    ("Signature", signature.is_none()),
                    ("SignedHeaders", signed_headers.is_none()),
                ]
                .iter()
                .filter(|(_, missing)| *missing)
                .map(|(name, _)| format!("Authorization header requires '{name}' parameter."))
                .collect();
                Err(Form::Header.malformed(missing.join(" ")))
            }
        }
    }
}

pub(super) fn parse_credential(form: Form, value: &str) -> Result<Credential, SigV4Error> {
    Credential::parse(value).ok_or_else(|| {
        form.malformed(format!(
            "Credential must have the form \
             '<access key>/<yyyymmdd>/<region>/<service>/aws4_request', got '{value}'."
        ))
    })
}

pub(super) fn parse_expires(value: &str) -> Result<u64, SigV4Error> {
    let secs: u64 = value
        .parse()
        .map_err(|_| Form::Query.malformed("X-Amz-Expires should be a number"))?;
    if secs > MAX_PRESIGNED_EXPIRES_SECS {
        return Err(Form::Query.malformed(format!(
            "X-Amz-Expires must be less than a week (in seconds) that is \
             {MAX_PRESIGNED_EXPIRES_SECS}"
        )));
    }
    Ok(secs)
}

/// `host` must be signed (AWS insists, and it pins the request to this endpoint).
pub(super) fn check_signed_headers(form: Form, signed_headers: &str) -> Result<(), SigV4Error> {
    let names: Vec<&str> = signed_headers.split(';').collect();
    if names.iter().any(|n| n.is_empty()) {
        return Err(form.malformed(format!("SignedHeaders is malformed: '{signed_headers}'.")));
    }
    if !names.iter().any(|n| n.eq_ignore_ascii_case("host")) {
        return Err(form.malformed(
            "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.",
        ));
    }
    Ok(())
}

/// The request time from `X-Amz-Date`, else `Date` (RFC 1123), in both forms.
pub(super) fn header_request_time(
    headers: &HeaderMap,
) -> Result<(String, DateTime<Utc>), SigV4Error> {
    let form = Form::Header;
    let text = |v: &HeaderValue| String::from_utf8_lossy(v.as_bytes()).into_owned();
    if let Some(value) = headers.get(X_AMZ_DATE) {
        let value = text(value);
        let time =
            parse_amz_date(&value).ok_or_else(|| form.malformed(bad_amz_date_message(&value)))?;
        return Ok((value, time));
    }
    if let Some(value) = headers.get(DATE) {
        let value = text(value);
        let time = DateTime::parse_from_rfc2822(value.trim())
            .map_err(|_| {
                form.malformed(format!("Date header is not an RFC 1123 date: '{value}'."))
            })?
            .with_timezone(&Utc);
        return Ok((format_amz_date(time), time));
    }
    Err(form.malformed(
        "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.",
    ))
}

pub(super) fn parse_amz_date(value: &str) -> Option<DateTime<Utc>> {
    let time = NaiveDateTime::parse_from_str(value, AMZ_DATE_FORMAT)
        .ok()?
        .and_utc();
    // Reject lenient parses (extra digits, missing padding).
    (format_amz_date(time) == value).then_some(time)
}

pub(super) fn format_amz_date(time: DateTime<Utc>) -> String {
    time.format(AMZ_DATE_FORMAT).to_string()
}

pub(super) fn bad_amz_date_message(value: &str) -> String {
    format!("Date must be in ISO-8601 'basic format'. Got '{value}'.")
}

pub(super) fn check_scope_date(credential: &Credential, amz_date: &str) -> Result<(), SigV4Error> {
    let day = amz_date.get(..8).unwrap_or(amz_date);
    if credential.date == day {
        return Ok(());
    }
    Err(SigV4Error::CredentialScope(format!(
        "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from \
         HTTP: '{}' != '{day}', from '{amz_date}'.",
        credential.date
    )))
}
