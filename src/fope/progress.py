"""Progress bars: tqdm everywhere, redrawn at most every ``LOG_INTERVAL`` seconds when they go to a log.

On a terminal a bar redraws itself in place up to ten times a second. Written to a file or a pipe (``nohup fope
experiment ... > campaign.log``, a SLURM or Ray job's output) every redraw is another line of the log: a campaign's bar
that redraws on each poll wrote about 420 KB per 90 minutes. There the bar redraws at most every ``LOG_INTERVAL``
seconds (``mininterval``, and ``maxinterval`` for tqdm's monitor thread, which would otherwise force a redraw every
10 s), and always when it closes. Notebook bars (``tqdm.auto`` with ipywidgets) are widgets and keep tqdm's defaults,
and so does any bar when tqdm's own ``TQDM_MININTERVAL`` environment variable is set.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from tqdm.auto import tqdm
from tqdm.notebook import tqdm_notebook

__all__ = ["LOG_INTERVAL", "progress_bar"]

#: Seconds between two redraws of a bar whose output is not a terminal.
LOG_INTERVAL = 30.0


def progress_bar(**options: Any) -> tqdm:
    """``tqdm(**options)``, redrawn at most every ``LOG_INTERVAL`` seconds unless the output is a terminal (or a
    notebook widget)."""
    stream = options.get("file") or sys.stderr
    interactive = issubclass(tqdm, tqdm_notebook) or _is_terminal(stream)  # tqdm.auto picked a notebook widget
    if "mininterval" not in options and "TQDM_MININTERVAL" not in os.environ and not interactive:
        options["mininterval"] = LOG_INTERVAL
        options.setdefault("maxinterval", LOG_INTERVAL)
    return tqdm(**options)


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False
