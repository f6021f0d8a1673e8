"""Fused kernels and the switch that picks them: ``pe(q, k, positions)`` of RoPE and FoPE runs the Triton kernel of
``fope.kernels.triton_rotary`` on CUDA tensors when triton is installed, and the eager (or, under ``torch.compile``,
the compiled) path everywhere else.

The switch: ``pe.kernel = "auto" | "triton" | "eager"`` on a module, else the environment variable ``FOPE_KERNEL``
(same values), else ``"auto"``. ``"triton"`` forces the kernel on any device (CPU tensors need Triton's interpreter,
``TRITON_INTERPRET=1``); ``"eager"`` never uses it. While ``torch.compile`` traces, the compiled path is used whatever
the switch says (inductor fuses it itself). This module imports triton only when the kernel runs.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import os
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from fope.errors import FopeError
from fope.extras import require

__all__ = ["KERNEL_CHOICES", "RotarySeries", "fused_rotary", "kernel_choice", "use_fused_kernel"]

KERNEL_CHOICES = ("auto", "triton", "eager")


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
        raise FopeError(f"{source} must be one of {', '.join(KERNEL_CHOICES)}; got {choice!r}")
    return choice


@functools.cache
def _triton_installed() -> bool:
    return importlib.util.find_spec("triton") is not None


def use_fused_kernel(choice: str | None, q: Tensor) -> bool:
    """Whether ``pe(q, k)`` runs the fused kernel: forced, or ``"auto"`` on CUDA with triton; never while compiling."""
    if torch.compiler.is_compiling():
        return False
    choice = kernel_choice(choice)
    if choice == "eager":
        return False
    if choice == "triton":
        return True
    return q.device.type == "cuda" and _triton_installed()


def fused_rotary(q: Tensor, k: Tensor, positions: Tensor, series: RotarySeries) -> tuple[Tensor, Tensor]:
    """``(q', k')`` through the Triton kernel, differentiable in q, k and (when they require grad) the coefficients."""
    require("triton", "the fused rotary kernel (pe.kernel='triton' or FOPE_KERNEL=triton)")
    from fope.kernels import triton_rotary

    if q.device.type == "cpu" and not triton_rotary.interpreting():
        raise FopeError(
            "the Triton kernel runs on CPU tensors only under its interpreter: set TRITON_INTERPRET=1, "
            "or use FOPE_KERNEL=eager (q is on the cpu)"
        )
    if q.dtype != k.dtype:
        raise FopeError(f"the Triton kernel needs q and k of one dtype; got q {q.dtype} and k {k.dtype}")
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
        from fope.kernels.triton_rotary import launch

        coef_grad = cos_coef is not None and (cos_coef.requires_grad or sin_coef.requires_grad)
        ctx.save_for_backward(positions, q if coef_grad else None, k if coef_grad else None)
        ctx.series, ctx.coef_grad, ctx.shapes = series, coef_grad, (q.shape, k.shape)
        q_out, k_out, _, _ = launch(q, k, positions, _detached(series))
        return q_out, k_out

    @staticmethod
    def backward(ctx: Any, grad_q: Tensor | None, grad_k: Tensor | None) -> tuple[Tensor | None, ...]:
        from fope.kernels.triton_rotary import launch

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
