"""Ringing: the attention score a position encoding alone gives over distance, and its spectrum.

CoPE (Li et al. 2026) argues that cutting low frequencies hard (FoPE's floor clipping, HardClip) causes spectral
leakage: "ringing", an oscillation of the attention scores over relative distance. This measures what the encoding
alone contributes. The query and every key are the same vector, one unit pair ``(1, 0)`` per rotary pair scaled by
``1/sqrt(P)`` (passing dimensions zero); the query sits at position ``n`` and the keys at ``n - d``. For RoPE the score
is ``mean_j cos(w_j d)``; a scheme that zeroes frequencies turns their terms into constants, CoPE's taper moves them
gradually towards zero frequency, and FoPE mixes frequencies through its coefficients (its score depends on ``n``
too, since ``A != I`` breaks shift invariance; ``n`` is the last position here).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor

from fope.positions import PositionEncoding

__all__ = ["plot_ringing", "ringing_spectrum", "score_by_distance"]


def score_by_distance(pe: PositionEncoding, length: int) -> Tensor:
    """float32 ``(length,)``: entry ``d`` is the score of the query at ``length - 1`` with the key at ``length-1-d``.

    Averaged over query heads (each with its key/value group). ``pe`` is a rotary encoding (RoPE with any frequency
    scheme, FoPE); bias schemes (ALiBi) and NoPE have no rotary pairs to probe.
    """
    if getattr(pe, "kind", None) != "rotary":
        raise ValueError(f"score_by_distance needs a rotary position encoding; got {type(pe).__name__}")
    if isinstance(length, bool) or not isinstance(length, int) or length < 1:
        raise ValueError(f"length must be an int >= 1; got {length!r}")
    pairs, head_dim = pe.rotary_dim // 2, pe.head_dim
    num_heads = getattr(pe, "num_heads", None) or 1  # RoPE has no heads of its own: one is enough
    num_kv_heads = getattr(pe, "num_kv_heads", None) or num_heads
    unit = torch.zeros(head_dim)
    if pe.layout == "half":
        unit[:pairs] = 1.0
    else:
        unit[0 : 2 * pairs : 2] = 1.0
    unit /= math.sqrt(pairs)
    q = unit.expand(1, num_heads, length, head_dim).contiguous()
    k = unit.expand(1, num_kv_heads, length, head_dim).contiguous()
    with torch.no_grad():
        q, k = pe(q, k, torch.arange(length))
    group = num_heads // num_kv_heads
    keys = k.repeat_interleave(group, dim=1)  # (1, Hq, T, D)
    scores = torch.einsum("hd,htd->ht", q[0, :, -1].float(), keys[0].float())  # (Hq, T): key position t
    return scores.mean(0).flip(0)  # distance d = length - 1 - t


def ringing_spectrum(scores: Tensor) -> tuple[Tensor, Tensor]:
    """(frequencies in cycles per token, amplitude) of the score over distance, its mean removed (``rfft``)."""
    centred = scores.double() - scores.double().mean()
    amplitude = torch.fft.rfft(centred).abs() / scores.shape[0]
    return torch.fft.rfftfreq(scores.shape[0]), amplitude.float()


def plot_ringing(curves: Mapping[str, Tensor], path: str | Path, train_length: int | None = None) -> Path:
    """Score over distance (left) and its amplitude spectrum (right) for each named encoding; returns the PNG path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    for name, scores in curves.items():
        left.plot(range(scores.shape[0]), scores.numpy(), label=name, linewidth=1)
        frequencies, amplitude = ringing_spectrum(scores)
        right.semilogy(frequencies.numpy(), amplitude.clamp_min(1e-8).numpy(), label=name, linewidth=1, alpha=0.8)
    if train_length is not None:
        left.axvline(train_length, color="grey", linestyle=":", linewidth=1, label="training length")
    left.set(xlabel="distance (tokens)", ylabel="score of a constant query and key", title="score by distance")
    right.set(xlabel="cycles per token", ylabel="amplitude", title="its spectrum")
    left.legend(fontsize=8, loc="upper right", ncol=3, framealpha=0.8)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
