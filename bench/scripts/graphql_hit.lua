-- wrk script: the ai_hit.lua request as one GraphQL field (same user, same input, so the same
-- cache entry), with the typed input as a variable, asking for the whole typed result, the
-- confidence and meta (the information the REST answer carries).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"query":"query($i: PortfolioAnalysisInput) { portfolioAnalysis(userId: \\"bench-user\\", input: $i) { result { symbols weights returns expectedReturn volatility sharpeRatio sortinoRatio maxDrawdown var95 cvar95 beta correlation concentrationHhi minVarianceWeights maxSharpeWeights maxSharpeMethod maxSharpeRatio rebalancing { symbol currentWeight targetWeight trade action } } confidence meta { cache shard } } }","variables":{"i":{"holdings":[{"symbol":"AAPL","weight":0.6,"prices":[100,102,101,105,107,106,108,110]},{"symbol":"MSFT","weight":0.4,"prices":[200,198,202,204,203,207,209,208]}]}}}'
wrk.path = "/graphql"
