"""The whole shared corpus through safe over HTTP (issue 9): every file answered 2xx or
4xx, never 5xx, each 2xx a PDF of one image per page; phase 1, the server's check of
the stream, phase 2 and the merge all real. At 36 dpi, the document's own page count."""
from __future__ import annotations

import concurrent.futures
import io
import pathlib
import time

import pikepdf
import pytest

from tests.operations.test_corpus import corpus_files

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def test_the_corpus_through_safe_is_never_a_5xx(server):
    files = corpus_files()

    def one(path: str):
        reply = server.post("safe", [pathlib.Path(path).read_bytes()], {"dpi": "36"},
                            timeout=120)
        if reply.status == 200:
            with pikepdf.open(io.BytesIO(reply.body)) as result:
                images = [len(page.Resources.XObject) for page in result.pages]
            assert images and set(images) == {1}, path
        return path, reply.status, reply.json()["type"] if reply.status >= 400 else None

    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        outcomes = list(pool.map(one, files))
    elapsed = time.monotonic() - started
    server_errors = [o for o in outcomes if o[1] >= 500]
    assert server_errors == [], server_errors
    assert all(200 <= status < 500 for _path, status, _type in outcomes)
    # A crash would be a phase-1 stream our checker refused, or PDFium dying on a file:
    # none is known on this corpus, so either shows here.
    assert [o for o in outcomes if o[2] == "/problems/processing-crashed"] == []
    ok = sum(1 for _path, status, _type in outcomes if status == 200)
    assert ok > len(files) // 2, outcomes   # most of the corpus is readable PDFs
    print(f"{len(files)} files, {ok} converted, {elapsed:.1f} s")  # 224, 185, 18-25 s
