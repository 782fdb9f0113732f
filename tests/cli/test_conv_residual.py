"""Skip connections: Add(Conv(x), r) (and a Relu after it) fused into the Conv. Every shape
of the pattern must still compute what the separate operators would."""
import json

import numpy as np
import pytest
from onnx import helper, numpy_helper

from test_cli import assert_error, assert_ok, ferry, float_info, make_model
from test_misaligned_weights import conv_ref


def run(tmp_path, nodes, inputs, feeds, outputs, inits):
    model = make_model(nodes, inputs, [float_info(o, None) for o in outputs], inits)
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString())
    args = []
    for name, value in feeds.items():
        np.save(tmp_path / (name + ".npy"), value)
        args += ["--input", "%s=%s" % (name, tmp_path / (name + ".npy"))]
    assert_ok(ferry("run", path, *args, "-o", tmp_path / "out"))
    return [np.load(tmp_path / "out" / (o + ".npy")) for o in outputs]


def ops_that_ran(path):
    result = ferry("bench", path, "--seconds", 0.05, "--warmup", 1, "--json", "--profile")
    assert_ok(result)
    return {o["op"] for o in json.loads(result.stdout)["profile"]["ops"]}


def init(name, a):
    return numpy_helper.from_array(a, name)


@pytest.mark.parametrize("size,group,relu,swap", [(7, 1, True, False), (28, 1, True, True),
                                                  (40, 1, False, False), (9, 2, True, False)])
def test_residual_add_relu(tmp_path, size, group, relu, swap):
    rng = np.random.default_rng(size + group)
    w = rng.standard_normal((16, 16 // group, 3, 3)).astype(np.float32)
    b = rng.standard_normal(16).astype(np.float32)
    x = rng.standard_normal((2, 16, size, size)).astype(np.float32)
    ins = ["x", "c"] if swap else ["c", "x"]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1], group=group),
             helper.make_node("Add", ins, ["s"])]
    out = "s"
    if relu:
        nodes.append(helper.make_node("Relu", ["s"], ["y"]))
        out = "y"
    (got,) = run(tmp_path, nodes, [float_info("x", ["N", 16, size, size])], {"x": x}, [out],
                 [init("w", w), init("b", b)])
    want = conv_ref(x, w, b, group) + x
    np.testing.assert_allclose(got, np.maximum(want, 0) if relu else want, rtol=1e-4, atol=1e-4)
    assert ops_that_ran(tmp_path / "m.onnx") == {"Conv"}


def test_residual_that_broadcasts(tmp_path):
    """r is [N, C, 1, 1] (a pooled branch): the sum broadcasts over the image."""
    rng = np.random.default_rng(1)
    w = rng.standard_normal((8, 8, 1, 1)).astype(np.float32)
    x = rng.standard_normal((2, 8, 10, 10)).astype(np.float32)
    nodes = [helper.make_node("GlobalAveragePool", ["x"], ["p"]),
             helper.make_node("Conv", ["x", "w"], ["c"]),
             helper.make_node("Add", ["c", "p"], ["s"]),
             helper.make_node("Relu", ["s"], ["y"])]
    (got,) = run(tmp_path, nodes, [float_info("x", ["N", 8, 10, 10])], {"x": x}, ["y"],
                 [init("w", w)])
    want = conv_ref(x, w, pad=0) + x.mean(axis=(2, 3), keepdims=True)
    np.testing.assert_allclose(got, np.maximum(want, 0), rtol=1e-4, atol=1e-4)


def test_residual_larger_than_the_conv(tmp_path):
    """r is [2, N, C, H, W]: the Add's output has a rank the Conv never produces."""
    rng = np.random.default_rng(2)
    w = rng.standard_normal((4, 4, 3, 3)).astype(np.float32)
    x = rng.standard_normal((1, 4, 6, 6)).astype(np.float32)
    r = rng.standard_normal((2, 1, 4, 6, 6)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Add", ["c", "r"], ["y"])]
    (got,) = run(tmp_path, nodes, [float_info("x", [1, 4, 6, 6]), float_info("r", [2, 1, 4, 6, 6])],
                 {"x": x, "r": r}, ["y"], [init("w", w)])
    np.testing.assert_allclose(got, conv_ref(x, w) + r, rtol=1e-4, atol=1e-4)


def test_two_conv_branches(tmp_path):
    """Both operands come from Convs, the downsampling one computed last (ResNet's blocks)."""
    rng = np.random.default_rng(3)
    w1 = rng.standard_normal((16, 8, 3, 3)).astype(np.float32)
    w2 = rng.standard_normal((16, 8, 1, 1)).astype(np.float32)
    x = rng.standard_normal((1, 8, 12, 12)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"], pads=[1, 1, 1, 1], strides=[2, 2]),
             helper.make_node("Conv", ["x", "w2"], ["d"], strides=[2, 2]),
             helper.make_node("Add", ["a", "d"], ["s"]),
             helper.make_node("Relu", ["s"], ["y"]),
             helper.make_node("Identity", ["a"], ["a_out"])]
    got, a = run(tmp_path, nodes, [float_info("x", ["N", 8, 12, 12])], {"x": x}, ["y", "a_out"],
                 [init("w1", w1), init("w2", w2)])
    a_ref = conv_ref(x, w1)[:, :, ::2, ::2]
    d_ref = conv_ref(x, w2, pad=0)[:, :, ::2, ::2]
    np.testing.assert_allclose(a, a_ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(got, np.maximum(a_ref + d_ref, 0), rtol=1e-4, atol=1e-4)
    assert ops_that_ran(tmp_path / "m.onnx") == {"Conv", "Identity"}


def test_depthwise_conv_keeps_its_add(tmp_path):
    rng = np.random.default_rng(4)
    w = rng.standard_normal((8, 1, 3, 3)).astype(np.float32)
    x = rng.standard_normal((1, 8, 9, 9)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], group=8),
             helper.make_node("Add", ["c", "x"], ["y"])]
    (got,) = run(tmp_path, nodes, [float_info("x", ["N", 8, 9, 9])], {"x": x}, ["y"],
                 [init("w", w)])
    np.testing.assert_allclose(got, conv_ref(x, w, group=8) + x, rtol=1e-4, atol=1e-4)
    assert "Add" in ops_that_ran(tmp_path / "m.onnx")


def test_conv_with_four_inputs_is_rejected(tmp_path):
    w = np.ones((4, 4, 1, 1), np.float32)
    nodes = [helper.make_node("Conv", ["x", "w", "", "x"], ["y"])]
    model = make_model(nodes, [float_info("x", [1, 4, 3, 3])], [float_info("y", None)],
                       [init("w", w)])
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString())
    np.save(tmp_path / "x.npy", np.ones((1, 4, 3, 3), np.float32))
    assert_error(ferry("run", path, tmp_path / "x.npy"), None, "at most 3 inputs")


def test_residual_that_cannot_broadcast_is_a_clear_error(tmp_path):
    w = np.ones((4, 4, 1, 1), np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]),
             helper.make_node("Add", ["c", "r"], ["y"])]
    model = make_model(nodes, [float_info("x", ["N", 4, 3, 3]), float_info("r", ["M", 4, 3, 3])],
                       [float_info("y", None)], [init("w", w)])
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString())
    np.save(tmp_path / "x.npy", np.ones((2, 4, 3, 3), np.float32))
    np.save(tmp_path / "r.npy", np.ones((3, 4, 3, 3), np.float32))
    assert_error(ferry("run", path, tmp_path / "x.npy", tmp_path / "r.npy"), None,
                 "Add fused into this Conv", "cannot be broadcast")
