"""Tokenization with `tokenizers`: truncate to the model's maximum, pad a batch to its longest.

Texts are tokenized when an inference thread takes them from the queue and padded only once the
batcher has sorted them into batches, so padding is done here rather than by the tokenizer.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Encoding, Tokenizer

# The inference threads already fill the cores: tokenizing a batch of 16 on rayon's pool as well
# took twice the time and a fifth more CPU than on the calling thread alone.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@dataclass(frozen=True)
class EncodedBatch:
    input_ids: np.ndarray
    attention_mask: np.ndarray
    token_type_ids: np.ndarray
    truncated: list[bool]

    @property
    def token_counts(self) -> np.ndarray:
        return self.attention_mask.sum(axis=1)


@dataclass(frozen=True)
class TextEncoder:
    tokenizer: Tokenizer
    pad_id: int

    def encode(self, texts: list[str]) -> list[Encoding]:
        return self.tokenizer.encode_batch(texts)

    def pad(self, encodings: Sequence[Encoding]) -> EncodedBatch:
        """Pad to the longest encoding: a fixed length wastes compute on short texts."""
        if len(encodings) == 1:  # a lone text needs no padding: three arrays straight from it
            (encoding,) = encodings
            input_ids = np.array([encoding.ids], dtype=np.int64)
            return EncodedBatch(
                input_ids,
                np.ones_like(input_ids),
                np.array([encoding.type_ids], dtype=np.int64),
                [bool(encoding.overflowing)],
            )
        longest = max(len(e.ids) for e in encodings)
        shape = (len(encodings), longest)
        input_ids = np.full(shape, self.pad_id, dtype=np.int64)
        attention_mask = np.zeros(shape, dtype=np.int64)
        token_type_ids = np.zeros(shape, dtype=np.int64)
        for row, encoding in enumerate(encodings):
            length = len(encoding.ids)
            input_ids[row, :length] = encoding.ids
            attention_mask[row, :length] = 1
            token_type_ids[row, :length] = encoding.type_ids
        truncated = [bool(e.overflowing) for e in encodings]
        return EncodedBatch(input_ids, attention_mask, token_type_ids, truncated)

    def encode_batch(self, texts: list[str]) -> EncodedBatch:
        return self.pad(self.encode(texts))


def load_tokenizer(path: Path, max_length: int) -> TextEncoder:
    """Load ``tokenizer.json``, truncating at ``max_length``; the padding it asks for is off."""
    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.enable_truncation(max_length=max_length)
    pad_token = (tokenizer.padding or {}).get("pad_token", "[PAD]")
    pad_id = tokenizer.token_to_id(pad_token)
    if pad_id is None:
        raise ValueError(f"{path}: the tokenizer has no padding token {pad_token!r}")
    tokenizer.no_padding()
    return TextEncoder(tokenizer, pad_id)
