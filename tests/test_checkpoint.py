"""fope.checkpoint: atomic writes, stale temporary folders, corrupt checkpoints as one-line errors; resumed metrics."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys

import pytest

from fope.checkpoint import CheckpointError, clean_stale_temporaries, read_checkpoint_meta, save_checkpoint
from fope.config import load_config
from fope.files import file_sha256, write_atomic
from fope.metrics import read_metrics
from fope.runs import load_run
from fope.train import train
from tests.conftest import tiny_run_config


def dead_pid() -> int:
    """The id of a process that has exited."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


@pytest.fixture
def run_dir(tiny_corpus, tmp_path):
    directory = tmp_path / "run"
    train(load_config(base=tiny_run_config(tiny_corpus, max_steps=4)), directory, progress=False)
    return directory


def test_write_atomic_and_file_sha256(tmp_path):
    path = write_atomic(tmp_path / "a" / "b.txt", "hello")
    assert path.read_text() == "hello" and [p.name for p in path.parent.iterdir()] == ["b.txt"]
    assert file_sha256(path) == "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"


def test_a_failed_atomic_write_leaves_the_old_file_and_names_it(tmp_path, monkeypatch):
    path = write_atomic(tmp_path / "results.json", "old")

    def full(descriptor):
        raise OSError(errno.ENOSPC, "No space left on device")  # as a write to an open file says it: no file name

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError) as error:
        write_atomic(path, "new")
    assert error.value.errno == errno.ENOSPC and error.value.filename == str(path)
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["results.json"]
    monkeypatch.setattr(os, "fsync", lambda descriptor: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        write_atomic(path, "new")
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["results.json"]


#: How safetensors (Rust) reports a full disk: its own error type, the errno in the text.
SAFETENSORS_FULL = Exception("Error while serializing: I/O error: No space left on device (os error 28)")


@pytest.mark.parametrize(
    ("failure", "raised"),
    [
        (SAFETENSORS_FULL, OSError),
        (OSError(errno.ENOSPC, "No space left on device"), OSError),
        (KeyboardInterrupt(), KeyboardInterrupt),
    ],
    ids=["safetensors", "oserror", "ctrl-c"],
)
def test_a_failed_save_leaves_the_last_checkpoint_and_no_temporary(run_dir, monkeypatch, failure, raised):
    root = run_dir / "checkpoints"
    before = sorted(p.name for p in root.iterdir())
    run = load_run(run_dir)

    def fail(*args, **kwargs):
        raise failure

    monkeypatch.setattr("safetensors.torch.save_model", fail)
    with pytest.raises(raised) as error:
        save_checkpoint(run_dir, 6, run.model, {"optimizer": {}}, keep=2)
    if raised is OSError:  # the checkpoint is named, not its temporary folder or a file in it
        assert error.value.errno == errno.ENOSPC and error.value.filename == str(root / "step_0000006")
    assert sorted(p.name for p in root.iterdir()) == before  # no .step_0000006.tmp-PID, latest unchanged
    assert load_run(run_dir).step == 4


def test_stale_temporaries_of_dead_writers_are_removed(run_dir):
    root = run_dir / "checkpoints"
    dead, alive = dead_pid(), subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        (root / f".step_0000009.tmp-{dead}").mkdir()
        (root / f".latest.tmp-{dead}").write_text("x")
        (root / f".step_0000009.tmp-{alive.pid}").mkdir()
        removed = clean_stale_temporaries(root)
        assert sorted(p.name for p in removed) == sorted([f".step_0000009.tmp-{dead}", f".latest.tmp-{dead}"])
        assert (root / f".step_0000009.tmp-{alive.pid}").is_dir()  # its writer may still be at work
    finally:
        alive.kill()
        alive.wait()
    (root / f".step_0000003.tmp-{dead}").mkdir()
    save_checkpoint(run_dir, 5, load_run(run_dir).model, keep=2)  # every save cleans up
    assert not (root / f".step_0000003.tmp-{dead}").exists()


def test_resume_cleans_up_after_a_killed_writer(tiny_corpus, run_dir):
    stale = run_dir / "checkpoints" / f".step_0000006.tmp-{dead_pid()}"
    stale.mkdir()
    config = load_config(base=tiny_run_config(tiny_corpus, max_steps=6))  # a finished run is not resumed: extend it
    train(config, run_dir, resume=True, progress=False)
    assert not stale.exists()


def test_a_resume_logs_every_step_once(tiny_corpus, tmp_path):
    """A run killed after logging steps past its last checkpoint logs them again on resume: the old records go."""
    config = load_config(base=tiny_run_config(tiny_corpus))  # 8 steps, checkpoints at 4 and 8, logs every step
    train(config, tmp_path / "full", progress=False)
    train(config, tmp_path / "killed", progress=False)
    checkpoints = tmp_path / "killed" / "checkpoints"
    (checkpoints / "latest").write_text("step_0000004")  # as if killed while writing step 8's checkpoint
    train(config, tmp_path / "killed", resume=True, progress=False)
    full, killed = read_metrics(tmp_path / "full"), read_metrics(tmp_path / "killed")
    steps = [record["step"] for record in killed if "loss" in record]
    assert steps == list(range(1, 9))
    drop_time = [{k: v for k, v in r.items() if k != "tokens_per_s"} for r in full]
    assert drop_time == [{k: v for k, v in r.items() if k != "tokens_per_s"} for r in killed]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[1, 2]", "holds a list, not a mapping"),
        ('{"step": 4', "meta.json is corrupt"),
        ('{"step": "four", "model_config": {}, "files": {}}', "step must be an int >= 0; got 'four'"),
        ('{"step": 4, "model_config": [], "files": {}}', "model_config must be a mapping"),
        ('{"step": 4, "model_config": {}, "files": ["model.safetensors"]}', "files must map file names"),
    ],
)
def test_a_corrupt_meta_json_is_one_line(run_dir, content, message):
    (run_dir / "checkpoints" / "step_0000004" / "meta.json").write_text(content)
    with pytest.raises(CheckpointError, match=message) as error:
        load_run(run_dir)
    assert "\n" not in str(error.value)


def test_a_meta_json_that_cannot_be_verified_or_names_another_step_is_corrupt(run_dir):
    path = run_dir / "checkpoints" / "step_0000004" / "meta.json"
    meta = json.loads(path.read_text())
    path.write_text(json.dumps({**meta, "step": 7}))  # was loaded as step 7
    with pytest.raises(CheckpointError, match="it says step 7 in the folder of step 4"):
        load_run(run_dir)
    path.write_text(json.dumps({key: value for key, value in meta.items() if key != "files"}))  # loaded unverified
    with pytest.raises(CheckpointError, match="files must map file names to sha256 checksums; got None"):
        load_run(run_dir)
    path.write_text(json.dumps(meta))
    assert load_run(run_dir, step=4).step == 4
    for step in ("4", 4.0, True):  # a str was a format-code ValueError; True was step 1
        with pytest.raises(ValueError, match="step must be an int >= 0"):
            load_run(run_dir, step=step)


def test_an_invalid_model_config_in_meta_is_one_line(run_dir):
    path = run_dir / "checkpoints" / "step_0000004" / "meta.json"
    meta = json.loads(path.read_text())
    path.write_text(json.dumps({**meta, "model_config": {**meta["model_config"], "d_model": -1}}))
    with pytest.raises(CheckpointError, match="invalid model_config: d_model must be an int >= 1; got -1"):
        load_run(run_dir)


def test_garbage_tokenizer_and_data_json_are_one_line(run_dir):
    from fope.data.tokenizer import TokenizerFileError

    (run_dir / "tokenizer.json").write_text("not a tokenizer")
    with pytest.raises(TokenizerFileError, match=r"tokenizer\.json") as error:
        load_run(run_dir)
    assert "\n" not in str(error.value) and str(error.value).count("tokenizer.json") == 1
    (run_dir / "data.json").write_text("[]")
    with pytest.raises(CheckpointError, match=r"data.json is corrupt"):
        load_run(run_dir)


def test_a_truncated_training_state_is_one_line(tiny_corpus, run_dir):
    directory = run_dir / "checkpoints" / "step_0000004"
    state = directory / "training_state.pt"
    state.write_bytes(state.read_bytes()[:100])
    meta = json.loads((directory / "meta.json").read_text())
    meta["files"]["training_state.pt"] = file_sha256(state)  # checksums match: the file itself is unreadable
    (directory / "meta.json").write_text(json.dumps(meta))
    assert read_checkpoint_meta(directory)["step"] == 4
    config = load_config(base=tiny_run_config(tiny_corpus, max_steps=6))
    with pytest.raises(CheckpointError, match=r"cannot read .*training_state.pt") as error:
        train(config, run_dir, resume=True, progress=False)
    assert "\n" not in str(error.value)


def test_checkpoint_identity_is_the_model_files_only(tmp_path):
    """What an evaluation read: the weights' checksums, not the training state nor a sharded checkpoint's optimizer
    shards (a step re-saved after a resume keeps its weights and its identity)."""
    from fope.checkpoint import checkpoint_identity, checkpoint_name

    folder = tmp_path / "checkpoints" / checkpoint_name(20)
    folder.mkdir(parents=True)

    def identity(files: dict[str, str]) -> dict:
        meta = {"step": 20, "model_config": {"d_model": 8}, "files": files}
        (folder / "meta.json").write_text(json.dumps(meta))
        return checkpoint_identity(tmp_path, 20)

    sharded = {"model/__0_0.distcp": "a" * 64, "optimizer/__0_0.distcp": "b" * 64, "training_state.pt": "c" * 64}
    first = identity(sharded)
    assert first["step"] == 20 and len(first["sha256"]) == 64
    assert identity({**sharded, "optimizer/__0_0.distcp": "d" * 64, "training_state.pt": "e" * 64}) == first
    assert identity({**sharded, "model/__0_0.distcp": "f" * 64}) != first
    assert identity({"model.safetensors": "a" * 64, "training_state.pt": "c" * 64}) != first


def test_how_far_a_run_has_trained_survives_a_cut_line_and_a_dangling_pointer(tmp_path):
    from fope.checkpoint import latest_step
    from fope.metrics import last_step

    assert last_step(tmp_path) == 0 and latest_step(tmp_path) == 0
    (tmp_path / "metrics.jsonl").write_text('{"step": 10, "loss": 3.0}\n{"step": 20, "loss": 2.5}\n{"step": 3')
    assert last_step(tmp_path) == 20  # the line a crash cut short is not a step
    (tmp_path / "checkpoints" / "step_0000020").mkdir(parents=True)
    (tmp_path / "checkpoints" / "latest").write_text("step_0000020")
    assert latest_step(tmp_path) == 20
    (tmp_path / "checkpoints" / "latest").write_text("step_0000040")  # names a folder that is not there
    with pytest.raises(CheckpointError, match="names 'step_0000040', which is not a checkpoint folder here"):
        latest_step(tmp_path)


def test_last_step_reads_the_tail_of_a_long_log_and_falls_back_to_the_whole_file(tmp_path, monkeypatch):
    import fope.metrics as metrics

    lines = "".join(f'{{"step": {step}, "loss": 2.0, "note": "{"é" * 40}"}}\n' for step in range(1, 3001))
    (tmp_path / "metrics.jsonl").write_text(lines + '{"step": 300', encoding="utf-8")
    assert (tmp_path / "metrics.jsonl").stat().st_size > metrics.TAIL_BYTES  # the tail path is taken
    assert metrics.read_metrics(tmp_path)[-1]["step"] == 3000
    with monkeypatch.context() as patch:  # the tail alone answers: the whole file is not read
        patch.setattr(metrics, "read_metrics", lambda run_dir: pytest.fail("read the whole file"))
        assert metrics.last_step(tmp_path) == 3000
    # A tail that holds no complete record (one long record at the end) is read from the whole file.
    monkeypatch.setattr(metrics, "TAIL_BYTES", 64)
    (tmp_path / "metrics.jsonl").write_text('{"step": 7}\n{"step": 8, "text": "' + "x" * 200 + '"}\n{"step": 9')
    assert metrics.last_step(tmp_path) == 8
    (tmp_path / "metrics.jsonl").write_text('{"step": 7}\n' + "x" * 200 + "\n")  # not JSON at the end
    assert metrics.last_step(tmp_path) == 7
