"""A run's ``metrics.jsonl``: one JSON record per log or evaluation step, written by rank 0, read back by step."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fope.errors import with_filename
from fope.files import write_atomic

__all__ = ["METRICS_FILE", "MetricsLog", "drop_records_after", "iterate_losses", "last_step", "read_metrics"]

METRICS_FILE = "metrics.jsonl"


#: Bytes ``last_step`` reads from the end of ``metrics.jsonl`` before it falls back to reading the whole file.
TAIL_BYTES = 1 << 16


def _records(lines: list[str]) -> list[dict[str, Any]]:
    """The complete records among ``lines`` (a line cut short by a crash, or not JSON, is skipped)."""
    records = []
    for line in lines:
        with contextlib.suppress(json.JSONDecodeError):
            record = json.loads(line)
            if isinstance(record, dict) and isinstance(record.get("step"), int):
                records.append(record)
    return records


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """The records of a run's ``metrics.jsonl`` (a line cut short by a crash is skipped)."""
    path = Path(run_dir) / METRICS_FILE
    return _records(path.read_text(encoding="utf-8", errors="replace").splitlines()) if path.is_file() else []


def last_step(run_dir: str | Path) -> int:
    """The step of the last complete record of a run's ``metrics.jsonl`` (0 without one): how far it has trained.

    Polled by the campaign's progress bar, so it reads the file's last ``TAIL_BYTES`` (whole lines after the first
    newline there), and the whole file only when they hold no complete record.
    """
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return 0
    with path.open("rb") as file:
        size = file.seek(0, 2)
        if size > TAIL_BYTES:
            file.seek(size - TAIL_BYTES)
            tail = file.read().split(b"\n", 1)[-1]  # the first line may be cut by the seek
            records = _records(tail.decode("utf-8", errors="replace").splitlines())
            if records:
                return records[-1]["step"]
    records = read_metrics(run_dir)
    return records[-1]["step"] if records else 0


def iterate_losses(run_dir: str | Path) -> Iterator[tuple[int, float]]:
    """(step, training loss) records of a run's ``metrics.jsonl``."""
    for record in read_metrics(run_dir):
        if "loss" in record:
            yield record["step"], record["loss"]


def drop_records_after(run_dir: str | Path, step: int) -> None:
    """Drop the records after ``step`` from a run's ``metrics.jsonl``: what an interrupted run logged after its last
    checkpoint, which the resumed run logs again."""
    path = Path(run_dir) / METRICS_FILE
    if path.is_file():
        kept = [record for record in read_metrics(run_dir) if record["step"] <= step]
        write_atomic(path, "".join(json.dumps(record) + "\n" for record in kept))


class MetricsLog:
    """Appends JSON records to ``metrics.jsonl`` (and TensorBoard scalars when ``tensorboard`` is installed).

    ``resume_step``: the step a resumed run restarts from; records after it (logged by the interrupted run after its
    last checkpoint, and about to be logged again) are dropped first, so every step is in the file once.
    """

    def __init__(self, run_dir: Path, enabled: bool, resume_step: int | None = None) -> None:
        self.path = run_dir / METRICS_FILE
        self.enabled = enabled
        self.writer = None
        if enabled and resume_step is not None:
            drop_records_after(run_dir, resume_step)
        if enabled:
            with contextlib.suppress(ImportError):
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(run_dir / "tensorboard"))

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        try:
            with open(self.path, "a") as handle:
                handle.write(json.dumps(record) + "\n")
        except OSError as error:  # a write to an open file names no file: say which (a full disk, ...)
            named = with_filename(error, self.path)
            if named is error:
                raise
            raise named from error
        if self.writer is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)):
                    self.writer.add_scalar(key, value, record["step"])

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
