//! Request paths resolved before routing, so a route's auth covers every
//! spelling of the paths it takes.
//!
//! Routes are matched segment by segment. Left as they come, `..` would let
//! `/public/../admin/users` match the unauthenticated `GET /public/{proxy+}`
//! while any framework that normalises the path (WHATWG URL parsing, most
//! proxy adapters) then serves the `api_key` route `/admin/users` behind it.
//! API Gateway resolves dot segments at its front end (RFC 3986 §5.2.4) before
//! it routes, and hands the function the resolved path; so does this: `.` and
//! `..` segments, also when percent-encoded (`%2e`, `%2E`, mixed), are
//! resolved, runs of empty segments (`//`) are merged, and the resolved path
//! is both what is matched and what the function sees (`rawPath`, `path`).
//! An encoded slash (`%2F`) or backslash (`%5C`) inside a segment cannot be
//! resolved without changing which resource the path names, and frameworks
//! disagree on whether to decode it, so a path containing one is refused with
//! 400 rather than guessed at.

use std::borrow::Cow;

/// Why a request path is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// `%2F` or `%5C` inside a segment.
    #[error("the path contains an encoded slash or backslash (%2F, %5C)")]
    EncodedSeparator,
}

/// Whether a segment is `.` or `..` once `%2e` is decoded: `Some(1)` for
/// `.`, `Some(2)` for `..`.
fn dots(segment: &str) -> Option<usize> {
    let mut rest = segment.as_bytes();
    let mut n = 0;
    while !rest.is_empty() {
        rest = match rest {
            [b'.', tail @ ..] => tail,
            [b'%', b'2', b'e' | b'E', tail @ ..] => tail,
            _ => return None,
        };
        n += 1;
        if n > 2 {
            return None;
        }
    }
    (n > 0).then_some(n)
}

fn has_encoded_separator(segment: &str) -> bool {
    segment.as_bytes().windows(3).any(|w| {
        w[0] == b'%'
            && matches!(
                (w[1], w[2].to_ascii_uppercase()),
                (b'2', b'F') | (b'5', b'C')
            )
    })
}

/// The path with dot segments resolved and empty segments merged (a trailing
/// `/` is kept); borrowed when there was nothing to resolve.
pub fn normalize(path: &str) -> Result<Cow<'_, str>, PathError> {
    let Some(rest) = path.strip_prefix('/') else {
        // `*` (OPTIONS) or an empty path: nothing routes on it.
        return Ok(Cow::Borrowed(path));
    };
    // Most paths have nothing to resolve: no allocation for them.
    if !path.contains('%') && !path.as_bytes().windows(2).any(|w| w == b"/." || w == b"//") {
        return Ok(Cow::Borrowed(path));
    }
    let mut changed = false;
    let mut out: Vec<&str> = Vec::new();
    let mut trailing = false;
    let segments: Vec<&str> = rest.split('/').collect();
    let last = segments.len() - 1;
    for (i, seg) in segments.iter().enumerate() {
        if has_encoded_separator(seg) {
            return Err(PathError::EncodedSeparator);
        }
        match (seg.is_empty(), dots(seg)) {
            (true, _) => {
                if i == last {
                    trailing = true;
                } else {
                    changed = true;
                }
            }
            (false, Some(n)) => {
                changed = true;
                if n == 2 {
                    out.pop();
                }
                trailing = i == last;
            }
            (false, None) => out.push(seg),
        }
    }
    if !changed {
        return Ok(Cow::Borrowed(path));
    }
    let mut s = String::with_capacity(path.len());
    for seg in &out {
        s.push('/');
        s.push_str(seg);
    }
    if trailing || out.is_empty() {
        s.push('/');
    }
    Ok(Cow::Owned(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(p: &str) -> String {
        normalize(p).unwrap().into_owned()
    }

    #[test]
    fn plain_paths_are_borrowed_unchanged() {
        for p in ["/", "/a", "/a/b/", "/a.b/..c/...", "/users/%20x", "*", ""] {
            assert!(
                matches!(normalize(p), Ok(Cow::Borrowed(x)) if x == p),
                "{p}"
            );
        }
    }

    #[test]
    fn dot_segments_are_resolved_in_every_spelling() {
        assert_eq!(n("/public/../admin/users"), "/admin/users");
        assert_eq!(n("/public/%2e%2e/admin/users"), "/admin/users");
        assert_eq!(n("/public/%2E%2e/admin/users"), "/admin/users");
        assert_eq!(n("/public/.%2E/admin/users"), "/admin/users");
        assert_eq!(n("/public/./admin"), "/public/admin");
        assert_eq!(n("/public/%2e/admin"), "/public/admin");
        assert_eq!(n("/../../admin"), "/admin");
        assert_eq!(n("/a/b/.."), "/a/");
        assert_eq!(n("/a/."), "/a/");
        assert_eq!(n("/.."), "/");
    }

    #[test]
    fn empty_segments_are_merged() {
        assert_eq!(n("//admin/users"), "/admin/users");
        assert_eq!(n("/a//b///c/"), "/a/b/c/");
        assert_eq!(n("//"), "/");
    }

    #[test]
    fn encoded_separators_are_refused() {
        for p in ["/%2Fadmin/users", "/a/x%2fy", "/a/%5C..", "/a/%5cb"] {
            assert_eq!(normalize(p), Err(PathError::EncodedSeparator), "{p}");
        }
    }
}
