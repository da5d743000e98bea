-- wrk script for bench/api_bench.sh. Environment:
--   MODE   read | create | update | list
--   SLUGS  comma-separated tenant slugs; TOKENS the matching API tokens
-- Each request picks a tenant at random and one of its 100 seeded records.
local slugs, tokens = {}, {}
for s in string.gmatch(os.getenv("SLUGS"), "[^,]+") do slugs[#slugs + 1] = s end
for t in string.gmatch(os.getenv("TOKENS"), "[^,]+") do tokens[#tokens + 1] = t end
local mode = os.getenv("MODE")

request = function()
  local i = math.random(#slugs)
  local base = "/t/" .. slugs[i] .. "/api/collections/items/records"
  local h = { ["Authorization"] = "Bearer " .. tokens[i] }
  if mode == "read" then
    return wrk.format("GET", base .. "/b" .. math.random(0, 99), h)
  elseif mode == "list" then
    return wrk.format("GET", base .. "?limit=50", h)
  end
  h["Content-Type"] = "application/json"
  local body = '{"title":"t' .. math.random(1, 1000000000) .. '","n":' .. math.random(1, 1000) .. '}'
  if mode == "create" then
    return wrk.format("POST", base, h, body)
  end
  return wrk.format("PATCH", base .. "/b" .. math.random(0, 99), h, body)
end

done = function(summary, latency, requests)
  io.write(string.format("P99_MS %.3f\n", latency:percentile(99) / 1000))
end
