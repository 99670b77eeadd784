#!/usr/bin/env python3
"""LoRA on all-MiniLM-L6-v2 with Hugging Face peft: the reference for Ember's
LoRA forward pass, A/B gradients and adapter files.

Writes
  tests/fixtures/peft_adapter/{adapter_model.safetensors,adapter_config.json}
      an adapter saved by peft (r=4, alpha=8, query+value, A and B random so
      that it changes the model)
  tests/fixtures/peft_lora.safetensors
      input_ids, attention_mask of 4 sentences, the adapted model's sentence
      embeddings (mean pooling + L2), a fixed random projection R, and the
      gradient of sum(embeddings * R) for every lora_A/lora_B (peft keys,
      prefixed "grad.").

Usage: python tools/reference/peft_lora.py [MODEL_DIR]
"""

import json
import os
import shutil
import sys

import torch
import torch.nn.functional as F
from peft import LoraConfig, get_peft_model
from safetensors.torch import save_file
from transformers import AutoTokenizer, BertModel

from repo import FIXTURES, minilm_dir

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.manual_seed(21)
torch.set_num_threads(1)
SENTENCES = ["Turn on the living room lights.", "Wake me up at seven", "", "¿Qué tiempo hará mañana?"]


def main():
    model_dir = minilm_dir(sys.argv)
    base = BertModel.from_pretrained(model_dir, attn_implementation="eager")
    config = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["query", "value"], bias="none")
    model = get_peft_model(base, config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn_like(p) * 0.05)
    model.eval()  # no dropout anywhere; gradients still flow

    tok = AutoTokenizer.from_pretrained(model_dir)
    batch = tok(SENTENCES, padding=True, truncation=True, max_length=256, return_tensors="pt")
    hidden = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    emb = F.normalize((hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9), dim=1)
    R = torch.randn_like(emb)
    (emb * R).sum().backward()

    out_dir = os.path.join(FIXTURES, "peft_adapter")
    shutil.rmtree(out_dir, ignore_errors=True)
    model.save_pretrained(out_dir)
    cfg_path = os.path.join(out_dir, "adapter_config.json")
    with open(cfg_path) as f:
        cfg = json.load(f)
    cfg["base_model_name_or_path"] = "sentence-transformers/all-MiniLM-L6-v2"  # not this machine's cache path
    with open(cfg_path, "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
    for extra in os.listdir(out_dir):
        if extra not in ("adapter_model.safetensors", "adapter_config.json"):
            os.remove(os.path.join(out_dir, extra))

    out = {
        "input_ids": batch["input_ids"].to(torch.int64),
        "attention_mask": batch["attention_mask"].to(torch.float32),
        "embeddings": emb.detach(),
        "R": R,
    }
    for name, p in model.named_parameters():
        if "lora_" in name:
            key = name.replace(".default", "")
            out[f"grad.{key}"] = p.grad.detach().clone()
    path = os.path.join(FIXTURES, "peft_lora.safetensors")
    save_file({k: v.contiguous() for k, v in out.items()}, path,
              metadata={"generator": "tools/reference/peft_lora.py", "torch": torch.__version__})
    print(f"wrote {path} and {out_dir}: {sum('lora_' in k for k in out)} gradients")


if __name__ == "__main__":
    main()
