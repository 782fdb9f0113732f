#!/usr/bin/python3
"""Writes the example model repository that `ferry serve` (and `make run`) serves.

    python3 examples/make_repository.py [--out DIR]

creates, in Triton's repository layout (default DIR: examples/repository):

    mlp/1/model.onnx      the bundled classifier (a copy of examples/mlp/model.onnx):
                          features [batch, 64] -> scores [batch, 10]
    mlp/config.pbtxt      max_batch_size 64 with dynamic batching
    cnn/1/model.onnx      a small image classifier: image [batch, 3, 32, 32] -> Conv(16) ->
                          Relu -> Conv(32, stride 2) -> Relu -> GlobalAveragePool -> Flatten
                          -> Gemm(10) -> Softmax -> probabilities [batch, 10]
    cnn/config.pbtxt      max_batch_size 16, dynamic batching, 1 instance
    linear/1/model.onnx   a linear regression fitted with least squares on synthetic data, as
                          scikit-learn would export it: x [batch, 8] -> MatMul + Add ->
                          y [batch, 1]
                          (no config.pbtxt: Ferry derives the config from the model)

Weights are seeded, so running the script again writes the same bytes. It needs only numpy
and onnx, and prints a curl command for each model.
"""

import argparse
import os
import shutil
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))

MLP_CONFIG = """\
# The bundled MLP classifier (examples/mlp), served with dynamic batching: concurrent requests
# are joined into one engine run of up to 64 rows, waiting at most 100 microseconds for
# company (a lone request pays those 0.1 ms; under load, one run serves many requests).
name: "mlp"
platform: "onnxruntime_onnx"
max_batch_size: 64
input [
  { name: "features" data_type: TYPE_FP32 dims: [ 64 ] }
]
output [
  { name: "scores" data_type: TYPE_FP32 dims: [ 10 ] }
]
dynamic_batching {
  max_queue_delay_microseconds: 100
}
instance_group [ { count: 1 kind: KIND_CPU } ]
"""

CNN_CONFIG = """\
# A small convolutional classifier on 32x32 RGB images.
name: "cnn"
platform: "onnxruntime_onnx"
max_batch_size: 16
input [
  { name: "image" data_type: TYPE_FP32 format: FORMAT_NCHW dims: [ 3, 32, 32 ] }
]
output [
  { name: "probabilities" data_type: TYPE_FP32 dims: [ 10 ] }
]
dynamic_batching {
  preferred_batch_size: [ 4, 8 ]
  max_queue_delay_microseconds: 200
}
instance_group [ { count: 1 kind: KIND_CPU } ]
"""


def save(model, path):
    model.ir_version = 8
    onnx.checker.check_model(model)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    onnx.save(model, path)


def cnn_model(seed=11):
    rng = np.random.default_rng(seed)

    def he(shape, fan_in):
        return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)

    weights = {
        "conv1.weight": he((16, 3, 3, 3), 27),
        "conv1.bias": (rng.standard_normal(16) * 0.1).astype(np.float32),
        "conv2.weight": he((32, 16, 3, 3), 144),
        "conv2.bias": (rng.standard_normal(32) * 0.1).astype(np.float32),
        "fc.weight": he((10, 32), 32),
        "fc.bias": (rng.standard_normal(10) * 0.1).astype(np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["image", "conv1.weight", "conv1.bias"], ["c1"], name="conv1",
                         kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "conv2.weight", "conv2.bias"], ["c2"], name="conv2",
                         kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["r2"], ["gap"], name="gap"),
        helper.make_node("Flatten", ["gap"], ["flat"], name="flatten", axis=1),
        helper.make_node("Gemm", ["flat", "fc.weight", "fc.bias"], ["logits"], name="fc",
                         transB=1),
        helper.make_node("Softmax", ["logits"], ["probabilities"], name="softmax", axis=-1),
    ]
    graph = helper.make_graph(
        nodes, "cnn",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, 32, 32])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 10])],
        initializer=[numpy_helper.from_array(a, n) for n, a in weights.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                              producer_name="ferry-examples", producer_version="1")
    model.doc_string = "Example CNN for Ferry (random weights); examples/make_repository.py."
    return model


def linear_model(seed=5):
    """Least squares on synthetic data: y = x . w + b + noise, fitted with numpy."""
    rng = np.random.default_rng(seed)
    n, d = 1000, 8
    true_w = rng.uniform(-2, 2, d)
    x = rng.standard_normal((n, d))
    y = x @ true_w + 0.5 + rng.standard_normal(n) * 0.1
    design = np.hstack([x, np.ones((n, 1))])
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    w = coef[:d].reshape(d, 1).astype(np.float32)
    b = np.array([coef[d]], dtype=np.float32)
    nodes = [
        helper.make_node("MatMul", ["x", "coef"], ["xw"], name="matmul"),
        helper.make_node("Add", ["xw", "intercept"], ["y"], name="add"),
    ]
    graph = helper.make_graph(
        nodes, "linear_regression",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", d])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 1])],
        initializer=[numpy_helper.from_array(w, "coef"), numpy_helper.from_array(b, "intercept")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                              producer_name="ferry-examples", producer_version="1")
    model.doc_string = "Linear regression (8 features) fitted by least squares; " \
                       "examples/make_repository.py."
    return model


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(HERE, "repository"))
    args = parser.parse_args()
    out = args.out

    mlp_src = os.path.join(HERE, "mlp", "model.onnx")
    os.makedirs(os.path.join(out, "mlp", "1"), exist_ok=True)
    shutil.copyfile(mlp_src, os.path.join(out, "mlp", "1", "model.onnx"))
    with open(os.path.join(out, "mlp", "config.pbtxt"), "w") as f:
        f.write(MLP_CONFIG)

    save(cnn_model(), os.path.join(out, "cnn", "1", "model.onnx"))
    with open(os.path.join(out, "cnn", "config.pbtxt"), "w") as f:
        f.write(CNN_CONFIG)

    save(linear_model(), os.path.join(out, "linear", "1", "model.onnx"))

    print("wrote the repository in %s (mlp, cnn, linear)" % out)
    features = ",".join(["0.5"] * 64)
    print("try, with `ferry serve --model-repository %s` running:" % out)
    print("  curl -s localhost:8000/v2/models/mlp/infer -d '{\"inputs\":[{\"name\":\"features\","
          "\"shape\":[1,64],\"datatype\":\"FP32\",\"data\":[%s]}]}'" % features)
    print("  curl -s localhost:8000/v2/models/linear/infer -d '{\"inputs\":[{\"name\":\"x\","
          "\"shape\":[1,8],\"datatype\":\"FP32\",\"data\":[1,2,3,4,5,6,7,8]}]}'")
    return 0


if __name__ == "__main__":
    sys.exit(main())
