"""The fused rotary kernel in Triton: FoPE (and RoPE / YaRN, its identity-coefficient case) on q and k in one launch.

One program takes ``BLOCK_T`` positions of one batch row and one key/value head ``g``: it computes the features of
its coefficient head ``hc = g // (Hkv / Hc)`` from the positions, the frequencies and the coefficients
(docs/fope-spec.md sections 2 and 5, all in float32):

    c[j](n) = scale * sum_k cos_coef[hc, k, j] * cos(w_k * n)     (j < d_out; else scale)
    s[j](n) = scale * sum_k sin_coef[hc, k, j] * sin(w_k * n)     (j < d_out; else scale * pad_sin)

(``c = scale * cos(w_j n)``, ``s = scale * sin(w_j n)`` without a series: RoPE), then rotates every pair ``(a, b)`` of
the ``Hq / Hkv`` query heads of group ``g`` and of key head ``g`` into ``(a*c - b*s, b*c + a*s)`` and rounds once to
the output dtype. Dimensions past the rotary pairs are copied. No ``(H, T, D)`` table exists: the features live in
registers for the tile at hand. The backward pass is the same kernel with ``-s`` (the transposed pair map); with
learnable coefficients it also reduces ``g_a a + g_b b`` and ``g_b a - g_a b`` over the group's heads and adds
``basis^T @ that`` (times ``scale``) into float32 coefficient gradients. Without q (``fused_rotary(None, x, ...)``)
one tensor is rotated alone, its heads taking the key heads' place.

This file is self-contained (torch, and triton once the kernel is first jitted): ``fope export`` and ``fope convert``
copy it next to ``modeling_fope.py``, whose remote code imports it as ``.triton_rotary``. fope reaches it through
``fope.kernels``, which turns its ``KernelError`` into one-line ``FopeError``. So importing it needs no triton, and
it imports triton inside a ``try`` (transformers' remote-code check skips imports there). The kernel is jitted on first
use, once per mode: Triton's interpreter when ``TRITON_INTERPRET=1`` (CPU tensors), compiled otherwise.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib.util
import os
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "KERNEL_CHOICES",
    "KernelError",
    "RotarySeries",
    "fused_rotary",
    "interpreting",
    "kernel_choice",
    "launch",
    "use_fused_kernel",
]

KERNEL_CHOICES = ("auto", "triton", "eager")

#: ``triton.language``, bound when the kernel is first jitted (``_compiled``): the kernel's body reads it as a global.
tl: Any = None


class KernelError(ValueError):
    """A switch value or a call the kernel cannot take, said in one line."""


@dataclass(frozen=True)
class RotarySeries:
    """What the kernel needs besides q, k and positions; ``cos_coef is None`` means no series (RoPE).

    ``frequencies``: float32 ``(num_terms,)`` with a series (zeros for constant terms), else ``(pairs,)``;
    ``cos_coef``/``sin_coef``: float32 ``(Hc, num_terms, output_dim)``; pairs ``j >= output_dim`` are the constants
    ``(1, pad_sin)``; ``scale`` multiplies cos and sin (YaRN's attention factor when the encoding applies it).
    """

    frequencies: Tensor
    cos_coef: Tensor | None
    sin_coef: Tensor | None
    pairs: int
    output_dim: int
    pad_sin: float
    scale: float
    layout: str


def kernel_choice(choice: str | None = None) -> str:
    """The switch in effect: ``choice`` (a module's ``kernel``) if given, else ``FOPE_KERNEL``, else ``"auto"``."""
    source = "kernel"
    if choice is None:
        choice, source = os.environ.get("FOPE_KERNEL") or "auto", "FOPE_KERNEL"
    if choice not in KERNEL_CHOICES:
        raise KernelError(f"{source} must be one of {', '.join(KERNEL_CHOICES)}; got {choice!r}")
    return choice


@functools.cache
def _triton_installed() -> bool:
    return importlib.util.find_spec("triton") is not None


def use_fused_kernel(choice: str | None, x: Tensor) -> bool:
    """Whether to run the fused kernel on ``x``: forced, or ``"auto"`` on CUDA with triton; never while compiling."""
    if torch.compiler.is_compiling():
        return False
    choice = kernel_choice(choice)
    if choice == "eager":
        return False
    if choice == "triton":
        return True
    return x.device.type == "cuda" and _triton_installed()


def fused_rotary(q: Tensor | None, k: Tensor, positions: Tensor, series: RotarySeries) -> tuple[Tensor | None, Tensor]:
    """``(q', k')`` in one launch, differentiable in q, k and (when they require grad) the coefficients.

    q ``(B, Hq, T, D)`` and k ``(B, Hkv, T, D)``, any strides with the last dimension contiguous; ``positions``
    ``(T,)`` or ``(B|1, T)`` integers. ``q=None`` rotates k alone (``(None, k')``): any tensor of heads, head ``h``
    taking coefficient head ``h // (H / Hc)``.
    """
    if k.device.type == "cpu" and not interpreting():
        raise KernelError(
            "the Triton kernel runs on CPU tensors only under its interpreter: set TRITON_INTERPRET=1, "
            "or use FOPE_KERNEL=eager (q is on the cpu)"
        )
    if q is not None and q.dtype != k.dtype:
        raise KernelError(f"the Triton kernel needs q and k of one dtype; got q {q.dtype} and k {k.dtype}")
    if q is None:
        return None, _FusedRotation.apply(k[:, :0], k, positions, series.cos_coef, series.sin_coef, series)[1]
    return _FusedRotation.apply(q, k, positions, series.cos_coef, series.sin_coef, series)


class _FusedRotation(torch.autograd.Function):
    """Forward and backward are one launch each; q and k are saved only when the coefficients need gradients."""

    @staticmethod
    def forward(
        ctx: Any,
        q: Tensor,
        k: Tensor,
        positions: Tensor,
        cos_coef: Tensor | None,
        sin_coef: Tensor | None,
        series: RotarySeries,
    ) -> tuple[Tensor, Tensor]:
        coef_grad = cos_coef is not None and (cos_coef.requires_grad or sin_coef.requires_grad)
        ctx.save_for_backward(positions, q if coef_grad else None, k if coef_grad else None)
        ctx.series, ctx.coef_grad, ctx.shapes = series, coef_grad, (q.shape, k.shape)
        q_out, k_out, _, _ = launch(q, k, positions, _detached(series))
        return q_out, k_out

    @staticmethod
    def backward(ctx: Any, grad_q: Tensor | None, grad_k: Tensor | None) -> tuple[Tensor | None, ...]:
        positions, q, k = ctx.saved_tensors
        series = _detached(ctx.series)
        if grad_q is None:  # an output that did not reach the loss has a zero gradient
            grad_q = grad_k.new_zeros(ctx.shapes[0])
        if grad_k is None:
            grad_k = grad_q.new_zeros(ctx.shapes[1])
        inputs = (q, k) if ctx.coef_grad else None
        grad_q, grad_k, grad_cos, grad_sin = launch(grad_q, grad_k, positions, series, backward=True, inputs=inputs)
        return grad_q, grad_k, None, grad_cos, grad_sin, None


def _detached(series: RotarySeries) -> RotarySeries:
    """The series with plain float32 coefficients (the kernel reads them; autograd sees them as inputs)."""
    if series.cos_coef is None:
        return series
    return dataclasses.replace(
        series, cos_coef=series.cos_coef.detach().float(), sin_coef=series.sin_coef.detach().float()
    )


def _rotary_kernel(
    q_ptr,
    k_ptr,
    q_out_ptr,
    k_out_ptr,
    q_in_ptr,  # backward with coefficient gradients: the forward's q and k (else unused)
    k_in_ptr,
    pos_ptr,
    freq_ptr,
    cos_coef_ptr,
    sin_coef_ptr,
    grad_cos_ptr,
    grad_sin_ptr,
    stride_qb,
    stride_qh,
    stride_qt,
    stride_kb,
    stride_kh,
    stride_kt,
    stride_qib,
    stride_qih,
    stride_qit,
    stride_kib,
    stride_kih,
    stride_kit,
    stride_pb,
    stride_pt,
    num_positions,
    num_q_heads,
    num_kv_heads,
    head_dim,
    pairs,
    num_terms,
    output_dim,
    kv_per_coef,
    scale,
    pad_sin,
    sign,
    Q_PER_KV: tl.constexpr,
    BLOCK_T: tl.constexpr,
    BLOCK_P: tl.constexpr,
    BLOCK_K: tl.constexpr,
    BLOCK_TAIL: tl.constexpr,
    INTERLEAVED: tl.constexpr,
    SERIES: tl.constexpr,
    COEF_GRAD: tl.constexpr,
    OUT_BF16: tl.constexpr,
):
    num_blocks = tl.cdiv(num_positions, BLOCK_T)
    batch = (tl.program_id(0) // num_blocks).to(tl.int64)  # int64 offsets: q may hold more than 2**31 elements
    t = (tl.program_id(0) % num_blocks) * BLOCK_T + tl.arange(0, BLOCK_T)
    group = tl.program_id(1)
    t_mask = t < num_positions
    n = tl.load(pos_ptr + batch * stride_pb + t * stride_pt, mask=t_mask, other=0).to(tl.float32)
    j = tl.arange(0, BLOCK_P)
    j_mask = j < pairs
    if SERIES:
        kk = tl.arange(0, BLOCK_K)
        k_mask = kk < num_terms
        w = tl.load(freq_ptr + kk, mask=k_mask, other=0.0)
        angles = n[:, None] * w[None, :]
        cos_basis = tl.cos(angles)
        sin_basis = tl.sin(angles)
        coef_head = group // kv_per_coef
        coef_offsets = coef_head * num_terms * output_dim + kk[:, None] * output_dim + j[None, :]
        coef_mask = k_mask[:, None] & (j[None, :] < output_dim)
        cos_coef = tl.load(cos_coef_ptr + coef_offsets, mask=coef_mask, other=0.0)
        sin_coef = tl.load(sin_coef_ptr + coef_offsets, mask=coef_mask, other=0.0)
        series = j[None, :] < output_dim
        c = tl.where(series, tl.dot(cos_basis, cos_coef, input_precision="ieee"), 1.0)
        s = tl.where(series, tl.dot(sin_basis, sin_coef, input_precision="ieee"), pad_sin)
    else:
        w = tl.load(freq_ptr + j, mask=j_mask, other=0.0)
        angles = n[:, None] * w[None, :]
        c = tl.cos(angles)
        s = tl.sin(angles)
    c = c * scale
    s = s * scale * sign
    if INTERLEAVED:
        dim_a = 2 * j
        dim_b = 2 * j + 1
    else:
        dim_a = j
        dim_b = j + pairs
    mask = t_mask[:, None] & j_mask[None, :]
    grad_c = tl.zeros((BLOCK_T, BLOCK_P), dtype=tl.float32)
    grad_s = tl.zeros((BLOCK_T, BLOCK_P), dtype=tl.float32)
    for r in tl.static_range(Q_PER_KV + 1):  # the group's query heads, then its key head
        if r < Q_PER_KV:
            head = group * Q_PER_KV + r
            rows = batch * stride_qb + head * stride_qh + t[:, None] * stride_qt
            x_ptr = q_ptr + rows
            out_ptr = q_out_ptr + ((batch * num_q_heads + head) * num_positions + t[:, None]) * head_dim
            in_ptr = q_in_ptr + batch * stride_qib + head * stride_qih + t[:, None] * stride_qit
        else:
            rows = batch * stride_kb + group * stride_kh + t[:, None] * stride_kt
            x_ptr = k_ptr + rows
            out_ptr = k_out_ptr + ((batch * num_kv_heads + group) * num_positions + t[:, None]) * head_dim
            in_ptr = k_in_ptr + batch * stride_kib + group * stride_kih + t[:, None] * stride_kit
        a = tl.load(x_ptr + dim_a[None, :], mask=mask, other=0.0).to(tl.float32)
        b = tl.load(x_ptr + dim_b[None, :], mask=mask, other=0.0).to(tl.float32)
        out_dtype = out_ptr.dtype.element_ty
        out_a = a * c - b * s
        out_b = b * c + a * s
        if OUT_BF16:  # round to nearest even on the bits: the interpreter's fp32 -> bf16 cast truncates (triton 3.9)
            bits_a = out_a.to(tl.uint32, bitcast=True)
            bits_b = out_b.to(tl.uint32, bitcast=True)
            bits_a = (bits_a + 0x7FFF + ((bits_a >> 16) & 1)) >> 16
            bits_b = (bits_b + 0x7FFF + ((bits_b >> 16) & 1)) >> 16
            out_a = bits_a.to(tl.uint16).to(tl.bfloat16, bitcast=True)
            out_b = bits_b.to(tl.uint16).to(tl.bfloat16, bitcast=True)
        tl.store(out_ptr + dim_a[None, :], out_a.to(out_dtype), mask=mask)
        tl.store(out_ptr + dim_b[None, :], out_b.to(out_dtype), mask=mask)
        if BLOCK_TAIL > 0:  # partial rotary: the dimensions past the pairs pass through
            d = 2 * pairs + tl.arange(0, BLOCK_TAIL)
            tail_mask = t_mask[:, None] & (d[None, :] < head_dim)
            tail = tl.load(x_ptr + d[None, :], mask=tail_mask, other=0.0)
            tl.store(out_ptr + d[None, :], tail.to(out_dtype), mask=tail_mask)
        if COEF_GRAD:  # x is the gradient here: d/dc = g_a a + g_b b, d/ds = g_b a - g_a b with (a, b) the input
            a_in = tl.load(in_ptr + dim_a[None, :], mask=mask, other=0.0).to(tl.float32)
            b_in = tl.load(in_ptr + dim_b[None, :], mask=mask, other=0.0).to(tl.float32)
            grad_c += a * a_in + b * b_in
            grad_s += b * a_in - a * b_in
    if COEF_GRAD:
        grad_offsets = coef_head * num_terms * output_dim + kk[:, None] * output_dim + j[None, :]
        grad_cos = tl.dot(tl.trans(cos_basis), grad_c, input_precision="ieee") * scale
        grad_sin = tl.dot(tl.trans(sin_basis), grad_s, input_precision="ieee") * scale
        tl.atomic_add(grad_cos_ptr + grad_offsets, grad_cos, mask=coef_mask)
        tl.atomic_add(grad_sin_ptr + grad_offsets, grad_sin, mask=coef_mask)


@functools.cache
def _compiled(interpret: bool) -> Any:
    """The kernel jitted for one mode: ``triton.jit`` picks the interpreter from ``TRITON_INTERPRET`` when it runs."""
    del interpret  # the cache key: the mode ``triton.jit`` reads from the environment
    global tl  # the kernel's body reads triton.language as the global ``tl``: bound here, where triton is imported
    try:  # in a try: transformers' remote-code check does not ask for triton, which this file needs only here
        import triton
        import triton.language
    except ImportError as error:
        raise ImportError(
            "the fused rotary kernel needs triton: pip install triton, or set FOPE_KERNEL=eager"
        ) from error
    tl = triton.language
    return triton.jit(_rotary_kernel)


def interpreting() -> bool:
    """Whether Triton's interpreter is on (``TRITON_INTERPRET=1``): the kernel then runs on CPU tensors."""
    return os.environ.get("TRITON_INTERPRET", "").lower() in ("1", "true", "yes", "on")


def _next_power_of_2(size: int) -> int:
    return 1 << max(size - 1, 0).bit_length()


def _block(size: int, minimum: int = 16) -> int:
    return max(minimum, _next_power_of_2(size))


def launch(
    q: Tensor,
    k: Tensor,
    positions: Tensor,
    series: RotarySeries,
    *,
    backward: bool = False,
    inputs: tuple[Tensor, Tensor] | None = None,
) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
    """Rotate q ``(B, Hq, T, D)`` and k ``(B, Hkv, T, D)`` (any strides, last dim contiguous) in one launch; q may
    have no heads (``Hq = 0``: k alone).

    ``positions`` ``(T,)`` or ``(B|1, T)``. ``backward=True`` applies the transposed map (q and k are then the
    output gradients); with ``inputs`` (the forward's q and k) it also returns the coefficient gradients.
    """
    batch, q_heads, length, head_dim = q.shape
    kv_heads = k.shape[1]
    q, k = (x if x.stride(-1) == 1 else x.contiguous() for x in (q, k))
    q_out = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    k_out = torch.empty(k.shape, dtype=k.dtype, device=k.device)
    positions = positions if positions.dim() == 2 else positions.unsqueeze(0)
    stride_pb = positions.stride(0) if positions.shape[0] > 1 else 0
    has_series = series.cos_coef is not None
    coef_grad = inputs is not None
    if has_series:
        cos_coef, sin_coef = series.cos_coef.contiguous(), series.sin_coef.contiguous()
        coef_heads, num_terms = cos_coef.shape[0], cos_coef.shape[1]
    else:
        cos_coef = sin_coef = series.frequencies  # unused by the kernel
        coef_heads, num_terms = 1, series.pairs
    grad_cos = torch.zeros_like(cos_coef) if coef_grad else None
    grad_sin = torch.zeros_like(sin_coef) if coef_grad else None
    q_in, k_in = inputs if coef_grad else (q, k)
    q_in, k_in = (x if x.stride(-1) == 1 else x.contiguous() for x in (q_in, k_in))
    block_t = 32 if series.pairs <= 64 else 16
    tail = head_dim - 2 * series.pairs
    grid = (batch * -(-length // block_t), kv_heads)
    # q without heads (k rotated alone) is never read or written: pass k's tensors, not an empty one's null pointer
    q_arg, q_out_arg, q_in_arg = (q, q_out, q_in) if q_heads else (k, k_out, k_in)
    device = torch.cuda.device(q.device) if q.device.type == "cuda" else contextlib.nullcontext()
    with device:  # Triton launches on the current CUDA device
        _compiled(interpreting())[grid](
            q_arg,
            k,
            q_out_arg,
            k_out,
            q_in_arg,
            k_in,
            positions,
            series.frequencies,
            cos_coef,
            sin_coef,
            grad_cos if coef_grad else cos_coef,
            grad_sin if coef_grad else sin_coef,
            *q_arg.stride()[:3],
            *k.stride()[:3],
            *q_in_arg.stride()[:3],
            *k_in.stride()[:3],
            stride_pb,
            positions.stride(1),
            length,
            q_heads,
            kv_heads,
            head_dim,
            series.pairs,
            num_terms,
            series.output_dim,
            kv_heads // coef_heads,
            series.scale,
            series.pad_sin,
            -1.0 if backward else 1.0,
            Q_PER_KV=q_heads // kv_heads,
            BLOCK_T=block_t,
            BLOCK_P=_block(series.pairs),
            BLOCK_K=_block(num_terms),
            BLOCK_TAIL=_next_power_of_2(tail) if tail else 0,
            INTERLEAVED=series.layout == "interleaved",
            SERIES=has_series,
            COEF_GRAD=coef_grad,
            OUT_BF16=q.dtype == torch.bfloat16,
        )
    return q_out, k_out, grad_cos, grad_sin
