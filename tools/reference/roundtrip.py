#!/usr/bin/env python3
"""PyTorch-saved state dicts that Ember must load and reproduce.

Writes tests/fixtures/roundtrip.safetensors with, for an MLP
(nn.Sequential(Linear, ReLU, Linear)) and the small CNN of
ember_models::cnn (same names), the state dict under `mlp.` / `cnn.` exactly as
`safetensors.torch.save_file(model.state_dict())` writes it, an input and
PyTorch's output.

Also checks, when given a file, that PyTorch loads a file exported by Ember
with load_state_dict(strict=True):
    python tools/reference/roundtrip.py --check-export FILE cnn
"""

import os
import sys

import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

torch.manual_seed(11)
torch.set_num_threads(1)
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")


class SmallCnn(nn.Module):
    def __init__(self, classes=10, c=8, side=8):
        super().__init__()
        self.conv1 = nn.Conv2d(1, c, 3, padding=1)
        self.conv2 = nn.Conv2d(c, 2 * c, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(2 * c * (side // 4) ** 2, classes)

    def forward(self, x):
        x = self.pool(torch.relu(self.conv1(x)))
        x = self.pool(torch.relu(self.conv2(x)))
        return self.fc(x.flatten(1))


def models():
    torch.manual_seed(11)
    mlp = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
    cnn = SmallCnn()
    return {"mlp": mlp, "cnn": cnn}


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "--check-export":
        model = models()[sys.argv[3]]
        missing_unexpected = model.load_state_dict(load_file(sys.argv[2]), strict=True)
        print(f"{sys.argv[2]}: {missing_unexpected}")
        return
    ms = models()
    out = {}
    for name, m in ms.items():
        for k, v in m.state_dict().items():
            out[f"{name}.{k}"] = v.detach().clone().contiguous()
    x_mlp = torch.randn(5, 6)
    x_cnn = torch.randn(4, 1, 8, 8)
    with torch.no_grad():
        out["mlp.input"], out["mlp.output"] = x_mlp, ms["mlp"](x_mlp)
        out["cnn.input"], out["cnn.output"] = x_cnn, ms["cnn"](x_cnn)
    path = os.path.join(ROOT, "tests", "fixtures", "roundtrip.safetensors")
    save_file(out, path, metadata={"generator": "tools/reference/roundtrip.py", "torch": torch.__version__})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
