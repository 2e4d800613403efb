"""Shared fixtures of the operation tests (in-process: run() is called directly)."""
from __future__ import annotations

import json
import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `from tests import pdfs` from any rootdir / import mode
    sys.path.insert(0, str(ROOT))

CORPUS = ROOT.parent / "shared" / "corpus"


class Answer:
    """What run() returned, decoded: manifest, files, problem (or None)."""

    def __init__(self, raw: list[bytes]) -> None:
        assert raw and isinstance(raw[0], bytes)
        self.manifest = json.loads(raw[0])
        self.files = raw[1:]
        self.problem = self.manifest.get("problem")
        if self.problem is None:
            assert len(self.manifest["files"]) == len(self.files)
        else:
            assert self.files == [] and set(self.manifest) <= {"problem", "detail", "cause"}

    @property
    def file(self) -> bytes:
        assert self.problem is None, self.manifest
        assert len(self.files) == 1
        return self.files[0]

    @property
    def report(self) -> dict:
        return self.manifest.get("report", {})

    def json(self) -> dict:
        return json.loads(self.file)


@pytest.fixture
def call():
    """call(operation, inputs, max_pages=..., **raw_params) -> Answer: validates the raw
    text params like the server, then runs the operation in-process."""
    from notrace.operations import OPERATIONS
    from notrace.operations.child import run

    def _call(operation: str, inputs: list[bytes], *, max_pages: int = 1000, **raw) -> Answer:
        params = OPERATIONS[operation].validate({k: str(v) for k, v in raw.items()})
        return Answer(run([memoryview(i) for i in inputs],
                          {"operation": operation, "params": params, "max_pages": max_pages}))
    return _call
