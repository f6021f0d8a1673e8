"""Leakage along positions and the tone probe, against signals with known spectra."""

from __future__ import annotations

import math

import pytest
import torch

from fope.analysis import (
    block_stages,
    capture_activations,
    position_leakage,
    position_power_spectrum,
    probe_bins,
    tone_probe,
)
from tests.analysis.helpers import random_tokens, tiny_model

LENGTH = 64


def exponential(frequency_bin: int, length: int = LENGTH) -> torch.Tensor:
    return torch.exp(2j * math.pi * frequency_bin * torch.arange(length, dtype=torch.float64) / length)


def test_constant_pairs_have_no_energy_off_the_zero_frequency() -> None:
    pairs = torch.full((3, 2, LENGTH, 4), 1.5 - 0.5j, dtype=torch.complex128)
    away, locked = position_leakage(pairs)
    assert torch.allclose(away, torch.zeros(2, 4, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(locked, torch.zeros(2, 4, dtype=torch.float64), atol=1e-12)


def test_leakage_of_a_known_mixture() -> None:
    # 1 + 0.5 e^{i w n}: energy 1 at zero frequency, 0.25 at w -> 0.25 / 1.25 off zero, all of it position-locked
    signal = 1 + 0.5 * exponential(5)
    away, locked = position_leakage(signal.view(1, 1, LENGTH, 1).expand(4, 1, LENGTH, 1))
    assert float(away) == pytest.approx(0.2)
    assert float(locked) == pytest.approx(0.2)
    frequencies, power = position_power_spectrum(signal.view(1, 1, LENGTH, 1))
    peak = frequencies[power[0].argsort(descending=True)[:2]]
    assert sorted(peak.tolist()) == pytest.approx([0.0, 2 * math.pi * 5 / LENGTH])


def test_content_that_varies_between_sequences_is_not_position_locked() -> None:
    # each sequence a tone at its own phase: all energy off zero, but the mean over sequences cancels
    phases = torch.linspace(0, 2 * math.pi, 9)[:-1]
    pairs = torch.stack([exponential(3) * torch.exp(1j * p) for p in phases]).view(8, 1, LENGTH, 1)
    away, locked = position_leakage(pairs)
    assert float(away) == pytest.approx(1.0)
    assert float(locked) == pytest.approx(0.0, abs=1e-12)
    assert torch.isnan(position_leakage(pairs[:1])[1]).all()  # one sequence cannot tell content from position


def test_position_locked_share_removes_the_sampling_noise_of_content() -> None:
    # a position-locked tone (share 0.2 of the energy) plus white content noise independent between sequences
    generator = torch.Generator().manual_seed(0)
    noise = torch.complex(*torch.randn(2, 16, 1, 512, 1, generator=generator, dtype=torch.float64)) * math.sqrt(2)
    signal = exponential(5, 512).view(1, 1, 512, 1) + noise  # energies 1 (tone) + 4 (noise)
    away, locked = position_leakage(signal)
    assert float(away) == pytest.approx(1.0, abs=0.01)  # no zero-frequency content at all
    assert float(locked) == pytest.approx(0.2, abs=0.02)


def test_identity_shows_no_leakage_and_no_distortion() -> None:
    probe = tone_probe(lambda x: x, input_dim=3, bins=[3, 5, 9], length=LENGTH)
    assert probe.leakage == pytest.approx(0.0, abs=1e-12)
    assert probe.distortion == pytest.approx(0.0, abs=1e-12)
    assert probe.fundamental == pytest.approx(1.0)


def test_a_rotation_mixing_two_channels_leaks_the_smaller_share() -> None:
    angle = 0.3
    mix = torch.tensor([[math.cos(angle), math.sin(angle)], [-math.sin(angle), math.cos(angle)]])
    probe = tone_probe(lambda x: x @ mix.T, input_dim=2, bins=[3, 5], length=LENGTH)
    assert probe.leakage == pytest.approx(math.sin(angle) ** 2, rel=1e-5)
    assert probe.distortion == pytest.approx(0.0, abs=1e-9)


def test_square_law_puts_a_pure_tone_on_its_second_harmonic() -> None:
    frequency_bin = 5
    probe = tone_probe(lambda x: x**2, input_dim=1, bins=[frequency_bin], length=LENGTH)
    oscillating = probe.spectrum[1:]
    assert int(oscillating.argmax()) + 1 == 2 * frequency_bin
    assert probe.harmonics[2] == pytest.approx(1.0)
    assert probe.distortion == pytest.approx(1.0)
    assert probe.leakage == pytest.approx(0.0)


def test_square_law_around_an_operating_point_has_the_closed_form_distortion() -> None:
    # (1 + a cos)^2 = 1 + a^2/2 + 2a cos + (a^2/2) cos 2x: energies 2a^2 (fundamental) and a^4/8 (second harmonic)
    a = 0.5
    probe = tone_probe(lambda x: x**2, input_dim=1, bins=[3], length=LENGTH, amplitude=a, offset=torch.ones(1))
    expected = (a**4 / 8) / (2 * a**2 + a**4 / 8)
    assert probe.distortion == pytest.approx(expected, rel=1e-5)
    assert probe.harmonics[2] == pytest.approx(expected, rel=1e-5)
    assert probe.harmonics[3] == pytest.approx(0.0, abs=1e-9)


def test_probe_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match=r"bins must be distinct ints in \(0, length/2\)"):
        tone_probe(lambda x: x, input_dim=1, bins=[40], length=LENGTH)
    with pytest.raises(ValueError, match="channels must be distinct ints in"):
        tone_probe(lambda x: x, input_dim=2, bins=[1, 3], channels=[0, 2], length=LENGTH)
    with pytest.raises(ValueError, match="need length >= 128"):
        probe_bins(16, 64)
    assert probe_bins(3, 64) == [1, 5, 9]


def test_block_stages_compute_what_the_model_computes() -> None:
    model = tiny_model("rope", qk_norm=True)
    activations = capture_activations(model, random_tokens(12, batch=1), block_inputs=True)
    block, inputs = model.layers[1], activations.block_inputs[1][0]
    stages = block_stages(block)
    with torch.no_grad():
        qk = stages["qk"](inputs)
        expected_qk = torch.cat(
            (activations.queries[1][0].transpose(0, 1).flatten(-2), activations.keys[1][0].transpose(0, 1).flatten(-2)),
            dim=-1,
        )
        assert torch.allclose(qk, expected_qk, atol=1e-6)
        assert torch.allclose(stages["mlp"](inputs), block.mlp(block.mlp_norm(inputs)))
        hidden = stages["mlp_activation"](inputs)
        assert torch.allclose(block.mlp.down_proj(hidden), stages["mlp"](inputs), atol=1e-6)


def test_the_mlp_of_a_block_distorts_and_a_linear_stage_does_not() -> None:
    model = tiny_model("rope")
    block = model.layers[0]
    offset = torch.randn(64, generator=torch.Generator().manual_seed(0))
    common = {"input_dim": 64, "bins": probe_bins(8, 256), "channels": list(range(0, 64, 8)), "length": 256}
    with torch.no_grad():
        linear = tone_probe(block.mlp.up_gate_proj, offset=offset, **common)
        mlp = tone_probe(block_stages(block)["mlp"], offset=offset, amplitude=1.0, **common)
    assert linear.distortion < 1e-6 and linear.leakage > 0.3
    assert mlp.distortion > 1e-3
