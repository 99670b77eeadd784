"""Paths the reference scripts share: the repository root, the fixtures
directory, and the all-MiniLM-L6-v2 directory (a command-line argument, or
what tools/fetch-models.sh prints, fetching the model if it is not cached)."""

import os
import subprocess

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")


def minilm_dir(argv=()):
    """argv[1] when given (made absolute), else the cached model's directory."""
    if len(argv) > 1:
        return os.path.abspath(argv[1])
    return subprocess.check_output([os.path.join(ROOT, "tools", "fetch-models.sh")], text=True).strip()
