-- wrk script: POST /ai/risk_assessment cycling through KEYS distinct users (env KEYS, default
-- 20000), so a run of at least KEYS requests touches every key and later runs repeat them.
local counter = 0
local keys = tonumber(os.getenv("KEYS") or "20000")
function request()
  local i = counter % keys
  counter = counter + 1
  local body = string.format('{"user_id":"l2-%d","input":{"age":40,"horizon_years":20,"income_stability":4,"loss_tolerance":3,"experience":3}}', i)
  return wrk.format("POST", "/ai/risk_assessment", {["Content-Type"] = "application/json"}, body)
end
