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

use std::cell::RefCell;
use std::rc::Rc;

use ahash::AHashMap;
use async_graphql::parser::types::{BaseType, Type};
use async_graphql::{PathSegment, Pos, ServerError};
use bytes::Bytes;

use super::plan::{MetaField, Node, OpField, Shape, Source};
use crate::app::graphql::bridge::header;
use crate::error::json_string;
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

/// Identifies one operation field of one plan (the key of its kept projections).
pub(super) type FieldId = (u64, usize);

thread_local! {
    /// This thread's kept projections ([`Kept`]).
    static KEPT: RefCell<Kept> = RefCell::new(Kept::default());
}

/// Projections kept by (field, body): a cache hit hands out the same body bytes (one
/// refcounted allocation per entry) to every request, so the selected JSON of those bytes is
/// written once and copied after that. An entry holds a clone of the body it was made from,
/// so the allocation cannot be freed and reused while the entry exists: the same pointer and
/// length mean the same bytes. Bounded by bytes (bodies plus projections); emptied when full.
#[derive(Default)]
struct Kept {
    map: AHashMap<(FieldId, usize, usize), Rc<Projected>>,
    bytes: usize,
}

/// The JSON-sourced members of one field's answer, written from one body.
struct Projected {
    _body: Bytes,
    buf: Vec<u8>,
    /// Per node of the selection: its bytes in `buf` (empty for the nodes written per request).
    spans: Vec<(usize, usize)>,
}

/// Writes `field`'s value for a successful REST `response` (status < 300), or `null` with its
/// error(s) in `errors`. `budget` bounds the kept projections (0: none kept).
pub(super) fn operation(
    out: &mut Vec<u8>,
    field: &OpField,
    id: FieldId,
    response: &Response,
    errors: &mut Vec<ServerError>,
    budget: usize,
) {
    let body = &response.body;
    let key = (id, body.as_ptr() as usize, body.len());
    let keep = budget > 0 && body.len() <= budget / 16;
    if keep {
        if let Some(p) = KEPT.with(|k| k.borrow().map.get(&key).cloned()) {
            write_kept(out, field, &p, response);
            return;
        }
    }
    let mut walk = Walk {
        b: body,
        op: field.op.as_str(),
        response,
        fails: Vec::new(),
    };
    let mark = out.len();
    let mut spans = vec![(0, 0); field.select.len()];
    let path = Path::Root(&field.key);
    let written = walk.object(out, 0, &field.select, &path, field.pos, Some(&mut spans));
    match written {
        Err(f) => {
            out.truncate(mark);
            out.extend_from_slice(b"null");
            walk.fails.push(f);
        }
        Ok(_) if keep && walk.fails.is_empty() => {
            let mut buf = Vec::new();
            for span in &mut spans {
                let (start, end) = *span;
                *span = (buf.len(), buf.len() + end - start);
                buf.extend_from_slice(&out[start..end]);
            }
            let cost = body.len() + buf.len() + 128;
            let kept = Rc::new(Projected {
                _body: body.clone(),
                buf,
                spans,
            });
            KEPT.with(|k| {
                let mut k = k.borrow_mut();
                if k.bytes + cost > budget {
                    k.map.clear();
                    k.bytes = 0;
                }
                k.bytes += cost;
                k.map.insert(key, kept);
            });
        }
        Ok(_) => {}
    }
    errors.extend(walk.fails.into_iter().map(Fail::into_error));
}

/// `field`'s answer from a kept projection, with what changes per request written fresh.
fn write_kept(out: &mut Vec<u8>, field: &OpField, kept: &Projected, response: &Response) {
    out.push(b'{');
    for (i, node) in field.select.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        key(out, &node.key);
        match &node.source {
            Source::Json { .. } => {
                let (start, end) = kept.spans[i];
                out.extend_from_slice(&kept.buf[start..end]);
            }
            other => per_request(out, other, field.op.as_str(), response),
        }
    }
    out.push(b'}');
}

/// A member written per request (not from the body).
fn per_request(out: &mut Vec<u8>, source: &Source, op: &str, response: &Response) {
    match source {
        Source::Typename(t) => json_string(out, t),
        Source::Operation => json_string(out, op),
        Source::Meta(nodes) => meta(out, nodes, response),
        Source::MetaField(_) | Source::Json { .. } => out.extend_from_slice(b"null"),
    }
}

/// One projection: the body, what the fields answer from, and the errors met on the way.
struct Walk<'r> {
    b: &'r [u8],
    op: &'static str,
    response: &'r Response,
    fails: Vec<Fail>,
}

impl Walk<'_> {
    /// The selection `select` of the JSON object at `at`; returns where the object ends.
    /// `spans`, when given, receives where each JSON-sourced member was written in `out`.
    fn object(
        &mut self,
        out: &mut Vec<u8>,
        at: usize,
        select: &[Node],
        path: &Path<'_>,
        pos: Pos,
        mut spans: Option<&mut [(usize, usize)]>,
    ) -> Result<usize, Fail> {
        let b = self.b;
        let (members, end) = members(b, at).map_err(|()| Fail {
            path: path.segments(),
            pos,
            detail: "not a JSON object".into(),
        })?;
        out.push(b'{');
        for (i, node) in select.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            key(out, &node.key);
            let Source::Json { rest, ty, shape } = &node.source else {
                per_request(out, &node.source, self.op, self.response);
                continue;
            };
            let start = out.len();
            let here = Path::Key(path, &node.key);
            match members.iter().find(|(k, _)| *k == rest.as_bytes()) {
                Some(&(_, v)) => {
                    self.nullable(out, ty, v, &here, node.pos, |w, out| {
                        w.value(out, v, ty, shape, &here, node.pos)
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
            if let Some(spans) = spans.as_deref_mut() {
                spans[i] = (start, out.len());
            }
        }
        out.push(b'}');
        Ok(end)
    }

    /// Runs `write` (which writes the value at `at` and returns its end); when it fails and
    /// `ty` is nullable, writes `null` instead and keeps the error.
    fn nullable(
        &mut self,
        out: &mut Vec<u8>,
        ty: &Type,
        at: usize,
        path: &Path<'_>,
        pos: Pos,
        write: impl FnOnce(&mut Self, &mut Vec<u8>) -> Result<usize, Fail>,
    ) -> Result<usize, Fail> {
        let mark = out.len();
        match write(self, out) {
            Err(f) if ty.nullable => {
                out.truncate(mark);
                out.extend_from_slice(b"null");
                self.fails.push(f);
                end_of(self.b, ws(self.b, at)).map_err(|()| Fail {
                    path: path.segments(),
                    pos,
                    detail: "malformed JSON".into(),
                })
            }
            other => other,
        }
    }

    /// The value at `at` as type `ty` with `shape` at its bottom; returns where it ends.
    #[allow(clippy::too_many_arguments)]
    fn value(
        &mut self,
        out: &mut Vec<u8>,
        at: usize,
        ty: &Type,
        shape: &Shape,
        path: &Path<'_>,
        pos: Pos,
    ) -> Result<usize, Fail> {
        let b = self.b;
        let fail = |detail: &str| Fail {
            path: path.segments(),
            pos,
            detail: detail.to_string(),
        };
        let at = ws(b, at);
        if b.get(at..at + 4) == Some(b"null") {
            if ty.nullable {
                out.extend_from_slice(b"null");
                return Ok(at + 4);
            }
            return Err(fail("null for a non-null field"));
        }
        if let BaseType::List(inner) = &ty.base {
            if b.get(at) != Some(&b'[') {
                return Err(fail("not a list"));
            }
            out.push(b'[');
            let mut i = ws(b, at + 1);
            if b.get(i) == Some(&b']') {
                out.push(b']');
                return Ok(i + 1);
            }
            let mut index = 0;
            loop {
                if index > 0 {
                    out.push(b',');
                }
                let here = Path::Index(path, index);
                let end = self.nullable(out, inner, i, &here, pos, |w, out| {
                    w.value(out, i, inner, shape, &here, pos)
                })?;
                let next = ws(b, end);
                match b.get(next) {
                    Some(b',') => i = next + 1,
                    Some(b']') => {
                        out.push(b']');
                        return Ok(next + 1);
                    }
                    _ => return Err(fail("malformed JSON")),
                }
                index += 1;
            }
        }
        if let Shape::Object(select) = shape {
            return self.object(out, at, select, path, pos, None);
        }
        let end = end_of(b, at).map_err(|()| fail("malformed JSON"))?;
        let token = &b[at..end];
        match shape {
            Shape::Float if is_number(token) => out.extend_from_slice(token),
            // Every `Int` of the results is a `u32` on the general path.
            Shape::Int if is_u32(token) => out.extend_from_slice(token),
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
            Shape::Float | Shape::Int => return Err(fail("not a number of this type")),
            Shape::String => return Err(fail("not a string")),
            Shape::Boolean => return Err(fail("not a boolean")),
            // Written above; never reached.
            Shape::Object(_) => return Err(fail("not an object")),
        }
        Ok(end)
    }
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

fn is_u32(t: &[u8]) -> bool {
    t.iter().all(u8::is_ascii_digit)
        && std::str::from_utf8(t).is_ok_and(|t| t.parse::<u32>().is_ok())
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

/// The members of the object at `at` (each key's raw bytes and where its value starts), and
/// where the object ends.
#[allow(clippy::type_complexity)]
fn members(b: &[u8], at: usize) -> Result<(Vec<(&[u8], usize)>, usize), ()> {
    let at = ws(b, at);
    if b.get(at) != Some(&b'{') {
        return Err(());
    }
    let mut out = Vec::with_capacity(24);
    let mut i = ws(b, at + 1);
    if b.get(i) == Some(&b'}') {
        return Ok((out, i + 1));
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
            Some(b'}') => return Ok((out, i + 1)),
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
        let (m, end) = members(b, 0).unwrap();
        assert_eq!(b[end - 1], b'}');
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
