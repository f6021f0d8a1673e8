"""The training loop: one process on a CPU, or many through ``torchrun`` (DDP: gloo on CPU, NCCL on GPU).

Data order is a pure function of ``(train.seed, step)`` (``fope.data.sampler.WindowSampler``), so a resumed run and a
run split over N processes see exactly the batches of an uninterrupted single-process run. Resuming restores the
weights, AdamW state, the LR schedule and the RNG: on CPU the losses after a resume equal those of an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from tqdm.auto import tqdm

from fope.config import ConfigError
from fope.data.prepare import PreparedData, prepare_data
from fope.data.sampler import WindowSampler
from fope.integrations.hf_lm import HFCausalLM, load_for_training
from fope.model import TransformerLM
from fope.runs import (
    CheckpointError,
    RunConfig,
    find_checkpoint,
    latest_checkpoint,
    load_checkpoint_model,
    load_config,
    load_model_weights,
    load_training_state,
    read_checkpoint_meta,
    save_checkpoint,
    save_config,
)

#: Parameter names of position-encoding coefficients (exempt from weight decay): TransformerLM's position modules,
#: and the FoPE modules ``convert`` puts in a transformers model (``...self_attn.fope.`` or ``...rotary_emb.fope.``).
POSITION_PARAMETER_MARKERS = ("position_modules.", ".fope.")


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class Distributed:
    """This process's place in a (possibly single-process) data-parallel job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()


def init_distributed(device_type: str) -> Distributed:
    """Join the ``torchrun`` process group when ``WORLD_SIZE > 1`` (gloo on CPU, NCCL on CUDA)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return Distributed()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    return Distributed(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` is CUDA (this process's local GPU) when available, else CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank)
    return device


def lr_factor(step: int, warmup_steps: int, max_steps: int, min_lr_ratio: float) -> float:
    """Linear warmup to 1 over ``warmup_steps``, then cosine decay to ``min_lr_ratio`` at ``max_steps``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, max_steps - warmup_steps))
    return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def build_optimizer(model: TransformerLM | HFCausalLM, config: RunConfig) -> torch.optim.AdamW:
    """AdamW; matrices (embeddings and projections) decay, norms and position coefficients do not."""
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        is_position = any(marker in name for marker in POSITION_PARAMETER_MARKERS)
        (decay if parameter.dim() >= 2 and not is_position else no_decay).append(parameter)
    optim = config.optim
    groups = [{"params": decay, "weight_decay": optim.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=optim.lr, betas=optim.betas, eps=optim.eps)


def prepare_run_data(config: RunConfig) -> PreparedData:
    """The prepared data named by ``config.data`` (built and cached on first use)."""
    data = config.data
    return prepare_data(
        data.source,
        data.root,
        vocab_size=data.vocab_size,
        val_fraction=data.val_fraction,
        seed=data.split_seed,
        text_field=data.text_field,
        tokenizer=data.tokenizer,
        sources=data.sources,
    )


def build_sampler(config: RunConfig, prepared: PreparedData) -> WindowSampler:
    """Training windows, with ``data.passkey_fraction`` of them passkey examples (no longer than ``seq_len``)."""
    mixers = []
    if config.data.passkey_fraction > 0:
        from fope.evaluate.passkey import passkey_mixer

        mixers.append(
            (config.data.passkey_fraction, passkey_mixer(prepared.tokenizer.encode, prepared.tokenizer.eos_id))
        )
    return WindowSampler(prepared.train, config.train.seq_len, config.train.batch_size, config.train.seed, mixers)


def build_model(
    config: RunConfig,
    prepared: PreparedData,
    checkpoint: Path | None,
    meta: dict[str, Any] | None,
    log: Callable[[str], None],
) -> tuple[TransformerLM | HFCausalLM, dict[str, Any]]:
    """The model to train (on the CPU) and what to record about where it started.

    A fresh ``TransformerLM`` (or one initialised from ``train.init_from``), or the local transformers model of
    ``config.transformers`` with its position encoding switched; when resuming, the checkpoint's weights.
    """
    hf = config.transformers
    init_info: dict[str, Any] = {}
    if hf is None:
        model = TransformerLM(config.model_config(prepared.tokenizer.vocab_size))
        if checkpoint is not None:
            load_model_weights(model, checkpoint)
        elif config.train.init_from:
            init_info = initialize_from(model, config.train.init_from, log)
        return model, init_info
    if checkpoint is not None:
        model = load_checkpoint_model(config, checkpoint, meta)
    else:
        options = dict(hf.position_options)
        if hf.position.startswith("fope"):
            options.setdefault("seed", config.train.seed)
        model = load_for_training(
            hf.path,
            train_length=hf.train_length or config.train.seq_len,
            position=hf.position,
            position_options=options,
            dtype=hf.dtype,
            attn_implementation=hf.attn_implementation,
            tokenizer=_transformers_tokenizer(config.data.tokenizer),
        )
        init_info = {"init_from": str(hf.path)}
        log(f"training {model.config.architecture} from {hf.path} with position {model.config.position}")
    if prepared.tokenizer.vocab_size > model.config.vocab_size:
        raise ConfigError(
            f"the tokenizer has {prepared.tokenizer.vocab_size} tokens and the model in {hf.path} only "
            f"{model.config.vocab_size} embeddings: tokenize with the model's own tokenizer (data.tokenizer)"
        )
    if hf.gradient_checkpointing:
        base = model.model
        getattr(base, "activation_checkpointing_enable", base.gradient_checkpointing_enable)()
    return model, init_info


def _transformers_tokenizer(path: str | None) -> Any:
    """The transformers tokenizer in folder ``path`` (saved with every checkpoint), or None for other tokenizers."""
    if path is None or not (Path(path) / "tokenizer_config.json").is_file():
        return None
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path, local_files_only=True)


def initialize_from(model: TransformerLM, source: str | Path, log: Callable[[str], None]) -> dict[str, Any]:
    """Continued pre-training: copy a run's weights into ``model``; position modules whose shapes differ stay fresh.

    Every other weight must exist in the source with the same shape (a different architecture is an error).
    """
    directory = Path(source)
    if (directory / "config.yaml").is_file():
        directory = find_checkpoint(directory)
    meta = read_checkpoint_meta(directory)
    from safetensors.torch import load_file

    source_state = load_file(str(directory / "model.safetensors"))
    target_state = model.state_dict()
    kept_fresh = []
    for name, tensor in target_state.items():
        if name.startswith("position_modules."):
            if name in source_state and source_state[name].shape == tensor.shape:
                tensor.copy_(source_state[name])
            else:
                kept_fresh.append(name)
            continue
        if name not in source_state and name == "lm_head.weight" and model.config.tie_embeddings:
            continue
        if name not in source_state:
            raise CheckpointError(f"cannot initialize from {directory}: it has no weight {name!r}")
        if source_state[name].shape != tensor.shape:
            raise CheckpointError(
                f"cannot initialize from {directory}: {name} has shape {tuple(source_state[name].shape)} there "
                f"and {tuple(tensor.shape)} here (the architecture must match; only the position encoding may change)"
            )
        tensor.copy_(source_state[name])
    if kept_fresh:
        log(f"position encoding differs from the source: {len(kept_fresh)} position tensors freshly initialised")
    return {"init_from": str(directory), "init_from_step": meta["step"], "fresh_position_tensors": kept_fresh}


class MetricsLog:
    """Appends JSON records to ``metrics.jsonl`` (and TensorBoard scalars when ``tensorboard`` is installed)."""

    def __init__(self, run_dir: Path, enabled: bool) -> None:
        self.path = run_dir / "metrics.jsonl"
        self.enabled = enabled
        self.writer = None
        if enabled:
            with contextlib.suppress(ImportError):
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(run_dir / "tensorboard"))

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as handle:
            handle.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)):
                    self.writer.add_scalar(key, value, record["step"])

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _rng_state(device: torch.device) -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


@torch.no_grad()
def validation_loss(
    model: nn.Module,
    sampler: WindowSampler | None,
    batches: int,
    device: torch.device,
    autocast: Callable[[], contextlib.AbstractContextManager],
) -> float | None:
    """Mean loss on ``batches`` fixed held-out batches (the same every evaluation)."""
    if sampler is None or batches == 0:
        return None
    was_training = model.training
    model.eval()
    losses = []
    for index in range(batches):
        inputs, targets = sampler.batch(index)
        with autocast():
            losses.append(float(model(inputs.to(device), targets=targets.to(device)).loss))
    model.train(was_training)
    return sum(losses) / len(losses)


def train(
    config: RunConfig,
    run_dir: str | Path,
    *,
    resume: bool = False,
    until_step: int | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train (or resume) the run in ``run_dir`` up to ``config.train.max_steps`` (or ``until_step``, to stop early).

    Returns a summary: final step, last training and validation loss, tokens per second, run directory.
    """
    run_dir = Path(run_dir)
    tcfg = config.train
    device = resolve_device(tcfg.device, int(os.environ.get("LOCAL_RANK", "0")))
    ddp = init_distributed(device.type)
    if not ddp.is_main:

        def log(message: str) -> None:  # only rank 0 talks
            del message

    if tcfg.threads is not None:
        torch.set_num_threads(tcfg.threads)
    if tcfg.batch_size % (ddp.world_size * tcfg.grad_accum):
        raise ConfigError(
            f"train.batch_size={tcfg.batch_size} must be a multiple of world_size x grad_accum "
            f"= {ddp.world_size} x {tcfg.grad_accum}"
        )
    checkpoint = latest_checkpoint(run_dir) if resume else None
    if not resume and ddp.is_main and (run_dir / "config.yaml").exists():
        raise FileExistsError(f"{run_dir} already holds a run; pass resume=True (--resume) or choose another directory")

    if ddp.is_main:
        prepared = prepare_run_data(config)
    ddp.barrier()
    if not ddp.is_main:
        prepared = prepare_run_data(config)
    meta = read_checkpoint_meta(checkpoint) if checkpoint is not None else None
    torch.manual_seed(tcfg.seed)
    model, init_info = build_model(config, prepared, checkpoint, meta, log)
    model.to(device)
    optimizer = build_optimizer(model, config)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: lr_factor(step, config.optim.warmup_steps, tcfg.max_steps, config.optim.min_lr_ratio),
    )
    step = 0
    tokens_seen = 0
    if checkpoint is not None:
        state = load_training_state(checkpoint)
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["scheduler"])
        _set_rng_state(state["rng"], device)
        step, tokens_seen = int(meta["step"]), int(state["tokens"])
        log(f"resuming {run_dir} from step {step}")
    if ddp.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(config, run_dir / "config.yaml")
        prepared.tokenizer.save(run_dir / "tokenizer.json")
        (run_dir / "data.json").write_text(
            json.dumps(
                {
                    "root": str(prepared.root),
                    "manifest": prepared.manifest.get("outputs", {}),
                    "eos_token": prepared.tokenizer.eos_token,
                },
                indent=2,
            )
        )
    sampler = build_sampler(config, prepared)
    val_sampler = WindowSampler(prepared.val, tcfg.seq_len, tcfg.batch_size // ddp.world_size, tcfg.seed + 1)
    use_bf16 = tcfg.precision == "bf16" or (tcfg.precision == "auto" and device.type == "cuda")

    def autocast() -> contextlib.AbstractContextManager:
        return torch.autocast(device.type, dtype=torch.bfloat16) if use_bf16 else contextlib.nullcontext()

    trained: nn.Module = model
    if ddp.world_size > 1:
        trained = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    forward = torch.compile(trained) if tcfg.compile else trained
    metrics = MetricsLog(run_dir, ddp.is_main)
    if init_info and ddp.is_main:
        metrics.write({"step": step, **{k: v for k, v in init_info.items() if k != "fresh_position_tensors"}})

    stop = min(tcfg.max_steps, until_step) if until_step is not None else tcfg.max_steps
    tokens_per_step = tcfg.batch_size * tcfg.seq_len
    micro_batches = tcfg.grad_accum
    summary: dict[str, Any] = {"run_dir": str(run_dir), "start_step": step}
    bar = tqdm(
        total=stop,
        initial=step,
        disable=not (progress and ddp.is_main),
        desc=config.name or run_dir.name,
        unit="step",
        dynamic_ncols=True,
    )
    window_time, window_tokens = 0.0, 0
    last_loss = float("nan")
    model.train()
    try:
        while step < stop:
            step_start = time.perf_counter()
            inputs, targets = sampler.batch(step, ddp.rank, ddp.world_size)
            inputs, targets = inputs.to(device), targets.to(device)
            micro_inputs, micro_targets = inputs.chunk(micro_batches), targets.chunk(micro_batches)
            step_loss = torch.zeros((), device=device)
            for index, (micro_in, micro_out) in enumerate(zip(micro_inputs, micro_targets, strict=True)):
                sync = index == micro_batches - 1 or ddp.world_size == 1
                context = contextlib.nullcontext() if sync else trained.no_sync()
                with context, autocast():
                    loss = forward(micro_in, targets=micro_out).loss / micro_batches
                loss.backward()
                step_loss += loss.detach()
            if ddp.world_size > 1:  # gloo has no AVG
                dist.all_reduce(step_loss, op=dist.ReduceOp.SUM)
                step_loss /= ddp.world_size
            last_loss = float(step_loss)
            if not math.isfinite(last_loss):
                raise TrainingDiverged(
                    f"loss is {last_loss} at step {step + 1}; stopping. The last good checkpoint is "
                    f"{latest_checkpoint(run_dir) or 'none (none was written yet)'}. Lower train/optim.lr, raise "
                    "warmup_steps or check the data."
                )
            grad_norm = nn.utils.clip_grad_norm_(model.parameters(), config.optim.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            schedule.step()
            step += 1
            tokens_seen += tokens_per_step
            window_tokens += tokens_per_step
            window_time += time.perf_counter() - step_start
            bar.update(1)
            if step % tcfg.log_every == 0 or step == stop:
                record = {
                    "step": step,
                    "loss": last_loss,
                    "lr": schedule.get_last_lr()[0],
                    "grad_norm": float(grad_norm),
                    "tokens": tokens_seen,
                    "tokens_per_s": window_tokens / window_time,
                }
                metrics.write(record)
                bar.set_postfix(
                    loss=f"{last_loss:.3f}", lr=f"{record['lr']:.2e}", tok_s=f"{record['tokens_per_s']:.0f}"
                )
                summary["tokens_per_s"] = record["tokens_per_s"]
                window_time, window_tokens = 0.0, 0
            if ddp.is_main and (step % tcfg.eval_every == 0 or step == stop):
                val = validation_loss(model, val_sampler, tcfg.eval_batches, device, autocast)
                if val is not None:
                    metrics.write({"step": step, "val_loss": val, "val_perplexity": math.exp(val)})
                    summary["val_loss"] = val
            if step % tcfg.checkpoint_every == 0 or step == stop:
                if ddp.is_main:
                    training_state = {
                        "optimizer": optimizer.state_dict(),
                        "scheduler": schedule.state_dict(),
                        "rng": _rng_state(device),
                        "tokens": tokens_seen,
                    }
                    save_checkpoint(
                        run_dir,
                        step,
                        model,
                        training_state,
                        {"tokens": tokens_seen, **init_info},
                        keep=tcfg.keep_checkpoints,
                    )
                ddp.barrier()
    finally:
        bar.close()
        metrics.close()
    summary.update({"step": step, "loss": last_loss, "tokens": tokens_seen})
    log(
        f"{run_dir}: step {step}, loss {last_loss:.4f}"
        + (f", val loss {summary['val_loss']:.4f}" if "val_loss" in summary else "")
    )
    return summary


def train_from_files(
    config_path: str | Path | None,
    run_dir: str | Path,
    overrides: list[str] | tuple[str, ...] = (),
    *,
    max_steps: int | None = None,
    resume: bool = False,
    until_step: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """``fope train``: a config file (or, with ``resume``, the run's saved config) plus overrides, then ``train``."""
    run_dir = Path(run_dir)
    saved = run_dir / "config.yaml"
    if resume and saved.is_file():
        config = load_config(saved, overrides)
    elif config_path is None:
        raise ConfigError("--config is required for a new run (only --resume can take the run's saved config)")
    else:
        config = load_config(config_path, overrides)
    if max_steps is not None:
        config.train.max_steps = max_steps
    return train(config, run_dir, resume=resume, until_step=until_step, progress=progress)


def iterate_losses(run_dir: str | Path) -> Iterator[tuple[int, float]]:
    """(step, training loss) records of a run's ``metrics.jsonl``."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return
    for line in path.read_text().splitlines():
        record = json.loads(line)
        if "loss" in record:
            yield record["step"], record["loss"]
