"""A student's starting weights: a pretrained encoder, a subset of its layers (DistilBERT-style),
and a pooler it can learn from."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from transformers import AutoModel

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
)
INIT_STAMP = "student_init.json"


def keep_layers(base: Path, output: Path, layers: list[int]) -> Path:
    """Save ``base`` with only ``layers`` (0-based) of its encoder, in that order."""
    return save_init(base, output, layers, identity_pooler=False)


def untrained_pooler(base: Path) -> str | None:
    """Why ``base``'s pooler never learned, or None when it may have.

    sentence-transformers trains the encoder under its own pooling module, so unless that module
    takes the CLS token the encoder's ``pooler.dense`` never saw a gradient (all-MiniLM-L6-v2's
    has bias 0 and weights of std 0.009). BERT-style classifiers read tanh(pooler(CLS)), and from
    that near-constant feature a distilled student ends about 0.9 point lower on BANKING77.
    """
    modules = base / "modules.json"
    if not modules.is_file():
        return None
    for module in json.loads(modules.read_text()):
        if module.get("type", "").endswith(".Pooling"):
            config = json.loads((base / module["path"] / "config.json").read_text())
            if config.get("pooling_mode_cls_token"):
                return None
            modes = [key.removeprefix("pooling_mode_") for key, on in config.items() if on is True]
            return f"sentence-transformers trained it under {' + '.join(modes) or 'no'} pooling"
    return None


def save_init(base: Path, output: Path, layers: list[int] | None, identity_pooler: bool) -> Path:
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
    dense = getattr(getattr(model.base_model, "pooler", None), "dense", None)
    if identity_pooler and isinstance(dense, torch.nn.Linear):
        # The identity keeps the architecture every exporter knows while passing CLS through
        # tanh unchanged: as good as no pooler at all in the measurement (BENCHMARKS.md, issue 14).
        with torch.no_grad():
            dense.weight.copy_(torch.eye(dense.out_features, dense.in_features))
            dense.bias.zero_()
    output.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output)
    for name in TOKENIZER_FILES:
        if (base / name).is_file():
            shutil.copyfile(base / name, output / name)
    return output


def student_init(base: Path, layers: list[int] | None, workdir: Path) -> Path:
    """The student's starting weights: ``base`` itself when it needs no change, else a copy with
    only ``layers`` and an identity pooler in place of an untrained one (cached in workdir)."""
    identity_pooler = untrained_pooler(base) is not None
    if layers is None and not identity_pooler:
        return base
    init = workdir / "init"
    wanted = {"base": str(base), "layers": layers, "identity_pooler": identity_pooler}
    stamp = init / INIT_STAMP
    if not stamp.is_file() or json.loads(stamp.read_text()) != wanted:
        save_init(base, init, layers, identity_pooler)
        stamp.write_text(json.dumps(wanted))
    return init
