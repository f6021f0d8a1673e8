"""Rotary position encodings: the single ``apply_rotary`` and RoPE with its frequency schemes."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from fope.kernels import RotarySeries, fused_rotary, use_fused_kernel
from fope.positions._checks import (
    LAYOUTS,
    check_choice,
    check_float,
    check_qk,
    check_rotary_dims,
    resolve_positions,
)
from fope.positions.base import PositionEncoding
from fope.positions.frequencies import check_precision, scaled_frequencies

__all__ = ["RoPE", "RotaryEncoding", "apply_rotary", "rotate_half"]


def rotate_half(x: Tensor) -> Tensor:
    """``[x1, x2] -> [-x2, x1]`` over the last dimension (the half / GPT-NeoX layout)."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor, layout: str = "half") -> Tensor:
    """Rotate every pair ``(a, b)`` of ``x`` into ``(a*c - b*s, b*c + a*s)``, i.e. ``x*cos + rotate_half(x)*sin``.

    ``x`` is ``(B, H, T, D)``; ``cos`` and ``sin`` hold one value per pair, shape ``(B|1, Hc|1, T, P)`` with
    ``2P <= D`` and ``H % Hc == 0`` (head ``h`` uses group ``h // (H // Hc)``). Pairs are ``(j, j + P)`` in the
    "half" layout (GPT-NeoX, Llama) and ``(2j, 2j + 1)`` in the "interleaved" layout (GPT-J); dimensions past ``2P``
    pass through unchanged (partial rotary). The arithmetic runs in float32 and the result has ``x``'s dtype.
    """
    check_choice("layout", layout, LAYOUTS)
    _check_features(x, cos, sin)
    return _Rotation.apply(x, cos, sin, layout)


def _check_features(x: Tensor, cos: Tensor, sin: Tensor) -> None:
    """x floating ``(B, H, T, D)``; cos and sin floating, of one shape ``(B|1, Hc|1, T, P)``, ``2P <= D``,
    ``H % Hc == 0``. Any other shape the kernels would broadcast into resized buffers: garbage, not an error."""
    for name, value in (("x", x), ("cos", cos), ("sin", sin)):
        if not isinstance(value, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor; got {type(value).__name__}")
        if value.dim() != 4:
            raise ValueError(f"{name} must be 4-D; got shape {tuple(value.shape)} (x: (B, H, T, D), cos/sin: "
                             "(B|1, Hc|1, T, P))")  # fmt: skip
        if not value.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor; got dtype {value.dtype}")
    if cos.shape != sin.shape:
        raise ValueError(f"cos and sin must have one shape; got {tuple(cos.shape)} and {tuple(sin.shape)}")
    (batch, heads, length, dim), (f_batch, f_heads, f_length, pairs) = x.shape, cos.shape
    if f_length != length:
        raise ValueError(f"cos and sin need one row per position of x ({length}); got {f_length}")
    if f_batch not in (1, batch) or f_heads == 0 or heads % f_heads or 2 * pairs > dim or pairs == 0:
        raise ValueError(
            f"cos/sin of shape {tuple(cos.shape)} do not fit x of shape {tuple(x.shape)}: they need (B|1, Hc|1, T, P) "
            f"with B={batch} or 1, Hc dividing H={heads}, T={length} and 1 <= P <= D/2={dim // 2}"
        )


def _pairs(x: Tensor, pairs: int, layout: str) -> tuple[Tensor, Tensor]:
    """Views ``(a, b)`` of the two members of every pair in the last dimension."""
    if layout == "half":
        return x[..., :pairs], x[..., pairs : 2 * pairs]
    return x[..., 0 : 2 * pairs : 2], x[..., 1 : 2 * pairs : 2]


def _grouped(x: Tensor, groups: int) -> Tensor:
    """``(B, H, ...)`` as ``(B, groups, H // groups, ...)`` when heads share features in groups (GQA), else ``x``."""
    heads = x.shape[1]
    return x if groups in (1, heads) else x.unflatten(1, (groups, heads // groups))


def _rotate(x: Tensor, cos: Tensor, sin: Tensor, layout: str, transpose: bool = False) -> Tensor:
    """``(a*c - b*s, b*c + a*s)`` in float32, cast to x's dtype; ``transpose``: ``(a*c + b*s, b*c - a*s)`` (the
    backward map, without a negated copy of ``sin``).

    Compiled: the plain expression, which inductor fuses into one kernel. Eager: four kernels (``mul``, ``addcmul_``
    per half) write into a float32 buffer; mixed-dtype ops read bf16/fp16 x directly on CUDA. On the CPU the same four
    kernels run over blocks of positions (``_rotate_blocks``): the same bits.
    """
    pairs, groups = cos.shape[-1], cos.shape[1]
    grouped = groups not in (1, x.shape[1])
    if grouped:
        cos, sin = cos.unsqueeze(2), sin.unsqueeze(2)
    if torch.compiler.is_compiling():  # dynamo cannot trace out= into views; inductor fuses this form into one kernel
        a, b = (t.float() for t in _pairs(_grouped(x, groups), pairs, layout))
        sin = -sin if transpose else sin
        out = torch.stack((a * cos - b * sin, b * cos + a * sin), dim=-2 if layout == "half" else -1).flatten(-2)
        out = (out.flatten(1, 2) if grouped else out).to(x.dtype)
    elif x.device.type == "cpu" and x.dtype in CPU_BLOCK_DTYPES:
        return _rotate_blocks(x, cos, sin, layout, transpose)
    else:
        out = torch.empty(*x.shape[:-1], 2 * pairs, dtype=torch.float32, device=x.device)
        _rotate_into(out, x, cos, sin, layout, transpose)
        out = out.to(x.dtype)
    if 2 * pairs < x.shape[-1]:
        out = torch.cat((out, x[..., 2 * pairs :]), dim=-1)
    return out


def _rotate_into(out: Tensor, x: Tensor, cos: Tensor, sin: Tensor, layout: str, transpose: bool) -> None:
    """The four eager kernels: the rotary pairs of ``x`` rotated into float32 ``out`` (``(..., 2P)``, or x's shape)."""
    pairs, groups = cos.shape[-1], cos.shape[1]
    a, b = _pairs(_grouped(x, groups), pairs, layout)
    out_a, out_b = _pairs(_grouped(out, groups), pairs, layout)
    sign = -1.0 if transpose else 1.0  # flipping a sign is exact: the same bits as rotating by -sin
    torch.mul(a, cos, out=out_a)
    out_a.addcmul_(b, sin, value=-sign)
    torch.mul(b, cos, out=out_b)
    out_b.addcmul_(a, sin, value=sign)


#: Elements of x per block in ``_rotate_blocks``: its float32 working set stays in the CPU's cache.
CPU_BLOCK_ELEMENTS = 2**19
#: The dtypes ``_rotate_blocks`` takes (float64 x keeps the whole-tensor kernels, whose products are float64).
CPU_BLOCK_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def _rotate_blocks(x: Tensor, cos: Tensor, sin: Tensor, layout: str, transpose: bool) -> Tensor:
    """``_rotate_into`` on the CPU, over blocks of positions, into one fresh output of x's dtype.

    Each kernel's operands then stay in the cache from one kernel to the next: ``addcmul_`` reads back the block
    ``mul`` has just written, and the features' block (per head for FoPE) is read once for every batch row. On the
    whole tensor both come back from memory. float32 x is rotated straight into the output. bf16/fp16 x is converted
    once per block into a small reused float32 buffer (a mixed-dtype ``mul``/``addcmul`` on the CPU converts its
    strided half of x in a separate copy), rotated into another and rounded into the output. It is the same
    arithmetic element by element (the conversion is exact, the result is rounded once): the same bits as the four
    kernels on the whole tensor, 1.1x (float32) to 4-9x (bf16) faster on this project's CPU at 2^19 elements a block
    (docs/benchmarks.md section 7).
    """
    pairs, length = cos.shape[-1], x.shape[-2]
    rotary = 2 * pairs
    direct = x.dtype == torch.float32
    out = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    block = max(1, min(length, CPU_BLOCK_ELEMENTS // max(1, math.prod(x.shape[:-2]) * rotary)))
    if not direct:
        inputs = torch.empty(*x.shape[:-2], block, rotary, dtype=torch.float32, device=x.device)
        results = torch.empty_like(inputs)
    for start in range(0, length, block):
        stop = min(start + block, length)
        features = cos[..., start:stop, :], sin[..., start:stop, :]
        if direct:
            _rotate_into(out[..., start:stop, :], x[..., start:stop, :], *features, layout, transpose)
            continue
        x_block = inputs[..., : stop - start, :].copy_(x[..., start:stop, :rotary])
        result = results[..., : stop - start, :]
        _rotate_into(result, x_block, *features, layout, transpose)
        out[..., start:stop, :rotary].copy_(result)
    if rotary < x.shape[-1]:
        out[..., rotary:].copy_(x[..., rotary:])
    return out


def _sum_to(values: Tensor, like: Tensor) -> Tensor:
    """Sum a ``(B, H, T, P)`` gradient down to the broadcast shape ``(B|1, Hc|1, T, P)`` of ``like``."""
    values = _grouped(values, like.shape[1])
    if values.dim() == 5:
        values = values.sum(2)
    if like.shape[1] == 1:
        values = values.sum(1, keepdim=True)
    if like.shape[0] == 1:
        values = values.sum(0, keepdim=True)
    return values


class _Rotation(torch.autograd.Function):
    """The pair map ``[[c, -s], [s, c]]`` is linear in x: its backward is the same map with ``-s`` (the transpose).

    Only ``cos`` and ``sin`` are saved (and x only when the features themselves need gradients, e.g. learnable FoPE
    coefficients), so training keeps no float32 copies of q and k and the backward pass costs what the forward costs.
    """

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: Tensor, cos: Tensor, sin: Tensor, layout: str) -> Tensor:
        features_need_grad = cos.requires_grad or sin.requires_grad
        ctx.save_for_backward(cos, sin, x if features_need_grad else None)
        ctx.layout = layout
        return _rotate(x, cos, sin, layout)

    @staticmethod
    def backward(
        ctx: torch.autograd.function.FunctionCtx, grad: Tensor
    ) -> tuple[Tensor | None, Tensor | None, Tensor | None, None]:
        cos, sin, x = ctx.saved_tensors
        grad_x = _rotate(grad, cos, sin, ctx.layout, transpose=True) if ctx.needs_input_grad[0] else None
        grad_cos = grad_sin = None
        if x is not None:  # d/dc = g_a a + g_b b and d/ds = g_b a - g_a b, summed over what cos/sin broadcast over
            pairs = cos.shape[-1]
            a, b = (t.float() for t in _pairs(x, pairs, ctx.layout))
            grad_a, grad_b = (t.float() for t in _pairs(grad, pairs, ctx.layout))
            grad_cos = _sum_to(grad_a * a + grad_b * b, cos) if ctx.needs_input_grad[1] else None
            grad_sin = _sum_to(grad_b * a - grad_a * b, sin) if ctx.needs_input_grad[2] else None
        return grad_x, grad_cos, grad_sin, None


class RotaryEncoding(PositionEncoding):
    """Shared forward of RoPE and FoPE: per-pair ``(cos, sin)`` features of the positions, then ``apply_rotary``.

    On CUDA with triton installed the forward is instead one fused Triton launch that computes the features in the
    kernel (``fope.kernels``). ``kernel`` forces a path: ``"triton"``, ``"eager"``, or ``None``/``"auto"`` (then the
    environment variable ``FOPE_KERNEL`` decides, default ``"auto"``).
    """

    kind = "rotary"
    kernel: str | None = None
    head_dim: int
    rotary_dim: int
    layout: str
    num_heads: int | None = None
    num_kv_heads: int | None = None

    def features(self, positions: Tensor) -> tuple[Tensor, Tensor]:
        """``(cos, sin)`` per rotary pair for integer positions ``(T,)``/``(B, T)``: float32 ``(B|1, Hc|1, T, P)``."""
        raise NotImplementedError

    def series(self) -> RotarySeries:
        """What the fused kernel computes the features from (frequencies, coefficients, constants)."""
        raise NotImplementedError

    def forward(self, q: Tensor, k: Tensor, positions: Tensor | None = None) -> tuple[Tensor, Tensor]:
        check_qk(q, k, head_dim=self.head_dim, num_heads=self.num_heads, num_kv_heads=self.num_kv_heads)
        positions = resolve_positions(positions, batch=q.shape[0], length=q.shape[2], device=q.device)
        if use_fused_kernel(self.kernel, q):
            return fused_rotary(q, k, positions, self.series())
        if torch.is_autocast_enabled(q.device.type):
            # autocast would run FoPE's coefficient einsum (a batched matmul) in bf16: keep position math float32
            with torch.autocast(q.device.type, enabled=False):
                cos, sin = self.features(positions)
        else:
            cos, sin = self.features(positions)
        # its own features, of the shape check_qk has checked q and k against: apply_rotary's checks are not needed
        return _Rotation.apply(q, cos, sin, self.layout), _Rotation.apply(k, cos, sin, self.layout)

    @staticmethod
    def _angles(positions: Tensor, frequencies: Tensor) -> Tensor:
        """``n * w`` in float32, shape ``(B|1, T, F)``."""
        if positions.dim() == 1:
            positions = positions.unsqueeze(0)
        return positions.to(torch.float32).unsqueeze(-1) * frequencies.to(torch.float32)


class RoPE(RotaryEncoding):
    """Rotary position embedding (Su et al. 2021): pair ``i`` turns by ``w_i * n``, ``w_i = theta ** (-2i / d)``.

    ``scaling`` selects a frequency scheme from ``fope.positions.frequencies.SCALING_SCHEMES`` (PI, NTK, YaRN, p-RoPE),
    e.g. ``{"type": "yarn", "factor": 4, "original_max_position": 512}``. ``frequency_precision``: the references'
    float32 arithmetic for the frequencies (default; transformers' Llama RoPE bit for bit) or ``"float64"``.
    """

    def __init__(
        self,
        head_dim: int,
        theta: float = 10000.0,
        layout: str = "half",
        rotary_dim: int | None = None,
        scaling: Mapping[str, Any] | None = None,
        frequency_precision: str = "float32",
    ) -> None:
        super().__init__()
        self.head_dim, self.rotary_dim = check_rotary_dims(head_dim, rotary_dim)
        self.theta = check_float("theta", theta, minimum=1.0, strict=True)
        self.layout = check_choice("layout", layout, LAYOUTS)
        self.frequency_precision = check_precision(frequency_precision)
        frequencies, attention_factor = scaled_frequencies(self.rotary_dim, self.theta, scaling, frequency_precision)
        self.scaling = dict(scaling) if scaling is not None else None  # a mapping: scaled_frequencies checked it
        self.attention_factor = attention_factor
        self.register_buffer("inv_freq", frequencies.to(torch.float32), persistent=False)

    _float32_tensors = ("inv_freq",)

    def features(self, positions: Tensor) -> tuple[Tensor, Tensor]:
        angles = self._angles(positions, self.inv_freq)
        cos, sin = angles.cos(), angles.sin()
        if self.attention_factor != 1.0:
            cos, sin = cos * self.attention_factor, sin * self.attention_factor
        return cos.unsqueeze(1), sin.unsqueeze(1)

    def series(self) -> RotarySeries:
        pairs = self.rotary_dim // 2
        return RotarySeries(self.inv_freq, None, None, pairs, pairs, 0.0, self.attention_factor, self.layout)

    def extra_repr(self) -> str:
        return (
            f"head_dim={self.head_dim}, rotary_dim={self.rotary_dim}, theta={self.theta:g}, layout={self.layout!r}, "
            f"scaling={self.scaling}"
            + (", frequency_precision='float64'" if self.frequency_precision == "float64" else "")
        )
