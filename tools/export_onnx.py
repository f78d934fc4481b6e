#!/usr/bin/env python3
"""Export the converted EfficientNet-Lite backbone to ONNX, for the CPU speed benchmark only.

The app never reads ONNX: this writes the same network Burn runs (the converted weights in
`resources/backbones/<arch>.safetensors`, batch norm folded into the convolutions as
`backbone.rs` folds it, TensorFlow "same" padding as ONNX `SAME_UPPER`) so that
`tools/ort_bench.py` can time ONNX Runtime against Burn's feature pass on the same input
size and batch (`cargo bench --bench backbone_bench`). Outputs: the last feature map
after the head conv's ReLU6, its global average (`pooled`, 1280), and the ImageNet logits
when the weights have the classifier.

    python3 -m venv /tmp/ortenv && /tmp/ortenv/bin/pip install numpy onnx onnxruntime
    /tmp/ortenv/bin/python tools/export_onnx.py --out /tmp/lite0.onnx \
        --check tests/fixtures/efficientnet_lite0_reference.json

`--check` runs the exported graph in ONNX Runtime on the reference images of the
conversion (`tools/convert_efficientnet.py`) and fails unless the logits and the pooled
features match within 1e-3.
"""

import argparse
import json
import struct
import sys
from pathlib import Path

import numpy as np

import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parent.parent
REPEATS = {
    "efficientnet-lite0": [1, 2, 2, 3, 3, 4, 1],
    "efficientnet-lite1": [1, 3, 3, 4, 4, 5, 1],
    "efficientnet-lite2": [1, 3, 3, 4, 4, 5, 1],
}
CHANNELS = {
    "efficientnet-lite0": [16, 24, 40, 80, 112, 192, 320],
    "efficientnet-lite1": [16, 24, 40, 80, 112, 192, 320],
    "efficientnet-lite2": [16, 24, 48, 88, 120, 208, 352],
}
KERNELS = [3, 3, 5, 3, 5, 5, 3]
STRIDES = [1, 2, 2, 2, 1, 2, 1]
EXPANDS = [1, 6, 6, 6, 6, 6, 6]


def read_safetensors(path):
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = {"F16": np.float16, "F32": np.float32}[info["dtype"]]
        start, end = info["data_offsets"]
        arr = np.frombuffer(raw[base + start:base + end], dtype=dtype).reshape(info["shape"])
        out[name] = arr.astype(np.float32)
    return out


def folded(sd, conv, bn, eps=1e-3):
    """Weight and bias of convolution `conv` with batch norm `bn` folded in (float32)."""
    w = sd[conv + ".weight"].astype(np.float64)
    g, b = sd[bn + ".weight"].astype(np.float64), sd[bn + ".bias"].astype(np.float64)
    m, v = sd[bn + ".running_mean"].astype(np.float64), sd[bn + ".running_var"].astype(np.float64)
    scale = g / np.sqrt(v + eps)
    return (w * scale[:, None, None, None]).astype(np.float32), (b - m * scale).astype(np.float32)


class Graph:
    def __init__(self):
        self.nodes, self.inits, self.n = [], [], 0

    def name(self, stem):
        self.n += 1
        return f"{stem}_{self.n}"

    def const(self, stem, arr):
        name = self.name(stem)
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), name))
        return name

    def conv(self, x, w, b, stride, groups=1, relu6=False):
        k = w.shape[-1]
        out = self.name("conv")
        self.nodes.append(helper.make_node(
            "Conv", [x, self.const("w", w), self.const("b", b)], [out],
            kernel_shape=[k, k], strides=[stride, stride], group=groups, auto_pad="SAME_UPPER"))
        if not relu6:
            return out
        clipped = self.name("relu6")
        self.nodes.append(helper.make_node(
            "Clip", [out, self.const("lo", np.array(0.0, np.float32)),
                     self.const("hi", np.array(6.0, np.float32))], [clipped]))
        return clipped


def build(sd, arch):
    g = Graph()
    x = "images"  # [batch, 3, H, W], already normalised: (pixel - 127) / 128
    x = g.conv(x, *folded(sd, "_conv_stem", "_bn0"), 2, relu6=True)
    cin, i = 32, 0
    for stage in range(7):
        for r in range(REPEATS[arch][stage]):
            stride = STRIDES[stage] if r == 0 else 1
            cout = CHANNELS[arch][stage]
            p = f"_blocks.{i}."
            inp = x
            if EXPANDS[stage] != 1:
                x = g.conv(x, *folded(sd, p + "_expand_conv", p + "_bn0"), 1, relu6=True)
            mid = cin * EXPANDS[stage]
            x = g.conv(x, *folded(sd, p + "_depthwise_conv", p + "_bn1"), stride, groups=mid, relu6=True)
            x = g.conv(x, *folded(sd, p + "_project_conv", p + "_bn2"), 1)
            if stride == 1 and cin == cout:
                added = g.name("add")
                g.nodes.append(helper.make_node("Add", [x, inp], [added]))
                x = added
            cin, i = cout, i + 1
    last = g.conv(x, *folded(sd, "_conv_head", "_bn1"), 1, relu6=True)
    g.nodes.append(helper.make_node("Identity", [last], ["last_map"]))
    g.nodes.append(helper.make_node("GlobalAveragePool", [last], ["pooled4"]))
    g.nodes.append(helper.make_node(
        "Flatten", ["pooled4"], ["pooled"], axis=1))
    outputs = [
        helper.make_tensor_value_info("last_map", TensorProto.FLOAT, ["batch", 1280, "h", "w"]),
        helper.make_tensor_value_info("pooled", TensorProto.FLOAT, ["batch", 1280]),
    ]
    if "_fc.weight" in sd:
        g.nodes.append(helper.make_node(
            "Gemm", ["pooled", g.const("fc_w", sd["_fc.weight"]), g.const("fc_b", sd["_fc.bias"])],
            ["logits"], transB=1))
        outputs.append(helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 1000]))
    graph = helper.make_graph(
        g.nodes, arch,
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, "height", "width"])],
        outputs, initializer=g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def formula(name, h, w):
    y, x, c = np.meshgrid(np.arange(h), np.arange(w), np.arange(3), indexing="ij")
    if name == "ramp":
        return ((3 * x + 5 * y + 70 * c) % 256).astype(np.uint8)
    if name == "checker":
        return (((x // 16 + y // 16) % 2) * 200 + 20 * c).astype(np.uint8)
    raise SystemExit(f"unknown reference formula {name!r}")


def check(model_path, reference):
    import onnxruntime as ort

    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    ref = json.loads(Path(reference).read_text())
    worst = 0.0
    for key, img in ref["images"].items():
        pixels = formula(img["formula"], img["height"], img["width"])
        x = ((pixels.astype(np.float32) - 127.0) / 128.0).transpose(2, 0, 1)[None]
        names = ["pooled", "logits"] if "logits" in img else ["pooled"]
        got = dict(zip(names, session.run(names, {"images": x})))
        for field in names:
            want = np.array(img[field if field != "pooled" else "pooled"], dtype=np.float32)
            diff = float(np.abs(got[field][0, :len(want)] - want).max())
            worst = max(worst, diff)
            print(f"{key}: {field} max |diff| {diff:.2e}")
    if worst > 1e-3:
        raise SystemExit(f"ONNX export does not match the reference (max |diff| {worst:.2e})")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--arch", default="efficientnet-lite0", choices=sorted(REPEATS))
    ap.add_argument("--weights", type=Path, help="safetensors (default resources/backbones/<arch>.safetensors)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--check", help="reference JSON of tools/convert_efficientnet.py")
    args = ap.parse_args()
    weights = args.weights or ROOT / "resources" / "backbones" / f"{args.arch}.safetensors"
    if not weights.is_file():
        sys.exit(f"no converted weights at {weights} (tools/convert_efficientnet.py)")
    model = build(read_safetensors(weights), args.arch)
    tmp = args.out.with_suffix(args.out.suffix + ".part")
    onnx.save(model, str(tmp))
    tmp.replace(args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB)")
    if args.check:
        check(args.out, args.check)


if __name__ == "__main__":
    main()
