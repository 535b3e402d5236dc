"""Drives a running Atlas's /graphql with gql, a standard Python GraphQL client, the way a
user's tooling does: the client loads the schema by the standard introspection query
(fetch_schema_from_transport), validates each document against it, and runs one query per
AI operation; each answer's `resultJson` must equal the `result` of the same request sent
to REST. The standard introspection queries of graphql-core (with and without
descriptions, and with every optional part on) must also be answered in full and build into
a client schema.

With `off` after the URL (a server with introspection off) it checks instead that the
standard introspection query gets one clear error naming ATLAS_GRAPHQL_INTROSPECTION.

Usage: python3 tests/graphql_client.py BASE_URL [off]   (prints one line per check; exit 0
when all hold). Needs gql[requests] and graphql-core (tests/requirements.txt).
"""

import json
import sys

import requests
from gql import Client, gql
from gql.transport.requests import RequestsHTTPTransport
from graphql import build_client_schema, get_introspection_query

base = sys.argv[1].rstrip("/")
url = base + "/graphql"

if sys.argv[2:] == ["off"]:
    r = requests.post(url, json={"query": get_introspection_query()}, timeout=10)
    body = r.json()
    assert "data" not in body and len(body["errors"]) == 1, (r.status_code, body)
    assert "ATLAS_GRAPHQL_INTROSPECTION" in body["errors"][0]["message"], body
    print("ok introspection off:", body["errors"][0]["message"])
    sys.exit(0)

# (GraphQL field, REST operation, REST input), the same inputs as tests/graphql.rs.
CASES = [
    ("portfolioAnalysis", "portfolio_analysis", {"holdings": [
        {"symbol": "AAPL", "weight": 0.6, "prices": [100, 102, 101, 105, 107, 106]},
        {"symbol": "MSFT", "weight": 0.4, "prices": [200, 198, 202, 204, 203, 207]}]}),
    ("budgetOptimization", "budget_optimization", {
        "monthly_income": 5000,
        "expenses": [{"category": "rent", "amount": 1500, "essential": True},
                     {"category": "dining", "amount": 600, "essential": False}],
        "debts": [{"name": "card", "balance": 3000, "apr": 0.2, "min_payment": 100}],
        "goals": [{"name": "car", "target": 6000, "current": 1000, "months": 24}]}),
    ("riskAssessment", "risk_assessment", {
        "age": 35, "horizon_years": 20, "income_stability": 4, "loss_tolerance": 3,
        "experience": 3}),
    ("cashflowForecast", "cashflow_forecast", {
        "history": [100, 110, 120, 130, 140, 150, 160, 170], "horizon": 3}),
]

# 1. The standard introspection queries, sent as any client sends them.
for options in [
    {"descriptions": True},
    {"descriptions": False},
    {"descriptions": True, "specified_by_url": True, "directive_is_repeatable": True,
     "schema_description": True, "input_value_deprecation": True},
]:
    r = requests.post(url, json={"query": get_introspection_query(**options)}, timeout=10)
    body = r.json()
    assert r.status_code == 200 and "errors" not in body, (options, r.status_code, body)
    schema = build_client_schema(body["data"])
    assert schema.query_type.name == "Query" and schema.mutation_type.name == "Mutation"
    assert "riskAssessment" in schema.query_type.fields
    print(f"ok introspection {options}")

# Only documents that do nothing but introspect get the introspection limits: the same
# nesting beside an ordinary field is refused by the configured depth limit.
deep = "type { ofType { ofType { ofType { ofType { ofType { ofType { ofType { name } } } } } } } }"
mixed = f"{{ context(userId: \"u\") {{ version }} __schema {{ types {{ fields {{ {deep} }} }} }} }}"
body = requests.post(url, json={"query": mixed}, timeout=10).json()
assert "deep" in body["errors"][0]["message"], body
print("ok a deep document that also selects an ordinary field keeps the depth limit")

# 2. gql loads the schema by introspection, then every operation matches REST.
client = Client(
    transport=RequestsHTTPTransport(url=url, timeout=10, retries=0),
    fetch_schema_from_transport=True,
)
with client as session:
    assert client.schema is not None and "cashflowForecast" in client.schema.query_type.fields
    print("ok gql fetched the schema")
    for field, op, rest_input in CASES:
        user = f"gql-{op}"
        document = gql(
            f"query($input: JSON) {{ {field}(userId: \"{user}\", inputJson: $input) "
            f"{{ operation confidence resultJson meta {{ cache }} }} }}"
        )
        answer = session.execute(document, variable_values={"input": rest_input})[field]
        rest = requests.post(
            f"{base}/ai/{op}", json={"user_id": user, "input": rest_input}, timeout=10
        )
        assert rest.status_code == 200, (op, rest.status_code, rest.text)
        expected = rest.json()
        assert answer["operation"] == op, answer
        assert answer["resultJson"] == expected["result"], (op, answer, expected)
        assert answer["confidence"] == expected["confidence"], (op, answer, expected)
        # The GraphQL query came first: REST answered from the entry GraphQL filled.
        assert answer["meta"]["cache"] == "miss", answer
        assert rest.headers["X-Atlas-Cache"] == "hit", dict(rest.headers)
        print(f"ok {field} = REST {op}: {json.dumps(answer['resultJson'])[:60]}...")

print("all checks passed")
