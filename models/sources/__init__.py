"""Dataset sources, keyed by the recipe's ``dataset.source``: each turns a ``DatasetSpec`` into a
``TextClassificationData``. Files, saved datasets and hub datasets are read by the ``datasets``
library's own loaders; what they give is checked and split the same way (models/sources/rows.py,
models/sources/carve.py)."""

from __future__ import annotations

from collections.abc import Callable

from models.data import TextClassificationData
from models.recipe import DatasetSpec
from models.sources import clinc150, files, hub, saved

SOURCES: dict[str, Callable[[DatasetSpec], TextClassificationData]] = {
    "clinc150": clinc150.load,
    "files": files.load,
    "saved": saved.load,
    "hub": hub.load,
}


def load_dataset(spec: DatasetSpec) -> TextClassificationData:
    return SOURCES[spec.kind](spec)
