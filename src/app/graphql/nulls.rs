//! Where the GraphQL spec puts `null` for a field that failed ("Handling Execution Errors"):
//! on the field itself when its type is nullable, else on its nearest nullable ancestor, up
//! to `data` itself. async-graphql leaves a failed field out of its parent instead, at any
//! depth, so every answer of the general path is corrected here from the error paths, the
//! document and the schema's types. (The prepared path writes its nulls in place.)

use async_graphql::parser::types::{
    BaseType, ExecutableDocument, OperationType, Selection, SelectionSet, Type,
};
use async_graphql::{Name, PathSegment, Value};

use super::prepared::types::{base_name, Types};

/// Puts each error's null where the spec puts it. `query` is the document's text (parsed
/// again only when an error lies below the root).
pub(super) fn place(answer: &mut async_graphql::Response, query: &str, operation: Option<&str>) {
    if answer.errors.is_empty() {
        return;
    }
    let nested = answer.errors.iter().any(|e| e.path.len() > 1);
    let doc = if nested {
        async_graphql::parser::parse_query(query).ok()
    } else {
        None
    };
    if answer.data == Value::Null {
        answer.data = Value::Object(Default::default());
    }
    for e in &answer.errors {
        if e.path.is_empty() {
            continue;
        }
        let nullable = nullability(doc.as_ref(), operation, &e.path);
        match nullable.iter().rposition(|n| *n) {
            Some(k) => set_null(&mut answer.data, &e.path[..=k]),
            None => {
                answer.data = Value::Null;
                return;
            }
        }
    }
}

/// Whether each position along `path` is nullable (`true` where the types are not known:
/// the null then goes on the failed field itself).
fn nullability(
    doc: Option<&ExecutableDocument>,
    operation: Option<&str>,
    path: &[PathSegment],
) -> Vec<bool> {
    let mut out = Vec::with_capacity(path.len());
    if let Some(doc) = doc {
        walk(doc, operation, path, &mut out);
    }
    // A root field's type: when the walk could not start, the root fields Atlas serves are
    // all nullable.
    out.resize(path.len(), true);
    out
}

fn walk(
    doc: &ExecutableDocument,
    operation: Option<&str>,
    path: &[PathSegment],
    out: &mut Vec<bool>,
) -> Option<()> {
    let types = Types::get();
    let op = super::chosen(doc, operation)?;
    let mut parent = match op.ty {
        OperationType::Query => "Query".to_string(),
        OperationType::Mutation => "Mutation".to_string(),
        OperationType::Subscription => return None,
    };
    let mut sets: Vec<&SelectionSet> = vec![&op.selection_set.node];
    let mut ty: Option<Type> = None;
    for seg in path {
        match seg {
            PathSegment::Field(key) => {
                let mut found = Vec::new();
                for set in &sets {
                    find(doc, set, key, 0, &mut found);
                }
                let name = found.first()?.node.name.node.as_str();
                let def = types.object(&parent)?.iter().find(|d| d.name == name)?;
                out.push(def.ty.nullable);
                parent = base_name(&def.ty).to_string();
                sets = found.iter().map(|f| &f.node.selection_set.node).collect();
                ty = Some(def.ty.clone());
            }
            PathSegment::Index(_) => {
                let BaseType::List(inner) = ty?.base else {
                    return None;
                };
                out.push(inner.nullable);
                ty = Some(*inner);
            }
        }
    }
    Some(())
}

/// The fields of `set` with response key `key`, through fragments (whatever their directives:
/// a field that failed was selected).
fn find<'d>(
    doc: &'d ExecutableDocument,
    set: &'d SelectionSet,
    key: &str,
    depth: usize,
    out: &mut Vec<&'d async_graphql::Positioned<async_graphql::parser::types::Field>>,
) {
    if depth > 32 {
        return;
    }
    for item in &set.items {
        match &item.node {
            Selection::Field(f) if f.node.response_key().node.as_str() == key => out.push(f),
            Selection::Field(_) => {}
            Selection::InlineFragment(f) => {
                find(doc, &f.node.selection_set.node, key, depth + 1, out)
            }
            Selection::FragmentSpread(s) => {
                if let Some(f) = doc.fragments.get(&s.node.fragment_name.node) {
                    find(doc, &f.node.selection_set.node, key, depth + 1, out);
                }
            }
        }
    }
}

/// Sets the value at `path` to null (creating the key in its object); nothing when a parent
/// on the way is already null.
fn set_null(data: &mut Value, path: &[PathSegment]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = data;
    for seg in parents {
        cur = match (cur, seg) {
            (Value::Object(m), PathSegment::Field(k)) => match m.get_mut(k.as_str()) {
                Some(v) => v,
                None => return,
            },
            (Value::List(l), PathSegment::Index(i)) => match l.get_mut(*i) {
                Some(v) => v,
                None => return,
            },
            _ => return,
        };
    }
    match (cur, last) {
        (Value::Object(m), PathSegment::Field(k)) => {
            m.insert(Name::new(k), Value::Null);
        }
        (Value::List(l), PathSegment::Index(i)) => {
            if let Some(v) = l.get_mut(*i) {
                *v = Value::Null;
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_graphql::ServerError;

    fn answer(data: serde_json::Value, paths: &[serde_json::Value]) -> async_graphql::Response {
        let mut r = async_graphql::Response::new(Value::from_json(data).unwrap());
        for p in paths {
            let mut e = ServerError::new("boom", None);
            e.path = serde_json::from_value(p.clone()).unwrap();
            r.errors.push(e);
        }
        r
    }

    #[test]
    fn a_failed_field_is_null_where_the_spec_puts_it() {
        // `result` is non-null: its failed non-null field nulls the nullable operation field.
        let q = "{ r: riskAssessment(userId: \"u\") { confidence result { riskScore } } c: cashflowForecast(userId: \"u\") { confidence } }";
        let mut a = answer(
            serde_json::json!({"r": {"confidence": 1.0, "result": {}}, "c": {"confidence": 0.5}}),
            &[serde_json::json!(["r", "result", "riskScore"])],
        );
        place(&mut a, q, None);
        assert_eq!(
            a.data.into_json().unwrap(),
            serde_json::json!({"r": null, "c": {"confidence": 0.5}})
        );
        // A nullable field is nulled in place (`portfolio`), through a fragment and an alias.
        let q = "{ riskAssessment(userId: \"u\") { result { ...F } } } fragment F on RiskAssessmentResult { p: portfolio { distance } riskScore }";
        let mut a = answer(
            serde_json::json!({"riskAssessment": {"result": {"p": {}, "riskScore": 1.0}}}),
            &[serde_json::json!([
                "riskAssessment",
                "result",
                "p",
                "distance"
            ])],
        );
        place(&mut a, q, None);
        assert_eq!(
            a.data.into_json().unwrap(),
            serde_json::json!({"riskAssessment": {"result": {"p": null, "riskScore": 1.0}}})
        );
        // A top-level failure (the common case) and an unknown path.
        let mut a = answer(serde_json::json!(null), &[serde_json::json!(["x"])]);
        place(&mut a, "{ x }", None);
        assert_eq!(a.data.into_json().unwrap(), serde_json::json!({"x": null}));
    }
}
