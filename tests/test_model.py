"""Tests for fope.model: shapes, attention variants, position plumbing, KV-cache parity, generation, training."""

from __future__ import annotations

import json

import pytest
import torch

from fope import FoPE, ModelConfig, TransformerLM
from fope.generation import decode
from fope.model import KVCache, LayerInputs, sample_next_token
from fope.positions import build_position_encoding

VOCAB = 97


def tiny_config(**changes: object) -> ModelConfig:
    """4 heads of 16, 2 layers; train_length 64 keeps 3 of 8 RoPE frequencies for FoPE."""
    values: dict[str, object] = {
        "vocab_size": VOCAB,
        "d_model": 64,
        "num_layers": 2,
        "num_heads": 4,
        "train_length": 64,
        "position_seed": 0,
    }
    values.update(changes)
    return ModelConfig(**values)


def tiny_model(**changes: object) -> TransformerLM:
    torch.manual_seed(0)
    return TransformerLM(tiny_config(**changes)).eval()


def random_tokens(batch: int, length: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, VOCAB, (batch, length), generator=torch.Generator().manual_seed(seed))


def cached_logits(model: TransformerLM, tokens: torch.Tensor, splits: list[int], **kwargs: object) -> torch.Tensor:
    """Logits of ``tokens`` fed through a KV cache in pieces: first the ``splits`` lengths, then one token at a time."""
    cache = KVCache(model.config.num_layers, tokens.shape[1])
    pieces, start = [], 0
    for size in [*splits, *[1] * (tokens.shape[1] - sum(splits))]:
        positions = kwargs.get("positions")
        piece_positions = None if positions is None else positions[..., start : start + size]
        pieces.append(model(tokens[:, start : start + size], positions=piece_positions, cache=cache).logits)
        start += size
    return torch.cat(pieces, dim=1)


# Shapes and architecture variants


def test_logits_shape_and_float32_loss() -> None:
    model = tiny_model()
    tokens = random_tokens(3, 11)
    out = model(tokens, targets=tokens)
    assert out.logits.shape == (3, 11, VOCAB)
    assert out.loss.dtype == torch.float32 and out.loss.dim() == 0
    # Near-uniform predictions at init: loss close to ln(vocab).
    assert abs(out.loss.item() - torch.log(torch.tensor(float(VOCAB))).item()) < 0.5
    assert model(tokens).loss is None


def test_ignored_targets_do_not_count() -> None:
    model = tiny_model()
    tokens = random_tokens(2, 8)
    targets = tokens.clone()
    targets[:, :4] = -100
    loss_masked = model(tokens, targets=targets).loss
    logits = model(tokens).logits
    expected = torch.nn.functional.cross_entropy(logits[:, 4:].reshape(-1, VOCAB), tokens[:, 4:].reshape(-1))
    torch.testing.assert_close(loss_masked, expected)


def test_swiglu_hidden_size_follows_mlp_ratio() -> None:
    model = tiny_model(mlp_ratio=2.5)
    assert model.layers[0].mlp.down_proj.in_features == 160
    assert model.layers[0].mlp.up_gate_proj.out_features == 2 * 160


def test_grouped_query_attention_shapes() -> None:
    model = tiny_model(num_kv_heads=1, head_dim=24)
    assert model.layers[0].attention.qkv_proj.out_features == (4 + 2 * 1) * 24
    assert model(random_tokens(2, 9)).logits.shape == (2, 9, VOCAB)


@pytest.mark.parametrize("position", ["rope", "fope", "alibi"])
def test_grouped_query_attention_equals_mha_with_repeated_kv_heads(position: str) -> None:
    """GQA == MHA whose key/value heads (and FoPE's per-KV-head coefficients) are repeated per group."""
    gqa = tiny_model(position=position, num_kv_heads=2)
    mha = tiny_model(position=position)
    state = gqa.state_dict()
    head_dim, groups = 16, 2
    for name, value in list(state.items()):
        if name.endswith("qkv_proj.weight"):
            q, k, v = value.split([64, 32, 32])
            k = k.unflatten(0, (2, head_dim)).repeat_interleave(groups, dim=0).flatten(0, 1)
            v = v.unflatten(0, (2, head_dim)).repeat_interleave(groups, dim=0).flatten(0, 1)
            state[name] = torch.cat((q, k, v))
        elif name.endswith(("cos_coef", "sin_coef")):
            state[name] = value.repeat_interleave(groups, dim=0)
    mha.load_state_dict(state)
    tokens = random_tokens(2, 12)
    torch.testing.assert_close(gqa(tokens).logits, mha(tokens).logits, atol=1e-5, rtol=1e-5)


def test_tied_embeddings_share_one_matrix() -> None:
    tied, untied = tiny_model(tie_embeddings=True), tiny_model()
    assert tied.lm_head.weight is tied.embed.weight
    assert untied.num_parameters() - tied.num_parameters() == VOCAB * 64
    assert tied.num_parameters(exclude_embeddings=True) == untied.num_parameters(exclude_embeddings=True)
    with torch.no_grad():
        tied.embed.weight[5] += 1.0
    assert torch.equal(tied.lm_head.weight[5], tied.embed.weight[5])


def test_num_parameters_counts_every_weight() -> None:
    model = tiny_model(num_kv_heads=2)
    d, hidden, layers = 64, 256, 2
    per_layer = d * (64 + 2 * 32) + 64 * d + d * 2 * hidden + hidden * d + 2 * d
    assert model.num_parameters() == 2 * VOCAB * d + layers * per_layer + d
    assert model.num_parameters(exclude_embeddings=True) == layers * per_layer + d


def test_qk_norm_makes_attention_invariant_to_query_key_scale() -> None:
    """RMSNorm on q and k removes their scale: scaling the q/k projections changes nothing, unlike without it."""
    tokens = random_tokens(1, 10)
    for qk_norm, should_change in ((True, False), (False, True)):
        model = tiny_model(qk_norm=qk_norm)
        before = model(tokens).logits
        with torch.no_grad():
            for block in model.layers:
                block.attention.qkv_proj.weight[:128] *= 7.0
        changed = not torch.allclose(before, model(tokens).logits, atol=1e-5)
        assert changed == should_change
    assert "layers.0.attention.q_norm.weight" in tiny_model(qk_norm=True).state_dict()


def test_init_scales_residual_projections() -> None:
    model = TransformerLM(tiny_config(d_model=256, num_layers=8, num_heads=4))
    torch.testing.assert_close(model.embed.weight.std().item(), 0.02, atol=5e-4, rtol=0)
    torch.testing.assert_close(model.layers[0].attention.qkv_proj.weight.std().item(), 0.02, atol=5e-4, rtol=0)
    residual = 0.02 / 4.0  # init_std / sqrt(2 * num_layers)
    torch.testing.assert_close(model.layers[3].attention.out_proj.weight.std().item(), residual, atol=2e-4, rtol=0)
    torch.testing.assert_close(model.layers[3].mlp.down_proj.weight.std().item(), residual, atol=2e-4, rtol=0)


# Position encodings per layer or shared


def test_fope_coefficients_differ_per_layer_and_follow_seed_plus_layer() -> None:
    model = tiny_model(position="fope", num_layers=3, position_seed=5)
    pes = model.position_encodings()
    assert len(pes) == 3 and len({id(pe) for pe in pes}) == 3
    assert not torch.equal(pes[0].cos_coef, pes[1].cos_coef)
    for layer, pe in enumerate(pes):
        expected = FoPE(head_dim=16, num_heads=4, train_length=64, seed=5 + layer)
        assert torch.equal(pe.cos_coef, expected.cos_coef) and torch.equal(pe.sin_coef, expected.sin_coef)
    assert "position_modules.2.cos_coef" in model.state_dict()


def test_seeded_coefficients_ignore_the_global_rng() -> None:
    torch.manual_seed(1)
    first = TransformerLM(tiny_config(position="fope", position_seed=9))
    torch.manual_seed(2)
    second = TransformerLM(tiny_config(position="fope", position_seed=9))
    for a, b in zip(first.position_encodings(), second.position_encodings(), strict=True):
        assert torch.equal(a.cos_coef, b.cos_coef)


def test_unseeded_coefficients_come_from_the_global_rng() -> None:
    torch.manual_seed(3)
    first = TransformerLM(tiny_config(position="fope", position_seed=None))
    torch.manual_seed(3)
    second = TransformerLM(tiny_config(position="fope", position_seed=None))
    assert torch.equal(first.position_encodings()[1].sin_coef, second.position_encodings()[1].sin_coef)
    assert not torch.equal(first.position_encodings()[0].sin_coef, first.position_encodings()[1].sin_coef)


def test_shared_position_is_one_module_for_all_layers() -> None:
    model = tiny_model(position="fope", num_layers=3, share_position=True)
    pes = model.position_encodings()
    assert pes[0] is pes[1] is pes[2]
    coefficient_keys = [key for key in model.state_dict() if key.endswith("cos_coef")]
    assert coefficient_keys == ["position_modules.0.cos_coef"]


def test_position_options_reach_the_position_encoding() -> None:
    model = tiny_model(position="fope", position_options={"sigma": 0.1, "layout": "interleaved", "theta": 500.0})
    pe = model.position_encodings()[0]
    assert (pe.sigma, pe.layout, pe.theta, pe.train_length) == (0.1, "interleaved", 500.0, 64)


# KV cache and generation

PARITY_CASES = [
    ("rope", {}),
    ("rope", {"layout": "interleaved"}),
    ("yarn", {"factor": 4.0, "original_max_position": 16}),
    ("fope", {}),
    ("fope", {"layout": "interleaved"}),
    ("fope-no-fs", {}),
    ("alibi", {}),
    ("nope", {}),
]


@pytest.mark.parametrize("num_kv_heads", [None, 2])
@pytest.mark.parametrize(("position", "options"), PARITY_CASES)
def test_cached_decoding_matches_full_forward(position: str, options: dict, num_kv_heads: int | None) -> None:
    # A small bias budget makes ALiBi's prefill run in several query chunks.
    model = tiny_model(position=position, position_options=options, num_kv_heads=num_kv_heads, max_bias_bytes=4096)
    tokens = random_tokens(2, 30)
    full = model(tokens).logits
    torch.testing.assert_close(cached_logits(model, tokens, splits=[9, 5]), full, atol=1e-5, rtol=1e-4)

    generated = model.generate(tokens[:, :6], max_new_tokens=12)
    reference = tokens[:, :6]
    for _ in range(12):
        next_token = model(reference).logits[:, -1].argmax(-1, keepdim=True)
        reference = torch.cat((reference, next_token), dim=1)
    assert torch.equal(generated, reference)


@pytest.mark.parametrize("position", ["rope", "fope", "alibi"])
def test_cached_decoding_with_explicit_batch_positions(position: str) -> None:
    model = tiny_model(position=position, max_bias_bytes=4096)
    tokens = random_tokens(2, 20)
    positions = torch.stack((torch.arange(20), torch.arange(20) + 7))
    full = model(tokens, positions=positions).logits
    torch.testing.assert_close(
        cached_logits(model, tokens, splits=[8], positions=positions), full, atol=1e-5, rtol=1e-4
    )


def test_cache_rejects_overflow_and_batch_changes() -> None:
    model = tiny_model()
    cache = KVCache(2, 5)
    model(random_tokens(2, 4), cache=cache)
    with pytest.raises(ValueError, match="max_length=5"):
        model(random_tokens(2, 2), cache=cache)
    with pytest.raises(ValueError, match="batch size 2"):
        model(random_tokens(3, 1), cache=cache)
    assert cache.length == 4  # neither refused call took room in the cache


def test_a_failed_cached_call_leaves_the_cache_as_it_was() -> None:
    """A call that fails after reserving room (here: in the first layer) must not leave its tokens in the cache, or
    every later call attends to keys that were never written."""
    model = tiny_model().eval()
    tokens = random_tokens(2, 6)
    cache = KVCache(model.config.num_layers, 16)
    model(tokens[:, :5], cache=cache)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(model.layers[1].attention, "qkv", lambda x: (_ for _ in ()).throw(RuntimeError("boom")))
        with pytest.raises(RuntimeError, match="boom"):  # in the second layer: the first one has written its keys
            model(tokens[:, 5:], cache=cache)
    assert cache.length == 5
    with pytest.raises(ValueError, match="every entry of targets is -100"):  # refused before the forward
        model(tokens[:, 5:], cache=cache, targets=torch.full_like(tokens[:, 5:], -100))
    assert cache.length == 5
    with torch.no_grad():
        torch.testing.assert_close(model(tokens[:, 5:], cache=cache).logits[:, -1], model(tokens).logits[:, -1])
    with pytest.raises(ValueError, match="the KV cache has 1 layers; the model has 2"):
        model(tokens, cache=KVCache(1, 16))
    fresh = KVCache(model.config.num_layers, 16)  # a failed first call leaves no storage sized to its batch
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(model.layers[1].attention, "qkv", lambda x: (_ for _ in ()).throw(RuntimeError("boom")))
        with pytest.raises(RuntimeError, match="boom"):
            model(tokens, cache=fresh)
    assert model(tokens[:1], cache=fresh).logits.shape[0] == 1
    with pytest.raises(TypeError, match=r"cache must be a fope\.generation\.KVCache or None; got str"):
        model(tokens, cache="cache")  # type: ignore[arg-type]


def test_token_ids_and_targets_are_checked() -> None:
    model = tiny_model()
    vocab = model.config.vocab_size
    tokens = random_tokens(2, 4)
    for ids in (torch.tensor([[1, vocab]]), torch.tensor([[1, -1]])):  # were an IndexError inside the embedding
        with pytest.raises(ValueError, match=rf"input_ids must be token ids in \[0, {vocab}\)"):
            model(ids)
    for ids in (tokens.bool(), tokens.to(torch.uint8), tokens.float()):
        with pytest.raises(ValueError, match="input_ids must be an int64 \\(or int32\\) tensor"):
            model(ids)
    for ids in (tokens[:0], tokens[:, :0]):  # were a reshape error deep in attention
        with pytest.raises(ValueError, match="at least one token"):
            model(ids)
    assert model(tokens.int()).logits.shape == (2, 4, vocab)
    with pytest.raises(ValueError, match=r"targets must be token ids in \[0, \d+\) or -100"):
        model(tokens, targets=torch.full_like(tokens, vocab))
    with pytest.raises(ValueError, match="every entry of targets is -100"):  # the mean over nothing was NaN
        model(tokens, targets=torch.full_like(tokens, -100))
    with pytest.raises(TypeError, match="targets must be an int64"):
        model(tokens, targets=tokens.float())
    assert torch.equal(model(tokens, targets=tokens.int()).loss, model(tokens, targets=tokens).loss)  # int32 works


def test_sampling_is_reproducible_with_a_generator() -> None:
    model = tiny_model()
    prompt = random_tokens(2, 4)

    def sample(seed: int, **kwargs: object) -> torch.Tensor:
        generator = torch.Generator().manual_seed(seed)
        return model.generate(prompt, 16, temperature=1.0, generator=generator, **kwargs)

    assert torch.equal(sample(0), sample(0))
    assert not torch.equal(sample(0), sample(1))
    greedy = model.generate(prompt, 16)
    assert torch.equal(sample(0, top_k=1), greedy)
    assert torch.equal(sample(1, top_p=1e-6), greedy)


def test_top_k_and_top_p_restrict_the_support() -> None:
    logits = torch.tensor([[4.0, 3.0, 2.0, 1.0, 0.0]]).expand(500, -1)
    generator = torch.Generator().manual_seed(0)
    top_k = sample_next_token(logits, temperature=1.0, top_k=2, generator=generator)
    assert set(top_k.tolist()) == {0, 1}
    probs = logits[0].softmax(-1)  # 0.64, 0.24, 0.09, ...: the first two hold 0.88
    top_p = sample_next_token(logits, temperature=1.0, top_p=0.8, generator=generator)
    assert set(top_p.tolist()) == {0, 1} and probs[:2].sum() > 0.8
    with pytest.raises(ValueError, match="top_p"):
        sample_next_token(logits, temperature=1.0, top_p=1.5)


def test_generation_stops_at_eos_and_pads_finished_rows() -> None:
    model = tiny_model()
    prompt = random_tokens(2, 4)
    greedy = model.generate(prompt, 10)
    eos = int(greedy[0, 6])  # row 0's third new token
    assert eos not in greedy[1, 4:].tolist(), "pick another prompt: row 1 must not emit the same token"
    out = model.generate(prompt, 10, eos_id=eos)
    assert out.shape == greedy.shape  # row 1 never finishes, so all 10 steps run
    first_eos = greedy[0, 4:].tolist().index(eos) + 4
    assert torch.equal(out[0, : first_eos + 1], greedy[0, : first_eos + 1])
    assert (out[0, first_eos:] == eos).all()
    assert torch.equal(out[1], greedy[1])
    single = model.generate(prompt[:1], 10, eos_id=eos)
    assert torch.equal(single[0], greedy[0, : first_eos + 1])  # stops as soon as its only row is done


def test_decode_feeds_the_prompt_then_one_token_per_step() -> None:
    seen: list[torch.Tensor] = []

    def step(new_tokens: torch.Tensor, cache: object) -> tuple[torch.Tensor, int]:
        seen.append(new_tokens)
        logits = torch.full((new_tokens.shape[0], 5), -1.0)
        logits[:, (int(new_tokens[0, -1]) + 1) % 5] = 1.0  # greedy: the last token + 1
        return logits, (0 if cache is None else cache + 1)

    prompt = torch.tensor([[3, 0]])
    assert decode(step, prompt, 4).tolist() == [[3, 0, 1, 2, 3, 4]]
    assert [t.tolist() for t in seen] == [[[3, 0]], [[1]], [[2]], [[3]]]
    assert decode(step, prompt, 4, eos_id=2).tolist() == [[3, 0, 1, 2]]
    assert torch.equal(decode(step, prompt, 0), prompt)


def test_generate_checks_its_arguments() -> None:
    model = tiny_model()
    prompt = random_tokens(1, 3)
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="max_new_tokens"):
            model.generate(prompt, bad)
    with pytest.raises(ValueError, match="temperature"):
        model.generate(prompt, 2, temperature=-1.0)
    with pytest.raises(TypeError, match="top_n"):
        model.generate(prompt, 2, top_n=3)


@pytest.mark.parametrize("qk_norm", [False, True])
def test_attention_qkv_is_what_forward_attends_with(qk_norm: bool) -> None:
    model = tiny_model(qk_norm=qk_norm, num_kv_heads=2)
    attention = model.layers[0].attention
    x = torch.randn(2, 7, 64)
    q, k, v = attention.qkv(x)
    assert (q.shape, k.shape, v.shape) == ((2, 4, 7, 16), (2, 2, 7, 16), (2, 2, 7, 16))
    position, positions = model.position_encodings()[0], torch.arange(7)
    rotated_q, rotated_k = position(q, k, positions)
    sdpa = torch.nn.functional.scaled_dot_product_attention
    expected = sdpa(rotated_q, rotated_k, v, is_causal=True, enable_gqa=True)
    out = attention(x, LayerInputs(position, positions, positions))
    torch.testing.assert_close(out, attention.out_proj(expected.transpose(1, 2).reshape(2, 7, 64)))
    for batched, unbatched in zip((q, k, v), attention.qkv(x[0]), strict=True):  # (T, d_model) -> (H, T, D)
        torch.testing.assert_close(unbatched, batched[0])


# Attention semantics


def test_alibi_chunked_attention_equals_unchunked() -> None:
    chunked = tiny_model(position="alibi", max_bias_bytes=4 * 4 * 40 * 3)  # 3 query rows per chunk at 40 keys
    whole = tiny_model(position="alibi")
    calls = []
    pe = chunked.position_encodings()[0]
    original = pe.attention_bias

    def counting_bias(*args: object, **kwargs: object) -> torch.Tensor:
        calls.append(1)
        return original(*args, **kwargs)

    pe.attention_bias = counting_bias
    tokens = random_tokens(2, 40)
    torch.testing.assert_close(chunked(tokens).logits, whole(tokens).logits, atol=1e-5, rtol=1e-5)
    assert len(calls) == 14  # ceil(40 / 3) chunks in layer 0


def test_alibi_bias_changes_the_output() -> None:
    alibi, nope = tiny_model(position="alibi"), tiny_model(position="nope")
    nope.load_state_dict(alibi.state_dict())
    tokens = random_tokens(1, 24)
    assert not torch.allclose(alibi(tokens).logits, nope(tokens).logits, atol=1e-3)


@pytest.mark.parametrize("position", ["rope", "fope", "alibi", "nope"])
def test_attention_is_causal(position: str) -> None:
    model = tiny_model(position=position)
    tokens = random_tokens(1, 16)
    changed = tokens.clone()
    changed[0, 10] = (changed[0, 10] + 1) % VOCAB
    before, after = model(tokens).logits, model(changed).logits
    torch.testing.assert_close(before[:, :10], after[:, :10], atol=0, rtol=0)
    assert not torch.allclose(before[:, 10:], after[:, 10:])


# Positions


@pytest.mark.parametrize("position", ["rope", "fope", "alibi"])
def test_batch_positions_match_single_row_calls(position: str) -> None:
    model = tiny_model(position=position)
    tokens = random_tokens(2, 12)
    offset = torch.arange(12) + 9
    batch = model(tokens, positions=torch.stack((torch.arange(12), offset))).logits
    torch.testing.assert_close(batch[1:], model(tokens[1:], positions=offset).logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(batch[:1], model(tokens[:1]).logits, atol=1e-5, rtol=1e-5)


def test_rope_is_shift_invariant_and_fope_is_not() -> None:
    """RoPE (and FoPE with identity coefficients) scores depend on distance only; FoPE's series breaks that."""
    tokens = random_tokens(1, 12)
    offset = torch.arange(12) + 37
    rope = tiny_model(position="rope")
    torch.testing.assert_close(rope(tokens, positions=offset).logits, rope(tokens).logits, atol=1e-4, rtol=1e-4)
    fope = tiny_model(position="fope", position_options={"sigma": 0.5})
    assert not torch.allclose(fope(tokens, positions=offset).logits, fope(tokens).logits, atol=1e-4)


def test_positions_restart_for_packed_documents() -> None:
    """Restarting positions changes rotary outputs: the model really uses the positions it is given."""
    model = tiny_model(position="fope")
    tokens = random_tokens(1, 12)
    packed = torch.cat((torch.arange(6), torch.arange(6)))
    assert not torch.allclose(model(tokens, positions=packed).logits[:, 6:], model(tokens).logits[:, 6:])
    with pytest.raises(ValueError, match="positions must have shape"):
        model(tokens, positions=torch.arange(11))


# Replacing the position encoding


def test_replace_position_encoding_keeps_other_weights() -> None:
    model = tiny_model(position="rope", position_seed=3)
    before = {key: value.clone() for key, value in model.state_dict().items()}
    tokens = random_tokens(1, 20)
    logits_before = model(tokens).logits
    model.replace_position_encoding("fope", train_length=128, sigma=0.2)
    after = model.state_dict()
    for key, value in before.items():
        assert torch.equal(after[key], value), key
    assert model.config.position == "fope" and model.config.train_length == 128
    assert model.config.position_options == {"sigma": 0.2}
    for layer, pe in enumerate(model.position_encodings()):
        fresh = FoPE(head_dim=16, num_heads=4, train_length=128, sigma=0.2, seed=3 + layer)
        assert pe.train_length == 128 and torch.equal(pe.cos_coef, fresh.cos_coef)
    assert not torch.allclose(model(tokens).logits, logits_before, atol=1e-4)
    rebuilt = TransformerLM(ModelConfig.from_dict(model.config.to_dict()))
    rebuilt.load_state_dict(model.state_dict())
    torch.testing.assert_close(rebuilt(tokens).logits, model(tokens).logits)


def test_replace_position_encoding_validates_before_changing_anything() -> None:
    model = tiny_model()
    with pytest.raises(ValueError, match="position must be one of"):
        model.replace_position_encoding("fourier")
    with pytest.raises(TypeError, match="does not accept option 'sigma'"):
        model.replace_position_encoding("alibi", sigma=0.3)
    assert model.config.position == "rope"
    assert type(model.position_encodings()[0]).__name__ == "RoPE"


# Config


@pytest.mark.parametrize(
    ("changes", "error", "message"),
    [
        ({"d_model": 60, "num_heads": 8}, ValueError, "d_model=60 must be divisible by num_heads=8"),
        ({"num_kv_heads": 3}, ValueError, "num_heads=4 must be a multiple of num_kv_heads=3"),
        ({"num_layers": 0}, ValueError, "num_layers must be an int >= 1; got 0"),
        ({"vocab_size": 10.5}, ValueError, r"vocab_size must be an int >= 1; got 10.5 \(float\)"),
        ({"head_dim": True}, ValueError, r"head_dim must be an int >= 1; got True \(bool\)"),
        ({"mlp_ratio": -1}, ValueError, "mlp_ratio must be > 0.0; got -1"),
        ({"position": "fourier"}, ValueError, "position must be one of"),
        ({"position_options": {"head_dim": 8}}, ValueError, "set ModelConfig.head_dim instead"),
        ({"position_options": {"seed": 1}}, ValueError, "set ModelConfig.position_seed instead"),
        ({"position_options": [("sigma", 1)]}, TypeError, "position_options must be a dict"),
        ({"position_seed": -1}, ValueError, "position_seed must be None or an int >= 0"),
        ({"qk_norm": 1}, TypeError, "qk_norm must be True or False"),
    ],
)
def test_config_validation_errors(changes: dict, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        tiny_config(**changes)


def test_position_options_are_checked_by_the_position_library() -> None:
    with pytest.raises(TypeError, match="does not accept option 'factor'"):
        TransformerLM(tiny_config(position="rope", position_options={"factor": 2.0}))
    with pytest.raises(ValueError, match="head_dim must be even"):
        TransformerLM(tiny_config(head_dim=15))


def test_config_dict_round_trip() -> None:
    config = tiny_config(num_kv_heads=2, position="fope-yarn", position_options={"factor": 2.0, "sigma": 0.4})
    values = json.loads(json.dumps(config.to_dict()))
    assert ModelConfig.from_dict(values) == config
    with pytest.raises(ValueError, match=r"unknown ModelConfig keys \['d_ff'\]"):
        ModelConfig.from_dict({**values, "d_ff": 3})


def test_checkpoint_round_trip_restores_fope_coefficients() -> None:
    model = tiny_model(position="fope", position_seed=None)
    clone = TransformerLM(ModelConfig.from_dict(model.config.to_dict()))
    assert not torch.equal(clone.position_encodings()[0].cos_coef, model.position_encodings()[0].cos_coef)
    clone.load_state_dict(model.state_dict())
    tokens = random_tokens(1, 9)
    torch.testing.assert_close(clone(tokens).logits, model(tokens).logits, atol=0, rtol=0)


# Dtypes, compile and training


def test_position_features_stay_float32_under_autocast() -> None:
    pe = build_position_encoding("fope", head_dim=32, num_heads=2, train_length=64, seed=0)
    q, k = torch.randn(1, 2, 2048, 32), torch.randn(1, 2, 2048, 32)
    expected_q, expected_k = pe(q, k)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got_q, got_k = pe(q, k, torch.arange(2048))
    torch.testing.assert_close(got_q, expected_q, atol=0, rtol=0)
    torch.testing.assert_close(got_k, expected_k, atol=0, rtol=0)


@pytest.mark.parametrize("position", ["fope", "alibi"])
def test_bf16_autocast_and_bf16_weights(position: str) -> None:
    model = tiny_model(position=position, num_kv_heads=2, qk_norm=True)
    tokens = random_tokens(2, 24)
    reference = model(tokens).logits
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(tokens, targets=tokens)
    assert out.logits.dtype == torch.bfloat16 and out.loss.dtype == torch.float32
    torch.testing.assert_close(out.logits.float(), reference, atol=0.05, rtol=0.05)

    model.to(torch.bfloat16)
    if position == "fope":
        assert model.position_encodings()[0].cos_coef.dtype == torch.float32
    out = model(tokens, targets=tokens)
    assert out.logits.dtype == torch.bfloat16 and out.loss.dtype == torch.float32
    torch.testing.assert_close(out.logits.float(), reference, atol=0.1, rtol=0.1)
    assert torch.equal(model.generate(tokens[:, :5], 6)[:, :5], tokens[:, :5])


@pytest.mark.parametrize("position", ["rope", "fope", "alibi"])
def test_forward_traces_as_one_graph(position: str) -> None:
    """``torch.compile(fullgraph=True)`` fails on any graph break; the eager backend keeps the test fast."""
    model = tiny_model(position=position, max_bias_bytes=4096)
    compiled = torch.compile(model, backend="eager", fullgraph=True)
    tokens = random_tokens(2, 20)
    torch.testing.assert_close(compiled(tokens, targets=tokens).loss, model(tokens, targets=tokens).loss)


@pytest.mark.slow
def test_inductor_compile_matches_eager() -> None:
    model = tiny_model(position="fope", num_kv_heads=2)
    tokens = random_tokens(2, 20)
    compiled = torch.compile(model)
    torch.testing.assert_close(compiled(tokens).logits, model(tokens).logits, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("position", ["rope", "fope", "alibi"])
def test_loss_decreases_when_overfitting_one_batch(position: str) -> None:
    model = tiny_model(position=position).train()
    tokens = random_tokens(4, 32)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        loss = model(tokens[:, :-1], targets=tokens[:, 1:]).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    assert all(p.grad is not None for p in model.parameters())


def test_generate_refuses_what_it_cannot_decode() -> None:
    model = tiny_model().eval()
    prompt = random_tokens(2, 4)
    vocab = model.config.vocab_size
    refused = [
        ({"temperature": float("nan")}, "temperature must be a finite number"),  # was multinomial's RuntimeError
        ({"eos_id": "x"}, "eos_id must be None or a token id"),
        ({"eos_id": -1}, "eos_id must be None or a token id"),  # never matched: decoding ran to the end
        ({"eos_id": vocab}, f"below the vocabulary size {vocab}"),
    ]
    for options, message in refused:
        with pytest.raises(ValueError, match=message):
            model.generate(prompt, 3, **options)
    for bad in ([[1, 2]], prompt[0], prompt.float()):  # a list was an AttributeError; 1-D and float came back as is
        with pytest.raises(ValueError, match="input_ids must be an integer tensor of shape"):
            model.generate(bad, 0)
