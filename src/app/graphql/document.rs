//! Parsed GraphQL documents: this thread's cache of them by query text, the operation a
//! request runs, and the root fields it selects (what the limits and the introspection
//! switch look at). No execution here.

use std::cell::RefCell;

use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, Selection, SelectionSet,
};

thread_local! {
    /// This thread's parsed documents by query text: parsing is the largest single cost of a
    /// small request (validation still runs on every request). Bounded: see [`DOCS_MAX`].
    static DOCS: RefCell<ahash::AHashMap<String, ExecutableDocument>> = RefCell::new(Default::default());
}

/// Most documents a shard keeps parsed (the set is emptied when full: clients send a handful
/// of distinct documents, so it refills with the live ones).
const DOCS_MAX: usize = 256;
/// Longest query text whose parsed document is kept.
pub(super) const DOC_MAX_LEN: usize = 8 * 1024;
/// Most query text, summed, whose parsed documents a shard keeps (a parsed document is a
/// small multiple of its text; with [`DOCS_MAX`] this bounds the cache's memory).
const DOCS_TEXT_MAX: usize = 128 * 1024;

/// Gives `gql` its parsed document from this thread's cache; answers whether it was there.
pub(super) fn parse_cached(gql: &mut async_graphql::Request) -> bool {
    if gql.query.len() > DOC_MAX_LEN {
        return false;
    }
    let cached = DOCS.with(|d| d.borrow().get(&gql.query).cloned());
    match cached {
        Some(doc) => {
            gql.set_parsed_query(doc);
            true
        }
        None => false,
    }
}

/// Keeps a document that parsed and passed validation and Atlas's own checks (a refused
/// document is never kept, so refusals cannot fill the cache).
pub(super) fn keep_parsed(query: String, doc: ExecutableDocument) {
    if query.len() > DOC_MAX_LEN {
        return;
    }
    DOCS.with(|d| {
        let mut d = d.borrow_mut();
        let text: usize = d.keys().map(String::len).sum();
        if d.len() >= DOCS_MAX || text + query.len() > DOCS_TEXT_MAX {
            d.clear();
        }
        d.insert(query, doc);
    });
}

/// The operation the request runs (the named one, or the only one).
pub(super) fn chosen<'d>(
    doc: &'d ExecutableDocument,
    name: Option<&str>,
) -> Option<&'d async_graphql::parser::types::OperationDefinition> {
    match (&doc.operations, name) {
        (DocumentOperations::Single(op), _) => Some(&op.node),
        (DocumentOperations::Multiple(ops), Some(name)) => ops
            .iter()
            .find(|(n, _)| n.as_str() == name)
            .map(|(_, op)| &op.node),
        // The spec's GetOperation: without a name, the document's only operation (a named
        // one, like the standard `query IntrospectionQuery`, parses as `Multiple`).
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => {
            ops.values().next().map(|op| &op.node)
        }
        (DocumentOperations::Multiple(_), None) => None,
    }
}

pub(super) fn has_mutation(doc: &ExecutableDocument, name: Option<&str>) -> bool {
    chosen(doc, name)
        .is_some_and(|op| op.ty == async_graphql::parser::types::OperationType::Mutation)
}

/// The names of the root fields the chosen operation selects, through fragments (each one
/// pipeline request, counted against `ATLAS_GRAPHQL_MAX_FIELDS`). A document
/// that asks for `__schema` or `__type` introspects (async-graphql answers them with null
/// when introspection is off; Atlas refuses the request instead).
pub(super) fn root_names<'d>(doc: &'d ExecutableDocument, name: Option<&str>) -> Vec<&'d str> {
    let mut names = Vec::new();
    if let Some(op) = chosen(doc, name) {
        collect(doc, &op.selection_set.node, 0, &mut names);
    }
    names
}

/// The names of the fields of `set`, through fragments (at most 8 fragments deep; deeper or
/// cyclic fragments are left to validation).
fn collect<'d>(
    doc: &'d ExecutableDocument,
    set: &'d SelectionSet,
    depth: usize,
    out: &mut Vec<&'d str>,
) {
    if depth > 8 {
        return;
    }
    for item in &set.items {
        match &item.node {
            Selection::Field(f) => out.push(f.node.name.node.as_str()),
            Selection::InlineFragment(f) => {
                collect(doc, &f.node.selection_set.node, depth + 1, out)
            }
            Selection::FragmentSpread(s) => {
                if let Some(f) = doc.fragments.get(&s.node.fragment_name.node) {
                    collect(doc, &f.node.selection_set.node, depth + 1, out);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_top_level_fields_through_fragments() {
        let doc = async_graphql::parser::parse_query(
            "query { a b ...F ... on Query { c } } fragment F on Query { d e }",
        )
        .unwrap();
        assert_eq!(root_names(&doc, None).len(), 5);
    }

    #[test]
    fn a_lone_named_operation_is_the_one_that_runs() {
        // Named operations parse as `Multiple`: without an operation name the only one runs,
        // so its fields are counted and its introspection seen (the limits apply to it).
        let doc = async_graphql::parser::parse_query("query Q { a: __typename b { c } }").unwrap();
        assert_eq!(root_names(&doc, None).len(), 2);
        assert_eq!(root_names(&doc, None), ["__typename", "b"]);
        let doc = async_graphql::parser::parse_query("query IntrospectionQuery { __schema { t } }")
            .unwrap();
        assert_eq!(root_names(&doc, None), ["__schema"]);
        // Two operations and no name: none is chosen (execution reports it).
        let doc = async_graphql::parser::parse_query("query A { a } query B { b }").unwrap();
        assert_eq!(root_names(&doc, None).len(), 0);
        assert_eq!(root_names(&doc, Some("B")).len(), 1);
    }

    #[test]
    fn kept_documents_are_given_back_and_the_cache_is_bounded() {
        let mut a = async_graphql::Request::new("{ a }");
        assert!(!parse_cached(&mut a));
        keep_parsed(a.query.clone(), a.parsed_query().unwrap().clone());
        let mut b = async_graphql::Request::new("{ a }");
        assert!(parse_cached(&mut b));
        assert_eq!(root_names(b.parsed_query().unwrap(), None).len(), 1);
        // Too long to keep.
        let long = format!("{{ a {} }}", " ".repeat(DOC_MAX_LEN));
        let mut l = async_graphql::Request::new(long.clone());
        keep_parsed(long, l.parsed_query().unwrap().clone());
        assert!(!parse_cached(&mut l));
        // The text budget empties the set rather than exceed it.
        for i in 0..40 {
            let q = format!("{{ a{i} {} }}", " ".repeat(7 * 1024));
            let doc = async_graphql::parser::parse_query(&q).unwrap();
            keep_parsed(q, doc);
            let text: usize = DOCS.with(|d| d.borrow().keys().map(String::len).sum());
            assert!(text <= DOCS_TEXT_MAX);
        }
    }
}
