//! The route table: `(method, path template)` → target, matched like API Gateway.
//!
//! Handlers written for API Gateway rely on its routing rules, so Nimbus
//! reproduces them rather than inventing its own:
//!
//! * templates are made of literal segments, `{param}` segments and an optional
//!   final greedy `{proxy+}` segment (which swallows one or more segments);
//! * the most specific route wins: at the first position where two candidates
//!   differ, a literal beats a `{param}`, which beats a greedy `{proxy+}`, so an
//!   all-literal path always beats a template that would also match;
//! * the method is part of the match: among routes ending at the same place a
//!   specific method beats `ANY`, and a route whose method does not fit is
//!   skipped so a less specific route (e.g. `ANY /{proxy+}`) can still take the
//!   request;
//! * an optional `$default` route catches whatever nothing else matched.
//!
//! Routes that could never be told apart (same method, same shape, e.g.
//! `/users/{id}` and `/users/{name}`) are refused when declared, naming both,
//! so ambiguity is a deploy-time error, never a coin flip at request time.
//!
//! The table is a segment trie. A lookup walks the request path once, without
//! allocating unless the path carries parameters (one `Vec` for them) or
//! percent-escapes (decoded values). Backtracking is bounded by the template
//! shapes: a node is revisited at most once per alternative (literal, param).

use std::borrow::Cow;
use std::fmt;

use http::Method;
use percent_encoding::percent_decode_str;

use crate::apigw::PayloadFormat;

/// The route key of the catch-all route, as API Gateway spells it.
pub const DEFAULT_ROUTE_KEY: &str = "$default";

/// Most `{param}` segments a template may have. Keeps the capture stack of a
/// lookup on the stack (no allocation on the hot path); real APIs use a handful.
pub const MAX_PARAMS: usize = 16;

/// The method part of a route: one HTTP method or `ANY`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RouteMethod {
    /// Matches every method that has no route of its own at the same path.
    Any,
    /// Matches exactly this method.
    Method(Method),
}

impl RouteMethod {
    /// Parses `ANY` or an HTTP method name (upper case, as in route keys).
    pub fn parse(s: &str) -> Result<Self, RouteError> {
        if s == "ANY" {
            return Ok(Self::Any);
        }
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(RouteError::InvalidMethod(s.to_owned()));
        }
        Method::from_bytes(s.as_bytes())
            .map(Self::Method)
            .map_err(|_| RouteError::InvalidMethod(s.to_owned()))
    }
}

impl fmt::Display for RouteMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("ANY"),
            Self::Method(m) => f.write_str(m.as_str()),
        }
    }
}

/// Why a route could not be declared.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// The method is neither `ANY` nor an upper-case HTTP token.
    #[error("invalid route method `{0}`: expected ANY or an upper-case HTTP method")]
    InvalidMethod(String),
    /// A route key is not `METHOD /path` (or `$default`).
    #[error("invalid route key `{0}`: expected `METHOD /path` or `$default`")]
    InvalidRouteKey(String),
    /// The path template breaks a rule; `reason` says which.
    #[error("invalid path template `{template}`: {reason}")]
    InvalidTemplate {
        /// The template as declared.
        template: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Another route already matches exactly the same requests.
    #[error(
        "route `{new}` conflicts with existing route `{existing}`: both match the same requests"
    )]
    Conflict {
        /// The route key already in the table.
        existing: String,
        /// The route key that was refused.
        new: String,
    },
}

/// One parsed template segment.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment<'t> {
    Literal(&'t str),
    Param(&'t str),
    Greedy(&'t str),
}

fn invalid(template: &str, reason: &'static str) -> RouteError {
    RouteError::InvalidTemplate {
        template: template.to_owned(),
        reason,
    }
}

/// Splits and validates a template. `"/"` has no segments.
fn parse_template(template: &str) -> Result<Vec<Segment<'_>>, RouteError> {
    let Some(rest) = template.strip_prefix('/') else {
        return Err(invalid(template, "must start with `/`"));
    };
    if rest.is_empty() {
        return Ok(Vec::new());
    }
    let mut segments = Vec::new();
    let mut names: Vec<&str> = Vec::new();
    for raw in rest.split('/') {
        if raw.is_empty() {
            return Err(invalid(template, "empty segment (double or trailing `/`)"));
        }
        if matches!(segments.last(), Some(Segment::Greedy(_))) {
            return Err(invalid(
                template,
                "a greedy `{name+}` segment must be the last one",
            ));
        }
        let seg = if raw.contains(['{', '}']) {
            let inner = raw
                .strip_prefix('{')
                .and_then(|s| s.strip_suffix('}'))
                .ok_or_else(|| {
                    invalid(
                        template,
                        "a parameter must fill its whole segment, like `/{id}`",
                    )
                })?;
            if inner.contains(['{', '}']) {
                return Err(invalid(
                    template,
                    "only one parameter per segment (`{a}{b}` is not allowed)",
                ));
            }
            let (name, greedy) = match inner.strip_suffix('+') {
                Some(name) => (name, true),
                None => (inner, false),
            };
            if name.is_empty() {
                return Err(invalid(template, "empty parameter name"));
            }
            if !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
            {
                return Err(invalid(
                    template,
                    "parameter names may only use letters, digits, `_`, `-` and `.`",
                ));
            }
            if names.contains(&name) {
                return Err(invalid(template, "the same parameter name is used twice"));
            }
            names.push(name);
            if greedy {
                Segment::Greedy(name)
            } else {
                Segment::Param(name)
            }
        } else {
            Segment::Literal(raw)
        };
        segments.push(seg);
    }
    if names.len() > MAX_PARAMS {
        return Err(invalid(template, "more than 16 parameters"));
    }
    Ok(segments)
}

/// A declared route, stored at the trie node where its template ends.
#[derive(Debug)]
struct Route<T> {
    /// `GET /users/{id}`: the `routeKey` of payload 2.0.
    key: Box<str>,
    /// `/users/{id}`: the `resource` of payload 1.0.
    template: Box<str>,
    /// Names of the parameters in template order (greedy one last).
    param_names: Box<[Box<str>]>,
    target: T,
}

/// The routes that end at one place, by method.
#[derive(Debug)]
struct Endpoints<T> {
    by_method: Vec<(Method, Route<T>)>,
    any: Option<Route<T>>,
}

impl<T> Default for Endpoints<T> {
    fn default() -> Self {
        Self {
            by_method: Vec::new(),
            any: None,
        }
    }
}

impl<T> Endpoints<T> {
    fn is_empty(&self) -> bool {
        self.by_method.is_empty() && self.any.is_none()
    }

    /// A specific method beats `ANY`.
    fn get(&self, method: &Method) -> Option<&Route<T>> {
        self.by_method
            .iter()
            .find(|(m, _)| m == method)
            .map(|(_, r)| r)
            .or(self.any.as_ref())
    }

    fn insert(&mut self, method: RouteMethod, route: Route<T>) -> Result<(), RouteError> {
        let existing = match &method {
            RouteMethod::Any => self.any.as_ref(),
            RouteMethod::Method(m) => self.by_method.iter().find(|(x, _)| x == m).map(|(_, r)| r),
        };
        if let Some(existing) = existing {
            return Err(RouteError::Conflict {
                existing: existing.key.to_string(),
                new: route.key.to_string(),
            });
        }
        match method {
            RouteMethod::Any => self.any = Some(route),
            RouteMethod::Method(m) => self.by_method.push((m, route)),
        }
        Ok(())
    }
}

#[derive(Debug)]
struct Node<T> {
    /// Literal children, sorted by segment for binary search.
    literals: Vec<(Box<str>, Node<T>)>,
    param: Option<Box<Node<T>>>,
    /// Routes whose template ends with a greedy segment at this position.
    greedy: Endpoints<T>,
    /// Routes whose template ends exactly here.
    here: Endpoints<T>,
}

impl<T> Default for Node<T> {
    fn default() -> Self {
        Self {
            literals: Vec::new(),
            param: None,
            greedy: Endpoints::default(),
            here: Endpoints::default(),
        }
    }
}

impl<T> Node<T> {
    fn literal_child(&self, segment: &str) -> Option<&Node<T>> {
        self.literals
            .binary_search_by(|(k, _)| k.as_ref().cmp(segment))
            .ok()
            .map(|i| &self.literals[i].1)
    }

    fn literal_child_mut(&mut self, segment: &str) -> &mut Node<T> {
        let i = match self
            .literals
            .binary_search_by(|(k, _)| k.as_ref().cmp(segment))
        {
            Ok(i) => i,
            Err(i) => {
                self.literals.insert(i, (segment.into(), Node::default()));
                i
            }
        };
        &mut self.literals[i].1
    }
}

/// Path parameters of a match, in template order, values percent-decoded.
///
/// Borrowed from the table (names) and the request path (values that needed no
/// decoding), so building it costs one small allocation at most.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PathParams<'a, 'p> {
    params: Vec<(&'a str, Cow<'p, str>)>,
}

impl<'a, 'p> PathParams<'a, 'p> {
    /// The value of parameter `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_ref())
    }

    /// `(name, value)` pairs in template order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&'a str, &str)> + '_ {
        self.params.iter().map(|(n, v)| (*n, v.as_ref()))
    }

    /// Number of parameters.
    pub fn len(&self) -> usize {
        self.params.len()
    }

    /// True when the route has no parameters.
    pub fn is_empty(&self) -> bool {
        self.params.is_empty()
    }
}

/// A successful lookup.
#[derive(Debug)]
pub struct RouteMatch<'a, 'p, T> {
    /// The target declared with the route.
    pub target: &'a T,
    /// `GET /users/{id}`, or `$default`: payload 2.0 `routeKey`.
    pub route_key: &'a str,
    /// `/users/{id}`, or `$default`: payload 1.0 `resource`/`resourcePath`.
    pub resource: &'a str,
    /// Parameters captured from the path, percent-decoded.
    pub params: PathParams<'a, 'p>,
}

/// The outcome of [`RouteTable::lookup`].
#[derive(Debug)]
pub enum Lookup<'a, 'p, T> {
    /// A route (or the `$default` route) takes the request.
    Found(RouteMatch<'a, 'p, T>),
    /// Some route matches the path, but none accepts the method (and there is
    /// no `$default` route). API Gateway answers this like [`Lookup::NotFound`];
    /// the distinction is kept so a listener may log it or choose 405.
    MethodNotAllowed,
    /// No route matches the path (and there is no `$default` route).
    NotFound,
}

impl<'a, 'p, T> Lookup<'a, 'p, T> {
    /// The match, if any.
    pub fn found(self) -> Option<RouteMatch<'a, 'p, T>> {
        match self {
            Self::Found(m) => Some(m),
            _ => None,
        }
    }
}

/// What a gateway route invokes: a convenient `T` for [`RouteTable`] (the
/// listener may wrap it with auth, CORS or throttling settings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteTarget {
    /// Function name.
    pub function: String,
    /// Version or alias to invoke; `None` for `$LATEST`.
    pub qualifier: Option<String>,
    /// Event format the function expects.
    pub payload_format: PayloadFormat,
}

/// The status API Gateway answers when no route takes a request: 404.
pub const NOT_FOUND_STATUS: u16 = 404;
/// The body API Gateway (HTTP API) answers when no route takes a request.
pub const NOT_FOUND_BODY: &str = r#"{"message":"Not Found"}"#;

/// Routes of one API, matched as API Gateway does. `T` is whatever the
/// gateway attaches to a route (function, qualifier, auth and CORS settings).
#[derive(Debug)]
pub struct RouteTable<T> {
    root: Node<T>,
    default: Option<Route<T>>,
    len: usize,
}

impl<T> Default for RouteTable<T> {
    fn default() -> Self {
        Self {
            root: Node::default(),
            default: None,
            len: 0,
        }
    }
}

impl<T> RouteTable<T> {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of routes, `$default` included.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no route was declared.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Declares a route from its key: `GET /users/{id}`, `ANY /{proxy+}` or
    /// `$default`.
    pub fn insert_key(&mut self, route_key: &str, target: T) -> Result<(), RouteError> {
        if route_key == DEFAULT_ROUTE_KEY {
            return self.set_default(target);
        }
        let (method, template) = route_key
            .split_once(' ')
            .ok_or_else(|| RouteError::InvalidRouteKey(route_key.to_owned()))?;
        self.insert(RouteMethod::parse(method)?, template, target)
    }

    /// Declares the `$default` catch-all route.
    pub fn set_default(&mut self, target: T) -> Result<(), RouteError> {
        if self.default.is_some() {
            return Err(RouteError::Conflict {
                existing: DEFAULT_ROUTE_KEY.to_owned(),
                new: DEFAULT_ROUTE_KEY.to_owned(),
            });
        }
        self.default = Some(Route {
            key: DEFAULT_ROUTE_KEY.into(),
            template: DEFAULT_ROUTE_KEY.into(),
            param_names: Box::new([]),
            target,
        });
        self.len += 1;
        Ok(())
    }

    /// Declares `method template` → `target`. Refuses invalid templates and
    /// routes that would match exactly the same requests as an existing one.
    pub fn insert(
        &mut self,
        method: RouteMethod,
        template: &str,
        target: T,
    ) -> Result<(), RouteError> {
        let segments = parse_template(template)?;
        let mut param_names = Vec::new();
        let mut node = &mut self.root;
        let mut ends_greedy = false;
        for seg in &segments {
            match seg {
                Segment::Literal(s) => node = node.literal_child_mut(s),
                Segment::Param(name) => {
                    param_names.push(Box::<str>::from(*name));
                    node = node.param.get_or_insert_with(Box::default);
                }
                Segment::Greedy(name) => {
                    param_names.push(Box::<str>::from(*name));
                    ends_greedy = true;
                }
            }
        }
        let route = Route {
            key: format!("{method} {template}").into(),
            template: template.into(),
            param_names: param_names.into(),
            target,
        };
        let endpoints = if ends_greedy {
            &mut node.greedy
        } else {
            &mut node.here
        };
        endpoints.insert(method, route)?;
        self.len += 1;
        Ok(())
    }

    /// Finds the route for `method path`. `path` is the request path without
    /// the query string (e.g. `uri.path()`).
    pub fn lookup<'a, 'p>(&'a self, method: &Method, path: &'p str) -> Lookup<'a, 'p, T> {
        let rest = path.strip_prefix('/').unwrap_or(path);
        let mut search = Search {
            method,
            captures: [""; MAX_PARAMS],
            depth: 0,
            path_matched: false,
        };
        let found = if rest.is_empty() {
            // "/" only matches a route declared as "/".
            search.accept(&self.root.here, None)
        } else {
            search.walk(&self.root, rest)
        };
        match found {
            Some((route, greedy)) => Lookup::Found(RouteMatch {
                target: &route.target,
                route_key: &route.key,
                resource: &route.template,
                params: search.params(route, greedy),
            }),
            None => match &self.default {
                Some(route) => Lookup::Found(RouteMatch {
                    target: &route.target,
                    route_key: &route.key,
                    resource: &route.template,
                    params: PathParams::default(),
                }),
                None if search.path_matched => Lookup::MethodNotAllowed,
                None => Lookup::NotFound,
            },
        }
    }
}

/// The state of one depth-first lookup.
struct Search<'m, 'p> {
    method: &'m Method,
    /// Raw values of `{param}` segments on the current trie path.
    captures: [&'p str; MAX_PARAMS],
    depth: usize,
    /// Some route matched the path but not the method.
    path_matched: bool,
}

impl<'p> Search<'_, 'p> {
    fn accept<'a, T>(
        &mut self,
        endpoints: &'a Endpoints<T>,
        greedy: Option<&'p str>,
    ) -> Option<(&'a Route<T>, Option<&'p str>)> {
        if endpoints.is_empty() {
            return None;
        }
        match endpoints.get(self.method) {
            Some(route) => Some((route, greedy)),
            None => {
                self.path_matched = true;
                None
            }
        }
    }

    /// Matches `rest` (the path after the segments consumed so far, without
    /// its leading `/`) below `node`: literal first, then param, then greedy.
    fn walk<'a, T>(
        &mut self,
        node: &'a Node<T>,
        rest: &'p str,
    ) -> Option<(&'a Route<T>, Option<&'p str>)> {
        let (segment, tail) = match rest.split_once('/') {
            Some((s, t)) => (s, Some(t)),
            None => (rest, None),
        };
        let advance = |search: &mut Self, child: &'a Node<T>| match tail {
            None => search.accept(&child.here, None),
            Some(t) => search.walk(child, t),
        };
        let literal = if segment.contains('%') {
            let decoded = percent_decode_str(segment).decode_utf8_lossy();
            node.literal_child(&decoded)
        } else {
            node.literal_child(segment)
        };
        if let Some(child) = literal
            && let Some(found) = advance(self, child)
        {
            return Some(found);
        }
        if !segment.is_empty()
            && let Some(child) = node.param.as_deref()
            && self.depth < MAX_PARAMS
        {
            self.captures[self.depth] = segment;
            self.depth += 1;
            if let Some(found) = advance(self, child) {
                return Some(found);
            }
            self.depth -= 1;
        }
        // A greedy segment needs at least one non-empty segment to swallow.
        if !rest.is_empty() && rest != "/" {
            return self.accept(&node.greedy, Some(rest));
        }
        None
    }

    fn params<'a, T>(&self, route: &'a Route<T>, greedy: Option<&'p str>) -> PathParams<'a, 'p> {
        if route.param_names.is_empty() {
            return PathParams::default();
        }
        let values = self.captures[..self.depth].iter().copied().chain(greedy);
        let params = route
            .param_names
            .iter()
            .zip(values)
            .map(|(name, raw)| (name.as_ref(), percent_decode_str(raw).decode_utf8_lossy()))
            .collect();
        PathParams { params }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(keys: &[&str]) -> RouteTable<String> {
        let mut t = RouteTable::new();
        for k in keys {
            t.insert_key(k, (*k).to_owned()).unwrap();
        }
        t
    }

    fn hit<'a>(t: &'a RouteTable<String>, method: &str, path: &str) -> Option<&'a str> {
        let m = Method::from_bytes(method.as_bytes()).unwrap();
        t.lookup(&m, path).found().map(|m| m.route_key)
    }

    fn params(t: &RouteTable<String>, method: &str, path: &str) -> Vec<(String, String)> {
        let m = Method::from_bytes(method.as_bytes()).unwrap();
        let found = t.lookup(&m, path).found().expect("route");
        found
            .params
            .iter()
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
            .collect()
    }

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect()
    }

    #[test]
    fn exact_routes_match_only_their_path() {
        let t = table(&["GET /", "GET /users", "GET /users/me"]);
        assert_eq!(hit(&t, "GET", "/"), Some("GET /"));
        assert_eq!(hit(&t, "GET", "/users"), Some("GET /users"));
        assert_eq!(hit(&t, "GET", "/users/me"), Some("GET /users/me"));
        assert_eq!(hit(&t, "GET", "/users/you"), None);
        assert_eq!(hit(&t, "GET", "/Users"), None, "paths are case-sensitive");
        assert_eq!(
            hit(&t, "GET", "/users/"),
            None,
            "trailing slash is a different path"
        );
    }

    #[test]
    fn root_route_is_only_the_root() {
        let t = table(&["GET /users"]);
        assert!(matches!(t.lookup(&Method::GET, "/"), Lookup::NotFound));
    }

    #[test]
    fn param_route_captures_segment() {
        let t = table(&["GET /users/{id}", "GET /users/{id}/posts/{post}"]);
        assert_eq!(hit(&t, "GET", "/users/42"), Some("GET /users/{id}"));
        assert_eq!(params(&t, "GET", "/users/42"), p(&[("id", "42")]));
        assert_eq!(
            params(&t, "GET", "/users/42/posts/7"),
            p(&[("id", "42"), ("post", "7")])
        );
        assert_eq!(hit(&t, "GET", "/users"), None);
        assert_eq!(
            hit(&t, "GET", "/users//posts/7"),
            None,
            "params are never empty"
        );
        let m = t.lookup(&Method::GET, "/users/42").found().unwrap();
        assert_eq!(m.resource, "/users/{id}");
        assert_eq!(m.target, "GET /users/{id}");
        assert_eq!(m.params.get("id"), Some("42"));
        assert_eq!(m.params.len(), 1);
    }

    #[test]
    fn greedy_route_swallows_the_rest() {
        let t = table(&["ANY /files/{proxy+}"]);
        assert_eq!(params(&t, "GET", "/files/a"), p(&[("proxy", "a")]));
        assert_eq!(
            params(&t, "PUT", "/files/a/b/c.txt"),
            p(&[("proxy", "a/b/c.txt")])
        );
        assert_eq!(hit(&t, "GET", "/files"), None, "greedy needs one segment");
        assert_eq!(hit(&t, "GET", "/files/"), None);
    }

    #[test]
    fn root_greedy_matches_everything_but_root() {
        let t = table(&["ANY /{proxy+}"]);
        assert_eq!(hit(&t, "DELETE", "/x"), Some("ANY /{proxy+}"));
        assert_eq!(params(&t, "GET", "/a/b"), p(&[("proxy", "a/b")]));
        assert_eq!(hit(&t, "GET", "/"), None);
    }

    #[test]
    fn params_before_greedy_are_kept_in_order() {
        let t = table(&["GET /t/{tenant}/{path+}"]);
        assert_eq!(
            params(&t, "GET", "/t/acme/x/y"),
            p(&[("tenant", "acme"), ("path", "x/y")])
        );
    }

    #[test]
    fn literal_beats_param_beats_greedy() {
        let t = table(&[
            "GET /pets/dog/1",
            "GET /pets/dog/{id}",
            "GET /pets/{proxy+}",
            "ANY /{proxy+}",
        ]);
        assert_eq!(hit(&t, "GET", "/pets/dog/1"), Some("GET /pets/dog/1"));
        assert_eq!(hit(&t, "GET", "/pets/dog/2"), Some("GET /pets/dog/{id}"));
        assert_eq!(hit(&t, "GET", "/pets/cat/1"), Some("GET /pets/{proxy+}"));
        // The method is part of the match: POST falls through to ANY /{proxy+}.
        assert_eq!(hit(&t, "POST", "/pets/dog/1"), Some("ANY /{proxy+}"));
    }

    #[test]
    fn literal_position_decides_between_templates() {
        let t = table(&["GET /{a}/x", "GET /y/{b}"]);
        // First differing position: literal `y` beats `{a}`.
        assert_eq!(hit(&t, "GET", "/y/x"), Some("GET /y/{b}"));
        assert_eq!(hit(&t, "GET", "/z/x"), Some("GET /{a}/x"));
    }

    #[test]
    fn backtracks_from_literal_to_param() {
        let t = table(&["GET /users/me", "GET /users/{id}/posts"]);
        assert_eq!(
            hit(&t, "GET", "/users/me/posts"),
            Some("GET /users/{id}/posts")
        );
        assert_eq!(params(&t, "GET", "/users/me/posts"), p(&[("id", "me")]));
    }

    #[test]
    fn backtracks_from_param_to_greedy_dropping_captures() {
        let t = table(&["GET /a/{x}/b", "GET /a/{rest+}"]);
        assert_eq!(params(&t, "GET", "/a/1/c"), p(&[("rest", "1/c")]));
        assert_eq!(params(&t, "GET", "/a/1/b"), p(&[("x", "1")]));
    }

    #[test]
    fn specific_method_beats_any() {
        let t = table(&["ANY /items", "GET /items"]);
        assert_eq!(hit(&t, "GET", "/items"), Some("GET /items"));
        assert_eq!(hit(&t, "POST", "/items"), Some("ANY /items"));
        assert_eq!(hit(&t, "OPTIONS", "/items"), Some("ANY /items"));
    }

    #[test]
    fn method_mismatch_is_distinguished_from_no_route() {
        let t = table(&["GET /items", "POST /items/{id}"]);
        assert!(matches!(
            t.lookup(&Method::DELETE, "/items"),
            Lookup::MethodNotAllowed
        ));
        assert!(matches!(
            t.lookup(&Method::GET, "/items/3"),
            Lookup::MethodNotAllowed
        ));
        assert!(matches!(
            t.lookup(&Method::GET, "/nothing"),
            Lookup::NotFound
        ));
    }

    #[test]
    fn default_route_catches_the_rest() {
        let t = table(&["GET /items", "$default"]);
        let m = t.lookup(&Method::DELETE, "/items").found().unwrap();
        assert_eq!(m.route_key, "$default");
        assert_eq!(m.resource, "$default");
        assert!(m.params.is_empty());
        assert_eq!(hit(&t, "GET", "/elsewhere"), Some("$default"));
        assert_eq!(hit(&t, "GET", "/items"), Some("GET /items"));
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn params_are_percent_decoded() {
        let t = table(&["GET /users/{id}", "GET /f/{proxy+}"]);
        assert_eq!(params(&t, "GET", "/users/a%20b"), p(&[("id", "a b")]));
        assert_eq!(params(&t, "GET", "/users/caf%C3%A9"), p(&[("id", "café")]));
        assert_eq!(params(&t, "GET", "/f/x%2Fy/z"), p(&[("proxy", "x/y/z")]));
        // Invalid UTF-8 after decoding is replaced, not refused.
        assert_eq!(params(&t, "GET", "/users/%FF"), p(&[("id", "\u{FFFD}")]));
    }

    #[test]
    fn encoded_literal_segments_match() {
        let t = table(&["GET /caf\u{e9}/menu"]);
        assert_eq!(
            hit(&t, "GET", "/caf%C3%A9/menu"),
            Some("GET /caf\u{e9}/menu")
        );
    }

    #[test]
    fn different_param_names_in_different_shapes_coexist() {
        let t = table(&["GET /users/{id}", "GET /users/{userId}/posts"]);
        assert_eq!(params(&t, "GET", "/users/1"), p(&[("id", "1")]));
        assert_eq!(params(&t, "GET", "/users/1/posts"), p(&[("userId", "1")]));
    }

    #[test]
    fn conflicts_are_refused_naming_both_routes() {
        let mut t = table(&["GET /users/{id}", "ANY /{proxy+}", "$default"]);
        let err = t
            .insert_key("GET /users/{name}", String::new())
            .unwrap_err();
        assert_eq!(
            err,
            RouteError::Conflict {
                existing: "GET /users/{id}".into(),
                new: "GET /users/{name}".into()
            }
        );
        let msg = err.to_string();
        assert!(
            msg.contains("GET /users/{id}") && msg.contains("GET /users/{name}"),
            "{msg}"
        );
        assert!(
            t.insert_key("GET /users/{id}", String::new()).is_err(),
            "duplicate"
        );
        assert!(
            t.insert_key("ANY /{rest+}", String::new()).is_err(),
            "same greedy shape"
        );
        assert!(t.insert_key("$default", String::new()).is_err());
        // Same shape, different method: fine.
        t.insert_key("PUT /users/{name}", String::new()).unwrap();
        t.insert_key("ANY /users/{x}", String::new()).unwrap();
        assert_eq!(t.len(), 5);
    }

    #[test]
    fn invalid_templates_are_refused() {
        let cases = [
            ("users", "must start with `/`"),
            ("/users/{}", "empty parameter name"),
            ("/users/{+}", "empty parameter name"),
            ("/{proxy+}/x", "greedy"),
            ("/{a}{b}", "one parameter per segment"),
            ("/x{a}", "whole segment"),
            ("/{a}x", "whole segment"),
            ("/{a", "whole segment"),
            ("/a//b", "empty segment"),
            ("/a/", "empty segment"),
            ("/{a}/{a}", "twice"),
            ("/{a b}", "letters"),
        ];
        let mut t: RouteTable<()> = RouteTable::new();
        for (template, reason) in cases {
            let err = t.insert(RouteMethod::Any, template, ()).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains(template), "{msg}");
            assert!(msg.contains(reason), "{template}: {msg}");
        }
        let many: String = (0..17).map(|i| format!("/{{p{i}}}")).collect();
        assert!(t.insert(RouteMethod::Any, &many, ()).is_err());
        assert!(t.is_empty());
    }

    #[test]
    fn invalid_route_keys_are_refused() {
        let mut t: RouteTable<()> = RouteTable::new();
        assert!(matches!(
            t.insert_key("/x", ()),
            Err(RouteError::InvalidRouteKey(_))
        ));
        assert!(matches!(
            t.insert_key("get /x", ()),
            Err(RouteError::InvalidMethod(_))
        ));
        assert!(matches!(
            t.insert_key("G(T /x", ()),
            Err(RouteError::InvalidMethod(_))
        ));
        t.insert_key("PATCH /x", ()).unwrap();
        t.insert_key("PURGE /x", ()).unwrap();
    }

    #[test]
    fn route_method_display_round_trips() {
        for s in ["ANY", "GET", "POST", "PURGE"] {
            assert_eq!(RouteMethod::parse(s).unwrap().to_string(), s);
        }
    }

    #[test]
    fn many_siblings_use_sorted_lookup() {
        let mut t = RouteTable::new();
        for i in 0..200 {
            t.insert_key(&format!("GET /r{i}/{{id}}"), i).unwrap();
        }
        for i in (0..200).rev() {
            let path = format!("/r{i}/x");
            let m = t.lookup(&Method::GET, &path).found().unwrap();
            assert_eq!(*m.target, i);
        }
    }
}
