"""A law of the pipeline's open handoff (issue 10), through the REAL sandbox (fork server,
confined children), with Hypothesis: a pipeline of steps that hand their document over
open (most steps here answer it unsaved; each takes it open, or bytes where its
operation reads bytes: compress, linearize, repair) answers what the chain of single
jobs answers: the same status, pages, page sizes, rotations, text and reports.

The five laws issue 10 lists (nup's ceil(n / per_sheet), booklet's multiple of four,
scale to A4, set-bookmarks then bookmarks, a pipeline of one step) are in
fuzz/properties.py and run by tests/fuzz/test_properties.py; this one is not there.
Bounded: 12 examples of 1 to 4 steps on documents of up to 5 pages (about 10 s here).
"""
from __future__ import annotations

import io
import json

import pikepdf
import pytest
from hypothesis import HealthCheck, event, given, settings, strategies as st

from fuzz.properties import Service, page_texts
from fuzz.strategies import pdfs
from notrace import pipeline

pytestmark = pytest.mark.timeout(180)

#: Steps that answer their document unsaved, and steps that take it open or read bytes.
STEPS = st.sampled_from([
    ("sanitize", {}), ("scale", {"size": "A4"}), ("scale", {"factor": "0.5", "fit": "stretch"}),
    ("fill-form", {"values": "{}"}), ("rotate", {"angle": "90", "pages": "odd"}),
    ("select", {"pages": "-1,1"}), ("crop", {"left": "20", "top": "10"}),
    ("watermark", {"text": "LAW"}), ("number", {}), ("metadata", {"title": "law"}),
    ("remove-annotations", {}), ("set-bookmarks", {"bookmarks": '[{"title": "a", "page": 1}]'}),
    ("compress", {}), ("flatten", {}), ("nup", {"per_sheet": "2"}), ("booklet", {}),
    ("linearize", {}), ("repair", {})])


@pytest.fixture(scope="module")
def service():
    with Service() as running:
        running.start()  # a host without a sandbox fails here, loudly
        yield running


def _shape(data: bytes) -> list[tuple]:
    """Each page's (size, rotation) as a reader sees it."""
    with pikepdf.open(io.BytesIO(data)) as pdf:
        return [(tuple(round(float(v), 2) for v in page.mediabox),
                 int(page.obj.get("/Rotate", 0))) for page in pdf.pages]


@settings(max_examples=12, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(document=pdfs(max_pages=5), steps=st.lists(STEPS, min_size=1, max_size=4))
def test_a_pipeline_answers_what_the_chain_of_single_jobs_answers(service, document, steps):
    listed = [{"operation": name, "params": params} for name, params in steps]
    piped = service.call(pipeline.NAME, [document], {"steps": json.dumps(listed)})
    files, reports = [document], []
    for name, params in steps:
        alone = service.call(name, files, params)
        if not alone.ok:  # a step refused alone (nup of one page...): the pipeline too
            assert (piped.http_status, piped.problem) == (alone.http_status, alone.problem)
            event(f"refused alone: {name}")
            return
        files, reports = alone.files, reports + [alone.report]
    assert piped.ok, piped
    (body,) = piped.files
    assert _shape(body) == _shape(files[0])
    assert page_texts(body) == page_texts(files[0])
    got = [step["report"] for step in piped.report["steps"]]
    assert got == reports
    event("compared")
