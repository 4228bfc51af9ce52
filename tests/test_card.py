from datetime import UTC, datetime

import pytest

from app.core.card import (
    BaseCheckpoint,
    CardError,
    LineageStep,
    VariantCard,
    file_entry,
    read_card,
    verify_files,
    write_card,
)


def make_variant(tmp_path, name="demo-int8", **overrides):
    folder = tmp_path / name
    folder.mkdir()
    (folder / "model.onnx").write_bytes(b"onnx bytes")
    (folder / "tokenizer.json").write_text("{}")
    fields = {
        "name": name,
        "labels": ["a", "b", "oos"],
        "max_length": 64,
        "base": BaseCheckpoint(
            reference="org/model", source="local", weights_file="model.safetensors", sha256="a" * 64
        ),
        "lineage": [
            LineageStep(step="finetune", params={"epochs": 2}),
            LineageStep(step="quantize_dynamic", params={"weight_type": "int8"}),
        ],
        "files": {f.name: file_entry(f) for f in sorted(folder.iterdir())},
        "created_at": datetime(2026, 11, 28, tzinfo=UTC),
        "brum_version": "0.1.0",
    } | overrides
    card = VariantCard(**fields)
    write_card(folder, card)
    return folder, card


def test_card_round_trips_through_variant_json(tmp_path):
    folder, card = make_variant(tmp_path)
    loaded = read_card(folder)
    assert loaded == card
    assert loaded.lineage[0].params == {"epochs": 2}
    assert loaded.quantization == "int8"
    verify_files(folder, loaded)


def test_a_changed_file_no_longer_matches_its_card(tmp_path):
    folder, card = make_variant(tmp_path)
    (folder / "model.onnx").write_bytes(b"other bytes")
    with pytest.raises(CardError, match=r"model.onnx: card says sha256 .* file has"):
        verify_files(folder, card)


def test_card_name_must_match_its_folder(tmp_path):
    folder, _ = make_variant(tmp_path)
    moved = folder.rename(tmp_path / "renamed")
    with pytest.raises(CardError, match="does not match its folder 'renamed'"):
        read_card(moved)


def test_invalid_card_is_reported_with_its_path(tmp_path):
    folder, _ = make_variant(tmp_path)
    (folder / "variant.json").write_text('{"name": "demo-int8"}')
    with pytest.raises(CardError, match=r"variant\.json: invalid card"):
        read_card(folder)


def test_duplicate_labels_are_refused(tmp_path):
    with pytest.raises(ValueError, match="labels must be unique"):
        make_variant(tmp_path, labels=["a", "a"])
