//! Reference vectors (AWS's and botocore's) and the refusals, by error code.

use super::*;
use chrono::TimeZone;
use http::header::HeaderName;

const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const AKID: &str = "AKIDEXAMPLE";

fn at(amz_date: &str) -> DateTime<Utc> {
    parse_amz_date(amz_date).expect("valid test date")
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, 15, 12, 0, 0).unwrap()
}

fn header_map(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    map
}

fn request<'a>(
    method: &'a str,
    path: &'a str,
    query: Option<&'a str>,
    headers: &'a HeaderMap,
    body_sha256_hex: Option<&'a str>,
) -> SignedRequest<'a> {
    SignedRequest {
        method,
        raw_path: path,
        raw_query: query,
        headers,
        body_sha256_hex,
    }
}

fn params(service: Service, time: DateTime<Utc>) -> SigningParams<'static> {
    SigningParams {
        access_key_id: AKID,
        secret: SECRET,
        region: "us-east-1",
        service,
        time,
    }
}

fn sha256_hex(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

/// Signs `headers` in place (adds `authorization`) with all of its headers signed.
fn sign_in_place(
    service: Service,
    method: &str,
    path: &str,
    query: Option<&str>,
    headers: &mut HeaderMap,
    body_hash: Option<&str>,
) {
    let names: Vec<String> = headers.keys().map(|k| k.as_str().to_owned()).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let req = request(method, path, query, headers, body_hash);
    let auth = sign(&req, &params(service, t0()), &names).unwrap();
    headers.insert(AUTHORIZATION, HeaderValue::from_str(&auth).unwrap());
}

fn parse_and_verify(
    req: &SignedRequest<'_>,
    secret: &str,
    now: DateTime<Utc>,
) -> Result<Verified, SigV4Error> {
    let parsed = parse(req)?;
    verify(req, &parsed, secret, now, DEFAULT_MAX_SKEW)
}

// -- the reference vectors ------------------------------------------------

#[test]
fn lambda_reference_vector_section_12_3() {
    let body_hash = sha256_hex(br#"{"hello":"world"}"#);
    let headers = header_map(&[
        ("host", "localhost:9000"),
        ("x-amz-date", "20250115T120000Z"),
        ("x-amz-invocation-type", "RequestResponse"),
    ]);
    let req = request(
        "POST",
        "/2015-03-31/functions/my-fn%3Aprod/invocations",
        Some("Qualifier=%24LATEST"),
        &headers,
        Some(&body_hash),
    );
    let signed = "host;x-amz-date;x-amz-invocation-type";
    let canonical = canonical_request(&req, "lambda", signed, &body_hash).unwrap();
    assert_eq!(
        canonical,
        "POST\n\
         /2015-03-31/functions/my-fn%253Aprod/invocations\n\
         Qualifier=%24LATEST\n\
         host:localhost:9000\n\
         x-amz-date:20250115T120000Z\n\
         x-amz-invocation-type:RequestResponse\n\
         \n\
         host;x-amz-date;x-amz-invocation-type\n\
         93a23971a914e5eacbf0a8d25154cda309c3c1c72fbb9914d47c60f3cb681588"
    );
    let sts = string_to_sign(
        "20250115T120000Z",
        "20250115/us-east-1/lambda/aws4_request",
        &canonical,
    );
    assert_eq!(
        sts,
        "AWS4-HMAC-SHA256\n20250115T120000Z\n20250115/us-east-1/lambda/aws4_request\n\
         647ec2e0c88762e4a106099d2145a251852705cd3b411e50d37e740ede11dfcb"
    );
    let auth = sign(
        &req,
        &params(Service::Lambda, t0()),
        &signed.split(';').collect::<Vec<_>>(),
    )
    .unwrap();
    assert_eq!(
        auth,
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20250115/us-east-1/lambda/aws4_request, \
         SignedHeaders=host;x-amz-date;x-amz-invocation-type, \
         Signature=6d61dcdc66a7f30206e647b66ecadd18bd28a2e154adb12b5d2fd16fcf9d0378"
    );

    let mut headers = headers.clone();
    headers.insert(AUTHORIZATION, HeaderValue::from_str(&auth).unwrap());
    let req = SignedRequest {
        headers: &headers,
        ..req
    };
    let verified = parse_and_verify(&req, SECRET, t0()).unwrap();
    assert_eq!(verified.payload, PayloadKind::Sha256(body_hash.clone()));
}

#[test]
fn s3_reference_vector() {
    let headers = header_map(&[
        ("host", "localhost:9000"),
        ("range", "bytes=0-99"),
        ("x-amz-content-sha256", EMPTY_SHA256),
        ("x-amz-date", "20250115T120000Z"),
    ]);
    let req = request("GET", "/my-bucket/photos/a%20b.jpg", None, &headers, None);
    let signed = "host;range;x-amz-content-sha256;x-amz-date";
    let canonical = canonical_request(&req, "s3", signed, EMPTY_SHA256).unwrap();
    assert_eq!(
        canonical,
        "GET\n/my-bucket/photos/a%20b.jpg\n\n\
         host:localhost:9000\nrange:bytes=0-99\n\
         x-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n\
         x-amz-date:20250115T120000Z\n\n\
         host;range;x-amz-content-sha256;x-amz-date\n\
         e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    let sts = string_to_sign(
        "20250115T120000Z",
        "20250115/us-east-1/s3/aws4_request",
        &canonical,
    );
    assert_eq!(
        sts,
        "AWS4-HMAC-SHA256\n20250115T120000Z\n20250115/us-east-1/s3/aws4_request\n\
         3dca78d235e0afbb7a6e4b377828f4c66385bc58cff08194db9dfe1eff3d19c9"
    );
    let auth = sign(
        &req,
        &params(Service::S3, t0()),
        &signed.split(';').collect::<Vec<_>>(),
    )
    .unwrap();
    assert!(
        auth.ends_with(
            "Signature=5b0f0881d877b5aada63df52d133a2250df57ec839a45faeb4f0cee20bdb7d41"
        )
    );
}

// -- botocore cross-checks ------------------------------------------------

/// A request signed by botocore 1.44.5 (`SigV4Auth`, `S3SigV4Auth`, and the
/// query-string variants) at 2025-01-15T12:00:00Z.
struct BotoVector {
    name: &'static str,
    service: Service,
    access_key_id: &'static str,
    secret: &'static str,
    region: &'static str,
    method: &'static str,
    path: &'static str,
    /// For presigned vectors, the full query botocore produced.
    query: Option<&'static str>,
    /// As sent by botocore, plus the `host` it derives from the URL.
    headers: &'static [(&'static str, &'static str)],
    body_sha256: &'static str,
    canonical_request: &'static str,
    /// `Authorization` header value; `None` for presigned vectors.
    authorization: Option<&'static str>,
}

const BOTO_VECTORS: &[BotoVector] = &[
    BotoVector {
        name: "lambda invoke, ARN in path, other region, odd secret",
        service: Service::Lambda,
        access_key_id: "NIMBUSAK0001",
        secret: "s3cr3t/with+odd=chars",
        region: "eu-west-1",
        method: "POST",
        path: "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction%3Amy-fn/invocations",
        query: Some("Qualifier=%24LATEST"),
        headers: &[
            ("host", "127.0.0.1:18080"),
            ("X-Amz-Log-Type", "Tail"),
            ("X-Amz-Client-Context", "eyJjdXN0b20iOnt9fQ=="),
            ("X-Amz-Invocation-Type", "RequestResponse"),
            ("User-Agent", "Boto3/1.43.11"),
            ("Content-Type", "application/json"),
            ("X-Amz-Date", "20250115T120000Z"),
            (
                "amz-sdk-invocation-id",
                "30a0b3d4-0000-0000-0000-000000000000",
            ),
        ],
        body_sha256: "4be281edc378f1c5e5eb9c15f9dbf5a80da2977981850f93553d5d70b75f1626",
        canonical_request: "POST\n/2015-03-31/functions/arn%253Aaws%253Alambda%253Aus-east-1%253A123456789012%253Afunction%253Amy-fn/invocations\nQualifier=%24LATEST\ncontent-type:application/json\nhost:127.0.0.1:18080\nx-amz-client-context:eyJjdXN0b20iOnt9fQ==\nx-amz-date:20250115T120000Z\nx-amz-invocation-type:RequestResponse\nx-amz-log-type:Tail\n\ncontent-type;host;x-amz-client-context;x-amz-date;x-amz-invocation-type;x-amz-log-type\n4be281edc378f1c5e5eb9c15f9dbf5a80da2977981850f93553d5d70b75f1626",
        authorization: Some(
            "AWS4-HMAC-SHA256 Credential=NIMBUSAK0001/20250115/eu-west-1/lambda/aws4_request, SignedHeaders=content-type;host;x-amz-client-context;x-amz-date;x-amz-invocation-type;x-amz-log-type, Signature=cae1128ab5745187dcb2cfcb672a30fa80b48f9721937699321796b58438e352",
        ),
    },
    BotoVector {
        name: "lambda GET, sub-delims and dot segments in path, messy query, whitespace",
        service: Service::Lambda,
        access_key_id: AKID,
        secret: SECRET,
        region: "us-east-1",
        method: "GET",
        path: "/2015-03-31/functions/my%20fn%C3%A9~!$'()*,;=@:x/./aliases//v1/../",
        query: Some("FunctionVersion=ALL&Marker=a%20b%2Bc%2F&MaxItems=10&empty=&flag"),
        headers: &[
            ("host", "localhost:9000"),
            ("X-Custom", "  spaced \t  value  "),
            ("Content-Type", "application/json"),
            ("X-Amz-Date", "20250115T120000Z"),
        ],
        body_sha256: EMPTY_SHA256,
        canonical_request: "GET\n/2015-03-31/functions/my%2520fn%25C3%25A9~%21%24%27%28%29%2A%2C%3B%3D%40%3Ax/aliases/\nFunctionVersion=ALL&Marker=a%20b%2Bc%2F&MaxItems=10&empty=&flag=\ncontent-type:application/json\nhost:localhost:9000\nx-amz-date:20250115T120000Z\nx-custom:spaced value\n\ncontent-type;host;x-amz-date;x-custom\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        authorization: Some(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20250115/us-east-1/lambda/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-custom, Signature=600c1ac72df595bff965f48fff07d7127df026e54721ff1cc5c67c6c4817551e",
        ),
    },
    BotoVector {
        name: "s3 PUT, encoded key, metadata with spaces",
        service: Service::S3,
        access_key_id: AKID,
        secret: SECRET,
        region: "us-east-1",
        method: "PUT",
        path: "/bkt/dir/my%20file%2Bx.txt",
        query: None,
        headers: &[
            ("host", "localhost:9000"),
            ("Content-Type", "text/plain"),
            ("x-amz-meta-note", "  a   b  "),
            ("Expect", "100-continue"),
            ("X-Amz-Date", "20250115T120000Z"),
            (
                "X-Amz-Content-SHA256",
                "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9",
            ),
        ],
        body_sha256: "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9",
        canonical_request: "PUT\n/bkt/dir/my%20file%2Bx.txt\n\ncontent-type:text/plain\nhost:localhost:9000\nx-amz-content-sha256:b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9\nx-amz-date:20250115T120000Z\nx-amz-meta-note:a b\n\ncontent-type;host;x-amz-content-sha256;x-amz-date;x-amz-meta-note\nb94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9",
        authorization: Some(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20250115/us-east-1/s3/aws4_request, SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date;x-amz-meta-note, Signature=ac002271957db6afb7625b02d0d47e3a61b48d12a7528fee16cda358c51fe4d9",
        ),
    },
    BotoVector {
        name: "s3 ListObjectsV2, query to sort, us-west-2",
        service: Service::S3,
        access_key_id: AKID,
        secret: SECRET,
        region: "us-west-2",
        method: "GET",
        path: "/bkt",
        query: Some(
            "list-type=2&prefix=photos%2F2025%20jan&delimiter=%2F&encoding-type=url&max-keys=5",
        ),
        headers: &[
            ("host", "localhost:9000"),
            ("X-Amz-Date", "20250115T120000Z"),
            ("X-Amz-Content-SHA256", EMPTY_SHA256),
        ],
        body_sha256: EMPTY_SHA256,
        canonical_request: "GET\n/bkt\ndelimiter=%2F&encoding-type=url&list-type=2&max-keys=5&prefix=photos%2F2025%20jan\nhost:localhost:9000\nx-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\nx-amz-date:20250115T120000Z\n\nhost;x-amz-content-sha256;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        authorization: Some(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20250115/us-west-2/s3/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature=c12a2c33f7fd46ddf525dc528fc5d2f621c3ad023a17846ed316c6b63b9740ae",
        ),
    },
    BotoVector {
        name: "s3 CreateMultipartUpload, raw path with .. kept, bare ?uploads",
        service: Service::S3,
        access_key_id: AKID,
        secret: SECRET,
        region: "us-east-1",
        method: "POST",
        path: "/bkt/odd%20key!(x)/../y",
        query: Some("uploads"),
        headers: &[
            ("host", "localhost:9000"),
            ("Content-Type", "application/octet-stream"),
            ("X-Amz-Date", "20250115T120000Z"),
            ("X-Amz-Content-SHA256", EMPTY_SHA256),
        ],
        body_sha256: EMPTY_SHA256,
        canonical_request: "POST\n/bkt/odd%20key!(x)/../y\nuploads=\ncontent-type:application/octet-stream\nhost:localhost:9000\nx-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\nx-amz-date:20250115T120000Z\n\ncontent-type;host;x-amz-content-sha256;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        authorization: Some(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20250115/us-east-1/s3/aws4_request, SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date, Signature=61a65a498e9b60b2ecd37cff4eadb95eee4836331362cdd0d2969f7ff8cf8fc7",
        ),
    },
    BotoVector {
        name: "s3 presigned GET (S3SigV4QueryAuth)",
        service: Service::S3,
        access_key_id: AKID,
        secret: SECRET,
        region: "us-east-1",
        method: "GET",
        path: "/bkt/a%20b.txt",
        query: Some(
            "response-content-type=text%2Fplain&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F20250115%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20250115T120000Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host&X-Amz-Signature=03ecd4b123c3a24f15dd9b31c5f0d00918e80b7c413dae295fce89d7e8a053f6",
        ),
        headers: &[("host", "localhost:9000")],
        body_sha256: EMPTY_SHA256,
        canonical_request: "GET\n/bkt/a%20b.txt\nX-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F20250115%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20250115T120000Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host&response-content-type=text%2Fplain\nhost:localhost:9000\n\nhost\nUNSIGNED-PAYLOAD",
        authorization: None,
    },
    BotoVector {
        name: "lambda presigned GET (SigV4QueryAuth): body hash, not UNSIGNED-PAYLOAD",
        service: Service::Lambda,
        access_key_id: AKID,
        secret: SECRET,
        region: "us-east-1",
        method: "GET",
        path: "/2015-03-31/functions/my-fn%3Aprod",
        query: Some(
            "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F20250115%2Fus-east-1%2Flambda%2Faws4_request&X-Amz-Date=20250115T120000Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host&X-Amz-Signature=e73b33c145d2fa167727c95132cf3c6ac7592bf3be271edcdaac6269c62c585b",
        ),
        headers: &[("host", "localhost:9000")],
        body_sha256: EMPTY_SHA256,
        canonical_request: "GET\n/2015-03-31/functions/my-fn%253Aprod\nX-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F20250115%2Fus-east-1%2Flambda%2Faws4_request&X-Amz-Date=20250115T120000Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host\nhost:localhost:9000\n\nhost\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        authorization: None,
    },
];

#[test]
fn botocore_vectors_verify_and_reproduce() {
    for v in BOTO_VECTORS {
        let mut headers = header_map(v.headers);
        if let Some(auth) = v.authorization {
            headers.insert(AUTHORIZATION, HeaderValue::from_static(auth));
        }
        let req = request(v.method, v.path, v.query, &headers, Some(v.body_sha256));
        let parsed = parse(&req).unwrap_or_else(|e| panic!("{}: parse: {e}", v.name));
        assert_eq!(
            parsed.credential.access_key_id, v.access_key_id,
            "{}",
            v.name
        );
        check_service(&parsed, v.service).unwrap();
        let service = v.service.name();
        let payload_hash = payload_hash(&req, service, parsed.location).unwrap();
        let canonical =
            canonical_request(&req, service, &parsed.signed_headers, &payload_hash).unwrap();
        assert_eq!(canonical, v.canonical_request, "{}", v.name);
        verify(&req, &parsed, v.secret, t0(), DEFAULT_MAX_SKEW)
            .unwrap_or_else(|e| panic!("{}: verify: {e}", v.name));
        assert!(
            matches!(
                verify(&req, &parsed, "wrong", t0(), DEFAULT_MAX_SKEW),
                Err(SigV4Error::InvalidSignature { .. })
            ),
            "{}",
            v.name
        );

        let signer = SigningParams {
            access_key_id: v.access_key_id,
            secret: v.secret,
            region: v.region,
            service: v.service,
            time: t0(),
        };
        match (v.authorization, parsed.location) {
            (Some(auth), _) => {
                let names: Vec<&str> = parsed.signed_headers.split(';').collect();
                assert_eq!(sign(&req, &signer, &names).unwrap(), auth, "{}", v.name);
            }
            (None, AuthLocation::Query { expires_secs }) => {
                let query = v.query.unwrap_or_default();
                let own = query
                    .split_once("X-Amz-Algorithm")
                    .map(|(own, _)| own.trim_end_matches('&'));
                let unsigned = SignedRequest {
                    raw_query: own.filter(|q| !q.is_empty()),
                    ..req
                };
                assert_eq!(
                    presign(&unsigned, &signer, expires_secs).unwrap(),
                    query,
                    "{}",
                    v.name
                );
            }
            (None, AuthLocation::Header) => panic!("{}: expected a presigned vector", v.name),
        }
    }
}

// -- canonicalisation -----------------------------------------------------

#[test]
fn query_is_decoded_reencoded_and_sorted() {
    assert_eq!(canonical_query(None), "");
    assert_eq!(canonical_query(Some("")), "");
    assert_eq!(
        canonical_query(Some(
            "b=2&a=z&a=y&space=a%20b&plus=a+b&key&empty=&tilde=%7E&slash=%2f&raw=a b*&X-Amz-Signature=x"
        )),
        "a=y&a=z&b=2&empty=&key=&plus=a%2Bb&raw=a%20b%2A&slash=%2F&space=a%20b&tilde=~"
    );
    // Sorting is by the encoded bytes: upper case before lower case.
    assert_eq!(canonical_query(Some("b=1&B=2&a%20b=3")), "B=2&a%20b=3&b=1");
    // A lone or broken percent sign is a literal.
    assert_eq!(canonical_query(Some("p=100%&q=%zz")), "p=100%25&q=%25zz");
}

#[test]
fn header_values_are_trimmed_collapsed_and_joined() {
    let mut headers = header_map(&[
        ("host", "example.com"),
        ("x-amz-meta-a", "  a   b \t c  "),
        ("x-multi", "1"),
        ("x-multi", " two  words "),
        ("x-empty", ""),
    ]);
    headers.append("x-latin1", HeaderValue::from_bytes(b"caf\xe9").unwrap());
    assert_eq!(
        canonical_headers(&headers, "Host;x-amz-meta-a;x-multi;x-empty;x-latin1").unwrap(),
        "host:example.com\nx-amz-meta-a:a b c\nx-empty:\nx-latin1:café\nx-multi:1,two words\n"
    );
}

#[test]
fn s3_uses_the_raw_path_and_lambda_double_encodes() {
    let path = "/bkt/a%20b/./c//d/../e:f%3A/";
    assert_eq!(canonical_uri(path, "s3"), path);
    assert_eq!(canonical_uri(path, "lambda"), "/bkt/a%2520b/c/e%3Af%253A/");
    assert_eq!(canonical_uri(path, Service::Other("s3").name()), path);
    assert_eq!(canonical_uri("", "lambda"), "/");
    assert_eq!(canonical_uri("/", "lambda"), "/");
    assert_eq!(canonical_uri("/..", "lambda"), "/");
    assert_eq!(canonical_uri("", "s3"), "/");
}

// -- failures -------------------------------------------------------------

fn signed_lambda_headers(extra: &[(&str, &str)]) -> HeaderMap {
    let mut pairs = vec![
        ("host", "localhost:9000"),
        ("x-amz-date", "20250115T120000Z"),
    ];
    pairs.extend_from_slice(extra);
    let mut headers = header_map(&pairs);
    sign_in_place(
        Service::Lambda,
        "GET",
        "/2015-03-31/functions",
        None,
        &mut headers,
        Some(EMPTY_SHA256),
    );
    headers
}

fn lambda_get(headers: &HeaderMap) -> SignedRequest<'_> {
    request(
        "GET",
        "/2015-03-31/functions",
        None,
        headers,
        Some(EMPTY_SHA256),
    )
}

#[test]
fn a_missing_signed_header_is_rejected() {
    let mut headers = signed_lambda_headers(&[("x-amz-log-type", "Tail")]);
    assert!(parse_and_verify(&lambda_get(&headers), SECRET, t0()).is_ok());
    headers.remove("x-amz-log-type");
    let err = parse_and_verify(&lambda_get(&headers), SECRET, t0()).unwrap_err();
    assert_eq!(
        err,
        SigV4Error::SignedHeaderMissing("x-amz-log-type".into())
    );
    assert_eq!(err.aws_code(), "InvalidSignatureException");
    // A name that cannot even be a header is just as missing (and no panic).
    let err = canonical_headers(&headers, "host;bad name").unwrap_err();
    assert_eq!(err, SigV4Error::SignedHeaderMissing("bad name".into()));
}

#[test]
fn tampering_with_a_signed_part_is_rejected() {
    let headers = signed_lambda_headers(&[("x-amz-log-type", "Tail")]);
    let zeros = "0".repeat(64);
    let tampered = [
        SignedRequest {
            method: "DELETE",
            ..lambda_get(&headers)
        },
        SignedRequest {
            raw_path: "/2015-03-31/functions/x",
            ..lambda_get(&headers)
        },
        SignedRequest {
            raw_query: Some("MaxItems=1"),
            ..lambda_get(&headers)
        },
        SignedRequest {
            body_sha256_hex: Some(&zeros),
            ..lambda_get(&headers)
        },
    ];
    for req in tampered {
        let err = parse_and_verify(&req, SECRET, t0()).unwrap_err();
        assert!(
            matches!(err, SigV4Error::InvalidSignature { .. }),
            "{req:?}: {err}"
        );
    }
    // Unsigned headers may change freely.
    let mut more = headers.clone();
    more.insert("user-agent", HeaderValue::from_static("something else"));
    assert!(parse_and_verify(&lambda_get(&more), SECRET, t0()).is_ok());
}

#[test]
fn clock_skew_is_enforced() {
    let headers = signed_lambda_headers(&[]);
    let req = lambda_get(&headers);
    assert!(parse_and_verify(&req, SECRET, at("20250115T121500Z")).is_ok());
    assert!(parse_and_verify(&req, SECRET, at("20250115T114500Z")).is_ok());

    let err = parse_and_verify(&req, SECRET, at("20250115T123000Z")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Signature expired: 20250115T120000Z is now earlier than 20250115T121500Z \
         (20250115T123000Z - 15 min.)"
    );
    assert_eq!(
        (err.aws_code(), err.http_status()),
        ("InvalidSignatureException", 403)
    );
    assert_eq!(err.s3_code(), "RequestTimeTooSkewed");

    let err = parse_and_verify(&req, SECRET, at("20250115T113000Z")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Signature not yet current: 20250115T120000Z is still later than 20250115T114500Z \
         (20250115T113000Z + 15 min.)"
    );

    let parsed = parse(&req).unwrap();
    let err = verify(
        &req,
        &parsed,
        SECRET,
        at("20250115T120600Z"),
        Duration::from_secs(5 * 60),
    );
    assert!(matches!(err, Err(SigV4Error::SignatureExpired { .. })));
    let err = verify(
        &req,
        &parsed,
        SECRET,
        at("20250115T120200Z"),
        Duration::from_secs(90),
    );
    assert!(
        err.unwrap_err()
            .to_string()
            .ends_with("(20250115T120200Z - 90 sec.)")
    );
}

#[test]
fn a_wrong_secret_is_an_invalid_signature() {
    let headers = signed_lambda_headers(&[]);
    let err = parse_and_verify(&lambda_get(&headers), "not-the-secret", t0()).unwrap_err();
    let SigV4Error::InvalidSignature {
        canonical_request,
        string_to_sign,
    } = &err
    else {
        panic!("expected InvalidSignature, got {err:?}");
    };
    assert!(canonical_request.starts_with("GET\n/2015-03-31/functions\n"));
    assert!(string_to_sign.starts_with("AWS4-HMAC-SHA256\n20250115T120000Z\n"));
    assert_eq!(err.to_string(), INVALID_SIGNATURE_MESSAGE);
    assert_eq!(
        (err.aws_code(), err.http_status()),
        ("InvalidSignatureException", 403)
    );
    assert_eq!(err.s3_code(), "SignatureDoesNotMatch");
}

#[test]
fn a_malformed_signature_value_is_an_invalid_signature() {
    let headers = signed_lambda_headers(&[]);
    for bad in ["zz", "", "abcd"] {
        let mut parsed = parse(&lambda_get(&headers)).unwrap();
        parsed.signature = bad.into();
        let err = verify(
            &lambda_get(&headers),
            &parsed,
            SECRET,
            t0(),
            DEFAULT_MAX_SKEW,
        );
        assert!(
            matches!(err, Err(SigV4Error::InvalidSignature { .. })),
            "{bad}"
        );
    }
}

#[test]
fn no_authorization_is_a_missing_token() {
    let headers = header_map(&[
        ("host", "localhost:9000"),
        ("x-amz-date", "20250115T120000Z"),
    ]);
    let err = parse(&lambda_get(&headers)).unwrap_err();
    assert_eq!(err, SigV4Error::MissingAuthenticationToken);
    assert_eq!(err.to_string(), "Missing Authentication Token");
    assert_eq!(
        (err.aws_code(), err.http_status()),
        ("MissingAuthenticationTokenException", 403)
    );
    assert_eq!(
        parse_authorization(&headers),
        Err(SigV4Error::MissingAuthenticationToken)
    );
}

#[test]
fn malformed_authorization_is_an_incomplete_signature() {
    let cases = [
        ("Bearer abc", "Unsupported AWS 'algorithm': 'Bearer'"),
        (
            "AWS4-HMAC-SHA256",
            "Authorization header requires 'Credential' parameter. Authorization header requires 'Signature' parameter. Authorization header requires 'SignedHeaders' parameter.",
        ),
        (
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20250115/us-east-1/lambda/aws4_request, SignedHeaders=host;x-amz-date",
            "Authorization header requires 'Signature' parameter.",
        ),
        (
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20250115/us-east-1/lambda/aws4_request, SignedHeaders, Signature=ab",
            "Invalid key=value pair (missing equal-sign) in Authorization header: 'SignedHeaders'",
        ),
        (
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20250115/us-east-1/lambda, SignedHeaders=host, Signature=ab",
            "Credential must have the form '<access key>/<yyyymmdd>/<region>/<service>/aws4_request', got 'AKIDEXAMPLE/20250115/us-east-1/lambda'.",
        ),
        (
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/2025011/us-east-1/lambda/aws4_request, SignedHeaders=host, Signature=ab",
            "Credential must have the form '<access key>/<yyyymmdd>/<region>/<service>/aws4_request', got 'AKIDEXAMPLE/2025011/us-east-1/lambda/aws4_request'.",
        ),
        (
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20250115/us-east-1/lambda/aws4_request, SignedHeaders=x-amz-date, Signature=ab",
            "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.",
        ),
    ];
    for (auth, message) in cases {
        let headers = header_map(&[
            ("host", "localhost:9000"),
            ("x-amz-date", "20250115T120000Z"),
            ("authorization", auth),
        ]);
        let err = parse(&lambda_get(&headers)).unwrap_err();
        assert_eq!(
            err,
            SigV4Error::IncompleteSignature(message.into()),
            "{auth}"
        );
        assert_eq!(
            (err.aws_code(), err.http_status()),
            ("IncompleteSignatureException", 400)
        );
    }
}

#[test]
fn request_time_must_be_present_valid_and_match_the_scope() {
    let auth = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20250115/us-east-1/lambda/aws4_request, SignedHeaders=host, Signature=ab";
    let no_date = header_map(&[("host", "h"), ("authorization", auth)]);
    assert!(
        matches!(parse(&lambda_get(&no_date)), Err(SigV4Error::IncompleteSignature(m)) if m.contains("'X-Amz-Date' or a 'Date'"))
    );
    let bad_date = header_map(&[
        ("host", "h"),
        ("x-amz-date", "2025-01-15T12:00:00Z"),
        ("authorization", auth),
    ]);
    assert!(
        matches!(parse(&lambda_get(&bad_date)), Err(SigV4Error::IncompleteSignature(m)) if m.contains("ISO-8601"))
    );
    let other_day = header_map(&[
        ("host", "h"),
        ("x-amz-date", "20250116T000000Z"),
        ("authorization", auth),
    ]);
    let err = parse(&lambda_get(&other_day)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from \
         HTTP: '20250115' != '20250116', from '20250116T000000Z'."
    );
    assert_eq!(err.aws_code(), "InvalidSignatureException");
}

#[test]
fn the_date_header_is_used_without_x_amz_date() {
    let mut headers = header_map(&[
        ("host", "localhost:9000"),
        ("date", "Wed, 15 Jan 2025 12:00:00 GMT"),
    ]);
    sign_in_place(
        Service::Lambda,
        "GET",
        "/2015-03-31/functions",
        None,
        &mut headers,
        Some(EMPTY_SHA256),
    );
    let parsed = parse(&lambda_get(&headers)).unwrap();
    assert_eq!(parsed.amz_date, "20250115T120000Z");
    assert!(
        verify(
            &lambda_get(&headers),
            &parsed,
            SECRET,
            t0(),
            DEFAULT_MAX_SKEW
        )
        .is_ok()
    );
}

#[test]
fn the_scope_must_name_this_service_and_optionally_region() {
    let headers = signed_lambda_headers(&[]);
    let parsed = parse(&lambda_get(&headers)).unwrap();
    assert!(check_service(&parsed, Service::Lambda).is_ok());
    let err = check_service(&parsed, Service::S3).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Credential should be scoped to correct service: 's3'."
    );
    assert_eq!(err.aws_code(), "InvalidSignatureException");
    assert!(check_region(&parsed, "us-east-1").is_ok());
    assert!(matches!(
        check_region(&parsed, "eu-west-1"),
        Err(SigV4Error::CredentialScope(_))
    ));
}

#[test]
fn a_session_token_must_be_signed() {
    let mut headers = signed_lambda_headers(&[]);
    headers.insert("x-amz-security-token", HeaderValue::from_static("tok"));
    let err = parse_and_verify(&lambda_get(&headers), SECRET, t0()).unwrap_err();
    assert!(
        matches!(err, SigV4Error::IncompleteSignature(m) if m.contains("X-Amz-Security-Token"))
    );

    let headers = signed_lambda_headers(&[("x-amz-security-token", "tok")]);
    let parsed = parse(&lambda_get(&headers)).unwrap();
    assert_eq!(parsed.session_token.as_deref(), Some("tok"));
    assert!(
        verify(
            &lambda_get(&headers),
            &parsed,
            SECRET,
            t0(),
            DEFAULT_MAX_SKEW
        )
        .is_ok()
    );
}

// -- payload modes --------------------------------------------------------

fn signed_s3_put(content_sha256: &str) -> HeaderMap {
    let mut headers = header_map(&[
        ("host", "localhost:9000"),
        ("x-amz-date", "20250115T120000Z"),
        ("x-amz-content-sha256", content_sha256),
    ]);
    sign_in_place(Service::S3, "PUT", "/bkt/k", None, &mut headers, None);
    headers
}

#[test]
fn s3_payload_modes() {
    let hello = sha256_hex(b"hello world");
    let cases = [
        (hello.as_str(), PayloadKind::Sha256(hello.clone())),
        (UNSIGNED_PAYLOAD, PayloadKind::Unsigned),
        (
            STREAMING_UNSIGNED_PAYLOAD_TRAILER,
            PayloadKind::StreamingUnsignedTrailer,
        ),
    ];
    for (value, expected) in cases {
        let headers = signed_s3_put(value);
        let req = request("PUT", "/bkt/k", None, &headers, None);
        assert_eq!(
            parse_and_verify(&req, SECRET, t0()).unwrap().payload,
            expected
        );
    }
    let headers = signed_s3_put(STREAMING_SIGNED_PAYLOAD);
    let req = request("PUT", "/bkt/k", None, &headers, None);
    let payload = parse_and_verify(&req, SECRET, t0()).unwrap().payload;
    let seed = parse(&req).unwrap().signature;
    assert!(payload.is_aws_chunked());
    assert_eq!(
        payload,
        PayloadKind::StreamingSigned {
            seed_signature: seed
        }
    );
}

#[test]
fn s3_body_hash_must_match_the_claimed_one() {
    let hello = sha256_hex(b"hello world");
    let headers = signed_s3_put(&hello);
    let ok = request("PUT", "/bkt/k", None, &headers, Some(&hello));
    assert!(parse_and_verify(&ok, SECRET, t0()).is_ok());
    let other = sha256_hex(b"bye");
    let bad = request("PUT", "/bkt/k", None, &headers, Some(&other));
    let err = parse_and_verify(&bad, SECRET, t0()).unwrap_err();
    assert!(matches!(err, SigV4Error::ContentSha256Mismatch { .. }));
    assert_eq!(
        (err.s3_code(), err.http_status()),
        ("XAmzContentSHA256Mismatch", 400)
    );
}

#[test]
fn an_unknown_content_sha256_or_none_at_all_is_rejected() {
    let headers = signed_s3_put("not-a-hash");
    let req = request("PUT", "/bkt/k", None, &headers, None);
    let err = parse_and_verify(&req, SECRET, t0()).unwrap_err();
    assert_eq!(
        (err.clone(), err.s3_code()),
        (SigV4Error::InvalidContentSha256, "InvalidArgument")
    );

    let headers = header_map(&[("host", "h"), ("x-amz-date", "20250115T120000Z")]);
    let req = request("PUT", "/bkt/k", None, &headers, None);
    assert_eq!(
        sign(&req, &params(Service::S3, t0()), &["host"]),
        Err(SigV4Error::MissingContentSha256)
    );
}

// -- presigned URLs -------------------------------------------------------

#[test]
fn presigned_round_trip_and_expiry() {
    let headers = header_map(&[("host", "localhost:9000")]);
    let base = request("GET", "/bkt/a%20b.txt", Some("versionId=3"), &headers, None);
    let query = presign(&base, &params(Service::S3, t0()), 60).unwrap();
    let req = SignedRequest {
        raw_query: Some(&query),
        ..base
    };
    let parsed = parse(&req).unwrap();
    assert_eq!(parsed.location, AuthLocation::Query { expires_secs: 60 });
    let verify_at = |now| verify(&req, &parsed, SECRET, now, DEFAULT_MAX_SKEW);
    assert_eq!(
        verify_at(at("20250115T120100Z")).unwrap().payload,
        PayloadKind::Unsigned
    );
    assert_eq!(
        verify_at(at("20250115T120101Z")),
        Err(SigV4Error::RequestExpired)
    );
    assert!(matches!(
        verify_at(at("20250115T113000Z")),
        Err(SigV4Error::SignatureNotYetCurrent { .. })
    ));

    let tampered_query = query.replace("versionId=3", "versionId=4");
    let tampered = SignedRequest {
        raw_query: Some(&tampered_query),
        ..base
    };
    assert!(matches!(
        parse_and_verify(&tampered, SECRET, t0()),
        Err(SigV4Error::InvalidSignature { .. })
    ));
}

#[test]
fn presigned_parameters_are_checked() {
    let missing =
        parse_presigned("X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=ab").unwrap_err();
    assert_eq!(
        missing,
        SigV4Error::PresignedQueryMalformed(MISSING_PRESIGN_PARAMS.into())
    );
    assert_eq!(
        (missing.s3_code(), missing.http_status()),
        ("AuthorizationQueryParametersError", 400)
    );

    let too_long = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F20250115%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20250115T120000Z&X-Amz-Expires=604801&X-Amz-SignedHeaders=host&X-Amz-Signature=ab";
    assert!(
        matches!(parse_presigned(too_long), Err(SigV4Error::PresignedQueryMalformed(m)) if m.contains("604800"))
    );

    let headers = header_map(&[("host", "h"), ("authorization", "AWS4-HMAC-SHA256 x")]);
    let both = request("GET", "/b", Some("X-Amz-Signature=ab"), &headers, None);
    assert_eq!(
        parse(&both),
        Err(SigV4Error::IncompleteSignature(ONLY_ONE_MECHANISM.into()))
    );
    assert!(presign(&both, &params(Service::S3, t0()), 0).is_err());
}

#[test]
fn error_codes_and_statuses() {
    assert_eq!(
        SigV4Error::UnrecognizedClient.aws_code(),
        "UnrecognizedClientException"
    );
    assert_eq!(SigV4Error::UnrecognizedClient.http_status(), 403);
    assert_eq!(
        SigV4Error::UnrecognizedClient.s3_code(),
        "InvalidAccessKeyId"
    );
    assert_eq!(
        SigV4Error::UnrecognizedClient.to_string(),
        "The security token included in the request is invalid."
    );
    assert_eq!(SigV4Error::RequestExpired.s3_code(), "AccessDenied");
}

#[test]
fn percent_decoding_and_encoding() {
    assert_eq!(
        percent_decode("a%20b%2fc+%e2%82%ac%"),
        b"a b/c+\xe2\x82\xac%"
    );
    assert_eq!(uri_encode("a b/~é".as_bytes(), false), "a%20b%2F~%C3%A9");
    assert_eq!(uri_encode(b"a b/", true), "a%20b/");
    assert_eq!(parse_amz_date("20250115T120000Z"), Some(t0()));
    assert_eq!(parse_amz_date("2025115T120000Z"), None);
    assert_eq!(parse_amz_date("20250115T120000"), None);
}

#[test]
fn a_declared_hash_lets_the_signature_be_checked_before_the_body() {
    let body = br#"{"hello":"world"}"#;
    let hash = sha256_hex(body);
    let mut headers = header_map(&[
        ("host", "localhost:8470"),
        ("x-amz-date", "20250115T120000Z"),
        ("x-amz-content-sha256", &hash),
    ]);
    let path = "/2015-03-31/functions/f/invocations";
    sign_in_place(Service::Lambda, "POST", path, None, &mut headers, None);
    let parsed = parse_authorization(&headers).unwrap();
    assert_eq!(
        declared_payload_hash(&parsed, &headers).unwrap(),
        Some(hash.clone())
    );
    // No body hash from the caller: verified from the headers alone.
    let req = request("POST", path, None, &headers, None);
    assert!(verify(&req, &parsed, SECRET, t0(), DEFAULT_MAX_SKEW).is_ok());
    assert!(matches!(
        verify(&req, &parsed, "another secret", t0(), DEFAULT_MAX_SKEW),
        Err(SigV4Error::InvalidSignature { .. })
    ));
    // Without the header the caller must hash the body first.
    headers.remove("x-amz-content-sha256");
    assert_eq!(declared_payload_hash(&parsed, &headers).unwrap(), None);
}

#[test]
fn unsigned_and_streaming_payloads_are_refused_outside_s3() {
    for (service, value) in [
        ("lambda", UNSIGNED_PAYLOAD),
        ("sqs", STREAMING_SIGNED_PAYLOAD),
        ("sns", STREAMING_UNSIGNED_PAYLOAD_TRAILER),
        ("states", STREAMING_SIGNED_PAYLOAD_TRAILER),
    ] {
        let headers = header_map(&[
            ("host", "localhost:8470"),
            ("x-amz-date", "20250115T120000Z"),
            ("x-amz-content-sha256", value),
            (
                "authorization",
                &format!(
                    "AWS4-HMAC-SHA256 Credential={AKID}/20250115/us-east-1/{service}/aws4_request, \
                     SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature={}",
                    "0".repeat(64)
                ),
            ),
        ]);
        let parsed = parse_authorization(&headers).unwrap();
        let err = declared_payload_hash(&parsed, &headers).unwrap_err();
        assert_eq!(err, SigV4Error::UnsignedPayloadRefused(service.into()));
        assert_eq!(err.http_status(), 400);
    }
    let s3 = header_map(&[
        ("host", "localhost:8470"),
        ("x-amz-date", "20250115T120000Z"),
        ("x-amz-content-sha256", UNSIGNED_PAYLOAD),
        (
            "authorization",
            &format!(
                "AWS4-HMAC-SHA256 Credential={AKID}/20250115/us-east-1/s3/aws4_request, \
                 SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature={}",
                "0".repeat(64)
            ),
        ),
    ]);
    let parsed = parse_authorization(&s3).unwrap();
    assert_eq!(declared_payload_hash(&parsed, &s3).unwrap(), None);
    let mut bad = s3.clone();
    bad.insert("x-amz-content-sha256", HeaderValue::from_static("xyz"));
    assert_eq!(
        declared_payload_hash(&parsed, &bad).unwrap_err(),
        SigV4Error::InvalidContentSha256
    );
}
