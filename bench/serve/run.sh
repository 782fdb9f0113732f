#!/usr/bin/env bash
# run.sh - benchmark of `ferry serve` (a measurement, never a test).
#
#   bench/serve/run.sh [--seconds S] [--rounds R] [--connections C] [--skip-resnet]
#
# 1. MLP, JSON: wrk posts a KServe v2 JSON body of 64 floats to `ferry serve` (examples/
#    repository) and to a Node.js server running the same model with onnxruntime-node
#    (bench/serve/ort_server.js), C connections (32), S seconds (10) per run, alternating
#    R rounds (5); prints the median requests/s, p50/p99 latency and CPU time per request of
#    each, and the median of the per-round requests/s ratios.
# 2. ResNet-18, binary tensors: `ferry serve` (1 instance) fed by wrk with Triton's binary
#    format at batch 1 (2 connections, so the instance never waits for the network), against
#    the engine alone (`ferry bench --batch 1`, same thread count).
#
# Environment: BUILD (build dir, default build), FERRY_BIN (default $BUILD/ferry), RESNET
# (default bench/models/resnet18/model.onnx, else exported with PyTorch into build/).
# Needs wrk, node; installs onnxruntime-node into bench/serve/node_modules when missing.
# Results depend on the machine: run it on a quiet one, and compare within one run only.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
SECONDS_PER_RUN=8
ROUNDS=5
CONNECTIONS=32
RESNET_ON=1
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) SECONDS_PER_RUN=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --connections) CONNECTIONS=$2; shift 2 ;;
    --skip-resnet) RESNET_ON=0; shift ;;
    *) echo "usage: $0 [--seconds S] [--rounds R] [--connections C] [--skip-resnet]" >&2; exit 2 ;;
  esac
done

BUILD=${BUILD:-build}
FERRY=${FERRY_BIN:-$ROOT/$BUILD/ferry}
PY=/usr/bin/python3
WORK=$(mktemp -d /tmp/ferry-bench-serve.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

if [ -z "${FERRY_BIN:-}" ]; then
  cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release > /dev/null
  cmake --build "$BUILD" -j"$(nproc)" --target ferry > /dev/null
fi
command -v wrk > /dev/null || { echo "run.sh: wrk is missing (apt-get install wrk)" >&2; exit 1; }
command -v node > /dev/null || { echo "run.sh: node is missing" >&2; exit 1; }
if ! (cd bench/serve && node -e "require.resolve('onnxruntime-node')" 2> /dev/null); then
  echo "run.sh: installing onnxruntime-node into bench/serve/node_modules" >&2
  (cd bench/serve && ONNXRUNTIME_NODE_INSTALL_CUDA=skip npm install --no-save --silent \
     onnxruntime-node > /dev/null)
fi
[ -f examples/repository/mlp/1/model.onnx ] || $PY examples/make_repository.py > /dev/null

# Starts `ferry serve` with the given arguments; sets PORT (read from the JSON start line).
start_ferry() {
  local log=$WORK/ferry-$RANDOM.log
  "$FERRY" serve --http-port 0 "$@" 2> "$log" &
  PIDS+=($!)
  FERRY_PID=$!
  PORT=
  for _ in $(seq 200); do
    PORT=$(grep -o '"event":"start".*"port":[0-9]*' "$log" 2> /dev/null | grep -o '[0-9]*$' || true)
    [ -n "$PORT" ] && break
    sleep 0.05
  done
  [ -n "$PORT" ] || { echo "run.sh: ferry serve did not start:" >&2; cat "$log" >&2; exit 1; }
}

stop_pid() {
  kill "$1" 2> /dev/null || true
  wait "$1" 2> /dev/null || true
}

# wrk_result URL SCRIPT ARGS...: prints "rps p50 p99 errors".
wrk_result() {
  local url=$1 script=$2 conns=$3 threads=$4
  shift 4
  wrk -t"$threads" -c"$conns" -d"${SECONDS_PER_RUN}s" --latency -s "$script" "$url" -- "$@" \
    | sed -n 's/^RESULT rps=\([0-9.]*\) p50_ms=\([0-9.]*\) p99_ms=\([0-9.]*\) errors=/\1 \2 \3 /p'
}

median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

# CPU time (user + system, all threads) a process has used so far, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# measure PID URL: one wrk run of the MLP body; prints "rps p50 p99 errors cpu_us_per_request".
# The CPU time per request does not depend on what else the machine runs, unlike requests/s.
measure() {
  local pid=$1 url=$2 t0 t1 line
  t0=$(cpu_ticks "$pid")
  line=$(wrk_result "$url" bench/serve/infer.lua "$CONNECTIONS" 2)
  t1=$(cpu_ticks "$pid")
  echo "$line" | awk -v t="$((t1 - t0))" -v hz="$(getconf CLK_TCK)" -v s="$SECONDS_PER_RUN" \
    '{ printf "%s %s %s %s %.1f\n", $1, $2, $3, $4, (t / hz) * 1e6 / ($1 * s) }'
}

echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo

# ------------------------------------------------------------------------------------------
# 1. MLP, JSON body of 64 floats
# ------------------------------------------------------------------------------------------
start_ferry --model-repository examples/repository
FERRY_PORT=$PORT
node bench/serve/ort_server.js examples/repository/mlp/1/model.onnx mlp > "$WORK/node.out" &
NODE_PID=$!
PIDS+=($NODE_PID)
for _ in $(seq 200); do [ -s "$WORK/node.out" ] && break; sleep 0.05; done
NODE_PORT=$(grep -o '[0-9][0-9]*' "$WORK/node.out" | head -1)

# Warm-up: both servers answer, and their first-request costs are out of the way.
SAVED=$SECONDS_PER_RUN
SECONDS_PER_RUN=2
wrk_result "http://127.0.0.1:$FERRY_PORT" bench/serve/infer.lua "$CONNECTIONS" 2 > /dev/null
wrk_result "http://127.0.0.1:$NODE_PORT" bench/serve/infer.lua "$CONNECTIONS" 2 > /dev/null
SECONDS_PER_RUN=$SAVED

: > "$WORK/ferry.txt"
: > "$WORK/node.txt"
for r in $(seq "$ROUNDS"); do
  measure "$FERRY_PID" "http://127.0.0.1:$FERRY_PORT" >> "$WORK/ferry.txt"
  measure "$NODE_PID" "http://127.0.0.1:$NODE_PORT" >> "$WORK/node.txt"
  echo "round $r: ferry $(tail -1 "$WORK/ferry.txt")   node+ort $(tail -1 "$WORK/node.txt")" \
    "  (rps p50_ms p99_ms errors cpu_us/req)"
done
stop_pid "$NODE_PID"
stop_pid "$FERRY_PID"

f_rps=$(cut -d' ' -f1 "$WORK/ferry.txt" | median)
f_p50=$(cut -d' ' -f2 "$WORK/ferry.txt" | median)
f_p99=$(cut -d' ' -f3 "$WORK/ferry.txt" | median)
f_err=$(awk '{s+=$4} END {print s}' "$WORK/ferry.txt")
n_rps=$(cut -d' ' -f1 "$WORK/node.txt" | median)
n_p50=$(cut -d' ' -f2 "$WORK/node.txt" | median)
n_p99=$(cut -d' ' -f3 "$WORK/node.txt" | median)
n_err=$(awk '{s+=$4} END {print s}' "$WORK/node.txt")
f_cpu=$(cut -d' ' -f5 "$WORK/ferry.txt" | median)
n_cpu=$(cut -d' ' -f5 "$WORK/node.txt" | median)
ratio=$(paste -d' ' "$WORK/ferry.txt" "$WORK/node.txt" | awk '{print $1 / $6}' | median)
echo
echo "MLP, JSON body of 64 floats, $CONNECTIONS connections, ${SECONDS_PER_RUN}s x $ROUNDS rounds" \
     "(medians)"
ROW='| %-24s | %12.0f | %8.3f | %8.3f | %6d | %14.1f |\n'
printf '| %-24s | %12s | %8s | %8s | %6s | %14s |\n' server requests/s p50_ms p99_ms errors \
  cpu_us/request
printf '| %-24s | %12s | %8s | %8s | %6s | %14s |\n' ------------------------ ------------ \
  -------- -------- ------ --------------
printf "$ROW" "ferry serve" "$f_rps" "$f_p50" "$f_p99" "$f_err" "$f_cpu"
printf "$ROW" "node + onnxruntime-node" "$n_rps" "$n_p50" "$n_p99" "$n_err" "$n_cpu"
awk -v r="$ratio" -v fp="$f_p99" -v np="$n_p99" -v fc="$f_cpu" -v nc="$n_cpu" 'BEGIN {
  printf "ferry / node requests/s (median of per-round ratios): %.2fx (target >= 3x); " \
         "p99 %s (target lower); CPU per request: %.1fx less\n", r,
         (fp < np) ? "lower" : "NOT lower", nc / fc }'

# ------------------------------------------------------------------------------------------
# 2. ResNet-18, binary tensors, batch 1
# ------------------------------------------------------------------------------------------
[ "$RESNET_ON" = 1 ] || exit 0
RESNET=${RESNET:-bench/models/resnet18/model.onnx}
if [ ! -f "$RESNET" ]; then
  RESNET=$BUILD/e2e-models/resnet18-op13/model.onnx
  [ -f "$RESNET" ] || $PY tests/e2e/export_models.py --model resnet18 --opset 13 \
    --out "$BUILD/e2e-models/resnet18-op13" > /dev/null
fi
mkdir -p "$WORK/repo/resnet18/1"
cp "$RESNET" "$WORK/repo/resnet18/1/model.onnx"
# The request body: JSON header + 3x224x224 float32 in Triton's binary format.
HLEN=$($PY - "$WORK/repo/resnet18/1/model.onnx" "$WORK/resnet.body" <<'EOF'
import json, sys
import numpy as np
import onnx
m = onnx.load(sys.argv[1], load_external_data=False)
inp = [i for i in m.graph.input if i.name not in {t.name for t in m.graph.initializer}][0]
shape = [d.dim_value if d.dim_value > 0 else 1 for d in inp.type.tensor_type.shape.dim]
x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
head = json.dumps({"inputs": [{"name": inp.name, "shape": shape, "datatype": "FP32",
                               "parameters": {"binary_data_size": x.nbytes}}],
                   "parameters": {"binary_data_output": True}}).encode()
open(sys.argv[2], "wb").write(head + x.tobytes())
print(len(head))
EOF
)
# No config.pbtxt: the config comes from the model; batching off and one instance, so the
# server runs exactly what `ferry bench --batch 1 --threads 1` runs.
start_ferry --model-repository "$WORK/repo" --instances 1 --max-batch-size 0 --access-log off
"$FERRY" bench "$RESNET" --batch 1 --threads 1 --warmup 3 --seconds 2 --json > /dev/null
: > "$WORK/engine.txt"
: > "$WORK/served.txt"
# Alternating rounds, medians: the two measurements see the same machine conditions.
for r in $(seq "$ROUNDS"); do
  "$FERRY" bench "$RESNET" --batch 1 --threads 1 --warmup 1 --seconds "$SECONDS_PER_RUN" --json \
    | $PY -c 'import json,sys; d=json.load(sys.stdin); print(d["runs_per_s"], d["median_ms"])' \
    >> "$WORK/engine.txt"
  wrk_result "http://127.0.0.1:$PORT" bench/serve/binary.lua 2 1 /v2/models/resnet18/infer \
    "$WORK/resnet.body" "$HLEN" >> "$WORK/served.txt"
  echo "round $r: engine $(tail -1 "$WORK/engine.txt") (runs/s median_ms)   served" \
       "$(tail -1 "$WORK/served.txt") (rps p50_ms p99_ms errors)"
done
stop_pid "$FERRY_PID"
e_rps=$(cut -d' ' -f1 "$WORK/engine.txt" | median)
e_med=$(cut -d' ' -f2 "$WORK/engine.txt" | median)
srv_rps=$(cut -d' ' -f1 "$WORK/served.txt" | median)
srv_p50=$(cut -d' ' -f2 "$WORK/served.txt" | median)
srv_err=$(awk '{s+=$4} END {print s}' "$WORK/served.txt")
echo
echo "ResNet-18, batch 1, 1 instance / 1 engine thread, binary tensors" \
     "(${SECONDS_PER_RUN}s x $ROUNDS rounds, medians)"
printf '| %-34s | %10s | %10s |\n' measurement runs/s p50_ms
printf '| %-34s | %10s | %10s |\n' ---------------------------------- ---------- ----------
printf '| %-34s | %10.2f | %10.2f |\n' "engine alone (ferry bench)" "$e_rps" "$e_med"
printf '| %-34s | %10.2f | %10.2f |\n' "ferry serve, HTTP binary, 2 conns" "$srv_rps" "$srv_p50"
echo "(served p50 is a request's latency with 2 in flight: about two runs, one of them waiting)"
awk -v s="$srv_rps" -v e="$e_rps" 'BEGIN {
  printf "ferry serve / engine: %.1f%% (target: within 15%%, i.e. >= 85%%)\n", 100 * s / e }'
echo "errors: $srv_err"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
