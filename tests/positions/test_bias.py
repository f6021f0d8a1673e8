"""ALiBi slopes and biases, NoPE."""

from __future__ import annotations

import pytest
import torch

from fope.positions import ALiBi, NoPE, alibi_slopes


def test_power_of_two_slopes_are_geometric():
    torch.testing.assert_close(alibi_slopes(8), torch.tensor([2.0 ** -(h + 1) for h in range(8)], dtype=torch.float64))
    torch.testing.assert_close(alibi_slopes(4), torch.tensor([4.0 ** -(h + 1) for h in range(4)], dtype=torch.float64))


@pytest.mark.parametrize(
    ("num_heads", "expected"),
    [
        # the ALiBi authors' get_slopes(): slopes of 4 heads, then every other slope of 8 heads
        (6, [1 / 4, 1 / 16, 1 / 64, 1 / 256, 1 / 2, 1 / 8]),
        (12, [2.0 ** -(h + 1) for h in range(8)] + [2.0 ** -(h + 0.5) for h in range(4)]),
    ],
)
def test_non_power_of_two_slopes(num_heads, expected):
    torch.testing.assert_close(alibi_slopes(num_heads), torch.tensor(expected, dtype=torch.float64))


def test_bias_values_and_shapes():
    alibi = ALiBi(4)
    bias = alibi.attention_bias(torch.arange(3) + 10, torch.arange(13))
    assert bias.shape == (4, 3, 13) and bias.dtype == torch.float32
    for h, slope in enumerate(alibi_slopes(4).tolist()):
        for i in range(3):
            for j in range(13):
                assert bias[h, i, j].item() == pytest.approx(-slope * abs(10 + i - j))
    batched = alibi.attention_bias(torch.tensor([[0, 1], [5, 6]]), torch.arange(7), dtype=torch.bfloat16)
    assert batched.shape == (2, 4, 2, 7) and batched.dtype == torch.bfloat16
    torch.testing.assert_close(
        batched[1].float(), alibi.attention_bias(torch.tensor([5, 6]), torch.arange(7)), atol=0.05, rtol=1e-2
    )


def test_alibi_leaves_q_and_k_alone_and_checks_heads():
    q, k = torch.randn(1, 4, 5, 8), torch.randn(1, 2, 5, 8)
    q_out, k_out = ALiBi(4)(q, k)
    assert q_out is q and k_out is k
    with pytest.raises(ValueError, match="num_heads=8"):
        ALiBi(8)(q, k)
    with pytest.raises(ValueError, match="positions must be >= 0"):
        ALiBi(4).attention_bias(torch.tensor([-1, 0]), torch.arange(2))
    with pytest.raises(ValueError, match="num_heads must be an int >= 1; got 0"):
        ALiBi(0)


def test_alibi_slopes_stay_float32_after_cast():
    alibi = ALiBi(8).to(torch.float16)
    assert alibi.slopes.dtype == torch.float32


def test_nope_is_the_identity_with_no_bias():
    q, k = torch.randn(2, 4, 5, 8), torch.randn(2, 4, 5, 8)
    nope = NoPE()
    q_out, k_out = nope(q, k, torch.arange(5))
    assert q_out is q and k_out is k
    assert nope.attention_bias(torch.arange(5), torch.arange(5)) is None
    with pytest.raises(TypeError, match="integer"):
        nope(q, k, torch.ones(5))
