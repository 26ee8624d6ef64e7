//! Payload templates: `Parameters`, `ResultSelector`, `ItemSelector`.
//!
//! A template is parsed once, at validation time, into a tree whose leaves
//! are literals, paths or intrinsic calls, so evaluating it per state (or per
//! Map item, 10,000 times) never re-parses strings and a typo in a `.$` value
//! is reported with the definition, not halfway through an execution.

use serde_json::{Map, Value};

use crate::entropy::Entropy;
use crate::errors::StateError;
use crate::intrinsics::{self, Call};
use crate::path::{Path, Scope};

/// A parsed payload template.
#[derive(Debug, Clone, PartialEq)]
pub enum Template {
    /// Copied as is.
    Literal(Value),
    /// An object whose values may be dynamic; keys are already stripped of `.$`.
    Object(Vec<Field>),
    /// An array whose elements may be dynamic.
    Array(Vec<Template>),
}

/// One key of a template object.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    /// The output key (without `.$`).
    pub key: String,
    /// The key as written (with `.$` if it had one), for error messages.
    pub source_key: String,
    /// How the value is produced.
    pub value: FieldValue,
}

/// How a template field gets its value.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    /// A nested template.
    Template(Template),
    /// `"key.$": "$…"` or `"$$…"`.
    Path(Path),
    /// `"key.$": "States.…(…)"`.
    Call(Call),
}

impl Template {
    /// Parses a template; errors name the offending key (dotted from the top).
    pub fn parse(value: &Value) -> Result<Template, String> {
        parse_at(value, "")
    }

    /// Whether the template has no dynamic part at all.
    pub fn is_literal(&self) -> bool {
        matches!(self, Template::Literal(_))
    }

    /// Evaluates the template against `scope`.
    pub fn evaluate(
        &self,
        scope: &Scope<'_>,
        entropy: &mut dyn Entropy,
    ) -> Result<Value, StateError> {
        match self {
            Template::Literal(v) => Ok(v.clone()),
            Template::Array(items) => items
                .iter()
                .map(|t| t.evaluate(scope, entropy))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array),
            Template::Object(fields) => {
                let mut out = Map::with_capacity(fields.len());
                for field in fields {
                    let value = match &field.value {
                        FieldValue::Template(t) => t.evaluate(scope, entropy)?,
                        FieldValue::Call(call) => call.evaluate(scope, entropy)?,
                        FieldValue::Path(path) => scope.select(path).ok_or_else(|| {
                            StateError::runtime(format!(
                                "The JSONPath '{path}' specified for the field '{}' could not be found in the input '{}'",
                                field.source_key, scope.input
                            ))
                        })?,
                    };
                    out.insert(field.key.clone(), value);
                }
                Ok(Value::Object(out))
            }
        }
    }
}

fn parse_at(value: &Value, at: &str) -> Result<Template, String> {
    match value {
        Value::Object(map) => {
            let mut fields = Vec::with_capacity(map.len());
            let mut dynamic = false;
            for (key, v) in map {
                let here = if at.is_empty() {
                    key.clone()
                } else {
                    format!("{at}.{key}")
                };
                let field = if let Some(stripped) = key.strip_suffix(".$") {
                    dynamic = true;
                    let Value::String(text) = v else {
                        return Err(format!(
                            "the value of '{here}' must be a string holding a path or an intrinsic function call"
                        ));
                    };
                    let value = if intrinsics::looks_like_call(text) {
                        FieldValue::Call(Call::parse(text).map_err(|e| format!("'{here}': {e}"))?)
                    } else {
                        FieldValue::Path(Path::parse(text).map_err(|e| format!("'{here}': {e}"))?)
                    };
                    Field {
                        key: stripped.to_string(),
                        source_key: key.clone(),
                        value,
                    }
                } else {
                    let nested = parse_at(v, &here)?;
                    dynamic |= !nested.is_literal();
                    Field {
                        key: key.clone(),
                        source_key: key.clone(),
                        value: FieldValue::Template(nested),
                    }
                };
                if fields.iter().any(|f: &Field| f.key == field.key) {
                    return Err(format!(
                        "the keys '{}' and '{}' both produce the field '{}'",
                        fields
                            .iter()
                            .find(|f| f.key == field.key)
                            .map_or("", |f| f.source_key.as_str()),
                        field.source_key,
                        field.key
                    ));
                }
                fields.push(field);
            }
            Ok(if dynamic {
                Template::Object(fields)
            } else {
                Template::Literal(value.clone())
            })
        }
        Value::Array(items) => {
            let parsed = items
                .iter()
                .enumerate()
                .map(|(i, v)| parse_at(v, &format!("{at}[{i}]")))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(if parsed.iter().all(Template::is_literal) {
                Template::Literal(value.clone())
            } else {
                Template::Array(parsed)
            })
        }
        other => Ok(Template::Literal(other.clone())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entropy::SeededEntropy;
    use serde_json::json;

    fn run(template: Value, input: Value) -> Result<Value, StateError> {
        let ctx = json!({"State": {"Name": "S"}, "Map": {"Item": {"Index": 3}}});
        Template::parse(&template)
            .unwrap()
            .evaluate(&Scope::new(&input, &ctx), &mut SeededEntropy::new(0))
    }

    #[test]
    fn evaluates_paths_context_and_intrinsics_recursively() {
        let out = run(
            json!({
                "id.$": "$.id",
                "all.$": "$",
                "state.$": "$$.State.Name",
                "idx.$": "$$.Map.Item.Index",
                "sum.$": "States.MathAdd($.id, 1)",
                "literal": "$.not-evaluated",
                "nested": {"deep.$": "$.id", "list": [{"x.$": "$.id"}, 2]},
                "static": {"a": [1, 2]}
            }),
            json!({"id": 7}),
        )
        .unwrap();
        assert_eq!(
            out,
            json!({
                "id": 7, "all": {"id": 7}, "state": "S", "idx": 3, "sum": 8,
                "literal": "$.not-evaluated",
                "nested": {"deep": 7, "list": [{"x": 7}, 2]},
                "static": {"a": [1, 2]}
            })
        );
    }

    #[test]
    fn missing_path_is_a_runtime_error_naming_the_field() {
        let err = run(json!({"value.$": "$.x"}), json!({"y": 1})).unwrap_err();
        assert_eq!(err.error, crate::errors::RUNTIME);
        assert_eq!(
            err.cause.unwrap(),
            "The JSONPath '$.x' specified for the field 'value.$' could not be found in the input '{\"y\":1}'"
        );
    }

    #[test]
    fn parse_errors_name_the_key() {
        let e = Template::parse(&json!({"a": {"b.$": 1}})).unwrap_err();
        assert!(e.contains("'a.b.$'"), "{e}");
        let e = Template::parse(&json!({"a.$": "$.x", "a": 1})).unwrap_err();
        assert!(e.contains("both produce the field 'a'"), "{e}");
        let e = Template::parse(&json!({"a.$": "States.Nope()"})).unwrap_err();
        assert!(e.contains("unknown intrinsic"), "{e}");
        let e = Template::parse(&json!({"a.$": "x.y"})).unwrap_err();
        assert!(e.contains("invalid JSONPath"), "{e}");
        assert!(Template::parse(&json!({"a": 1})).unwrap().is_literal());
    }
}
