"""Sandbox(timings=True): every hop of a job stamped, for benchmarks only. The child's
stamps are attacker-chosen numbers: checked for range, never used for a decision, and
refused when nobody asked for them."""
from __future__ import annotations

import pytest

from sandbox import timings
from tests.sandbox.conftest import on_own_loop, run
from tests.sandbox.test_protocol import INNOCENT, R, hostile_beside_innocent, raw

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def stamped():
    yield from on_own_loop(timings=True)


@pytest.fixture(scope="module")
def unstamped():
    yield from on_own_loop()


def test_off_by_default(sb):
    result = run(sb, "concat", [b"a"])
    assert result.ok and result.stats.timings is None
    assert "timings" not in result.stats.to_dict()


def test_every_hop_is_stamped_in_order(stamped):
    loop, sb = stamped
    result = loop.run_until_complete(sb.run([b"x"], INNOCENT))
    assert result.ok and result.outputs == [b"x!"]
    stamps = result.stats.timings
    assert set(stamps) == set(timings.ORDER)
    # One clock for every process: causality orders the stamps of all three.
    assert [stamps[name] for name in timings.ORDER] == sorted(stamps.values())
    assert [hop for hop, _ in timings.hops(stamps)] == list(timings.ORDER[1:])
    assert all(ms >= 0 for _, ms in timings.hops(stamps))


def test_a_job_that_fails_still_has_the_trusted_stamps(stamped):
    loop, sb = stamped
    result = loop.run_until_complete(sb.run([], {"do": "no_such_entry"}))
    assert result.status == "error"
    assert {"caller_started", "worker_found", "caller_sent", "caller_received",
            "caller_done"} <= set(result.stats.timings)


@pytest.mark.parametrize("value", [
    b'"soon"', b"[]", b'{"child_woke":"1"}', b'{"child_woke":true}', b'{"child_woke":-1}',
    b'{"child_woke":NaN}', b'{"child_woke":Infinity}', b'{"child_woke":1e300}',
    b'{"child_woke":1,"caller_received":2}', b'{"child_woke":[1]}',
])
def test_invalid_child_stamps_end_only_their_job(stamped, value):
    report = R + b'"status":"error","error":"x","timings":' + value + b"}"
    hostile = hostile_beside_innocent(stamped, [raw(report)], then="exit")
    assert hostile.status == "crashed" and hostile.reason == "sent an invalid report", hostile


def test_stamps_nobody_asked_for_end_the_job(unstamped):
    report = R + b'"status":"error","error":"x","timings":{"child_woke":1}}'
    hostile = hostile_beside_innocent(unstamped, [raw(report)], then="exit")
    assert hostile.status == "crashed" and hostile.reason == "sent an invalid report", hostile


def test_absurd_but_valid_stamps_are_only_statistics(stamped):
    # A child claiming it woke at 0 and reported at 1e11 changes no status and no
    # measurement taken from outside (wall_s is the fork server's own clock).
    report = (R + b'"status":"error","error":"hand",'
              b'"timings":{"child_woke":0,"child_reported":99999999999}}')
    hostile = hostile_beside_innocent(stamped, [raw(report)], then="exit")
    assert hostile.status == "error" and hostile.error == "hand"
    assert hostile.stats.timings["child_woke"] == 0.0
    assert 0 <= hostile.stats.wall_s < 30
