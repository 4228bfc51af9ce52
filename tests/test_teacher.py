"""The teacher fine-tuned with refit: on train and validation together, where no out-of-scope
threshold is tuned on validation; its card says so and a run's estimate counts those texts."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from app.core.card import read_card
from models.finetune import DONE_FILE
from models.pipeline import build_teacher_variant
from models.recipe import Recipe, RecipeError
from models.stamps import texts_digest
from models.teacher import LOGITS_FILE, teacher_dir, train_teacher
from models.workload import TEACHER_TRAINING, split_sizes, teacher_work
from tests.test_pipeline import INTENTS, subset
from tests.tiny import save_tiny_bert

pytestmark = pytest.mark.pipeline

QUICK = {"epochs": 1, "max_steps": 4, "batch_size": 16, "max_length": 32, "learning_rate": 3e-3}
IN_SCOPE = tuple(intent for intent in INTENTS if intent != "oos")


def refit_recipe(base: str) -> Recipe:
    return Recipe.model_validate(
        {"name": "tiny", "teacher": {"base": base, "refit": True, "finetune": QUICK}}
    )


@pytest.fixture(scope="module")
def refit_teacher(tmp_path_factory, clinc):
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("teacher")
    data = subset(clinc, IN_SCOPE)
    base = save_tiny_bert(root / "base", clinc.splits["train"].texts, hidden=64, layers=2)
    recipe = refit_recipe(str(base))
    runs = root / "runs"
    trained = train_teacher(recipe, data, runs)
    variant = build_teacher_variant(recipe, data, runs, root / "built")
    return recipe, data, runs, trained, read_card(variant)


def test_a_refit_teacher_trains_on_validation_too(refit_teacher):
    recipe, data, runs, trained, card = refit_teacher
    train, validation = data.splits["train"], data.splits["validation"]
    record = json.loads((trained / DONE_FILE).read_text())
    assert record["examples"] == len(train) + len(validation)
    assert record["data"] == texts_digest(
        train.texts + validation.texts, train.label_ids + validation.label_ids
    )
    finetune = card.lineage[0]
    assert (finetune.step, finetune.params["refit"]) == ("finetune", True)
    # Distillation reads the teacher's logits on the training split alone, one row per text.
    logits = np.load(teacher_dir(recipe, runs) / LOGITS_FILE)
    assert logits.shape == (len(train), len(data.labels))


def test_teacher_refit_is_refused_where_validation_tunes_the_out_of_scope_threshold(
    refit_teacher, clinc, tmp_path
):
    recipe = refit_teacher[0]
    data = subset(clinc, INTENTS)
    assert data.oos_id is not None
    with pytest.raises(RecipeError, match="teacher: refit trains on the validation split"):
        train_teacher(recipe, data, tmp_path)
    assert not (teacher_dir(recipe, tmp_path) / "finetune").exists()


@pytest.mark.parametrize(
    ("teacher", "message"),
    [
        ({"fine_tuned": True}, "a fine-tuned teacher is not trained again"),
        ({"finetune": {"keep_best": True}}, "keep_best chooses an epoch on the validation"),
    ],
)
def test_teacher_refit_is_refused_where_it_cannot_hold(teacher, message):
    with pytest.raises(ValueError, match=message):
        Recipe.model_validate({"name": "t", "teacher": {"base": "b", "refit": True, **teacher}})


def test_a_runs_estimate_counts_the_validation_texts_a_refit_teacher_trains_on(clinc):
    sizes = split_sizes(subset(clinc, IN_SCOPE))
    refit = refit_recipe("b")
    plain = refit.model_copy(update={"teacher": refit.teacher.model_copy(update={"refit": False})})
    extra = teacher_work(refit, sizes) - teacher_work(plain, sizes)
    assert extra == pytest.approx(QUICK["epochs"] * sizes["validation"] * TEACHER_TRAINING)
