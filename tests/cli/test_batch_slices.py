"""Batch slicing: which models `ferry inspect` calls sample-independent, and that running a
batch in slices (`ferry run`, `ferry bench`) gives the same numbers as running it whole or one
sample at a time."""
import json

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from test_cli import assert_ok, ferry, float_info, make_model, save_model


def const(name, array):
    return numpy_helper.from_array(np.asarray(array), name)


def separable(tmp_path, nodes, inputs, outputs, inits=(), opset=13):
    path = save_model(make_model(nodes, inputs, outputs, inits, opset=opset), tmp_path / "m.onnx")
    result = ferry("inspect", path)
    assert_ok(result)
    line = [l for l in result.stdout.splitlines() if l.startswith("samples independent:")]
    assert len(line) == 1, result.stdout
    return line[0].split(":", 1)[1].strip().startswith("yes")


X3 = [float_info("x", ["N", 3])]
X4 = [float_info("x", ["N", 2, 4, 4])]
Y = [float_info("y", None)]


def test_cnn_is_separable(tmp_path):
    w = np.ones((4, 2, 3, 3), np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("GlobalAveragePool", ["p"], ["g"]),
             helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("Gemm", ["f", "gw", "gb"], ["y"], transB=1)]
    inits = [const("w", w), const("gw", np.ones((5, 4), np.float32)),
             const("gb", np.zeros(5, np.float32))]
    assert separable(tmp_path, nodes, X4, Y, inits)


@pytest.mark.parametrize("axis,expect", [(1, True), (-1, True), (0, False)])
def test_softmax_axis(tmp_path, axis, expect):
    nodes = [helper.make_node("Softmax", ["x"], ["y"], axis=axis)]
    assert separable(tmp_path, nodes, X3, Y) == expect


@pytest.mark.parametrize("shape,expect", [((3,), True), ((1, 3), True), ((2, 3), False),
                                          ((1, 1, 3), False)])
def test_add_constant_must_not_reach_the_batch_axis(tmp_path, shape, expect):
    nodes = [helper.make_node("Add", ["x", "b"], ["y"])]
    inits = [const("b", np.ones(shape, np.float32))]
    assert separable(tmp_path, nodes, X3, Y, inits) == expect


@pytest.mark.parametrize("axis,expect", [(1, True), (2, False)])
def test_flatten_axis(tmp_path, axis, expect):
    nodes = [helper.make_node("Flatten", ["x"], ["y"], axis=axis)]
    assert separable(tmp_path, nodes, X4, Y) == expect


@pytest.mark.parametrize("shape,expect", [([0, -1], True), ([-1, 16], False), ([0, 2, 16], True)])
def test_reshape_must_keep_the_batch(tmp_path, shape, expect):
    nodes = [helper.make_node("Reshape", ["x", "s"], ["y"])]
    inits = [const("s", np.array(shape, np.int64))]
    assert separable(tmp_path, nodes, X4, Y, inits) == expect


@pytest.mark.parametrize("perm,expect", [([0, 2, 1, 3], True), ([1, 0, 2, 3], False)])
def test_transpose_perm(tmp_path, perm, expect):
    nodes = [helper.make_node("Transpose", ["x"], ["y"], perm=perm)]
    assert separable(tmp_path, nodes, X4, Y) == expect


@pytest.mark.parametrize("axes,expect", [([1], True), ([0], False), ([-4], False)])
def test_reduce_axes(tmp_path, axes, expect):
    nodes = [helper.make_node("ReduceMean", ["x"], ["y"], axes=axes)]
    assert separable(tmp_path, nodes, X4, Y) == expect


def test_shape_arithmetic_is_not_separable(tmp_path):
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Reshape", ["x", "s"], ["y"])]
    assert not separable(tmp_path, nodes, X4, Y)


def test_maxpool_indices_count_the_batch(tmp_path):
    nodes = [helper.make_node("MaxPool", ["x"], ["y", "i"], kernel_shape=[2, 2])]
    outs = Y + [helper.make_tensor_value_info("i", TensorProto.INT64, None)]
    assert not separable(tmp_path, nodes, X4, outs)


def test_matmul_of_two_batches_is_not_separable(tmp_path):
    nodes = [helper.make_node("MatMul", ["x", "z"], ["y"])]
    ins = [float_info("x", ["N", 2, 3]), float_info("z", ["N", 3, 2])]
    assert not separable(tmp_path, nodes, ins, Y)


def test_fixed_batch_is_not_sliced(tmp_path):
    nodes = [helper.make_node("Relu", ["x"], ["y"])]
    assert not separable(tmp_path, nodes, [float_info("x", [4, 3])], Y)


@pytest.fixture
def conv_model(tmp_path):
    """Two convolutions whose activations (about 300 KiB a sample) make a batch of 36 outgrow
    the 8 MiB a slice may hold, with a large and a small output."""
    rng = np.random.default_rng(3)
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["feat"]),
             helper.make_node("Conv", ["feat", "w2"], ["c2"], strides=[2, 2]),
             helper.make_node("GlobalAveragePool", ["c2"], ["pool"])]
    inits = [const("w1", rng.standard_normal((16, 8, 3, 3)).astype(np.float32)),
             const("b1", rng.standard_normal(16).astype(np.float32)),
             const("w2", rng.standard_normal((8, 16, 1, 1)).astype(np.float32))]
    model = make_model(nodes, [float_info("x", ["N", 8, 64, 64])],
                       [float_info("feat", None), float_info("pool", None)], inits)
    return save_model(model, tmp_path / "conv.onnx")


def test_sliced_run_matches_sample_by_sample(conv_model, tmp_path):
    batch = 36
    x = np.random.default_rng(5).standard_normal((batch, 8, 64, 64)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    assert_ok(ferry("run", conv_model, tmp_path / "x.npy", "-o", tmp_path / "all"))
    feat = np.load(tmp_path / "all" / "feat.npy")
    pool = np.load(tmp_path / "all" / "pool.npy")
    assert feat.shape == (batch, 16, 64, 64) and pool.shape == (batch, 8, 1, 1)
    for i in (0, 17, 35):
        np.save(tmp_path / "one.npy", x[i:i + 1])
        assert_ok(ferry("run", conv_model, tmp_path / "one.npy", "-o", tmp_path / "one"))
        np.testing.assert_allclose(feat[i], np.load(tmp_path / "one" / "feat.npy")[0],
                                   rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(pool[i], np.load(tmp_path / "one" / "pool.npy")[0],
                                   rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("threads", [1, 2])
def test_bench_reports_slices(conv_model, threads):
    result = ferry("bench", conv_model, "--batch", 36, "--threads", threads, "--seconds", 0.2,
                   "--warmup", 1, "--json")
    assert_ok(result)
    slice_ = json.loads(result.stdout)["slice"]
    assert 1 <= slice_ < 36 and 36 % slice_ == 0
    whole = ferry("bench", conv_model, "--batch", 36, "--threads", threads, "--seconds", 0.2,
                  "--warmup", 1, "--json", "--whole-batch")
    assert_ok(whole)
    assert json.loads(whole.stdout)["slice"] == 0
    small = ferry("bench", conv_model, "--batch", 2, "--seconds", 0.2, "--warmup", 1, "--json")
    assert_ok(small)
    assert json.loads(small.stdout)["slice"] == 0
