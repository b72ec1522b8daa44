-- wrk script for bench/sessions.py: every request appends one message with a unique
-- external_id to one of 32 sessions of its wrk thread (as bots in many channels do).
-- Arguments after "--": run id. Environment: KIOKU_BENCH_KEY (a write-scope API key).
local threads = {}

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  run = args[1] or "run"
  counter = 0
  headers = {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. os.getenv("KIOKU_BENCH_KEY"),
  }
end

function request()
  counter = counter + 1
  local path = string.format("/api/v1/sessions/bench:%s:w%d:s%d/messages", run, tid, counter % 32)
  local body = string.format(
    '{"messages":[{"content":"Message %d: the KG-200 shows E-21.","author":"user-%d",' ..
    '"external_id":"w%d-%d"}],"context":10}', counter, tid, tid, counter)
  return wrk.format("POST", path, headers, body)
end

function done(summary, latency, requests)
  io.write(string.format("WRK requests=%d non2xx=%d errors=%d p50=%.2f p95=%.2f p99=%.2f\n",
    summary.requests, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000))
end
