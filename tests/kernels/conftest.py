"""The kernel tests run the Triton kernel under Triton's interpreter on CPU tensors: ``TRITON_INTERPRET=1`` is set
for each test of this folder only (the kernel is jitted per interpreter mode, so nothing leaks into other tests)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _triton_interpreter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.delenv("FOPE_KERNEL", raising=False)
