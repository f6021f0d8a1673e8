"""Converted FoPE models under transformers' Trainer and FSDP2: coefficients through every loading mode, FSDP2 on two
gloo processes, Trainer steps, exact save -> reload."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import transformers
from safetensors.torch import load_file

from fope.errors import FopeError
from fope.extras import MissingExtra
from fope.integrations.hf_trainer import fsdp_config
from fope.integrations.transformers import convert, from_pretrained

pytestmark = pytest.mark.hf_trainer

SMALL = {
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "intermediate_size": 128,
    "vocab_size": 128,
}
WORKER = Path(__file__).with_name("fsdp2_worker.py")


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> Path:
    """A tiny Llama converted to FoPE (per-layer coefficients, seed 0) and saved."""
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**SMALL)).eval()
    convert(model, 64, seed=0)
    folder = tmp_path_factory.mktemp("converted")
    model.save_pretrained(folder)
    return folder


def saved_fope(folder: Path) -> dict[str, torch.Tensor]:
    """The FoPE tensors of the checkpoint file, read with safetensors alone."""
    tensors = {name: tensor for name, tensor in load_file(folder / "model.safetensors").items() if ".fope." in name}
    assert len(tensors) == 3 * SMALL["num_hidden_layers"]  # inv_freq, cos_coef, sin_coef per layer
    return tensors


def ids() -> torch.Tensor:
    return torch.randint(3, SMALL["vocab_size"], (2, 20), generator=torch.Generator().manual_seed(4))


def assert_fope_equal(model: torch.nn.Module, expected: dict[str, torch.Tensor]) -> None:
    state = {name: tensor for name, tensor in model.state_dict().items() if ".fope." in name}
    assert sorted(state) == sorted(expected)
    for name, tensor in expected.items():
        assert state[name].dtype == torch.float32, name
        assert torch.equal(state[name].cpu(), tensor), name


def test_coefficients_equal_the_saved_ones_in_every_loading_mode(converted):
    expected = saved_fope(converted)
    reference = from_pretrained(converted).eval()
    with torch.no_grad():
        reference_logits = reference(ids()).logits
    auto = transformers.AutoModelForCausalLM
    modes = {
        "default": lambda: from_pretrained(converted),
        "low_cpu_mem_usage": lambda: from_pretrained(converted, low_cpu_mem_usage=True),
        "device_map": lambda: from_pretrained(converted, device_map="cpu"),
        "bfloat16": lambda: from_pretrained(converted, dtype=torch.bfloat16),
        "remote code, device_map": lambda: auto.from_pretrained(converted, trust_remote_code=True, device_map="cpu"),
    }
    for mode, load in modes.items():
        model = load().eval()
        assert_fope_equal(model, expected)
        if mode != "bfloat16":
            with torch.no_grad():
                torch.testing.assert_close(model(ids()).logits, reference_logits, atol=0, rtol=0, msg=mode)

    # from_config on the meta device, materialised empty, then the checkpoint loaded into it (accelerate's
    # cpu_ram_efficient_loading on ranks > 0): nothing of FoPE may be left uninitialised
    config = transformers.AutoConfig.from_pretrained(converted, trust_remote_code=True)
    with torch.device("meta"):
        model = auto.from_config(config, trust_remote_code=True)
    assert all(tensor.is_meta for tensor in model.state_dict().values())
    model.to_empty(device="cpu")
    missing, unexpected = model.load_state_dict(load_file(converted / "model.safetensors"), strict=False)
    assert not missing and not unexpected
    assert_fope_equal(model.eval(), expected)
    with torch.no_grad():
        torch.testing.assert_close(model(ids()).logits, reference_logits, atol=0, rtol=0)


def test_fsdp2_on_two_gloo_processes_keeps_fope_trains_and_saves_exactly(converted, tmp_path):
    out = tmp_path / "out"
    with socket.socket() as probe:  # a free port for the rendezvous
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    environment = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": "2"}
    environment["OMP_NUM_THREADS"] = "1"
    ranks = [  # the two ranks torchrun would start, without its agent process
        subprocess.Popen(
            [sys.executable, str(WORKER), str(converted), str(out)],
            env={**environment, "RANK": str(rank), "LOCAL_RANK": str(rank)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in range(2)
    ]
    outputs = [process.communicate(timeout=300) for process in ranks]
    for process, (_, stderr) in zip(ranks, outputs, strict=True):
        assert process.returncode == 0, stderr[-4000:]
    results = [json.loads(stdout.strip().splitlines()[-1]) for stdout, _ in outputs]
    assert [result["rank"] for result in results] == [0, 1]
    for result in results:
        assert result["loaded"] and result["sharded_intact"] and result["sharded"], result
        losses = result["losses"]
        assert losses[-1] < losses[0] - 0.3, losses  # 4 AdamW steps on one batch

    # the folder save_pretrained wrote from the FSDP2 model loads anywhere, exactly as gathered
    files = sorted(path.name for path in out.iterdir())
    expected = ["config.json", "generation_config.json", "model.safetensors", "modeling_fope.py", "triton_rotary.py"]
    assert files == expected, files  # the modeling file and its kernel, never torch's FSDP files
    assert json.loads((out / "config.json").read_text())["auto_map"]["AutoModelForCausalLM"] == (
        "modeling_fope.FoPEForCausalLM"
    )
    gathered = load_file(tmp_path / "out.gathered.safetensors")
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(out, trust_remote_code=True)
    state = reloaded.state_dict()
    assert sorted(state) == sorted(gathered)
    for name, tensor in gathered.items():
        assert torch.equal(state[name], tensor), name
    assert_fope_equal(reloaded, saved_fope(converted))  # frozen coefficients: unchanged by training
    before = load_file(converted / "model.safetensors")
    assert not torch.equal(before["model.layers.0.mlp.up_proj.weight"], gathered["model.layers.0.mlp.up_proj.weight"])


def test_trainer_steps_lower_the_loss_and_save_model_round_trips(converted, tmp_path):
    class Batches(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return 32

        def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
            row = torch.randint(3, SMALL["vocab_size"], (16,), generator=torch.Generator().manual_seed(index % 4))
            return {"input_ids": row, "labels": row}

    model = from_pretrained(converted)
    arguments = transformers.TrainingArguments(
        output_dir=str(tmp_path / "trainer"),
        per_device_train_batch_size=4,
        max_steps=6,
        learning_rate=3e-3,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        seed=0,
    )
    trainer = transformers.Trainer(model=model, args=arguments, train_dataset=Batches())
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == 6 and losses[-1] < losses[0] - 0.3, losses
    trainer.save_model(str(tmp_path / "final"))
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "final", trust_remote_code=True)
    trained = trainer.model.state_dict()
    for name, tensor in reloaded.state_dict().items():
        assert torch.equal(tensor, trained[name]), name
    assert_fope_equal(reloaded, saved_fope(converted))


def test_bf16_autocast_leaves_the_position_math_in_float32(converted):
    """Trainer(bf16=True) runs the forward under autocast; FoPE's features must not be computed in bf16."""
    model = from_pretrained(converted).eval()
    fope = model.model.layers[0].self_attn.fope
    positions = torch.arange(2000).unsqueeze(0)
    expected = fope.features(positions)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = fope.features(positions)
    for tensor, reference in zip(got, expected, strict=True):
        assert tensor.dtype == torch.float32
        torch.testing.assert_close(tensor, reference, atol=0, rtol=0)


def test_fsdp_config_wraps_each_decoder_layer(converted):
    config = fsdp_config(from_pretrained(converted), activation_checkpointing=True)
    assert config["version"] == 2 and config["transformer_layer_cls_to_wrap"] == ["LlamaDecoderLayer"]
    assert config["cpu_ram_efficient_loading"] and config["activation_checkpointing"]
    arguments = transformers.TrainingArguments(output_dir="unused", fsdp=True, fsdp_config=config, report_to=[])
    assert arguments.fsdp_config["transformer_layer_cls_to_wrap"] == ["LlamaDecoderLayer"]


def test_bad_input_is_one_line(converted, monkeypatch):
    torch.manual_seed(0)
    plain = transformers.LlamaForCausalLM(transformers.LlamaConfig(**SMALL))
    with pytest.raises(FopeError, match="has no FoPE: load a folder written by fope convert or fope export"):
        fsdp_config(plain)
    monkeypatch.setitem(sys.modules, "accelerate", None)
    with pytest.raises(MissingExtra, match=r"package 'accelerate': pip install 'fope\[hf-trainer\]'$"):
        fsdp_config(from_pretrained(converted))
