"""The run's bar weighs each stage by its work: the estimates keep the proportions measured on
BANKING77, and a resumed run counts what it finds already made."""

from __future__ import annotations

import argparse

import pytest

from models.data import from_examples
from models.init import recipe_for
from models.recipe import DatasetSpec, Recipe
from models.workload import run_work

# Minutes each stage of `init`'s BANKING77 recipe took on 2 cores (runs of 2026-12-04):
# the teacher 8 epochs at 6:20 plus its labels, the refit augmented L6 2,811 s, the L3 374 s.
MEASURED_MINUTES = {
    "teacher": 53,
    "student banking77-minilm-l6-augmented-int8": 47,
    "student banking77-minilm-l3-int8": 6.2,
}


def banking77_sized(fine_tuned: bool = False) -> tuple[Recipe, object]:
    labels = [f"intent{i}" for i in range(77)]
    sizes = {"train": 9_000, "validation": 1_003, "test": 3_080}
    examples = {
        split: [(f"{split} text {i}", labels[i % 77]) for i in range(n)]
        for split, n in sizes.items()
    }
    data = from_examples("banking77", examples)
    args = argparse.Namespace(
        teacher="sentence-transformers/all-mpnet-base-v2", fine_tuned=fine_tuned
    )
    recipe = Recipe.model_validate(recipe_for(data, DatasetSpec(), "banking77", args))
    return recipe, data


def test_stage_estimates_keep_the_measured_proportions():
    recipe, data = banking77_sized()
    work = run_work(recipe, data, recipe.students)
    students = [f"student {spec.name}" for spec in recipe.students]
    assert list(work) == ["teacher", *students, "baseline", "benchmark", "ship"]
    pace = work["teacher"] / MEASURED_MINUTES["teacher"]
    for stage, minutes in MEASURED_MINUTES.items():
        assert work[stage] / pace == pytest.approx(minutes, rel=0.35), stage


def test_a_fine_tuned_teacher_only_labels():
    recipe, data = banking77_sized(fine_tuned=True)
    trained, _ = banking77_sized()
    assert run_work(recipe, data, [])["teacher"] < run_work(trained, data, [])["teacher"] / 10
