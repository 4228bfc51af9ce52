"""Your own teacher: an already fine-tuned checkpoint's labels mapped onto the dataset's, by
reordering its output layer, with no training; a label mismatch lists both sides."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from models.adopt import adopt_teacher, label_order
from models.data import DatasetError, from_examples
from models.finetune import FinetuneConfig
from tests.tiny import save_tiny_bert

TEXTS = {"bye": ["goodbye", "see you"], "greet": ["hello", "hi"], "thanks": ["thank you", "ta"]}


def fine_tuned_checkpoint(folder, id2label):
    """A tiny BERT with a sequence-classification head whose labels are ``id2label``'s."""
    base = save_tiny_bert(folder / "base", [t for ts in TEXTS.values() for t in ts])
    model = AutoModelForSequenceClassification.from_pretrained(
        base,
        num_labels=len(id2label),
        id2label=id2label,
        label2id={v: k for k, v in id2label.items()},
    )
    model.save_pretrained(folder / "tuned")
    AutoTokenizer.from_pretrained(base).save_pretrained(folder / "tuned")
    return folder / "tuned"


def data():
    rows = [(text, label) for label, texts in TEXTS.items() for text in texts]
    return from_examples("tiny", {"train": rows, "validation": rows, "test": rows})


def logits(folder, texts):
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    with torch.no_grad():
        return model(**tokenizer(texts, return_tensors="pt", padding=True)).logits


def test_the_checkpoint_scores_the_datasets_labels_in_the_datasets_order(tmp_path):
    checkpoint = fine_tuned_checkpoint(tmp_path, {0: "thanks", 1: "bye", 2: "greet"})
    dataset = data()
    assert dataset.labels == ("bye", "greet", "thanks")
    adopted = adopt_teacher(checkpoint, dataset, tmp_path / "teacher", FinetuneConfig())
    texts = ["hello", "see you later", "thank you so much"]
    before, after = logits(checkpoint, texts), logits(adopted, texts)
    # The dataset's label i is the checkpoint's output label_order(...)[i]: same scores, moved.
    torch.testing.assert_close(after, before[:, [1, 2, 0]])
    config = AutoModelForSequenceClassification.from_pretrained(adopted).config
    assert config.id2label == {0: "bye", 1: "greet", 2: "thanks"}
    # Done once: a second call keeps what was written.
    assert adopt_teacher(checkpoint, dataset, tmp_path / "teacher", FinetuneConfig()) == adopted


def test_a_label_mismatch_lists_both_sides(tmp_path):
    with pytest.raises(DatasetError) as caught:
        label_order({0: "bye", 1: "hello", 2: "LABEL_2"}, ("bye", "greet", "thanks"), tmp_path)
    message = str(caught.value)
    assert "only in the checkpoint ['LABEL_2', 'hello']" in message
    assert "only in the dataset ['greet', 'thanks']" in message
