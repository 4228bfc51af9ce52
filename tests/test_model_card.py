"""README.md model cards: the Hub's metadata from the card, kept current in the shipped
repository, and a usage snippet that gives the service's answers."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest
import yaml

from app.core.card import read_card
from app.core.registry import load_variant
from app.runtime.session import SessionConfig
from app.settings import SHIPPED_REPOSITORY as REPOSITORY
from models.__main__ import main
from models.model_card import MODEL_CARD_FILE, render

VARIANTS = sorted(p for p in REPOSITORY.iterdir() if p.is_dir())
TEXTS = ["i lost my card", "what is the weather like in paris tomorrow", "book a table for two"]


def metadata(text: str) -> dict:
    front = re.match(r"---\n(.*?)\n---\n", text, re.S)
    assert front, "no YAML metadata block at the top"
    return yaml.safe_load(front.group(1))


@pytest.mark.parametrize("folder", VARIANTS, ids=lambda p: p.name)
def test_the_shipped_model_cards_are_written_from_the_current_variant_cards(folder):
    card = read_card(folder)
    written = (folder / MODEL_CARD_FILE).read_text(encoding="utf-8")
    assert written == render(card, folder), "run: python -m models model-card"
    meta = metadata(written)
    assert meta["base_model"] == card.base.reference
    assert meta["pipeline_tag"] == "text-classification" and meta["license"] == "apache-2.0"
    [result] = meta["model-index"][0]["results"]
    assert result["dataset"]["name"] == card.metrics.dataset
    scores = {m["type"]: m["value"] for m in result["metrics"]}
    assert scores == {"accuracy": card.metrics.accuracy, "f1": card.metrics.macro_f1}


@pytest.mark.parametrize("folder", VARIANTS, ids=lambda p: p.name)
def test_the_shipped_cards_note_what_reading_clinc150_warns_about(folder, clinc):
    # As a rebuild from the recipe writes them: the file's name, not the build machine's folder.
    card = read_card(folder)
    assert card.metrics is not None and card.metrics.data_notes
    assert card.metrics.data_notes == [note.without_folders() for note in clinc.notes]


def test_the_snippet_of_the_card_answers_as_the_service_does(tmp_path, monkeypatch):
    folder = REPOSITORY / "minilm-l3-augmented-int8"
    card = read_card(folder)
    snippet = re.search(r"```python\n(.*?)```", render(card, folder), re.S).group(1)
    served = load_variant(folder, card, SessionConfig(intra_op_threads=1)).classifier
    monkeypatch.chdir(folder)
    for text in TEXTS:
        scope: dict = {}
        exec(snippet.replace('"..."', repr(text)), scope)  # the card's own code, as a user runs it
        expected = served.classify([text]).logits[0]
        np.testing.assert_allclose(scope["logits"][0], expected, atol=1e-4)


def test_the_command_writes_a_card_for_every_variant_and_the_build_keeps_them(tmp_path):
    repository = tmp_path / "repository"
    for folder in VARIANTS[:2]:
        shutil.copytree(folder, repository / folder.name, ignore=shutil.ignore_patterns("*.md"))
    assert main(["model-card", str(repository)]) == 0
    for folder in repository.iterdir():
        assert (folder / MODEL_CARD_FILE).read_text() == render(read_card(folder), folder)
    assert main(["verify", str(repository)]) == 0
