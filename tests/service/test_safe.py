"""safe over HTTP and from `notrace run` (issue 9): a pixel-only PDF with its report,
several batches within the default child limits, documents too big to draw refused in
time, and the service still serving."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time

import pikepdf
import pytest

from tests.operations.test_safe import assert_pixels_only
from tests.pdfs import make_active_pdf, make_form_pdf, make_pdf
from tests.service.server import ROOT

pytestmark = pytest.mark.timeout(120)

A4 = (595.276, 841.89)


def _pages(count: int, size=(612, 792)) -> bytes:
    """`count` pages sharing one small content stream, written directly (pikepdf takes
    seconds for 10,000 pages)."""
    width, height = size
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>",
               b"<< /Type /Pages /Count %d /Kids [%s] >>" % (
                   count, b" ".join(b"%d 0 R" % (4 + i) for i in range(count))),
               b"<< /Length 27 >>\nstream\n0 0 0 rg 72 72 144 144 re f\nendstream"]
    page = b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 %d %d] /Contents 3 0 R >>" % (
        width, height)
    objects += [page] * count
    out, offsets = bytearray(b"%PDF-1.7\n"), []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1, xref)
    return bytes(out)


def test_safe_answers_a_pdf_of_pixels_only_with_its_report(server):
    for original in (make_active_pdf(2), make_form_pdf()):
        reply = server.post("safe", [original], {"dpi": "72"})
        assert reply.status == 200, reply.body[:300]
        assert reply.headers["content-type"] == "application/pdf"
        assert 'filename="safe.pdf"' in reply.headers["content-disposition"]
        report = json.loads(reply.headers["x-notrace-report"])
        assert report["dpi"] == 72 and report["batches"] == 1 and report["ocr"] is False
        assert {"links", "forms", "javascript and actions", "attachments", "text"} <= \
            set(report["not_kept"])
        assert_pixels_only(reply.body, original)
    reply = server.post("safe", [make_pdf(1)], {"dpi": "601"})
    assert reply.status == 400 and reply.json()["param"] == "dpi"


def test_several_batches_within_the_default_limits(server):
    """24 A4 pages at 150 dpi: 6.2 MiB of pixels each, 150 MiB in all; batches of 15
    pages (half the 200 MiB output limit) make two, merged."""
    original = make_pdf(24, size=A4)
    started = time.monotonic()
    reply = server.post("safe", [original], timeout=110)
    elapsed = time.monotonic() - started
    assert reply.status == 200, reply.body[:300]
    report = json.loads(reply.headers["x-notrace-report"])
    assert report["pages"] == 24 and report["batches"] == 2 and report["dpi"] == 150
    result = pikepdf.open(io.BytesIO(reply.body))
    assert len(result.pages) == 24
    image = result.pages[23].Resources.XObject["/Im0"]
    assert (int(image.Width), int(image.Height)) == (1241, 1754)
    assert elapsed < 60, elapsed


def test_documents_too_big_to_draw_are_refused_in_time(server):
    cases = [(_pages(10_000), {}, "too-many-pages"),
             (_pages(1, (100_000, 100_000)), {"dpi": "600"}, "too-large"),
             (_pages(600), {"dpi": "36"}, "too-many-pages")]   # over max_pixel_pages
    for document, params, slug in cases:
        started = time.monotonic()
        reply = server.post("safe", [document], params)
        assert time.monotonic() - started < 10
        assert reply.status == 422, (slug, reply.status, reply.body[:200])
        assert reply.json()["type"].endswith(f"/problems/{slug}")
    assert server.post("safe", [make_pdf(1)], {"dpi": "36"}).status == 200


def test_notrace_run_safe(tmp_path):
    source, target = tmp_path / "in.pdf", tmp_path / "out.pdf"
    source.write_bytes(make_active_pdf(1))
    done = subprocess.run([sys.executable, "-m", "notrace", "run", "safe", str(source),
                           "--dpi", "36", "-o", str(target)], cwd=ROOT, capture_output=True,
                          timeout=100, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                                            "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stderr)["report"]["pages"] == 1
    assert_pixels_only(target.read_bytes(), source.read_bytes())


def test_ocr_over_http_keeps_the_words_searchable(server):
    """Tesseract runs in phase 2's child, initialised in the fork server (no files)."""
    line = "Dangerzone converts documents into pixels"
    reply = server.post("safe", [make_pdf(1, text=line)], {"ocr": "true"})
    assert reply.status == 200, reply.body[:300]
    assert json.loads(reply.headers["x-notrace-report"])["ocr"] is True
    text = server.post("text", [reply.body])
    assert text.status == 200 and text.json()["pages"][0]["text"].split() == line.split()
    reply = server.post("safe", [make_pdf(1)], {"ocr": "true", "language": "zzz"})
    assert reply.status == 400 and reply.json()["param"] == "language"


def test_phase_one_problems_are_the_answer(server):
    """A document problem found by phase 1 (here: its password) is the request's answer;
    with the password, the pixels of the decrypted pages, unencrypted."""
    from tests.pdfs import make_encrypted_pdf
    locked = make_encrypted_pdf(2, user="pw")
    reply = server.post("safe", [locked], {"dpi": "36"})
    assert reply.status == 422 and reply.json()["type"].endswith("/problems/password-required")
    reply = server.post("safe", [locked], {"dpi": "36", "password": "pw"})
    assert reply.status == 200, reply.body[:300]
    result = pikepdf.open(io.BytesIO(reply.body))
    assert len(result.pages) == 2 and not result.is_encrypted


def test_a_conversion_ends_at_its_own_deadline(start_server):
    """NOTRACE_SAFE_WALL_S bounds the whole conversion (red team: a document's child that
    sleeps to its limit in every batch held a slot for batches x phases x the child's
    wall limit): 200 A4 pages at 150 dpi (1.2 GB of pixels to draw, check and compress:
    many seconds on any machine) are cut at 1 s in all."""
    short = start_server(safe_wall_s=1.0)
    started = time.monotonic()
    reply = short.post("safe", [_pages(200, (595, 842))], timeout=60)
    elapsed = time.monotonic() - started
    assert reply.status == 422, reply.body[:300]
    assert reply.json()["type"].endswith("/problems/time-limit")
    assert elapsed < 10, elapsed
    assert short.post("safe", [make_pdf(1)], {"dpi": "36"}).status == 200  # still serving
