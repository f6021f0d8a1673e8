"""The training loop: one process on a CPU, or many through ``torchrun`` (gloo on CPU, NCCL on GPU), the model
replicated (DDP, ``train.parallel: ddp``) or sharded (FSDP2, ``fsdp``: ``fope.fsdp``).

``setup`` builds a ``Session`` (process group, data, model, optimizer, restored state), ``train_step`` makes one
optimizer step, ``end_of_step`` logs, validates and checkpoints at their intervals; ``train`` is the loop over them.

Data order is a pure function of ``(train.seed, step)`` (``fope.data.sampler.WindowSampler``), so a resumed run and a
run split over N processes see exactly the batches of an uninterrupted single-process run. Resuming restores the
weights, AdamW state, the LR schedule and the RNG: on CPU the losses after a resume equal those of an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
from torch import nn

from fope.build import build_model, build_optimizer, build_sampler, prepare_run_data, resume_run_data
from fope.checkpoint import (
    CHECKPOINTS,
    clean_stale_temporaries,
    latest_checkpoint,
    load_training_state,
    read_checkpoint_meta,
    save_checkpoint,
    write_atomic,
)
from fope.checks import check_folder
from fope.config import ConfigError, RunConfig, load_config, save_config
from fope.data.prepare import PreparedData
from fope.data.sampler import WindowSampler
from fope.device import Distributed, init_distributed, resolve_device
from fope.errors import FopeError, one_line
from fope.fsdp import clip_gradients, load_optimizer_state, save_sharded_checkpoint, shard_model
from fope.metrics import MetricsLog, iterate_losses
from fope.model import ModelConfig, TransformerLM
from fope.progress import progress_bar

if TYPE_CHECKING:
    from tqdm import tqdm

    from fope.integrations.hf_lm import HFCausalLM

__all__ = ["LOCK_FILE", "TrainingDiverged", "iterate_losses", "lr_factor", "train", "train_from_files", "training_lock"]

#: The file in a run folder that ``fope train`` holds an ``flock`` on while it trains (it holds the trainer's pid).
LOCK_FILE = ".train.lock"


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


def lr_factor(step: int, warmup_steps: int, max_steps: int, min_lr_ratio: float) -> float:
    """Linear warmup to 1 over ``warmup_steps``, then cosine decay to ``min_lr_ratio`` at ``max_steps``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, max_steps - warmup_steps))
    return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


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
    rank: int = 0,
    world_size: int = 1,
) -> float | None:
    """Mean loss on ``batches`` fixed held-out batches (the same every evaluation).

    With ``world_size > 1`` (a sharded model, whose forward every rank runs) each rank takes its rows of every batch
    and the per-batch losses are averaged over the ranks: the loss of one process on the whole batches."""
    if sampler is None or batches == 0:
        return None
    was_training = model.training
    model.eval()
    losses = []
    for index in range(batches):
        inputs, targets = sampler.batch(index, rank, world_size)
        with autocast():
            losses.append(float(model(inputs.to(device), targets=targets.to(device)).loss))
    model.train(was_training)
    if world_size > 1:
        summed = torch.tensor(losses, dtype=torch.float64, device=device)
        dist.all_reduce(summed, op=dist.ReduceOp.SUM)
        losses = (summed / world_size).tolist()
    return sum(losses) / len(losses)


@dataclass
class Session:
    """What a training process holds while it runs: where and on what, the model, its optimizer, the data, the step."""

    config: RunConfig
    run_dir: Path
    device: torch.device
    ddp: Distributed
    model: TransformerLM | HFCausalLM  # sharded in place under train.parallel=fsdp
    trained: nn.Module  # the model, wrapped in DistributedDataParallel when there are several ddp processes
    forward: Callable[..., Any]  # ``trained``, compiled with ``train.compile``
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LambdaLR
    sampler: WindowSampler
    val_sampler: WindowSampler
    metrics: MetricsLog
    init_info: dict[str, Any]
    log: Callable[[str], None]
    use_bf16: bool = False
    step: int = 0
    tokens_seen: int = 0

    @property
    def sharded(self) -> bool:
        return self.config.train.parallel == "fsdp"

    def autocast(self) -> contextlib.AbstractContextManager:
        # a sharded model computes in bf16 through FSDP's mixed-precision policy instead
        bf16 = self.use_bf16 and not self.sharded
        return torch.autocast(self.device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


@dataclass
class Throughput:
    """Tokens and seconds of the steps since the last log record."""

    tokens: int = 0
    seconds: float = field(default=0.0)

    def add(self, tokens: int, seconds: float) -> None:
        self.tokens += tokens
        self.seconds += seconds

    def reset(self) -> None:
        self.tokens, self.seconds = 0, 0.0


def warn_short_warmup(config: RunConfig, log: Callable[[str], None]) -> None:
    """One line when the run ends before its warmup does: the learning rate never reaches ``optim.lr``."""
    warmup, steps, lr = config.optim.warmup_steps, config.train.max_steps, config.optim.lr
    if warmup > steps:
        log(
            f"warning: optim.warmup_steps={warmup} is more than train.max_steps={steps}: the learning rate never "
            f"reaches its peak optim.lr={lr:g} (it stops at {lr * lr_factor(steps - 1, warmup, steps, 1.0):.3g})"
        )


def nothing_to_resume(run_dir: Path) -> ConfigError:
    return ConfigError(
        f"--resume: {run_dir} holds no run to resume (no config.yaml); to start a new run there, leave out --resume"
    )


def check_run_length(config: RunConfig, until_step: int | None) -> None:
    """``train.max_steps`` (``--max-steps``, which may be set after the config was checked) and ``until_step`` are
    ints >= 1."""
    for name, value in (("train.max_steps (--max-steps)", config.train.max_steps), ("--until-step", until_step)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ConfigError(f"{name} must be an int >= 1; got {value!r}")


def check_resumed_step(run_dir: Path, step: int, max_steps: int, until_step: int | None) -> None:
    """A resumed run must have steps left: ``max_steps`` (and ``until_step``) past the checkpoint's ``step``."""
    if max_steps <= step:
        raise ConfigError(
            f"--resume: {run_dir} is already at step {step} and train.max_steps is {max_steps}: nothing to train; "
            f"pass --max-steps N with N > {step} to extend it"
        )
    if until_step is not None and until_step <= step:
        raise ConfigError(f"--until-step must be after the run's step {step}; got {until_step}")


def check_new_run_dir(run_dir: Path) -> None:
    """A new run goes into a new or empty folder: one that holds a run needs ``--resume``, any other file a new one."""
    if (run_dir / "config.yaml").exists():
        raise FileExistsError(f"{run_dir} already holds a run; pass resume=True (--resume) or choose another directory")
    found = sorted(entry.name for entry in run_dir.iterdir() if entry.name != LOCK_FILE) if run_dir.is_dir() else []
    if found:
        shown = ", ".join(found[:3]) + (f" and {len(found) - 3} more" if len(found) > 3 else "")
        raise FileExistsError(
            f"{run_dir} is not empty and holds no run (no config.yaml; it holds {shown}): train into a new or empty "
            "folder"
        )


@contextlib.contextmanager
def training_lock(run_dir: Path) -> Iterator[None]:
    """Hold an ``flock`` on ``RUN_DIR/LOCK_FILE`` for the block: a second trainer of the run is a ``FopeError``.

    The file holds the holder's pid and is removed on release (a file left by a killed trainer is locked anew). A
    folder made here for the lock that is still empty on release is removed again.
    """
    made = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_FILE
    while True:
        handle = open(path, "a+")  # noqa: SIM115 (held open for the whole block)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise FopeError(f"{run_dir} is being trained by another process (pid {holder})") from None
        try:
            current = os.path.samestat(os.fstat(handle.fileno()), os.stat(path))
        except FileNotFoundError:
            current = False
        if current:
            break
        handle.close()  # its holder removed the file between our open and our lock: lock the new one
    try:
        handle.truncate(0)
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield
    finally:
        path.unlink(missing_ok=True)
        handle.close()
        if made:
            with contextlib.suppress(OSError):
                run_dir.rmdir()


def write_run_files(config: RunConfig, run_dir: Path, prepared: PreparedData) -> None:
    """``config.yaml``, ``tokenizer.json`` and ``data.json``: what evaluation reads besides the checkpoints.

    A run's ``tokenizer.json`` is never replaced: it is the vocabulary of its weights (``resume_run_data`` checks
    that the data of a resumed run has it).
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(config, run_dir / "config.yaml")
    if not (run_dir / "tokenizer.json").is_file():
        prepared.tokenizer.save(run_dir / "tokenizer.json")
    data_info = {
        "root": str(prepared.root),
        "manifest": prepared.manifest.get("files", {}),
        "eos_token": prepared.tokenizer.eos_token,
    }
    write_atomic(run_dir / "data.json", json.dumps(data_info, indent=2))


@contextlib.contextmanager
def _data_errors(prefix: str = "") -> Iterator[None]:
    """A ``ValueError`` of the data code (which ``fope prepare`` treats as the user's) as a one-line ``ConfigError``."""
    try:
        yield
    except FopeError:
        raise
    except ValueError as error:
        raise ConfigError(f"{prefix}{one_line(error)}") from error


def run_data(config: RunConfig, run_dir: Path, resume: bool, log: Callable[[str], None]) -> PreparedData:
    """The data to train on: a resumed run's own (``resume_run_data``) once it has a tokenizer, else ``config``'s.

    A data setting that ``fope prepare`` refuses in one line (a missing source, a vocabulary too small, a source
    name the corpus lacks) is refused here in one line too, as a ``ConfigError``, before the run folder is written."""
    with _data_errors("data: "):
        if resume and (run_dir / "tokenizer.json").is_file():
            return resume_run_data(config, run_dir, log)
        return prepare_run_data(config)


def setup(
    config: RunConfig, run_dir: Path, *, resume: bool, log: Callable[[str], None], until_step: int | None = None
) -> Session:
    """Join the process group, prepare the data, build or restore model, optimizer and schedule, write the run files.

    Everything is checked before anything is written: a new run's folder (``check_new_run_dir``) and a resumed
    run's remaining steps (``check_resumed_step``)."""
    tcfg = config.train
    check_folder("the run directory", run_dir)
    try:
        device = resolve_device(tcfg.device, int(os.environ.get("LOCAL_RANK", "0")))
    except ConfigError as error:
        raise ConfigError(f"train.device: {error}") from error
    ddp = init_distributed(device.type, sharded=tcfg.parallel == "fsdp")
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
    meta = read_checkpoint_meta(checkpoint) if checkpoint is not None else None
    if meta is not None:
        check_resumed_step(run_dir, int(meta["step"]), tcfg.max_steps, until_step)
    if not resume and ddp.is_main:
        check_new_run_dir(run_dir)
    if resume and ddp.is_main:  # what a killed writer left behind
        clean_stale_temporaries(run_dir / CHECKPOINTS)
        clean_stale_temporaries(run_dir)
    warn_short_warmup(config, log)

    if ddp.is_main:
        prepared = run_data(config, run_dir, resume, log)
        if prepared.split_warning:
            log(prepared.split_warning)
    ddp.barrier()
    if not ddp.is_main:
        prepared = run_data(config, run_dir, resume, log)
    torch.manual_seed(tcfg.seed)
    model, init_info = build_model(config, prepared, checkpoint, meta, log)
    model.to(device)
    use_bf16 = tcfg.precision == "bf16" or (tcfg.precision == "auto" and device.type == "cuda")
    if isinstance(model, TransformerLM):
        model.activation_checkpointing = tcfg.activation_checkpointing
    if tcfg.parallel == "fsdp":
        shard_model(model, bf16=use_bf16)
    optimizer = build_optimizer(model, config)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: lr_factor(step, config.optim.warmup_steps, tcfg.max_steps, config.optim.min_lr_ratio),
    )
    step = tokens_seen = 0
    if checkpoint is not None:
        state = load_training_state(checkpoint)
        load_optimizer_state(model, optimizer, checkpoint, state)
        schedule.load_state_dict(state["scheduler"])
        _set_rng_state(state["rng"], device)
        step, tokens_seen = int(meta["step"]), int(state["tokens"])
        log(f"resuming {run_dir} from step {step}")
    # ddp validates on rank 0 alone, fsdp on every rank, each on its rows of the same batches
    val_rows = tcfg.batch_size if tcfg.parallel == "fsdp" else tcfg.batch_size // ddp.world_size
    with _data_errors():  # before the run files: data too short for train.seq_len writes nothing
        sampler = build_sampler(config, prepared)
        val_sampler = WindowSampler(prepared.val, tcfg.seq_len, val_rows, tcfg.seed + 1)
    if ddp.is_main:
        write_run_files(config, run_dir, prepared)
    trained: nn.Module = model
    if ddp.world_size > 1 and tcfg.parallel == "ddp":
        trained = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    forward = torch.compile(trained) if tcfg.compile else trained
    # A resumed run logs again every step after its checkpoint (or, without one, from the start): drop those records.
    metrics = MetricsLog(run_dir, ddp.is_main, resume_step=(step if checkpoint is not None else -1) if resume else None)
    if init_info and ddp.is_main:
        metrics.write({"step": step, **{k: v for k, v in init_info.items() if k != "fresh_position_tensors"}})
    return Session(
        config, run_dir, device, ddp, model, trained, forward, optimizer, schedule, sampler, val_sampler, metrics,
        init_info, log, use_bf16=use_bf16, step=step, tokens_seen=tokens_seen,
    )  # fmt: skip


def train_step(session: Session) -> tuple[float, torch.Tensor]:
    """One optimizer step on the global batch of ``session.step``: (loss, gradient norm before clipping).

    Gradients of ``grad_accum`` micro-batches are summed (synchronised across processes on the last one), clipped to
    ``optim.grad_clip``, then AdamW and the schedule step. A non-finite loss raises ``TrainingDiverged``.
    """
    s, ddp, device = session, session.ddp, session.device
    micro_batches = s.config.train.grad_accum
    inputs, targets = s.sampler.batch(s.step, ddp.rank, ddp.world_size)
    inputs, targets = inputs.to(device), targets.to(device)
    step_loss = torch.zeros((), device=device)
    for index, (micro_in, micro_out) in enumerate(
        zip(inputs.chunk(micro_batches), targets.chunk(micro_batches), strict=True)
    ):
        sync = index == micro_batches - 1 or ddp.world_size == 1
        if s.sharded:
            s.model.set_requires_gradient_sync(sync)
        context = contextlib.nullcontext() if sync or s.sharded else s.trained.no_sync()
        with context, s.autocast():
            loss = s.forward(micro_in, targets=micro_out).loss / micro_batches
        loss.backward()
        step_loss += loss.detach()
    if ddp.world_size > 1:  # gloo has no AVG
        dist.all_reduce(step_loss, op=dist.ReduceOp.SUM)
        step_loss /= ddp.world_size
    last_loss = float(step_loss)
    if not math.isfinite(last_loss):
        raise TrainingDiverged(
            f"loss is {last_loss} at step {s.step + 1}; stopping. The last good checkpoint is "
            f"{latest_checkpoint(s.run_dir) or 'none (none was written yet)'}. Lower train/optim.lr, raise "
            "warmup_steps or check the data."
        )
    if s.sharded:
        grad_norm = clip_gradients(s.model, s.config.optim.grad_clip)
    else:
        grad_norm = nn.utils.clip_grad_norm_(s.model.parameters(), s.config.optim.grad_clip)
    s.optimizer.step()
    s.optimizer.zero_grad(set_to_none=True)
    s.schedule.step()
    s.step += 1
    s.tokens_seen += s.config.train.batch_size * s.config.train.seq_len
    return last_loss, grad_norm


def end_of_step(
    session: Session, stop: int, loss: float, grad_norm: torch.Tensor, throughput: Throughput, summary: dict, bar: tqdm
) -> None:
    """After a step: log, validate (rank 0) and checkpoint, each at its interval and at the last step."""
    s, tcfg, step = session, session.config.train, session.step
    if step % tcfg.log_every == 0 or step == stop:
        record = {
            "step": step,
            "loss": loss,
            "lr": s.schedule.get_last_lr()[0],
            "grad_norm": float(grad_norm),
            "tokens": s.tokens_seen,
            "tokens_per_s": throughput.tokens / throughput.seconds,
        }
        s.metrics.write(record)
        bar.set_postfix(
            loss=f"{loss:.3f}", lr=f"{record['lr']:.2e}", tok_s=f"{record['tokens_per_s']:.0f}", refresh=False
        )
        summary["tokens_per_s"] = record["tokens_per_s"]
        throughput.reset()
    if (s.ddp.is_main or s.sharded) and (step % tcfg.eval_every == 0 or step == stop):
        shard = (s.ddp.rank, s.ddp.world_size) if s.sharded else (0, 1)
        val = validation_loss(s.model, s.val_sampler, tcfg.eval_batches, s.device, s.autocast, *shard)
        if s.sharded:  # a forward without backward leaves the root's parameters gathered
            s.model.reshard()
        if val is not None:
            s.metrics.write({"step": step, "val_loss": val, "val_perplexity": math.exp(val)})
            summary["val_loss"] = val
    if step % tcfg.checkpoint_every == 0 or step == stop:
        training_state = {"scheduler": s.schedule.state_dict(), "rng": _rng_state(s.device), "tokens": s.tokens_seen}
        meta = {"tokens": s.tokens_seen, **s.init_info}
        if s.sharded:  # every rank writes its shards
            save_sharded_checkpoint(
                s.run_dir, step, s.model, s.optimizer, training_state, meta, keep=tcfg.keep_checkpoints
            )
        elif s.ddp.is_main:
            training_state = {"optimizer": s.optimizer.state_dict(), **training_state}
            save_checkpoint(s.run_dir, step, s.model, training_state, meta, keep=tcfg.keep_checkpoints)
        s.ddp.barrier()


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

    Returns a summary: final step, last training and validation loss, tokens per second, run directory. The run
    folder is locked for the whole training (``training_lock``; under torchrun by rank 0).
    """
    run_dir = check_folder("the run directory", Path(run_dir))  # before the lock makes the folder
    check_run_length(config, until_step)
    if until_step is not None and until_step > config.train.max_steps and int(os.environ.get("RANK", "0")) == 0:
        # time-sliced jobs (--until-step 300, 600, 900 of an 800-step run) end at the run's end: said, not an error
        log(f"note: --until-step {until_step} is past train.max_steps={config.train.max_steps}: training to the end")
    if resume and not (run_dir / "config.yaml").is_file():
        raise nothing_to_resume(run_dir)  # before the lock makes the folder
    main_process = int(os.environ.get("RANK", "0")) == 0
    with training_lock(run_dir) if main_process else contextlib.nullcontext():
        return _train(config, run_dir, resume, until_step, progress, log)


def _train(
    config: RunConfig,
    run_dir: Path,
    resume: bool,
    until_step: int | None,
    progress: bool,
    log: Callable[[str], None],
) -> dict[str, Any]:
    session = setup(config, run_dir, resume=resume, log=log, until_step=until_step)
    tcfg = config.train
    stop = min(tcfg.max_steps, until_step) if until_step is not None else tcfg.max_steps
    summary: dict[str, Any] = {"run_dir": str(run_dir), "start_step": session.step}
    bar = progress_bar(
        total=stop,
        initial=session.step,
        disable=not (progress and session.ddp.is_main),
        desc=config.name or run_dir.name,
        unit="step",
        dynamic_ncols=True,
    )
    throughput = Throughput()
    loss = float("nan")
    session.model.train()
    try:
        while session.step < stop:
            step_start = time.perf_counter()
            loss, grad_norm = train_step(session)
            throughput.add(tcfg.batch_size * tcfg.seq_len, time.perf_counter() - step_start)
            bar.update(1)
            end_of_step(session, stop, loss, grad_norm, throughput, summary, bar)
    finally:
        bar.close()
        session.metrics.close()
    summary.update({"step": session.step, "loss": loss, "tokens": session.tokens_seen})
    val = f", val loss {summary['val_loss']:.4f}" if "val_loss" in summary else ""
    session.log(f"{run_dir}: step {session.step}, loss {loss:.4f}{val}")
    return summary


def _shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """The shape of every weight and buffer a checkpoint of the model holds (built on the meta device)."""
    with torch.random.fork_rng(devices=[]), torch.device("meta"):
        model = TransformerLM(config)
    return {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}


def refuse_reshaping_overrides(run_dir: Path, overrides: list[str] | tuple[str, ...]) -> None:
    """A ``ConfigError`` naming the ``--set`` values that change the shape of the run's model: the weights of the
    checkpoint a resume starts from would not fit (``--set model.d_model=64``, or ``train.seq_len`` where FoPE keeps
    more frequencies). Other values, the schedule's or ``position_options.sigma``, may change on resume."""
    saved, checkpoint = run_dir / "config.yaml", latest_checkpoint(run_dir)
    if not overrides or checkpoint is None or load_config(saved, overrides).transformers is not None:
        return  # nothing to fit, or a transformers model, whose shape comes from its own folder
    try:
        stored = ModelConfig.from_dict(read_checkpoint_meta(checkpoint, verify=False)["model_config"])
    except (TypeError, ValueError):
        return  # a meta.json that does not describe a model: loading the checkpoint says what is wrong with it
    before = _shapes(stored)

    def shapes(given: list[str] | tuple[str, ...]) -> dict[str, tuple[int, ...]]:
        return _shapes(load_config(saved, given).model_config(stored.vocab_size))

    after = shapes(overrides)
    changed = sorted(name for name in before.keys() | after.keys() if before.get(name) != after.get(name))
    if not changed:
        return
    named = ", ".join(f"--set {item}" for item in [item for item in overrides if shapes([item]) != before] or overrides)
    first = changed[0]
    example = " -> ".join(str(list(shape[first])) if first in shape else "none" for shape in (before, after))
    raise ConfigError(
        f"{named} changes the run's model shape ({first} {example}, {len(changed)} tensor(s) in all), which a resume "
        f"cannot: the weights in {checkpoint} keep their shapes. Resume without it, or start a new run in another "
        f"--out (--set train.init_from={run_dir} copies the weights that fit)"
    )


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
    if resume and not saved.is_file():
        raise nothing_to_resume(run_dir)
    if resume:
        if config_path is not None:  # it would be ignored: the run goes on with the config it was started with
            raise ConfigError(
                f"--resume continues the run in {run_dir} with its own {saved.name}: leave out --config "
                "(change a setting with --set)"
            )
        config = load_config(saved, overrides)
        refuse_reshaping_overrides(run_dir, overrides)
    elif config_path is None:
        raise ConfigError("--config is required to start a new run (or pass --resume to continue one)")
    else:
        config = load_config(config_path, overrides)
    if max_steps is not None:
        config.train.max_steps = max_steps
    return train(config, run_dir, resume=resume, until_step=until_step, progress=progress)
