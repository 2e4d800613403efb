"""jobs.interpret: what a child hands back is untrusted bytes (issue 8, item 3).

Real Results over real memfds (Outputs.from_bytes, as the runner builds them): any
manifest that does not fit is BadManifest (answered 422 processing-crashed, never 500),
whatever it holds, and the Result's memfd is closed whenever no Answer owns it. A
legitimate manifest is never refused for its size within NOTRACE_MAX_PAGES.
"""
from __future__ import annotations

import json

import pytest

from notrace.jobs import CHUNK_BYTES, BadManifest, interpret, manifest_limit
from notrace.operations import OPERATIONS
from notrace.problems import HttpProblem
from sandbox import Result

pytestmark = pytest.mark.timeout(30)
MAX_PAGES = 2000
_PDF_MANIFEST = {"media_type": "application/pdf", "filename": "document.pdf",
                 "report": {}, "files": 1}


def _result(manifest, *bodies: bytes) -> Result:
    raw = manifest if isinstance(manifest, bytes) else json.dumps(manifest).encode()
    return Result("ok", outputs=[raw, *bodies])


def _refused(operation: str, result: Result) -> None:
    with pytest.raises(BadManifest):
        interpret(OPERATIONS[operation], result, max_pages=MAX_PAGES)
    assert result.outputs.closed


@pytest.mark.parametrize("manifest", [
    b"[" * 100_000 + b"]" * 100_000,                      # RecursionError in json.loads
    b'{"a": ' * 50_000 + b"1" + b"}" * 50_000,
    b"\xff\xfe not utf-8", b"", b"null", b"[1, 2]", b'"text"', b"1" * 5000,  # > int digits
    b'{"media_type": "application/pdf"}',                  # keys missing
    {**_PDF_MANIFEST, "extra": 1},
    {**_PDF_MANIFEST, "media_type": "text/html"},          # not what compress declares
    {**_PDF_MANIFEST, "media_type": "application/zip"},
    {**_PDF_MANIFEST, "filename": "../../etc/passwd"},
    {**_PDF_MANIFEST, "filename": "a\r\nSet-Cookie: x=1"},
    {**_PDF_MANIFEST, "filename": None},
    {**_PDF_MANIFEST, "filename": "x" * 101},
    {**_PDF_MANIFEST, "report": []},
    {**_PDF_MANIFEST, "files": True},
    {**_PDF_MANIFEST, "files": -1},
    {**_PDF_MANIFEST, "files": 1.5},
], ids=lambda m: repr(m)[:40])
def test_a_manifest_that_does_not_fit_is_bad(manifest):
    _refused("compress", _result(manifest, b"%PDF-1.7 body"))


def test_the_outputs_must_be_a_manifest_and_one_body():
    _refused("compress", Result("ok", outputs=[]))
    _refused("compress", _result(_PDF_MANIFEST))
    _refused("compress", _result(_PDF_MANIFEST, b"%PDF-", b"%PDF-"))


def test_a_json_answer_has_no_download_name():
    manifest = {"media_type": "application/json", "filename": "x.json", "report": {},
                "files": 1}
    _refused("info", _result(manifest, b"{}"))


@pytest.mark.parametrize("max_pages", [2000, 20000])
def test_the_manifest_bound_grows_with_max_pages(max_pages):
    """split every=1 of max_pages pages lists every page in its report: accepted, also
    past the old fixed 64 KiB when NOTRACE_MAX_PAGES is raised."""
    report = {"parts": [[n] for n in range(1, max_pages + 1)]}
    manifest = {"media_type": "application/zip", "filename": "split.zip", "report": report,
                "files": max_pages}
    raw = json.dumps(manifest).encode()
    answer = interpret(OPERATIONS["split"], _result(raw, b"PK zip"), max_pages=max_pages)
    with answer:
        assert (answer.media_type, answer.files, answer.report) == (
            "application/zip", max_pages, report)
    assert len(raw) > 64 * 1024 or max_pages == 2000
    _refused("split", _result(b" " * (manifest_limit(MAX_PAGES) + 1)))


def test_the_body_streams_in_chunks_and_closes():
    body = bytes(range(256)) * (3 * CHUNK_BYTES // 256 + 7)
    result = _result(_PDF_MANIFEST, body)
    answer = interpret(OPERATIONS["compress"], result, max_pages=MAX_PAGES)
    chunks = list(answer.body.chunks())
    assert b"".join(chunks) == body and answer.body.size == len(body)
    assert max(map(len, chunks)) == CHUNK_BYTES and len(chunks) == 4
    answer.close()
    assert result.outputs.closed


def test_a_problem_or_a_failed_job_closes_the_result():
    problem = _result({"problem": "password_required", "detail": "give it"})
    with pytest.raises(HttpProblem) as raised:
        interpret(OPERATIONS["compress"], problem, max_pages=MAX_PAGES)
    assert raised.value.type.slug == "password-required" and problem.outputs.closed
    with pytest.raises(HttpProblem) as raised:
        interpret(OPERATIONS["compress"], Result("crashed"), max_pages=MAX_PAGES)
    assert raised.value.type.slug == "processing-crashed"
