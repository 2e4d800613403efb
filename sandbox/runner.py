"""Sandbox: the caller's handle on a fork server. Queues jobs, sends them, reads results.

Runs in the caller's process (e.g. the aiohttp server's event loop). The fork server is a
separate, clean interpreter started with an EMPTY environment but glibc's malloc tunable
of sandbox.hugepages (nothing of the caller's secrets reaches it or its children) and the
caller's sys.path; it is restarted when it dies. All state lives on the event loop
thread: no locks, no threads.

Params travel to the child in a sealed memfd (the fork server never decodes them), and an
ok job's outputs come back in one memfd whose length table (sandbox.trailer) is read and
checked here, once: the only place that turns a child's output bytes into a Result.
Each fork-server death is one warning on the logger "sandbox" with
extra={"fields": {"exit", "jobs_failed", "restarts"}}.
"""
from __future__ import annotations

import asyncio
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

from sandbox import hugepages, protocol, trailer
from sandbox.layers.base import LayerStatus
from sandbox.layers.rlimits import MAX_JOB_FDS
from sandbox.limits import Limits
from sandbox.memfd import MemFile
from sandbox.policy import Policy
from sandbox.result import Outputs, Result, Stats

START_TIMEOUT_S = 60.0        # imports + warm-up + first confined children
RESULT_GRACE_S = 5.0          # beyond a job's wall limit before we stop trusting the fork server
RESTART_BACKOFF_S = (0.1, 0.5, 1.0, 2.0, 5.0)

log = logging.getLogger("sandbox")

# The fork server's whole world: its sys.path arrives in argv, the rest over the socket.
_BOOT = "import sys; sys.path[:0] = {path!r}; from sandbox.forkserver import main; main({fd})"


class SandboxError(Exception):
    """The sandbox cannot start (e.g. a required isolation layer is missing here)."""


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
        self._futures: dict[int, asyncio.Future] = {}
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
        protocol.send(ours, {"entry": self.entry, "warmup": self.warmup, "canary": self.canary,
                             "limits": self.limits.to_dict(), "policy": self.policy.to_dict(),
                             "workers": self.workers, "sys_path": list(sys.path),
                             "timings": self.timings,
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
        started = time.monotonic() if self.timings else 0.0
        owned: list[MemFile] = []
        job_id = next(self._ids)
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
            future = self._loop.create_future()
            self._futures[job_id] = future
            sent = time.monotonic() if self.timings else 0.0
            try:
                await self._send({"type": "job", "id": job_id, "limits": limits.to_dict()},
                                 [m.fileno() for m in owned])
            except OSError as exc:
                if self._sock is None or isinstance(exc, ConnectionError):
                    return Result("restarting", reason="the fork server is gone; retry later")
                return _unsent(exc)
            # A plain await with a timer, not wait_for(shield()): each of those wrappers
            # costs one more turn of the event loop between the result and this caller.
            timer = self._loop.call_later(limits.wall_s + RESULT_GRACE_S + 10.0,
                                          _time_out, future)
            try:
                result = await future
            except asyncio.TimeoutError:
                # The fork server enforces deadlines; if it did not answer, it is broken.
                self._on_fork_server_exit("it stopped answering")
                return Result("restarting", reason="the fork server stopped answering")
            finally:
                timer.cancel()
            if result.stats.timings is not None:
                result.stats.timings.update(caller_started=started, caller_sent=sent)
            return result
        finally:
            self._futures.pop(job_id, None)
            for mem in owned:
                if not any(mem is item for item in inputs):
                    mem.close()

    async def _send(self, message: dict, fds: list[int]) -> None:
        while True:
            if self._sock is None:
                raise ConnectionResetError("the fork server is gone")
            try:
                protocol.send(self._sock, message, fds)
                return
            except BlockingIOError:
                await asyncio.sleep(0.001)   # the fork server's buffer is full: rare, brief

    def run_sync(self, inputs, params: dict | None = None, limits: Limits | None = None) -> Result:
        """Blocking twin of run() for command-line use; starts the sandbox on first use."""
        if self._sync_loop is None:
            self._sync_loop = asyncio.new_event_loop()
            self._sync_loop.run_until_complete(self.start())
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
        """One message of the fork server: a result, its readiness, or why it gave up.
        fds is None when the kernel dropped them because we are out of descriptors."""
        kind = message.get("type")
        if fds is None:
            if kind == "result" and message.get("status") == "ok":
                message = {"type": "result", "id": message.get("id"), "status": "busy",
                           "reason": "out of descriptors receiving the job's outputs"}
            fds = []
        if kind == "result":
            self._on_result(message, fds)
        elif kind == "ready":
            protocol.close_all(fds)
            self._layers = message.get("layers", [])
            if not self._ready.done():
                self._ready.set_result(None)
        elif kind == "fatal":
            protocol.close_all(fds)
            if not self._ready.done():
                self._ready.set_exception(SandboxError(message.get("reason", "")))
        else:
            protocol.close_all(fds)

    def _on_result(self, message: dict, fds: list[int]) -> None:
        received = time.monotonic() if self.timings else 0.0
        future = self._futures.pop(message.get("id"), None)
        if future is None or future.done():
            protocol.close_all(fds)          # its caller gave up: nobody to hand it to
            return
        try:
            if message.get("status") == "ok":
                result = self._ok_result(message, fds.pop())
            else:
                result = Result(
                    status=message["status"], reason=message.get("reason", ""),
                    error=message.get("error"), stats=Stats(**message.get("stats", {})),
                    exit_code=message.get("exit_code"), signal=message.get("signal"))
        except Exception as exc:
            result = Result("crashed", reason="malformed result from the fork server: "
                            + type(exc).__name__)
        finally:
            protocol.close_all(fds)
        if result.stats.timings is not None:
            result.stats.timings.update(caller_received=received, caller_done=time.monotonic())
        future.set_result(result)

    def _ok_result(self, message: dict, output_fd: int) -> Result:
        """An ok job's Result, its outputs located by the table the child wrote."""
        out = MemFile(fd=output_fd)              # the Result owns it from here
        try:
            spans = trailer.read_spans(out, message.get("used"))
            return Result("ok", outputs=Outputs(out, spans),
                          stats=Stats(**message.get("stats", {})))
        except trailer.TrailerError:
            out.close()
            return Result("crashed", reason="sent an invalid output table",
                          stats=Stats(**message.get("stats", {})))
        except BaseException:
            out.close()
            raise

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
        futures, self._futures = self._futures, {}
        failed = 0
        for future in futures.values():
            if not future.done():
                future.set_result(Result(status, reason=reason))
                failed += 1
        return failed

    def _kill_fork_server(self) -> str:
        """SIGKILL and reap the fork server (its children die with it: PDEATHSIG);
        return how it ended."""
        if self._sock is not None:
            try:
                self._loop.remove_reader(self._sock.fileno())
            except (ValueError, RuntimeError):
                pass
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
