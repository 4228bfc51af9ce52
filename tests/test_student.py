"""Students: a layer subset of a pretrained encoder, a pooler that can learn, and distillation
moving toward the teacher."""

import json

import numpy as np
import pytest
import torch
from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer

from models.finetune import FinetuneConfig, finetune, predict_logits
from models.recipe import RecipeError, load_recipe
from models.student import keep_layers, student_init, untrained_pooler
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


def as_sentence_transformers(base, **pooling):
    """Lay ``base`` out as sentence-transformers saves a model, with the given pooling modes."""
    (base / "1_Pooling").mkdir()
    (base / "1_Pooling" / "config.json").write_text(
        json.dumps({"word_embedding_dimension": 32, **pooling})
    )
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {
            "idx": 1,
            "name": "1",
            "path": "1_Pooling",
            "type": "sentence_transformers.models.Pooling",
        },
    ]
    (base / "modules.json").write_text(json.dumps(modules))
    return base


def test_a_pooler_sentence_transformers_never_trained_starts_as_the_identity(tmp_path, clinc):
    torch.manual_seed(0)
    texts = clinc.splits["train"].texts[:500]
    plain = save_tiny_bert(tmp_path / "plain", texts, layers=3)
    assert untrained_pooler(plain) is None
    assert student_init(plain, None, tmp_path / "plain-student") == plain

    cls = as_sentence_transformers(
        save_tiny_bert(tmp_path / "cls", texts), pooling_mode_cls_token=True
    )
    assert untrained_pooler(cls) is None
    assert student_init(cls, None, tmp_path / "cls-student") == cls

    mean = as_sentence_transformers(
        save_tiny_bert(tmp_path / "mean", texts, layers=3),
        pooling_mode_cls_token=False,
        pooling_mode_mean_tokens=True,
    )
    assert untrained_pooler(mean) == "sentence-transformers trained it under mean_tokens pooling"
    workdir = tmp_path / "mean-student"
    init = student_init(mean, None, workdir)
    original = AutoModel.from_pretrained(mean)
    student = AutoModel.from_pretrained(init)
    assert torch.equal(student.pooler.dense.weight, torch.eye(32))
    assert torch.equal(student.pooler.dense.bias, torch.zeros(32))
    for name, weight in original.state_dict().items():
        if not name.startswith("pooler."):
            torch.testing.assert_close(student.state_dict()[name], weight, msg=name)
    assert (init / "tokenizer.json").is_file()

    # The same workdir asked for fewer layers is rebuilt, not served stale from the cache.
    init = student_init(mean, [0, 2], workdir)
    student = AutoModel.from_pretrained(init)
    assert len(student.encoder.layer) == 2
    assert torch.equal(student.pooler.dense.weight, torch.eye(32))
    for name, weight in original.encoder.layer[2].state_dict().items():
        torch.testing.assert_close(student.encoder.layer[1].state_dict()[name], weight, msg=name)


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
    resumed = distil(tmp_path / "resumed", checkpoint_seconds=0.0)

    expected = AutoModelForSequenceClassification.from_pretrained(whole).state_dict()
    for name, weight in (
        AutoModelForSequenceClassification.from_pretrained(resumed).state_dict().items()
    ):
        torch.testing.assert_close(weight, expected[name], msg=name)
    assert not (tmp_path / "resumed" / "train_state.pt").exists()


def test_the_reference_recipe_is_valid_and_origins_are_checked(tmp_path):
    recipe = load_recipe(ROOT / "models" / "recipes" / "clinc150.yaml")
    assert recipe.teacher.base == "sentence-transformers/all-mpnet-base-v2"
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nteacher: {base: t}\nstudents:\n  - {name: a, start_from: b}\n")
    with pytest.raises(RecipeError, match="not an earlier student"):
        load_recipe(bad)
