//! Route templates and path matching (the gateway's route table).
//!
//! Input: lines; `>METHOD /path` is a lookup, anything else a route key
//! (`GET /users/{id}`, `ANY /{proxy+}`, `$default`). Asserts that lookups never
//! panic, that a match's parameters are the route's own, and that every
//! declared route is found for a path built from its own template.

use http::Method;
use nimbus_gateway::routes::{Lookup, RouteTable};

pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut table = RouteTable::new();
    let mut declared = Vec::new();
    let mut lookups = Vec::new();
    for line in text.lines() {
        if let Some(request) = line.strip_prefix('>') {
            lookups.push(request);
        } else if table.insert_key(line, line.to_owned()).is_ok() && line != "$default" {
            declared.push(line);
        }
    }
    for request in lookups {
        let (method, path) = request.split_once(' ').unwrap_or(("GET", request));
        let Ok(method) = Method::from_bytes(method.as_bytes()) else {
            continue;
        };
        if let Lookup::Found(m) = table.lookup(&method, path) {
            assert_eq!(m.target, m.route_key, "a match carries its own route");
            for (name, _) in m.params.iter() {
                assert!(
                    m.resource.contains(&format!("{{{name}}}"))
                        || m.resource.contains(&format!("{{{name}+}}")),
                    "parameter {name} is not in {}",
                    m.resource
                );
            }
        }
    }
    for key in declared {
        let (method, template) = key.split_once(' ').expect("a declared key has a method");
        let method = match method {
            "ANY" => Method::GET,
            m => Method::from_bytes(m.as_bytes()).expect("a declared method"),
        };
        // Literal segments are matched after percent-decoding the request's,
        // so a literal with `%` in it stands for another request path.
        if template.contains('%') {
            continue;
        }
        let path = instance(template);
        assert!(
            matches!(table.lookup(&method, &path), Lookup::Found(_)),
            "route `{key}` is not found for {method} {path}"
        );
    }
}

/// A request path the template matches: each `{p}` as `v`, `{p+}` as `v/w`.
fn instance(template: &str) -> String {
    template
        .split('/')
        .map(|segment| {
            if segment.starts_with('{') && segment.ends_with("+}") {
                "v/w"
            } else if segment.starts_with('{') {
                "v"
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}
