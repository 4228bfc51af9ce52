"""What each stage of ``run`` will cost, in one unit, so the run's bar can say how long is left.

A bar that counts stages extrapolates the teacher's hour over eight stages of very different
sizes. The unit here is one training example through MiniLM-L6 (forward and backward); other work
is priced against it by what it took on BANKING77 on 2 cores, bf16 (runs of 2026-12-04):

- MPNet (the teacher) trains at 1.35 s a step of 32, MiniLM-L6 at 0.28 s: 5 units an example.
- Labelling with the teacher (a forward pass): 2.4 s per 128 texts, 1.4 units a text.
- Layers cost per layer, the rest (embeddings, loss, data) stays: MiniLM-L3 took 0.19 s a step.
- Packaging a student (export, fuse, int8, vocabulary candidates, checks on validation and test)
  took 36-68 s: about 6,000 units.
- The fp32 teacher as a variant is mostly its checks: its ONNX graph run text by text on
  validation twice and on test, about 10 units a text then, plus 8,000 for export and fusion. The
  benchmark runs every variant on every test text, alone and batched, the teacher costing the
  most: about 24 units a test text then, plus 1,300 a variant. Fitted on two whole runs (2,614 and
  799 test texts: baseline 483 and 149 s, benchmark 603 and 166 s); it puts a resumed BANKING77
  run's baseline and benchmark at the 20 minutes they took. Since the accuracy passes run their
  batches on every core and throughput stops after 8 s (models/evaluate.py), the same stages of
  one run (1,000 validation and 2,000 test texts) took 182 s instead of 388 and 223 s instead of
  407: 3.6 units a checked text and 12 a test text (runs of 2026-12-05).

The bar turns the proportions into time with this machine's own pace. ``init`` needs a time
before anything has run: on 2 cores (AMD EPYC, bf16) a unit took 8.8 ms on BANKING77, whose
training texts average 16.2 sub-word pieces, and 6.6 ms on a 10-domain CLINC150 sample (11.0
pieces; the whole run 49.8 min): 0.43 ms per piece plus 4 pieces' worth that length does not
change. A MiniLM-L6 step on texts of 62 pieces took 2.3 times one on 22 (runs of 2026-12-04).
Time is taken to shrink in proportion to cores. That machine is where length cost the most:
``init`` also times a MiniLM-L6 step at the data's length (models/pace.py) and prices by it
where it is cheaper, as on a Sapphire Rapids Xeon, where 70 pieces cost 19 ms an example, not 32.

The teacher's parts are priced for MPNet-base. Another teacher's scale by its compute per token,
read from its config.json: layers x (4 h^2 + 2 h i), the attention projections and the
feed-forward (a BERT-large teacher is 3.6 MPNets, a DistilRoBERTa 0.5). Students are priced for
MiniLM-L6, and another student base's layers by the same measure against a MiniLM-L6 layer's.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from models.augment import AugmentSpec
from models.data import TextClassificationData
from models.recipe import Recipe, StudentSpec

Sizes = dict[str, int]  # texts per split: train, validation, test

TEACHER_TRAINING = 5.0
TEACHER_LABELLING = 1.4
PACKAGING = 6_000.0
TEACHER_PACKAGING = 8_000.0
TEACHER_CHECK_PER_TEXT = 3.6
BENCHMARK_PER_VARIANT = 1_300.0
BENCHMARK_PER_TEST_TEXT = 12.0
BASE_LAYERS = 6  # MiniLM-L6, the students' usual base
FIXED_SHARE = 0.35  # of a MiniLM-L6 step that does not scale with layers
SECONDS_PER_UNIT_PIECE = 0.43e-3
FIXED_PIECES = 4.0
MEASURED_CORES = 2
# What the teacher's prices were measured on: MPNet-base, 12 layers of 768 with 3,072 in between.
MPNET_BASE = {"num_hidden_layers": 12, "hidden_size": 768, "intermediate_size": 3072}
# And the students': MiniLM-L6, 6 layers of 384 with 1,536 in between.
MINILM_L6 = {"num_hidden_layers": 6, "hidden_size": 384, "intermediate_size": 1536}
# The same three sizes under other families' names.
CONFIG_NAMES = {
    "num_hidden_layers": ("num_hidden_layers", "n_layers", "num_layers"),
    "hidden_size": ("hidden_size", "dim", "d_model"),
    "intermediate_size": ("intermediate_size", "hidden_dim", "ffn_dim", "d_ff"),
}


def split_sizes(data: TextClassificationData) -> Sizes:
    return {split: len(texts) for split, texts in data.splits.items()}


@dataclass(frozen=True)
class StudentScale:
    """A student base's layers, and one layer's compute per token against a MiniLM-L6 layer's."""

    per_layer: float = 1.0
    layers: int = BASE_LAYERS


def _sizes(config: dict) -> dict[str, int] | None:
    found = {}
    for size, names in CONFIG_NAMES.items():
        value = next((config[name] for name in names if isinstance(config.get(name), int)), None)
        if value is None:
            return None
        found[size] = value
    return found


def _per_token(sizes: dict[str, int]) -> float:
    hidden, inner = sizes["hidden_size"], sizes["intermediate_size"]
    return sizes["num_hidden_layers"] * (4 * hidden**2 + 2 * hidden * inner)


def teacher_scale(config: dict) -> float:
    """The teacher's compute per token against MPNet-base's, from its Hugging Face config; 1 where
    the config does not say its sizes."""
    sizes = _sizes(config)
    return 1.0 if sizes is None else _per_token(sizes) / _per_token(MPNET_BASE)


def student_scale(config: dict) -> StudentScale:
    sizes = _sizes(config)
    if sizes is None:
        return StudentScale()
    per_layer = _per_token(sizes) / sizes["num_hidden_layers"]
    minilm_layer = _per_token(MINILM_L6) / MINILM_L6["num_hidden_layers"]
    return StudentScale(per_layer / minilm_layer, sizes["num_hidden_layers"])


def _local_config(reference: str) -> dict | None:
    """A checkpoint's config if it is on this machine: nothing is fetched for an estimate."""
    from models.checkpoints import local_file

    path = local_file(reference, "config.json")
    try:
        return json.loads(path.read_text()) if path is not None else None
    except ValueError:
        return None


def teacher_scale_of(reference: str) -> float:
    """``teacher_scale`` of a checkpoint on this machine; 1 for any other."""
    config = _local_config(reference)
    return 1.0 if config is None else teacher_scale(config)


def student_scale_of(reference: str) -> StudentScale:
    """``student_scale`` of a checkpoint on this machine; MiniLM-L6's for any other."""
    config = _local_config(reference)
    return StudentScale() if config is None else student_scale(config)


def teacher_work(recipe: Recipe, sizes: Sizes, scale: float = 1.0) -> float:
    labelled = sizes["train"] + sizes["validation"]
    examples = sum(sizes[split] for split in recipe.teacher.trained_on)
    trained = 0.0 if recipe.teacher.fine_tuned else _epochs(recipe.teacher.finetune) * examples
    return (trained * TEACHER_TRAINING + labelled * TEACHER_LABELLING) * scale


def student_work(
    spec: StudentSpec,
    sizes: Sizes,
    teacher: float = 1.0,
    unlabelled: int = 0,
    base: StudentScale = StudentScale(),
) -> float:
    """``unlabelled``: the dataset's unlabelled texts, which join every transfer set; ``base``:
    the student's lineage's starting checkpoint."""
    splits = spec.trained_on
    examples = sum(sizes[split] for split in splits)
    transfer = sum(_transfer_texts(s, sizes[split]) for s in spec.transfer for split in splits)
    transfer += unlabelled if spec.transfer else 0
    passes = 0.0
    if spec.start_from is None or spec.distill:
        passes += _epochs(spec.distill)
    if spec.prune is not None:
        passes += _epochs(spec.prune.recover)
    layers = len(spec.layers) if spec.layers else base.layers
    per_example = FIXED_SHARE + (1 - FIXED_SHARE) * base.per_layer * layers / BASE_LAYERS
    training = passes * (examples + transfer) * per_example
    return training + transfer * TEACHER_LABELLING * teacher + PACKAGING


def run_work(
    recipe: Recipe,
    sizes: Sizes,
    students: list[StudentSpec],
    teacher: float = 1.0,
    unlabelled: int = 0,
) -> dict[str, float]:
    """Each stage of ``run`` (named as its bar names it) -> its share of the work; ``teacher``:
    the teacher's ``teacher_scale``; ``unlabelled``: the dataset's unlabelled texts."""
    work = {"teacher": teacher_work(recipe, sizes, teacher)}
    bases: dict[str, str] = {}
    for spec in recipe.students:
        bases[spec.name] = spec.base if spec.base is not None else bases[str(spec.start_from)]
    scales = {base: student_scale_of(base) for base in set(bases.values())}
    work |= {
        f"student {spec.name}": student_work(
            spec, sizes, teacher, unlabelled, scales[bases[spec.name]]
        )
        for spec in students
    }
    checked = 2 * sizes["validation"] + sizes["test"]
    work["baseline"] = (TEACHER_PACKAGING + checked * TEACHER_CHECK_PER_TEXT) * teacher
    # The benchmark's time is mostly the teacher's, run on every test text.
    work["benchmark"] = (
        BENCHMARK_PER_VARIANT * (len(students) + 1)
        + BENCHMARK_PER_TEST_TEXT * sizes["test"] * teacher
    )
    work["ship"] = PACKAGING / 10
    return work


def seconds(
    work: float, pieces: float, cores: int | None = None, measured_unit: float | None = None
) -> float:
    """What ``work`` takes on texts of ``pieces`` sub-word pieces on average, on ``cores``
    (default: those this process may use); ``measured_unit``: a unit timed on this machine
    (models/pace.py), which lowers the formula's price where it is less."""
    cores = cores or len(os.sched_getaffinity(0))
    per_unit = (pieces + FIXED_PIECES) * SECONDS_PER_UNIT_PIECE * MEASURED_CORES / cores
    if measured_unit is not None:
        per_unit = min(per_unit, measured_unit)
    return work * per_unit


def _transfer_texts(spec: AugmentSpec, texts: int) -> int:
    made = texts * spec.copies * len(spec.kinds)
    return made if spec.limit is None else min(made, spec.limit)


def _epochs(config: dict) -> float:
    from models.finetune import FinetuneConfig  # torch: only where a run is about to start

    return float(config.get("epochs", FinetuneConfig.epochs))
