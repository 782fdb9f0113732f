-- binary.lua - wrk script: POSTs one request in Triton's binary tensor format, read from a file
-- made by run.sh (JSON header + raw tensor bytes), to the path given as the first argument.
--   wrk -t1 -c2 -d10s -s bench/serve/binary.lua URL -- PATH BODY_FILE HEADER_LENGTH

local failures = 0

function init(args)
  local f = assert(io.open(args[2], "rb"))
  wrk.body = f:read("*a")
  f:close()
  wrk.method = "POST"
  wrk.path = args[1]
  wrk.headers["Content-Type"] = "application/octet-stream"
  wrk.headers["Inference-Header-Content-Length"] = args[3]
end

function response(status, headers, body)
  if status ~= 200 then failures = failures + 1 end
end

function done(summary, latency, requests)
  local rps = summary.requests / (summary.duration / 1e6)
  local errors = summary.errors.status + summary.errors.connect + summary.errors.read +
                 summary.errors.write + summary.errors.timeout
  io.write(string.format("RESULT rps=%.2f p50_ms=%.3f p99_ms=%.3f errors=%d\n", rps,
                         latency:percentile(50) / 1000, latency:percentile(99) / 1000, errors))
end
