//! The schema as the prepared path reads it: every object, input object and enum of the SDL
//! that async-graphql prints for [`super::super::schema`], with each field's GraphQL type and
//! the snake_case key it has in the REST JSON. Derived once per process from the SDL, so it
//! cannot drift from the types the slow path resolves with; the few facts the SDL does not
//! carry (which `Int` inputs are `u8` in Rust) are listed here and checked by a test against
//! async-graphql's own input parsing.

use std::sync::OnceLock;

use ahash::AHashMap;
use async_graphql::parser::types::{BaseType, Type, TypeKind, TypeSystemDefinition};

/// One field of an object or input object type.
pub(in crate::app::graphql) struct FieldDef {
    /// The GraphQL name (`sharpeRatio`).
    pub name: String,
    /// Its key in the REST JSON (`sharpe_ratio`).
    pub rest: String,
    /// Its GraphQL type.
    pub ty: Type,
    /// Largest integer an `Int` input field takes (the Rust type's range: `u8` or `u32`).
    pub int_max: u64,
    /// The field's arguments (object types), as input fields.
    pub args: Vec<FieldDef>,
}

/// The types of the schema, by name.
pub(in crate::app::graphql) struct Types {
    objects: AHashMap<String, Vec<FieldDef>>,
    inputs: AHashMap<String, Vec<FieldDef>>,
    enums: AHashMap<String, Vec<String>>,
}

/// `Int` input fields whose Rust type is `u8` (every other `Int` input is `u32` or wider):
/// a larger value is refused by async-graphql when it reads the argument, so the prepared
/// path leaves such a request to it.
const U8_INPUTS: &[(&str, &str)] = &[
    ("RiskAssessmentInput", "incomeStability"),
    ("RiskAssessmentInput", "lossTolerance"),
    ("RiskAssessmentInput", "experience"),
];

impl Types {
    /// The process's table (parsed from the SDL on first use).
    pub fn get() -> &'static Types {
        static TYPES: OnceLock<Types> = OnceLock::new();
        TYPES.get_or_init(|| Types::from_sdl(&super::super::sdl()))
    }

    fn from_sdl(sdl: &str) -> Types {
        let mut types = Types {
            objects: AHashMap::new(),
            inputs: AHashMap::new(),
            enums: AHashMap::new(),
        };
        // async-graphql prints valid SDL (a test reads it); were it not to, the table stays
        // empty and every document runs on async-graphql.
        let Ok(doc) = async_graphql::parser::parse_schema(sdl) else {
            return types;
        };
        for def in doc.definitions {
            let TypeSystemDefinition::Type(t) = def else {
                continue;
            };
            let name = t.node.name.node.to_string();
            match t.node.kind {
                TypeKind::Object(o) => {
                    let fields = o
                        .fields
                        .into_iter()
                        .map(|f| {
                            let mut def = field(&name, &f.node.name.node, f.node.ty.node);
                            def.args = f
                                .node
                                .arguments
                                .into_iter()
                                .map(|a| field(&name, &a.node.name.node, a.node.ty.node))
                                .collect();
                            def
                        })
                        .collect();
                    types.objects.insert(name, fields);
                }
                TypeKind::InputObject(o) => {
                    let fields = o
                        .fields
                        .into_iter()
                        .map(|f| field(&name, &f.node.name.node, f.node.ty.node))
                        .collect();
                    types.inputs.insert(name, fields);
                }
                TypeKind::Enum(e) => {
                    let values = e.values.into_iter().map(|v| v.node.value.node.to_string());
                    types.enums.insert(name, values.collect());
                }
                _ => {}
            }
        }
        types
    }

    /// The fields of object type `name`.
    pub fn object(&self, name: &str) -> Option<&[FieldDef]> {
        self.objects.get(name).map(Vec::as_slice)
    }

    /// The fields of input object type `name`.
    pub fn input(&self, name: &str) -> Option<&[FieldDef]> {
        self.inputs.get(name).map(Vec::as_slice)
    }

    /// The values of enum type `name`.
    pub fn enum_values(&self, name: &str) -> Option<&[String]> {
        self.enums.get(name).map(Vec::as_slice)
    }
}

fn field(owner: &str, name: &str, ty: Type) -> FieldDef {
    let small = U8_INPUTS.iter().any(|(o, f)| *o == owner && *f == name);
    FieldDef {
        name: name.to_string(),
        rest: snake(name),
        ty,
        int_max: if small {
            u8::MAX.into()
        } else {
            u32::MAX.into()
        },
        args: Vec::new(),
    }
}

/// The named type at the bottom of `ty` (`[[Float!]!]!` → `Float`).
pub(in crate::app::graphql) fn base_name(ty: &Type) -> &str {
    match &ty.base {
        BaseType::Named(n) => n.as_str(),
        BaseType::List(inner) => base_name(inner),
    }
}

/// The REST (snake_case) spelling of a GraphQL (camelCase) field name: `sharpeRatio` →
/// `sharpe_ratio`, `var95` → `var_95` (async-graphql's renaming, reversed).
pub(super) fn snake(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    let mut prev: Option<char> = None;
    for c in name.chars() {
        let boundary = match prev {
            Some(p) => c.is_ascii_uppercase() || (c.is_ascii_digit() && !p.is_ascii_digit()),
            None => false,
        };
        if boundary {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
        prev = Some(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_graphql::{InputType, Name, Number};

    #[test]
    fn snake_case_reverses_async_graphqls_renaming() {
        assert_eq!(snake("sharpeRatio"), "sharpe_ratio");
        assert_eq!(snake("var95"), "var_95");
        assert_eq!(snake("lower80"), "lower_80");
        assert_eq!(snake("modelVersion"), "model_version");
        assert_eq!(snake("age"), "age");
    }

    #[test]
    fn the_table_reads_the_printed_schema() {
        let t = Types::get();
        let result = t.object("PortfolioAnalysisResult").unwrap();
        let var = result.iter().find(|f| f.name == "var95").unwrap();
        assert_eq!(var.rest, "var_95");
        assert_eq!(var.ty.to_string(), "Float!");
        assert!(t.input("HoldingInput").is_some());
        assert_eq!(
            t.enum_values("Priority").unwrap(),
            ["HIGH", "NORMAL", "LOW"]
        );
    }

    /// Every snake_case key the table derives is one the REST result types read: a result of
    /// each type, written by serde, has exactly the keys of the table.
    #[test]
    fn every_result_field_is_a_key_of_the_rest_json() {
        use crate::models;
        let t = Types::get();
        for op in atlas_shard::Operation::ALL {
            let typed = models::parse_input(op, &sample(op)).unwrap();
            let json = models::compute(&typed).unwrap().result;
            let name = super::super::plan::result_type(op);
            check_keys(t, name, &json);
        }
    }

    /// An input of `op` whose result has every optional part (beta, the portfolio fit,
    /// Holt–Winters' seasonal parameters, debts and goals).
    pub(in crate::app::graphql) fn sample(op: atlas_shard::Operation) -> serde_json::Value {
        use atlas_shard::Operation::*;
        let holdings = serde_json::json!([
            {"symbol": "AAPL", "weight": 0.6, "prices": [100, 102, 101, 105, 107, 106, 108, 110]},
            {"symbol": "MSFT", "weight": 0.4, "prices": [200, 198, 202, 204, 203, 207, 209, 208]}]);
        match op {
            PortfolioAnalysis => serde_json::json!({"holdings": holdings,
                "benchmark_prices": [50, 51, 50, 52, 53, 53, 54, 55]}),
            BudgetOptimization => serde_json::json!({"monthly_income": 5000,
                "expenses": [{"category": "rent", "amount": 1500, "essential": true},
                             {"category": "dining", "amount": 600, "essential": false}],
                "debts": [{"name": "card", "balance": 3000, "apr": 0.2, "min_payment": 100}],
                "goals": [{"name": "car", "target": 60000, "current": 1000, "months": 24}]}),
            RiskAssessment => serde_json::json!({"age": 35, "horizon_years": 20,
                "income_stability": 4, "loss_tolerance": 3, "experience": 3,
                "holdings": holdings}),
            CashflowForecast => serde_json::json!({"history":
                (0..30).map(|i| 100.0 + f64::from(i % 12) * 3.0 + f64::from(i)).collect::<Vec<_>>(),
                "horizon": 3}),
        }
    }

    fn check_keys(t: &Types, name: &str, json: &serde_json::Value) {
        let Some(fields) = t.object(name) else {
            return;
        };
        let obj = json.as_object().unwrap_or_else(|| panic!("{name}: {json}"));
        for f in fields {
            let v = obj.get(&f.rest);
            assert!(
                v.is_some() || f.ty.nullable,
                "{name}.{}: REST has no `{}` in {json}",
                f.name,
                f.rest
            );
            let mut v = v.unwrap_or(&serde_json::Value::Null);
            while let Some(first) = v.as_array().and_then(|a| a.first()) {
                v = first;
            }
            if v.is_object() {
                check_keys(t, base_name(&f.ty), v);
            }
        }
        for key in obj.keys() {
            assert!(
                fields.iter().any(|f| &f.rest == key),
                "{name}: REST key `{key}` has no GraphQL field"
            );
        }
    }

    /// The `u8` list is the set of `Int` inputs async-graphql refuses 256 for.
    #[test]
    fn the_u8_inputs_are_the_ones_async_graphql_bounds() {
        let int = |n: u64| async_graphql::Value::Number(Number::from(n));
        let t = Types::get();
        for f in t.input("RiskAssessmentInput").unwrap() {
            if f.ty.to_string() != "Int" {
                continue;
            }
            let mut obj = async_graphql::indexmap::IndexMap::new();
            obj.insert(Name::new(&f.name), int(256));
            let parsed =
                crate::app::graphql::inputs::Risk::parse(Some(async_graphql::Value::Object(obj)));
            assert_eq!(parsed.is_err(), f.int_max == 255, "{}", f.name);
            let mut obj = async_graphql::indexmap::IndexMap::new();
            obj.insert(Name::new(&f.name), int(f.int_max));
            let parsed =
                crate::app::graphql::inputs::Risk::parse(Some(async_graphql::Value::Object(obj)));
            assert!(parsed.is_ok(), "{}", f.name);
        }
    }
}
