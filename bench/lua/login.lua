-- wrk script for bench/login_bench.sh: POST /t/<SLUG>/api/auth/login with
-- EMAIL and PASSWORD (a wrong one for the flood). Counts answers by status.
local slug, email, password = os.getenv("SLUG"), os.getenv("EMAIL"), os.getenv("PASSWORD")
local body = '{"email":"' .. email .. '","password":"' .. password .. '"}'
local counts = {}
local threads = {}

setup = function(thread)
  table.insert(threads, thread)
end

request = function()
  return wrk.format("POST", "/t/" .. slug .. "/api/auth/login",
                    { ["Content-Type"] = "application/json" }, body)
end

response = function(status, headers, body)
  counts[status] = (counts[status] or 0) + 1
end

done = function(summary, latency, requests)
  io.write(string.format("P99_MS %.3f\n", latency:percentile(99) / 1000))
end
