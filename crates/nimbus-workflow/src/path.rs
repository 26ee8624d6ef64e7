//! The JSONPath subset used by ASL.
//!
//! ASL paths follow Jayway JSONPath (the Java library behind Step Functions),
//! not RFC 9535, so the semantics here are Jayway's where they differ: a
//! *definite* path (only names and single indices) yields one node or fails,
//! an *indefinite* one (wildcards, slices, unions, filters, `..`) yields an
//! array of every match, possibly empty. Paths are parsed once when the
//! definition is validated, so a bad path is a validation error and never a
//! surprise mid-execution.
//!
//! A *reference path* (ResultPath, ItemsPath, `…Path` fields) is the definite
//! subset without negative indices; it can also be written to
//! ([`Path::set`]), creating missing intermediate objects.

use std::fmt;

use serde_json::{Map, Value};

/// Why a path string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid JSONPath '{path}': {message}")]
pub struct PathError {
    /// The offending path text.
    pub path: String,
    /// What is wrong with it.
    pub message: String,
}

/// Why a value could not be written at a reference path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unable to apply ReferencePath {path} to input {input}")]
pub struct SetError {
    /// The reference path.
    pub path: String,
    /// The compact JSON text of the document it was applied to.
    pub input: String,
}

/// What a path is evaluated against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Root {
    /// `$…`: the state's input (or whatever document the field works on).
    Input,
    /// `$$…`: the context object.
    Context,
}

/// Builds the context object (`$$`) on demand.
///
/// The context holds the execution input, which can be large (a Map over
/// 10,000 items carries them all), so it is materialized per path and only as
/// deep as the path needs instead of being cloned for every state.
pub trait ContextSource {
    /// The context object, or any part of it that contains everything `path`
    /// can reach.
    fn context_for(&self, path: &Path) -> Value;
}

impl ContextSource for Value {
    fn context_for(&self, _path: &Path) -> Value {
        self.clone()
    }
}

/// The two documents a path can address: the input (`$`) and the context
/// object (`$$`).
#[derive(Clone, Copy)]
pub struct Scope<'a> {
    /// What `$` means here.
    pub input: &'a Value,
    /// What `$$` means here.
    pub context: &'a dyn ContextSource,
}

impl<'a> Scope<'a> {
    /// A scope over `input` with the given context.
    pub fn new(input: &'a Value, context: &'a dyn ContextSource) -> Scope<'a> {
        Scope { input, context }
    }

    /// Selects with `path` from whichever document its root names.
    pub fn select(&self, path: &Path) -> Option<Value> {
        match path.root_kind() {
            Root::Input => path.select(self.input),
            Root::Context => path.select(&self.context.context_for(path)),
        }
    }
}

/// A parsed JSONPath.
#[derive(Clone, PartialEq)]
pub struct Path {
    text: String,
    root: Root,
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq)]
struct Segment {
    /// `..` before the selector: apply to every descendant-or-self.
    recursive: bool,
    selector: Selector,
}

#[derive(Debug, Clone, PartialEq)]
enum Selector {
    Name(String),
    Index(i64),
    Wildcard,
    Names(Vec<String>),
    Indices(Vec<i64>),
    Slice {
        start: Option<i64>,
        end: Option<i64>,
        step: i64,
    },
    Filter(Filter),
}

#[derive(Debug, Clone, PartialEq)]
enum Filter {
    Or(Box<Filter>, Box<Filter>),
    And(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
    Exists(Operand),
    Compare(Operand, CmpOp, Operand),
}

#[derive(Debug, Clone, PartialEq)]
enum Operand {
    /// `@…`: relative to the node being filtered.
    Current(Vec<Segment>),
    /// `$…`: relative to the document root.
    Root(Vec<Segment>),
    Literal(Value),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl fmt::Debug for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Path({})", self.text)
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Path {
    /// Parses any ASL JSONPath (`$…` or `$$…`).
    pub fn parse(text: &str) -> Result<Path, PathError> {
        let err = |message: &str| PathError {
            path: text.to_string(),
            message: message.to_string(),
        };
        let (root, rest) = if let Some(rest) = text.strip_prefix("$$") {
            (Root::Context, rest)
        } else if let Some(rest) = text.strip_prefix('$') {
            (Root::Input, rest)
        } else {
            return Err(err("a path must start with '$' or '$$'"));
        };
        if rest
            .chars()
            .next()
            .is_some_and(|c| c.is_alphanumeric() || c == '_')
        {
            return Err(err(
                "variables ('$name') are not supported; paths start with '$.', '$[' or '$$'",
            ));
        }
        let mut cursor = Cursor::new(rest);
        let segments = cursor.segments().map_err(|m| err(&m))?;
        cursor.skip_ws();
        if !cursor.at_end() {
            return Err(err(&format!(
                "unexpected '{}' at offset {}",
                cursor.rest(),
                text.len() - cursor.rest().len()
            )));
        }
        Ok(Path {
            text: text.to_string(),
            root,
            segments,
        })
    }

    /// Parses a reference path: a single node, no wildcards, slices, unions,
    /// filters, descendant scans or negative indices.
    pub fn parse_reference(text: &str) -> Result<Path, PathError> {
        let path = Path::parse(text)?;
        if !path.is_reference() {
            return Err(PathError {
                path: text.to_string(),
                message: "a reference path may only name a single node \
                          (no '*', '..', ':', ',', '?(…)' or negative index)"
                    .to_string(),
            });
        }
        Ok(path)
    }

    /// The root path `$`.
    pub fn root() -> Path {
        Path {
            text: "$".into(),
            root: Root::Input,
            segments: Vec::new(),
        }
    }

    /// The text the path was parsed from.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether this is a `$$` (context object) path.
    pub fn root_kind(&self) -> Root {
        self.root
    }

    /// Whether the path is exactly `$` (or `$$`).
    pub fn is_root(&self) -> bool {
        self.segments.is_empty()
    }

    /// Whether the path can only ever select one node.
    pub fn is_definite(&self) -> bool {
        self.segments
            .iter()
            .all(|s| !s.recursive && matches!(s.selector, Selector::Name(_) | Selector::Index(_)))
    }

    /// Whether the path is a valid reference path.
    pub fn is_reference(&self) -> bool {
        self.segments.iter().all(|s| {
            !s.recursive
                && match s.selector {
                    Selector::Name(_) => true,
                    Selector::Index(i) => i >= 0,
                    _ => false,
                }
        })
    }

    /// The leading plain field names (`$$.Map.Item.Value.sku` → `Map`,
    /// `Item`, `Value`, `sku`), up to the first other segment. Lets the
    /// interpreter build only the part of the context object a path needs.
    pub fn leading_names(&self) -> impl Iterator<Item = &str> {
        self.segments
            .iter()
            .map_while(|s| match (&s.selector, s.recursive) {
                (Selector::Name(n), false) => Some(n.as_str()),
                _ => None,
            })
    }

    /// Jayway's normalized form, used in error messages: `$['order'][0]`.
    pub fn normalized(&self) -> String {
        let mut out = String::from(if self.root == Root::Context {
            "$$"
        } else {
            "$"
        });
        for s in &self.segments {
            if s.recursive {
                out.push_str("..");
            }
            match &s.selector {
                Selector::Name(n) => out.push_str(&format!("['{n}']")),
                Selector::Index(i) => out.push_str(&format!("[{i}]")),
                Selector::Wildcard => out.push_str("[*]"),
                Selector::Names(ns) => {
                    let quoted: Vec<String> = ns.iter().map(|n| format!("'{n}'")).collect();
                    out.push_str(&format!("[{}]", quoted.join(",")));
                }
                Selector::Indices(is) => {
                    let parts: Vec<String> = is.iter().map(i64::to_string).collect();
                    out.push_str(&format!("[{}]", parts.join(",")));
                }
                Selector::Slice { start, end, step } => {
                    let f = |v: &Option<i64>| v.map(|v| v.to_string()).unwrap_or_default();
                    out.push_str(&format!("[{}:{}:{}]", f(start), f(end), step));
                }
                Selector::Filter(_) => out.push_str("[?]"),
            }
        }
        out
    }

    /// Selects from `doc`. A definite path yields the node itself (`None`
    /// when it does not exist); an indefinite path yields an array of every
    /// match (never `None`).
    pub fn select(&self, doc: &Value) -> Option<Value> {
        let nodes = select_nodes(&self.segments, doc, doc);
        if self.is_definite() {
            nodes.first().map(|v| (*v).clone())
        } else {
            Some(Value::Array(nodes.into_iter().cloned().collect()))
        }
    }

    /// Like [`Path::select`] but borrows; only for definite paths (an
    /// indefinite path returns `None`).
    pub fn select_ref<'a>(&self, doc: &'a Value) -> Option<&'a Value> {
        if !self.is_definite() {
            return None;
        }
        select_nodes(&self.segments, doc, doc).into_iter().next()
    }

    /// Writes `value` at this reference path inside `doc`, creating missing
    /// intermediate objects. `$` replaces the whole document.
    pub fn set(&self, doc: &mut Value, value: Value) -> Result<(), SetError> {
        let fail = |doc: &Value| SetError {
            path: self.text.clone(),
            input: doc.to_string(),
        };
        if !self.is_reference() {
            return Err(fail(doc));
        }
        if self.segments.is_empty() {
            *doc = value;
            return Ok(());
        }
        let snapshot_for_error = doc.clone();
        let mut current = doc;
        let last = self.segments.len() - 1;
        for (i, segment) in self.segments.iter().enumerate() {
            match &segment.selector {
                Selector::Name(name) => {
                    let Value::Object(map) = current else {
                        return Err(fail(&snapshot_for_error));
                    };
                    if i == last {
                        map.insert(name.clone(), value);
                        return Ok(());
                    }
                    let entry = map
                        .entry(name.clone())
                        .or_insert_with(|| Value::Object(Map::new()));
                    current = entry;
                }
                Selector::Index(index) => {
                    let Value::Array(items) = current else {
                        return Err(fail(&snapshot_for_error));
                    };
                    let Some(slot) = usize::try_from(*index).ok().and_then(|i| items.get_mut(i))
                    else {
                        return Err(fail(&snapshot_for_error));
                    };
                    if i == last {
                        *slot = value;
                        return Ok(());
                    }
                    current = slot;
                }
                _ => return Err(fail(&snapshot_for_error)),
            }
        }
        Ok(())
    }
}

fn select_nodes<'a>(segments: &[Segment], doc: &'a Value, root: &'a Value) -> Vec<&'a Value> {
    let mut current = vec![doc];
    for segment in segments {
        let mut next = Vec::new();
        for node in current {
            if segment.recursive {
                let mut all = Vec::new();
                descendants_or_self(node, &mut all);
                for n in all {
                    apply_selector(&segment.selector, n, root, true, &mut next);
                }
            } else {
                apply_selector(&segment.selector, node, root, false, &mut next);
            }
        }
        current = next;
    }
    current
}

fn descendants_or_self<'a>(node: &'a Value, out: &mut Vec<&'a Value>) {
    out.push(node);
    match node {
        Value::Object(map) => map.values().for_each(|v| descendants_or_self(v, out)),
        Value::Array(items) => items.iter().for_each(|v| descendants_or_self(v, out)),
        _ => {}
    }
}

fn index_of(len: usize, index: i64) -> Option<usize> {
    let len = i64::try_from(len).ok()?;
    let i = if index < 0 { len + index } else { index };
    if (0..len).contains(&i) {
        usize::try_from(i).ok()
    } else {
        None
    }
}

fn apply_selector<'a>(
    selector: &Selector,
    node: &'a Value,
    root: &'a Value,
    in_scan: bool,
    out: &mut Vec<&'a Value>,
) {
    match selector {
        Selector::Name(name) => {
            if let Some(v) = node.as_object().and_then(|m| m.get(name)) {
                out.push(v);
            }
        }
        Selector::Names(names) => {
            if let Some(map) = node.as_object() {
                out.extend(names.iter().filter_map(|n| map.get(n)));
            }
        }
        Selector::Index(i) => {
            if let Some(items) = node.as_array()
                && let Some(i) = index_of(items.len(), *i)
            {
                out.push(&items[i]);
            }
        }
        Selector::Indices(is) => {
            if let Some(items) = node.as_array() {
                out.extend(
                    is.iter()
                        .filter_map(|i| index_of(items.len(), *i))
                        .map(|i| &items[i]),
                );
            }
        }
        Selector::Wildcard => match node {
            Value::Object(map) => out.extend(map.values()),
            Value::Array(items) => out.extend(items.iter()),
            _ => {}
        },
        Selector::Slice { start, end, step } => {
            if let Some(items) = node.as_array() {
                let len = items.len() as i64;
                let clamp = |v: i64| if v < 0 { (len + v).max(0) } else { v.min(len) };
                let from = start.map(clamp).unwrap_or(0);
                let to = end.map(clamp).unwrap_or(len);
                let mut i = from;
                while i < to {
                    out.push(&items[i as usize]);
                    i += *step;
                }
            }
        }
        Selector::Filter(filter) => match node {
            Value::Array(items) => out.extend(items.iter().filter(|v| filter.test(v, root))),
            // Jayway filters a map as a single candidate; inside a `..` scan
            // only array elements are candidates, or every match would show
            // up twice (once as an element, once as itself).
            Value::Object(_) if !in_scan && filter.test(node, root) => out.push(node),
            _ => {}
        },
    }
}

impl Filter {
    fn test(&self, current: &Value, root: &Value) -> bool {
        match self {
            Filter::Or(a, b) => a.test(current, root) || b.test(current, root),
            Filter::And(a, b) => a.test(current, root) && b.test(current, root),
            Filter::Not(f) => !f.test(current, root),
            Filter::Exists(op) => match op {
                Operand::Literal(v) => !matches!(v, Value::Null | Value::Bool(false)),
                _ => op.resolve(current, root).is_some(),
            },
            Filter::Compare(a, op, b) => {
                let (Some(a), Some(b)) = (a.resolve(current, root), b.resolve(current, root))
                else {
                    return false;
                };
                compare(&a, *op, &b)
            }
        }
    }
}

impl Operand {
    fn resolve(&self, current: &Value, root: &Value) -> Option<Value> {
        let (segments, base) = match self {
            Operand::Literal(v) => return Some(v.clone()),
            Operand::Current(s) => (s, current),
            Operand::Root(s) => (s, root),
        };
        let definite = segments
            .iter()
            .all(|s| !s.recursive && matches!(s.selector, Selector::Name(_) | Selector::Index(_)));
        let nodes = select_nodes(segments, base, root);
        if definite {
            nodes.first().map(|v| (*v).clone())
        } else {
            Some(Value::Array(nodes.into_iter().cloned().collect()))
        }
    }
}

fn compare(a: &Value, op: CmpOp, b: &Value) -> bool {
    use std::cmp::Ordering;
    let ordering = match (a, b) {
        (Value::Number(x), Value::Number(y)) => x
            .as_f64()
            .zip(y.as_f64())
            .and_then(|(x, y)| x.partial_cmp(&y)),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        _ => {
            if a == b {
                Some(Ordering::Equal)
            } else {
                None
            }
        }
    };
    match op {
        CmpOp::Eq => ordering == Some(Ordering::Equal),
        CmpOp::Ne => ordering != Some(Ordering::Equal),
        CmpOp::Lt => ordering == Some(Ordering::Less),
        CmpOp::Le => matches!(ordering, Some(Ordering::Less | Ordering::Equal)),
        CmpOp::Gt => ordering == Some(Ordering::Greater),
        CmpOp::Ge => matches!(ordering, Some(Ordering::Greater | Ordering::Equal)),
    }
}

/// A character cursor for the path grammar.
struct Cursor<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(text: &'a str) -> Cursor<'a> {
        Cursor { text, pos: 0 }
    }

    fn rest(&self) -> &'a str {
        &self.text[self.pos..]
    }

    fn at_end(&self) -> bool {
        self.pos >= self.text.len()
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn eat(&mut self, s: &str) -> bool {
        if self.rest().starts_with(s) {
            self.pos += s.len();
            true
        } else {
            false
        }
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += self.peek().map_or(0, char::len_utf8);
        }
    }

    /// Segments until something that cannot start a segment.
    fn segments(&mut self) -> Result<Vec<Segment>, String> {
        let mut out = Vec::new();
        loop {
            if self.eat("..") {
                let selector = if self.peek() == Some('[') {
                    self.pos += 1;
                    self.bracket()?
                } else if self.eat("*") {
                    Selector::Wildcard
                } else {
                    Selector::Name(self.name()?)
                };
                out.push(Segment {
                    recursive: true,
                    selector,
                });
            } else if self.eat(".") {
                let selector = if self.eat("*") {
                    Selector::Wildcard
                } else {
                    Selector::Name(self.name()?)
                };
                out.push(Segment {
                    recursive: false,
                    selector,
                });
            } else if self.eat("[") {
                let selector = self.bracket()?;
                out.push(Segment {
                    recursive: false,
                    selector,
                });
            } else {
                return Ok(out);
            }
        }
    }

    /// A dot-notation field name.
    fn name(&mut self) -> Result<String, String> {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if c.is_whitespace() || ".[]()=!<>&|,'\"?@$*".contains(c) {
                break;
            }
            self.pos += c.len_utf8();
        }
        if self.pos == start {
            return Err(format!("expected a field name at '{}'", self.rest()));
        }
        Ok(self.text[start..self.pos].to_string())
    }

    /// The inside of `[…]`, consuming the closing bracket.
    fn bracket(&mut self) -> Result<Selector, String> {
        self.skip_ws();
        let selector = if self.eat("?") {
            self.skip_ws();
            if !self.eat("(") {
                return Err("expected '(' after '?'".into());
            }
            let filter = self.filter_or()?;
            self.skip_ws();
            if !self.eat(")") {
                return Err(format!(
                    "expected ')' to close the filter at '{}'",
                    self.rest()
                ));
            }
            Selector::Filter(filter)
        } else if self.eat("*") {
            Selector::Wildcard
        } else if matches!(self.peek(), Some('\'' | '"')) {
            let mut names = vec![self.quoted()?];
            loop {
                self.skip_ws();
                if !self.eat(",") {
                    break;
                }
                self.skip_ws();
                names.push(self.quoted()?);
            }
            if names.len() == 1 {
                Selector::Name(names.remove(0))
            } else {
                Selector::Names(names)
            }
        } else {
            let first = self.opt_int()?;
            self.skip_ws();
            if self.peek() == Some(':') {
                self.pos += 1;
                self.skip_ws();
                let end = self.opt_int()?;
                self.skip_ws();
                let step = if self.eat(":") {
                    self.skip_ws();
                    self.opt_int()?.unwrap_or(1)
                } else {
                    1
                };
                if step <= 0 {
                    return Err("slice step must be a positive integer".into());
                }
                Selector::Slice {
                    start: first,
                    end,
                    step,
                }
            } else {
                let first = first.ok_or_else(|| {
                    if self.at_end() {
                        "unterminated '['".to_string()
                    } else {
                        format!("unexpected '{}' in brackets", self.rest())
                    }
                })?;
                let mut indices = vec![first];
                loop {
                    self.skip_ws();
                    if !self.eat(",") {
                        break;
                    }
                    self.skip_ws();
                    indices.push(self.opt_int()?.ok_or("expected an index after ','")?);
                }
                if indices.len() == 1 {
                    Selector::Index(first)
                } else {
                    Selector::Indices(indices)
                }
            }
        };
        self.skip_ws();
        if !self.eat("]") {
            return Err(format!("expected ']' at '{}'", self.rest()));
        }
        Ok(selector)
    }

    fn opt_int(&mut self) -> Result<Option<i64>, String> {
        let start = self.pos;
        if self.peek() == Some('-') {
            self.pos += 1;
        }
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
        }
        let digits = &self.text[start..self.pos];
        if digits.is_empty() {
            return Ok(None);
        }
        digits
            .parse()
            .map(Some)
            .map_err(|_| format!("invalid integer '{digits}'"))
    }

    /// A single- or double-quoted string with backslash escapes.
    fn quoted(&mut self) -> Result<String, String> {
        // Only a quote opens a name: any other character (after a `,` in a
        // bracket, say) is refused, not stepped over by one byte, which
        // could land inside a multi-byte character (found by the fuzzer).
        let quote = match self.peek() {
            Some(q @ ('\'' | '"')) => q,
            _ => return Err("expected a quoted name".into()),
        };
        self.pos += 1;
        let mut out = String::new();
        loop {
            let c = self.peek().ok_or("unterminated quoted name")?;
            self.pos += c.len_utf8();
            if c == quote {
                return Ok(out);
            }
            if c == '\\' {
                let e = self.peek().ok_or("unterminated escape")?;
                self.pos += e.len_utf8();
                out.push(e);
            } else {
                out.push(c);
            }
        }
    }

    fn filter_or(&mut self) -> Result<Filter, String> {
        let mut left = self.filter_and()?;
        loop {
            self.skip_ws();
            if !self.eat("||") {
                return Ok(left);
            }
            let right = self.filter_and()?;
            left = Filter::Or(Box::new(left), Box::new(right));
        }
    }

    fn filter_and(&mut self) -> Result<Filter, String> {
        let mut left = self.filter_unary()?;
        loop {
            self.skip_ws();
            if !self.eat("&&") {
                return Ok(left);
            }
            let right = self.filter_unary()?;
            left = Filter::And(Box::new(left), Box::new(right));
        }
    }

    fn filter_unary(&mut self) -> Result<Filter, String> {
        self.skip_ws();
        if self.rest().starts_with('!') && !self.rest().starts_with("!=") {
            self.pos += 1;
            return Ok(Filter::Not(Box::new(self.filter_unary()?)));
        }
        if self.eat("(") {
            let inner = self.filter_or()?;
            self.skip_ws();
            if !self.eat(")") {
                return Err("expected ')' in filter".into());
            }
            return Ok(inner);
        }
        let left = self.operand()?;
        self.skip_ws();
        let op = [
            ("==", CmpOp::Eq),
            ("!=", CmpOp::Ne),
            ("<=", CmpOp::Le),
            (">=", CmpOp::Ge),
            ("<", CmpOp::Lt),
            (">", CmpOp::Gt),
        ]
        .into_iter()
        .find(|(s, _)| self.rest().starts_with(s));
        match op {
            Some((s, op)) => {
                self.pos += s.len();
                self.skip_ws();
                let right = self.operand()?;
                Ok(Filter::Compare(left, op, right))
            }
            None => Ok(Filter::Exists(left)),
        }
    }

    fn operand(&mut self) -> Result<Operand, String> {
        self.skip_ws();
        if self.eat("@") {
            return Ok(Operand::Current(self.segments()?));
        }
        if self.eat("$") {
            return Ok(Operand::Root(self.segments()?));
        }
        if matches!(self.peek(), Some('\'' | '"')) {
            return Ok(Operand::Literal(Value::String(self.quoted()?)));
        }
        for (word, value) in [
            ("true", Value::Bool(true)),
            ("false", Value::Bool(false)),
            ("null", Value::Null),
        ] {
            if self.eat(word) {
                return Ok(Operand::Literal(value));
            }
        }
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_digit() || "+-.eE".contains(c))
        {
            self.pos += 1;
        }
        let number = &self.text[start..self.pos];
        serde_json::from_str::<serde_json::Number>(number)
            .map(|n| Operand::Literal(Value::Number(n)))
            .map_err(|_| format!("expected an operand at '{}'", &self.text[start..]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sel(path: &str, doc: &Value) -> Option<Value> {
        Path::parse(path).unwrap().select(doc)
    }

    fn doc() -> Value {
        json!({
            "a": {"b": {"c": 1}},
            "my field": "spaced",
            "list": [10, 20, 30, 40],
            "books": [
                {"title": "A", "price": 8, "tags": ["x"]},
                {"title": "B", "price": 12},
                {"title": "C", "price": 20, "isbn": "1"}
            ]
        })
    }

    #[test]
    fn a_name_list_with_a_non_quote_is_refused_not_sliced() {
        // Found by the jsonpath fuzz target: a multi-byte character where a
        // quoted name must start panicked slicing the text.
        for p in ["$.d['h',\u{65a}z]", "$['a',é]", "$[\u{1f600}]"] {
            assert!(Path::parse(p).is_err(), "{p}");
        }
    }

    #[test]
    fn definite_forms() {
        let d = doc();
        assert_eq!(sel("$", &d), Some(d.clone()));
        assert_eq!(sel("$.a.b.c", &d), Some(json!(1)));
        assert_eq!(sel("$['a']['b']", &d), Some(json!({"c": 1})));
        assert_eq!(sel("$[\"my field\"]", &d), Some(json!("spaced")));
        assert_eq!(sel("$.list[0]", &d), Some(json!(10)));
        assert_eq!(sel("$.list[-1]", &d), Some(json!(40)));
        assert_eq!(sel("$.books[1].title", &d), Some(json!("B")));
        assert_eq!(sel("$.missing", &d), None);
        assert_eq!(sel("$.list[9]", &d), None);
        assert_eq!(sel("$.a.b.c.d", &d), None);
        assert_eq!(sel("$[0]", &json!(["x"])), Some(json!("x")));
    }

    #[test]
    fn indefinite_forms_yield_arrays() {
        let d = doc();
        assert_eq!(sel("$.list[*]", &d), Some(json!([10, 20, 30, 40])));
        assert_eq!(sel("$.list[1:3]", &d), Some(json!([20, 30])));
        assert_eq!(sel("$.list[:2]", &d), Some(json!([10, 20])));
        assert_eq!(sel("$.list[-2:]", &d), Some(json!([30, 40])));
        assert_eq!(sel("$.list[::2]", &d), Some(json!([10, 30])));
        assert_eq!(sel("$.list[0,2]", &d), Some(json!([10, 30])));
        assert_eq!(
            sel("$['a','my field']", &d),
            Some(json!([{"b": {"c": 1}}, "spaced"]))
        );
        assert_eq!(sel("$.books[*].title", &d), Some(json!(["A", "B", "C"])));
        assert_eq!(sel("$..price", &d), Some(json!([8, 12, 20])));
        assert_eq!(sel("$..c", &d), Some(json!([1])));
        assert_eq!(sel("$.a.*", &d), Some(json!([{"c": 1}])));
        assert_eq!(sel("$.nothing[*]", &d), Some(json!([])));
    }

    #[test]
    fn filters() {
        let d = doc();
        let titles = |p: &str| sel(&format!("$.books[?({p})].title"), &d).unwrap();
        assert_eq!(titles("@.price == 12"), json!(["B"]));
        assert_eq!(titles("@.price != 12"), json!(["A", "C"]));
        assert_eq!(titles("@.price < 12"), json!(["A"]));
        assert_eq!(titles("@.price <= 12"), json!(["A", "B"]));
        assert_eq!(titles("@.price > 12"), json!(["C"]));
        assert_eq!(titles("@.price >= 12"), json!(["B", "C"]));
        assert_eq!(titles("@.isbn"), json!(["C"]));
        assert_eq!(titles("!@.isbn"), json!(["A", "B"]));
        assert_eq!(
            titles("@.title == 'A' || @.title == \"C\""),
            json!(["A", "C"])
        );
        assert_eq!(titles("@.price > 5 && @.tags"), json!(["A"]));
        assert_eq!(titles("(@.price > 100)"), json!([]));
        assert_eq!(titles("@.price > $.list[0]"), json!(["B", "C"]));
        assert_eq!(
            sel("$..books[?(@.price > 10)].title", &d),
            Some(json!(["B", "C"]))
        );
    }

    #[test]
    fn context_paths_and_kinds() {
        let p = Path::parse("$$.Map.Item.Value.sku").unwrap();
        assert_eq!(p.root_kind(), Root::Context);
        assert_eq!(
            p.leading_names().collect::<Vec<_>>(),
            ["Map", "Item", "Value", "sku"]
        );
        assert!(Path::parse("$$").unwrap().is_root());
        assert!(Path::parse("$.a[0].b").unwrap().is_reference());
        assert!(!Path::parse("$.a[*]").unwrap().is_definite());
        assert!(Path::parse_reference("$.a[1:2]").is_err());
        assert!(Path::parse_reference("$..a").is_err());
        assert!(Path::parse_reference("$.a[-1]").is_err());
        assert!(Path::parse_reference("$.a[?(@.x)]").is_err());
        assert_eq!(
            Path::parse("$.order[0]").unwrap().normalized(),
            "$['order'][0]"
        );
    }

    #[test]
    fn syntax_errors() {
        for bad in [
            "",
            "a.b",
            "$.",
            "$[",
            "$.a[",
            "$['a'",
            "$.a]",
            "$[?(@.x == )]",
            "$.a b",
            "$var",
            "$.a[1:2:0]",
            "$[?@.x]",
        ] {
            assert!(Path::parse(bad).is_err(), "{bad:?} should be rejected");
        }
        let e = Path::parse("$var.x").unwrap_err();
        assert!(e.to_string().contains("variables"), "{e}");
    }

    #[test]
    fn set_creates_intermediates_and_fails_on_non_objects() {
        let mut d = json!({});
        Path::parse("$.a.b.c")
            .unwrap()
            .set(&mut d, json!(1))
            .unwrap();
        assert_eq!(d, json!({"a": {"b": {"c": 1}}}));
        Path::parse("$.a.b.c")
            .unwrap()
            .set(&mut d, json!(2))
            .unwrap();
        assert_eq!(d, json!({"a": {"b": {"c": 2}}}));
        let mut d = json!({"l": [1, {"x": 0}]});
        Path::parse("$.l[1].x")
            .unwrap()
            .set(&mut d, json!(5))
            .unwrap();
        assert_eq!(d, json!({"l": [1, {"x": 5}]}));
        assert!(
            Path::parse("$.l[7]")
                .unwrap()
                .set(&mut d, json!(5))
                .is_err()
        );
        let mut s = json!("foo");
        let err = Path::parse("$.x")
            .unwrap()
            .set(&mut s, json!(1))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "unable to apply ReferencePath $.x to input \"foo\""
        );
        let mut d = json!({"a": "str"});
        assert!(Path::parse("$.a.b").unwrap().set(&mut d, json!(1)).is_err());
        let mut d = json!({"a": 1});
        Path::root().set(&mut d, json!([1])).unwrap();
        assert_eq!(d, json!([1]));
    }
}
