-- wrk workload for the sd35 benchmark: the client's real flow, the same script for every server.
--
--   wrk -tN -cN -d10s --timeout 5s -s bench/flow.lua http://127.0.0.1:PORT -- MODE API_KEY POLLS [ARG]
--
-- ONE CONNECTION PER wrk THREAD (-t and -c equal; bench/loadgen.py builds the command so): wrk keeps one
-- Lua state per thread and does not say which connection an answer belongs to, so a thread with one
-- connection is the only way to follow a job from its submit to its final poll.
--
-- MODE
--   flow      each connection, like ImagePipelineClient.generate without downloading: POST /sd3_5/v1 (the
--             provider page's example body), then exactly POLLS status polls of the id that submit answered
--             (GET /sd3_5/v1/status/ID): POLLS-1 while the job is PENDING, and the final poll. Then the next job.
--             The count is fixed, not read from the answers, so every server gets the same request mix; the
--             answers are checked against the flow (submit PENDING, polls PENDING, final SUCCESS with
--             download_urls) and counted, so a server that cannot imitate it shows in "flow".
--   download  the flow, then GET of the final answer's download_urls[1] (tag download_first: the first
--             download of a new image; the prompt carries a per-run nonce and a per-job counter, so every
--             job's image is new),
--             then ARG more GETs of the same URL (tag download_cached).
--   cached    GET ARG (a path) again and again (tag download_cached): the same image again.
--
-- Every request is tagged (submit, status, download_first, download_cached); its latency is taken with
-- CLOCK_MONOTONIC around the request (request() is called just before wrk writes it, response() when its
-- answer is complete) into a per-thread histogram of 1 % wide buckets. Only numbers and strings cross from a
-- thread's Lua state to done()'s: wrk's thread:get pops a copied table twice, which corrupts the thread's
-- stack and crashes wrk at random (seen at 32 connections), so every count is a global number of its own
-- (h_<tag>_<bucket>, n_<tag>, e_<tag>, f_<outcome>). done() prints one line
--   FLOW_JSON {"duration_us":..,"requests":..,"errors":{..},"latency_us":{..},"tags":{TAG:{..}},"flow":{..}}
-- that bench/loadgen.py parses (latencies in microseconds; per tag: count, http_errors, latency_us).

local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } sd35_timespec;
int clock_gettime(int clk_id, sd35_timespec *tp);
]]
local ts = ffi.new("sd35_timespec")
local function now_us()
  ffi.C.clock_gettime(1, ts)  -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) * 1000000 + tonumber(ts.tv_nsec) / 1000
end

local TAGS = { "submit", "status", "download_first", "download_cached" }

-- Latency buckets 1 % wide: bucket b holds [1.01^b, 1.01^(b+1)) microseconds and stands for its
-- geometric middle (under 0.5 % off); 1 us to 60 s is about 1,800 buckets.
local LOG_STEP = math.log(1.01)
local MAX_BUCKET = 1800
local function bucket(us)
  if us < 1 then return 0 end
  local b = math.floor(math.log(us) / LOG_STEP)
  return b > MAX_BUCKET and MAX_BUCKET or b
end
local function bucket_value(b)
  return math.exp((b + 0.5) * LOG_STEP)
end
-- What the answers said against what the client's flow expects (the names bench/loadgen.py reads).
local OUTCOMES = { "submit_pending", "submit_other", "submit_without_id", "poll_pending", "poll_not_pending",
  "final_success", "final_not_success", "no_download_url", "image_ok", "image_not_image" }
-- The global names, made once (no string building per request).
local H, LO, HI, N, E, SUM, F = {}, {}, {}, {}, {}, {}, {}
for _, t in ipairs(TAGS) do
  H[t] = {}
  for b = 0, MAX_BUCKET do H[t][b] = "h_" .. t .. "_" .. b end
  LO[t], HI[t], N[t], E[t], SUM[t] = "lo_" .. t, "hi_" .. t, "n_" .. t, "e_" .. t, "sum_" .. t
end
for _, k in ipairs(OUTCOMES) do F[k] = "f_" .. k end

local PROMPT = "beautiful waterfall in the rainforest, anime style"
local function submit_body(prompt)
  return '{"prompt":"' .. prompt .. '",'
    .. '"negative_prompt":"error, cropped, worst quality, low quality, duplicate, bad proportions, incomplete subject",'
    .. '"num_inference_steps":4,"samples":1,"guidance_scale":0.0,"width":1024,"height":1024}'
end

-- ------------------------------------------------------------------ the main state: threads to collect

local threads = {}

function setup(thread)
  thread:set("thread_index", #threads + 1)
  table.insert(threads, thread)
end

-- --------------------------------------------------------------------------- per thread (= connection)

-- Read by done() through thread:get, numbers only: h_<tag>_<bucket> (answers in that latency bucket),
-- lo_<tag> and hi_<tag> (the lowest and highest bucket used), n_<tag> (answers), e_<tag> (answers >= 400),
-- sum_<tag> (microseconds), f_<outcome> (see OUTCOMES); bench_mode and bench_polls (strings, numbers).
local mode, api_key, polls, arg4
local headers_json, headers_get
local submit_req
local phase = "submit"  -- the next request: submit | status | download_first | download_cached
local tag, t0
local job_status_req, polls_done, download_req, cached_left
local jobs = 0
local nonce  -- per run, so a new run's images are new even on the same server

local function count_flow(key)
  local name = F[key]
  _G[name] = (_G[name] or 0) + 1
end

function init(args)
  mode = args[1] or "flow"
  api_key = args[2] or "bench-key"
  polls = tonumber(args[3] or "2") or 2
  bench_mode, bench_polls = mode, polls  -- globals, for done()
  nonce = string.format("%x", math.floor(now_us()))
  arg4 = args[4]
  for _, t in ipairs(TAGS) do
    _G[N[t]], _G[E[t]], _G[SUM[t]] = 0, 0, 0
  end
  headers_json = { ["API-Key"] = api_key, ["Content-Type"] = "application/json" }
  headers_get = { ["API-Key"] = api_key }
  submit_req = wrk.format("POST", "/sd3_5/v1", headers_json, submit_body(PROMPT))
  if mode == "cached" then
    phase = "download_cached"
    download_req = wrk.format("GET", arg4 or "/", {}, nil)
  end
end

function request()
  tag = phase
  t0 = now_us()
  if phase == "submit" then
    if mode == "download" then
      jobs = jobs + 1
      return wrk.format("POST", "/sd3_5/v1", headers_json,
        submit_body(PROMPT .. " #" .. nonce .. "-" .. (thread_index or 0) .. "-" .. jobs))
    end
    return submit_req
  elseif phase == "status" then
    return job_status_req
  end
  return download_req  -- download_first, download_cached
end

local function answer_status(body)
  return body and string.match(body, '"status"%s*:%s*"(%u+)"')
end

local function first_download_path(body)
  local url = body and string.match(body, '"download_urls"%s*:%s*%[%s*"([^"]+)"')
  if not url then return nil end
  local path = string.match(url, "^%a[%w+.-]*://[^/]+(/.*)$") or url
  return path
end

function response(status, headers, body)
  local us = now_us() - t0
  local b = bucket(us)
  local name = H[tag][b]
  _G[name] = (_G[name] or 0) + 1
  local lo, hi = LO[tag], HI[tag]
  if _G[lo] == nil or b < _G[lo] then _G[lo] = b end
  if _G[hi] == nil or b > _G[hi] then _G[hi] = b end
  _G[N[tag]] = _G[N[tag]] + 1
  _G[SUM[tag]] = _G[SUM[tag]] + us
  if status >= 400 then _G[E[tag]] = _G[E[tag]] + 1 end

  if tag == "submit" then
    local id = body and string.match(body, '"id"%s*:%s*"([^"]+)"')
    local said = answer_status(body)
    if status == 200 and said == "PENDING" then count_flow("submit_pending") else count_flow("submit_other") end
    if not id then count_flow("submit_without_id") end
    job_status_req = wrk.format("GET", "/sd3_5/v1/status/" .. (id or "bench-no-id"), headers_get, nil)
    polls_done = 0
    phase = polls > 0 and "status" or "submit"
  elseif tag == "status" then
    polls_done = polls_done + 1
    local said = answer_status(body)
    if polls_done < polls then
      if status == 200 and said == "PENDING" then count_flow("poll_pending") else count_flow("poll_not_pending") end
    else
      local path = first_download_path(body)
      if status == 200 and said == "SUCCESS" and path then count_flow("final_success") else count_flow("final_not_success") end
      if mode == "download" and path then
        download_req = wrk.format("GET", path, {}, nil)
        phase = "download_first"
      else
        if mode == "download" then count_flow("no_download_url") end
        phase = "submit"
      end
      return
    end
  elseif tag == "download_first" then
    cached_left = tonumber(arg4 or "0") or 0
    phase = cached_left > 0 and "download_cached" or "submit"
  elseif tag == "download_cached" and mode == "download" then
    cached_left = cached_left - 1
    if cached_left <= 0 then phase = "submit" end
  end
  if tag == "download_first" or tag == "download_cached" then
    local ctype = headers["Content-Type"] or headers["content-type"] or ""
    if status == 200 and string.match(ctype, "^image/") and body and #body > 1000 then
      count_flow("image_ok")
    else
      count_flow("image_not_image")
    end
  end
end

-- ------------------------------------------------------------------------------------ the summary

local function percentile(merged, lo, hi, total, pct)
  local rank = math.max(1, math.ceil(pct * total / 100))
  local seen = 0
  for b = lo, hi do
    seen = seen + (merged[b] or 0)
    if seen >= rank then return bucket_value(b) end
  end
  return bucket_value(hi)
end

function done(summary, latency, requests)
  local tags, flows = {}, {}
  for _, t in ipairs(TAGS) do
    local merged, lo, hi, total, errors, sum = {}, nil, nil, 0, 0, 0
    for _, thread in ipairs(threads) do
      local tlo, thi = thread:get(LO[t]), thread:get(HI[t])
      if tlo ~= nil then
        for b = tlo, thi do
          local n = thread:get(H[t][b])
          if n then merged[b] = (merged[b] or 0) + n end
        end
        lo = (lo == nil or tlo < lo) and tlo or lo
        hi = (hi == nil or thi > hi) and thi or hi
      end
      total = total + (thread:get(N[t]) or 0)
      errors = errors + (thread:get(E[t]) or 0)
      sum = sum + (thread:get(SUM[t]) or 0)
    end
    if total > 0 and lo ~= nil then
      table.insert(tags, string.format(
        '"%s":{"count":%d,"http_errors":%d,"latency_us":{"p50":%.1f,"p90":%.1f,"p99":%.1f,"p999":%.1f,'
          .. '"min":%.1f,"max":%.1f,"mean":%.1f}}',
        t, total, errors, percentile(merged, lo, hi, total, 50), percentile(merged, lo, hi, total, 90),
        percentile(merged, lo, hi, total, 99), percentile(merged, lo, hi, total, 99.9),
        bucket_value(lo), bucket_value(hi), sum / total))
    end
  end
  for _, k in ipairs(OUTCOMES) do
    local n = 0
    for _, thread in ipairs(threads) do n = n + (thread:get(F[k]) or 0) end
    if n > 0 then table.insert(flows, string.format('"%s":%d', k, n)) end
  end
  local first = threads[1]
  local mode_name = first and first:get("bench_mode") or "?"
  local poll_count = first and first:get("bench_polls") or 0
  local e = summary.errors
  io.write(string.format(
    'FLOW_JSON {"mode":"%s","polls":%d,"threads":%d,"duration_us":%d,"requests":%d,"bytes":%d,'
      .. '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},'
      .. '"latency_us":{"min":%d,"mean":%.2f,"max":%d,"p50":%d,"p90":%d,"p99":%d,"p999":%d},'
      .. '"tags":{%s},"flow":{%s}}\n',
    mode_name, poll_count, #threads, summary.duration, summary.requests, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.mean, latency.max,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
    table.concat(tags, ","), table.concat(flows, ",")))
end
