"""Builds the model repository the `ferry serve` tests run against, with onnx.helper only.

    python3 tests/serve/models.py DIR      # writes the repository into DIR

Every model is tiny, so the repository builds in well under a second. What is in it:

    id_<dtype>   Identity on x [batch, 3] of every datatype the protocol's JSON can carry
                 (BOOL, INT8..INT64, UINT8..UINT64, FP16, FP32, FP64), no config.pbtxt:
                 the server derives one (batching, max_batch_size 4)
    mixed        a FP32 [batch, 4] and b INT64 [batch, 4] -> sum = a + float(b) (FP32) and
                 twice = b + b (INT64); config.pbtxt with dynamic batching
    fixed        max_batch_size 0: x FP32 [2, 3] -> y = relu(x), exact shapes
    versioned    versions 1, 2 and 3 (policy: all), y = x + version; 3 is left out by a
                 specific-versions policy in its config, so only 1 and 2 serve
    mlp          the example MLP (64 -> 10, softmax) with its weights, for numeric checks
    slow         x FP32 [batch, 1024] -> 24 MatMuls with one 1024x1024 weight: about
                 25M multiply-adds per row, so a batch of 8 takes a visible moment; one
                 instance, a queue of 2 and no batching, to test 503 and SIGTERM draining
"""

import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

# Protocol name -> (ONNX type, numpy type)
DTYPES = {
    "BOOL": (TensorProto.BOOL, np.bool_),
    "INT8": (TensorProto.INT8, np.int8),
    "INT16": (TensorProto.INT16, np.int16),
    "INT32": (TensorProto.INT32, np.int32),
    "INT64": (TensorProto.INT64, np.int64),
    "UINT8": (TensorProto.UINT8, np.uint8),
    "UINT16": (TensorProto.UINT16, np.uint16),
    "UINT32": (TensorProto.UINT32, np.uint32),
    "UINT64": (TensorProto.UINT64, np.uint64),
    "FP16": (TensorProto.FLOAT16, np.float16),
    "FP32": (TensorProto.FLOAT, np.float32),
    "FP64": (TensorProto.DOUBLE, np.float64),
}

SLOW_DIM = 1024
SLOW_LAYERS = 24


def _model(nodes, inputs, outputs, initializers=(), opset=13):
    graph = helper.make_graph(list(nodes), "test", list(inputs), list(outputs),
                              initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="ferry-serve-tests")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _save(repo, name, version, model, config=None):
    d = os.path.join(repo, name, str(version))
    os.makedirs(d, exist_ok=True)
    onnx.save(model, os.path.join(d, "model.onnx"))
    if config is not None:
        with open(os.path.join(repo, name, "config.pbtxt"), "w") as f:
            f.write(config)


def identity_model(onnx_type):
    return _model([helper.make_node("Identity", ["x"], ["y"])],
                  [helper.make_tensor_value_info("x", onnx_type, ["batch", 3])],
                  [helper.make_tensor_value_info("y", onnx_type, ["batch", 3])])


def mixed_model():
    nodes = [
        helper.make_node("Cast", ["b"], ["bf"], to=TensorProto.FLOAT),
        helper.make_node("Add", ["a", "bf"], ["sum"]),
        helper.make_node("Add", ["b", "b"], ["twice"]),
    ]
    return _model(nodes,
                  [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["batch", 4]),
                   helper.make_tensor_value_info("b", TensorProto.INT64, ["batch", 4])],
                  [helper.make_tensor_value_info("sum", TensorProto.FLOAT, ["batch", 4]),
                   helper.make_tensor_value_info("twice", TensorProto.INT64, ["batch", 4])])


MIXED_CONFIG = """\
name: "mixed"
max_batch_size: 8
input [
  { name: "a" data_type: TYPE_FP32 dims: [ 4 ] },
  { name: "b" data_type: TYPE_INT64 dims: [ 4 ] }
]
output [
  { name: "sum" data_type: TYPE_FP32 dims: [ 4 ] },
  { name: "twice" data_type: TYPE_INT64 dims: [ 4 ] }
]
dynamic_batching { max_queue_delay_microseconds: 100 }
"""


def fixed_model():
    return _model([helper.make_node("Relu", ["x"], ["y"])],
                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])])


FIXED_CONFIG = """\
name: "fixed"
max_batch_size: 0
input [ { name: "x" data_type: TYPE_FP32 dims: [ 2, 3 ] } ]
output [ { name: "y" data_type: TYPE_FP32 dims: [ 2, 3 ] } ]
"""


def versioned_model(version):
    c = numpy_helper.from_array(np.array([float(version)], dtype=np.float32), "v")
    return _model([helper.make_node("Add", ["x", "v"], ["y"])],
                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 1])], [c])


VERSIONED_CONFIG = """\
name: "versioned"
max_batch_size: 4
version_policy: { specific: { versions: [ 1, 2 ] } }
input [ { name: "x" data_type: TYPE_FP32 dims: [ 1 ] } ]
output [ { name: "y" data_type: TYPE_FP32 dims: [ 1 ] } ]
"""


def mlp_weights(seed=2024):
    rng = np.random.default_rng(seed)

    def layer(n_in, n_out):
        w = rng.standard_normal((n_out, n_in)) * np.sqrt(2.0 / n_in)
        b = rng.standard_normal(n_out) * 0.1
        return w.astype(np.float32), b.astype(np.float32)

    w1, b1 = layer(64, 128)
    w2, b2 = layer(128, 10)
    return {"fc1.weight": w1, "fc1.bias": b1, "fc2.weight": w2, "fc2.bias": b2}


def mlp_model(weights):
    nodes = [
        helper.make_node("Gemm", ["features", "fc1.weight", "fc1.bias"], ["h"], transB=1),
        helper.make_node("Relu", ["h"], ["hr"]),
        helper.make_node("Gemm", ["hr", "fc2.weight", "fc2.bias"], ["logits"], transB=1),
        helper.make_node("Softmax", ["logits"], ["scores"], axis=-1),
    ]
    return _model(nodes,
                  [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", 64])],
                  [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", 10])],
                  [numpy_helper.from_array(a, n) for n, a in weights.items()])


def mlp_reference(weights, x):
    h = np.maximum(x @ weights["fc1.weight"].T + weights["fc1.bias"], 0)
    logits = h @ weights["fc2.weight"].T + weights["fc2.bias"]
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


MLP_CONFIG = """\
name: "mlp"
max_batch_size: 64
input [ { name: "features" data_type: TYPE_FP32 dims: [ 64 ] } ]
output [ { name: "scores" data_type: TYPE_FP32 dims: [ 10 ] } ]
dynamic_batching { }
"""


def slow_model():
    w = (np.random.default_rng(3).standard_normal((SLOW_DIM, SLOW_DIM)) /
         np.sqrt(SLOW_DIM)).astype(np.float32)
    nodes, prev = [], "x"
    for i in range(SLOW_LAYERS):
        out = "y" if i == SLOW_LAYERS - 1 else "h%d" % i
        nodes.append(helper.make_node("MatMul", [prev, "w"], [out]))
        prev = out
    return _model(nodes,
                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", SLOW_DIM])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", SLOW_DIM])],
                  [numpy_helper.from_array(w, "w")])


SLOW_CONFIG = """\
name: "slow"
max_batch_size: 64
input [ { name: "x" data_type: TYPE_FP32 dims: [ 1024 ] } ]
output [ { name: "y" data_type: TYPE_FP32 dims: [ 1024 ] } ]
instance_group [ { count: 1 kind: KIND_CPU } ]
parameters { key: "ferry.queue_capacity" value { string_value: "2" } }
"""


def build(repo):
    """Writes the whole test repository into REPO; returns the MLP's weights."""
    for name, (onnx_type, _) in DTYPES.items():
        _save(repo, "id_" + name.lower(), 1, identity_model(onnx_type))
    _save(repo, "mixed", 1, mixed_model(), MIXED_CONFIG)
    _save(repo, "fixed", 1, fixed_model(), FIXED_CONFIG)
    for v in (1, 2, 3):
        _save(repo, "versioned", v, versioned_model(v), VERSIONED_CONFIG)
    weights = mlp_weights()
    _save(repo, "mlp", 1, mlp_model(weights), MLP_CONFIG)
    _save(repo, "slow", 1, slow_model(), SLOW_CONFIG)
    return weights


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: models.py DIR")
    build(sys.argv[1])
    print("wrote the test repository in %s" % sys.argv[1])
