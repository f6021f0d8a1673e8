"""Optional dependencies: the core install (``pip install fope``) trains, evaluates and runs ``fope demo`` without
them; each feature that needs one asks for it here and fails with one line naming the extra to install.

``EXTRAS`` maps each optional top-level package to the extra of pyproject.toml that installs it. No module on a core
path imports one of them at import time (tests/test_imports.py checks it with the packages blocked).
"""

from __future__ import annotations

import importlib.util
import sys

from fope.errors import FopeError

__all__ = ["EXTRAS", "MissingExtra", "require"]

#: Optional package -> the extra that installs it (``pip install 'fope[EXTRA]'``).
EXTRAS = {
    "transformers": "transformers",
    "accelerate": "hf-trainer",
    "lm_eval": "lm-eval",
    "datasets": "datasets",
    "tensorboard": "tensorboard",
    "ray": "ray",
    "torchtitan": "torchtitan",
    "triton": "triton",
}


class MissingExtra(FopeError, ImportError):
    """A feature needs an optional package that is not installed (a user's one-line error, and an ImportError)."""


def require(package: str, purpose: str) -> None:
    """Raise ``MissingExtra`` (one line: what needs it and how to install it) unless ``package`` is importable."""
    if package in sys.modules:  # imported already (or a stand-in put there); None there means "not importable"
        if sys.modules[package] is not None:
            return
    elif importlib.util.find_spec(package) is not None:
        return
    extra = EXTRAS.get(package, package)
    raise MissingExtra(f"{purpose} needs the optional package {package!r}: pip install 'fope[{extra}]'")
