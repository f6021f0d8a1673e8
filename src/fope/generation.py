"""Decoding: the KV cache of ``fope.model.TransformerLM``, the next-token sampler, and the one decode loop.

``decode`` serves ``TransformerLM.generate`` and ``fope.integrations.hf_lm.HFCausalLM.generate``: each passes a step
function that runs its model on new tokens with its own cache and returns the last position's logits.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from fope.checks import check_int

__all__ = ["KVCache", "Step", "decode", "sample_next_token"]

#: ``step(new_tokens (B, n), cache) -> (logits (B, vocab) at the last new token, cache)``; the cache starts as None.
Step = Callable[[Tensor, Any], tuple[Tensor, Any]]


class KVCache:
    """Keys, values and positions of the tokens seen so far, for every layer, preallocated for ``max_length`` tokens.

    Pass the same cache to successive ``TransformerLM.forward`` calls: each call appends its tokens. Key/value storage
    takes the batch size, dtype and device of the first keys written.
    """

    def __init__(self, num_layers: int, max_length: int) -> None:
        check_int("num_layers", num_layers, minimum=1)
        check_int("max_length", max_length, minimum=1)
        self.max_length = max_length
        self.length = 0
        self.keys: list[Tensor | None] = [None] * num_layers
        self.values: list[Tensor | None] = [None] * num_layers
        self.positions: Tensor | None = None

    def check(self, batch: int, num_layers: int) -> None:
        """Before a forward writes anything: the cache is for ``num_layers`` layers and holds rows of ``batch``."""
        if len(self.keys) != num_layers:
            raise ValueError(f"the KV cache has {len(self.keys)} layers; the model has {num_layers}")
        filled = next((keys for keys in self.keys if keys is not None), None)
        if filled is not None and filled.shape[0] != batch:
            raise ValueError(
                f"KV cache was filled with batch size {filled.shape[0]}; got input_ids of batch size {batch}"
            )

    def rollback(self, length: int) -> None:
        """Forget every token after the first ``length`` (a failed forward's); with none left, the storage too, so
        that the next call may bring another batch size."""
        self.length = length
        if not length:
            self.keys = [None] * len(self.keys)
            self.values = [None] * len(self.values)
            self.positions = None

    def extend(self, positions: Tensor) -> Tensor:
        """Reserve room for ``positions`` (``(T,)`` or ``(B, T)``) and return the positions of all keys so far."""
        new_length = self.length + positions.shape[-1]
        if new_length > self.max_length:
            raise ValueError(
                f"KV cache holds at most max_length={self.max_length} tokens; "
                f"{self.length} cached + {positions.shape[-1]} new = {new_length}"
            )
        rows = positions if positions.dim() == 2 else positions.unsqueeze(0)
        if self.positions is None:
            self.positions = torch.zeros(rows.shape[0], self.max_length, dtype=torch.long, device=rows.device)
        elif rows.shape[0] != self.positions.shape[0]:
            if self.positions.shape[0] != 1 and rows.shape[0] != 1:
                raise ValueError(
                    f"KV cache holds positions for batch size {self.positions.shape[0]}; "
                    f"got positions of shape {tuple(positions.shape)}"
                )
            if self.positions.shape[0] == 1:
                self.positions = self.positions.expand(rows.shape[0], -1).clone()
        self.positions[:, self.length : new_length] = rows
        self.length = new_length
        key_positions = self.positions[:, :new_length]
        return key_positions[0] if key_positions.shape[0] == 1 else key_positions

    def update(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Store this layer's new keys/values ``(B, Hkv, T, D)`` (after ``extend``) and return all of them."""
        if self.keys[layer] is None:
            batch, heads, _, dim = k.shape
            self.keys[layer] = k.new_zeros(batch, heads, self.max_length, dim)
            self.values[layer] = v.new_zeros(batch, heads, self.max_length, v.shape[-1])
        keys, values = self.keys[layer], self.values[layer]
        if k.shape[0] != keys.shape[0]:
            raise ValueError(f"KV cache was filled with batch size {keys.shape[0]}; got keys of shape {tuple(k.shape)}")
        start = self.length - k.shape[2]
        keys[:, :, start : self.length] = k
        values[:, :, start : self.length] = v
        return keys[:, :, : self.length], values[:, :, : self.length]


@torch.no_grad()
def decode(
    step: Step,
    input_ids: Tensor,
    max_new_tokens: int,
    *,
    temperature: float = 0.0,
    top_k: int | None = None,
    top_p: float | None = None,
    eos_id: int | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Continue each row of ``input_ids`` ``(B, T)``; returns prompt and new tokens ``(B, T + n)``.

    ``step`` first gets the whole prompt (prefill), then each new token, without gradients. ``temperature=0`` is
    greedy; otherwise tokens are sampled (after ``top_k`` / ``top_p`` filtering) with ``generator``. With ``eos_id``,
    rows that produced it are padded with it and decoding stops early once every row has.
    """
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be an int >= 0; got {max_new_tokens!r}")
    if (
        not isinstance(input_ids, Tensor)
        or input_ids.dim() != 2
        or input_ids.is_floating_point()
        or input_ids.is_complex()
        or input_ids.dtype == torch.bool
    ):
        shape = f"{tuple(input_ids.shape)} {input_ids.dtype}" if isinstance(input_ids, Tensor) else ""
        raise ValueError(
            f"input_ids must be an integer tensor of shape (batch, seq_len); got {shape or type(input_ids).__name__}"
        )
    if eos_id is not None and (isinstance(eos_id, bool) or not isinstance(eos_id, numbers.Integral) or eos_id < 0):
        raise ValueError(f"eos_id must be None or a token id (an int >= 0); got {eos_id!r}")
    tokens = input_ids
    finished = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
    step_input, cache = input_ids, None
    for _ in range(max_new_tokens):
        logits, cache = step(step_input, cache)
        if eos_id is not None and tokens is input_ids and eos_id >= logits.shape[-1]:  # once, after the prefill
            raise ValueError(f"eos_id must be a token id below the vocabulary size {logits.shape[-1]}; got {eos_id}")
        next_token = sample_next_token(logits, temperature=temperature, top_k=top_k, top_p=top_p, generator=generator)
        if eos_id is not None:
            next_token = next_token.masked_fill(finished, eos_id)
            finished |= next_token == eos_id
        tokens = torch.cat((tokens, next_token.unsqueeze(-1)), dim=-1)
        if eos_id is not None and bool(finished.all()):
            break
        step_input = next_token.unsqueeze(-1)
    return tokens


def sample_next_token(
    logits: Tensor,
    *,
    temperature: float = 0.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Next token ids ``(B,)`` from logits ``(B, vocab)``: argmax at ``temperature=0``, else a filtered sample."""
    if (
        isinstance(temperature, bool)
        or not isinstance(temperature, (int, float))
        or not math.isfinite(temperature)
        or temperature < 0
    ):
        raise ValueError(f"temperature must be a finite number >= 0 (0 is greedy); got {temperature!r}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise ValueError(f"top_k must be None or an int >= 1; got {top_k!r}")
    if top_p is not None and (isinstance(top_p, bool) or not isinstance(top_p, (int, float)) or not 0 < top_p <= 1):
        raise ValueError(f"top_p must be None or a number in (0, 1]; got {top_p!r}")
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits.float() / temperature
    if top_k is not None:
        kth_largest = logits.topk(min(top_k, logits.shape[-1]), dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth_largest, float("-inf"))
    if top_p is not None:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        # Drop a token once the more likely ones already hold top_p of the mass; the most likely one always stays.
        outside = probs.cumsum(dim=-1) - probs >= top_p
        logits = logits.scatter(-1, order, sorted_logits.masked_fill(outside, float("-inf")))
    probs = logits.softmax(dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(-1)
