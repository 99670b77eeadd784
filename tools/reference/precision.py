#!/usr/bin/env python3
"""Generate the loss-scaler parity fixture from torch.amp.GradScaler.

A Linear(4, 3) regression is trained with SGD (lr 0.1) for 16 full-batch
steps under ``torch.amp.GradScaler("cpu", init_scale=2**16,
growth_interval=3)``. At chosen steps an overflow is injected: after
``scaler.scale(loss).backward()`` one element of the weight gradient is set
to +inf (or NaN), as an f16 overflow would. For every step the fixture holds
the scale *used* by the step, the scale after ``scaler.update()``, whether the
optimizer step was skipped, the (unscaled) loss, and the parameters after
the step. A second run keeps GradScaler's default growth interval (2000) to
show that nothing grows within 16 steps.

Usage: ``python tools/reference/precision.py [OUT_DIR]`` (default
``tests/fixtures``).
"""

import os
import sys

import torch
import torch.nn as nn
from safetensors.torch import save_file

torch.use_deterministic_algorithms(True)
torch.set_num_threads(1)

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.path.dirname(__file__), "..", "..", "tests", "fixtures")
os.makedirs(OUT, exist_ok=True)

STEPS = 16
# step -> what is injected into weight.grad[0, 0] after backward
INJECT = {2: float("inf"), 3: float("inf"), 7: float("nan"), 11: float("inf")}


def run(growth_interval):
    torch.manual_seed(0)
    lin = nn.Linear(4, 3)
    x = torch.randn(8, 4)
    y = torch.randn(8, 3)
    init = {"init.weight": lin.weight.detach().clone(), "init.bias": lin.bias.detach().clone()}
    opt = torch.optim.SGD(lin.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16, growth_factor=2.0,
                                  backoff_factor=0.5, growth_interval=growth_interval)
    used, after, skipped, losses, weights, biases = [], [], [], [], [], []
    for step in range(STEPS):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(lin(x), y)
        used.append(scaler.get_scale())
        scaler.scale(loss).backward()
        if step in INJECT:
            with torch.no_grad():
                lin.weight.grad[0, 0] = INJECT[step]
        before = lin.weight.detach().clone()
        scaler.step(opt)
        scaler.update()
        after.append(scaler.get_scale())
        skipped.append(float(torch.equal(before, lin.weight.detach())))
        losses.append(loss.item())
        weights.append(lin.weight.detach().clone())
        biases.append(lin.bias.detach().clone())
    return {
        **init,
        "x": x,
        "y": y,
        "scale_used": torch.tensor(used, dtype=torch.float64),
        "scale_after": torch.tensor(after, dtype=torch.float64),
        "skipped": torch.tensor(skipped),
        "loss": torch.tensor(losses),
        "weight": torch.stack(weights),
        "bias": torch.stack(biases),
    }


def main():
    tensors = {}
    for name, interval in (("interval3", 3), ("default", 2000)):
        for k, v in run(interval).items():
            tensors[f"{name}.{k}"] = v.contiguous()
    inject = torch.tensor(sorted(INJECT), dtype=torch.int64)
    tensors["inject_steps"] = inject
    tensors["inject_nan"] = torch.tensor([float(INJECT[s] != INJECT[s]) for s in sorted(INJECT)])
    meta = {"generator": "tools/reference/precision.py", "torch": torch.__version__,
            "steps": str(STEPS), "lr": "0.1"}
    save_file(tensors, os.path.join(OUT, "grad_scaler.safetensors"), metadata=meta)
    print(f"wrote grad_scaler.safetensors: {len(tensors)} tensors")


if __name__ == "__main__":
    main()
