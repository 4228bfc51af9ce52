"""Data files: CSV or TSV (delimiter given or sniffed, column names given or not), JSON Lines,
Parquet — one per split (``train``, optional ``validation`` and ``test``), or one for all
(``path``), read by the ``datasets`` library's own builders."""

from __future__ import annotations

import csv
import itertools
import logging
import re
from dataclasses import replace
from pathlib import Path

import datasets

from models.data import DatasetError, TextClassificationData
from models.recipe import DatasetSpec
from models.sources.tables import assemble

logger = logging.getLogger("brum.data")

NUMBER = re.compile(r"[+-]?\d+(\.\d+)?")

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
    data = assemble(spec.name or dataset_name(paths["train"]), tables, spec)
    headers = {headed for path in paths.values() if (headed := _header(path, spec)) is not None}
    return replace(data, header=headers.pop() if len(headers) == 1 else None)


def dataset_name(train: Path) -> str:
    """The file's stem, or its folder's name for a file named after its split."""
    generic = {"train", "training", "data", "all", "dataset"}
    return train.parent.resolve().name if train.stem.lower() in generic else train.stem


def read_file(path: Path, spec: DatasetSpec, kind: str | None = None) -> datasets.Dataset:
    """``kind``: the file's format where it is not the recipe's (default: ``spec.format``, else
    from the suffix)."""
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    kind = kind or _kind(path, spec)
    if kind is None:
        raise DatasetError(
            f"{path}: cannot tell the format from the suffix {path.suffix!r}; "
            f"set dataset.format to one of {sorted(set(BUILDERS) - {'text'})}"
        )
    options: dict[str, object] = {}
    if kind in {"csv", "tsv"}:
        delimiter = _delimiter(path, kind, spec)
        # Only an empty field is missing: "NA" or "null" is text to classify.
        options = {"delimiter": delimiter, "keep_default_na": False, "encoding": spec.encoding}
        if not _header(path, spec, kind, log=True):
            width = len(_first_rows(path, delimiter, spec.encoding, 1)[0])
            options |= {"header": None, "column_names": unnamed_columns(width)}
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


def _kind(path: Path, spec: DatasetSpec) -> str | None:
    return spec.format or SUFFIXES.get(path.suffix.lower())


def _delimiter(path: Path, kind: str, spec: DatasetSpec) -> str:
    if spec.delimiter:
        return spec.delimiter
    if kind == "tsv":
        return "\t"
    with path.open(newline="", encoding=spec.encoding, errors="replace") as handle:
        sample = handle.read(64 * 1024)
    try:
        return csv.Sniffer().sniff(sample, delimiters=",\t;|").delimiter
    except csv.Error:
        return ","


def unnamed_columns(width: int) -> list[str]:
    """Names for the columns of a file without a header row, numbered from 1 as spreadsheets
    and ``cut -f`` number them."""
    return [f"column_{n}" for n in range(1, width + 1)]


def _header(
    path: Path, spec: DatasetSpec, kind: str | None = None, log: bool = False
) -> bool | None:
    """Whether a CSV or TSV file starts with its column names: as the recipe says, else told
    from its first row. None for other formats."""
    kind = kind or _kind(path, spec)
    if kind not in {"csv", "tsv"}:
        return None
    if spec.header is not None:
        return spec.header
    rows = _first_rows(path, _delimiter(path, kind, spec), spec.encoding, 1000)
    reason = first_row_is_data(rows)
    if reason is not None and log:
        logger.warning(
            "%s: no header row (%s): its columns are read as %s; set dataset.header to say "
            "otherwise",
            path,
            reason,
            ", ".join(unnamed_columns(len(rows[0]))),
        )
    return reason is None


def _first_rows(path: Path, delimiter: str, encoding: str, count: int) -> list[list[str]]:
    with path.open(newline="", encoding=encoding, errors="replace") as handle:
        return list(itertools.islice(csv.reader(handle, delimiter=delimiter), count))


def first_row_is_data(rows: list[list[str]]) -> str | None:
    """Why the first of ``rows`` is data rather than column names, or None if it may be names.
    A column name never recurs as a value of its column, while a label does; and no column is
    named with a number."""
    if len(rows) < 2:
        return None
    first, rest = rows[0], rows[1:]
    for index, cell in enumerate(first):
        if not cell.strip():
            continue
        if NUMBER.fullmatch(cell.strip()):
            return f"column {index + 1} starts with the number {cell!r}"
        if any(index < len(row) and row[index] == cell for row in rest):
            return f"{cell!r} in column {index + 1} recurs below it"
    return None
