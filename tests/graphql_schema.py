"""Checks src/graphql/schema.graphql with graphql-core (the reference implementation's Python
port): the SDL builds into a valid schema, the documents Atlas's tests and README use
validate against it, and documents with an unknown field or a wrong argument type do not.

Usage: python3 tests/graphql_schema.py [SCHEMA]  (exit 0 when every check holds)
"""

import sys

from graphql import build_schema, parse, validate, validate_schema

path = sys.argv[1] if len(sys.argv) > 1 else "src/graphql/schema.graphql"
schema = build_schema(open(path, encoding="utf-8").read())
errors = validate_schema(schema)
assert not errors, errors

valid = [
    """query($i: JSON) { portfolioAnalysis(userId: "u", input: $i) {
         operation result confidence modelVersion
         meta { cache shard totalMs batchSize endpoint contextVersion } } }""",
    """{ a: budgetOptimization(userId: "u", input: {monthly_income: 1}) { result }
         b: riskAssessment(userId: "u", useContext: true, priority: HIGH,
                           cache: {mode: NO_CACHE, ttlS: 5}, dependencies: ["t"]) { result }
         c: cashflowForecast(userId: "u", input: {history: [1, 2, 3, 4], horizon: 2}) { result }
         context(userId: "u") { userId context version expiresInS }
         performance }""",
    """mutation { setContext(userId: "u", context: {age: 35})
                  deleteContext(userId: "u")
                  invalidate(selectors: {all: true})
                  publishEvent(event: {type: "market_data_update", symbols: ["AAPL"]}) }""",
]
invalid = [
    "{ nope }",
    '{ riskAssessment(userId: 5) { result } }',
    '{ riskAssessment(userId: "u", priority: URGENT) { result } }',
    '{ riskAssessment(userId: "u") }',
    'mutation { setContext(userId: "u") }',
]
for doc in valid:
    errs = validate(schema, parse(doc))
    assert not errs, (doc, errs)
for doc in invalid:
    assert validate(schema, parse(doc)), doc
print(f"schema valid; {len(valid)} documents validate, {len(invalid)} are refused")
