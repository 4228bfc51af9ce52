"""``python -m models init``: a recipe for your data, with defaults sized to it.

The data is read (and checked) now, so a bad file fails here rather than an hour into ``run``.
Sized to the data: fine-tuning epochs by the training split's size (small sets need more passes),
the maximum length by its texts (the 99th percentile of their lengths in the student
tokenizer's pieces, rounded up to 16), the transfer set by it too (about 54,000 perturbed texts,
1 to 4 copies of each training text per kind), and the students: MiniLM-L6 distilled, then on
the transfer set, MiniLM-L3 (every other layer) distilled, and the L6 student pruned, each int8,
the augmented L6 and the pruned one shipped with an experiment between them.
An out-of-scope threshold is tuned only where the data names an out-of-scope label.
Sized to the time too: the run is estimated (models/workload.py) and kept within ``--hours``,
with fewer perturbed texts, then on a sample of the data, where it would take longer.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from pydantic import ValidationError
from tokenizers import Tokenizer

from app.core.card import NAME_LENGTH, NAME_PATTERN
from models.data import DatasetError, TextClassificationData
from models.pace import unit_seconds
from models.recipe import DatasetSpec, Pooling, Recipe, check_distinct
from models.sources import load_dataset
from models.workload import Sizes, run_work, seconds, split_sizes, teacher_scale_of

STUDENT = "sentence-transformers/all-MiniLM-L6-v2"

logger = logging.getLogger("brum.data")


@dataclass(frozen=True)
class StudentBase:
    """The checkpoint every student starts from, as ``init`` names and sizes the students."""

    reference: str
    stem: str  # in the full-depth students' names
    layers: int
    wordpiece: bool  # only a WordPiece vocabulary can be pruned (models/vocab.py)
    # The students' head reads what the checkpoint was pretrained to summarise a text with
    # (models/pooling.py): on BANKING77 the mean of all-MiniLM-L6-v2's token states learned more
    # than its [CLS] state did (BENCHMARKS.md, issue 14).
    pooling: Pooling = "cls"

    @property
    def shallow_layers(self) -> list[int]:
        """Every other layer: MiniLM-L3 from L6, as DistilBERT was cut from BERT."""
        return list(range(0, self.layers, 2))

    @property
    def shallow_stem(self) -> str:
        if self.reference == STUDENT:
            return "minilm-l3"
        return f"{self.stem}-l{len(self.shallow_layers)}"


# all-MiniLM-L6-v2's 1_Pooling/config.json pools the mean of its token states.
DEFAULT_STUDENT = StudentBase(STUDENT, "minilm-l6", 6, wordpiece=True, pooling="mean")
# A student's name is the recipe's name, the student base's and a stage's suffix: both are kept
# short enough for a variant's name (app/core/card.py: NAME_LENGTH).
STEM_LENGTH = 20
LONGEST_SUFFIX = "-augmented-pruned-int8"
# Students are cut to a subset of layers and pruned by head and neuron as BERT encoders
# (models/student.py, models/prune.py): MiniLM, TinyBERT, BERT-mini/small, multilingual BERT
# and MiniLM all are.
STUDENT_MODEL_TYPES = ("bert",)


def student_base(reference: str) -> StudentBase:
    """``reference`` checked and, where it is not the default, fetched: its config says how
    deep it is, and its tokenizer whether its vocabulary can be pruned."""
    if reference == STUDENT:
        return DEFAULT_STUDENT
    from models.checkpoints import pretrained_pooling, resolve, unfindable
    from models.preflight import tokenizer_kind

    why = unfindable(reference)
    if why:
        raise DatasetError(f"--student {reference}: {why}")
    folder = resolve(reference).path
    config = json.loads((folder / "config.json").read_text())
    model_type = config.get("model_type")
    if model_type not in STUDENT_MODEL_TYPES:
        raise DatasetError(
            f"--student {reference}: a {model_type} checkpoint; students are cut and pruned as "
            f"BERT encoders (model_type {', '.join(STUDENT_MODEL_TYPES)}: MiniLM, TinyBERT, "
            "BERT-mini or -small, multilingual BERT or MiniLM)"
        )
    tokenizer = folder / "tokenizer.json"
    if not tokenizer.is_file():
        raise DatasetError(
            f"--student {reference}: no tokenizer.json in {folder}; save the fast tokenizer "
            "there first (transformers: AutoTokenizer.from_pretrained(folder).save_pretrained"
            "(folder))"
        )
    slug = re.sub(r"[^a-z0-9.]+", "-", Path(reference).name.lower())
    stem = slug[:STEM_LENGTH].strip("-.") or "student"
    wordpiece = tokenizer_kind(str(folder)) == "WordPiece"
    pooling = pretrained_pooling(folder)
    return StudentBase(reference, stem, config["num_hidden_layers"], wordpiece, pooling)


def dataset_spec(args: argparse.Namespace) -> DatasetSpec:
    given = [x for x in (args.data, args.train, args.path, args.hub_id) if x is not None]
    if len(given) != 1:
        raise DatasetError("give exactly one of DATA, --train (with --test), --path, --hub-id")
    fields = {
        "train": args.train,
        "validation": args.validation,
        "test": args.test,
        "path": args.path or args.data,
        "hub_id": args.hub_id,
        "text_column": args.text_column,
        "label_column": args.label_column,
        "oos_label": args.oos_label,
        "encoding": args.encoding,
        "header": args.header,
        "field": args.field,
        "unlabelled": args.unlabelled,
        "unlabelled_column": args.unlabelled_column,
        "max_unlabelled": args.max_unlabelled,
        "rare_labels": args.rare_labels,
    }
    if args.label_names is not None:
        fields["label_names"] = label_names(args.label_names)
    try:
        return DatasetSpec(**{k: v for k, v in fields.items() if v is not None})
    except ValidationError as exc:  # an option's value: name the option, as argparse would
        raise DatasetError(
            "; ".join(
                f"--{'-'.join(map(str, e['loc'])).replace('_', '-')}: "
                + e["msg"].removeprefix("Value error, ")
                for e in exc.errors()
            )
        ) from exc


def label_names(path: Path) -> list[str]:
    if not path.is_file():
        raise DatasetError(f"label names file not found: {path}")
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    try:
        check_distinct(names)
    except ValueError as exc:
        raise DatasetError(f"{path}: {exc}") from exc
    return names


# Optimizer steps of 32 for the teacher's fine-tuning and for each student's distillation. On
# BANKING77 (9,000 training texts, 77 intents) 1,000 steps left the MPNet teacher at 0.927 on
# validation with its training loss still falling fast (1.32 -> 0.77 over the last epoch).
TRAINING_STEPS = 2_000


def epochs_for(examples: int, steps: int = TRAINING_STEPS) -> int:
    """About ``steps`` optimizer steps of 32, within 3 to 10 epochs."""
    return min(10, max(3, math.ceil(steps * 32 / max(examples, 1))))


# Perturbed texts in the transfer set, of three kinds. On BANKING77 (9,000 training texts) 27,000
# of them took the augmented L6 student to 0.9240 on the test split and 54,000 to 0.9282
# (validation 0.9232 -> 0.9302; BENCHMARKS.md, issue 14), for 9 more minutes of teacher logits and
# 14 more of distillation on 2 cores.
TRANSFER_TEXTS = 54_000
MAX_TRANSFER_COPIES = 4


def transfer_for(examples: int, texts: int = TRANSFER_TEXTS) -> dict:
    """Perturbed copies of each training text per kind, about ``texts`` in all: 1 to 4 copies,
    and a sample of ``texts`` where one copy of each kind would be more."""
    copies = min(MAX_TRANSFER_COPIES, max(1, round(texts / (3 * max(examples, 1)))))
    limit = {"limit": texts} if 3 * copies * examples > texts else {}
    return {"kinds": ["light", "heavy", "splice"], "copies": copies, "seed": 0, **limit}


# ``run`` should end within this many hours of the machine ``init`` runs on; a dataset too large
# for it is sampled down (split.max_*): train to what fits (never below MIN_TRAIN texts),
# validation and test with it. Test keeps as many texts as train and at least TEST_TEXTS (an
# accuracy of 0.9 on 2,000 texts is +-1.3 points): every variant of the benchmark and the fp32
# teacher's checks run on each test text, which on long texts costs more than training on them.
BUDGET_HOURS = 3.0
MIN_TRAIN = 1_000
VALIDATION_TEXTS = 1_000
TEST_TEXTS = 2_000
# With all-MiniLM-L6-v2's vocabulary, English intents take 1.08 (CLINC150) and 1.19 (BANKING77)
# pieces a word, none unknown; German, French and Spanish banking requests 2.0-2.2, Russian
# 4.5, and three pieces in four of Chinese ones are [UNK] (BENCHMARKS.md, 2026-12-06).
FOREIGN_PIECES_PER_WORD = 1.8
FOREIGN_UNKNOWN_SHARE = 0.01
LANGUAGE_SAMPLE = 5_000
# A label with this many times the training texts of another makes accuracy a poor guide
# (BANKING77's largest label has 5.3 times its smallest; CLINC150's are all the same size).
IMBALANCE = 10


def student_tokenizer(reference: str = STUDENT) -> Tokenizer:
    from models.checkpoints import resolve

    tokenizer = Tokenizer.from_file(str(resolve(reference).path / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer


def piece_counts(texts: list[str], reference: str = STUDENT) -> np.ndarray:
    """Each text's length in the student's sub-word pieces, [CLS] and [SEP] included: words
    say little of it outside English (German 3.4 pieces a word, Chinese a piece a character)."""
    encodings = student_tokenizer(reference).encode_batch(texts)
    return np.array([len(encoding.ids) for encoding in encodings])


def language_misfit(texts: list[str], reference: str = STUDENT) -> str | None:
    """Why the default student's English vocabulary fits ``texts`` as it fits no English
    data, or None: many pieces a word (a language of Latin or Cyrillic script) or many
    unknown pieces (a script it lacks). Measured on an even sample of LANGUAGE_SAMPLE texts."""
    sample = texts[:: max(1, len(texts) // LANGUAGE_SAMPLE)]
    tokenizer = student_tokenizer(reference)
    encodings = tokenizer.encode_batch(sample, add_special_tokens=False)
    pieces = sum(len(encoding.ids) for encoding in encodings)
    words = sum(len(text.split()) for text in sample)
    if not pieces or not words:
        return None
    unknown_id = tokenizer.token_to_id("[UNK]")
    unknown = sum(encoding.ids.count(unknown_id) for encoding in encodings) / pieces
    per_word = pieces / words
    if per_word < FOREIGN_PIECES_PER_WORD and unknown < FOREIGN_UNKNOWN_SHARE:
        return None
    unknown_part = f", {unknown:.0%} of them unknown" if unknown >= FOREIGN_UNKNOWN_SHARE else ""
    return (
        f"the students' English vocabulary ({reference}) splits these texts into "
        f"{per_word:.2f} pieces a word{unknown_part} (English intents: CLINC150 1.08, BANKING77 "
        "1.19, none unknown): they look like another language. The default teacher and "
        "students were pretrained on English text, so expect less accuracy than on English "
        "data; a teacher (--teacher) and a student base (--student, a BERT encoder such as "
        "multilingual BERT or MiniLM) pretrained on this language fit it better"
    )


def label_imbalance(data: TextClassificationData) -> str | None:
    """Why accuracy will flatter the variants, or None: one label holds IMBALANCE times the
    training texts of another, so a model that never answers the small labels still scores
    the large label's share."""
    counts = np.bincount(data.splits["train"].label_ids, minlength=len(data.labels))
    largest, smallest = int(counts.argmax()), int(counts.argmin())
    if counts[largest] < IMBALANCE * counts[smallest]:
        return None
    share = counts[largest] / counts.sum()
    return (
        f"label '{data.labels[largest]}' has {counts[largest]:,} training texts ({share:.0%}) and "
        f"'{data.labels[smallest]}' {counts[smallest]:,}: answering '{data.labels[largest]}' to "
        f"everything would score about {share:.2f} accuracy. Judge the variants by macro F1, "
        "which counts every label the same, and by the benchmark's table of the labels "
        "compression cost"
    )


def max_length_for(pieces: np.ndarray) -> int:
    """The 99th percentile of the texts' pieces, rounded up to 16, at most 512."""
    return int(min(512, 16 * math.ceil(np.percentile(pieces, 99) / 16)))


def recipe_for(
    data: TextClassificationData,
    spec: DatasetSpec,
    name: str,
    args,
    max_length: int,
    sizes: Sizes | None = None,
    transfer_texts: int = TRANSFER_TEXTS,
    unlabelled: int | None = None,
    student: StudentBase = DEFAULT_STUDENT,
) -> dict:
    """The recipe for ``data``, its texts cut at ``max_length`` pieces, sized for splits of
    ``sizes`` (default: the data's own; smaller ones are written as the dataset's
    ``split.max_*``), with about ``transfer_texts`` perturbed texts and ``unlabelled`` of the
    data's unlabelled texts (default: all; fewer are written as ``max_unlabelled``)."""
    whole = split_sizes(data)
    sizes = sizes or whole
    teacher_epochs = epochs_for(sizes["train"])
    distill = {"batch_size": 32, "max_length": max_length, "temperature": 4.0, "alpha": 0.5}
    # No loss on validation: a split of ~1,000 texts cannot see the 0.1-0.3 points a smaller
    # vocabulary cost on BANKING77's test split, and int8 embeddings cost only 384 bytes a piece
    # for MiniLM (BENCHMARKS.md, issue 14).
    vocabulary = (
        {"vocabulary": {"general": [0, 3000, 8000, 15000], "tolerance": 0.0}}
        if student.wordpiece
        else {}
    )
    # Dynamic int8 with a scale per output channel: as fast as one scale per tensor and 0.2 MB
    # larger, never less accurate in our runs, up to +0.45 point on BANKING77's test split and
    # +0.8 on CLINC150's (BENCHMARKS.md, issue 14).
    quantization = {"quantization": "dynamic", "per_channel": True}
    dataset = spec.model_dump(mode="json", exclude_defaults=True)
    limits = {f"max_{split}": n for split, n in sizes.items() if n < whole[split]}
    if limits:
        dataset["split"] = {**dataset.get("split", {}), **limits}
    if unlabelled is not None and unlabelled < len(data.unlabelled):
        dataset["max_unlabelled"] = unlabelled
    if data.columns is not None:  # written out, guessed or not, so run reads the same columns
        dataset["text_column"], dataset["label_column"] = data.columns
    if data.header is False:  # the column names above are then brum's, not the file's
        dataset["header"] = False
    # Once the first student's choices are made on validation, the later L6 stages train on it
    # too: the last BANKING77 stage went from 0.9286 to 0.9321 on the test split (BENCHMARKS.md).
    # Not where validation tunes an out-of-scope threshold.
    refit = {"refit": True} if data.oos_label is None else {}
    deep, shallow = f"{name}-{student.stem}", f"{name}-{student.shallow_stem}"
    pooling = {"pooling": student.pooling} if student.pooling != "cls" else {}
    students = [
        {
            "name": f"{deep}-int8",
            "base": student.reference,
            **pooling,
            "distill": {"epochs": teacher_epochs, "learning_rate": 1e-4, **distill},
            **vocabulary,
            **quantization,
        },
        # More distillation on perturbed utterances only the teacher labels: on CLINC150 it took
        # the int8 L6 student from 0.915 to 0.920 on the test split (models/augment.py).
        {
            "name": f"{deep}-augmented-int8",
            "start_from": f"{deep}-int8",
            "transfer": transfer_for(sizes["train"], transfer_texts),
            "distill": {"epochs": 3, "learning_rate": 5e-5, **distill},
            **vocabulary,
            **refit,
            **quantization,
            "ship": True,
        },
    ]
    if student.layers > 1:
        students.append(
            {
                "name": f"{shallow}-int8",
                "base": student.reference,
                "layers": student.shallow_layers,
                **pooling,
                "distill": {"epochs": teacher_epochs, "learning_rate": 2e-4, **distill},
                **vocabulary,
                **quantization,
            }
        )
    students.append(
        {
            "name": f"{deep}-augmented-pruned-int8",
            "start_from": f"{deep}-augmented-int8",
            "prune": {
                "heads": 0.25,
                "neurons": 0.5,
                "recover": {"epochs": 2, "learning_rate": 5e-5, **distill},
            },
            **vocabulary,
            **refit,
            **quantization,
            "ship": True,
        }
    )
    shipped = [s["name"] for s in students if s.get("ship")]
    recipe = {
        "name": name,
        "dataset": dataset,
        "teacher": {
            "base": args.teacher,
            **({"fine_tuned": True} if args.fine_tuned else {}),
            "finetune": {
                "epochs": teacher_epochs,
                "learning_rate": 5e-5,
                "batch_size": 32,
                "max_length": max_length,
                "warmup_ratio": 0.1,
            },
        },
        "students": students,
        "experiment": {
            "name": f"{name}-compressed",
            "sticky_header": "X-User-ID",
            "default": shipped[0],
            "arms": [{"variant": variant, "weight": 1} for variant in shipped],
        },
    }
    if data.oos_label is not None:
        recipe["oos"] = {"objective": "balanced"}
    return recipe


def fitted_recipe(
    data: TextClassificationData,
    spec: DatasetSpec,
    name: str,
    args,
    student: StudentBase = DEFAULT_STUDENT,
) -> tuple[dict, float, float]:
    """(recipe, its estimated seconds, the default recipe's on all the data). Where the default
    would take longer than ``args.hours``: one perturbed text per training text instead of about
    54,000 (the transfer set is worth the least: +0.35-0.55 point on BANKING77, where the
    teacher's steps are worth several), and if that is still too long, as many training texts
    as fit (sampled, with validation and test), each trained on for as many steps as the
    default would give them. Unlabelled texts are priced as perturbed ones: the lean recipes
    take at most as many of them as perturbed texts."""
    pieces = piece_counts(data.splits["train"].texts, student.reference)
    max_length = max_length_for(pieces)
    trained_pieces = float(np.minimum(pieces, max_length).mean())
    teacher = teacher_scale_of(args.teacher)
    unit = unit_seconds(trained_pieces)

    def estimate(
        sizes: Sizes, transfer: int = TRANSFER_TEXTS, unlabelled: int = len(data.unlabelled)
    ) -> tuple[dict, float]:
        recipe = recipe_for(
            data, spec, name, args, max_length, sizes, transfer, unlabelled, student
        )
        validated = Recipe.model_validate(recipe)  # also what run will read
        work = run_work(validated, sizes, validated.students, teacher, unlabelled)
        return recipe, seconds(sum(work.values()), trained_pieces, measured_unit=unit)

    whole = split_sizes(data)
    budget = args.hours * 3600
    recipe, took = estimate(whole)
    if took <= budget:
        return recipe, took, took

    def sampled(train: int) -> Sizes:
        # Validation keeps what carving would give this much training data, and at least
        # VALIDATION_TEXTS: the refit stages train on it, and the vocabulary is chosen on it.
        validation = max(VALIDATION_TEXTS, math.ceil(train * spec.split.validation))
        return {
            "train": train,
            "validation": min(whole["validation"], validation),
            "test": min(whole["test"], max(TEST_TEXTS, train)),
        }

    def lean(sizes: Sizes) -> tuple[dict, float]:
        transfer = min(sizes["train"], TRANSFER_TEXTS)
        return estimate(sizes, transfer, min(len(data.unlabelled), transfer))

    fitted, fitted_took = lean(whole)
    if fitted_took <= budget:
        return fitted, fitted_took, took
    # The estimate grows with the training texts, so the most that fit are found by bisection.
    low, high = min(whole["train"], max(MIN_TRAIN, len(data.labels))), whole["train"]
    while low < high:
        middle = (low + high + 1) // 2
        if lean(sampled(middle))[1] <= budget:
            low = middle
        else:
            high = middle - 1
    fitted, fitted_took = lean(sampled(low))
    return fitted, fitted_took, took


def duration(seconds: float) -> str:
    minutes = round(seconds / 60)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"


class _NoAliases(yaml.SafeDumper):
    """Each student's settings written out in full, not as anchors to the first's."""

    def ignore_aliases(self, data: object) -> bool:
        return True


def check_teacher(reference: str, fine_tuned: bool, labels: tuple[str, ...]) -> None:
    """Fail now, not an hour into ``run``: a teacher that cannot be found here, or a fine-tuned
    one whose labels are not the data's."""
    from models.checkpoints import unfindable

    why = unfindable(reference)
    if why:
        raise DatasetError(f"--teacher {reference}: {why}")
    config = Path(reference).expanduser() / "config.json"
    if fine_tuned and config.is_file():
        from models.adopt import label_order

        id2label = json.loads(config.read_text()).get("id2label") or {}
        label_order(id2label, labels, config.parent)


def recipe_name(given: str | None, data_name: str, student: StudentBase) -> str:
    """``--name``, or one made from the data's name, short enough for every variant's name:
    a long file name is cut, a long ``--name`` refused."""
    room = NAME_LENGTH - max(
        len(f"-{student.stem}{LONGEST_SUFFIX}"), len(f"-{student.shallow_stem}-int8")
    )
    if given is not None:
        # The characters first; a name too long for them is told below.
        if not re.fullmatch(NAME_PATTERN, given[:NAME_LENGTH]):
            raise DatasetError(
                f"--name {given}: lower-case letters a-z, digits, '.', '_' and '-' only, "
                "starting with a letter or digit"
            )
        if len(given) > room:
            raise DatasetError(
                f"--name {given}: at most {room} characters, so that the variants' names "
                f"({given}-{student.stem}{LONGEST_SUFFIX}) keep within {NAME_LENGTH}"
            )
        return given
    ascii_name = unicodedata.normalize("NFKD", data_name).encode("ascii", "ignore").decode()
    made = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower())[:room].strip("-")
    return made or "data"


def write_recipe(args: argparse.Namespace) -> tuple[Path, str]:
    """The recipe file written, and what it should take."""
    spec = dataset_spec(args)
    data = load_dataset(spec)
    check_teacher(args.teacher, args.fine_tuned, data.labels)
    student = student_base(args.student)
    # Its thresholds are the default student's English vocabulary's.
    misfit = language_misfit(data.splits["train"].texts) if student == DEFAULT_STUDENT else None
    if misfit:
        logger.warning("%s: %s", data.name, misfit)
    skewed = label_imbalance(data)
    if skewed:
        logger.warning("%s: %s", data.name, skewed)
    name = recipe_name(args.name, data.name, student)
    recipe, took, whole = fitted_recipe(data, spec, name, args, student)
    output = args.output or Path("recipes") / f"{name}.yaml"
    output.parent.mkdir(parents=True, exist_ok=True)
    sizes = ", ".join(f"{split} {len(s):,}" for split, s in data.splits.items())
    cores = len(os.sched_getaffinity(0))
    timing = (
        f"run should take about {duration(took)} on this machine's {cores} cores (from paces "
        "measured on 2 cores and a training step timed here; the run's bar measures this "
        "machine's)"
    )
    if took < whole:
        limits = {
            f"split.{k}": v for k, v in recipe["dataset"].get("split", {}).items() if "max_" in k
        }
        kept = recipe["dataset"].get("max_unlabelled")
        if kept is not None and kept < len(data.unlabelled):
            limits["max_unlabelled"] = kept
        sampled = ", ".join(f"{k} {v:,}" for k, v in limits.items())
        timing += (
            f"; the default recipe would take {duration(whole)}, over --hours {args.hours:g}, so "
            "it distils over one perturbed text per training text"
            + (f", on a sample of the data ({sampled})" if sampled else "")
        )
    if took > args.hours * 3600:
        timing += f"; over --hours {args.hours:g} even so"
    header = (
        f"# Written by `python -m models init` for {data.name}: {len(data.labels)} labels, "
        f"{sizes}.\n# Splits: "
        + "; ".join(f"{split}: {how}" for split, how in data.splits_made.items())
        + f"\n# {timing}."
        + "".join(f"\n# Note: {note}." for note in (*data.notes, misfit, skewed) if note)
        + f"\n# Next: python -m models run {output}\n"
    )
    output.write_text(header + yaml.dump(recipe, Dumper=_NoAliases, sort_keys=False, width=100))
    return output, timing
