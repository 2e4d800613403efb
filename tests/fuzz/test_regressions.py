"""Every failure the fuzzers ever found, replayed through the REAL sandbox.

Runs in the test process; jobs run in sandbox children. tests/fuzz/regressions/ holds one
JSON sidecar per kept failure beside its input files (format: fuzz/regressions.py).
fuzz/run.py and tests/fuzz/test_properties.py write a new one whenever a property fails,
from the example Hypothesis shrank; commit it with the fix. The first files are one
hostile input per attack class of docs/threats.md (`python -m fuzz.regressions` rewrites
them). A contract regression must answer 2xx or 4xx within its deadline plus one second,
and every 2xx PDF must reopen with pikepdf and pypdf; a law regression must hold.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from fuzz.regressions import DIRECTORY, load_all, replay
from fuzz.strategies import ATTACK_KINDS

REGRESSIONS = load_all(DIRECTORY) if DIRECTORY.is_dir() else []
pytestmark = pytest.mark.timeout(120)


def test_the_directory_holds_regressions():
    assert REGRESSIONS, f"no regression in {DIRECTORY}: the replay would prove nothing"


def test_every_file_belongs_to_a_regression():
    named = {name for r in REGRESSIONS for name in _inputs(r.path)} | {r.path.name for r in REGRESSIONS}
    present = {p.name for p in DIRECTORY.iterdir() if p.is_file()}
    assert present - named == set(), "files no sidecar names (a regression without its JSON?)"


def test_every_attack_class_is_kept():
    import json
    kept = {json.loads(r.path.read_text()).get("attack") for r in REGRESSIONS}
    assert set(ATTACK_KINDS) <= kept, f"attack classes without a regression: {set(ATTACK_KINDS) - kept}"


@pytest.fixture(scope="module")
def outcomes(sandbox_service):
    """Every contract regression, run concurrently once (the checks are per test below)."""
    contract = [r for r in REGRESSIONS if r.kind == "contract"]
    return dict(zip((r.path for r in contract), sandbox_service.call_many([r.call for r in contract])))


@pytest.mark.parametrize("regression", REGRESSIONS, ids=lambda r: r.name)
def test_regression_holds(sandbox_service, outcomes, regression):
    from fuzz.properties import check_call

    if regression.kind == "contract":
        try:
            check_call(sandbox_service, regression.call, outcomes[regression.path])
        except AssertionError as exc:
            raise AssertionError(f"{regression.path.name} ({regression.found_by}) fails again: {exc}") from exc
    else:
        replay(sandbox_service, [regression])


def _inputs(sidecar: Path) -> list[str]:
    import json
    return json.loads(sidecar.read_text())["inputs"]


class _CrashingRotate:
    """A test double of fuzz.properties.Service: every rotate answers 500, the rest 200
    with no files. Lets the test below check the writing of regressions without a sandbox."""

    def __init__(self):
        from fuzz.properties import Checked, Throughput
        self.throughput = Throughput()
        self.checked = Checked()

    def submit(self, call, limits=None):
        import concurrent.futures

        from fuzz.properties import Outcome
        answered = concurrent.futures.Future()
        answered.set_result(Outcome(500 if call.operation == "rotate" else 200, "error", 0.0, 5.0))
        return answered

    def outcomes(self, futures):
        return [future.result() for future in futures]


@pytest.mark.timeout(60)
def test_a_failing_property_leaves_its_shrunk_call_as_a_regression(tmp_path, monkeypatch):
    """The hook in fuzz.properties.hypothesis_tests, on cheap calls (shrinking real
    documents takes minutes): the file kept is the call Hypothesis shrank to."""
    import dataclasses

    from hypothesis import strategies as st

    import fuzz.properties
    from fuzz.properties import Call, hypothesis_tests, profile

    cheap = st.builds(Call, st.sampled_from(["info", "rotate"]), st.tuples(st.binary(min_size=1, max_size=64)),
                      st.just((("angle", "90"),)))
    monkeypatch.setattr(fuzz.properties, "operation_calls", lambda: cheap)
    run = dataclasses.replace(profile("ci"), examples=40, regressions=str(tmp_path), lanes=1)
    with pytest.raises(AssertionError):
        hypothesis_tests(_CrashingRotate(), run)["contract"]()
    kept = load_all(tmp_path)
    assert [r.call.operation for r in kept] == ["rotate"], kept
    assert "rotate: 500" in kept[0].failure
    assert kept[0].call.inputs == (b"\x00",)  # shrunk: one batch of one call, minimal bytes


def test_a_law_of_one_call_is_kept_and_read_back(tmp_path):
    """a_pipeline_of_one_step_is_that_step takes a Call: its regression file keeps the
    call's operation, parameters and inputs (writing one used to raise TypeError)."""
    from fuzz.properties import Call
    from fuzz.regressions import save_failure

    call = Call("fill-form", (b"%PDF-1.4 one", b"%PDF-1.4 two"), (("values", ""),))
    save_failure(tmp_path, "a_pipeline_of_one_step_is_that_step", (call,), AssertionError("differs"),
                 found_by="test")
    [kept] = load_all(tmp_path)
    assert (kept.law, kept.args) == ("a_pipeline_of_one_step_is_that_step", (call,))
