"""The project's own error for a user's mistake: bad input, a config value, a missing or corrupt file.

Every error that names what the user gave and what is accepted derives from ``FopeError`` (a ``ValueError``), so
``fope.cli.main`` turns it into one line on stderr and exit code 2 instead of a traceback. Bugs stay tracebacks.
"""

from __future__ import annotations

__all__ = ["ConfigError", "FopeError"]


class FopeError(ValueError):
    """A user's mistake, said in one line: the value, and what is accepted."""


class ConfigError(FopeError):
    """A config value or key that is not accepted (also a command-line option that sets one, like ``--device``)."""
