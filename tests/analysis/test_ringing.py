"""Score by distance and its spectrum against the closed form ``mean_j cos(w_j d)`` of rotary schemes."""

from __future__ import annotations

import math

import pytest
import torch

from fope.analysis.ringing import plot_ringing, ringing_spectrum, score_by_distance
from fope.positions import build_position_encoding


def closed_form(inv_freq: torch.Tensor, length: int) -> torch.Tensor:
    """``mean_j cos(w_j d)`` for d = 0 .. length-1, in float64 (independent of fope's rotation)."""
    distances = torch.arange(length, dtype=torch.float64)
    return torch.cos(distances[:, None] * inv_freq.double()[None, :]).mean(-1)


@pytest.mark.parametrize("name", ["rope", "hardclip", "cope", "hope"])
@pytest.mark.parametrize("layout", ["half", "interleaved"])
def test_rotary_scores_follow_the_closed_form(name, layout):
    pe = build_position_encoding(name, head_dim=32, num_heads=4, num_kv_heads=2, train_length=64, layout=layout)
    scores = score_by_distance(pe, 256)
    torch.testing.assert_close(scores.double(), closed_form(pe.inv_freq, 256), atol=2e-5, rtol=0)
    assert scores[0] == pytest.approx(1.0, abs=1e-6)  # the same vector at the same position


def test_fope_identity_coefficients_equal_its_clipped_rope_and_noise_moves_it():
    plain = build_position_encoding(
        "fope", head_dim=32, num_heads=2, train_length=64, sigma=0.0, output_dim="square", zero_pad="identity"
    )
    hope = build_position_encoding("hope", head_dim=32, num_heads=2, train_length=64)
    torch.testing.assert_close(score_by_distance(plain, 128), score_by_distance(hope, 128), atol=2e-6, rtol=0)
    noisy = build_position_encoding("fope", head_dim=32, num_heads=2, train_length=64, seed=0)
    assert (score_by_distance(noisy, 128) - score_by_distance(hope, 128)).abs().max() > 1e-3


def test_the_spectrum_peaks_at_the_encodings_frequency(tmp_path):
    pe = build_position_encoding("p-rope", head_dim=4, num_heads=1, train_length=64, drop_fraction=0.5)
    (w,) = [value for value in pe.inv_freq.tolist() if value > 0]  # one pair rotates at w = 1 rad / token
    frequencies, amplitude = ringing_spectrum(score_by_distance(pe, 512))
    assert frequencies[amplitude.argmax()] == pytest.approx(w / (2 * math.pi), abs=1 / 512)
    curves = {"rope": score_by_distance(build_position_encoding("rope", head_dim=32, num_heads=1), 128)}
    assert plot_ringing(curves, tmp_path / "ringing.png", train_length=64).stat().st_size > 0


def test_bias_schemes_are_refused():
    with pytest.raises(ValueError, match="needs a rotary position encoding"):
        score_by_distance(build_position_encoding("alibi", num_heads=4), 16)
