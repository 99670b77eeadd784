#!/usr/bin/env python3
"""A BERT of another shape than MiniLM's, to show such variants load from
their config.json alone: 3 layers, width 16, 4 heads of 4, feed-forward 32,
64 positions, layer-norm epsilon 1e-5, random weights (seed 0, init range
0.2) rounded to f16 and stored as f16; CLS pooling without Normalize.

Writes tests/fixtures/tiny_bert/: config.json, model.safetensors (f16),
modules.json, 1_Pooling/config.json, sentence_bert_config.json, and
tests/fixtures/tiny_bert_embeddings.safetensors: sentence-transformers'
embeddings ([N, 16] f32) of the directory completed with all-MiniLM-L6-v2's
tokenizer (whose vocabulary the model shares); sentences in the metadata.

Usage: python tools/reference/tiny_bert.py [MINILM_DIR]
(default: the directory tools/fetch-models.sh prints).
"""

import json
import os
import shutil
import sys
import tempfile

import torch
from safetensors.torch import save_file
from sentence_transformers import SentenceTransformer
from transformers import BertConfig, BertModel

from repo import FIXTURES, minilm_dir

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(1)
OUT = os.path.join(FIXTURES, "tiny_bert")

SENTENCES = [
    "Turn on the living room lights.",
    "Wake me up at seven",
    "OK",
    "A longer request that spans many more word pieces than the others do, to exercise padding.",
    "",
]

TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"]


def main():
    minilm = minilm_dir(sys.argv)
    config = BertConfig(
        vocab_size=30522, hidden_size=16, num_hidden_layers=3, num_attention_heads=4, intermediate_size=32,
        max_position_embeddings=64, type_vocab_size=2, layer_norm_eps=1e-5, hidden_act="gelu",
        initializer_range=0.2, position_embedding_type="absolute",
    )
    torch.manual_seed(0)
    model = BertModel(config, add_pooling_layer=False)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.half().float())
    os.makedirs(os.path.join(OUT, "1_Pooling"), exist_ok=True)
    model.config.to_json_file(os.path.join(OUT, "config.json"))
    state = {k: v.half().contiguous() for k, v in model.state_dict().items() if not k.endswith("position_ids")}
    save_file(state, os.path.join(OUT, "model.safetensors"), metadata={"format": "pt"})
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    pooling = {"word_embedding_dimension": 16, "pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False}
    with open(os.path.join(OUT, "modules.json"), "w") as f:
        json.dump(modules, f, indent=2)
    with open(os.path.join(OUT, "1_Pooling", "config.json"), "w") as f:
        json.dump(pooling, f, indent=2)
    with open(os.path.join(OUT, "sentence_bert_config.json"), "w") as f:
        json.dump({"max_seq_length": 64, "do_lower_case": False}, f, indent=2)

    with tempfile.TemporaryDirectory() as tmp:
        shutil.copytree(OUT, tmp, dirs_exist_ok=True)
        for name in TOKENIZER_FILES:
            shutil.copy(os.path.join(minilm, name), os.path.join(tmp, name))
        st = SentenceTransformer(tmp, device="cpu")
        assert [type(m).__name__ for m in st] == ["Transformer", "Pooling"]
        emb = st.encode(SENTENCES, batch_size=2, convert_to_tensor=True, normalize_embeddings=False).float()
    assert emb.shape == (len(SENTENCES), 16), emb.shape
    meta = {
        "sentences": json.dumps(SENTENCES, ensure_ascii=False),
        "generator": "tools/reference/tiny_bert.py",
        "torch": torch.__version__,
    }
    path = os.path.join(FIXTURES, "tiny_bert_embeddings.safetensors")
    save_file({"embeddings": emb.contiguous()}, path, metadata=meta)
    size = os.path.getsize(os.path.join(OUT, "model.safetensors"))
    print(f"wrote {OUT} ({size} bytes of weights) and {path}; max |x| {emb.abs().max().item():.3f}")


if __name__ == "__main__":
    main()
