"""Cached stages follow what they were made from: other weights or settings, a fresh result."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from transformers import AutoTokenizer

from app.core.card import sha256_file
from models.augment import AugmentSpec
from models.build import PackageConfig, build_graphs
from models.data import Split
from models.finetune import load_for_classification
from models.recipe import Recipe
from models.stamps import made_from
from models.teacher import split_logits, teacher_dir, transfer_set
from tests.test_pipeline import INTENTS, subset
from tests.tiny import save_tiny_bert

pytestmark = pytest.mark.pipeline


def test_a_stamped_folder_is_emptied_when_its_inputs_change(tmp_path):
    folder = tmp_path / "stage"
    made_from(folder, {"weights": "a", "opset": 18})
    (folder / "result").write_text("made from a")
    made_from(folder, {"weights": "a", "opset": 18})
    assert (folder / "result").read_text() == "made from a"
    made_from(folder, {"weights": "b", "opset": 18})
    assert not (folder / "result").exists()
    unstamped = tmp_path / "from-an-older-run"
    unstamped.mkdir()
    (unstamped / "result").write_text("made from who knows what")
    made_from(unstamped, {"weights": "a", "opset": 18})
    assert not (unstamped / "result").exists()


def test_the_served_graph_follows_the_weights_and_the_quantization(tmp_path, clinc):
    data = subset(clinc, INTENTS)
    base = save_tiny_bert(tmp_path / "base", clinc.splits["train"].texts, hidden=32, layers=1)
    trained = tmp_path / "trained"

    def train(seed: int) -> None:  # a stand-in for a stage trained (again)
        torch.manual_seed(seed)
        load_for_classification(base, data.labels).save_pretrained(trained)
        AutoTokenizer.from_pretrained(base).save_pretrained(trained)
        (trained / "finetune.json").write_text('{"config": {"max_length": 32}}')

    def served(config: PackageConfig) -> str:
        return sha256_file(build_graphs(trained, data, tmp_path / "work", config).served)

    train(seed=0)
    config = PackageConfig()
    first = served(config)
    assert served(config) == first
    train(seed=1)
    retrained = served(config)
    assert retrained != first  # not the export of the weights trained before
    assert served(replace(config, per_channel=True)) != retrained


def tiny_teacher(tmp_path, clinc):
    """(data, recipe, its teacher's folder, a stand-in for training the teacher (again))."""
    data = subset(clinc, INTENTS)
    base = save_tiny_bert(tmp_path / "base", clinc.splits["train"].texts, hidden=32, layers=1)
    recipe = Recipe.model_validate(
        {"name": "tiny", "teacher": {"base": str(base), "finetune": {"max_length": 32}}}
    )
    teacher = teacher_dir(recipe, tmp_path) / "finetune"

    def train_teacher(seed: int) -> None:
        torch.manual_seed(seed)
        load_for_classification(base, data.labels).save_pretrained(teacher)
        AutoTokenizer.from_pretrained(base).save_pretrained(teacher)

    return data, recipe, teacher, train_teacher


def test_a_teacher_trained_again_labels_the_texts_again(tmp_path, clinc):
    data, recipe, teacher, train_teacher = tiny_teacher(tmp_path, clinc)
    train_teacher(seed=0)
    first = split_logits(recipe, data, tmp_path, "validation")
    cached = teacher.parent / "validation_logits.npy"
    made = cached.stat().st_mtime_ns
    assert torch.equal(split_logits(recipe, data, tmp_path, "validation"), first)
    assert cached.stat().st_mtime_ns == made  # the same teacher: read, not computed again
    train_teacher(seed=1)
    again = split_logits(recipe, data, tmp_path, "validation")
    assert not torch.allclose(again, first)


def test_a_changed_split_is_labelled_again_even_at_the_same_size(tmp_path, clinc):
    data, recipe, _, train_teacher = tiny_teacher(tmp_path, clinc)
    train_teacher(seed=0)
    first = split_logits(recipe, data, tmp_path, "validation")
    spec = AugmentSpec(kinds=["light"], copies=1)
    texts, _ = transfer_set(recipe, data, tmp_path, spec)
    validation, train = data.splits["validation"], data.splits["train"]
    # Another sample of the same size: the first text of each split swapped for another's.
    changed = replace(
        data,
        splits={
            **data.splits,
            "validation": Split([train.texts[0], *validation.texts[1:]], validation.label_ids),
            "train": Split([validation.texts[0], *train.texts[1:]], train.label_ids),
        },
    )
    again = split_logits(recipe, changed, tmp_path, "validation")
    assert again.shape == first.shape
    assert not torch.allclose(again[0], first[0])  # the new first text's, not the cached row
    assert torch.allclose(again[1:], first[1:], atol=1e-4)
    assert torch.equal(split_logits(recipe, changed, tmp_path, "validation"), again)
    texts_again, _ = transfer_set(recipe, changed, tmp_path, spec)
    assert texts_again != texts  # made from the split as it is now
