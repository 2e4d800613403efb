"""redact's leak check: the result is read again, as a client's tools would, before it
may be answered. Runs in the CHILD, on the bytes redact is about to answer.

Both engines read the text of EVERY page of the result: PDFium (what `text` answers, and
the engine the search used) and pypdf (another parser, which reads some text PDFium
does not: glyphs under /ActualText, text drawn at zero size or zero scale). The job fails
with "redaction_incomplete" (422) when
- a term's pattern (redact_params.spans, as the search matched) still matches a page's
  text in either engine;
- a rebuilt page has any text at all in either engine (it should be one image);
- PDFium places a character of the result inside a box of that page (by its loose box);
- an unrebuilt page's content streams (and those it paints: forms, tiling patterns,
  Type 3 glyph procedures, soft masks) hold a term in their bytes or in any string
  operand (_stream_texts): text no engine reads but the file still holds (a
  content-stream comment, a marked-content /Alt or /E property, inline or named in the
  resources' /Properties, codes whose font shows other glyphs), or text drawn where
  neither engine looks (a pattern cell, a glyph);
- pypdf cannot read a page's text at all (a damaged content stream PDFium reads): the
  check fails closed, and the detail suggests all_pages=true, which rebuilds that page.
The detail names the page and the engine, never the term or the text found.
"""
from __future__ import annotations

import io
import re

import pikepdf
import pypdf
import pypdfium2.raw as pdfium_c

from notrace.operations import pdfium
from notrace.operations._common import OUR_BUGS
from notrace.operations.problems import Problem
from notrace.operations.redact_params import RedactBox, spans
from notrace.operations.redact_search import Budget, Rect, char_box, page_chars

__all__ = ["check_result"]


def _overlaps(a: Rect, b: Rect) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _leak(page: int, engine: str, what: str) -> Problem:
    return Problem("redaction_incomplete", f"page {page}: {what} in {engine}'s text of the "
                   "result; nothing was answered")


def _check_text(text: str, page: int, engine: str, patterns: list[re.Pattern],
                rebuilt: bool) -> None:
    if rebuilt and text.strip():
        raise _leak(page, engine, "a rebuilt page still has text")
    if any(spans(pattern, text) for pattern in patterns):
        raise _leak(page, engine, "a term still matches")


#: Streams the byte check follows from one page besides its contents (form XObjects,
#: patterns, glyph procedures, soft masks: hostile files nest and share them). A page
#: that draws more fails the check closed: what is not read is not known to be clean.
MAX_FORMS_PER_PAGE = 10_000


def _drawn_by(resources):
    """(stream, its resources) of every content stream a content stream with these
    resources may paint, besides itself: form XObjects, tiling patterns (a pattern cell's
    text is drawn but is no page text to PDFium or pypdf), Type 3 glyph procedures (the
    glyph is one character to them, whatever its procedure draws) and soft masks' groups;
    and (dictionary, None) of every named property list (BDC /Span /P0: its /Alt, /E or
    /ActualText is the content's text as much as an inline one)."""
    if not isinstance(resources, pikepdf.Dictionary):
        return
    for key in ("/XObject", "/Pattern", "/Font", "/ExtGState", "/Properties"):
        held = resources.get(key)
        if not isinstance(held, pikepdf.Dictionary):
            continue
        for item in held.values():
            if key == "/XObject":
                if isinstance(item, pikepdf.Stream) and item.get("/Subtype") == "/Form":
                    yield item, item.get("/Resources")
            elif key == "/Pattern":
                if isinstance(item, pikepdf.Stream):  # a tiling pattern (type 2: no content)
                    yield item, item.get("/Resources")
            elif key == "/Font":
                procs = item.get("/CharProcs") if isinstance(item, pikepdf.Dictionary) else None
                if isinstance(procs, pikepdf.Dictionary):
                    for proc in procs.values():
                        if isinstance(proc, pikepdf.Stream):
                            yield proc, item.get("/Resources")
            elif key == "/Properties":
                if isinstance(item, pikepdf.Dictionary):
                    yield item, None
            else:
                mask = item.get("/SMask") if isinstance(item, pikepdf.Dictionary) else None
                group = mask.get("/G") if isinstance(mask, pikepdf.Dictionary) else None
                if isinstance(group, pikepdf.Stream):
                    yield group, group.get("/Resources")


def _content_streams(page: pikepdf.Page, number: int):
    """The page's content streams and those it may paint, and the property lists they
    may name (_drawn_by), each once; Problem "redaction_incomplete" past
    MAX_FORMS_PER_PAGE of them."""
    contents = page.obj.get("/Contents")
    stack = list(contents) if isinstance(contents, pikepdf.Array) else [contents]
    resources = [page.obj.get("/Resources")]
    seen: set[tuple[int, int]] = set()
    while stack or resources:
        while stack:
            stream = stack.pop()
            if isinstance(stream, (pikepdf.Stream, pikepdf.Dictionary)):
                yield stream
        for stream, held in _drawn_by(resources.pop() if resources else None):
            if stream.is_indirect:
                if stream.objgen in seen:
                    continue
                seen.add(stream.objgen)
            if len(seen) > MAX_FORMS_PER_PAGE:
                raise Problem("redaction_incomplete", f"page {number}: it draws more than "
                              f"{MAX_FORMS_PER_PAGE} forms, patterns and glyphs, too many to "
                              "confirm they are clean; all_pages=true rebuilds it")
            stack.append(stream)
            resources.append(held)


def _stream_texts(stream: pikepdf.Stream) -> list[str]:
    """What a content stream holds as text, whether or not anything shows it: its bytes
    (comments), every string operand (inline property lists and arrays too; each TJ
    array also joined), each read as Latin-1, as PDF text (UTF-16 with its mark) and
    without NUL bytes (UTF-16 without one). Iterative."""
    raw = stream.read_bytes()
    found: list[bytes] = [raw]
    texts: list[str] = []
    for operands, _operator in pikepdf.parse_content_stream(stream):
        stack = list(operands)
        while stack:
            item = stack.pop()
            if isinstance(item, pikepdf.String):
                found.append(bytes(item))
                texts.append(str(item))
            elif isinstance(item, pikepdf.Array):
                stack.extend(item)
                found.append(b"".join(bytes(v) for v in item if isinstance(v, pikepdf.String)))
            elif isinstance(item, pikepdf.Dictionary):
                stack.extend(item.values())
    return _readings(found, texts)


def _property_texts(properties: pikepdf.Dictionary) -> list[str]:
    """The strings of a named property list, read as _stream_texts reads operands; only
    its direct parts are followed (a reference may lead anywhere in the document)."""
    found: list[bytes] = []
    texts: list[str] = []
    stack = list(properties.values())
    while stack:
        item = stack.pop()
        if isinstance(item, pikepdf.String):
            found.append(bytes(item))
            texts.append(str(item))
        elif isinstance(item, (pikepdf.Array, pikepdf.Dictionary)) and not item.is_indirect:
            stack.extend(item.values() if isinstance(item, pikepdf.Dictionary) else item)
    return _readings(found, texts)


def _readings(found: list[bytes], texts: list[str]) -> list[str]:
    """`texts` and each of `found` read as Latin-1, with and without its NUL bytes."""
    for data in found:
        texts += [data.decode("latin-1"), data.replace(b"\x00", b"").decode("latin-1")]
    return texts


def _check_bytes(data: bytes, patterns: list[re.Pattern], rebuilt: set[int]) -> None:
    clean: set[tuple[int, int]] = set()  # read already (fonts and forms pages share)
    with pikepdf.open(io.BytesIO(data)) as pdf:
        for index, page in enumerate(pdf.pages):
            if index in rebuilt:
                continue
            for stream in _content_streams(page, index + 1):
                if stream.is_indirect and stream.objgen in clean:
                    continue
                try:
                    texts = (_stream_texts(stream) if isinstance(stream, pikepdf.Stream)
                             else _property_texts(stream))
                except (MemoryError, *OUR_BUGS):
                    raise
                except Exception:  # noqa: BLE001  undecodable: fail closed, as for pypdf
                    raise Problem("redaction_incomplete", f"page {index + 1}: a content "
                                  "stream cannot be read, so nothing confirms it is "
                                  "clean; all_pages=true rebuilds it") from None
                if any(spans(pattern, text) for pattern in patterns for text in texts):
                    raise Problem("redaction_incomplete", f"page {index + 1}: a term "
                                  "still matches in the bytes of its content (text no "
                                  "reader shows); all_pages=true rebuilds it")
                if stream.is_indirect:
                    clean.add(stream.objgen)


def check_result(data: bytes, *, patterns: list[re.Pattern], boxes: list[RedactBox],
                 rebuilt: set[int], max_pages: int) -> None:
    """Raise Problem("redaction_incomplete") when the result `data` leaks (module doc).
    `rebuilt` holds the 0-based indexes of the pages made images."""
    boxes_of: dict[int, list[Rect]] = {}
    for number, *box in boxes:
        boxes_of.setdefault(number - 1, []).append(tuple(box))
    budget, rect = Budget(), pdfium_c.FS_RECTF()
    with pdfium.open_document(memoryview(data), password=None,
                              max_pages=max_pages) as document:
        for index in range(len(document)):
            with pdfium.page(document, index) as (_page, text_page):
                chars = page_chars(text_page, index + 1, budget)
                _check_text(chars, index + 1, "PDFium", patterns, index in rebuilt)
                for i in range(len(chars)) if index in boxes_of else ():
                    box = char_box(text_page.raw, i, rect)
                    if box is not None and any(_overlaps(box, b) for b in boxes_of[index]):
                        raise _leak(index + 1, "PDFium", "a character inside a box")
    reader = pypdf.PdfReader(io.BytesIO(data), strict=False)
    budget = Budget()
    for index, page in enumerate(reader.pages):
        if not patterns and index not in rebuilt:
            continue  # boxes only: nothing to match on a page left as it was
        try:
            text = page.extract_text()
        except (MemoryError, *OUR_BUGS):
            raise
        except Exception:  # noqa: BLE001  a damaged content stream PDFium got through
            raise Problem("redaction_incomplete", f"page {index + 1}: pypdf cannot read "
                          "its text, so nothing confirms it is clean; all_pages=true "
                          "rebuilds it too") from None
        budget.take(index + 1, len(text))
        _check_text(text, index + 1, "pypdf", patterns, index in rebuilt)
    if patterns:
        _check_bytes(data, patterns, rebuilt)
