"""The attention spectrum against closed forms."""

from __future__ import annotations

import math

import pytest
import torch

from fope.analysis import (
    PairProducts,
    attention_statistics,
    capture_activations,
    pair_products,
    rotary_basis,
    stationary_scores,
    stationary_spectrum,
)
from fope.positions import ALiBi, FoPE, RoPE
from tests.analysis.helpers import TRAIN_LENGTH, single_pair_qk, tiny_model


@pytest.mark.parametrize(("q_pair", "k_pair"), [(1 + 0j, 1 + 0j), (1 + 1j, 2 + 0j), (0.5 - 2j, -1 + 0.5j)])
def test_one_nonzero_pair_gives_one_peak_and_a_cosine_in_distance(q_pair: complex, k_pair: complex) -> None:
    head_dim, pair, length = 16, 2, 96
    pe = RoPE(head_dim)
    q, k = single_pair_qk(head_dim, pair, q_pair, k_pair, length)
    spectrum = stationary_spectrum(pair_products(q, k, pe), rotary_basis(pe))
    z = q_pair * k_pair.conjugate()
    expected = torch.zeros(1, head_dim // 2, dtype=torch.complex128)
    expected[0, pair] = z
    assert torch.allclose(spectrum.coherent, expected, atol=1e-6)
    assert torch.allclose(spectrum.amplitude, expected.abs(), atol=1e-6)
    assert float(spectrum.constant_coherent) == pytest.approx(0.0)
    # score(d) = Re(z e^{i w d}) / sqrt(D), measured through the real rotation and explicit attention
    w = pe.inv_freq[pair].double()
    d = torch.arange(length, dtype=torch.float64)
    closed_form = (z.real * torch.cos(w * d) - z.imag * torch.sin(w * d)) / math.sqrt(head_dim)
    assert torch.allclose(stationary_scores(spectrum, d, head_dim)[0], closed_form, atol=1e-6)
    measured = attention_statistics(q, k, pe).logit_by_distance[0]
    assert torch.allclose(measured, closed_form, atol=2e-4)


def test_untrained_rope_model_with_one_pair_matches_the_closed_form() -> None:
    model = tiny_model("rope", num_layers=1)
    head_dim, pair = 16, 1
    weight = model.layers[0].attention.qkv_proj.weight.data
    d_model = weight.shape[1]
    weight.zero_()
    # query head 0 and key head 0 read pair 1 (dims 1 and 9) from the input; every other row stays zero
    direction = torch.randn(4, d_model, generator=torch.Generator().manual_seed(0))
    weight[pair], weight[pair + head_dim // 2] = direction[0], direction[1]
    keys_at = 4 * head_dim
    weight[keys_at + pair], weight[keys_at + pair + head_dim // 2] = direction[2], direction[3]
    tokens = torch.full((1, 80), 7)  # one token repeated: layer 0's q and k are the same at every position
    activations = capture_activations(model, tokens)
    pe = model.position_encodings()[0]
    spectrum = stationary_spectrum(pair_products(activations.queries[0], activations.keys[0], pe), rotary_basis(pe))
    peak = spectrum.amplitude[0]
    assert int(peak.argmax()) == pair and float(peak.max()) > 0
    assert torch.allclose(peak[torch.arange(8) != pair], torch.zeros(7, dtype=torch.float64))
    assert torch.allclose(spectrum.amplitude[1:], torch.zeros(3, 8, dtype=torch.float64))
    q = activations.queries[0][0, 0, 0]
    k = activations.keys[0][0, 0, 0]
    z = complex(q[pair], q[pair + 8]) * complex(k[pair], k[pair + 8]).conjugate()
    w = float(pe.inv_freq[pair])
    d = torch.arange(80, dtype=torch.float64)
    closed_form = (z.real * torch.cos(w * d) - z.imag * torch.sin(w * d)) / math.sqrt(head_dim)
    measured = attention_statistics(activations.queries[0], activations.keys[0], pe).logit_by_distance[0]
    assert torch.allclose(measured, closed_form, atol=1e-4 * (1 + abs(z)))


def test_fope_stationary_spectrum_is_the_average_over_absolute_position() -> None:
    pe = FoPE(head_dim=16, num_heads=1, train_length=TRAIN_LENGTH, sigma=0.6, seed=0)
    generator = torch.Generator().manual_seed(0)
    z = torch.complex(torch.randn(1, 8, generator=generator), torch.randn(1, 8, generator=generator)).to(
        torch.complex128
    )
    products = PairProducts(z, z.abs(), torch.zeros(1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64))
    spectrum = stationary_spectrum(products, rotary_basis(pe))
    distances = torch.tensor([0, 3, 17, 50])
    count = 200_000
    cos, sin = pe.features(torch.arange(count + 50))
    features = torch.complex(cos[0, 0].double(), sin[0, 0].double())  # (T, P)
    # S(m, m - d) = sum_j Re(z_j f_j(m) conj f_j(m - d)), averaged over m
    averages = []
    for d in distances.tolist():
        product = features[50 : 50 + count] * features[50 - d : 50 - d + count].conj()
        averages.append(float((product * z[0]).real.sum(-1).mean()))
    predicted = stationary_scores(spectrum, distances, 16)[0] * 4
    assert predicted.tolist() == pytest.approx(averages, abs=0.02)
    # and the absolute-position terms are really there: single positions differ from the average
    single = (features[60] * features[60 - 17].conj() * z[0]).real.sum()
    assert abs(float(single) - averages[2]) > 0.05


def test_fope_with_identity_coefficients_and_no_floor_has_the_rope_spectrum() -> None:
    generator = torch.Generator().manual_seed(1)
    q, k = torch.randn(2, 2, 40, 16, generator=generator), torch.randn(2, 2, 40, 16, generator=generator) + 0.3
    rope = RoPE(16)
    fope = FoPE(head_dim=16, num_heads=2, train_length=TRAIN_LENGTH, sigma=0.0, clip_floor=False, output_dim="square")
    rope_spectrum = stationary_spectrum(pair_products(q, k, rope), rotary_basis(rope))
    fope_spectrum = stationary_spectrum(pair_products(q, k, fope), rotary_basis(fope))
    assert torch.allclose(rope_spectrum.coherent, fope_spectrum.coherent)
    assert torch.allclose(rope_spectrum.amplitude, fope_spectrum.amplitude)


def test_amplitude_counts_pairs_whose_mean_cancels() -> None:
    # q_j alternates +1, -1 over positions: no coherent coefficient, amplitude |q||k| = 1
    pe = RoPE(16)
    q, k = single_pair_qk(16, 0, 1 + 0j, 1 + 0j, 10)
    q = q * torch.tensor([1.0, -1.0] * 5).view(1, 1, 10, 1)
    products = pair_products(q, k, pe)
    assert abs(complex(products.coherent[0, 0])) == pytest.approx(0.0)
    assert float(products.amplitude[0, 0]) == pytest.approx(1.0)


def test_grouped_query_heads_use_their_key_group() -> None:
    pe = RoPE(8)
    q = torch.zeros(1, 4, 5, 8)
    k = torch.zeros(1, 2, 5, 8)
    q[..., 0] = 1.0
    k[:, 0, :, 0], k[:, 1, :, 0] = 2.0, 3.0
    coherent = pair_products(q, k, pe).coherent[:, 0].real
    assert coherent.tolist() == pytest.approx([2.0, 2.0, 3.0, 3.0])


def test_non_rotary_dims_and_zero_frequency_pairs_form_the_constant() -> None:
    # partial rotary: dims 8..15 pass through and add sum_r mean q_r mean k_r to the constant term
    pe = RoPE(16, rotary_dim=8)
    q, k = torch.zeros(1, 1, 4, 16), torch.zeros(1, 1, 4, 16)
    q[..., 10], k[..., 10] = 2.0, 1.5
    spectrum = stationary_spectrum(pair_products(q, k, pe), rotary_basis(pe))
    assert float(spectrum.constant_coherent[0]) == pytest.approx(3.0)
    assert torch.count_nonzero(spectrum.coherent) == 0
    # FoPE "official" zero-frequency pairs are c = s = 1: |1 + i|^2 = 2 times Re(z)
    fope = FoPE(head_dim=16, num_heads=1, train_length=TRAIN_LENGTH, sigma=0.0)
    q, k = single_pair_qk(16, 6, 1 + 0j, 1 + 0j, 4)
    assert float(
        stationary_spectrum(pair_products(q, k, fope), rotary_basis(fope)).constant_coherent[0]
    ) == pytest.approx(2.0)


def test_pair_products_refuses_bias_schemes() -> None:
    with pytest.raises(TypeError, match="rotary position encoding; got kind 'bias'"):
        pair_products(torch.zeros(1, 4, 3, 8), torch.zeros(1, 4, 3, 8), ALiBi(4))
