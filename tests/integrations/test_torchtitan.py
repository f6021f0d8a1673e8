"""fope's position encodings in torchtitan's Llama 3 model: logits against the lab model, state dict, CP lookup."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torchtitan.models.common import ComplexRoPE, CosSinRoPE, Embedding, Linear, RMSNorm
from torchtitan.models.common.attention import ScaledDotProductAttention
from torchtitan.models.common.config_utils import make_ffn_config, make_gqa_config
from torchtitan.models.llama3 import Llama3Model
from torchtitan.models.llama3.model import Llama3TransformerBlock

from fope.integrations.torchtitan import Position, fope_position, with_position
from fope.model import ModelConfig, TransformerLM

pytestmark = pytest.mark.torchtitan

VOCAB, DIM, LAYERS, HEADS, KV_HEADS, HIDDEN, TRAIN_LENGTH, EPS = 96, 32, 2, 4, 2, 64, 64, 1e-6
HEAD_DIM = DIM // HEADS
ZERO = {"weight": nn.init.zeros_}
# name -> (fope encoding, its options, torchtitan's RoPE kind it replaces: ComplexRoPE pairs (2j, 2j+1), CosSinRoPE
# pairs (j, j + D/2))
CASES = {
    "fope-interleaved": ("fope", {}, ComplexRoPE, "interleaved"),
    "fope-half-identity": ("fope", {"zero_pad": "identity", "share_heads": True}, CosSinRoPE, "half"),
    "rope-yarn": ("yarn", {"factor": 4.0, "original_max_position": 32}, ComplexRoPE, "interleaved"),
}


def titan_config(rope_kind: type = ComplexRoPE) -> Llama3Model.Config:
    """A small torchtitan Llama 3 config (torchtitan's own classes), SDPA attention, no weight tying."""
    rope = rope_kind.Config(dim=HEAD_DIM, max_seq_len=TRAIN_LENGTH, theta=10000.0)
    layers = [
        Llama3TransformerBlock.Config(
            attention_norm=RMSNorm.Config(normalized_shape=DIM, eps=EPS),
            ffn_norm=RMSNorm.Config(normalized_shape=DIM, eps=EPS),
            attention=make_gqa_config(
                dim=DIM,
                n_heads=HEADS,
                n_kv_heads=KV_HEADS,
                wqkv_param_init=ZERO,
                wo_param_init=ZERO,
                inner_attention=ScaledDotProductAttention.Config(),
                fuse_qkv=True,
                rope=rope,
            ),
            feed_forward=make_ffn_config(dim=DIM, hidden_dim=HIDDEN, w1_param_init=ZERO, w2w3_param_init=ZERO),
        )
        for _ in range(LAYERS)
    ]
    return Llama3Model.Config(
        dim=DIM,
        vocab_size=VOCAB,
        tok_embeddings=Embedding.Config(num_embeddings=VOCAB, embedding_dim=DIM),
        norm=RMSNorm.Config(normalized_shape=DIM, eps=EPS),
        lm_head=Linear.Config(in_features=DIM, out_features=VOCAB),
        layers=layers,
    )


def lab_model(position: str, options: dict, layout: str, seed: int) -> TransformerLM:
    config = ModelConfig(
        vocab_size=VOCAB,
        d_model=DIM,
        num_layers=LAYERS,
        num_heads=HEADS,
        num_kv_heads=KV_HEADS,
        mlp_ratio=HIDDEN / DIM,
        norm_eps=EPS,
        position=position,
        position_options={**options, "layout": layout},
        train_length=TRAIN_LENGTH,
        position_seed=seed,
        init_std=0.2,  # large weights: a wrong mapping or rotation moves the logits far past the tolerance
    )
    torch.manual_seed(1)
    return TransformerLM(config).eval()


def titan_weights(lab: TransformerLM) -> dict[str, torch.Tensor]:
    """The lab model's weights under torchtitan's names, written from the two models' definitions.

    Lab: ``qkv_proj`` rows are ``[q (Hq*D), k (Hkv*D), v (Hkv*D)]``; ``up_gate_proj`` rows ``[up, gate]`` and the MLP
    is ``down(silu(gate) * up)``. torchtitan: ``w2(silu(w1 x) * w3 x)``; its fused ``wqkv`` saves and loads as the
    stock ``wq``/``wk``/``wv``. Position coefficients are not copied: both sides draw them from ``seed + layer``.
    """
    source = lab.state_dict()
    weights = {
        "tok_embeddings.weight": source["embed.weight"],
        "norm.weight": source["norm.weight"],
        "lm_head.weight": source["lm_head.weight"],
    }
    for index in range(LAYERS):
        lab_prefix, prefix = f"layers.{index}.", f"layers.{index}."
        q, k, v = source[lab_prefix + "attention.qkv_proj.weight"].split(
            (HEADS * HEAD_DIM, KV_HEADS * HEAD_DIM, KV_HEADS * HEAD_DIM)
        )
        up, gate = source[lab_prefix + "mlp.up_gate_proj.weight"].chunk(2)
        weights |= {
            prefix + "attention_norm.weight": source[lab_prefix + "attention_norm.weight"],
            prefix + "ffn_norm.weight": source[lab_prefix + "mlp_norm.weight"],
            prefix + "attention.qkv_linear.wq.weight": q,
            prefix + "attention.qkv_linear.wk.weight": k,
            prefix + "attention.qkv_linear.wv.weight": v,
            prefix + "attention.wo.weight": source[lab_prefix + "attention.out_proj.weight"],
            prefix + "feed_forward.w1.weight": gate,
            prefix + "feed_forward.w3.weight": up,
            prefix + "feed_forward.w2.weight": source[lab_prefix + "mlp.down_proj.weight"],
        }
    return weights


def titan_model(config: Llama3Model.Config, weights: dict[str, torch.Tensor] | None = None) -> nn.Module:
    """Built on the meta device and initialised by torchtitan's ``init_states``, as its trainer does."""
    with torch.device("meta"):
        model = config.build()
    model.verify_module_protocol()
    model.to_empty(device="cpu")
    model.init_states(buffer_device=torch.device("cpu"))
    if weights is not None:
        missing, unexpected = model.load_state_dict(weights, strict=False)
        assert not unexpected, unexpected
        assert all(".rope." in key for key in missing), missing
    return model.eval()


def tokens(batch: int = 2, length: int = 48) -> torch.Tensor:
    return torch.randint(0, VOCAB, (batch, length), generator=torch.Generator().manual_seed(2))


@pytest.mark.parametrize("name", list(CASES))
def test_logits_equal_the_lab_models_with_the_same_weights(name):
    position, options, rope_kind, layout = CASES[name]
    seed = 5
    lab = lab_model(position, options, layout, seed)
    config = with_position(titan_config(rope_kind), position, train_length=TRAIN_LENGTH, seed=seed, **options)
    titan = titan_model(config, titan_weights(lab))
    for index, encoding in enumerate(lab.position_encodings()):  # drawn independently, from the same seeds
        rope = titan.layers[str(index)].attention.rope
        assert rope._encoding[0].layout == layout
        for tensor_name, tensor in encoding.named_buffers():
            assert torch.equal(getattr(rope, tensor_name), tensor), (index, tensor_name)
    ids = tokens()
    with torch.no_grad():
        expected = lab(ids).logits
        got = titan(ids)
        positions = torch.arange(ids.shape[1]).expand_as(ids) + 7  # explicit (B, T) positions, shifted
        shifted_expected, shifted = lab(ids, positions=positions).logits, titan(ids, positions=positions)
    assert got.dtype == torch.float32 and expected.abs().max() > 0.5
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(shifted, shifted_expected, atol=1e-5, rtol=1e-5)
    stock = titan_model(titan_config(rope_kind), titan_weights(lab))
    with torch.no_grad():
        assert (stock(ids) - expected).abs().max() > 1e-2  # torchtitan's own RoPE: a different model


def test_features_are_looked_up_by_position_so_a_sequence_shard_gets_its_own():
    config = with_position(titan_config(), "fope", train_length=TRAIN_LENGTH)
    rope = titan_model(config).layers["1"].attention.rope
    generator = torch.Generator().manual_seed(3)
    q = torch.randn(2, 32, HEADS, HEAD_DIM, generator=generator)
    k = torch.randn(2, 32, KV_HEADS, HEAD_DIM, generator=generator)
    positions = torch.arange(32).expand(2, 32)
    full_q, full_k = rope(q, k, positions)
    default_q, _ = rope(q, k)
    shard_q, shard_k = rope(q[:, 16:], k[:, 16:], positions[:, 16:])  # what one of two context-parallel ranks sees
    torch.testing.assert_close(default_q, full_q, atol=0, rtol=0)
    torch.testing.assert_close(shard_q, full_q[:, 16:], atol=0, rtol=0)
    torch.testing.assert_close(shard_k, full_k[:, 16:], atol=0, rtol=0)
    local_q, _ = rope(q[:, 16:], k[:, 16:])  # local indices instead of positions: a different rotation
    assert (local_q - full_q[:, 16:]).abs().max() > 1e-3


@pytest.mark.parametrize("learnable", [False, True])
def test_the_state_dict_round_trips_through_torch_distributed_checkpoint(tmp_path, learnable):
    import torch.distributed.checkpoint as dcp

    options = {"learnable": learnable}
    model = titan_model(with_position(titan_config(), "fope", train_length=TRAIN_LENGTH, seed=1, **options))
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if ".rope." in name:
                tensor.add_(0.25 * torch.randn(tensor.shape, generator=torch.Generator().manual_seed(len(name))))
    state = model.state_dict()
    keys = sorted(key for key in state if ".rope." in key)
    assert keys == [f"layers.{i}.attention.rope.{name}" for i in range(LAYERS) for name in ("cos_coef", "sin_coef")]
    assert isinstance(model.layers["0"].attention.rope.cos_coef, nn.Parameter) == learnable
    dcp.save(state, checkpoint_id=tmp_path / "step-1")

    other = titan_model(with_position(titan_config(), "fope", train_length=TRAIN_LENGTH, seed=9, **options))
    assert not torch.equal(other.state_dict()[keys[0]], state[keys[0]])
    loaded = other.state_dict()
    dcp.load(loaded, checkpoint_id=tmp_path / "step-1")
    other.load_state_dict(loaded)
    for key, tensor in state.items():
        assert torch.equal(other.state_dict()[key], tensor), key
    rope, other_rope = model.layers["0"].attention.rope, other.layers["0"].attention.rope
    assert torch.equal(other_rope.inv_freq, rope.inv_freq)  # not in the state dict: recomputed by init_states
    ids = tokens()
    with torch.no_grad():
        torch.testing.assert_close(other(ids), model(ids), atol=0, rtol=0)


def test_coefficients_stay_float32_when_the_model_is_cast():
    model = titan_model(with_position(titan_config(), "fope", train_length=TRAIN_LENGTH))
    before = model.layers["0"].attention.rope.cos_coef.clone()
    model.to(torch.bfloat16)
    rope = model.layers["0"].attention.rope
    assert rope.cos_coef.dtype == rope.inv_freq.dtype == torch.float32
    assert torch.equal(rope.cos_coef, before)
    assert model.layers["0"].attention.wo.weight.dtype == torch.bfloat16


def test_the_command_line_override_swaps_every_layer_of_the_trainers_model():
    """What ``torchtitan.train --override.imports`` does: parse, then ``apply_overrides`` on the Trainer config after
    the trainer has taken its reference to the model config (trainer.py), so the change must be in place."""
    from torchtitan.config import ConfigManager
    from torchtitan.config.override import apply_overrides

    options = '{"position": "fope", "train_length": 128, "seed": 10, "sigma": 0.1}'
    override = f"fope.integrations.torchtitan.fope_position={options}"
    config = ConfigManager().parse_args(
        ["--module", "llama3", "--config", "llama3_debugmodel", "--override.imports", override]
    )
    held = config.model_spec.model  # the trainer holds this object when it applies the overrides
    assert len(apply_overrides(config.override, config)) == 1
    ropes = [layer.attention.rope for layer in held.layers]
    assert all(isinstance(rope, Position.Config) for rope in ropes) and config.model_spec.model is held
    assert [rope.seed for rope in ropes] == [10 + index for index in range(len(ropes))]
    assert ropes[0].options == {"theta": 500000, "layout": "interleaved", "sigma": 0.1}
    assert (ropes[0].n_heads, ropes[0].dim, ropes[0].train_length) == (16, 16, 128)
    assert callable(fope_position)
    # a config changed beforehand (with_position in a config function) goes through the trainer's own update,
    # which copies each rope config with dataclasses.replace and the training length as max_seq_len
    config.training.seq_len = 256
    held.update_from_config(config=config)
    assert all(isinstance(layer.attention.rope, Position.Config) for layer in held.layers)
    assert {(layer.attention.rope.max_seq_len, layer.attention.rope.seed) for layer in held.layers[:1]} == {(256, 10)}


def test_bad_input_is_refused_before_anything_is_built():
    with pytest.raises(ValueError, match="attention-bias scheme"):
        with_position(titan_config(), "alibi", train_length=TRAIN_LENGTH)
    with pytest.raises(TypeError, match="does not accept option 'sigmaa'"):
        with_position(titan_config(), "fope", train_length=TRAIN_LENGTH, sigmaa=0.1)
    config = with_position(titan_config(), "fope", train_length=TRAIN_LENGTH)
    with pytest.raises(ValueError, match="already uses fope's 'fope'"):
        with_position(config, "rope", train_length=TRAIN_LENGTH)


@pytest.mark.triton
def test_the_fused_kernel_gives_the_eager_logits_and_gradients(monkeypatch):
    """The plugin calls the encoding's forward, which dispatches: ``FOPE_KERNEL=triton`` runs the Triton kernel
    (under the interpreter on CPU tensors, one launch per layer and pass) to the eager path's logits and gradients."""
    from fope.kernels import triton_rotary

    options = {"learnable": True}
    model = titan_model(with_position(titan_config(), "fope", train_length=TRAIN_LENGTH, seed=3, **options))
    with torch.no_grad():
        for name, parameter in model.named_parameters():  # non-zero weights (the config initialises them to zero)
            parameter.copy_(0.3 * torch.randn(parameter.shape, generator=torch.Generator().manual_seed(len(name))))
    launches = []
    launch = triton_rotary.launch
    monkeypatch.setattr(triton_rotary, "launch", lambda *args, **kwargs: launches.append(1) or launch(*args, **kwargs))
    ids = tokens(length=8)
    positions = torch.arange(8).expand(2, 8) + torch.tensor([[0], [5]])  # per-sample positions
    results = {}
    for kernel in ("eager", "triton"):
        monkeypatch.setenv("FOPE_KERNEL", kernel)
        model.zero_grad()
        logits = model(ids, positions=positions)
        logits.square().mean().backward()
        results[kernel] = logits.detach(), {name: p.grad.clone() for name, p in model.named_parameters()}
        assert len(launches) == (0 if kernel == "eager" else 2 * LAYERS)
    assert results["eager"][0].abs().max() > 0.1
    torch.testing.assert_close(results["triton"][0], results["eager"][0], atol=1e-5, rtol=1e-5)
    for name, grad in results["eager"][1].items():
        torch.testing.assert_close(results["triton"][1][name], grad, atol=1e-5, rtol=1e-4, msg=name)
    assert results["eager"][1]["layers.0.attention.rope.cos_coef"].abs().sum() > 0


def test_the_gpu_checks_assets_load_as_torchtitans_debug_config_reads_them(tmp_path):
    """scripts/torchtitan_gpu_check.py writes the tokenizer and c4_test data that torchtitan's llama3 debug config
    reads from ./tests/assets (not in the wheel); they load with torchtitan's tokenizer class and `datasets` here."""
    import runpy
    from pathlib import Path

    import datasets
    from torchtitan.components.tokenizer import HuggingFaceTokenizer

    script = Path(__file__).parents[2] / "scripts" / "torchtitan_gpu_check.py"
    runpy.run_path(str(script), run_name="torchtitan_gpu_check")["write_assets"](tmp_path, documents=20)
    tokenizer = HuggingFaceTokenizer(tokenizer_path=str(tmp_path / "tests/assets/tokenizer"))
    data = datasets.load_dataset(str(tmp_path / "tests/assets/c4_test"), split="train")
    assert data.num_rows == 20
    ids = tokenizer.encode(data[0]["text"], add_bos=True, add_eos=True)
    assert ids[0] == tokenizer.bos_id and ids[-1] == tokenizer.eos_id and len(ids) > 10
    assert tokenizer.decode(ids[1:-1]) == data[0]["text"]
