"""``python -m models compare``: a rebuilt repository against the one it should reproduce."""

import json
import shutil

from app.core.card import CARD_FILE, MODEL_FILE, TOKENIZER_FILE
from models.__main__ import main
from tests.server import ROOT

SHIPPED = ROOT / "models" / "repository"
VARIANT = "minilm-l6-augmented-int8"


def copy_cards(target, change=None):
    """The shipped cards (with stand-in model files: only the cards are compared)."""
    for card_path in SHIPPED.glob(f"*/{CARD_FILE}"):
        folder = target / card_path.parent.name
        folder.mkdir(parents=True)
        card = json.loads(card_path.read_text())
        if change and card["name"] == VARIANT:
            change(card)
        (folder / CARD_FILE).write_text(json.dumps(card))
        for name in (MODEL_FILE, TOKENIZER_FILE):
            (folder / name).write_bytes(b"")


def compare(tmp_path, capsys):
    """The command's exit code and report, old repository against new."""
    status = main(["compare", str(tmp_path / "old"), str(tmp_path / "new")])
    return status, capsys.readouterr().out


def test_a_faithful_rebuild_is_reproduced(tmp_path, capsys):
    copy_cards(tmp_path / "old")

    def retrained(card):  # another machine: the same recipe, slightly other figures
        card["metrics"]["accuracy"] -= 0.003
        card["metrics"]["accuracy_without_threshold"] = 0.8773
        card["lineage"][0]["params"]["history"][0]["train_loss"] += 0.1
        card["lineage"][0]["params"]["teacher_run"] = "elsewhere/teacher"
        card["lineage"][0]["params"]["soft_loss"] = "kl"  # an option added since

    copy_cards(tmp_path / "new", retrained)
    status, out = compare(tmp_path, capsys)
    assert status == 0
    assert f"## {VARIANT}: reproduced" in out
    assert "-0.30 (tolerance 0.5)" in out
    assert "| accuracy without threshold | 0.8771 | 0.8773 |" in out
    assert "- new only: 0.distill.soft_loss = 'kl'" in out


def test_other_parameters_or_accuracy_beyond_the_tolerance_differ(tmp_path, capsys):
    copy_cards(tmp_path / "old")

    def changed(card):
        card["metrics"]["accuracy"] += 0.01
        card["lineage"][0]["params"]["temperature"] = 2.0

    copy_cards(tmp_path / "new", changed)
    status, out = compare(tmp_path, capsys)
    assert status == 1
    assert f"## {VARIANT}: **differs**" in out
    assert "- 0.distill.temperature: 4.8 -> 2.0" in out
    assert "+1.00 (tolerance 0.5)" in out
    assert out.count("reproduced") == len(list(SHIPPED.glob(f"*/{CARD_FILE}"))) - 1


def test_a_variant_missing_from_the_rebuild_fails(tmp_path, capsys):
    copy_cards(tmp_path / "old")
    copy_cards(tmp_path / "new")
    shutil.rmtree(tmp_path / "new" / VARIANT)
    status, out = compare(tmp_path, capsys)
    assert status == 1
    assert f"Only in the old repository: {VARIANT}" in out
