"""Structured pruning of BERT-family encoders: whole attention heads and feed-forward neurons.

Unstructured sparsity (zeroed weights) buys nothing on CPU onnxruntime, which runs dense GEMMs
anyway. Removing whole heads and whole intermediate neurons shrinks the matrices themselves, so
the exported graph is smaller and faster with no special kernels.

Importance is the first-order Taylor estimate of the loss change from removing a structure:
|sum over its parameters of grad * weight| (Molchanov et al. 2019), accumulated over batches.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import torch
from torch import nn


def _layers(model: nn.Module) -> nn.ModuleList:
    return model.base_model.encoder.layer


def _head_size(model: nn.Module) -> int:
    return model.config.hidden_size // model.config.num_attention_heads


def _present_heads(model: nn.Module, layer: int) -> list[int]:
    """Original indices of the heads still in ``layer``, in the order their rows are stored.

    transformers addresses heads by their index in the unpruned model even after earlier pruning,
    so scores must be reported in that numbering or a second round would remove the wrong heads.
    """
    pruned = set(_layers(model)[layer].attention.pruned_heads)
    return [h for h in range(model.config.num_attention_heads) if h not in pruned]


def check_head_pruning(model: nn.Module) -> None:
    """Refuse head pruning where removing a head cannot work, before spending any compute.

    Only BERT-style attention (``attention.self.query/key/value`` and ``attention.output.dense``)
    is supported. MPNet, for one, adds a relative position bias computed once for all
    ``num_attention_heads`` heads to every layer's scores, so a layer with fewer heads fails on
    shapes; its feed-forward neurons can still be pruned.
    """
    attention = _layers(model)[0].attention
    if not (hasattr(attention, "self") and hasattr(attention.self, "query")):
        raise ValueError(
            f"cannot prune attention heads of a {model.config.model_type!r} model: only "
            "BERT-style attention (attention.self.query/key/value) supports it here; "
            "prune feed-forward neurons only (heads: 0)"
        )


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def taylor_importance(
    model: nn.Module, batches: Iterable[Mapping[str, torch.Tensor]], heads: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Head scores [num_layers, num_attention_heads] and neuron scores [num_layers, intermediate].

    Both come from one pass so ``batches`` may be a one-shot iterator and the backward passes,
    the expensive part, are shared. Head columns use the original head numbering; heads already
    pruned away score NaN, so they can never be picked again. With ``heads=False`` every head
    scores NaN and the model may have any attention layout (see ``check_head_pruning``). The
    model runs in eval mode so dropout does not add noise to the scores, and is left in eval
    mode with no gradients.
    """
    layers = _layers(model)
    config = model.config
    device = next(model.parameters()).device
    head_scores = torch.full((len(layers), config.num_attention_heads), math.nan)
    if heads:
        check_head_pruning(model)
        head_size = _head_size(model)
        for i in range(len(layers)):
            head_scores[i, _present_heads(model, i)] = 0.0
    neuron_scores = torch.zeros(len(layers), layers[0].intermediate.dense.out_features)

    # Frozen parameters would get no gradient and silently score zero; unfreeze for the pass.
    requires_grad = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(True)
    model.eval()
    model.zero_grad(set_to_none=True)
    n_batches = 0
    try:
        with torch.enable_grad():
            for batch in batches:
                inputs = {k: v.to(device) for k, v in batch.items()}
                model(**inputs).loss.backward()
                for i, layer in enumerate(layers):
                    if heads:
                        present = _present_heads(model, i)
                        head_scores[i, present] += _head_contributions(
                            layer, len(present), head_size
                        )
                    neuron_scores[i] += _neuron_contributions(layer)
                model.zero_grad(set_to_none=True)
                n_batches += 1
    finally:
        model.zero_grad(set_to_none=True)
        for p, flag in zip(model.parameters(), requires_grad, strict=True):
            p.requires_grad_(flag)
        model.eval()
    if n_batches == 0:
        raise ValueError("importance needs at least one batch with labels")
    return head_scores, neuron_scores


def _gw(linear: nn.Linear) -> tuple[torch.Tensor, torch.Tensor]:
    """grad * weight for a layer's weight and bias, computed in float64 so that summing
    thousands of small signed terms does not lose the difference between close scores."""
    w, b = linear.weight, linear.bias
    gw = (w.grad.double() * w.detach().double()).cpu()
    gb = (b.grad.double() * b.detach().double()).cpu()
    return gw, gb


def _head_contributions(layer: nn.Module, n_heads: int, head_size: int) -> torch.Tensor:
    """|sum of grad*weight| per head for one batch: each head owns head_size rows (and bias
    entries) of query/key/value and the same head_size columns of the attention output."""
    total = torch.zeros(n_heads, dtype=torch.float64)
    attention = layer.attention
    for linear in (attention.self.query, attention.self.key, attention.self.value):
        gw, gb = _gw(linear)
        total += gw.view(n_heads, head_size, -1).sum(dim=(1, 2)) + gb.view(n_heads, -1).sum(1)
    gw, _ = _gw(attention.output.dense)  # its bias is shared by all heads, so it is no head's
    total += gw.view(gw.shape[0], n_heads, head_size).sum(dim=(0, 2))
    return total.abs().float()


def _neuron_contributions(layer: nn.Module) -> torch.Tensor:
    """|sum of grad*weight| per neuron for one batch: row i and bias i of intermediate.dense and
    column i of output.dense (the output bias belongs to no neuron)."""
    gw_in, gb_in = _gw(layer.intermediate.dense)
    gw_out, _ = _gw(layer.output.dense)
    return (gw_in.sum(1) + gb_in + gw_out.sum(0)).abs().float()


def head_importance(
    model: nn.Module, batches: Iterable[Mapping[str, torch.Tensor]]
) -> torch.Tensor:
    """Head scores alone; use ``taylor_importance`` when neurons are needed too, to pay for the
    backward passes once."""
    return taylor_importance(model, batches)[0]


def neuron_importance(
    model: nn.Module, batches: Iterable[Mapping[str, torch.Tensor]]
) -> torch.Tensor:
    """Neuron scores alone; see ``head_importance``."""
    return taylor_importance(model, batches, heads=False)[1]


def select_heads(scores: torch.Tensor, fraction: float) -> dict[int, list[int]]:
    """The globally least important ``fraction`` of the present (non-NaN) heads, never a layer's
    last head: BERT's attention cannot run with zero heads, and a layer with none would leave
    only its residual path, which the config cannot express.

    Scores are compared raw across layers, so a layer whose heads all matter little can lose
    many of them; that is the point of a global budget.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"head fraction must be in [0, 1), got {fraction}")
    present = ~torch.isnan(scores)
    budget = round(fraction * int(present.sum()))
    remaining = present.sum(dim=1).tolist()
    order = sorted(
        ((float(scores[i, h]), i, h) for i, h in present.nonzero().tolist()),
        key=lambda t: (t[0], t[1], t[2]),
    )
    chosen: dict[int, list[int]] = {}
    for _, layer, head in order:
        if budget == 0:
            break
        if remaining[layer] <= 1:
            continue
        chosen.setdefault(layer, []).append(head)
        remaining[layer] -= 1
        budget -= 1
    return {layer: sorted(heads) for layer, heads in sorted(chosen.items())}


def prune_heads(model: nn.Module, heads_per_layer_to_remove: Mapping[int, list[int]]) -> None:
    """Remove heads with transformers' own ``prune_heads`` so that ``config.pruned_heads``
    records them and ``from_pretrained`` rebuilds the same shapes before loading weights.

    Head indices are those of the unpruned model (as transformers expects). Refuses to empty a
    layer, and to take indices out of range, which transformers would accept and mis-handle.
    """
    n_heads = model.config.num_attention_heads
    layers = _layers(model)
    request: dict[int, list[int]] = {}
    for layer, heads in heads_per_layer_to_remove.items():
        layer = int(layer)
        if not 0 <= layer < len(layers):
            raise ValueError(f"layer {layer} out of range (model has {len(layers)})")
        bad = [h for h in heads if not 0 <= int(h) < n_heads]
        if bad:
            raise ValueError(f"heads {bad} out of range for layer {layer} ({n_heads} heads)")
        already = set(layers[layer].attention.pruned_heads)
        new = sorted({int(h) for h in heads} - already)
        if len(already) + len(new) >= n_heads:
            raise ValueError(f"pruning {new} would remove every head of layer {layer}")
        if new:  # an empty list would still leave a ``layer: []`` entry in config.pruned_heads
            request[layer] = new
    if request:
        model.prune_heads(request)
    for layer in request:  # transformers stores list(set), whose order is arbitrary
        model.config.pruned_heads[layer] = sorted(model.config.pruned_heads[layer])


def _select_rows(linear: nn.Linear, index: torch.Tensor, dim: int) -> nn.Linear:
    weight = linear.weight.detach().index_select(dim, index).clone()
    bias = linear.bias.detach().clone() if dim == 1 else linear.bias.detach()[index].clone()
    new = nn.Linear(weight.shape[1], weight.shape[0], device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        new.weight.copy_(weight)
        new.bias.copy_(bias)
    return new


def prune_neurons(model: nn.Module, keep: int, scores: torch.Tensor) -> None:
    """Keep the ``keep`` highest-scoring feed-forward neurons of every layer.

    The same count in every layer keeps ``config.intermediate_size`` a single integer, which is
    all BertConfig can express, so the saved checkpoint loads with plain ``from_pretrained``.
    Kept neurons stay in their original order; their weights are copied, not recomputed.
    """
    layers = _layers(model)
    size = layers[0].intermediate.dense.out_features
    if scores.shape != (len(layers), size):
        raise ValueError(f"scores shape {tuple(scores.shape)} != ({len(layers)}, {size})")
    if not 1 <= keep <= size:
        raise ValueError(f"keep must be in [1, {size}], got {keep}")
    for i, layer in enumerate(layers):
        index = torch.topk(scores[i], keep).indices.sort().values
        index = index.to(layer.intermediate.dense.weight.device)
        layer.intermediate.dense = _select_rows(layer.intermediate.dense, index, dim=0)
        layer.output.dense = _select_rows(layer.output.dense, index, dim=1)
    model.config.intermediate_size = keep


def prune_model(
    model: nn.Module,
    batches: Iterable[Mapping[str, torch.Tensor]],
    head_fraction: float,
    neuron_fraction: float,
) -> dict:
    """Score, prune heads and neurons in place, and return what a model card's lineage needs to
    reproduce and audit the step (JSON-safe: string keys, plain numbers and lists)."""
    if not 0.0 <= neuron_fraction < 1.0:
        raise ValueError(f"neuron fraction must be in [0, 1), got {neuron_fraction}")
    heads_before = sum(len(_present_heads(model, i)) for i in range(len(_layers(model))))
    size_before = int(model.config.intermediate_size)
    params_before = count_parameters(model)

    head_scores, neuron_scores = taylor_importance(model, batches, heads=head_fraction > 0)
    to_remove = select_heads(head_scores, head_fraction) if head_fraction > 0 else {}
    keep = size_before - min(round(neuron_fraction * size_before), size_before - 1)
    # Neurons first: head pruning does not touch the feed-forward block, so the scores hold.
    prune_neurons(model, keep, neuron_scores)
    prune_heads(model, to_remove)
    model.eval()

    heads_after = sum(len(_present_heads(model, i)) for i in range(len(_layers(model))))
    return {
        "method": "taylor-first-order",
        "head_fraction": float(head_fraction),
        "neuron_fraction": float(neuron_fraction),
        "heads_removed": {str(layer): heads for layer, heads in to_remove.items()},
        "heads_before": heads_before,
        "heads_after": heads_after,
        "intermediate_size_before": size_before,
        "intermediate_size_after": int(model.config.intermediate_size),
        "parameters_before": params_before,
        "parameters_after": count_parameters(model),
    }
