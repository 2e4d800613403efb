"""Rate limits in memory: a token bucket and a cap on jobs in progress, per client.

Runs in the server loop (one thread: plain counters, no locks). A client is the API key's
name when keys are on, else its address (notrace.clients; IPv6 by /64, which one host
usually holds whole). Only operation requests (`POST /api/v1/{operation}`) are counted:
they are what costs; the other endpoints answer from memory, and counting /ready would
let a busy client make the orchestrator's probe fail.

- rate: each client's bucket holds up to NOTRACE_RATE_BURST tokens and regains
  NOTRACE_RATE_PER_MIN per minute; a request takes one. An empty bucket is a 429
  `rate-limited` whose Retry-After is the wait for the next token.
- jobs: at most NOTRACE_MAX_JOBS_PER_KEY operation requests of one client in progress at
  once (from the first byte of the body to the last byte of the answer); one more is a
  429 with Retry-After NOTRACE_RETRY_AFTER_S.

Both are off at 0 (the default). Memory stays bounded: a bucket that is full again and
has no job in progress is the same as no bucket, so it is dropped (swept every
SWEEP_S); at most `max_clients` are tracked, and a new client beyond that evicts the
least recently seen one without a job in progress, full or not (which then starts
afresh: a bounded table cannot remember everyone). If every tracked client has a job in
progress, the new one is refused with 429.
"""
from __future__ import annotations

import collections
import ipaddress
import math
import time
from typing import Callable, Sequence

from aiohttp import web

from notrace.auth import KEY_NAME, route_of
from notrace.clients import Network, client_address
from notrace.problems import HttpProblem

__all__ = ["Limiter", "Slot", "middleware", "LIMITED_ROUTES", "MAX_CLIENTS", "SWEEP_S"]

#: Routes (aiohttp canonical paths) whose requests are counted.
LIMITED_ROUTES = frozenset({"/api/v1/{operation}", "/api/v1/pipeline"})
MAX_CLIENTS = 10_000     # about 1 MiB of buckets at most
SWEEP_S = 60.0


class _Bucket:
    __slots__ = ("tokens", "stamp", "jobs")

    def __init__(self, tokens: float, stamp: float) -> None:
        self.tokens = tokens
        self.stamp = stamp
        self.jobs = 0


class Slot:
    """One admitted request's job slot; release() when its answer is sent (idempotent)."""

    def __init__(self, limiter: "Limiter", bucket: _Bucket | None) -> None:
        self._limiter = limiter
        self._bucket = bucket

    def release(self) -> None:
        bucket, self._bucket = self._bucket, None
        if bucket is not None:
            bucket.jobs -= 1

    def __enter__(self) -> "Slot":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


class Limiter:
    """Every client's bucket and jobs in progress (one instance per application)."""

    def __init__(self, *, per_min: int, burst: int, max_jobs: int, retry_after_s: int,
                 max_clients: int = MAX_CLIENTS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if per_min < 0 or max_jobs < 0 or burst < 1 or max_clients < 1:
            raise ValueError("per_min and max_jobs must be >= 0, burst and max_clients >= 1")
        self.per_s = per_min / 60.0
        self.burst = float(burst)
        self.max_jobs = max_jobs
        self.retry_after_s = retry_after_s
        self.max_clients = max_clients
        self._clock = clock
        self._buckets: collections.OrderedDict[str, _Bucket] = collections.OrderedDict()
        self._swept = clock()

    @property
    def enabled(self) -> bool:
        return self.per_s > 0 or self.max_jobs > 0

    @property
    def tracked(self) -> int:
        """Clients tracked now (bounded by max_clients)."""
        return len(self._buckets)

    def admit(self, client: str) -> Slot:
        """A job slot for `client`, or the 429 problem (nothing is counted then)."""
        if not self.enabled:
            return Slot(self, None)
        now = self._clock()
        if now - self._swept >= SWEEP_S:
            self.sweep(now)
        bucket = self._bucket(client, now)
        if self.max_jobs and bucket.jobs >= self.max_jobs:
            raise HttpProblem("rate-limited", f"This client already has {self.max_jobs} "
                              "operation requests in progress.",
                              headers={"Retry-After": str(self.retry_after_s)})
        if self.per_s:
            self._refill(bucket, now)
            if bucket.tokens < 1.0:
                wait = math.ceil((1.0 - bucket.tokens) / self.per_s)
                raise HttpProblem("rate-limited", "This client sent more operation requests "
                                  "than NOTRACE_RATE_PER_MIN allows.",
                                  headers={"Retry-After": str(max(1, wait))})
            bucket.tokens -= 1.0
        bucket.jobs += 1
        return Slot(self, bucket)

    def sweep(self, now: float | None = None) -> None:
        """Drop every bucket that is full and idle (it says nothing a new one would not)."""
        now = self._clock() if now is None else now
        self._swept = now
        for client in [c for c, b in self._buckets.items() if self._idle(b, now)]:
            del self._buckets[client]

    def _idle(self, bucket: _Bucket, now: float) -> bool:
        if bucket.jobs:
            return False
        self._refill(bucket, now)
        return bucket.tokens >= self.burst

    def _refill(self, bucket: _Bucket, now: float) -> None:
        if self.per_s:
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.stamp) * self.per_s)
        bucket.stamp = now

    def _bucket(self, client: str, now: float) -> _Bucket:
        bucket = self._buckets.get(client)
        if bucket is not None:
            self._buckets.move_to_end(client)
            return bucket
        if len(self._buckets) >= self.max_clients:
            # The least recently seen first: O(1) but for the few with jobs in progress
            # (no sweep here: a flood of new clients must not cost a pass each).
            victim = next((c for c, b in self._buckets.items() if not b.jobs), None)
            if victim is None:
                raise HttpProblem("rate-limited", "The server tracks as many clients with "
                                  "requests in progress as it can.",
                                  headers={"Retry-After": str(self.retry_after_s)})
            del self._buckets[victim]
        bucket = self._buckets[client] = _Bucket(self.burst, now)
        return bucket


def client_of(request: web.Request, trusted: Sequence[Network]) -> str:
    """The bucket a request counts against: its key's name, else its address (/64)."""
    name = request.get(KEY_NAME)
    if name is not None:
        return "key:" + name
    address = client_address(request, trusted)
    if address is None:
        return "address:unknown"
    if ":" in address:   # IPv6: one host usually holds a whole /64
        ip = ipaddress.IPv6Address(address.split("%", 1)[0])   # no zone id in a bucket
        return "address:" + str(ipaddress.IPv6Network((ip, 64), strict=False))
    return "address:" + address


def middleware(limiter: Limiter, trusted: Sequence[Network]):
    """The middleware that counts operation requests (inside the auth middleware: it needs
    the key's name; before any body is read)."""

    @web.middleware
    async def limit(request: web.Request, handler) -> web.StreamResponse:
        if not limiter.enabled or route_of(request) not in LIMITED_ROUTES:
            return await handler(request)
        with limiter.admit(client_of(request, trusted)):
            return await handler(request)

    return limit
