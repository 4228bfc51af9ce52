"""Students: a layer subset of a pretrained encoder, and distillation moving toward the teacher."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer

from models.data import Split
from models.finetune import FinetuneConfig, finetune, predict_logits
from models.pipeline import vocabulary_dir
from models.recipe import RecipeError, StaleRunError, load_recipe
from models.student import keep_layers
from tests.server import ROOT
from tests.test_pipeline import INTENTS, subset
from tests.tiny import save_tiny_bert


def test_keep_layers_copies_exactly_the_chosen_layers(tmp_path, clinc):
    torch.manual_seed(0)
    base = save_tiny_bert(tmp_path / "base", clinc.splits["train"].texts[:500], layers=4)
    student = keep_layers(base, tmp_path / "student", [0, 2])
    full, small = AutoModel.from_pretrained(base), AutoModel.from_pretrained(student)
    assert small.config.num_hidden_layers == 2 and len(small.encoder.layer) == 2
    for new, old in [(0, 0), (1, 2)]:
        for (_, a), (_, b) in zip(
            small.encoder.layer[new].named_parameters(),
            full.encoder.layer[old].named_parameters(),
            strict=True,
        ):
            assert torch.equal(a, b)
    assert (student / "tokenizer.json").is_file()
    with pytest.raises(ValueError, match=r"subset of 0\.\.3"):
        keep_layers(base, tmp_path / "bad", [4])


def test_distillation_moves_the_student_toward_the_teacher(tmp_path, clinc):
    torch.manual_seed(0)
    data = subset(clinc, INTENTS)
    train = data.splits["train"]
    base = save_tiny_bert(tmp_path / "base", clinc.splits["train"].texts, hidden=32)
    # A teacher that answers a permutation of the labels: only distillation can teach it.
    teacher_labels = (np.array(train.label_ids) + 1) % len(data.labels)
    teacher_logits = (
        torch.nn.functional.one_hot(torch.tensor(teacher_labels), len(data.labels)) * 8.0
    )
    config = FinetuneConfig(
        epochs=6, learning_rate=3e-3, batch_size=16, max_length=32, temperature=2.0, alpha=0.0
    )
    student = finetune(
        base,
        data,
        tmp_path / "distilled",
        config,
        progress=False,
        teacher_logits=teacher_logits.float(),
    )
    model = AutoModelForSequenceClassification.from_pretrained(student)
    tokenizer = AutoTokenizer.from_pretrained(student)
    predicted = predict_logits(model, tokenizer, train.texts, 32).argmax(-1).numpy()
    agreement_teacher = (predicted == teacher_labels).mean()
    agreement_labels = (predicted == np.array(train.label_ids)).mean()
    assert agreement_teacher > agreement_labels
    assert agreement_teacher > 0.5


def test_a_distillation_stopped_mid_epoch_resumes_to_the_same_model(tmp_path, clinc, monkeypatch):
    torch.manual_seed(0)
    data = subset(clinc, INTENTS)
    train = data.splits["train"]
    base = save_tiny_bert(tmp_path / "base", clinc.splits["train"].texts, hidden=32)
    teacher_logits = torch.randn(len(train), len(data.labels)) * 4.0
    config = FinetuneConfig(epochs=2, learning_rate=1e-3, batch_size=64, temperature=2.0, alpha=0.5)
    steps_per_epoch = -(-len(train) // config.batch_size)

    def distil(output, checkpoint_seconds):
        torch.manual_seed(0)
        return finetune(
            base,
            data,
            output,
            config,
            progress=False,
            teacher_logits=teacher_logits,
            checkpoint_seconds=checkpoint_seconds,
        )

    whole = distil(tmp_path / "whole", checkpoint_seconds=float("inf"))

    # Stop the second run during the second epoch, as a kill between two steps would.
    stop_at = steps_per_epoch + 3
    calls = []
    clip = torch.nn.utils.clip_grad_norm_

    def interrupt_at_step(*args, **kwargs):
        calls.append(1)
        if len(calls) == stop_at:
            raise KeyboardInterrupt
        return clip(*args, **kwargs)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", interrupt_at_step)
    with pytest.raises(KeyboardInterrupt):
        distil(tmp_path / "resumed", checkpoint_seconds=0.0)
    monkeypatch.undo()
    state = torch.load(tmp_path / "resumed" / "train_state.pt", weights_only=False)
    assert (state["epoch"], state["batches_done"]) == (1, 2)
    with pytest.raises(
        StaleRunError, match=r"resumed holds a run with other settings \(epochs 2 -> 3\)"
    ):
        finetune(
            base,
            data,
            tmp_path / "resumed",
            replace(config, epochs=3),
            progress=False,
            teacher_logits=teacher_logits,
        )
    resumed = distil(tmp_path / "resumed", checkpoint_seconds=0.0)

    expected = AutoModelForSequenceClassification.from_pretrained(whole).state_dict()
    for name, weight in (
        AutoModelForSequenceClassification.from_pretrained(resumed).state_dict().items()
    ):
        torch.testing.assert_close(weight, expected[name], msg=name)
    assert not (tmp_path / "resumed" / "train_state.pt").exists()


def test_a_finished_stage_is_reused_only_for_the_same_settings_and_texts(tmp_path, clinc):
    data = subset(clinc, INTENTS)
    train = data.splits["train"]
    base = save_tiny_bert(tmp_path / "base", clinc.splits["train"].texts, hidden=32)
    config = FinetuneConfig(epochs=1, learning_rate=1e-3, batch_size=64, max_steps=2)
    done = finetune(base, data, tmp_path / "done", config, progress=False)
    assert finetune(base, data, done, config, progress=False) == done
    with pytest.raises(StaleRunError, match=r"\(learning_rate 0\.001 -> 0\.002\); delete it"):
        finetune(base, data, done, replace(config, learning_rate=2e-3), progress=False)

    def train_on(split: Split) -> None:
        changed = replace(data, splits={**data.splits, "train": split})
        finetune(base, changed, done, config, progress=False)

    fewer = Split(train.texts[:-1], train.label_ids[:-1])
    with pytest.raises(
        StaleRunError, match=rf"\(training texts {len(train)} -> {len(train) - 1}\)"
    ):
        train_on(fewer)
    # As many texts, one label changed (a user's corrected data): not the run it was.
    relabelled = Split(train.texts, [*train.label_ids[:-1], (train.label_ids[-1] + 1) % 2])
    with pytest.raises(StaleRunError, match=r"\(training split \w{12} -> \w{12}\)"):
        train_on(relabelled)
    torch.manual_seed(1)
    save_tiny_bert(tmp_path / "base", clinc.splits["train"].texts, hidden=32)  # trained again
    with pytest.raises(StaleRunError, match=r"\(starting weights \w{12} -> \w{12}\)"):
        finetune(base, data, done, config, progress=False)


def test_the_reference_recipe_is_valid_and_origins_are_checked(tmp_path):
    recipe = load_recipe(ROOT / "models" / "recipes" / "clinc150.yaml")
    assert recipe.teacher.base == "sentence-transformers/all-mpnet-base-v2"
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nteacher: {base: t}\nstudents:\n  - {name: a, start_from: b}\n")
    with pytest.raises(RecipeError, match="not an earlier student"):
        load_recipe(bad)


@pytest.mark.parametrize(
    ("students", "message"),
    [
        ("  - {name: a, base: b, refit: true}\n", "refit needs start_from"),
        (
            "  - {name: a, base: b}\n"
            "  - {name: c, start_from: a, refit: true, vocabulary: {general: [0]}}\n",
            "keeps the vocabulary size its start_from chose on validation, but a prunes no",
        ),
    ],
)
def test_a_refit_student_needs_a_parent_that_chose_on_validation(tmp_path, students, message):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: x\nteacher: {base: t}\nstudents:\n" + students)
    with pytest.raises(RecipeError, match=message):
        load_recipe(recipe)


def test_a_vocabulary_is_chosen_once_for_the_same_weights(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "name: x\nteacher: {base: t}\nstudents:\n"
        "  - {name: a, base: b, vocabulary: {}}\n"
        "  - {name: a-static, start_from: a, quantization: static, vocabulary: {}}\n"
        "  - {name: a-static-pc, start_from: a-static, per_channel: true, vocabulary: {}}\n"
        "  - {name: a-more, start_from: a-static, distill: {epochs: 1}, vocabulary: {}}\n"
        "  - {name: a-other, start_from: a, vocabulary: {general: [0]}}\n"
    )
    loaded = load_recipe(recipe)
    chosen = {s.name: vocabulary_dir(loaded, tmp_path, s).parent.name for s in loaded.students}
    assert chosen == {
        "a": "a",
        "a-static": "a",
        "a-static-pc": "a",  # two steps up: still a's weights
        "a-more": "a-more",  # trained further
        "a-other": "a-other",  # another choice
    }


def test_the_shipped_lineage_is_the_shipped_students_and_what_they_start_from(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "name: x\nteacher: {base: t}\nstudents:\n"
        "  - {name: l6, base: b}\n"
        "  - {name: measured-only, base: b}\n"
        "  - {name: l6-aug, start_from: l6}\n"
        "  - {name: l6-aug-pruned, start_from: l6-aug, ship: true}\n"
        "  - {name: l3, base: b, ship: true}\n"
        "  - {name: l6-aug-more, start_from: l6-aug}\n"
    )
    lineage = load_recipe(recipe).shipped_lineage()
    assert [s.name for s in lineage] == ["l6", "l6-aug", "l6-aug-pruned", "l3"]
    shipped = load_recipe(ROOT / "models" / "recipes" / "clinc150.yaml").shipped_lineage()
    assert "minilm-l6-augmented10-int8" not in [s.name for s in shipped]
    assert {s.name for s in shipped if s.ship} == {
        "minilm-l6-augmented-int8",
        "minilm-l3-augmented-int8",
        "minilm-l6-augmented-pruned-int8",
        "minilm-l6-augmented-static-pc-int8",
    }


def test_a_student_named_alone_brings_the_students_it_starts_from(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "name: x\nteacher: {base: t}\nstudents:\n"
        "  - {name: l6, base: b}\n"
        "  - {name: l3, base: b}\n"
        "  - {name: l6-aug, start_from: l6}\n"
        "  - {name: l6-aug-pruned, start_from: l6-aug}\n"
    )
    loaded = load_recipe(recipe)
    assert [s.name for s in loaded.lineage(["l6-aug-pruned"])] == ["l6", "l6-aug", "l6-aug-pruned"]
    assert [s.name for s in loaded.lineage(["l3", "l6"])] == ["l6", "l3"]
    with pytest.raises(RecipeError, match=r"no student 'l7'.*'l6-aug-pruned'"):
        loaded.lineage(["l7"])


def test_keep_best_ends_with_the_weights_of_the_best_validation_epoch(tmp_path, clinc, monkeypatch):
    """Validation accuracies are scripted (0.5, 0.8, 0.8, 0.6) so the best epoch is not the last;
    the training is real. Of equal epochs the later is kept."""
    import models.finetune as finetune_module

    data = subset(clinc, INTENTS)
    base = save_tiny_bert(tmp_path / "base", clinc.splits["train"].texts, hidden=32)
    config = FinetuneConfig(epochs=4, learning_rate=3e-3, batch_size=64, keep_best=True)
    scripted = iter([0.5, 0.8, 0.8, 0.6])
    after_epoch = []

    def scripted_accuracy(model, *args):
        after_epoch.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        return next(scripted)

    monkeypatch.setattr(finetune_module, "accuracy", scripted_accuracy)
    torch.manual_seed(0)
    trained = finetune(base, data, tmp_path / "best", config, progress=False)
    record = json.loads((trained / "finetune.json").read_text())
    assert record["kept_epoch"] == 3
    saved = AutoModelForSequenceClassification.from_pretrained(trained).state_dict()
    for name, weight in saved.items():
        torch.testing.assert_close(weight, after_epoch[2][name], msg=name)
    assert any(not torch.equal(saved[name], after_epoch[3][name]) for name in saved)
    assert not (trained / "best_epoch.pt").exists()


def test_keep_best_is_refused_where_refit_trains_on_validation(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        """
name: refit-best
dataset: {path: data.csv}
teacher: {base: some/teacher}
students:
  - {name: first, base: some/student, distill: {epochs: 1}}
  - {name: second, start_from: first, refit: true, distill: {epochs: 1, keep_best: true}}
"""
    )
    with pytest.raises(RecipeError, match="second: keep_best chooses an epoch on the validation"):
        load_recipe(recipe)
