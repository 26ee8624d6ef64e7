//! Query-protocol XML answers: `<OpResponse><OpResult>…</OpResult><ResponseMetadata/>`,
//! and `<ErrorResponse><Error><Type/><Code/><Message/></Error>` for errors.

use std::collections::BTreeMap;
use std::fmt::Write;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

const NS: &str = "http://sns.amazonaws.com/doc/2010-03-31/";

pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\r' => out.push_str("&#xD;"),
            c => out.push(c),
        }
    }
    out
}

/// `<Name>value</Name>`, escaped.
pub fn element(name: &str, value: &str) -> String {
    format!("<{name}>{}</{name}>", escape(value))
}

/// A map as the Query protocol renders it: `<entry><key/><value/></entry>`.
pub fn map(name: &str, m: &BTreeMap<String, String>) -> String {
    let mut out = format!("<{name}>");
    for (k, v) in m {
        let _ = write!(
            out,
            "<entry>{}{}</entry>",
            element("key", k),
            element("value", v)
        );
    }
    let _ = write!(out, "</{name}>");
    out
}

fn xml_response(status: StatusCode, body: String) -> Response {
    let mut resp = (status, body).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/xml"));
    resp
}

/// A successful answer; `result` is the inner XML of `<OpResult>` (`None`: no result).
pub fn ok(op: &str, result: Option<String>) -> Response {
    let request_id = uuid::Uuid::new_v4();
    let result = result
        .map(|r| format!("<{op}Result>{r}</{op}Result>"))
        .unwrap_or_default();
    xml_response(
        StatusCode::OK,
        format!(
            "<?xml version=\"1.0\"?>\n<{op}Response xmlns=\"{NS}\">{result}<ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata></{op}Response>"
        ),
    )
}

pub fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let kind = if status.is_server_error() {
        "Receiver"
    } else {
        "Sender"
    };
    xml_response(
        status,
        format!(
            "<?xml version=\"1.0\"?>\n<ErrorResponse xmlns=\"{NS}\"><Error><Type>{kind}</Type>{}{}</Error><RequestId>{}</RequestId></ErrorResponse>",
            element("Code", code),
            element("Message", message),
            uuid::Uuid::new_v4()
        ),
    )
}
