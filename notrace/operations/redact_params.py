"""redact's parameters: boxes and terms, parsed and bounded once, and the terms' patterns.

Pure Python (no PDF library): runs in the SERVER (`check_redact`, redact's
Operation.check, at validation: every bad value is a 400 naming its parameter) and in the
CHILD (the same parsing, then the search, redact.py, and the leak check, redact_leaks.py,
which must match exactly as the search did).

Bounds, and why:
- boxes: a JSON list of at most MAX_BOXES objects with exactly the keys page (from 1),
  x0, y0, x1, y1 (finite numbers within +-MAX_POINTS, PDF points of the page's own
  unrotated coordinates, the space of `text` with layout=boxes); corners in order
  (x0 < x1, y0 < y1) and each side at least MIN_SIDE_PT: an inverted box is a mistake
  worth a 400, not a silent swap.
- terms: a JSON list of at most MAX_TERMS strings of at most MAX_TERM_CHARS characters,
  not blank. Plain terms match case-insensitively (unless case_sensitive), their words
  separated by any whitespace or none (PDFium may or may not put a space between two
  words: redacting a little more is safe, less is not), and a word also when a hyphen
  breaks it across lines (_BREAKABLE).
- regex=true: each term is a Python regular expression. Matching is backtracking, so a
  pattern can be made to take exponential time: patterns are refused (400) when they
  repeat something that itself repeats or alternates ("(a+)+", "(a|ab)*"), use
  backreferences, or can match the empty text, and when the character classes of all
  terms span more than MAX_CLASS_SPAN code points (compiling walks each one, and the
  server compiles on its event loop). What is left can still be slow
  (polynomial: "\\w*\\w*\\w*x" on a page of 200,000 letters): the search then runs into the
  child's CPU limit and the job ends as 422 cpu-limit, like any document too costly.
"""
from __future__ import annotations

import json
import math
import re
import re._constants as sre_constants  # the parser's opcodes (Python 3.11+)
import re._parser as sre_parser        # to look at a pattern's structure before running it

from notrace.operations.boxes import MAX_POINTS, MIN_SIDE_PT
from notrace.operations.spec import ParamError

__all__ = ["MAX_BOXES", "MAX_BOXES_TEXT", "MAX_TERMS", "MAX_TERM_CHARS", "MAX_TERMS_TEXT",
           "MAX_PAGE", "MAX_DPI", "DEFAULT_DPI", "COLOR_PATTERN", "RedactBox",
           "parse_boxes", "parse_terms", "patterns", "spans", "parse_color", "check_redact"]

MAX_BOXES = 256
MAX_BOXES_TEXT = 16000   # characters of JSON: a text part is at most 16 KiB
MAX_TERMS = 32
MAX_TERM_CHARS = 200
MAX_TERMS_TEXT = 8000
#: Code points the character classes of all regex terms may span, below U+10000. The
#: server compiles every pattern on its event loop, and Python's compiler walks each
#: code point of a class's range (about 15 ms a full-plane class without case): 32
#: terms of 39 such classes held the loop for 13 s. This is one full-plane class and a
#: CJK one: a pipeline of 16 redact steps of them costs the loop 0.24 s here.
MAX_CLASS_SPAN = 90_000
MAX_PAGE = 1_000_000
#: Resolution of redacted pages: 150 dpi keeps print quality; 300 is the bound (a Letter
#: page is 8.4 megapixels there, within raster.MAX_PAGE_PIXELS).
DEFAULT_DPI, MAX_DPI = 150, 300
COLOR_PATTERN = r"^#?[0-9A-Fa-f]{6}$"
_BOX_KEYS = ("page", "x0", "y0", "x1", "y1")

#: (page (1-based), x0, y0, x1, y1)
RedactBox = tuple[int, float, float, float, float]


def _json(text: str, param: str):
    def refuse_constant(_name: str):
        raise ValueError("NaN and Infinity are not numbers here")
    try:
        return json.loads(text, parse_constant=refuse_constant)
    except (ValueError, RecursionError):
        raise ParamError(param, "is not JSON (or has NaN or Infinity, or is nested too "
                                "deeply)") from None


def _number(value, where: str, param: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ParamError(param, f"{where} must be a number")
    value = float(value)
    if not math.isfinite(value) or abs(value) > MAX_POINTS:
        raise ParamError(param, f"{where} must be a finite number within "
                                f"-{MAX_POINTS:g} and {MAX_POINTS:g} points")
    return value


def parse_boxes(text: str | None, *, param: str = "boxes") -> list[RedactBox]:
    """JSON text -> boxes (none when absent). Raises ParamError naming the box."""
    if text is None:
        return []
    value = _json(text, param)
    if not isinstance(value, list) or not value:
        raise ParamError(param, 'must be a non-empty JSON list of {"page", "x0", "y0", '
                                '"x1", "y1"}')
    if len(value) > MAX_BOXES:
        raise ParamError(param, f"has more than {MAX_BOXES} boxes")
    boxes = []
    for k, item in enumerate(value):
        where = f"box {k + 1}"
        if not isinstance(item, dict) or set(item) != set(_BOX_KEYS):
            raise ParamError(param, f"{where} must have exactly the keys page, x0, y0, x1, y1")
        page = item["page"]
        if type(page) is not int or not 1 <= page <= MAX_PAGE:
            raise ParamError(param, f"{where}: page must be a page number (from 1)")
        x0, y0, x1, y1 = (_number(item[key], f"{where}: {key}", param) for key in _BOX_KEYS[1:])
        if x1 - x0 < MIN_SIDE_PT or y1 - y0 < MIN_SIDE_PT:
            raise ParamError(param, f"{where} is empty or inverted: x0 < x1 and y0 < y1, "
                                    f"each side at least {MIN_SIDE_PT:g} point")
        boxes.append((page, x0, y0, x1, y1))
    return boxes


def parse_terms(text: str | None, *, param: str = "terms") -> list[str]:
    """JSON text -> terms (none when absent). Raises ParamError naming the term by its
    position, never quoting it (terms are secret)."""
    if text is None:
        return []
    value = _json(text, param)
    if not isinstance(value, list) or not value:
        raise ParamError(param, "must be a non-empty JSON list of strings")
    if len(value) > MAX_TERMS:
        raise ParamError(param, f"has more than {MAX_TERMS} terms")
    for k, term in enumerate(value):
        if not isinstance(term, str) or not term.strip() or len(term) > MAX_TERM_CHARS:
            raise ParamError(param, f"term {k + 1} must be text, not blank, of at most "
                                    f"{MAX_TERM_CHARS} characters")
        if "\x00" in term:
            raise ParamError(param, f"term {k + 1} contains a NUL character")
    return value


def patterns(terms: list[str], *, regex: bool, case_sensitive: bool,
             param: str = "terms") -> list[re.Pattern]:
    """One compiled pattern per term (see the module doc). Raises ParamError."""
    flags = 0 if case_sensitive else re.IGNORECASE
    compiled = []
    span = 0
    for k, term in enumerate(terms):
        where = f"term {k + 1}"
        if not regex:
            source = r"\s*".join(_BREAKABLE.join(map(re.escape, word)) for word in term.split())
        else:
            source = term
            span += _refuse_bombs(source, flags, where, param)
            if span > MAX_CLASS_SPAN:
                raise ParamError(param, f"{where}: the character classes of the terms span "
                                        f"more than {MAX_CLASS_SPAN} characters")
        try:
            pattern = re.compile(source, flags)
        except (re.error, RecursionError, OverflowError):
            raise ParamError(param, f"{where} is not a valid regular expression") from None
        if pattern.fullmatch("") is not None:
            raise ParamError(param, f"{where} matches the empty text")
        compiled.append(pattern)
    return compiled


#: Between two letters of a plain term: a hyphen that breaks the word across lines, as
#: pypdf reads it ("-" and the line break), as PDFium does (U+FFFE, the break dropped),
#: or a soft hyphen (U+00AD). No nested repetition: linear to match.
_BREAKABLE = "(?:[-\u00ad\ufffe][ \t\r\n]*)?"

_REPEATS = {sre_constants.MAX_REPEAT, sre_constants.MIN_REPEAT,
            getattr(sre_constants, "POSSESSIVE_REPEAT", sre_constants.MAX_REPEAT)}
_BACKREFERENCES = {sre_constants.GROUPREF, sre_constants.GROUPREF_EXISTS,
                   getattr(sre_constants, "GROUPREF_IGNORE", sre_constants.GROUPREF)}


def _children(op, av) -> list:
    """The subpatterns of one parsed item (sre's own tuple shapes)."""
    if op == sre_constants.SUBPATTERN:
        return [av[-1]]
    if op in _REPEATS:
        return [av[2]]
    if op == sre_constants.BRANCH:
        return list(av[1])
    if op in (sre_constants.ASSERT, sre_constants.ASSERT_NOT):
        return [av[1]]
    if op == getattr(sre_constants, "ATOMIC_GROUP", None):
        return [av]
    if op == sre_constants.GROUPREF_EXISTS:
        return [p for p in av[1:] if p is not None]
    return []


def _refuse_bombs(source: str, flags: int, where: str, param: str) -> int:
    """ParamError for a backreference, or a repetition (more than once) of something
    that repeats or alternates: the shapes whose backtracking is exponential. Iterative;
    the pattern is at most MAX_TERM_CHARS long. Answers the code points below U+10000
    its character classes' ranges span (what compiling it costs: MAX_CLASS_SPAN)."""
    try:
        parsed = sre_parser.parse(source, flags)
    except (re.error, RecursionError, OverflowError):
        raise ParamError(param, f"{where} is not a valid regular expression") from None
    # (subpattern, inside a repetition?)
    stack = [(parsed, False)]
    span = 0
    while stack:
        subpattern, repeated = stack.pop()
        for op, av in subpattern:
            if op == sre_constants.IN:
                span += sum(min(item[1], _PLANE_END) - item[0] + 1 for kind, item in av
                            if kind == sre_constants.RANGE and item[0] <= _PLANE_END)
            if op in _BACKREFERENCES:
                raise ParamError(param, f"{where}: backreferences are not allowed")
            if repeated and (op in _REPEATS and av[1] > 1 or op == sre_constants.BRANCH):
                raise ParamError(param, f"{where} repeats a repetition or an alternation "
                                        "(catastrophic backtracking): not allowed")
            inner = repeated or (op in _REPEATS and av[1] > 1)
            stack.extend((child, inner) for child in _children(op, av))
    return span


#: The last code point of the plane the compiler walks range by range (it keeps the
#: rest of a range as one item).
_PLANE_END = 0xFFFF


def spans(pattern: re.Pattern, text: str) -> list[tuple[int, int]]:
    """(start, end) of every non-empty match of `pattern` in `text` (a zero-width match,
    as of "\\b", hides nothing and is skipped). The search and the leak check both use it."""
    return [m.span() for m in pattern.finditer(text) if m.end() > m.start()]


def parse_color(text: str) -> tuple[int, int, int]:
    """"RRGGBB" or "#RRGGBB" (already matched COLOR_PATTERN) -> (r, g, b)."""
    digits = text.lstrip("#")
    return int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16)


def check_redact(values: dict) -> None:
    """redact's Operation.check (SERVER): boxes and terms parse, the patterns compile and
    pass the bomb checks (that one of the two is given, Operation.any_of checks)."""
    parse_boxes(values["boxes"])
    terms = parse_terms(values["terms"])
    patterns(terms, regex=values["regex"], case_sensitive=values["case_sensitive"])
