"""Each word's nearest words by a model's word embeddings, for ``neighbour`` perturbations
(models/augment.py). A word's vector is the mean of its pieces' input embeddings: no context, so
no forward pass; on BANKING77's teacher the neighbours are near synonyms and inflections
(``declined`` -> ``refused``, ``rejected``; ``fee`` -> ``fees``, ``charges``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import AutoModel, AutoTokenizer

from models.augment import NEIGHBOURS


def word_neighbours(
    words: Sequence[str], model_dir: Path, count: int = NEIGHBOURS
) -> dict[str, list[str]]:
    """Each of ``words``' ``count`` nearest others among them, by cosine similarity."""
    if len(words) <= count:
        return {}
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    embeddings = AutoModel.from_pretrained(model_dir).get_input_embeddings().weight.detach()
    pieces = tokenizer(list(words), add_special_tokens=False)["input_ids"]
    vectors = torch.stack([embeddings[ids].float().mean(0) for ids in pieces])
    vectors = torch.nn.functional.normalize(vectors, dim=1)
    similarity = vectors @ vectors.T
    similarity.fill_diagonal_(-2.0)
    nearest = similarity.topk(count, dim=1).indices.tolist()
    return {word: [words[j] for j in row] for word, row in zip(words, nearest, strict=True)}
