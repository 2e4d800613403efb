"""Entry module of the CHILD: `run(inputs, params)` is what a confined child calls.

Imported ONCE in the fork server, before any child exists. Inside a child there is no
filesystem (Landlock), so everything any operation may need is imported here, at module
import: the operation modules, and the submodules pikepdf, pypdf, Pillow and the codec
machinery would otherwise import lazily on first use. `warm_up()` then runs a tiny merge
and text extraction in-process to prime the rest (caches, first-use imports we missed).
tests/operations/test_confinement.py runs every operation with imports and file opens
forbidden after this module is imported, which is how the list below is kept complete.

Contract: `run` never raises for a document problem. It returns `[manifest_json, body]`
where body is the FINAL answer (one PDF, a zip of the parts, JSON: see body.py) and the
manifest is {"media_type": ..., "filename": ..., "report": {...}, "files": N}; or just
`[manifest_json]` with {"problem": CODE, "detail": TEXT} (CODE from problems.PROBLEMS,
TEXT our own words), plus "step" (index) and "operation" when a pipeline's step failed
(params {"operation": "pipeline", "steps": [...]}: pipeline.py runs them in this child).
The phases of `safe` ({"operation": "safe-pixels" | "safe-build" | "safe-merge"}: see
operations/safe.py and notrace/safe.py) are jobs of their own, answered the same way. Every PDF answered has been reopened (body.check_pdfs). Library warnings and log records are silenced (they quote document
content). MemoryError is re-raised (the sandbox classifies the job as "memory"), and so
are exceptions that mean a bug of ours rather than a bad document (see _common.OUR_BUGS).
"""
from __future__ import annotations

# --- Everything the operations use, imported before confinement. --------------------
import binascii  # noqa: F401
import codecs
import collections  # noqa: F401
import encodings
import importlib
import io
import json
import logging
import math  # noqa: F401
import pkgutil
import struct  # noqa: F401
import warnings
import zipfile  # noqa: F401
import zlib  # noqa: F401

import lxml.etree  # noqa: F401  (pikepdf's XMP parser)
import PIL.Image
import PIL.ImageCms  # noqa: F401  (images with ICC profiles)
import PIL.ImageFile  # noqa: F401
import PIL.Jpeg2KImagePlugin  # noqa: F401  (JPX images)
import PIL.JpegImagePlugin  # noqa: F401
import PIL.PngImagePlugin  # noqa: F401
import PIL.TiffImagePlugin  # noqa: F401  (pikepdf hands CCITT images to Pillow as TIFF)
import PIL.WebPImagePlugin  # noqa: F401  (render's webp format)
import pikepdf
import pypdf
import pypdfium2  # noqa: F401  (loads libpdfium.so and initialises PDFium: see pdfium.py)

from notrace.operations import ocr_engine
from notrace.operations import (active, attachments, cleanup, compose,  # noqa: F401
                                flatten, forms, images, imagestamp, metadata, optimize,
                                outline, pagework, pdfium, reading, render, safe,
                                sanitize, scale, security, stamp, text)
from notrace.operations._common import OUR_BUGS, Output, configure_libraries
from notrace.operations.body import check_pdfs, final_answer
from notrace.operations.pages import PageRangeError, SelectionTooLarge
from notrace.operations.pipeline import run_steps
from notrace.operations.problems import Problem
from notrace.operations.raster import PixelLimits
from notrace.operations.registry import OPERATIONS


def _import_all_submodules(package) -> None:
    """Import every submodule of a library: pikepdf and pypdf import many lazily (image
    transcoding, JBIG2, page copying, font metrics, crypt providers...). Modules whose
    optional dependency is missing fail to import here and stay absent, exactly as they
    would later, without touching the filesystem inside the child."""
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + ".",
                                      onerror=lambda _name: None):
        try:
            importlib.import_module(info.name)
        except Exception:  # noqa: BLE001  optional dependency not installed
            pass


_import_all_submodules(pikepdf)
_import_all_submodules(pypdf)

# Codecs: a lookup by name imports encodings.<name> from disk the first time, and the
# libraries look up many (PDF text strings, font encodings, XMP, and CJK codecs such as
# gbk or shift_jis in pypdf's text extraction): import them all (about 120 small modules).
_import_all_submodules(encodings)
for _name in ("ascii", "latin-1", "utf-8", "utf-16-be", "cp1252", "charmap"):
    codecs.lookup(_name)  # and prime the lookup cache of the common ones

# Pillow imports all its format plugins on the first open or save it cannot serve with
# the five preloaded ones (pikepdf's image decoding does that on some corpus files): do
# it now. Our own opens pass formats= explicitly and never depend on this.
PIL.Image.init()
# The libraries' log records quote document content (font names, object dumps) and would
# reach the job's stderr: a zero-trace service keeps them quiet.
for _logger in ("pypdf", "pikepdf", "PIL", "pypdfium2"):
    logging.getLogger(_logger).setLevel(logging.CRITICAL + 1)

#: Fixed detail for every library failure on a document.
MALFORMED_DETAIL = "the document is damaged or uses something this service cannot process"


def _resolve(spec: str):
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


#: name -> implementation, resolved now (the modules are already imported above).
FUNCTIONS = {name: _resolve(op.function) for name, op in OPERATIONS.items()}
#: The `operation` of a pipeline job (its steps are in params["steps"]).
PIPELINE = "pipeline"
configure_libraries()
pdfium.configure()
# Tesseract initialised now, with its data read (a child has no filesystem): at import,
# like the libraries above, so that OCR works whether or not the fork server runs warm_up.
ocr_engine.preload()


def _manifest(value: dict) -> bytes:
    return json.dumps(value, ensure_ascii=True, sort_keys=True).encode()


def _problem(code: str, detail: str, cause: BaseException | None = None,
             failed: dict | None = None) -> list[bytes]:
    value = {"problem": code, "detail": detail, **(failed or {})}
    if cause is not None:  # the exception's class name only: never its message
        value["cause"] = type(cause).__name__
    return [_manifest(value)]


def _operate(inputs: list[memoryview], params: dict, failed: dict) -> tuple[str, Output]:
    """(the answering operation's name, its checked Output): one operation, or the steps
    of a pipeline (pipeline.py), which names its running step in `failed`."""
    name = params["operation"]
    if name == PIPELINE:
        return run_steps(inputs, params, functions=FUNCTIONS, failed=failed)
    if name in safe.PHASES:   # one phase of safe (notrace/safe.py runs them)
        output = safe.PHASES[name](inputs, params)
        check_pdfs(output, None)
        return "safe", output
    limits = {"max_pages": params["max_pages"]}
    if "pixel_limits" in params:   # the operations that draw pages (jobs.job_params)
        limits["pixel_limits"] = PixelLimits.from_dict(params["pixel_limits"])
    output = FUNCTIONS[name](inputs, params["params"], **limits)
    check_pdfs(output, params["params"].get("password"))
    return name, output


def run(inputs: list[memoryview], params: dict) -> list[bytes | memoryview]:
    """Run one operation on validated params (Operation.validate's output), or a
    pipeline's steps ({"operation": "pipeline", "steps": [...]}). Child side."""
    steps = params["steps"] if params["operation"] == PIPELINE else [params]
    for step in steps:  # KeyError: the server sent an unknown name, our bug
        if step["operation"] not in safe.PHASES:
            FUNCTIONS[step["operation"]]
    failed: dict = {}  # a pipeline's running step: {"step": index, "operation": name}
    try:
        # Warnings quote document content too, and printing one reads the source file
        # of the warning line (linecache), which confinement forbids.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            name, output = _operate(inputs, params, failed)
    except MemoryError:
        raise
    except Problem as problem:
        return _problem(problem.code, problem.detail, failed=failed)
    except PageRangeError as exc:
        return _problem("page_out_of_range", str(exc), failed=failed)
    except SelectionTooLarge as exc:
        return _problem("too_many_pages", str(exc), failed=failed)
    except PIL.Image.DecompressionBombError as exc:
        return _problem("too_large", "an image has more pixels than allowed", exc, failed)
    except OUR_BUGS:
        raise
    except Exception as exc:  # noqa: BLE001  library errors on hostile input (see module doc)
        return _problem("malformed", MALFORMED_DETAIL, exc, failed)
    # Our own code from here on: an exception is a bug (the job ends as "error").
    manifest, body = final_answer(OPERATIONS[name], output)
    return [_manifest(manifest), body]


def sample_pdf(pages: int) -> bytes:
    """A PDF of `pages` text pages built from nothing: the warm-up's and the canary's
    input (notrace.canary), never a user's bytes."""
    pdf = pikepdf.new()
    font = pdf.make_indirect(pikepdf.Dictionary(Type=pikepdf.Name.Font,
                                                Subtype=pikepdf.Name.Type1,
                                                BaseFont=pikepdf.Name.Helvetica))
    for n in range(1, pages + 1):
        page = pdf.add_blank_page()
        page.obj.Resources = pikepdf.Dictionary(Font=pikepdf.Dictionary(F1=font))
        page.obj.Contents = pdf.make_stream(b"BT /F1 12 Tf 72 700 Td (warm up %d) Tj ET" % n)
    out = io.BytesIO()
    pdf.save(out)
    return out.getvalue()


def warm_up() -> None:
    """Run a tiny merge and text extraction in-process (fork server, before children
    exist) so first-use imports and caches are done before confinement. Raises if the
    operations do not work at all: better at start-up than in every job."""
    sample = memoryview(sample_pdf(2))
    for operation, raw in (("merge", {}), ("text", {}), ("text", {"layout": "boxes"}),
                           ("text", {"engine": "pypdf"})):
        params = OPERATIONS[operation].validate(raw)
        inputs = [sample, sample] if operation == "merge" else [sample]
        answer = run(inputs, {"operation": operation, "params": params, "max_pages": 10})
        if "problem" in json.loads(answer[0]):
            raise RuntimeError(f"warm_up: {operation} failed: {answer[0]!r}")
    pypdf.PdfReader(io.BytesIO(bytes(sample))).pages[0].extract_text()
    PIL.Image.new("RGB", (2, 2)).save(io.BytesIO(), format="PNG")
