"""Tiny models and constructed activations for the analysis tests."""

from __future__ import annotations

import torch

from fope import ModelConfig, TransformerLM

VOCAB = 50
TRAIN_LENGTH = 64  # head_dim 16: FoPE keeps 3 of 8 frequencies (1, 0.316, 0.1 >= 2*pi/64)


def tiny_model(position: str = "rope", **changes: object) -> TransformerLM:
    """2 layers, 4 heads of 16, d_model 64, seeded; in eval mode."""
    values: dict[str, object] = {
        "vocab_size": VOCAB,
        "d_model": 64,
        "num_layers": 2,
        "num_heads": 4,
        "train_length": TRAIN_LENGTH,
        "position": position,
        "position_seed": 0,
    }
    values.update(changes)
    torch.manual_seed(0)
    return TransformerLM(ModelConfig(**values)).eval()


def random_tokens(length: int, batch: int | None = None, seed: int = 1) -> torch.Tensor:
    shape = (length,) if batch is None else (batch, length)
    return torch.randint(0, VOCAB, shape, generator=torch.Generator().manual_seed(seed))


def single_pair_qk(head_dim: int, pair: int, q_pair: complex, k_pair: complex, length: int) -> tuple:
    """Queries/keys ``(1, 1, T, D)`` constant over positions, zero except rotary pair ``pair`` (half layout)."""
    half = head_dim // 2
    q = torch.zeros(1, 1, length, head_dim)
    k = torch.zeros(1, 1, length, head_dim)
    q[..., pair], q[..., pair + half] = q_pair.real, q_pair.imag
    k[..., pair], k[..., pair + half] = k_pair.real, k_pair.imag
    return q, k
