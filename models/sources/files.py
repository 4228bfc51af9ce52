"""Data files: CSV or TSV (delimiter given or sniffed, column names given or not), JSON Lines,
Parquet, each optionally compressed (.gz, .bz2, .xz), or an Excel workbook — one per split
(``train``, optional ``validation`` and ``test``), one for all (``path``), or a folder (``path``)
whose files are named after their splits as on the Hugging Face Hub (``train.csv``,
``data/test-00000-of-00001.parquet``), read by the ``datasets`` library's own builders (an Excel
workbook by pandas)."""

from __future__ import annotations

import bz2
import csv
import gzip
import itertools
import logging
import lzma
import re
from dataclasses import replace
from pathlib import Path
from typing import IO

import datasets
from datasets.data_files import DataFilesDict, EmptyDatasetError, get_data_patterns

from models.data import DatasetError, TextClassificationData
from models.recipe import DatasetSpec
from models.sources.tables import SPLIT_ALIASES, assemble

logger = logging.getLogger("brum.data")

NUMBER = re.compile(r"[+-]?\d+(\.\d+)?")

SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".json": "json", ".jsonl": "json"}
SUFFIXES |= {".ndjson": "json", ".parquet": "parquet", ".pq": "parquet", ".xlsx": "excel"}
# "text": one text per line, in a column named "text": unlabelled texts only, as a ".txt" file.
BUILDERS = {"csv": "csv", "tsv": "csv", "json": "json", "parquet": "parquet", "text": "text"}
# The builders decompress these themselves; brum opens them only to sniff a CSV's first rows.
COMPRESSIONS = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}
HEADER_ROWS = 1000  # read to tell whether a CSV file's first row is its column names


def load(spec: DatasetSpec) -> TextClassificationData:
    folder = None
    if spec.train is not None:
        given = {"train": spec.train, "validation": spec.validation, "test": spec.test}
        paths = {split: path for split, path in given.items() if path is not None}
    elif spec.path is not None and spec.path.is_dir():
        folder = spec.path
        paths = split_files(folder)
    elif spec.path is not None:
        paths = {"train": spec.path}
    else:
        raise DatasetError("dataset: give the files (train, optional validation and test) or path")
    tables = {split: (read_file(path, spec), str(path)) for split, path in paths.items()}
    name = spec.name or (folder.resolve().name if folder else dataset_name(paths["train"]))
    data = assemble(name, tables, spec)
    headers = {headed for path in paths.values() if (headed := _header(path, spec)) is not None}
    return replace(data, header=headers.pop() if len(headers) == 1 else None)


def split_files(folder: Path) -> dict[str, Path]:
    """The data files of a folder by split, named as the Hugging Face Hub names them (one file
    for all is train, to be carved)."""
    try:
        patterns = get_data_patterns(str(folder))
        found = DataFilesDict.from_patterns(patterns, base_path=str(folder))
    except EmptyDatasetError:
        found = DataFilesDict()
    paths: dict[str, Path] = {}
    for split, files in found.items():
        data = [Path(file) for file in files if data_format(Path(file)) is not None]
        if len(data) > 1:
            raise DatasetError(
                f"{folder}: {len(data)} files for the {split} split "
                f"({', '.join(sorted(str(file.relative_to(folder)) for file in data))}); "
                "join them into one, or name each split's file: --train, --validation, --test"
            )
        ours = SPLIT_ALIASES.get(str(split))
        if data and ours is not None:
            if ours in paths:
                raise DatasetError(f"{folder}: {split!r} and another split both read as {ours!r}")
            paths[ours] = data[0]
    if "train" not in paths:
        raise DatasetError(
            f"{folder}: neither a folder written by save_to_disk nor one with a data file named "
            f"after its split (train.csv, and optionally validation.csv and test.csv; also .tsv, "
            ".jsonl, .parquet)"
        )
    return paths


def dataset_name(train: Path) -> str:
    """The file's stem, or its folder's name for a file named after its split."""
    generic = {"train", "training", "data", "all", "dataset"}
    stem = uncompressed(train).stem
    return train.parent.resolve().name if stem.lower() in generic else stem


def read_file(path: Path, spec: DatasetSpec, kind: str | None = None) -> datasets.Dataset:
    """``kind``: the file's format where it is not the recipe's (default: ``spec.format``, else
    from the suffix)."""
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise DatasetError(f"{path}: the file is empty")
    kind = kind or _kind(path, spec)
    if kind is None:
        raise DatasetError(
            f"{path}: cannot tell the format from the suffix {path.suffix!r}; "
            f"set dataset.format to one of {sorted(set(SUFFIXES.values()))}"
        )
    if kind == "excel":
        return read_spreadsheet(path, spec)
    options: dict[str, object] = {}
    if kind in {"csv", "tsv"}:
        delimiter = _delimiter(path, kind, spec)
        # Only an empty field is missing: "NA" or "null" is text to classify.
        options = {"delimiter": delimiter, "keep_default_na": False, "encoding": spec.encoding}
        rows = _first_rows(path, delimiter, spec.encoding, HEADER_ROWS)
        headed = _header_in(rows, path, spec, log=True)
        if headed and len(rows) < 2:
            raise DatasetError(f"{path}: no rows below its header row")
        if not headed:
            options |= {"header": None, "column_names": unnamed_columns(len(rows[0]))}
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


def read_spreadsheet(path: Path, spec: DatasetSpec) -> datasets.Dataset:
    """An Excel workbook's first sheet, its first row the column names unless
    ``dataset.header`` is false, through pandas and openpyxl (no ``datasets`` builder reads
    one). Empty cells are missing; "NA" is text, as in CSV files."""
    import pandas

    try:
        frame = pandas.read_excel(
            path,
            header=None if spec.header is False else 0,
            keep_default_na=False,
            na_values=[""],
        )
    except Exception as exc:  # openpyxl's errors for a file that is no workbook, and others
        raise DatasetError(f"{path}: cannot be read as an Excel workbook: {exc}") from exc
    if frame.empty:
        raise DatasetError(f"{path}: no rows in its first sheet")
    frame.columns = (
        unnamed_columns(frame.shape[1]) if spec.header is False else [str(c) for c in frame]
    )
    # A column of text and numbers mixed: every value as text, as a CSV reader would give it.
    for column in frame.columns:
        if pandas.api.types.is_object_dtype(frame[column]):
            frame[column] = [None if pandas.isna(v) else str(v) for v in frame[column]]
    return datasets.Dataset.from_pandas(frame, preserve_index=False)


def _root_cause(exc: BaseException) -> BaseException:
    """The error under the builders' generic "An error occurred while generating the dataset"."""
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return exc


def _kind(path: Path, spec: DatasetSpec) -> str | None:
    return spec.format or data_format(path)


def data_format(path: Path) -> str | None:
    """From the suffix, under a compression's (``train.csv.gz`` is csv)."""
    return SUFFIXES.get(uncompressed(path).suffix.lower())


def uncompressed(path: Path) -> Path:
    """The file's name without its compression's suffix (``train.csv.gz`` -> ``train.csv``)."""
    return path.with_suffix("") if path.suffix.lower() in COMPRESSIONS else path


def _open_text(path: Path, encoding: str) -> IO[str]:
    opener = COMPRESSIONS.get(path.suffix.lower(), open)
    return opener(path, "rt", newline="", encoding=encoding, errors="replace")  # type: ignore[operator]


def _delimiter(path: Path, kind: str, spec: DatasetSpec) -> str:
    if spec.delimiter:
        return spec.delimiter
    if kind == "tsv":
        return "\t"
    with _open_text(path, spec.encoding) as handle:
        sample = handle.read(64 * 1024)
    try:
        return csv.Sniffer().sniff(sample, delimiters=",\t;|").delimiter
    except csv.Error:
        return ","


def unnamed_columns(width: int) -> list[str]:
    """Names for the columns of a file without a header row, numbered from 1 as spreadsheets
    and ``cut -f`` number them."""
    return [f"column_{n}" for n in range(1, width + 1)]


def _header(path: Path, spec: DatasetSpec) -> bool | None:
    """Whether a CSV or TSV file starts with its column names: as the recipe says, else told
    from its first row. None for other formats."""
    kind = _kind(path, spec)
    if kind not in {"csv", "tsv"}:
        return None
    if spec.header is not None:
        return spec.header
    rows = _first_rows(path, _delimiter(path, kind, spec), spec.encoding, HEADER_ROWS)
    return _header_in(rows, path, spec)


def _header_in(rows: list[list[str]], path: Path, spec: DatasetSpec, log: bool = False) -> bool:
    """Whether ``rows``, a CSV file's first, start with its column names."""
    if spec.header is not None:
        return spec.header
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
    with _open_text(path, encoding) as handle:
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
