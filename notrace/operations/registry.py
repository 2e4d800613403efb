"""Every operation, declared once. Imported by the SERVER (routes, CLI, catalogue,
OpenAPI) and by child.py (dispatch). Pure data: no PDF library is imported here."""
from __future__ import annotations

import dataclasses

from notrace.operations.boxes import BOX_PATTERN, MAX_POINTS, check_crop
from notrace.operations.formats import NAMES as FORMAT_NAMES
from notrace.operations.form_data import MAX_TEXT as FORM_TEXT, parse_values
from notrace.operations.outline_data import MAX_DEPTH, MAX_ITEMS, MAX_TEXT, parse_outline
from notrace.operations import ocr_engine
from notrace.operations.paper import GRIDS, ORIENTATIONS, PAPER_PATTERN, parse_paper
from notrace.operations.raster import (DEFAULT_PAGE_PIXELS, MAX_DPI, MAX_THUMBNAIL_WIDTH,
                                       MIN_DPI)
from notrace.operations.redact_params import (COLOR_PATTERN, DEFAULT_DPI as REDACT_DPI,
                                              MAX_BOXES, MAX_BOXES_TEXT, MAX_DPI as REDACT_MAX_DPI,
                                              MAX_TERM_CHARS, MAX_TERMS, MAX_TERMS_TEXT,
                                              check_redact)
from notrace.operations.spec import Inputs, Operation, Param, ParamError

__all__ = ["OPERATIONS", "MAX_MERGE_INPUTS", "MAX_IMAGE_INPUTS"]

MAX_MERGE_INPUTS = 50
MAX_IMAGE_INPUTS = 64   # the sandbox hands a job at most MAX_JOB_FDS (64) inputs
_PKG = "notrace.operations"

# Shared parameter declarations (one object each, reused: no twins).
PASSWORD = Param("password", "password",
                 "Password that opens encrypted inputs (user or owner password). "
                 "Outputs are written unencrypted unless the operation encrypts.",
                 default=None, max_length=127)
PAGES_ALL = Param("pages", "pages",
                  'Pages to act on: "1,3,5-9", "all", "-1" (last), "odd", "even", "4-".',
                  default="all")
PAGES_REQUIRED = Param("pages", "pages",
                       'Pages, in order (duplicates allowed): "3,1,1", "5-9", "-1", "odd", "4-".')
QUALITY = Param("quality", "integer", "JPEG or WebP quality (1 to 100; PNG is lossless).",
                default=85, minimum=1, maximum=100)
DPI = Param("dpi", "integer", "Resolution in pixels per inch (a 72-point page is dpi "
            "pixels wide); a page over NOTRACE_MAX_PAGE_PIXELS (default "
            f"{DEFAULT_PAGE_PIXELS // 1_000_000} megapixels) is refused.", default=150,
            minimum=MIN_DPI, maximum=MAX_DPI)
_POSITIONS = ("center", "top", "bottom", "top-left", "top-right", "bottom-left", "bottom-right")


def _meta(field: str) -> Param:
    return Param(field, "string",
                 f"New {field}; an empty value deletes it; absent leaves it unchanged.",
                 default=None, max_length=1024)


def _margin(side: str) -> Param:
    return Param(side, "number", f"Points to cut off the {side} of each selected page, as "
                 "the page is shown (after /Rotate).", default=0.0, minimum=0,
                 maximum=MAX_POINTS)


def _allow(what: str) -> Param:
    return Param(f"allow_{what}", "boolean", f"Permission to {what} the document.",
                 default=True)


def _check_text(values: dict) -> None:
    if values["layout"] == "boxes" and values["engine"] != "pdfium":
        raise ParamError("layout", "boxes needs engine=pdfium (pypdf gives no word boxes)")


def _check_safe(values: dict) -> None:
    """ocr needs Tesseract and the language's data here (ocr_engine, without importing
    it: the server only asks what is installed)."""
    if not values["ocr"]:
        return
    usable, why = ocr_engine.available()
    if not usable:
        raise ParamError("ocr", f"OCR is not available on this server: {why}")
    if values["language"] not in ocr_engine.languages():
        raise ParamError("language", "not an installed language: "
                         + ", ".join(ocr_engine.languages()))


def _check_encrypt(values: dict) -> None:
    """A restriction with an owner password equal to the user's would not hold (that
    password grants every permission). Without owner_password the child makes a random
    one (security.encrypt)."""
    restricted = not all(values[f"allow_{what}"] for what in ("print", "modify", "extract"))
    if restricted and values["owner_password"] == values["password"]:
        raise ParamError("owner_password", "must differ from password when a permission is "
                         "restricted (the owner password grants every permission); leave "
                         "it out to have a random one")


_ONE_PDF = Inputs()
#: attach takes files of any kind after its PDF: every type the server can tell apart.
ANY_FILE = ("application/pdf", "application/octet-stream", *sorted(FORMAT_NAMES))
_DECLARED = (
    Operation("merge", "Concatenate PDFs in the order they were given.",
              Inputs(min=2, max=MAX_MERGE_INPUTS),
              (Param("outline", "enum", "keep: each input's bookmarks (titles and pages), "
                     "moved to where its pages went; none: no bookmarks.", default="keep",
                     choices=("keep", "none")),
               Param("bookmark_per_file", "boolean", 'One bookmark per input, "Document 1", '
                     '"Document 2"... (filenames are never read), its own bookmarks under '
                     "it.", default=False),
               PASSWORD), "pdf",
              f"{_PKG}.pagework:merge"),
    Operation("split", 'Split into several PDFs: by ranges ("1-3,4-6"), every N pages, '
              "by size or at first-level bookmarks.",
              _ONE_PDF,
              (Param("ranges", "ranges", 'Groups, each one output: "1-3,4-6,7-".',
                     default=None),
               Param("every", "integer", "Pages per output document.", default=None,
                     minimum=1, maximum=100000),
               Param("max_mb", "number", "Consecutive pages in parts under this many MiB "
                     "(a page bigger than that is a part alone; the report lists such "
                     "parts).", default=None, minimum=0.01, maximum=10000),
               Param("by_bookmarks", "integer", "The outline level to cut at (1: one part per "
                     "first-level bookmark, from its page to the next one's).", default=None,
                     choices=(1,)),
               PASSWORD),
              "archive", f"{_PKG}.pagework:split",
              one_of=("ranges", "every", "max_mb", "by_bookmarks")),
    Operation("select", "Extract, reorder or duplicate pages.", _ONE_PDF,
              (PAGES_REQUIRED, PASSWORD), "pdf", f"{_PKG}.pagework:select"),
    Operation("delete", "Delete pages.", _ONE_PDF,
              (Param("pages", "pages", 'Pages to delete: "2,4-6", "-1", "even".'), PASSWORD),
              "pdf", f"{_PKG}.pagework:delete"),
    Operation("rotate", "Rotate pages clockwise by 90, 180 or 270 degrees (adds to /Rotate).",
              _ONE_PDF,
              (Param("angle", "integer", "Clockwise rotation in degrees.",
                     choices=(90, 180, 270)),
               PAGES_ALL, PASSWORD),
              "pdf", f"{_PKG}.pagework:rotate"),
    Operation("crop", "Crop pages by margins or to a box (sets the CropBox; content outside "
              "stays in the file).", _ONE_PDF,
              tuple(_margin(side) for side in ("left", "right", "top", "bottom"))
              + (Param("box", "string", 'The new box, "x0,y0,x1,y1" in PDF points of the '
                       "page's own coordinates (instead of margins).", default=None,
                       max_length=80, pattern=BOX_PATTERN),
                 Param("mode", "enum", "crop: set the CropBox (kept inside the MediaBox); "
                       "media: set the MediaBox too, so the page itself shrinks.",
                       default="crop", choices=("crop", "media")),
                 PAGES_ALL, PASSWORD),
              "pdf", f"{_PKG}.pagework:crop", check=check_crop),
    Operation("compress", "Lossless recompression (object streams, Flate, unused objects "
              "dropped); optional image downsampling.", _ONE_PDF,
              (Param("image_dpi", "integer",
                     "Downsample images drawn at more than this resolution (absent: "
                     "images untouched).", default=None, minimum=36, maximum=1200),
               Param("image_quality", "integer",
                     "JPEG quality of images re-encoded by image_dpi.", default=80,
                     minimum=10, maximum=95),
               PASSWORD),
              "pdf", f"{_PKG}.optimize:compress"),
    Operation("linearize", "Linearize for fast web view.", _ONE_PDF, (PASSWORD,), "pdf",
              f"{_PKG}.optimize:linearize"),
    Operation("repair", "Rebuild the document by reading and writing it again.", _ONE_PDF,
              (PASSWORD,), "pdf", f"{_PKG}.optimize:repair"),
    Operation("info", "Describe the document: pages, sizes, version, metadata, active "
              "content.", _ONE_PDF, (PASSWORD,), "json", f"{_PKG}.reading:info"),
    Operation("text", "Extract the text of each page.", _ONE_PDF,
              (PAGES_ALL,
               Param("engine", "enum", "pdfium: PDFium's extraction (C++, fast; can give "
                     "word boxes); pypdf: pypdf's (pure Python, the answers of earlier "
                     "versions).", default="pdfium", choices=("pdfium", "pypdf")),
               Param("layout", "enum", "text: each page's text; boxes: also its words, "
                     "each with its rectangle (x0, y0, x1, y1 in PDF points of the "
                     "page's own coordinates) and the page's box; needs engine=pdfium.",
                     default="text", choices=("text", "boxes")),
               PASSWORD),
              "json", f"{_PKG}.text:text", check=_check_text),
    Operation("metadata", "Set or delete document information (and XMP).", _ONE_PDF,
              tuple(_meta(f) for f in ("title", "author", "subject", "keywords", "creator",
                                       "producer"))
              + (Param("xmp", "enum", "sync: update the XMP metadata to match; drop: remove "
                       "the XMP metadata.", default="sync", choices=("sync", "drop")),
                 PASSWORD),
              "pdf", f"{_PKG}.metadata:metadata"),
    Operation("sanitize", "Remove metadata, JavaScript, actions, embedded files, "
              "thumbnails and XFA; answer a report of what was removed.", _ONE_PDF,
              (Param("remove_links", "boolean", "Also remove link annotations.",
                     default=False),
               PASSWORD),
              "pdf", f"{_PKG}.sanitize:sanitize"),
    Operation("encrypt", "Encrypt with AES-256.", _ONE_PDF,
              (Param("password", "password", "Password to open the result.", max_length=127),
               Param("owner_password", "password",
                     "Password that grants every permission (default: the same password; a "
                     "random one, never shown, when a permission is restricted).",
                     default=None, max_length=127),
               _allow("print"), _allow("modify"), _allow("extract"),
               Param("current_password", "password",
                     "Password that opens the input, if it is already encrypted.",
                     default=None, max_length=127)),
              "pdf", f"{_PKG}.security:encrypt", check=_check_encrypt),
    Operation("decrypt", "Remove encryption, given the password.", _ONE_PDF,
              (Param("password", "password", "User or owner password.", max_length=127),),
              "pdf", f"{_PKG}.security:decrypt"),
    Operation("watermark", "Stamp text over pages (Helvetica).", _ONE_PDF,
              (Param("text", "string", "Text of the watermark (Latin-1 characters; others "
                     "print as ?).", max_length=200),
               Param("size", "number", "Font size in points.", default=48.0, minimum=4,
                     maximum=400),
               Param("opacity", "number", "0 (invisible) to 1 (opaque).", default=0.3,
                     minimum=0, maximum=1),
               Param("angle", "number", "Counter-clockwise angle in degrees.", default=45.0,
                     minimum=-360, maximum=360),
               Param("position", "enum", "Where on the page.", default="center",
                     choices=_POSITIONS),
               PAGES_ALL, PASSWORD),
              "pdf", f"{_PKG}.stamp:watermark"),
    Operation("number", "Add page numbers.", _ONE_PDF,
              (Param("format", "string", 'Label text: "{n}" is the number, "{total}" the '
                     'page count, e.g. "{n} / {total}".', default="{n}", max_length=64,
                     pattern=r"^(?:[^{}]|\{n\}|\{total\})*$"),
               Param("position", "enum", "Where on the page.", default="bottom",
                     choices=_POSITIONS),
               Param("start", "integer", "Number of the first numbered page.", default=1,
                     minimum=-1000000, maximum=1000000),
               Param("size", "number", "Font size in points.", default=10.0, minimum=4,
                     maximum=100),
               PAGES_ALL, PASSWORD),
              "pdf", f"{_PKG}.stamp:number"),
    Operation("flatten", "Flatten annotations and form fields into page content.", _ONE_PDF,
              (PASSWORD,), "pdf", f"{_PKG}.flatten:flatten"),
    Operation("images", "Extract embedded images (PNG or JPEG), named by page and index.",
              _ONE_PDF, (PAGES_ALL, PASSWORD), "archive", f"{_PKG}.images:images"),
    Operation("from-images", "Make a PDF with one page per JPEG or PNG image, in order.",
              Inputs(min=1, max=MAX_IMAGE_INPUTS, media_types=("image/jpeg", "image/png")),
              (Param("page_size", "enum", "image: page the size of the image (at its DPI, "
                     "or 72); a4/letter: image fitted on that page.", default="image",
                     choices=("image", "a4", "letter")),),
              "pdf", f"{_PKG}.images:from_images"),
    Operation("render", "Render pages to images (PNG, JPEG or WebP), a zip of "
              "page-0001.png, ... even for one page.", _ONE_PDF,
              (PAGES_ALL,
               DPI,
               Param("format", "enum", "Image format.", default="png",
                     choices=("png", "jpeg", "webp")),
               QUALITY, PASSWORD),
              "archive", f"{_PKG}.render:render"),
    Operation("thumbnail", "One page as a PNG or JPEG image of the given width.", _ONE_PDF,
              (Param("page", "integer", "The page (1 is the first).", default=1, minimum=1,
                     maximum=1_000_000),
               Param("width", "integer", "Width in pixels (the height keeps the page's "
                     "proportions).", default=256, minimum=1, maximum=MAX_THUMBNAIL_WIDTH),
               Param("format", "enum", "Image format.", default="png",
                     choices=("png", "jpeg")),
               QUALITY, PASSWORD),
              "image", f"{_PKG}.render:thumbnail"),
    Operation("safe", "Dangerzone's two-phase conversion: every page drawn to pixels in "
              "one sandboxed child, the pixels checked by the server, then a new PDF "
              "built from the pixels alone in a fresh child that never saw the document "
              "(one image per page; no links, forms, scripts, attachments or metadata "
              "survive; text only with ocr).", _ONE_PDF,
              (DPI,
               Param("compression", "enum", "flate: lossless page images (sharp text; "
                     "white compresses to almost nothing); jpeg: at quality, several times "
                     "smaller for scans and photographs.", default="flate",
                     choices=("flate", "jpeg")),
               QUALITY,
               Param("ocr", "boolean", "Add an invisible text layer recognised (Tesseract) "
                     "from the pixels, so the result stays searchable; needs the extra "
                     "notrace[ocr].", default=False),
               Param("language", "string", "Tesseract language of the text, with ocr "
                     '("eng"; installed languages only).', default="eng", max_length=32,
                     pattern=r"^[a-z]{3}(?:_[a-z]{2,8})?$"),
               PASSWORD),
              "pdf", f"{_PKG}.safe:safe", check=_check_safe),
)



def _paper(name: str, what: str, default: str | None) -> Param:
    return Param(name, "string", f"{what}: A3, A4, A5, Letter, Legal (any case), or "
                 'width x height in millimetres or points ("210x297mm", "595x842pt").',
                 default=default, max_length=24, pattern=PAPER_PATTERN, example="A4")


def _check_paper(*names: str):
    """An Operation.check: each named paper size parses (sides within the PDF limits)."""
    def check(values: dict) -> None:
        for name in names:
            if values[name] is not None:
                parse_paper(values[name], param=name)
    return check


WIDTH_PATTERN = r"^[0-9]{1,5}(?:\.[0-9]{1,3})?%?$"


def _check_stamp_image(values: dict) -> None:
    if (values["x"] is None) != (values["y"] is None):
        raise ParamError("x" if values["x"] is None else "y", "give x and y together")
    if float(values["width"].rstrip("%")) <= 0:
        raise ParamError("width", "must be more than 0")


def _check_values(values: dict) -> None:
    parse_values(values["values"])


def _check_outline(values: dict) -> None:
    parse_outline(values["bookmarks"])


_ORIENTATION = Param("orientation", "enum", "Orientation of the paper size: auto (a named "
                     "size turned as the page is, or as suits the layout; WxH as "
                     "written), portrait or landscape.",
                     default="auto", choices=ORIENTATIONS)
_MARGIN = Param("margin", "number", "Points of space around the sheet's edges and between "
                "its pages.", default=0.0, minimum=0, maximum=200)
_BORDER = Param("border", "boolean", "Draw a thin line around each page placed.",
                default=False)
_TWO_PDFS = Inputs(min=2, max=2)
_COMPOSING = (
    Operation("overlay", "Draw the pages of a second PDF (the second file) over or under "
              "the pages of the first: letterheads, backgrounds.", _TWO_PDFS,
              (Param("mode", "enum", "overlay: drawn over the page's content; underlay: "
                     "under it.", default="overlay", choices=("overlay", "underlay")),
               PAGES_ALL,
               Param("repeat", "enum", "When the second PDF has fewer pages than are "
                     "selected: last (its last page again), cycle (from its first page "
                     "again) or none (the rest get nothing).", default="last",
                     choices=("last", "cycle", "none")),
               PASSWORD),
              "pdf", f"{_PKG}.compose:overlay"),
    Operation("scale", "Resize pages to a paper size or by a factor; content, annotations "
              "and boxes stay in place relative to the page.", _ONE_PDF,
              (_paper("size", "Target size, as the page is shown", None),
               Param("factor", "number", "Scale factor instead of a size (2: twice as "
                     "wide and high).", default=None, minimum=0.01, maximum=100),
               Param("fit", "enum", "How the page fills the size: contain (whole page, "
                     "centred, aspect kept), cover (size filled, aspect kept, overflow "
                     "cut), stretch (both sides fitted).", default="contain",
                     choices=("contain", "cover", "stretch")),
               _ORIENTATION, PAGES_ALL, PASSWORD),
              "pdf", f"{_PKG}.scale:scale", one_of=("size", "factor"),
              check=_check_paper("size")),
    Operation("nup", "Several pages on each sheet (N-up).", _ONE_PDF,
              (Param("per_sheet", "integer", "Pages per sheet.", default=4,
                     choices=tuple(GRIDS)),
               Param("order", "enum", "rows: left to right, then down; columns: top to "
                     "bottom, then right.", default="rows", choices=("rows", "columns")),
               _paper("sheet", "Sheet size", "A4"), _ORIENTATION, _MARGIN, _BORDER,
               PASSWORD),
              "pdf", f"{_PKG}.compose:nup", check=_check_paper("sheet")),
    Operation("booklet", "Impose for saddle-stitch printing: two pages per sheet side in "
              "folding order, blank pages added to a multiple of four.", _ONE_PDF,
              (_paper("sheet", "Sheet size (laid landscape)", "A4"), _MARGIN, _BORDER,
               PASSWORD),
              "pdf", f"{_PKG}.compose:booklet", check=_check_paper("sheet")),
    Operation("stamp-image", "Draw a PNG or JPEG (the second file) on pages: at one of 9 "
              "positions or at x, y; width in points or percent of the page.",
              Inputs(min=2, max=2, media_types=("application/pdf", "image/png",
                                                "image/jpeg")),
              (Param("position", "enum", "Where on the page, 24 points inside its edges "
                     "(unless x and y are given).", default="center",
                     choices=_POSITIONS + ("left", "right")),
               Param("x", "number", "Points from the left edge of the page as shown to "
                     "the image's left side (with y; instead of position).", default=None,
                     minimum=-MAX_POINTS, maximum=MAX_POINTS),
               Param("y", "number", "Points from the bottom edge of the page as shown to "
                     "the image's bottom (with x).", default=None, minimum=-MAX_POINTS,
                     maximum=MAX_POINTS),
               Param("width", "string", 'Width of the image: points ("144") or percent of '
                     'the page\'s width ("25%"); the height keeps the aspect.',
                     default="25%", max_length=12, pattern=WIDTH_PATTERN),
               Param("opacity", "number", "0 (invisible) to 1 (opaque).", default=1.0,
                     minimum=0, maximum=1),
               PAGES_ALL, PASSWORD),
              "pdf", f"{_PKG}.imagestamp:stamp_image", check=_check_stamp_image),
    Operation("form-fields", "The form's fields as JSON: name, type, value, options, "
              "required, read-only (and for choices multiselect: a multi-select list "
              "box's value is the list of its selected options).", _ONE_PDF, (PASSWORD,),
              "json",
              f"{_PKG}.forms:form_fields"),
    Operation("fill-form", "Fill form fields from JSON; optionally flatten them into the "
              "pages.", _ONE_PDF,
              (Param("values", "string", '{"field name": value}: text for text fields, '
                     "an option for radio groups and choices, a list of options for "
                     "multi-select list boxes, true/false for checkboxes. A name the form "
                     "lacks or a value outside a field's options is a 400 naming the "
                     "field.", max_length=FORM_TEXT, example="{}"),
               Param("flatten", "boolean", "Draw the fields (and every annotation) into "
                     "the pages, as flatten does.", default=False),
               PASSWORD),
              "pdf", f"{_PKG}.forms:fill_form", check=_check_values),
    Operation("attachments", "List the embedded files as JSON, or extract them as a zip.",
              _ONE_PDF,
              (Param("extract", "boolean", "true: answer a zip of the files (named "
                     "attachment-<k>-<name>), the list as the report.", default=False),
               PASSWORD),
              "json_or_archive", f"{_PKG}.attachments:attachments"),
    Operation("attach", "Embed files (every file after the first, a PDF) in the PDF.",
              Inputs(min=2, max=MAX_MERGE_INPUTS, media_types=ANY_FILE),
              (Param("names", "string", "Comma-separated names of the files, in order, "
                     "reduced to letters, digits, dot, dash and underscore (uploads' own "
                     "filenames are never read); absent: attachment-1, attachment-2...",
                     default=None, max_length=4000),
               PASSWORD),
              "pdf", f"{_PKG}.attachments:attach"),
    Operation("remove-annotations", "Remove annotations: every one but links, or those of "
              "the subtypes named.", _ONE_PDF,
              (Param("types", "string", 'Annotation subtypes to remove, any case: '
                     '"Highlight,Ink,Link" (absent: all but Link). Removed widgets leave '
                     "the form too.", default=None, max_length=600,
                     pattern=r"^[A-Za-z0-9]{1,32}(?:,[A-Za-z0-9]{1,32}){0,15}$"),
               PAGES_ALL, PASSWORD),
              "pdf", f"{_PKG}.cleanup:remove_annotations"),
    Operation("remove-blank", "Drop pages that draw nothing (no text, image or painted "
              "path, in their content or the forms it draws; no annotation but links); "
              "the report lists them.", _ONE_PDF,
              (Param("pages", "pages", "Pages that may be dropped when blank.",
                     default="all"), PASSWORD),
              "pdf", f"{_PKG}.cleanup:remove_blank"),
    Operation("bookmarks", "The outline as JSON: title, page, level and children of each "
              "bookmark.", _ONE_PDF, (PASSWORD,), "json", f"{_PKG}.outline:bookmarks"),
    Operation("set-bookmarks", "Write the outline from JSON (the form bookmarks answers).",
              _ONE_PDF,
              (Param("bookmarks", "string", 'A list of {"title", "page" (from 1, or null), '
                     '"children"} ("level" optional), or the answer of bookmarks; at most '
                     f"{MAX_ITEMS} items, {MAX_DEPTH} levels.", max_length=MAX_TEXT,
                     example='[{"title": "Start", "page": 1}]'),
               Param("mode", "enum", "replace the outline, or append to it.",
                     default="replace", choices=("replace", "append")),
               PASSWORD),
              "pdf", f"{_PKG}.outline:set_bookmarks",
              check=_check_outline),
)

_REDACTING = (
    Operation("redact", "True redaction: pages with a term or box are drawn to pixels, "
              "painted over and rebuilt as images; metadata, annotations, attachments, "
              "bookmarks and forms go; then a leak check re-reads every page's text with "
              "PDFium and pypdf (422 redaction-incomplete if anything survives).", _ONE_PDF,
              (Param("terms", "string", f"JSON list of at most {MAX_TERMS} texts to redact "
                     f"wherever PDFium finds them (at most {MAX_TERM_CHARS} characters "
                     "each; words match across any whitespace). Secret: never echoed, "
                     "logged or reported; not in a query string.", default=None,
                     max_length=MAX_TERMS_TEXT, secret=True, example='["secret"]'),
               Param("boxes", "string", 'JSON list of {"page", "x0", "y0", "x1", "y1"} '
                     "(page from 1; PDF points of the page's own unrotated coordinates, as "
                     f"text's layout=boxes gives them); at most {MAX_BOXES}.", default=None,
                     max_length=MAX_BOXES_TEXT,
                     example='[{"page": 1, "x0": 72, "y0": 72, "x1": 144, "y1": 144}]'),
               Param("regex", "boolean", "Terms are Python regular expressions (no "
                     "backreferences, no repeated repetitions such as (a+)+).",
                     default=False),
               Param("case_sensitive", "boolean", "Match terms with their case.",
                     default=False),
               Param("all_pages", "boolean", "Rebuild every page as an image, not only "
                     "those with a redaction.", default=False),
               Param("dpi", "integer", "Resolution of the rebuilt pages.",
                     default=REDACT_DPI, minimum=MIN_DPI, maximum=REDACT_MAX_DPI),
               Param("color", "string", 'Paint colour, "RRGGBB" (hex).', default="000000",
                     max_length=7, pattern=COLOR_PATTERN, example="000000"),
               PASSWORD),
              "pdf", f"{_PKG}.redact:redact", any_of=("terms", "boxes"), check=check_redact),
)

#: All operations, by name (insertion order is the catalogue's order).
OPERATIONS: dict[str, Operation] = {op.name: op for op in _DECLARED + _COMPOSING
                                     + _REDACTING}

#: ocr exists only where its extra is installed (ocr_engine.languages(): the catalogue,
#: OpenAPI, the page and the CLI list it only then; /ready says why it is missing).
OCR_LANGUAGES = ocr_engine.languages()
if OCR_LANGUAGES:
    OPERATIONS["ocr"] = Operation(
        "ocr", "Add an invisible, searchable text layer recognised by Tesseract to "
        "scanned pages, keeping the pages as they are.", _ONE_PDF,
        (PAGES_ALL,
         Param("language", "enum", "Language of the text (the installed Tesseract "
               "languages).", default="eng" if "eng" in OCR_LANGUAGES else OCR_LANGUAGES[0],
               choices=OCR_LANGUAGES),
         dataclasses.replace(DPI, default=300, description="Resolution the pages are "
                             "drawn at for recognition (300 suits text of 8 points and "
                             "more; lower is faster); " + DPI.description.split("; ", 1)[1]),
         Param("skip_text", "boolean", "Leave the pages on which PDFium finds text already "
               "as they are (a scanned page has none).", default=False),
         PASSWORD),
        "pdf", f"{_PKG}.ocr:ocr")
