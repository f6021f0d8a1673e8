"""fope's default frequencies are the references' bit for bit: each reference's frequency line transcribed here.

Every reference computes the RoPE ladder in float32 and compares it with the floor ``2*pi/L`` in float32 (a float32
tensor against a Python float, which torch rounds to float32). The lines below are transcriptions of the executed code,
each with where it comes from; fope's ``rope_frequencies`` / ``num_kept_frequencies`` and the modules built on them must
give exactly these tensors and counts, while ``precision="float64"`` is the documented switch away from them.
"""

from __future__ import annotations

import math

import pytest
import torch

from fope.integrations.intern import intern_fope_options
from fope.positions import FoPE, RoPE
from fope.positions.frequencies import num_kept_frequencies, rope_frequencies


def authors_fork(dim: int, theta: float) -> torch.Tensor:
    # TsinghuaC3I/Fourier-Position-Embedding, olmo/model.py RotaryEmbedding.get_inv_freq ("exponential")
    return 1.0 / (theta ** (torch.arange(0, dim, 2, device="cpu", dtype=torch.float) / dim))


def transformers_default(dim: int, theta: float) -> torch.Tensor:
    # transformers, modeling_rope_utils._compute_default_rope_parameters
    return 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.int64).to(device="cpu", dtype=torch.float) / dim))


def vllm(dim: int, theta: float) -> torch.Tensor:
    # vLLM, RotaryEmbedding._compute_inv_freq (SGLang's RotaryEmbedding has the same line)
    return 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.float) / dim))


def lmdeploy(dim: int, theta: float) -> torch.Tensor:
    # LMDeploy, pytorch backend default rotary embedding (also its FoPE path)
    return 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim)).float()


def xtuner(dim: int, theta: float) -> torch.Tensor:
    # xtuner, the Intern stack's rotary embedding (the FoPE variant starts from the same ladder)
    return 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.int64).float().to("cpu") / dim))


REFERENCES = (authors_fork, transformers_default, vllm, lmdeploy, xtuner)
SHAPES = [(32, 1e4), (64, 1e4), (128, 5e5), (128, 1e6), (256, 1e6), (80, 1e4), (96, 1e6)]


@pytest.mark.parametrize("reference", REFERENCES, ids=lambda f: f.__name__)
@pytest.mark.parametrize(("dim", "theta"), SHAPES)
def test_frequencies_are_each_references_bit_for_bit(reference, dim, theta):
    expected = reference(dim, theta)
    assert torch.equal(rope_frequencies(dim, theta), expected)
    assert torch.equal(RoPE(dim, theta=theta).inv_freq, expected)


@pytest.mark.parametrize(("dim", "theta"), SHAPES)
def test_float64_is_a_switch(dim, theta):
    exact = torch.tensor([math.pow(theta, -2.0 * i / dim) for i in range(dim // 2)], dtype=torch.float64)
    float64 = rope_frequencies(dim, theta, "float64")
    torch.testing.assert_close(float64, exact, rtol=1e-14, atol=0)  # torch's pow and math.pow may differ by an ulp
    assert torch.equal(RoPE(dim, theta=theta, frequency_precision="float64").inv_freq, float64.float())
    # the references' float32 ladder is within a few ulp of the exact one, and not always the nearest float32
    assert torch.allclose(rope_frequencies(dim, theta).double(), exact, rtol=4e-7, atol=0)


def authors_kept(dim: int, theta: float, length: int) -> int:
    # the fork's get_inv_freq: inv_freq[inv_freq < floor_freq] = 0, then fourier_ignore_zero drops the zeros
    inv_freq = authors_fork(dim, theta)
    inv_freq[inv_freq < 2 * torch.pi / length * 1.0] = 0.0
    return int((inv_freq != 0.0).sum())


def intern_kept(dim: int, theta: float, max_position_embeddings: int) -> int:
    # the Intern stack (xtuner / vLLM FoPE): frequencies strictly above 2*pi/max_position_embeddings, in float32
    inv_freq = xtuner(dim, theta)
    return int((inv_freq > 2 * math.pi / max_position_embeddings).sum())


@pytest.mark.parametrize(("dim", "theta", "length"), [(64, 1e4, 512), (128, 1e4, 4096), (256, 1e6, 274666)])
def test_kept_count_is_the_authors_and_the_interns(dim, theta, length):
    assert num_kept_frequencies(rope_frequencies(dim, theta), length) == authors_kept(dim, theta, length)
    assert FoPE(head_dim=dim, num_heads=1, train_length=length, theta=theta, seed=0).num_kept == authors_kept(
        dim, theta, length
    )
    assert num_kept_frequencies(rope_frequencies(dim, theta), length, strict=True) == intern_kept(dim, theta, length)


def test_the_float32_comparison_decides_k_where_float64_would_not():
    """The issue's case: D=256, theta=1e6, max_position_embeddings=274666. The Intern stack keeps 99 frequencies; a
    float64 ladder compared in float64 keeps 100, so its checkpoint failed the loader's shape check."""
    dim, theta, length = 256, 1e6, 274666
    assert intern_kept(dim, theta, length) == 99
    assert num_kept_frequencies(rope_frequencies(dim, theta, "float64"), length, strict=True) == 100
    config = {
        "num_attention_heads": 2,
        "head_dim": dim,
        "hidden_size": 2 * dim,
        "max_position_embeddings": length,
        "rope_theta": theta,
        "rope_scaling": {"fope_init_factor": 0.1, "fope_sep_head": True},
    }
    assert intern_fope_options(config)["num_inv_freq"] == 99


def test_intern_loader_reads_lmdeploys_key_first():
    config = {
        "num_attention_heads": 2,
        "head_dim": 64,
        "hidden_size": 128,
        "max_position_embeddings": 4096,
        "rope_theta": 1e4,
        "rope_scaling": {"fope_sep_head": True, "fope_num_inv_freq": 20, "num_inv_freq": 30},
    }
    assert intern_fope_options(config)["num_inv_freq"] == 20  # LMDeploy: fope_num_inv_freq, else num_inv_freq
    del config["rope_scaling"]["num_inv_freq"]
    assert intern_fope_options(config)["num_inv_freq"] == 20
    config["rope_scaling"] = {"fope_sep_head": True, "num_inv_freq": 30}
    assert intern_fope_options(config)["num_inv_freq"] == 30
