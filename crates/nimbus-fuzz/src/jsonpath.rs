//! JSONPath, intrinsic functions and payload templates.
//!
//! Input: `expression\ndocument`. The expression is parsed as a path, a
//! reference path and (when it starts with `States.`) an intrinsic call, and
//! evaluated against the document; the document itself is also parsed as a
//! payload template (`"key.$"` fields) and evaluated against itself. Nothing
//! may panic, and writing through a reference path must be readable back.

use nimbus_workflow::SeededEntropy;
use nimbus_workflow::intrinsics::{Call, looks_like_call};
use nimbus_workflow::path::{Path, Scope};
use nimbus_workflow::template::Template;
use serde_json::{Value, json};

pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (expr, doc) = text.split_once('\n').unwrap_or((text, ""));
    let doc: Value = serde_json::from_str(doc)
        .unwrap_or_else(|_| json!({"a": [1, {"b": "c"}, [2, 3]], "d": {"e": null, "f": 1.5}}));
    let scope = Scope::new(&doc, &doc);
    let mut entropy = SeededEntropy::new(data.len() as u64);

    if let Ok(path) = Path::parse(expr) {
        let _ = scope.select(&path);
        let _ = path.select_ref(&doc);
        let _ = path.normalized();
        if path.is_reference() {
            let marker = json!({"nimbus-fuzz": "marker"});
            let mut written = doc.clone();
            if path.set(&mut written, marker.clone()).is_ok() {
                assert_eq!(
                    path.select(&written),
                    Some(marker),
                    "{expr:?}: a value set is not read back"
                );
            }
        }
    }
    let _ = Path::parse_reference(expr);
    if looks_like_call(expr)
        && let Ok(call) = Call::parse(expr)
    {
        let _ = call.evaluate(&scope, &mut entropy);
    }
    if let Ok(template) = Template::parse(&doc) {
        let _ = template.evaluate(&scope, &mut entropy);
    }
}
