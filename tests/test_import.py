"""Import what users already have: a tiny BERT exported by ``optimum-cli`` in the test, served by
a real server with the answers of onnxruntime on the exported graph itself; a fine-tuned
checkpoint exported and quantized on import; a model without a card refused by the service with
the command that makes one."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import pytest
from tokenizers import Tokenizer

from app.core.card import CardError, read_card, verify_files, write_card
from app.core.registry import load_variant
from app.runtime.session import SessionConfig
from models.__main__ import main
from models.data import DatasetError
from models.importing import import_variant
from models.recipe import DatasetSpec
from tests.server import run_server
from tests.test_adopt import TEXTS, fine_tuned_checkpoint
from tests.tiny import save_tiny_classifier

pytestmark = pytest.mark.pipeline

LABELS = {0: "thanks", 1: "bye", 2: "greet"}
QUESTIONS = ["hello there", "see you tomorrow", "thank you so much for everything"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("import")
    checkpoint = fine_tuned_checkpoint(root, LABELS)
    cli = Path(sys.executable).parent / "optimum-cli"
    command = [str(cli), "export", "onnx", "--model", str(checkpoint)]
    command += ["--task", "text-classification", str(root / "onnx")]
    subprocess.run(command, check=True, capture_output=True)
    return root


def raw_scores(model: Path, texts: list[str]) -> np.ndarray:
    """The exported graph's own logits, one text at a time, through onnxruntime directly."""
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    tokenizer = Tokenizer.from_file(str(model.parent / "tokenizer.json"))
    tokenizer.no_padding()
    rows = []
    for text in texts:
        ids = np.array([tokenizer.encode(text).ids], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
        if "token_type_ids" in {i.name for i in session.get_inputs()}:
            feeds["token_type_ids"] = np.zeros_like(ids)
        rows.append(session.run(None, feeds)[0][0])
    return np.stack(rows)


def test_an_optimum_export_is_served_as_it_is(exported, tmp_path):
    repository = tmp_path / "repository"
    folder = import_variant(
        exported / "onnx", "tiny-imported", repository, quantization="none", workdir=tmp_path / "w"
    )
    card = read_card(folder)
    verify_files(folder, card)
    assert card.labels == ["thanks", "bye", "greet"]  # id2label, in id order
    imported = card.lineage[0]
    assert imported.step == "imported" and imported.params["kind"] == "onnx"
    assert imported.params["sha256"] == card.base.sha256 and card.metrics is None
    expected = raw_scores(exported / "onnx" / "model.onnx", QUESTIONS)
    with run_server(tmp_path, {"BRUM_MODEL_REPOSITORY": str(repository)}) as server:
        for text, scores in zip(QUESTIONS, expected, strict=True):
            body = {"text": text, "top_k": 3}
            answer = httpx.post(server.url + "/v1/predict", json=body).json()["predictions"][0]
            probabilities = np.exp(scores - scores.max()) / np.exp(scores - scores.max()).sum()
            assert answer["label"] == LABELS[int(np.argmax(scores))]
            served = {t["label"]: t["score"] for t in answer["top_k"]}
            for index, label in LABELS.items():
                assert served[label] == pytest.approx(probabilities[index], abs=1e-5)


def test_a_checkpoint_is_exported_quantized_and_measured(exported, tmp_path, caplog):
    # Three different texts a label, so that test and validation can be carved from the file.
    rows = [(t + end, label) for label, texts in TEXTS.items() for t in texts for end in "!?."]
    rows.append(("hello!", "bye"))  # a text labelled two ways: the card says so
    data = tmp_path / "data.csv"
    data.write_text("text,label\n" + "".join(f"{t},{label}\n" for t, label in rows))
    with caplog.at_level(logging.WARNING):
        folder = import_variant(
            exported / "tuned",
            "tiny-checkpoint-int8",
            tmp_path / "repository",
            dataset=DatasetSpec(path=data),
            workdir=tmp_path / "w",
        )
    # The quantizer's advice to pre-process, on every graph, is not passed on to users.
    assert "Please consider" not in caplog.text
    card = read_card(folder)
    assert [s.step for s in card.lineage] == [
        "imported",
        "export_onnx",
        "optimize_graph",
        "quantize_dynamic",
    ]
    assert card.lineage[0].params["kind"] == "checkpoint"
    assert card.metrics is not None and card.metrics.examples > 0
    assert 0 <= card.metrics.accuracy <= 1
    noted = "data.csv: 1 text(s) appear with more than one label (e.g. 'hello!' as 'bye' and "
    assert card.metrics.data_notes == [
        noted + "'greet'): a model answers every copy the same, so check which label is right"
    ]
    assert card.metrics.split_origins is not None  # as a built variant's card says
    assert card.metrics.split_origins["test"].startswith("carved from train")
    readme = (folder / "README.md").read_text()
    assert f"- {card.metrics.data_notes[0]}." in readme and str(tmp_path) not in readme


def test_the_service_refuses_a_model_without_a_card_and_names_the_command(exported, tmp_path):
    repository = tmp_path / "repository"
    shutil.copytree(exported / "onnx", repository / "mine")
    env = {"BRUM_MODEL_REPOSITORY": str(repository)}
    with pytest.raises(RuntimeError, match="server exited"), run_server(tmp_path, env):
        pass
    log = "".join(p.read_text() for p in tmp_path.glob("server-*.log"))
    assert "a model without a card" in log and "python -m models import" in log


@pytest.mark.parametrize("family", ["distilbert", "roberta"])
def test_other_families_are_imported_quantized_and_served_as_onnxruntime_scores(family, tmp_path):
    """DistilBERT names its sizes in its own words (``n_heads``, ``dim``); RoBERTa's 130
    positions hold 128 tokens, its ids starting after the padding id. Both load with a text as
    long as the card allows, and answer as onnxruntime does on the served graph."""
    texts = [t for ts in TEXTS.values() for t in ts]
    source = save_tiny_classifier(tmp_path / family, family, texts, LABELS)
    repository = tmp_path / "repository"
    folder = import_variant(source, family, repository, workdir=tmp_path / "w")
    card = read_card(folder)
    assert card.max_length == (128 if family == "roberta" else 512)
    assert [s.step for s in card.lineage][-1] == "quantize_dynamic"
    variant = load_variant(folder, card, SessionConfig(intra_op_threads=1))
    longest = " ".join(["thank you"] * card.max_length)
    scores = variant.classifier.classify([longest, *QUESTIONS]).logits
    assert scores.shape == (1 + len(QUESTIONS), len(LABELS))
    expected = raw_scores(folder / "model.onnx", QUESTIONS)
    with run_server(tmp_path, {"BRUM_MODEL_REPOSITORY": str(repository)}) as server:
        for text, row in zip(QUESTIONS, expected, strict=True):
            body = {"text": text, "top_k": 3}
            answer = httpx.post(server.url + "/v1/predict", json=body).json()["predictions"][0]
            served = {t["label"]: t["score"] for t in answer["top_k"]}
            probabilities = np.exp(row - row.max()) / np.exp(row - row.max()).sum()
            for index, label in LABELS.items():
                assert served[label] == pytest.approx(probabilities[index], abs=1e-5)


def test_a_max_length_past_the_graph_positions_is_refused_on_import_and_on_load(exported, tmp_path):
    with pytest.raises(DatasetError, match=r"--max-length 200 is more than the model's 128"):
        import_variant(exported / "onnx", "long", tmp_path / "r", max_length=200)
    folder = import_variant(
        exported / "onnx", "tiny", tmp_path / "r", quantization="none", workdir=tmp_path / "w"
    )
    card = read_card(folder)
    assert card.max_length == 64  # the tokenizer's model_max_length, under 128 positions
    write_card(folder, card.model_copy(update={"max_length": 200}))
    with pytest.raises(CardError, match=r"fails on a text of the card's max_length \(200 tokens\)"):
        load_variant(folder, read_card(folder), SessionConfig(intra_op_threads=1))


def test_a_checkpoint_with_only_a_slow_tokenizer_s_files_gets_a_fast_one(exported, tmp_path):
    """Older checkpoints carry ``vocab.txt`` and no ``tokenizer.json``: transformers converts."""
    source = tmp_path / "old"
    shutil.copytree(exported / "tuned", source)
    (source / "tokenizer.json").unlink()
    assert (source / "vocab.txt").is_file()
    folder = import_variant(
        source, "old", tmp_path / "repository", quantization="none", workdir=tmp_path / "w"
    )
    served = load_variant(folder, read_card(folder), SessionConfig(intra_op_threads=1))
    converted = served.classifier.tokenize(QUESTIONS)
    original = Tokenizer.from_file(str(exported / "tuned" / "tokenizer.json"))
    original.no_padding()
    assert [e.ids for e in converted] == [e.ids for e in original.encode_batch(QUESTIONS)]


def test_placeholder_labels_are_named_from_a_file_or_warned_about(exported, tmp_path, caplog):
    source = tmp_path / "generic"
    shutil.copytree(exported / "onnx", source)
    config = json.loads((source / "config.json").read_text())
    config["id2label"] = {str(i): f"LABEL_{i}" for i in range(len(LABELS))}
    (source / "config.json").write_text(json.dumps(config))
    repository, workdir = tmp_path / "repository", tmp_path / "w"
    with caplog.at_level(logging.WARNING, logger="brum.import"):
        folder = import_variant(source, "placeholders", repository, "none", workdir=workdir)
    assert read_card(folder).labels == ["LABEL_0", "LABEL_1", "LABEL_2"]
    assert "the labels are transformers' placeholders (LABEL_0, ...)" in caplog.text
    names = ["thanks", "bye", "greet"]
    folder = import_variant(source, "named", repository, "none", workdir=workdir, label_names=names)
    card = read_card(folder)
    assert card.labels == names and card.lineage[0].params["labels"] == "--label-names"
    with pytest.raises(DatasetError, match=r"2 label names for a model of 3 outputs"):
        import_variant(source, "short", repository, "none", workdir=workdir, label_names=names[:2])


@pytest.mark.parametrize("name", ["My Model", "modèle", "x" * 64])
def test_a_variant_name_the_card_would_refuse_is_refused_before_any_work(tmp_path, capsys, name):
    with pytest.raises(SystemExit) as exited:
        main(["import", str(tmp_path / "nothing-read"), "--name", name])
    assert exited.value.code == 2
    error = capsys.readouterr().err.splitlines()[-1]
    assert error.startswith("brum-build import: error: argument --name: ")
    assert "lower-case letters a-z, digits" in error
