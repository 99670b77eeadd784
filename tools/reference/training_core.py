#!/usr/bin/env python3
"""Generate the training-core parity fixtures from PyTorch.

Every tensor the Rust parity tests compare against is produced here, from fixed
seeds, with the versions pinned in ``requirements.txt``. Weights are stored in
PyTorch's own layout and names (``Linear.weight`` is ``[out, in]``); the Rust
side transposes where Burn's layout differs.

Usage: ``python tools/reference/training_core.py [OUT_DIR]``
(default ``tests/fixtures``).
"""

import math
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file

torch.set_default_dtype(torch.float32)
torch.use_deterministic_algorithms(True)
torch.set_num_threads(1)

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.path.dirname(__file__), "..", "..", "tests", "fixtures")
os.makedirs(OUT, exist_ok=True)


def save(name, tensors, **meta):
    tensors = {k: v.detach().contiguous().clone() for k, v in tensors.items()}
    meta = {k: str(v) for k, v in meta.items()}
    meta["generator"] = "tools/reference/training_core.py"
    meta["torch"] = torch.__version__
    save_file(tensors, os.path.join(OUT, name), metadata=meta)
    print(f"wrote {name}: {len(tensors)} tensors")


def state(prefix, model):
    # state_dict() holds references: clone, or later in-place updates leak in.
    return {f"{prefix}{k}": v.detach().clone() for k, v in model.state_dict().items()}


# --------------------------------------------------------------------------
# 1. Layers and losses: Linear + ReLU/tanh/sigmoid, MSE, BCE-with-logits.
# --------------------------------------------------------------------------
def layers():
    torch.manual_seed(1)
    lin = nn.Linear(5, 7)
    x = torch.randn(4, 5)
    y = torch.randn(4, 7)
    t = torch.randint(0, 2, (4, 7)).float()
    out = {"x": x, "y": y, "target01": t, "weight": lin.weight, "bias": lin.bias}
    acts = {"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid}
    for name, act in acts.items():
        lin.zero_grad()
        xg = x.clone().requires_grad_(True)
        h = act(lin(xg))
        loss = F.mse_loss(h, y)
        loss.backward()
        out[f"{name}.out"] = h
        out[f"{name}.mse"] = loss.reshape(1)
        out[f"{name}.grad.weight"] = lin.weight.grad.clone()
        out[f"{name}.grad.bias"] = lin.bias.grad.clone()
        out[f"{name}.grad.x"] = xg.grad.clone()
    lin.zero_grad()
    xg = x.clone().requires_grad_(True)
    logits = lin(xg)
    loss = F.binary_cross_entropy_with_logits(logits, t)
    loss.backward()
    out["bce.logits"] = logits
    out["bce.loss"] = loss.reshape(1)
    out["bce.grad.weight"] = lin.weight.grad.clone()
    out["bce.grad.bias"] = lin.bias.grad.clone()
    out["bce.grad.x"] = xg.grad.clone()
    # Extreme logits: the stable formulation must not overflow.
    big = torch.tensor([[-120.0, -30.0, 0.0, 30.0, 120.0]], requires_grad=True)
    bt = torch.tensor([[1.0, 0.0, 1.0, 1.0, 0.0]])
    bl = F.binary_cross_entropy_with_logits(big, bt)
    bl.backward()
    out["bce_extreme.logits"] = big
    out["bce_extreme.target"] = bt
    out["bce_extreme.loss"] = bl.reshape(1)
    out["bce_extreme.grad"] = big.grad.clone()
    save("layers.safetensors", out, seed=1)


# --------------------------------------------------------------------------
# 2. The backprop trace of seed section 02 (4 -> 8 -> 1, BCE, one SGD step).
# --------------------------------------------------------------------------
def backprop_trace():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    x = torch.randn(3, 4)
    y = torch.tensor([[1.0], [0.0], [1.0]])
    out = {"x": x, "y": y}
    out.update(state("init.", model))
    pred = model(x)
    loss = F.binary_cross_entropy_with_logits(pred, y)
    loss.backward()
    out["pred"] = pred
    out["loss"] = loss.reshape(1)
    for name, p in model.named_parameters():
        out[f"grad.{name}"] = p.grad.clone()
        out[f"grad_norm.{name}"] = p.grad.norm().reshape(1)
        out[f"param_norm.{name}"] = p.data.norm().reshape(1)
    with torch.no_grad():
        for p in model.parameters():
            p -= 0.01 * p.grad
            p.grad.zero_()
    out.update(state("after.", model))
    out["loss_after"] = F.binary_cross_entropy_with_logits(model(x), y).reshape(1)
    save("backprop_trace.safetensors", out, seed=0, lr=0.01)


# --------------------------------------------------------------------------
# 3. Optimizers on the 16 -> 64 -> 64 -> 1 regression of seed section 03.
# --------------------------------------------------------------------------
def f32(v):
    """The f32 value nearest to `v`, as a Python float.

    Burn's SGD keeps its hyper-parameters (momentum, weight decay) in f32. In f32 training that is what PyTorch does too (a Python float
    scalar meets f32 tensors); for the f64 reference run the same rounded
    values are given to PyTorch, so both sides compute with identical inputs.
    """
    return float(np.float32(v))


OPTIMIZERS = {
    "sgd": lambda p: torch.optim.SGD(p, lr=0.05),
    "sgd_wd": lambda p: torch.optim.SGD(p, lr=0.05, weight_decay=f32(0.01)),
    "momentum": lambda p: torch.optim.SGD(p, lr=0.02, momentum=f32(0.9)),
    "momentum_dampening": lambda p: torch.optim.SGD(p, lr=0.02, momentum=f32(0.9), dampening=0.1),
    "nesterov": lambda p: torch.optim.SGD(p, lr=0.02, momentum=f32(0.9), nesterov=True),
    # Ember's Adam keeps its scalars in f64, like PyTorch: plain defaults.
    "adam_l2": lambda p: torch.optim.Adam(p, lr=1e-3, weight_decay=0.01),
    "adamw": lambda p: torch.optim.AdamW(p, lr=1e-3, weight_decay=0.01),
}
CHECKPOINT_STEPS = (1, 10, 100, 300)


def optimizers(dtype, name):
    """300 steps of every optimizer, in `dtype`.

    The f32 run is what users run; the f64 run is the 300-step parity target.
    Fitting noise with a ReLU net is chaotic in f32: PyTorch against *itself*
    with the initial weights perturbed by one ulp (1e-7 relative) drifts by
    ~3e-2 (AdamW) and ~7e-4 (SGD) at step 300, so no implementation with a
    different summation order can match f32 PyTorch to 1e-4 there. In f64 the
    same amplification leaves ~1e-11, and the update rules are compared exactly.
    `sensitivity()` below measures and stores that drift.
    """
    steps = 300
    out = {}
    for opt_name, make in OPTIMIZERS.items():
        torch.manual_seed(42)
        model = nn.Sequential(
            nn.Linear(16, 64), nn.ReLU(),
            nn.Linear(64, 64), nn.ReLU(),
            nn.Linear(64, 1))
        X = torch.randn(512, 16); y = torch.randn(512, 1)
        X_val = torch.randn(128, 16); y_val = torch.randn(128, 1)
        model = model.to(dtype)
        X, y, X_val, y_val = (t.to(dtype) for t in (X, y, X_val, y_val))
        opt = make(model.parameters())
        if opt_name == "sgd":  # data and init are the same for every optimizer
            out.update(state("init.", model))
            out.update({"X": X, "y": y, "X_val": X_val, "y_val": y_val})
        losses = []
        for step in range(1, steps + 1):
            loss = F.mse_loss(model(X), y)
            opt.zero_grad(); loss.backward(); opt.step()
            losses.append(loss.item())
            if step in CHECKPOINT_STEPS:
                out.update(state(f"{opt_name}.step{step}.", model))
        out[f"{opt_name}.losses"] = torch.tensor(losses, dtype=torch.float64)
        with torch.no_grad():
            out[f"{opt_name}.val_loss"] = F.mse_loss(model(X_val), y_val).reshape(1)
    save(name, out, steps=steps, dtype=str(dtype))


def sensitivity():
    """PyTorch f32 against PyTorch f32 with the initial weights scaled by
    (1 + 1e-7): the drift of the problem itself, per optimizer and step."""
    out = {}
    for opt_name, make in OPTIMIZERS.items():
        runs = []
        for perturb in (0.0, 1e-7):
            torch.manual_seed(42)
            model = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 1))
            X = torch.randn(512, 16); y = torch.randn(512, 1)
            with torch.no_grad():
                for p in model.parameters():
                    p.mul_(1 + perturb)
            opt = make(model.parameters())
            snaps = []
            for step in range(1, 301):
                loss = F.mse_loss(model(X), y)
                opt.zero_grad(); loss.backward(); opt.step()
                if step in CHECKPOINT_STEPS:
                    snaps.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
            runs.append(snaps)
        out[f"{opt_name}.max_abs_drift"] = torch.tensor(
            [(a - b).abs().max().item() for a, b in zip(*runs)], dtype=torch.float64)
    out["steps"] = torch.tensor(CHECKPOINT_STEPS, dtype=torch.float64)
    save("optimizer_sensitivity.safetensors", out, perturbation=1e-7)


# --------------------------------------------------------------------------
# 4. BatchNorm1d: train/eval, running statistics, momentum, gradients.
# --------------------------------------------------------------------------
def batchnorm():
    torch.manual_seed(3)
    bn = nn.BatchNorm1d(6, momentum=0.1, eps=1e-5)
    with torch.no_grad():
        bn.weight.copy_(torch.rand(6) + 0.5)
        bn.bias.copy_(torch.randn(6))
    out = {"weight": bn.weight, "bias": bn.bias}
    bn.train()
    for i in range(3):
        x = torch.randn(16, 6) * (i + 1) + i
        xg = x.clone().requires_grad_(True)
        bn.zero_grad()
        yv = bn(xg)
        up = torch.randn(16, 6)
        (yv * up).sum().backward()
        out[f"train{i}.x"] = x
        out[f"train{i}.upstream"] = up
        out[f"train{i}.out"] = yv
        out[f"train{i}.grad.x"] = xg.grad.clone()
        out[f"train{i}.grad.weight"] = bn.weight.grad.clone()
        out[f"train{i}.grad.bias"] = bn.bias.grad.clone()
        out[f"train{i}.running_mean"] = bn.running_mean.clone()
        out[f"train{i}.running_var"] = bn.running_var.clone()
    bn.eval()
    xe = torch.randn(5, 6)
    out["eval.x"] = xe
    out["eval.out"] = bn(xe)
    save("batchnorm.safetensors", out, momentum=0.1, eps=1e-5)


# --------------------------------------------------------------------------
# 5. Global-norm clipping: torch.nn.utils.clip_grad_norm_.
# --------------------------------------------------------------------------
def clipping():
    torch.manual_seed(5)
    shapes = [(8, 4), (8,), (1, 8), (1,)]
    out = {}
    cases = {
        "l2_clip": dict(max_norm=1.0, norm_type=2.0, scale=3.0),
        "l2_noclip": dict(max_norm=100.0, norm_type=2.0, scale=1.0),
        "inf_clip": dict(max_norm=0.5, norm_type=float("inf"), scale=3.0),
        "l1_clip": dict(max_norm=2.0, norm_type=1.0, scale=1.0),
    }
    for case, cfg in cases.items():
        params = [nn.Parameter(torch.zeros(s)) for s in shapes]
        for i, p in enumerate(params):
            p.grad = torch.randn(p.shape) * cfg["scale"]
            out[f"{case}.grad{i}"] = p.grad.clone()
        total = torch.nn.utils.clip_grad_norm_(params, cfg["max_norm"], norm_type=cfg["norm_type"])
        out[f"{case}.total_norm"] = total.reshape(1)
        out[f"{case}.config"] = torch.tensor([cfg["max_norm"], cfg["norm_type"]])
        for i, p in enumerate(params):
            out[f"{case}.clipped{i}"] = p.grad.clone()
    save("clipping.safetensors", out)


# --------------------------------------------------------------------------
# 6. Learning-rate schedules (values in f64).
# --------------------------------------------------------------------------
def schedules():
    out = {}
    n = 40

    def run(name, make, base_lr):
        p = nn.Parameter(torch.zeros(1))
        opt = torch.optim.SGD([p], lr=base_lr)
        sched = make(opt)
        lrs = []
        for _ in range(n):
            lrs.append(sched.get_last_lr()[0])
            opt.step(); sched.step()
        out[name] = torch.tensor(lrs, dtype=torch.float64)

    from torch.optim import lr_scheduler as L
    run("cosine_tmax10_min1e-5", lambda o: L.CosineAnnealingLR(o, T_max=10, eta_min=1e-5), 3e-4)
    run("cosine_tmax25_min0", lambda o: L.CosineAnnealingLR(o, T_max=25, eta_min=0.0), 0.1)
    run("step_3_0.5", lambda o: L.StepLR(o, step_size=3, gamma=0.5), 0.1)
    run("linear_warmup_0.1_5", lambda o: L.LinearLR(o, start_factor=0.1, end_factor=1.0, total_iters=5), 0.01)
    run("constant", lambda o: L.ConstantLR(o, factor=1.0, total_iters=0), 0.01)
    run("warmup5_cosine20_min1e-4", lambda o: L.SequentialLR(o, [
        L.LinearLR(o, start_factor=0.01, end_factor=1.0, total_iters=5),
        L.CosineAnnealingLR(o, T_max=20, eta_min=1e-4)], milestones=[5]), 0.01)
    save("schedules.safetensors", out, steps=n)


# --------------------------------------------------------------------------
# 7. The seed section 06 training loop (fp32): AdamW 3e-4, wd 0.01, cosine
#    over epochs, global clipping at 1.0, large-norm warning above 5.0.
# --------------------------------------------------------------------------
def training_loop():
    torch.manual_seed(7)
    model = nn.Sequential(
        nn.Linear(8, 32), nn.Tanh(),
        nn.Linear(32, 32), nn.Tanh(),
        nn.Linear(32, 1))
    X = torch.randn(64, 8)
    w_true = torch.randn(8, 1)
    y = (X @ w_true) * 4.0 + 0.1 * torch.randn(64, 1)
    num_epochs, batch = 6, 16
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.01)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=num_epochs)
    out = {"X": X, "y": y}
    out.update(state("init.", model))
    losses, norms, lrs = [], [], []
    for epoch in range(num_epochs):
        model.train()
        for step in range(0, X.shape[0], batch):
            xb, yb = X[step:step + batch], y[step:step + batch]
            optimizer.zero_grad()
            loss = F.mse_loss(model(xb), yb)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
            optimizer.step()
            losses.append(loss.item()); norms.append(grad_norm.item())
            lrs.append(optimizer.param_groups[0]["lr"])
        scheduler.step()
    out["losses"] = torch.tensor(losses)
    out["grad_norms"] = torch.tensor(norms)
    out["lrs"] = torch.tensor(lrs, dtype=torch.float64)
    out.update(state("final.", model))
    save("training_loop.safetensors", out, epochs=num_epochs, batch=batch)


if __name__ == "__main__":
    layers()
    backprop_trace()
    optimizers(torch.float32, "optimizers.safetensors")
    optimizers(torch.float64, "optimizers_f64.safetensors")
    sensitivity()
    batchnorm()
    clipping()
    schedules()
    training_loop()
