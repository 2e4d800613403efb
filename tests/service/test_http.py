"""Service endpoints, headers on every answer, request ids, OpenAPI and a schemathesis run."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from openapi_spec_validator import validate

from notrace.operations import OPERATIONS
from notrace.problems import TYPES
from tests.pdfs import make_pdf

PDF = make_pdf(1)
SECURITY = {"cache-control": "no-store", "x-content-type-options": "nosniff",
            "referrer-policy": "no-referrer"}


def _various(server):
    """One request of each kind of answer: ok, document, problem, HTML, metrics."""
    yield server.get("/health")
    yield server.get("/ready")
    yield server.get("/metrics")
    yield server.get("/openapi.json")
    yield server.get("/docs")
    yield server.get("/problems/busy")
    yield server.get("/api/v1/operations")
    yield server.post("info", [PDF])
    yield server.post("rotate", [PDF], {"angle": "90"})
    yield server.post("rotate", [PDF], {"angle": "1"})
    yield server.post("info", [b"nope"])
    yield server.post("nope", [PDF])
    yield server.get("/nope")
    yield server.request("PUT", "/health")
    yield server.request("POST", "/api/v1/info", b"x", {"Content-Type": "text/plain"})


def test_security_headers_on_every_response(server):
    for reply in _various(server):
        for name, value in SECURITY.items():
            assert reply.headers.get(name) == value, (reply.status, name)
        csp = reply.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
        assert reply.headers["x-request-id"]
        assert "aiohttp" not in reply.headers.get("server", "")


def test_request_id_echoed_when_sane(server):
    reply = server.get("/health", headers={"X-Request-ID": "abc-123.DEF:4_5"})
    assert reply.headers["x-request-id"] == "abc-123.DEF:4_5"
    reply = server.post("nope", [PDF], headers={"X-Request-ID": "trace-42"})
    assert reply.json()["instance"] == "trace-42"


@pytest.mark.parametrize("insane", ["x" * 200, "<script>", "a b", "-leading", "é"])
def test_insane_request_id_replaced(server, insane):
    reply = server.get("/health", headers={"X-Request-ID": insane.encode("utf-8").decode(
        "latin-1")})
    got = reply.headers["x-request-id"]
    assert got != insane and len(got) == 32 and got.isalnum()
    assert not any(insane in line for line in server.lines)


def test_health_and_ready(server):
    assert server.get("/health").json() == {"status": "ok"}
    ready = server.get("/ready")
    assert ready.status == 200
    doc = ready.json()
    assert doc["status"] == "ready"
    names = {layer["name"] for layer in doc["layers"]}
    assert {"privileges", "rlimits", "landlock", "seccomp"} <= names


def test_metrics(server):
    server.post("info", [PDF])
    text = server.get("/metrics").body.decode()
    assert 'notrace_requests_total{operation="info",status="200"}' in text
    assert "notrace_queue_depth" in text and "notrace_jobs_in_flight" in text
    assert 'notrace_children_ended_total{cause="ok"}' in text
    assert 'notrace_children_ended_total{cause="memory"}' in text


def test_docs_page_is_self_contained(server):
    reply = server.get("/docs")
    assert reply.headers["content-type"].startswith("text/html")
    page = reply.body.decode()
    assert "<script" not in page and "http://" not in page and "https://" not in page
    for name in OPERATIONS:
        assert f"/api/v1/{name}" in page
    for slug in TYPES:
        assert f"/problems/{slug}" in page
    assert "style-src 'sha256-" in reply.headers["content-security-policy"]


def test_openapi_is_valid_and_matches_declarations(server):
    spec = server.get("/openapi.json").json()
    validate(spec)
    assert spec["openapi"].startswith("3.1")
    for name, op in OPERATIONS.items():
        form = spec["paths"][f"/api/v1/{name}"]["post"]["requestBody"]["content"][
            "multipart/form-data"]["schema"]
        assert set(form["properties"]) == {"file", *(p.name for p in op.params)}


def test_every_header_an_operation_sends_is_documented_in_openapi_and_docs(server):
    """Every operation's 200 declares X-Notrace-Report (and Content-Disposition when it may
    answer a file), 429 and 503 Retry-After, 401 WWW-Authenticate; /docs shows them; and a
    real file answer sends the 200's headers."""
    spec = server.get("/openapi.json").json()
    for name in [*OPERATIONS, "pipeline"]:
        responses = spec["paths"][f"/api/v1/{name}"]["post"]["responses"]
        assert "X-Notrace-Report" in responses["200"]["headers"], name
        assert "Retry-After" in responses["429"]["headers"], name
        assert "Retry-After" in responses["503"]["headers"], name
        assert "WWW-Authenticate" in responses["401"]["headers"], name
        assert all(h["description"] for r in responses.values()
                   for h in r.get("headers", {}).values()), name
    ok = spec["paths"]["/api/v1/merge"]["post"]["responses"]["200"]["headers"]
    assert "Content-Disposition" in ok
    assert "Content-Disposition" not in (
        spec["paths"]["/api/v1/info"]["post"]["responses"]["200"]["headers"])
    page = server.get("/docs").body.decode()
    for header in ("X-Notrace-Report", "Content-Disposition", "Retry-After",
                   "WWW-Authenticate", "X-Request-ID"):
        assert f"<code>{header}</code>" in page, header
    reply = server.post("sanitize", [PDF])
    assert reply.status == 200, reply.body[:300]
    assert {"x-notrace-report", "content-disposition", "x-request-id"} <= {
        k.lower() for k in reply.headers}


@pytest.mark.timeout(120)
def test_schemathesis_against_live_server(server, tmp_path):
    """Bounded: 5 examples per operation, 60 s budget; no 5xx, nothing off-schema."""
    checks = ("not_a_server_error,status_code_conformance,content_type_conformance,"
              "response_headers_conformance,response_schema_conformance")
    st = Path(sys.executable).parent / "st"
    proc = subprocess.run(
        [str(st), "run", f"http://127.0.0.1:{server.port}/openapi.json",
         "--checks", checks, "--max-examples", "5", "--max-time", "45", "--seed", "1",
         "--phases", "examples,coverage,fuzzing", "--request-timeout", "30",
         "--workers", "2", "--suppress-health-check", "all"],
        capture_output=True, text=True, timeout=110, cwd=tmp_path,
        env={**os.environ, "SCHEMATHESIS_TELEMETRY": "false"})
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
