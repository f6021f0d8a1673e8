"""The project's own error for a user's mistake: bad input, a config value, a missing or corrupt file; and how an
environment fault (a full disk, a read-only folder, a name too long) is said in one line.

Every error that names what the user gave and what is accepted derives from ``FopeError`` (a ``ValueError``), so
``fope.cli.main`` turns it into one line on stderr and exit code 2 instead of a traceback. An ``OSError`` whose
``errno`` is in ``ENVIRONMENT_ERRNOS`` is an environment fault, said by ``describe_os_error``. Bugs stay tracebacks.
"""

from __future__ import annotations

import errno
import os

__all__ = [
    "ENVIRONMENT_ERRNOS",
    "UNWRITABLE_ERRNOS",
    "CampaignError",
    "ConfigError",
    "FopeError",
    "describe_os_error",
    "is_environment_error",
    "not_utf8",
    "one_line",
    "shorten",
    "with_filename",
]


class FopeError(ValueError):
    """A user's mistake, said in one line: the value, and what is accepted."""


class ConfigError(FopeError):
    """A config value or key that is not accepted (also a command-line option that sets one, like ``--device``)."""


class CampaignError(FopeError):
    """A campaign that cannot run as asked (a run folder holding other settings, an unknown run name, a run that asks
    for more GPUs than any machine has, ...)."""


#: A folder that cannot be written: read-only, or not the user's.
UNWRITABLE_ERRNOS = frozenset({errno.EROFS, errno.EACCES, errno.EPERM})
#: Faults of the machine or of a path, not of fope: a full disk or quota, an unwritable folder, a name too long, a
#: folder where a file is to be written.
ENVIRONMENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.ENAMETOOLONG, errno.EISDIR, *UNWRITABLE_ERRNOS})


def is_environment_error(error: BaseException) -> bool:
    """Whether ``error`` is an ``OSError`` of ``ENVIRONMENT_ERRNOS``."""
    return isinstance(error, OSError) and error.errno in ENVIRONMENT_ERRNOS


def with_filename(error: OSError, path: str | os.PathLike[str]) -> OSError:
    """``error`` itself when it names a file, else the same error naming ``path`` (a write to an open file does not)."""
    if error.filename is not None or error.errno is None:
        return error
    return OSError(error.errno, error.strerror or os.strerror(error.errno), os.fspath(path))  # its subclass by errno


def one_line(error: BaseException, limit: int = 300) -> str:
    """An exception's message on one line of at most ``limit`` characters (a library's error inside one of ours)."""
    text = " ".join(str(error).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def shorten(text: str, limit: int = 120) -> str:
    """``text`` cut in the middle to at most ``limit`` characters (long paths and names in one-line messages)."""
    if len(text) <= limit:
        return text
    head = limit * 2 // 3
    return f"{text[:head]}...{text[len(text) - (limit - head - 3) :]} ({len(text)} characters)"


def not_utf8(path: str | os.PathLike[str], error: UnicodeDecodeError) -> str:
    """``PATH is not UTF-8 text (byte 0xNN at offset K)``: which file, and where its first undecodable byte is."""
    return f"{os.fspath(path)} is not UTF-8 text (byte {error.object[error.start]:#04x} at offset {error.start})"


def describe_os_error(error: OSError, retry: str = "run the command again") -> str:
    """An environment fault in one line: what happened, the path, and what to do (``retry``: after a full disk)."""
    path = shorten(os.fsdecode(error.filename)) if error.filename is not None else "a file"
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        what = "no space left on device" if error.errno == errno.ENOSPC else "disk quota exceeded"
        return f"{what} writing {path}: free some space (or write elsewhere), then {retry}"
    if error.errno == errno.EROFS:
        return f"{path} is on a read-only file system: choose a writable folder"
    if error.errno in (errno.EACCES, errno.EPERM):
        return f"permission denied: {path}: check its permissions, or use another path"
    if error.errno == errno.EISDIR:
        return f"{path} is a folder where a file belongs: move or rename that folder, or use another path"
    if error.errno == errno.ENAMETOOLONG:
        return f"path or file name too long: {path}: use a shorter one (a name holds at most 255 bytes)"
    return " ".join(str(error).split())
