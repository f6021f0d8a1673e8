"""Frequency map and the exponential form of rotary features."""

from __future__ import annotations

import math

import pytest
import torch

from fope.analysis import coefficient_mixing, frequency_map, rotary_basis
from fope.positions import ALiBi, FoPE, RoPE


@pytest.mark.parametrize(("head_dim", "kept"), [(64, 16), (128, 31)])
def test_fope_split_matches_the_spec_worked_numbers(head_dim: int, kept: int) -> None:
    fmap = frequency_map(FoPE(head_dim=head_dim, num_heads=2, train_length=512, seed=0), 512)
    assert fmap["num_kept"] == kept
    assert sum(fmap["fope_keeps"]) == kept and len(fmap["fope_keeps"]) == head_dim // 2
    assert fmap["fope_keeps"] == [not below for below in fmap["below_floor"]]
    assert fmap["frequencies"][kept:] == [0.0] * (head_dim // 2 - kept)
    # kept frequencies turn at least once inside the window; zeroed ones do not
    assert max(fmap["period_over_train_length"][:kept]) <= 1.0 < min(fmap["period_over_train_length"][kept:])


def test_rope_map_marks_under_trained_pairs_and_what_fope_would_keep() -> None:
    fmap = frequency_map(RoPE(64), 512)
    assert fmap["num_kept"] == 16 and sum(fmap["fope_keeps"]) == 16
    assert fmap["pair_under_trained"] == [False] * 16 + [True] * 16
    assert fmap["floor"] == pytest.approx(2 * math.pi / 512)
    assert fmap["periods"][0] == pytest.approx(2 * math.pi)


def test_scaled_rope_reports_the_frequencies_it_uses() -> None:
    fmap = frequency_map(RoPE(64, scaling={"type": "linear", "factor": 4}), 512)
    assert fmap["frequencies"] == pytest.approx([w / 4 for w in fmap["base_frequencies"]])


def test_fope_pairs_follow_the_strided_identity() -> None:
    # D=64, L=2048: K=21 kept, d_out=min(21, 16)=16, stride ceil(21/16)=2; pairs 11..15 have no own row (2j >= 21)
    pe = FoPE(head_dim=64, num_heads=1, train_length=2048, seed=0)
    fmap = frequency_map(pe, 2048)
    assert (fmap["num_kept"], fmap["output_dim"]) == (21, 16)
    assert fmap["pair_frequencies"][:11] == pytest.approx([fmap["base_frequencies"][2 * j] for j in range(11)])
    assert fmap["pair_frequencies"][11:16] == [None] * 5
    assert fmap["pair_frequencies"][16:] == [0.0] * 16


def test_coefficient_mixing_is_zero_for_identity_and_known_for_a_constructed_matrix() -> None:
    pe = FoPE(head_dim=16, num_heads=2, train_length=64, sigma=0.0)
    assert torch.equal(coefficient_mixing(pe), torch.zeros(2, 3))
    pe.cos_coef[1, :, 0] = torch.tensor([1.0, 1.0, 0.0])
    pe.sin_coef[1, :, 0] = torch.tensor([1.0, 0.0, 1.0])
    # pair 0's own frequency is row 0: energy 2 of 4 there
    assert coefficient_mixing(pe)[1, 0] == pytest.approx(0.5)


@pytest.mark.parametrize(
    "pe",
    [
        RoPE(16),
        RoPE(16, layout="interleaved", scaling={"type": "yarn", "factor": 4, "original_max_position": 64}),
        FoPE(head_dim=16, num_heads=4, num_kv_heads=2, train_length=64, seed=1),
        FoPE(head_dim=16, num_heads=2, train_length=64, seed=2, zero_pad="identity", output_dim="square"),
        FoPE(head_dim=16, num_heads=2, train_length=64, fourier=False),
        FoPE(head_dim=32, num_heads=2, train_length=64, seed=3, share_heads=True, rotary_dim=24),
        FoPE(head_dim=16, num_heads=2, train_length=64, seed=4, scaling={"type": "linear", "factor": 2}),
    ],
    ids=[
        "rope",
        "yarn-interleaved",
        "fope-gqa",
        "fope-identity-square",
        "fope-no-fs",
        "fope-shared-partial",
        "fope-pi",
    ],
)
def test_rotary_basis_reproduces_the_module_features(pe: torch.nn.Module) -> None:
    positions = torch.tensor([0, 1, 2, 7, 63, 64, 500, 4097])
    cos, sin = pe.features(positions)
    basis = rotary_basis(pe).features(positions)
    expected = torch.complex(cos[0].double(), sin[0].double())
    assert torch.allclose(basis, expected.expand_as(basis), atol=5e-4 * (1 + basis.abs().max()))


def test_frequency_map_refuses_non_rotary_modules_and_bad_lengths() -> None:
    with pytest.raises(TypeError, match="RoPE or FoPE"):
        frequency_map(ALiBi(4), 64)
    with pytest.raises(ValueError, match="train_length must be a positive int; got 0"):
        frequency_map(RoPE(16), 0)
    with pytest.raises(TypeError, match="RoPE or FoPE"):
        rotary_basis(ALiBi(4))
