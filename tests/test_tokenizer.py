import json

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
