"""A folder written by ``datasets.Dataset.save_to_disk`` or ``DatasetDict.save_to_disk``."""

from __future__ import annotations

import datasets

from models.data import DatasetError, TextClassificationData
from models.recipe import DatasetSpec
from models.sources.tables import assemble, named_splits


def load(spec: DatasetSpec) -> TextClassificationData:
    path = spec.path
    if path is None or not path.is_dir():
        raise DatasetError(f"{path}: no such folder (a saved dataset is a folder)")
    try:
        found = datasets.load_from_disk(str(path))
    except FileNotFoundError as exc:
        raise DatasetError(f"{path}: not a folder written by save_to_disk: {exc}") from exc
    if isinstance(found, datasets.Dataset):
        found = datasets.DatasetDict({"train": found})
    return assemble(spec.name or path.name, named_splits(found, str(path)), spec)
