-- wrk workload for the sd35 benchmark: the same script drives every server.
--
--   wrk -t2 -c32 -d10s --latency -s bench/workload.lua http://127.0.0.1:PORT -- STATUS_ID API_KEY [STATUS_PER_SUBMIT]
--
-- Each wrk thread cycles through: 1 submit (POST /sd3_5/v1, the provider page's example body)
-- followed by STATUS_PER_SUBMIT (default 3) polls of GET /sd3_5/v1/status/STATUS_ID.
-- STATUS_ID is a job created on the target before the run.
-- At the end it prints one line "WRK_JSON {...}" with exact figures (latencies in microseconds),
-- which bench/loadgen.py parses; the usual --latency text stays above it as a fallback.

local submit_body = '{"prompt":"beautiful waterfall in the rainforest, anime style",'
  .. '"negative_prompt":"error, cropped, worst quality, low quality, duplicate, bad proportions, incomplete subject",'
  .. '"num_inference_steps":4,"samples":1,"guidance_scale":0.0,"width":1024,"height":1024}'

local submit_req, status_req
local period = 4
local counter = 0

function init(args)
  local status_id = args[1] or "bench-id"
  local api_key = args[2] or "bench-key"
  period = (tonumber(args[3] or "3") or 3) + 1
  submit_req = wrk.format("POST", "/sd3_5/v1",
    { ["API-Key"] = api_key, ["Content-Type"] = "application/json" }, submit_body)
  status_req = wrk.format("GET", "/sd3_5/v1/status/" .. status_id, { ["API-Key"] = api_key }, nil)
end

function request()
  counter = counter + 1
  if counter % period == 1 or period == 1 then
    return submit_req
  end
  return status_req
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"duration_us":%d,"requests":%d,"bytes":%d,'
      .. '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},'
      .. '"latency_us":{"min":%d,"mean":%.2f,"stdev":%.2f,"max":%d,'
      .. '"p50":%d,"p75":%d,"p90":%d,"p99":%d,"p999":%d}}\n',
    summary.duration, summary.requests, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.mean, latency.stdev, latency.max,
    latency:percentile(50), latency:percentile(75), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9)))
end
