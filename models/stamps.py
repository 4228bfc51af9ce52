"""What a cached stage was made from, so that a retrained model or a changed setting never meets a
stale export, vocabulary, pruning or layer subset left on disk by an earlier run.

Each derived folder holds a stamp of its inputs: the digest of the weights it was made from and
the settings that shaped it. A folder whose stamp differs (or that has none) is emptied and made
again; these stages take minutes, while training stages refuse instead (models/finetune.py).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from app.core.card import sha256_file

STAMP_FILE = "made_from.json"
WEIGHTS_FILES = ("model.safetensors", "pytorch_model.bin")


def weights_digest(model_dir: Path) -> str:
    """sha256 of the folder's weights file."""
    for name in WEIGHTS_FILES:
        if (model_dir / name).is_file():
            return sha256_file(model_dir / name)
    raise FileNotFoundError(f"no weights ({' or '.join(WEIGHTS_FILES)}) in {model_dir}")


def made_from(folder: Path, inputs: dict) -> None:
    """Empty ``folder`` unless its stamp says it was made from ``inputs``; then stamp it."""
    stamp = folder / STAMP_FILE
    if folder.exists() and (not stamp.is_file() or json.loads(stamp.read_text()) != inputs):
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stamp.write_text(json.dumps(inputs, indent=2, sort_keys=True))
