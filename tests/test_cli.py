"""The ``fope`` command line: one handler turns every user mistake into one stderr line and exit code 2; results are
never lost (eval merges by length, a run given twice counts once); every command explains itself."""

from __future__ import annotations

import argparse
import json
import shutil

import pytest

from fope.cli import build_parser, main
from fope.cli.args import multiples as parse_multiples
from fope.errors import FopeError
from fope.evaluate.results import merge_by_length
from tests.data import fakes


def one_error_line(capsys: pytest.CaptureFixture[str], command: str) -> str:
    """The single line a failed command printed on stderr (checked: one line, the command's prefix, no traceback)."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"fope {command}: error: ")
    return lines[0]


def commands() -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


# ------------------------------------------------------------------ one handler


def test_every_fope_error_is_one_line_and_exit_code_2(monkeypatch, capsys):
    def fail(args):
        raise FopeError("first line\n  second line")

    monkeypatch.setattr("fope.cli.models._run_bench", fail)
    assert main(["bench"]) == 2
    assert one_error_line(capsys, "bench") == "fope bench: error: first line second line"


def test_a_bug_stays_a_traceback(monkeypatch):
    def fail(args):
        raise KeyError("bug")

    monkeypatch.setattr("fope.cli.models._run_bench", fail)
    with pytest.raises(KeyError):
        main(["bench"])


def test_a_missing_path_is_one_line(tmp_path, capsys):
    assert main(["eval", str(tmp_path / "nothing"), "--no-progress"]) == 2
    one_error_line(capsys, "eval")


def test_prepare_from_a_source_that_does_not_exist(tmp_path, capsys):
    assert main(["prepare", "--source", str(tmp_path / "nonexistent"), "--out", str(tmp_path / "out")]) == 2
    assert "nonexistent" in one_error_line(capsys, "prepare")


def test_prepare_with_a_garbage_tokenizer_file(tmp_path, capsys):
    corpus = fakes.text_corpus(tmp_path / "corpus", {"books": 4})
    garbage = tmp_path / "tokenizer.json"
    garbage.write_text("this is not a tokenizer {")
    argv = ["prepare", "--source", str(corpus), "--out", str(tmp_path / "out"), "--tokenizer", str(garbage)]
    assert main(argv) == 2
    assert str(garbage) in one_error_line(capsys, "prepare")


def test_a_run_whose_checkpoint_meta_is_a_list(tiny_runs, tmp_path, capsys):
    run_dir = shutil.copytree(tiny_runs["rope"], tmp_path / "rope")
    latest = (run_dir / "checkpoints" / "latest").read_text().strip()
    (run_dir / "checkpoints" / latest / "meta.json").write_text("[1, 2]")
    assert main(["eval", str(run_dir), "--no-progress"]) == 2
    one_error_line(capsys, "eval")
    assert main(["compare", str(run_dir), "--out", str(tmp_path / "report"), "--no-progress"]) == 2
    one_error_line(capsys, "compare")


@pytest.mark.parametrize("pointer", ["", "\n", "checkpoints", "step_0000099"])
def test_a_run_whose_latest_pointer_is_empty_or_names_no_checkpoint(tiny_runs, tmp_path, capsys, pointer):
    run_dir = shutil.copytree(tiny_runs["rope"], tmp_path / "rope")
    (run_dir / "checkpoints" / "latest").write_text(pointer)
    assert main(["eval", str(run_dir), "--no-progress"]) == 2
    line = one_error_line(capsys, "eval")
    said = "is empty" if not pointer.strip() else f"names {pointer!r}, which is not a checkpoint folder here"
    assert f"{run_dir / 'checkpoints' / 'latest'} {said}" in line
    assert "like step_0000020 (here: ['step_0000004', 'step_0000008'])" in line  # what is accepted, and what exists


def test_a_run_whose_config_is_empty_names_the_file(tiny_runs, tmp_path, capsys):
    run_dir = shutil.copytree(tiny_runs["rope"], tmp_path / "rope")
    (run_dir / "config.yaml").write_text("")
    for command in ("eval", "compare"):
        extra = ["--out", str(tmp_path / "report")] if command == "compare" else []
        assert main([command, str(run_dir), *extra, "--no-progress"]) == 2
        assert one_error_line(capsys, command) == (
            f"fope {command}: error: {run_dir / 'config.yaml'} is empty (or only comments); a config file holds a "
            "mapping with name, model, data, optim and train"
        )


def test_a_run_with_a_garbage_tokenizer(tiny_runs, tmp_path, capsys):
    run_dir = shutil.copytree(tiny_runs["rope"], tmp_path / "rope")
    (run_dir / "tokenizer.json").write_text('{"not": "a tokenizer"}')
    assert main(["eval", str(run_dir), "--no-progress"]) == 2
    assert "tokenizer" in one_error_line(capsys, "eval")


def test_analyze_multiples_must_be_positive(tiny_runs, capsys):
    for multiples in ("0", "1,-2", "x", ""):
        assert main(["analyze", str(tiny_runs["fope"]), "--multiples", multiples]) == 2
        assert "--multiples" in one_error_line(capsys, "analyze")


@pytest.mark.parametrize("multiples", ["1e1", "2E0", "inf", "nan", "+2", "1,0x2", "1_0"])
def test_analyze_multiples_are_digits_with_an_optional_point(tiny_runs, capsys, multiples):
    assert main(["analyze", str(tiny_runs["fope"]), "--multiples", multiples]) == 2
    line = one_error_line(capsys, "analyze")
    assert "written with digits and an optional decimal point, e.g. 1,2,4 or 0.5,1.5" in line
    assert line.endswith(f"(no exponent, sign, inf or nan); got {multiples!r}")


def test_analyze_refuses_a_huge_multiple_at_once_as_eval_does(tiny_runs, capsys, monkeypatch):
    def no_load(*args, **kwargs):
        raise AssertionError("the run must not be loaded for a multiple that is refused")

    monkeypatch.setattr("fope.runs.load_run", no_load)
    assert main(["analyze", str(tiny_runs["fope"]), "--multiples", "1,100000000"]) == 2
    line = one_error_line(capsys, "analyze")
    assert "--multiples 100000000 is more than 256: contexts are multiples of the training length, at most 256" in line
    assert line.endswith("(the default goes to 16 x)")
    assert main(["analyze", str(tiny_runs["fope"]), "--multiples", "256.5"]) == 2
    assert "--multiples 256.5 is more than 256" in one_error_line(capsys, "analyze")
    assert main(["analyze", str(tiny_runs["fope"]), "--multiples", "9" * 5000]) == 2  # past int()'s digit limit
    assert "--multiples 99999999999999999999... (5000 digits) is more than 256" in one_error_line(capsys, "analyze")


def test_analyze_multiples_as_documented():
    assert parse_multiples("1,2,4") == [1, 2, 4] and all(type(value) is int for value in parse_multiples("1,2,4"))
    assert parse_multiples(" 0.5, 1., .25 ,16") == [0.5, 1.0, 0.25, 16]


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--train-length", "0"], "--train-length must be an int >= 2 (the model's training length); got 0"),
        (["--train-length", "-64"], "--train-length must be an int >= 2 (the model's training length); got -64"),
        (["--sequences", "0"], "--sequences must be an int >= 1 (validation windows to read); got 0"),
    ],
)
def test_analyze_refuses_a_length_or_count_below_its_minimum(tiny_runs, tmp_path, capsys, option, message):
    out = tmp_path / "analysis"
    assert main(["analyze", str(tiny_runs["fope"]), "--out", str(out), "--no-plots", *option]) == 2
    assert one_error_line(capsys, "analyze") == f"fope analyze: error: {message}"
    assert not out.exists()  # refused before anything ran


# ------------------------------------------------------------------ output folders that are files


def test_an_output_folder_that_is_a_file_is_one_line_before_any_work(tiny_corpus, tiny_runs, tmp_path, capsys):
    import yaml

    from tests.conftest import tiny_run_config

    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(tiny_run_config(tiny_corpus)))
    said = f"must be a folder (existing or new); got {str(a_file)!r}: it is a file"
    for command, argv, name in [
        ("train", ["--config", str(config), "--out", str(a_file)], "the run directory"),
        ("analyze", [str(tiny_runs["fope"]), "--out", str(a_file), "--no-plots"], "--out"),
        ("demo", ["--out", str(a_file), "--dry-run"], "--out"),
        ("experiment", ["ablation", "--out", str(a_file), "--dry-run"], "--out"),
        ("experiment", ["ablation", "--out", str(tmp_path / "x"), "--results", str(a_file), "--dry-run"], "--results"),
    ]:
        assert main([command, *argv]) == 2
        assert one_error_line(capsys, command) == f"fope {command}: error: {name} {said}"
    inside = f"must be a folder (existing or new); got {str(a_file / 'runs')!r}: {a_file} above it is a file"
    assert main(["train", "--config", str(config), "--out", str(a_file / "runs")]) == 2
    assert one_error_line(capsys, "train") == f"fope train: error: the run directory {inside}"
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("command", ["eval", "passkey", "retrieval"])
def test_an_eval_folder_that_is_a_file_is_one_line_before_evaluating(tiny_runs, tmp_path, capsys, monkeypatch, command):
    run_dir = shutil.copytree(tiny_runs["rope"], tmp_path / "rope")
    (run_dir / "eval").write_text("not a folder")
    monkeypatch.setattr("fope.runs.load_run", None)  # the check comes before the model would load
    options = ["--task", "passkey"] if command == "retrieval" else []
    assert main([command, str(run_dir), *options, "--no-progress"]) == 2
    line = one_error_line(capsys, command)
    said = f"must be a folder (existing or new); got {str(run_dir / 'eval')!r}: it is a file"
    assert line == f"fope {command}: error: eval/ (where the results are written) {said}"


# ------------------------------------------------------------------ compare


def test_compare_out_on_an_existing_file_fails_before_evaluating(tiny_runs, tmp_path, capsys):
    run_dir = shutil.copytree(tiny_runs["rope"], tmp_path / "rope")
    out = tmp_path / "report.md"
    out.write_text("not a folder")
    assert main(["compare", str(run_dir), "--out", str(out), "--no-progress"]) == 2
    assert "is a file" in one_error_line(capsys, "compare")
    assert not (run_dir / "eval").exists()  # nothing was evaluated
    assert main(["compare", str(run_dir), "--out", str(out / "inside"), "--no-progress"]) == 2
    one_error_line(capsys, "compare")


def test_compare_replaces_only_a_report_it_wrote(tiny_runs, tmp_path, capsys):
    run_dir = shutil.copytree(tiny_runs["rope"], tmp_path / "rope")
    out = tmp_path / "report"
    out.mkdir()
    (out / "report.md").write_text("# my notes\n")
    assert main(["compare", str(run_dir), "--out", str(out), "--no-progress"]) == 2
    line = one_error_line(capsys, "compare")
    assert f"{out / 'report.md'} was not written by fope compare" in line and "--force" in line
    assert [path.name for path in out.iterdir()] == ["report.md"] and (out / "report.md").read_text() == "# my notes\n"
    assert not (run_dir / "eval").exists()  # refused before any evaluation

    argv = ["compare", str(run_dir), "--out", str(out), "--no-evaluate", "--no-progress"]
    assert main([*argv, "--force"]) == 0
    written = (out / "report.md").read_text()
    assert written.startswith("<!-- generated by fope compare") and "# my notes" not in written
    assert main(argv) == 0  # its own report is rewritten
    (out / "report.md").write_text(written + "A line added by hand.\n")
    assert main(argv) == 2  # ...until someone edits it
    assert "was not written by fope compare, or was edited since" in one_error_line(capsys, "compare")
    assert (out / "report.md").read_text().endswith("A line added by hand.\n")


def test_compare_writes_into_a_folder_of_other_files_only_with_force(tiny_runs, tmp_path, capsys, monkeypatch):
    """Without a report.md of its own in --out, results.json and same-named figures there would be someone else's."""
    run_dir = shutil.copytree(tiny_runs["rope"], tmp_path / "rope")
    out = tmp_path / "mine"
    out.mkdir()
    (out / "results.json").write_text('{"mine": 1}')
    (out / "perplexity.png").write_bytes(b"my plot")
    argv = ["compare", str(run_dir), "--out", str(out), "--no-evaluate", "--no-progress"]
    assert main(argv) == 2
    line = one_error_line(capsys, "compare")
    assert f"report folder {out} holds files and no report.md of fope compare's" in line and "--force" in line
    assert (out / "results.json").read_text() == '{"mine": 1}' and (out / "perplexity.png").read_bytes() == b"my plot"
    assert sorted(path.name for path in out.iterdir()) == ["perplexity.png", "results.json"]
    assert main([*argv, "--force"]) == 0
    assert (out / "report.md").read_text().startswith("<!-- generated by fope compare")
    assert main(argv) == 0  # from now on the folder is the report's
    # a compare that stops after claiming a new folder (here: drawing fails) leaves it to the next compare
    fresh = tmp_path / "fresh"

    def crash(groups, out_dir):  # one figure drawn, then Ctrl-C
        (out_dir / "perplexity.png").write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr("fope.report.compare.draw_figures", crash)
    assert main(["compare", str(run_dir), "--out", str(fresh), "--no-evaluate", "--no-progress"]) == 130
    monkeypatch.undo()
    capsys.readouterr()
    assert main(["compare", str(run_dir), "--out", str(fresh), "--no-evaluate", "--no-progress"]) == 0
    assert "Report being written" not in (fresh / "report.md").read_text()
    assert main([*argv, "--device", "foo"]) == 2  # unused with --no-evaluate, and still checked
    assert "device must be auto, cpu, cuda, cuda:N or mps; got 'foo'" in one_error_line(capsys, "compare")


def test_compare_counts_a_run_given_twice_once(tiny_runs, tmp_path, capsys):
    run_dir = shutil.copytree(tiny_runs["rope"], tmp_path / "rope")
    evaluated = ["eval", str(run_dir), "--lengths", "32,64", "--max-spans", "1", "--no-progress"]
    assert main(evaluated) == 0
    assert main(["passkey", str(run_dir), "--lengths", "256", "--trials", "1", "--no-progress"]) == 0
    capsys.readouterr()
    again = str(run_dir.parent / ".." / run_dir.parent.name / run_dir.name)
    assert main(["compare", str(run_dir), again, "--out", str(tmp_path / "report"), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "counted once" in printed and "rope (n=1)" in printed
    results = json.loads((tmp_path / "report" / "results.json").read_text())
    assert results["groups"]["rope"]["n"] == 1
    assert results["groups"]["rope"]["perplexity"]["by_length"][0]["perplexity"]["std"] is None


def test_compare_refuses_a_copy_of_a_run(tiny_runs, tmp_path, capsys):
    from fope.report import ReportError, compare_runs

    original = shutil.copytree(tiny_runs["rope"], tmp_path / "rope")
    copy = shutil.copytree(original, tmp_path / "rope-copy")
    other_seed = tiny_runs["rope-seed1"]
    argv = ["compare", str(original), str(other_seed), str(copy), "--out", str(tmp_path / "report"), "--no-progress"]
    assert main(argv) == 2
    line = one_error_line(capsys, "compare")
    assert line.startswith(
        f"fope compare: error: {original} and {copy} hold the same run (seed 0, checkpoint step_0000008"
    )
    assert "it would count as two seeds with a spread of 0; give one of them" in line
    assert not (original / "eval").exists() and not (tmp_path / "report").exists()  # refused before any work
    with pytest.raises(ReportError, match="hold the same run"):
        compare_runs([copy, original], tmp_path / "report")
    # the same checkpoint files under another seed are not a copy
    config = copy / "config.yaml"
    assert "\n  seed: 0\n" in config.read_text()
    config.write_text(config.read_text().replace("\n  seed: 0\n", "\n  seed: 5\n"))
    assert main([*argv, "--no-evaluate"]) == 0
    assert "rope (n=3)" in capsys.readouterr().out


def test_compare_refuses_an_impossible_result_in_a_run_folder(tiny_runs, tmp_path, capsys):
    from tests.report.fakes import passkey_result

    run_dir = shutil.copytree(tiny_runs["rope"], tmp_path / "rope")
    (run_dir / "eval").mkdir()
    path = run_dir / "eval" / "passkey.json"
    result = {"run": {"label": "rope", "step": 8, "seed": 0}, **passkey_result({32: 7.5, 64: 0.5})}
    path.write_text(json.dumps(result))
    argv = ["compare", str(run_dir), "--out", str(tmp_path / "report"), "--no-evaluate"]
    assert main(argv) == 2
    assert one_error_line(capsys, "compare") == (
        f"fope compare: error: {path}: by_length[0].accuracy must be a number from 0 to 1; got 7.5"
    )
    del result["run"]["step"]
    result["by_length"][0]["accuracy"] = 1.0
    path.write_text(json.dumps(result))
    assert main(argv) == 2
    assert one_error_line(capsys, "compare") == f"fope compare: error: {path}: run.step is missing"
    path.write_text("{not json")
    assert main(argv) == 2
    assert one_error_line(capsys, "compare").startswith(f"fope compare: error: cannot read {path}: ")


# ------------------------------------------------------------------ eval merges by length


def test_eval_merges_by_length(tiny_runs, tmp_path, capsys):
    run_dir = shutil.copytree(tiny_runs["rope"], tmp_path / "rope")
    path = run_dir / "eval" / "perplexity.json"
    base = ["eval", str(run_dir), "--max-spans", "2", "--no-progress"]
    assert main([*base, "--lengths", "32,64,128"]) == 0
    first = json.loads(path.read_text())
    assert main([*base, "--lengths", "64,256"]) == 0
    assert "kept lengths [32, 128] evaluated before" in capsys.readouterr().out
    merged = json.loads(path.read_text())
    assert merged["lengths"] == [32, 64, 128, 256]
    assert [record["length"] for record in merged["results"]] == [32, 64, 128, 256]
    records = {record["length"]: record for record in merged["results"]}
    assert records[32] == first["results"][0] and records[128] == first["results"][2]  # kept as they were
    assert merged["merged"] == [{"lengths": [32, 128], "spans": first["spans"]}]
    assert merged["spans"]["span_tokens"] == 257  # the latest evaluation's spans

    # other span settings (or another checkpoint) are another evaluation: it replaces the file
    assert main([*base[:-3], "--max-spans", "1", "--lengths", "32", "--no-progress"]) == 0
    assert json.loads(path.read_text())["lengths"] == [32]


@pytest.mark.parametrize("command", ["passkey", "retrieval"])
def test_passkey_and_retrieval_merge_by_length(tiny_runs, tmp_path, capsys, command):
    from fope.evaluate.passkey import evaluate_run_passkey
    from fope.evaluate.retrieval import evaluate_run_retrieval

    run_dir = shutil.copytree(tiny_runs["rope"], tmp_path / "rope")
    task = [] if command == "passkey" else ["--task", "multi-key"]
    path = run_dir / "eval" / ("passkey.json" if command == "passkey" else "retrieval-multi-key.json")
    base = [command, str(run_dir), *task, "--no-progress"]
    assert main([*base, "--trials", "3", "--lengths", "256,384"]) == 0
    assert main([*base, "--trials", "3", "--lengths", "320,384"]) == 0
    assert "(kept lengths [256] evaluated before)" in capsys.readouterr().out
    merged = json.loads(path.read_text())

    # what one evaluation of all three lengths gives (timings and run-time details aside)
    options = {"lengths": [256, 320, 384], "trials": 3, "progress": False, "write": False}
    if command == "passkey":
        whole = evaluate_run_passkey(run_dir, **options)
    else:
        whole = evaluate_run_retrieval(run_dir, "multi-key", **options)
    for result in (merged, whole):
        for row in result["by_length"]:
            del row["seconds"]
    assert merged["lengths"] == merged["grid_lengths"] == [256, 320, 384]
    for key in ("by_length", "grid_accuracy", "grid_trials", "trials"):
        assert merged[key] == whole[key], key

    # other settings (or another checkpoint) are another evaluation: it replaces the file
    assert main([*base, "--trials", "2", "--lengths", "256"]) == 0
    assert json.loads(path.read_text())["lengths"] == [256]


def test_merge_by_length_keeps_track_of_earlier_spans():
    def result(lengths, span_tokens, step=8, note=None):
        return {
            "evaluation": "perplexity",
            "run": {"step": step, "checkpoint": f"step_{step:07d}"},
            "data": "held-out split",
            "train_length": 32,
            "bucket_tokens": 32,
            "lengths": lengths,
            "spans": {"max_spans": 2, "seed": 0, "span_tokens": span_tokens, "cross_document": False, "note": note},
            "results": [{"length": length, "loss": span_tokens + length} for length in lengths],
        }

    first = merge_by_length(None, result([32, 64, 128], 129, note="few documents"))
    second = merge_by_length(first, result([64], 65))
    third = merge_by_length(second, result([32, 256], 257))
    assert third["lengths"] == [32, 64, 128, 256]
    assert [record["loss"] for record in third["results"]] == [257 + 32, 65 + 64, 129 + 128, 257 + 256]
    assert [entry["lengths"] for entry in third["merged"]] == [[64], [128]]
    assert [entry["spans"]["span_tokens"] for entry in third["merged"]] == [65, 129]
    assert third["spans"]["note"] == "few documents"
    assert merge_by_length(third, result([32], 33, step=9))["lengths"] == [32]  # another checkpoint: replaced


# ------------------------------------------------------------------ help and version


def test_every_command_has_a_help_line_and_a_description():
    parser = build_parser()
    assert "thin wrappers" not in parser.format_help()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {choice.dest: choice.help for choice in action._choices_actions}
    for name, sub in commands().items():
        assert helps.get(name), f"fope {name} has no one-line help"
        assert sub.description and sub.description != helps[name], f"fope {name} --help has no description"
    assert "export" in commands()


def test_version(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"fope {version('fope')}"


def test_help_of_a_command(capsys):
    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    assert "merged by length" in " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], "fope: error: the following arguments are required: COMMAND (see fope --help)"),
        (["train", "--out"], "fope train: error: argument --out: expected one argument (see fope train --help)"),
        (["passkey", "run", "--trials", "x"], "fope passkey: error: argument --trials: invalid int value: 'x'"),
        (["sing"], "fope: error: argument COMMAND: invalid choice: 'sing'"),
    ],
)
def test_argument_errors_are_one_line(argv, expected, capsys):
    from fope.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.startswith(expected) and err.count("\n") == 1, err


@pytest.mark.parametrize(
    "argv",
    [
        ["report", "--out", ""],
        ["compare", "run", "--out", " "],
        ["analyze", "run", "--out", ""],
        ["train", "--preset", "tiny/fope", "--out", ""],
        ["prepare", "--out", ""],
        ["demo", "--out", ""],
        ["experiment", "ablation", "--out", ""],
    ],
)
def test_an_empty_output_path_is_refused_not_read_as_the_current_folder(argv, capsys):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    command = " ".join(argv[:2]) if argv[0] == "experiment" else argv[0]  # a recipe is a subcommand of its own
    assert "argument --out: must be a path; got an empty one" in one_error_line(capsys, command)


@pytest.mark.parametrize("command", [["eval", "run"], ["passkey", "run"], ["retrieval", "run"], ["prepare"]])
@pytest.mark.parametrize("value", ["-2", "x", str(2**64)])
def test_a_seed_out_of_range_names_the_option(command, value, capsys):
    """It used to fail inside the evaluation, blaming the length (``passkey length 128 cannot hold trial 0``)."""
    with pytest.raises(SystemExit) as stop:
        main([*command, "--seed", value])
    assert stop.value.code == 2
    assert f"argument --seed: must be an int from 0 to 2**64 - 1; got '{value}'" in one_error_line(capsys, command[0])


def test_train_help_lists_every_shipped_preset():
    from fope.presets import preset_names

    preset = next(action for action in commands()["train"]._actions if "--preset" in action.option_strings)
    listed = {  # "tiny/ENCODING (alibi, cope, ...) or paper/SIZE (1.2b, ...)"
        part.split("/")[0].split()[-1]: part.split("(")[1].split(")")[0].split(", ")
        for part in preset.help.split(" or ")
    }
    assert sorted(f"{group}/{stem}" for group, stems in listed.items() for stem in stems) == sorted(preset_names())
