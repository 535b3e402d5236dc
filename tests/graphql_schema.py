"""Checks src/app/graphql/schema.graphql with graphql-core (the reference implementation's Python
port): the SDL builds into a valid schema, the documents Atlas's tests and README use
validate against it, and documents with an unknown field or a wrong argument type do not.

Usage: python3 tests/graphql_schema.py [SCHEMA]  (exit 0 when every check holds)
"""

import sys

from graphql import build_schema, parse, validate, validate_schema

path = sys.argv[1] if len(sys.argv) > 1 else "src/app/graphql/schema.graphql"
schema = build_schema(open(path, encoding="utf-8").read())
errors = validate_schema(schema)
assert not errors, errors

valid = [
    """query($i: PortfolioAnalysisInput) { portfolioAnalysis(userId: "u", input: $i) {
         operation confidence modelVersion resultJson
         result { symbols weights expectedReturn volatility sharpeRatio var95 cvar95 beta
                  correlation maxSharpeMethod rebalancing { symbol trade action } }
         meta { cache shard totalMs batchSize endpoint contextVersion } } }""",
    """{ a: budgetOptimization(userId: "u", input: {monthlyIncome: 1,
            expenses: [{category: "rent", amount: 1, essential: true}],
            debts: [{name: "card", balance: 1, apr: 0.2, minPayment: 1}],
            goals: [{name: "car", target: 2, current: 1, months: 3}]}) {
           result { savingsRate debtPlan { avalanche { months order scheduleSummary {
             debts { name payoffMonth } remainingByYear } } } goals { feasible } } }
         b: riskAssessment(userId: "u", useContext: true, priority: HIGH,
                           cache: {mode: NO_CACHE, ttlS: 5}, dependencies: ["t"]) {
           result { riskScore profile recommendedAllocation { stocks bonds cash }
                    portfolio { status band { lower upper } } } }
         c: cashflowForecast(userId: "u", input: {history: [1, 2, 3, 4], horizon: 2}) {
           result { forecast lower80 upper95 method fittedParams { alpha gamma } } }
         d: riskAssessment(userId: "u", inputJson: {age: 35}) { resultJson }
         context(userId: "u") { userId context version expiresInS }
         performance }""",
    """mutation { setContext(userId: "u", context: {age: 35})
                  deleteContext(userId: "u")
                  invalidate(selectors: {all: true})
                  publishEvent(event: {type: "market_data_update", symbols: ["AAPL"]}) }""",
]
invalid = [
    "{ nope }",
    '{ riskAssessment(userId: 5) { confidence } }',
    '{ riskAssessment(userId: "u", priority: URGENT) { confidence } }',
    '{ riskAssessment(userId: "u") }',
    '{ riskAssessment(userId: "u") { result } }',
    '{ riskAssessment(userId: "u", input: {age: "old"}) { confidence } }',
    '{ riskAssessment(userId: "u", input: {horizon_years: 3}) { confidence } }',
    'query($i: JSON) { cashflowForecast(userId: "u", input: $i) { confidence } }',
    'mutation { setContext(userId: "u") }',
]
for doc in valid:
    errs = validate(schema, parse(doc))
    assert not errs, (doc, errs)
for doc in invalid:
    assert validate(schema, parse(doc)), doc
print(f"schema valid; {len(valid)} documents validate, {len(invalid)} are refused")
