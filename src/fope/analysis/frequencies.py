"""The frequency map: what every rotary pair rotates with, against the training length, and FoPE's coefficients.

Every rotary encoding's per-pair features ``f_j(n) = cos_j(n) + i sin_j(n)`` are written as exponentials,

    f_j(n) = sum_k alpha[h, k, j] e^{i w_k n} + beta[h, k, j] e^{-i w_k n} + constant[h, j],

RoPE: ``alpha = I`` (times YaRN's attention factor), ``beta = 0``, no constant. FoPE, with ``C = cos_coef`` and
``S = sin_coef``: ``cos(x) = (e^{ix} + e^{-ix}) / 2`` and ``sin(x) = (e^{ix} - e^{-ix}) / 2i`` give
``alpha = (C + S) / 2`` and ``beta = (C - S) / 2`` on the ``d_out`` Fourier pairs, and the zero-frequency pairs past
``d_out`` are the constant ``1 + i`` ("official") or ``1`` ("identity"). The spectrum diagnostics work on this form.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from fope.positions import FoPE, PositionEncoding, RoPE, strided_identity
from fope.positions.frequencies import floor_frequency, num_kept_frequencies, rope_frequencies

__all__ = ["RotaryBasis", "coefficient_mixing", "frequency_map", "rotary_basis"]


@dataclass(frozen=True)
class RotaryBasis:
    """``f_j(n) = sum_k alpha[h,k,j] e^{i w_k n} + beta[h,k,j] e^{-i w_k n} + constant[h,j]`` (float64/complex128).

    ``frequencies`` ``(F,)``, ``alpha`` and ``beta`` ``(Hc, F, P)``, ``constant`` ``(Hc, P)``; query head ``h`` uses
    coefficient head ``h // (Hq // Hc)``.
    """

    frequencies: Tensor
    alpha: Tensor
    beta: Tensor
    constant: Tensor

    def features(self, positions: Tensor) -> Tensor:
        """``f_j(n)`` for integer positions ``(T,)``: complex128 ``(Hc, T, P)`` (to check against ``pe.features``)."""
        phase = torch.exp(1j * positions.double().unsqueeze(-1) * self.frequencies)  # (T, F)
        rotating = torch.einsum("tf,hfp->htp", phase, self.alpha.to(phase.dtype))
        rotating = rotating + torch.einsum("tf,hfp->htp", phase.conj(), self.beta.to(phase.dtype))
        return rotating + self.constant.unsqueeze(1)


def rotary_basis(pe: PositionEncoding) -> RotaryBasis:
    """The exponential form of a RoPE or FoPE module's features (see the module docstring)."""
    if isinstance(pe, FoPE):
        cos_coef, sin_coef = pe.cos_coef.detach().double().cpu(), pe.sin_coef.detach().double().cpu()
        heads, kept, output_dim = cos_coef.shape
        pairs = pe.rotary_dim // 2
        alpha = torch.zeros(heads, kept, pairs, dtype=torch.float64)
        beta = torch.zeros_like(alpha)
        alpha[..., :output_dim] = (cos_coef + sin_coef) / 2
        beta[..., :output_dim] = (cos_coef - sin_coef) / 2
        constant = torch.zeros(heads, pairs, dtype=torch.complex128)
        constant[:, output_dim:] = complex(1.0, 1.0 if pe.zero_pad == "official" else 0.0)
        frequencies = pe.inv_freq.detach().double().cpu()
    elif isinstance(pe, RoPE):
        frequencies = pe.inv_freq.detach().double().cpu()
        pairs = frequencies.shape[0]
        alpha = torch.eye(pairs, dtype=torch.float64).unsqueeze(0)
        beta = torch.zeros_like(alpha)
        constant = torch.zeros(1, pairs, dtype=torch.complex128)
    else:
        raise TypeError(f"rotary_basis needs a RoPE or FoPE module; got {type(pe).__name__} (kind {pe.kind!r})")
    factor = pe.attention_factor
    return RotaryBasis(frequencies, alpha * factor, beta * factor, constant * factor)


def coefficient_mixing(pe: FoPE) -> Tensor:
    """Per coefficient head and output pair ``(Hc, d_out)``: share of ``C^2 + S^2`` outside the pair's own frequency.

    A pair's own frequency is the row of the strided identity its initialisation starts from; 0 is a pure frequency
    (RoPE-like), values near 1 mean the pair's features are mostly other frequencies.
    """
    energy = pe.cos_coef.detach().double().cpu() ** 2 + pe.sin_coef.detach().double().cpu() ** 2
    own = strided_identity(pe.num_kept, pe.output_dim).double()
    total = energy.sum(dim=1)
    own_energy = (energy * own).sum(dim=1)
    return torch.where(total > 0, 1 - own_energy / total.clamp_min(1e-300), torch.ones_like(total))


def frequency_map(pe: PositionEncoding, train_length: int) -> dict[str, Any]:
    """Every rotary frequency against ``train_length``: period, floor status, what FoPE keeps; JSON-able.

    Per frequency index ``i`` (RoPE's ``w_i = theta^(-2i/d)``): ``base_frequencies``, ``periods`` ``2*pi/w_i``,
    ``period_over_train_length``, ``below_floor`` (``w_i < 2*pi/train_length``: under-trained, never a full turn
    inside the training window), ``fope_keeps`` (FoPE's actual split for a FoPE module, the authors' rule
    ``w_i >= floor`` otherwise) and ``frequencies`` (what the module uses: scaled for RoPE with PI/YaRN/..., zero where
    FoPE zeroed it). Per pair ``j``: ``pair_frequencies`` (FoPE: the frequency its initialisation picks, 0 for the
    zero-frequency pairs) and, for FoPE, ``coefficient_mixing`` per coefficient head and output pair.
    """
    if not isinstance(pe, (RoPE, FoPE)):
        raise TypeError(f"frequency_map needs a RoPE or FoPE module; got {type(pe).__name__} (kind {pe.kind!r})")
    if isinstance(train_length, bool) or not isinstance(train_length, int) or train_length < 1:
        raise ValueError(f"train_length must be a positive int; got {train_length!r}")
    base = rope_frequencies(pe.rotary_dim, pe.theta, getattr(pe, "frequency_precision", "float32"))
    pairs = base.shape[0]
    floor = floor_frequency(train_length)
    result: dict[str, Any] = {
        "scheme": type(pe).__name__,
        "rotary_dim": pe.rotary_dim,
        "theta": pe.theta,
        "train_length": train_length,
        "floor": floor,
        "base_frequencies": base.tolist(),
        "periods": (2 * math.pi / base.double()).tolist(),
        "period_over_train_length": (2 * math.pi / base.double() / train_length).tolist(),
        "below_floor": (base < floor).tolist(),
    }
    if isinstance(pe, FoPE):
        kept = pe.num_kept
        used = torch.zeros(pairs, dtype=torch.float64)
        used[:kept] = pe.inv_freq.double().cpu()
        own = strided_identity(kept, pe.output_dim)
        # a Fourier pair whose strided-identity column is empty (j * ceil(K / d_out) >= K) has no own frequency: None
        pair_frequencies: list[float | None] = [
            float(used[int(own[:, j].argmax())]) if own[:, j].any() else None for j in range(pe.output_dim)
        ]
        pair_frequencies += [0.0] * (pairs - pe.output_dim)
        result.update(
            num_kept=kept,
            output_dim=pe.output_dim,
            zero_pad=pe.zero_pad,
            fope_keeps=[i < kept for i in range(pairs)],
            frequencies=used.tolist(),
            pair_frequencies=pair_frequencies,
            coefficient_mixing=coefficient_mixing(pe).tolist(),
        )
    else:
        used = pe.inv_freq.double().cpu()
        kept = num_kept_frequencies(base, train_length)
        result.update(
            num_kept=kept,
            fope_keeps=[i < kept for i in range(pairs)],
            frequencies=used.tolist(),
            pair_frequencies=used.tolist(),
        )
    result["pair_under_trained"] = [w is not None and 0 < w < floor for w in result["pair_frequencies"]]
    return result
