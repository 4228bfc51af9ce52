import json

import pytest

from app.runtime.tokenizer import load_tokenizer
from tests.tiny import train_wordpiece


def saved_tokenizer(tmp_path, clinc):
    tokenizer = train_wordpiece(clinc.splits["train"].texts[:2000])
    path = tmp_path / "tokenizer.json"
    tokenizer.save(str(path))
    assert json.loads(path.read_text())["padding"]["strategy"] == {"Fixed": 128}
    return path


def test_pads_to_the_longest_text_not_to_the_file_length(tmp_path, clinc):
    tokenizer = load_tokenizer(saved_tokenizer(tmp_path, clinc), max_length=64)
    batch = tokenizer.encode_batch(["balance", "what is the balance of my checking account"])
    assert batch.input_ids.shape[1] == batch.token_counts.max() < 128
    assert batch.token_counts[0] < batch.token_counts[1]
    assert batch.input_ids[0, batch.token_counts[0] :].tolist() == [0] * (
        batch.input_ids.shape[1] - batch.token_counts[0]
    )
    assert batch.input_ids.dtype.name == "int64"
    assert batch.truncated == [False, False]


def test_truncates_to_max_length_and_says_so(tmp_path, clinc):
    tokenizer = load_tokenizer(saved_tokenizer(tmp_path, clinc), max_length=16)
    batch = tokenizer.encode_batch(["word " * 100, "short"])
    assert batch.input_ids.shape == (2, 16)
    assert batch.truncated == [True, False]
    cls, sep = (tokenizer.tokenizer.token_to_id(t) for t in ("[CLS]", "[SEP]"))
    assert batch.input_ids[0, 0] == cls and batch.input_ids[0, -1] == sep


def test_texts_encoded_apart_pad_together_like_a_batch(tmp_path, clinc):
    tokenizer = load_tokenizer(saved_tokenizer(tmp_path, clinc), max_length=64)
    texts = ["hi", "what is the balance of my checking account", "book a table"]
    apart = tokenizer.pad([e for text in texts for e in tokenizer.encode([text])])
    together = tokenizer.encode_batch(texts)
    for name in ("input_ids", "attention_mask", "token_type_ids"):
        assert (getattr(apart, name) == getattr(together, name)).all()
    assert apart.input_ids[0, -1] == tokenizer.pad_id


def test_serving_tokenizer_pads_with_the_models_own_token(tmp_path, clinc):
    """An MPNet-style vocabulary holds both ``<pad>`` (the model's, id 1) and ``[PAD]``: the
    serving tokenizer must pad with the id the model's config names, not whichever is ``[PAD]``."""
    pytest.importorskip("onnx")  # models.build imports the runtime and the export helpers
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    from models.build import write_serving_tokenizer

    tokenizer = Tokenizer(models.WordPiece(unk_token="<unk>"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["<s>", "<pad>", "</s>", "<unk>", "[PAD]"]
    trainer = trainers.WordPieceTrainer(vocab_size=400, special_tokens=specials)
    tokenizer.train_from_iterator(clinc.splits["train"].texts[:2000], trainer)
    source = tmp_path / "source.json"
    tokenizer.save(str(source))  # no padding section, as save_pretrained leaves it

    served = write_serving_tokenizer(source, tmp_path / "served.json", 16, pad_token_id=1)
    padding = json.loads(served.read_text())["padding"]
    assert (padding["pad_token"], padding["pad_id"], padding["strategy"]) == (
        "<pad>",
        1,
        "BatchLongest",
    )
    encoder = load_tokenizer(served, max_length=16)
    assert encoder.pad_id == 1
    batch = encoder.encode_batch(["hi", "what is the balance of my checking account"])
    assert batch.input_ids[0, batch.token_counts[0] :].tolist() == [1] * (
        batch.input_ids.shape[1] - batch.token_counts[0]
    )
    # Without the model's id the file decides, and without one there, the service's [PAD].
    fallback = write_serving_tokenizer(source, tmp_path / "fallback.json", 16)
    assert json.loads(fallback.read_text())["padding"] is None
    assert load_tokenizer(fallback, max_length=16).pad_id == tokenizer.token_to_id("[PAD]") == 4
