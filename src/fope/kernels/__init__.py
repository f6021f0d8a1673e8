"""Fused kernels and the switch that picks them: ``pe(q, k, positions)`` of RoPE and FoPE runs the Triton kernel of
``fope.kernels.triton_rotary`` on CUDA tensors when triton is installed, and the eager (or, under ``torch.compile``,
the compiled) path everywhere else.

The switch: ``pe.kernel = "auto" | "triton" | "eager"`` on a module, else the environment variable ``FOPE_KERNEL``
(same values), else ``"auto"``. ``"triton"`` forces the kernel on any device (CPU tensors need Triton's interpreter,
``TRITON_INTERPRET=1``); ``"eager"`` never uses it. While ``torch.compile`` traces, the compiled path is used whatever
the switch says (inductor fuses it itself). The kernel, its inputs and the switch live in ``triton_rotary`` (a
self-contained file that exported transformers models carry as remote code); this module gives them fope's one-line
errors. Nothing here imports triton until the kernel runs.
"""

from __future__ import annotations

from torch import Tensor

from fope.errors import FopeError
from fope.extras import require
from fope.kernels import triton_rotary
from fope.kernels.triton_rotary import KERNEL_CHOICES, RotarySeries

__all__ = ["KERNEL_CHOICES", "RotarySeries", "fused_rotary", "kernel_choice", "use_fused_kernel"]


def kernel_choice(choice: str | None = None) -> str:
    """The switch in effect: ``choice`` (a module's ``kernel``) if given, else ``FOPE_KERNEL``, else ``"auto"``."""
    try:
        return triton_rotary.kernel_choice(choice)
    except triton_rotary.KernelError as error:
        raise FopeError(str(error)) from None


def use_fused_kernel(choice: str | None, q: Tensor) -> bool:
    """Whether ``pe(q, k)`` runs the fused kernel: forced, or ``"auto"`` on CUDA with triton; never while compiling."""
    try:
        return triton_rotary.use_fused_kernel(choice, q)
    except triton_rotary.KernelError as error:
        raise FopeError(str(error)) from None


def fused_rotary(q: Tensor, k: Tensor, positions: Tensor, series: RotarySeries) -> tuple[Tensor, Tensor]:
    """``(q', k')`` through the Triton kernel, differentiable in q, k and (when they require grad) the coefficients."""
    require("triton", "the fused rotary kernel (pe.kernel='triton' or FOPE_KERNEL=triton)")
    try:
        return triton_rotary.fused_rotary(q, k, positions, series)
    except triton_rotary.KernelError as error:
        raise FopeError(str(error)) from None
