//! The plan of a validated document: which operation fields it runs, with which argument
//! values (literals and variables, resolved per request by [`super::bind`]), and which result
//! fields each one answers, in response order, with aliases, fragments and `@skip`/`@include`
//! on literals resolved and fields of one response key merged ([`super::project`] writes
//! them). Built once per document text after async-graphql has parsed and validated it.
//!
//! A document gets no plan (it keeps running on async-graphql) unless its chosen operation is
//! a query whose root fields are the four AI operations and `__typename`, and every
//! directive in it is `@skip`/`@include` with a literal condition.

use async_graphql::parser::types::{
    Directive, ExecutableDocument, Field, OperationType, Selection, SelectionSet, Type,
};
use async_graphql::{Pos, Positioned};
use async_graphql_value::Value;

use atlas_shard::Operation;

use super::types::{base_name, Types};

/// What one document runs.
pub(in crate::app::graphql) struct Plan {
    /// Unique per plan built in this process (keys what is kept per field, see
    /// `project::Kept`).
    pub id: u64,
    /// The root fields, in response order.
    pub roots: Vec<Root>,
    /// The operation's variables.
    pub variables: Vec<Variable>,
}

impl Plan {
    /// The operation fields, in root order (one REST call each).
    pub fn ops(&self) -> impl Iterator<Item = &OpField> {
        self.roots.iter().filter_map(|r| match r {
            Root::Op(f) => Some(f),
            Root::Typename { .. } => None,
        })
    }
}

/// A declared variable.
pub(in crate::app::graphql) struct Variable {
    pub name: String,
    pub ty: Type,
    /// Its default, as JSON.
    pub default: Option<serde_json::Value>,
}

/// A root field.
pub(in crate::app::graphql) enum Root {
    /// `__typename` (`"Query"`).
    Typename { key: String },
    /// An operation field.
    Op(OpField),
}

/// An operation field: its REST operation, arguments and selection.
pub(in crate::app::graphql) struct OpField {
    /// Response key.
    pub key: String,
    /// Where it is in the document (for its errors).
    pub pos: Pos,
    pub op: Operation,
    /// Arguments as written (literals and variables).
    pub args: Vec<(String, Value)>,
    /// The selection on the operation's answer type.
    pub select: Vec<Node>,
}

/// A selected field below the root.
pub(in crate::app::graphql) struct Node {
    /// Response key.
    pub key: String,
    pub pos: Pos,
    pub source: Source,
}

/// Where a selected field's value comes from.
pub(in crate::app::graphql) enum Source {
    /// `__typename`: the type's name.
    Typename(String),
    /// The answer's `operation`: the REST operation name.
    Operation,
    /// The answer's `meta`, with these fields.
    Meta(Vec<Node>),
    /// A field of `meta` (from the REST response's `X-Atlas-*` headers).
    MetaField(MetaField),
    /// A value of the REST body: its key in the enclosing JSON object, its GraphQL type and
    /// what is at the bottom of that type.
    Json {
        rest: String,
        ty: Type,
        shape: Shape,
    },
}

/// The named type at the bottom of a JSON-sourced field.
pub(in crate::app::graphql) enum Shape {
    Float,
    Int,
    String,
    Boolean,
    /// The `JSON` scalar: the bytes as they are.
    Json,
    /// An enum: REST's snake_case value in upper case, one of these.
    Enum(&'static [String]),
    /// An object type with this selection.
    Object(Vec<Node>),
}

/// A field of `Meta`.
#[derive(Clone, Copy)]
pub(in crate::app::graphql) enum MetaField {
    Cache,
    Shard,
    TotalMs,
    BatchSize,
    Endpoint,
    ContextVersion,
}

/// The GraphQL field of each operation.
pub(super) fn operation_of(field: &str) -> Option<Operation> {
    Some(match field {
        "portfolioAnalysis" => Operation::PortfolioAnalysis,
        "budgetOptimization" => Operation::BudgetOptimization,
        "riskAssessment" => Operation::RiskAssessment,
        "cashflowForecast" => Operation::CashflowForecast,
        _ => return None,
    })
}

/// The answer type of an operation field.
fn answer_type(op: Operation) -> &'static str {
    match op {
        Operation::PortfolioAnalysis => "PortfolioAnalysis",
        Operation::BudgetOptimization => "BudgetOptimization",
        Operation::RiskAssessment => "RiskAssessment",
        Operation::CashflowForecast => "CashflowForecast",
    }
}

/// The type of an operation's `result`.
#[cfg(test)]
pub(super) fn result_type(op: Operation) -> &'static str {
    match op {
        Operation::PortfolioAnalysis => "PortfolioAnalysisResult",
        Operation::BudgetOptimization => "BudgetOptimizationResult",
        Operation::RiskAssessment => "RiskAssessmentResult",
        Operation::CashflowForecast => "CashflowForecastResult",
    }
}

/// Deepest fragment nesting followed (validation refuses cycles; this only bounds the walk).
const MAX_FRAGMENT_DEPTH: usize = 32;

/// Most selections a plan's walk visits (fragments spread several times multiply them): a
/// document past it keeps running on async-graphql.
const MAX_VISITS: usize = 10_000;

/// The plan of `doc`'s operation `name` (the named one, or the only one), or `None` when the
/// prepared path does not run it.
pub(super) fn build(doc: &ExecutableDocument, name: Option<&str>) -> Option<Plan> {
    let op = super::super::chosen(doc, name)?;
    if op.ty != OperationType::Query || !op.directives.is_empty() {
        return None;
    }
    let mut variables = Vec::new();
    for v in &op.variable_definitions {
        if !v.node.directives.is_empty() {
            return None;
        }
        let default = match &v.node.default_value {
            Some(d) => Some(d.node.clone().into_json().ok()?),
            None => None,
        };
        variables.push(Variable {
            name: v.node.name.node.to_string(),
            ty: v.node.var_type.node.clone(),
            default,
        });
    }
    let mut budget = MAX_VISITS;
    let mut groups = Vec::new();
    flatten(
        doc,
        &op.selection_set.node,
        "Query",
        &mut groups,
        &mut budget,
    )?;
    // A selection that directives emptied answers null on async-graphql, not `{}`.
    if groups.is_empty() {
        return None;
    }
    let mut roots = Vec::with_capacity(groups.len());
    for (key, fields) in groups {
        let first = &fields[0].node;
        let name = first.name.node.as_str();
        if name == "__typename" {
            roots.push(Root::Typename {
                key: key.to_string(),
            });
            continue;
        }
        // async-graphql runs each occurrence of a root field (validation does not compare
        // fields in different fragments), each charged like a REST request: not merged here.
        if fields.len() > 1 {
            return None;
        }
        let op = operation_of(name)?;
        let select = nodes(doc, answer_type(op), &fields, &mut budget)?;
        roots.push(Root::Op(OpField {
            key: key.to_string(),
            pos: fields[0].pos,
            op,
            args: first
                .arguments
                .iter()
                .map(|(n, v)| (n.node.to_string(), v.node.clone()))
                .collect(),
            select,
        }));
    }
    static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let id = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Some(Plan {
        id,
        roots,
        variables,
    })
}

/// Fields by response key, in first-appearance order (fields of one key are merged, as
/// validation guarantees they can be).
type Groups<'d> = Vec<(&'d str, Vec<&'d Positioned<Field>>)>;

/// The fields `set` selects on type `ty`, through fragments, with `@skip`/`@include` applied.
fn flatten<'d>(
    doc: &'d ExecutableDocument,
    set: &'d SelectionSet,
    ty: &str,
    out: &mut Groups<'d>,
    budget: &mut usize,
) -> Option<()> {
    flatten_at(doc, set, ty, out, budget, 0)
}

fn flatten_at<'d>(
    doc: &'d ExecutableDocument,
    set: &'d SelectionSet,
    ty: &str,
    out: &mut Groups<'d>,
    budget: &mut usize,
    depth: usize,
) -> Option<()> {
    if depth > MAX_FRAGMENT_DEPTH {
        return None;
    }
    for item in &set.items {
        *budget = budget.checked_sub(1)?;
        match &item.node {
            Selection::Field(f) => {
                if !included(&f.node.directives)? {
                    continue;
                }
                let key = f.node.response_key().node.as_str();
                match out.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, fields)) => fields.push(f),
                    None => out.push((key, vec![f])),
                }
            }
            Selection::InlineFragment(f) => {
                let applies = f
                    .node
                    .type_condition
                    .as_ref()
                    .is_none_or(|c| c.node.on.node.as_str() == ty);
                if applies && included(&f.node.directives)? {
                    flatten_at(doc, &f.node.selection_set.node, ty, out, budget, depth + 1)?;
                }
            }
            Selection::FragmentSpread(s) => {
                let f = doc.fragments.get(&s.node.fragment_name.node)?;
                if f.node.type_condition.node.on.node.as_str() == ty
                    && included(&s.node.directives)?
                {
                    flatten_at(doc, &f.node.selection_set.node, ty, out, budget, depth + 1)?;
                }
            }
        }
    }
    Some(())
}

/// Whether `@skip`/`@include` keep the selection; `None` for any other directive or a
/// condition that is a variable.
fn included(directives: &[Positioned<Directive>]) -> Option<bool> {
    let mut keep = true;
    for d in directives {
        let condition = match d.node.get_argument("if").map(|v| &v.node) {
            Some(Value::Boolean(b)) => *b,
            _ => return None,
        };
        match d.node.name.node.as_str() {
            "skip" => keep &= !condition,
            "include" => keep &= condition,
            _ => return None,
        }
    }
    Some(keep)
}

/// The selection of `fields` (one response key, merged) on object type `ty`.
fn nodes(
    doc: &ExecutableDocument,
    ty: &str,
    fields: &[&Positioned<Field>],
    budget: &mut usize,
) -> Option<Vec<Node>> {
    let mut groups = Vec::new();
    for f in fields {
        flatten(doc, &f.node.selection_set.node, ty, &mut groups, budget)?;
    }
    if groups.is_empty() {
        return None;
    }
    let types = Types::get();
    let mut out = Vec::with_capacity(groups.len());
    for (key, fields) in groups {
        let name = fields[0].node.name.node.as_str();
        // One response key, one field: different fields under one key are left to
        // async-graphql (it runs each).
        if fields
            .iter()
            .any(|f| f.node.name.node.as_str() != name || !f.node.arguments.is_empty())
        {
            return None;
        }
        let source = if name == "__typename" {
            Source::Typename(ty.to_string())
        } else if ty == "Meta" {
            Source::MetaField(match name {
                "cache" => MetaField::Cache,
                "shard" => MetaField::Shard,
                "totalMs" => MetaField::TotalMs,
                "batchSize" => MetaField::BatchSize,
                "endpoint" => MetaField::Endpoint,
                "contextVersion" => MetaField::ContextVersion,
                _ => return None,
            })
        } else if operation_of_answer(ty) && name == "operation" {
            Source::Operation
        } else if operation_of_answer(ty) && name == "meta" {
            Source::Meta(nodes(doc, "Meta", &fields, budget)?)
        } else if operation_of_answer(ty) && name == "resultJson" {
            Source::Json {
                rest: "result".into(),
                ty: Type::new("JSON!")?,
                shape: Shape::Json,
            }
        } else {
            let def = types.object(ty)?.iter().find(|d| d.name == name)?;
            let base = base_name(&def.ty);
            let shape = match base {
                "Float" => Shape::Float,
                "Int" => Shape::Int,
                "String" | "ID" => Shape::String,
                "Boolean" => Shape::Boolean,
                "JSON" => Shape::Json,
                _ => match types.enum_values(base) {
                    Some(values) => Shape::Enum(values),
                    None => {
                        types.object(base)?;
                        Shape::Object(nodes(doc, base, &fields, budget)?)
                    }
                },
            };
            Source::Json {
                rest: def.rest.clone(),
                ty: def.ty.clone(),
                shape,
            }
        };
        out.push(Node {
            key: key.to_string(),
            pos: fields[0].pos,
            source,
        });
    }
    Some(out)
}

fn operation_of_answer(ty: &str) -> bool {
    matches!(
        ty,
        "PortfolioAnalysis" | "BudgetOptimization" | "RiskAssessment" | "CashflowForecast"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(q: &str, name: Option<&str>) -> Option<Plan> {
        build(&async_graphql::parser::parse_query(q).unwrap(), name)
    }

    fn keys(nodes: &[Node]) -> Vec<&str> {
        nodes.iter().map(|n| n.key.as_str()).collect()
    }

    #[test]
    fn fragments_aliases_and_literal_directives_are_resolved() {
        let p = plan(
            "query Q($i: RiskAssessmentInput) { __typename r: riskAssessment(userId: \"u\", input: $i) {
                ...F meta { cache } result { profile @skip(if: true) riskScore }
                ... on RiskAssessment { meta { shard } x: confidence @include(if: true) } } }
             fragment F on RiskAssessment { operation result { profile } }",
            None,
        )
        .unwrap();
        assert_eq!(p.variables.len(), 1);
        let [Root::Typename { key }, Root::Op(op)] = &p.roots[..] else {
            panic!("roots")
        };
        assert_eq!(key, "__typename");
        assert_eq!(op.key, "r");
        assert_eq!(op.op, Operation::RiskAssessment);
        assert_eq!(keys(&op.select), ["operation", "result", "meta", "x"]);
        let Source::Json {
            shape: Shape::Object(result),
            ..
        } = &op.select[1].source
        else {
            panic!("result")
        };
        // `profile` from the fragment, `riskScore` from the field; the skipped one merged away.
        assert_eq!(keys(result), ["profile", "riskScore"]);
        let Source::Meta(meta) = &op.select[2].source else {
            panic!("meta")
        };
        assert_eq!(keys(meta), ["cache", "shard"]);
    }

    #[test]
    fn documents_the_path_does_not_run_get_no_plan() {
        // A mutation, another root field, a directive on a variable, an unknown directive.
        assert!(plan("mutation { deleteContext(userId: \"u\") }", None).is_none());
        assert!(plan("{ context(userId: \"u\") { version } }", None).is_none());
        assert!(plan(
            "query($s: Boolean!) { riskAssessment(userId: \"u\") { confidence @skip(if: $s) } }",
            None
        )
        .is_none());
        assert!(plan(
            "{ riskAssessment(userId: \"u\") @deprecated { confidence } }",
            None
        )
        .is_none());
        // One root key for two fields (async-graphql runs both), a selection emptied by a
        // directive (async-graphql answers null).
        assert!(plan(
            "{ r: riskAssessment(userId: \"u\") { confidence } ... on Query { r: riskAssessment(userId: \"v\") { operation } } }",
            None
        )
        .is_none());
        assert!(plan(
            "{ riskAssessment(userId: \"u\") { confidence @skip(if: true) } }",
            None
        )
        .is_none());
        assert!(plan(
            "{ riskAssessment(userId: \"u\") @skip(if: true) { confidence } }",
            None
        )
        .is_none());
        // A fragment spread again and again: the walk is bounded.
        let mut q = String::from("{ riskAssessment(userId: \"u\") { ...F0 } }");
        for i in 0..20 {
            q.push_str(&format!(
                " fragment F{i} on RiskAssessment {{ ...F{} ...F{} }}",
                i + 1,
                i + 1
            ));
        }
        q.push_str(" fragment F20 on RiskAssessment { confidence }");
        assert!(plan(&q, None).is_none());
        // Two operations: the named one.
        let q = "query A { riskAssessment(userId: \"u\") { confidence } } query B { __typename }";
        assert!(plan(q, None).is_none());
        assert!(matches!(
            plan(q, Some("B")).unwrap().roots[..],
            [Root::Typename { .. }]
        ));
    }
}
