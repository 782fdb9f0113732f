-- infer.lua - wrk script: POSTs one KServe v2 JSON inference request (64 FP32 features) to the
-- path given as the first script argument (default /v2/models/mlp/infer), and counts non-200
-- answers so that a fast error path cannot pass for throughput.
--   wrk -t2 -c32 -d10s -s bench/serve/infer.lua http://127.0.0.1:8000 -- /v2/models/mlp/infer

local path = "/v2/models/mlp/infer"
local failures = 0

function init(args)
  if args[1] then path = args[1] end
  local values = {}
  for i = 1, 64 do values[i] = string.format("%.4f", ((i * 37) % 100) / 100 - 0.5) end
  wrk.method = "POST"
  wrk.path = path
  wrk.headers["Content-Type"] = "application/json"
  wrk.body = '{"inputs":[{"name":"features","shape":[1,64],"datatype":"FP32","data":[' ..
             table.concat(values, ",") .. ']}]}'
end

function response(status, headers, body)
  if status ~= 200 then failures = failures + 1 end
end

function done(summary, latency, requests)
  -- One machine-readable line for run.sh: requests/s, p50 and p99 in ms, errors.
  local rps = summary.requests / (summary.duration / 1e6)
  local errors = summary.errors.status + summary.errors.connect + summary.errors.read +
                 summary.errors.write + summary.errors.timeout
  io.write(string.format("RESULT rps=%.0f p50_ms=%.3f p99_ms=%.3f errors=%d\n", rps,
                         latency:percentile(50) / 1000, latency:percentile(99) / 1000, errors))
end
