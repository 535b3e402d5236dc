-- wrk script: the ai_hit.lua entry as one GraphQL field asking for the REST result as JSON
-- (`resultJson`), with confidence and meta.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"query":"query($i: PortfolioAnalysisInput) { portfolioAnalysis(userId: \\"bench-user\\", input: $i) { resultJson confidence meta { cache } } }","variables":{"i":{"holdings":[{"symbol":"AAPL","weight":0.6,"prices":[100,102,101,105,107,106,108,110]},{"symbol":"MSFT","weight":0.4,"prices":[200,198,202,204,203,207,209,208]}]}}}'
wrk.path = "/graphql"
