"""Activation size per rotary pair."""

from __future__ import annotations

import pytest
import torch

from fope.analysis import pair_magnitudes
from fope.positions import NoPE, RoPE


def test_pair_magnitude_is_the_mean_length_of_each_pair() -> None:
    q = torch.zeros(2, 3, 5, 8)
    k = torch.zeros(2, 1, 5, 8)
    q[..., 1], q[..., 5] = 3.0, 4.0  # half layout: pair 1 is dims (1, 5): length 5
    k[0, ..., 3], k[1, ..., 3] = 1.0, -3.0  # pair 3: lengths 1 and 3 -> mean 2
    query_size, key_size = pair_magnitudes(q, k, RoPE(8))
    assert query_size.shape == (3, 4) and key_size.shape == (1, 4)
    assert query_size[:, 1].tolist() == pytest.approx([5.0] * 3)
    assert key_size[0].tolist() == pytest.approx([0.0, 0.0, 0.0, 2.0])
    interleaved, _ = pair_magnitudes(q, k, RoPE(8, layout="interleaved"))  # pairs (0,1), (4,5): lengths 3 and 4
    assert interleaved[0].tolist() == pytest.approx([3.0, 0.0, 4.0, 0.0])


def test_pair_magnitudes_needs_rotary_pairs() -> None:
    with pytest.raises(TypeError, match="kind 'none'"):
        pair_magnitudes(torch.zeros(1, 1, 2, 8), torch.zeros(1, 1, 2, 8), NoPE())
