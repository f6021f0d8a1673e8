"""Each evaluator's result, computed on a real trained run and read back from its file, has exactly the keys of its
type in ``fope.evaluate.schema`` (nested types included) and values of the declared kinds."""

from __future__ import annotations

import dataclasses
import shutil
import types
import typing

import pytest

from fope.evaluate.passkey import evaluate_run_passkey
from fope.evaluate.perplexity import evaluate_run_perplexity
from fope.evaluate.results import PASSKEY, PERPLEXITY, read_results, retrieval_name
from fope.evaluate.retrieval import RetrievalTrial, evaluate_run_retrieval
from fope.evaluate.schema import RESULT_TYPES, PerplexityResult, RetrievalResult


def conformity(value, kind, where="result"):
    """Where ``value`` does not match the type ``kind``: one line per missing or unknown key or wrong value."""
    found = []
    if typing.is_typeddict(kind):
        if not isinstance(value, dict):
            return [f"{where}: a mapping expected, got {type(value).__name__}"]
        hints = typing.get_type_hints(kind)
        found += [f"{where}.{key}: missing" for key in sorted(kind.__required_keys__ - set(value))]
        found += [f"{where}.{key}: not in {kind.__name__}" for key in sorted(set(value) - set(hints))]
        for key in set(value) & set(hints):
            found += conformity(value[key], hints[key], f"{where}.{key}")
        return found
    origin, arguments = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        options = [conformity(value, option, where) for option in arguments]
        return [] if any(not option for option in options) else min(options, key=len)
    if origin is list:
        if not isinstance(value, list):
            return [f"{where}: a list expected, got {type(value).__name__}"]
        items = (conformity(item, arguments[0], f"{where}[{index}]") for index, item in enumerate(value))
        return [line for lines in items for line in lines]
    if origin is dict or kind is typing.Any:
        return [] if kind is typing.Any or isinstance(value, dict) else [f"{where}: a mapping expected"]
    if kind is type(None):
        return [] if value is None else [f"{where}: None expected, got {value!r}"]
    if kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, kind)
    return [] if ok else [f"{where}: {kind.__name__} expected, got {value!r}"]


def test_the_checker_finds_missing_unknown_and_wrong_keys_nested_too():
    result = {"evaluation": "passkey", "unexpected": 1, "seed": "zero", "by_length": [{"length": 1.5, "extra": 2}]}
    found = conformity(result, RetrievalResult)
    assert "result.task: missing" in found and "result.unexpected: not in RetrievalResult" in found
    assert "result.seed: int expected, got 'zero'" in found
    assert "result.by_length[0].length: int expected, got 1.5" in found
    assert "result.by_length[0].extra: not in LengthRow" in found and "result.by_length[0].accuracy: missing" in found
    assert not [line for line in conformity({"batch_size": None}, RetrievalResult) if "batch_size" in line]


@pytest.fixture(scope="module")
def evaluated(tiny_runs, tmp_path_factory):
    run_dir = shutil.copytree(tiny_runs["fope"], tmp_path_factory.mktemp("schema") / "fope")
    returned = {
        PERPLEXITY: evaluate_run_perplexity(run_dir, max_spans=2, device="cpu", progress=False),
        PASSKEY: evaluate_run_passkey(run_dir, trials=2, device="cpu", progress=False),
        retrieval_name("multi-value"): evaluate_run_retrieval(
            run_dir, "multi-value", trials=2, device="cpu", progress=False
        ),
    }
    # A second perplexity evaluation of other lengths merges into the file: the merged form has its type too.
    evaluate_run_perplexity(run_dir, lengths=[32], max_spans=2, seed=0, device="cpu", progress=False)
    return run_dir, returned


@pytest.mark.parametrize("name", [PERPLEXITY, PASSKEY, retrieval_name("multi-value")])
def test_every_result_has_exactly_the_keys_and_kinds_of_its_type(evaluated, name):
    run_dir, returned = evaluated
    for where, result in (("returned", returned[name]), ("stored", read_results(run_dir, name))):
        kind = RESULT_TYPES[result["evaluation"]]
        assert kind is (PerplexityResult if name == PERPLEXITY else RetrievalResult)
        assert conformity(result, kind, where) == []
        fields = {field.name for field in dataclasses.fields(RetrievalTrial)}
        assert all(set(trial) == fields for trial in result.get("trials", []))  # each trial: a RetrievalTrial
        assert "run" in result  # written by evaluate_run: the run it describes


def test_the_merged_perplexity_file_keeps_its_type(evaluated):
    run_dir, _ = evaluated
    stored = read_results(run_dir, PERPLEXITY)
    assert "merged" in stored and conformity(stored, PerplexityResult) == []
