"""A recipe's students end to end on a tiny BERT: layers, distil, prune, vocabulary, int8."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer

from app.core.card import MODEL_FILE, read_card, verify_files
from models.build import PackageConfig
from models.finetune import load_for_classification, native_bf16
from models.mixed_precision import attention_nodes
from models.pipeline import build_student
from models.recipe import Recipe, RecipeError
from models.stamps import texts_digest
from models.teacher import LOGITS_FILE, teacher_dir
from tests.test_pipeline import INTENTS, subset
from tests.tiny import save_tiny_bert

pytestmark = pytest.mark.pipeline


@pytest.fixture(scope="module")
def students(tmp_path_factory, clinc):
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("recipe")
    data = subset(clinc, INTENTS)
    base = save_tiny_bert(root / "base", clinc.splits["train"].texts, hidden=64, layers=4)
    distill = {
        "epochs": 3,
        "learning_rate": 3e-3,
        "batch_size": 16,
        "max_length": 32,
        "temperature": 4.0,
        "alpha": 0.5,
    }
    recipe = Recipe.model_validate(
        {
            "name": "tiny",
            "teacher": {"base": str(base)},
            "students": [
                {
                    "name": "shallow-int8",
                    "base": str(base),
                    "layers": [0, 2],
                    "distill": distill,
                    "vocabulary": {"general": [0, 50], "tolerance": 0.05},
                },
                {
                    "name": "augmented-int8",
                    "start_from": "shallow-int8",
                    "transfer": [
                        {"kinds": ["light", "splice"], "copies": 1, "seed": 0},
                        {"kinds": ["heavy"], "copies": 1, "seed": 1},
                    ],
                    "distill": {**distill, "epochs": 1},
                    "fp32_attention": 1,
                },
                {
                    "name": "pruned-int8",
                    "start_from": "shallow-int8",
                    "prune": {
                        "heads": 0.25,
                        "neurons": 0.5,
                        "magnitude": 0.3,
                        "batches": 8,
                        "recover": {**distill, "epochs": 1},
                    },
                    "per_channel": True,
                },
                # More than the graph's two layers: all of them stay fp32, with a warning.
                {"name": "fp32-attention", "start_from": "shallow-int8", "fp32_attention": 3},
            ],
        }
    )
    built = build_all(recipe, data, base, root)
    return built, data


def build_all(recipe: Recipe, data, base, root) -> dict:
    runs = root / "runs"
    # A stand-in teacher: confident on the true labels of the training split,
    teacher = teacher_dir(recipe, runs)
    teacher.mkdir(parents=True)
    labels = np.array(data.splits["train"].label_ids)
    np.save(teacher / LOGITS_FILE, np.eye(len(data.labels), dtype=np.float32)[labels] * 6)
    # and a model, which labels the transfer sets and any other split
    load_for_classification(base, data.labels).save_pretrained(teacher / "finetune")
    AutoTokenizer.from_pretrained(base).save_pretrained(teacher / "finetune")
    measure = PackageConfig(latency_samples=20)
    return {
        spec.name: build_student(recipe, spec, data, runs, root / "repository", measure)
        for spec in recipe.students
    }


DISTILL = {
    "epochs": 2,
    "learning_rate": 3e-3,
    "batch_size": 16,
    "max_length": 32,
    "temperature": 4.0,
    "alpha": 0.5,
}


@pytest.fixture(scope="module")
def refit(tmp_path_factory, clinc):
    """Distilled on train, its vocabulary chosen on validation; then trained on both."""
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("refit")
    data = subset(clinc, tuple(intent for intent in INTENTS if intent != "oos"))
    base = save_tiny_bert(root / "base", clinc.splits["train"].texts, hidden=64, layers=2)
    vocabulary = {"general": [0, 50, 100], "tolerance": 0.05}
    # Texts of intents the subset leaves out, as traffic no split holds.
    other = clinc.splits["validation"]
    unlabelled = tuple(
        text
        for text, label in zip(other.texts, other.label_ids, strict=True)
        if clinc.labels[label] not in INTENTS
    )[:40]
    assert not set(unlabelled) & {t for split in data.splits.values() for t in split.texts}
    data = replace(data, unlabelled=unlabelled)
    recipe = Recipe.model_validate(
        {
            "name": "tiny",
            "dataset": {"unlabelled": "traffic.txt"},
            "teacher": {"base": str(base)},
            "students": [
                {"name": "first", "base": str(base), "distill": DISTILL, "vocabulary": vocabulary},
                {
                    "name": "refit",
                    "start_from": "first",
                    "refit": True,
                    "transfer": {"kinds": ["light"], "copies": 1, "seed": 0},
                    "distill": {**DISTILL, "epochs": 1},
                    "vocabulary": vocabulary,
                },
            ],
        }
    )
    return build_all(recipe, data, base, root), data, root


def test_a_refit_student_trains_on_validation_too_and_keeps_its_parents_vocabulary(refit):
    built, data, root = refit
    first, card = read_card(built["first"]), read_card(built["refit"])
    verify_files(built["refit"], card)
    train, validation = len(data.splits["train"]), len(data.splits["validation"])
    steps = {step.step: step.params for step in card.lineage}  # the last of each
    assert [step.step for step in card.lineage][:3] == ["distill", "distill", "prune_vocabulary"]
    distill = steps["distill"]
    assert distill["refit"] is True
    perturbed, unlabelled = distill["transfer_sets"]
    assert perturbed["texts"] == train + validation  # one copy of each text
    assert unlabelled == {
        "unlabelled": "traffic.txt",
        "texts": 40,
        "texts_sha256": texts_digest(data.unlabelled),
    }
    # Every batch holds at most 16: no fewer steps cover train, validation, their copies and the
    # unlabelled texts.
    assert distill["history"][-1]["step"] * 16 >= 2 * (train + validation) + 40
    teacher = root / "runs" / "tiny" / "teacher"
    validation_logits = np.load(teacher / "validation_logits.npy")
    assert validation_logits.shape == (validation, len(data.labels))
    (labelled,) = teacher.glob("unlabelled-*")
    assert np.load(labelled / LOGITS_FILE).shape == (40, len(data.labels))
    assert "transfer_sets" not in read_card(built["first"]).lineage[0].params  # none: no transfer
    vocabulary = steps["prune_vocabulary"]
    assert vocabulary["chosen_on"] == "first, on validation"
    chosen = next(step.params for step in first.lineage if step.step == "prune_vocabulary")
    assert [c["general"] for c in vocabulary["candidates"]] == [chosen["general"]]
    assert card.labels == first.labels == list(data.labels)


def test_refit_is_refused_where_validation_tunes_the_out_of_scope_threshold(students, tmp_path):
    _, data = students
    assert data.oos_id is not None
    recipe = Recipe.model_validate(
        {
            "name": "tiny",
            "teacher": {"base": "t"},
            "students": [
                {"name": "first", "base": "b"},
                {"name": "refit", "start_from": "first", "refit": True, "distill": DISTILL},
            ],
        }
    )
    with pytest.raises(RecipeError, match="refit trains on the validation split"):
        build_student(recipe, recipe.students[1], data, tmp_path, tmp_path)


def test_shallow_student_lineage_and_vocabulary(students):
    built, data = students
    card = read_card(built["shallow-int8"])
    verify_files(built["shallow-int8"], card)
    steps = [s.step for s in card.lineage]
    assert steps[:3] == ["keep_layers", "distill", "prune_vocabulary"]
    assert card.lineage[0].params == {"layers": [0, 2]}
    distill = card.lineage[1].params
    assert distill["temperature"] == 4.0 and distill["alpha"] == 0.5
    assert distill["bf16"] == native_bf16()  # what ran, not the config's "auto"
    vocab = card.lineage[2].params
    assert vocab["chosen_on"] == "validation"
    assert vocab["vocab_size_after"] < vocab["vocab_size_before"]
    assert [c["general"] for c in vocab["candidates"]] == [0, 50]
    assert card.labels == list(data.labels)


def test_pruned_student_is_smaller_and_records_its_pruning(students):
    built, _ = students
    shallow, pruned = read_card(built["shallow-int8"]), read_card(built["pruned-int8"])
    steps = [s.step for s in pruned.lineage]
    assert steps[:4] == ["keep_layers", "distill", "prune_structured", "distill_recover"]
    summary = pruned.lineage[2].params
    assert summary["intermediate_size_after"] == summary["intermediate_size_before"] // 2
    assert summary["parameters_after"] < summary["parameters_before"]
    # The served graph holds the pruned matrices, not zeros: its parameter count fell.
    assert pruned.metrics.parameters == pytest.approx(summary["parameters_after"], rel=0.01)
    # Magnitude pruning after the structured step zeroed 30% of what remained; recovery kept them.
    assert summary["encoder_weights_zero"] == pytest.approx(0.3 * summary["encoder_weights"], 0.01)
    assert pruned.lineage[3].params["keep_zeros"] is True
    assert shallow.metrics.parameters < summary["parameters_before"]  # its vocabulary was pruned


def test_transfer_set_distillation_continues_from_its_parent(students):
    built, data = students
    card = read_card(built["augmented-int8"])
    steps = [s.step for s in card.lineage]
    assert steps[:3] == ["keep_layers", "distill", "distill"]
    first, second = card.lineage[2].params["transfer_sets"]
    assert (first["kinds"], second["kinds"]) == (["light", "splice"], ["heavy"])
    assert first["texts"] == 2 * len(data.splits["train"])
    assert second["texts"] == len(data.splits["train"])
    assert "transfer_sets" not in card.lineage[1].params
    verify_files(built["augmented-int8"], card)


def test_a_student_can_keep_its_most_sensitive_attention_layer_in_fp32(students):
    built, _ = students
    (quantize,) = [
        s for s in read_card(built["augmented-int8"]).lineage if s.step.startswith("quantize")
    ]
    kept = quantize.params["fp32_attention"]
    assert attention_nodes(built["augmented-int8"] / MODEL_FILE) == kept and len(kept) == 1
    (other,) = [
        s for s in read_card(built["shallow-int8"]).lineage if s.step.startswith("quantize")
    ]
    assert "fp32_attention" not in other.params
    assert attention_nodes(built["shallow-int8"] / MODEL_FILE) == []


def test_asking_more_fp32_attention_layers_than_there_are_keeps_them_all(students):
    built, _ = students
    (quantize,) = [
        s for s in read_card(built["fp32-attention"]).lineage if s.step == "quantize_dynamic"
    ]
    kept = quantize.params["fp32_attention"]
    assert len(kept) == 2 and attention_nodes(built["fp32-attention"] / MODEL_FILE) == kept


def test_each_student_is_quantized_as_its_own_spec_says(students):
    built, _ = students
    per_channel = {
        name: next(s for s in read_card(folder).lineage if s.step == "quantize_dynamic").params[
            "per_channel"
        ]
        for name, folder in built.items()
    }
    assert per_channel == {
        "shallow-int8": False,
        "augmented-int8": False,
        "pruned-int8": True,
        "fp32-attention": False,
    }
