"""Training batches: random windows of the concatenated token stream, a pure function of ``(seed, step)``."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from fope.checks import check_int
from fope.data.store import TokenStore

#: ``mixer(rng, n, seq_len)`` -> ``(n, seq_len + 1)`` int64 tokens (e.g. passkey-format examples) laid over ``n``
#: sampled rows: negative entries keep the row's own corpus tokens, so an example can be packed after real text
#: like any document in the stream.
Mixer = Callable[[np.random.Generator, int, int], torch.Tensor]


class WindowSampler:
    """Global batches of ``batch_size`` windows of ``seq_len + 1`` tokens, anywhere in the store (across documents).

    The global batch of a step depends only on ``(seed, step)``: resuming at step s gives the same data, and rank r of
    W takes rows ``[r * b / W, (r + 1) * b / W)`` of it, so any number of processes sees the data of one process.
    ``mixers`` is a sequence of ``(fraction, mixer)``: each step, ``round(fraction * batch_size)`` rows at positions
    drawn from the same per-step generator are overlaid with the mixer's sequences (negative entries keep the row).
    """

    def __init__(
        self,
        store: TokenStore,
        seq_len: int,
        batch_size: int,
        seed: int,
        mixers: Sequence[tuple[float, Mixer]] = (),
    ) -> None:
        self.seq_len = check_int("seq_len", seq_len, minimum=1)
        self.batch_size = check_int("batch_size", batch_size, minimum=1)
        self.seed = check_int("seed", seed, minimum=0)
        if store.num_tokens < self.seq_len + 1:
            raise ValueError(
                f"the store {store.path} has {store.num_tokens} tokens, fewer than seq_len + 1 = {self.seq_len + 1}; "
                "use a shorter seq_len or more data"
            )
        fractions = [fraction for fraction, _ in mixers]
        if any(not 0 <= fraction <= 1 for fraction in fractions) or sum(fractions) > 1:
            raise ValueError(f"mixer fractions must each be in [0, 1] and sum to at most 1; got {fractions}")
        self.store = store
        self.mixers = list(mixers)

    def global_batch(self, step: int) -> np.ndarray:
        """The ``(batch_size, seq_len + 1)`` int64 token rows of ``step``."""
        step = check_int("step", step, minimum=0)
        rng = np.random.default_rng([self.seed, step])
        window = self.seq_len + 1
        starts = rng.integers(0, self.store.num_tokens - window + 1, size=self.batch_size)
        rows = self.store.tokens[starts[:, None] + np.arange(window)].astype(np.int64)
        if self.mixers:
            positions = rng.permutation(self.batch_size)
            for fraction, mixer in self.mixers:
                count = round(fraction * self.batch_size)
                chosen, positions = positions[:count], positions[count:]
                mixed = torch.as_tensor(mixer(rng, count, self.seq_len))
                if mixed.shape != (count, window):
                    raise ValueError(
                        f"mixer {mixer!r} returned shape {tuple(mixed.shape)}; expected ({count}, {window})"
                    )
                rows[chosen] = np.where(mixed.numpy() < 0, rows[chosen], mixed.numpy())
        return rows

    def batch(self, step: int, rank: int = 0, world_size: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs, targets) of this rank: int64 ``(batch_size // world_size, seq_len)``, targets shifted by one."""
        world_size = check_int("world_size", world_size, minimum=1)
        rank = check_int("rank", rank, minimum=0)
        if rank >= world_size:
            raise ValueError(f"rank must be in [0, world_size={world_size}); got {rank}")
        if self.batch_size % world_size:
            raise ValueError(f"batch_size={self.batch_size} (global) must be a multiple of world_size={world_size}")
        per_rank = self.batch_size // world_size
        rows = torch.from_numpy(self.global_batch(step)[rank * per_rank : (rank + 1) * per_rank])
        return rows[:, :-1].contiguous(), rows[:, 1:].contiguous()
