#!/usr/bin/env python3
"""PyTorch side of `ember-bench embed`: sentence-transformers on torch CPU.

Prints one JSON object: median latency of encoding batch 1 and batch 32,
throughput, and the process's peak RSS. Same sentences, thread count,
warm-up and iteration count as the Ember side.
"""

import argparse
import json
import os
import resource
import statistics
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    args = ap.parse_args()
    sentences = [line for line in sys.stdin.read().split("\n") if line]

    import torch
    from sentence_transformers import SentenceTransformer
    torch.set_num_threads(args.threads)
    model = SentenceTransformer(args.model, device="cpu")

    def timed(batch):
        for _ in range(args.warmup):
            model.encode(batch, batch_size=len(batch))
        times = []
        for _ in range(args.iters):
            t = time.perf_counter()
            model.encode(batch, batch_size=len(batch))
            times.append(time.perf_counter() - t)
        return statistics.median(times)

    with torch.inference_mode():
        b1 = timed(sentences[:1])
        b32 = timed(sentences[:32])
    print(json.dumps({
        "system": f"sentence-transformers on torch {torch.__version__}",
        "batch1_ms": b1 * 1e3,
        "batch32_ms": b32 * 1e3,
        "throughput_per_s": 32 / b32,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))


if __name__ == "__main__":
    main()
