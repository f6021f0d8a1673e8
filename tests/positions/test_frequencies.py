"""Frequency schemes as pure functions."""

from __future__ import annotations

import math

import pytest
import torch

from fope.positions.frequencies import (
    floor_frequency,
    num_kept_frequencies,
    rope_frequencies,
    scaled_frequencies,
    yarn_scaling,
)
from tests.positions.reference import frequencies


def test_rope_frequencies_formula():
    expected = torch.tensor(frequencies(128, 500000.0), dtype=torch.float64)
    torch.testing.assert_close(rope_frequencies(128, 500000.0), expected, rtol=1e-12, atol=0)
    assert rope_frequencies(64)[0] == 1.0


@pytest.mark.parametrize(("dim", "length", "kept"), [(64, 512, 16), (128, 512, 31), (32, 128, 6), (64, 4096, 23)])
def test_kept_counts(dim, length, kept):
    assert num_kept_frequencies(rope_frequencies(dim), length) == kept
    freqs = rope_frequencies(dim)
    assert freqs[kept - 1] >= 2 * math.pi / length > (freqs[kept] if kept < dim // 2 else 0)


def test_floor_is_inclusive_for_authors_and_strict_for_intern():
    length = 64
    freqs = torch.tensor([1.0, floor_frequency(length), 0.01], dtype=torch.float64)
    assert num_kept_frequencies(freqs, length) == 2
    assert num_kept_frequencies(freqs, length, strict=True) == 1


def test_yarn_ramp_regions():
    base = rope_frequencies(64)
    scaled, factor = yarn_scaling(base, theta=1e4, rotary_dim=64, factor=8.0, original_max_position=512)
    turns = base * 512 / (2 * math.pi)
    assert torch.all(scaled[turns > 40] == base[turns > 40])  # fast pairs are kept (beta_fast = 32, truncated)
    torch.testing.assert_close(scaled[turns < 0.5], base[turns < 0.5] / 8)  # slow pairs interpolated
    assert torch.all(scaled <= base) and torch.all(scaled >= base / 8)
    assert factor == pytest.approx(1 + 0.1 * math.log(8))


def test_scaling_config_errors():
    with pytest.raises(TypeError, match="scaling must be None or a mapping"):
        scaled_frequencies(32, 1e4, ["yarn"])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"drop_fraction must be in \[0, 1\]; got 1.5"):
        scaled_frequencies(32, 1e4, {"type": "p-rope", "drop_fraction": 1.5})
    frequencies_, factor = scaled_frequencies(32, 1e4, None)
    assert factor == 1.0 and frequencies_.shape == (16,)
