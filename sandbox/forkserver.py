"""The fork server: one readable state machine that spawns, watches, reaps and kills.

Runs in its own clean interpreter (started by sandbox.Sandbox, never forked from the
server), single-threaded. It imports the entry module once, keeps `workers` children
forked AND confined ahead of time and lends each to the caller as soon as it is forked:
the caller and the child then speak directly on the child's job line (one job, one
report), and nothing of a job passes through here. A job the caller sends to a child
still confining itself waits in the line, unread (bytes and descriptors in the socket,
not in the child), until the child is confined and reads it: when the warm children are
all taken (jobs back to back), the next job is already at the next child when it is
ready, with no hop between. What stays here is what a child must not be
trusted with: the caller says when it started a child's job (with the job's limits), and
this loop enforces its wall-clock deadline from outside, kills what the caller asks it
to kill, and tells the caller how each lent child ended, from its wait status (the
caller only uses that when the child sent no report). Like gunicorn's arbiter, nothing
happens in a signal handler: one loop waits on sockets and pipes with a timeout and, on
every tick, kills the overdue and tops up the warm children. The fork() itself is done by
its helper process, sandbox.spawner, which also reaps the children and reports their
ends, so this loop never blocks for it.

A trust boundary: children are hostile. Their one message here (ready) is size-capped,
decoded and checked by sandbox.protocol and sandbox.reports; anything else ends that
child ("protocol"). No exception leaves the loop: each event is handled under a guard
that, if handling it fails, ends only the child it concerned.

Child states:  (requested) --spawned--> LENT --started--> BUSY --done--> DONE --exited--> gone
               any state --deadline/kill/shutdown--> killed (SIGKILL by pidfd) --exited--> gone
               and, apart: not ready --ready--> ready (confined; READY_TIMEOUT_S else killed)
Messages to the caller: {"type": "ready", "pid", "layers"} once; {"type": "worker", "id"}
with fds [job line, output memfd] per lent child (the caller holds the memfd from the
start, so a child never sends a descriptor: every child is the same user, and Linux
refuses a descriptor-carrying send while that user has more in flight than the sender's
RLIMIT_NOFILE, which a hostile neighbour could arrange); {"type": "ended", "id", "status",
"reason", "stats", "exit_code", "signal", "unready"} when a lent child is gone before its
job was done ("unready": it died before it was confined, so it never read a job: the
caller gives that job to another child); {"type": "fatal", "reason"}. From the caller: {"type": "started", "id", "limits"},
{"type": "done", "id", "kill": null or one of CALLER_KILLS}, {"type": "shutdown"}. A lent
child is named by its own serial number, never by its pid (which the kernel recycles).
"""
from __future__ import annotations

import contextlib
import dataclasses
import gc
import importlib
import itertools
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
from sandbox.layers.rlimits import current_vm_bytes
from sandbox.limits import Limits
from sandbox.memfd import MemFile
from sandbox.outbox import Outbox
from sandbox.policy import Policy
from sandbox.result import classify_exit

LENT, BUSY, DONE = "lent", "busy", "done"
READY_TIMEOUT_S = 10.0        # a child that cannot confine itself in this time is killed
EXIT_GRACE_S = 2.0            # a child whose job is done but that did not exit by then
MAX_SETUP_FAILURES = 5        # consecutive children dying before "ready": give up
DROPPED_BACKOFF_S = 0.25      # no new child for this long after the caller could not take one

#: Why the fork server kills a child, and the crash reason its job then gets.
KILL_REASONS = {
    "deadline": "killed at its wall-clock deadline",           # -> "timeout"
    "exit_grace": "reported, then did not exit in time",       # its report still stands
    "setup": "did not confine itself in time",
    "protocol": "sent a message out of turn",
    "invalid": "sent an invalid report",                       # the caller's verdict
    "unlent": "could not be handed to the caller",
    "dropped": "its descriptors could not be received by the caller",
    "abandoned": "its caller gave up on the job",
    "internal": "the fork server failed while handling it",
    "shutdown": "the sandbox is closing",
}
#: Kills the caller may ask for (after it judged the child's report, or lost its line).
CALLER_KILLS = ("invalid", "unlent", "dropped", "abandoned")


@dataclasses.dataclass
class Child:
    serial: int                    # how the caller names it (module doc)
    pid: int
    pidfd: int
    chan: socket.socket            # its control channel: "ready", then nothing
    stderr_fd: int
    line_fd: int                   # the caller's end of its job line, until lent (then -1)
    output_fd: int                 # its output memfd, until lent (then -1)
    state: str = LENT
    ready: bool = False            # it said it is confined (it reads no job before)
    started: float = dataclasses.field(default_factory=time.monotonic)
    limits: Limits | None = None   # its job's, once the caller started one
    job_started: float = 0.0
    deadline: float = 0.0
    killed: str | None = None      # why we SIGKILLed it: one of KILL_REASONS' keys


class ForkServer:
    def __init__(self, control: socket.socket, entry: Callable, limits: Limits,
                 policy: Policy, workers: int, library_fds: tuple[int, ...] = (),
                 canary_fds: tuple[int, ...] = ()) -> None:
        self.control = control
        self.canary_fds = canary_fds                  # the canary's sealed inputs and params
        self.library_fds = library_fds
        self.entry = entry
        self.limits = limits
        self.policy = policy
        self.workers = workers
        self.children: dict[int, Child] = {}          # by pid
        self.lent: dict[int, Child] = {}              # by serial: the ones the caller knows
        self.serials = itertools.count(1)
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
        # A caller out of descriptors drops every child lent to it: replacing each at
        # once made hundreds of children a second for nothing (found by the red team).
        self.spawn_after = 0.0
        # A child's address space at its start is the spawner's, a copy of ours: measured
        # once here, it is the base its RLIMIT_AS adds the job's memory_mb to.
        self.baseline_vm_bytes = current_vm_bytes()
        self.spawner_pid, self.spawner = spawner.start(
            self.become_child, trailer.memfd_size(limits.output_mb))

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
        child (its lent job then ends from its wait status); any other failure is
        dropped and the loop goes on."""
        try:
            yield
        except Exception:
            if child is not None:
                with contextlib.suppress(Exception):
                    self.fail(child, "internal")

    def next_timeout(self) -> float:
        now = time.monotonic()
        wakeups = [c.deadline for c in self.children.values() if c.state in (BUSY, DONE)]
        wakeups += [c.started + READY_TIMEOUT_S for c in self.children.values()
                    if not c.ready]
        if self.spawn_after > now:
            wakeups.append(self.spawn_after)
        if not wakeups:
            return 1.0
        return max(0.0, min(min(wakeups) - now, 1.0))

    # --- the caller's word ------------------------------------------------------------
    def on_control(self) -> None:
        try:
            for message, fds in protocol.drain(self.control, max_fds=0):
                kind = message.get("type")
                if kind == "shutdown":
                    self.running = False
                    return
                child = self.lent.get(message.get("id"))
                if child is None:
                    continue                      # gone already: its end was told
                with self.guard(child):
                    if kind == "started":
                        self.start_job(child, Limits.from_dict(message["limits"]))
                    elif kind == "done":
                        self.job_done(child, message.get("kill"))
        except protocol.PeerGone:
            self.running = False          # the server is gone: nobody to work for

    def start_job(self, child: Child, limits: Limits) -> None:
        """The caller sent this lent child its job: its deadline runs from now, or from
        when it is confined if it is not yet (it reads no job before)."""
        if child.state != LENT:
            return
        child.limits = self.limits.tightened(limits)
        child.state = BUSY
        child.job_started = time.monotonic()
        child.deadline = child.job_started + child.limits.wall_s

    def job_done(self, child: Child, kill: str | None) -> None:
        """The caller has its job's answer (or gave the child up): nothing it does from
        now on counts, and it has EXIT_GRACE_S to be gone."""
        if child.state == LENT:                       # never started: no limits of its own
            child.limits, child.job_started = self.limits, time.monotonic()
        child.state = DONE
        child.deadline = min(child.deadline or float("inf"), time.monotonic() + EXIT_GRACE_S)
        if kill in CALLER_KILLS:
            self.kill(child, kill)
        if kill == "dropped":
            self.spawn_after = time.monotonic() + DROPPED_BACKOFF_S

    # --- the children -----------------------------------------------------------------
    def manage_children(self) -> None:
        """Keep `workers` children requested or lent idle, besides the busy ones.
        (Deferring the top-up while a job runs was measured: it costs a quarter of the
        throughput for less CPU contention, a bad trade.)"""
        if time.monotonic() < self.spawn_after:
            return                                    # the caller cannot take one now
        warm = self.requested + sum(1 for c in self.children.values()
                                    if c.state == LENT and not c.killed)
        for _ in range(self.workers - warm):
            try:
                protocol.send(self.spawner, {"type": "spawn"})
            except BlockingIOError:
                return                                # asked enough for now: next tick
            except OSError:
                self.fatal("the spawner is gone")
                return
            self.requested += 1

    def become_child(self, chan: socket.socket, line: socket.socket, stderr_fd: int,
                     output_fd: int):
        """In a child just forked by the spawner: its whole life (never returns)."""
        child_main.main(chan, line, stderr_fd, output_fd, self.entry, self.policy,
                        self.limits, self.available, self.library_fds,
                        self.baseline_vm_bytes, self.canary_fds)

    def on_spawner(self) -> None:
        """The spawner's news: a child was forked (with its fds), or one has exited."""
        try:
            for message, fds in protocol.drain(self.spawner, max_fds=5):
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
        if message.get("type") == "spawned" and len(fds) == 5:
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

    def adopt(self, pid: int, chan_fd: int, stderr_fd: int, pidfd: int, output_fd: int,
              line_fd: int) -> None:
        chan = socket.socket(fileno=chan_fd)
        chan.setblocking(False)
        os.set_blocking(stderr_fd, False)
        child = Child(next(self.serials), pid, pidfd, chan, stderr_fd, line_fd, output_fd)
        self.children[pid] = child
        self.selector.register(child.chan, selectors.EVENT_READ, ("chan", child))
        self.selector.register(child.stderr_fd, selectors.EVENT_READ, ("stderr", child))
        self.lend(child)

    def on_child_message(self, child: Child) -> None:
        """One (untrusted) message of a child on its control channel: its readiness,
        the only one it may ever send here."""
        if child.killed:
            self.forget(child.chan)                   # nothing it says counts any more
            return
        self.read_ready(child)

    def read_ready(self, child: Child) -> None:
        try:
            message, _ = protocol.recv(child.chan, max_fds=0,
                                       max_bytes=protocol.MAX_CHILD_MESSAGE_BYTES)
            if child.ready:
                raise protocol.ProtocolError("a message out of turn")
            layers = reports.parse_ready(message)
        except BlockingIOError:
            return
        except (EOFError, ConnectionError):
            self.forget(child.chan)                   # its exit will tell the rest
            return
        except protocol.ProtocolError:
            self.fail(child, "protocol")
            return
        child.ready = True
        if child.state == BUSY:                       # its job waited: its deadline runs now
            child.job_started = time.monotonic()
            child.deadline = child.job_started + child.limits.wall_s
        self.setup_failures = 0
        if self.applied is None:
            self.applied = layers
        self.announce_ready()

    def lend(self, child: Child) -> None:
        """Hand a new child's job line and its output memfd to the caller (nothing of
        them stays here); if they cannot be sent, the child is killed (never left lent
        to nobody)."""
        self.lent[child.serial] = child
        fds = [child.line_fd, child.output_fd]
        child.line_fd = child.output_fd = -1
        self.outbox.append({"type": "worker", "id": child.serial}, fds,
                           dropped=lambda: self.kill(child, "unlent"))

    def fail(self, child: Child, why: str) -> None:
        """End a child for `why`, one of KILL_REASONS (its end is told when reaped)."""
        self.kill(child, why)
        self.forget(child.chan)

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
                if not child.ready and now >= child.started + READY_TIMEOUT_S:
                    self.kill(child, "setup")         # its job, never read, goes elsewhere
                elif child.ready and child.state == BUSY and now >= child.deadline:
                    self.kill(child, "deadline")      # no answer yet: "timeout"
                elif child.state == DONE and now >= child.deadline:
                    self.kill(child, "exit_grace")    # answered: that answer stands

    def kill(self, child: Child, why: str) -> None:
        """SIGKILL the child (by pidfd: never a recycled pid; a child cannot fork, so it
        is its whole group); the spawner reaps it and tells us."""
        child.killed = child.killed or why           # the first cause wins
        try:
            signal.pidfd_send_signal(child.pidfd, signal.SIGKILL)
        except OSError:                              # already gone (or its pidfd closed)
            pass

    def reap(self, child: Child, wait_status: int, usage) -> None:
        """The child is gone (the spawner reaped it): tell the caller, forget it."""
        try:
            if not child.ready:
                self.read_ready(child)                # "ready" may sit unread: it counts
            drain_stderr(child)
        finally:
            self.children.pop(child.pid, None)
            self.lent.pop(child.serial, None)
            for fileobj in (child.chan, child.stderr_fd):
                self.forget(fileobj)
            child.chan.close()
            protocol.close_all([child.stderr_fd, child.pidfd, child.output_fd, child.line_fd])
        if not child.ready and child.killed in (None, "setup"):   # not a death we caused
            self.setup_failures += 1
            if self.setup_failures >= MAX_SETUP_FAILURES:
                self.fatal("children die before they are confined: "
                           + describe_wait(wait_status))
        if child.state in (LENT, BUSY):
            self.tell_ended(child, wait_status, usage)

    def tell_ended(self, child: Child, wait_status: int, usage) -> None:
        """A lent child is gone before the caller had its answer: how it ended, from its
        wait status (the caller prefers a report the child sent before dying)."""
        limits = child.limits or self.limits
        started = child.job_started or time.monotonic()
        stats = {"wall_s": round(max(0.0, time.monotonic() - started), 6),
                 "cpu_s": round(usage.ru_utime + usage.ru_stime, 6),
                 "max_rss_mb": round(usage.ru_maxrss / 1024, 3)}
        exit_code = os.WEXITSTATUS(wait_status) if os.WIFEXITED(wait_status) else None
        sig = os.WTERMSIG(wait_status) if os.WIFSIGNALED(wait_status) else None
        if child.killed not in (None, "deadline", "exit_grace"):
            status, reason = "crashed", KILL_REASONS[child.killed]
        else:
            status, reason = classify_exit(
                wait_status, killed_for_deadline=child.killed == "deadline",
                cpu_s=stats["cpu_s"], cpu_limit_s=limits.cpu_s,
                max_rss_mb=stats["max_rss_mb"], memory_limit_mb=limits.memory_mb)
        self.outbox.append({"type": "ended", "id": child.serial, "status": status,
                            "reason": reason, "stats": stats, "exit_code": exit_code,
                            "signal": sig, "unready": not child.ready})

    # --- to the caller ------------------------------------------------------------------
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
        """Kill every child, wait (bounded) for the spawner to reap them, tell the caller
        how its lent ones ended, then end the spawner."""
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
        self.spawner.close()                          # EOF: the spawner kills, reaps, exits
        try:
            os.waitpid(self.spawner_pid, 0)
        except ChildProcessError:
            pass
        try:
            self.control.setblocking(True)
            self.control.settimeout(2.0)
            self.flush_outbox()
        except OSError:
            pass


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
                        int(config["workers"]), kept, canary_fds=canary_fds)
    server.run()
    os._exit(0)

