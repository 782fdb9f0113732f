#!/usr/bin/python3
"""Ferry vs ONNX Runtime on the same machine, in the same run.

    bench/run.py [--ferry build/ferry] [--models mlp,resnet18,mobilenetv2,transformer]
                 [--batches 1,32] [--threads 1,2] [--seconds 3] [--repeats 3] [--cold 10]
                 [--no-openblas-env]

Exports the end-to-end models (tests/e2e/export_models.py, symbolic batch), installs
onnxruntime-node into bench/node_modules when missing, then for every model, batch and thread
count alternates `ferry bench --json` and `node bench/ort_bench.js` REPEATS times and prints the
median of the per-run medians and the Ferry/ORT ratio. The cold path (a new process that loads
the model, answers one inference and exits) is timed the same way. Peak RSS of `ferry bench`
is reported next to the model file size.

The machine is shared and noisy: compare only within one run. OPENBLAS_CORETYPE and
OPENBLAS_L2_SIZE are left as the environment sets them (Ferry does not use OpenBLAS).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np
import onnx

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
ONNX_TO_JS = {1: "float32", 11: "float64", 7: "int64", 6: "int32", 2: "uint8", 3: "int8",
              9: "bool"}


def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def ensure_ort():
    if os.path.isdir(os.path.join(HERE, "node_modules", "onnxruntime-node")):
        return
    print("installing onnxruntime-node into bench/node_modules ...", file=sys.stderr)
    env = dict(os.environ, ONNXRUNTIME_NODE_INSTALL_CUDA="skip")
    subprocess.run(["npm", "install", "--no-audit", "--no-fund"], cwd=HERE, check=True, env=env)


def export(model, workdir):
    out = os.path.join(workdir, model)
    if not os.path.exists(os.path.join(out, "model.onnx")):
        os.makedirs(out, exist_ok=True)
        sh([sys.executable, os.path.join(ROOT, "tests", "e2e", "export_models.py"), "--model",
            model, "--opset", "17", "--out", out, "--dynamic-batch"])
    return out


def input_specs(path, batch):
    m = onnx.load(path, load_external_data=False)
    inits = {i.name for i in m.graph.initializer}
    specs = []
    for vi in m.graph.input:
        if vi.name in inits:
            continue
        t = vi.type.tensor_type
        dims = []
        for i, d in enumerate(t.shape.dim):
            dims.append(d.dim_value if d.HasField("dim_value") else (batch if i == 0 else 1))
        specs.append("%s:%s:%s" % (vi.name, ONNX_TO_JS[t.elem_type], ",".join(map(str, dims))))
    return specs


def ferry_bench(ferry, path, batch, threads, seconds):
    out = sh([ferry, "bench", path, "--batch", str(batch), "--threads", str(threads),
              "--seconds", str(seconds), "--warmup", "5", "--json"])
    return json.loads(out.stdout.strip().splitlines()[-1])


def ort_bench(path, batch, threads, seconds):
    cmd = ["node", os.path.join(HERE, "ort_bench.js"), path, "--threads", str(threads),
           "--seconds", str(seconds), "--warmup", "5"]
    for s in input_specs(path, batch):
        cmd += ["--input", s]
    out = sh(cmd)
    return json.loads(out.stdout.strip().splitlines()[-1])


def cold(cmd, repeats):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ferry", default=os.path.join(ROOT, "build", "ferry"))
    ap.add_argument("--models", default="mlp,resnet18,mobilenetv2,transformer")
    ap.add_argument("--batches", default="1,32")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--seconds", type=float, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cold", type=int, default=10, help="cold-path processes per engine")
    ap.add_argument("--workdir", default=os.path.join(HERE, "models"))
    args = ap.parse_args()

    ensure_ort()
    rows = []
    print("| model | batch | threads | Ferry median ms | ORT median ms | Ferry/ORT |")
    print("| --- | --- | --- | --- | --- | --- |")
    for model in args.models.split(","):
        folder = export(model, args.workdir)
        path = os.path.join(folder, "model.onnx")
        for batch in map(int, args.batches.split(",")):
            for threads in map(int, args.threads.split(",")):
                f, o = [], []
                for _ in range(args.repeats):  # alternate so both see the same noise
                    f.append(ferry_bench(args.ferry, path, batch, threads, args.seconds))
                    o.append(ort_bench(path, batch, threads, args.seconds))
                print("  %s b%d t%d per repeat: Ferry %s, ORT %s" % (
                    model, batch, threads, " ".join("%.4g" % r["median_ms"] for r in f),
                    " ".join("%.4g" % r["median_ms"] for r in o)), file=sys.stderr, flush=True)
                fm = statistics.median(r["median_ms"] for r in f)
                om = statistics.median(r["median_ms"] for r in o)
                rows.append((model, batch, threads, fm, om))
                print("| %s | %d | %d | %.4f | %.4f | %.2f |" % (model, batch, threads, fm, om,
                                                                  fm / om), flush=True)
    if args.cold < 1:
        return
    print()
    print("| model | cold Ferry ms | cold ORT ms | Ferry/ORT | Ferry peak RSS MiB | model MiB |")
    print("| --- | --- | --- | --- | --- | --- |")
    for model in args.models.split(","):
        folder = os.path.join(args.workdir, model)
        path = os.path.join(folder, "model.onnx")
        x = np.load(os.path.join(folder, "input.npy"))
        fc = cold([args.ferry, "run", path, os.path.join(folder, "input.npy")], args.cold)
        specs = input_specs(path, x.shape[0])
        oc = cold(["node", os.path.join(HERE, "ort_bench.js"), path, "--cold"] +
                  sum([["--input", s] for s in specs], []), args.cold)
        rss = ferry_bench(args.ferry, path, 1, 1, 1)["peak_rss_mib"]
        size = os.path.getsize(path) / (1 << 20)
        print("| %s | %.1f | %.1f | %.2f | %.1f | %.1f |" % (model, fc, oc, fc / oc, rss, size),
              flush=True)


if __name__ == "__main__":
    main()
