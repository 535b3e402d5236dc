-- wrk script: ai_hit.lua with `Authorization: Bearer $TOKEN` on every request.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. (os.getenv("TOKEN") or "")
wrk.body = '{"user_id":"bench-user","input":{"holdings":[{"symbol":"AAPL","weight":0.6,"prices":[100,102,101,105,107,106,108,110]},{"symbol":"MSFT","weight":0.4,"prices":[200,198,202,204,203,207,209,208]}]}}'
wrk.path = "/ai/portfolio_analysis"
