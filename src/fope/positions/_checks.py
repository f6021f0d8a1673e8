"""Shape checks of the position encodings (head and rotary dims, q/k, positions); scalar checks are ``fope.checks``."""

from __future__ import annotations

import torch
from torch import Tensor

from fope.checks import check_choice, check_float, check_int

__all__ = [
    "LAYOUTS",
    "check_choice",
    "check_float",
    "check_heads",
    "check_int",
    "check_qk",
    "check_rotary_dims",
    "resolve_positions",
]

LAYOUTS = ("half", "interleaved")


def check_rotary_dims(head_dim: object, rotary_dim: object) -> tuple[int, int]:
    """(head_dim, rotary_dim): both even, ``2 <= rotary_dim <= head_dim``; rotary_dim defaults to head_dim."""
    head_dim = check_int("head_dim", head_dim, minimum=2)
    if head_dim % 2:
        raise ValueError(f"head_dim must be even (it is split into rotary pairs); got {head_dim}")
    if rotary_dim is None:
        return head_dim, head_dim
    rotary_dim = check_int("rotary_dim", rotary_dim, minimum=2)
    if rotary_dim % 2 or rotary_dim > head_dim:
        raise ValueError(f"rotary_dim must be even and <= head_dim={head_dim}; got {rotary_dim}")
    return head_dim, rotary_dim


def check_heads(num_heads: object, num_kv_heads: object) -> tuple[int, int]:
    """(num_heads, num_kv_heads) with num_kv_heads dividing num_heads; num_kv_heads defaults to num_heads."""
    num_heads = check_int("num_heads", num_heads, minimum=1)
    if num_kv_heads is None:
        return num_heads, num_heads
    num_kv_heads = check_int("num_kv_heads", num_kv_heads, minimum=1)
    if num_heads % num_kv_heads:
        raise ValueError(
            f"num_heads={num_heads} must be a multiple of num_kv_heads={num_kv_heads} (grouped-query attention)"
        )
    return num_heads, num_kv_heads


def check_qk(
    q: Tensor,
    k: Tensor,
    *,
    head_dim: int | None = None,
    num_heads: int | None = None,
    num_kv_heads: int | None = None,
) -> None:
    """q ``(B, Hq, T, D)`` and k ``(B, Hkv, T, D)``: floating tensors on one device, same B, T and D,
    ``Hq % Hkv == 0``."""
    for name, x in (("q", q), ("k", k)):
        if not isinstance(x, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor of shape (B, H, T, D); got {type(x).__name__}")
        if x.dim() != 4:
            raise ValueError(f"{name} must have shape (batch, heads, seq_len, head_dim); got shape {tuple(x.shape)}")
        if not x.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor; got dtype {x.dtype}")
    if q.device != k.device:
        raise ValueError(f"q and k must be on the same device; got q on {q.device} and k on {k.device}")
    if q.dtype != k.dtype:  # the fused kernel takes one dtype: the eager path refuses the same call
        raise ValueError(f"q and k must have one dtype; got q {q.dtype} and k {k.dtype}")
    batch, q_heads, length, dim = q.shape
    if k.shape[0] != batch or k.shape[2] != length or k.shape[3] != dim:
        raise ValueError(
            f"q and k must agree in batch, seq_len and head_dim; got q {tuple(q.shape)} and k {tuple(k.shape)}"
        )
    kv_heads = k.shape[1]
    if not q_heads or not kv_heads:
        raise ValueError(f"q and k need at least one head each; got q {tuple(q.shape)} and k {tuple(k.shape)}")
    if q_heads % kv_heads:
        raise ValueError(f"q heads ({q_heads}) must be a multiple of k heads ({kv_heads}); got q {tuple(q.shape)}")
    if head_dim is not None and dim != head_dim:
        raise ValueError(f"q/k head_dim must be {head_dim} (the module's head_dim); got {dim}")
    if num_heads is not None and q_heads != num_heads:
        raise ValueError(f"q must have num_heads={num_heads} heads; got {q_heads} (q shape {tuple(q.shape)})")
    if num_kv_heads is not None and kv_heads != num_kv_heads:
        raise ValueError(f"k must have num_kv_heads={num_kv_heads} heads; got {kv_heads} (k shape {tuple(k.shape)})")


def resolve_positions(positions: Tensor | None, *, batch: int, length: int, device: torch.device) -> Tensor:
    """Integer positions of shape ``(T,)`` or ``(B, T)``; ``arange(T)`` when None.

    Values are checked (no negative position) in eager mode on CPU tensors only: on an accelerator the check would
    force a host synchronisation in every attention layer, and under ``torch.compile`` it would break the graph.
    """
    if positions is None:
        return torch.arange(length, device=device)
    if not isinstance(positions, Tensor):
        raise TypeError(f"positions must be an integer torch.Tensor of shape (T,) or (B, T); got {type(positions)}")
    if positions.is_floating_point() or positions.is_complex() or positions.dtype == torch.bool:
        raise TypeError(f"positions must be an integer tensor (e.g. torch.arange(T)); got dtype {positions.dtype}")
    if positions.dim() not in (1, 2) or positions.shape[-1] != length:
        raise ValueError(f"positions must have shape ({length},) or (batch, {length}); got {tuple(positions.shape)}")
    if positions.dim() == 2 and positions.shape[0] not in (1, batch):
        raise ValueError(f"positions of shape (B, T) must have B=1 or B={batch}; got {tuple(positions.shape)}")
    if (
        positions.device.type == "cpu"
        and not torch.compiler.is_compiling()
        and positions.numel()
        and bool((positions < 0).any())
    ):
        raise ValueError(f"positions must be >= 0; got minimum {int(positions.min())}")
    return positions.to(device)
