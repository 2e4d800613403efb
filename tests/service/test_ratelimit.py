"""Rate limits (notrace/ratelimit.py) and client addresses (notrace/clients.py).

Real servers over loopback: one with API keys (buckets per key), one without (buckets per
address, 127.0.0.2 a trusted proxy, 127.0.0.1 not). Both allow 12 operation requests a
minute (a token every 5 s) with a burst of 3, and one in progress per client. Each test
uses clients of its own, so the buckets of one test do not touch another's. The bounded
memory of the limiter is checked in this process with its own clock.
"""
from __future__ import annotations

import pytest

from notrace.problems import HttpProblem
from notrace.ratelimit import SWEEP_S, Limiter
from tests.pdfs import make_pdf
from tests.service.access import bearer, open_upload, request_from, wait_until, write_keys

NAMES = ("alice", "bob", "carol", "dave", "erin")
TRUSTED, UNTRUSTED = "127.0.0.2", "127.0.0.1"
LIMITS = {"rate_per_min": 12, "rate_burst": 3, "max_jobs_per_key": 1, "workers": 1}


@pytest.fixture(scope="module")
def keyed(start_server, tmp_path_factory):
    path, keys = write_keys(tmp_path_factory.mktemp("keys"), *NAMES)
    return start_server(api_keys_file=path, protect_monitoring=0, **LIMITS), keys


@pytest.fixture(scope="module")
def open_server(start_server):
    return start_server(trusted_proxies=TRUSTED, log_client_ip=1, **LIMITS)


def _limited(reply) -> int:
    """The Retry-After of a 429 rate-limited answer (asserting it is one)."""
    assert reply.status == 429, (reply.status, reply.body[:200])
    assert reply.problem_type == "/problems/rate-limited"
    return int(reply.headers["retry-after"])


def _nosuch(server, headers=None, source=UNTRUSTED):
    """A cheap operation request (no such operation: 404, but counted all the same)."""
    return request_from(server, source, "POST", "/api/v1/nosuch", b"", headers)


@pytest.mark.timeout(60)
def test_a_key_beyond_its_rate_waits_retry_after_and_recovers(keyed):
    server, keys = keyed
    alice = bearer(keys["alice"])
    assert server.post("info", [make_pdf(1)], headers=alice).status == 200  # counted too
    assert [_nosuch(server, alice).status for _ in range(2)] == [404, 404]
    wait = _limited(_nosuch(server, alice))
    assert 1 <= wait <= 5
    assert _nosuch(server, bearer(keys["bob"])).status == 404       # a bucket per key
    assert server.get("/api/v1/operations", headers=alice).status == 200   # not counted
    wait_until(lambda: _nosuch(server, alice).status == 404, timeout=wait + 6,
               what="a token back")


@pytest.mark.timeout(60)
def test_monitoring_can_be_left_open(keyed):
    server, _ = keyed
    assert server.get("/ready").status == 200
    assert server.get("/metrics").status == 200
    assert server.get("/api/v1/operations").status == 401


@pytest.mark.timeout(60)
def test_a_key_beyond_its_jobs_in_progress_gets_429(keyed):
    server, keys = keyed
    carol = bearer(keys["carol"])
    sock = open_upload(server, headers=carol)
    try:
        reply = wait_until(lambda: (r := _nosuch(server, carol)).status == 429 and r,
                           what="the upload's slot")
        assert _limited(reply) == 2                    # NOTRACE_RETRY_AFTER_S
        assert _nosuch(server, bearer(keys["dave"])).status == 404
    finally:
        sock.close()
    wait_until(lambda: _nosuch(server, carol).status == 404, what="the slot back")


@pytest.mark.timeout(60)
def test_addresses_are_buckets_when_keys_are_off(open_server):
    server = open_server
    xff = {"X-Forwarded-For": "198.51.100.1"}
    assert [_nosuch(server, xff, TRUSTED).status for _ in range(3)] == [404] * 3
    _limited(_nosuch(server, xff, TRUSTED))
    # Behind the trusted proxy, another client is another bucket.
    assert _nosuch(server, {"X-Forwarded-For": "198.51.100.2"}, TRUSTED).status == 404


@pytest.mark.timeout(60)
def test_an_ipv6_client_is_its_slash_64(open_server):
    server = open_server
    same = [f"2001:db8:5:6::{i}" for i in range(1, 5)]      # one /64, four addresses
    statuses = [_nosuch(server, {"X-Forwarded-For": ip}, TRUSTED).status for ip in same]
    assert statuses == [404, 404, 404, 429], statuses
    assert _nosuch(server, {"X-Forwarded-For": "2001:db8:5:7::1"}, TRUSTED).status == 404


@pytest.mark.timeout(60)
def test_a_spoofed_forwarded_for_from_an_untrusted_peer_is_ignored(open_server):
    server = open_server
    statuses = [_nosuch(server, {"X-Forwarded-For": f"203.0.113.{i}"}, UNTRUSTED).status
                for i in range(4)]
    assert statuses[:3] == [404] * 3 and statuses[3] == 429, statuses
    logged = {r["client_ip"] for r in server.log_records()
              if r.get("route") == "/api/v1/{operation}" and "client_ip" in r}
    assert not any(ip.startswith("203.0.113.") for ip in logged), logged


@pytest.mark.timeout(60)
def test_the_logged_client_is_the_first_untrusted_hop(open_server):
    server = open_server
    cases = {"192.0.2.10": "192.0.2.10",
             "10.9.9.9, 192.0.2.11": "192.0.2.11",            # the proxy appended it
             f"192.0.2.12, {TRUSTED}": "192.0.2.12",          # a trusted hop is skipped
             "192.0.2.13, not-an-address": TRUSTED}           # stop at the last trusted
    for header, expected in cases.items():
        request_id = "xff-" + expected.replace(".", "-") + str(len(header))
        request_from(server, TRUSTED, "GET", "/health",
                     headers={"X-Forwarded-For": header, "X-Request-ID": request_id})
        record = wait_until(lambda: next((r for r in server.log_records()
                                          if r.get("request_id") == request_id), None),
                            what="the access line")
        assert record["client_ip"] == expected, (header, record)


@pytest.mark.timeout(60)
def test_an_address_beyond_its_jobs_in_progress_gets_429(open_server):
    server = open_server
    mine, other = {"X-Forwarded-For": "198.51.100.50"}, {"X-Forwarded-For": "198.51.100.51"}
    sock = open_upload(server, TRUSTED, mine)
    try:
        wait_until(lambda: _nosuch(server, mine, TRUSTED).status == 429,
                   what="the upload's slot")
        assert _nosuch(server, other, TRUSTED).status == 404
    finally:
        sock.close()
    wait_until(lambda: _nosuch(server, mine, TRUSTED).status == 404, what="the slot back")


# --- in this process: memory stays bounded --------------------------------------

class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_idle_buckets_are_dropped_and_the_table_is_capped():
    clock = _Clock()
    limiter = Limiter(per_min=60, burst=2, max_jobs=1, retry_after_s=2, max_clients=100,
                      clock=clock)
    busy = limiter.admit("held")                       # a job in progress: never evicted
    for i in range(1000):
        limiter.admit(f"c{i}").release()
        assert limiter.tracked <= 100
    assert limiter.tracked == 100
    with pytest.raises(HttpProblem) as err:
        limiter.admit("held")                          # still tracked, still capped
    assert err.value.headers["Retry-After"] == "2"
    clock.now += SWEEP_S                               # every idle bucket is full again
    limiter.admit("late").release()
    assert limiter.tracked == 2                        # "held" (in progress) and "late"
    busy.release()
    busy.release()                                     # idempotent
    limiter.sweep(clock.now + SWEEP_S)
    assert limiter.tracked == 0


def test_a_bucket_refills_at_the_rate_and_says_when():
    clock = _Clock()
    limiter = Limiter(per_min=6, burst=1, max_jobs=0, retry_after_s=2, clock=clock)
    limiter.admit("a").release()
    with pytest.raises(HttpProblem) as err:
        limiter.admit("a")
    assert err.value.status == 429 and err.value.headers["Retry-After"] == "10"
    clock.now += 7.5
    with pytest.raises(HttpProblem) as err:
        limiter.admit("a")
    assert err.value.headers["Retry-After"] == "3"
    clock.now += 2.5
    limiter.admit("a").release()


def test_with_every_tracked_client_busy_a_new_one_is_refused():
    limiter = Limiter(per_min=0, burst=1, max_jobs=5, retry_after_s=2, max_clients=3)
    slots = [limiter.admit(c) for c in "abc"]
    with pytest.raises(HttpProblem):
        limiter.admit("d")
    slots[0].release()
    limiter.admit("d").release()
    assert limiter.tracked <= 3
