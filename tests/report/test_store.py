"""The results folder's files: what a stored evaluation keeps and drops, portable paths, recipe files that only
grow, corrupt files refused, stored runs read back as a report's runs."""

from __future__ import annotations

import json
import math

import pytest

from fope.report import aggregate, passkey_spreads
from fope.report.load import ReportError
from fope.report.store import (
    config_sha256,
    evaluation_entry,
    merged_recipe,
    portable,
    read_json,
    read_run,
    stored_run_results,
    trimmed,
)
from tests.report.fakes import passkey_result, perplexity_result, stored_run


def test_a_stored_evaluation_keeps_numbers_by_length_and_drops_trials_timings_and_machine_paths(tmp_path):
    passkey = trimmed(passkey_result({32: 1.0, 64: 0.5}, trials=500), tmp_path)
    assert "trials" not in passkey and "run" not in passkey
    assert [row["accuracy"] for row in passkey["by_length"]] == [1.0, 0.5]
    assert all("seconds" not in row for row in passkey["by_length"])
    assert passkey["grid_accuracy"] == [[1.0, 0.5], [1.0, 0.5]] and passkey["trials_per_length"] == 500
    perplexity = trimmed(perplexity_result({32: 3.0, 512: 4.0}), tmp_path)
    assert "data_path" not in perplexity and "seconds" not in perplexity["results"][0]
    assert [len(record["position_buckets"]) for record in perplexity["results"]] == [1, 16]
    assert perplexity["results"][1]["loss"] == 4.0 and perplexity["spans"]["max_spans"] == 24


def test_a_stored_run_file_is_small_even_with_many_passkey_trials(tmp_path):
    root = tmp_path / "results"
    stored_run(
        root, "rope-s0", "rope", 0, {32 * 2**k: 3.0 + k for k in range(5)}, accuracy={32 * 2**k: 0.5 for k in range(5)}
    )
    record = read_run(root, "rope-s0")
    record["evaluations"]["passkey"] = evaluation_entry(
        passkey_result({32 * 2**k: 0.5 for k in range(8)}, trials=1000), {"trials": 1000}, tmp_path
    )
    text = json.dumps(record, indent=1, sort_keys=True)
    assert len(text) < 50_000
    assert "/elsewhere" not in text  # the run summary's path is not stored


def test_paths_inside_the_output_folder_are_written_relative_to_it(tmp_path):
    out = tmp_path / "out"
    config = {"train": {"init_from": str(out.resolve() / "runs" / "rope-s0")}, "data": {"source": "/data/books"}}
    assert portable(config, out) == {"train": {"init_from": "$OUT/runs/rope-s0"}, "data": {"source": "/data/books"}}
    assert portable(str(tmp_path / "outside"), out) == str(tmp_path / "outside")
    assert portable([str(out.resolve())], out) == ["$OUT"]
    assert config_sha256({"a": 1, "b": [2]}) == config_sha256({"b": [2], "a": 1})
    assert config_sha256({"a": 1}) != config_sha256({"a": 2})


def test_a_recipe_file_gains_runs_and_never_loses_them():
    first = merged_recipe(None, "ablation", [{"folder": "report-tiny", "title": "old", "runs": ["rope-s0", "fope-s0"]}])
    second = merged_recipe(
        first,
        "ablation",
        [
            {"folder": "report-tiny", "title": "new", "runs": ["rope-s1", "rope-s0"]},
            {"folder": "report-small", "title": "small", "runs": ["rope-small-s0"]},
        ],
    )
    reports = {report["folder"]: report for report in second["reports"]}
    assert reports["report-tiny"]["runs"] == ["rope-s0", "fope-s0", "rope-s1"]
    assert reports["report-tiny"]["title"] == "new" and reports["report-small"]["runs"] == ["rope-small-s0"]


def test_corrupt_or_foreign_files_are_one_line_errors(tmp_path):
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "bad.json").write_text("{not json")
    with pytest.raises(ReportError, match=r"cannot read stored results .*bad\.json"):
        read_run(tmp_path, "bad")
    (tmp_path / "runs" / "list.json").write_text("[1, 2]")
    with pytest.raises(ReportError, match=r"is not a stored run file"):
        read_run(tmp_path, "list")
    stored_run(tmp_path, "old", "rope", 0, {32: 3.0})
    path = tmp_path / "runs" / "old.json"
    path.write_text(path.read_text().replace('"format": 1', '"format": 99'))
    with pytest.raises(ReportError, match=r"has format 99; this fope reads format 1"):
        read_json(path, "run")
    assert read_run(tmp_path, "absent") is None
    (tmp_path / "runs" / "folder.json").mkdir()
    with pytest.raises(ReportError, match=r"folder\.json is a folder where a stored run file belongs"):
        read_run(tmp_path, "folder")
    stored_run(tmp_path, "commit", "rope", 0, {32: 3.0})
    record = json.loads((tmp_path / "runs" / "commit.json").read_text())
    next(iter(record["evaluations"].values()))["git_commit"] = 5  # the report slices it as text
    (tmp_path / "runs" / "commit.json").write_text(json.dumps(record))
    with pytest.raises(ReportError, match=r"git_commit"):
        read_run(tmp_path, "commit")


def test_stored_runs_aggregate_like_run_folders(tmp_path):
    runs = []
    for seed, (short, long) in enumerate([(3.0, 4.0), (3.2, 4.4)]):
        record = stored_run(
            tmp_path, f"rope-s{seed}", "rope", seed, {32: short, 512: long}, accuracy={32: 1.0, 64: 0.0}
        )
        runs.append(stored_run_results(record, tmp_path / "runs" / f"rope-s{seed}.json"))
    assert runs[0].stored and runs[0].seed == 0 and runs[1].missing == []
    group = aggregate(runs)["rope"]
    rows = {row["length"]: row for row in group["perplexity"]["by_length"]}
    assert rows[512]["loss"]["mean"] == pytest.approx(4.2) and rows[512]["loss"]["n"] == 2
    assert [run["seed"] for run in rows[512]["per_run"]] == [0, 1]
    assert group["passkey"]["by_length"][0]["accuracy"]["mean"] == 1.0
    inside, beyond = passkey_spreads(group)  # from the numbers alone: stored runs have no run folder
    assert (inside["mean"], inside["n"], beyond["mean"]) == (1.0, 2, 0.0)
    other = stored_run_results(read_run(tmp_path, "rope-s0"), "x.json", "perplexity-bible")
    assert other.perplexity is None and other.missing == ["perplexity"]
    assert "x.json holds no perplexity results" in other.missing_note("perplexity")


def _set(record: dict, path: tuple, value: object) -> None:
    """``record[path[0]][path[1]]... = value``; the value ``KeyError`` deletes the field."""
    *parents, last = path
    for key in parents:
        record = record[key]
    if value is KeyError:
        del record[last]
    else:
        record[last] = value


PASSKEY_ROW = ("evaluations", "passkey", "result", "by_length", 0)
PERPLEXITY_ROW = ("evaluations", "perplexity", "result", "results", 0)


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ((*PASSKEY_ROW, "accuracy"), 7.5, "by_length[0].accuracy must be a number from 0 to 1; got 7.5"),
        ((*PASSKEY_ROW, "accuracy"), -0.1, "by_length[0].accuracy must be a number from 0 to 1; got -0.1"),
        ((*PASSKEY_ROW, "accuracy"), float("nan"), "by_length[0].accuracy must be a number from 0 to 1; got nan"),
        ((*PASSKEY_ROW, "accuracy"), "0.9", "by_length[0].accuracy must be a number from 0 to 1; got '0.9' (str)"),
        ((*PASSKEY_ROW, "length"), 32.0, "by_length[0].length must be an int >= 1; got 32.0"),
        ((*PASSKEY_ROW, "trials"), -3, "by_length[0].trials must be an int >= 0; got -3"),
        ((*PASSKEY_ROW, "accuracy"), KeyError, "evaluations.passkey.result.by_length[0].accuracy is missing"),
        (
            (*PERPLEXITY_ROW, "loss"),
            -5,
            "results[0].loss must be a number >= 0 (or NaN / +inf: a diverged run); got -5",
        ),
        (
            (*PERPLEXITY_ROW, "loss"),
            "3.1",
            "results[0].loss must be a number >= 0 (or NaN / +inf: a diverged run); got ",
        ),
        ((*PERPLEXITY_ROW, "loss"), float("-inf"), "results[0].loss must be a number >= 0 (or NaN / +inf"),
        ((*PERPLEXITY_ROW, "perplexity"), 0.5, "results[0].perplexity must be a number >= 1 (or NaN / +inf"),
        ((*PERPLEXITY_ROW, "bits_per_byte"), -1.0, "results[0].bits_per_byte must be a number >= 0"),
        ((*PERPLEXITY_ROW, "tokens"), 1.5, "results[0].tokens must be an int >= 0; got 1.5"),
        ((*PERPLEXITY_ROW, "windows"), True, "results[0].windows must be an int >= 0; got True"),
        ((*PERPLEXITY_ROW, "position_buckets", 0, "loss"), -1, "position_buckets[0].loss must be a number >= 0"),
        (
            ("evaluations", "perplexity", "result", "results"),
            [],
            "results must be a list of at least 1 item(s); got []",
        ),
        (("evaluations", "perplexity", "result", "train_length"), "32", "train_length must be an int >= 1; got '32'"),
        (("evaluations", "perplexity", "result", "spans", "max_spans"), KeyError, "spans.max_spans is missing"),
        (("evaluations", "passkey", "result", "trials_per_length"), 2.5, "trials_per_length must be an int >= 0"),
        (("evaluations", "passkey", "result", "grid_accuracy", 0, 0), 2.0, "grid_accuracy[0][0] must be a number from"),
        (
            ("evaluations", "passkey", "result", "grid_accuracy", 0),
            [1.0],
            "grid_accuracy must have a row per depth bin",
        ),
        (
            ("evaluations", "passkey", "checkpoint"),
            {"sha256": "ab", "step": -1},
            "evaluations.passkey.checkpoint.step must be an int >= 0; got -1",
        ),
        (("summary", "seed"), "0", "summary.seed must be an int >= 0; got '0' (str)"),
        (("config_sha256",), KeyError, "config_sha256 is missing"),
    ],
)
def test_a_stored_value_a_report_cannot_trust_is_one_line_naming_file_field_and_value(tmp_path, path, value, message):
    record = stored_run(tmp_path, "rope-s0", "rope", 0, {32: 3.0, 64: 3.5}, accuracy={32: 1.0, 64: 0.5})
    _set(record, path, value)
    file = tmp_path / "runs" / "rope-s0.json"
    file.write_text(json.dumps(record))
    with pytest.raises(ReportError) as error:
        read_run(tmp_path, "rope-s0")
    text = str(error.value)
    assert text.startswith(f"{file}: ") and message in text and "\n" not in text


def test_a_diverged_loss_is_stored_and_read_back(tmp_path):
    """NaN or +inf loss and perplexity are a diverged run's numbers, which a report shows as such."""
    stored_run(tmp_path, "rope-s0", "rope", 0, {32: 3.0, 64: float("nan"), 128: float("inf")})
    rows = read_run(tmp_path, "rope-s0")["evaluations"]["perplexity"]["result"]["results"]
    assert math.isnan(rows[1]["loss"]) and math.isnan(rows[1]["perplexity"])
    assert rows[2]["loss"] == rows[2]["perplexity"] == math.inf


def test_a_recipe_file_without_its_runs_is_one_line(tmp_path):
    path = tmp_path / "ablation.json"
    path.write_text(json.dumps({"format": 1, "experiment": "ablation", "reports": [{"folder": "f", "title": "t"}]}))
    with pytest.raises(ReportError, match=r"ablation\.json: reports\[0\]\.runs is missing$"):
        read_json(path, "recipe")
    path.write_text(
        json.dumps(
            {
                "format": 1,
                "experiment": "ablation",
                "reports": [{"folder": "f", "title": "t", "runs": ["a"], "contrasts": [["a", "b"]]}],
            }
        )
    )
    with pytest.raises(ReportError, match=r"reports\[0\]\.contrasts\[0\] must be a list of 3 items; got \['a', 'b'\]"):
        read_json(path, "recipe")
