"""What ``run`` checks before its first stage, so that a recipe edited by hand fails in seconds
rather than an hour in: every checkpoint it names can be found here, and each student that
prunes its vocabulary has a WordPiece tokenizer, the only kind models/vocab.py can prune."""

from __future__ import annotations

import json
from collections.abc import Set
from pathlib import Path

from models.checkpoints import local_file, unfindable
from models.recipe import Recipe, RecipeError


def tokenizer_kind(reference: str) -> str | None:
    """The tokenizer's model type (WordPiece, BPE, Unigram), if its file is here to read."""
    path = local_file(reference, "tokenizer.json")
    return json.loads(path.read_text())["model"]["type"] if path is not None else None


def recipe_problems(recipe: Recipe, made: Set[str] = frozenset()) -> list[str]:
    """What would stop ``run`` part way, for the stages not ``made`` before (models/run.py)."""
    problems = []
    why = None if "teacher" in made else unfindable(recipe.teacher.base)
    if why:
        problems.append(f"teacher.base {recipe.teacher.base}: {why}")
    bases: dict[str, str] = {}  # student -> the checkpoint its lineage starts from
    for student in recipe.students:
        base = student.base if student.base is not None else bases[str(student.start_from)]
        bases[student.name] = base
        if f"student {student.name}" in made:
            continue
        if student.base is not None:
            why = unfindable(student.base)
            if why:
                problems.append(f"student {student.name}: base {student.base}: {why}")
        kind = tokenizer_kind(base) if student.vocabulary is not None else None
        if kind not in (None, "WordPiece"):
            problems.append(
                f"student {student.name}: vocabulary pruning works on WordPiece tokenizers and "
                f"{base} has a {kind} one; remove the student's vocabulary section"
            )
    return problems


def check_recipe(recipe: Recipe, path: Path, made: Set[str] = frozenset()) -> None:
    problems = recipe_problems(recipe, made)
    if problems:
        raise RecipeError(f"{path}: " + "; ".join(problems))
