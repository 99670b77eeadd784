#!/usr/bin/env python3
"""PyTorch side of `ember-bench memory`: one training step's time and peak
memory under fp32, autocast f16/bf16 and torch.utils.checkpoint.

Runs ONE configuration per process (the peak-RSS counter is per process) and
prints one JSON object. Workloads, matching the Ember side:

* ``residual``: 32 residual blocks ``x + fc2(relu(fc1(x)))`` of width 1024,
  batch 256, MSE to random targets, AdamW.
* ``minilm``: all-MiniLM-L6-v2 with peft LoRA (r=8, alpha=16, query/value) and
  a linear head, batch 16 of the shipped intent sentences, cross-entropy,
  AdamW.

Memory: the step's peak resident memory above the resident memory before the
step (Linux: ``/proc/self/clear_refs`` resets the peak, ``VmHWM`` reads it),
in steady state (after warm-up, optimizer state allocated, gradients set to
None at the end of each step). ``MALLOC_MMAP_THRESHOLD_`` is set low by the caller so
that freed tensors go back to the system and do not hide in the heap.
"""

import argparse
import json
import os
import statistics
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def rss_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def reset_peak():
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--workload", choices=["residual", "minilm"], required=True)
    ap.add_argument("--precision", choices=["fp32", "f16", "bf16"], default="fp32")
    ap.add_argument("--recompute", choices=["none", "auto"], default="none")
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--model", default=None)
    ap.add_argument("--data", default="data/intents/train.jsonl")
    args = ap.parse_args()

    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    from torch.utils.checkpoint import checkpoint
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dtype = {"fp32": None, "f16": torch.float16, "bf16": torch.bfloat16}[args.precision]
    scaler = torch.amp.GradScaler("cpu", enabled=args.precision == "f16")

    if args.workload == "residual":
        L, W, B = 32, 1024, 256

        class Block(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc1 = nn.Linear(W, W)
                self.fc2 = nn.Linear(W, W)

            def forward(self, x):
                return x + self.fc2(torch.relu(self.fc1(x)))

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.inp = nn.Linear(W, W)
                self.blocks = nn.ModuleList(Block() for _ in range(L))
                self.out = nn.Linear(W, 1)

            def forward(self, x):
                h = self.inp(x)
                if args.recompute == "auto":
                    k = 6  # ceil(sqrt(32)), the segments Ember's `auto` uses
                    for s in range(0, L, k):
                        seg = self.blocks[s:s + k]
                        h = checkpoint(lambda t, seg=seg: _run(seg, t), h, use_reentrant=False)
                else:
                    h = _run(self.blocks, h)
                return self.out(h)

        def _run(blocks, h):
            for b in blocks:
                h = b(h)
            return h

        model = Net()
        x = torch.randn(B, W)
        y = torch.randn(B, 1)

        def loss_fn():
            return F.mse_loss(model(x).float(), y)
        batch_desc = f"batch {B}"
    else:
        from peft import LoraConfig, get_peft_model
        from transformers import AutoModel, AutoTokenizer
        tok = AutoTokenizer.from_pretrained(args.model)
        # Ember's BERT has no dropout layers: without dropout both sides
        # compute (and keep for backward) the same tensors.
        enc = AutoModel.from_pretrained(args.model, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
        enc = get_peft_model(enc, LoraConfig(r=8, lora_alpha=16, target_modules=["query", "value"], lora_dropout=0.0))
        if args.recompute == "auto":
            enc.base_model.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            enc.base_model.model.enable_input_require_grads()
        head = nn.Linear(384, 8)
        texts = [json.loads(l)["text"] for l in open(args.data) if l.strip()][:16]
        batch = tok(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
        labels = torch.arange(16) % 8

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.enc = enc
                self.head = head

        model = Net()
        model.train()

        def loss_fn():
            out = enc(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).float()
            pooled = (out.float() * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return F.cross_entropy(head(pooled).float(), labels)
        batch_desc = f"batch 16, {batch['input_ids'].shape[1]} tokens"

    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)

    def step():
        # Gradients are freed at the end of a step (set to None), so that the
        # memory before a step is weights and optimizer state, as in Ember.
        if dtype is None:
            loss = loss_fn()
        else:
            with torch.autocast("cpu", dtype=dtype):
                loss = loss_fn()
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)
        return loss.item()

    for _ in range(args.warmup):
        step()
    times, peaks = [], []
    for _ in range(args.iters):
        before = rss_kib("VmRSS")
        reset_peak()
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
        peaks.append(rss_kib("VmHWM") - before)
    grad_bytes = sum(p.numel() * 4 for p in params)
    print(json.dumps({
        "system": f"torch {torch.__version__}",
        "workload": args.workload,
        "precision": args.precision,
        "recompute": args.recompute,
        "batch": batch_desc,
        "step_ms": statistics.median(times) * 1e3,
        "step_peak_mib": max(peaks) / 1024,
        "grad_mib": grad_bytes / 2**20,
    }))


if __name__ == "__main__":
    sys.exit(main())
