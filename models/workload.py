"""What each stage of ``run`` will cost, in one unit, so the run's bar can say how long is left.

A bar that counts stages extrapolates the teacher's hour over eight stages of very different
sizes. The unit here is one training example through MiniLM-L6 (forward and backward); other work
is priced against it by what it took on BANKING77 on 2 cores, bf16 (runs of 2026-12-04):

- MPNet (the teacher) trains at 1.35 s a step of 32, MiniLM-L6 at 0.28 s: 5 units an example.
- Labelling with the teacher (a forward pass): 2.4 s per 128 texts, 1.4 units a text.
- Layers cost per layer, the rest (embeddings, loss, data) stays: MiniLM-L3 took 0.19 s a step.
- Packaging a student (export, fuse, int8, vocabulary candidates, checks on validation and test)
  took 36-68 s: about 6,000 units. The fp32 teacher's takes about 3 times that; benchmarking a
  variant (speed at two batch sizes, accuracy on test) about as long as packaging it.

Only the proportions matter: the bar turns them into time with this machine's own pace.
"""

from __future__ import annotations

from models.data import TextClassificationData
from models.recipe import Recipe, StudentSpec

TEACHER_TRAINING = 5.0
TEACHER_LABELLING = 1.4
PACKAGING = 6_000.0
TEACHER_PACKAGING = 3 * PACKAGING
BENCHMARK_PER_VARIANT = PACKAGING
BASE_LAYERS = 6  # MiniLM-L6, the students' usual base
FIXED_SHARE = 0.35  # of a MiniLM-L6 step that does not scale with layers


def teacher_work(recipe: Recipe, data: TextClassificationData) -> float:
    train = len(data.splits["train"])
    labelled = train + len(data.splits["validation"])
    trained = 0.0 if recipe.teacher.fine_tuned else _epochs(recipe.teacher.finetune) * train
    return trained * TEACHER_TRAINING + labelled * TEACHER_LABELLING


def student_work(spec: StudentSpec, data: TextClassificationData) -> float:
    examples = len(data.splits["train"])
    if spec.refit:
        examples += len(data.splits["validation"])
    transfer = examples * sum(s.copies * len(s.kinds) for s in spec.transfer)
    passes = 0.0
    if spec.start_from is None or spec.distill:
        passes += _epochs(spec.distill)
    if spec.prune is not None:
        passes += _epochs(spec.prune.recover)
    layers = len(spec.layers) / BASE_LAYERS if spec.layers else 1.0
    per_example = FIXED_SHARE + (1 - FIXED_SHARE) * layers
    training = passes * (examples + transfer) * per_example
    return training + transfer * TEACHER_LABELLING + PACKAGING


def run_work(
    recipe: Recipe, data: TextClassificationData, students: list[StudentSpec]
) -> dict[str, float]:
    """Each stage of ``run`` (named as its bar names it) -> its share of the work."""
    work = {"teacher": teacher_work(recipe, data)}
    work |= {f"student {spec.name}": student_work(spec, data) for spec in students}
    work["baseline"] = TEACHER_PACKAGING + len(data.splits["test"]) * TEACHER_LABELLING
    work["benchmark"] = BENCHMARK_PER_VARIANT * (len(students) + 1)
    work["ship"] = PACKAGING / 10
    return work


def _epochs(config: dict) -> float:
    from models.finetune import FinetuneConfig  # torch: only where a run is about to start

    return float(config.get("epochs", FinetuneConfig.epochs))
