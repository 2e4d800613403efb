"""Sandbox: the caller's handle on a fork server. Queues jobs, sends them, reads results.

Runs in the caller's process (e.g. the aiohttp server's event loop). The fork server is a
separate, clean interpreter started with an EMPTY environment but glibc's malloc tunable
of sandbox.hugepages (nothing of the caller's secrets reaches it or its children) and the
caller's sys.path; it is restarted when it dies. All state lives on the event loop
thread: no locks, no threads.

The fork server lends each warm child to this side (sandbox.workers): a job goes straight
to its child on the child's job line, and its report comes straight back, one hop each
way; the fork server only hears that the job started (it enforces the deadline from
outside) and that it is done, and tells how a child ended when it died without a report.
Params travel to the child in a sealed memfd, and an ok job's outputs come back in the
child's output memfd, whose length table (sandbox.trailer) is read and checked here,
once: the only place that turns a child's output bytes into a Result.
Each fork-server death is one warning on the logger "sandbox" with
extra={"fields": {"exit", "jobs_failed", "restarts"}}.
"""
from __future__ import annotations

import asyncio
import collections
import dataclasses
import errno
import itertools
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Iterable

from sandbox import hugepages, protocol, workers
from sandbox.layers.base import LayerStatus
from sandbox.layers.rlimits import MAX_JOB_FDS
from sandbox.limits import Limits
from sandbox.memfd import MemFile
from sandbox.policy import Policy
from sandbox.result import Result, Stats

START_TIMEOUT_S = 60.0        # imports + warm-up + first confined children
RESULT_GRACE_S = 5.0          # beyond a job's wall limit before we stop trusting the fork server
RESTART_BACKOFF_S = (0.1, 0.5, 1.0, 2.0, 5.0)
HANDOVER_ATTEMPTS = 3         # children found dying as a job was sent to them, at most
#: A job's answer when its child died before it was confined (so before it read the job):
#: the job goes to another child.
_NEVER_READ = Result("busy", reason="every child given the job died before it was ready; "
                                    "retry later")
WORKER_WAIT_S = 15.0          # for an idle child, with a slot: then "busy" (none can be made)

log = logging.getLogger("sandbox")

# The fork server's whole world: its sys.path arrives in argv, the rest over the socket.
_BOOT = "import sys; sys.path[:0] = {path!r}; from sandbox.forkserver import main; main({fd})"


class SandboxError(Exception):
    """The sandbox cannot start (e.g. a required isolation layer is missing here)."""


@dataclasses.dataclass(eq=False)
class _Job:
    """A job sent to its child, until its Result."""
    worker: workers.Worker
    limits: Limits
    future: asyncio.Future
    sent: float                          # when it went to the child (its wall_s starts)
    timings: dict | None                 # sandbox.timings' stamps, when asked for


class Sandbox:
    """Runs `entry(inputs: list[memoryview], params: dict) -> list[bytes]` in confined,
    single-use children forked from a warm fork server.

    workers: children running jobs at once (and as many kept warm ahead of time).
    queue: jobs that may wait for a worker; beyond that run() answers "busy" at once.
    warmup: optional "module:function" called once in the fork server after importing
        the entry (trusted code: e.g. run a sample job so children start with warm caches).
    canary: optional "module:function" returning (inputs, params): a job of built-in
        dummy data (never a user's) that every warm child runs through the entry once,
        confined, before its first job, unless a job already waits for it, so a job
        finds its pages already faulted in (sandbox.child). Called once in the fork
        server, whose start fails if the entry fails on it. Costs each child the entry's
        time on it, off the job's path.
    timings: stamp each job's hops (sandbox.timings) into its Result.stats.timings, for
        benchmarks and diagnostics; off by default.
    """

    def __init__(self, entry: str, *, limits: Limits | None = None, workers: int | None = None,
                 queue: int = 16, policy: Policy | None = None, warmup: str | None = None,
                 canary: str | None = None, timings: bool = False) -> None:
        if ":" not in entry:
            raise ValueError(f"entry {entry!r} is not 'package.module:function'")
        if queue < 0:
            raise ValueError(f"queue must be >= 0, got {queue!r}")
        self.entry = entry
        self.limits = limits or Limits()
        self.workers = workers or os.cpu_count() or 1
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers!r}")
        self.queue = queue
        self.policy = policy or Policy()
        self.warmup = warmup
        self.canary = canary
        self.timings = timings
        self._ids = itertools.count(1)
        self._proc: subprocess.Popen | None = None
        self._sock: socket.socket | None = None
        self._pidfd: int | None = None
        self._jobs: dict[int, _Job] = {}             # by worker id: sent, not yet answered
        self._pool: workers.Pool | None = None
        self._told: collections.deque[dict] = collections.deque()   # to the fork server
        self._telling = False                         # a writer waits to send _told
        self._slots: asyncio.Semaphore | None = None
        self._waiting = 0
        self._in_flight = 0
        self._layers: list[dict] = []
        self._ready: asyncio.Future | None = None
        self._restarting: asyncio.Task | None = None
        self._restarts = 0
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sync_loop: asyncio.AbstractEventLoop | None = None

    # --- public state -----------------------------------------------------------------
    @property
    def ready(self) -> bool:
        return bool(self._ready and self._ready.done() and not self._ready.exception()
                    and self._proc is not None and not self._closed)

    @property
    def queue_depth(self) -> int:
        return self._waiting

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def restarts(self) -> int:
        return self._restarts

    @property
    def fork_server_pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def layers(self) -> list[LayerStatus]:
        """The isolation layers on this host: available, applied, and why not."""
        return [LayerStatus(name=d["name"], available=d["available"] and d.get("active", False),
                            detail=d["detail"] if d.get("active") or not d["available"]
                            else f"{d['detail']} (not applied)")
                for d in self._layers]

    # --- life cycle -------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._slots = asyncio.Semaphore(self.workers)
        await self._spawn()

    async def __aenter__(self) -> "Sandbox":
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def _spawn(self) -> None:
        """Start the fork server and wait until it has warm, confined children."""
        ours, theirs = protocol.socketpair()
        # Started from the event loop thread (PR_SET_PDEATHSIG follows the spawning thread).
        # exec'd, never a bare fork of this process: it may have threads and secrets.
        self._proc = subprocess.Popen(
            [sys.executable, "-I", "-c", _BOOT.format(path=list(sys.path), fd=theirs.fileno())],
            pass_fds=[theirs.fileno()], env=dict(hugepages.ENVIRONMENT),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, close_fds=True, cwd="/")
        theirs.close()
        self._sock = ours
        self._pool = workers.Pool(self._loop)         # its children, none lent yet
        protocol.send(ours, {"entry": self.entry, "warmup": self.warmup, "canary": self.canary,
                             "limits": self.limits.to_dict(), "policy": self.policy.to_dict(),
                             "workers": self.workers, "sys_path": list(sys.path),
                             "parent_pid": os.getpid()})
        ours.setblocking(False)
        self._ready = self._loop.create_future()
        self._loop.add_reader(ours.fileno(), self._on_readable)
        self._pidfd = os.pidfd_open(self._proc.pid)
        self._loop.add_reader(self._pidfd, self._on_fork_server_exit, "")
        try:
            await asyncio.wait_for(asyncio.shield(self._ready), START_TIMEOUT_S)
        except asyncio.TimeoutError:
            self._kill_fork_server()
            raise SandboxError("the fork server did not become ready in time") from None
        except SandboxError:
            self._kill_fork_server()
            raise

    async def close(self) -> None:
        """Cancel queued jobs, kill children and the fork server; idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._restarting:
            self._restarting.cancel()
        if self._sock is not None:
            try:
                protocol.send(self._sock, {"type": "shutdown"})
            except OSError:
                pass
        proc = self._proc
        if proc is not None:
            deadline = time.monotonic() + 3.0
            while proc.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
        self._kill_fork_server()
        self._fail_all("crashed", "the sandbox was closed")

    # --- jobs -------------------------------------------------------------------------
    async def run(self, inputs: Iterable[bytes | bytearray | memoryview | MemFile],
                  params: dict | None = None, limits: Limits | None = None) -> Result:
        """Run one job and return its Result, whatever happens to the job.

        The one exception: more than MAX_JOB_FDS inputs is a ValueError, raised before
        anything is sent. Params (any size) travel to the child as JSON in a sealed memfd.
        """
        inputs = list(inputs)
        if len(inputs) > MAX_JOB_FDS:
            raise ValueError(f"at most {MAX_JOB_FDS} inputs per job, got {len(inputs)}")
        limits = self.limits.tightened(limits)
        if self._closed:
            return Result("busy", reason="the sandbox is closed")
        if not self.ready:
            return self._not_ready()
        if self._slots.locked() and self._waiting >= self.queue:
            return Result("busy", reason="every worker is busy and the queue is full")
        self._waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self._waiting -= 1
        self._in_flight += 1
        try:
            if not self.ready:
                return self._not_ready()
            return await self._run_now(inputs, params or {}, limits)
        finally:
            self._in_flight -= 1
            self._slots.release()

    def _not_ready(self) -> Result:
        if self._restarting is not None and not self._restarting.done():
            return Result("restarting", reason="the fork server is restarting; retry later")
        return Result("busy", reason="the sandbox is starting")

    async def _run_now(self, inputs: list, params: dict, limits: Limits) -> Result:
        stamps = {"caller_started": time.monotonic()} if self.timings else None
        owned: list[MemFile] = []
        try:
            try:
                owned.append(_params_memfd(params))
                for item in inputs:
                    mem = item if isinstance(item, MemFile) else MemFile.from_bytes(
                        item, "sandbox-input")
                    owned.insert(len(owned) - 1, mem)     # inputs first, params last
                    mem.seal()
            except (TypeError, ValueError) as exc:       # not JSON, not bytes: the caller's
                return Result("error", reason="the job's inputs or params cannot be sent",
                              error=f"{type(exc).__name__}: {str(exc)[:200]}")
            except OSError as exc:
                return _unsent(exc)
            for _ in range(HANDOVER_ATTEMPTS):
                job = await self._hand_over([m.fileno() for m in owned], limits, stamps)
                if isinstance(job, Result):
                    return job
                result = await self._answer(job, limits)
                if result is not _NEVER_READ:
                    return result
            return _NEVER_READ
        finally:
            for mem in owned:
                if not any(mem is item for item in inputs):
                    mem.close()

    async def _answer(self, job: _Job, limits: Limits) -> Result:
        """The job's Result, from its child or the fork server; _NEVER_READ if its child
        died before it was confined."""
        # A plain await with a timer, not wait_for(shield()): each of those wrappers
        # costs one more turn of the event loop between the result and this caller.
        timer = self._loop.call_later(limits.wall_s + RESULT_GRACE_S + 10.0,
                                      _time_out, job.future)
        try:
            return await job.future
        except asyncio.TimeoutError:
            # The fork server enforces deadlines; if it did not answer, it is broken.
            self._on_fork_server_exit("it stopped answering")
            return Result("restarting", reason="the fork server stopped answering")
        except asyncio.CancelledError:
            self._end(job, None, kill="abandoned")     # nobody waits: stop the child
            raise
        finally:
            timer.cancel()

    async def _hand_over(self, fds: list[int], limits: Limits,
                         stamps: dict | None) -> _Job | Result:
        """Send the job to an idle child (waiting for one if none is), and tell the fork
        server it started. A child found dying as the job is sent gives way to another."""
        header = {"type": "job", "inputs": len(fds) - 1, "limits": limits.to_dict()}
        if stamps is not None:
            header["timings"] = True
        for _ in range(HANDOVER_ATTEMPTS):
            pool = self._pool
            worker = await pool.take(WORKER_WAIT_S)
            if isinstance(worker, Result):
                return worker                     # the fork server died or was closed
            if pool.failed:                       # handed over just before it died
                worker.close()
                return Result("restarting", reason="the fork server died; retry later")
            if stamps is not None:
                stamps["worker_found"] = time.monotonic()
            sent = time.monotonic()                   # sending now: the child may wake first
            try:
                protocol.send(worker.line, header, fds)
            except OSError as exc:
                self._tell({"type": "done", "id": worker.id, "kill": "unlent"})
                worker.close()
                if exc.errno in protocol.EXHAUSTED:
                    return _unsent(exc)
                continue
            job = _Job(worker, limits, self._loop.create_future(), sent, stamps)
            if stamps is not None:
                stamps["caller_sent"] = sent
            self._jobs[worker.id] = job
            self._tell({"type": "started", "id": worker.id, "limits": limits.to_dict()})
            self._loop.add_reader(worker.line.fileno(), self._on_line, job)
            return job
        return Result("busy", reason="every child given the job was gone; retry later")

    def _on_line(self, job: _Job) -> None:
        """The child's line is readable: its report (checked), or its end."""
        if job.future.done():
            return
        try:
            report, output = workers.read_report(job.worker, job.timings is not None)
        except BlockingIOError:
            return
        except EOFError:
            self._stop_reading(job.worker)        # it died: the fork server says how
            return
        except protocol.ProtocolError:
            self._end(job, Result("crashed", reason="sent an invalid report", stats=Stats(
                wall_s=round(time.monotonic() - job.sent, 6))), kill="invalid")
            return
        received = time.monotonic()
        result = workers.result_from_report(report, output, job.limits,
                                            received - job.sent, job.timings)
        if job.timings is not None:
            job.timings.update(caller_received=received, caller_done=time.monotonic())
        self._end(job, result, kill=None)

    def _end(self, job: _Job, result: Result | None, kill: str | None,
             tell: bool = True) -> None:
        """A job is over: stop reading its line, close it, tell the fork server (`kill`:
        also end the child), answer."""
        if self._jobs.get(job.worker.id) is job:
            del self._jobs[job.worker.id]
        self._stop_reading(job.worker)
        job.worker.close()
        if tell:
            self._tell({"type": "done", "id": job.worker.id, "kill": kill})
        if result is not None and not job.future.done():
            job.future.set_result(result)
        elif result is not None:
            result.close()                        # its caller gave up: nobody to hand it to

    def _stop_reading(self, worker: workers.Worker) -> None:
        if worker.line.fileno() >= 0:
            try:
                self._loop.remove_reader(worker.line.fileno())
            except (ValueError, RuntimeError):
                pass

    def _tell(self, message: dict) -> None:
        """Send the fork server a message, in order, never blocking (a full socket waits
        for a writer callback)."""
        if self._sock is not None:
            self._told.append(message)
            self._flush_told()

    def _flush_told(self) -> None:
        while self._told and self._sock is not None:
            try:
                protocol.send(self._sock, self._told[0])
            except BlockingIOError:
                if not self._telling:
                    self._loop.add_writer(self._sock.fileno(), self._flush_told)
                    self._telling = True
                return
            except OSError:
                self._told.clear()                # it is gone: its pidfd tells the rest
                break
            self._told.popleft()
        if self._telling and self._sock is not None:
            self._loop.remove_writer(self._sock.fileno())
        self._telling = False

    def run_sync(self, inputs, params: dict | None = None, limits: Limits | None = None) -> Result:
        """Blocking twin of run() for command-line use; starts the sandbox on first use."""
        if self._sync_loop is None:
            self._sync_loop = asyncio.new_event_loop()
            self._sync_loop.run_until_complete(self.start())
        # Children lent while no loop ran were idle with no job waiting: take them (and
        # so send their canary) before this job looks for one, as a running loop would.
        self._on_readable()
        return self._sync_loop.run_until_complete(self.run(inputs, params, limits))

    def close_sync(self) -> None:
        if self._sync_loop is not None:
            self._sync_loop.run_until_complete(self.close())
            self._sync_loop.close()
            self._sync_loop = None

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc) -> None:
        self.close_sync()

    # --- the fork server's answers ------------------------------------------------------
    def _on_readable(self) -> None:
        if self._sock is None:
            return                        # a callback that raced the fork server's end
        try:
            for message, fds in protocol.drain(self._sock):
                self._on_message(message, fds)
        except protocol.PeerGone:
            self._on_fork_server_exit("it closed its channel")

    def _on_message(self, message: dict, fds: list[int] | None) -> None:
        """One message of the fork server: a lent child, a child's end, its readiness, or
        why it gave up. fds is None when the kernel dropped them because we are out of
        descriptors."""
        kind = message.get("type")
        if kind == "worker":
            self._on_worker(message, fds)
            return
        protocol.close_all(fds or ())
        if kind == "ended":
            self._on_ended(message)
        elif kind == "ready":
            self._layers = message.get("layers", [])
            if not self._ready.done():
                self._ready.set_result(None)
        elif kind == "fatal":
            if not self._ready.done():
                self._ready.set_exception(SandboxError(message.get("reason", "")))

    def _on_worker(self, message: dict, fds: list[int] | None) -> None:
        """A child lent to us: its job line and its output memfd. Given to the first
        caller waiting; else idle, and told to run its canary meanwhile (sandbox.child)."""
        worker_id = message.get("id")
        if type(worker_id) is not int or fds is None or len(fds) != 2:
            protocol.close_all(fds or ())
            if type(worker_id) is int:            # unusable here: let it go
                self._tell({"type": "done", "id": worker_id, "kill": "dropped"})
            if fds is None:                       # we are out of descriptors: not its fault
                self._pool.refuse_first(Result("busy", reason="out of descriptors "
                                               "receiving a child for the job"))
            return
        line = socket.socket(fileno=fds[0])
        line.setblocking(False)
        worker = workers.Worker(worker_id, line, MemFile(fd=fds[1]))
        if not self._pool.offer(worker) and self.canary:
            try:
                protocol.send(line, {"type": "canary"})
            except OSError:
                pass                              # it is dying: the fork server will say

    def _on_ended(self, message: dict) -> None:
        """A lent child is gone: an idle one is forgotten; a job's is answered from its
        report if it sent one before dying, else from how it ended."""
        job = self._jobs.get(message.get("id"))
        if job is None:
            self._pool.discard(message.get("id"))
            return
        self._on_line(job)                        # a report sent before its end wins
        if job.future.done():
            return
        if message.get("unready") is True:        # it never read the job: another will
            self._end(job, _NEVER_READ, kill=None, tell=False)
            return
        try:
            result = Result(status=message["status"], reason=message.get("reason", ""),
                            stats=Stats(**message.get("stats", {})),
                            exit_code=message.get("exit_code"), signal=message.get("signal"))
        except Exception as exc:
            result = Result("crashed", reason="malformed result from the fork server: "
                            + type(exc).__name__)
        self._end(job, result, kill=None, tell=False)

    def _on_fork_server_exit(self, why: str = "") -> None:
        """The fork server died (or closed its socket, or stopped answering): answer its
        jobs "restarting", log it once, restart it."""
        if self._sock is None:
            return
        if self._closed:                  # close() ended it: no death, no restart
            self._kill_fork_server()
            self._fail_all("crashed", "the sandbox was closed")
            return
        exit_text = self._kill_fork_server()
        if why:
            exit_text = f"{why}; {exit_text}"
        reason = "the fork server died"
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(SandboxError(reason + " during start-up"))
        jobs_failed = self._fail_all("restarting", reason + "; retry later")
        log.warning("fork server died", extra={"fields": {
            "exit": exit_text, "jobs_failed": jobs_failed, "restarts": self._restarts}})
        if os.getpid() == 1:
            # As a container's init, orphans are ours: the dead fork server's children
            # die of PDEATHSIG moments from now and must be reaped, or they stay zombies.
            self._loop.create_task(_reap_orphans(lambda: self._proc))
        if not self._closed and (self._restarting is None or self._restarting.done()):
            self._restarting = self._loop.create_task(self._restart())

    async def _restart(self) -> None:
        for attempt in itertools.count():
            await asyncio.sleep(RESTART_BACKOFF_S[min(attempt, len(RESTART_BACKOFF_S) - 1)])
            if self._closed:
                return
            self._restarts += 1              # counted as started: readiness follows
            try:
                await self._spawn()
                return
            except (SandboxError, OSError):
                continue

    def _fail_all(self, status: str, reason: str) -> int:
        """Answer every job sent and every caller waiting for a child; return how many."""
        jobs, self._jobs = self._jobs, {}
        failed = 0
        for job in jobs.values():
            failed += not job.future.done()
            self._end(job, Result(status, reason=reason), kill=None, tell=False)
        if self._pool is not None:
            failed += self._pool.fail(Result(status, reason=reason))
        return failed

    def _kill_fork_server(self) -> str:
        """SIGKILL and reap the fork server (its children die with it: PDEATHSIG);
        return how it ended."""
        if self._sock is not None:
            try:
                self._loop.remove_reader(self._sock.fileno())
                if self._telling:
                    self._loop.remove_writer(self._sock.fileno())
            except (ValueError, RuntimeError):
                pass
            self._telling = False
            self._told.clear()
            self._sock.close()
            self._sock = None
        if self._pidfd is not None:
            try:
                self._loop.remove_reader(self._pidfd)
            except (ValueError, RuntimeError):
                pass
            os.close(self._pidfd)
            self._pidfd = None
        if self._proc is None:
            return "not running"
        if self._proc.poll() is None:
            ended = "killed by the sandbox (SIGKILL)"
            self._proc.send_signal(signal.SIGKILL)
            self._proc.wait()
        else:
            ended = _describe_returncode(self._proc.returncode)
        self._proc = None
        return ended


def _describe_returncode(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


def _time_out(future: asyncio.Future) -> None:
    if not future.done():
        future.set_exception(asyncio.TimeoutError())


def _params_memfd(params: dict) -> MemFile:
    """The job's params as JSON in a sealed memfd: only the child decodes them."""
    mem = MemFile.from_bytes(json.dumps(params, separators=(",", ":")).encode(),
                             "sandbox-params")
    try:
        mem.seal()
    except BaseException:
        mem.close()
        raise
    return mem


def _unsent(exc: OSError) -> Result:
    """The job could not be handed over: "busy" when this host is short of descriptors
    or memory (try again later), else "crashed"."""
    if exc.errno in protocol.EXHAUSTED:
        return Result("busy", reason="out of resources sending the job "
                                     f"({errno.errorcode[exc.errno]})")
    return Result("crashed", reason=f"the job could not be sent ({type(exc).__name__})")


async def _reap_orphans(current_fork_server, seconds: float = 5.0) -> None:
    """PID 1 only: reap re-parented, exited grandchildren for a while (bounded).

    Peeks first (WNOWAIT) so that the fork server being restarted, a child of ours that
    subprocess must reap itself, is never taken.
    """
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        while True:
            try:
                info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                info = None
            proc = current_fork_server()
            if info is None or (proc is not None and info.si_pid == proc.pid):
                break
            try:
                os.waitpid(info.si_pid, os.WNOHANG)
            except ChildProcessError:
                break
        await asyncio.sleep(0.1)
