"""Tests of the `ferry` command line as a user sees it.

The binary comes from the environment variable FERRY_BIN:

    FERRY_BIN=build/ferry python3 -m pytest tests/cli

Every model is built here with onnx.helper, so the tests need nothing but numpy, onnx and
pytest. What they check: numbers written with -o match numpy, inputs bind by position and by
--input NAME=FILE, output names are made safe for the file system, the summary and `inspect`
say what a user needs, and every error is one "ferry: ..." line on stderr with a non-zero exit
status (2 for usage errors, 1 for the rest) and never a crash.
"""

import io
import json
import os
import re
import subprocess

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

FERRY = os.environ.get("FERRY_BIN")
TIMEOUT_S = 60

if not FERRY:
    pytest.skip("set FERRY_BIN to the ferry binary to run the CLI tests", allow_module_level=True)


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def ferry(*args, cwd=None):
    """Runs ferry with ARGS and returns the CompletedProcess (text mode)."""
    result = subprocess.run([FERRY] + [str(a) for a in args], capture_output=True, text=True,
                            timeout=TIMEOUT_S, cwd=cwd)
    assert result.returncode >= 0, "ferry was killed by signal %d\nstderr: %s" % (
        -result.returncode, result.stderr)
    return result


def assert_ok(result):
    assert result.returncode == 0, "ferry failed (%d): %s" % (result.returncode, result.stderr)


def assert_error(result, code=None, *needles):
    """Checks that RESULT is a clean failure: non-zero exit (CODE when given, 1 or 2 otherwise),
    exactly one stderr line starting with "ferry: ", and every string in NEEDLES in that line
    (case-insensitive). Returns the line."""
    assert result.returncode != 0, "ferry succeeded but should have failed\nstdout: %s" % (
        result.stdout)
    if code is None:
        assert result.returncode in (1, 2), "exit status %d, expected 1 or 2" % result.returncode
    else:
        assert result.returncode == code, "exit status %d, expected %d\nstderr: %s" % (
            result.returncode, code, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, "expected exactly one line on stderr, got %d:\n%s" % (
        len(lines), result.stderr)
    line = lines[0]
    assert line.startswith("ferry: "), "stderr line does not start with 'ferry: ': %r" % line
    for needle in needles:
        assert needle.lower() in line.lower(), "%r not in error message %r" % (needle, line)
    return line


def save_model(model, path):
    onnx.save(model, str(path))
    return path


def make_model(nodes, inputs, outputs, initializers=(), opset=13, domains=()):
    graph = helper.make_graph(list(nodes), "test", list(inputs), list(outputs),
                              initializer=list(initializers))
    opsets = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, v) for d, v in domains]
    model = helper.make_model(graph, opset_imports=opsets, producer_name="ferry-cli-tests")
    model.ir_version = 8
    return model


def float_info(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def write_pb(array, path, name=""):
    tensor = numpy_helper.from_array(array, name)
    with open(path, "wb") as f:
        f.write(tensor.SerializeToString())
    return path


def files_under(root):
    found = set()
    for dirpath, _, filenames in os.walk(root):
        for filename in filenames:
            found.add(os.path.relpath(os.path.join(dirpath, filename), root))
    return found


# ---------------------------------------------------------------------------------------------
# Fixtures: tiny models and inputs
# ---------------------------------------------------------------------------------------------

# A - B starts with 1.25, 3.5: values easy to spot in a printed summary.
A = np.array([[1.75, 2.0, -3.0], [4.25, 0.0, 6.0]], dtype=np.float32)
B = np.array([[0.5, -1.5, 2.0], [0.25, 7.0, -0.5]], dtype=np.float32)


@pytest.fixture
def sub_model(tmp_path):
    """diff = lhs - rhs, both float [2, 3]. Sub, not Add, so that swapped inputs show."""
    model = make_model([helper.make_node("Sub", ["lhs", "rhs"], ["diff"])],
                       [float_info("lhs", [2, 3]), float_info("rhs", [2, 3])],
                       [float_info("diff", [2, 3])])
    return save_model(model, tmp_path / "sub.onnx")


@pytest.fixture
def inputs(tmp_path):
    """a.npy and b.npy holding A and B (for inputs lhs and rhs)."""
    a, b = tmp_path / "a.npy", tmp_path / "b.npy"
    np.save(a, A)
    np.save(b, B)
    return a, b


@pytest.fixture
def out_dir(tmp_path):
    d = tmp_path / "out"
    d.mkdir()
    return d


@pytest.fixture
def int64_model(tmp_path):
    """y = idx * 3 + 1000000000000 on int64 [4] (values past 32 bits on purpose)."""
    three = numpy_helper.from_array(np.array(3, dtype=np.int64), "three")
    big = numpy_helper.from_array(np.array(10**12, dtype=np.int64), "big")
    model = make_model(
        [helper.make_node("Mul", ["idx", "three"], ["t"]),
         helper.make_node("Add", ["t", "big"], ["y"])],
        [helper.make_tensor_value_info("idx", TensorProto.INT64, [4])],
        [helper.make_tensor_value_info("y", TensorProto.INT64, [4])],
        initializers=[three, big])
    return save_model(model, tmp_path / "int64.onnx")


@pytest.fixture
def symbolic_model(tmp_path):
    """y = Relu(pixels) with pixels float ["batch", 3]."""
    model = make_model([helper.make_node("Relu", ["pixels"], ["y"])],
                       [float_info("pixels", ["batch", 3])], [float_info("y", ["batch", 3])])
    return save_model(model, tmp_path / "symbolic.onnx")


# ---------------------------------------------------------------------------------------------
# Running models
# ---------------------------------------------------------------------------------------------


def test_run_npy_inputs(sub_model, inputs, out_dir):
    result = ferry("run", sub_model, inputs[0], inputs[1], "-o", out_dir)
    assert_ok(result)
    assert files_under(out_dir) == {"diff.npy"}
    got = np.load(out_dir / "diff.npy")
    assert got.dtype == np.float32
    assert got.shape == (2, 3)
    np.testing.assert_array_equal(got, A - B)


def test_run_pb_inputs(sub_model, tmp_path, out_dir):
    a = write_pb(A, tmp_path / "a.pb", "lhs")
    b = write_pb(B, tmp_path / "b.pb")  # a TensorProto without a name works too
    assert_ok(ferry("run", sub_model, a, b, "-o", out_dir))
    np.testing.assert_array_equal(np.load(out_dir / "diff.npy"), A - B)


def test_run_mixed_npy_and_pb(sub_model, inputs, tmp_path, out_dir):
    b = write_pb(B, tmp_path / "b.pb", "rhs")
    assert_ok(ferry("run", sub_model, inputs[0], b, "-o", out_dir))
    np.testing.assert_array_equal(np.load(out_dir / "diff.npy"), A - B)


def test_input_option_binds_by_name(sub_model, inputs, out_dir):
    a, b = inputs
    # Given in the opposite order of the graph's inputs: names, not positions, decide.
    result = ferry("run", sub_model, "--input", "rhs=%s" % b, "--input", "lhs=%s" % a,
                   "-o", out_dir)
    assert_ok(result)
    np.testing.assert_array_equal(np.load(out_dir / "diff.npy"), A - B)


def test_input_option_unknown_name(sub_model, inputs, out_dir):
    a, b = inputs
    result = ferry("run", sub_model, "--input", "lhs=%s" % a, "--input", "nosuch=%s" % b,
                   "-o", out_dir)
    assert_error(result, None, "nosuch")


def test_input_option_without_equals_is_usage_error(sub_model, inputs, out_dir):
    result = ferry("run", sub_model, "--input", str(inputs[0]), "-o", out_dir)
    assert_error(result, 2)


def test_int64_model(int64_model, tmp_path, out_dir):
    idx = np.array([0, 1, -7, 2**40], dtype=np.int64)
    np.save(tmp_path / "idx.npy", idx)
    assert_ok(ferry("run", int64_model, tmp_path / "idx.npy", "-o", out_dir))
    got = np.load(out_dir / "y.npy")
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, idx * 3 + 10**12)


def test_int64_model_pb_input(int64_model, tmp_path, out_dir):
    idx = np.array([5, 6, 7, 8], dtype=np.int64)
    write_pb(idx, tmp_path / "idx.pb", "idx")
    assert_ok(ferry("run", int64_model, tmp_path / "idx.pb", "-o", out_dir))
    np.testing.assert_array_equal(np.load(out_dir / "y.npy"), idx * 3 + 10**12)


@pytest.mark.parametrize("batch", [1, 5])
def test_symbolic_dim_accepts_any_size(symbolic_model, tmp_path, out_dir, batch):
    x = np.linspace(-2, 2, batch * 3, dtype=np.float32).reshape(batch, 3)
    np.save(tmp_path / "x.npy", x)
    assert_ok(ferry("run", symbolic_model, tmp_path / "x.npy", "-o", out_dir))
    got = np.load(out_dir / "y.npy")
    assert got.shape == (batch, 3)
    np.testing.assert_array_equal(got, np.maximum(x, 0))


def test_symbolic_dim_still_checks_fixed_dims(symbolic_model, tmp_path, out_dir):
    np.save(tmp_path / "x.npy", np.zeros((5, 4), dtype=np.float32))
    line = assert_error(ferry("run", symbolic_model, tmp_path / "x.npy", "-o", out_dir), 1,
                        "pixels")
    assert "4" in line


def test_symbolic_dim_checks_rank(symbolic_model, tmp_path, out_dir):
    np.save(tmp_path / "x.npy", np.zeros((3,), dtype=np.float32))
    assert_error(ferry("run", symbolic_model, tmp_path / "x.npy", "-o", out_dir), 1, "pixels")


def test_initializer_inputs_are_not_positional(tmp_path, out_dir):
    """A graph input that also has an initializer (an overridable default) takes no position."""
    w = np.array([2.0, -1.0, 0.5], dtype=np.float32)
    model = make_model([helper.make_node("Mul", ["x", "w"], ["y"])],
                       [float_info("x", [2, 3]), float_info("w", [3])],
                       [float_info("y", [2, 3])],
                       initializers=[numpy_helper.from_array(w, "w")])
    path = save_model(model, tmp_path / "default.onnx")
    np.save(tmp_path / "x.npy", A)
    assert_ok(ferry("run", path, tmp_path / "x.npy", "-o", out_dir))
    np.testing.assert_array_equal(np.load(out_dir / "y.npy"), A * w)


def test_several_outputs(tmp_path, inputs, out_dir):
    model = make_model([helper.make_node("Add", ["a", "b"], ["total"]),
                        helper.make_node("Mul", ["a", "b"], ["product"])],
                       [float_info("a", [2, 3]), float_info("b", [2, 3])],
                       [float_info("total", [2, 3]), float_info("product", [2, 3])])
    path = save_model(model, tmp_path / "two.onnx")
    assert_ok(ferry("run", path, inputs[0], inputs[1], "-o", out_dir))
    assert files_under(out_dir) == {"total.npy", "product.npy"}
    np.testing.assert_array_equal(np.load(out_dir / "total.npy"), A + B)
    np.testing.assert_array_equal(np.load(out_dir / "product.npy"), A * B)


def test_output_names_are_sanitised(tmp_path, inputs):
    model = make_model([helper.make_node("Add", ["a", "b"], ["out/../x:y"])],
                       [float_info("a", [2, 3]), float_info("b", [2, 3])],
                       [float_info("out/../x:y", [2, 3])])
    path = save_model(model, tmp_path / "names.onnx")
    out = tmp_path / "deep" / "out"
    out.mkdir(parents=True)
    before = files_under(tmp_path)

    assert_ok(ferry("run", path, inputs[0], inputs[1], "-o", out))

    assert files_under(out) == {"out_.._x_y.npy"}
    np.testing.assert_array_equal(np.load(out / "out_.._x_y.npy"), A + B)
    # Nothing was written anywhere else under tmp_path (in particular not in tmp_path/deep).
    assert files_under(tmp_path) - before == {"deep/out/out_.._x_y.npy"}


def test_output_dir_missing(sub_model, inputs, tmp_path):
    """A missing -o folder is either created or reported cleanly; never a crash."""
    out = tmp_path / "not-yet"
    result = ferry("run", sub_model, inputs[0], inputs[1], "-o", out)
    if result.returncode == 0:
        np.testing.assert_array_equal(np.load(out / "diff.npy"), A - B)
    else:
        assert_error(result, 1)


def test_summary_without_output_dir(sub_model, inputs, tmp_path):
    before = files_under(tmp_path)
    result = ferry("run", sub_model, inputs[0], inputs[1])
    assert_ok(result)
    text = result.stdout
    assert "diff" in text
    assert re.search(r"2\s*[,x×]\s*3", text), "shape [2, 3] not in summary:\n" + text
    assert "float" in text, "dtype not in summary:\n" + text
    # The first values: A[0,0] - B[0,0] = 1.25 and A[0,1] - B[0,1] = 3.5.
    assert "1.25" in text, "first value not shown:\n" + text
    assert "3.5" in text, "second value not shown:\n" + text
    assert files_under(tmp_path) == before, "run without -o wrote files"


def test_summary_int64(int64_model, tmp_path):
    np.save(tmp_path / "idx.npy", np.array([1, 2, 3, 4], dtype=np.int64))
    result = ferry("run", int64_model, tmp_path / "idx.npy")
    assert_ok(result)
    assert "int64" in result.stdout
    assert "1000000000003" in result.stdout


# ---------------------------------------------------------------------------------------------
# inspect
# ---------------------------------------------------------------------------------------------


def test_inspect(tmp_path):
    w = numpy_helper.from_array(np.arange(21, dtype=np.float32).reshape(3, 7), "weight")
    model = make_model([helper.make_node("MatMul", ["features", "weight"], ["h"]),
                        helper.make_node("Relu", ["h"], ["h2"]),
                        helper.make_node("Relu", ["h2"], ["scores"])],
                       [float_info("features", ["batch", 3])],
                       [float_info("scores", ["batch", 7])],
                       initializers=[w], opset=17)
    path = save_model(model, tmp_path / "inspect.onnx")
    result = ferry("inspect", path)
    assert_ok(result)
    text = result.stdout
    for word in ["features", "scores", "batch", "MatMul", "Relu", "17", "float"]:
        assert word in text, "%r not in inspect output:\n%s" % (word, text)
    relu_lines = [line for line in text.splitlines() if "Relu" in line]
    assert any(re.search(r"\b2\b", line) for line in relu_lines), (
        "Relu count 2 not shown:\n" + text)
    assert re.search(r"\b21\b", text), "parameter count 21 not shown:\n" + text


SIZE_UNITS = {"b": 1, "byte": 1, "bytes": 1, "kb": 1000, "kib": 1024, "mb": 1000**2,
              "mib": 1024**2, "gb": 1000**3, "gib": 1024**3}


def test_inspect_parameter_size(tmp_path):
    """The weights' size is shown in some unit; 1 MiB of weights must read as about that."""
    weight = np.zeros((256, 1024), dtype=np.float32)  # 262144 parameters, 1048576 bytes
    model = make_model([helper.make_node("MatMul", ["x", "w"], ["y"])],
                       [float_info("x", [1, 256])], [float_info("y", [1, 1024])],
                       initializers=[numpy_helper.from_array(weight, "w")])
    result = ferry("inspect", save_model(model, tmp_path / "big.onnx"))
    assert_ok(result)
    text = result.stdout
    assert "262144" in text.replace(",", "").replace("_", ""), (
        "parameter count not shown:\n" + text)
    sizes = []
    for value, unit in re.findall(r"(\d+(?:\.\d+)?)\s*([KMG]i?B|kB|B|bytes?)\b", text,
                                  flags=re.IGNORECASE):
        sizes.append(float(value) * SIZE_UNITS[unit.lower()])
    assert any(abs(size - 1048576) <= 0.06 * 1048576 for size in sizes), (
        "no size of about 1 MiB in:\n" + text)


def test_inspect_custom_domain_opset(tmp_path):
    model = make_model([helper.make_node("Relu", ["x"], ["y"])],
                       [float_info("x", [2])], [float_info("y", [2])],
                       opset=13, domains=[("com.example", 3)])
    result = ferry("inspect", save_model(model, tmp_path / "domains.onnx"))
    assert_ok(result)
    assert "com.example" in result.stdout
    assert "13" in result.stdout


def test_inspect_missing_model(tmp_path):
    assert_error(ferry("inspect", tmp_path / "nope.onnx"), 1, "nope.onnx")


# ---------------------------------------------------------------------------------------------
# Errors in inputs
# ---------------------------------------------------------------------------------------------


def test_too_few_inputs(sub_model, inputs, out_dir):
    assert_error(ferry("run", sub_model, inputs[0], "-o", out_dir))
    assert files_under(out_dir) == set()


def test_too_many_inputs(sub_model, inputs, out_dir):
    assert_error(ferry("run", sub_model, inputs[0], inputs[1], inputs[0], "-o", out_dir))
    assert files_under(out_dir) == set()


def test_wrong_shape(sub_model, inputs, tmp_path, out_dir):
    np.save(tmp_path / "bad.npy", np.zeros((3, 2), dtype=np.float32))
    line = assert_error(ferry("run", sub_model, inputs[0], tmp_path / "bad.npy", "-o", out_dir),
                        1, "rhs")
    assert "3" in line and "2" in line, line
    assert files_under(out_dir) == set()


def test_wrong_dtype(sub_model, inputs, tmp_path, out_dir):
    np.save(tmp_path / "bad.npy", B.astype(np.float64))
    line = assert_error(ferry("run", sub_model, inputs[0], tmp_path / "bad.npy", "-o", out_dir),
                        1, "rhs", "float")
    assert "double" in line.lower() or "float64" in line.lower(), line


def test_wrong_dtype_int(int64_model, tmp_path, out_dir):
    np.save(tmp_path / "idx.npy", np.arange(4, dtype=np.int32))
    assert_error(ferry("run", int64_model, tmp_path / "idx.npy", "-o", out_dir), 1, "idx", "int")


def test_missing_input_file(sub_model, inputs, tmp_path, out_dir):
    assert_error(ferry("run", sub_model, inputs[0], tmp_path / "missing.npy", "-o", out_dir),
                 1, "missing.npy")


def test_input_is_a_directory(sub_model, inputs, tmp_path, out_dir):
    d = tmp_path / "dir.npy"
    d.mkdir()
    assert_error(ferry("run", sub_model, inputs[0], d, "-o", out_dir), 1)


def test_unknown_input_extension(sub_model, inputs, tmp_path, out_dir):
    with open(tmp_path / "b.txt", "w") as f:
        f.write("1 2 3\n")
    assert_error(ferry("run", sub_model, inputs[0], tmp_path / "b.txt", "-o", out_dir), None,
                 "b.txt")


def npy_bytes(array):
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def npy_with_header(header, data):
    """A version 1.0 .npy file with the header text HEADER (padded as NumPy does) and DATA."""
    text = header.encode("latin1")
    total = 10 + len(text) + 1
    text += b" " * ((64 - total % 64) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text + data


def corrupt_npy_variants():
    good = npy_bytes(B)
    header_len = int.from_bytes(good[8:10], "little")
    data_start = 10 + header_len
    data = good[data_start:]
    return {
        "empty": b"",
        "truncated-data": good[:-5],
        "truncated-header": good[:data_start - 20],
        "magic-only": good[:6],
        "bad-magic": b"\x93NUMPX" + good[6:],
        "bad-version": good[:6] + b"\x09\x00" + good[8:],
        "header-garbage": npy_with_header("{'descr': <f4', 'fortran_order': Fals", data),
        "header-not-a-dict": npy_with_header("[1, 2, 3]", data),
        "header-missing-shape": npy_with_header("{'descr': '<f4', 'fortran_order': False, }",
                                                data),
        "header-length-too-big": good[:8] + b"\xff\xff" + good[10:],
        "shape-too-big": npy_with_header(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 9), }", data),
        "negative-shape": npy_with_header(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (-2, 3), }", data),
        "huge-shape": npy_with_header(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 99999999999999999999), }",
            data),
        "overflowing-shape": npy_with_header(
            "{'descr': '<f4', 'fortran_order': False, "
            "'shape': (4294967296, 4294967296, 4294967296), }", data),
        "unknown-descr": npy_with_header(
            "{'descr': '<q9', 'fortran_order': False, 'shape': (2, 3), }", data),
        "object-descr": npy_with_header(
            "{'descr': '|O', 'fortran_order': False, 'shape': (2, 3), }", data),
        "extra-data": good + b"\x00" * 16,
    }


@pytest.mark.parametrize("variant", sorted(corrupt_npy_variants()))
def test_corrupt_npy(sub_model, inputs, tmp_path, out_dir, variant):
    data = corrupt_npy_variants()[variant]
    path = tmp_path / "bad.npy"
    with open(path, "wb") as f:
        f.write(data)
    result = ferry("run", sub_model, inputs[0], path, "-o", out_dir)
    if variant == "extra-data" and result.returncode == 0:
        # Trailing bytes after the array may be tolerated, but then the values must be right.
        np.testing.assert_array_equal(np.load(out_dir / "diff.npy"), A - B)
        return
    assert_error(result, 1)
    assert files_under(out_dir) == set()


@pytest.mark.parametrize("order", ["fortran", "big-endian"])
def test_unusual_npy_layouts(sub_model, inputs, tmp_path, out_dir, order):
    """Fortran order and big-endian .npy files are either read correctly or refused cleanly."""
    if order == "fortran":
        array = np.asfortranarray(B)
    else:
        array = B.astype(">f4")
    np.save(tmp_path / "odd.npy", array)
    result = ferry("run", sub_model, inputs[0], tmp_path / "odd.npy", "-o", out_dir)
    if result.returncode == 0:
        np.testing.assert_array_equal(np.load(out_dir / "diff.npy"), A - B)
    else:
        assert_error(result, 1)


@pytest.mark.parametrize("variant", ["empty", "garbage", "truncated"])
def test_corrupt_pb(sub_model, inputs, tmp_path, out_dir, variant):
    good = numpy_helper.from_array(B, "b").SerializeToString()
    data = {"empty": b"", "garbage": b"\xff" * 40, "truncated": good[:len(good) // 2]}[variant]
    path = tmp_path / "bad.pb"
    with open(path, "wb") as f:
        f.write(data)
    assert_error(ferry("run", sub_model, inputs[0], path, "-o", out_dir), 1)


# ---------------------------------------------------------------------------------------------
# Errors in models
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["empty", "garbage", "truncated", "text"])
@pytest.mark.parametrize("command", ["run", "inspect"])
def test_corrupt_model(sub_model, inputs, tmp_path, out_dir, variant, command):
    good = open(sub_model, "rb").read()
    data = {
        "empty": b"",
        "garbage": bytes(range(256)) * 4,
        "truncated": good[:len(good) * 2 // 3],
        "text": b"this is not an onnx model\n",
    }[variant]
    path = tmp_path / "bad.onnx"
    with open(path, "wb") as f:
        f.write(data)
    if command == "run":
        result = ferry("run", path, inputs[0], inputs[1], "-o", out_dir)
    else:
        result = ferry("inspect", path)
    assert_error(result, 1)
    assert files_under(out_dir) == set()


def test_nonexistent_model(inputs, tmp_path, out_dir):
    result = ferry("run", tmp_path / "nosuch.onnx", inputs[0], inputs[1], "-o", out_dir)
    assert_error(result, 1, "nosuch.onnx")


def test_model_is_a_directory(inputs, tmp_path, out_dir):
    d = tmp_path / "dir.onnx"
    d.mkdir()
    assert_error(ferry("run", d, inputs[0], inputs[1], "-o", out_dir), 1)


def test_unknown_operator_custom_domain(tmp_path, inputs, out_dir):
    model = make_model([helper.make_node("FrobnicateOp", ["a", "b"], ["y"], domain="com.example")],
                       [float_info("a", [2, 3]), float_info("b", [2, 3])],
                       [float_info("y", [2, 3])], domains=[("com.example", 1)])
    path = save_model(model, tmp_path / "custom.onnx")
    assert_error(ferry("run", path, inputs[0], inputs[1], "-o", out_dir), 1,
                 "FrobnicateOp", "com.example")


def test_unknown_operator_default_domain(tmp_path, inputs, out_dir):
    model = make_model([helper.make_node("NoSuchOperator", ["a", "b"], ["y"])],
                       [float_info("a", [2, 3]), float_info("b", [2, 3])],
                       [float_info("y", [2, 3])], opset=13)
    path = save_model(model, tmp_path / "unknown.onnx")
    line = assert_error(ferry("run", path, inputs[0], inputs[1], "-o", out_dir), 1,
                        "NoSuchOperator")
    assert "13" in line or "opset" in line.lower() or "ai.onnx" in line, line


def test_operator_newer_than_opset(tmp_path, out_dir):
    """LayerNormalization only exists from opset 17: at opset 13 it is an unknown operator."""
    model = make_model([helper.make_node("LayerNormalization", ["x", "s"], ["y"])],
                       [float_info("x", [2, 3])], [float_info("y", [2, 3])],
                       initializers=[numpy_helper.from_array(np.ones(3, np.float32), "s")],
                       opset=13)
    path = save_model(model, tmp_path / "ln13.onnx")
    np.save(tmp_path / "x.npy", A)
    assert_error(ferry("run", path, tmp_path / "x.npy", "-o", out_dir), 1, "LayerNormalization")


def test_undefined_tensor_reference(tmp_path, inputs, out_dir):
    model = make_model([helper.make_node("Add", ["a", "nowhere"], ["y"])],
                       [float_info("a", [2, 3]), float_info("b", [2, 3])],
                       [float_info("y", [2, 3])])
    path = save_model(model, tmp_path / "dangling.onnx")
    assert_error(ferry("run", path, inputs[0], inputs[1], "-o", out_dir), 1, "nowhere")


# ---------------------------------------------------------------------------------------------
# bench --profile
# ---------------------------------------------------------------------------------------------

PROFILED_OPS = ["MatMul", "Sigmoid", "Add", "Transpose"]


@pytest.fixture
def profiled_model(tmp_path):
    """y = Transpose(Sigmoid(x @ W) + x @ W): four operator types, none folded or fused, and
    one node without a name."""
    w = numpy_helper.from_array(np.linspace(-1, 1, 64, dtype=np.float32).reshape(8, 8), "W")
    model = make_model([helper.make_node("MatMul", ["x", "W"], ["h"], name="project"),
                        helper.make_node("Sigmoid", ["h"], ["s"], name="gate"),
                        helper.make_node("Add", ["s", "h"], ["a"], name="residual"),
                        helper.make_node("Transpose", ["a"], ["y"])],
                       [float_info("x", ["batch", 8])], [float_info("y", [8, "batch"])],
                       initializers=[w])
    return save_model(model, tmp_path / "profiled.onnx")


def test_bench_profile_table(profiled_model):
    result = ferry("bench", profiled_model, "--seconds", "0.2", "--profile")
    assert_ok(result)
    text = result.stdout
    assert "latency:" in text, "the normal report is missing:\n" + text
    after = text[text.index("profile:"):]
    assert "4 of 4 nodes ran\n" in after, text
    table, slowest = after.split("slowest nodes:")
    rows = {}
    for line in table.splitlines()[2:]:
        fields = line.split()
        if len(fields) == 4:
            rows[fields[0]] = fields[1:]
    for op in PROFILED_OPS:
        assert op in rows, "%s has no row in the per-op table:\n%s" % (op, text)
        assert rows[op][0] == "1", "%s: expected 1 node:\n%s" % (op, text)
    assert rows["(total)"][0] == "4" and rows["(total)"][2] == "100.00", text
    # Sorted by time, slowest first.
    times = [float(rows[op][1]) for op in rows if op != "(total)"]
    assert times == sorted(times, reverse=True), text
    for name in ["project", "gate", "residual", "(node 3)"]:
        assert name in slowest, "%r not among the slowest nodes:\n%s" % (name, text)


def test_bench_profile_json(profiled_model):
    result = ferry("bench", profiled_model, "--seconds", "0.2", "--profile", "--json")
    assert_ok(result)
    report = json.loads(result.stdout)
    assert report["runs"] >= 5
    profile = report["profile"]
    ops = {entry["op"]: entry for entry in profile["ops"]}
    assert sorted(ops) == sorted(PROFILED_OPS)
    assert all(entry["nodes"] == 1 for entry in ops.values())
    assert all(entry["ms_per_run"] >= 0 for entry in ops.values())
    assert abs(sum(entry["percent"] for entry in profile["ops"]) - 100) < 0.1, profile
    percents = [entry["percent"] for entry in profile["ops"]]
    assert percents == sorted(percents, reverse=True)
    nodes = profile["nodes"]
    assert sorted(node["name"] for node in nodes) == ["", "gate", "project", "residual"]
    assert {node["op"] for node in nodes} == set(PROFILED_OPS)
    assert abs(sum(node["percent"] for node in nodes) - 100) < 0.1, profile
    for node in nodes:
        assert set(node) >= {"name", "op", "ms_per_run", "percent"}


def test_bench_without_profile(profiled_model):
    result = ferry("bench", profiled_model, "--seconds", "0.1", "--json")
    assert_ok(result)
    assert "profile" not in json.loads(result.stdout)
    result = ferry("bench", profiled_model, "--seconds", "0.1")
    assert_ok(result)
    assert "profile:" not in result.stdout and "slowest nodes" not in result.stdout


def test_bench_profile_in_help():
    result = ferry("--help")
    assert result.returncode == 0
    assert "--profile" in result.stdout


# ---------------------------------------------------------------------------------------------
# Usage errors
# ---------------------------------------------------------------------------------------------


def test_no_arguments():
    result = ferry()
    assert result.returncode == 2
    assert result.stderr.strip(), "no usage message"


def test_unknown_command(sub_model):
    assert_error(ferry("frobnicate", sub_model), 2, "frobnicate")


def test_unknown_option(sub_model, inputs):
    assert_error(ferry("run", sub_model, inputs[0], inputs[1], "--no-such-option"), 2,
                 "--no-such-option")


def test_run_without_model():
    assert_error(ferry("run"), 2)


def test_output_option_without_value(sub_model, inputs):
    assert_error(ferry("run", sub_model, inputs[0], inputs[1], "-o"), 2)


def test_help():
    result = ferry("--help")
    assert result.returncode == 0
    assert "run" in result.stdout and "inspect" in result.stdout
