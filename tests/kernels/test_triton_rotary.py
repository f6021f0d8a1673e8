"""The fused Triton kernel (``fope.kernels``) against the float64 references of tests/positions/reference.py, under
Triton's interpreter on the CPU: forward, and backward against autograd of the reference, for every case the kernel
covers (layouts, GQA coefficient modes, partial rotary, both zero pads, per-sample positions and cache offsets,
PI / YaRN with and without attention scaling, fp32 / bf16 / fp16, learnable coefficients, RoPE)."""

from __future__ import annotations

import math
import sys

import pytest
import torch

from fope.errors import FopeError
from fope.positions import FoPE, RoPE
from tests.positions.reference import fope_reference, frequencies, kept_count, rope_reference, yarn_frequencies

pytestmark = pytest.mark.triton

#: Largest rounding of one output element: half an ulp of the output dtype, relative (bf16 8, fp16 11 bits).
ROUNDING = {torch.float32: 1e-6, torch.bfloat16: 2.0**-8, torch.float16: 2.0**-11}


def inputs(batch, q_heads, kv_heads, length, dim, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    q, k, weight_q, weight_k = (
        torch.randn(batch, heads, length, dim, generator=g) for heads in (q_heads, kv_heads, q_heads, kv_heads)
    )
    # the weights (the output gradients) in the output dtype, so that the reference sees the gradient the kernel sees
    weight_q, weight_k = (w.to(dtype).float() for w in (weight_q, weight_k))
    return q.to(dtype).requires_grad_(True), k.to(dtype).requires_grad_(True), weight_q, weight_k


def check(pe, q, k, positions, reference, weights, *, atol=2e-4, coefficients=False):
    """``pe`` forced onto the kernel matches ``reference(x, positions_bt, cos_coef, sin_coef)`` (float64) in value and
    in the gradients of ``sum(out * weight)`` for q, k and (``coefficients``) the learnable coefficients."""
    pe.kernel = "triton"
    q_out, k_out = pe(q, k, positions)
    assert q_out.dtype == q.dtype and k_out.dtype == k.dtype and q_out.shape == q.shape and k_out.shape == k.shape
    ((q_out.float() * weights[0]).sum() + (k_out.float() * weights[1]).sum()).backward()

    batch = q.shape[0]
    pos = positions if positions.dim() == 2 else positions.expand(batch, -1)
    q64, k64 = (x.detach().double().requires_grad_(True) for x in (q, k))
    coefs = [c.detach().double().requires_grad_(True) for c in (pe.cos_coef, pe.sin_coef)] if coefficients else None
    if coefs is None and isinstance(pe, FoPE):
        coefs = [pe.cos_coef.detach().double(), pe.sin_coef.detach().double()]
    q_ref, k_ref = reference(q64, pos, coefs), reference(k64, pos, coefs)
    ((q_ref * weights[0].double()).sum() + (k_ref * weights[1].double()).sum()).backward()

    rtol = ROUNDING[q.dtype]
    for got, expected in ((q_out, q_ref), (k_out, k_ref), (q.grad, q64.grad), (k.grad, k64.grad)):
        torch.testing.assert_close(got.double(), expected.detach(), atol=atol, rtol=rtol)
    if coefficients:
        torch.testing.assert_close(pe.cos_coef.grad.double(), coefs[0].grad, atol=1e-3, rtol=1e-4)
        torch.testing.assert_close(pe.sin_coef.grad.double(), coefs[1].grad, atol=1e-3, rtol=1e-4)


def fope_case(pe, kept):
    """The spec's FoPE with the coefficients given to the reference and these (float64) series frequencies."""

    def reference(x, positions, coefs, scale=1.0):
        return fope_reference(
            x,
            positions,
            cos_coef=coefs[0],
            sin_coef=coefs[1],
            kept_frequencies=kept,
            rotary_dim=pe.rotary_dim,
            zero_pad=pe.zero_pad,
            layout=pe.layout,
            scale=scale,
        )

    return reference


def per_sample(batch, length, high=300, seed=1):
    return torch.randint(0, high, (batch, length), generator=torch.Generator().manual_seed(seed))


FOPE_CASES = {
    "defaults-gqa-per-kv-head": {},
    "interleaved-identity-pad": {"layout": "interleaved", "zero_pad": "identity"},
    "mha-per-query-head": {"num_kv_heads": 4},
    "shared-coefficients-mqa": {"share_heads": True, "num_kv_heads": 1},
    "partial-rotary-official-pad": {"rotary_dim": 12},
    "partial-interleaved-identity-square": {
        "rotary_dim": 12,
        "layout": "interleaved",
        "zero_pad": "identity",
        "output_dim": "square",
    },
    "without-floor-clip": {"clip_floor": False},
    "without-fourier-series": {"fourier": False},
}


@pytest.mark.parametrize("options", FOPE_CASES.values(), ids=FOPE_CASES.keys())
def test_fope_matches_the_reference(options):
    pe = FoPE(
        **{"head_dim": 16, "num_heads": 4, "num_kv_heads": 2, "train_length": 128, "sigma": 0.5, "seed": 0} | options
    )
    q, k, *weights = inputs(2, 4, pe.num_kv_heads, 5, 16)
    rotary_dim = pe.rotary_dim
    count = kept_count(rotary_dim, 1e4, 128) if pe.clip_floor else rotary_dim // 2
    check(pe, q, k, per_sample(2, 5), fope_case(pe, frequencies(rotary_dim, 1e4)[:count]), weights)


def test_keep_zeroed_constant_terms():
    pe = FoPE(head_dim=16, num_heads=2, train_length=128, sigma=0.5, seed=1, keep_zeroed=True)
    kept = kept_count(16, 1e4, 128)
    series = frequencies(16, 1e4)[:kept] + [0.0] * (8 - kept)  # cos 0 = 1, sin 0 = 0
    q, k, *weights = inputs(1, 2, 2, 4, 16)
    check(pe, q, k, torch.arange(4), fope_case(pe, series), weights)


@pytest.mark.parametrize("length", [1, 3], ids=["decode-one-token", "chunk"])
def test_kv_cache_offsets(length):
    """Positions continue a cache: a different offset per sample, far past the tiny shapes (float32 angles there)."""
    pe = FoPE(head_dim=16, num_heads=4, num_kv_heads=2, train_length=128, sigma=0.5, seed=2)
    positions = torch.tensor([[4000], [17]]) + torch.arange(length)
    q, k, *weights = inputs(2, 4, 2, length, 16)
    kept = frequencies(16, 1e4)[: kept_count(16, 1e4, 128)]
    check(pe, q, k, positions, fope_case(pe, kept), weights, atol=2e-3)  # angle error ~ n * 6e-8 rad


@pytest.mark.parametrize(
    ("scaling", "scale"),
    [
        ({"type": "linear", "factor": 4.0}, 1.0),
        ({"type": "yarn", "factor": 4.0, "original_max_position": 128}, 1.0),
        ({"type": "yarn", "factor": 4.0, "original_max_position": 128, "temperature": True}, 0.1 * math.log(4) + 1),
    ],
    ids=["pi", "yarn", "yarn-temperature"],
)
def test_scaled_frequencies(scaling, scale):
    pe = FoPE(head_dim=16, num_heads=4, num_kv_heads=2, train_length=128, sigma=0.5, seed=0, scaling=scaling)
    assert pe.attention_factor == pytest.approx(scale)
    base = frequencies(16, 1e4)
    if scaling["type"] == "linear":
        scaled = [w / 4.0 for w in base]
    else:
        scaled = yarn_frequencies(base, dim=16, theta=1e4, original=128, scale=4.0)
    reference = fope_case(pe, scaled[: kept_count(16, 1e4, 128)])
    q, k, *weights = inputs(2, 4, 2, 4, 16)
    check(pe, q, k, per_sample(2, 4), lambda x, p, c: reference(x, p, c, scale), weights)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_low_precision_in_and_out_with_one_rounding(dtype):
    """float32 math inside, one rounding to the output dtype: within half an ulp of the float64 reference."""
    pe = FoPE(head_dim=16, num_heads=4, num_kv_heads=2, train_length=128, sigma=0.5, seed=0)
    q, k, *weights = inputs(2, 4, 2, 5, 16, dtype=dtype)
    kept = frequencies(16, 1e4)[: kept_count(16, 1e4, 128)]
    check(pe, q, k, per_sample(2, 5), fope_case(pe, kept), weights, atol=1e-5)


@pytest.mark.parametrize(
    "options",
    [{}, {"share_heads": True}, {"layout": "interleaved", "output_dim": "square", "zero_pad": "identity"}],
    ids=["per-kv-head", "shared", "interleaved-square"],
)
def test_learnable_coefficient_gradients(options):
    pe = FoPE(head_dim=16, num_heads=4, num_kv_heads=2, train_length=128, seed=0, learnable=True, **options)
    q, k, *weights = inputs(2, 4, 2, 5, 16)
    kept = frequencies(16, 1e4)[: kept_count(16, 1e4, 128)]
    check(pe, q, k, per_sample(2, 5), fope_case(pe, kept), weights, coefficients=True)


@pytest.mark.parametrize(
    ("options", "scale"),
    [
        ({}, 1.0),
        ({"layout": "interleaved", "rotary_dim": 12}, 1.0),
        ({"scaling": {"type": "yarn", "factor": 4.0, "original_max_position": 128}}, 0.1 * math.log(4) + 1),
    ],
    ids=["half", "interleaved-partial", "yarn-attention-factor"],
)
def test_rope_is_the_identity_coefficient_case(options, scale):
    rope = RoPE(16, **options)
    pairs = rope.rotary_dim // 2
    freqs = frequencies(rope.rotary_dim, 1e4)
    if "scaling" in options:
        freqs = yarn_frequencies(freqs, dim=16, theta=1e4, original=128, scale=4.0)
    q, k, *weights = inputs(2, 4, 2, 5, 16)

    def reference(x, positions, _coefs):
        return rope_reference(x, positions, freqs[:pairs], layout=rope.layout, scale=scale)

    check(rope, q, k, per_sample(2, 5), reference, weights)


def test_one_output_used_and_strided_inputs():
    """q and k as views of a (B, T, H, D) projection (the models' layout); only q reaches the loss."""
    pe = FoPE(head_dim=16, num_heads=2, train_length=128, sigma=0.5, seed=0)
    pe.kernel = "triton"
    g = torch.Generator().manual_seed(0)
    qkv = torch.randn(1, 4, 4, 16, generator=g, requires_grad=True)  # (B, T, Hq + Hkv, D)
    q, k = qkv[:, :, :2].transpose(1, 2), qkv[:, :, 2:].transpose(1, 2)
    q_out, _ = pe(q, k)
    q_out.sum().backward()
    kept = frequencies(16, 1e4)[: kept_count(16, 1e4, 128)]
    q64 = q.detach().double().requires_grad_(True)
    reference = fope_case(pe, kept)(q64, torch.arange(4).expand(1, -1), [pe.cos_coef.double(), pe.sin_coef.double()])
    reference.sum().backward()
    torch.testing.assert_close(q_out.double(), reference.detach(), atol=2e-4, rtol=1e-6)
    torch.testing.assert_close(qkv.grad[:, :, :2].transpose(1, 2).double(), q64.grad, atol=2e-4, rtol=1e-6)
    assert torch.all(qkv.grad[:, :, 2:] == 0)


def test_auto_uses_the_eager_path_on_the_cpu(monkeypatch):
    import fope.kernels

    def refuse(*args, **kwargs):
        raise AssertionError("the fused kernel ran on CPU tensors without being forced")

    monkeypatch.setattr(fope.kernels, "fused_rotary", refuse)
    monkeypatch.setattr("fope.positions.rotary.fused_rotary", refuse)
    pe = FoPE(head_dim=16, num_heads=2, train_length=128, seed=0)
    q, k, *_ = inputs(1, 2, 2, 3, 16)
    pe(q, k)
    monkeypatch.setenv("FOPE_KERNEL", "triton")
    with pytest.raises(AssertionError, match="without being forced"):
        pe(q, k)
    pe.kernel = "eager"  # the module's switch wins over the environment
    pe(q, k)


def test_switch_errors_are_one_line(monkeypatch):
    pe = FoPE(head_dim=16, num_heads=2, train_length=128, seed=0)
    q, k, *_ = inputs(1, 2, 2, 3, 16)
    monkeypatch.setenv("FOPE_KERNEL", "fast")
    with pytest.raises(FopeError, match=r"^FOPE_KERNEL must be one of auto, triton, eager; got 'fast'$"):
        pe(q, k)
    monkeypatch.setenv("FOPE_KERNEL", "triton")
    monkeypatch.delenv("TRITON_INTERPRET")
    with pytest.raises(FopeError, match="TRITON_INTERPRET=1") as error:
        pe(q, k)
    assert "\n" not in str(error.value)
    monkeypatch.setitem(sys.modules, "triton", None)  # triton not installed
    with pytest.raises(FopeError, match=r"pip install 'fope\[triton\]'") as error:
        pe(q, k)
    assert "\n" not in str(error.value)
