"""The project's file helpers: one file checksum, one atomic file write, one atomic publication of a folder.

They sit at the bottom (next to ``fope.errors``): any module may use them. ``fope.checkpoint`` re-exports them.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

__all__ = ["file_sha256", "publish_directory", "write_atomic"]


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def write_atomic(path: str | Path, data: bytes | str) -> Path:
    """Write ``data`` to ``path`` through a flushed temporary file and one rename: a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(temporary, "wb") as handle:
        handle.write(data.encode() if isinstance(data, str) else data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    return path


def publish_directory(staging: str | Path, final: str | Path, *, replace: bool = False) -> Path:
    """Move the finished directory ``staging`` to ``final`` in one rename, its files flushed to disk first.

    An existing non-empty ``final`` raises ``OSError`` (another writer got there first), unless ``replace``: then it
    (a folder, a file or a link) is moved aside, and removed once the new one is in place.
    """
    staging, final = Path(staging), Path(final)
    for file in staging.rglob("*"):
        if file.is_file():
            _fsync_file(file)
    if replace and (final.exists() or final.is_symlink()):
        aside = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.rename(final, aside)
        os.rename(staging, final)
        if aside.is_dir() and not aside.is_symlink():
            shutil.rmtree(aside)
        else:
            aside.unlink()
    else:
        os.replace(staging, final)
    return final
