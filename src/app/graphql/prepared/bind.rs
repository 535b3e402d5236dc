//! A plan's arguments, with this request's variables, written as the REST bodies of its
//! operation fields: `{"user_id", "input", "priority", "cache", "dependencies",
//! "use_context"}` with the typed input's camelCase fields in REST's snake_case and absent or
//! null fields left out, as the slow path's serde structs write them (the bytes may differ,
//! the canonical input and so the cache key do not).
//!
//! Every value is checked against its GraphQL type as it is written, and every variable
//! against its declared type, with async-graphql's rules and ranges (`Int` inputs by their
//! Rust type). Anything the checks do not accept, including what async-graphql would coerce
//! (a single value for a list), returns `None`: the request then runs on async-graphql,
//! which answers it or words its error. No I/O.

use async_graphql::parser::types::{BaseType, Type};
use async_graphql_value::Value;
use serde_json::{Map, Value as Json};

use super::plan::{OpField, Plan};
use super::types::{FieldDef, Types};
use crate::error::json_string;

/// A request's variables (the JSON object it sent).
pub(super) type Variables = Map<String, Json>;

/// The REST body of each operation field of `plan`, in root order; `None` when a value does
/// not fit its type.
pub(super) fn bodies(plan: &Plan, vars: &Variables) -> Option<Vec<Vec<u8>>> {
    let types = Types::get();
    for v in &plan.variables {
        let given = vars.get(&v.name).or(v.default.as_ref());
        match given {
            None | Some(Json::Null) if !v.ty.nullable => return None,
            None | Some(Json::Null) => {}
            // A variable is checked against its declared type even where it is not used
            // (async-graphql validates every one).
            Some(value) => write(&mut Vec::new(), types, value, &v.ty, i32::MAX as u64)?,
        }
    }
    let lookup = |name: &str| {
        vars.get(name).or_else(|| {
            plan.variables
                .iter()
                .find(|v| v.name == name)?
                .default
                .as_ref()
        })
    };
    plan.ops().map(|f| body(types, f, &lookup)).collect()
}

/// One operation field's REST body.
fn body<'v>(
    types: &Types,
    field: &OpField,
    lookup: &impl Fn(&str) -> Option<&'v Json>,
) -> Option<Vec<u8>> {
    let args = &types
        .object("Query")?
        .iter()
        .find(|d| super::plan::operation_of(&d.name) == Some(field.op))?
        .args;
    let given = |name: &str| -> Option<Option<Json>> {
        match field.args.iter().find(|(n, _)| n == name) {
            Some((_, v)) => resolve(v, lookup),
            None => Some(None),
        }
    };
    let input = given("input")?.filter(|v| !v.is_null());
    let input_json = given("inputJson")?.filter(|v| !v.is_null());
    if input.is_some() && input_json.is_some() {
        return None;
    }
    let mut out = Vec::with_capacity(256);
    out.push(b'{');
    for def in args {
        let (rest, value) = match def.name.as_str() {
            "input" => ("input", input.as_ref()),
            "inputJson" => ("input", input_json.as_ref()),
            _ => {
                let v = given(&def.name)?;
                let rest = def.rest.as_str();
                match v {
                    None | Some(Json::Null) if !def.ty.nullable => return None,
                    None | Some(Json::Null) => continue,
                    Some(v) => {
                        member(&mut out, rest);
                        write(&mut out, types, &v, &def.ty, def.int_max)?;
                        continue;
                    }
                }
            }
        };
        if let Some(v) = value {
            member(&mut out, rest);
            write(&mut out, types, v, &def.ty, def.int_max)?;
        }
    }
    out.push(b'}');
    Some(out)
}

/// `,"key":` (without the comma for the first member).
fn member(out: &mut Vec<u8>, key: &str) {
    if out.len() > 1 {
        out.push(b',');
    }
    json_string(out, key);
    out.push(b':');
}

/// An argument as JSON with its variables filled in: `Some(None)` when it is a variable with
/// no value and no default (absent), `None` for what JSON cannot hold.
fn resolve<'v>(v: &Value, lookup: &impl Fn(&str) -> Option<&'v Json>) -> Option<Option<Json>> {
    Some(Some(match v {
        Value::Variable(name) => return Some(lookup(name.as_str()).cloned()),
        Value::Null => Json::Null,
        Value::Number(n) => Json::Number(n.clone()),
        Value::String(s) => Json::String(s.clone()),
        Value::Boolean(b) => Json::Bool(*b),
        Value::Enum(e) => Json::String(e.to_string()),
        Value::Binary(_) => return None,
        Value::List(items) => Json::Array(
            items
                .iter()
                .map(|i| Some(resolve(i, lookup)?.unwrap_or(Json::Null)))
                .collect::<Option<_>>()?,
        ),
        Value::Object(fields) => {
            let mut map = Map::new();
            for (k, v) in fields {
                if let Some(v) = resolve(v, lookup)? {
                    map.insert(k.to_string(), v);
                }
            }
            Json::Object(map)
        }
    }))
}

/// Writes `v` as GraphQL type `ty` in REST's form, or `None` when it does not fit.
fn write(out: &mut Vec<u8>, types: &Types, v: &Json, ty: &Type, int_max: u64) -> Option<()> {
    if v.is_null() {
        if !ty.nullable {
            return None;
        }
        out.extend_from_slice(b"null");
        return Some(());
    }
    let name = match &ty.base {
        BaseType::List(inner) => {
            out.push(b'[');
            for (i, item) in v.as_array()?.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(out, types, item, inner, int_max)?;
            }
            out.push(b']');
            return Some(());
        }
        BaseType::Named(name) => name.as_str(),
    };
    match name {
        "Float" => {
            v.as_f64().filter(|f| f.is_finite())?;
            out.extend_from_slice(v.as_number()?.to_string().as_bytes());
        }
        "Int" => {
            let n = v.as_u64().filter(|n| *n <= int_max)?;
            out.extend_from_slice(n.to_string().as_bytes());
        }
        "String" | "ID" => json_string(out, v.as_str()?),
        "Boolean" => out.extend_from_slice(if v.as_bool()? { b"true" } else { b"false" }),
        "JSON" => serde_json::to_writer(&mut *out, v).ok()?,
        _ => {
            if let Some(values) = types.enum_values(name) {
                // REST's spelling of GraphQL's enum values (`NO_CACHE` → `no_cache`).
                let s = v.as_str().filter(|s| values.iter().any(|x| x == s))?;
                json_string(out, &s.to_ascii_lowercase());
            } else {
                object(out, types, v, types.input(name)?)?;
            }
        }
    }
    Some(())
}

/// An input object: every key a field of the type, every non-null field given.
fn object(out: &mut Vec<u8>, types: &Types, v: &Json, fields: &[FieldDef]) -> Option<()> {
    let given = v.as_object()?;
    if !given.keys().all(|k| fields.iter().any(|f| &f.name == k)) {
        return None;
    }
    let start = out.len();
    out.push(b'{');
    for f in fields {
        match given.get(&f.name) {
            None | Some(Json::Null) if !f.ty.nullable => return None,
            None | Some(Json::Null) => {}
            Some(value) => {
                if out.len() > start + 1 {
                    out.push(b',');
                }
                json_string(out, &f.rest);
                out.push(b':');
                write(out, types, value, &f.ty, f.int_max)?;
            }
        }
    }
    out.push(b'}');
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bodies_of(q: &str, vars: Json) -> Option<Vec<Json>> {
        let doc = async_graphql::parser::parse_query(q).unwrap();
        let plan = super::super::plan::build(&doc, None).unwrap();
        let vars = vars.as_object().cloned().unwrap_or_default();
        let out = bodies(&plan, &vars)?;
        Some(
            out.iter()
                .map(|b| serde_json::from_slice(b).unwrap())
                .collect(),
        )
    }

    #[test]
    fn arguments_become_the_rest_body() {
        let q = r#"query($i: RiskAssessmentInput, $p: Priority = LOW) {
            a: riskAssessment(userId: "u", input: $i, priority: $p, cache: {mode: NO_CACHE, ttlS: 60},
                              dependencies: ["x"], useContext: false) { confidence }
            b: cashflowForecast(userId: "u", inputJson: {history: [1, 2], horizon: 2}) { confidence } }"#;
        let got = bodies_of(
            q,
            json!({"i": {"age": 40, "horizonYears": 10, "incomeStability": 5, "holdings": null}}),
        )
        .unwrap();
        assert_eq!(
            got[0],
            json!({"user_id": "u", "input": {"age": 40, "horizon_years": 10, "income_stability": 5},
                   "priority": "low", "cache": {"mode": "no_cache", "ttl_s": 60},
                   "dependencies": ["x"], "use_context": false})
        );
        assert_eq!(
            got[1],
            json!({"user_id": "u", "input": {"history": [1, 2], "horizon": 2}})
        );
    }

    #[test]
    fn what_async_graphql_must_word_is_left_to_it() {
        let q = "query($i: RiskAssessmentInput) { riskAssessment(userId: \"u\", input: $i) { confidence } }";
        for bad in [
            json!({"i": {"age": "old"}}),
            json!({"i": {"incomeStability": 256}}),
            json!({"i": {"age": -1}}),
            json!({"i": {"age": 1.5}}),
            json!({"i": {"unknown": 1}}),
            json!({"i": {"holdings": {"symbol": "A", "weight": 1, "prices": [1]}}}),
            json!({"i": {"holdings": [{"symbol": "A", "weight": 1}]}}),
            json!({"i": []}),
        ] {
            assert!(bodies_of(q, bad.clone()).is_none(), "{bad}");
        }
        // A non-null variable without a value, both inputs at once, an unknown enum value.
        let q = "query($u: String!) { riskAssessment(userId: $u) { confidence } }";
        assert!(bodies_of(q, json!({})).is_none());
        let q = "{ riskAssessment(userId: \"u\", input: {age: 1}, inputJson: {age: 1}) { confidence } }";
        assert!(bodies_of(q, json!({})).is_none());
        let q =
            "query($p: Priority) { riskAssessment(userId: \"u\", priority: $p) { confidence } }";
        assert!(bodies_of(q, json!({"p": "URGENT"})).is_none());
        assert!(bodies_of(q, json!({"p": "high"})).is_none());
        assert_eq!(
            bodies_of(q, json!({"p": "HIGH"})).unwrap()[0],
            json!({"user_id": "u", "priority": "high"})
        );
    }
}
