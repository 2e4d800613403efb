"""The wire between server, fork server and children: one JSON object per datagram.

Runs everywhere. Sockets are AF_UNIX SOCK_SEQPACKET pairs, so message boundaries and
file descriptors (SCM_RIGHTS) travel together. Bytes from a child are untrusted: every
message is size-capped before it is decoded (a child's to MAX_CHILD_MESSAGE_BYTES), every
decoding failure, RecursionError included, is a ProtocolError, and truncation of data or
fds is an error. What a child's message may hold is checked field by field by
sandbox.reports; nothing here raises anything else for a peer's bytes.
"""
from __future__ import annotations

import errno
import json
import os
import socket

#: Largest message between server and fork server (small: data and params travel in memfds).
MAX_MESSAGE_BYTES = 64 * 1024
#: Largest message a child may send (a report: status, error text, usage; 300 characters
#: of error text escape to at most 1.8 KB).
MAX_CHILD_MESSAGE_BYTES = 4096
#: Most descriptors one message may carry: a job's inputs (MAX_JOB_FDS), its params memfd
#: and its output memfd.
MAX_FDS = 66
#: errnos that mean a process is short of descriptors or memory right now: the job it
#: was handling answers "busy" (retry later), never "crashed" and never a dead peer.
#: ETOOMANYREFS: its user has more descriptors in flight than its RLIMIT_NOFILE (as an
#: unprivileged user, children of the same uid may hold hundreds in flight for a moment).
EXHAUSTED = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOSPC,
                       errno.ETOOMANYREFS})


class ProtocolError(Exception):
    """A peer sent something that is not a valid message."""


class FdsDropped(ProtocolError):
    """A whole message arrived but its descriptors did not: the receiver is out of
    descriptors (EMFILE), so the kernel dropped them. The message is in `.message`."""

    def __init__(self, message: dict) -> None:
        super().__init__("the message's descriptors were dropped (out of descriptors?)")
        self.message = message


class PeerGone(Exception):
    """The peer closed the channel, or broke the protocol: nothing more will come."""


def socketpair() -> tuple[socket.socket, socket.socket]:
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)


def encode(message: dict) -> bytes:
    """The datagram for a message. Raises ProtocolError if it is over MAX_MESSAGE_BYTES."""
    data = json.dumps(message, separators=(",", ":")).encode()
    if len(data) > MAX_MESSAGE_BYTES:
        raise ProtocolError(f"message of {len(data)} bytes exceeds {MAX_MESSAGE_BYTES}")
    return data


def send(sock: socket.socket, message: dict, fds: list[int] | tuple[int, ...] = ()) -> None:
    data = encode(message)
    if fds:
        socket.send_fds(sock, [data], list(fds))
    else:
        sock.send(data)


def decode(data: bytes) -> dict:
    """A message from untrusted bytes: a JSON object, or ProtocolError (never anything
    else: RecursionError from deep nesting, ValueError from a 5000-digit number,
    UnicodeDecodeError, MemoryError are all the peer's fault)."""
    try:
        message = json.loads(data)
    except Exception:
        raise ProtocolError("message is not JSON") from None
    if not isinstance(message, dict):
        raise ProtocolError("message is not a JSON object")
    return message


def recv(sock: socket.socket, max_fds: int = MAX_FDS,
         max_bytes: int = MAX_MESSAGE_BYTES) -> tuple[dict, list[int]]:
    """One message and the fds that came with it. EOFError when the peer is gone.

    Raises BlockingIOError on a non-blocking socket with nothing to read.
    """
    data, fds, flags, _ = socket.recv_fds(sock, max_bytes + 1, max_fds,
                                          socket.MSG_CMSG_CLOEXEC)
    try:
        if flags & socket.MSG_TRUNC or len(data) > max_bytes:
            raise ProtocolError("message was truncated")
        if not data:
            raise EOFError("peer closed the channel")
        if flags & socket.MSG_CTRUNC:
            if max_fds == 0:
                raise ProtocolError("message carried descriptors")
            raise FdsDropped(decode(data))
        message = decode(data)
    except BaseException:
        close_all(fds)
        raise
    return message, fds


def drain(sock: socket.socket, max_fds: int = MAX_FDS):
    """Every (message, fds) waiting on a non-blocking socket, until none is left.

    A message whose descriptors the kernel dropped (we are out of them) comes as
    (message, None): the reader answers that one message, the peer is fine.
    Raises PeerGone when the peer closed the channel or sent something invalid: the
    one place the readers of a socket (server, fork server) learn their peer is gone.
    """
    while True:
        try:
            yield recv(sock, max_fds)
        except BlockingIOError:
            return
        except FdsDropped as exc:
            yield exc.message, None
        except (EOFError, ConnectionError, ProtocolError) as exc:
            raise PeerGone(str(exc)) from exc


def close_all(fds) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass
