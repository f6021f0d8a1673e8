"""The project's file helpers: one file checksum, one atomic file write, one atomic publication of a folder.

They sit at the bottom (next to ``fope.errors``): any module may use them (docs/architecture.md).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
from pathlib import Path

__all__ = ["file_sha256", "os_error", "publish_directory", "renamed_error", "write_atomic"]


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
    """Write ``data`` to ``path`` through a flushed temporary file and one rename: a reader never sees half a file.

    A write that fails (a full disk, a read-only folder, Ctrl-C) removes its temporary file and leaves ``path`` as it
    was; its ``OSError`` names ``path``.
    """
    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(temporary, "wb") as handle:
            handle.write(data.encode() if isinstance(data, str) else data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException as error:
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)
        named = renamed_error(error, temporary, path) if isinstance(error, OSError) else error
        if named is error:
            raise
        raise named from error
    return path


def renamed_error(error: OSError, temporary: Path, final: Path) -> OSError:
    """``error`` naming ``final`` (or its file) instead of the temporary path it was written under; naming ``final``
    when it names no file (a write to an open file does not)."""
    if error.errno is None:
        return error
    if error.filename is None:
        name = final
    else:
        filename = Path(os.fsdecode(error.filename))
        if filename == temporary:
            name = final
        elif temporary in filename.parents:
            name = final / filename.relative_to(temporary)
        else:
            return error
    return OSError(error.errno, error.strerror or os.strerror(error.errno), str(name))  # its subclass by errno


def os_error(error: Exception, path: Path) -> Exception:
    """A library's error about an I/O failure as the ``OSError`` it wraps, naming ``path``; other errors unchanged.

    safetensors (Rust) reports a full disk as ``SafetensorError: ... (os error 28)``, not as an ``OSError``.
    """
    if isinstance(error, OSError):
        return error
    match = re.search(r"os error (\d+)|Os \{ code: (\d+)", str(error))
    if match is None:
        return error
    code = int(match.group(1) or match.group(2))
    return OSError(code, os.strerror(code), str(path))


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
