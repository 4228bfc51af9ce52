"""Ship a recipe: its ``ship: true`` students become the default model repository, with the
recipe's experiment splitting traffic between them."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from app.core.card import read_card, verify_files
from app.core.experiment import EXPERIMENT_FILE, Experiment
from models.recipe import Recipe, RecipeError


def ship(recipe: Recipe, built: Path, repository: Path) -> list[str]:
    names = [s.name for s in recipe.students if s.ship]
    if not names:
        raise RecipeError(f"recipe {recipe.name} marks no student with ship: true")
    for name in names:
        verify_files(built / name, read_card(built / name))
    experiment = Experiment.model_validate(recipe.experiment) if recipe.experiment else None
    if experiment is not None:
        experiment.check_variants(frozenset(names))
    repository.mkdir(parents=True, exist_ok=True)
    for old in repository.iterdir():
        if old.is_dir() and old.name not in names:
            shutil.rmtree(old)
    for name in names:
        shutil.rmtree(repository / name, ignore_errors=True)
        shutil.copytree(built / name, repository / name)
    target = repository / EXPERIMENT_FILE
    if experiment is None:
        target.unlink(missing_ok=True)
    else:
        header = f"# Written by `python -m models ship` from recipe {recipe.name}.\n"
        target.write_text(header + yaml.safe_dump(experiment.model_dump(), sort_keys=False))
    return names
