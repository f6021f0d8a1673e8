"""Text -> tokens -> batches: corpus sources, the byte-level BPE tokenizer, the token store and the window sampler."""

from fope.data.corpus import (
    DEFAULT_SDISTS,
    Document,
    default_corpus,
    hf_dataset_documents,
    jsonl_documents,
    split_documents,
    text_dir_documents,
)
from fope.data.prepare import DEFAULT_VAL_FRACTION, DEFAULT_VOCAB_SIZE, PreparedData, default_cache_dir, prepare_data
from fope.data.sampler import Mixer, WindowSampler
from fope.data.store import TokenStore, TokenStoreError
from fope.data.tokenizer import EOS_TOKEN, Tokenizer, train_bpe

__all__ = [
    "DEFAULT_SDISTS",
    "DEFAULT_VAL_FRACTION",
    "DEFAULT_VOCAB_SIZE",
    "EOS_TOKEN",
    "Document",
    "Mixer",
    "PreparedData",
    "TokenStore",
    "TokenStoreError",
    "Tokenizer",
    "WindowSampler",
    "default_cache_dir",
    "default_corpus",
    "hf_dataset_documents",
    "jsonl_documents",
    "prepare_data",
    "split_documents",
    "text_dir_documents",
    "train_bpe",
]
