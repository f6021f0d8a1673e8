"""The passkey runner: scoring of stub answers, the depth x length grid, seeding, lengths, the KV cache, the CLI."""

from __future__ import annotations

import json
import re
import shutil
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from fope.data.passkey import KEY_RANGE, passkey_text
from fope.evaluate.passkey import (
    build_passkey_prompt,
    default_passkey_lengths,
    evaluate_passkey,
    min_prompt_tokens,
    run_trial,
    trial_rng,
)
from fope.runs import load_run


class ByteTokenizer:
    """Bytes as tokens; EOS is 256."""

    eos_id = 256
    vocab_size = 257

    def encode(self, text):
        return list(text.encode("utf-8"))

    def decode(self, ids):
        return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")


class AnsweringModel(nn.Module):
    """Reads the key from the prompt's needle and answers it (``right``), answers another number, or no number."""

    def __init__(self, mode, train_length=32):
        super().__init__()
        self.mode = mode
        self.weight = nn.Parameter(torch.zeros(1))
        self.config = SimpleNamespace(train_length=train_length)
        self.calls = []

    def generate(self, input_ids, max_new_tokens, *, temperature=0.0, eos_id=None):
        self.calls.append(
            {
                "rows": input_ids.shape[0],
                "tokens": input_ids.shape[1],
                "max_new_tokens": max_new_tokens,
                "temperature": temperature,
                "first": set(input_ids[:, 0].tolist()),
            }
        )
        rows = []
        for row in input_ids:
            key = int(re.search(r"The pass key is (\d+)\.", ByteTokenizer().decode(row.tolist())).group(1))
            answer = {"right": f" {key}. Remember", "wrong": f" {key + 1}.", "silent": " no idea"}[self.mode]
            new = [*ByteTokenizer().encode(answer)[: max_new_tokens - 1], eos_id]
            rows.append(new + [eos_id] * (max_new_tokens - len(new)))  # finished rows are padded with EOS
        return torch.cat([input_ids, torch.tensor(rows)], dim=1)


@pytest.mark.parametrize(("mode", "accuracy"), [("right", 1.0), ("wrong", 0.0), ("silent", 0.0)])
def test_accuracy_of_right_wrong_and_missing_answers(mode, accuracy):
    model = AnsweringModel(mode)
    results = evaluate_passkey(model, ByteTokenizer(), lengths=[300, 600], trials=6, depth_bins=3, progress=False)
    assert [row["accuracy"] for row in results["by_length"]] == [accuracy, accuracy]
    assert set().union(*(call["first"] for call in model.calls)) == {ByteTokenizer().eos_id}  # each opens a document
    assert [row["trials"] for row in results["by_length"]] == [6, 6]
    assert len(results["trials"]) == 12 and all(t["correct"] is (accuracy == 1.0) for t in results["trials"])
    assert {call["temperature"] for call in model.calls} == {0.0} and {c["max_new_tokens"] for c in model.calls} == {10}
    grid = results["grid_accuracy"]
    assert len(grid) == 3 and all(len(row) == 2 for row in grid)
    assert {value for row in grid for value in row if value is not None} == {accuracy}
    assert [sum(column) for column in zip(*results["grid_trials"], strict=True)] == [6, 6]
    if mode == "silent":
        assert all(t["answer"] is None and t["continuation"] == " no idea" for t in results["trials"])
    if mode == "wrong":
        assert all(t["answer"] == t["key"] + 1 for t in results["trials"])


def test_the_grid_puts_each_trial_in_its_depth_bin():
    results = evaluate_passkey(AnsweringModel("right"), ByteTokenizer(), lengths=[400], trials=20, progress=False)
    counts = [row[0] for row in results["grid_trials"]]
    expected = [0] * 5
    for trial in results["trials"]:
        expected[min(int(trial["depth"] * 5), 4)] += 1
    assert counts == expected and sum(counts) == 20


def test_trials_are_seeded_and_ask_the_same_questions_at_every_length():
    tokenizer = ByteTokenizer()
    a = evaluate_passkey(AnsweringModel("right"), tokenizer, lengths=[300, 700], trials=5, seed=3, progress=False)
    b = evaluate_passkey(AnsweringModel("right"), tokenizer, lengths=[300, 700], trials=5, seed=3, progress=False)
    c = evaluate_passkey(AnsweringModel("right"), tokenizer, lengths=[300, 700], trials=5, seed=4, progress=False)

    def questions(results, length):
        return [(t["key"], t["depth"]) for t in results["trials"] if t["target_tokens"] == length]

    assert questions(a, 300) == questions(b, 300) == questions(a, 700)
    assert questions(a, 300) != questions(c, 300)
    assert all(t["num_tokens"] <= t["target_tokens"] for t in a["trials"])
    first = build_passkey_prompt(tokenizer.encode, 300, trial_rng(3, 0))
    assert questions(a, 300)[0] == (first.key, first.depth)


def test_default_lengths_are_the_multiples_of_the_training_length_that_hold_the_prompt():
    tokenizer = ByteTokenizer()
    shortest = min_prompt_tokens(tokenizer.encode)
    assert shortest == 1 + len(tokenizer.encode(passkey_text(KEY_RANGE[1], 0, 0.0)))  # every key has five digits
    assert default_passkey_lengths(tokenizer.encode, train_length=shortest) == [shortest * m for m in (1, 2, 4, 8, 16)]
    # a training length just over a third of the prompt: 1x and 2x cannot hold it, 4x can
    third = shortest // 3 + 1
    assert default_passkey_lengths(tokenizer.encode, train_length=third) == [third * m for m in (4, 8, 16)]
    first = 1 << (shortest - 1).bit_length()  # the smallest power of two that holds it
    assert default_passkey_lengths(tokenizer.encode, train_length=first // 16) == [first]
    results = evaluate_passkey(AnsweringModel("right", train_length=first // 16), tokenizer, trials=1, progress=False)
    assert results["lengths"] == [first] and results["train_length"] == first // 16
    with pytest.raises(ValueError, match=rf"more than 16 x train_length={first // 32}"):
        default_passkey_lengths(tokenizer.encode, train_length=first // 32)
    too_short = [shortest // 2, shortest - 1]
    with pytest.raises(ValueError, match=rf"passkey lengths \[{too_short[0]}, {too_short[1]}\] cannot hold the prompt"):
        evaluate_passkey(AnsweringModel("right"), tokenizer, lengths=[*too_short, 512], trials=1, progress=False)
    with pytest.raises(ValueError, match="trials must be an int >= 1; got 0"):
        evaluate_passkey(AnsweringModel("right"), tokenizer, lengths=[512], trials=0, progress=False)


def test_decoding_uses_the_kv_cache(tiny_runs):
    run = load_run(tiny_runs["rope"])
    inputs = []
    run.model.embed.register_forward_hook(lambda module, args, output: inputs.append(args[0].shape[1]))
    prompt = build_passkey_prompt(run.tokenizer.encode, 256, trial_rng(0, 0))
    trial = run_trial(run.model, run.tokenizer, prompt, 256, max_new_tokens=6, device=torch.device("cpu"))
    assert inputs[0] == prompt.num_tokens + 1  # one prefill of the end-of-document token and the prompt...
    assert inputs[1:] == [1] * (len(inputs) - 1) and 1 <= len(inputs) <= 6  # ...then one token per new token
    assert trial.num_tokens == prompt.num_tokens + 1 and trial.key == prompt.key


def test_a_real_run_and_the_cli(tiny_runs, tmp_path, capsys):
    from fope.cli import main

    run_dir = shutil.copytree(tiny_runs["alibi"], tmp_path / "run")
    lengths = default_passkey_lengths(load_run(run_dir).tokenizer.encode, train_length=32)
    assert main(["passkey", str(run_dir), "--trials", "2", "--batch-size", "2", "--no-progress", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert [row["length"] for row in printed] == lengths and all(row["trials"] == 2 for row in printed)
    saved = json.loads((run_dir / "eval" / "passkey.json").read_text())
    assert saved["run"]["position"] == "alibi" and saved["trials_per_length"] == 2
    assert saved["evaluation"] == "passkey" and saved["task"] == "passkey" and saved["batch_size"] == 2
    assert len(saved["trials"]) == 2 * len(lengths) and all(row["seconds"] > 0 for row in saved["by_length"])
    fields = {"target_tokens", "num_tokens", "key", "depth", "continuation", "answer", "correct", "filler_chars"}
    assert set(saved["trials"][0]) == fields
    assert saved["by_length"][-1]["mean_filler_chars"] > 0
    assert main(["passkey", str(run_dir), "--lengths", "16", "--no-progress"]) == 2
    assert "cannot hold the prompt without filler" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["passkey", str(run_dir), "--batch-size", "0"])
    assert "--batch-size: must be an int >= 1; got '0'" in capsys.readouterr().err


def test_a_length_past_the_limit_is_refused_before_any_prompt_is_built():
    """``fope eval`` refused 10M tokens at once while passkey spent minutes building prompts: the same limit now."""
    model = AnsweringModel("right", train_length=32)
    message = r"lengths \[8193\] are more than 256 x the training length 32 = 8192 tokens; use lengths <= 8192"
    with pytest.raises(ValueError, match=message):
        evaluate_passkey(model, ByteTokenizer(), lengths=[512, 8193], trials=1, progress=False)
    assert model.calls == []  # not even the length that fits was asked


def test_the_cli_refuses_ten_million_tokens_at_once(tiny_runs, tmp_path, capsys):
    from fope.cli import main

    run_dir = shutil.copytree(tiny_runs["rope"], tmp_path / "run")
    for command in ("passkey", "eval"):
        assert main([command, str(run_dir), "--lengths", "10000000", "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"fope {command}: error: lengths [10000000] are more than 256 x the training length 32")
        assert err.count("\n") == 1
    assert not (run_dir / "eval").exists()


def test_ids_past_the_tokenizers_vocabulary_are_no_text_not_an_error():
    """A model's vocabulary may be larger than its tokenizer's (padded embeddings; fope allows it). What it generates
    there decodes to nothing: the trial is scored on the rest, and the evaluation goes on."""
    from fope.data.tokenizer import train_bpe

    tokenizer = train_bpe([passkey_text(12345, 200, 0.5)] * 20 + ["0123456789 the pass key is"] * 20, 300)

    class PaddedVocabularyModel(AnsweringModel):
        def generate(self, input_ids, max_new_tokens, *, temperature=0.0, eos_id=None):
            rows = []
            for row in input_ids:
                key = int(re.search(r"The pass key is (\d+)\.", tokenizer.decode(row.tolist())).group(1))
                new = [tokenizer.vocab_size + 3, *tokenizer.encode(f" {key}."), eos_id]
                rows.append((new + [eos_id] * max_new_tokens)[:max_new_tokens])
            return torch.cat([input_ids, torch.tensor(rows)], dim=1)

    results = evaluate_passkey(PaddedVocabularyModel("right"), tokenizer, lengths=[400], trials=3, progress=False)
    assert results["by_length"][0]["accuracy"] == 1.0
