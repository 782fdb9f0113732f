#!/usr/bin/env bash
# install-deps.sh - the single list of what Ferry needs on Debian 12, installed when missing.
#
# Build: a C17 compiler, CMake. Tests: cmocka (unit), clang + its runtime (libFuzzer and
# sanitizers), ONNX's backend test data, Python with numpy/onnx/pytest, and PyTorch with
# torchvision to export the end-to-end models, scikit-learn for the ONNX-ML comparisons. The HTTP server needs libmicrohttpd and jansson;
# wrk drives its benchmark. The engine itself needs only libc and libm.
set -euo pipefail

packages=(
  build-essential cmake pkg-config
  clang libclang-rt-14-dev
  libcmocka-dev
  libmicrohttpd-dev libjansson-dev
  wrk curl
  libonnx-testdata
  python3 python3-numpy python3-onnx python3-pytest python3-requests
  python3-torch python3-torchvision python3-sklearn
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "install-deps: installing ${missing[*]}" >&2
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
