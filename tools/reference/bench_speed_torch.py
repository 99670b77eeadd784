#!/usr/bin/env python3
"""PyTorch side of `ember-bench speed`: the same workloads, shapes, thread
count, warm-up and timing rule as the Ember side, in one process.

Prints one JSON object with, per workload, the median time of one call
(seconds). Workloads:

* ``mlp_h{h}_b{b}``: one training step (forward, MSE, backward, AdamW) of
  ``Linear(16,h)-ReLU-Linear(h,h)-ReLU-Linear(h,1)`` on random data, for
  h in {64, 256, 1024} and b in {32, 512}.
* ``residual``: one training step of 32 residual blocks
  ``x + fc2(relu(fc1(x)))`` of width 1024 (input and output layers as in
  ``bench_memory_torch.py``), batch 256, MSE, AdamW.
* ``encode_b1`` / ``encode_b32``: sentence-transformers ``encode`` of the
  sentences on stdin (the first one, all 32), tokenization included.
* ``lora_step``: one training step of all-MiniLM-L6-v2 with peft LoRA (r=8,
  alpha=16, query/value) and a linear head over mean pooling, batch 16 of 64
  random token ids, cross-entropy, AdamW; dropout off, as Ember's BERT has
  none.
* ``gemm``: the best f32 ``torch.mm`` rate over square sizes 256..2048
  (GFLOP/s), the machine's reachable peak through PyTorch's BLAS.
* ``gemm_shapes``: the f32 ``torch.mm`` rate (GFLOP/s) of the matrix
  products inside the workloads (``GEMM_SHAPES``: the h = 1024, batch 512
  step's forward product, input gradient and weight gradient with their
  transposed operands; MiniLM's projection and feed-forward products at 16 x
  64 tokens, against the transposed ``[out, in]`` weight as the model runs
  them), on one thread and on ``threads``.

Timing: ``warmup`` untimed calls, then calls until both ``min_iters`` calls
and ``seconds`` of time are reached (at most 1000); the median is reported.
"""

import argparse
import json
import os
import statistics
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")


# (name, m, k, n, lhs transposed, rhs transposed); the same list as
# GEMM_SHAPES in targets/cli/src/speed.rs.
GEMM_SHAPES = [
    ("mlp_forward", 512, 1024, 1024, False, False),
    ("mlp_input_grad", 512, 1024, 1024, False, True),
    ("mlp_weight_grad", 1024, 512, 1024, True, False),
    ("minilm_projection", 1024, 384, 384, False, True),
    ("minilm_ffn", 1024, 384, 1536, False, True),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--min-iters", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--quick", action="store_true", help="skip the residual network")
    ap.add_argument("--only", default="", help="only the workloads whose name contains this")
    ap.add_argument("--gemm-shapes", action="store_true", help="also time the workloads' matrix products")
    args = ap.parse_args()

    def wants(name):
        return args.only in name and not (args.quick and name == "residual")
    sentences = [line for line in sys.stdin.read().split("\n") if line]

    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    def timed(fn):
        for _ in range(args.warmup):
            fn()
        times, start = [], time.perf_counter()
        while len(times) < args.min_iters or (time.perf_counter() - start < args.seconds and len(times) < 1000):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return statistics.median(times)

    def train_step(model, loss_fn):
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.01)

        def step():
            loss = loss_fn()
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            return loss.item()
        return timed(step)

    out = {"system": f"torch {torch.__version__}", "threads": torch.get_num_threads(), "seconds": {}}
    sec = out["seconds"]

    for h in (64, 256, 1024):
        for b in (32, 512):
            if not wants(f"mlp_h{h}_b{b}"):
                continue
            net = nn.Sequential(nn.Linear(16, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(), nn.Linear(h, 1))
            x, y = torch.randn(b, 16), torch.randn(b, 1)
            sec[f"mlp_h{h}_b{b}"] = train_step(net, lambda: F.mse_loss(net(x), y))

    if wants("residual"):
        L, W, B = 32, 1024, 256

        class Block(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc1 = nn.Linear(W, W)
                self.fc2 = nn.Linear(W, W)

            def forward(self, x):
                return x + self.fc2(torch.relu(self.fc1(x)))

        res = nn.Sequential(nn.Linear(W, W), *[Block() for _ in range(L)], nn.Linear(W, 1))
        x, y = torch.randn(B, W), torch.randn(B, 1)
        sec["residual"] = train_step(res, lambda: F.mse_loss(res(x), y))
        del res

    encodes = [n for n in (1, 32) if wants(f"encode_b{n}")]
    if encodes:
        from sentence_transformers import SentenceTransformer
        st = SentenceTransformer(args.model, device="cpu")
        with torch.inference_mode():
            for n in encodes:
                sec[f"encode_b{n}"] = timed(lambda: st.encode(sentences[:n], batch_size=n))
        del st

    if wants("lora_step"):
        from peft import LoraConfig, get_peft_model
        from transformers import AutoModel
        # Ember's BERT has no dropout layers: without dropout (and no LoRA
        # dropout) both sides compute the same step.
        enc = AutoModel.from_pretrained(args.model, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
        enc = get_peft_model(enc, LoraConfig(r=8, lora_alpha=16, target_modules=["query", "value"], lora_dropout=0.0))
        head = nn.Linear(384, 8)
        ids = torch.randint(1000, 29000, (16, 64))
        mask = torch.ones(16, 64, dtype=torch.long)
        labels = torch.arange(16) % 8
        model = nn.ModuleDict({"enc": enc, "head": head})
        model.train()

        def lora_loss():
            hidden = enc(input_ids=ids, attention_mask=mask).last_hidden_state
            m = mask.unsqueeze(-1).float()
            pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
            return F.cross_entropy(head(pooled), labels)
        sec["lora_step"] = train_step(model, lora_loss)

    best = 0.0
    with torch.inference_mode():
        for n in (256, 512, 1024, 2048):
            a, b = torch.randn(n, n), torch.randn(n, n)
            t = timed(lambda: torch.mm(a, b))
            best = max(best, 2 * n**3 / t / 1e9)
    out["gemm_gflops"] = best

    if args.gemm_shapes:
        shapes = out["gemm_shapes"] = {}
        with torch.inference_mode():
            for name, m, k, n, ta, tb in GEMM_SHAPES:
                a = torch.randn(k, m).t() if ta else torch.randn(m, k)
                b = torch.randn(n, k).t() if tb else torch.randn(k, n)
                rates = {}
                for threads in sorted({1, args.threads}):
                    torch.set_num_threads(threads)
                    rates[str(threads)] = 2 * m * k * n / timed(lambda: torch.mm(a, b)) / 1e9
                torch.set_num_threads(args.threads)
                shapes[name] = rates
    print(json.dumps(out))


if __name__ == "__main__":
    sys.exit(main())
