-- wrk script: POST /ai/risk_assessment with a distinct user on every request, so no request
-- is a cache hit or joins another's computation (every one is a model call).
local counter = 0
local thread_id = 0
function setup(thread)
  thread:set("tid", thread_id)
  thread_id = thread_id + 1
end
function request()
  counter = counter + 1
  local body = string.format('{"user_id":"bench-%d-%d","input":{"age":%d,"horizon_years":20,"income_stability":4,"loss_tolerance":3,"experience":3}}', tid or 0, counter, 20 + counter % 50)
  return wrk.format("POST", "/ai/risk_assessment", {["Content-Type"] = "application/json"}, body)
end
