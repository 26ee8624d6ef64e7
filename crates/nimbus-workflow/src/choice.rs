//! Choice rules: parsing and evaluation.
//!
//! Rules are parsed into a closed set of operators at validation time, so an
//! operator typo or a literal of the wrong type (`"NumericEquals": "5"`) is a
//! definition error. At run time the ASL rule is that a *type mismatch* makes
//! a comparison false rather than failing, while a *missing* `Variable` is a
//! runtime path error — except for `IsPresent`, whose whole point is asking.

use std::cmp::Ordering;

use serde_json::Value;

use crate::errors::StateError;
use crate::path::{Path, Scope};
use crate::timestamp::Timestamp;

/// A top-level Choice rule with its target.
#[derive(Debug, Clone, PartialEq)]
pub struct ChoiceRule {
    /// The condition.
    pub rule: Rule,
    /// Where to go when it is true.
    pub next: String,
}

/// A boolean expression or a data test.
#[derive(Debug, Clone, PartialEq)]
pub enum Rule {
    /// Every sub-rule is true (short-circuits).
    And(Vec<Rule>),
    /// Some sub-rule is true (short-circuits).
    Or(Vec<Rule>),
    /// The sub-rule is false.
    Not(Box<Rule>),
    /// `Variable` + one comparison operator.
    Test(DataTest),
}

/// `{"Variable": …, "<Operator>": …}`.
#[derive(Debug, Clone, PartialEq)]
pub struct DataTest {
    /// The path whose value is tested.
    pub variable: Path,
    /// The operator.
    pub op: Op,
    /// What the value is compared with.
    pub operand: Operand,
}

/// The right-hand side of a comparison.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    /// A literal from the definition.
    Literal(Value),
    /// A path (the `…Path` operator variants), resolved at run time.
    Path(Path),
}

/// The family of value a comparison operator works on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    String,
    Numeric,
    Boolean,
    Timestamp,
    Matches,
    TypeTest,
}

macro_rules! ops {
    ($($variant:ident, $kind:ident, $cmp:expr;)*) => {
        /// A comparison operator, without its `Path` suffix.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Op { $(#[doc = stringify!($variant)] $variant,)* }

        impl Op {
            const ALL: &[Op] = &[$(Op::$variant,)*];

            /// The operator's name in ASL.
            pub fn name(self) -> &'static str {
                match self { $(Op::$variant => stringify!($variant),)* }
            }

            fn kind(self) -> Kind {
                match self { $(Op::$variant => Kind::$kind,)* }
            }

            /// Which orderings satisfy the operator (for comparisons).
            fn accepts(self, ordering: Ordering) -> bool {
                let f: fn(Ordering) -> bool = match self { $(Op::$variant => $cmp,)* };
                f(ordering)
            }
        }
    };
}

ops! {
    StringEquals, String, Ordering::is_eq;
    StringLessThan, String, Ordering::is_lt;
    StringGreaterThan, String, Ordering::is_gt;
    StringLessThanEquals, String, Ordering::is_le;
    StringGreaterThanEquals, String, Ordering::is_ge;
    StringMatches, Matches, Ordering::is_eq;
    NumericEquals, Numeric, Ordering::is_eq;
    NumericLessThan, Numeric, Ordering::is_lt;
    NumericGreaterThan, Numeric, Ordering::is_gt;
    NumericLessThanEquals, Numeric, Ordering::is_le;
    NumericGreaterThanEquals, Numeric, Ordering::is_ge;
    BooleanEquals, Boolean, Ordering::is_eq;
    TimestampEquals, Timestamp, Ordering::is_eq;
    TimestampLessThan, Timestamp, Ordering::is_lt;
    TimestampGreaterThan, Timestamp, Ordering::is_gt;
    TimestampLessThanEquals, Timestamp, Ordering::is_le;
    TimestampGreaterThanEquals, Timestamp, Ordering::is_ge;
    IsNull, TypeTest, Ordering::is_eq;
    IsPresent, TypeTest, Ordering::is_eq;
    IsNumeric, TypeTest, Ordering::is_eq;
    IsString, TypeTest, Ordering::is_eq;
    IsBoolean, TypeTest, Ordering::is_eq;
    IsTimestamp, TypeTest, Ordering::is_eq;
}

/// Looks an operator key up: `NumericEquals` or `NumericEqualsPath`.
fn lookup_operator(key: &str) -> Option<(Op, bool)> {
    if let Some(op) = Op::ALL.iter().find(|op| op.name() == key) {
        return Some((*op, false));
    }
    let base = key.strip_suffix("Path")?;
    Op::ALL
        .iter()
        .find(|op| op.name() == base && !matches!(op.kind(), Kind::Matches | Kind::TypeTest))
        .map(|op| (*op, true))
}

impl ChoiceRule {
    /// Parses one element of `Choices`; errors are prefixed by `at`
    /// (e.g. `Choices[2]`).
    pub fn parse(value: &Value, at: &str) -> Result<ChoiceRule, String> {
        let next = match value.get("Next") {
            Some(Value::String(n)) => n.clone(),
            Some(_) => return Err(format!("{at}.Next must be a string")),
            None => {
                return Err(format!(
                    "{at} has no 'Next' (every top-level choice rule needs one)"
                ));
            }
        };
        Ok(ChoiceRule {
            rule: Rule::parse_inner(value, at, true)?,
            next,
        })
    }
}

impl Rule {
    /// Parses a nested rule (which must not have `Next`).
    pub fn parse(value: &Value, at: &str) -> Result<Rule, String> {
        Rule::parse_inner(value, at, false)
    }

    fn parse_inner(value: &Value, at: &str, top_level: bool) -> Result<Rule, String> {
        let Value::Object(map) = value else {
            return Err(format!("{at} must be an object"));
        };
        let mut rule = None;
        let mut variable = None;
        let mut operators = Vec::new();
        for (key, v) in map {
            match key.as_str() {
                "Next" if top_level => {}
                "Next" => {
                    return Err(format!("{at} is a nested rule and must not have 'Next'"));
                }
                "Comment" => {}
                "And" | "Or" => {
                    let Some(items) = v.as_array().filter(|a| !a.is_empty()) else {
                        return Err(format!("{at}.{key} must be a non-empty array of rules"));
                    };
                    let rules = items
                        .iter()
                        .enumerate()
                        .map(|(i, r)| Rule::parse(r, &format!("{at}.{key}[{i}]")))
                        .collect::<Result<Vec<_>, _>>()?;
                    rule = Some(if key == "And" {
                        Rule::And(rules)
                    } else {
                        Rule::Or(rules)
                    });
                    operators.push(key.clone());
                }
                "Not" => {
                    rule = Some(Rule::Not(Box::new(Rule::parse(v, &format!("{at}.Not"))?)));
                    operators.push(key.clone());
                }
                "Variable" => {
                    let Value::String(text) = v else {
                        return Err(format!("{at}.Variable must be a string"));
                    };
                    variable = Some(Path::parse(text).map_err(|e| format!("{at}.Variable: {e}"))?);
                }
                "Condition" | "Assign" | "Output" => {
                    return Err(format!(
                        "{at}.{key} is not supported (JSONata conditions and variables are not implemented)"
                    ));
                }
                other => match lookup_operator(other) {
                    Some((op, is_path)) => {
                        operators.push(other.to_string());
                        rule = Some(Rule::Test(DataTest {
                            variable: Path::root(), // replaced below
                            op,
                            operand: parse_operand(op, is_path, v, &format!("{at}.{other}"))?,
                        }));
                    }
                    None => return Err(format!("{at} has an unknown field '{other}'")),
                },
            }
        }
        match operators.len() {
            0 => {
                return Err(format!(
                    "{at} has no comparison operator, 'And', 'Or' or 'Not'"
                ));
            }
            1 => {}
            _ => {
                return Err(format!(
                    "{at} has more than one operator ({}); use 'And'/'Or' to combine them",
                    operators.join(", ")
                ));
            }
        }
        match (rule, variable) {
            (Some(Rule::Test(mut test)), Some(variable)) => {
                test.variable = variable;
                Ok(Rule::Test(test))
            }
            (Some(Rule::Test(test)), None) => Err(format!(
                "{at} uses '{}' but has no 'Variable'",
                test.op.name()
            )),
            (Some(_), Some(_)) => Err(format!("{at} combines 'Variable' with '{}'", operators[0])),
            (Some(rule), None) => Ok(rule),
            (None, _) => unreachable!("one operator was found"),
        }
    }

    /// Evaluates the rule against the state's effective input.
    pub fn evaluate(&self, scope: &Scope<'_>) -> Result<bool, StateError> {
        match self {
            Rule::And(rules) => {
                for r in rules {
                    if !r.evaluate(scope)? {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
            Rule::Or(rules) => {
                for r in rules {
                    if r.evaluate(scope)? {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            Rule::Not(rule) => Ok(!rule.evaluate(scope)?),
            Rule::Test(test) => test.evaluate(scope),
        }
    }
}

fn parse_operand(op: Op, is_path: bool, v: &Value, at: &str) -> Result<Operand, String> {
    if is_path {
        let Value::String(text) = v else {
            return Err(format!("{at} must be a path string"));
        };
        return Path::parse(text)
            .map(Operand::Path)
            .map_err(|e| format!("{at}: {e}"));
    }
    let ok = match op.kind() {
        Kind::String => v.is_string(),
        Kind::Matches => v.as_str().is_some_and(|p| Pattern::parse(p).is_ok()),
        Kind::Numeric => v.is_number(),
        Kind::Boolean | Kind::TypeTest => v.is_boolean(),
        Kind::Timestamp => v.as_str().and_then(Timestamp::parse_rfc3339).is_some(),
    };
    if !ok {
        let expected = match op.kind() {
            Kind::String => "a string",
            Kind::Matches => "a pattern string (no dangling '\\')",
            Kind::Numeric => "a number",
            Kind::Boolean | Kind::TypeTest => "a boolean",
            Kind::Timestamp => "an RFC 3339 timestamp string such as 2016-03-14T01:59:00Z",
        };
        return Err(format!("{at} must be {expected}, got {v}"));
    }
    Ok(Operand::Literal(v.clone()))
}

impl DataTest {
    fn evaluate(&self, scope: &Scope<'_>) -> Result<bool, StateError> {
        let value = scope.select(&self.variable);
        if self.op == Op::IsPresent {
            return Ok(value.is_some() == (self.operand == Operand::Literal(Value::Bool(true))));
        }
        let Some(value) = value else {
            return Err(StateError::runtime(format!(
                "Invalid path '{}': The choice state's condition path references an invalid value.",
                self.variable
            )));
        };
        let expected = match &self.operand {
            Operand::Literal(v) => v.clone(),
            Operand::Path(path) => scope.select(path).ok_or_else(|| {
                StateError::runtime(format!(
                    "Invalid path '{path}' in {}Path: no results in the input",
                    self.op.name()
                ))
            })?,
        };
        Ok(match self.op.kind() {
            Kind::TypeTest => {
                let answer = match self.op {
                    Op::IsNull => value.is_null(),
                    Op::IsNumeric => value.is_number(),
                    Op::IsString => value.is_string(),
                    Op::IsBoolean => value.is_boolean(),
                    _ => value.as_str().and_then(Timestamp::parse_rfc3339).is_some(),
                };
                expected.as_bool() == Some(answer)
            }
            Kind::String => match (value.as_str(), expected.as_str()) {
                (Some(a), Some(b)) => self.op.accepts(a.cmp(b)),
                _ => false,
            },
            Kind::Matches => match (value.as_str(), expected.as_str()) {
                (Some(a), Some(p)) => Pattern::parse(p).is_ok_and(|p| p.matches(a)),
                _ => false,
            },
            Kind::Numeric => match (value.as_f64(), expected.as_f64()) {
                (Some(a), Some(b)) if value.is_number() && expected.is_number() => {
                    a.partial_cmp(&b).is_some_and(|o| self.op.accepts(o))
                }
                _ => false,
            },
            Kind::Boolean => match (value.as_bool(), expected.as_bool()) {
                (Some(a), Some(b)) => a == b,
                _ => false,
            },
            Kind::Timestamp => {
                let parse = |v: &Value| v.as_str().and_then(Timestamp::parse_rfc3339);
                match (parse(&value), parse(&expected)) {
                    (Some(a), Some(b)) => self.op.accepts(a.cmp(&b)),
                    _ => false,
                }
            }
        })
    }
}

/// A `StringMatches` pattern: `*` is any run of characters, `\*` a literal
/// star, `\\` a literal backslash; nothing else is special.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern(Vec<Token>);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    Star,
    Char(char),
}

impl Pattern {
    /// Parses a pattern; a dangling `\` is the only error.
    pub fn parse(text: &str) -> Result<Pattern, String> {
        let mut tokens = Vec::new();
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            tokens.push(match c {
                '*' => Token::Star,
                '\\' => Token::Char(chars.next().ok_or("dangling '\\' in pattern")?),
                c => Token::Char(c),
            });
        }
        Ok(Pattern(tokens))
    }

    /// Whether the whole of `text` matches (linear-time glob with
    /// backtracking to the last star).
    pub fn matches(&self, text: &str) -> bool {
        let text: Vec<char> = text.chars().collect();
        let pattern = &self.0;
        let (mut p, mut t) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while t < text.len() {
            match pattern.get(p) {
                Some(Token::Char(c)) if *c == text[t] => {
                    p += 1;
                    t += 1;
                }
                Some(Token::Star) => {
                    star = Some((p, t));
                    p += 1;
                }
                _ => match star {
                    Some((sp, st)) => {
                        p = sp + 1;
                        t = st + 1;
                        star = Some((sp, st + 1));
                    }
                    None => return false,
                },
            }
        }
        pattern[p..].iter().all(|t| *t == Token::Star)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(rule: Value, input: Value) -> Result<bool, StateError> {
        let ctx = json!({"Execution": {"Name": "run-1"}});
        Rule::parse(&rule, "rule")
            .unwrap_or_else(|e| panic!("{e}"))
            .evaluate(&Scope::new(&input, &ctx))
    }

    fn t(op: &str, operand: Value, value: Value) -> bool {
        check(
            json!({"Variable": "$.v", op: operand}),
            json!({"v": value, "other": operand}),
        )
        .unwrap()
    }

    fn tp(op: &str, value: Value, other: Value) -> bool {
        check(
            json!({"Variable": "$.v", format!("{op}Path"): "$.other"}),
            json!({"v": value, "other": other}),
        )
        .unwrap()
    }

    #[test]
    fn string_operators() {
        assert!(t("StringEquals", json!("a"), json!("a")));
        assert!(!t("StringEquals", json!("a"), json!("A")));
        assert!(t("StringLessThan", json!("b"), json!("a")));
        assert!(!t("StringLessThan", json!("a"), json!("a")));
        assert!(t("StringGreaterThan", json!("a"), json!("b")));
        assert!(t("StringLessThanEquals", json!("a"), json!("a")));
        assert!(t("StringGreaterThanEquals", json!("a"), json!("a")));
        assert!(
            !t("StringEquals", json!("1"), json!(1)),
            "type mismatch is false"
        );
        for op in [
            "StringEquals",
            "StringLessThan",
            "StringGreaterThan",
            "StringLessThanEquals",
            "StringGreaterThanEquals",
        ] {
            assert_eq!(
                tp(op, json!("x"), json!("x")),
                op.ends_with("Equals"),
                "{op}Path"
            );
        }
    }

    #[test]
    fn string_matches() {
        assert!(t("StringMatches", json!("ord*"), json!("order")));
        assert!(t("StringMatches", json!("*.log"), json!("a.b.log")));
        assert!(t("StringMatches", json!("a*b*c"), json!("abc")));
        assert!(t("StringMatches", json!("*"), json!("")));
        assert!(!t("StringMatches", json!("ord*"), json!("border")));
        assert!(t("StringMatches", json!("a\\*"), json!("a*")));
        assert!(!t("StringMatches", json!("a\\*"), json!("ab")));
        assert!(t("StringMatches", json!("a\\\\b"), json!("a\\b")));
        assert!(!t("StringMatches", json!("x*"), json!(1)));
        assert!(Rule::parse(&json!({"Variable": "$.v", "StringMatchesPath": "$.p"}), "r").is_err());
    }

    #[test]
    fn numeric_operators() {
        assert!(t("NumericEquals", json!(1), json!(1.0)));
        assert!(t("NumericLessThan", json!(2), json!(1.5)));
        assert!(t("NumericGreaterThan", json!(2), json!(3)));
        assert!(t("NumericLessThanEquals", json!(2), json!(2)));
        assert!(t("NumericGreaterThanEquals", json!(2), json!(2)));
        assert!(!t("NumericGreaterThanEquals", json!(2), json!(1)));
        assert!(!t("NumericEquals", json!(1), json!("1")));
        assert!(tp("NumericGreaterThan", json!(5), json!(3)));
        assert!(tp("NumericEquals", json!(5), json!(5)));
        assert!(tp("NumericLessThan", json!(1), json!(3)));
        assert!(tp("NumericLessThanEquals", json!(3), json!(3)));
        assert!(tp("NumericGreaterThanEquals", json!(3), json!(3)));
        assert!(!tp("NumericEquals", json!(5), json!("5")));
    }

    #[test]
    fn boolean_and_timestamp_operators() {
        assert!(t("BooleanEquals", json!(true), json!(true)));
        assert!(!t("BooleanEquals", json!(true), json!("true")));
        assert!(tp("BooleanEquals", json!(false), json!(false)));
        let a = json!("2016-03-14T01:59:00Z");
        let b = json!("2016-03-14T03:59:00+01:00");
        assert!(t(
            "TimestampEquals",
            a.clone(),
            json!("2016-03-14T02:59:00+01:00")
        ));
        assert!(t("TimestampLessThan", b.clone(), a.clone()));
        assert!(t("TimestampGreaterThan", a.clone(), b.clone()));
        assert!(t("TimestampLessThanEquals", a.clone(), a.clone()));
        assert!(t("TimestampGreaterThanEquals", a.clone(), a.clone()));
        assert!(!t("TimestampEquals", a.clone(), json!("not a time")));
        assert!(!t(
            "TimestampEquals",
            a.clone(),
            json!("2016-03-14t01:59:00z")
        ));
        assert!(tp("TimestampLessThan", a.clone(), b.clone()));
        assert!(tp("TimestampEquals", a.clone(), a.clone()));
        assert!(tp("TimestampGreaterThan", b.clone(), a.clone()));
        assert!(tp("TimestampLessThanEquals", a.clone(), a.clone()));
        assert!(tp("TimestampGreaterThanEquals", a.clone(), a));
    }

    #[test]
    fn type_tests() {
        assert!(t("IsNull", json!(true), Value::Null));
        assert!(t("IsNull", json!(false), json!(0)));
        assert!(t("IsNumeric", json!(true), json!(1.5)));
        assert!(t("IsNumeric", json!(false), json!("1.5")));
        assert!(t("IsString", json!(true), json!("")));
        assert!(t("IsBoolean", json!(true), json!(false)));
        assert!(t("IsBoolean", json!(false), json!("true")));
        assert!(t("IsTimestamp", json!(true), json!("2016-03-14T01:59:00Z")));
        assert!(t("IsTimestamp", json!(false), json!("2016-03-14")));
        assert!(
            t("IsPresent", json!(true), Value::Null),
            "present null counts"
        );
        assert!(check(json!({"Variable": "$.nope", "IsPresent": false}), json!({})).unwrap());
        assert!(!check(json!({"Variable": "$.nope", "IsPresent": true}), json!({})).unwrap());
    }

    #[test]
    fn boolean_combinators_and_context() {
        let input = json!({"a": 1, "b": "x"});
        let yes = json!({"Variable": "$.a", "NumericEquals": 1});
        let no = json!({"Variable": "$.b", "StringEquals": "y"});
        // The missing path after a false And member is never evaluated.
        let boom = json!({"Variable": "$.missing", "NumericEquals": 1});
        assert!(check(json!({"And": [yes, yes]}), input.clone()).unwrap());
        assert!(!check(json!({"And": [no, boom]}), input.clone()).unwrap());
        assert!(check(json!({"Or": [yes, boom]}), input.clone()).unwrap());
        assert!(!check(json!({"Or": [no, no]}), input.clone()).unwrap());
        assert!(check(json!({"Not": no}), input.clone()).unwrap());
        assert!(
            check(
                json!({"Variable": "$$.Execution.Name", "StringEquals": "run-1"}),
                input.clone()
            )
            .unwrap()
        );
        let err = check(boom, input).unwrap_err();
        assert_eq!(err.error, crate::errors::RUNTIME);
    }

    #[test]
    fn parse_errors() {
        for (rule, needle) in [
            (json!({"Variable": "$.a"}), "no comparison operator"),
            (
                json!({"Variable": "$.a", "NumericEquals": "1"}),
                "must be a number",
            ),
            (
                json!({"Variable": "$.a", "StringEquals": 1}),
                "must be a string",
            ),
            (
                json!({"Variable": "$.a", "BooleanEquals": 1}),
                "must be a boolean",
            ),
            (
                json!({"Variable": "$.a", "IsNull": "yes"}),
                "must be a boolean",
            ),
            (
                json!({"Variable": "$.a", "TimestampEquals": "2016-03-14"}),
                "RFC 3339",
            ),
            (
                json!({"Variable": "$.a", "StringMatches": "a\\"}),
                "pattern",
            ),
            (
                json!({"Variable": "$.a", "NumericEquals": 1, "IsNull": true}),
                "more than one operator",
            ),
            (
                json!({"Variable": "$.a", "NumericEqualz": 1}),
                "unknown field 'NumericEqualz'",
            ),
            (json!({"NumericEquals": 1}), "has no 'Variable'"),
            (json!({"And": []}), "non-empty array"),
            (
                json!({"Not": {"Variable": "$.a", "IsNull": true, "Next": "X"}}),
                "must not have 'Next'",
            ),
            (json!({"Variable": "a", "IsNull": true}), "invalid JSONPath"),
            (
                json!({"Variable": "$.a", "And": [{"Variable": "$.a", "IsNull": true}]}),
                "combines 'Variable'",
            ),
            (json!({"Condition": true}), "not supported"),
        ] {
            let err = Rule::parse(&rule, "Choices[0]").unwrap_err();
            assert!(err.contains(needle), "{rule}: {err}");
        }
        let err = ChoiceRule::parse(&json!({"Variable": "$.a", "IsNull": true}), "Choices[1]")
            .unwrap_err();
        assert!(err.contains("Choices[1] has no 'Next'"), "{err}");
    }
}
