//! Intrinsic functions (`States.Format(…)` and friends).
//!
//! Calls are parsed when the definition is validated — unknown functions,
//! wrong argument counts, bad escapes and bad path arguments are definition
//! errors — and evaluated at run time, where every failure is
//! `States.IntrinsicFailure` (except a path argument that matches nothing,
//! which is `States.Runtime` like every other unmatched path). Randomness
//! comes from an [`Entropy`] so tests can pin `UUID` and `MathRandom`.

use std::fmt::Write as _;

use base64::Engine as _;
use serde_json::{Map, Number, Value};
use sha2::Digest as _;

use crate::entropy::{Entropy, SeededEntropy};
use crate::errors::StateError;
use crate::path::{Path, Scope};

/// AWS allows at most this many nested calls in one field.
const MAX_NESTING: usize = 10;
/// Size limit of string inputs to Base64Encode/Base64Decode/Hash.
const MAX_STRING_INPUT: usize = 10_000;
/// Size limit of ArrayRange results.
const MAX_RANGE_ITEMS: usize = 1000;

/// Why an intrinsic call could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid intrinsic function call '{text}': {message}")]
pub struct IntrinsicParseError {
    /// The call text.
    pub text: String,
    /// What is wrong.
    pub message: String,
}

/// A parsed intrinsic function call.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    func: Func,
    args: Vec<Arg>,
}

#[derive(Debug, Clone, PartialEq)]
enum Arg {
    /// A string literal; `raw` keeps the escapes so that `States.Format`
    /// can tell `\{}` (literal) from `{}` (placeholder).
    Str {
        value: String,
        raw: String,
    },
    Number(Number),
    Bool(bool),
    Null,
    Path(Path),
    Call(Box<Call>),
}

macro_rules! funcs {
    ($($variant:ident = $name:literal, $min:expr, $max:expr;)*) => {
        /// The intrinsic functions of the reference (§4.3).
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Func { $(#[doc = $name] $variant,)* }

        impl Func {
            /// Looks a function up by its full name.
            pub fn from_name(name: &str) -> Option<Func> {
                match name { $($name => Some(Func::$variant),)* _ => None }
            }
            /// The full name, e.g. `States.Format`.
            pub fn name(self) -> &'static str {
                match self { $(Func::$variant => $name,)* }
            }
            fn arity(self) -> (usize, usize) {
                match self { $(Func::$variant => ($min, $max),)* }
            }
        }
    };
}

funcs! {
    Format = "States.Format", 1, usize::MAX;
    StringToJson = "States.StringToJson", 1, 1;
    JsonToString = "States.JsonToString", 1, 1;
    Array = "States.Array", 0, usize::MAX;
    ArrayPartition = "States.ArrayPartition", 2, 2;
    ArrayContains = "States.ArrayContains", 2, 2;
    ArrayRange = "States.ArrayRange", 3, 3;
    ArrayGetItem = "States.ArrayGetItem", 2, 2;
    ArrayLength = "States.ArrayLength", 1, 1;
    ArrayUnique = "States.ArrayUnique", 1, 1;
    Base64Encode = "States.Base64Encode", 1, 1;
    Base64Decode = "States.Base64Decode", 1, 1;
    Hash = "States.Hash", 2, 2;
    JsonMerge = "States.JsonMerge", 3, 3;
    MathRandom = "States.MathRandom", 2, 3;
    MathAdd = "States.MathAdd", 2, 2;
    StringSplit = "States.StringSplit", 2, 2;
    Uuid = "States.UUID", 0, 0;
}

/// Whether a `.$` value is an intrinsic call rather than a path.
pub fn looks_like_call(text: &str) -> bool {
    text.trim_start().starts_with("States.")
}

impl Call {
    /// Parses `States.Name(arg, …)`.
    pub fn parse(text: &str) -> Result<Call, IntrinsicParseError> {
        let mut parser = Parser {
            text,
            pos: 0,
            depth: 0,
        };
        let result = parser.skip_ws_then(|p| p.call()).and_then(|call| {
            parser.skip_ws();
            if parser.pos == text.len() {
                Ok(call)
            } else {
                Err(format!(
                    "unexpected '{}' after the call",
                    &text[parser.pos..]
                ))
            }
        });
        result.map_err(|message| IntrinsicParseError {
            text: text.to_string(),
            message,
        })
    }

    /// The function called.
    pub fn func(&self) -> Func {
        self.func
    }

    /// Evaluates the call.
    pub fn evaluate(
        &self,
        scope: &Scope<'_>,
        entropy: &mut dyn Entropy,
    ) -> Result<Value, StateError> {
        let mut args = Vec::with_capacity(self.args.len());
        for arg in &self.args {
            args.push(match arg {
                Arg::Str { value, .. } => Value::String(value.clone()),
                Arg::Number(n) => Value::Number(n.clone()),
                Arg::Bool(b) => Value::Bool(*b),
                Arg::Null => Value::Null,
                Arg::Path(path) => scope.select(path).ok_or_else(|| {
                    StateError::runtime(format!(
                        "The JSONPath '{path}' specified as an argument of {} could not be found in the input '{}'",
                        self.func.name(),
                        scope.input
                    ))
                })?,
                Arg::Call(call) => call.evaluate(scope, entropy)?,
            });
        }
        self.apply(args, entropy).map_err(|message| {
            StateError::intrinsic(format!(
                "Invalid arguments in {}: {message}",
                self.func.name()
            ))
        })
    }

    fn apply(&self, args: Vec<Value>, entropy: &mut dyn Entropy) -> Result<Value, String> {
        let arg = |i: usize| &args[i];
        Ok(match self.func {
            Func::Format => {
                let template = match &self.args[0] {
                    Arg::Str { raw, .. } => raw.clone(),
                    _ => escape_for_format(as_str(arg(0), "the template")?),
                };
                format(&template, &args[1..])?
            }
            Func::StringToJson => {
                let text = as_str(arg(0), "the argument")?;
                if text.trim().is_empty() {
                    Value::Null
                } else {
                    serde_json::from_str(text).map_err(|e| format!("not valid JSON text: {e}"))?
                }
            }
            Func::JsonToString => Value::String(arg(0).to_string()),
            Func::Array => Value::Array(args),
            Func::ArrayPartition => {
                let items = as_array(arg(0))?;
                let size = as_int(arg(1), "the chunk size")?;
                if size <= 0 {
                    return Err(format!("the chunk size must be positive, got {size}"));
                }
                let size = usize::try_from(size).map_err(|_| "the chunk size is too large")?;
                Value::Array(
                    items
                        .chunks(size)
                        .map(|c| Value::Array(c.to_vec()))
                        .collect(),
                )
            }
            Func::ArrayContains => Value::Bool(as_array(arg(0))?.contains(arg(1))),
            Func::ArrayRange => {
                let (first, last, step) = (
                    as_int(arg(0), "the first value")?,
                    as_int(arg(1), "the last value")?,
                    as_int(arg(2), "the step")?,
                );
                if step == 0 {
                    return Err("the step must not be 0".into());
                }
                let count = if (step > 0 && first > last) || (step < 0 && first < last) {
                    0
                } else {
                    (i128::from(last) - i128::from(first)) / i128::from(step) + 1
                };
                if count > MAX_RANGE_ITEMS as i128 {
                    return Err(format!(
                        "the range has {count} items, more than the limit of {MAX_RANGE_ITEMS}"
                    ));
                }
                Value::Array(
                    (0..count as i64)
                        .map(|i| Value::from(first + i * step))
                        .collect(),
                )
            }
            Func::ArrayGetItem => {
                let items = as_array(arg(0))?;
                let index = as_int(arg(1), "the index")?;
                usize::try_from(index)
                    .ok()
                    .and_then(|i| items.get(i))
                    .cloned()
                    .ok_or_else(|| {
                        format!(
                            "index {index} is out of bounds for an array of length {}",
                            items.len()
                        )
                    })?
            }
            Func::ArrayLength => Value::from(as_array(arg(0))?.len()),
            Func::ArrayUnique => {
                let mut unique: Vec<Value> = Vec::new();
                for item in as_array(arg(0))? {
                    if !unique.contains(item) {
                        unique.push(item.clone());
                    }
                }
                Value::Array(unique)
            }
            Func::Base64Encode => {
                let text = limited_str(arg(0))?;
                Value::String(base64::engine::general_purpose::STANDARD.encode(text))
            }
            Func::Base64Decode => {
                let text = limited_str(arg(0))?;
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(text)
                    .map_err(|e| format!("not valid Base64: {e}"))?;
                Value::String(
                    String::from_utf8(bytes).map_err(|_| "the decoded data is not UTF-8 text")?,
                )
            }
            Func::Hash => {
                let data = limited_str(arg(0))?.as_bytes();
                let digest: Vec<u8> = match as_str(arg(1), "the algorithm")? {
                    "MD5" => md5::Md5::digest(data).to_vec(),
                    "SHA-1" => sha1::Sha1::digest(data).to_vec(),
                    "SHA-256" => sha2::Sha256::digest(data).to_vec(),
                    "SHA-384" => sha2::Sha384::digest(data).to_vec(),
                    "SHA-512" => sha2::Sha512::digest(data).to_vec(),
                    other => {
                        return Err(format!(
                            "unknown hash algorithm '{other}' (MD5, SHA-1, SHA-256, SHA-384 or SHA-512)"
                        ));
                    }
                };
                let mut hex = String::with_capacity(digest.len() * 2);
                for b in digest {
                    let _ = write!(hex, "{b:02x}");
                }
                Value::String(hex)
            }
            Func::JsonMerge => {
                let (Value::Object(a), Value::Object(b)) = (arg(0), arg(1)) else {
                    return Err("both values to merge must be JSON objects".into());
                };
                match arg(2) {
                    Value::Bool(false) => {}
                    Value::Bool(true) => {
                        return Err("deep merge is not supported; pass false".into());
                    }
                    _ => return Err("the third argument must be a boolean".into()),
                }
                let mut merged: Map<String, Value> = a.clone();
                merged.extend(b.iter().map(|(k, v)| (k.clone(), v.clone())));
                Value::Object(merged)
            }
            Func::MathRandom => {
                let start = as_int(arg(0), "the start")?;
                let end = as_int(arg(1), "the end")?;
                if start >= end {
                    return Err(format!(
                        "the start ({start}) must be less than the end ({end})"
                    ));
                }
                let draw = match args.get(2) {
                    Some(seed) => SeededEntropy::new(as_int(seed, "the seed")? as u64).next_u64(),
                    None => entropy.next_u64(),
                };
                let span = (i128::from(end) - i128::from(start)) as u128;
                Value::from((i128::from(start) + (u128::from(draw) % span) as i128) as i64)
            }
            Func::MathAdd => {
                let a = as_int(arg(0), "the first operand")?;
                let b = as_int(arg(1), "the second operand")?;
                for v in [a, b] {
                    if i32::try_from(v).is_err() {
                        return Err(format!("{v} is outside [-2147483648, 2147483647]"));
                    }
                }
                Value::from(a + b)
            }
            Func::StringSplit => {
                let text = as_str(arg(0), "the string")?;
                let delimiters: Vec<char> = as_str(arg(1), "the delimiters")?.chars().collect();
                Value::Array(
                    text.split(|c| delimiters.contains(&c))
                        .filter(|t| !t.is_empty())
                        .map(|t| Value::String(t.to_string()))
                        .collect(),
                )
            }
            Func::Uuid => Value::String(entropy.uuid()),
        })
    }
}

fn as_str<'a>(v: &'a Value, what: &str) -> Result<&'a str, String> {
    v.as_str()
        .ok_or_else(|| format!("{what} must be a string, got {v}"))
}

fn limited_str(v: &Value) -> Result<&str, String> {
    let s = as_str(v, "the input")?;
    if s.chars().count() > MAX_STRING_INPUT {
        return Err(format!(
            "the input is longer than {MAX_STRING_INPUT} characters"
        ));
    }
    Ok(s)
}

fn as_array(v: &Value) -> Result<&Vec<Value>, String> {
    v.as_array()
        .ok_or_else(|| format!("expected an array, got {v}"))
}

/// An integer argument; non-integers are rounded like Java's `Math.round`
/// (halves toward +∞), as recorded on AWS.
fn as_int(v: &Value, what: &str) -> Result<i64, String> {
    let Value::Number(n) = v else {
        return Err(format!("{what} must be a number, got {v}"));
    };
    if let Some(i) = n.as_i64() {
        return Ok(i);
    }
    let f = n.as_f64().unwrap_or(f64::NAN);
    let rounded = (f + 0.5).floor();
    if rounded.is_finite() && rounded >= i64::MIN as f64 && rounded <= i64::MAX as f64 {
        Ok(rounded as i64)
    } else {
        Err(format!("{what} is not a representable integer: {v}"))
    }
}

/// A template that came from a path has no escapes; make its braces and
/// backslashes literal-safe for [`format`] except real `{}` placeholders.
fn escape_for_format(text: &str) -> String {
    text.replace('\\', "\\\\")
}

/// `States.Format`: replace each unescaped `{}` with the next value.
fn format(template: &str, values: &[Value]) -> Result<Value, String> {
    let mut out = String::new();
    let mut values_iter = values.iter();
    let mut used = 0;
    let mut chars = template.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(e) => out.push(e),
                None => return Err("dangling '\\' in the template".into()),
            },
            '{' if chars.peek() == Some(&'}') => {
                chars.next();
                let value = values_iter.next().ok_or_else(|| {
                    format!(
                        "the template has more '{{}}' placeholders than the {} value(s) given",
                        values.len()
                    )
                })?;
                used += 1;
                render_format_value(value, &mut out);
                // A template repeating a large value must not build a string
                // far past what any state may hold.
                if out.len() > crate::limits::MAX_PAYLOAD_BYTES {
                    return Err(format!(
                        "the result is longer than {} bytes, the largest state payload",
                        crate::limits::MAX_PAYLOAD_BYTES
                    ));
                }
            }
            _ => out.push(c),
        }
    }
    if used != values.len() {
        return Err(format!(
            "the template has {used} '{{}}' placeholder(s) but {} value(s) were given",
            values.len()
        ));
    }
    Ok(Value::String(out))
}

/// Strings raw, scalars as JSON text, containers Java-style
/// (`{Arg1=1, Arg2=[]}`), as AWS renders them.
fn render_format_value(value: &Value, out: &mut String) {
    match value {
        Value::String(s) => out.push_str(s),
        Value::Object(map) => {
            out.push('{');
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(k);
                out.push('=');
                render_format_value(v, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                render_format_value(v, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

struct Parser<'a> {
    text: &'a str,
    pos: usize,
    depth: usize,
}

impl Parser<'_> {
    fn rest(&self) -> &str {
        &self.text[self.pos..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn skip_ws(&mut self) {
        while let Some(c) = self.peek().filter(|c| c.is_whitespace()) {
            self.pos += c.len_utf8();
        }
    }

    fn skip_ws_then<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, String>,
    ) -> Result<T, String> {
        self.skip_ws();
        f(self)
    }

    fn call(&mut self) -> Result<Call, String> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err(format!("more than {MAX_NESTING} nested calls"));
        }
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_')
        {
            self.pos += 1;
        }
        let name = &self.text[start..self.pos];
        let func =
            Func::from_name(name).ok_or_else(|| format!("unknown intrinsic function '{name}'"))?;
        self.skip_ws();
        if self.peek() != Some('(') {
            return Err(format!("expected '(' after {name}"));
        }
        self.pos += 1;
        let mut args = Vec::new();
        self.skip_ws();
        if self.peek() == Some(')') {
            self.pos += 1;
        } else {
            loop {
                self.skip_ws();
                args.push(self.arg()?);
                self.skip_ws();
                match self.peek() {
                    Some(',') => self.pos += 1,
                    Some(')') => {
                        self.pos += 1;
                        break;
                    }
                    _ => return Err(format!("expected ',' or ')' in the arguments of {name}")),
                }
            }
        }
        let (min, max) = func.arity();
        if args.len() < min || args.len() > max {
            let expected = if min == max {
                format!("{min}")
            } else if max == usize::MAX {
                format!("at least {min}")
            } else {
                format!("{min} to {max}")
            };
            return Err(format!(
                "{name} takes {expected} argument(s), got {}",
                args.len()
            ));
        }
        self.depth -= 1;
        Ok(Call { func, args })
    }

    fn arg(&mut self) -> Result<Arg, String> {
        match self.peek() {
            Some('\'') => self.string(),
            Some('$') => self.path(),
            Some(c) if c == '-' || c.is_ascii_digit() => self.number(),
            Some(_) if self.rest().starts_with("States.") => Ok(Arg::Call(Box::new(self.call()?))),
            _ => {
                for (word, arg) in [
                    ("true", Arg::Bool(true)),
                    ("false", Arg::Bool(false)),
                    ("null", Arg::Null),
                ] {
                    if self.rest().starts_with(word)
                        && !self.rest()[word.len()..]
                            .starts_with(|c: char| c.is_alphanumeric() || c == '_')
                    {
                        self.pos += word.len();
                        return Ok(arg);
                    }
                }
                Err(format!("unexpected argument at '{}'", self.rest()))
            }
        }
    }

    fn string(&mut self) -> Result<Arg, String> {
        self.pos += 1; // opening quote
        let mut value = String::new();
        let start = self.pos;
        loop {
            let c = self.peek().ok_or("unterminated string literal")?;
            self.pos += c.len_utf8();
            match c {
                '\'' => {
                    let raw = self.text[start..self.pos - 1].to_string();
                    return Ok(Arg::Str { value, raw });
                }
                '\\' => match self.peek() {
                    Some(e @ ('\'' | '{' | '}' | '\\')) => {
                        self.pos += 1;
                        value.push(e);
                    }
                    Some(e) => {
                        return Err(format!(
                            "invalid escape '\\{e}' (only \\', \\{{, \\}} and \\\\ are allowed)"
                        ));
                    }
                    None => return Err("dangling '\\' at the end".into()),
                },
                c => value.push(c),
            }
        }
    }

    fn number(&mut self) -> Result<Arg, String> {
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_digit() || "+-.eE".contains(c))
        {
            self.pos += 1;
        }
        let text = &self.text[start..self.pos];
        serde_json::from_str::<Number>(text)
            .map(Arg::Number)
            .map_err(|_| format!("invalid number '{text}'"))
    }

    /// A path argument runs to the next top-level `,` or `)`; brackets and
    /// quotes inside it (filters, `['a,b']`) are skipped over.
    fn path(&mut self) -> Result<Arg, String> {
        let start = self.pos;
        let (mut brackets, mut parens, mut quote) = (0usize, 0usize, None::<char>);
        while let Some(c) = self.peek() {
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                // Skip the escaped character whole: it may be the last one,
                // or longer than a byte.
                (Some(_), '\\') => {
                    self.pos += self.text[self.pos + 1..]
                        .chars()
                        .next()
                        .map_or(0, char::len_utf8);
                }
                (Some(_), _) => {}
                (None, '\'' | '"') => quote = Some(c),
                (None, '[') => brackets += 1,
                (None, ']') => brackets = brackets.saturating_sub(1),
                (None, '(') => parens += 1,
                (None, ')') if parens == 0 && brackets == 0 => break,
                (None, ')') => parens = parens.saturating_sub(1),
                (None, ',') if parens == 0 && brackets == 0 => break,
                _ => {}
            }
            self.pos += c.len_utf8();
        }
        let text = self.text[start..self.pos].trim_end();
        Path::parse(text).map(Arg::Path).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::errors::INTRINSIC_FAILURE;
    use serde_json::json;

    fn eval_with(text: &str, input: Value) -> Result<Value, StateError> {
        let ctx = json!({"Execution": {"Name": "ex"}});
        let call = Call::parse(text).unwrap_or_else(|e| panic!("{e}"));
        call.evaluate(&Scope::new(&input, &ctx), &mut SeededEntropy::new(1))
    }

    fn eval(text: &str) -> Value {
        eval_with(text, json!({})).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn fails(text: &str) -> String {
        let err = eval_with(text, json!({"s": "x", "n": 3, "a": [1]})).unwrap_err();
        assert_eq!(err.error, INTRINSIC_FAILURE, "{text}: {err}");
        err.cause.unwrap()
    }

    #[test]
    fn format() {
        assert_eq!(
            eval_with("States.Format('Hi {}', $.n)", json!({"n": "Ada"})).unwrap(),
            json!("Hi Ada")
        );
        assert_eq!(
            eval("States.Format('{} {} {}', 1, true, null)"),
            json!("1 true null")
        );
        assert_eq!(eval("States.Format('\\{\\}{}', 'x')"), json!("{}x"));
        assert_eq!(
            eval("States.Format('it\\'s \\\\ {}', 'ok')"),
            json!("it's \\ ok")
        );
        assert_eq!(
            eval_with("States.Format('{}', $)", json!({"Arg1": 1, "Arg2": []})).unwrap(),
            json!("{Arg1=1, Arg2=[]}")
        );
        assert_eq!(
            eval_with("States.Format($.t, 'v')", json!({"t": "a{}b"})).unwrap(),
            json!("avb")
        );
        assert_eq!(eval("States.Format('{}', $$.Execution.Name)"), json!("ex"));
        assert!(fails("States.Format('{} {}', 1)").contains("more '{}'"));
        assert!(fails("States.Format('{}', 1, 2)").contains("1 '{}' placeholder"));
        fails("States.Format(1)");
    }

    #[test]
    fn json_conversions() {
        assert_eq!(eval("States.StringToJson('{\"a\":1}')"), json!({"a": 1}));
        assert_eq!(eval("States.StringToJson('  ')"), Value::Null);
        fails("States.StringToJson('{nope')");
        fails("States.StringToJson(1)");
        assert_eq!(
            eval_with("States.JsonToString($)", json!({"a": 1, "b": []})).unwrap(),
            json!("{\"a\":1,\"b\":[]}")
        );
    }

    #[test]
    fn arrays() {
        assert_eq!(
            eval("States.Array('a', 2, null, true)"),
            json!(["a", 2, null, true])
        );
        assert_eq!(eval("States.Array()"), json!([]));
        let nine = json!({"a": [1, 2, 3, 4, 5, 6, 7, 8, 9]});
        assert_eq!(
            eval_with("States.ArrayPartition($.a, 4)", nine.clone()).unwrap(),
            json!([[1, 2, 3, 4], [5, 6, 7, 8], [9]])
        );
        assert_eq!(eval("States.ArrayPartition(States.Array(), 2)"), json!([]));
        fails("States.ArrayPartition($.a, 0)");
        fails("States.ArrayPartition($.s, 1)");
        assert_eq!(
            eval("States.ArrayContains(States.Array(States.Array(1,2,3), 2), States.Array(1,2,3))"),
            json!(true)
        );
        assert_eq!(
            eval("States.ArrayContains(States.Array(1), 2)"),
            json!(false)
        );
        fails("States.ArrayContains($.n, 2)");
        assert_eq!(eval("States.ArrayRange(0, 10, 3)"), json!([0, 3, 6, 9]));
        assert_eq!(eval("States.ArrayRange(1, 9, 2)"), json!([1, 3, 5, 7, 9]));
        assert_eq!(eval("States.ArrayRange(5, 1, -2)"), json!([5, 3, 1]));
        assert_eq!(eval("States.ArrayRange(5, 1, 1)"), json!([]));
        assert_eq!(
            eval("States.ArrayRange(1, 1000, 1)")
                .as_array()
                .unwrap()
                .len(),
            1000
        );
        assert!(fails("States.ArrayRange(1, 1001, 1)").contains("limit of 1000"));
        assert!(fails("States.ArrayRange(1, 5, 0)").contains("must not be 0"));
        assert_eq!(
            eval_with("States.ArrayGetItem($.a, 5)", nine.clone()).unwrap(),
            json!(6)
        );
        assert!(fails("States.ArrayGetItem($.a, 1)").contains("out of bounds"));
        fails("States.ArrayGetItem($.a, -1)");
        assert_eq!(
            eval_with("States.ArrayLength($.a)", nine).unwrap(),
            json!(9)
        );
        fails("States.ArrayLength($.s)");
        assert_eq!(
            eval("States.ArrayUnique(States.Array(1,2,3,3,4,1))"),
            json!([1, 2, 3, 4])
        );
        fails("States.ArrayUnique($.n)");
    }

    #[test]
    fn base64_and_hash() {
        assert_eq!(
            eval("States.Base64Encode('Data to encode')"),
            json!("RGF0YSB0byBlbmNvZGU=")
        );
        assert_eq!(
            eval("States.Base64Decode('RGF0YSB0byBlbmNvZGU=')"),
            json!("Data to encode")
        );
        fails("States.Base64Decode('***')");
        fails("States.Base64Encode($.n)");
        let long = json!({"s": "a".repeat(10_001)});
        assert_eq!(
            eval_with("States.Base64Encode($.s)", long)
                .unwrap_err()
                .error,
            INTRINSIC_FAILURE
        );
        assert_eq!(
            eval("States.Hash('Ada', 'MD5')"),
            json!("1a382809b7c03f686e12dd15677c5497")
        );
        assert_eq!(
            eval("States.Hash('abc', 'SHA-1')"),
            json!("a9993e364706816aba3e25717850c26c9cd0d89d")
        );
        assert_eq!(
            eval("States.Hash('abc', 'SHA-256')"),
            json!("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        );
        assert_eq!(
            eval("States.Hash('abc', 'SHA-384')")
                .as_str()
                .unwrap()
                .len(),
            96
        );
        assert!(
            eval("States.Hash('abc', 'SHA-512')")
                .as_str()
                .unwrap()
                .starts_with("ddaf35a193617aba")
        );
        assert!(fails("States.Hash('abc', 'SHA-3')").contains("unknown hash algorithm"));
    }

    #[test]
    fn json_merge() {
        let input = json!({"a": {"a": {"a1": 1}, "b": 2}, "b": {"a": {"a3": 3}, "c": 3}});
        assert_eq!(
            eval_with("States.JsonMerge($.a, $.b, false)", input.clone()).unwrap(),
            json!({"a": {"a3": 3}, "b": 2, "c": 3})
        );
        assert_eq!(
            eval_with("States.JsonMerge($.a, $.b, true)", input)
                .unwrap_err()
                .error,
            INTRINSIC_FAILURE
        );
        fails("States.JsonMerge($.a, 1, false)");
    }

    #[test]
    fn math() {
        assert_eq!(eval("States.MathAdd(111, -1)"), json!(110));
        assert_eq!(eval("States.MathAdd(1.49, 1.5)"), json!(3));
        assert_eq!(eval("States.MathAdd(2.5, -1.5)"), json!(2));
        assert_eq!(eval("States.MathAdd(-2.5, 0)"), json!(-2));
        assert_eq!(
            eval("States.MathAdd(2147483647, 1)"),
            json!(2_147_483_648_i64)
        );
        fails("States.MathAdd(2147483648, 1)");
        fails("States.MathAdd('1', 1)");
        for _ in 0..20 {
            let v = eval("States.MathRandom(1, 4)").as_i64().unwrap();
            assert!((1..4).contains(&v));
        }
        assert_eq!(
            eval("States.MathRandom(0, 1000, 42)"),
            eval("States.MathRandom(0, 1000, 42)")
        );
        fails("States.MathRandom(5, 5)");
    }

    #[test]
    fn strings_and_uuid() {
        assert_eq!(
            eval("States.StringSplit('a.b+c', '.+')"),
            json!(["a", "b", "c"])
        );
        assert_eq!(eval("States.StringSplit(',,', ',')"), json!([]));
        assert_eq!(eval("States.StringSplit('1, 2', ', ')"), json!(["1", "2"]));
        fails("States.StringSplit($.n, ',')");
        let id = eval("States.UUID()");
        assert_eq!(id, eval("States.UUID()"), "same seed, same uuid");
        assert_eq!(id.as_str().unwrap().len(), 36);
    }

    #[test]
    fn nested_calls_and_path_arguments() {
        let input = json!({"tags": "new,vip", "m": {"a,b": [1, 2]}});
        assert_eq!(
            eval_with(
                "States.ArrayContains(States.StringSplit($.tags, ','), 'vip')",
                input.clone()
            )
            .unwrap(),
            json!(true)
        );
        assert_eq!(
            eval_with("States.ArrayLength($.m['a,b'])", input.clone()).unwrap(),
            json!(2)
        );
        assert_eq!(
            eval_with("States.ArrayLength( $.m['a,b'][?(@ > 1)] )", input.clone()).unwrap(),
            json!(1)
        );
        let missing = eval_with("States.ArrayLength($.nope)", input).unwrap_err();
        assert_eq!(missing.error, crate::errors::RUNTIME);
    }

    #[test]
    fn parse_errors() {
        for (text, needle) in [
            ("States.Nope()", "unknown intrinsic"),
            ("States.UUID(1)", "takes 0 argument"),
            ("States.MathAdd(1)", "takes 2 argument"),
            ("States.Format()", "at least 1"),
            ("States.Format('a\\n')", "invalid escape"),
            ("States.Format('abc)", "unterminated"),
            ("States.Format('a' 'b')", "expected ','"),
            ("States.Array(1) x", "unexpected"),
            ("States.Array(foo)", "unexpected argument"),
            ("States.Array($.a[)", "invalid JSONPath"),
            ("States.Array(1", "expected ','"),
        ] {
            let err = Call::parse(text).unwrap_err().to_string();
            assert!(err.contains(needle), "{text}: {err}");
        }
        let deep = format!("{}1{}", "States.Array(".repeat(11), ")".repeat(11));
        assert!(
            Call::parse(&deep)
                .unwrap_err()
                .to_string()
                .contains("nested")
        );
        let ok = format!("{}1{}", "States.Array(".repeat(10), ")".repeat(10));
        assert!(Call::parse(&ok).is_ok());
    }
}
