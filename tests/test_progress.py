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
        assert bar.maxinterval == LOG_INTERVAL  # tqdm's monitor thread would force a redraw every 10 s
    with progress_bar(total=3, file=Terminal()) as bar:
        assert bar.mininterval == 0.1  # tqdm's own default
    with progress_bar(total=3, file=io.StringIO(), mininterval=2.0) as bar:
        assert bar.mininterval == 2.0  # the caller's choice wins
    # and so does tqdm's environment variable, which tqdm reads when it is imported
    code = "import io; from fope.progress import progress_bar; print(progress_bar(file=io.StringIO()).mininterval)"
    env = {**os.environ, "TQDM_MININTERVAL": "5"}
    assert subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True).stdout == "5.0\n"


def test_a_campaign_bar_redraws_at_its_interval_even_while_no_step_is_done(tmp_path, monkeypatch):
    """The executor polls every 0.05 s for ~1.5 s. In a log (interval made 0.5 s here) that is a redraw every 0.5 s at
    most; on a terminal, a redraw about every 0.1 s, also while the steps stall (a run evaluating), so its elapsed
    time moves. Progress comes in bursts: 50 steps on the first poll, then nothing."""
    monkeypatch.delenv("TQDM_MININTERVAL", raising=False)
    monkeypatch.setattr(progress, "LOG_INTERVAL", 0.5)

    def redraws(stream: io.StringIO) -> int:
        monkeypatch.setattr(progress.sys, "stderr", stream)
        sleeper = Task("sleeper", ("-c", "import time; time.sleep(1.5)"), tmp_path / "sleeper.log")
        polls = iter(range(10**6))
        run_tasks([sleeper], LocalExecutor(1), lambda: 50 if next(polls) else 0, 100, "testing", poll=0.05)
        return stream.getvalue().count("\r")

    in_log, on_terminal = redraws(io.StringIO()), redraws(Terminal())
    assert 2 <= in_log <= 6, in_log  # the first draw, one per 0.5 s, the last on close
    assert on_terminal >= 8, on_terminal  # a stalled campaign on a terminal still redraws
