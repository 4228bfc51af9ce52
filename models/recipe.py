"""Recipes: a declarative YAML file per experiment, so a variant's lineage is data."""

from __future__ import annotations

import codecs
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from app.core.card import NAME_PATTERN
from models.augment import AugmentSpec


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SplitSizes(_Strict):
    """What is carved, stratified by label and seeded, where the source lacks a split: test from
    a source that is one file, validation from the training split (never from test). Then each
    split above its ``max_*`` is sampled down, seeded, train as ``train_sample`` says and the others
    stratified (models/sources/sample.py): how ``init`` keeps a large dataset's run within its
    time budget."""

    test: float = Field(0.2, gt=0, lt=1, description="share of the one file carved as test")
    validation: float = Field(0.1, gt=0, lt=1, description="share of train carved as validation")
    seed: int = 0
    max_train: int | None = Field(
        None, gt=1, description="at most this many training texts: a seeded sample (train_sample)"
    )
    train_sample: Literal["even", "stratified"] = Field(
        "even",
        description="how max_train samples: 'even' takes as many texts from every label, a label "
        "with fewer giving all it has; 'stratified' keeps each label's share",
    )
    max_validation: int | None = Field(None, gt=1, description="as max_train, for validation")
    max_test: int | None = Field(None, gt=1, description="as max_train, for test")


def check_distinct(label_names: list[str]) -> None:
    """A repeated name would silently shift every later id by one when the label set is built."""
    if len(set(label_names)) != len(label_names):
        repeated = sorted({name for name in label_names if label_names.count(name) > 1})
        raise ValueError(f"label names repeat: {repeated}")


# What save_to_disk writes at a folder's top, for a DatasetDict and for one Dataset.
SAVED_MARKERS = ("dataset_dict.json", "state.json")


class DatasetSpec(_Strict):
    """Where the labelled texts come from (models/sources/). ``source`` is inferred when not
    given: ``hub_id`` -> hub; ``train``, or a ``path`` that is a file or has a suffix -> files;
    a folder ``path`` written by ``save_to_disk`` -> saved; CLINC150's own JSON from ``path`` when
    ``name: clinc150``; any other folder ``path`` -> files named after their splits."""

    source: Literal["clinc150", "files", "saved", "hub"] | None = None
    name: str | None = Field(None, description="the dataset's name in cards and reports")
    config: str | None = Field(None, description="CLINC150's plus/full; a hub configuration")
    path: Path | None = Field(
        None,
        description="one data file, a folder of split files, a saved dataset or CLINC150's folder",
    )
    train: Path | None = None
    validation: Path | None = None
    test: Path | None = None
    hub_id: str | None = None
    format: Literal["csv", "tsv", "json", "parquet", "excel"] | None = Field(
        None, description="of the files; by default from their suffix (.jsonl is json)"
    )
    delimiter: str | None = Field(None, description="of CSV files; sniffed by default")
    header: bool | None = Field(
        None,
        description="whether CSV and TSV files start with their column names; by default told "
        "from the first row (models/sources/files.py:first_row_is_data)",
    )
    encoding: str = Field("utf-8", description="of CSV and TSV files")
    field: str | None = Field(
        None, description="of a JSON file whose records sit under one key (as SQuAD's 'data')"
    )
    text_column: str = "text"
    label_column: str = "label"
    label_names: list[str] | None = Field(
        None, description="the names of integer labels, in id order (else a ClassLabel's)"
    )
    oos_label: str | None = Field(
        None, description="the out-of-scope label: threshold and oos metrics only with one"
    )
    empty_texts: Literal["drop", "refuse"] = "drop"
    rare_labels: Literal["refuse", "drop"] = Field(
        "refuse",
        description="labels with too few texts to carve the missing splits from: an error "
        "naming them, or dropped with a warning",
    )
    missing_labels: Literal["drop", "refuse"] = Field(
        "drop", description="rows whose label is empty: dropped and counted, or an error"
    )
    split: SplitSizes = SplitSizes()
    unlabelled: Path | None = Field(
        None,
        description="texts with no label (a data file, or plain text one per line), such as "
        "the traffic a service saw: the teacher labels them into every transfer set",
    )
    unlabelled_column: str | None = Field(
        None, description="of the unlabelled file; default: text_column, else guessed"
    )
    max_unlabelled: int | None = Field(
        None,
        gt=0,
        description="at most this many unlabelled texts: a sample seeded by split.seed, taken "
        "after empty, repeated and labelled texts are dropped",
    )

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, encoding: str) -> str:
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise ValueError(f"unknown encoding {encoding!r}") from None
        return encoding

    @field_validator("label_names")
    @classmethod
    def _names_are_distinct(cls, names: list[str] | None) -> list[str] | None:
        if names is not None:
            check_distinct(names)
        return names

    @property
    def kind(self) -> str:
        if self.source is not None:
            return self.source
        if self.hub_id is not None:
            return "hub"
        path = self.path
        if self.train is not None or (
            path is not None and (path.is_file() or (not path.is_dir() and path.suffix))
        ):
            return "files"
        if path is not None and any((path / marker).is_file() for marker in SAVED_MARKERS):
            return "saved"
        if path is not None and self.name != "clinc150":
            return "files"
        return "clinc150"


# What a head classifies from (models/pooling.py).
Pooling = Literal["cls", "mean"]


def trained_splits(refit: bool) -> tuple[str, ...]:
    """The splits a teacher or student trains on: validation too once refit."""
    return ("train", "validation") if refit else ("train",)


class TeacherSpec(_Strict):
    base: str
    fine_tuned: bool = Field(
        False,
        description="base is already fine-tuned for these labels: its id2label is mapped onto "
        "the dataset's and it is not trained again",
    )
    pooling: Pooling | None = Field(
        None, description="what the head classifies, as a student's pooling (default 'cls')"
    )
    finetune: dict[str, Any] = Field(default_factory=dict)
    refit: bool = Field(
        False,
        description="fine-tune on the validation split too: a tenth more labelled texts; "
        "validation then measures the teacher on seen texts",
    )

    @model_validator(mode="after")
    def _settings_agree(self) -> TeacherSpec:
        if self.fine_tuned and self.pooling is not None:
            raise ValueError("a fine-tuned teacher keeps the head it was trained with: no pooling")
        if self.fine_tuned and self.refit:
            raise ValueError("a fine-tuned teacher is not trained again: refit has nothing to do")
        if self.refit and self.finetune.get("keep_best"):
            raise ValueError(
                "teacher: keep_best chooses an epoch on the validation split, which refit "
                "trains on; drop one of them"
            )
        return self

    @property
    def trained_on(self) -> tuple[str, ...]:
        return trained_splits(self.refit)


class PruneSpec(_Strict):
    """Structured (and optionally magnitude) pruning, then distillation to recover."""

    heads: float = Field(0.0, ge=0, lt=1, description="fraction of attention heads to remove")
    neurons: float = Field(0.0, ge=0, lt=1, description="fraction of feed-forward neurons")
    magnitude: float = Field(
        0.0, ge=0, lt=1, description="fraction of each encoder matrix zeroed (unstructured)"
    )
    batches: int = Field(64, gt=0, description="training batches scored for importance")
    recover: dict[str, Any] = Field(default_factory=dict, description="distillation parameters")


class VocabularySpec(_Strict):
    """Keep the training split's pieces plus the ``general`` commonest; validation picks it."""

    general: list[int] = Field(default_factory=lambda: [0, 3000, 8000])
    tolerance: float = Field(0.005, ge=0, description="validation accuracy we may lose")


class OosSpec(_Strict):
    """How every variant's out-of-scope threshold is tuned on the validation split."""

    objective: Literal["balanced", "expected_accuracy", "accuracy"] = "balanced"
    share: float | None = Field(
        None, gt=0, lt=1, description="expected out-of-scope share of traffic (expected_accuracy)"
    )


class StudentSpec(_Strict):
    name: str = Field(pattern=NAME_PATTERN)
    base: str | None = None
    start_from: str | None = Field(None, description="another student, after its distillation")
    layers: list[int] | None = Field(None, description="keep these encoder layers (0-based)")
    pooling: Pooling | None = Field(
        None,
        description="what the head classifies: 'cls', the [CLS] state through the pooler (the "
        "default), or 'mean', the mean of the token states (sentence encoders' own); "
        "a start_from student keeps its parent's",
    )
    distill: dict[str, Any] = Field(
        default_factory=dict, description="distillation parameters (after start_from: more of it)"
    )
    transfer: list[AugmentSpec] = Field(
        default_factory=list, description="sets of augmented texts the teacher labels"
    )
    prune: PruneSpec | None = None
    vocabulary: VocabularySpec | None = None
    refit: bool = Field(
        False,
        description="train on the validation split too (its texts and their perturbed copies), "
        "once start_from's choices were made on it; the vocabulary size is start_from's",
    )
    quantization: Literal["dynamic", "static", "none"] = "dynamic"
    per_channel: bool = False
    fp32_attention: int = Field(
        0,
        ge=0,
        description="dynamic int8: this many layers keep their attention in fp32, those whose "
        "int8 moves the answers most on training texts (models/mixed_precision.py)",
    )
    ship: bool = False

    @field_validator("transfer", mode="before")
    @classmethod
    def _one_set_or_several(cls, value: Any) -> Any:
        return [value] if isinstance(value, dict) else value

    @model_validator(mode="after")
    def _one_origin(self) -> StudentSpec:
        if (self.base is None) == (self.start_from is None):
            raise ValueError(f"student {self.name}: give exactly one of base or start_from")
        if self.fp32_attention and self.quantization != "dynamic":
            raise ValueError(
                f"student {self.name}: fp32_attention applies to dynamic int8 only, "
                f"not to quantization {self.quantization!r}"
            )
        if self.refit and self.start_from is None:
            raise ValueError(
                f"student {self.name}: refit needs start_from, the student whose choices "
                "were made on the validation split it then trains on"
            )
        recover = self.prune.recover if self.prune is not None else {}
        if self.refit and (self.distill.get("keep_best") or recover.get("keep_best")):
            raise ValueError(
                f"student {self.name}: keep_best chooses an epoch on the validation split, "
                "which refit trains on; drop one of them"
            )
        if self.pooling is not None and self.start_from is not None:
            raise ValueError(
                f"student {self.name}: pooling is set where the encoder is first given a head; "
                f"it keeps {self.start_from}'s"
            )
        return self

    @property
    def trained_on(self) -> tuple[str, ...]:
        return trained_splits(self.refit)


class Recipe(_Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$")
    dataset: DatasetSpec = DatasetSpec()
    teacher: TeacherSpec
    students: list[StudentSpec] = Field(default_factory=list)
    oos: OosSpec = OosSpec()
    # The shipped repository's experiment.yaml (see app/core/experiment.py for its fields).
    experiment: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _known_origins(self) -> Recipe:
        names = [s.name for s in self.students]
        if len(set(names)) != len(names):
            raise ValueError("student names must be unique")
        for index, student in enumerate(self.students):
            if student.start_from is not None and student.start_from not in names[:index]:
                raise ValueError(
                    f"student {student.name} starts from {student.start_from!r}, "
                    "which is not an earlier student"
                )
            parent = self.students[names.index(student.start_from)] if student.refit else None
            if parent is not None and student.vocabulary is not None and parent.vocabulary is None:
                raise ValueError(
                    f"student {student.name}: a refit student keeps the vocabulary size its "
                    f"start_from chose on validation, but {parent.name} prunes no vocabulary"
                )
        return self

    def shipped_lineage(self) -> list[StudentSpec]:
        """The ``ship: true`` students and every student they start from, in recipe order."""
        return self.lineage([s.name for s in self.students if s.ship])

    def lineage(self, names: list[str]) -> list[StudentSpec]:
        """The named students and every student they start from, in recipe order."""
        needed = {self.student(name).name for name in names}
        for spec in reversed(self.students):  # a student starts only from an earlier one
            if spec.name in needed and spec.start_from is not None:
                needed.add(spec.start_from)
        return [s for s in self.students if s.name in needed]

    def student(self, name: str) -> StudentSpec:
        for student in self.students:
            if student.name == name:
                return student
        raise RecipeError(
            f"no student {name!r} in recipe {self.name}; have {[s.name for s in self.students]}"
        )


class RecipeError(ValueError):
    """The recipe file is missing or invalid."""


class StaleRunError(RecipeError):
    """A finished or half-done stage on disk was asked for with other settings or other data."""


def load_recipe(path: Path) -> Recipe:
    if not path.is_file():
        raise RecipeError(f"recipe not found: {path}")
    try:
        return Recipe.model_validate(yaml.safe_load(path.read_text()))
    except (yaml.YAMLError, ValidationError) as exc:
        raise RecipeError(f"{path}: invalid recipe:\n{exc}") from exc
