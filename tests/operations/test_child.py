"""child.run's contract: manifest shapes, exception mapping, warm_up."""
from __future__ import annotations

import json

import pytest

from notrace.operations import child
from notrace.operations.problems import PROBLEMS


def _run_raising(monkeypatch, exc: BaseException) -> list[bytes]:
    def boom(inputs, params, *, max_pages):
        raise exc
    monkeypatch.setitem(child.FUNCTIONS, "info", boom)
    return child.run([memoryview(b"")], {"operation": "info", "params": {}, "max_pages": 1})


@pytest.mark.parametrize("exc", [KeyError("/Root"), TypeError("x"), AttributeError("x"),
                                 ValueError("x"), RecursionError(), OverflowError(),
                                 IndexError(), AssertionError(), NotImplementedError(),
                                 OSError("truncated"), __import__("struct").error("x"),
                                 __import__("zlib").error("x"), UnicodeDecodeError(
                                     "utf-8", b"\xff", 0, 1, "bad")])
def test_library_exceptions_are_malformed_with_our_own_text(monkeypatch, exc):
    answer = _run_raising(monkeypatch, exc)
    assert len(answer) == 1
    manifest = json.loads(answer[0])
    assert manifest == {"problem": "malformed", "detail": child.MALFORMED_DETAIL,
                        "cause": type(exc).__name__}


@pytest.mark.parametrize("exc", [MemoryError(), PermissionError("landlock"),
                                 ImportError("late import"), NameError("typo")])
def test_memory_and_our_bugs_propagate(monkeypatch, exc):
    with pytest.raises(type(exc)):
        _run_raising(monkeypatch, exc)


def test_every_problem_code_reaches_the_manifest(monkeypatch):
    from notrace.operations.problems import Problem
    for code in PROBLEMS:
        manifest = json.loads(_run_raising(monkeypatch, Problem(code))[0])
        assert manifest == {"problem": code, "detail": PROBLEMS[code].title}


def test_warm_up_runs():
    child.warm_up()
