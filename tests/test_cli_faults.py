"""The command line under faults of the machine: a full disk, Ctrl-C, a read-only folder or cache, a name too long, an
output path that is a folder. Each is one stderr line that names the path and what to do; nothing half-written stays.

Root ignores file modes and tests may not mount file systems, so faults are made by making a write raise the
``OSError`` the system would give (``ENOSPC``, ``EROFS``, ``EACCES``), or by a real name too long.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml

from fope.cli import main
from fope.runs import load_run
from tests.conftest import tiny_run_config

NO_SPACE = OSError(errno.ENOSPC, "No space left on device")  # as a write to an open file says it: no file name


def error_line(capsys: pytest.CaptureFixture[str]) -> str:
    """The one line a command printed on stderr (checked: one ``fope`` line, no traceback; progress bars of data
    preparation may come before it)."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("fope ")]
    assert "Traceback" not in err and len(lines) == 1 and err.endswith(lines[0] + "\n"), err
    return lines[0]


def leftovers(folder: Path) -> list[str]:
    """Temporary files and folders (``.NAME.tmp-PID``) anywhere under ``folder``."""
    return sorted(str(path) for path in folder.rglob(".*tmp*"))


@pytest.fixture
def config_file(tiny_corpus, tmp_path) -> Path:
    """A tiny 8-step run config that checkpoints at steps 4 and 8."""
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(tiny_run_config(tiny_corpus, "rope")))
    return path


# ------------------------------------------------------------------ a full disk


def test_a_full_disk_during_training_keeps_the_last_checkpoint(config_file, tmp_path, monkeypatch, capsys):
    run_dir, real_save, saves = tmp_path / "run", torch.save, []

    def save(obj, handle, *args, **kwargs):
        saves.append(handle)
        if len(saves) == 2:  # the training state of step 8, after some bytes
            handle.write(b"PK\x03\x04 partial")
            raise NO_SPACE
        return real_save(obj, handle, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    assert main(["train", "--config", str(config_file), "--out", str(run_dir), "--no-progress"]) == 2
    assert error_line(capsys) == (
        f"fope train: error: no space left on device writing {run_dir}/checkpoints/step_0000008: free some space (or "
        f"write elsewhere), then resume with `fope train --resume --out {run_dir}` (from its last checkpoint, "
        "step_0000004)"
    )
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["latest", "step_0000004"]
    assert leftovers(run_dir) == [] and load_run(run_dir).step == 4
    monkeypatch.undo()
    assert main(["train", "--resume", "--out", str(run_dir), "--no-progress"]) == 0
    assert load_run(run_dir).step == 8


def test_a_full_disk_while_resuming_changes_nothing(tiny_runs, tmp_path, monkeypatch, capsys):
    run_dir = shutil.copytree(tiny_runs["rope"], tmp_path / "run")
    before = {path: path.read_bytes() for path in run_dir.rglob("*") if path.is_file()}

    def full(descriptor):
        raise NO_SPACE

    monkeypatch.setattr(os, "fsync", full)
    assert main(["train", "--resume", "--out", str(run_dir), "--max-steps", "12", "--no-progress"]) == 2
    line = error_line(capsys)
    assert line.startswith(f"fope train: error: no space left on device writing {run_dir}/")
    assert line.endswith(
        f"then resume with `fope train --resume --out {run_dir}` (from its last checkpoint, step_0000008)"
    )
    assert {path: path.read_bytes() for path in run_dir.rglob("*") if path.is_file()} == before


@pytest.mark.parametrize("command", ["eval", "passkey"])
def test_a_full_disk_when_saving_results_prints_them_and_says_they_were_not_saved(
    tiny_runs, tmp_path, monkeypatch, capsys, command
):
    run_dir = shutil.copytree(tiny_runs["rope"], tmp_path / "run")
    name = "perplexity" if command == "eval" else "passkey"
    (run_dir / "eval").mkdir()
    (run_dir / "eval" / f"{name}.json").write_text("earlier results")

    def full(descriptor):
        raise NO_SPACE

    monkeypatch.setattr(os, "fsync", full)
    options = ["--max-spans", "1"] if command == "eval" else ["--trials", "1"]
    argv = [command, str(run_dir), "--lengths", "128", *options, "--json", "--no-progress"]
    assert main(argv) == 2
    printed = capsys.readouterr()
    line = printed.err.rstrip("\n")
    assert [row["length"] for row in json.loads(printed.out)] == [128]
    assert line == (
        f"fope {command}: error: no space left on device writing {run_dir}/eval/{name}.json: free some space (or "
        "write elsewhere), then run the command again; the results printed above were not saved"
    )
    assert [p.name for p in (run_dir / "eval").iterdir()] == [f"{name}.json"]
    assert (run_dir / "eval" / f"{name}.json").read_text() == "earlier results"


@pytest.mark.parametrize("command", ["eval", "passkey", "report"])
def test_a_folder_where_an_output_file_belongs_is_one_line(tiny_runs, tmp_path, capsys, command):
    """A folder in the way of a file fope writes (``IsADirectoryError``) names the path, as the other path faults do."""
    if command == "report":
        (tmp_path / "results").mkdir()
        in_the_way = tmp_path / "page"
        in_the_way.mkdir()
        argv = ["report", "--results", str(tmp_path / "results"), "--out", str(in_the_way)]
    else:
        run_dir = shutil.copytree(tiny_runs["rope"], tmp_path / "run")
        in_the_way = run_dir / "eval" / ("perplexity.json" if command == "eval" else "passkey.json")
        in_the_way.mkdir(parents=True)
        options = ["--max-spans", "1"] if command == "eval" else ["--trials", "1"]
        argv = [command, str(run_dir), "--lengths", "128", *options, "--no-progress"]
    assert main(argv) == 2
    line = error_line(capsys)
    assert f"{in_the_way} is a folder where a file belongs: move or rename that folder, or use another path" in line
    assert in_the_way.is_dir() and not any(in_the_way.iterdir())


def test_a_folder_in_place_of_the_metrics_file_stops_a_resume_in_one_line(tiny_runs, tmp_path, capsys):
    run_dir = shutil.copytree(tiny_runs["rope"], tmp_path / "run")
    (run_dir / "metrics.jsonl").unlink()
    (run_dir / "metrics.jsonl").mkdir()
    assert main(["train", "--resume", "--out", str(run_dir), "--max-steps", "9", "--no-progress"]) == 2
    assert f"{run_dir}/metrics.jsonl is a folder where a file belongs" in error_line(capsys)


# ------------------------------------------------------------------ Ctrl-C


def test_ctrl_c_during_training_says_how_to_resume(config_file, tmp_path, monkeypatch, capsys):
    import fope.train

    run_dir, real_step = tmp_path / "run", fope.train.train_step

    def step(session):
        if session.step == 6:
            raise KeyboardInterrupt
        return real_step(session)

    monkeypatch.setattr(fope.train, "train_step", step)
    assert main(["train", "--config", str(config_file), "--out", str(run_dir), "--no-progress"]) == 130
    assert error_line(capsys) == (
        f"fope train: interrupted; resume with `fope train --resume --out {run_dir}` (from its last checkpoint, "
        "step_0000004)"
    )
    assert load_run(run_dir).step == 4


def test_ctrl_c_while_saving_the_first_checkpoint_leaves_no_half_checkpoint(config_file, tmp_path, monkeypatch, capsys):
    run_dir = tmp_path / "run"

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", interrupted)
    assert main(["train", "--config", str(config_file), "--out", str(run_dir), "--no-progress"]) == 130
    assert error_line(capsys) == (
        f"fope train: interrupted; resume with `fope train --resume --out {run_dir}` (from the start: no checkpoint "
        "yet)"
    )
    assert list((run_dir / "checkpoints").iterdir()) == []


@pytest.mark.parametrize(
    ("command", "work"),
    [("eval", "fope.evaluate.perplexity.token_losses"), ("passkey", "fope.evaluate.retrieval.run_trials")],
)
def test_ctrl_c_during_an_evaluation_writes_nothing(tiny_runs, tmp_path, monkeypatch, capsys, command, work):
    run_dir = shutil.copytree(tiny_runs["rope"], tmp_path / "run")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(work, interrupted)
    assert main([command, str(run_dir), "--no-progress"]) == 130
    assert capsys.readouterr().err == f"fope {command}: interrupted; nothing written\n"
    assert not (run_dir / "eval").exists()


# ------------------------------------------------------------------ read-only folders, a read-only HOME


@pytest.mark.parametrize(
    ("code", "said"), [(errno.EROFS, "is on a read-only file system"), (errno.EACCES, "permission denied: ")]
)
@pytest.mark.parametrize("command", ["eval", "passkey"])
def test_a_read_only_run_folder_gets_the_results_on_stdout(
    tiny_runs, tmp_path, monkeypatch, capsys, command, code, said
):
    run_dir = shutil.copytree(tiny_runs["rope"], tmp_path / "run")

    def read_only(path, data):
        raise OSError(code, os.strerror(code), str(Path(path).parent))

    monkeypatch.setattr("fope.evaluate.results.write_atomic", read_only)
    options = ["--max-spans", "1"] if command == "eval" else ["--trials", "2"]
    for output in (["--json"], []):
        assert main([command, str(run_dir), "--lengths", "128,256", *options, "--no-progress", *output]) == 2
        printed = capsys.readouterr()
        if output:
            rows = json.loads(printed.out)
            result = "perplexity" if command == "eval" else "accuracy"
            assert [row["length"] for row in rows] == [128, 256] and all(row[result] >= 0 for row in rows)
        else:
            assert "128" in printed.out and "saved" not in printed.out
        assert printed.err.count("\n") == 1 and printed.err.startswith(f"fope {command}: error: ")
        assert f"{run_dir}/eval" in printed.err and said in printed.err
        assert printed.err.endswith("; the results printed above were not saved\n")
    assert not (run_dir / "eval").exists()


def test_a_read_only_home_names_the_cache_and_suggests_fope_cache(tiny_corpus, tmp_path, monkeypatch, capsys):
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("FOPE_CACHE")

    def read_only(prefix, dir):
        raise OSError(errno.EROFS, "Read-only file system", str(dir))

    monkeypatch.setattr("fope.data.prepare.tempfile", SimpleNamespace(mkdtemp=read_only))
    assert main(["prepare", "--source", str(tiny_corpus), "--vocab-size", "300"]) == 2
    assert error_line(capsys) == (
        f"fope prepare: error: the data cache {home}/.cache/fope cannot be written (read-only file system: "
        f"{home}/.cache/fope/data); point FOPE_CACHE at a writable folder, e.g. FOPE_CACHE=/tmp/fope-cache"
    )


# ------------------------------------------------------------------ names too long, output paths that are folders


def test_a_name_too_long_is_one_line(tmp_path, capsys):
    long_name = tmp_path / ("x" * 300)
    assert main(["train", "--preset", "tiny/rope", "--out", str(long_name), "--no-progress"]) == 2
    line = error_line(capsys)
    assert line.startswith(f"fope train: error: path or file name too long: {str(long_name)[:40]}")
    assert line.endswith("use a shorter one (a name holds at most 255 bytes)") and len(line) < 300
    assert main(["eval", str(long_name), "--no-progress"]) == 2
    assert error_line(capsys).startswith("fope eval: error: path or file name too long: ")


def test_eval_data_with_a_long_name_saves_under_a_shorter_one(tiny_runs, tiny_corpus, tmp_path, capsys):
    run_dir = shutil.copytree(tiny_runs["rope"], tmp_path / "run")
    data = tmp_path / ("d" * 230 + ".txt")  # a legal name, too long once perplexity-<name>.json is made of it
    data.write_text(" ".join(path.read_text() for path in sorted(tiny_corpus.rglob("*.txt"))[:3]))
    assert (
        main(["eval", str(run_dir), "--data", str(data), "--lengths", "32", "--max-spans", "1", "--no-progress"]) == 0
    )
    (saved,) = (run_dir / "eval").iterdir()
    assert saved.name.startswith("perplexity-" + "d" * 191 + "-") and len(saved.name) == len("perplexity-.json") + 200
    assert f"saved {saved}" in capsys.readouterr().out


def test_bench_json_to_a_folder_fails_before_the_benchmark(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("fope.benchmark.copy_bandwidth", lambda *args, **kwargs: pytest.fail("the benchmark ran"))
    assert main(["bench", "--quick", "--device", "cpu", "--json", str(tmp_path)]) == 2
    assert error_line(capsys) == (
        f"fope bench: error: the JSON output '{tmp_path}' is a folder; give a file name, e.g. {tmp_path}/bench.json"
    )
    (tmp_path / "file").write_text("")
    assert main(["bench", "--quick", "--device", "cpu", "--json", str(tmp_path / "file" / "bench.json")]) == 2
    assert error_line(capsys).endswith(f"cannot be written: {tmp_path / 'file'} is a file, not a folder")


def test_bench_json_never_replaces_a_file_without_force(tmp_path, monkeypatch, capsys):
    earlier = tmp_path / "bench.json"
    earlier.write_text('{"an earlier": "measurement"}')
    monkeypatch.setattr("fope.benchmark.copy_bandwidth", lambda *args, **kwargs: pytest.fail("the benchmark ran"))
    assert main(["bench", "--quick", "--device", "cpu", "--json", str(earlier)]) == 2
    assert error_line(capsys) == (
        f"fope bench: error: the JSON output '{earlier}' exists; pass --force to replace it, or give another file name"
    )
    assert earlier.read_text() == '{"an earlier": "measurement"}'
    monkeypatch.undo()
    assert main(["bench", "--quick", "--device", "cpu", "--json", str(earlier), "--force"]) == 0
    assert json.loads(earlier.read_text())["rows"]
