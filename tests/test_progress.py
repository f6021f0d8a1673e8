"""Progress bars written to a log redraw at most every LOG_INTERVAL seconds; on a terminal they keep tqdm's pace."""

from __future__ import annotations

import io
import os
import subprocess
import sys

from fope import progress
from fope.executor import LocalExecutor, Task, run_tasks
from fope.progress import LOG_INTERVAL, progress_bar


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_bar_to_a_log_redraws_at_most_every_log_interval(monkeypatch):
    monkeypatch.delenv("TQDM_MININTERVAL", raising=False)
    with progress_bar(total=3, file=io.StringIO()) as bar:
        assert bar.mininterval == LOG_INTERVAL
    with progress_bar(total=3, file=Terminal()) as bar:
        assert bar.mininterval == 0.1  # tqdm's own default
    with progress_bar(total=3, file=io.StringIO(), mininterval=2.0) as bar:
        assert bar.mininterval == 2.0  # the caller's choice wins
    # and so does tqdm's environment variable, which tqdm reads when it is imported
    code = "import io; from fope.progress import progress_bar; print(progress_bar(file=io.StringIO()).mininterval)"
    env = {**os.environ, "TQDM_MININTERVAL": "5"}
    assert subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True).stdout == "5.0\n"


def test_a_campaign_bar_in_a_log_is_not_redrawn_on_every_poll(tmp_path, monkeypatch):
    """The executor polls every 0.05 s here for ~1.5 s: on a terminal that is one redraw per poll, in a log a few."""
    monkeypatch.delenv("TQDM_MININTERVAL", raising=False)

    def redraws(stream: io.StringIO) -> int:
        monkeypatch.setattr(progress.sys, "stderr", stream)
        sleeper = Task("sleeper", ("-c", "import time; time.sleep(1.5)"), tmp_path / "sleeper.log")
        steps = iter(range(10**6))
        run_tasks([sleeper], LocalExecutor(1), lambda: next(steps), 10**6, "testing", poll=0.05)
        return stream.getvalue().count("\r")

    in_log, on_terminal = redraws(io.StringIO()), redraws(Terminal())
    assert in_log <= 3, in_log  # the first draw, the last one on close, nothing in between
    assert on_terminal >= 10, on_terminal  # the same campaign on a terminal redraws as it goes
