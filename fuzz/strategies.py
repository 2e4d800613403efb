"""Hypothesis strategies for PDFs: valid documents, mutated seeds and explicit attacks.

    from fuzz.strategies import pdfs, malformed_pdfs

Runs in the test process or a fuzz driver, never in the service. Every strategy returns a
`SearchStrategy`; options are keyword-only and checked eagerly, with errors that name the
offending value. Generated inputs stay small (64 KiB by default: bombs are small inputs
that inflate), so a run can draw 50+ examples per second.
"""
from __future__ import annotations

from collections.abc import Iterable

from hypothesis import strategies as st

from fuzz import _attacks, _documents, _mutations, _objects, _seeds
from fuzz._filters import FilterChain
from fuzz._syntax import serialize

__all__ = [
    "ATTACK_KINDS",
    "attack_pdfs",
    "corpus_pdfs",
    "filter_chains",
    "malformed_pdfs",
    "mutated_pdfs",
    "pdf_objects",
    "pdfs",
]

ATTACK_KINDS: tuple[str, ...] = tuple(_attacks.ATTACKS)
DEFAULT_MAX_SIZE = 64 * 1024


def _check_int(name: str, value: object, low: int, high: int | None = None) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ValueError(f"{name} must be an integer {bound}, got {value!r}")
    return value


def _check_choice(name: str, value: object, choices: Iterable[str]) -> str:
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value  # type: ignore[return-value]


def pdfs(*, min_pages: int = 1, max_pages: int = 5, xref: str = "any", encryption: str = "none",
         max_updates: int = 2) -> st.SearchStrategy[bytes]:
    """Valid PDFs that pikepdf and pypdf both open, with min_pages..max_pages pages; page n
    shows the text "page n". xref: "table", "stream" or "any" (per revision); encryption:
    "none", "rc4" (empty user password) or "any"; up to max_updates incremental updates."""
    _check_int("min_pages", min_pages, 1, 2000)
    _check_int("max_pages", max_pages, min_pages, 2000)
    _check_choice("xref", xref, _documents.XREF_KINDS)
    _check_choice("encryption", encryption, _documents.ENCRYPTIONS)
    _check_int("max_updates", max_updates, 0, 16)
    return _documents.documents(min_pages=min_pages, max_pages=max_pages, xref=xref, encryption=encryption,
                                max_updates=max_updates).map(lambda written: written.data)


def pdf_objects(*, max_leaves: int = 12, references: bool = True) -> st.SearchStrategy[bytes]:
    """One serialised PDF object in any legal spelling (escaped names, odd numbers, string
    escapes, hex strings, nested arrays and dictionaries, references)."""
    _check_int("max_leaves", max_leaves, 1, 1000)
    if not isinstance(references, bool):
        raise ValueError(f"references must be a bool, got {references!r}")
    return _objects.objects(max_leaves=max_leaves, with_references=references).map(serialize)


def filter_chains(*, min_length: int = 0, max_length: int = 3, readable: bool = True) -> st.SearchStrategy[FilterChain]:
    """Filter chains (Flate, LZW, ASCIIHex, ASCII85, RunLength, with PNG/TIFF predictors).
    `chain.encode(data)` gives the stream data and its /Filter and /DecodeParms entries.
    readable=True keeps to combinations that both pikepdf and pypdf decode."""
    _check_int("min_length", min_length, 0, 64)
    _check_int("max_length", max_length, min_length, 64)
    if not isinstance(readable, bool):
        raise ValueError(f"readable must be a bool, got {readable!r}")
    return _documents.chains(min_length=min_length, max_length=max_length, readable=readable)


def corpus_pdfs(*, max_size: int = DEFAULT_MAX_SIZE) -> st.SearchStrategy[bytes]:
    """Files of the shared corpus (NOTRACE_CORPUS or <repo>/../shared/corpus) no larger than
    max_size, read in place. Raises if there are none: a silent empty corpus hides gaps."""
    _check_int("max_size", max_size, 1)
    if not _seeds.corpus_files(max_size):
        raise ValueError(f"no corpus PDF of at most {max_size} bytes in {str(_seeds.corpus_dir())!r}")
    return _seeds.corpus_seeds(max_size)


def _default_seeds(max_size: int) -> st.SearchStrategy[bytes]:
    generated = pdfs(max_pages=4, encryption="any")
    return st.one_of(generated, _seeds.corpus_seeds(max_size)) if _seeds.corpus_files(max_size) else generated


def mutated_pdfs(*, seeds: st.SearchStrategy[bytes] | None = None, max_mutations: int = 4,
                 max_size: int = DEFAULT_MAX_SIZE) -> st.SearchStrategy[bytes]:
    """Seeds (default: generated documents and the corpus) after 1..max_mutations of: byte
    flips, truncation, deletion, splicing, wrong xref offsets, lying /Length, deleted or
    duplicated keys, redirected references, injected nesting, cycles in page trees and
    outlines, /Prev loops. Cut to max_size bytes."""
    _check_int("max_mutations", max_mutations, 1, 64)
    _check_int("max_size", max_size, 1)
    if seeds is not None and not isinstance(seeds, st.SearchStrategy):
        raise ValueError(f"seeds must be a SearchStrategy of bytes, got {seeds!r}")
    return _mutations.mutants(seeds if seeds is not None else _default_seeds(max_size),
                              max_mutations=max_mutations, max_size=max_size)


def attack_pdfs(*, kinds: Iterable[str] | None = None, max_size: int = DEFAULT_MAX_SIZE) -> st.SearchStrategy[bytes]:
    """The attack classes of docs/threats.md (see ATTACK_KINDS), each a small file built
    around one payload; `kinds` restricts them."""
    _check_int("max_size", max_size, 4096)
    if isinstance(kinds, str):
        raise ValueError(f"kinds must be a collection of names, not the string {kinds!r}")
    chosen = ATTACK_KINDS if kinds is None else tuple(kinds)
    if not chosen:
        raise ValueError(f"kinds must name at least one attack, got {kinds!r}")
    for kind in chosen:
        _check_choice("attack kind", kind, ATTACK_KINDS)
    return st.one_of([_attacks.ATTACKS[kind](max_size) for kind in chosen])


def malformed_pdfs(*, max_size: int = DEFAULT_MAX_SIZE, max_mutations: int = 4) -> st.SearchStrategy[bytes]:
    """Hostile or broken PDFs: mutated seeds and explicit attacks, at most max_size bytes."""
    _check_int("max_size", max_size, 4096)
    return st.one_of(mutated_pdfs(max_mutations=max_mutations, max_size=max_size), attack_pdfs(max_size=max_size))
