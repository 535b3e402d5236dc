-- wrk script: the same risk_assessment inputs, as Atlas requests (POST /ai/risk_assessment,
-- MODE=atlas), or as Open Inference Protocol requests of one input each (POST $V2_PATH,
-- MODE=v2, default /v2/models/risk/infer). KEYS distinct inputs (default 4096), built once in
-- init() and returned in turn; TAG goes into the Atlas user id. MODE=atlas-miss gives every
-- request a new user id (TAG-counter), so every request is a cache miss however long the
-- run: those requests are formatted per request (the client's cost is small next to a
-- model call's).
local requests = {}
local inputs = {}
local n = 0
local i = 0
local mode = "atlas"
local tag = "t"
local counter = 0
function init(args)
  local keys = tonumber(os.getenv("KEYS") or "4096")
  mode = os.getenv("MODE") or "atlas"
  tag = os.getenv("TAG") or "t"
  local path = os.getenv("V2_PATH") or "/v2/models/risk/infer"
  local headers = {["Content-Type"] = "application/json"}
  for k = 0, keys - 1 do
    local age = 18 + k % 100
    local horizon = math.floor(k / 100) % 50
    local input = string.format('{"age":%d,"horizon_years":%d,"income_stability":4,"loss_tolerance":3,"experience":2}', age, horizon)
    inputs[k + 1] = input
    if mode == "v2" then
      local escaped = input:gsub('"', '\\"')
      local body = '{"parameters":{"operation":"risk_assessment"},"inputs":[{"name":"input","datatype":"BYTES","shape":[1],"data":["' .. escaped .. '"]}]}'
      requests[k + 1] = wrk.format("POST", path, headers, body)
    else
      local body = string.format('{"user_id":"%s-%d","input":%s}', tag, k, input)
      requests[k + 1] = wrk.format("POST", "/ai/risk_assessment", headers, body)
    end
  end
  n = keys
end
function request()
  i = i % n + 1
  if mode == "atlas-miss" then
    counter = counter + 1
    local body = '{"user_id":"' .. tag .. '-' .. counter .. '","input":' .. inputs[i] .. '}'
    return wrk.format("POST", "/ai/risk_assessment", {["Content-Type"] = "application/json"}, body)
  end
  return requests[i]
end
