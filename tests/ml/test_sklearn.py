#!/usr/bin/python3
"""Ferry's ONNX-ML operators against scikit-learn.

    test_sklearn.py --ferry BIN --workdir DIR [--thread-check BIN] [-k SUBSTRING]

Builds every model of make_models.cases() (scikit-learn estimators converted to ai.onnx.ml
graphs), writes DIR/<case>/model.onnx and its inputs as .npy, runs

    BIN run DIR/<case>/model.onnx <inputs> -o DIR/<case>/out

and compares each output with what scikit-learn predicted: class labels identical (a differing
label is accepted only where the expected probabilities of the two classes tie within 1e-6),
probabilities and regression values within rtol 1e-5 / atol 1e-6. With --thread-check (the
thread_check program), each model is also run with 1 and 4 intra-op threads, whose outputs
must be identical. Then checks that each malformed model of make_models.broken_models() is
refused with an error naming the problem, and that randomly corrupted models either run or
are refused, never crash. Prints one line per case and a summary per estimator family; exit
status 0 when everything passes, 1 otherwise, 77 (skipped) without numpy, onnx or
scikit-learn.
"""

import argparse
import collections
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

SKIP = 77  # CTest's SKIP_RETURN_CODE: numpy, onnx or scikit-learn is missing

try:
    import numpy as np
    import onnx

    import make_models  # needs the sys.path entry above
except ImportError as e:
    print("skipped: %s" % e)
    sys.exit(SKIP)

RTOL = 1e-5
ATOL = 1e-6
TIMEOUT_S = 120


def compare(kind, actual, expected, proba_expected=None, classes=None):
    """Returns (error message or None, largest relative error)."""
    if actual.shape != expected.shape:
        return "shape %s, expected %s" % (actual.shape, expected.shape), 0.0
    strings = actual.dtype.kind == "U" and expected.dtype.kind == "U"  # widths may differ
    if actual.dtype != expected.dtype and not strings:
        return "dtype %s, expected %s" % (actual.dtype, expected.dtype), 0.0
    if actual.size == 0:
        return None, 0.0
    if kind == "label":
        bad = np.nonzero(actual != expected)[0]
        column = {c: k for k, c in enumerate(classes)} if classes is not None else None
        for i in bad:
            p = proba_expected[i] if proba_expected is not None else None
            a, e = (column.get(actual[i]), column[expected[i]]) if column else (actual[i],
                                                                                expected[i])
            if p is None or a is None or abs(p[a] - p[e]) > 1e-6:
                return ("row %d: label %s, expected %s (%d of %d labels differ)"
                        % (i, actual[i], expected[i], len(bad), actual.size)), 0.0
        return None, 0.0
    if kind == "exact" and strings:
        if (actual != expected).any():
            i = int(np.argmax((actual != expected).ravel()))
            return "element %d is %r, expected %r" % (i, actual.ravel()[i],
                                                      expected.ravel()[i]), 0.0
        return None, 0.0
    a, e = actual.astype(np.float64), expected.astype(np.float64)
    if kind == "exact":
        same = (a == e) | (np.isnan(a) & np.isnan(e))
        if not same.all():
            i = np.argmax(~same.ravel())
            return "element %d is %r, expected %r" % (i, a.ravel()[i], e.ravel()[i]), 0.0
        return None, 0.0
    err = np.abs(a - e)
    # Relative error, except that values within ATOL of 0 count as relative to ATOL.
    rel = float(np.nanmax(err / np.maximum(np.abs(e), ATOL)))
    ok = err <= ATOL + RTOL * np.abs(e)
    ok |= np.isnan(a) & np.isnan(e)
    if not ok.all():
        i = int(np.argmax(~ok.ravel()))
        return ("element %d is %.9g, expected %.9g (%d of %d values off; max abs error %.3g)"
                % (i, a.ravel()[i], e.ravel()[i], np.count_nonzero(~ok), a.size,
                   float(np.nanmax(err)))), rel
    return None, rel


def run_ferry(ferry, model_path, input_paths, out_dir):
    cmd = [ferry, "run", model_path] + input_paths + ["-o", out_dir]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return 124, "timed out after %d s" % TIMEOUT_S
    return p.returncode, (p.stdout + p.stderr).strip()


def sanitizer_report(log):
    return "Sanitizer" in log or "runtime error:" in log


def check_case(ferry, workdir, case, thread_check=None):
    d = os.path.join(workdir, case.name)
    os.makedirs(d, exist_ok=True)
    model_path = os.path.join(d, "model.onnx")
    onnx.save(case.model, model_path)
    paths = []
    for name, arr in case.inputs:
        p = os.path.join(d, name + ".npy")
        np.save(p, np.ascontiguousarray(arr))
        paths.append(p)
    out_dir = os.path.join(d, "out")
    rc, log = run_ferry(ferry, model_path, paths, out_dir)
    if rc != 0 or sanitizer_report(log):
        return "ferry exited with %d: %s" % (rc, log), 0.0
    if thread_check:
        try:
            p = subprocess.run([thread_check, model_path] + paths + ["--threads", "4"],
                               capture_output=True, text=True, timeout=TIMEOUT_S)
            if p.returncode != 0 or sanitizer_report(p.stderr):
                return "thread check failed (%d): %s" % (p.returncode, p.stderr.strip()), 0.0
        except subprocess.TimeoutExpired:
            return "thread check timed out", 0.0
    worst = 0.0
    for name, expected in case.expected.items():
        p = os.path.join(out_dir, name + ".npy")
        if not os.path.isfile(p):
            return "output %s was not written" % name, 0.0
        actual = np.load(p)
        proba = case.proba_for.get(name)
        msg, rel = compare(case.checks[name], actual, expected,
                           proba_expected=case.expected.get(proba) if proba else None,
                           classes=case.classes)
        if msg:
            return "%s: %s" % (name, msg), rel
        worst = max(worst, rel)
    return None, worst


def check_broken(ferry, workdir, name, model, needle):
    d = os.path.join(workdir, "broken-" + name)
    os.makedirs(d, exist_ok=True)
    model_path = os.path.join(d, "model.onnx")
    onnx.save(model, model_path)
    x = os.path.join(d, "X.npy")
    np.save(x, np.zeros((2, 2), np.float32))
    rc, log = run_ferry(ferry, model_path, [x], os.path.join(d, "out"))
    if rc == 0:
        return "ferry accepted it"
    if rc < 0 or rc > 2 or sanitizer_report(log):
        return "ferry crashed or failed oddly (exit %d): %s" % (rc, log)
    if needle not in log:
        return "error does not mention %r: %s" % (needle, log)
    return None


def check_mutated(ferry, workdir, name, model, x):
    """A corrupted model must run or fail with an ordinary error: no crash, no sanitizer."""
    d = os.path.join(workdir, name)
    os.makedirs(d, exist_ok=True)
    model_path = os.path.join(d, "model.onnx")
    onnx.save(model, model_path)
    xp = os.path.join(d, "X.npy")
    np.save(xp, x)
    rc, log = run_ferry(ferry, model_path, [xp], os.path.join(d, "out"))
    if rc < 0 or rc > 2 or sanitizer_report(log):
        return "crashed or failed oddly (exit %d): %s" % (rc, log[-500:])
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ferry", required=True, help="the ferry command-line binary")
    ap.add_argument("--workdir", required=True, help="where models and outputs are written")
    ap.add_argument("--thread-check", help="the thread_check program (optional)")
    ap.add_argument("-k", default="", help="only cases whose name contains this")
    args = ap.parse_args()
    os.makedirs(args.workdir, exist_ok=True)

    failures = 0
    families = collections.OrderedDict()
    for case in make_models.cases():
        if args.k not in case.name:
            continue
        msg, rel = check_case(args.ferry, args.workdir, case, args.thread_check)
        fam = families.setdefault(case.family, [0, 0, 0.0])
        fam[0] += 1
        if msg:
            failures += 1
            fam[1] += 1
            print("FAIL %-44s %s" % (case.name, msg))
        else:
            fam[2] = max(fam[2], rel)
            print("ok   %-44s max rel err %.2g" % (case.name, rel))
    for name, model, needle in make_models.broken_models():
        if args.k not in "broken-" + name:
            continue
        msg = check_broken(args.ferry, args.workdir, name, model, needle)
        fam = families.setdefault("malformed models", [0, 0, 0.0])
        fam[0] += 1
        if msg:
            failures += 1
            fam[1] += 1
            print("FAIL %-44s %s" % ("broken-" + name, msg))
        else:
            print("ok   %-44s refused with a clear error" % ("broken-" + name))

    for name, model, x in make_models.mutated_models():
        if args.k not in name:
            continue
        msg = check_mutated(args.ferry, args.workdir, name, model, x)
        fam = families.setdefault("mutated models", [0, 0, 0.0])
        fam[0] += 1
        if msg:
            failures += 1
            fam[1] += 1
            print("FAIL %-44s %s" % (name, msg))

    print("\n%-28s %6s %6s  %s" % ("family", "cases", "failed", "max rel err"))
    for name, (n, bad, rel) in families.items():
        print("%-28s %6d %6d  %.2g" % (name, n, bad, rel))
    total = sum(f[0] for f in families.values())
    print("\n%d of %d cases passed" % (total - failures, total))
    return 1 if failures or total == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
