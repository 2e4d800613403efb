"""Shared fixtures of the operation tests (in-process: run() is called directly)."""
from __future__ import annotations

import io
import json
import pathlib
import sys
import zipfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `from tests import pdfs` from any rootdir / import mode
    sys.path.insert(0, str(ROOT))

CORPUS = ROOT.parent / "shared" / "corpus"


class Answer:
    """What run() returned, decoded: manifest, body, problem (or None); for a zip body,
    `names` and `files` are its members in order, else the one file and its name."""

    def __init__(self, raw: list) -> None:
        assert raw and isinstance(raw[0], bytes)
        self.manifest = json.loads(raw[0])
        self.problem = self.manifest.get("problem")
        if self.problem is not None:
            assert len(raw) == 1 and set(self.manifest) <= {"problem", "detail", "cause"}
            self.body, self.names, self.files = None, [], []
            return
        assert len(raw) == 2 and set(self.manifest) == {"media_type", "filename", "report",
                                                         "files"}
        self.body = bytes(raw[1])
        if self.manifest["media_type"] == "application/zip":
            with zipfile.ZipFile(io.BytesIO(self.body)) as zf:
                self.names = zf.namelist()
                self.files = [zf.read(name) for name in self.names]
        elif self.manifest["media_type"] == "application/json":
            self.names, self.files = [], [self.body]
        else:
            self.names, self.files = [self.manifest["filename"]], [self.body]
        assert len(self.files) == self.manifest["files"] or not self.manifest["files"]

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
