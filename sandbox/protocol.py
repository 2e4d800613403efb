"""The wire between server, fork server and children: one JSON object per datagram.

Runs everywhere. Sockets are AF_UNIX SOCK_SEQPACKET pairs, so message boundaries and
file descriptors (SCM_RIGHTS) travel together. Bytes from a child are untrusted: every
message is size-capped, must be a JSON object, and truncation of data or fds is an error.
"""
from __future__ import annotations

import json
import os
import socket

#: Largest message accepted (params and results are small; data travels in memfds).
MAX_MESSAGE_BYTES = 256 * 1024
#: Most descriptors one message may carry (job inputs plus the output memfd).
MAX_FDS = 65


class ProtocolError(Exception):
    """A peer sent something that is not a valid message."""


class PeerGone(Exception):
    """The peer closed the channel, or broke the protocol: nothing more will come."""


def socketpair() -> tuple[socket.socket, socket.socket]:
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)


def send(sock: socket.socket, message: dict, fds: list[int] | tuple[int, ...] = ()) -> None:
    data = json.dumps(message, separators=(",", ":")).encode()
    if len(data) > MAX_MESSAGE_BYTES:
        raise ValueError(f"message of {len(data)} bytes exceeds {MAX_MESSAGE_BYTES}")
    if fds:
        socket.send_fds(sock, [data], list(fds))
    else:
        sock.send(data)


def recv(sock: socket.socket, max_fds: int = MAX_FDS) -> tuple[dict, list[int]]:
    """One message and the fds that came with it. EOFError when the peer is gone.

    Raises BlockingIOError on a non-blocking socket with nothing to read.
    """
    data, fds, flags, _ = socket.recv_fds(sock, MAX_MESSAGE_BYTES + 1, max_fds,
                                          socket.MSG_CMSG_CLOEXEC)
    try:
        if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC) or len(data) > MAX_MESSAGE_BYTES:
            raise ProtocolError("message or its descriptors were truncated")
        if not data:
            raise EOFError("peer closed the channel")
        try:
            message = json.loads(data)
        except ValueError:
            raise ProtocolError("message is not JSON") from None
        if not isinstance(message, dict):
            raise ProtocolError("message is not a JSON object")
    except BaseException:
        close_all(fds)
        raise
    return message, fds


def drain(sock: socket.socket, max_fds: int = MAX_FDS):
    """Every (message, fds) waiting on a non-blocking socket, until none is left.

    Raises PeerGone when the peer closed the channel or sent something invalid: the
    one place the readers of a socket (server, fork server) learn their peer is gone.
    """
    while True:
        try:
            yield recv(sock, max_fds)
        except BlockingIOError:
            return
        except (EOFError, ConnectionError, ProtocolError) as exc:
            raise PeerGone(str(exc)) from exc


def close_all(fds) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass
