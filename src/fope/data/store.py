"""The token store: documents' token ids back to back on disk (each followed by EOS), memory-mapped for reading.

A store is a directory:
- ``tokens.bin``: the raw ids, uint16 when ``vocab_size <= 65536`` else uint32, little-endian;
- ``index.npy``: int64 ``(num_documents, 3)``: each document's token offset, token count (without its EOS) and UTF-8
  byte count (bits per byte = loss in nats * tokens / (bytes * ln 2));
- ``meta.json``: format, dtype, vocab_size, eos_id, num_tokens, num_documents, sha256 of both files, document names.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from fope.errors import FopeError
from fope.files import file_sha256, publish_directory

FORMAT = "fope-token-store"
VERSION = 1
TOKENS_FILE = "tokens.bin"
INDEX_FILE = "index.npy"
META_FILE = "meta.json"
DTYPES = {"uint16": np.dtype("<u2"), "uint32": np.dtype("<u4")}


class TokenStoreError(FopeError):
    """A token store that is missing, truncated, corrupt or of another format."""


def token_dtype(vocab_size: int) -> str:
    """Name of the smallest dtype in ``DTYPES`` that holds every id below ``vocab_size``."""
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or not 1 <= vocab_size <= 2**32:
        raise ValueError(f"vocab_size must be an int in [1, 2**32]; got {vocab_size!r}")
    return "uint16" if vocab_size <= 2**16 else "uint32"


class TokenStore:
    """A read-only, memory-mapped token store; ``TokenStore.write`` makes one."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.meta = _read_meta(self.path)
        self.dtype = DTYPES[self.meta["dtype"]]
        self.vocab_size: int = self.meta["vocab_size"]
        self.eos_id: int = self.meta["eos_id"]
        self.num_tokens: int = self.meta["num_tokens"]
        self.num_documents: int = self.meta["num_documents"]
        tokens_path = self.path / TOKENS_FILE
        expected_size = self.num_tokens * self.dtype.itemsize
        if tokens_path.stat().st_size != expected_size:
            raise TokenStoreError(
                f"{tokens_path} has {tokens_path.stat().st_size} bytes but meta.json says {self.num_tokens} "
                f"{self.dtype.name} tokens ({expected_size} bytes): the store is truncated or corrupt; prepare it again"
            )
        try:
            self.index = np.load(self.path / INDEX_FILE, allow_pickle=False)
        except (OSError, ValueError) as error:
            raise TokenStoreError(
                f"{self.path / INDEX_FILE} cannot be read ({error}); prepare the store again"
            ) from None
        _check_index(self.path, self.index, self.num_documents, self.num_tokens, len(self.meta["names"]))
        self.tokens: np.memmap = np.memmap(tokens_path, dtype=self.dtype, mode="r", shape=(self.num_tokens,))

    @classmethod
    def open(cls, path: str | Path) -> TokenStore:
        """Open the store at ``path`` (same as ``TokenStore(path)``)."""
        return cls(path)

    def __repr__(self) -> str:
        return f"TokenStore({str(self.path)!r}, documents={self.num_documents}, tokens={self.num_tokens})"

    def _check_document(self, i: int) -> int:
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not 0 <= i < self.num_documents:
            raise IndexError(f"document index must be an int in [0, {self.num_documents}); got {i!r}")
        return int(i)

    def document(self, i: int) -> np.ndarray:
        """Token ids of document ``i``: a read-only view, without the trailing EOS."""
        offset, length, _ = self.index[self._check_document(i)]
        return self.tokens[offset : offset + length]

    def document_name(self, i: int) -> str:
        """Name of document ``i``."""
        return self.meta["names"][self._check_document(i)]

    def document_bytes(self, i: int) -> int:
        """UTF-8 byte count of document ``i``'s text."""
        return int(self.index[self._check_document(i), 2])

    @property
    def document_lengths(self) -> np.ndarray:
        """Token count of every document (without EOS)."""
        return self.index[:, 1]

    @property
    def num_bytes(self) -> int:
        """UTF-8 bytes of all documents together."""
        return int(self.index[:, 2].sum())

    def verify(self) -> None:
        """Check both files against the sha256 in meta.json (reads everything); raise TokenStoreError on mismatch."""
        for name, key in ((TOKENS_FILE, "tokens_sha256"), (INDEX_FILE, "index_sha256")):
            actual = file_sha256(self.path / name)
            if actual != self.meta[key]:
                raise TokenStoreError(
                    f"{self.path / name} has sha256 {actual} but meta.json records {self.meta[key]}: "
                    "the file is corrupt; prepare the store again"
                )

    @classmethod
    def write(
        cls,
        path: str | Path,
        documents: Iterable[tuple[str, list[int] | np.ndarray, int]],
        *,
        vocab_size: int,
        eos_id: int,
    ) -> TokenStore:
        """Write ``(name, ids, num_bytes)`` documents as a new store at ``path`` (built aside, then moved in place)."""
        path = Path(path)
        dtype_name = token_dtype(vocab_size)
        if isinstance(eos_id, bool) or not isinstance(eos_id, int) or not 0 <= eos_id < vocab_size:
            raise ValueError(f"eos_id must be an int in [0, vocab_size={vocab_size}); got {eos_id!r}")
        if path.exists():
            raise FileExistsError(f"token store path {path} already exists; remove it or choose another path")
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
        try:
            names, rows, tokens_sha256 = _write_tokens(
                staging / TOKENS_FILE, documents, DTYPES[dtype_name], vocab_size, eos_id
            )
            if not names:
                raise ValueError("a token store needs at least one document; got none")
            np.save(staging / INDEX_FILE, np.asarray(rows, dtype=np.int64).reshape(-1, 3), allow_pickle=False)
            meta = {
                "format": FORMAT,
                "version": VERSION,
                "dtype": dtype_name,
                "vocab_size": vocab_size,
                "eos_id": eos_id,
                "num_tokens": rows[-1][0] + rows[-1][1] + 1,
                "num_documents": len(names),
                "tokens_sha256": tokens_sha256,
                "index_sha256": file_sha256(staging / INDEX_FILE),
                "names": names,
            }
            (staging / META_FILE).write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
            publish_directory(staging, path)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return cls(path)


def _write_tokens(
    file: Path,
    documents: Iterable[tuple[str, list[int] | np.ndarray, int]],
    dtype: np.dtype,
    vocab_size: int,
    eos_id: int,
) -> tuple[list[str], list[tuple[int, int, int]], str]:
    names: list[str] = []
    rows: list[tuple[int, int, int]] = []
    digest = hashlib.sha256()
    offset = 0
    eos = np.asarray([eos_id], dtype=dtype).tobytes()
    with open(file, "wb") as handle:
        for name, ids, num_bytes in documents:
            array = np.asarray(ids)
            if array.ndim != 1 or (array.size and not np.issubdtype(array.dtype, np.integer)):
                raise ValueError(
                    f"document {name!r}: ids must be a 1-D sequence of ints; got {array.dtype} {array.shape}"
                )
            if array.size and (array.min() < 0 or array.max() >= vocab_size):
                bad = int(array.min()) if array.min() < 0 else int(array.max())
                raise ValueError(f"document {name!r} has token id {bad}, outside [0, vocab_size={vocab_size})")
            data = array.astype(dtype).tobytes() + eos
            handle.write(data)
            digest.update(data)
            names.append(name)
            rows.append((offset, array.size, int(num_bytes)))
            offset += array.size + 1
    return names, rows, digest.hexdigest()


def _read_meta(path: Path) -> dict[str, Any]:
    meta_path = path / META_FILE
    if not meta_path.is_file() or not (path / TOKENS_FILE).is_file():
        raise TokenStoreError(f"{path} is not a token store: it needs {META_FILE}, {TOKENS_FILE} and {INDEX_FILE}")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise TokenStoreError(f"{meta_path} is not valid JSON ({error}); the store is corrupt") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise TokenStoreError(f"{meta_path} is not a {FORMAT} version {VERSION} file")
    if meta.get("dtype") not in DTYPES:
        raise TokenStoreError(f"{meta_path} has dtype {meta.get('dtype')!r}; expected one of {sorted(DTYPES)}")
    return meta


def _check_index(path: Path, index: np.ndarray, num_documents: int, num_tokens: int, num_names: int) -> None:
    problem = None
    if index.dtype != np.int64 or index.shape != (num_documents, 3):
        problem = f"index has {index.dtype} {index.shape}, expected int64 ({num_documents}, 3)"
    elif num_names != num_documents:
        problem = f"meta.json has {num_names} names for {num_documents} documents"
    elif num_documents == 0 or int(index[-1, 0] + index[-1, 1] + 1) != num_tokens:
        problem = f"the last document does not end at token {num_tokens}"
    elif (index[1:, 0] != index[:-1, 0] + index[:-1, 1] + 1).any():
        problem = "document offsets are not back to back"
    if problem:
        raise TokenStoreError(f"{path} is corrupt: {problem}; prepare the store again")
