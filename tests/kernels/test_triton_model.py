"""The lab model reaches positions only through ``pe(q, k, positions)``: with the kernel forced (``FOPE_KERNEL``), a
GQA FoPE model gives the eager model's loss and gradients, its KV-cache offsets included."""

from __future__ import annotations

import pytest
import torch

from fope.model import ModelConfig, TransformerLM

pytestmark = pytest.mark.triton


def test_fope_model_with_the_kernel_matches_eager(monkeypatch):
    config = ModelConfig(
        vocab_size=50,
        d_model=32,
        num_layers=2,
        num_heads=4,
        num_kv_heads=2,
        position="fope",
        position_seed=0,
        train_length=64,
        position_options={"sigma": 0.5, "learnable": True},
    )
    torch.manual_seed(0)
    model = TransformerLM(config)
    tokens = torch.randint(0, 50, (2, 6), generator=torch.Generator().manual_seed(1))
    positions = torch.tensor([[0, 1, 2, 3, 4, 5], [40, 41, 42, 43, 44, 45]])  # the second row continues a cache
    results = {}
    for kernel in ("eager", "triton"):
        monkeypatch.setenv("FOPE_KERNEL", kernel)
        model.zero_grad()
        output = model(tokens, positions, targets=tokens)
        output.loss.backward()
        results[kernel] = (output.logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters()})
    torch.testing.assert_close(results["triton"][0], results["eager"][0], atol=1e-5, rtol=1e-5)
    for name, grad in results["eager"][1].items():
        torch.testing.assert_close(results["triton"][1][name], grad, atol=1e-5, rtol=1e-4, msg=name)
    assert any("cos_coef" in name for name in results["eager"][1])  # the coefficients' gradients were compared
