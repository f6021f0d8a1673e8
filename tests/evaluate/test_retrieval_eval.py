"""The retrieval runner: every task scored on stub answers, batching by token count (batched == one at a time on real
models of every position family), the KV cache, the results file and the CLI."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from torch import nn

from fope.data.retrieval import TASK_NAMES, answer_text, retrieval_task
from fope.evaluate.passkey import evaluate_run_passkey
from fope.evaluate.results import retrieval_name
from fope.evaluate.retrieval import (
    build_prompts,
    evaluate_retrieval,
    evaluate_run_retrieval,
    min_prompt_tokens,
    run_trials,
    same_length_batches,
)
from fope.model import ModelConfig, TransformerLM
from fope.runs import load_run
from tests.data.test_retrieval import expected_answer
from tests.evaluate.test_passkey_eval import ByteTokenizer

FAMILIES = ("rope", "fope", "alibi", "nope")


class OracleModel(nn.Module):
    """Answers each row's question from its text (``right``), one off (``wrong``), or with no number (``silent``)."""

    def __init__(self, task, mode="right", train_length=64):
        super().__init__()
        self.task, self.mode = task, mode
        self.weight = nn.Parameter(torch.zeros(1))
        self.config = type("Config", (), {"train_length": train_length})()
        self.calls = []

    def generate(self, input_ids, max_new_tokens, *, temperature=0.0, eos_id=None):
        self.calls.append({"rows": input_ids.shape[0], "tokens": input_ids.shape[1], "max_new": max_new_tokens})
        tokenizer, rows = ByteTokenizer(), []
        for row in input_ids:
            text = tokenizer.decode(row[1:].tolist())
            answer = expected_answer(self.task, text) if self.task != "passkey" else None
            if self.task == "passkey":
                answer = (int(text.split("The pass key is ")[1].split(".")[0]),)
            if self.mode == "wrong":
                answer = (answer[0] + 1, *answer[1:])
            reply = answer_text(answer[::-1]) if self.mode != "silent" else " no idea"  # any order is right
            new = [*tokenizer.encode(reply)[: max_new_tokens - 1], eos_id]
            rows.append(new + [eos_id] * (max_new_tokens - len(new)))
        return torch.cat([input_ids, torch.tensor(rows)], dim=1)


@pytest.mark.parametrize("task", TASK_NAMES)
@pytest.mark.parametrize(("mode", "accuracy"), [("right", 1.0), ("wrong", 0.0), ("silent", 0.0)])
def test_every_task_scores_right_wrong_and_missing_answers(task, mode, accuracy):
    model = OracleModel(task, mode)
    results = evaluate_retrieval(model, ByteTokenizer(), task, lengths=[400, 700], trials=6, progress=False)
    assert results["evaluation"] == "retrieval" and results["task"] == task
    assert [row["accuracy"] for row in results["by_length"]] == [accuracy, accuracy]
    assert results["max_new_tokens"] == retrieval_task(task).max_new_tokens == model.calls[0]["max_new"]
    assert len(results["trials"]) == 12 and all(t["correct"] is (accuracy == 1.0) for t in results["trials"])
    fields = {"target_tokens", "num_tokens", "key", "depth", "continuation", "answer", "correct", "filler_chars"}
    assert all(set(trial) == fields for trial in results["trials"])
    several = task == "multi-value"
    assert all(isinstance(t["key"], list) is several for t in results["trials"])
    if mode == "silent":
        assert all(t["answer"] == ([] if several else None) for t in results["trials"])
    if mode == "right" and several:
        assert all(t["answer"] == t["key"][::-1] for t in results["trials"])  # what was found, in its order


def test_prompts_of_one_length_are_batched_by_token_count():
    tokenizer = ByteTokenizer()
    one = OracleModel("multi-key")
    alone = evaluate_retrieval(one, tokenizer, "multi-key", lengths=[300, 900], trials=24, batch_size=1, progress=False)
    grouped = OracleModel("multi-key")
    batched = evaluate_retrieval(grouped, tokenizer, "multi-key", lengths=[300, 900], trials=24, progress=False)
    assert [call["rows"] for call in one.calls] == [1] * 48
    counts = {
        length: {t["num_tokens"] for t in alone["trials"] if t["target_tokens"] == length} for length in (300, 900)
    }
    assert len(grouped.calls) == sum(len(c) for c in counts.values()) < 48  # one call per token count and length
    assert sum(call["rows"] for call in grouped.calls) == 48
    assert alone["trials"] == batched["trials"] and alone["by_length"][0]["accuracy"] == 1.0
    assert alone["batch_size"] == 1 and batched["batch_size"] is None
    capped = OracleModel("multi-key")
    evaluate_retrieval(capped, tokenizer, "multi-key", lengths=[900], trials=24, batch_size=3, progress=False)
    assert max(call["rows"] for call in capped.calls) == 3
    with pytest.raises(ValueError, match="batch_size must be an int >= 1; got 0"):
        evaluate_retrieval(capped, tokenizer, "multi-key", lengths=[900], trials=2, batch_size=0, progress=False)


def test_batches_hold_one_token_count_in_trial_order():
    task = retrieval_task("multi-key")  # key names differ in length, so token counts differ
    prompts = build_prompts(task, ByteTokenizer().encode, 500, 30, seed=0)
    batches = same_length_batches(prompts, 4)
    assert sorted(index for batch in batches for index in batch) == list(range(30))
    assert all(len({prompts[i].num_tokens for i in batch}) == 1 and len(batch) <= 4 for batch in batches)
    assert all(batch == sorted(batch) for batch in batches) and len({prompts[b[0]].num_tokens for b in batches}) > 1
    mixed = [prompts[batches[0][0]], prompts[batches[-1][0]]]
    with pytest.raises(ValueError, match="a batch needs prompts of one token count"):
        run_trials(OracleModel("multi-key"), ByteTokenizer(), task, mixed, 500, 10, torch.device("cpu"))


def small_model(position: str, vocab_size: int) -> TransformerLM:
    torch.manual_seed(0)
    config = ModelConfig(
        vocab_size=vocab_size,
        d_model=32,
        num_layers=2,
        num_heads=2,
        position=position,
        train_length=32,
        position_seed=0,
    )
    return TransformerLM(config).eval()


@pytest.fixture(scope="module")
def tokenizer(tiny_runs):
    return load_run(tiny_runs["rope"]).tokenizer


@pytest.mark.parametrize("trained", [False, True], ids=["random", "trained"])
@pytest.mark.parametrize("position", FAMILIES)
def test_batched_trials_equal_trials_one_at_a_time(position, trained, tiny_runs, tokenizer):
    model = load_run(tiny_runs[position]).model if trained else small_model(position, tokenizer.vocab_size)
    for task in ("passkey", "variable-tracking"):
        shortest = min_prompt_tokens(task, tokenizer.encode)
        lengths = [shortest + 24, 2 * shortest + 40]
        options = {"lengths": lengths, "trials": 10, "progress": False}
        alone = evaluate_retrieval(model, tokenizer, task, batch_size=1, **options)
        batched = evaluate_retrieval(model, tokenizer, task, **options)
        assert alone["trials"] == batched["trials"]  # every continuation and score
        prompts = build_prompts(retrieval_task(task), tokenizer.encode, lengths[1], 10, seed=0)
        batch = max(same_length_batches(prompts, 10), key=len)
        assert len(batch) >= 2  # the comparison batches something
        ids = torch.tensor([[tokenizer.eos_id, *prompts[i].token_ids] for i in batch])
        with torch.inference_mode():
            together = model(ids).logits[:, -1]
            apart = torch.cat([model(row[None]).logits[:, -1] for row in ids])
        torch.testing.assert_close(together, apart, rtol=0, atol=1e-5)


def test_a_batch_decodes_with_the_kv_cache(tiny_runs, tokenizer):
    run = load_run(tiny_runs["fope"])
    task = retrieval_task("multi-key")
    prompts = build_prompts(task, tokenizer.encode, min_prompt_tokens(task, tokenizer.encode) + 60, 12, seed=0)
    batch = [prompts[i] for i in max(same_length_batches(prompts, 12), key=len)]
    shapes = []
    run.model.embed.register_forward_hook(lambda module, args, output: shapes.append(tuple(args[0].shape)))
    trials = run_trials(run.model, tokenizer, task, batch, 0, 6, torch.device("cpu"))
    assert shapes[0] == (len(batch), batch[0].num_tokens + 1)  # one prefill of every row...
    assert shapes[1:] == [(len(batch), 1)] * (len(shapes) - 1) and len(shapes) <= 6  # ...then one token per step
    assert [trial.key for trial in trials] == [prompt.answer[0] for prompt in batch]


def test_a_real_run_and_the_cli(tiny_runs, tmp_path, capsys):
    from fope.cli import main

    run_dir = shutil.copytree(tiny_runs["alibi"], tmp_path / "run")
    argv = ["retrieval", str(run_dir), "--task", "multi-value", "--trials", "3", "--no-progress"]
    assert main([*argv, "--json", "--batch-size", "2"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert all(row["trials"] == 3 for row in printed) and len(printed) >= 2
    saved = json.loads((run_dir / "eval" / f"{retrieval_name('multi-value')}.json").read_text())
    assert saved["run"]["position"] == "alibi" and saved["run"]["retrieval_tasks"] == ["passkey"]
    assert saved["evaluation"] == "retrieval" and saved["task"] == "multi-value" and saved["batch_size"] == 2
    assert [row["length"] for row in saved["by_length"]] == [row["length"] for row in printed]
    assert main([*argv, "--lengths", str(saved["lengths"][-1])]) == 0
    out = capsys.readouterr().out
    assert out.startswith("multi-value: 3 trials per length") and "retrieval-multi-value.json" in out
    assert main(["retrieval", str(run_dir), "--task", "needle", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "fope retrieval: error: unknown retrieval task 'needle'; known: passkey, multi-key, multi-value, "
        "variable-tracking"
    )
    assert main(["retrieval", str(run_dir), "--task", "variable-tracking", "--lengths", "20", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "variable-tracking lengths [20] cannot hold the prompt without filler" in err and "\n" not in err


def test_an_unknown_task_fails_before_the_run_is_read(tmp_path):
    with pytest.raises(ValueError, match="unknown retrieval task 'nope'"):
        evaluate_run_retrieval(tmp_path / "missing", "nope")


@pytest.mark.parametrize("wrapper", ["retrieval", "passkey"])
def test_a_misspelled_option_fails_before_the_run_is_read(wrapper, tmp_path):
    """The wrappers forward ``**options``: a wrong keyword is Python's own TypeError, not a failure after loading."""
    missing = tmp_path / "missing"  # loading it would raise another error (no run there): the check comes first
    call = (
        (lambda: evaluate_run_retrieval(missing, "passkey", trails=5))
        if wrapper == "retrieval"
        else (lambda: evaluate_run_passkey(missing, trails=5))
    )
    with pytest.raises(TypeError, match=rf"evaluate_run_{wrapper}\(\) got an unexpected keyword argument 'trails'"):
        call()


@pytest.mark.parametrize("task", TASK_NAMES)
def test_a_length_past_the_limit_is_refused_before_any_prompt_is_built(task, monkeypatch):
    def no_prompts(*args, **kwargs):
        raise AssertionError("prompts were built for a length that is refused")

    monkeypatch.setattr("fope.evaluate.retrieval.build_prompts", no_prompts)
    model = OracleModel(task, train_length=64)
    with pytest.raises(ValueError, match=r"lengths \[16385\] are more than 256 x the training length 64 = 16384"):
        evaluate_retrieval(model, ByteTokenizer(), task, lengths=[16385], trials=1, progress=False)
    assert model.calls == []
