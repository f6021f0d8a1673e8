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
    torch.testing.assert_close(rope_frequencies(128, 500000.0, "float64"), expected, rtol=1e-12, atol=0)
    torch.testing.assert_close(rope_frequencies(128, 500000.0).double(), expected, rtol=3e-7, atol=0)
    assert rope_frequencies(64)[0] == 1.0 and rope_frequencies(64).dtype == torch.float32
    with pytest.raises(ValueError, match="precision must be one of"):
        rope_frequencies(64, 1e4, "float16")


@pytest.mark.parametrize(("dim", "length", "kept"), [(64, 512, 16), (128, 512, 31), (32, 128, 6), (64, 4096, 23)])
def test_kept_counts(dim, length, kept):
    assert num_kept_frequencies(rope_frequencies(dim), length) == kept
    assert num_kept_frequencies(rope_frequencies(dim, precision="float64"), length) == kept
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


def _llama3_inv_freq() -> torch.Tensor:
    """Llama-3-8B's float32 inv_freq as transformers computes it: head_dim 128, theta 500000."""
    return 1.0 / (500000.0 ** (torch.arange(0, 128, 2, dtype=torch.int64).float() / 128))


@pytest.mark.parametrize("hard", [False, True], ids=["cope", "hardclip"])
@pytest.mark.parametrize("n", [20, 1, 0, 64, 70])
def test_cope_and_hardclip_match_the_released_formula(hard, n):
    from fope.positions import build_position_encoding
    from tests.positions.reference import cope_inv_freq

    name = "hardclip" if hard else "cope"
    pe = build_position_encoding(name, head_dim=128, num_heads=8, train_length=8192, theta=500000.0, num_clipped=n)
    expected = cope_inv_freq(_llama3_inv_freq(), n, hard=hard)
    torch.testing.assert_close(
        pe.inv_freq, expected, rtol=1e-6, atol=1e-12
    )  # float32 cancellation in the reference taper near pi
    if 1 < n < 64 and not hard:  # the taper keeps the first clipped frequency and zeroes the lowest
        rope = build_position_encoding("rope", head_dim=128, num_heads=8, train_length=8192, theta=500000.0)
        assert pe.inv_freq[-1] == 0.0 and pe.inv_freq[64 - n] == rope.inv_freq[64 - n] > 0


def test_cope_default_clips_the_frequencies_below_the_floor():
    from fope.positions import build_position_encoding
    from tests.positions.reference import cope_inv_freq

    base = _llama3_inv_freq()
    below = int((base < 2 * math.pi / 8192).sum())
    assert below == 29  # Llama-3-8B at 8k: 29 of 64 periods are longer than the context (CoPE clips 20)
    cope = build_position_encoding("cope", head_dim=128, num_heads=8, train_length=8192, theta=500000.0)
    torch.testing.assert_close(
        cope.inv_freq, cope_inv_freq(base, below), rtol=1e-6, atol=1e-12
    )  # float32 cancellation in the reference taper near pi
    hard = build_position_encoding("hardclip", head_dim=64, num_heads=4, train_length=128)
    hope = build_position_encoding("hope", head_dim=64, num_heads=4, train_length=128)
    assert torch.equal(hard.inv_freq, hope.inv_freq)  # the default HardClip is the floor scheme


def test_clip_count_errors():
    from fope.positions import build_position_encoding

    with pytest.raises(ValueError, match="num_clipped must be an int >= 0"):
        build_position_encoding("cope", head_dim=64, num_heads=4, train_length=128, num_clipped=-1)
    with pytest.raises(ValueError, match="num_clipped must be an int >= 0"):
        build_position_encoding("hardclip", head_dim=64, num_heads=4, train_length=128, num_clipped=2.5)
