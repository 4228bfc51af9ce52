"""CLINC150 intent detection, read from the dataset's original JSON. (The ``clinc_oos`` hub
dataset, where a hub is reachable, is read as any hub dataset is: models/sources/hub.py.)

Splits are ``train``, ``validation`` and ``test``; the out-of-scope examples are folded into each
split under the label ``oos``, as in the ``clinc_oos`` hub dataset.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

from models.data import DatasetError, TextClassificationData, from_examples
from models.recipe import DatasetSpec
from models.sources.labelling import labelling_notes, texts_shared_with_train, warned

OOS_LABEL = "oos"
CONFIG_FILES = {"plus": "data_oos_plus.json", "full": "data_full.json"}
SPLIT_KEYS = {
    "train": ("train", "oos_train"),
    "validation": ("val", "oos_val"),
    "test": ("test", "oos_test"),
}
DEFAULT_DIR = Path(__file__).resolve().parents[3] / "shared" / "data" / "clinc150"


def default_dir() -> Path:
    return Path(os.environ.get("BRUM_CLINC150_DIR", DEFAULT_DIR))


def load_clinc150(
    directory: str | Path | None = None, config: str = "plus"
) -> TextClassificationData:
    """Load CLINC150 from the original ``data_*.json`` files of the dataset's release."""
    if config not in CONFIG_FILES:
        raise DatasetError(
            f"unknown CLINC150 configuration {config!r}; choose from {sorted(CONFIG_FILES)}"
        )
    path = Path(directory) if directory is not None else default_dir()
    if path.is_dir():
        path = path / CONFIG_FILES[config]
    if not path.is_file():
        raise DatasetError(
            f"CLINC150 file not found: {path} (set BRUM_CLINC150_DIR or pass the folder holding "
            f"{CONFIG_FILES[config]})"
        )
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path} is not valid JSON: {exc}") from exc
    examples = {split: _read_examples(raw, keys, path) for split, keys in SPLIT_KEYS.items()}
    where = {split: f"{path} [{keys[0]}]" for split, keys in SPLIT_KEYS.items()}
    return _noted(
        from_examples(f"clinc150-{config}", examples, oos_label=OOS_LABEL), examples, where
    )


def _noted(
    data: TextClassificationData, examples: dict[str, list[tuple[str, str]]], where: dict[str, str]
) -> TextClassificationData:
    """The dataset's given splits checked as every other source's are."""
    notes = labelling_notes(examples, where)
    notes += warned(texts_shared_with_train(examples, where["test"]))
    return replace(data, notes=notes)


def _read_examples(raw: object, keys: tuple[str, ...], path: Path) -> list[tuple[str, str]]:
    if not isinstance(raw, dict):
        raise DatasetError(f"{path}: expected a JSON object with keys {list(keys)}")
    examples: list[tuple[str, str]] = []
    for key in keys:
        if key not in raw:
            raise DatasetError(f"{path}: missing key {key!r}")
        for index, item in enumerate(raw[key]):
            if not (
                isinstance(item, list)
                and len(item) == 2
                and all(isinstance(field, str) for field in item)
            ):
                raise DatasetError(f"{path}: {key}[{index}] is not a [text, intent] pair: {item!r}")
            examples.append((item[0], item[1]))
    return examples


def load(spec: DatasetSpec) -> TextClassificationData:
    return load_clinc150(spec.path, spec.config or "plus")
