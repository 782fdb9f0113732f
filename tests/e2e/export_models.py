#!/usr/bin/python3
"""Export the end-to-end test models from PyTorch to ONNX.

    export_models.py --model NAME --opset N --out DIR [--dynamic-batch]

writes three files into DIR:

    model.onnx    the model, exported with torch.onnx.export (input "input", output "output")
    input.npy     a random input (fixed seed)
    expected.npy  PyTorch's own output for that input

Weights are random (torch.manual_seed(0)); nothing is downloaded. Models:

    mlp          Linear 64-256-256-10 with ReLU, input [4, 64]
    resnet18     torchvision resnet18, input [1, 3, 224, 224]
    mobilenetv2  torchvision mobilenet_v2, input [1, 3, 224, 224]
    transformer  input Linear projection + 2-layer TransformerEncoder (d_model 128, 4 heads,
                 feed-forward 256, batch_first, no dropout), input [1, 64, 128]

With --print-ops the script also prints the operator types of the exported graph.
"""

import argparse
import collections
import os
import sys

import numpy as np
import onnx
import torch
import torchvision

INPUT_SEED = 1234


class MLP(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = torch.nn.Sequential(
            torch.nn.Linear(64, 256),
            torch.nn.ReLU(),
            torch.nn.Linear(256, 256),
            torch.nn.ReLU(),
            torch.nn.Linear(256, 10),
        )

    def forward(self, x):
        return self.layers(x)


class SmallTransformer(torch.nn.Module):
    def __init__(self, d_model=128, nhead=4, dim_feedforward=256, num_layers=2):
        super().__init__()
        self.proj = torch.nn.Linear(d_model, d_model)
        layer = torch.nn.TransformerEncoderLayer(
            d_model, nhead, dim_feedforward, dropout=0.0, batch_first=True
        )
        # enable_nested_tensor=False: the nested-tensor fast path has no ONNX export.
        self.encoder = torch.nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        # TransformerEncoder deep-copies LAYER, so every layer starts with the same weights.
        # Draw fresh ones per layer so that mixing up two layers' weights shows in the output.
        for module in self.encoder.modules():
            if isinstance(module, torch.nn.MultiheadAttention):
                module._reset_parameters()
            elif isinstance(module, torch.nn.Linear):
                module.reset_parameters()

    def forward(self, x):
        return self.encoder(self.proj(x))


def calibrate_batchnorm(model, shape, batch=4):
    """Sets every BatchNorm's running statistics from one batch of random images.

    Freshly initialised BatchNorm layers hold mean 0 and variance 1, which in MobileNetV2 shrinks
    the activations layer after layer until the logits are about 1e-9: any engine returning
    zeros would then pass the comparison. One pass in training mode with momentum None (a plain
    average) gives statistics that keep the activations near unit scale, as in a trained net.
    """
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None
    generator = torch.Generator().manual_seed(1)
    images = torch.randn((batch,) + tuple(shape[1:]), generator=generator)
    model.train()
    with torch.no_grad():
        model(images)


def build(name):
    """Returns (model in eval mode, input shape)."""
    torch.manual_seed(0)
    if name == "mlp":
        model, shape = MLP(), (4, 64)
    elif name == "resnet18":
        model, shape = torchvision.models.resnet18(weights=None), (1, 3, 224, 224)
        calibrate_batchnorm(model, shape)
    elif name == "mobilenetv2":
        model, shape = torchvision.models.mobilenet_v2(weights=None), (1, 3, 224, 224)
        calibrate_batchnorm(model, shape)
    elif name == "transformer":
        model, shape = SmallTransformer(), (1, 64, 128)
    else:
        raise ValueError("unknown model: " + name)
    return model.eval(), shape


MODELS = ["mlp", "resnet18", "mobilenetv2", "transformer"]


def export(name, opset, out_dir, dynamic_batch=False, batch=None):
    model, shape = build(name)
    if batch:
        shape = (batch,) + tuple(shape[1:])
    rng = np.random.default_rng(INPUT_SEED)
    x = rng.standard_normal(shape, dtype=np.float32)
    tx = torch.from_numpy(x)

    # Autograd stays enabled on purpose. In eval mode with grad disabled, torch 1.13's
    # TransformerEncoderLayer takes a fused "fast path" (aten::_transformer_encoder_layer_fwd)
    # that has no ONNX export; with grad enabled it runs (and exports) the plain ops. The
    # expected output is computed the same way so it matches what was exported.
    with torch.enable_grad():
        expected = model(tx).detach().numpy()

    os.makedirs(out_dir, exist_ok=True)
    model_path = os.path.join(out_dir, "model.onnx")
    dynamic_axes = None
    if dynamic_batch:
        dynamic_axes = {"input": {0: "batch"}, "output": {0: "batch"}}
    with torch.enable_grad():
        torch.onnx.export(
            model,
            tx,
            model_path,
            opset_version=opset,
            do_constant_folding=True,
            input_names=["input"],
            output_names=["output"],
            dynamic_axes=dynamic_axes,
        )
    onnx.checker.check_model(model_path)

    np.save(os.path.join(out_dir, "input.npy"), x)
    np.save(os.path.join(out_dir, "expected.npy"), np.ascontiguousarray(expected, dtype=np.float32))
    return model_path


def op_counts(model_path):
    graph = onnx.load(model_path).graph
    return collections.Counter(node.op_type for node in graph.node)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Export an end-to-end test model to ONNX.")
    parser.add_argument("--model", required=True, choices=MODELS)
    parser.add_argument("--opset", type=int, default=13)
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--dynamic-batch", action="store_true",
                        help='make dimension 0 of input and output symbolic ("batch")')
    parser.add_argument("--batch", type=int, help="samples in the example input")
    parser.add_argument("--print-ops", action="store_true",
                        help="print the operator types of the exported graph")
    args = parser.parse_args(argv)

    model_path = export(args.model, args.opset, args.out, args.dynamic_batch, args.batch)
    if args.print_ops:
        counts = op_counts(model_path)
        print(" ".join("%s:%d" % (op, n) for op, n in sorted(counts.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
