"""Checkpoints: save, find, verify and read them (with ``fope.files``' atomic writes and checksums).

A checkpoint directory ``checkpoints/step_XXXXXXX`` holds ``model.safetensors`` (or, for a transformers model, a
``save_pretrained`` folder), ``training_state.pt`` and ``meta.json`` (step, model config, the sha256 of every file).
It is written under a temporary name (``.step_XXXXXXX.tmp-PID``) and renamed into place only when every file is on
disk, and ``checkpoints/latest`` is replaced atomically after that: a killed run never leaves a half-written
checkpoint that looks valid, and the temporary folder it leaves is removed by the next save or resume once its
writer is dead. Loading checks every file against ``meta.json``. Nothing is unpickled: weights are safetensors and
the training state is read with ``torch.load(weights_only=True)``.

A checkpoint of a ``train.parallel: fsdp`` run holds its weights and AdamW state as ``torch.distributed.checkpoint``
folders instead (``model/``, ``optimizer/``: ``fope.sharded``; written by ``fope.fsdp``, published the same way);
``load_model_weights`` reads either kind, so everything that loads a checkpoint reads both.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from fope.checks import check_int
from fope.errors import FopeError, one_line
from fope.files import file_sha256, os_error, publish_directory, renamed_error, write_atomic
from fope.sharded import SHARDED_MODEL, SHARDED_OPTIMIZER, is_sharded, read_sharded_tensors, sharded_shapes

if TYPE_CHECKING:
    from fope.integrations.hf_lm import HFCausalLM
    from fope.model import TransformerLM

__all__ = [
    "CHECKPOINTS",
    "LATEST",
    "CheckpointError",
    "checkpoint_identity",
    "checkpoint_name",
    "clean_stale_temporaries",
    "find_checkpoint",
    "latest_checkpoint",
    "latest_step",
    "load_model_weights",
    "load_training_state",
    "point_latest",
    "read_checkpoint_meta",
    "save_checkpoint",
]

CHECKPOINTS = "checkpoints"
LATEST = "latest"
#: What a writer leaves while it works: ``.NAME.tmp-PID`` (being written) or ``.NAME.old-PID`` (being replaced).
_TEMPORARY = re.compile(r"^\..+\.(?:tmp|old)-(\d+)$")


class CheckpointError(FopeError):
    """A checkpoint that is missing, incomplete or corrupt."""


# ------------------------------------------------------------------ temporary files of dead writers


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def clean_stale_temporaries(directory: str | Path) -> list[Path]:
    """Remove the ``.NAME.tmp-PID`` / ``.NAME.old-PID`` entries in ``directory`` whose writer is no longer alive."""
    removed = []
    directory = Path(directory)
    if not directory.is_dir():
        return removed
    for entry in sorted(directory.iterdir()):
        match = _TEMPORARY.match(entry.name)
        if match is None or _alive(int(match.group(1))):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


# ------------------------------------------------------------------ saving


def checkpoint_name(step: int) -> str:
    return f"step_{step:07d}"


def save_checkpoint(
    run_dir: str | Path,
    step: int,
    model: TransformerLM | HFCausalLM,
    training_state: dict[str, Any] | None = None,
    meta: dict[str, Any] | None = None,
    keep: int | None = None,
) -> Path:
    """Write ``checkpoints/step_XXXXXXX`` atomically, point ``latest`` at it, keep only the newest ``keep``.

    A ``TransformerLM`` is written to ``model.safetensors``; an ``HFCausalLM`` with ``save_pretrained`` (config.json,
    safetensors shards, tokenizer). ``meta.json`` holds the checksum of every file. A save that fails (a full disk,
    Ctrl-C) removes its temporary folder and leaves ``latest`` and the earlier checkpoints as they were; its
    ``OSError`` names the checkpoint.
    """
    from safetensors.torch import save_model

    hf_lm = sys.modules.get("fope.integrations.hf_lm")  # an HFCausalLM exists only once its module is imported

    root = Path(run_dir) / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    clean_stale_temporaries(root)
    final = root / checkpoint_name(step)
    temporary = root / f".{final.name}.tmp-{os.getpid()}"
    try:
        if temporary.exists():
            shutil.rmtree(temporary)
        temporary.mkdir()
        try:
            if hf_lm is not None and isinstance(model, hf_lm.HFCausalLM):
                model.save_pretrained(temporary)
            else:
                save_model(model, str(temporary / "model.safetensors"))
        except Exception as error:  # safetensors reports a full disk as its own error type
            wrapped = os_error(error, final)
            if wrapped is error:
                raise
            raise wrapped from error
        files = sorted(path.name for path in temporary.iterdir())
        if training_state is not None:
            with open(temporary / "training_state.pt", "wb") as handle:  # a handle: a write error is an OSError
                torch.save(training_state, handle)
            files.append("training_state.pt")
        record = {
            "step": step,
            "time": time.time(),
            "model_config": model.config.to_dict(),
            **(meta or {}),
            "files": {name: file_sha256(temporary / name) for name in files},
        }
        (temporary / "meta.json").write_text(json.dumps(record, indent=2))
        publish_directory(temporary, final, replace=True)  # re-saving a step (after a resume) replaces it
    except BaseException as error:  # a full disk, Ctrl-C: no half-written checkpoint stays; `latest` is unchanged
        shutil.rmtree(temporary, ignore_errors=True)
        named = renamed_error(error, temporary, final) if isinstance(error, OSError) else error
        if named is error:
            raise
        raise named from error
    point_latest(final, keep)
    return final


def point_latest(final: Path, keep: int | None) -> None:
    """Point ``latest`` at the published checkpoint ``final`` (atomically), then keep only the newest ``keep``."""
    root = final.parent
    write_atomic(root / LATEST, final.name)
    if keep is not None:
        for old in sorted(p for p in root.glob("step_*") if p.is_dir())[:-keep]:
            if old.name != final.name:
                shutil.rmtree(old)


# ------------------------------------------------------------------ finding and verifying


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint directory, or None when the run has none yet."""
    root = Path(run_dir) / CHECKPOINTS
    pointer = root / LATEST
    if not pointer.is_file():
        return None
    name = pointer.read_text(errors="replace").strip()
    directory = root / name
    if not re.fullmatch(r"step_\d+", name) or not directory.is_dir():
        available = sorted(path.name for path in root.glob("step_*") if path.is_dir())
        said = f"names {name!r}, which is not a checkpoint folder here" if name else "is empty"
        raise CheckpointError(
            f"{pointer} {said}; it must name a checkpoint folder of the run like step_0000020 (here: {available}); "
            "write the name of the newest one into it"
        )
    return directory


def latest_step(run_dir: str | Path) -> int:
    """The step of the run's newest complete checkpoint (0 without one)."""
    directory = latest_checkpoint(run_dir)
    return 0 if directory is None else int(directory.name.removeprefix("step_"))


def find_checkpoint(run_dir: str | Path, step: int | None = None) -> Path:
    """The checkpoint of ``step`` (default: the latest); a clear error when there is none."""
    if step is None:
        directory = latest_checkpoint(run_dir)
        if directory is None:
            raise CheckpointError(f"{run_dir} has no checkpoint yet (no {CHECKPOINTS}/{LATEST})")
        return directory
    directory = Path(run_dir) / CHECKPOINTS / checkpoint_name(check_int("step", step, minimum=0))
    if not directory.is_dir():
        available = sorted(p.name for p in (Path(run_dir) / CHECKPOINTS).glob("step_*"))
        raise CheckpointError(f"{run_dir} has no checkpoint for step {step}; available: {available}")
    return directory


def read_checkpoint_meta(directory: str | Path, verify: bool = True) -> dict[str, Any]:
    """``meta.json`` of a checkpoint, with every listed file checked against its checksum."""
    directory = Path(directory)
    meta_path = directory / "meta.json"
    if not meta_path.is_file():
        raise CheckpointError(f"{directory} is not a complete checkpoint: meta.json is missing")
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{meta_path} is corrupt: {error}") from error
    if not isinstance(meta, dict):
        raise CheckpointError(f"{meta_path} is corrupt: it holds a {type(meta).__name__}, not a mapping")
    files = meta.get("files")
    step = meta.get("step")
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise CheckpointError(f"{meta_path} is corrupt: step must be an int >= 0; got {step!r}")
    named = re.fullmatch(r"step_(\d+)", directory.name)
    if named and int(named.group(1)) != step:
        raise CheckpointError(
            f"{meta_path} is corrupt: it says step {step} in the folder of step {int(named.group(1))}"
        )
    if not isinstance(meta.get("model_config"), dict):
        raise CheckpointError(
            f"{meta_path} is corrupt: model_config must be a mapping; got {meta.get('model_config')!r}"
        )
    if not isinstance(files, dict) or not files or not all(isinstance(v, str) for v in files.values()):
        # every checkpoint fope writes lists its files: without the list nothing could be verified
        raise CheckpointError(
            f"{meta_path} is corrupt: files must map file names to sha256 checksums; got {files!r}"[:300]
        )
    if verify:
        for name, expected in files.items():
            path = directory / name
            if not path.is_file():
                raise CheckpointError(f"{directory} is incomplete: {name} is missing")
            if file_sha256(path) != expected:
                raise CheckpointError(f"{path} is corrupt: its checksum does not match meta.json")
    return meta


# ------------------------------------------------------------------ loading


def checkpoint_identity(run_dir: str | Path, step: int) -> dict[str, Any]:
    """The checkpoint an evaluation read: its step and the sha256 of its model files' checksums (the training state
    and a sharded checkpoint's optimizer shards aside: they do not change what is evaluated)."""
    files = read_checkpoint_meta(find_checkpoint(run_dir, step), verify=False)["files"]
    weights = {
        name: digest
        for name, digest in files.items()
        if name != "training_state.pt" and not name.startswith(SHARDED_OPTIMIZER + "/")
    }
    return {"step": step, "sha256": hashlib.sha256(json.dumps(weights, sort_keys=True).encode()).hexdigest()}


def load_model_weights(model: TransformerLM, directory: str | Path) -> None:
    """Load a checkpoint's weights into ``model`` (strict): ``model.safetensors``, or a sharded checkpoint's
    ``model/`` read whole in this process (a model that does not fit is a ``CheckpointError`` naming the tensor)."""
    from safetensors.torch import load_model

    if is_sharded(directory):
        _load_sharded_weights(model, Path(directory) / SHARDED_MODEL)
        return
    path = Path(directory) / "model.safetensors"
    try:
        missing, unexpected = load_model(model, str(path), strict=False)
    except Exception as error:  # safetensors raises its own error types for malformed files
        raise CheckpointError(f"cannot read {path}: {one_line(error)}") from error
    if missing or unexpected:
        raise CheckpointError(f"{path} does not fit the model: missing {missing}, unexpected {unexpected}")


def _load_sharded_weights(model: TransformerLM, folder: Path) -> None:
    try:
        saved = sharded_shapes(folder)
    except (OSError, FopeError) as error:
        raise CheckpointError(f"cannot read {folder}: {one_line(error)}") from error
    here = {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}
    missing, unexpected = sorted(here.keys() - saved.keys()), sorted(saved.keys() - here.keys())
    reshaped = [name for name in here if name in saved and saved[name][0] != here[name]]
    if missing or unexpected or reshaped:
        said = [f"{name} is {list(saved[name][0])} there and {list(here[name])} here" for name in reshaped[:1]]
        said += [f"{len(reshaped) - 1} more tensors differ in shape"] if len(reshaped) > 1 else []
        said += [f"the model has {_listed(missing)} that it lacks"] if missing else []
        said += [f"it has {_listed(unexpected)} that the model lacks"] if unexpected else []
        raise CheckpointError(
            f"the sharded checkpoint {folder.parent} holds another model: {'; '.join(said)} (resume with the "
            "model it was trained with, or start a new run with train.init_from)"
        )
    model.load_state_dict(read_sharded_tensors(folder))


def _listed(names: list[str]) -> str:
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def load_training_state(directory: str | Path) -> dict[str, Any]:
    """The optimizer / scheduler / RNG / step state of a checkpoint (``torch.load(weights_only=True)``)."""
    path = Path(directory) / "training_state.pt"
    if not path.is_file():
        raise CheckpointError(f"{directory} holds no training state (weights only); it cannot be resumed")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a truncated zip, a foreign pickle: torch raises several types
        raise CheckpointError(f"cannot read {path}: {one_line(error)}") from error
    # a sharded checkpoint keeps the optimizer's tensors in optimizer/ and only its hyper-parameters here
    optimizer = "optimizer_groups" if (Path(directory) / SHARDED_OPTIMIZER).is_dir() else "optimizer"
    missing = [
        key for key in (optimizer, "scheduler", "rng", "tokens") if not isinstance(state, dict) or key not in state
    ]
    if missing:
        raise CheckpointError(f"{path} is not a training state: it lacks {missing}")
    return state
