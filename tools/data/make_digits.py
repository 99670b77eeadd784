#!/usr/bin/env python3
"""Writes data/digits/{train,test}.csv: scikit-learn's 8×8 handwritten digits
(1,797 images, UCI ML hand-written digits, shipped inside scikit-learn), for
`ember finetune --task digits`.

Each row is the 64 pixel intensities (integers 0–16, row-major) followed by
the label 0–9. The split is stratified, 75 % / 25 %, seed 0.
Usage: python tools/data/make_digits.py   (scikit-learn 1.9.1, see
tools/reference/requirements.txt)
"""

import os

from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")


def main():
    digits = load_digits()
    x, y = digits.data.astype(int), digits.target.astype(int)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
    out = os.path.join(ROOT, "data", "digits")
    os.makedirs(out, exist_ok=True)
    header = ",".join(f"p{i}" for i in range(64)) + ",label\n"
    for name, xs, ys in [("train", x_train, y_train), ("test", x_test, y_test)]:
        with open(os.path.join(out, f"{name}.csv"), "w") as f:
            f.write(header)
            for row, label in zip(xs, ys):
                f.write(",".join(str(v) for v in row) + f",{label}\n")
        print(f"{name}: {len(ys)} rows")


if __name__ == "__main__":
    main()
