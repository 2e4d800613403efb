"""ocr over HTTP (issue 9): a scan made searchable, its words found by `text` at their
places afterwards; a language that is not installed is a 400 naming the parameter; the
catalogue, OpenAPI and /ready say OCR is here (test_ocr.py in tests/operations: the
registry without the extra)."""
from __future__ import annotations

import json

import pytest

from tests.operations.test_ocr_engine import WORDS, near, scanned_pdf, text_pdf

pytestmark = pytest.mark.timeout(60)


def _words(server, pdf: bytes) -> list[dict]:
    reply = server.post("text", [pdf], {"layout": "boxes"})
    assert reply.status == 200, reply.body[:300]
    return reply.json()["pages"][0]["words"]


def test_ocr_over_http_makes_a_scan_searchable(server):
    scan = scanned_pdf()
    assert _words(server, scan) == []
    reply = server.post("ocr", [scan], {"dpi": "200"})
    assert reply.status == 200, reply.body[:300]
    assert reply.headers["content-type"] == "application/pdf"
    report = json.loads(reply.headers["x-notrace-report"])
    assert report == {"pages": 1, "skipped": 0, "words": 6, "language": "eng", "dpi": 200}
    found = _words(server, reply.body)
    assert [w["text"] for w in found] == WORDS
    for got, want in zip(found, _words(server, text_pdf())):
        assert near(got, want, 9), (got, want)
    kept = server.post("ocr", [text_pdf()], {"skip_text": "true", "dpi": "72"})
    assert json.loads(kept.headers["x-notrace-report"])["skipped"] == 1


def test_a_language_not_installed_is_a_400(server):
    reply = server.post("ocr", [scanned_pdf()], {"language": "deu"})
    assert reply.status == 400
    assert reply.headers["content-type"] == "application/problem+json"
    problem = reply.json()
    assert problem["type"].endswith("/problems/bad-parameter"), problem
    assert problem["param"] == "language"
    assert "language" in problem["detail"] and "eng" in problem["detail"]


def test_catalogue_openapi_and_ready_say_ocr_is_here(server):
    ready = server.get("/ready").json()
    assert ready["ocr"]["available"] is True and "eng" in ready["ocr"]["detail"]
    catalogue = {op["name"]: op for op in server.get("/api/v1/operations").json()["operations"]}
    language = {p["name"]: p for p in catalogue["ocr"]["params"]}["language"]
    assert language["choices"] == ["eng"] and language["default"] == "eng"
    spec = server.get("/openapi.json").json()
    assert "/api/v1/ocr" in spec["paths"]
    assert "ocr" in spec["components"]["schemas"]["Readiness"]["required"]
