"""The attention spectrum: attention under a rotary encoding as a non-uniform DFT over its frequencies.

With ``q_j`` and ``k_j`` the complex rotary pairs of the un-rotated query (position ``m``) and key (position ``n``)
and ``f_j`` the features in exponential form (``fope.analysis.frequencies.RotaryBasis``), the score is

    q'(m) . k'(n) = sum_j Re( q_j conj(k_j) f_j(m) conj(f_j(n)) )  (+ the non-rotary dims, a constant).

RoPE (``f_j(n) = e^{i w_j n}``): ``sum_j Re( q_j conj(k_j) e^{i w_j (m - n)} )``, a DFT in the distance with one
coefficient ``q_j conj(k_j)`` per frequency. FoPE's product ``f_j(m) conj(f_j(n))`` also has terms
``e^{i (w_k m - w_l n)}`` (``k != l``) and ``e^{i (w_k m + w_l n)}`` that depend on absolute position; averaged over
``m`` at a fixed distance ``d = m - n`` only the ``k = l`` terms survive, the stationary spectrum

    score(d) = Re( sum_k c_k e^{i w_k d} ) + c_0,   c_k = sum_j alpha_kj^2 z_j + beta_kj^2 conj(z_j),
    c_0 = sum_j |constant_j|^2 Re(z_j) + sum_{non-rotary r} q_r k_r,

which for RoPE is the whole score. Two choices of ``z_j`` over real text:
- coherent: ``z_j = mean_m q_j(m) * conj(mean_n k_j(n))``, the coefficient of the mean score at distances where
  query and key content are uncorrelated (what biases attention by distance alone);
- amplitude: ``|z_j| = mean_m |q_j(m)| * mean_n |k_j(n)|`` (the mean of ``|q_j(m) conj(k_j(n))|`` over all query/key
  pairs), combined as ``A_k = sum_j (alpha_kj^2 + beta_kj^2) |z_j|``: how much frequency ``w_k`` can move scores.
Scores here omit the ``1/sqrt(head_dim)`` of attention; ``stationary_scores`` includes it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from fope.analysis.capture import complex_pairs
from fope.analysis.frequencies import RotaryBasis
from fope.positions import PositionEncoding

__all__ = ["PairProducts", "StationarySpectrum", "pair_products", "stationary_scores", "stationary_spectrum"]


@dataclass(frozen=True)
class PairProducts:
    """Per query head: ``coherent`` ``z_j`` (complex128 ``(Hq, P)``), ``amplitude`` ``|z_j|`` (``(Hq, P)``), and the
    same two for the non-rotary dims summed (``(Hq,)``; zero without partial rotary)."""

    coherent: Tensor
    amplitude: Tensor
    passthrough_coherent: Tensor
    passthrough_amplitude: Tensor


@dataclass(frozen=True)
class StationarySpectrum:
    """``coherent`` ``c_k`` (complex128 ``(Hq, F)``), ``amplitude`` ``A_k`` (``(Hq, F)``), their zero-frequency terms
    ``constant_coherent`` / ``constant_amplitude`` (``(Hq,)``) and the ``frequencies`` ``w_k`` ``(F,)``."""

    frequencies: Tensor
    coherent: Tensor
    amplitude: Tensor
    constant_coherent: Tensor
    constant_amplitude: Tensor


def _per_query_head(x: Tensor, num_heads: int) -> Tensor:
    """Repeat a per-group tensor ``(G, ...)`` so query head ``h`` sees group ``h // (num_heads // G)``."""
    return x.repeat_interleave(num_heads // x.shape[0], dim=0)


def pair_products(queries: Tensor, keys: Tensor, pe: PositionEncoding) -> PairProducts:
    """``z_j`` (coherent and amplitude, on the CPU) from un-rotated queries ``(B, Hq, T, D)`` and keys
    ``(B, Hkv, T, D)``."""
    if pe.kind != "rotary":
        raise TypeError(f"pair_products needs a rotary position encoding; got kind {pe.kind!r}")
    heads = queries.shape[1]
    q_pairs = complex_pairs(queries, pe.rotary_dim, pe.layout)
    k_pairs = complex_pairs(keys, pe.rotary_dim, pe.layout)
    mean_q, mean_k = q_pairs.mean(dim=(0, 2)), _per_query_head(k_pairs.mean(dim=(0, 2)), heads)
    size_q, size_k = q_pairs.abs().mean(dim=(0, 2)), _per_query_head(k_pairs.abs().mean(dim=(0, 2)), heads)
    rest_q, rest_k = queries[..., pe.rotary_dim :].double(), keys[..., pe.rotary_dim :].double()
    rest_coherent = (rest_q.mean(dim=(0, 2)) * _per_query_head(rest_k.mean(dim=(0, 2)), heads)).sum(-1)
    rest_amplitude = (rest_q.abs().mean(dim=(0, 2)) * _per_query_head(rest_k.abs().mean(dim=(0, 2)), heads)).sum(-1)
    # small per-head results go to the CPU, where the rotary basis lives
    return PairProducts(
        (mean_q * mean_k.conj()).cpu(), (size_q * size_k).cpu(), rest_coherent.cpu(), rest_amplitude.cpu()
    )


def stationary_spectrum(products: PairProducts, basis: RotaryBasis) -> StationarySpectrum:
    """``c_k``, ``A_k`` and the zero-frequency terms of the module docstring, per query head."""
    heads = products.coherent.shape[0]
    alpha_sq = _per_query_head(basis.alpha, heads) ** 2
    beta_sq = _per_query_head(basis.beta, heads) ** 2
    constant_sq = _per_query_head(basis.constant.abs() ** 2, heads)
    z = products.coherent
    coherent = torch.einsum("hfp,hp->hf", alpha_sq.to(z.dtype), z) + torch.einsum(
        "hfp,hp->hf", beta_sq.to(z.dtype), z.conj()
    )
    amplitude = torch.einsum("hfp,hp->hf", alpha_sq + beta_sq, products.amplitude)
    constant_coherent = (constant_sq * z.real).sum(-1) + products.passthrough_coherent
    constant_amplitude = (constant_sq * products.amplitude).sum(-1) + products.passthrough_amplitude
    return StationarySpectrum(basis.frequencies, coherent, amplitude, constant_coherent, constant_amplitude)


def stationary_scores(spectrum: StationarySpectrum, distances: Tensor, head_dim: int) -> Tensor:
    """``(Re sum_k c_k e^{i w_k d} + c_0) / sqrt(head_dim)`` per query head and distance: ``(Hq, N)`` float64."""
    phase = torch.exp(1j * distances.double().unsqueeze(-1) * spectrum.frequencies)  # (N, F)
    scores = (spectrum.coherent @ phase.T).real + spectrum.constant_coherent.unsqueeze(-1)
    return scores / math.sqrt(head_dim)
