"""`text` over HTTP against the real server: both engines, layout=boxes in a form and in
a query string, the declaration in the catalogue and OpenAPI, a bad combination a 400."""
from __future__ import annotations

import pytest

from tests import pdfs

DOC = pdfs.make_pdf(3, marker="H")


@pytest.mark.timeout(60)
def test_text_with_each_engine_and_with_boxes(server):
    for params in ({}, {"engine": "pdfium"}, {"engine": "pypdf"}):
        reply = server.post("text", [DOC], params)
        assert reply.status == 200 and reply.headers["content-type"].startswith(
            "application/json"), reply.body[:300]
        assert [p["text"] for p in reply.json()["pages"]] == ["H page 1", "H page 2",
                                                              "H page 3"]
    raw = server.request("POST", "/api/v1/text?layout=boxes&pages=2", DOC,
                         {"Content-Type": "application/pdf"})
    assert raw.status == 200, raw.body[:300]
    (page,) = raw.json()["pages"]
    assert page["page"] == 2 and [w["text"] for w in page["words"]] == ["H", "page", "2"]
    x0, y0, x1, y1 = page["box"]
    assert all(x0 <= w["x0"] < w["x1"] <= x1 and y0 <= w["y0"] < w["y1"] <= y1
               for w in page["words"])


@pytest.mark.timeout(60)
def test_boxes_with_pypdf_and_unknown_engines_are_400(server):
    for params, param in (({"engine": "pypdf", "layout": "boxes"}, "layout"),
                          ({"engine": "mupdf"}, "engine"), ({"layout": "lines"}, "layout")):
        reply = server.post("text", [DOC], params)
        assert reply.status == 400, reply.body[:300]
        assert reply.json()["type"] == "/problems/bad-parameter"
        assert reply.json()["param"] == param


@pytest.mark.timeout(60)
def test_engine_and_layout_are_declared(server):
    catalogue = server.get("/api/v1/operations").json()
    ops = catalogue["operations"] if isinstance(catalogue, dict) else catalogue
    (text,) = [op for op in ops if op["name"] == "text"]
    params = {p["name"]: p for p in text["params"]}
    assert params["engine"]["choices"] == ["pdfium", "pypdf"]
    assert params["engine"]["default"] == "pdfium"
    assert params["layout"]["choices"] == ["text", "boxes"]
    spec = server.get("/openapi.json").json()
    assert '"pdfium"' in server.get("/openapi.json").body.decode() and spec["paths"]
