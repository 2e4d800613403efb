"""Properties of the service, checked through the REAL sandbox (fork server, confined
single-use children), with the same interpretation of results as the HTTP handler.

Runs in the test process or the fuzz driver (`python -m fuzz.run`); the operations run in
the sandbox's children. Every call is checked for the service-wide contract:

- the answer is 2xx or 4xx, never 5xx (`notrace.jobs.interpret`, as the server does);
- it comes before the job's wall deadline plus one second;
- every 2xx PDF reopens with both pikepdf and pypdf.

and the laws below check operations against each other on valid documents. Operations,
parameters and their limits come from the registry (house rule 8): nothing is listed twice.
A call is made as the server makes it (notrace.routes): parameters validated by the
registry, job params from notrace.jobs.job_params under the Settings of service_settings,
safe through notrace.safe's conversion (its phases each a job of its own, the pixel
stream checked here between them), a pipeline as one job.

The contract draws a batch of calls per Hypothesis example, and submits each as soon as
it is drawn (as many in flight as the sandbox has workers), so the sandbox works while the
next is drawn and both cores work; a failing batch shrinks to the one call that breaks
the contract. A call (or a law's arguments) that a run has already checked is not run
again (Checked). The shrunk failure of every property is written to the regression
directory (fuzz.regressions) before the test fails.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import dataclasses
import functools
import hashlib
import io
import json
import logging
import math
import os
import threading
import time
import zipfile
from typing import Callable, Sequence

import pikepdf
import pypdf
from hypothesis import HealthCheck, given, seed, settings, strategies as st
from hypothesis.control import current_build_context
from hypothesis.database import DirectoryBasedExampleDatabase

from fuzz.strategies import malformed_pdfs, pdfs
from notrace import pipeline, safe
from notrace.jobs import BadManifest, interpret, job_params, sandbox_limits
from notrace.operations.paper import GRIDS, SIZES
from notrace.operations.registry import OPERATIONS
from notrace.operations.spec import REQUIRED, Operation, ParamError
from notrace.problems import HttpProblem
from notrace.settings import Settings
from sandbox import Limits, MemFile, Result, Sandbox

__all__ = ["Service", "Call", "Outcome", "Profile", "Throughput", "Checked", "ContractBroken", "fuzz_limits",
           "contract_limits", "service_settings", "in_lanes", "profile",
           "operation_calls", "check_contract", "check_contracts", "check_drawn_contracts", "LAWS", "hypothesis_tests", "ENTRY", "WARMUP",
           "MAX_PAGES"]

ENTRY = "notrace.operations.child:run"
WARMUP = "notrace.operations.child:warm_up"
MAX_PAGES = Settings().max_pages  # the server's default
DEADLINE_SLACK_S = 1.0
#: Jobs of a safe conversion of one batch (pixels, build, merge): its wall budget, in
#: child wall limits (the documents drawn make one batch, or two at most).
SAFE_JOBS = 3
logging.getLogger("pypdf").setLevel(logging.CRITICAL)  # it narrates every repair it makes


def fuzz_limits() -> Limits:
    """Tighter than production (wall 5 s, CPU 4 s, 384 MB): a bomb should hit a limit
    quickly, and the contract is the same whichever limit fires first."""
    return Limits(memory_mb=384, cpu_s=4, wall_s=5.0, output_mb=64)


def contract_limits() -> Limits:
    """The contract's, tighter still (wall 2 s, CPU 1 s): it meets hostile input, and one
    that runs into a limit costs the limit. Measured: 5 of 155 jobs ran into the 5 s wall
    and took 25 of a 33 s run. The contract is the same whichever limit fires; the laws
    (valid documents, must succeed) keep fuzz_limits."""
    return Limits(memory_mb=384, cpu_s=1, wall_s=2.0, output_mb=64)


@functools.cache
def service_settings(limits: Limits) -> Settings:
    """The server's Settings for jobs under `limits` (its defaults otherwise: pages, pixel
    limits), as notrace.jobs.job_params and notrace.safe read them: the child limits are
    `limits`, and a safe conversion may take SAFE_JOBS jobs' wall time in all."""
    return Settings(child_memory_mb=limits.memory_mb, child_cpu_s=math.ceil(limits.cpu_s),
                    child_wall_s=limits.wall_s, child_output_mb=limits.output_mb,
                    safe_wall_s=SAFE_JOBS * limits.wall_s)


# -- budgets ----------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Profile:
    """How much to fuzz. ci: bounded (a few minutes) and reproducible from `seed`; long:
    NOTRACE_FUZZ_EXAMPLES per property, NOTRACE_FUZZ_MINUTES overall, examples kept in
    the Hypothesis database at NOTRACE_FUZZ_DB. batch: at most this many contract calls
    per Hypothesis example, run concurrently (NOTRACE_FUZZ_BATCH, default 6). regressions:
    where shrunk failures are written (NOTRACE_FUZZ_REGRESSIONS, default
    tests/fuzz/regressions; "" writes none). lanes: threads of the test process running
    examples at once (NOTRACE_FUZZ_LANES, default 2): the contract in that many shards,
    and fuzz.run's laws side by side, so that one lane generates while another waits for
    the sandbox."""

    name: str
    examples: int
    minutes: float | None
    seed: int
    database: str | None
    batch: int = 6
    regressions: str | None = None
    lanes: int = 2

    def settings(self, examples: int | None = None) -> settings:
        db = DirectoryBasedExampleDatabase(self.database) if self.database else None
        return settings(max_examples=examples or self.examples, deadline=None, database=db,
                        derandomize=False, print_blob=True,
                        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                               HealthCheck.filter_too_much])


def profile(name: str | None = None) -> Profile:
    """The profile named (or NOTRACE_FUZZ_PROFILE, default "ci"), from the environment."""
    name = name or os.environ.get("NOTRACE_FUZZ_PROFILE", "ci")
    if name not in ("ci", "long"):
        raise ValueError(f"fuzz profile must be 'ci' or 'long', got {name!r}")
    seed = int(os.environ.get("NOTRACE_FUZZ_SEED", "20240601"))
    batch = int(os.environ.get("NOTRACE_FUZZ_BATCH", "6"))
    if batch < 1:
        raise ValueError(f"NOTRACE_FUZZ_BATCH must be at least 1, got {batch!r}")
    lanes = int(os.environ.get("NOTRACE_FUZZ_LANES", "2"))
    if lanes < 1:
        raise ValueError(f"NOTRACE_FUZZ_LANES must be at least 1, got {lanes!r}")
    from fuzz.regressions import DIRECTORY  # noqa: PLC0415  (fuzz.regressions imports this module)
    regressions = os.environ.get("NOTRACE_FUZZ_REGRESSIONS", str(DIRECTORY)) or None
    if name == "ci":
        return Profile("ci", int(os.environ.get("NOTRACE_FUZZ_EXAMPLES", "30")), None, seed, None,
                       batch, regressions, lanes)
    minutes = os.environ.get("NOTRACE_FUZZ_MINUTES")
    return Profile("long", int(os.environ.get("NOTRACE_FUZZ_EXAMPLES", "1000")),
                   float(minutes) if minutes else None, seed, os.environ.get("NOTRACE_FUZZ_DB"),
                   batch, regressions, lanes)


@dataclasses.dataclass
class Throughput:
    """Examples and sandbox jobs counted across a run, for the closing line, with where
    the time went. In the test process, summed over its lanes (threads running examples
    at once): waiting for the sandbox, checking outputs (reopening), and generating
    (the rest of the lanes' time in properties: our strategies and Hypothesis itself).
    In the children: their CPU seconds, per operation; and the CPU of the test process
    (every thread) and of the sandbox (fork server and children: what the jobs did not
    use is the cost of making and ending children). An example is one call of the
    contract, or one instance of a law. Thread-safe (lanes and the loop thread add)."""

    examples: int = 0
    repeats: int = 0      # examples that repeat one already checked (Checked): not run
    jobs: int = 0
    started: float = dataclasses.field(default_factory=time.monotonic)
    statuses: dict = dataclasses.field(default_factory=dict)
    sandbox_s: float = 0.0
    check_s: float = 0.0
    busy_s: float = 0.0   # lanes' time inside properties (hypothesis_tests times them)
    child_cpu_s: dict = dataclasses.field(default_factory=dict)   # operation -> seconds
    _lock: threading.Lock = dataclasses.field(default_factory=threading.Lock, repr=False)
    _times: os.times_result = dataclasses.field(default_factory=os.times, repr=False)

    def add(self, **amounts: float) -> None:
        with self._lock:
            for name, amount in amounts.items():
                setattr(self, name, getattr(self, name) + amount)

    def job(self, operation: str, status: str, cpu_s: float) -> None:
        with self._lock:
            self.jobs += 1
            self.statuses[status] = self.statuses.get(status, 0) + 1
            self.child_cpu_s[operation] = self.child_cpu_s.get(operation, 0.0) + cpu_s

    def restart(self) -> None:
        """Count from now (after the sandbox started, so its start-up is not counted)."""
        with self._lock:
            self.examples = self.repeats = self.jobs = 0
            self.sandbox_s = self.check_s = self.busy_s = 0.0
            self.statuses, self.child_cpu_s = {}, {}
            self.started = time.monotonic()
            self._times = os.times()

    def line(self) -> str:
        """The closing line. The sandbox's CPU (fork server and children) is counted once
        its processes are reaped: write it after Service.close()."""
        with self._lock:
            elapsed = max(1e-9, time.monotonic() - self.started)
            busy = self.busy_s or elapsed  # properties not timed: the wall time
            generation = max(0.0, busy - self.sandbox_s - self.check_s)
            costly = sorted(self.child_cpu_s.items(), key=lambda item: -item[1])[:5]
            now, then = os.times(), self._times
            process = now.user + now.system - then.user - then.system
            sandbox = (now.children_user + now.children_system
                       - then.children_user - then.children_system)
            own = sum(self.child_cpu_s.values())
            making = f"{1000 * (sandbox - own) / self.jobs:.0f} ms a job" if self.jobs and sandbox else "n/a"
            return (f"{self.examples} examples ({self.repeats} repeating one already checked, "
                    f"not run again), {self.jobs} sandbox jobs in {elapsed:.1f} s: "
                    f"{self.examples / elapsed:.1f} examples/s "
                    f"({(self.examples - self.repeats) / elapsed:.1f} run), "
                    f"{self.jobs / elapsed:.1f} jobs/s; CPU: test process {process:.1f} s, "
                    f"sandbox {sandbox:.1f} s (the jobs' own {own:.1f} s; making and ending "
                    f"children {making}; most: "
                    + ", ".join(f"{name} {cpu:.1f} s" for name, cpu in costly)
                    + f"); test process, summed over lanes: waiting for the sandbox "
                    f"{self.sandbox_s:.1f} s, reopen checks {self.check_s:.1f} s, generation "
                    f"and Hypothesis {generation:.1f} s; statuses "
                    f"{dict(sorted(self.statuses.items()))}")


class Checked:
    """Digests of what a run has checked and found to hold: contract calls, and laws with
    their arguments. Thread-safe.

    Hypothesis repeats parts of earlier examples on purpose (it duplicates spans of its
    choices, for bugs that need equal values), so most examples of a contract run repeat
    a call made before: measured, 417 of 702 jobs of a run, 18 of its 28 s of children's
    CPU. Every call runs in a fresh child, so running the same bytes again checks nothing
    new but timing: a repeat is counted (Throughput.repeats) and not run again. Failures
    are never kept here: a failing call runs again whenever Hypothesis replays or shrinks
    it."""

    def __init__(self) -> None:
        self._held: set[bytes] = set()
        self._lock = threading.Lock()

    @staticmethod
    def key(value) -> bytes:
        digest = hashlib.blake2b(digest_size=16)
        _feed(digest, value)
        return digest.digest()

    def __contains__(self, key: bytes) -> bool:
        with self._lock:
            return key in self._held

    def add(self, key: bytes) -> None:
        with self._lock:
            self._held.add(key)


def _feed(digest, value) -> None:
    """Every part of `value` into `digest`, tagged with its type and length (no two values
    feed the same bytes)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        digest.update(b"b%d:" % len(data) + data)
    elif isinstance(value, Call):
        digest.update(b"C")
        _feed(digest, (value.operation, value.inputs, value.params))
    elif isinstance(value, (list, tuple)):
        digest.update(b"l%d:" % len(value))
        for item in value:
            _feed(digest, item)
    elif isinstance(value, dict):
        _feed(digest, sorted(value.items()))
    else:  # str, int, float, bool, None: their repr tells them apart
        text = f"{type(value).__name__}={value!r}".encode()
        digest.update(b"s%d:" % len(text) + text)


# -- calling the service ----------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Call:
    operation: str
    inputs: tuple[bytes, ...]
    params: tuple[tuple[str, str], ...]  # raw text, as a form would send it

    def __repr__(self) -> str:  # the inputs are in the failing example anyway; keep it short
        sizes = ", ".join(str(len(i)) for i in self.inputs)
        return f"Call({self.operation!r}, inputs=[{sizes} bytes], params={dict(self.params)!r})"


@dataclasses.dataclass
class Outcome:
    http_status: int
    sandbox_status: str
    elapsed_s: float
    deadline_s: float
    media_type: str | None = None
    files: list[bytes] = dataclasses.field(default_factory=list)
    report: dict = dataclasses.field(default_factory=dict)
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return 200 <= self.http_status < 300


@dataclasses.dataclass
class _Conversion:
    """One safe conversion in progress: the limits of its jobs (the server's sandbox's own,
    from its settings), and its clock: from its first job's start, less the waits of the
    later jobs for a worker (as a job's elapsed time starts when a worker is free)."""

    limits: Limits
    started: float | None = None
    waited_s: float = 0.0

    def elapsed(self) -> float:
        return 0.0 if self.started is None else time.monotonic() - self.started - self.waited_s


#: The conversion a task is running (each call runs in a task of its own).
_CONVERSION: contextvars.ContextVar[_Conversion] = contextvars.ContextVar("fuzz_conversion")


class _Phases:
    """A Service's sandbox as notrace.safe.run sees the server's (`workers`, and
    `run(inputs, params, limits)` applying the sandbox's own limits where it gives none):
    each phase's job waits for one of the service's workers like any other job, and is
    counted as a job of its own (safe-pixels, safe-build, safe-merge). Service's loop."""

    def __init__(self, service: "Service") -> None:
        self._service = service
        self.workers = service.workers

    async def run(self, inputs, params: dict, limits: Limits | None = None) -> Result:
        conversion = _CONVERSION.get()
        asked = time.monotonic()
        async with self._service._slots:
            if conversion.started is None:
                conversion.started = time.monotonic()
            else:
                conversion.waited_s += time.monotonic() - asked
            result = await self._service.sandbox.run(inputs, params,
                                                     conversion.limits.tightened(limits))
        self._service.throughput.job(params["operation"], result.status, result.stats.cpu_s)
        return result


class Service:
    """A Sandbox running the real child entry, and the server's reading of its results.

    Runs in the test process, its event loop in a thread of its own (started on first
    use): call() runs one job, call_many() runs several at once, at most `workers` in
    flight, so that a job's elapsed time never includes waiting for a worker. Both may be
    called from several threads at once (fuzz lanes): each waits for its own jobs while
    the others generate."""

    def __init__(self, *, limits: Limits | None = None, workers: int = 2, queue: int = 16) -> None:
        self.limits = limits or fuzz_limits()
        self.workers = workers
        self.sandbox = Sandbox(ENTRY, limits=self.limits, workers=workers, queue=queue, warmup=WARMUP)
        self.throughput = Throughput()
        self.checked = Checked()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._slots: asyncio.Semaphore | None = None
        self._starting = threading.Lock()
        self._phases = _Phases(self)

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        with self._starting:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="fuzz-service", daemon=True)
                thread.start()
                try:
                    asyncio.run_coroutine_threadsafe(self._start(), loop).result()
                except BaseException:
                    try:
                        asyncio.run_coroutine_threadsafe(self.sandbox.close(), loop).result()
                    finally:
                        self._stop(loop, thread)
                    raise
                self._loop, self._thread = loop, thread
            return self._loop

    async def _start(self) -> None:
        await self.sandbox.start()
        self._slots = asyncio.Semaphore(self.workers)

    @staticmethod
    def _stop(loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()

    def _run(self, coroutine):
        try:
            loop = self._running_loop()
        except BaseException:
            coroutine.close()
            raise
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result()

    def start(self) -> None:
        """Start the sandbox now (it starts on first use otherwise); raises SandboxError."""
        self._run(asyncio.sleep(0))

    def close(self) -> None:
        with self._starting:
            loop, thread, self._loop, self._thread = self._loop, self._thread, None, None
        if loop is not None:
            try:
                asyncio.run_coroutine_threadsafe(self.sandbox.close(), loop).result()
            finally:
                self._stop(loop, thread)

    def __enter__(self) -> "Service":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def call(self, operation: str, inputs, params: dict | None = None) -> Outcome:
        return self.call_many([Call(operation, tuple(inputs), tuple(sorted((params or {}).items())))])[0]

    def call_many(self, calls: Sequence[Call], limits: Limits | None = None) -> list[Outcome]:
        """Every call's outcome, in order; the calls run concurrently, under `limits`
        (default: the service's), tightened by each operation's own."""
        return self.outcomes([self.submit(call, limits) for call in calls])

    def submit(self, call: Call, limits: Limits | None = None) -> concurrent.futures.Future:
        """Start one call and return at once (its Outcome is the future's result): a lane
        submits each call as soon as it is drawn and draws the next while the sandbox
        works on this one."""
        coroutine = self._call(call.operation, call.inputs, dict(call.params), limits or self.limits)
        try:
            loop = self._running_loop()
        except BaseException:
            coroutine.close()
            raise
        return asyncio.run_coroutine_threadsafe(coroutine, loop)

    def outcomes(self, futures: Sequence[concurrent.futures.Future]) -> list[Outcome]:
        """The submitted calls' outcomes, in order (the wait counts as the sandbox's time)."""
        started = time.monotonic()
        try:
            return [future.result() for future in futures]
        finally:
            self.throughput.add(sandbox_s=time.monotonic() - started)

    async def _call(self, operation: str, inputs, params: dict, limits: Limits) -> Outcome:
        """One request, as the server's handlers make it (notrace.routes): operation
        "pipeline" takes params {"steps": JSON text} (notrace.pipeline) and is one job;
        safe is notrace.safe's conversion (several jobs); any other is one job with
        notrace.jobs.job_params."""
        settings = service_settings(limits)
        if operation == pipeline.NAME:
            try:
                steps = pipeline.parse(params["steps"], len(inputs))
            except HttpProblem as problem:  # the server answers 400 before any sandbox
                return Outcome(400, "not-run", 0.0, 0.0,
                               problem=f"{problem.type.slug}: {problem.detail}")
            return await self._job(steps.last, inputs, steps.job_params(settings.max_pages),
                                   limits.tightened(steps.limits()),
                                   steps.manifest_pages(settings.max_pages))
        op = OPERATIONS[operation]
        try:
            validated = op.validate(params)
        except ParamError as exc:  # the server answers 400 before any sandbox
            return Outcome(400, "not-run", 0.0, 0.0, problem=f"bad-parameter: {exc}")
        if op.name == safe.NAME:
            return await self._conversion(op, inputs, validated, settings)
        return await self._job(op, inputs, job_params(op, validated, settings),
                               limits.tightened(op.limits), settings.max_pages)

    async def _job(self, op: Operation, inputs, job: dict, limits: Limits,
                   manifest_pages: int) -> Outcome:
        async with self._slots:  # the clock starts when a worker is free for this job
            started = time.monotonic()
            result = await self.sandbox.run([bytes(i) for i in inputs], job, limits)
            elapsed = time.monotonic() - started
        self.throughput.job(op.name, result.status, result.stats.cpu_s)
        return self._outcome(op, result, Outcome(0, result.status, elapsed, limits.wall_s),
                             manifest_pages)

    async def _conversion(self, op: Operation, inputs, validated: dict,
                          settings) -> Outcome:
        """safe as the route runs it: notrace.safe.run drives its phases' jobs (each a
        fresh child, the pixel stream checked here between them) on this service's
        workers (_Phases); the deadline is the whole conversion's (safe_wall_s), counted
        from its first job, as notrace.safe counts it."""
        conversion = _Conversion(sandbox_limits(settings))
        _CONVERSION.set(conversion)  # this task's own (each call runs in a task of its own)
        with MemFile.from_bytes(inputs[0], "fuzz-upload") as document:
            document.seal()  # as the server seals an upload
            result = await safe.run(self._phases, [document], validated, settings)
        outcome = Outcome(0, result.status, conversion.elapsed(), settings.safe_wall_s)
        return self._outcome(op, result, outcome, settings.max_pages)

    @staticmethod
    def _outcome(op: Operation, result, outcome: Outcome, manifest_pages: int) -> Outcome:
        """`outcome` completed with the server's reading of `result` (notrace.jobs.interpret)."""
        try:
            answer = interpret(op, result, max_pages=manifest_pages)
        except HttpProblem as problem:
            outcome.http_status, outcome.problem = problem.status, problem.type.slug
        except BadManifest as exc:  # the server answers 422 processing-crashed: our bug
            outcome.http_status, outcome.problem = 500, f"bad manifest: {exc}"
        else:
            outcome.http_status, outcome.media_type, outcome.report = 200, answer.media_type, answer.report
            with answer:
                body = answer.body.read()
            if answer.media_type == "application/zip":  # the parts, as the child made them
                with zipfile.ZipFile(io.BytesIO(body)) as zf:
                    outcome.files = [zf.read(name) for name in zf.namelist()]
            else:
                outcome.files = [body]
        if result.status == "error":  # the server says 422, but the child raised: name it
            outcome.problem = f"{outcome.problem} (child raised {result.error})"
        return outcome

    def must_succeed(self, operation: str, inputs, params: dict | None = None) -> Outcome:
        outcome = self.call(operation, inputs, params)
        check_call(self, Call(operation, tuple(inputs), tuple(sorted((params or {}).items()))), outcome)
        assert outcome.ok, f"{operation} {params} failed on a valid document: {outcome}"
        return outcome


# -- the contract on every call ---------------------------------------------------------------

def reopen(data: bytes, password: str | None = None) -> int:
    """Page count, after opening with pikepdf AND pypdf (which must agree)."""
    with pikepdf.open(io.BytesIO(data), password=password or "") as pdf:
        pages = len(pdf.pages)
        encrypted = pdf.is_encrypted
    try:
        reader = pypdf.PdfReader(io.BytesIO(data), password=password if encrypted else None)
    except pypdf.errors.DependencyError:
        # AES needs the `cryptography` package, which the test environment lacks: pypdf
        # cannot open what encrypt writes (AES-256), so pikepdf's reading has to do.
        assert encrypted, "pypdf lacks a dependency for an unencrypted document"
        return pages
    assert len(reader.pages) == pages, f"pikepdf sees {pages} pages, pypdf {len(reader.pages)}"
    return pages


def pdf_outputs(outcome: Outcome) -> list[bytes]:
    return [f for f in outcome.files if f.startswith(b"%PDF-")]


def check_outcome(operation: str, outcome: Outcome, password: str | None = None) -> None:
    assert outcome.http_status < 500, f"{operation}: {outcome.http_status} {outcome.problem}"
    assert 200 <= outcome.http_status, f"{operation}: status {outcome.http_status}"
    assert outcome.elapsed_s <= outcome.deadline_s + DEADLINE_SLACK_S, \
        f"{operation}: answered after {outcome.elapsed_s:.2f} s (deadline {outcome.deadline_s} s)"
    if outcome.ok and OPERATIONS[operation].output in ("pdf", "archive", "pdf_or_archive"):
        for data in pdf_outputs(outcome):
            reopen(data, password if operation == "encrypt" else None)


class ContractBroken(AssertionError):
    """One call broke the service-wide contract; `call` is that call (what a regression
    file keeps)."""

    def __init__(self, message: str, call: Call) -> None:
        super().__init__(message)
        self.call = call


def check_call(service: Service, call: Call, outcome: Outcome) -> None:
    """The contract on one call's outcome; raises ContractBroken naming the call."""
    started = time.monotonic()
    try:
        check_outcome(call.operation, outcome, dict(call.params).get("password"))
    except Exception as exc:  # noqa: BLE001  an assertion, or a reopen that raised
        raise ContractBroken(f"{type(exc).__name__}: {exc}" if not isinstance(exc, AssertionError)
                             else str(exc), call) from exc
    finally:
        service.throughput.add(check_s=time.monotonic() - started)


def check_contract(service: Service, call: Call) -> Outcome:
    return check_contracts(service, [call])[0]


def check_contracts(service: Service, calls: Sequence[Call]) -> list[Outcome]:
    """Run the calls concurrently (under contract_limits), then check each; the first
    broken one raises."""
    outcomes = service.call_many(calls, contract_limits())
    for call, outcome in zip(calls, outcomes):
        check_call(service, call, outcome)
    return outcomes


def check_drawn_contracts(service: Service, data, calls: st.SearchStrategy[Call], batch: int,
                          drawn: list[Call]) -> None:
    """The contract on 1..batch calls drawn from `calls`, each submitted as soon as it is
    drawn, so that the sandbox works on it while the next is drawn; then every outcome
    is checked, in order, and the first broken one raises. A call this run has already
    checked (service.checked), or drawn twice here, is not run again; `drawn` gets the
    calls that run. A failing example shrinks to the one call that breaks the contract."""
    futures: dict[bytes, concurrent.futures.Future] = {}
    try:
        for _ in range(data.draw(st.integers(1, batch), label="calls")):
            call = data.draw(calls)
            key = Checked.key(call)
            if key in futures or key in service.checked:
                service.throughput.add(examples=1, repeats=1)
                continue
            drawn.append(call)
            futures[key] = service.submit(call, contract_limits())
            service.throughput.add(examples=1)
    except BaseException:
        concurrent.futures.wait(futures.values())  # a batch ends whole: no job outlives it
        raise
    for call, key, outcome in zip(drawn, futures, service.outcomes(list(futures.values()))):
        check_call(service, call, outcome)
        service.checked.add(key)


# -- generating calls from the registry -------------------------------------------------------

_PAGE_TEXTS = ["all", "1", "-1", "odd", "even", "1-2", "2,1", "1-", "3,1,1", "2-3", "9999", "0", "1-1"]
_RANGE_TEXTS = ["1", "1-2,3-", "1-", "1,2", "2-3,1", "1-9999"]


@functools.cache
def _raw_value(param) -> st.SearchStrategy[str]:
    """Raw text for one parameter, valid by construction (invalid text is the HTTP tests'
    job): the point here is the documents, not the parser of parameters. One strategy
    per parameter for the whole run (see _cached_strategies)."""
    if param.choices:
        return st.sampled_from([str(c) for c in param.choices])
    if param.kind == "integer":
        low = int(param.minimum) if param.minimum is not None else -1000
        high = int(param.maximum) if param.maximum is not None else 1000
        # Half the draws near the minimum: where an integer is a cost (dpi, widths, copies)
        # a job at 500 dpi costs fifty times one at 36, and the point is the documents.
        return st.one_of(st.integers(low, min(high, low + 16)),
                         st.integers(low, min(high, low + 500))).map(str)
    if param.kind == "number":
        low = param.minimum if param.minimum is not None else -1000.0
        high = param.maximum if param.maximum is not None else 1000.0
        return st.floats(low, high, allow_nan=False).map(lambda x: f"{x:.3f}")
    if param.kind == "boolean":
        return st.sampled_from(["true", "false"])
    if param.kind == "pages":
        return st.sampled_from(_PAGE_TEXTS)
    if param.kind == "ranges":
        return st.sampled_from(_RANGE_TEXTS)
    if param.kind == "password":
        return st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=12)
    if param.pattern:
        return st.from_regex(param.pattern, fullmatch=True).filter(lambda s: len(s) <= param.max_length)
    return st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=min(40, param.max_length))


@st.composite
def raw_params(draw, op: Operation) -> dict[str, str]:
    chosen = draw(st.sampled_from(op.one_of)) if op.one_of else None
    raw = {}
    for param in op.params:
        if param.name in op.one_of and param.name != chosen:
            continue
        needed = param.name == chosen or param.name in op.any_of[:1] and not any(
            name in raw for name in op.any_of)  # the first of any_of comes before the rest
        if param.default is REQUIRED or needed or draw(st.booleans()):
            raw[param.name] = draw(_raw_value(param))
    return raw


@st.composite
def images(draw) -> bytes:
    """Small PNG or JPEG images, sometimes damaged (for from-images)."""
    from PIL import Image
    mode = draw(st.sampled_from(["RGB", "L", "RGBA", "P", "1", "CMYK"]))
    size = (draw(st.integers(1, 64)), draw(st.integers(1, 64)))
    fmt = "JPEG" if mode in ("RGB", "L", "CMYK") and draw(st.booleans()) else "PNG"
    if fmt == "PNG" and mode == "CMYK":
        mode = "RGB"
    buffer = io.BytesIO()
    Image.new(mode, size, draw(st.integers(0, 255))).save(buffer, format=fmt)
    data = buffer.getvalue()
    if draw(st.booleans()):
        return data
    position = draw(st.integers(0, len(data) - 1))
    return data[:position] + bytes([data[position] ^ draw(st.integers(1, 255))]) + data[position + 1:]


# _cached_strategies: Hypothesis validates a strategy object on its first draw, and our
# composites used to build new ones on every draw (a sampled_from per parameter, a
# from_regex, one_of(pdfs(), malformed_pdfs()) per input): measured, that validation was
# about a third of the time spent generating a call. Built once, they are validated once.

@functools.cache
def documents() -> st.SearchStrategy[bytes]:
    """Valid documents half of the time (so operations get past parsing), hostile ones
    otherwise."""
    return st.one_of(pdfs(max_pages=6, encryption="any"), malformed_pdfs())


@st.composite
def operation_calls(draw, operations: tuple[str, ...] | None = None) -> Call:
    name = draw(_names(operations or tuple(OPERATIONS)))
    op = OPERATIONS[name]
    source = _images() if "application/pdf" not in op.inputs.media_types else documents()
    count = draw(st.integers(op.inputs.min, min(op.inputs.max, op.inputs.min + 2)))
    inputs = tuple(draw(source) for _ in range(count))
    return Call(name, inputs, tuple(sorted(draw(_params_of(name)).items())))


@functools.cache
def _names(operations: tuple[str, ...]) -> st.SearchStrategy[str]:
    return st.sampled_from(operations)


@functools.cache
def _images() -> st.SearchStrategy[bytes]:
    return images()


@functools.cache
def _params_of(name: str) -> st.SearchStrategy[dict[str, str]]:
    return raw_params(OPERATIONS[name])


# -- laws on valid documents -------------------------------------------------------------------

def page_texts(data: bytes, password: str | None = None) -> list[str]:
    reader = pypdf.PdfReader(io.BytesIO(data))
    if reader.is_encrypted:
        reader.decrypt(password or "")
    return [page.extract_text().strip() for page in reader.pages]


def page_rotations(data: bytes) -> list[int]:
    with pikepdf.open(io.BytesIO(data)) as pdf:
        return [_inherited_rotate(pdf.pages[i].obj) % 360 for i in range(len(pdf.pages))]


def _inherited_rotate(node) -> int:
    """/Rotate of a page, inherited from its ancestors when the page has none."""
    while node is not None:
        if "/Rotate" in node:
            return int(node.Rotate)
        node = node.get("/Parent")
    return 0


def law_four_rotations_are_identity(service: Service, pdf: bytes) -> None:
    data = pdf
    for _ in range(4):
        data = service.must_succeed("rotate", [data], {"angle": "90"}).files[0]
    assert page_rotations(data) == page_rotations(pdf)
    assert page_texts(data) == page_texts(pdf)


def law_encrypt_then_decrypt_keeps_pages_and_text(service: Service, pdf: bytes, password: str) -> None:
    encrypted = service.must_succeed("encrypt", [pdf], {"password": password}).files[0]
    decrypted = service.must_succeed("decrypt", [encrypted], {"password": password}).files[0]
    assert page_texts(decrypted) == page_texts(pdf)


def law_select_all_keeps_every_page(service: Service, pdf: bytes) -> None:
    selected = service.must_succeed("select", [pdf], {"pages": "all"}).files[0]
    assert page_texts(selected) == page_texts(pdf)


def law_merge_adds_page_counts_and_info_reads_it(service: Service, pdfs_: list[bytes]) -> None:
    merged = service.must_succeed("merge", pdfs_).files[0]
    assert page_texts(merged) == [t for pdf in pdfs_ for t in page_texts(pdf)]
    service.must_succeed("info", [merged])


def law_split_then_merge_keeps_page_count(service: Service, pdf: bytes, every: int) -> None:
    parts = pdf_outputs(service.must_succeed("split", [pdf], {"every": str(every)}))
    whole = parts[0] if len(parts) == 1 else service.must_succeed("merge", parts).files[0]
    assert page_texts(whole) == page_texts(pdf)


def law_sanitize_is_idempotent(service: Service, pdf: bytes) -> None:
    once = service.must_succeed("sanitize", [pdf])
    twice = service.must_succeed("sanitize", once.files[:1])
    removed = twice.report.get("removed", {})
    assert not any(removed.values()), f"the second sanitize still removed {removed}"


@st.composite
def pipeable_calls(draw) -> Call:
    """A call of an operation on one valid document, with valid parameters."""
    name = draw(_names(tuple(n for n, op in pipeline.STEP_OPERATIONS.items()
                             if op.inputs.min == 1 and "application/pdf" in op.inputs.media_types)))
    return Call(name, (draw(_valid_documents()),), tuple(sorted(draw(_params_of(name)).items())))


@functools.cache
def _valid_documents() -> st.SearchStrategy[bytes]:
    return pdfs(max_pages=6, encryption="any")


def _problem_type(outcome: Outcome) -> str | None:
    """The problem's type (Outcome.problem is "type" or "type: detail")."""
    return outcome.problem.split(":", 1)[0] if outcome.problem else None


def law_a_pipeline_of_one_step_is_that_step(service: Service, call: Call) -> None:
    """Same status, problem type, media type, report (inside the pipeline's) and files;
    an encrypted answer (random salts) the same pages and text. (A bad parameter's detail
    differs by design: the pipeline's names the step, "steps[0] (fill-form): values: ...".)"""
    alone, piped = service.call_many([call, Call(pipeline.NAME, call.inputs, (("steps", json.dumps(
        [{"operation": call.operation, "params": dict(call.params)}])),))])
    assert (piped.http_status, _problem_type(piped), piped.media_type) == \
        (alone.http_status, _problem_type(alone), alone.media_type), (alone, piped)
    if alone.ok:
        assert piped.report == {"steps": [{"operation": call.operation, "report": alone.report}]}
        if call.operation == "encrypt":  # pypdf lacks AES-256 here: pikepdf counts pages
            password = dict(call.params)["password"]
            assert [reopen(f, password) for f in piped.files] == \
                [reopen(f, password) for f in alone.files]
        else:
            assert piped.files == alone.files


def page_count(data: bytes) -> int:
    with pikepdf.open(io.BytesIO(data)) as pdf:
        return len(pdf.pages)


def law_nup_makes_ceil_n_over_per_sheet_sheets(service: Service, pdf: bytes, per_sheet: int) -> None:
    sheets = service.must_succeed("nup", [pdf], {"per_sheet": str(per_sheet)}).files[0]
    assert page_count(sheets) == math.ceil(page_count(pdf) / per_sheet)


def law_booklet_pages_are_a_multiple_of_four(service: Service, pdf: bytes) -> None:
    outcome = service.must_succeed("booklet", [pdf])
    sides = page_count(outcome.files[0])
    assert outcome.report["pages"] % 4 == 0 and outcome.report["pages"] == 2 * sides
    assert outcome.report["pages"] - outcome.report["blanks"] == page_count(pdf)


def law_scale_to_a4_gives_a4_pages(service: Service, pdf: bytes, fit: str) -> None:
    scaled = service.must_succeed("scale", [pdf], {"size": "A4", "fit": fit}).files[0]
    a4 = sorted(SIZES["a4"])
    with pikepdf.open(io.BytesIO(scaled)) as doc:
        for page in doc.pages:
            x0, y0, x1, y1 = (float(v) for v in page.obj.MediaBox)
            sides = sorted((x1 - x0, y1 - y0))
            assert all(abs(a - b) < 0.01 for a, b in zip(sides, a4)), sides


@st.composite
def outlines(draw, depth: int = 1) -> list[dict]:
    """Outlines in set-bookmarks' JSON form (pages 1..6, or null), up to 3 levels."""
    items = []
    for _ in range(draw(st.integers(0, 3 if depth == 1 else 2))):
        children = draw(outlines(depth + 1)) if depth < 3 and draw(st.booleans()) else []
        items.append({"title": draw(st.text(st.characters(categories=("L", "N", "P", "Zs")),
                                             max_size=12)),
                      "page": draw(st.one_of(st.none(), st.integers(1, 6))),
                      "level": depth, "children": children})
    return items


def _within(items: list[dict], count: int) -> list[dict]:
    """The outline with its pages folded into 1..count."""
    return [dict(item, page=None if item["page"] is None else (item["page"] - 1) % count + 1,
                 children=_within(item["children"], count)) for item in items]


def law_set_bookmarks_then_bookmarks_is_identity(service: Service, pdf: bytes, outline: list) -> None:
    outline = _within(outline, page_count(pdf))
    marked = service.must_succeed("set-bookmarks", [pdf], {"bookmarks": json.dumps(outline)}).files[0]
    read = json.loads(service.must_succeed("bookmarks", [marked]).files[0])
    assert read == {"bookmarks": outline, "truncated": False}


LAWS = {
    "a_pipeline_of_one_step_is_that_step": law_a_pipeline_of_one_step_is_that_step,
    "nup_makes_ceil_n_over_per_sheet_sheets": law_nup_makes_ceil_n_over_per_sheet_sheets,
    "booklet_pages_are_a_multiple_of_four": law_booklet_pages_are_a_multiple_of_four,
    "scale_to_a4_gives_a4_pages": law_scale_to_a4_gives_a4_pages,
    "set_bookmarks_then_bookmarks_is_identity": law_set_bookmarks_then_bookmarks_is_identity,
    "four_rotations_are_identity": law_four_rotations_are_identity,
    "encrypt_then_decrypt_keeps_pages_and_text": law_encrypt_then_decrypt_keeps_pages_and_text,
    "select_all_keeps_every_page": law_select_all_keeps_every_page,
    "merge_adds_page_counts_and_info_reads_it": law_merge_adds_page_counts_and_info_reads_it,
    "split_then_merge_keeps_page_count": law_split_then_merge_keeps_page_count,
    "sanitize_is_idempotent": law_sanitize_is_idempotent,
}


def in_lanes(tests: Sequence[Callable[[], None]]) -> Callable[[], None]:
    """One callable running `tests` at once, one thread each; it raises the first failure
    (in the order given) once all have ended."""
    if len(tests) == 1:
        return tests[0]

    def run() -> None:
        with concurrent.futures.ThreadPoolExecutor(len(tests), thread_name_prefix="fuzz-lane") as pool:
            futures = [pool.submit(test) for test in tests]
        for future in futures:
            future.result()
    return run


def hypothesis_tests(service: Service, run_profile: Profile) -> dict[str, Callable[[], None]]:
    """Each property as a ready-to-run Hypothesis test bound to `service`, seeded from the
    profile (so a CI run is reproducible from its printed seed). The contract gets three
    times the examples of a law: it is the one that meets hostile input, in batches of
    1..profile.batch calls (about 3n calls in all).

    When a property fails, its shrunk example (the one Hypothesis replays last) is written
    to profile.regressions (see fuzz.regressions) before the failure propagates."""
    from fuzz import regressions  # noqa: PLC0415  (it imports this module)
    valid = pdfs(max_pages=6, encryption="any")

    def keep(name: str, args: tuple, exc: Exception, seed_value: int) -> None:
        if run_profile.regressions and current_build_context().is_final:
            path = regressions.save_failure(run_profile.regressions, name, args, exc,
                                            found_by=f"{name}, seed {seed_value}")
            print(f"regression file written: {path}", flush=True)

    def bound(name: str, strategies_: tuple, check: Callable[..., None], examples: int,
              seed_value: int = run_profile.seed) -> Callable[[], None]:
        @seed(seed_value)
        @run_profile.settings(examples)
        @given(st.tuples(*strategies_))
        def test(args: tuple) -> None:
            key = Checked.key((name, args))
            if key in service.checked:  # this law held for these very arguments already
                service.throughput.add(examples=1, repeats=1)
                return
            service.throughput.add(examples=1)
            try:
                check(service, *args)
            except Exception as exc:
                keep(name, args, exc, seed_value)
                raise
            service.checked.add(key)
        test.__name__ = check.__name__  # Hypothesis reports and stores examples under it
        return timed(test)

    def contract(examples: int, seed_value: int) -> Callable[[], None]:
        @seed(seed_value)
        @run_profile.settings(examples)
        @given(st.data())
        def test(data) -> None:
            drawn: list[Call] = []
            try:
                check_drawn_contracts(service, data, calls, batch, drawn)
            except Exception as exc:
                keep("contract", (drawn,), exc, seed_value)
                raise
        test.__name__ = "check_contracts"  # the name examples were stored under before
        return timed(test)

    def timed(test: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            started = time.monotonic()
            try:
                test()
            finally:
                service.throughput.add(busy_s=time.monotonic() - started)
        return run

    laws = LAWS
    n = run_profile.examples
    batch = run_profile.batch
    lanes = run_profile.lanes
    calls = operation_calls()  # built once (see _cached_strategies)
    contract_examples = max(1, round(3 * n * 2 / (batch + 1)))
    # Shard k > 0 draws from its own seed; shard 0 from the profile's, as before lanes.
    shards = [contract(max(1, round(contract_examples / lanes)), run_profile.seed + 1_000_003 * k)
              for k in range(lanes)]
    return {
        "contract": in_lanes(shards),
        "four_rotations_are_identity": bound("four_rotations_are_identity", (valid,), laws["four_rotations_are_identity"], n),
        "encrypt_then_decrypt_keeps_pages_and_text": bound(
            "encrypt_then_decrypt_keeps_pages_and_text", (valid, st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=12)),
            laws["encrypt_then_decrypt_keeps_pages_and_text"], n),
        "select_all_keeps_every_page": bound("select_all_keeps_every_page", (valid,), laws["select_all_keeps_every_page"], n),
        "merge_adds_page_counts_and_info_reads_it": bound(
            "merge_adds_page_counts_and_info_reads_it", (st.lists(valid, min_size=2, max_size=3),), laws["merge_adds_page_counts_and_info_reads_it"], n),
        "split_then_merge_keeps_page_count": bound("split_then_merge_keeps_page_count", (valid, st.integers(1, 4)),
                                                   laws["split_then_merge_keeps_page_count"], n),
        "sanitize_is_idempotent": bound("sanitize_is_idempotent", (valid,), laws["sanitize_is_idempotent"], n),
        "nup_makes_ceil_n_over_per_sheet_sheets": bound(
            "nup_makes_ceil_n_over_per_sheet_sheets", (valid, st.sampled_from(sorted(GRIDS))),
            laws["nup_makes_ceil_n_over_per_sheet_sheets"], n),
        "booklet_pages_are_a_multiple_of_four": bound(
            "booklet_pages_are_a_multiple_of_four", (valid,), laws["booklet_pages_are_a_multiple_of_four"], n),
        "scale_to_a4_gives_a4_pages": bound(
            "scale_to_a4_gives_a4_pages", (valid, st.sampled_from(["contain", "cover", "stretch"])),
            laws["scale_to_a4_gives_a4_pages"], n),
        "set_bookmarks_then_bookmarks_is_identity": bound(
            "set_bookmarks_then_bookmarks_is_identity", (valid, outlines()),
            laws["set_bookmarks_then_bookmarks_is_identity"], n),
        "a_pipeline_of_one_step_is_that_step": bound("a_pipeline_of_one_step_is_that_step", (pipeable_calls(),),
                                                     laws["a_pipeline_of_one_step_is_that_step"], n),
    }
