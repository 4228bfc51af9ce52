"""Vocabulary pruning on a tiny BERT: kept pieces map to their old embeddings, others to [UNK]."""

import json

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from models.vocab import general_ids, kept_ids, prune_vocabulary
from tests.tiny import save_tiny_bert

CORPUS = ["book a flight to paris", "what is my balance", "set a timer for ten minutes"] * 5


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, clinc):
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("vocab")
    base = save_tiny_bert(root / "base", clinc.splits["train"].texts)
    model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=4)
    model.save_pretrained(base)
    pruned = root / "pruned"
    info = prune_vocabulary(base, pruned, CORPUS, min_count=1, keep_characters=False)
    return base, pruned, info


def test_kept_pieces_keep_their_embeddings_and_tokenization(tiny):
    base, pruned, info = tiny
    old_tok, new_tok = AutoTokenizer.from_pretrained(base), AutoTokenizer.from_pretrained(pruned)
    old_model = AutoModelForSequenceClassification.from_pretrained(base)
    new_model = AutoModelForSequenceClassification.from_pretrained(pruned)
    assert info["vocab_size_after"] == new_tok.vocab_size < info["vocab_size_before"]
    assert new_model.config.vocab_size == info["vocab_size_after"]
    for text in CORPUS[:3]:
        old_ids, new_ids = old_tok(text)["input_ids"], new_tok(text)["input_ids"]
        assert old_tok.convert_ids_to_tokens(old_ids) == new_tok.convert_ids_to_tokens(new_ids)
        old_rows = old_model.get_input_embeddings().weight[old_ids]
        new_rows = new_model.get_input_embeddings().weight[new_ids]
        assert torch.equal(old_rows, new_rows)
    with torch.no_grad():
        batch_old = old_tok(CORPUS[:3], padding=True, return_tensors="pt")
        batch_new = new_tok(CORPUS[:3], padding=True, return_tensors="pt")
        old_model.eval()
        new_model.eval()
        assert torch.allclose(
            old_model(**batch_old).logits, new_model(**batch_new).logits, atol=1e-6
        )


def test_unknown_words_become_unk(tiny):
    _, pruned, _ = tiny
    tokenizer = AutoTokenizer.from_pretrained(pruned)
    tokens = tokenizer.tokenize("book zebra")
    assert tokens == ["book", "[UNK]"]
    assert tokenizer.convert_tokens_to_ids("[UNK]") == tokenizer.unk_token_id


def test_special_tokens_are_always_kept(tiny):
    base, _, _ = tiny
    tokenizer_json = json.loads((base / "tokenizer.json").read_text())
    keep = kept_ids(tokenizer_json, {}, min_count=1, keep_characters=False)
    specials = {t["id"] for t in tokenizer_json["added_tokens"]}
    assert set(keep) == specials


def test_general_pieces_are_the_lowest_non_placeholder_ids():
    tokenizer_json = {
        "model": {"vocab": {"[PAD]": 0, "[unused0]": 1, "the": 2, "of": 3, "##s": 4}},
        "added_tokens": [{"id": 0}],
    }
    assert general_ids(tokenizer_json, 2) == {2, 3}
