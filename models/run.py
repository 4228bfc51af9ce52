"""``python -m models run RECIPE``: every stage of a recipe, from the data to a served repository.

teacher (fine-tuned, or adopted) -> its logits -> students (transfer sets, distillation,
pruning, vocabulary, int8) -> the fp32 teacher as the baseline variant -> the benchmark of them
all, side by side -> the shipped students and the experiment in a repository. Every stage keeps
its output under ``runs/<recipe>/`` and is skipped once done, so a killed run resumes where it
stopped. One bar counts the stages and estimates what is left; each stage shows its own progress.
With ``shipped_only`` it builds just the ``ship: true`` students and those they start from: the
students a recipe keeps only to be measured beside them are skipped.
"""

from __future__ import annotations

import time
from pathlib import Path

from tqdm import tqdm

from models.recipe import load_recipe
from models.sources import load_dataset


def run_recipe(
    path: Path, runs: Path, repository: Path | None = None, shipped_only: bool = False
) -> Path:
    from models.benchmark import main as benchmark
    from models.pipeline import build_students, build_teacher_variant
    from models.ship import ship
    from models.teacher import train_teacher

    recipe = load_recipe(path)
    data = load_dataset(recipe.dataset)
    root = runs / recipe.name
    built, output = root / "built", root / "benchmark"
    repository = repository or root / "repository"
    students = recipe.shipped_lineage() if shipped_only else recipe.students
    stages = ["teacher", *(f"student {s.name}" for s in students), "baseline"]
    stages += ["benchmark", "ship"]
    started = time.perf_counter()
    with tqdm(total=len(stages), desc="run", unit="stage", position=0) as bar:

        def done(stage: str) -> None:
            bar.update()
            tqdm.write(f"==> {stage}: done ({time.perf_counter() - started:.0f} s in all)")

        def begin(stage: str) -> None:
            bar.set_description(stage)
            tqdm.write(f"==> {stage} ({bar.n + 1} of {len(stages)})")

        begin("teacher")
        train_teacher(recipe, data, runs)
        done("teacher")
        for spec in students:
            begin(f"student {spec.name}")
            (folder,) = build_students(recipe, data, runs, built, only=[spec.name])
            done(f"student {spec.name} -> {folder}")
        begin("baseline")
        build_teacher_variant(recipe, data, runs, built)
        done("baseline")
        begin("benchmark")
        benchmark([str(built), "--recipe", str(path), "--output", str(output)])
        done(f"benchmark -> {output}/benchmark.md, .png")
        begin("ship")
        shipped = ship(recipe, built, repository)
        done(f"ship {', '.join(shipped)} -> {repository}")
    return repository
