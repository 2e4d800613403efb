"""fuzz.properties.Service makes requests as the server does: safe through notrace.safe's
phases (each a child of its own), the other operations with notrace.jobs.job_params; and
a run does not run again a call it has already checked.

Runs in the test process; jobs run in the REAL sandbox (the module's sandbox_service).
"""
from __future__ import annotations

import concurrent.futures

import pytest
from hypothesis import given, seed, settings, strategies as st

from fuzz.properties import (SAFE_JOBS, Call, Checked, Outcome, Throughput, check_call,
                             check_drawn_contracts, contract_limits, service_settings)
from notrace.jobs import sandbox_limits

PAGE = b"%PDF-1.4\n1 0 obj <</Type/Catalog/Pages 2 0 R>> endobj\n2 0 obj <</Type/Pages/Kids[3 0 R]/Count 1>> endobj\n" \
       b"3 0 obj <</Type/Page/Parent 2 0 R/MediaBox[0 0 200 200]>> endobj\ntrailer <</Root 1 0 R>>\n%%EOF\n"


def test_the_settings_of_a_run_give_its_limits_to_every_child():
    limits = contract_limits()
    settings = service_settings(limits)
    assert sandbox_limits(settings) == limits
    assert settings.safe_wall_s == SAFE_JOBS * limits.wall_s


@pytest.mark.timeout(60)
def test_safe_runs_its_phases_each_in_a_child_of_its_own(sandbox_service):
    jobs = sandbox_service.throughput.jobs
    call = Call("safe", (PAGE,), (("dpi", "36"),))
    [outcome] = sandbox_service.call_many([call])  # the service's limits: wall 5 s
    check_call(sandbox_service, call, outcome)  # 2xx, in time, and the PDF reopens
    assert outcome.ok and outcome.report["batches"] == 1, outcome
    assert outcome.deadline_s == service_settings(sandbox_service.limits).safe_wall_s
    # One batch: phase 1, phase 2 and the merge, each a job (and a child) of its own.
    assert sandbox_service.throughput.jobs - jobs == 3
    assert {"safe-pixels", "safe-build", "safe-merge"} <= set(sandbox_service.throughput.child_cpu_s)
    assert "safe" not in sandbox_service.throughput.child_cpu_s  # never both phases in one


@pytest.mark.timeout(60)
def test_a_safe_conversion_of_no_document_is_a_4xx(sandbox_service):
    call = Call("safe", (b"%PDF-1.4 nothing else",), ())
    [outcome] = sandbox_service.call_many([call])
    check_call(sandbox_service, call, outcome)
    assert 400 <= outcome.http_status < 500, outcome


def test_equal_calls_have_one_key_and_any_difference_another():
    call = Call("rotate", (b"%PDF-1.4 a", b"b"), (("angle", "90"),))
    assert Checked.key(call) == Checked.key(Call("rotate", (b"%PDF-1.4 a", b"b"), (("angle", "90"),)))
    others = [Call("rotate", (b"%PDF-1.4 ab",), (("angle", "90"),)),
              Call("rotate", (b"%PDF-1.4 a", b"c"), (("angle", "90"),)),
              Call("rotate", (b"%PDF-1.4 a", b"b"), (("angle", "180"),)),
              Call("delete", (b"%PDF-1.4 a", b"b"), (("angle", "90"),))]
    assert len({Checked.key(call), *map(Checked.key, others)}) == 1 + len(others)
    assert Checked.key(("law", (1,))) != Checked.key(("law", ("1",)))


class _CountingService:
    """A test double of Service: every call answers 200 at once; it counts the calls run."""

    def __init__(self):
        self.throughput = Throughput()
        self.checked = Checked()
        self.ran: list[Call] = []

    def submit(self, call, limits=None):
        self.ran.append(call)
        answered = concurrent.futures.Future()
        answered.set_result(Outcome(200, "ok", 0.0, 2.0))
        return answered

    def outcomes(self, futures):
        return [future.result() for future in futures]


def test_a_call_checked_once_is_not_run_again():
    service = _CountingService()
    same = st.just(Call("info", (b"%PDF-1.4 x",), ()))

    @seed(1)
    @settings(max_examples=20, database=None)
    @given(st.data())
    def contract(data):
        check_drawn_contracts(service, data, same, 6, [])

    contract()
    assert len(service.ran) == 1
    assert service.throughput.examples > service.throughput.repeats > 0
