"""Page selection: ONE syntax for every operation that picks pages.

Syntax (1-based, comma-separated parts, spaces around parts allowed):
    "7"      one page          "-1"    the last page ("-2" the one before it)
    "5-9"    a range           "9-5"   the same pages in reverse order
    "4-"     page 4 to the end "-3--1" the last three pages
    "all", "odd", "even"       (lower case)
Parsing (the SERVER, at validation time) checks the syntax only; resolving against the
page count happens in the CHILD, once the document is open. Both raise ParamError (from
spec.py) naming the parameter and the bad part; resolution raises its subclasses
PageRangeError (a page beyond the document) and SelectionTooLarge (over a page limit).

`pages` keeps the parts' order and duplicates ("3,1,1" selects page 3, then 1 twice):
select uses that; delete and rotate use the set. `ranges` (split) uses the same parts,
each part one output document.
"""
from __future__ import annotations

import dataclasses
import re

from notrace.operations.spec import ParamError, quote

__all__ = ["SELECTION_PATTERN", "PageRangeError", "SelectionTooLarge", "Part",
           "PageSelection", "parse_pages", "parse_ranges"]

_MAX_DIGITS = 9  # no document has a billion pages; also keeps int() cheap
_END = rf"-?[1-9][0-9]{{0,{_MAX_DIGITS - 1}}}"
_PART = rf"(?:all|odd|even|{_END}(?:-(?:{_END})?)?)"
#: ECMA/Python-compatible regex of the whole text form (used in the JSON Schema).
SELECTION_PATTERN = rf"^ *{_PART}(?: *, *{_PART})* *$"

# Looser than _PART so that errors can say what is wrong (zero, too many digits).
_LOOSE = re.compile(r"(?P<a>-?[0-9]+)(?:(?P<dash>-)(?P<b>-?[0-9]+)?)?")


class PageRangeError(ParamError):
    """A part names a page the document does not have (child side)."""


class SelectionTooLarge(ParamError):
    """The selection resolves to more pages than allowed (child side)."""


@dataclasses.dataclass(frozen=True)
class Part:
    """One part of a selection. kind: "all", "odd", "even" or "range".

    For ranges, start/end are 1-based page numbers, negative counting from the end;
    end None means "to the last page"; a single page has start == end.
    """

    kind: str
    start: int = 0
    end: int | None = 0

    @property
    def text(self) -> str:
        if self.kind != "range":
            return self.kind
        if self.end is None:
            return f"{self.start}-"
        if self.end == self.start:
            return str(self.start)
        return f"{self.start}-{self.end}"

    def resolve(self, count: int, param: str) -> range:
        """0-based page indices of this part in a document of `count` pages."""
        if self.kind == "all":
            return range(count)
        if self.kind == "odd":
            return range(0, count, 2)
        if self.kind == "even":
            return range(1, count, 2)
        first = _index(self.start, count, param)
        last = count - 1 if self.end is None else _index(self.end, count, param)
        return range(first, last + 1) if first <= last else range(first, last - 1, -1)


def _index(page: int, count: int, param: str) -> int:
    if page > count:
        raise PageRangeError(param, f"page {page} is beyond the last page ({count})")
    if page < -count:
        raise PageRangeError(param, f"page {page} is before the first page "
                                    f"(the document has {count} pages)")
    return page - 1 if page > 0 else count + page


@dataclasses.dataclass(frozen=True)
class PageSelection:
    """A parsed selection: parts in the order given. Cheap to build; see module doc."""

    parts: tuple[Part, ...]
    param: str = "pages"

    @property
    def text(self) -> str:
        """Canonical text; parses back to an equal selection."""
        return ",".join(p.text for p in self.parts)

    def resolve(self, count: int, *, limit: int | None = None) -> list[int]:
        """0-based indices, in order, duplicates kept. Raises PageRangeError /
        SelectionTooLarge (when more than `limit` pages would be selected)."""
        out: list[int] = []
        for part in self.parts:
            indices = part.resolve(count, self.param)
            if limit is not None and len(out) + len(indices) > limit:
                raise SelectionTooLarge(self.param, f"selects more than {limit} pages")
            out.extend(indices)
        return out

    def resolve_set(self, count: int) -> set[int]:
        """0-based indices as a set (delete, rotate): order and duplicates do not matter."""
        out: set[int] = set()
        for part in self.parts:
            out.update(part.resolve(count, self.param))
        return out

    def resolve_groups(self, count: int) -> list[list[int]]:
        """One list of 0-based indices per part (split: each part one output)."""
        return [list(part.resolve(count, self.param)) for part in self.parts]


def _parse_part(text: str, param: str) -> Part:
    if text in ("all", "odd", "even"):
        return Part(text)
    if text == "":
        raise ParamError(param, "has an empty part")
    m = _LOOSE.fullmatch(text)
    if m is None:
        raise ParamError(param, f"{quote(text)} is not a page or range")
    ends = [m["a"]] + ([m["b"]] if m["b"] is not None else [])
    numbers = []
    for end in ends:
        digits = end.lstrip("-")
        if len(digits) > _MAX_DIGITS:
            raise ParamError(param, f"{quote(text)} names a page number that is too large")
        value = int(end)
        if value == 0:
            raise ParamError(param, f"{quote(text)}: page 0 does not exist (pages count from 1)")
        if digits.startswith("0"):  # "01": refused, as by SELECTION_PATTERN
            raise ParamError(param, f"{quote(text)} is not a page or range")
        numbers.append(value)
    if m["dash"] is None:
        return Part("range", numbers[0], numbers[0])
    return Part("range", numbers[0], numbers[1] if len(numbers) == 2 else None)


def parse_pages(text: str, *, param: str = "pages") -> PageSelection:
    """Parse a selection (server side, syntax only). Raises ParamError naming the bad part."""
    if not isinstance(text, str):
        raise ParamError(param, "must be text")
    if text.strip() == "":
        raise ParamError(param, "is empty")
    parts = tuple(_parse_part(chunk.strip(" "), param) for chunk in text.split(","))
    return PageSelection(parts, param)


def parse_ranges(text: str, *, param: str = "ranges") -> PageSelection:
    """Parse split ranges: the same syntax; each part becomes one output document."""
    return parse_pages(text, param=param)
