"""Under-trained dimensions: how large the un-rotated query/key pairs are, frequency by frequency.

The paper reports (Llama-2-7B) larger query/key activations in the pairs whose RoPE frequency is below the floor
``2*pi/train_length``: those pairs never complete a turn inside the training window, so for them attention is close
to position-free and the model can use them as a large, content-only channel that breaks past the training length.
"""

from __future__ import annotations

from torch import Tensor

from fope.analysis.capture import complex_pairs
from fope.positions import PositionEncoding

__all__ = ["pair_magnitudes"]


def pair_magnitudes(queries: Tensor, keys: Tensor, pe: PositionEncoding) -> tuple[Tensor, Tensor]:
    """Mean ``|q_j|`` per query head and ``|k_j|`` per key head over batch and positions: ``(Hq, P)``, ``(Hkv, P)``.

    ``|x_j| = sqrt(a^2 + b^2)`` for the pair ``(a, b)`` (the rotation does not change it).
    """
    if pe.kind != "rotary":
        raise TypeError(f"pair_magnitudes needs a rotary position encoding; got kind {pe.kind!r}")
    q_pairs = complex_pairs(queries, pe.rotary_dim, pe.layout)
    k_pairs = complex_pairs(keys, pe.rotary_dim, pe.layout)
    return q_pairs.abs().mean(dim=(0, 2)), k_pairs.abs().mean(dim=(0, 2))
