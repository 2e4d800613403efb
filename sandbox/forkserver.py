"""The fork server: one readable state machine that spawns, watches, reaps and kills.

Runs in its own clean interpreter (started by sandbox.Sandbox, never forked from the
server), single-threaded. It imports the entry module once, keeps `workers` children
forked AND confined ahead of time, hands each job to one idle child, enforces the job's
wall-clock deadline from outside, and answers each job with a Result. Like gunicorn's
arbiter, nothing happens in a signal handler: one loop waits on sockets and pipes with a
timeout and, on every tick, kills the overdue, dispatches pending jobs and tops up the
warm children. The fork() itself is done by its helper process, sandbox.spawner, which
also reaps the children and reports their ends, so this loop never blocks for it.

A trust boundary: children are hostile. Their messages are size-capped, decoded and
checked by sandbox.protocol and sandbox.reports; anything wrong ends THAT child's job
("crashed"). The fork server never decodes a job's params (they pass through in a sealed
memfd) nor its outputs (the server reads their table from the output memfd). No
exception leaves the loop: each event is handled under a guard that, if handling it
fails, ends only the child or the job it concerned.

Child states:  (requested) --spawned--> WARMING --ready--> IDLE --job--> BUSY
               BUSY --report--> answered --exited--> gone
               any state --deadline/shutdown--> killed (SIGKILL by pidfd) --exited--> gone
"""
from __future__ import annotations

import collections
import contextlib
import dataclasses
import gc
import importlib
import json
import os
import resource
import selectors
import signal
import socket
import stat
import sys
import time
import types
from typing import Callable

from sandbox import child as child_main
from sandbox import hugepages, protocol, reports, spawner, trailer
from sandbox.layers import prepare_all, probe_all
from sandbox.layers.rlimits import MAX_JOB_FDS, current_vm_bytes
from sandbox.limits import Limits
from sandbox.memfd import MemFile
from sandbox.outbox import Outbox
from sandbox.policy import Policy
from sandbox.result import classify_exit

WARMING, IDLE, BUSY = "warming", "idle", "busy"
READY_TIMEOUT_S = 10.0        # a child that cannot confine itself in this time is killed
EXIT_GRACE_S = 2.0            # a child that reported but did not exit by then is killed
MAX_SETUP_FAILURES = 5        # consecutive children dying before "ready": give up

#: Why the fork server kills a child, and the crash reason its job then gets.
KILL_REASONS = {
    "deadline": "killed at its wall-clock deadline",           # -> "timeout"
    "exit_grace": "reported, then did not exit in time",       # its report still stands
    "setup": "did not confine itself in time",
    "protocol": "sent a message out of turn",
    "invalid": "sent an invalid report",
    "internal": "the fork server failed while handling it",
    "shutdown": "the sandbox is closing",
}


@dataclasses.dataclass
class Job:
    id: int
    limits: Limits
    input_fds: list[int]           # the inputs, then the sealed params memfd (never read here)
    stamps: dict | None = None     # sandbox.timings' stamps, when the caller asked for them


@dataclasses.dataclass
class Child:
    pid: int
    pidfd: int
    chan: socket.socket
    stderr_fd: int
    output: MemFile                # made with the child (sandbox.spawner), for its one job
    state: str = WARMING
    started: float = dataclasses.field(default_factory=time.monotonic)
    job: Job | None = None
    job_started: float = 0.0
    deadline: float = 0.0
    killed: str | None = None      # why we SIGKILLed it: one of KILL_REASONS' keys
    answered: bool = False         # its job's result has been sent
    report: reports.Report | None = None


class ForkServer:
    def __init__(self, control: socket.socket, entry: Callable, limits: Limits,
                 policy: Policy, workers: int, library_fds: tuple[int, ...] = (),
                 timings: bool = False, canary_fds: tuple[int, ...] = ()) -> None:
        self.control = control
        self.canary_fds = canary_fds                  # the canary's sealed inputs and params
        self.timings = timings                        # stamp every job's hops (diagnostics)
        self.library_fds = library_fds
        self.entry = entry
        self.limits = limits
        self.policy = policy
        self.workers = workers
        self.children: dict[int, Child] = {}          # by pid
        self.pending: collections.deque[Job] = collections.deque()
        self.outbox = Outbox(control)
        self.selector = selectors.DefaultSelector()
        self.layers = probe_all()
        prepare_all(self.layers)
        self.available = {s.name: s.available for s in self.layers}
        self.applied: list[str] | None = None        # what the first ready child applied
        self.setup_failures = 0
        self.running = True
        self.announced = False
        self.requested = 0                            # spawns asked of the spawner, not yet come
        # A child's address space at its start is the spawner's, a copy of ours: measured
        # once here, it is the base its RLIMIT_AS adds the job's memory_mb to.
        self.baseline_vm_bytes = current_vm_bytes()
        self.spawner_pid, self.spawner = spawner.start(self.become_child, output_bytes(limits))

    # --- the loop ------------------------------------------------------------------
    def run(self) -> None:
        missing = [s for s in self.layers if not s.available and self.policy.required(s.name)]
        if missing:
            self.fatal("required isolation layer unavailable: "
                       + "; ".join(f"{s.name}: {s.detail}" for s in missing))
            return
        self.control.setblocking(False)
        self.spawner.setblocking(False)
        self.selector.register(self.control, selectors.EVENT_READ, ("control", None))
        self.selector.register(self.spawner, selectors.EVENT_READ, ("spawner", None))
        while self.running:
            with self.guard():
                self.manage_children()
            for key, _ in self.selector.select(self.next_timeout()):
                kind, child = key.data
                if child is not None and child.pid not in self.children:
                    continue                  # reaped earlier in this same batch
                with self.guard(child):
                    self.on_event(kind, child)
            with self.guard():
                self.murder_overdue()
            with self.guard():
                self.dispatch()
            with self.guard():
                self.flush_outbox()
        self.stop()

    def on_event(self, kind: str, child: Child | None) -> None:
        if kind == "control":
            self.on_control()
        elif kind == "spawner":
            self.on_spawner()
        elif kind == "chan":
            self.on_child_message(child)
        elif kind == "stderr":
            self.on_child_stderr(child)

    @contextlib.contextmanager
    def guard(self, child: Child | None = None):
        """Nothing escapes the loop: a failure while handling a child's event ends that
        child and its job; any other failure is dropped (handlers that concern one job
        guard it themselves) and the loop goes on."""
        try:
            yield
        except Exception:
            if child is not None:
                with contextlib.suppress(Exception):
                    self.fail(child, "internal")

    def next_timeout(self) -> float:
        now = time.monotonic()
        wakeups = [c.deadline for c in self.children.values() if c.state == BUSY]
        wakeups += [c.started + READY_TIMEOUT_S for c in self.children.values()
                    if c.state == WARMING]
        if not wakeups:
            return 1.0
        return max(0.0, min(min(wakeups) - now, 1.0))

    # --- the server's requests --------------------------------------------------------
    def on_control(self) -> None:
        try:
            for message, fds in protocol.drain(self.control):
                kind = message.get("type")
                if kind == "job":
                    self.accept_job(message, fds, time.monotonic() if self.timings else None)
                    self.dispatch()                   # now, not after this tick's other events
                    continue
                protocol.close_all(fds or ())
                if kind == "shutdown":
                    self.running = False
                    return
        except protocol.PeerGone:
            self.running = False          # the server is gone: nobody to work for

    def accept_job(self, message: dict, fds: list[int], received: float | None = None) -> None:
        """Queue a job: its fds are the inputs, then the params memfd (never read here).
        received: when it was read, if the job's hops are stamped (sandbox.timings)."""
        job_id = message.get("id")
        if fds is None:                           # we are out of descriptors: not its fault
            if type(job_id) is int:
                self.send_result(job_id, "busy", "the fork server ran out of descriptors")
            return
        try:
            if type(job_id) is not int:
                raise ValueError("the job has no id")
            limits = self.limits.tightened(Limits.from_dict(message["limits"]))
            if not 1 <= len(fds) <= MAX_JOB_FDS + 1:
                raise ValueError("wrong number of descriptors")
        except Exception as exc:
            protocol.close_all(fds)
            if type(job_id) is int and getattr(exc, "errno", None) in protocol.EXHAUSTED:
                self.send_result(job_id, "busy", "the fork server is out of descriptors "
                                 "or memory")
            elif type(job_id) is int:
                self.send_result(job_id, "crashed",
                                 f"fork server refused the job: {type(exc).__name__}")
            return
        stamps = None if received is None else {"forkserver_received": received}
        self.pending.append(Job(job_id, limits, fds, stamps))

    def dispatch(self) -> None:
        # Oldest first (adoption order): the one most likely done with its canary.
        idle = [c for c in self.children.values() if c.state == IDLE]
        while self.pending and idle:
            child, job = idle.pop(0), self.pending.popleft()
            header = {"type": "job", "inputs": len(job.input_fds) - 1,
                      "limits": job.limits.to_dict()}
            if job.stamps is not None:
                header["timings"] = True
                job.stamps["forkserver_dispatched"] = time.monotonic()   # sending now
            try:
                protocol.send(child.chan, header, job.input_fds)   # its output: its own
            except OSError:
                self.pending.appendleft(job)      # that child is dying; another takes it
                self.kill(child, "protocol")
                continue
            except Exception:                     # this job's own fault: it alone ends
                self.kill(child, "protocol")
                protocol.close_all(job.input_fds)
                self.send_result(job.id, "crashed", KILL_REASONS["internal"])
                continue
            protocol.close_all(job.input_fds)     # the child holds its own copies now
            job.input_fds = []
            child.state, child.job = BUSY, job
            child.job_started = time.monotonic()
            child.deadline = child.job_started + job.limits.wall_s

    # --- the children -----------------------------------------------------------------
    def manage_children(self) -> None:
        """Keep `workers` children requested, warming or idle, besides the busy ones.
        (Deferring the top-up while a job runs was measured: it costs a quarter of the
        throughput for less CPU contention, a bad trade.)"""
        warm = self.requested + sum(1 for c in self.children.values()
                                    if c.state in (WARMING, IDLE) and not c.killed)
        for _ in range(self.workers - warm):
            try:
                protocol.send(self.spawner, {"type": "spawn"})
            except BlockingIOError:
                return                                # asked enough for now: next tick
            except OSError:
                self.fatal("the spawner is gone")
                return
            self.requested += 1

    def become_child(self, chan: socket.socket, stderr_fd: int, output_fd: int):
        """In a child just forked by the spawner: its whole life (never returns)."""
        child_main.main(chan, stderr_fd, output_fd, self.entry, self.policy, self.limits,
                        self.available, self.library_fds, self.baseline_vm_bytes,
                        self.canary_fds)

    def on_spawner(self) -> None:
        """The spawner's news: a child was forked (with its fds), or one has exited."""
        try:
            for message, fds in protocol.drain(self.spawner, max_fds=4):
                child = self.children.get(message.get("pid"))
                with self.guard(child):
                    self.on_spawner_message(message, fds, child)
        except protocol.PeerGone:
            self.fatal("the spawner died")

    def on_spawner_message(self, message: dict, fds: list[int] | None,
                           child: Child | None) -> None:
        """One spawner message: a child forked (with its fds), or one exited. A spawned
        child whose fds we could not receive (out of descriptors) sees its channel close
        and exits; the spawner reaps it."""
        if fds is None:
            if message.get("type") == "spawned":
                self.requested = max(0, self.requested - 1)
            return
        if message.get("type") == "spawned" and len(fds) == 4:
            self.requested = max(0, self.requested - 1)
            self.adopt(message["pid"], *fds)
        elif message.get("type") == "exited":
            protocol.close_all(fds)
            if child is not None:
                usage = types.SimpleNamespace(ru_utime=message["utime"],
                                              ru_stime=message["stime"],
                                              ru_maxrss=message["maxrss_kb"])
                self.reap(child, message["status"], usage)
        else:
            protocol.close_all(fds)

    def adopt(self, pid: int, chan_fd: int, stderr_fd: int, pidfd: int, output_fd: int) -> None:
        chan = socket.socket(fileno=chan_fd)
        chan.setblocking(False)
        os.set_blocking(stderr_fd, False)
        child = Child(pid, pidfd, chan, stderr_fd, MemFile(fd=output_fd))
        self.children[pid] = child
        self.selector.register(child.chan, selectors.EVENT_READ, ("chan", child))
        self.selector.register(child.stderr_fd, selectors.EVENT_READ, ("stderr", child))

    def on_child_message(self, child: Child) -> None:
        """One (untrusted) message of a child: its readiness, or its report."""
        if child.answered or child.killed in ("invalid", "protocol", "internal", "setup"):
            self.forget(child.chan)                   # nothing it says counts any more
            return
        try:
            message, _ = protocol.recv(child.chan, max_fds=0,
                                       max_bytes=protocol.MAX_CHILD_MESSAGE_BYTES)
        except BlockingIOError:
            return
        except (EOFError, ConnectionError):
            self.forget(child.chan)                   # its exit will tell the rest
            return
        except protocol.ProtocolError:
            self.fail(child, "invalid" if child.state == BUSY else "protocol")
            return
        try:
            if child.state == WARMING:
                layers = reports.parse_ready(message)
            elif child.state == BUSY and child.report is None:
                stamps = child.job.stamps
                if stamps is not None:
                    stamps["forkserver_got_report"] = time.monotonic()
                report = reports.parse_report(message, child.output.size,
                                              timings=stamps is not None)
            else:
                raise protocol.ProtocolError("a message out of turn")
        except protocol.ProtocolError:
            self.fail(child, "invalid" if child.state == BUSY else "protocol")
            return
        if child.state == WARMING:
            child.state = IDLE
            self.setup_failures = 0
            if self.applied is None:
                self.applied = layers
            self.announce_ready()
            if self.canary_fds and not self.pending:
                # Nobody waits for this child: let it run its canary (sandbox.child).
                protocol.send(child.chan, {"type": "canary"})
        else:
            # Answer now: the report is complete, and the child is already on its way
            # out (os._exit). Its exit is reaped later, or forced after EXIT_GRACE_S.
            child.report = report
            child.deadline = min(child.deadline, time.monotonic() + EXIT_GRACE_S)
            self.answer_report(child, report)

    def fail(self, child: Child, why: str) -> None:
        """End a child (and its job, if unanswered) for `why`, one of KILL_REASONS."""
        self.kill(child, why)
        self.forget(child.chan)
        if child.job is not None and not child.answered:
            self.finish(child, "crashed", KILL_REASONS[why])

    def on_child_stderr(self, child: Child) -> None:
        """Read and drop: what a child prints is its own (attacker-chosen) text, never
        evidence of anything; the pipe is only kept from filling up."""
        try:
            data = os.read(child.stderr_fd, 65536)
        except BlockingIOError:
            return
        if not data:
            self.forget(child.stderr_fd)

    def forget(self, fileobj) -> None:
        """Stop watching a socket, pipe or pidfd (idempotent)."""
        try:
            self.selector.unregister(fileobj)
        except (KeyError, ValueError):
            pass

    def murder_overdue(self) -> None:
        now = time.monotonic()
        for child in list(self.children.values()):
            if child.killed:
                continue
            with self.guard(child):
                if child.state == BUSY and now >= child.deadline:
                    # Past the deadline with no report: "timeout". With a report, the
                    # child only failed to exit in its grace period: its report stands.
                    self.kill(child, "deadline" if child.report is None else "exit_grace")
                elif child.state == WARMING and now >= child.started + READY_TIMEOUT_S:
                    self.kill(child, "setup")

    def kill(self, child: Child, why: str) -> None:
        """SIGKILL the child (by pidfd: never a recycled pid; a child cannot fork, so it
        is its whole group); the spawner reaps it and tells us."""
        child.killed = child.killed or why           # the first cause wins
        try:
            signal.pidfd_send_signal(child.pidfd, signal.SIGKILL)
        except OSError:                              # already gone (or its pidfd closed)
            pass

    def reap(self, child: Child, wait_status: int, usage) -> None:
        """The child is gone (the spawner reaped it): answer its job, forget it."""
        try:
            # Its last words may still sit unread in the channel: read them first.
            if child.report is None and child.state == BUSY:
                self.on_child_message(child)
            drain_stderr(child)
        finally:
            self.children.pop(child.pid, None)
            for fileobj in (child.chan, child.stderr_fd):
                self.forget(fileobj)
            child.chan.close()
            child.output.close()
            protocol.close_all([child.stderr_fd, child.pidfd])
        if child.answered:
            return
        if child.job is None:
            if child.state == WARMING:
                self.setup_failures += 1
                if self.setup_failures >= MAX_SETUP_FAILURES:
                    self.fatal("children die before they are confined: "
                               + describe_wait(wait_status))
            return
        self.answer(child, wait_status, usage)

    def answer(self, child: Child, wait_status: int, usage) -> None:
        """Answer the job of a child that died without reporting: from its wait status."""
        job = child.job
        stats = {"wall_s": round(time.monotonic() - child.job_started, 6),
                 "cpu_s": round(usage.ru_utime + usage.ru_stime, 6),
                 "max_rss_mb": round(usage.ru_maxrss / 1024, 3)}
        exit_code = os.WEXITSTATUS(wait_status) if os.WIFEXITED(wait_status) else None
        sig = os.WTERMSIG(wait_status) if os.WIFSIGNALED(wait_status) else None
        if child.killed in ("shutdown", "protocol", "setup", "invalid", "internal"):
            status, reason = "crashed", KILL_REASONS[child.killed]
        else:
            status, reason = classify_exit(
                wait_status, killed_for_deadline=child.killed == "deadline",
                cpu_s=stats["cpu_s"], cpu_limit_s=job.limits.cpu_s,
                max_rss_mb=stats["max_rss_mb"], memory_limit_mb=job.limits.memory_mb)
        self.finish(child, status, reason, stats=stats, exit_code=exit_code, signal=sig)

    def answer_report(self, child: Child, report: reports.Report) -> None:
        """Turn a child's checked report into the job's result. Its size never depends
        on the child: for ok, only `used` travels (the server reads the output table)."""
        stats = {"wall_s": round(time.monotonic() - child.job_started, 6),
                 "cpu_s": report.cpu_s, "max_rss_mb": report.max_rss_mb}
        done = {"stats": stats, "exit_code": None, "signal": None}
        job = child.job
        if report.status == "ok" and report.used > output_bytes(job.limits):
            # The memfd is sized for the sandbox's cap; this job's own may be lower.
            self.finish(child, "output_too_large",
                        f"outputs exceed {job.limits.output_mb} MB", **done)
        elif report.status == "ok":
            self.finish(child, "ok", "", used=report.used, fds=[child.output.fileno()], **done)
        elif report.status == "error":
            self.finish(child, "error", "the entry raised an exception", error=report.error,
                        **done)
        elif report.status == "memory":
            self.finish(child, "memory", "ran out of memory (MemoryError)", **done)
        else:
            self.finish(child, "output_too_large",
                        f"outputs exceed {job.limits.output_mb} MB", **done)

    def finish(self, child: Child, status: str, reason: str, **fields) -> None:
        """Send the job's one result (the first cause wins). The child's output memfd
        stays open here until the child is reaped: every child holds the same four fds of
        ours all its life (the result carries a dup)."""
        if child.answered:
            return
        child.answered = True
        stamps = child.job.stamps
        if stamps is not None:                        # statistics only, like cpu_s
            if child.report is not None and child.report.timings:
                stamps.update(child.report.timings)
            stamps["forkserver_answered"] = time.monotonic()
            fields["stats"] = dict(fields.get("stats") or {}, timings=stamps)
        self.send_result(child.job.id, status, reason, **fields)

    # --- answers to the server ---------------------------------------------------------
    def send_result(self, job_id, status: str, reason: str, *, fds: list[int] = (),
                    **fields) -> None:
        message = {"type": "result", "id": job_id, "status": status, "reason": reason, **fields}
        # The fds are dup'ed so the job's MemFile can be closed now; the outbox owns these.
        try:
            dups = [os.dup(fd) for fd in fds]
        except OSError:                               # out of descriptors: this job only
            message, dups = {"type": "result", "id": job_id, "status": "busy",
                             "reason": "the fork server ran out of descriptors"}, []
        self.outbox.append(message, dups)
        self.flush_outbox()

    def announce_ready(self) -> None:
        if self.announced:
            return
        self.announced = True
        layers = [dict(s.to_dict(), active=s.name in (self.applied or []))
                  for s in self.layers]
        self.outbox.append({"type": "ready", "pid": os.getpid(), "layers": layers})

    def fatal(self, reason: str) -> None:
        self.running = False
        try:
            self.control.setblocking(True)
            protocol.send(self.control, {"type": "fatal", "reason": reason[:2000]})
        except OSError:
            pass

    def flush_outbox(self) -> None:
        if not self.outbox.flush():
            self.running = False          # the server is gone

    def stop(self) -> None:
        """Kill every child, wait (bounded) for the spawner to reap them, answer their
        jobs, then end the spawner."""
        for child in self.children.values():
            self.kill(child, "shutdown")
        # Only the spawner's news now. (The loop's selector also watches the control
        # socket, whose unread bytes made this wait spin until its deadline, and children
        # adopted in it, forked before the spawner heard of the shutdown, were never
        # killed: a close took the caller's whole 3 s grace, measured 3 in 4.)
        deadline = time.monotonic() + 5.0
        news = selectors.DefaultSelector()
        news.register(self.spawner, selectors.EVENT_READ)
        while self.children and time.monotonic() < deadline:
            if news.select(0.1):
                self.on_spawner()
                for child in self.children.values():
                    if not child.killed:                 # adopted while closing
                        self.kill(child, "shutdown")
        news.close()
        for child in list(self.children.values()):   # the spawner never told: answer anyway
            if child.job is not None:
                with contextlib.suppress(Exception):
                    self.finish(child, "crashed", KILL_REASONS["shutdown"])
        self.spawner.close()                          # EOF: the spawner kills, reaps, exits
        try:
            os.waitpid(self.spawner_pid, 0)
        except ChildProcessError:
            pass
        for job in self.pending:
            protocol.close_all(job.input_fds)
            self.send_result(job.id, "crashed", "the sandbox is closing")
        self.pending.clear()
        try:
            self.control.setblocking(True)
            self.control.settimeout(2.0)
            self.flush_outbox()
        except OSError:
            pass


def output_bytes(limits: Limits) -> int:
    """The size of an output memfd: the output cap plus room for the largest length
    table (sandbox.trailer)."""
    return (limits.output_mb << 20) + trailer.size(trailer.MAX_OUTPUTS)


def drain_stderr(child: Child) -> None:
    """Read and drop what is left in a dead child's stderr pipe (bounded: it is dead)."""
    try:
        for _ in range(64):
            if not os.read(child.stderr_fd, 65536):
                return
    except OSError:
        return


def describe_wait(wait_status: int) -> str:
    if os.WIFEXITED(wait_status):
        return f"exit status {os.WEXITSTATUS(wait_status)}"
    return f"signal {os.WTERMSIG(wait_status)}"


_RANDOM_DEVICES = {os.makedev(1, 8), os.makedev(1, 9)}     # /dev/random, /dev/urandom


def library_fds(control_fd: int) -> tuple[int, ...]:
    """Descriptors the entry's import or warm-up left open, which children must keep.

    Libraries cache descriptors (qpdf keeps /dev/urandom open once it made a key). A
    child closes every fd it does not know; a cached number would then point at the
    next fd opened, maybe a job input. Random devices are kept open in children (they
    grant nothing); any other leftover is refused, naming it, rather than guessed at.
    """
    kept, refused = [], []
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd <= 2 or fd == control_fd:
            continue
        try:
            info = os.fstat(fd)
        except OSError:
            continue                              # the listdir's own, now closed
        if stat.S_ISCHR(info.st_mode) and info.st_rdev in _RANDOM_DEVICES:
            kept.append(fd)
        else:
            refused.append(f"{fd} ({stat.filemode(info.st_mode)})")
    if refused:
        raise ValueError("the entry's import or warm-up left descriptors open, which "
                         "children would inherit: " + ", ".join(refused))
    return tuple(kept)


def make_canary(spec: str, entry: Callable) -> tuple[list[bytes], dict]:
    """The canary job: (inputs, params) from the trusted `spec` function, run once here
    through the entry (a canary that fails, fails at start-up, not in every child)."""
    inputs, params = load_entry(spec)()
    inputs = [bytes(item) for item in inputs]
    if not isinstance(params, dict):
        raise TypeError("the canary's params are not a dict")
    entry([memoryview(item) for item in inputs], params)
    return inputs, params


def canary_memfds(inputs: list[bytes], params: dict) -> tuple[int, ...]:
    """The canary's inputs, then its params as JSON, each in a sealed memfd (read-only
    for every holder) that every child inherits and closes once its canary ran."""
    mems = [MemFile.from_bytes(item, "sandbox-canary") for item in inputs]
    mems.append(MemFile.from_bytes(json.dumps(params).encode(), "sandbox-canary"))
    fds = []
    for mem in mems:
        mem.seal()
        fds.append(os.dup(mem.fileno()))     # ours for the fork server's life
        mem.close()
    return tuple(fds)


def load_entry(spec: str) -> Callable:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(f"entry {spec!r} is not 'package.module:function'")
    target = importlib.import_module(module_name)
    for part in attr.split("."):
        target = getattr(target, part)
    if not callable(target):
        raise TypeError(f"entry {spec!r} is not callable")
    return target


def main(control_fd: int) -> None:
    """Entry of the fork server process (see sandbox.sandbox.Sandbox._spawn)."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL, 0, 0, 0)            # PR_SET_PDEATHSIG: die with the server
    control = socket.socket(fileno=control_fd)
    config, _ = protocol.recv(control)
    if os.getppid() != config["parent_pid"]:
        os._exit(1)                                  # the server died before we got here
    sys.path[:] = config["sys_path"]
    os.environ.clear()
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    limits = Limits.from_dict(config["limits"])
    try:
        entry = load_entry(config["entry"])
        if config.get("warmup"):
            load_entry(config["warmup"])()
        canary = make_canary(config["canary"], entry) if config.get("canary") else None
    except BaseException as exc:
        protocol.send(control, {"type": "fatal",
                                "reason": "cannot load the entry: "
                                          + child_main.describe_exception(exc)})
        return
    try:
        kept = library_fds(control.fileno())
    except ValueError as exc:
        protocol.send(control, {"type": "fatal", "reason": str(exc)})
        return
    canary_fds = canary_memfds(*canary) if canary else ()
    # Objects alive now are shared by every child; freezing them keeps the collector
    # from touching (and so copying) their pages after each fork.
    gc.collect()
    gc.freeze()
    # Last, with the heap complete: every child's fork and exit then copy and free a
    # few dozen huge-page entries instead of thousands (sandbox.hugepages).
    hugepages.collapse()
    server = ForkServer(control, entry, limits, Policy.from_dict(config["policy"]),
                        int(config["workers"]), kept, timings=config.get("timings") is True,
                        canary_fds=canary_fds)
    server.run()
    os._exit(0)

