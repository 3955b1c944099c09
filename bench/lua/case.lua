-- Drives one benchmark case from a pool of pre-built requests (one per line of a spec file).
--
-- The harness writes the pool with each request repeated in proportion to its weight, so
-- picking a line at random gives the case's mix (e.g. 80% catalog, 15% reads, 5% writes).
-- Spec line: METHOD <TAB> PATH <TAB> BODY ("-" for none) [<TAB> Header: value]...
-- Arguments (after "--"): spec=PATH [delay=MS]. For paced runs the harness appends pace.lua,
-- which defines wrk's delay(); it is not defined here because its mere presence makes wrk
-- put a timer before every request, which would slow the saturation runs.

local pool = {}
local delay_ms = 0

local function split(line)
  local fields = {}
  for field in (line .. "\t"):gmatch("([^\t]*)\t") do
    fields[#fields + 1] = field
  end
  return fields
end

function init(args)
  local spec
  for _, arg in ipairs(args) do
    local key, value = arg:match("^(%w+)=(.*)$")
    if key == "spec" then spec = value end
    if key == "delay" then delay_ms = tonumber(value) end
  end
  math.randomseed(os.time() + (tonumber(tostring({}):match("0x(%x+)"), 16) or 0) % 100000)
  for line in io.lines(spec) do
    if line ~= "" then
      local f = split(line)
      local headers = {}
      for i = 4, #f do
        local name, value = f[i]:match("^([^:]+):%s*(.*)$")
        if name then headers[name] = value end
      end
      local body = f[3]
      if body == "-" then body = nil end
      pool[#pool + 1] = wrk.format(f[1], f[2], headers, body)
    end
  end
end

function request()
  return pool[math.random(#pool)]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"duration_us":%d,"requests":%d,"bytes":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d,' ..
    '"mean_us":%.1f,"max_us":%d}\n',
    summary.duration, summary.requests, summary.bytes, e.connect, e.read, e.write,
    e.status, e.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9), latency.mean, latency.max))
end
