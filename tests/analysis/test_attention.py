"""Explicit attention weights against the model's attention, and their statistics against closed forms."""

from __future__ import annotations

import math

import pytest
import torch

from fope.analysis import attention_blocks, attention_statistics, context_behaviour, distance_buckets
from fope.analysis.attention import summarize_attention
from fope.model import attend
from fope.positions import ALiBi, FoPE, NoPE, RoPE
from tests.analysis.helpers import TRAIN_LENGTH, random_tokens, tiny_model

HEADS, KV_HEADS, LENGTH, DIM = 4, 2, 37, 16


@pytest.mark.parametrize(
    "pe",
    [
        RoPE(DIM),
        FoPE(head_dim=DIM, num_heads=HEADS, num_kv_heads=KV_HEADS, train_length=TRAIN_LENGTH, seed=0),
        ALiBi(HEADS),
        NoPE(),
    ],
    ids=["rope", "fope", "alibi", "nope"],
)
def test_explicit_weights_reproduce_the_model_attention(pe: torch.nn.Module) -> None:
    generator = torch.Generator().manual_seed(0)
    q = torch.randn(2, HEADS, LENGTH, DIM, generator=generator)
    k = torch.randn(2, KV_HEADS, LENGTH, DIM, generator=generator)
    v = torch.randn(2, KV_HEADS, LENGTH, DIM, generator=generator)
    positions = torch.arange(LENGTH)
    q_rot, k_rot = pe(q, k, positions)
    expected = attend(q_rot, k_rot, v, pe, positions, positions, max_bias_bytes=2**20)
    v_per_head = v.repeat_interleave(HEADS // KV_HEADS, dim=1)
    blocks = list(attention_blocks(q, k, pe, max_block_bytes=2 * 4 * HEADS * LENGTH * 5))  # 5 queries per block
    assert len(blocks) == math.ceil(LENGTH / 5)
    outputs = [probabilities @ v_per_head[:, :, : probabilities.shape[-1]] for _, _, probabilities in blocks]
    assert torch.allclose(torch.cat(outputs, dim=2), expected, atol=1e-5)


def test_uniform_attention_has_entropy_log_n_and_known_mass() -> None:
    q = torch.zeros(1, 2, 20, 8)  # zero queries: every visible key gets the same score
    k = torch.randn(1, 2, 20, 8, generator=torch.Generator().manual_seed(0))
    stats = attention_statistics(q, k, RoPE(8), max_block_bytes=1)
    positions = torch.arange(20, dtype=torch.float64)
    assert torch.allclose(stats.entropy_by_position, torch.log(positions + 1).expand(2, 20), atol=1e-5)
    # query m gives 1 / (m + 1) to each distance d <= m; the mean over the 20 queries
    expected_mass = torch.tensor([sum(1 / (m + 1) for m in range(d, 20)) / 20 for d in range(20)], dtype=torch.float64)
    assert torch.allclose(stats.mass_by_distance, expected_mass.expand(2, 20), atol=1e-6)
    summary = summarize_attention([stats], train_length=8)
    assert summary["normalized_entropy"][0] == pytest.approx([1.0, 1.0], abs=1e-5)
    assert summary["mass_beyond_train_length"][0][0] == pytest.approx(float(expected_mass[8:].sum()), abs=1e-6)
    assert sum(summary["mass_by_bucket"][0][0]) == pytest.approx(1.0)


def test_alibi_logits_by_distance_are_the_bias_and_chunking_changes_nothing() -> None:
    pe = ALiBi(HEADS)
    q = torch.zeros(1, HEADS, 30, 8)
    k = torch.randn(1, HEADS, 30, 8, generator=torch.Generator().manual_seed(0))
    whole = attention_statistics(q, k, pe)
    chunked = attention_statistics(q, k, pe, max_block_bytes=1)
    expected = -pe.slopes.double().unsqueeze(-1) * torch.arange(30, dtype=torch.float64)
    assert torch.allclose(whole.logit_by_distance, expected, atol=1e-5)
    for name in ("entropy_by_position", "mass_by_distance", "logit_by_distance"):
        assert torch.allclose(getattr(whole, name), getattr(chunked, name), atol=1e-6)


def test_distance_buckets_double() -> None:
    assert distance_buckets(1) == [(0, 1)]
    assert distance_buckets(8) == [(0, 1), (1, 2), (2, 4), (4, 8)]
    assert distance_buckets(10) == [(0, 1), (1, 2), (2, 4), (4, 8), (8, 10)]


def test_context_behaviour_reads_prefixes_of_the_same_text() -> None:
    model = tiny_model("alibi")
    tokens = random_tokens(4 * 16, batch=1)
    behaviour = context_behaviour(model, tokens, train_length=16, multiples=(1, 4))
    first, last = behaviour["contexts"]
    assert (first["length"], last["length"]) == (16, 64)
    assert len(last["entropy"]) == 2 and len(last["entropy"][0]) == 4
    assert first["mass_beyond_train_length"] == [[0.0] * 4] * 2
    assert all(0 < mass < 1 for row in last["mass_beyond_train_length"] for mass in row)
    with pytest.raises(ValueError, match=r"token_ids must be \(batch, >= 128\)"):
        context_behaviour(model, tokens, train_length=16, multiples=(8,))
