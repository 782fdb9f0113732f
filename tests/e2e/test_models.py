#!/usr/bin/python3
"""End-to-end check of one exported model against PyTorch's output.

    test_models.py --ferry BIN --model NAME --opset N --workdir DIR [--dynamic-batch] [--batch N]

Exports the model into DIR/NAME-opN (only when model.onnx, input.npy and expected.npy are not
all there already), runs

    BIN run DIR/NAME-opN/model.onnx DIR/NAME-opN/input.npy -o DIR/NAME-opN/ferry-out

and compares ferry-out/output.npy with expected.npy: same shape, same dtype and
numpy.allclose(rtol=1e-3, atol=1e-4). Prints the largest absolute and relative errors.
Exit status 0 on a match, 1 otherwise (including a ferry failure).
"""

import argparse
import os
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import export_models  # noqa: E402  (needs the sys.path entry above)

RTOL = 1e-3
ATOL = 1e-4
RUN_TIMEOUT_S = 600


def fail(message):
    print("FAIL: " + message)
    return 1


def ensure_exported(model, opset, model_dir, dynamic_batch, batch):
    needed = ["model.onnx", "input.npy", "expected.npy"]
    if all(os.path.isfile(os.path.join(model_dir, name)) for name in needed):
        print("using the export in " + model_dir)
        return
    print("exporting %s (opset %d) into %s" % (model, opset, model_dir))
    export_models.export(model, opset, model_dir, dynamic_batch, batch)


def compare(actual, expected):
    """Returns an error message, or None when ACTUAL matches EXPECTED."""
    if actual.shape != expected.shape:
        return "shape %s, expected %s" % (actual.shape, expected.shape)
    if actual.dtype != expected.dtype:
        return "dtype %s, expected %s" % (actual.dtype, expected.dtype)
    if actual.size == 0:
        return None

    a = actual.astype(np.float64)
    e = expected.astype(np.float64)
    if not np.all(np.isfinite(a)):
        bad = np.count_nonzero(~np.isfinite(a))
        return "%d of %d output values are NaN or infinite" % (bad, a.size)

    abs_err = np.abs(a - e)
    rel_err = abs_err / np.maximum(np.abs(e), 1e-12)
    worst = np.unravel_index(np.argmax(abs_err), abs_err.shape)
    print("max abs error: %.3g at %s (ferry %.7g, expected %.7g)"
          % (abs_err.max(), list(worst), a[worst], e[worst]))
    print("max rel error: %.3g" % rel_err.max())

    close = np.isclose(a, e, rtol=RTOL, atol=ATOL)
    if not close.all():
        bad = np.count_nonzero(~close)
        return ("%d of %d values differ beyond rtol=%g, atol=%g"
                % (bad, a.size, RTOL, ATOL))
    return None


def main(argv=None):
    parser = argparse.ArgumentParser(description="Compare ferry with PyTorch on one model.")
    parser.add_argument("--ferry", required=True, help="path to the ferry binary")
    parser.add_argument("--model", required=True, choices=export_models.MODELS)
    parser.add_argument("--opset", type=int, default=13)
    parser.add_argument("--workdir", required=True, help="folder for exports and outputs")
    parser.add_argument("--dynamic-batch", action="store_true",
                        help='export with a symbolic batch dimension ("batch")')
    parser.add_argument("--batch", type=int,
                        help="samples in the input (a CNN's large batch runs in slices)")
    args = parser.parse_args(argv)

    name = "%s-op%d" % (args.model, args.opset)
    if args.dynamic_batch:
        name += "-dyn"
    if args.batch:
        name += "-b%d" % args.batch
    model_dir = os.path.join(os.path.abspath(args.workdir), name)
    ensure_exported(args.model, args.opset, model_dir, args.dynamic_batch, args.batch)

    out_dir = os.path.join(model_dir, "ferry-out")
    os.makedirs(out_dir, exist_ok=True)
    out_path = os.path.join(out_dir, "output.npy")
    if os.path.exists(out_path):
        os.remove(out_path)

    command = [args.ferry, "run", os.path.join(model_dir, "model.onnx"),
               os.path.join(model_dir, "input.npy"), "-o", out_dir]
    print("running: " + " ".join(command))
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    except OSError as e:
        return fail("could not start %s: %s" % (args.ferry, e))
    except subprocess.TimeoutExpired:
        return fail("ferry did not finish within %d s" % RUN_TIMEOUT_S)
    if result.stdout:
        sys.stdout.write(result.stdout)
    if result.stderr:
        sys.stdout.write(result.stderr)
    if result.returncode < 0:
        return fail("ferry was killed by signal %d" % -result.returncode)
    if result.returncode != 0:
        return fail("ferry exited with status %d" % result.returncode)
    if not os.path.isfile(out_path):
        return fail("ferry did not write " + out_path)

    try:
        actual = np.load(out_path, allow_pickle=False)
    except Exception as e:  # a malformed .npy from ferry is a failure, not a crash
        return fail("cannot read %s: %s" % (out_path, e))
    expected = np.load(os.path.join(model_dir, "expected.npy"))

    error = compare(actual, expected)
    if error:
        return fail("%s: %s" % (name, error))
    print("PASS: %s matches PyTorch" % name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
