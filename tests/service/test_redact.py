"""redact over HTTP against the real server (issue 9): the term leaves the result, the
report and the server's log; terms are secret (refused in a query string, accepted in
their header); bad parameters are 400s naming them; the leak check is a 422 of its own
type, documented at /problems/redaction-incomplete."""
from __future__ import annotations

import io
import json
import uuid

import pypdf
import pytest

from tests.operations.test_redact import TERM, THREE, _pdf
from tests.service.access import wait_until

pytestmark = pytest.mark.timeout(60)

RAW = {"Content-Type": "application/pdf"}


def test_a_term_leaves_the_result_the_report_and_the_log(server):
    marker = "Qx" + uuid.uuid4().hex[:10]   # unique to this test: grep the log for it
    before = len(server.lines)
    doc = _pdf([b"BT /F1 12 Tf 30 200 Td (page one %s) Tj ET" % marker.encode(),
                b"BT /F1 12 Tf 30 200 Td (page two) Tj ET"])
    reply = server.post("redact", [doc], {"terms": json.dumps([marker.lower()])})
    assert reply.status == 200, reply.body[:300]
    assert reply.headers["content-type"] == "application/pdf"
    texts = [p.extract_text() for p in pypdf.PdfReader(io.BytesIO(reply.body)).pages]
    assert texts[0] == "" and "page two" in texts[1]
    report = json.loads(reply.headers["x-notrace-report"])
    assert report["pages"] == [{"page": 1, "matches": 1, "boxes": 0}]
    # raw body: the terms in their header
    raw = server.request("POST", "/api/v1/redact", doc,
                         {**RAW, "X-Notrace-Terms": json.dumps([marker])})
    assert raw.status == 200, raw.body[:300]
    for reply in (reply, raw):
        assert marker.lower() not in json.dumps(dict(reply.headers)).lower()
    # The access lines may follow the answers: wait (bounded) for the last one, then read.
    wait_until(lambda: sum('"operation": "redact"' in line and '"status"' in line
                           for line in server.lines[before:]) >= 2,
               what="the two redact access lines")
    logged = "\n".join(server.lines)
    assert marker.lower() not in logged.lower()


def test_terms_in_a_query_string_and_bad_parameters_are_400s_naming_them(server):
    secret = "Qy" + uuid.uuid4().hex[:10]
    for path, body, headers, param in (
            (f"/api/v1/redact?terms=%5B%22{secret}%22%5D", THREE, RAW, "terms"),
            ("/api/v1/redact?boxes=%5B%5D", THREE, RAW, "boxes"),
            ("/api/v1/redact", THREE, RAW, "terms"),   # neither terms nor boxes
            ("/api/v1/redact?regex=true", THREE,
             {**RAW, "X-Notrace-Terms": json.dumps([f"({secret}+)+"])}, "terms")):
        reply = server.request("POST", path, body, headers)
        assert reply.status == 400, (path, reply.body[:300])
        problem = reply.json()
        assert (problem["type"], problem["param"]) == ("/problems/bad-parameter", param)
        assert secret not in reply.body.decode()
    boxes = json.dumps([{"page": 1, "x0": 1, "y0": 1, "x1": 9, "y1": 9}] * 10_000)
    reply = server.post("redact", [THREE], {"boxes": boxes})
    assert reply.status == 400, reply.body[:300]
    assert secret not in "\n".join(server.lines)


def test_an_incomplete_redaction_is_a_422_of_its_own(server):
    hidden = _pdf([b"/Span <</ActualText (other)>> BDC BT /F1 12 Tf 30 200 Td (%s) Tj ET EMC"
                   % TERM.encode()])
    reply = server.post("redact", [hidden], {"terms": json.dumps([TERM])})
    assert reply.status == 422, reply.body[:300]
    problem = reply.json()
    assert problem["type"] == "/problems/redaction-incomplete"
    assert "page 1" in problem["detail"] and TERM.lower() not in reply.body.decode().lower()
    doc = server.get("/problems/redaction-incomplete")
    assert doc.status == 200 and b"pypdf" in doc.body
    catalogue = server.get("/api/v1/operations").json()
    ops = catalogue["operations"] if isinstance(catalogue, dict) else catalogue
    (redact,) = [op for op in ops if op["name"] == "redact"]
    assert redact["any_of"] == ["terms", "boxes"]
    assert {p["name"]: p.get("secret", False) for p in redact["params"]}["terms"] is True
