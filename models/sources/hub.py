"""A Hugging Face hub dataset, where a hub is reachable (or in the local ``datasets`` cache)."""

from __future__ import annotations

import datasets

from models.data import DatasetError, TextClassificationData
from models.recipe import DatasetSpec
from models.sources.tables import assemble, named_splits


def load(spec: DatasetSpec) -> TextClassificationData:
    assert spec.hub_id is not None
    where = f"hub dataset {spec.hub_id}" + (f" ({spec.config})" if spec.config else "")
    try:
        found = datasets.load_dataset(spec.hub_id, spec.config)
    except Exception as exc:  # offline, unknown id, bad configuration: say which
        raise DatasetError(f"{where}: cannot be loaded: {exc}") from exc
    name = spec.name or spec.hub_id.rsplit("/", 1)[-1]
    return assemble(name, named_splits(found, where), spec)
