"""A small Optuna search over distillation temperature and alpha, scored on the validation split.

Each trial distils a student for a short budget and reports its validation accuracy; the trials and
the best parameters are written to ``runs/<recipe>/search-<student>.json``. Put the winners into
the recipe: the lineage of a shipped variant records fixed values, not a search.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import optuna
import torch
from transformers import AutoTokenizer

from models.checkpoints import resolve
from models.data import TextClassificationData
from models.finetune import FinetuneConfig, finetune, predict_logits
from models.pooling import load_classifier
from models.recipe import Recipe, StudentSpec
from models.student import starting_weights
from models.teacher import split_logits


def search_distillation(
    recipe: Recipe,
    spec: StudentSpec,
    data: TextClassificationData,
    runs: Path,
    trials: int,
    epochs: int,
) -> dict:
    workdir = runs / recipe.name / f"search-{spec.name}"
    base = resolve(spec.base or "")
    init = starting_weights(base.path, spec.layers, workdir, spec.pooling or "cls")
    teacher_logits = split_logits(recipe, data, runs, "train")
    validation = data.splits["validation"]
    truth = torch.tensor(validation.label_ids)

    def objective(trial: optuna.Trial) -> float:
        config = FinetuneConfig(
            **{
                **spec.distill,
                "epochs": epochs,
                "temperature": trial.suggest_float("temperature", 1.0, 10.0),
                "alpha": trial.suggest_float("alpha", 0.0, 1.0),
            }
        )
        output = workdir / f"trial-{trial.number}"
        trained = finetune(init, data, output, config, teacher_logits=teacher_logits)
        model = load_classifier(trained)
        tokenizer = AutoTokenizer.from_pretrained(trained)
        logits = predict_logits(model, tokenizer, validation.texts, config.max_length)
        shutil.rmtree(output)  # a trial's weights are not worth their disk
        return float((logits.argmax(-1) == truth).float().mean())

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=0))
    # The chapter's values first, so the search starts from a known-good point.
    study.enqueue_trial({"temperature": 7.0, "alpha": 0.12})
    study.optimize(objective, n_trials=trials)
    result = {
        "student": spec.name,
        "epochs_per_trial": epochs,
        "metric": "validation accuracy (argmax)",
        "best": {**study.best_params, "validation_accuracy": study.best_value},
        "trials": [
            {**t.params, "validation_accuracy": t.value}
            for t in study.trials
            if t.value is not None
        ],
    }
    (runs / recipe.name / f"search-{spec.name}.json").write_text(json.dumps(result, indent=2))
    return result
