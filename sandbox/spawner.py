"""The spawner: forks the children, so that the fork server's loop never blocks in fork().

Forking a process that has imported a PDF stack copies its page tables: milliseconds
during which a single-threaded fork server could neither relay a finished job's result
nor dispatch the next. So the fork server forks this helper once, before any child, and
asks it for children. It runs single-threaded and unconfined (it must fork), never sees a
job, and does three things: fork a child on request (the child confines itself and waits
for its job); hand the fork server that child's control channel, stderr pipe, a pidfd,
its output memfd and the caller's end of its job line; and reap every child it made,
sending the fork server its wait status and resource usage. Each child's output memfd
is made here, just before its fork: fresh for every child (never one a job has
written), pre-sized and sealed, off the job's path.

Messages to the fork server: {"type": "spawned", "pid"} with fds [control channel, stderr,
pidfd, output, line];
{"type": "exited", "pid", "status", "utime", "stime", "maxrss_kb"}.

A fork that fails (EAGAIN: a child took every pid of the container's pids limit with
threads; ENOMEM; EMFILE) is owed, not fatal: retried every SPAWN_RETRY_S until it works.
The fork server's count of requested children stays right, and nothing else waits.
"""
from __future__ import annotations

import contextlib
import os
import selectors
import signal
import socket
import sys
from typing import Callable, NoReturn

from sandbox import protocol
from sandbox.layers import _sys
from sandbox.memfd import MemFile

EXIT_REAP_S = 5.0             # on shutdown, how long to wait for killed children
SPAWN_RETRY_S = 0.05          # after a failed fork (out of pids, memory or fds)


class Spawner:
    def __init__(self, sock: socket.socket,
                 become_child: Callable[[socket.socket, socket.socket, int, int], NoReturn],
                 output_bytes: int) -> None:
        self.sock = sock
        self.become_child = become_child
        self.output_bytes = output_bytes
        self.pidfds: dict[int, int] = {}             # pid -> pidfd of each live child
        self.owed = 0                                # spawns asked for, not yet made
        self.selector = selectors.DefaultSelector()

    def run(self) -> None:
        """Serve spawn requests until the fork server closes the socket, then clean up."""
        self.selector.register(self.sock, selectors.EVENT_READ, None)
        running = True
        while running:
            for key, _ in self.selector.select(SPAWN_RETRY_S if self.owed else None):
                if key.data is None:
                    running = self.on_request()
                else:
                    self.reap(key.data)
            self.spawn_owed()
        self.stop()

    def on_request(self) -> bool:
        try:
            message, fds = protocol.recv(self.sock, max_fds=0)
        except (EOFError, ConnectionError, protocol.ProtocolError):
            return False                             # the fork server is gone
        protocol.close_all(fds)
        if message.get("type") == "spawn":
            self.owed += 1
        return True

    def spawn_owed(self) -> None:
        """Make the children owed; a failure (out of pids, memory, fds) waits a retry."""
        while self.owed:
            try:
                self.spawn()
            except OSError:
                return
            self.owed -= 1

    def spawn(self) -> None:
        """Fork one child and hand it over; OSError (nothing left behind) if we cannot."""
        with contextlib.ExitStack() as made:        # everything made here, closed on failure
            parent_chan, child_chan = _closing(made, *protocol.socketpair())
            caller_line, child_line = _closing(made, *protocol.socketpair())
            stderr_r, stderr_w = os.pipe2(os.O_CLOEXEC)
            made.callback(protocol.close_all, [stderr_r, stderr_w])
            output = made.enter_context(MemFile.fixed_size(self.output_bytes,
                                                           "sandbox-output"))
            pid = _sys.fork_without_python_hooks()      # single-threaded: see its doc
            if pid == 0:                                 # the child: never returns
                try:
                    _reseed_random()
                    parent_chan.close()
                    caller_line.close()
                    os.close(stderr_r)
                    self.become_child(child_chan, child_line, stderr_w, output.fileno())
                finally:
                    os._exit(70)
            try:
                os.setpgid(pid, pid)                     # both sides set it: no race
            except OSError:
                pass
            try:
                pidfd = os.pidfd_open(pid)
            except OSError:                              # out of fds: this child never starts
                os.kill(pid, signal.SIGKILL)             # still our unreaped child: no reuse
                os.waitpid(pid, 0)
                raise
            self.pidfds[pid] = pidfd
            self.selector.register(pidfd, selectors.EVENT_READ, pid)
            # The fork server holds them now; if this fails, the child's channel closes
            # (it exits, reaped like any other) and the spawn stays owed.
            protocol.send(self.sock, {"type": "spawned", "pid": pid},
                          [parent_chan.fileno(), stderr_r, pidfd, output.fileno(),
                           caller_line.fileno()])

    def reap(self, pid: int) -> None:
        """A child exited: collect it and tell the fork server how it ended."""
        _, status, usage = os.wait4(pid, 0)
        pidfd = self.pidfds.pop(pid)
        self.selector.unregister(pidfd)
        os.close(pidfd)
        try:
            protocol.send(self.sock, {"type": "exited", "pid": pid, "status": status,
                                      "utime": usage.ru_utime, "stime": usage.ru_stime,
                                      "maxrss_kb": usage.ru_maxrss})
        except OSError:
            pass                                     # the fork server is gone: no one to tell

    def stop(self) -> None:
        """Kill and reap every child left (they would die of PDEATHSIG anyway)."""
        for pidfd in self.pidfds.values():
            try:
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for pid in list(self.pidfds):
            os.waitpid(pid, 0)                       # SIGKILLed: returns promptly
            os.close(self.pidfds.pop(pid))


def _reseed_random() -> None:
    """The one at-fork hook a child needs (os.fork would run it): `random` reseeded from
    the kernel, so that no two children share a sequence (nothing of ours draws from it,
    but an entry might). Not imported, nothing to reseed."""
    module = sys.modules.get("random")
    if module is not None:
        module.seed()


def _closing(stack: contextlib.ExitStack, *socks: socket.socket) -> tuple[socket.socket, ...]:
    for sock in socks:
        stack.callback(sock.close)
    return socks


def start(become_child: Callable[[socket.socket, socket.socket, int, int], NoReturn],
          output_bytes: int) -> tuple[int, socket.socket]:
    """In the fork server: fork the spawner; return its pid and the socket to it.
    output_bytes: the size of each child's output memfd (the output cap)."""
    ours, theirs = protocol.socketpair()
    fork_server = os.getpid()
    pid = os.fork()
    if pid == 0:
        try:
            ours.close()
            _sys.prctl(_sys.PR_SET_PDEATHSIG, signal.SIGKILL)     # die with the fork server
            if os.getppid() == fork_server:
                Spawner(theirs, become_child, output_bytes).run()
        finally:
            os._exit(0)
    theirs.close()
    return pid, ours
