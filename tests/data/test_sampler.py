import numpy as np
import pytest
import torch

from fope.data.sampler import WindowSampler
from fope.data.store import TokenStore

VOCAB = 5000


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> TokenStore:
    # Every token id is unique, so a row's first token says where its window starts.
    ids = np.arange(1, 3001)
    documents = [
        (f"doc{i}", ids[start:stop], 1) for i, (start, stop) in enumerate([(0, 1000), (1000, 1700), (1700, 3000)])
    ]
    return TokenStore.write(tmp_path_factory.mktemp("s") / "store", documents, vocab_size=VOCAB, eos_id=0)


def test_rows_are_contiguous_windows_and_targets_are_shifted(store):
    inputs, targets = WindowSampler(store, seq_len=64, batch_size=32, seed=0).batch(0)
    assert inputs.shape == targets.shape == (32, 64)
    assert inputs.dtype == targets.dtype == torch.int64
    stream = torch.from_numpy(store.tokens.astype(np.int64))
    for row, target in zip(inputs, targets, strict=True):
        start = int(torch.nonzero(stream == row[0])[0]) if row[0] != 0 else None
        if start is not None:
            assert torch.equal(row, stream[start : start + 64])
            assert torch.equal(target, stream[start + 1 : start + 65])
    assert torch.equal(targets[:, :-1], inputs[:, 1:])
    assert (inputs == 0).any()  # windows cross document boundaries (EOS inside)


def test_batch_is_a_pure_function_of_seed_and_step(store):
    first = WindowSampler(store, seq_len=16, batch_size=8, seed=1)
    batches = [first.batch(step) for step in range(6)]
    resumed = WindowSampler(store, seq_len=16, batch_size=8, seed=1)
    for step in (4, 2, 5):
        assert all(torch.equal(a, b) for a, b in zip(resumed.batch(step), batches[step], strict=True))
    assert not torch.equal(batches[0][0], batches[1][0])
    assert not torch.equal(WindowSampler(store, seq_len=16, batch_size=8, seed=2).batch(0)[0], batches[0][0])


@pytest.mark.parametrize("world_size", [2, 4])
def test_ranks_split_the_global_batch(store, world_size):
    sampler = WindowSampler(store, seq_len=16, batch_size=8, seed=0)
    parts = [sampler.batch(3, rank=rank, world_size=world_size) for rank in range(world_size)]
    assert all(inputs.shape == (8 // world_size, 16) for inputs, _ in parts)
    whole_inputs, whole_targets = sampler.batch(3)
    assert torch.equal(torch.cat([inputs for inputs, _ in parts]), whole_inputs)
    assert torch.equal(torch.cat([targets for _, targets in parts]), whole_targets)


def test_windows_reach_the_end_of_the_stream(tmp_path):
    store = TokenStore.write(tmp_path / "s", [("only", [1, 2, 3, 4], 4)], vocab_size=10, eos_id=0)
    inputs, targets = WindowSampler(store, seq_len=4, batch_size=3, seed=0).batch(0)
    assert inputs.tolist() == [[1, 2, 3, 4]] * 3
    assert targets.tolist() == [[2, 3, 4, 0]] * 3


def test_errors(store):
    with pytest.raises(ValueError, match="has 3003 tokens, fewer than seq_len \\+ 1 = 3004"):
        WindowSampler(store, seq_len=3003, batch_size=2, seed=0)
    sampler = WindowSampler(store, seq_len=8, batch_size=6, seed=0)
    with pytest.raises(ValueError, match=r"batch_size=6 \(global\) must be a multiple of world_size=4"):
        sampler.batch(0, rank=0, world_size=4)
    with pytest.raises(ValueError, match=r"rank must be in \[0, world_size=2\); got 2"):
        sampler.batch(0, rank=2, world_size=2)
    with pytest.raises(ValueError, match="step must be an int >= 0; got -1"):
        sampler.batch(-1)
    with pytest.raises(ValueError, match="seq_len must be an int >= 1; got 0"):
        WindowSampler(store, seq_len=0, batch_size=6, seed=0)


def constant_mixer(rng: np.random.Generator, n: int, seq_len: int) -> torch.Tensor:
    value = int(rng.integers(4000, 5000))
    return torch.full((n, seq_len + 1), value, dtype=torch.int64)


def test_mixers_replace_a_fraction_of_rows_deterministically(store):
    sampler = WindowSampler(store, seq_len=16, batch_size=8, seed=0, mixers=[(0.25, constant_mixer)])
    inputs, targets = sampler.batch(2)
    mixed = (inputs >= 4000).all(dim=1)
    assert int(mixed.sum()) == 2
    assert not (inputs[~mixed] >= 4000).any()
    assert torch.equal(targets[mixed], inputs[mixed])  # constant rows: targets equal inputs
    again = WindowSampler(store, seq_len=16, batch_size=8, seed=0, mixers=[(0.25, constant_mixer)]).batch(2)
    assert torch.equal(again[0], inputs)
    halves = [sampler.batch(2, rank=r, world_size=2)[0] for r in (0, 1)]
    assert torch.equal(torch.cat(halves), inputs)


def test_mixer_errors(store):
    with pytest.raises(ValueError, match="sum to at most 1"):
        WindowSampler(store, seq_len=16, batch_size=8, seed=0, mixers=[(0.6, constant_mixer), (0.6, constant_mixer)])
    short = WindowSampler(store, seq_len=16, batch_size=8, seed=0, mixers=[(0.5, lambda rng, n, s: torch.zeros(n, s))])
    with pytest.raises(ValueError, match=r"returned shape \(4, 16\); expected \(4, 17\)"):
        short.batch(0)


def test_negative_mixer_entries_keep_the_sampled_corpus_tokens(store):
    def packed(rng: np.random.Generator, n: int, seq_len: int) -> torch.Tensor:
        rows = torch.full((n, seq_len + 1), -1, dtype=torch.int64)
        rows[:, -5:] = 7  # an "example" packed at the end of the row, after the row's own text
        return rows

    plain = WindowSampler(store, seq_len=16, batch_size=4, seed=0).global_batch(0)
    mixed = WindowSampler(store, seq_len=16, batch_size=4, seed=0, mixers=[(0.5, packed)]).global_batch(0)
    changed = [row for row in range(4) if not np.array_equal(plain[row], mixed[row])]
    assert len(changed) == 2
    for row in changed:
        assert np.array_equal(mixed[row, :-5], plain[row, :-5]) and np.all(mixed[row, -5:] == 7)
    inputs, targets = WindowSampler(store, seq_len=16, batch_size=4, seed=0, mixers=[(0.5, packed)]).batch(0)
    assert not (inputs < 0).any() and not (targets < 0).any()
