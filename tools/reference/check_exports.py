#!/usr/bin/env python3
"""Loads what Ember exported (left by `cargo test` in
target/tmp/ember-exports) in PyTorch, and checks it gives Ember's outputs.

  mlp.safetensors, cnn.safetensors  -> load_state_dict(strict=True) into the
      PyTorch definitions of tools/reference/roundtrip.py; outputs on the
      fixture inputs vs Ember's (mlp/cnn_ember_output.safetensors)
  minilm.safetensors                -> transformers BertModel,
      load_state_dict(strict=True); sentence embeddings vs sentence-transformers
  adapter/                          -> peft PeftModel.from_pretrained on MiniLM;
      embeddings vs Ember's (adapter_ember_output.safetensors)

Usage: python tools/reference/check_exports.py [DIR]   (run by .ci/run)
Prints "N passed, M failed" and exits non-zero on any failure.
"""

import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
import torch.nn.functional as F
from safetensors.torch import load_file

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..")
sys.path.insert(0, HERE)
import roundtrip  # noqa: E402
from repo import minilm_dir  # noqa: E402

torch.set_num_threads(1)
results = []


def check(name, ok, detail=""):
    results.append(ok)
    print(f"{'ok  ' if ok else 'FAIL'} {name} {detail}")


def max_diff(a, b):
    return (a - b).abs().max().item()


def main():
    d = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target", "tmp", "ember-exports")
    fixture = load_file(os.path.join(ROOT, "tests", "fixtures", "roundtrip.safetensors"))
    models = roundtrip.models()
    for name in ("mlp", "cnn"):
        model = models[name]
        model.load_state_dict(load_file(os.path.join(d, f"{name}.safetensors")), strict=True)
        with torch.no_grad():
            out = model(fixture[f"{name}.input"])
        ember = load_file(os.path.join(d, f"{name}_ember_output.safetensors"))["output"]
        diff = max_diff(out, ember)
        check(f"{name}: Ember export loads with strict=True and gives Ember's output", diff <= 1e-5, f"(max diff {diff:.1e})")

    model_dir = minilm_dir()
    from transformers import AutoTokenizer, BertModel
    tok = AutoTokenizer.from_pretrained(model_dir)
    sentences = ["Turn on the living room lights.", "Wake me up at seven", "", "¿Qué tiempo hará mañana?"]
    batch = tok(sentences, padding=True, truncation=True, max_length=256, return_tensors="pt")

    def embed(m):
        with torch.no_grad():
            h = m(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        return F.normalize((h * mask).sum(1) / mask.sum(1).clamp(min=1e-9), dim=1)

    original = BertModel.from_pretrained(model_dir, attn_implementation="eager").eval()
    exported = BertModel.from_pretrained(model_dir, attn_implementation="eager").eval()
    exported.load_state_dict(load_file(os.path.join(d, "minilm.safetensors")), strict=True)
    diff = max_diff(embed(original), embed(exported))
    check("minilm: Ember export loads with strict=True, same embeddings", diff == 0.0, f"(max diff {diff:.1e})")

    from peft import PeftModel
    base = BertModel.from_pretrained(model_dir, attn_implementation="eager").eval()
    peft_model = PeftModel.from_pretrained(base, os.path.join(d, "adapter")).eval()
    ember = load_file(os.path.join(d, "adapter_ember_output.safetensors"))["output"]
    diff = max_diff(embed(peft_model), ember)
    check("adapter: Ember's adapter loads in peft and gives Ember's embeddings", diff <= 1e-5, f"(max diff {diff:.1e})")

    passed = sum(results)
    failed = len(results) - passed
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
