"""Initializers stored at offsets that are not a multiple of 4 in the model file: Ferry leaves
Conv weights in place (packing copies them a group at a time) and copies the others once.
Whichever path a tensor takes, the results must be the same."""
import numpy as np
import pytest
from onnx import helper, numpy_helper

from test_cli import assert_ok, ferry, float_info, make_model


def conv_ref(x, w, b=None, group=1, pad=1):
    n, c, h, wd = x.shape
    m, cg, kh, kw = w.shape
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    oh, ow = h + 2 * pad - kh + 1, wd + 2 * pad - kw + 1
    y = np.zeros((n, m, oh, ow))
    mg = m // group
    for g in range(group):
        xs = xp[:, g * cg:(g + 1) * cg]
        for i in range(kh):
            for j in range(kw):
                patch = xs[:, :, i:i + oh, j:j + ow]
                y[:, g * mg:(g + 1) * mg] += np.einsum("nchw,mc->nmhw", patch,
                                                       w[g * mg:(g + 1) * mg, :, i, j])
    if b is not None:
        y += b.reshape(1, -1, 1, 1)
    return y.astype(np.float32)


def save_misaligned(model, path, raw, shift):
    """Saves MODEL with RAW's bytes at a file offset of 4k + SHIFT (padding the doc string)."""
    for pad in range(8):
        model.doc_string = "x" * pad
        data = model.SerializeToString()
        at = data.find(raw)
        assert at >= 0
        if at % 4 == shift:
            path.write_bytes(data)
            return path
    raise AssertionError("could not place the weights at offset %% 4 == %d" % shift)


@pytest.mark.parametrize("shift", [1, 2, 3])
@pytest.mark.parametrize("size,group", [(7, 1), (24, 1), (12, 2)])
def test_conv_weights_in_place(tmp_path, shift, size, group):
    rng = np.random.default_rng(shift * 100 + size)
    w = rng.standard_normal((32, 16 // group, 3, 3)).astype(np.float32)  # >= 4 KiB
    b = rng.standard_normal(32).astype(np.float32)
    x = rng.standard_normal((2, 16, size, size)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1], group=group),
             helper.make_node("Relu", ["y"], ["r"])]
    model = make_model(nodes, [float_info("x", ["N", 16, size, size])], [float_info("r", None)],
                       [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    path = save_misaligned(model, tmp_path / "m.onnx", w.tobytes(), shift)
    np.save(tmp_path / "x.npy", x)
    assert_ok(ferry("run", path, tmp_path / "x.npy", "-o", tmp_path / "out"))
    got = np.load(tmp_path / "out" / "r.npy")
    np.testing.assert_allclose(got, np.maximum(conv_ref(x, w, b, group), 0), rtol=1e-4,
                               atol=1e-4)


def test_weights_read_elsewhere_are_copied(tmp_path):
    """The same misaligned tensor feeds a Conv and a Mul, and is a graph output."""
    rng = np.random.default_rng(7)
    w = rng.standard_normal((32, 16, 3, 3)).astype(np.float32)
    x = rng.standard_normal((1, 16, 9, 9)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1]),
             helper.make_node("Mul", ["w", "w"], ["w2"]),
             helper.make_node("Identity", ["w"], ["wout"])]
    model = make_model(nodes, [float_info("x", [1, 16, 9, 9])],
                       [float_info("y", None), float_info("w2", None), float_info("wout", None)],
                       [numpy_helper.from_array(w, "w")])
    path = save_misaligned(model, tmp_path / "m.onnx", w.tobytes(), 1)
    np.save(tmp_path / "x.npy", x)
    assert_ok(ferry("run", path, tmp_path / "x.npy", "-o", tmp_path / "out"))
    np.testing.assert_allclose(np.load(tmp_path / "out" / "y.npy"), conv_ref(x, w), rtol=1e-4,
                               atol=1e-4)
    np.testing.assert_array_equal(np.load(tmp_path / "out" / "w2.npy"), w * w)
    np.testing.assert_array_equal(np.load(tmp_path / "out" / "wout.npy"), w)


def test_conv_of_constants_folds_from_a_copy(tmp_path):
    """A Conv whose input is constant too runs at load: its misaligned weights are copied."""
    rng = np.random.default_rng(9)
    w = rng.standard_normal((32, 16, 3, 3)).astype(np.float32)
    c = rng.standard_normal((1, 16, 5, 5)).astype(np.float32)
    x = rng.standard_normal((1, 32, 5, 5)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["c", "w"], ["k"], pads=[1, 1, 1, 1]),
             helper.make_node("Add", ["x", "k"], ["y"])]
    model = make_model(nodes, [float_info("x", [1, 32, 5, 5])], [float_info("y", None)],
                       [numpy_helper.from_array(w, "w"), numpy_helper.from_array(c, "c")])
    path = save_misaligned(model, tmp_path / "m.onnx", w.tobytes(), 3)
    np.save(tmp_path / "x.npy", x)
    assert_ok(ferry("run", path, tmp_path / "x.npy", "-o", tmp_path / "out"))
    np.testing.assert_allclose(np.load(tmp_path / "out" / "y.npy"), x + conv_ref(c, w),
                               rtol=1e-4, atol=1e-4)
