"""A mean-pooled student through every stage: distil, prune, vocabulary, export and int8."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
from transformers import AutoTokenizer

from app.core.card import read_card, verify_files
from models.pipeline import build_student
from models.pooling import MeanPooledForSequenceClassification, load_classifier
from models.recipe import Recipe, RecipeError, StaleRunError
from models.teacher import split_logits, train_teacher
from tests.test_pipeline import INTENTS, subset
from tests.test_recipe_pipeline import DISTILL, build_all
from tests.tiny import save_tiny_bert

pytestmark = pytest.mark.pipeline


def mean_recipe(base, pooling: str | None = "mean") -> Recipe:
    first = {"name": "mean", "base": str(base), "layers": [0, 1], "distill": DISTILL}
    if pooling is not None:
        first["pooling"] = pooling
    return Recipe.model_validate(
        {
            "name": "tiny",
            "teacher": {"base": str(base)},
            "students": [
                first,
                {
                    "name": "mean-pruned",
                    "start_from": "mean",
                    "prune": {"heads": 0.25, "neurons": 0.5, "batches": 4, "recover": DISTILL},
                    "vocabulary": {"general": [0], "tolerance": 1.0},
                },
            ],
        }
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory, clinc):
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("pooling")
    data = subset(clinc, INTENTS)
    base = save_tiny_bert(root / "base", clinc.splits["train"].texts, hidden=64, layers=3)
    recipe = mean_recipe(base)
    return build_all(recipe, data, base, root), recipe, data, base, root


def test_every_stage_keeps_the_mean_pooled_head(built):
    variants, _, data, _, root = built
    for stage in ("distill", "pruned", "recover", "vocab/chosen"):
        folder = root / "runs" / "tiny" / ("mean" if stage == "distill" else "mean-pruned")
        model = load_classifier(folder / stage)
        assert isinstance(model, MeanPooledForSequenceClassification), stage
        assert model.config.num_labels == len(data.labels)
        # A pooler would be weights the mean-pooled head never reads.
        assert not any("pooler" in name for name in model.state_dict())
    card = read_card(variants["mean-pruned"])
    verify_files(variants["mean-pruned"], card)
    steps = [step.step for step in card.lineage]
    assert steps[:5] == [
        "keep_layers",
        "distill",
        "prune_structured",
        "distill_recover",
        "prune_vocabulary",
    ]
    assert card.lineage[1].params["pooling"] == card.lineage[3].params["pooling"] == "mean"
    pruned = card.lineage[2].params
    assert pruned["intermediate_size_after"] == pruned["intermediate_size_before"] // 2
    assert card.labels == list(data.labels)
    assert card.metrics.accuracy > 1 / len(data.labels)  # it learned, through the mean head


def test_the_graph_quantized_for_serving_is_the_mean_pooled_model(built):
    """The fused fp32 graph that int8 is made from answers as the trained model does, and
    padding changes nothing; the int8 graph served picks the same labels on the test split."""
    variants, _, data, _, root = built
    workdir = root / "runs" / "tiny" / "mean-pruned"
    model = load_classifier(workdir / "vocab" / "chosen").eval()
    tokenizer = AutoTokenizer.from_pretrained(workdir / "vocab" / "chosen")
    texts = list(data.splits["test"].texts[:6])
    encoded = tokenizer(texts, padding=True, return_tensors="np")
    assert (encoded["attention_mask"] == 0).any()  # the batch holds padding
    session = ort.InferenceSession(str(workdir / "onnx" / "model.fused.onnx"))
    feeds = {i.name: encoded[i.name].astype(np.int64) for i in session.get_inputs()}
    fused = session.run(["logits"], feeds)[0]
    with torch.inference_mode():
        expected = model(**{k: torch.from_numpy(v) for k, v in feeds.items()}).logits.numpy()
    np.testing.assert_allclose(fused, expected, atol=1e-4)
    alone = tokenizer(texts[:1], return_tensors="np")
    single = session.run(["logits"], {k: alone[k].astype(np.int64) for k in feeds})[0]
    np.testing.assert_allclose(single[0], fused[0], atol=1e-4)
    quantize = next(
        s for s in read_card(variants["mean-pruned"]).lineage if s.step == "quantize_dynamic"
    )
    assert quantize.params["fp32_argmax_agreement"] >= 0.9


def test_a_changed_pooling_is_refused_rather_than_reused(built):
    _, _, data, base, root = built
    recipe = mean_recipe(base, pooling=None)
    with pytest.raises(StaleRunError, match="pooling mean -> cls"):
        build_student(recipe, recipe.students[0], data, root / "runs", root / "other")


def test_pooling_is_chosen_where_the_head_is_first_given():
    with pytest.raises(ValueError, match="keeps first's"):
        Recipe.model_validate(
            {
                "name": "tiny",
                "teacher": {"base": "t"},
                "students": [
                    {"name": "first", "base": "b"},
                    {"name": "second", "start_from": "first", "pooling": "mean"},
                ],
            }
        )
    with pytest.raises(ValueError, match="pooling"):
        Recipe.model_validate(
            {
                "name": "tiny",
                "teacher": {"base": "t"},
                "students": [{"name": "first", "base": "b", "pooling": "max"}],
            }
        )
    assert issubclass(StaleRunError, RecipeError)


def test_a_teacher_can_be_mean_pooled_too(tmp_path, clinc):
    data = subset(clinc, INTENTS)
    base = save_tiny_bert(tmp_path / "base", clinc.splits["train"].texts, hidden=32, layers=1)
    finetune = {"epochs": 1, "max_steps": 4, "batch_size": 16, "max_length": 32}
    teacher = {"base": str(base), "pooling": "mean", "finetune": finetune}
    recipe = Recipe.model_validate({"name": "tiny", "teacher": teacher})
    trained = train_teacher(recipe, data, tmp_path)
    assert isinstance(load_classifier(trained), MeanPooledForSequenceClassification)
    logits = split_logits(recipe, data, tmp_path, "validation")
    assert logits.shape == (len(data.splits["validation"]), len(data.labels))
    with pytest.raises(ValueError, match="keeps the head it was trained with"):
        Recipe.model_validate({"name": "tiny", "teacher": {**teacher, "fine_tuned": True}})
