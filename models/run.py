"""``python -m models run RECIPE``: every stage of a recipe, from the data to a served repository.

teacher (fine-tuned, or adopted) -> its logits -> students (transfer sets, distillation,
pruning, vocabulary, int8) -> the fp32 teacher as the baseline variant -> the benchmark of them
all, side by side -> the shipped students and the experiment in a repository. Every stage keeps
its output under ``runs/<recipe>/`` and is skipped once done, so a killed run resumes where it
stopped. One bar shows the whole run and how long is left, weighing each stage by its work
(models/workload.py); each stage shows its own progress.
With ``shipped_only`` it builds just the ``ship: true`` students and those they start from: the
students a recipe keeps only to be measured beside them are skipped.
"""

from __future__ import annotations

import time
from pathlib import Path

from tqdm import tqdm

from models.recipe import Recipe, load_recipe
from models.sources import load_dataset
from models.workload import run_work, split_sizes, teacher_scale_of


def built_folder(runs: Path, recipe_name: str) -> Path:
    """Where a recipe's variants are built, by ``run`` and by the stage commands alike, so that
    each resumes what the other made."""
    return runs / recipe_name / "built"


def run_recipe(
    path: Path, runs: Path, repository: Path | None = None, shipped_only: bool = False
) -> Path:
    from models.benchmark import main as benchmark
    from models.pipeline import build_students, build_teacher_variant
    from models.preflight import check_recipe
    from models.ship import ship
    from models.teacher import teacher_dir, train_teacher

    recipe = load_recipe(path)
    data = load_dataset(recipe.dataset)
    root = runs / recipe.name
    built, output = built_folder(runs, recipe.name), root / "benchmark"
    repository = repository or root / "repository"
    students = recipe.shipped_lineage() if shipped_only else recipe.students
    teacher = teacher_scale_of(recipe.teacher.base)
    work = run_work(recipe, split_sizes(data), students, teacher, len(data.unlabelled))
    made = made_before(recipe, teacher_dir(recipe, runs), built, output, work)
    check_recipe(recipe, path, made)
    started = time.perf_counter()
    # Work, not stages, fills the bar, and only what runs now sets the pace (smoothing 0 with
    # ``initial``: what is left / what was done since the start), so a resumed run estimates well.
    with tqdm(
        total=sum(work.values()),
        initial=sum(work[stage] for stage in made),
        desc="run: ",
        smoothing=0,
        bar_format="{desc}{percentage:3.0f}%|{bar}| [{elapsed}<{remaining}]",
        position=0,
    ) as bar:

        def begin(stage: str) -> None:
            bar.set_description(stage)
            place = f"{list(work).index(stage) + 1} of {len(work)}"
            tqdm.write(f"==> {stage} ({place}{', made before' if stage in made else ''})")

        def done(stage: str, what: str = "") -> None:
            if stage not in made:
                bar.update(work[stage])
            tqdm.write(f"==> {stage}{what}: done ({time.perf_counter() - started:.0f} s in all)")

        begin("teacher")
        train_teacher(recipe, data, runs)
        done("teacher")
        for spec in students:
            stage = f"student {spec.name}"
            begin(stage)
            (folder,) = build_students(recipe, data, runs, built, only=[spec.name])
            done(stage, f" -> {folder}")
        begin("baseline")
        build_teacher_variant(recipe, data, runs, built)
        done("baseline")
        begin("benchmark")
        benchmark([str(built), "--recipe", str(path), "--output", str(output)])
        done("benchmark", f" -> {output}/benchmark.md, .png")
        begin("ship")
        shipped = ship(recipe, built, repository)
        done("ship", f" {', '.join(shipped)} -> {repository}")
    return repository


def made_before(
    recipe: Recipe, teacher: Path, built: Path, output: Path, work: dict[str, float]
) -> set[str]:
    """The stages whose results a resumed run finds: they are checked and skipped in seconds."""
    made = set()
    if (teacher / "train_logits.npy").is_file():
        made.add("teacher")
    for stage in work:
        name = stage.removeprefix("student ")
        if name != stage and (built / name / "variant.json").is_file():
            made.add(stage)
    if any(built.glob(f"{recipe.name}-teacher-*/variant.json")):
        made.add("baseline")
    if (output / "benchmark.json").is_file():
        made.add("benchmark")
    return made
