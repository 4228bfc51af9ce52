"""The tables of a source (a file per split, or a saved or hub dataset's splits) -> the dataset:
rows read and checked, missing splits carved, the label set fixed from train."""

from __future__ import annotations

from dataclasses import replace

import datasets

from models.data import DatasetError, TextClassificationData, from_examples
from models.recipe import DatasetSpec
from models.sources.carve import complete
from models.sources.columns import resolve_columns
from models.sources.labelling import labelling_notes, texts_shared_with_train, warned
from models.sources.rows import read_rows

# Split names other tools write, and the one brum reads them as.
SPLIT_ALIASES = {"train": "train", "validation": "validation", "valid": "validation"}
SPLIT_ALIASES |= {"val": "validation", "dev": "validation", "test": "test"}
# split -> (its rows, what to call it in errors: its file, or the dataset and split)
Tables = dict[str, tuple[datasets.Dataset, str]]


def assemble(name: str, tables: Tables, spec: DatasetSpec) -> TextClassificationData:
    if "train" not in tables:
        raise DatasetError(f"{name}: no training split among {sorted(tables)}")
    train, train_where = tables["train"]
    columns = resolve_columns(train, spec, train_where)
    read = {
        split: read_rows(table, spec, columns, where) for split, (table, where) in tables.items()
    }
    names = read["train"].label_names
    examples = {split: table.rows for split, table in read.items()}
    where = {split: place for split, (_, place) in tables.items()}
    notes = labelling_notes(examples, where)
    sizes = spec.split
    examples, made = complete(
        examples, sizes.test, sizes.validation, sizes.seed, where["train"], spec.rare_labels
    )
    for split, table in read.items():
        if table.dropped_empty:
            made[split] += f"; {table.dropped_empty} empty texts dropped"
        if table.dropped_unlabelled:
            made[split] += f"; {table.dropped_unlabelled} rows with no label dropped"
    notes += warned(texts_shared_with_train(examples, where.get("test", where["train"])))
    data = from_examples(name, examples, names, spec.oos_label, where)
    return replace(data, splits_made=made, columns=columns, notes=notes)


def named_splits(
    found: datasets.DatasetDict, where: str
) -> dict[str, tuple[datasets.Dataset, str]]:
    """A saved or hub ``DatasetDict``'s splits under brum's names; a plain ``Dataset`` is train."""
    tables: Tables = {}
    for split, table in found.items():
        ours = SPLIT_ALIASES.get(split)
        if ours is None:
            continue
        if ours in tables:
            raise DatasetError(f"{where}: both {split!r} and another split read as {ours!r}")
        tables[ours] = (table, f"{where} [{split}]")
    if "train" not in tables:
        raise DatasetError(f"{where}: no 'train' split; it has {sorted(found)}")
    return tables
