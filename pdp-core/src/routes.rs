//! `routes.json`: how an HTTP request (method + path) maps to a Cedar
//! action and resource, for forward-auth in front of an application (nginx
//! `auth_request`, Traefik `forwardAuth`, Envoy `ext_authz`, a Cloudflare
//! worker).
//!
//! ```json
//! {"routes": [
//!   {"method": "GET", "path": "/documents/{id}", "action": "readDocument",
//!    "resource": {"type": "Document", "id": "{id}"}},
//!   {"method": "*", "path": "/static/{*rest}", "action": "readStatic",
//!    "resource": {"type": "Site", "id": "main"}}
//! ]}
//! ```
//!
//! A pattern segment is a literal, `{name}` (one segment), or `{*name}` (the
//! rest of the path, last only). The first route that matches wins. The
//! resource id (and an action given as a string) may use the captures.
//!
//! Matching fails closed: a path with `.` or `..` segments, empty segments,
//! a percent-encoded `/`, `\` or NUL, or bad percent-encoding matches
//! nothing, so an upstream that normalises paths differently can never be
//! reached through a route that the check did not see.

use crate::decision::EntityRef;
use serde::Deserialize;

/// Why a route table was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// Not the JSON of a route table.
    #[error("routes.json: {0}")]
    Malformed(String),
    /// One route is invalid.
    #[error("routes.json route {index} ({path:?}): {message}")]
    Route {
        /// 0-based position in `routes`.
        index: usize,
        /// Its path pattern.
        path: String,
        /// What is wrong.
        message: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    routes: Vec<RouteJson>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteJson {
    #[serde(default)]
    method: Methods,
    path: String,
    action: ActionJson,
    resource: ResourceJson,
}

#[derive(Deserialize, Default)]
#[serde(untagged)]
enum Methods {
    #[default]
    Any,
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ActionJson {
    Id(String),
    Ref {
        #[serde(rename = "type")]
        ty: String,
        id: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResourceJson {
    #[serde(rename = "type")]
    ty: String,
    id: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Capture(String),
    Rest(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Capture(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Template(Vec<Piece>);

impl Template {
    fn parse(s: &str, captures: &[&str]) -> Result<Template, String> {
        let mut pieces = Vec::new();
        let mut rest = s;
        while let Some(open) = rest.find('{') {
            let (text, after) = rest.split_at(open);
            if !text.is_empty() {
                pieces.push(Piece::Text(text.to_owned()));
            }
            let close = after
                .find('}')
                .ok_or_else(|| format!("unclosed {{ in {s:?}"))?;
            let name = after.get(1..close).unwrap_or("");
            if !captures.contains(&name) {
                return Err(format!(
                    "{s:?} uses {{{name}}}, which the path does not capture"
                ));
            }
            pieces.push(Piece::Capture(name.to_owned()));
            rest = after.get(close + 1..).unwrap_or("");
        }
        if rest.contains('}') {
            return Err(format!("unmatched }} in {s:?}"));
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_owned()));
        }
        Ok(Template(pieces))
    }

    fn render(&self, captured: &[(String, String)]) -> String {
        let mut out = String::new();
        for p in &self.0 {
            match p {
                Piece::Text(t) => out.push_str(t),
                Piece::Capture(name) => {
                    if let Some((_, v)) = captured.iter().find(|(n, _)| n == name) {
                        out.push_str(v);
                    }
                }
            }
        }
        out
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Route {
    /// Upper-case methods; empty: any.
    methods: Vec<String>,
    pattern: String,
    segments: Vec<Segment>,
    action_type: String,
    action_id: Template,
    resource_type: String,
    resource_id: Template,
}

/// A parsed, checked route table.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RouteTable {
    routes: Vec<Route>,
}

/// What a request maps to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matched {
    /// The Cedar action.
    pub action: EntityRef,
    /// The Cedar resource.
    pub resource: EntityRef,
    /// The matching route's path pattern (for logs and headers).
    pub pattern: String,
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

impl RouteTable {
    /// Parse and check `routes.json`.
    pub fn parse(bytes: &[u8]) -> Result<RouteTable, RouteError> {
        let file: File =
            serde_json::from_slice(bytes).map_err(|e| RouteError::Malformed(e.to_string()))?;
        let mut routes = Vec::with_capacity(file.routes.len());
        for (index, r) in file.routes.into_iter().enumerate() {
            let bad = |message: String| RouteError::Route {
                index,
                path: r.path.clone(),
                message,
            };
            let methods: Vec<String> = match &r.method {
                Methods::Any => Vec::new(),
                Methods::One(m) if m == "*" => Vec::new(),
                Methods::One(m) => vec![m.clone()],
                Methods::Many(ms) => ms.clone(),
            };
            if let Some(m) = methods
                .iter()
                .find(|m| !is_token(m) || m.bytes().any(|b| b.is_ascii_lowercase()))
            {
                return Err(bad(format!(
                    "method {m:?} is not an upper-case HTTP method"
                )));
            }
            let segments = parse_pattern(&r.path).map_err(bad)?;
            let names: Vec<&str> = segments
                .iter()
                .filter_map(|s| match s {
                    Segment::Capture(n) | Segment::Rest(n) => Some(n.as_str()),
                    Segment::Literal(_) => None,
                })
                .collect();
            let (action_type, action_id) = match &r.action {
                ActionJson::Id(id) => ("Action".to_owned(), id.as_str()),
                ActionJson::Ref { ty, id } => (ty.clone(), id.as_str()),
            };
            if action_id.is_empty() || action_type.is_empty() {
                return Err(bad("empty action".into()));
            }
            if r.resource.ty.is_empty() || r.resource.ty.contains(['{', '}']) {
                return Err(bad(format!(
                    "resource type {:?} must be a plain entity type",
                    r.resource.ty
                )));
            }
            routes.push(Route {
                methods,
                pattern: r.path.clone(),
                action_id: Template::parse(action_id, &names).map_err(bad)?,
                action_type,
                resource_type: r.resource.ty.clone(),
                resource_id: Template::parse(&r.resource.id, &names).map_err(bad)?,
                segments,
            });
        }
        Ok(RouteTable { routes })
    }

    /// Number of routes.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// Whether there are no routes.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// The action and resource for `method` and `uri` (a path with an
    /// optional query string, as in `X-Forwarded-Uri`); `None` when no
    /// route matches or the path is not in normal form.
    pub fn resolve(&self, method: &str, uri: &str) -> Option<Matched> {
        let path = uri.split(['?', '#']).next().unwrap_or("");
        let segments = split_path(path)?;
        self.routes.iter().find_map(|r| {
            if !r.methods.is_empty() && !r.methods.iter().any(|m| m == method) {
                return None;
            }
            let captured = match_segments(&r.segments, &segments)?;
            Some(Matched {
                action: EntityRef::new(r.action_type.clone(), r.action_id.render(&captured)),
                resource: EntityRef::new(r.resource_type.clone(), r.resource_id.render(&captured)),
                pattern: r.pattern.clone(),
            })
        })
    }
}

fn parse_pattern(path: &str) -> Result<Vec<Segment>, String> {
    let body = path
        .strip_prefix('/')
        .ok_or_else(|| "the path must start with /".to_owned())?;
    if body.is_empty() {
        return Ok(Vec::new());
    }
    let parts: Vec<&str> = body.split('/').collect();
    let mut out = Vec::with_capacity(parts.len());
    let mut names: Vec<&str> = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        let seg = if let Some(inner) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
            let (rest, name) = match inner.strip_prefix('*') {
                Some(n) => (true, n),
                None => (false, inner),
            };
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(format!("bad capture {part:?}"));
            }
            if names.contains(&name) {
                return Err(format!("{{{name}}} is captured twice"));
            }
            names.push(name);
            if rest && i + 1 != parts.len() {
                return Err(format!("{part:?} must be the last segment"));
            }
            if rest {
                Segment::Rest(name.to_owned())
            } else {
                Segment::Capture(name.to_owned())
            }
        } else {
            if part.is_empty() || *part == "." || *part == ".." || part.contains(['{', '}']) {
                return Err(format!("bad segment {part:?}"));
            }
            Segment::Literal((*part).to_owned())
        };
        out.push(seg);
    }
    Ok(out)
}

/// Split a request path into decoded segments, or `None` if it is not in
/// normal form (see the module docs).
fn split_path(path: &str) -> Option<Vec<String>> {
    let body = path.strip_prefix('/')?;
    if body.is_empty() {
        return Some(Vec::new());
    }
    body.split('/')
        .map(|raw| {
            let seg = percent_decode(raw)?;
            if seg.is_empty() || seg == "." || seg == ".." || seg.contains(['/', '\\', '\0']) {
                return None;
            }
            Some(seg)
        })
        .collect()
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn match_segments(pattern: &[Segment], path: &[String]) -> Option<Vec<(String, String)>> {
    let mut captured = Vec::new();
    for (i, seg) in pattern.iter().enumerate() {
        match seg {
            Segment::Rest(name) => {
                let rest = path.get(i..)?;
                if rest.is_empty() {
                    return None;
                }
                captured.push((name.clone(), rest.join("/")));
                return Some(captured);
            }
            Segment::Literal(l) => {
                if path.get(i)? != l {
                    return None;
                }
            }
            Segment::Capture(name) => captured.push((name.clone(), path.get(i)?.clone())),
        }
    }
    (path.len() == pattern.len()).then_some(captured)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> RouteTable {
        RouteTable::parse(
            br#"{"routes": [
              {"method": "GET", "path": "/documents/{id}", "action": "readDocument", "resource": {"type": "Document", "id": "{id}"}},
              {"method": ["PUT", "PATCH"], "path": "/documents/{id}", "action": "editDocument", "resource": {"type": "Document", "id": "{id}"}},
              {"path": "/files/{*rest}", "action": {"type": "Ns::Action", "id": "read"}, "resource": {"type": "File", "id": "f:{rest}"}},
              {"method": "GET", "path": "/", "action": "home", "resource": {"type": "Site", "id": "main"}}
            ]}"#,
        )
        .unwrap()
    }

    fn hit(method: &str, uri: &str) -> Option<(String, String, String)> {
        table()
            .resolve(method, uri)
            .map(|m| (m.action.id, m.resource.ty, m.resource.id))
    }

    #[test]
    fn routes_resolve_in_order_with_captures() {
        let t = |a: &str, ty: &str, id: &str| Some((a.to_owned(), ty.to_owned(), id.to_owned()));
        assert_eq!(
            hit("GET", "/documents/d1"),
            t("readDocument", "Document", "d1")
        );
        assert_eq!(
            hit("GET", "/documents/d1?x=1"),
            t("readDocument", "Document", "d1")
        );
        assert_eq!(
            hit("PATCH", "/documents/d1"),
            t("editDocument", "Document", "d1")
        );
        assert_eq!(
            hit("GET", "/documents/a%20b"),
            t("readDocument", "Document", "a b")
        );
        assert_eq!(
            hit("DELETE", "/files/a/b.txt"),
            t("read", "File", "f:a/b.txt")
        );
        assert_eq!(hit("GET", "/"), t("home", "Site", "main"));
        let m = table().resolve("GET", "/files/x").unwrap();
        assert_eq!(m.action.ty, "Ns::Action");
        assert_eq!(m.pattern, "/files/{*rest}");
    }

    #[test]
    fn anything_else_matches_nothing() {
        for (method, uri) in [
            ("DELETE", "/documents/d1"),
            ("get", "/documents/d1"),
            ("GET", "/documents"),
            ("GET", "/documents/"),
            ("GET", "/documents/d1/"),
            ("GET", "/documents//d1"),
            ("GET", "/documents/d1/extra"),
            ("GET", "/documents/../admin"),
            ("GET", "/documents/."),
            ("GET", "/documents/a%2Fb"),
            ("GET", "/documents/a%5cb"),
            ("GET", "/documents/a%00"),
            ("GET", "/documents/%zz"),
            ("GET", "/documents/%ff"),
            ("GET", "/files/"),
            ("GET", "/files/a/../../etc"),
            ("GET", "documents/d1"),
            ("GET", ""),
        ] {
            assert_eq!(hit(method, uri), None, "{method} {uri}");
        }
    }

    #[test]
    fn bad_tables_are_refused_with_the_route() {
        for (json, want) in [
            (
                r#"{"routes": [{"path": "documents", "action": "a", "resource": {"type": "D", "id": "x"}}]}"#,
                "start with /",
            ),
            (
                r#"{"routes": [{"path": "/d/{id}", "action": "a", "resource": {"type": "D", "id": "{nope}"}}]}"#,
                "does not capture",
            ),
            (
                r#"{"routes": [{"path": "/d/{*r}/x", "action": "a", "resource": {"type": "D", "id": "x"}}]}"#,
                "last segment",
            ),
            (
                r#"{"routes": [{"path": "/d/{a}/{a}", "action": "a", "resource": {"type": "D", "id": "x"}}]}"#,
                "twice",
            ),
            (
                r#"{"routes": [{"path": "/d/../x", "action": "a", "resource": {"type": "D", "id": "x"}}]}"#,
                "bad segment",
            ),
            (
                r#"{"routes": [{"method": "get", "path": "/d", "action": "a", "resource": {"type": "D", "id": "x"}}]}"#,
                "upper-case",
            ),
            (
                r#"{"routes": [{"path": "/d", "action": "", "resource": {"type": "D", "id": "x"}}]}"#,
                "empty action",
            ),
            (
                r#"{"routes": [{"path": "/d/{id}", "action": "a", "resource": {"type": "{id}", "id": "x"}}]}"#,
                "plain entity type",
            ),
            (
                r#"{"routes": [{"path": "/d/{id", "action": "a", "resource": {"type": "D", "id": "x"}}]}"#,
                "bad segment",
            ),
        ] {
            let e = RouteTable::parse(json.as_bytes()).unwrap_err().to_string();
            assert!(e.contains(want) && e.contains("route 0"), "{json}: {e}");
        }
        assert!(matches!(
            RouteTable::parse(b"{\"routes\": 3}"),
            Err(RouteError::Malformed(_))
        ));
    }
}
