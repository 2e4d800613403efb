"""The `ocr` operation (issue 9): a scan's words found at their places by `text`
afterwards, the original pages kept, skip_text, its parameters; through real sandbox
children (confined: Landlock, seccomp, no execve) with the fork server's RSS measured,
and the whole corpus at a low dpi; and the service without the `ocr` extra."""
from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
import time

import pikepdf
import psutil
import pytest

from notrace.operations import OPERATIONS, ParamError, ocr_engine
from notrace.problems import HttpProblem
from sandbox import Limits, Sandbox
from tests.operations.conftest import ROOT
from tests.operations import sandboxed
from tests.operations.test_corpus import corpus_files
from tests.operations.test_ocr_engine import WORDS, boxes, near, scanned_pdf, text_pdf

pytestmark = pytest.mark.timeout(60)

ENTRY = "notrace.operations.child:run"
WARMUP = "notrace.operations.child:warm_up"


@pytest.fixture(scope="module", autouse=True)
def engine():
    ocr_engine.preload()  # as the fork server's warm-up does (for the in-process calls)


def _merged(*documents: bytes) -> bytes:
    pdf = pikepdf.new()
    for data in documents:
        pdf.pages.extend(pikepdf.open(io.BytesIO(data)).pages)
    out = io.BytesIO()
    pdf.save(out)
    return out.getvalue()


def test_ocr_makes_a_scan_searchable_where_its_words_are(call):
    original, scan = text_pdf(), scanned_pdf()
    answer = call("ocr", [scan], dpi=200)
    assert answer.manifest["media_type"] == "application/pdf"
    assert answer.report == {"pages": 1, "skipped": 0, "words": 6, "language": "eng",
                             "dpi": 200}
    found = boxes(answer.file)[0]
    assert [w["text"] for w in found] == WORDS
    for got, want in zip(found, boxes(original)[0]):
        assert near(got, want, 9), (got, want)
    for engine in ("pdfium", "pypdf"):  # pypdf reads the layer too (its ToUnicode map)
        text = call("text", [answer.file], engine=engine).json()["pages"][0]["text"]
        assert "Quick brown foxes\nSearchable invoice 2026" in text, (engine, text)
    # the page itself is kept: its image and content come first, unchanged
    before, after = (pikepdf.open(io.BytesIO(d)) for d in (scan, answer.file))
    old_page, new_page = before.pages[0].obj, after.pages[0].obj
    assert set(new_page.Resources.XObject.keys()) == set(old_page.Resources.XObject.keys())
    [image] = new_page.Resources.XObject.values()
    assert image.read_raw_bytes() == next(iter(old_page.Resources.XObject.values())).read_raw_bytes()
    # its content: "q", the page's own stream, then the layer
    assert new_page.Contents[1].read_bytes() == old_page.Contents.read_bytes()


def test_skip_text_leaves_pages_with_text_as_they_are(call):
    document = _merged(text_pdf(), scanned_pdf(), text_pdf(()))  # text, scan, blank
    kept = call("ocr", [document], dpi=100, skip_text="true")
    assert kept.report["pages"] == 2 and kept.report["skipped"] == 1
    source, result = (pikepdf.open(io.BytesIO(d)) for d in (document, kept.file))
    assert result.pages[0].obj.Contents.read_bytes() \
        == source.pages[0].obj.Contents.read_bytes()
    assert "/NotraceOCR" not in result.pages[0].obj.Resources.Font
    assert [w["text"] for w in boxes(kept.file)[1]] == WORDS  # the scan got its layer
    again = call("ocr", [document], dpi=100)  # without skip_text: every page
    assert again.report["pages"] == 3 and again.report["skipped"] == 0
    assert [w["text"] for w in boxes(again.file)[0]] == WORDS + WORDS
    assert call("ocr", [document], pages="2", dpi=100).report["pages"] == 1


def test_parameters_language_dpi_and_limits(call):
    op = OPERATIONS["ocr"]
    assert op.validate({})["dpi"] == 300 and op.validate({})["language"] == "eng"
    assert op.param("language").choices == ("eng",)
    with pytest.raises(ParamError, match='language: "klingon" is not one of eng'):
        op.validate({"language": "klingon"})
    with pytest.raises(ParamError, match="dpi: must be at most 600"):
        op.validate({"dpi": "601"})
    huge = pikepdf.new()
    huge.add_blank_page(page_size=(14400, 14400))  # 200 inches: 120,000 px at 600 dpi
    out = io.BytesIO()
    huge.save(out)
    assert call("ocr", [out.getvalue()], dpi=600).problem == "too_large"
    assert call("ocr", [b"not a pdf at all"]).problem == "not_a_pdf"


def test_without_the_ocr_extra_the_rest_works_and_ocr_is_nowhere():
    """tesserocr made unimportable in a fresh interpreter: OCR says why it is missing,
    the operation is nowhere (catalogue, OpenAPI), the fork server's warm-up works."""
    script = """
import sys, json
sys.modules["tesserocr"] = None
from notrace.operations import child, ocr_engine
from notrace.operations.registry import OPERATIONS
from notrace.openapi import build
child.warm_up()
print(json.dumps({"available": ocr_engine.available(), "ocr": "ocr" in OPERATIONS,
                  "path": "/api/v1/ocr" in build(OPERATIONS)["paths"],
                  "count": len(OPERATIONS)}))
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.splitlines()[-1])
    assert result["available"] == [False, "tesserocr is not installed "
                                          "(pip install 'notrace[ocr]')"]
    assert not result["ocr"] and not result["path"]
    assert result["count"] == len(OPERATIONS) - 1  # only ocr is missing


# --- through real sandbox children ----------------------------------------------------

async def _answer(sb: Sandbox, data: bytes, raw: dict):
    """ocr through the sandbox and the server's mapping (sandboxed.answer)."""
    return await sandboxed.answer(sb, "ocr", data, raw, max_pages=1000)


@pytest.mark.timeout(120)
async def test_ocr_runs_in_confined_children_and_the_fork_server_holds_tesseract():
    limits = Limits(memory_mb=512, cpu_s=30, wall_s=60, output_mb=64)
    async with Sandbox(ENTRY, limits=limits, workers=2, queue=8, warmup=WARMUP) as sb:
        layers = {layer.name: layer.available for layer in sb.layers()}
        assert layers == dict.fromkeys(("privileges", "namespaces", "rlimits", "landlock",
                                        "seccomp"), True), sb.layers()
        rss_mb = psutil.Process(sb.fork_server_pid).memory_info().rss / 2**20
        scan = scanned_pdf(pages=2)
        # 36 dpi: Tesseract warns of the low resolution, its first message in the child
        answers = await asyncio.gather(_answer(sb, scan, {"dpi": "200"}),
                                       _answer(sb, scan, {"dpi": "36", "pages": "2"}))
    for answer in answers:
        assert not isinstance(answer, HttpProblem), answer
        assert answer[0] == "application/pdf"
    assert [[w["text"] for w in page] for page in boxes(answers[0][1])] == [WORDS, WORDS]
    assert [[w["text"] for w in page] for page in boxes(answers[1][1])] == [[], WORDS]
    # measured: about 97 MB with Tesseract's English model (77 MB without OCR); shared
    # by every child through fork, copy-on-write
    print(f"fork server RSS with Tesseract loaded: {rss_mb:.1f} MB")
    assert 60 < rss_mb < 200


@pytest.mark.timeout(180)
async def test_the_corpus_through_ocr_at_a_low_dpi_is_2xx_or_4xx():
    """Every corpus file, every page, at 36 dpi (OCR's cost is in the pixels: at 300 dpi
    this would take many minutes; the code paths are the same)."""
    files = corpus_files()
    limits = Limits(memory_mb=512, cpu_s=30, wall_s=60, output_mb=200)
    started = time.monotonic()
    async with Sandbox(ENTRY, limits=limits, workers=2, queue=len(files),
                       warmup=WARMUP) as sb:
        answers = await asyncio.gather(*(_answer(sb, open(f, "rb").read(), {"dpi": "36"})
                                         for f in files))
    elapsed = time.monotonic() - started
    statuses = {f.rsplit("/", 1)[-1]: (a.status if isinstance(a, HttpProblem) else 200)
                for f, a in zip(files, answers)}
    server_errors = {name: status for name, status in statuses.items() if status >= 500}
    assert server_errors == {}, server_errors
    ok = sum(1 for status in statuses.values() if status == 200)
    print(f"corpus through ocr at 36 dpi: {ok} of {len(files)} 2xx in {elapsed:.1f} s")
    assert ok > len(files) // 2
