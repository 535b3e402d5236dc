//! The HTTP side of `/graphql`: a POST body's or a GET query string's GraphQL request
//! (GraphQL over HTTP), and the percent-encoding of path segments for the REST routes that
//! fields reach. No GraphQL execution here.

use crate::http::Request;

/// The GraphQL request of a POST body (`{"query", "variables", "operationName"}`) or a GET
/// query string.
pub(super) fn read_request(
    request: &Request,
    is_get: bool,
) -> Result<async_graphql::Request, String> {
    if is_get {
        let (gql_query, variables, operation) = query_params(request)?;
        let query = gql_query
            .filter(|q| !q.is_empty())
            .ok_or("missing or empty `query` parameter")?;
        let mut gql = async_graphql::Request::new(query);
        if let Some(v) = variables.filter(|v| !v.is_empty()) {
            let variables: async_graphql::Variables = serde_json::from_str(&v)
                .map_err(|e| format!("`variables` is not a JSON object: {e}"))?;
            gql = gql.variables(variables);
        }
        if let Some(op) = operation.filter(|o| !o.is_empty()) {
            gql = gql.operation_name(op);
        }
        Ok(gql)
    } else {
        // The media types REST reads as JSON (`application/json`, `*/*+json`, and what
        // `curl -d` sends); anything else is not a GraphQL-over-HTTP request.
        if let Some(ct) = request.header("content-type") {
            let ct = String::from_utf8_lossy(ct);
            if !crate::ai::request::json_compatible(&ct) {
                return Err(format!(
                    "the body must be application/json, not `{}`",
                    crate::error::truncate(&ct, 64)
                ));
            }
        }
        if !crate::ai::request::starts_object(&request.body) {
            return Err(
                "the body is not a GraphQL request (a JSON object with a `query` string)".into(),
            );
        }
        // Read straight into async-graphql's request (its variables into its own values).
        let gql: async_graphql::Request = serde_json::from_slice(&request.body).map_err(|e| {
            format!("the body is not a GraphQL request (JSON with a `query` string): {e}")
        })?;
        if gql.query.is_empty() {
            return Err("the body has no `query` string".into());
        }
        Ok(gql)
    }
}

/// `query`, `variables` and `operationName` of a GET request's query string, decoded.
#[allow(clippy::type_complexity)]
pub(super) fn query_params(
    request: &Request,
) -> Result<(Option<String>, Option<String>, Option<String>), String> {
    let query = request.query().unwrap_or_default();
    let mut gql_query = None;
    let mut variables = None;
    let mut operation = None;
    for pair in query.split(|b| *b == b'&') {
        let (name, value) = match pair.iter().position(|b| *b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &[][..]),
        };
        let value = form_decode(value).ok_or("the query string is not valid UTF-8")?;
        match name {
            b"query" => gql_query = Some(value),
            b"variables" => variables = Some(value),
            b"operationName" => operation = Some(value),
            _ => {}
        }
    }
    Ok((gql_query, variables, operation))
}

/// `application/x-www-form-urlencoded` decoding of one value (`+` is a space).
fn form_decode(raw: &[u8]) -> Option<String> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < raw.len() => {
                let hex = std::str::from_utf8(&raw[i + 1..i + 3]).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// Percent-encodes a user id for a `/ai/context/{user_id}` path.
pub(crate) fn path_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_values_decode() {
        assert_eq!(form_decode(b"a+b%7Bc%7D").as_deref(), Some("a b{c}"));
        assert_eq!(form_decode(b"%zz"), None);
        assert_eq!(path_encode("a/b c"), "a%2Fb%20c");
    }
}
