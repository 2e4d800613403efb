"""Seed files: the shared corpus of real malformed PDFs, read in place (never copied).

Runs in the test process or a fuzz driver. The corpus lives beside the repository
(`<repo>/../shared/corpus`); NOTRACE_CORPUS overrides the location.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path

from hypothesis import note, strategies as st

REPO = Path(__file__).resolve().parents[1]


def corpus_dir() -> Path:
    return Path(os.environ.get("NOTRACE_CORPUS") or REPO.parent / "shared" / "corpus")


@functools.lru_cache(maxsize=None)
def _files(directory: Path, max_size: int) -> tuple[Path, ...]:
    if not directory.is_dir():
        return ()
    return tuple(sorted(p for p in directory.glob("*.pdf") if p.stat().st_size <= max_size))


def corpus_files(max_size: int) -> tuple[Path, ...]:
    """Corpus PDFs no larger than max_size bytes, sorted by name (stable across runs, so
    Hypothesis can replay a failing seed)."""
    return _files(corpus_dir(), max_size)


@functools.lru_cache(maxsize=512)
def read_seed(path: Path) -> bytes:
    return path.read_bytes()


def corpus_seeds(max_size: int) -> st.SearchStrategy[bytes]:
    files = corpus_files(max_size)
    return _corpus_seed(str(corpus_dir()), max_size) if files else st.nothing()


@st.composite
def _corpus_seed(draw, directory: str, max_size: int) -> bytes:
    # An index rather than sampled_from(files): the strategy's repr stays one line, and
    # note() still names the file in a failing example's report.
    files = _files(Path(directory), max_size)
    path = files[draw(st.integers(0, len(files) - 1))]
    note(f"corpus seed: {path.name}")
    return read_seed(path)
