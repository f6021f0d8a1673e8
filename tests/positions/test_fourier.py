"""FoPE pinned to the spec: parity with an independent float64 reference, special cases, init, numerics, errors."""

from __future__ import annotations

import math

import pytest
import torch

from fope.positions import FoPE, RoPE, fourier_coefficients, strided_identity
from fope.positions.registry import build_position_encoding
from tests.positions.reference import (
    fope_reference,
    frequencies,
    kept_count,
    rope_reference,
    xavier_std,
    yarn_frequencies,
)


def qk(batch=2, q_heads=4, kv_heads=2, length=6, dim=32, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(batch, q_heads, length, dim, generator=g).to(dtype)
    k = torch.randn(batch, kv_heads, length, dim, generator=g).to(dtype)
    return q, k


def random_positions(batch, length, high=5000, seed=1):
    return torch.randint(0, high, (batch, length), generator=torch.Generator().manual_seed(seed))


def assert_matches_reference(pe: FoPE, q, k, positions):
    q_out, k_out = pe(q, k, positions)
    pos = positions if positions.dim() == 2 else positions.expand(q.shape[0], -1)
    kept = frequencies(pe.rotary_dim, pe.theta)[: pe.num_kept]
    ref = {
        "cos_coef": pe.cos_coef.detach(),
        "sin_coef": pe.sin_coef.detach(),
        "kept_frequencies": kept,
        "rotary_dim": pe.rotary_dim,
        "zero_pad": pe.zero_pad,
        "layout": pe.layout,
    }
    torch.testing.assert_close(
        q_out.double(), fope_reference(q, pos, **ref), atol=1e-3, rtol=1e-4
    )  # float32 angles n*w: error ~ n * 6e-8
    torch.testing.assert_close(
        k_out.double(), fope_reference(k, pos, **ref), atol=1e-3, rtol=1e-4
    )  # float32 angles n*w: error ~ n * 6e-8


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"layout": "interleaved"},
        {"zero_pad": "identity"},
        {"output_dim": "square"},
        {"output_dim": 3},
        {"share_heads": True},
        {"clip_floor": False},
        {"rotary_dim": 24},
        {"fourier": False},
        {"sigma": 0.6, "layout": "interleaved", "output_dim": 5, "zero_pad": "identity"},
    ],
    ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "defaults",
)
def test_matches_independent_reference(options):
    pe = FoPE(
        **{"head_dim": 32, "num_heads": 4, "num_kv_heads": 2, "train_length": 128, "sigma": 0.5, "seed": 3, **options}
    )
    q, k = qk()
    assert_matches_reference(pe, q, k, random_positions(2, 6))


def test_matches_reference_with_shared_positions_and_mha():
    pe = FoPE(head_dim=16, num_heads=3, train_length=64, sigma=0.3, seed=0)
    q, k = qk(batch=1, q_heads=3, kv_heads=3, length=5, dim=16)
    assert_matches_reference(pe, q, k, torch.arange(5))


@pytest.mark.parametrize(("head_dim", "train_length", "kept", "output_dim"), [(64, 512, 16, 16), (128, 512, 31, 31)])
def test_worked_numbers(head_dim, train_length, kept, output_dim):
    pe = FoPE(head_dim=head_dim, num_heads=8, train_length=train_length)
    assert (pe.num_kept, pe.output_dim) == (kept, output_dim)
    assert kept_count(head_dim, 10000.0, train_length) == kept
    assert pe.inv_freq.shape == (kept,)
    assert pe.cos_coef.shape == pe.sin_coef.shape == (8, kept, output_dim)
    expected = torch.tensor(frequencies(head_dim, 1e4)[:kept], dtype=torch.float64)
    torch.testing.assert_close(pe.inv_freq.double(), expected, rtol=1e-6, atol=0)
    assert pe.inv_freq.min() >= 2 * math.pi / train_length


def test_exact_rope_when_no_noise_no_clip_square():
    q, k = qk(dim=64)
    positions = random_positions(2, 6)
    fope = FoPE(
        head_dim=64, num_heads=4, num_kv_heads=2, train_length=512, sigma=0.0, clip_floor=False, output_dim="square"
    )
    for a, b in zip(fope(q, k, positions), RoPE(64)(q, k, positions), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)


def _rope_with_zeroed_low_frequencies(head_dim: int, train_length: int) -> RoPE:
    rope = RoPE(head_dim)
    rope.inv_freq[kept_count(head_dim, 1e4, train_length) :] = 0.0
    return rope


@pytest.mark.parametrize("variant", ["fourier_false", "sigma0_square_identity_pad"])
def test_without_fs_is_rope_with_zeroed_low_frequencies(variant):
    options = (
        {"fourier": False}
        if variant == "fourier_false"
        else {"sigma": 0.0, "output_dim": "square", "zero_pad": "identity"}
    )
    fope = FoPE(head_dim=64, num_heads=4, num_kv_heads=2, train_length=512, **options)
    q, k = qk(dim=64)
    positions = random_positions(2, 6)
    for a, b in zip(fope(q, k, positions), _rope_with_zeroed_low_frequencies(64, 512)(q, k, positions), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)


def test_without_fs_official_pad_doubles_zero_frequency_scores():
    """With c = s = 1 the zero-frequency pairs are rotated 45 degrees and scaled by sqrt(2): their scores double."""
    fope = FoPE(head_dim=64, num_heads=2, train_length=512, sigma=0.0, output_dim="square")
    rope = _rope_with_zeroed_low_frequencies(64, 512)
    q, k = qk(q_heads=2, kv_heads=2, dim=64)
    positions = random_positions(2, 6)
    fq, fk = fope(q, k, positions)
    rq, rk = rope(q, k, positions)
    zero_dims = torch.tensor([j for j in range(64) if j % 32 >= fope.num_kept])
    rq[..., zero_dims] *= math.sqrt(2)
    rk[..., zero_dims] *= math.sqrt(2)
    torch.testing.assert_close(fq @ fk.transpose(-1, -2), rq @ rk.transpose(-1, -2), atol=1e-4, rtol=1e-5)


def test_without_cf_keeps_every_frequency_and_official_output_dim():
    pe = FoPE(head_dim=64, num_heads=4, train_length=512, clip_floor=False)
    assert pe.num_kept == 32 and pe.inv_freq.shape == (32,)
    assert pe.output_dim == 64 // 4  # still leaves D/2 - D//4 zero-frequency pairs
    square = FoPE(head_dim=64, num_heads=4, train_length=512, clip_floor=False, output_dim="square")
    assert square.output_dim == 32


def test_strided_identity():
    torch.testing.assert_close(strided_identity(4, 4), torch.eye(4))
    eye = strided_identity(31, 8)  # stride ceil(31/8) = 4
    assert [int(r) for r in eye.argmax(0)] == [0, 4, 8, 12, 16, 20, 24, 28]
    assert eye.sum() == 8
    short = strided_identity(5, 4)  # stride 2: rows 0, 2, 4 and row 6 is outside
    assert short[:, 3].sum() == 0 and short.sum() == 3


@pytest.mark.parametrize("options", [{"output_dim": "square"}, {"output_dim": 1}, {"keep_zeroed": True}])
def test_head_dim_2_works_with_one_output_pair(options):
    """The smallest head: one pair, one frequency. Only "official" (``rotary_dim // 4`` pairs) refuses it."""
    pe = FoPE(head_dim=2, num_heads=4, num_kv_heads=2, train_length=128, seed=0, **options)
    assert pe.output_dim == 1 and pe.num_kept == 1
    q, k = qk(dim=2)
    assert_matches_reference(pe, q, k, random_positions(2, 6))


def test_initialisation_statistics():
    heads, kept, out = 64, 48, 32
    coef = fourier_coefficients(heads, kept, out, sigma=0.5, generator=torch.Generator().manual_seed(0))
    noise = coef - strided_identity(kept, out)
    expected_std = 0.5 * math.sqrt(2.0 / (kept * out + heads * out))
    assert abs(noise.std().item() / expected_std - 1) < 0.03
    assert abs(noise.mean().item()) < 3 * expected_std / math.sqrt(noise.numel())
    pe = FoPE(head_dim=64, num_heads=8, train_length=512, sigma=0.3, seed=0)  # the paper's 60M attention
    paper_std = 0.3 * math.sqrt(2.0 / (16 * 16 + 8 * 16))
    assert 0.015 < paper_std < 0.025  # "about 0.02 at the paper's sizes, not sigma"
    assert abs((pe.cos_coef - torch.eye(16)).std().item() / paper_std - 1) < 0.1


def test_sigma_zero_gives_the_identity_and_seeds_are_deterministic():
    pe = FoPE(head_dim=64, num_heads=4, train_length=512, sigma=0.0)
    assert torch.equal(pe.cos_coef, torch.eye(16).expand(4, 16, 16))
    a = FoPE(head_dim=64, num_heads=4, train_length=512, seed=7)
    b = FoPE(head_dim=64, num_heads=4, train_length=512, seed=7)
    c = FoPE(head_dim=64, num_heads=4, train_length=512, seed=8)
    assert torch.equal(a.cos_coef, b.cos_coef) and torch.equal(a.sin_coef, b.sin_coef)
    assert not torch.equal(a.cos_coef, c.cos_coef)
    assert not torch.equal(a.cos_coef, a.sin_coef)  # separate matrices
    torch.manual_seed(123)
    d = FoPE(head_dim=64, num_heads=4, train_length=512)
    torch.manual_seed(123)
    e = FoPE(head_dim=64, num_heads=4, train_length=512)
    assert torch.equal(d.cos_coef, e.cos_coef)


@pytest.mark.parametrize(("zero_pad", "sin_value"), [("official", 1.0), ("identity", 0.0)])
def test_zero_pad_constants(zero_pad, sin_value):
    pe = FoPE(head_dim=64, num_heads=2, train_length=512, zero_pad=zero_pad, seed=0)
    cos, sin = pe.features(torch.arange(50))
    assert cos.shape == (1, 2, 50, 32)
    assert torch.all(cos[..., pe.output_dim :] == 1.0)
    assert torch.all(sin[..., pe.output_dim :] == sin_value)
    assert not torch.all(cos[..., : pe.output_dim] == 1.0)


def test_layouts_equivalent_under_pair_permutation():
    half = FoPE(head_dim=32, num_heads=4, num_kv_heads=2, train_length=128, seed=1)
    inter = FoPE(head_dim=32, num_heads=4, num_kv_heads=2, train_length=128, seed=1, layout="interleaved")
    # half-layout dim order [a0..a15, b0..b15] -> interleaved order [a0, b0, a1, b1, ...]
    perm = torch.stack((torch.arange(16), torch.arange(16) + 16), dim=1).flatten()
    q, k = qk()
    positions = random_positions(2, 6)
    hq, hk = half(q, k, positions)
    iq, ik = inter(q[..., perm], k[..., perm], positions)
    torch.testing.assert_close(iq, hq[..., perm])
    torch.testing.assert_close(ik, hk[..., perm])


def test_gqa_head_groups():
    pe = FoPE(head_dim=32, num_heads=8, num_kv_heads=2, train_length=128, sigma=0.5, seed=0)
    vector = torch.randn(32)
    q = vector.expand(1, 8, 3, 32).contiguous()
    k = vector.expand(1, 2, 3, 32).contiguous()
    q_out, k_out = pe(q, k)
    for h in range(8):  # query head h uses key/value head h // 4's coefficients
        torch.testing.assert_close(q_out[0, h], k_out[0, h // 4])
    assert not torch.allclose(k_out[0, 0], k_out[0, 1])


def test_incremental_equals_full_sequence():
    pe = FoPE(head_dim=32, num_heads=4, num_kv_heads=2, train_length=128, seed=0)
    q, k = qk(length=10)
    full_q, full_k = pe(q, k)
    for t in range(10):
        step_q, step_k = pe(q[:, :, t : t + 1], k[:, :, t : t + 1], torch.tensor([t]))
        torch.testing.assert_close(step_q, full_q[:, :, t : t + 1], atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(step_k, full_k[:, :, t : t + 1], atol=1e-6, rtol=1e-6)


def test_per_sample_positions():
    pe = FoPE(head_dim=32, num_heads=4, num_kv_heads=2, train_length=128, seed=0)
    q, k = qk(batch=3, length=5)
    positions = torch.tensor([[0, 1, 2, 3, 4], [7, 8, 9, 10, 11], [0, 1, 0, 1, 2]])  # plain, offset, packed
    q_out, k_out = pe(q, k, positions)
    for b in range(3):
        one_q, one_k = pe(q[b : b + 1], k[b : b + 1], positions[b])
        torch.testing.assert_close(q_out[b : b + 1], one_q)
        torch.testing.assert_close(k_out[b : b + 1], one_k)
    assert not torch.allclose(q_out[0], pe(q[1:2], k[1:2])[0][0])


def test_shift_invariance_only_with_identity_coefficients():
    def scores(pe, offset):
        q, k = qk(batch=1, q_heads=2, kv_heads=2, length=8, dim=32)
        positions = torch.arange(8) + offset
        a, b = pe(q, k, positions)
        return a @ b.transpose(-1, -2)

    identity = FoPE(head_dim=32, num_heads=2, train_length=128, sigma=0.0, output_dim="square", zero_pad="identity")
    torch.testing.assert_close(scores(identity, 0), scores(identity, 37), atol=1e-4, rtol=1e-4)
    mixed = FoPE(head_dim=32, num_heads=2, train_length=128, sigma=0.5, seed=0)
    assert not torch.allclose(scores(mixed, 0), scores(mixed, 37), atol=1e-3)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float64])
def test_low_and_high_precision_inputs(dtype):
    pe = FoPE(head_dim=32, num_heads=4, num_kv_heads=2, train_length=128, seed=0)
    q, k = qk(dtype=dtype)
    positions = random_positions(2, 6)
    q_out, k_out = pe(q, k, positions)
    assert q_out.dtype == k_out.dtype == dtype
    ref_q, _ = pe(q.float(), k.float(), positions)
    tolerance = {torch.bfloat16: 2e-2, torch.float16: 2e-3, torch.float64: 1e-5}[dtype]
    torch.testing.assert_close(q_out.float(), ref_q, atol=tolerance * 4, rtol=tolerance)


def test_positions_above_256_stay_distinct_in_bf16():
    pe = FoPE(head_dim=32, num_heads=2, train_length=128, seed=0)
    vector = torch.randn(32)
    q = vector.expand(1, 2, 2, 32).to(torch.bfloat16)
    out, _ = pe(q, q, torch.tensor([1000, 1001]))
    assert not torch.equal(out[0, 0, 0], out[0, 0, 1])
    exact, _ = pe(q.float(), q.float(), torch.tensor([1000, 1001]))
    torch.testing.assert_close(out.float(), exact, atol=5e-2, rtol=2e-2)


def test_casting_the_module_keeps_float32_position_math():
    pe = FoPE(head_dim=32, num_heads=2, train_length=128, seed=0)
    reference = pe(*qk(q_heads=2, kv_heads=2))
    pe.to(torch.bfloat16)
    assert pe.inv_freq.dtype == pe.cos_coef.dtype == pe.sin_coef.dtype == torch.float32
    for a, b in zip(pe(*qk(q_heads=2, kv_heads=2)), reference, strict=True):
        torch.testing.assert_close(a, b)


def test_state_dict_round_trip():
    a = FoPE(head_dim=32, num_heads=4, train_length=128, seed=1)
    b = FoPE(head_dim=32, num_heads=4, train_length=128, seed=2)
    assert set(a.state_dict()) == {"cos_coef", "sin_coef"}
    assert list(a.parameters()) == []
    q, k = qk(q_heads=4, kv_heads=4)
    assert not torch.allclose(a(q, k)[0], b(q, k)[0])
    b.load_state_dict(a.state_dict())
    for x, y in zip(a(q, k), b(q, k), strict=True):
        torch.testing.assert_close(x, y, atol=0, rtol=0)


def test_gradients_reach_q_k_and_learnable_coefficients():
    pe = FoPE(head_dim=32, num_heads=4, num_kv_heads=2, train_length=128, seed=0, learnable=True)
    assert {name for name, _ in pe.named_parameters()} == {"cos_coef", "sin_coef"}
    q, k = qk()
    q.requires_grad_(True)
    k.requires_grad_(True)
    positions = random_positions(2, 6)
    q_out, k_out = pe(q, k, positions)
    weights = torch.randn_like(q_out)
    ((q_out * weights).sum() + k_out.square().sum()).backward()
    # the map is linear in q: its vector-Jacobian product is the reference map's, computed in float64
    q64 = q.detach().double().requires_grad_(True)
    kept = frequencies(32, 1e4)[: pe.num_kept]
    ref = fope_reference(
        q64,
        positions,
        cos_coef=pe.cos_coef.detach(),
        sin_coef=pe.sin_coef.detach(),
        kept_frequencies=kept,
        rotary_dim=32,
        zero_pad="official",
        layout="half",
    )
    (ref * weights.double()).sum().backward()
    torch.testing.assert_close(q.grad.double(), q64.grad, atol=1e-3, rtol=1e-4)
    assert k.grad.abs().sum() > 0
    assert pe.cos_coef.grad is not None and pe.cos_coef.grad.abs().sum() > 0
    assert pe.sin_coef.grad is not None and pe.sin_coef.grad.abs().sum() > 0


def test_scaling_rescales_only_kept_frequencies():
    plain = FoPE(head_dim=64, num_heads=2, train_length=512, seed=0)
    pi = FoPE(head_dim=64, num_heads=2, train_length=512, seed=0, scaling={"type": "linear", "factor": 4})
    assert pi.num_kept == plain.num_kept
    torch.testing.assert_close(pi.inv_freq, plain.inv_freq / 4)
    yarn = FoPE(
        head_dim=64,
        num_heads=2,
        train_length=512,
        seed=0,
        scaling={"type": "yarn", "factor": 4, "original_max_position": 512},
    )
    assert yarn.attention_factor == 1.0  # the authors' FoPE+YaRN: no attention temperature
    torch.testing.assert_close(yarn.inv_freq[0], plain.inv_freq[0])  # highest frequency extrapolated
    cos, _ = yarn.features(torch.arange(3))
    assert torch.all(cos[..., yarn.output_dim :] == 1.0)


def test_num_inv_freq_keeps_exactly_that_many():
    pe = FoPE(head_dim=64, num_heads=2, train_length=512, num_inv_freq=10, output_dim="square")
    assert pe.num_kept == 10 and pe.cos_coef.shape == (2, 10, 10)


def test_compile_fullgraph_matches_eager():
    pe = FoPE(head_dim=32, num_heads=4, num_kv_heads=2, train_length=128, seed=0)
    compiled = torch.compile(pe, fullgraph=True)
    q, k = qk()
    positions = random_positions(2, 6)
    for a, b in zip(compiled(q, k, positions), pe(q, k, positions), strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    ("options", "error", "fragments"),
    [
        ({"head_dim": 63}, ValueError, ["head_dim", "63", "even"]),
        ({"head_dim": 64.0}, TypeError, ["head_dim", "64.0"]),
        ({"num_heads": 6, "num_kv_heads": 4}, ValueError, ["num_heads=6", "num_kv_heads=4"]),
        ({"train_length": 0}, ValueError, ["train_length", "0"]),
        ({"train_length": 4}, ValueError, ["train_length=4", "no frequency"]),
        ({"sigma": -0.1}, ValueError, ["sigma", "-0.1"]),
        ({"layout": "neox"}, ValueError, ["layout", "neox", "half", "interleaved"]),
        ({"output_dim": "wide"}, ValueError, ["output_dim", "wide", "official", "square"]),
        ({"output_dim": 40}, ValueError, ["output_dim", "40", "32"]),
        ({"zero_pad": "ones"}, ValueError, ["zero_pad", "ones", "identity"]),
        ({"num_inv_freq": 4, "clip_floor": False}, ValueError, ["num_inv_freq", "clip_floor"]),
        ({"num_inv_freq": 40}, ValueError, ["num_inv_freq", "40"]),
        ({"rotary_dim": 66}, ValueError, ["rotary_dim", "66"]),
        ({"clip_floor": 1}, TypeError, ["clip_floor"]),
        ({"scaling": {"type": "dynamic"}}, ValueError, ["scaling", "dynamic", "yarn"]),
        ({"frequency_dim": 63}, ValueError, ["frequency_dim", "63", "even", "rotary_dim=64"]),
        ({"frequency_dim": 32}, ValueError, ["frequency_dim", "32", ">= rotary_dim=64"]),
        ({"frequency_dim": 128, "fourier": False}, ValueError, ["frequency_dim=128", "fourier=True"]),
        ({"frequency_dim": 256, "output_dim": "square"}, ValueError, ["square", "rotary_dim / 2 = 32"]),
        ({"keep_zeroed": True, "fourier": False}, ValueError, ["keep_zeroed=True", "fourier=True"]),
        ({"keep_zeroed": 1}, TypeError, ["keep_zeroed", "1"]),
        ({"head_dim": 2}, ValueError, ["output_dim='official'", "rotary_dim=2", "head_dim (rotary_dim) >= 4"]),
        ({"rotary_dim": 2}, ValueError, ["output_dim='official'", "rotary_dim=2", "head_dim (rotary_dim) >= 4"]),
        (
            {
                "scaling": {
                    "type": "yarn",
                    "factor": 4,
                    "original_max_position": 512,
                    "temperature": False,
                    "attention_factor": 1.2,
                }
            },
            ValueError,
            ["temperature=False", "attention_factor=1.2"],
        ),
    ],
)
def test_constructor_errors(options, error, fragments):
    kwargs = {"head_dim": 64, "num_heads": 8, "train_length": 512, **options}
    with pytest.raises(error) as info:
        FoPE(**kwargs)
    for fragment in fragments:
        assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("call", "error", "fragments"),
    [
        (lambda pe, q, k: pe(q, k, torch.arange(6.0)), TypeError, ["positions", "integer", "float32"]),
        (lambda pe, q, k: pe(q, k, torch.arange(5)), ValueError, ["positions", "(6,)", "(5,)"]),
        (lambda pe, q, k: pe(q, k, torch.zeros(3, 6, dtype=torch.long)), ValueError, ["positions", "(3, 6)"]),
        (lambda pe, q, k: pe(q, k, torch.arange(6) - 2), ValueError, ["positions", ">= 0", "-2"]),
        (lambda pe, q, k: pe(q[:, :3], k), ValueError, ["heads", "3"]),
        (lambda pe, q, k: pe(q, k[:, :1]), ValueError, ["num_kv_heads=2", "1"]),
        (lambda pe, q, k: pe(q[..., :16], k[..., :16]), ValueError, ["head_dim", "32", "16"]),
        (lambda pe, q, k: pe(q[0], k[0]), ValueError, ["q", "(batch, heads, seq_len, head_dim)"]),
        (lambda pe, q, k: pe(q.long(), k), TypeError, ["q", "floating"]),
    ],
)
def test_forward_errors(call, error, fragments):
    pe = FoPE(head_dim=32, num_heads=4, num_kv_heads=2, train_length=128)
    q, k = qk()
    with pytest.raises(error) as info:
        call(pe, q, k)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_features_stay_float32_under_autocast():
    pe = FoPE(head_dim=32, num_heads=2, train_length=64, seed=0)
    q, k = qk(q_heads=2, kv_heads=2, length=512)
    expected = pe(q, k)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = pe(q, k)
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_learnable_coefficients_stay_float32_after_cast():
    pe = FoPE(head_dim=32, num_heads=2, train_length=64, seed=0, learnable=True)
    before = pe.cos_coef.detach().clone()
    pe.to(torch.bfloat16)
    assert isinstance(pe.cos_coef, torch.nn.Parameter) and pe.cos_coef.dtype == torch.float32
    assert torch.equal(pe.cos_coef.detach(), before)


@pytest.mark.parametrize(
    "options", [{}, {"share_heads": True}, {"layout": "interleaved", "output_dim": "square", "zero_pad": "identity"}]
)
def test_learnable_coefficient_gradients_match_the_reference(options):
    pe = FoPE(head_dim=16, num_heads=4, num_kv_heads=2, train_length=64, seed=0, learnable=True, **options)
    q, k = qk(batch=2, q_heads=4, kv_heads=2, length=3, dim=16)
    positions = random_positions(2, 3, high=200)
    weights_q, weights_k = torch.randn_like(q), torch.randn_like(k)
    q_out, k_out = pe(q, k, positions)
    ((q_out * weights_q).sum() + (k_out * weights_k).sum()).backward()
    cos_coef = pe.cos_coef.detach().double().requires_grad_(True)
    sin_coef = pe.sin_coef.detach().double().requires_grad_(True)
    reference = {
        "cos_coef": cos_coef,
        "sin_coef": sin_coef,
        "kept_frequencies": frequencies(16, 1e4)[: pe.num_kept],
        "rotary_dim": 16,
        "zero_pad": pe.zero_pad,
        "layout": pe.layout,
    }
    loss = (fope_reference(q, positions, **reference) * weights_q.double()).sum()
    loss = loss + (fope_reference(k, positions, **reference) * weights_k.double()).sum()
    loss.backward()
    torch.testing.assert_close(pe.cos_coef.grad.double(), cos_coef.grad, atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(pe.sin_coef.grad.double(), sin_coef.grad, atol=1e-3, rtol=1e-3)


# Coefficients shared by all heads: the references draw the xavier noise on the 2-D (K, d_out) tensor.
def test_shared_head_noise_is_drawn_on_the_2d_tensor():
    """Authors' fourier_separate_head=False and xtuner's shared buffer: xavier_normal_ on (K, d_out), fan rule
    std = sigma * sqrt(2 / (K + d_out)); a (1, K, d_out) draw would give sigma * sqrt(2 / (K*d_out + d_out))."""
    pe = FoPE(head_dim=128, num_heads=8, train_length=512, sigma=0.5, share_heads=True, seed=0)
    kept, out = pe.num_kept, pe.output_dim
    assert (kept, out) == (31, 31) and pe.cos_coef.shape == (1, 31, 31)
    expected = xavier_std((kept, out), 0.5)
    assert expected == pytest.approx(0.0898, abs=1e-4)  # the 3-D rule would give 0.0225
    noise = torch.cat([(coef[0] - torch.eye(kept)).flatten() for coef in (pe.cos_coef, pe.sin_coef)])
    assert abs(noise.std().item() / expected - 1) < 0.1  # 1922 samples: relative std error ~1.6%
    # The very draw the references make: xavier_normal_ on a 2-D tensor (cos first, then sin, one generator).
    generator = torch.Generator().manual_seed(0)
    cos = torch.nn.init.xavier_normal_(torch.empty(kept, out), gain=0.5, generator=generator) + torch.eye(kept)
    sin = torch.nn.init.xavier_normal_(torch.empty(kept, out), gain=0.5, generator=generator) + torch.eye(kept)
    assert torch.equal(pe.cos_coef[0], cos) and torch.equal(pe.sin_coef[0], sin)
    big = fourier_coefficients(1, 200, 100, 0.5, torch.Generator().manual_seed(1), shared=True)
    assert big.shape == (1, 200, 100)
    big_std = (big[0] - strided_identity(200, 100)).std().item()
    assert abs(big_std / xavier_std((200, 100), 0.5) - 1) < 0.03
    with pytest.raises(ValueError, match="num_heads=2 with shared=True"):
        fourier_coefficients(2, 4, 4, 0.5, shared=True)


@pytest.mark.parametrize("kv_heads", [1, 8])
def test_per_head_noise_keeps_the_3d_fan_rule(kv_heads):
    """One set per KV head (even a single KV head, MQA) is drawn on the 3-D (Hc, K, d_out) tensor."""
    pe = FoPE(head_dim=128, num_heads=8, num_kv_heads=kv_heads, train_length=512, sigma=0.5, seed=0)
    expected = xavier_std((kv_heads, 31, 31), 0.5)
    noise = torch.cat([(coef - torch.eye(31)).flatten() for coef in (pe.cos_coef, pe.sin_coef)])
    assert abs(noise.std().item() / expected - 1) < 0.1
    generator = torch.Generator().manual_seed(0)
    cos = torch.nn.init.xavier_normal_(torch.empty(kv_heads, 31, 31), gain=0.5, generator=generator) + torch.eye(31)
    assert torch.equal(pe.cos_coef, cos)


# YaRN's attention temperature: off by default for FoPE (the authors' FoPE+YaRN), on by default for RoPE.
YARN = {"type": "yarn", "factor": 4.0, "original_max_position": 512}


def _yarn_reference_frequencies(dim: int) -> list[float]:
    return yarn_frequencies(frequencies(dim, 1e4), dim=dim, theta=1e4, original=512, scale=4.0)


@pytest.mark.parametrize(("temperature", "scale"), [(None, 1.0), (False, 1.0), (True, 0.1 * math.log(4) + 1)])
def test_fope_yarn_temperature_switch(temperature, scale):
    scaling = YARN if temperature is None else {**YARN, "temperature": temperature}
    pe = FoPE(head_dim=32, num_heads=4, num_kv_heads=2, train_length=512, sigma=0.5, seed=0, scaling=scaling)
    assert pe.attention_factor == pytest.approx(scale)
    q, k = qk()
    positions = random_positions(2, 6, high=2000)
    reference = {
        "cos_coef": pe.cos_coef,
        "sin_coef": pe.sin_coef,
        "kept_frequencies": _yarn_reference_frequencies(32)[: kept_count(32, 1e4, 512)],
        "rotary_dim": 32,
        "zero_pad": "official",
        "layout": "half",
        "scale": scale,
    }
    q_out, k_out = pe(q, k, positions)
    torch.testing.assert_close(q_out.double(), fope_reference(q, positions, **reference), atol=1e-3, rtol=1e-4)
    torch.testing.assert_close(k_out.double(), fope_reference(k, positions, **reference), atol=1e-3, rtol=1e-4)
    flat = {} if temperature is None else {"temperature": temperature}
    built = build_position_encoding(
        "fope-yarn", head_dim=32, num_heads=4, train_length=512, factor=4.0, original_max_position=512, **flat
    )
    assert built.attention_factor == pytest.approx(scale)


@pytest.mark.parametrize(
    ("temperature", "scale"), [(None, 0.1 * math.log(4) + 1), (True, 0.1 * math.log(4) + 1), (False, 1.0)]
)
def test_rope_yarn_temperature_switch(temperature, scale):
    scaling = YARN if temperature is None else {**YARN, "temperature": temperature}
    rope = RoPE(32, scaling=scaling)
    assert rope.attention_factor == pytest.approx(scale)
    q, k = qk()
    positions = random_positions(2, 6, high=2000)
    q_out, _ = rope(q, k, positions)
    expected = rope_reference(q, positions, _yarn_reference_frequencies(32), scale=scale)
    torch.testing.assert_close(q_out.double(), expected, atol=1e-3, rtol=1e-4)


# The authors' fourier_dim (frequencies generated for a larger dim) and fourier_ignore_zero=False (zeroed frequencies
# kept as constant terms), against the formula with frequency lists computed independently.
def test_frequency_dim_generates_a_finer_ladder_of_series_terms():
    pe = FoPE(head_dim=32, num_heads=4, num_kv_heads=2, train_length=128, sigma=0.5, seed=0, frequency_dim=64)
    kept = kept_count(64, 1e4, 128)
    assert pe.num_kept == kept and pe.output_dim == min(kept, 32 // 4) and pe.cos_coef.shape == (2, kept, 8)
    torch.testing.assert_close(
        pe.inv_freq.double(), torch.tensor(frequencies(64, 1e4)[:kept], dtype=torch.float64), rtol=1e-6, atol=0
    )
    q, k = qk()
    positions = random_positions(2, 6)
    reference = {
        "cos_coef": pe.cos_coef,
        "sin_coef": pe.sin_coef,
        "kept_frequencies": frequencies(64, 1e4)[:kept],
        "rotary_dim": 32,
        "zero_pad": "official",
        "layout": "half",
    }
    torch.testing.assert_close(
        pe(q, k, positions)[0].double(), fope_reference(q, positions, **reference), atol=1e-3, rtol=1e-4
    )


@pytest.mark.parametrize("frequency_dim", [None, 48])
def test_keep_zeroed_keeps_constant_terms_and_every_output_pair(frequency_dim):
    pe = FoPE(
        head_dim=32,
        num_heads=4,
        num_kv_heads=2,
        train_length=128,
        sigma=0.5,
        seed=0,
        keep_zeroed=True,
        frequency_dim=frequency_dim,
    )
    dim = frequency_dim or 32
    kept = kept_count(dim, 1e4, 128)
    assert pe.num_kept == kept < dim // 2 and pe.inv_freq.shape == (kept,)
    assert pe.num_terms == dim // 2 and pe.output_dim == 16 and pe.cos_coef.shape == (2, dim // 2, 16)
    series = frequencies(dim, 1e4)[:kept] + [0.0] * (dim // 2 - kept)  # cos(0 * n) = 1, sin(0 * n) = 0
    q, k = qk()
    positions = random_positions(2, 6)
    reference = {
        "cos_coef": pe.cos_coef,
        "sin_coef": pe.sin_coef,
        "kept_frequencies": series,
        "rotary_dim": 32,
        "zero_pad": "official",
        "layout": "half",
    }
    for out, x in zip(pe(q, k, positions), (q, k), strict=True):
        torch.testing.assert_close(out.double(), fope_reference(x, positions, **reference), atol=1e-3, rtol=1e-4)
