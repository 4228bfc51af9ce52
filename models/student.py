"""Shallow students: a pretrained encoder keeping a subset of its layers, DistilBERT-style."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from transformers import AutoModel

from models.pooling import mark_pooling
from models.recipe import Pooling
from models.stamps import made_from, weights_digest

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
)


def keep_layers(base: Path, output: Path, layers: list[int] | None) -> Path:
    """Save ``base`` with only ``layers`` (0-based) of its encoder, in that order (all: None)."""
    model = AutoModel.from_pretrained(base)
    if layers is not None:
        encoder = model.base_model.encoder
        available = len(encoder.layer)
        if not layers or any(not 0 <= i < available for i in layers):
            raise ValueError(
                f"layers must be a non-empty subset of 0..{available - 1}, got {layers}"
            )
        encoder.layer = torch.nn.ModuleList([encoder.layer[i] for i in layers])
        model.config.num_hidden_layers = len(layers)
    output.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output)
    for name in TOKENIZER_FILES:
        if (base / name).is_file():
            shutil.copyfile(base / name, output / name)
    return output


def starting_weights(
    base: Path, layers: list[int] | None, workdir: Path, pooling: Pooling = "cls"
) -> Path:
    """A student's or a teacher's starting weights: ``base`` itself, or its layer subset and its
    pooling (cached in workdir)."""
    if layers is None and pooling == "cls":
        return base
    init = workdir / "init"
    # Stamped as before pooling existed when it is the default, so earlier runs stay valid.
    mean = {"pooling": pooling} if pooling != "cls" else {}
    made_from(init, {"base": weights_digest(base), "layers": layers} | mean)
    if not (init / "config.json").is_file():
        keep_layers(base, init, layers)
        if mean:
            mark_pooling(init, pooling)
    return init
