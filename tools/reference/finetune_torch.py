#!/usr/bin/env python3
"""PyTorch side of `ember-bench finetune`: the same job as `ember finetune`'s
default, with transformers + peft on torch CPU.

all-MiniLM-L6-v2 with LoRA (r=8, alpha=16, query/value, no dropout) and a
linear head over mean-pooled tokens; AdamW (lr 2e-3, weight decay 0.01),
linear warm-up from 0.1× over the first 10 % of steps then cosine to 1 % of
the peak, global-norm clipping at 1.0, batch 16 padded to the longest text,
held-out accuracy before and after. Like `ember finetune`, it evaluates on
the held-out set and writes a checkpoint of what trains (adapter, head,
optimizer state, step) after every epoch; both are inside the timed training
loop. Prints one JSON object with the training time, the accuracies and the
process's peak RSS. Versions:
tools/reference/requirements.txt.
"""

import argparse
import json
import os
import resource
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def read(path, labels, grow):
    texts, ys = [], []
    with open(path) as f:
        for line in f:
            if not line.strip():
                continue
            row = json.loads(line)
            label = str(row["label"])
            if label not in labels:
                if not grow:
                    raise SystemExit(f"{path}: label {label} not in the training set")
                labels.append(label)
            texts.append(row["text"])
            ys.append(labels.index(label))
    return texts, ys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--train", required=True)
    ap.add_argument("--test", required=True)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--out", default=None, help="checkpoint directory (default: a temporary one)")
    args = ap.parse_args()

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModel, AutoTokenizer

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    labels = []
    train_x, train_y = read(args.train, labels, True)
    test_x, test_y = read(args.test, labels, False)

    tok = AutoTokenizer.from_pretrained(args.model)
    base = AutoModel.from_pretrained(args.model)
    config = LoraConfig(r=args.rank, lora_alpha=2 * args.rank, lora_dropout=0.0, target_modules=["query", "value"])
    encoder = get_peft_model(base, config)
    head = torch.nn.Linear(base.config.hidden_size, len(labels))

    def logits(texts):
        batch = tok(texts, padding=True, truncation=True, return_tensors="pt")
        hidden = encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        return head((hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9))

    def accuracy():
        encoder.eval()
        correct = 0
        with torch.inference_mode():
            for i in range(0, len(test_x), 64):
                pred = logits(test_x[i:i + 64]).argmax(1)
                correct += (pred == torch.tensor(test_y[i:i + 64])).sum().item()
        encoder.train()
        return correct / len(test_x)

    before = accuracy()
    params = [p for p in encoder.parameters() if p.requires_grad] + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01)
    steps_per_epoch = -(-len(train_x) // args.batch_size)
    total = steps_per_epoch * args.epochs
    warmup = max(total // 10, 1)
    sched = torch.optim.lr_scheduler.SequentialLR(
        opt,
        [
            torch.optim.lr_scheduler.LinearLR(opt, start_factor=0.1, total_iters=warmup),
            torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(total - warmup, 1), eta_min=args.lr * 0.01),
        ],
        milestones=[warmup],
    )
    import tempfile
    out = args.out or tempfile.mkdtemp(prefix="ember-bench-torch-")
    os.makedirs(out, exist_ok=True)
    start = time.perf_counter()
    for epoch in range(args.epochs):
        order = torch.randperm(len(train_x)).tolist()
        for i in range(0, len(order), args.batch_size):
            idx = order[i:i + args.batch_size]
            loss = torch.nn.functional.cross_entropy(logits([train_x[j] for j in idx]), torch.tensor([train_y[j] for j in idx]))
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
        accuracy()
        trainable = {k: v for k, v in encoder.state_dict().items() if "lora_" in k}
        torch.save({"adapter": trainable, "head": head.state_dict(), "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(), "epoch": epoch + 1}, os.path.join(out, f"epoch-{epoch + 1}.pt"))
    seconds = time.perf_counter() - start
    after = accuracy()
    print(json.dumps({
        "system": f"transformers + peft on torch {torch.__version__}",
        "steps": total,
        "train_seconds": seconds,
        "seconds_per_step": seconds / total,
        "accuracy_before": before,
        "accuracy_after": after,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))


if __name__ == "__main__":
    main()
