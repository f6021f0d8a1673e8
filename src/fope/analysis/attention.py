"""Attention weights computed explicitly, per layer and per block of queries, and what they say about distance.

For one layer, with ``q'``, ``k'`` the queries and keys after the position encoding (rotary schemes) and ``b`` the
additive bias (ALiBi), query ``m`` attends to key ``n <= m`` with

    p(m, n) = softmax_n( q'(m) . k'(n) / sqrt(head_dim) + b(m, n) ),

exactly what the model's scaled-dot-product attention computes (tested). Queries go in blocks whose float32
logits stay under ``max_block_bytes``, so at 16x the training length nothing of size ``layers x heads x T x T``
exists at once. Positions are ``0 .. T-1``; the distance is ``d = m - n``. Per query head:
- ``entropy_by_position[m] = -sum_n p(m, n) ln p(m, n)`` (``ln(m + 1)`` for uniform attention over the ``m + 1`` keys);
- ``mass_by_distance[d]``: the mean over queries of ``p(m, m - d)`` (sums to 1 over ``d``);
- ``logit_by_distance[d]``: the mean pre-softmax score over all pairs at distance ``d`` (bias included).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from fope.analysis.capture import Activations, capture_activations
from fope.evaluate.chunks import LENGTH_MULTIPLES
from fope.model import TransformerLM, causal_mask
from fope.positions import PositionEncoding

__all__ = [
    "LayerAttention",
    "attention_blocks",
    "attention_statistics",
    "context_behaviour",
    "context_length",
    "distance_buckets",
    "layer_attention",
    "summarize_attention",
]

DEFAULT_BLOCK_BYTES = 64 * 2**20


def attention_blocks(
    queries: Tensor, keys: Tensor, pe: PositionEncoding, *, max_block_bytes: int = DEFAULT_BLOCK_BYTES
) -> Iterator[tuple[int, Tensor, Tensor]]:
    """Yield ``(start, logits, probabilities)`` per block of queries, from un-rotated queries and keys.

    Queries are ``(B, Hq, T, D)``, keys ``(B, Hkv, T, D)``. ``logits`` and ``probabilities`` are float32
    ``(B, Hq, Tq, Tk)`` for queries ``start .. start + Tq - 1`` over keys ``0 .. Tk - 1`` (``Tk = start + Tq``),
    ``-inf`` / 0 above the causal diagonal.
    """
    batch, heads, length, dim = queries.shape
    positions = torch.arange(length, device=queries.device)
    q, k = pe(queries.float(), keys.float(), positions)
    k = k.repeat_interleave(heads // k.shape[1], dim=1)
    rows = max(1, max_block_bytes // (4 * batch * heads * length))
    for start in range(0, length, rows):
        end = min(start + rows, length)
        logits = q[:, :, start:end] @ k[:, :, :end].transpose(-1, -2) / math.sqrt(dim)
        bias = pe.attention_bias(positions[start:end], positions[:end])
        if bias is not None:
            logits = logits + bias
        logits = logits.masked_fill(~causal_mask(end - start, end, queries.device), float("-inf"))
        yield start, logits, logits.softmax(dim=-1)


@dataclass(frozen=True)
class LayerAttention:
    """One layer's per-head attention statistics over ``T`` positions (float64, on CPU).

    ``entropy_by_position`` ``(Hq, T)`` (mean over the batch), ``mass_by_distance`` ``(Hq, T)``,
    ``logit_by_distance`` ``(Hq, T)``; see the module docstring.
    """

    entropy_by_position: Tensor
    mass_by_distance: Tensor
    logit_by_distance: Tensor


@torch.no_grad()
def attention_statistics(
    queries: Tensor, keys: Tensor, pe: PositionEncoding, *, max_block_bytes: int = DEFAULT_BLOCK_BYTES
) -> LayerAttention:
    """Entropy by query position, attention mass and mean logit by distance for one layer (module docstring)."""
    batch, heads, length, _ = queries.shape
    device = queries.device
    entropy = torch.zeros(heads, length, dtype=torch.float64, device=device)
    mass = torch.zeros(heads, length, dtype=torch.float64, device=device)
    logit_sum = torch.zeros(heads, length, dtype=torch.float64, device=device)
    for start, logits, probabilities in attention_blocks(queries, keys, pe, max_block_bytes=max_block_bytes):
        end = start + logits.shape[2]
        entropy[:, start:end] = torch.special.entr(probabilities).sum(-1).double().mean(0)
        distance = torch.arange(start, end, device=device).unsqueeze(-1) - torch.arange(end, device=device)
        visible = distance >= 0
        index = distance[visible]
        mass.index_add_(1, index, probabilities[..., visible].double().sum(0))
        logit_sum.index_add_(1, index, logits[..., visible].double().sum(0))
    pairs_at_distance = batch * (length - torch.arange(length, dtype=torch.float64, device=device))
    return LayerAttention(entropy.cpu(), (mass / (batch * length)).cpu(), (logit_sum / pairs_at_distance).cpu())


def distance_buckets(length: int) -> list[tuple[int, int]]:
    """``[lo, hi)`` distance ranges ``[0, 1), [1, 2), [2, 4), [4, 8), ...`` covering distances ``0 .. length - 1``."""
    buckets, low = [(0, 1)], 1
    while low < length:
        buckets.append((low, min(2 * low, length)))
        low *= 2
    return buckets


def summarize_attention(layers: Sequence[LayerAttention], train_length: int) -> dict[str, Any]:
    """JSON-able per layer and head: mean entropy, mean ``entropy / ln(m + 1)``, mass beyond ``train_length`` and,
    per distance bucket, attention mass and mean logit."""
    length = layers[0].entropy_by_position.shape[-1]
    buckets = distance_buckets(length)
    log_keys = torch.log(torch.arange(2, length + 1, dtype=torch.float64))
    counts = length - torch.arange(length, dtype=torch.float64)

    def per_layer(layer: LayerAttention) -> dict[str, list]:
        bucket_logits = [
            (layer.logit_by_distance[:, lo:hi] * counts[lo:hi]).sum(-1) / counts[lo:hi].sum() for lo, hi in buckets
        ]
        return {
            "entropy": layer.entropy_by_position.mean(-1).tolist(),
            "normalized_entropy": (layer.entropy_by_position[:, 1:] / log_keys[: length - 1]).mean(-1).tolist()
            if length > 1
            else [1.0] * layer.entropy_by_position.shape[0],
            "mass_beyond_train_length": layer.mass_by_distance[:, train_length:].sum(-1).tolist(),
            "mass_by_bucket": torch.stack(
                [layer.mass_by_distance[:, lo:hi].sum(-1) for lo, hi in buckets], -1
            ).tolist(),
            "mean_logit_by_bucket": torch.stack(bucket_logits, -1).tolist(),
        }

    per = [per_layer(layer) for layer in layers]
    summary: dict[str, Any] = {"length": length, "bucket_edges": [[lo, hi] for lo, hi in buckets]}
    for key in per[0]:
        summary[key] = [entry[key] for entry in per]
    return summary


@torch.no_grad()
def context_behaviour(
    model: TransformerLM,
    token_ids: Tensor,
    *,
    train_length: int,
    multiples: Sequence[int] = LENGTH_MULTIPLES,
    max_block_bytes: int = DEFAULT_BLOCK_BYTES,
) -> dict[str, Any]:
    """Attention statistics per layer and head at contexts ``multiple * train_length`` (prefixes of ``token_ids``).

    ``token_ids`` ``(B, >= max(multiples) * train_length)``; every context reads the same text from its start.
    Returns ``{"train_length", "multiples", "contexts": [summarize_attention(...) per multiple]}``.
    """
    lengths = [context_length(multiple, train_length) for multiple in multiples]
    if token_ids.dim() != 2 or token_ids.shape[1] < max(lengths):
        raise ValueError(
            f"token_ids must be (batch, >= {max(lengths)}) for multiples {list(multiples)} of train_length="
            f"{train_length}; got shape {tuple(token_ids.shape)}"
        )
    contexts = []
    for length in lengths:
        activations = capture_activations(model, token_ids[:, :length])
        contexts.append(summarize_attention(layer_attention(model, activations, max_block_bytes), train_length))
    return {"train_length": train_length, "multiples": list(multiples), "contexts": contexts}


def layer_attention(
    model: TransformerLM, activations: Activations, max_block_bytes: int = DEFAULT_BLOCK_BYTES
) -> list[LayerAttention]:
    """``attention_statistics`` for every layer of captured activations."""
    return [
        attention_statistics(q, k, pe, max_block_bytes=max_block_bytes)
        for q, k, pe in zip(activations.queries, activations.keys, model.position_encodings(), strict=True)
    ]


def context_length(multiple: object, train_length: int) -> int:
    """``round(multiple * train_length)`` (at least 1) for a positive number ``multiple``."""
    if isinstance(multiple, bool) or not isinstance(multiple, (int, float)) or multiple <= 0:
        raise ValueError(f"context multiples must be positive numbers; got {multiple!r}")
    return max(1, round(multiple * train_length))
