"""Text <-> token ids: a thin wrapper over HF ``tokenizers`` and the project's byte-level BPE trainer."""

from __future__ import annotations

import operator
from collections.abc import Iterable, Sequence
from pathlib import Path

import tokenizers
from tokenizers import decoders, models, pre_tokenizers, trainers

from fope.checks import check_int
from fope.errors import FopeError
from fope.files import write_atomic

#: The end-of-document token: the token store puts one after every document.
EOS_TOKEN = "<|endoftext|>"
#: Every byte plus EOS: the smallest vocabulary ``train_bpe`` can make (pure byte-level tokens, no merges).
MIN_VOCAB_SIZE = 256 + 1


class TokenizerFileError(FopeError):
    """A tokenizer file that the ``tokenizers`` library cannot read, in one line naming the file."""


class Tokenizer:
    """Encode/decode text; ``eos_id`` is the id of ``eos_token``. Special-token strings in text are encoded as text."""

    def __init__(self, backend: tokenizers.Tokenizer, eos_token: str = EOS_TOKEN) -> None:
        eos_id = backend.token_to_id(eos_token)
        if eos_id is None:
            raise ValueError(f"the tokenizer has no token {eos_token!r} to use as end-of-document; pass eos_token=")
        # Only the store writes EOS; a document that contains the string "<|endoftext|>" must not end early.
        backend.encode_special_tokens = True
        self.backend = backend
        self.eos_token = eos_token
        self.eos_id: int = eos_id

    @property
    def vocab_size(self) -> int:
        return self.backend.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``, with no special tokens added."""
        return self.backend.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text (encoded in parallel)."""
        return [encoding.ids for encoding in self.backend.encode_batch(list(texts), add_special_tokens=False)]

    def decode(self, ids: Iterable[int]) -> str:
        """The text of ``ids`` (ints >= 0; a tensor's items too), special tokens included. Ids at or above
        ``vocab_size`` have no text: a model's vocabulary may be larger than its tokenizer's (padded embeddings), and
        what it generates there decodes to nothing."""
        ids = list(ids)
        try:  # operator.index: ints, numpy ints and one-element integer tensors; never a float (int(1.7) would be 1)
            values = [operator.index(i) for i in ids if not isinstance(i, bool)]
        except TypeError:
            values = []
        if len(values) != len(ids) or any(i < 0 for i in values):
            raise ValueError(f"decode takes token ids, ints >= 0; got {ids[:5]!r}")
        return self.backend.decode(values, skip_special_tokens=False)

    def save(self, path: str | Path) -> Path:
        """Write the tokenizer as one ``tokenizer.json``-format file at ``path`` (atomically: ``write_atomic``)."""
        return write_atomic(path, self.backend.to_str(pretty=True))

    @classmethod
    def load(cls, path: str | Path, eos_token: str | None = None) -> Tokenizer:
        """From a ``tokenizer.json`` file, a folder holding one, or a local ``transformers`` tokenizer folder.

        A folder with a ``tokenizer_config.json`` is read with ``transformers.AutoTokenizer`` (fast tokenizers only);
        its EOS is the tokenizer's own ``eos_token`` unless ``eos_token`` is given. Otherwise EOS is ``<|endoftext|>``.
        A ``tokenizer.json`` that does not parse raises ``TokenizerFileError``.
        """
        path = Path(path)
        if path.is_dir() and (path / "tokenizer_config.json").is_file():
            return _load_transformers(path, eos_token)
        file = path / "tokenizer.json" if path.is_dir() else path
        if not file.is_file():
            raise ValueError(
                f"tokenizer path must be a tokenizer.json file, a folder with one, or a transformers tokenizer folder; "
                f"got {str(path)!r}"
            )
        try:
            backend = tokenizers.Tokenizer.from_file(str(file))
        except Exception as error:  # the library raises a bare Exception for a file that does not parse
            message = " ".join(str(error).split())[:300]
            raise TokenizerFileError(f"cannot read the tokenizer file {str(file)!r}: {message}") from error
        return cls(backend, eos_token or EOS_TOKEN)


def _load_transformers(path: Path, eos_token: str | None) -> Tokenizer:
    try:
        import transformers  # noqa: F401  (what load_tokenizer needs)
    except ImportError:
        raise ImportError(
            f"{path} is a transformers tokenizer folder; reading it needs `transformers`: "
            "pip install 'fope[transformers]'"
        ) from None
    from fope.integrations.transformers import load_tokenizer

    loaded = load_tokenizer(path)
    if not loaded.is_fast:
        raise ValueError(f"{path} holds a slow (Python) tokenizer {type(loaded).__name__}; only fast tokenizers work")
    eos_token = eos_token or loaded.eos_token
    if eos_token is None:
        raise ValueError(f"the tokenizer in {path} defines no eos_token; pass eos_token=")
    return Tokenizer(loaded.backend_tokenizer, eos_token)


def check_vocab_size(vocab_size: object) -> int:
    """``vocab_size`` if it is an int >= 257 (every byte plus EOS)."""
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < MIN_VOCAB_SIZE:
        raise ValueError(
            f"vocab_size must be an int >= {MIN_VOCAB_SIZE} (256 bytes + the EOS token); got {vocab_size!r}"
        )
    return vocab_size


def train_bpe(texts: Iterable[str], vocab_size: int, *, min_frequency: int = 2) -> Tokenizer:
    """A byte-level BPE tokenizer trained on ``texts``: all 256 bytes, EOS, then up to ``vocab_size - 257`` merges.

    ``decode(encode(text)) == text`` for any text (no normalizer, no added prefix space). Training is deterministic
    for the same texts in the same order. A corpus with too few distinct pairs can end with fewer merges than asked.
    """
    check_vocab_size(vocab_size)
    if isinstance(texts, (str, bytes)):  # iterating it would train on its single characters
        raise TypeError("texts must be an iterable of strings (e.g. a list), not one string")
    check_int("min_frequency", min_frequency, minimum=0)
    backend = tokenizers.Tokenizer(models.BPE())
    # Digits are split one per token first (as Llama's tokenizer does), so a number of n digits is always n tokens
    # and copying it is the same operation whatever its value; then byte-level BPE.
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[EOS_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer=trainer)
    return Tokenizer(backend)
