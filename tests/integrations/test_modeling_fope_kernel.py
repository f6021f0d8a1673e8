"""The exported / converted transformers folder (remote code: ``modeling_fope.py`` and the kernel file ``fope`` writes
next to it) rotates through the fused Triton kernel when the switch says so, under Triton's interpreter on CPU
tensors: the eager path's logits and gradients, in the number of launches the design says; and without triton the
folder still loads and runs eagerly."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch
import transformers

from fope.integrations.export import to_transformers
from fope.integrations.transformers import convert
from fope.model import ModelConfig, TransformerLM

pytestmark = pytest.mark.triton

SMALL = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "intermediate_size": 64,
    "vocab_size": 64,
    "pad_token_id": 0,
    "bos_token_id": 1,
    "eos_token_id": 2,
}
LAYERS = SMALL["num_hidden_layers"]


def converted(architecture: str, **options):
    """A tiny random transformers model converted to FoPE (per-layer, per-KV-head coefficients unless told)."""
    config_name, extra = {"llama": ("LlamaConfig", {}), "qwen3": ("Qwen3Config", {}), "phi3": ("Phi3Config", {})}[
        architecture
    ]
    extra = {"partial_rotary_factor": 0.5} if architecture == "phi3" else extra
    config = getattr(transformers, config_name)(**SMALL, **extra)
    torch.manual_seed(0)
    model = getattr(transformers, config_name.replace("Config", "ForCausalLM"))(config)
    return convert(model, 32, seed=0, **options)


def exported():
    """A lab model (GQA FoPE, interleaved pairs, learnable coefficients) through ``fope export``'s model."""
    config = ModelConfig(
        vocab_size=64,
        d_model=32,
        num_layers=LAYERS,
        num_heads=4,
        num_kv_heads=2,
        position="fope",
        position_seed=0,
        train_length=32,
        position_options={"layout": "interleaved", "learnable": True},
    )
    torch.manual_seed(0)
    return to_transformers(TransformerLM(config))


# name -> (the model, launches per forward: q and k apart (two per layer) or together from a fused qkv_proj (one))
CASES = {
    "llama-learnable": (lambda: converted("llama", learnable=True), 2 * LAYERS),  # q_proj / k_proj outputs
    "qwen3-shared": (lambda: converted("qwen3", share_layers=True), 2 * LAYERS),  # q_norm / k_norm, (B, T, H, D)
    "phi3-learnable": (lambda: converted("phi3", learnable=True), LAYERS),  # qkv_proj, partial rotary
    "export": (exported, 2 * LAYERS),
}


def kernel_module(model) -> object:
    """The kernel file loaded with the remote modeling file (``<folder's module>.triton_rotary``)."""
    return sys.modules[type(model).__module__.rsplit(".", 1)[0] + ".triton_rotary"]


@pytest.mark.parametrize("name", list(CASES))
def test_the_remote_code_kernel_gives_the_eager_logits_and_gradients(name, tmp_path, monkeypatch):
    monkeypatch.delenv("FOPE_KERNEL", raising=False)
    build, launches_per_forward = CASES[name]
    build().save_pretrained(tmp_path)
    assert (tmp_path / "triton_rotary.py").is_file()
    model = transformers.AutoModelForCausalLM.from_pretrained(tmp_path, trust_remote_code=True)
    assert type(model).__module__.startswith("transformers_modules.")  # the folder's code, not fope's
    kernel = kernel_module(model)
    launches = []
    launch = kernel.launch
    monkeypatch.setattr(kernel, "launch", lambda *args, **kwargs: launches.append(1) or launch(*args, **kwargs))
    ids = torch.randint(0, SMALL["vocab_size"], (2, 6), generator=torch.Generator().manual_seed(1))
    results = {}
    for switch in ("eager", "triton"):
        monkeypatch.setenv("FOPE_KERNEL", switch)
        model.zero_grad()
        logits = model(input_ids=ids, use_cache=False).logits
        (logits * torch.linspace(-1, 1, logits.shape[-1])).sum().backward()
        grads = {key: p.grad.clone() for key, p in model.named_parameters() if p.grad is not None}
        results[switch] = logits.detach(), grads
        assert len(launches) == (0 if switch == "eager" else 2 * launches_per_forward)  # forward, then backward
    torch.testing.assert_close(results["triton"][0], results["eager"][0], atol=1e-5, rtol=1e-5)
    assert results["triton"][1].keys() == results["eager"][1].keys()
    for key, grad in results["eager"][1].items():
        torch.testing.assert_close(results["triton"][1][key], grad, atol=1e-5, rtol=1e-4, msg=key)
    if "learnable" in name or name == "export":
        assert sum(".fope.cos_coef" in key for key in results["eager"][1]) == LAYERS


# Runs in a fresh interpreter where neither fope nor triton can be imported: the folder loads and runs eagerly
# (FOPE_KERNEL unset, "auto", or "eager"); forcing the kernel is a one-line error that says what to do.
WITHOUT_TRITON = textwrap.dedent(
    """
    import importlib.abc, os, sys

    class Blocked(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("fope", "triton"):
                raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)", name=name)
            return None

    sys.meta_path.insert(0, Blocked())
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(sys.argv[1], trust_remote_code=True)
    ids = torch.load(sys.argv[2])
    results = {}
    for switch in (None, "auto", "eager"):
        if switch is not None:
            os.environ["FOPE_KERNEL"] = switch
        with torch.no_grad():
            results[str(switch)] = model(input_ids=ids, use_cache=False).logits
    os.environ["FOPE_KERNEL"] = "triton"
    try:
        model(input_ids=ids, use_cache=False)
        results["error"] = ""
    except ImportError as error:
        results["error"] = str(error)
    results["imported"] = sorted({m.split(".")[0] for m in sys.modules} & {"fope", "triton"})
    torch.save(results, sys.argv[3])
    """
)


def test_the_folder_loads_and_runs_eagerly_without_triton(tmp_path, monkeypatch):
    monkeypatch.delenv("FOPE_KERNEL", raising=False)
    model = converted("llama")
    model.save_pretrained(tmp_path / "model")
    ids = torch.randint(0, SMALL["vocab_size"], (2, 6), generator=torch.Generator().manual_seed(1))
    torch.save(ids, tmp_path / "ids.pt")
    (tmp_path / "load.py").write_text(WITHOUT_TRITON)
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(HF_HOME=str(tmp_path / "hf-home"), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    command = [sys.executable, "load.py", str(tmp_path / "model"), str(tmp_path / "ids.pt"), str(tmp_path / "out.pt")]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    results = torch.load(tmp_path / "out.pt", weights_only=True)
    assert results["imported"] == []
    with torch.no_grad():
        expected = model(input_ids=ids, use_cache=False).logits  # fope's converted model, eager on the CPU
    for switch in ("None", "auto", "eager"):
        torch.testing.assert_close(results[switch], expected, atol=1e-5, rtol=1e-5, msg=switch)
    assert "needs triton" in results["error"] and "FOPE_KERNEL=eager" in results["error"]
    assert "\n" not in results["error"]
