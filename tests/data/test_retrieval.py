"""The retrieval tasks: prompt layout and answers, fitting to a token count, seeding, scoring, training examples, the
mixer (bit-identical to passkey_mixer with the passkey task alone) and the data.retrieval_tasks setting."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from fope.config import ConfigError, DataConfig, from_dict, load_config
from fope.data.passkey import FILLER, KEY_RANGE, QUESTION, build_passkey_prompt, passkey_mixer
from fope.data.retrieval import (
    FILL_STEP,
    KEY_NAMES,
    RETRIEVAL_TASKS,
    TASK_NAMES,
    MultiKeyTask,
    MultiValueTask,
    VariableTrackingTask,
    answer_text,
    check_retrieval_tasks,
    passkey_prompt,
    retrieval_mixer,
    retrieval_task,
    score_integers,
)

NEW_TASKS = ("multi-key", "multi-value", "variable-tracking")


def byte_encode(text: str) -> list[int]:
    return list(text.encode("utf-8"))


def prompt_of(name: str, target: int = 600, seed: int = 0):
    return retrieval_task(name).prompt(byte_encode, target, np.random.default_rng(seed))


def needle_lines(text: str) -> list[str]:
    """The lines between the filler segments: odd lines before the question (filler, needle, filler, ..., filler)."""
    return text.split("\n")[1:-1:2]


def filler_before(text: str, line_index: int) -> int:
    """Filler characters on the lines before line ``line_index`` (filler lines are the even ones)."""
    return sum(len(line) for line in text.split("\n")[:line_index:2])


def test_the_registry_holds_the_four_tasks():
    assert TASK_NAMES == ("passkey", "multi-key", "multi-value", "variable-tracking")
    assert all(RETRIEVAL_TASKS[name].name == name for name in TASK_NAMES)
    with pytest.raises(ValueError, match="unknown retrieval task 'needle'; known: passkey, multi-key, multi-value"):
        retrieval_task("needle")


def test_layout_lines_alternate_filler_and_needles_and_end_with_the_question():
    for name, count in (("multi-key", 3), ("multi-value", 3), ("variable-tracking", 4)):
        prompt = prompt_of(name)
        lines = prompt.text.split("\n")
        assert len(lines) == 2 * count + 2  # filler, (needle, filler) x count, question
        assert all(FILLER.startswith(line) or line.startswith(FILLER) for line in lines[:-1:2])  # filler restarts
        assert prompt.filler_chars == sum(len(line) for line in lines[:-1:2])
        assert prompt.filler_chars % FILL_STEP == 0 and prompt.filler_chars > 0


def test_multi_key_asks_one_of_several_distinct_keys():
    asked_positions = set()
    for seed in range(40):
        prompt = prompt_of("multi-key", seed=seed)
        lines = needle_lines(prompt.text)
        pairs = [re.fullmatch(r"The (\w+) key is (\d+)\.", line).groups() for line in lines]
        names, values = [name for name, _ in pairs], [int(value) for _, value in pairs]
        assert len(set(names)) == len(set(values)) == 3 and set(names) <= set(KEY_NAMES)
        assert all(KEY_RANGE[0] <= value <= KEY_RANGE[1] for value in values)
        asked = re.fullmatch(r"What is the (\w+) key\? The \1 key is", prompt.text.split("\n")[-1]).group(1)
        position = names.index(asked)
        asked_positions.add(position)
        assert prompt.answer == (values[position],)
        # depth: the share of the filler before the asked needle (line 2 * position + 1), up to rounding
        assert abs(filler_before(prompt.text, 2 * position + 1) - prompt.depth * prompt.filler_chars) <= 0.5
    assert asked_positions == {0, 1, 2}


def test_multi_value_answers_every_value_in_prompt_order():
    prompt = prompt_of("multi-value")
    values = [int(re.fullmatch(r"A pass key is (\d+)\.", line).group(1)) for line in needle_lines(prompt.text)]
    assert prompt.answer == tuple(values) and len(set(values)) == 3
    assert prompt.text.endswith("What are the pass keys? The pass keys are")
    assert abs(filler_before(prompt.text, 1) - prompt.depth * prompt.filler_chars) <= 0.5  # the first, farthest
    assert MultiValueTask(num_values=5).max_new_tokens == 38  # 7 tokens per value and a few more


def resolve(statements: list[str], asked: str) -> int:
    """Run the assignments in order; every variable must be defined before it is read."""
    values: dict[str, int] = {}
    for statement in statements:
        target, source = re.fullmatch(r"(\$[A-Z]) = (\$[A-Z]|\d+)\.", statement).groups()
        assert target not in values
        values[target] = values[source] if source.startswith("$") else int(source)  # KeyError: read before set
    return values[asked]


@pytest.mark.parametrize(("chains", "hops"), [(2, 1), (3, 2), (1, 0)])
def test_variable_tracking_answer_follows_the_asked_chain(chains, hops):
    task = VariableTrackingTask(chains=chains, hops=hops)
    for seed in range(20):
        prompt = task.prompt(byte_encode, 900, np.random.default_rng(seed))
        statements = needle_lines(prompt.text)
        assert len(statements) == chains * (hops + 1)
        asked = re.fullmatch(r"What is (\$[A-Z])\? \1 is", prompt.text.split("\n")[-1]).group(1)
        assert prompt.answer == (resolve(statements, asked),)
        numbers = [int(n) for statement in statements for n in re.findall(r"\d+", statement)]
        assert len(numbers) == chains and len(set(numbers)) == chains  # the other chains hold other values
        first = next(i for i, s in enumerate(statements) if s.endswith(f" = {prompt.answer[0]}."))
        assert abs(filler_before(prompt.text, 2 * first + 1) - prompt.depth * prompt.filler_chars) <= 0.5


@pytest.mark.parametrize("name", NEW_TASKS)
@pytest.mark.parametrize("target", [200, 600, 2000])
def test_the_prompt_is_the_longest_that_fits_the_target(name, target):
    prompt = prompt_of(name, target)
    assert prompt.token_ids == byte_encode(prompt.text)
    assert target - FILL_STEP < prompt.num_tokens <= target  # bytes: one more step would not fit


@pytest.mark.parametrize("name", NEW_TASKS)
def test_prompts_are_seeded_and_too_short_targets_are_errors(name):
    a = [prompt_of(name, seed=seed) for seed in range(30)]
    b = [prompt_of(name, seed=seed) for seed in range(30)]
    assert a == b and len({p.answer for p in a}) == 30
    depths = [p.depth for p in a]
    assert min(depths) < 0.3 and max(depths) > 0.5
    task = retrieval_task(name)
    shortest = task.shortest_tokens(byte_encode)
    assert shortest >= max(len(byte_encode(p.text)) - p.filler_chars for p in a)  # the most over seeded draws
    with pytest.raises(ValueError, match=f"target_tokens=40 is shorter than the {name} prompt without filler"):
        prompt_of(name, 40)


def test_passkey_task_is_the_passkey_prompt():
    task = retrieval_task("passkey")
    prompt = task.prompt(byte_encode, 500, np.random.default_rng(7))
    expected = build_passkey_prompt(byte_encode, 500, np.random.default_rng(7))
    assert prompt == passkey_prompt(expected) and prompt.answer == (expected.key,)


@pytest.mark.parametrize(
    ("continuation", "answer", "found", "correct"),
    [
        (" 31415. Remember", (31415,), [31415], True),
        (" 3141. 31415", (31415,), [3141], False),  # the first integer counts
        (" no idea", (31415,), [], False),
        (" 3, 1, 2. 7", (1, 2, 3), [3, 1, 2], True),  # any order; later numbers do not count
        (" 1, 2", (1, 2, 3), [1, 2], False),  # a value missing
        (" 1, 2, 4, 3", (1, 2, 3), [1, 2, 4], False),  # a wrong value among the first three
        (" 1, 1, 2", (1, 2, 3), [1, 1, 2], False),
    ],
)
def test_scoring(continuation, answer, found, correct):
    assert score_integers(continuation, answer) == (found, correct)


def test_answer_text():
    assert answer_text((12345,)) == " 12345."
    assert answer_text((1, 22, 333)) == " 1, 22, 333."


def expected_answer(name: str, text: str) -> tuple[int, ...]:
    """The answer of a prompt, read from its text alone."""
    statements, question = needle_lines(text), text.split("\n")[-1]
    if name == "multi-value":
        return tuple(int(re.search(r"\d+", statement).group()) for statement in statements)
    if name == "multi-key":
        asked = re.fullmatch(r"What is the (\w+) key\? The \1 key is", question).group(1)
        return (int(re.search(rf"The {asked} key is (\d+)\.", text).group(1)),)
    return (resolve(statements, re.fullmatch(r"What is (\$[A-Z])\? \1 is", question).group(1)),)


@pytest.mark.parametrize("name", NEW_TASKS)
def test_training_examples_are_a_prompt_then_its_answer(name):
    task = retrieval_task(name)
    rng = np.random.default_rng(3)
    lengths = []
    for _ in range(20):
        ids = task.training_example(byte_encode, 400, rng)
        text = bytes(ids).decode()
        before, verb, answer = text.rpartition(" are" if name == "multi-value" else " is")
        assert answer == answer_text(expected_answer(name, before + verb))
        lengths.append(len(ids))
    assert max(lengths) <= 400 and min(lengths) < 250 < max(lengths)  # lengths drawn from a quarter of the row up
    assert min(len(task.training_example(byte_encode, 400, rng, min_tokens=380)) for _ in range(5)) >= 380 - FILL_STEP
    with pytest.raises(ValueError, match=f"max_tokens=60 cannot hold a {name} example"):
        task.training_example(byte_encode, 60, rng)


@pytest.mark.parametrize("name", NEW_TASKS)
def test_prompt_answers_are_what_the_text_says(name):
    for seed in range(20):
        prompt = prompt_of(name, seed=seed)
        assert prompt.answer == expected_answer(name, prompt.text)


def test_the_passkey_mixer_alone_is_passkey_mixer_bit_for_bit():
    eos = 1000
    a_rng, b_rng = np.random.default_rng(5), np.random.default_rng(5)
    a = retrieval_mixer(["passkey"], byte_encode, eos)(a_rng, 6, 383)
    b = passkey_mixer(byte_encode, eos)(b_rng, 6, 383)
    assert torch.equal(a, b)
    assert a_rng.integers(1 << 30) == b_rng.integers(1 << 30)  # and the generator is left in the same state


def test_the_mixer_draws_each_row_from_the_tasks():
    eos = 1000
    rows = retrieval_mixer(list(TASK_NAMES), byte_encode, eos)(np.random.default_rng(0), 40, 511)
    kinds = []
    for row in rows:
        keep = int((row < 0).sum())
        assert torch.all(row[:keep] == -1) and row[keep] == eos
        question = bytes(row[keep + 1 :].tolist()).decode().split("\n")[-1]
        kinds.append(
            "passkey"
            if question.startswith(QUESTION)
            else "variable-tracking"
            if question.startswith("What is $")
            else "multi-value"
            if question.startswith("What are")
            else "multi-key"
        )
        if kinds[-1] == "multi-key":
            assert re.match(r"What is the \w+ key\?", question)
    assert set(kinds) == set(TASK_NAMES) and max(kinds.count(kind) for kind in TASK_NAMES) < 20


def test_task_names_are_checked():
    assert check_retrieval_tasks(["multi-key", "passkey"]) == ["multi-key", "passkey"]
    with pytest.raises(ValueError, match="unknown retrieval task 'multikey'"):
        check_retrieval_tasks(["passkey", "multikey"])
    with pytest.raises(ValueError, match="non-empty list of task names"):
        check_retrieval_tasks([])
    with pytest.raises(ValueError, match="non-empty list of task names"):
        check_retrieval_tasks("passkey")
    with pytest.raises(ValueError, match=r"names \['passkey'\] more than once"):
        check_retrieval_tasks(["passkey", "multi-key", "passkey"])
    with pytest.raises(ValueError, match="num_keys must be at most 16"):
        MultiKeyTask(num_keys=17)
    with pytest.raises(ValueError, match="chains \\* \\(hops \\+ 1\\) must be at most 26"):
        VariableTrackingTask(chains=9, hops=2)


def test_the_data_config_names_the_tasks():
    assert DataConfig().retrieval_tasks == ["passkey"]
    config = from_dict(DataConfig, {"retrieval_tasks": ["multi-key", "variable-tracking"]})
    assert config.retrieval_tasks == ["multi-key", "variable-tracking"]
    with pytest.raises(ConfigError, match=r"^data: unknown retrieval task 'multi_key'; known: passkey, multi-key"):
        load_config(base={"data": {"retrieval_tasks": ["multi_key"]}})


def test_the_sampler_mixes_the_configured_tasks(tiny_corpus):
    from fope.build import build_sampler, prepare_run_data
    from tests.conftest import tiny_run_config

    def sampler(tasks):
        overrides = ["train.seq_len=192", "data.passkey_fraction=0.5", f"data.retrieval_tasks={tasks}"]
        config = load_config(base=tiny_run_config(tiny_corpus), overrides=overrides)
        prepared = prepare_run_data(config)
        return build_sampler(config, prepared), prepared, config

    passkey, prepared, config = sampler("[passkey]")
    tokenizer = prepared.tokenizer
    from fope.data.sampler import WindowSampler

    direct = WindowSampler(
        prepared.train,
        config.train.seq_len,
        config.train.batch_size,
        config.train.seed,
        [(0.5, passkey_mixer(tokenizer.encode, tokenizer.eos_id))],
    )
    assert np.array_equal(passkey.global_batch(3), direct.global_batch(3))  # today's rows, unchanged
    mixed, _, _ = sampler("[multi-key, variable-tracking]")
    texts = [tokenizer.decode(row.tolist()) for row in mixed.global_batch(3)]
    assert any(" key? The " in text for text in texts) and any("What is $" in text for text in texts)
    assert not any("What is the pass key?" in text for text in texts)
