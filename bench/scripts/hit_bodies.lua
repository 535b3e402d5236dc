-- wrk script: POST /ai/portfolio_analysis over 4096 distinct inputs (2–4 holdings × 8–16
-- closes, 16 users), every request built once in init() so that wrk's per-request cost is
-- one table lookup: the client stays cheaper than the server it measures (MEASURING.md).
-- The floor server gets exactly these requests too (it answers each head with its fixed
-- response), so both servers cost the client the same.
--
-- Env: HIT_KEYS (distinct bodies, default 4096), HIT_PATH (default /ai/portfolio_analysis).
local keys = tonumber(os.getenv("HIT_KEYS") or "4096")
local path = os.getenv("HIT_PATH") or "/ai/portfolio_analysis"
local requests = {}
local n = 0

-- A small deterministic generator (Park–Miller), so every run sends the same bytes.
local seed = 42
local function below(m)
  seed = (seed * 16807) % 2147483647
  return seed % m
end

local function money(cents)
  return string.format("%d.%02d", math.floor(cents / 100), cents % 100)
end

function init(args)
  for k = 0, keys - 1 do
    local holdings = 2 + below(3)
    local len = 8 + below(9)
    local parts = {}
    local used = {}
    for h = 0, holdings - 1 do
      local symbol = below(500)
      while used[symbol] do symbol = (symbol + 1) % 500 end
      used[symbol] = true
      local cents = (h == 0) and (10000 + k) or (5000 + below(20000))
      local prices = { money(cents) }
      for t = 2, len do
        local step = below(401) - 200
        cents = math.max(100, cents + math.floor(cents * step / 10000))
        prices[t] = money(cents)
      end
      parts[#parts + 1] = string.format('{"symbol":"S%d","weight":%d,"prices":[%s]}',
        symbol, 1 + below(9), table.concat(prices, ","))
    end
    local body = string.format('{"user_id":"bench-u%d","input":{"holdings":[%s]}}',
      k % 16, table.concat(parts, ","))
    requests[k + 1] = wrk.format("POST", path, { ["Content-Type"] = "application/json" }, body)
  end
  -- Each connection of each thread starts at a different place in the list.
  n = math.random(0, keys - 1)
end

function request()
  n = n % keys + 1
  return requests[n]
end
