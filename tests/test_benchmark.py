"""The position benchmark (`fope bench`, benchmarks/bench_positions.py): its rows, ratios and the ``copy`` floor.

Nothing here times anything against a target (speed is measured by the benchmark itself, docs/benchmarks.md): these
tests check that what it reports is computed from what it measured.
"""

from __future__ import annotations

import json

import pytest
import torch

from fope.benchmark import FreshCopy, format_position_benchmark, run_position_benchmark


def test_the_copy_floor_is_the_identity_into_fresh_tensors_forward_and_backward():
    q, k = (torch.randn(2, 3, 5, 8, requires_grad=True) for _ in range(2))
    grads = torch.randn(2, 3, 5, 8), torch.randn(2, 3, 5, 8)
    q_out, k_out = FreshCopy()(q, k)
    assert torch.equal(q_out, q) and torch.equal(k_out, k)
    assert q_out.data_ptr() != q.data_ptr() and k_out.data_ptr() != k.data_ptr()
    torch.autograd.backward((q_out, k_out), grads)
    assert torch.equal(q.grad, grads[0]) and torch.equal(k.grad, grads[1])
    # a fresh gradient, as a rotation's backward makes (autograd.grad hands back what the backward returned)
    (grad,) = torch.autograd.grad(FreshCopy()(q, k)[0], q, grads[0])
    assert torch.equal(grad, grads[0]) and grad.data_ptr() != grads[0].data_ptr()


def test_every_ratio_is_taken_in_the_same_run(tmp_path):
    path = tmp_path / "bench.json"
    results = run_position_benchmark("cpu", quick=True, json_path=path, progress=None)
    assert json.loads(path.read_text()) == results
    rows = results["rows"]
    cells = {(row["shape"], row["dtype"]) for row in rows}
    assert len(cells) == 4  # two head sizes, fp32 and bf16
    for cell in cells:
        by_scheme = {row["scheme"]: row for row in rows if (row["shape"], row["dtype"]) == cell}
        assert set(by_scheme) == {"rope", "yarn", "fope", "copy"}
        for row in by_scheme.values():
            assert row["mode"] == "fwd+bwd"
            assert row["ratio_to_rope"] == pytest.approx(row["median_ms"] / by_scheme["rope"]["median_ms"])
            assert row["ratio_to_copy"] == pytest.approx(row["median_ms"] / by_scheme["copy"]["median_ms"])
            assert row["floor_ms"] == pytest.approx(row["min_bytes"] / (results["copy_bandwidth_gb_s"] * 1e9) * 1e3)
        assert by_scheme["copy"]["ratio_to_copy"] == 1.0
    table = format_position_benchmark(results)
    assert "| / RoPE | / copy |" in table
    assert len([line for line in table.splitlines() if line.startswith("| B=")]) == len(rows)
