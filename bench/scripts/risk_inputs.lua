-- wrk script: the same risk_assessment inputs, either as Atlas requests (POST
-- /ai/risk_assessment, MODE=atlas) or as Open Inference Protocol requests of one input each
-- (POST $V2_PATH, MODE=v2, default /v2/models/risk/infer). KEYS distinct inputs (default
-- 4096); TAG goes into the Atlas user id, so a new TAG makes every key a cache miss again.
-- Requests are built once in init() and returned in turn.
local requests = {}
local n = 0
local i = 0
function init(args)
  local keys = tonumber(os.getenv("KEYS") or "4096")
  local mode = os.getenv("MODE") or "atlas"
  local tag = os.getenv("TAG") or "t"
  local path = os.getenv("V2_PATH") or "/v2/models/risk/infer"
  local headers = {["Content-Type"] = "application/json"}
  for k = 0, keys - 1 do
    local age = 18 + k % 100
    local horizon = math.floor(k / 100) % 50
    local input = string.format('{"age":%d,"horizon_years":%d,"income_stability":4,"loss_tolerance":3,"experience":2}', age, horizon)
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
  return requests[i]
end
