#!/usr/bin/env bash
# serve-example.sh - what `make run` does: serves the example repository (examples/repository:
# an MLP, a small CNN, a linear model) with `ferry serve`, sends one request to show that it
# works, prints the curl command, and keeps serving until Ctrl-C.
#
#   scripts/serve-example.sh [BUILD_DIR]      (default: build; port: FERRY_HTTP_PORT or 8000)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
BUILD=${1:-build}
PORT=${FERRY_HTTP_PORT:-8000}
FERRY=$BUILD/ferry
[ -x "$FERRY" ] || { echo "serve-example: $FERRY is missing; run 'make build' first" >&2; exit 1; }
[ -f examples/repository/mlp/1/model.onnx ] || /usr/bin/python3 examples/make_repository.py

FEATURES=$(printf '0.5,%.0s' $(seq 63))0.5
BODY='{"inputs":[{"name":"features","shape":[1,64],"datatype":"FP32","data":['$FEATURES']}]}'
CURL="curl -s http://127.0.0.1:$PORT/v2/models/mlp/infer -d '$BODY'"

"$FERRY" serve --model-repository examples/repository --http-port "$PORT" &
SERVER=$!
trap 'kill -TERM $SERVER 2> /dev/null || true; wait $SERVER; exit 0' INT TERM
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$PORT/v2/health/ready" > /dev/null 2>&1 && break
  kill -0 $SERVER 2> /dev/null || { wait $SERVER || exit $?; }
  sleep 0.1
done

echo
echo "ferry serve is listening on 127.0.0.1:$PORT with examples/repository (mlp, cnn, linear)."
echo "Inference, as you can run it from another terminal:"
echo
echo "  $CURL"
echo
echo "answer: $(eval "$CURL")"
echo
echo "More: curl -s http://127.0.0.1:$PORT/v2/models/mlp (metadata), .../metrics, and"
LINEAR='{"inputs":[{"name":"x","shape":[1,8],"datatype":"FP32","data":[1,2,3,4,5,6,7,8]}]}'
echo "curl -s http://127.0.0.1:$PORT/v2/models/linear/infer -d '$LINEAR'"
echo "Ctrl-C stops the server."
wait $SERVER
