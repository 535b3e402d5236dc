//! Writes an operation field's GraphQL value straight from the REST answer: the selected
//! fields of the cached body bytes (`{"result": ..., "confidence": ..., "model_version": ...}`)
//! in selection order under their response keys, numbers and strings copied as they are,
//! enums upper-cased, `meta` from the `X-Atlas-*` headers. No value tree is built.
//!
//! Every value is checked against its GraphQL type as it is copied. A value that does not
//! fit (a missing non-null field, a string where a number belongs, an unknown enum value) is
//! an error at its own path, and the null goes where the spec puts it: on the field itself
//! when it is nullable, else on the nearest nullable parent (at worst the operation field).
//!
//! Knows nothing of the shard; the bytes are scanned by the small reader below (the body is
//! JSON that Atlas wrote or read back from Redis; anything else is an error, never a panic).

use async_graphql::parser::types::{BaseType, Type};
use async_graphql::{PathSegment, Pos, ServerError};

use super::plan::{MetaField, Node, OpField, Shape, Source};
use crate::error::json_string;
use crate::graphql::bridge::header;
use crate::http::Response;

/// A value that could not be written: where, and why.
pub(super) struct Fail {
    path: Vec<PathSegment>,
    pos: Pos,
    detail: String,
}

impl Fail {
    /// The GraphQL error, as the slow path words a REST answer that does not read as the
    /// typed result.
    pub(super) fn into_error(self) -> ServerError {
        let mut e = ServerError::new(
            format!(
                "the REST answer does not read as the typed result: {}",
                self.detail
            ),
            Some(self.pos),
        );
        e.path = self.path;
        let mut ext = async_graphql::ErrorExtensionValues::default();
        ext.set("code", "internal");
        e.extensions = Some(ext);
        e
    }
}

/// The response path of the value being written (built into a list only for an error).
#[derive(Clone, Copy)]
enum Path<'a> {
    Root(&'a str),
    Key(&'a Path<'a>, &'a str),
    Index(&'a Path<'a>, usize),
}

impl Path<'_> {
    fn segments(&self) -> Vec<PathSegment> {
        let mut out = match self {
            Path::Root(_) => Vec::with_capacity(4),
            Path::Key(parent, _) | Path::Index(parent, _) => parent.segments(),
        };
        out.push(match self {
            Path::Root(k) | Path::Key(_, k) => PathSegment::Field(k.to_string()),
            Path::Index(_, i) => PathSegment::Index(*i),
        });
        out
    }
}

/// What the fields of one operation answer read from.
struct Answer<'r> {
    op: &'static str,
    response: &'r Response,
}

/// Writes `field`'s value for a successful REST `response` (status < 300), or `null` with its
/// error(s) in `errors`.
pub(super) fn operation(
    out: &mut Vec<u8>,
    field: &OpField,
    response: &Response,
    errors: &mut Vec<ServerError>,
) {
    let answer = Answer {
        op: field.op.as_str(),
        response,
    };
    let mark = out.len();
    let mut fails = Vec::new();
    let path = Path::Root(&field.key);
    let written = object(
        out,
        &response.body,
        0,
        &field.select,
        &answer,
        &path,
        field.pos,
        &mut fails,
    );
    if let Err(f) = written {
        out.truncate(mark);
        out.extend_from_slice(b"null");
        fails.push(f);
    }
    errors.extend(fails.into_iter().map(Fail::into_error));
}

/// The selection `select` of the JSON object at `at`.
#[allow(clippy::too_many_arguments)]
fn object(
    out: &mut Vec<u8>,
    b: &[u8],
    at: usize,
    select: &[Node],
    answer: &Answer<'_>,
    path: &Path<'_>,
    pos: Pos,
    fails: &mut Vec<Fail>,
) -> Result<(), Fail> {
    let fail = |detail: String| Fail {
        path: path.segments(),
        pos,
        detail,
    };
    let members = members(b, at).map_err(|()| fail("not a JSON object".into()))?;
    out.push(b'{');
    for (i, node) in select.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        key(out, &node.key);
        match &node.source {
            Source::Typename(t) => json_string(out, t),
            Source::Operation => json_string(out, answer.op),
            Source::Meta(nodes) => meta(out, nodes, answer.response),
            Source::MetaField(_) => out.extend_from_slice(b"null"),
            Source::Json { rest, ty, shape } => {
                let here = Path::Key(path, &node.key);
                let found = members.iter().find(|(k, _)| *k == rest.as_bytes());
                match found {
                    Some((_, v)) => {
                        nullable(out, ty, fails, |out, fails| {
                            value(out, b, *v, ty, shape, answer, &here, node.pos, fails)
                        })?;
                    }
                    None if ty.nullable => out.extend_from_slice(b"null"),
                    None => {
                        return Err(Fail {
                            path: here.segments(),
                            pos: node.pos,
                            detail: format!("missing field `{rest}`"),
                        })
                    }
                }
            }
        }
    }
    out.push(b'}');
    Ok(())
}

/// Runs `write`; when it fails and `ty` is nullable, writes `null` instead and keeps the error.
fn nullable(
    out: &mut Vec<u8>,
    ty: &Type,
    fails: &mut Vec<Fail>,
    write: impl FnOnce(&mut Vec<u8>, &mut Vec<Fail>) -> Result<(), Fail>,
) -> Result<(), Fail> {
    let mark = out.len();
    match write(out, fails) {
        Err(f) if ty.nullable => {
            out.truncate(mark);
            out.extend_from_slice(b"null");
            fails.push(f);
            Ok(())
        }
        other => other,
    }
}

/// The value at `at` as type `ty` with `shape` at its bottom.
#[allow(clippy::too_many_arguments)]
fn value(
    out: &mut Vec<u8>,
    b: &[u8],
    at: usize,
    ty: &Type,
    shape: &Shape,
    answer: &Answer<'_>,
    path: &Path<'_>,
    pos: Pos,
    fails: &mut Vec<Fail>,
) -> Result<(), Fail> {
    let fail = |detail: &str| Fail {
        path: path.segments(),
        pos,
        detail: detail.to_string(),
    };
    let at = ws(b, at);
    let end = end_of(b, at).map_err(|()| fail("malformed JSON"))?;
    let token = &b[at..end];
    if token == b"null" {
        if ty.nullable {
            out.extend_from_slice(b"null");
            return Ok(());
        }
        return Err(fail("null for a non-null field"));
    }
    if let BaseType::List(inner) = &ty.base {
        if token.first() != Some(&b'[') {
            return Err(fail("not a list"));
        }
        out.push(b'[');
        let mut i = ws(b, at + 1);
        let mut index = 0;
        if b.get(i) == Some(&b']') {
            out.push(b']');
            return Ok(());
        }
        loop {
            if index > 0 {
                out.push(b',');
            }
            let here = Path::Index(path, index);
            nullable(out, inner, fails, |out, fails| {
                value(out, b, i, inner, shape, answer, &here, pos, fails)
            })?;
            let next = ws(b, end_of(b, ws(b, i)).map_err(|()| fail("malformed JSON"))?);
            match b.get(next) {
                Some(b',') => i = next + 1,
                Some(b']') => break,
                _ => return Err(fail("malformed JSON")),
            }
            index += 1;
        }
        out.push(b']');
        return Ok(());
    }
    match shape {
        Shape::Float if is_number(token) => out.extend_from_slice(token),
        Shape::Int
            if is_number(token) && !token.iter().any(|c| matches!(c, b'.' | b'e' | b'E')) =>
        {
            out.extend_from_slice(token)
        }
        Shape::String if token.first() == Some(&b'"') => out.extend_from_slice(token),
        Shape::Boolean if token == b"true" || token == b"false" => out.extend_from_slice(token),
        Shape::Json => out.extend_from_slice(token),
        Shape::Enum(values) => {
            let name = token
                .strip_prefix(b"\"")
                .and_then(|t| t.strip_suffix(b"\""))
                .filter(|t| {
                    t.iter()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_')
                })
                .ok_or_else(|| fail("not an enum value"))?;
            let upper = values
                .iter()
                .find(|v| v.as_bytes().eq_ignore_ascii_case(name))
                .ok_or_else(|| {
                    fail(&format!(
                        "unknown value `{}`",
                        String::from_utf8_lossy(&name[..name.len().min(64)])
                    ))
                })?;
            json_string(out, upper);
        }
        Shape::Object(select) => object(out, b, at, select, answer, path, pos, fails)?,
        Shape::Float | Shape::Int => return Err(fail("not a number of this type")),
        Shape::String => return Err(fail("not a string")),
        Shape::Boolean => return Err(fail("not a boolean")),
    }
    Ok(())
}

/// `meta`: the REST response's `X-Atlas-*` headers, typed as the slow path types them.
fn meta(out: &mut Vec<u8>, nodes: &[Node], response: &Response) {
    let h = |name| header(response, name);
    let int = |name| h(name).and_then(|v| v.parse::<i64>().ok());
    out.push(b'{');
    for (i, node) in nodes.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        key(out, &node.key);
        match &node.source {
            Source::Typename(t) => json_string(out, t),
            Source::MetaField(MetaField::Cache) => {
                json_string(out, h("X-Atlas-Cache").unwrap_or(""))
            }
            Source::MetaField(MetaField::Endpoint) => {
                json_string(out, h("X-Atlas-Endpoint").unwrap_or(""))
            }
            Source::MetaField(MetaField::Shard) => number(out, int("X-Atlas-Owner").unwrap_or(-1)),
            Source::MetaField(MetaField::BatchSize) => {
                number(out, int("X-Atlas-Batch-Size").unwrap_or(0))
            }
            Source::MetaField(MetaField::TotalMs) => {
                let ms: f64 = h("X-Atlas-Total-Ms")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0.0);
                let _ = serde_json::to_writer(&mut *out, &ms);
            }
            Source::MetaField(MetaField::ContextVersion) => match int("X-Atlas-Context-Version") {
                Some(v) => number(out, v),
                None => out.extend_from_slice(b"null"),
            },
            _ => out.extend_from_slice(b"null"),
        }
    }
    out.push(b'}');
}

fn number(out: &mut Vec<u8>, n: i64) {
    out.extend_from_slice(n.to_string().as_bytes());
}

/// `"key":` (a GraphQL name needs no escaping).
fn key(out: &mut Vec<u8>, k: &str) {
    out.push(b'"');
    out.extend_from_slice(k.as_bytes());
    out.extend_from_slice(b"\":");
}

fn is_number(t: &[u8]) -> bool {
    matches!(t.first(), Some(b'-' | b'0'..=b'9'))
        && t.iter()
            .all(|c| matches!(c, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
}

/// The index of the first non-whitespace byte at or after `i`.
fn ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\n' | b'\r' | b'\t')) {
        i += 1;
    }
    i
}

/// The end (exclusive) of the JSON value starting at `i`.
fn end_of(b: &[u8], i: usize) -> Result<usize, ()> {
    match b.get(i).ok_or(())? {
        b'"' => string_end(b, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            loop {
                match b.get(j).ok_or(())? {
                    b'"' => {
                        j = string_end(b, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Ok(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
        }
        b',' | b'}' | b']' | b':' => Err(()),
        _ => {
            let mut j = i;
            while let Some(c) = b.get(j) {
                if matches!(c, b',' | b'}' | b']' | b' ' | b'\n' | b'\r' | b'\t') {
                    break;
                }
                j += 1;
            }
            Ok(j)
        }
    }
}

/// The end (exclusive) of the string whose opening quote is at `i`.
fn string_end(b: &[u8], i: usize) -> Result<usize, ()> {
    let mut j = i + 1;
    loop {
        match memchr::memchr2(b'"', b'\\', b.get(j..).ok_or(())?) {
            Some(k) if b[j + k] == b'"' => return Ok(j + k + 1),
            Some(k) => j += k + 2,
            None => return Err(()),
        }
    }
}

/// The members of the object at `at`: each key's raw bytes and where its value starts.
fn members(b: &[u8], at: usize) -> Result<Vec<(&[u8], usize)>, ()> {
    let at = ws(b, at);
    if b.get(at) != Some(&b'{') {
        return Err(());
    }
    let mut out = Vec::with_capacity(24);
    let mut i = ws(b, at + 1);
    if b.get(i) == Some(&b'}') {
        return Ok(out);
    }
    loop {
        if b.get(i) != Some(&b'"') {
            return Err(());
        }
        let key_end = string_end(b, i)?;
        let k = &b[i + 1..key_end - 1];
        i = ws(b, key_end);
        if b.get(i) != Some(&b':') {
            return Err(());
        }
        let v = ws(b, i + 1);
        out.push((k, v));
        i = ws(b, end_of(b, v)?);
        match b.get(i) {
            Some(b',') => i = ws(b, i + 1),
            Some(b'}') => return Ok(out),
            _ => return Err(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reader_finds_members_and_skips_nested_values() {
        let b = br#" { "a" : [1, {"x": "]}\"" }], "b":"s\\", "c": -1.5e3 , "d": {} } "#;
        let m = members(b, 0).unwrap();
        let keys: Vec<&[u8]> = m.iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, [&b"a"[..], b"b", b"c", b"d"]);
        let (_, c) = m[2];
        assert_eq!(&b[c..end_of(b, c).unwrap()], b"-1.5e3");
        assert!(members(b"[1]", 0).is_err());
        assert!(members(br#"{"a": "#, 0).is_err());
        assert!(members(br#"{"a" 1}"#, 0).is_err());
        // Truncated or unbalanced input is an error, never a panic.
        for n in 0..b.len() {
            let _ = members(&b[..n], 0);
        }
        assert!(end_of(b"]", 0).is_err());
    }
}
