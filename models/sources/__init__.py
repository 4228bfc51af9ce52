"""Dataset sources, keyed by the recipe's ``dataset.source``: each module's ``load`` turns a
``DatasetSpec`` into a ``TextClassificationData``. Files, saved datasets and hub datasets are
read by the ``datasets`` library's own loaders, imported only when one is used; what they give is
checked and split the same way (models/sources/tables.py); every source's splits are then sampled
down to the recipe's ``split.max_*`` (models/sources/sample.py). A recipe's ``unlabelled`` texts
come with them (models/sources/unlabelled.py)."""

from __future__ import annotations

import importlib
from dataclasses import replace
from pathlib import Path

from models.data import TextClassificationData
from models.recipe import DatasetSpec, load_recipe
from models.sources.sample import sample_splits
from models.sources.unlabelled import read_unlabelled

SOURCES = {
    "clinc150": "models.sources.clinc150",
    "files": "models.sources.files",
    "saved": "models.sources.saved",
    "hub": "models.sources.hub",
}


def load_dataset(spec: DatasetSpec) -> TextClassificationData:
    data = importlib.import_module(SOURCES[spec.kind]).load(spec)
    data = sample_splits(data, spec.split)
    return replace(data, unlabelled=read_unlabelled(spec, data))


def recipe_dataset(recipe: Path | None) -> TextClassificationData:
    """The dataset of the recipe that built a variant; without one, CLINC150 (the shipped
    repository's)."""
    spec = load_recipe(recipe).dataset if recipe is not None else DatasetSpec(source="clinc150")
    return load_dataset(spec)
