"""The passkey prompt builder and scorer: protocol text, length targets, depth, keys, scoring."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fope.data.passkey import (
    FILLER,
    FILLER_STEP,
    INSTRUCTION,
    KEY_RANGE,
    QUESTION,
    build_passkey_prompt,
    draw_key,
    filler,
    needle,
    passkey_mixer,
    passkey_text,
    passkey_training_example,
)
from fope.evaluate.passkey import PasskeyTrial, first_integer, score_answer, summarize_trials


def byte_encode(text: str) -> list[int]:
    return list(text.encode("utf-8"))


def word_encode(text: str) -> list[int]:
    """A tokenizer whose token count is not proportional to characters."""
    return [hash(word) % 1000 for word in text.split()]


def test_prompt_has_the_five_lines_of_the_protocol():
    text = passkey_text(4321, filler_chars=300, depth=0.25)
    lines = text.split("\n")
    assert len(lines) == 5
    assert lines[0] == INSTRUCTION
    assert lines[2] == needle(4321) and "4321" in lines[2]
    assert lines[4] == QUESTION
    assert len(lines[1]) == 75 and len(lines[3]) == 225  # prefix = round(depth * n), suffix = the rest
    assert lines[1] == FILLER[:75] and lines[3].startswith(FILLER)  # the suffix restarts at the string's start


def test_filler_is_a_slice_of_the_repeated_string():
    assert filler(0) == ""
    assert filler(len(FILLER) + 5) == FILLER + FILLER[:5]


@pytest.mark.parametrize("encode", [byte_encode, word_encode])
@pytest.mark.parametrize("target", [300, 1000, 4096])
def test_length_target_is_the_longest_prompt_that_fits(encode, target):
    rng = np.random.default_rng(0)
    prompt = build_passkey_prompt(encode, target, rng)
    assert prompt.num_tokens <= target
    assert prompt.filler_chars % FILLER_STEP == 0
    longer = passkey_text(prompt.key, prompt.filler_chars + FILLER_STEP, prompt.depth)
    assert len(encode(longer)) > target  # one more step of filler would not fit
    assert prompt.token_ids == encode(prompt.text)


def test_draw_key_covers_every_key_of_five_distinct_digits():
    rng = np.random.default_rng(0)
    keys = [draw_key(rng) for _ in range(20000)]
    assert all(len(str(key)) == 5 and len(set(str(key))) == 5 for key in keys)
    first = np.bincount([int(str(key)[0]) for key in keys], minlength=10)
    assert first[0] == 0 and first[1:].min() > 0.9 * 20000 / 9  # leading digit uniform over 1..9
    last = np.bincount([key % 10 for key in keys], minlength=10)
    assert last.min() > 0.8 * 2000  # every digit, 0 included, in the other places
    # 9 * 9 * 8 * 7 * 6 = 27216 keys; 20000 uniform draws hit 27216 * (1 - exp(-20000 / 27216)) ~ 14164 of them
    assert 13900 < len(set(keys)) < 14430


def test_keys_and_depths_are_seeded_and_in_range():
    a = [build_passkey_prompt(byte_encode, 600, np.random.default_rng(s)) for s in range(200)]
    b = [build_passkey_prompt(byte_encode, 600, np.random.default_rng(s)) for s in range(200)]
    assert [(p.key, p.depth) for p in a] == [(p.key, p.depth) for p in b]
    keys = np.array([p.key for p in a])
    depths = np.array([p.depth for p in a])
    assert keys.min() >= KEY_RANGE[0] and keys.max() <= KEY_RANGE[1] and len(set(keys)) > 190
    assert all(len(set(str(key))) == len(str(key)) == 5 for key in keys)  # five distinct digits
    assert depths.min() < 0.1 and depths.max() > 0.9
    fixed = build_passkey_prompt(byte_encode, 600, np.random.default_rng(0), key=7, depth=1.0)
    assert fixed.text.split("\n")[3] == "" and needle(7) in fixed.text


def test_target_too_short_is_an_error():
    with pytest.raises(ValueError, match="target_tokens=20 is shorter than the passkey prompt"):
        build_passkey_prompt(byte_encode, 20, np.random.default_rng(0))
    with pytest.raises(ValueError, match="depth must be in"):
        build_passkey_prompt(byte_encode, 500, np.random.default_rng(0), depth=1.5)


@pytest.mark.parametrize(
    ("continuation", "key", "correct"),
    [
        (" 31415. Remember", 31415, True),
        ("31415", 31415, True),
        (" 3141. 31415", 31415, False),  # the first integer counts, not any integer
        (" the key is 12 and 31415", 31415, False),
        (" no idea", 31415, False),  # missing answer
        ("", 31415, False),
        (" 314150", 31415, False),
    ],
)
def test_scoring(continuation, key, correct):
    assert score_answer(continuation, key) is correct


def test_first_integer():
    assert first_integer("a 12 b 34") == 12
    assert first_integer("none") is None


def test_training_examples_fit_and_end_with_the_answer():
    rng = np.random.default_rng(3)
    for _ in range(20):
        ids = passkey_training_example(byte_encode, 400, rng)
        text = bytes(ids).decode()
        assert len(ids) <= 400
        key = int(text.split("The pass key is ")[1].split(".")[0])
        assert text.endswith(f"{QUESTION} {key}.")
    with pytest.raises(ValueError, match="max_tokens=20 cannot hold a passkey example"):
        passkey_training_example(byte_encode, 20, rng)


def test_summary_by_length_and_depth():
    trials = [
        PasskeyTrial(256, 250, 1, 0.05, " 1", 1, True, 0),
        PasskeyTrial(256, 250, 2, 0.95, " 3", 3, False, 128),
        PasskeyTrial(512, 500, 3, 0.5, " 3", 3, True, 512),
        PasskeyTrial(512, 500, 4, 1.0, "", None, False, 256),
    ]
    summary = summarize_trials(trials, depth_bins=2)
    assert [row["accuracy"] for row in summary["by_length"]] == [0.5, 0.5]
    assert [row["mean_filler_chars"] for row in summary["by_length"]] == [64, 384]
    assert summary["grid_lengths"] == [256, 512]
    assert summary["grid_accuracy"] == [[1.0, None], [0.0, 0.5]]
    assert summary["grid_trials"] == [[1, 0], [1, 2]]


def test_mixer_rows_end_with_a_document_holding_one_example():
    eos = 1000
    mixer = passkey_mixer(byte_encode, eos)
    rows = mixer(np.random.default_rng(0), 3, 511)
    assert rows.shape == (3, 512)
    for row in rows:
        keep = int((row < 0).sum())  # the row's own corpus text stays in front
        assert keep >= 1 and torch.all(row[:keep] == -1)
        assert row[keep] == eos  # the example opens a document, as evaluation prompts do
        text = bytes(row[keep + 1 :].tolist()).decode()
        assert text.startswith(INSTRUCTION) and text.endswith(".")


def test_a_prompt_the_scorer_could_never_match_is_refused():
    rng = np.random.default_rng(0)
    for key in ("abc", -3, 2.5, True):  # a string key made a needle no integer answer can equal
        with pytest.raises(ValueError, match="key must be an int >= 0"):
            build_passkey_prompt(byte_encode, 600, rng, key=key)
    with pytest.raises(ValueError, match="target_tokens must be an int >= 1"):
        build_passkey_prompt(byte_encode, "600", rng)
    with pytest.raises(TypeError, match=r"rng must be a numpy\.random\.Generator"):
        build_passkey_prompt(byte_encode, 600, None)
