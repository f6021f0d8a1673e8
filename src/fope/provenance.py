"""Which code computed a result: fope's version, and the git commit of its source when it runs from a checkout."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path
from typing import Any


def fope_version() -> str:
    """The installed distribution's version, else the package's ``__version__``."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("fope")
    except PackageNotFoundError:
        import fope

        return getattr(fope, "__version__", "unknown")


def _git(package: Path, *arguments: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(package), *arguments], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


@functools.lru_cache(maxsize=1)
def provenance() -> dict[str, Any]:
    """``fope_version``; ``git_commit`` and ``git_dirty`` (uncommitted changes under ``src/fope``) when the package
    is a tracked folder of a git checkout, else None (an installed wheel: a repository around it is not its source)."""
    package = Path(__file__).resolve().parent
    commit = dirty = None
    if _git(package, "ls-files", "--error-unmatch", "__init__.py") is not None:
        commit = _git(package, "rev-parse", "HEAD")
        status = _git(package, "status", "--porcelain", "--untracked-files=no", "--", ".")
        dirty = None if status is None else bool(status)
    return {"fope_version": fope_version(), "git_commit": commit, "git_dirty": dirty}
