"""RoPE and apply_rotary: complex-number reference, transformers parity, layouts, partial rotary, scaling."""

from __future__ import annotations

import math

import pytest
import torch

from fope.positions import FoPE, RoPE, apply_rotary, rotate_half
from tests.positions.reference import frequencies, rope_reference


def qk(batch=2, q_heads=4, kv_heads=2, length=7, dim=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, q_heads, length, dim, generator=g), torch.randn(batch, kv_heads, length, dim, generator=g)


@pytest.mark.parametrize("layout", ["half", "interleaved"])
def test_rope_matches_complex_reference(layout):
    q, k = qk()
    positions = torch.randint(0, 3000, (2, 7), generator=torch.Generator().manual_seed(0))
    q_out, k_out = RoPE(32, layout=layout)(q, k, positions)
    freqs = frequencies(32, 1e4)
    torch.testing.assert_close(q_out.double(), rope_reference(q, positions, freqs, layout=layout), atol=1e-3, rtol=0)
    torch.testing.assert_close(k_out.double(), rope_reference(k, positions, freqs, layout=layout), atol=1e-3, rtol=0)


def test_apply_rotary_is_the_rotate_half_formula():
    x = torch.randn(2, 3, 5, 16)
    angles = torch.randn(1, 1, 5, 8)
    cos, sin = angles.cos(), angles.sin()
    expected = x * torch.cat((cos, cos), -1) + rotate_half(x) * torch.cat((sin, sin), -1)
    torch.testing.assert_close(apply_rotary(x, cos, sin, "half"), expected)


def test_partial_rotary_passes_the_rest_through():
    q, k = qk(dim=32)
    q_out, k_out = RoPE(32, rotary_dim=16)(q, k)
    assert torch.equal(q_out[..., 16:], q[..., 16:]) and torch.equal(k_out[..., 16:], k[..., 16:])
    torch.testing.assert_close(q_out[..., :16], RoPE(16)(q[..., :16].contiguous(), k[..., :16].contiguous())[0])


def test_rope_scores_depend_on_distance_only():
    q, k = qk(batch=1, q_heads=2, kv_heads=2, length=6)
    rope = RoPE(32)

    def scores(offset):
        a, b = rope(q, k, torch.arange(6) + offset)
        return a @ b.transpose(-1, -2)

    torch.testing.assert_close(scores(0), scores(1234), atol=2e-4, rtol=1e-4)


def test_rope_preserves_norms():
    q, k = qk()
    q_out, _ = RoPE(32)(q, k, torch.arange(7) * 100)
    torch.testing.assert_close(q_out.norm(dim=-1), q.norm(dim=-1))


def _hf_rope(head_dim: int, rope_parameters: dict, positions: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    transformers = pytest.importorskip("transformers")
    from transformers.models.llama import modeling_llama

    config = transformers.LlamaConfig(
        hidden_size=head_dim * 2,
        num_attention_heads=2,
        head_dim=head_dim,
        max_position_embeddings=4096,
        rope_parameters={"rope_theta": 10000.0, **rope_parameters},
    )
    rotary = modeling_llama.LlamaRotaryEmbedding(config)
    cos, sin = rotary(x, positions.unsqueeze(0))
    out, _ = modeling_llama.apply_rotary_pos_emb(x, x, cos, sin)
    return out


@pytest.mark.parametrize(
    ("scaling", "hf_parameters"),
    [
        (None, {"rope_type": "default"}),
        ({"type": "linear", "factor": 4.0}, {"rope_type": "linear", "factor": 4.0}),
        (
            {"type": "yarn", "factor": 16.0, "original_max_position": 512},
            {"rope_type": "yarn", "factor": 16.0, "original_max_position_embeddings": 512},
        ),
        (
            {"type": "yarn", "factor": 4.0, "original_max_position": 256, "beta_fast": 16, "beta_slow": 2},
            {
                "rope_type": "yarn",
                "factor": 4.0,
                "original_max_position_embeddings": 256,
                "beta_fast": 16,
                "beta_slow": 2,
            },
        ),
    ],
)
def test_parity_with_transformers(scaling, hf_parameters):
    x = torch.randn(1, 2, 9, 64, generator=torch.Generator().manual_seed(0))
    positions = torch.arange(9) * 97
    ours, _ = RoPE(64, scaling=scaling)(x, x, positions)
    torch.testing.assert_close(ours, _hf_rope(64, hf_parameters, positions, x), atol=1e-4, rtol=1e-4)


def test_ntk_keeps_the_highest_and_interpolates_the_lowest_frequency():
    plain, ntk = RoPE(64), RoPE(64, scaling={"type": "ntk", "factor": 8.0})
    torch.testing.assert_close(ntk.inv_freq[0], plain.inv_freq[0])
    torch.testing.assert_close(ntk.inv_freq[-1], plain.inv_freq[-1] / 8, rtol=1e-5, atol=0)
    assert torch.all(ntk.inv_freq <= plain.inv_freq)


def test_yarn_attention_factor_scales_q_and_k():
    q, k = qk()
    options = {"type": "yarn", "factor": 8.0, "original_max_position": 512}
    yarn = RoPE(32, scaling=options)
    cold = RoPE(32, scaling={**options, "attention_factor": 1.0})
    factor = 0.1 * math.log(8) + 1
    assert yarn.attention_factor == pytest.approx(factor)
    torch.testing.assert_close(yarn(q, k)[0], cold(q, k)[0] * factor)


def test_p_rope_makes_the_lowest_frequencies_position_free():
    rope = RoPE(32, scaling={"type": "p-rope", "drop_fraction": 0.25})
    assert torch.all(rope.inv_freq[-4:] == 0) and torch.all(rope.inv_freq[:-4] > 0)
    q, k = qk()
    q_out, _ = rope(q, k, torch.arange(7) + 500)
    dropped = [12, 13, 14, 15, 28, 29, 30, 31]  # pairs (j, j + 16) for the 4 lowest frequencies
    assert torch.equal(q_out[..., dropped], q[..., dropped])


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_inputs_keep_positions_distinct(dtype):
    rope = RoPE(32)
    x = torch.randn(32).expand(1, 1, 2, 32).to(dtype)
    out, _ = rope(x, x, torch.tensor([2000, 2001]))
    assert out.dtype == dtype
    assert not torch.equal(out[0, 0, 0], out[0, 0, 1])
    exact, _ = rope(x.float(), x.float(), torch.tensor([2000, 2001]))
    torch.testing.assert_close(out.float(), exact, atol=5e-2, rtol=2e-2)
    rope.to(dtype)
    assert rope.inv_freq.dtype == torch.float32


def test_compile_fullgraph():
    rope = RoPE(32, scaling={"type": "yarn", "factor": 4.0, "original_max_position": 64})
    q, k = qk()
    compiled = torch.compile(rope, fullgraph=True)
    for a, b in zip(compiled(q, k), rope(q, k), strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match=r"head_dim must be even.*got 33"):
        RoPE(33)
    with pytest.raises(ValueError, match="rotary_dim must be even and <= head_dim=32; got 48"):
        RoPE(32, rotary_dim=48)
    with pytest.raises(ValueError, match=r"theta must be > 1.0; got 1.0"):
        RoPE(32, theta=1.0)
    with pytest.raises(TypeError, match=r"scaling type 'yarn' needs \['original_max_position'\]"):
        RoPE(32, scaling={"type": "yarn", "factor": 2.0})
    with pytest.raises(TypeError, match=r"does not accept \['beta'\]"):
        RoPE(32, scaling={"type": "linear", "factor": 2.0, "beta": 1})
    with pytest.raises(ValueError, match=r"scaling\['factor'\] must be > 0.0; got -2"):
        RoPE(32, scaling={"type": "linear", "factor": -2})
    # not finite, zero, of the wrong type: each refused by name (NaN factors made every rotated q and k NaN)
    yarn = {"type": "yarn", "factor": 4, "original_max_position": 64}
    refused = [
        ({"type": "linear", "factor": float("nan")}, r"scaling\['factor'\] must be a finite number; got nan"),
        ({"type": "linear", "factor": float("inf")}, r"scaling\['factor'\] must be a finite number; got inf"),
        ({**yarn, "attention_factor": 0}, r"scaling\['attention_factor'\] must be > 0.0; got 0"),
        ({**yarn, "original_max_position": float("nan")}, r"scaling\['original_max_position'\] must be a finite"),
        ({**yarn, "beta_fast": 0}, r"scaling\['beta_fast'\] must be > 0.0; got 0"),
        ({**yarn, "beta_fast": 2, "beta_slow": 3}, r"yarn beta_fast must be above beta_slow"),
        ({**yarn, "truncate": "no"}, r"scaling\['truncate'\] must be True or False; got 'no'"),
        ({"type": "p-rope", "drop_fraction": None}, r"scaling\['drop_fraction'\] must be a number; got None"),
    ]
    for scaling, message in refused:
        with pytest.raises(ValueError, match=message):
            RoPE(32, scaling=scaling)
        with pytest.raises(ValueError, match=message):
            FoPE(head_dim=32, num_heads=2, train_length=64, scaling=scaling)
    with pytest.raises(ValueError, match=r"ntk scaling .* needs rotary_dim >= 4; got 2"):
        RoPE(2, scaling={"type": "ntk", "factor": 2})  # was a ZeroDivisionError
    with pytest.raises(TypeError, match="scaling must be None or a mapping"):
        RoPE(32, scaling=[1])  # was dict()'s own TypeError
    q, k = qk()
    with pytest.raises(ValueError, match=r"q heads \(4\) must be a multiple of k heads \(3\)"):
        RoPE(32)(q, torch.randn(2, 3, 7, 32))
    with pytest.raises(ValueError, match="must agree in batch, seq_len and head_dim"):
        RoPE(32)(q, k[:, :, :5])


def test_hope_style_equals_fope_without_fourier_series():
    from fope.positions import FoPE, build_position_encoding

    hope = build_position_encoding("hope", head_dim=32, num_heads=4, num_kv_heads=2, train_length=128)
    assert torch.all(hope.inv_freq[6:] == 0) and torch.all(hope.inv_freq[:6] > 0)  # K = 6 at D=32, L=128
    no_fs = FoPE(head_dim=32, num_heads=4, num_kv_heads=2, train_length=128, fourier=False)
    q, k = qk()
    for a, b in zip(hope(q, k, torch.arange(7) * 50), no_fs(q, k, torch.arange(7) * 50), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("layout", ["half", "interleaved"])
def test_cpu_blocks_of_positions_give_the_bits_of_one_pass(monkeypatch, dtype, layout):
    """The CPU rotates over blocks of positions (rotary.CPU_BLOCK_ELEMENTS): split into many blocks, the output and
    every gradient are the same bits as one block over the whole length, and both match a float64 reference."""
    from fope.positions import rotary

    g = torch.Generator().manual_seed(3)
    batch, heads, groups, length, dim, pairs = 3, 4, 2, 37, 16, 6  # GQA features, partial rotary, odd length
    x = torch.randn(heads, batch, length, dim, generator=g).transpose(0, 1).to(dtype)  # a non-contiguous q
    cos, sin = (torch.randn(batch, groups, length, pairs, generator=g) for _ in range(2))  # per-sample, per group
    grad = torch.randn(batch, heads, length, dim, generator=g).to(dtype)

    def run(block_elements):
        monkeypatch.setattr(rotary, "CPU_BLOCK_ELEMENTS", block_elements)
        leaves = [x.clone().requires_grad_(True), cos.clone().requires_grad_(True), sin.clone().requires_grad_(True)]
        out = apply_rotary(*leaves, layout)
        out.backward(grad)
        return [out, *(leaf.grad for leaf in leaves)]

    whole = run(1 << 30)
    for elements in (97, 5 * batch * heads * 2 * pairs):  # blocks of 1 position; of 5, the last one of 2
        for a, b in zip(run(elements), whole, strict=True):
            assert a.dtype == b.dtype and torch.equal(a, b)
    monkeypatch.setattr(rotary, "CPU_BLOCK_DTYPES", ())  # the whole-tensor kernels (CUDA's path): the same bits
    for a, b in zip(run(97), whole, strict=True):
        assert a.dtype == b.dtype and torch.equal(a, b)
    # float64 reference: pairs (j, j + P) or (2j, 2j + 1) rotated by the group's angle, the rest passed through.
    index = torch.arange(pairs)
    first, second = (index, index + pairs) if layout == "half" else (2 * index, 2 * index + 1)
    c, s = (t.double().repeat_interleave(heads // groups, dim=1) for t in (cos, sin))
    ref = x.double().clone()
    ref[..., first] = x.double()[..., first] * c - x.double()[..., second] * s
    ref[..., second] = x.double()[..., second] * c + x.double()[..., first] * s
    tolerance = 1e-5 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(whole[0].double(), ref, atol=tolerance * 10, rtol=tolerance)
    # An empty batch is an empty result; features of another length are refused, not broadcast or cut.
    assert apply_rotary(x[:0], cos[:0], sin[:0], layout).shape == (0, heads, length, dim)
    with pytest.raises(ValueError, match=r"one row per position of x \(37\); got 36"):
        apply_rotary(x, cos[..., 1:, :], sin[..., 1:, :], layout)


@pytest.mark.parametrize(
    ("x_shape", "feature_shape", "message"),
    [
        ((1, 2, 5, 8), (3, 1, 5, 4), "do not fit x"),  # another batch: the kernels' out= views were resized, unwritten
        ((1, 2, 5, 8), (1, 3, 5, 4), "do not fit x"),  # 3 feature heads for 2 heads
        ((1, 2, 5, 8), (1, 1, 5, 5), "do not fit x"),  # more pairs than D/2
        ((2, 5, 8), (1, 1, 5, 4), "x must be 4-D"),  # a 3-D x came back as uninitialised memory
        ((1, 2, 5, 8), (1, 5, 4), "cos must be 4-D"),
    ],
)
def test_features_that_do_not_fit_x_are_refused_not_broadcast(x_shape, feature_shape, message):
    x, cos, sin = torch.randn(x_shape), torch.randn(feature_shape), torch.randn(feature_shape)
    with pytest.raises(ValueError, match=message):
        apply_rotary(x, cos, sin)


def test_apply_rotary_refuses_integer_x_and_features_of_two_shapes():
    cos = sin = torch.full((1, 1, 1, 2), 0.5)
    with pytest.raises(TypeError, match=r"x must be a floating-point tensor; got dtype torch\.int64"):
        apply_rotary(torch.tensor([[[[-1, 2, 3, -4]]]]), cos, sin)  # was rounded into int64 silently
    with pytest.raises(ValueError, match="cos and sin must have one shape"):
        apply_rotary(torch.randn(1, 1, 1, 4), cos, torch.full((1, 1, 1, 1), 0.5))
    with pytest.raises(TypeError, match=r"cos must be a torch\.Tensor; got NoneType"):
        apply_rotary(torch.randn(1, 1, 1, 4), None, sin)
