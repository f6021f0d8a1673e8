"""Retrieval tasks in RULER's spirit, generated offline from seeded generators, behind one protocol.

A task (``RetrievalTask``) builds a prompt at a target token count with its answer, scores a continuation, and writes
training examples (prompt then answer) for ``data.retrieval_tasks``. Four tasks (``RETRIEVAL_TASKS``):

- ``passkey``: ``fope.data.passkey``'s prompt, one needle ``The pass key is {key}. Remember it.``
- ``multi-key``: ``num_keys`` needles ``The {name} key is {value}.`` (distinct names and values); one is asked.
- ``multi-value``: ``num_values`` needles ``A pass key is {value}.``; the answer is every value.
- ``variable-tracking``: ``chains`` chains ``$B = {value}.`` then ``$C = $B.`` (``hops`` copies each), interleaved;
  the question asks the last variable of one chain, whose value only its own chain leads to.

The new tasks share one layout (``Haystack``): lines joined by ``"\\n"``, filler, needle, filler, ..., needle,
filler, question. The filler is passkey's ``FILLER`` repeated, each segment restarting at the string's start; the
needles sit at sorted uniform depths (the share of the filler before each). There is no instruction line: at the tiny
training length (128 tokens, vocabulary 1024) every token goes to the haystack, and the question says what is asked.
The filler grows in steps of ``FILL_STEP`` characters (16, as passkey's ``FILLER_STEP``) until one more step would
not fit the target, so a prompt is within a few tokens of its target. A continuation is right when its first
``len(answer)`` integers are the answer's values, in any order (``score_integers``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar, Protocol

import numpy as np
import torch

from fope.checks import check_int
from fope.data.passkey import (
    KEY_RANGE,
    PasskeyPrompt,
    build_passkey_prompt,
    draw_key,
    example_prompt_tokens,
    filler,
    fit_filler,
    passkey_text,
    passkey_training_example,
)

__all__ = [
    "FILL_STEP",
    "KEY_NAMES",
    "RETRIEVAL_TASKS",
    "TASK_NAMES",
    "Haystack",
    "HaystackTask",
    "MultiKeyTask",
    "MultiValueTask",
    "PasskeyTask",
    "RetrievalPrompt",
    "RetrievalTask",
    "VariableTrackingTask",
    "answer_text",
    "check_retrieval_tasks",
    "fit_haystack",
    "integers",
    "passkey_prompt",
    "retrieval_mixer",
    "retrieval_task",
    "score_integers",
]

Encode = Callable[[str], list[int]]

#: Filler characters added per step when a prompt is fitted to its target token count (about 7 tokens at vocab 1024).
FILL_STEP = 16
#: Names of the multi-key needles: words that are one token in the default vocabulary and absent from the filler.
KEY_NAMES = (
    "house",
    "king",
    "lord",
    "father",
    "child",
    "heart",
    "land",
    "hand",
    "earth",
    "heaven",
    "night",
    "city",
    "world",
    "friend",
    "brother",
    "soul",
)
#: Variables of variable tracking: ``$`` and one capital letter (the same tokens in a statement and the question).
VARIABLE_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
#: How many prompts without filler are drawn to measure a task's shortest prompt.
SHORTEST_SAMPLES = 64
_INTEGER = re.compile(r"\d+")


def integers(text: str) -> list[int]:
    """Every run of digits in ``text``, as ints, in order."""
    return [int(match) for match in _INTEGER.findall(text)]


def score_integers(continuation: str, answer: Sequence[int]) -> tuple[list[int], bool]:
    """The first ``len(answer)`` integers of ``continuation``, and whether they are the answer's values in any order.

    With one value this is passkey's rule: the first integer equals the key (no number, or another first, is wrong).
    """
    found = integers(continuation)[: len(answer)]
    return found, sorted(found) == sorted(answer)


def answer_text(answer: Sequence[int]) -> str:
    """What a trained model should continue a prompt with: `` 12345.`` or `` 12345, 67890, 13579.``."""
    return " " + ", ".join(str(value) for value in answer) + "."


@dataclass(frozen=True)
class RetrievalPrompt:
    """One trial of any task: the prompt text and its token ids, the answer's values, the depth and the filler size.

    ``depth`` is the share of the filler before the needle the answer needs that lies farthest from the question.
    """

    text: str
    token_ids: list[int]
    answer: tuple[int, ...]
    depth: float
    filler_chars: int

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)


class RetrievalTask(Protocol):
    """What an evaluation or the training mixer needs of a task."""

    @property
    def name(self) -> str: ...

    @property
    def max_new_tokens(self) -> int:
        """Greedy tokens to decode by default: room for the answer and a few more."""

    def prompt(self, encode: Encode, target_tokens: int, rng: np.random.Generator) -> RetrievalPrompt:
        """A prompt of at most ``target_tokens`` tokens (the most filler that fits), drawn from ``rng``."""

    def shortest_tokens(self, encode: Encode) -> int:
        """Tokens of the longest prompt without filler over seeded draws: the least a target must hold."""

    def score(self, continuation: str, prompt: RetrievalPrompt) -> tuple[list[int], bool]:
        """What the continuation answered, and whether it is right."""

    def training_example(
        self, encode: Encode, max_tokens: int, rng: np.random.Generator, *, min_tokens: int | None = None
    ) -> list[int]:
        """A prompt followed by its answer, at most ``max_tokens`` tokens, for mixing into training."""


def passkey_prompt(prompt: PasskeyPrompt) -> RetrievalPrompt:
    """A passkey trial as a retrieval prompt (its answer is the key)."""
    return RetrievalPrompt(prompt.text, prompt.token_ids, (prompt.key,), prompt.depth, prompt.filler_chars)


@dataclass(frozen=True)
class PasskeyTask:
    """``fope.data.passkey``'s prompt and training example, as a retrieval task."""

    name: ClassVar[str] = "passkey"
    max_new_tokens: ClassVar[int] = 10

    def prompt(self, encode: Encode, target_tokens: int, rng: np.random.Generator) -> RetrievalPrompt:
        return passkey_prompt(build_passkey_prompt(encode, target_tokens, rng))

    def shortest_tokens(self, encode: Encode) -> int:
        """The most over the smallest, the largest and 64 seeded keys (at depth 0)."""
        rng = np.random.default_rng(0)
        sample = [draw_key(rng) for _ in range(SHORTEST_SAMPLES)]
        return max(len(encode(passkey_text(key, 0, 0.0))) for key in {*KEY_RANGE, *sample})

    def score(self, continuation: str, prompt: RetrievalPrompt) -> tuple[list[int], bool]:
        return score_integers(continuation, prompt.answer)

    def training_example(
        self, encode: Encode, max_tokens: int, rng: np.random.Generator, *, min_tokens: int | None = None
    ) -> list[int]:
        return passkey_training_example(encode, max_tokens, rng, min_tokens=min_tokens)


@dataclass(frozen=True)
class Haystack:
    """A prompt without its filler: the needles in prompt order at their sorted ``depths``, the question, the answer
    and the reported ``depth``."""

    needles: tuple[str, ...]
    depths: tuple[float, ...]
    question: str
    answer: tuple[int, ...]
    depth: float

    def text(self, filler_chars: int) -> str:
        """The lines: ``round(depths[i] * filler_chars)`` characters of filler lie before needle ``i``."""
        lines, start = [], 0
        for depth, needle in zip(self.depths, self.needles, strict=True):
            cut = round(depth * filler_chars)
            lines += [filler(cut - start), needle]
            start = cut
        return "\n".join([*lines, filler(filler_chars - start), self.question])


def fit_haystack(encode: Encode, haystack: Haystack, target_tokens: int, name: str) -> RetrievalPrompt:
    """The prompt with the most filler (in steps of ``FILL_STEP`` characters) whose token count is at most
    ``target_tokens``; ``ValueError`` when even the prompt without filler is longer."""
    chars, ids = fit_filler(encode, haystack.text, target_tokens, name, step=FILL_STEP)
    return RetrievalPrompt(haystack.text(chars), ids, haystack.answer, haystack.depth, chars)


def distinct_keys(rng: np.random.Generator, count: int) -> list[int]:
    """``count`` different keys from ``draw_key`` (five distinct digits each), in draw order."""
    keys: list[int] = []
    while len(keys) < count:
        key = draw_key(rng)
        if key not in keys:
            keys.append(key)
    return keys


def sorted_depths(rng: np.random.Generator, count: int) -> tuple[float, ...]:
    return tuple(float(depth) for depth in np.sort(rng.uniform(0.0, 1.0, size=count)))


class HaystackTask:
    """A task whose prompt is a ``Haystack``: subclasses say how one is drawn (``draw``); the rest is shared."""

    name: ClassVar[str]

    def draw(self, rng: np.random.Generator) -> Haystack:
        raise NotImplementedError

    @property
    def max_new_tokens(self) -> int:
        return 10

    def prompt(self, encode: Encode, target_tokens: int, rng: np.random.Generator) -> RetrievalPrompt:
        return fit_haystack(encode, self.draw(rng), target_tokens, self.name)

    def shortest_tokens(self, encode: Encode) -> int:
        """The most over 64 seeded draws."""
        rng = np.random.default_rng(0)
        return max(len(encode(self.draw(rng).text(0))) for _ in range(SHORTEST_SAMPLES))

    def score(self, continuation: str, prompt: RetrievalPrompt) -> tuple[list[int], bool]:
        return score_integers(continuation, prompt.answer)

    def training_example(
        self, encode: Encode, max_tokens: int, rng: np.random.Generator, *, min_tokens: int | None = None
    ) -> list[int]:
        """As ``passkey_training_example``: a prompt of a length drawn uniformly between ``min_tokens`` (default
        ``max_tokens // 4``) and the longest that leaves room for the answer, then the answer (``answer_text``)."""
        haystack = self.draw(rng)
        answer = encode(answer_text(haystack.answer))
        shortest = len(encode(haystack.text(0)))
        target = example_prompt_tokens(
            rng, max_tokens, min_tokens, shortest=shortest, answer=len(answer), name=self.name
        )
        return fit_haystack(encode, haystack, target, self.name).token_ids + answer


@dataclass(frozen=True)
class MultiKeyTask(HaystackTask):
    """``num_keys`` needles ``The {name} key is {value}.``; the question asks one of them (drawn uniformly)."""

    num_keys: int = 3
    name: ClassVar[str] = "multi-key"

    def __post_init__(self) -> None:
        check_int("num_keys", self.num_keys, minimum=1)
        if self.num_keys > len(KEY_NAMES):
            raise ValueError(f"num_keys must be at most {len(KEY_NAMES)} (the key names); got {self.num_keys}")

    def draw(self, rng: np.random.Generator) -> Haystack:
        names = [KEY_NAMES[index] for index in rng.choice(len(KEY_NAMES), size=self.num_keys, replace=False)]
        values = distinct_keys(rng, self.num_keys)
        depths = sorted_depths(rng, self.num_keys)
        asked = int(rng.integers(self.num_keys))
        needles = tuple(f"The {name} key is {value}." for name, value in zip(names, values, strict=True))
        question = f"What is the {names[asked]} key? The {names[asked]} key is"
        return Haystack(needles, depths, question, (values[asked],), depths[asked])


@dataclass(frozen=True)
class MultiValueTask(HaystackTask):
    """``num_values`` needles ``A pass key is {value}.``; the answer is every value (in the prompt's order)."""

    num_values: int = 3
    name: ClassVar[str] = "multi-value"

    def __post_init__(self) -> None:
        check_int("num_values", self.num_values, minimum=1)

    @property
    def max_new_tokens(self) -> int:
        """Room for ``num_values`` five-digit values with their separators (7 tokens each) and a few more."""
        return 7 * self.num_values + 3

    def draw(self, rng: np.random.Generator) -> Haystack:
        values = distinct_keys(rng, self.num_values)
        depths = sorted_depths(rng, self.num_values)
        needles = tuple(f"A pass key is {value}." for value in values)
        return Haystack(needles, depths, "What are the pass keys? The pass keys are", tuple(values), depths[0])


@dataclass(frozen=True)
class VariableTrackingTask(HaystackTask):
    """``chains`` chains of assignments, ``$B = {value}.`` then ``hops`` copies ``$C = $B.``, interleaved in a random
    order that keeps each chain's own order; the question asks the last variable of the first chain.

    The other chains carry other values, so copying the only number in sight is not enough. ``depth`` is that of the
    asked chain's first statement (its value), the farthest hop.
    """

    chains: int = 2
    hops: int = 1
    name: ClassVar[str] = "variable-tracking"

    def __post_init__(self) -> None:
        check_int("chains", self.chains, minimum=1)
        check_int("hops", self.hops, minimum=0)
        if self.chains * (self.hops + 1) > len(VARIABLE_LETTERS):
            raise ValueError(
                f"chains * (hops + 1) must be at most {len(VARIABLE_LETTERS)} variables; "
                f"got chains={self.chains}, hops={self.hops}"
            )

    def draw(self, rng: np.random.Generator) -> Haystack:
        per_chain = self.hops + 1
        letters = rng.choice(len(VARIABLE_LETTERS), size=self.chains * per_chain, replace=False)
        names = [f"${VARIABLE_LETTERS[index]}" for index in letters]
        chains = [names[chain * per_chain : (chain + 1) * per_chain] for chain in range(self.chains)]
        values = distinct_keys(rng, self.chains)
        owners = rng.permutation(np.repeat(np.arange(self.chains), per_chain)).tolist()
        depths = sorted_depths(rng, len(owners))
        needles, taken, depth = [], [0] * self.chains, 0.0
        for slot, chain in enumerate(owners):
            hop = taken[chain]
            taken[chain] += 1
            source = str(values[chain]) if hop == 0 else chains[chain][hop - 1]
            needles.append(f"{chains[chain][hop]} = {source}.")
            if chain == 0 and hop == 0:
                depth = depths[slot]
        asked = chains[0][-1]
        return Haystack(tuple(needles), depths, f"What is {asked}? {asked} is", (values[0],), depth)


#: The tasks by name, with their default options.
RETRIEVAL_TASKS: dict[str, RetrievalTask] = {
    task.name: task for task in (PasskeyTask(), MultiKeyTask(), MultiValueTask(), VariableTrackingTask())
}
TASK_NAMES = tuple(RETRIEVAL_TASKS)


def retrieval_task(name: str) -> RetrievalTask:
    """The task called ``name``, or a ``ValueError`` that lists the known ones."""
    if name not in RETRIEVAL_TASKS:
        raise ValueError(f"unknown retrieval task {name!r}; known: {', '.join(TASK_NAMES)}")
    return RETRIEVAL_TASKS[name]


def check_retrieval_tasks(names: object) -> list[str]:
    """``names`` as a list, if it is a non-empty list of known task names without repeats."""
    if isinstance(names, str) or not isinstance(names, Sequence) or not names:
        raise ValueError(
            f"retrieval_tasks must be a non-empty list of task names ({', '.join(TASK_NAMES)}); got {names!r}"
        )
    for name in names:
        retrieval_task(name)
    repeated = sorted({name for name in names if list(names).count(name) > 1})
    if repeated:
        raise ValueError(f"retrieval_tasks names {repeated} more than once; each task is drawn uniformly, list it once")
    return list(names)


def retrieval_mixer(
    tasks: Sequence[str], encode: Encode, eos_id: int, min_tokens: int | None = None
) -> Callable[[np.random.Generator, int, int], torch.Tensor]:
    """A ``WindowSampler`` mixer like ``passkey_mixer``: each row ends with the end-of-document token and one example
    of a task drawn uniformly from ``tasks`` (no draw with one task, so ``["passkey"]`` gives ``passkey_mixer``'s
    rows for the same generator)."""
    chosen = [retrieval_task(name) for name in check_retrieval_tasks(tasks)]

    def mix(rng: np.random.Generator, count: int, seq_len: int) -> torch.Tensor:
        rows = torch.full((count, seq_len + 1), -1, dtype=torch.int64)
        for row in range(count):
            task = chosen[0] if len(chosen) == 1 else chosen[int(rng.integers(len(chosen)))]
            example = [eos_id, *task.training_example(encode, seq_len, rng, min_tokens=min_tokens)]
            rows[row, seq_len + 1 - len(example) :] = torch.tensor(example, dtype=torch.int64)
        return rows

    return mix
