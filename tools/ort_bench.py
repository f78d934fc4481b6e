#!/usr/bin/env python3
"""Time ONNX Runtime on the exported backbone (tools/export_onnx.py): benchmark only.

Runs `--runs` forward passes of a batch of `--batch` seeded random inputs of
`--height`×`--width` (content does not change the cost) on `--threads` intra-op threads
after `--warmup` passes, and prints one JSON line: the median and best seconds per
batch and the images per second at the median. `cargo bench --bench backbone_bench`
calls it between its own Burn runs so that both are measured in one run.
"""

import argparse
import json
import time

import numpy as np
import onnxruntime as ort


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--height", type=int, default=240)
    ap.add_argument("--width", type=int, default=160)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    args = ap.parse_args()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(args.model, opts, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(7)
    x = rng.uniform(-1.0, 1.0, (args.batch, 3, args.height, args.width)).astype(np.float32)
    for _ in range(args.warmup):
        session.run(["pooled"], {"images": x})
    times = []
    for _ in range(args.runs):
        t = time.perf_counter()
        session.run(["pooled"], {"images": x})
        times.append(time.perf_counter() - t)
    times.sort()
    median = times[len(times) // 2]
    print(json.dumps({
        "onnxruntime": ort.__version__,
        "batch": args.batch,
        "threads": args.threads,
        "median_s": median,
        "best_s": times[0],
        "images_per_s": args.batch / median,
    }))


if __name__ == "__main__":
    main()
