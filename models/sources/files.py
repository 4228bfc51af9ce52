"""Data files: CSV or TSV (delimiter given or sniffed), JSON Lines, Parquet — one per split
(``train``, optional ``validation`` and ``test``), or one for all (``path``), read by the
``datasets`` library's own builders."""

from __future__ import annotations

import csv
from pathlib import Path

import datasets

from models.data import DatasetError, TextClassificationData
from models.recipe import DatasetSpec
from models.sources.tables import assemble

SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".json": "json", ".jsonl": "json"}
SUFFIXES |= {".ndjson": "json", ".parquet": "parquet", ".pq": "parquet"}
# "text": one text per line, in a column named "text": unlabelled texts only, as a ".txt" file.
BUILDERS = {"csv": "csv", "tsv": "csv", "json": "json", "parquet": "parquet", "text": "text"}


def load(spec: DatasetSpec) -> TextClassificationData:
    if spec.train is not None:
        given = {"train": spec.train, "validation": spec.validation, "test": spec.test}
        paths = {split: path for split, path in given.items() if path is not None}
    elif spec.path is not None:
        paths = {"train": spec.path}
    else:
        raise DatasetError("dataset: give the files (train, optional validation and test) or path")
    tables = {split: (read_file(path, spec), str(path)) for split, path in paths.items()}
    return assemble(spec.name or dataset_name(paths["train"]), tables, spec)


def dataset_name(train: Path) -> str:
    """The file's stem, or its folder's name for a file named after its split."""
    generic = {"train", "training", "data", "all", "dataset"}
    return train.parent.resolve().name if train.stem.lower() in generic else train.stem


def read_file(path: Path, spec: DatasetSpec, kind: str | None = None) -> datasets.Dataset:
    """``kind``: the file's format where it is not the recipe's (default: ``spec.format``, else
    from the suffix)."""
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    kind = kind or spec.format or SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise DatasetError(
            f"{path}: cannot tell the format from the suffix {path.suffix!r}; "
            f"set dataset.format to one of {sorted(set(BUILDERS) - {'text'})}"
        )
    options: dict[str, object] = {}
    if kind in {"csv", "tsv"}:
        # Only an empty field is missing: "NA" or "null" is text to classify.
        options = {
            "delimiter": spec.delimiter or _delimiter(path, kind, spec.encoding),
            "keep_default_na": False,
            "encoding": spec.encoding,
        }
    if kind == "json" and spec.field is not None:
        options = {"field": spec.field}
    try:
        return datasets.load_dataset(
            BUILDERS[kind], data_files={"rows": str(path)}, split="rows", **options
        )
    except Exception as exc:  # the builders raise many kinds; the message is what matters
        cause = _root_cause(exc)
        hint = ""
        if isinstance(cause, UnicodeDecodeError):
            hint = f" (not {spec.encoding}: give --encoding or dataset.encoding, e.g. latin-1)"
        raise DatasetError(f"{path}: cannot be read as {kind}: {cause}{hint}") from exc


def _root_cause(exc: BaseException) -> BaseException:
    """The error under the builders' generic "An error occurred while generating the dataset"."""
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return exc


def _delimiter(path: Path, kind: str, encoding: str) -> str:
    if kind == "tsv":
        return "\t"
    with path.open(newline="", encoding=encoding, errors="replace") as handle:
        sample = handle.read(64 * 1024)
    try:
        return csv.Sniffer().sniff(sample, delimiters=",\t;|").delimiter
    except csv.Error:
        return ","
