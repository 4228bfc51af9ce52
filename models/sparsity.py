"""Unstructured (magnitude) pruning: zero the smallest weights of every encoder matrix.

Offered to measure what it does, not to ship: the matrices keep their shapes, onnxruntime runs
them as dense GEMMs and int8 stores a zero in a byte like any other value, so the file and the
latency stay the same (BENCHMARKS.md). Structured pruning (models/prune.py) is what pays on CPU.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import prune


def encoder_matrices(model: nn.Module) -> list[nn.Linear]:
    """The attention and feed-forward projections: the weights magnitude pruning acts on."""
    return [m for m in model.base_model.encoder.modules() if isinstance(m, nn.Linear)]


def zero_smallest(model: nn.Module, fraction: float) -> dict:
    """Zero the ``fraction`` of each encoder matrix's weights smallest in magnitude, in place."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"magnitude fraction must be in [0, 1), got {fraction}")
    matrices = encoder_matrices(model)
    for linear in matrices:
        prune.l1_unstructured(linear, "weight", amount=fraction)
        prune.remove(linear, "weight")
    total = sum(linear.weight.numel() for linear in matrices)
    zeros = sum(int((linear.weight == 0).sum()) for linear in matrices)
    return {
        "magnitude_method": "l1-unstructured, per matrix",
        "magnitude_fraction": float(fraction),
        "encoder_weights": total,
        "encoder_weights_zero": zeros,
    }


def zero_masks(model: nn.Module) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(weight, mask of its non-zeros) for every encoder matrix holding zeros."""
    masks = [(linear.weight, linear.weight != 0) for linear in encoder_matrices(model)]
    return [(weight, mask) for weight, mask in masks if not bool(mask.all())]


@torch.no_grad()
def keep_zeros(masks: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
    """Undo what an optimizer step did to pruned weights, so recovery keeps the sparsity."""
    for weight, mask in masks:
        weight.mul_(mask)
