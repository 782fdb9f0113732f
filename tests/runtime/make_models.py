#!/usr/bin/env python3
"""make_models.py - writes the tiny ONNX models the runtime's unit tests serve.

Usage: make_models.py OUTDIR   (the committed copies live in tests/runtime/models/)

Each model is a few hundred bytes, built with the onnx helper API (opset 13):
  scale2.onnx   x float [batch, 4] -> y = x * 2 + 1
  scale3.onnx   x float [batch, 4] -> y = x * 3 + 1   (a "new version" of scale2)
  fixed.onnx    x float [1, 4]     -> y = x * 2 + 1   (no symbolic batch dimension)
  vlen.onnx     x float [batch, len] -> y = x * 2 + 1 (rows of different lengths)
  two_io.onnx   a, b float [batch, 3] -> sum = a + b, diff = a - b
"""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def save(model, path):
    onnx.checker.check_model(model)
    with open(path, "wb") as f:
        f.write(model.SerializeToString())


def affine(scale, dims, name):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, dims)
    inits = [numpy_helper.from_array(np.array(scale, dtype=np.float32), "scale"),
             numpy_helper.from_array(np.array(1.0, dtype=np.float32), "one")]
    nodes = [helper.make_node("Mul", ["x", "scale"], ["t"]),
             helper.make_node("Add", ["t", "one"], ["y"])]
    graph = helper.make_graph(nodes, name, [x], [y], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                             producer_name="ferry-tests")


def two_io():
    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, ["batch", 3])
    b = helper.make_tensor_value_info("b", TensorProto.FLOAT, ["batch", 3])
    s = helper.make_tensor_value_info("sum", TensorProto.FLOAT, ["batch", 3])
    d = helper.make_tensor_value_info("diff", TensorProto.FLOAT, ["batch", 3])
    nodes = [helper.make_node("Add", ["a", "b"], ["sum"]),
             helper.make_node("Sub", ["a", "b"], ["diff"])]
    graph = helper.make_graph(nodes, "two_io", [a, b], [s, d])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                             producer_name="ferry-tests")


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "models")
    os.makedirs(out, exist_ok=True)
    save(affine(2.0, ["batch", 4], "scale2"), os.path.join(out, "scale2.onnx"))
    save(affine(3.0, ["batch", 4], "scale3"), os.path.join(out, "scale3.onnx"))
    save(affine(2.0, [1, 4], "fixed"), os.path.join(out, "fixed.onnx"))
    save(affine(2.0, ["batch", "len"], "vlen"), os.path.join(out, "vlen.onnx"))
    save(two_io(), os.path.join(out, "two_io.onnx"))


if __name__ == "__main__":
    main()
