"""What a cached stage was made from, so that a retrained model or a changed setting never meets a
stale export, vocabulary, pruning or layer subset left on disk by an earlier run.

Each derived folder holds a stamp of its inputs: the digest of the weights it was made from and
the settings that shaped it. A folder whose stamp differs (or that has none) is emptied and made
again; these stages take minutes, while training stages refuse instead (models/finetune.py).
"""

from __future__ import annotations

import functools
import hashlib
import json
import shutil
from collections.abc import Sequence
from pathlib import Path

from app.core.card import sha256_file

STAMP_FILE = "made_from.json"
WEIGHTS_FILES = ("model.safetensors", "pytorch_model.bin")


def weights_digest(model_dir: Path) -> str:
    """sha256 of the folder's weights file, read once while the file stays as it is."""
    for name in WEIGHTS_FILES:
        path = model_dir / name
        if path.is_file():
            stat = path.stat()
            return _file_digest(path.resolve(), stat.st_size, stat.st_mtime_ns)
    raise FileNotFoundError(f"no weights ({' or '.join(WEIGHTS_FILES)}) in {model_dir}")


@functools.cache
def _file_digest(path: Path, size: int, mtime_ns: int) -> str:
    # A student's stages ask for the teacher's digest several times: 438 MB each time otherwise.
    return sha256_file(path)


def texts_digest(texts: Sequence[str], label_ids: Sequence[int] | None = None) -> str:
    """sha256 of texts in order (and their labels): two splits of the same size but other texts
    or other labels never pass for one another."""
    record = {"texts": list(texts), "labels": None if label_ids is None else list(label_ids)}
    return hashlib.sha256(json.dumps(record).encode()).hexdigest()


def made_from(folder: Path, inputs: dict) -> None:
    """Empty ``folder`` unless its stamp says it was made from ``inputs``; then stamp it."""
    stamp = folder / STAMP_FILE
    if folder.exists() and (not stamp.is_file() or json.loads(stamp.read_text()) != inputs):
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stamp.write_text(json.dumps(inputs, indent=2, sort_keys=True))
