"""Outbox: the fork server's messages to the server, sent in order without blocking.

Runs in the fork server. A message that cannot be sent for a reason of its own (EMSGSIZE,
ENOBUFS, too large to encode) is never taken for the server being gone: a child's end is
replaced by a small "crashed" one for the same child, a lent child's descriptors that
cannot go call the message's `dropped` (the fork server kills that child), anything else
is dropped. Only
EPIPE/ECONNRESET (the server closed its end), or a timeout on a blocking socket at
shutdown, makes flush() say the server is gone.
"""
from __future__ import annotations

import collections
import socket
from typing import Callable

from sandbox import protocol

UNSENDABLE = "its result could not be sent to the server"


class Outbox:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        # (message, fds it owns, what to do if it cannot be sent)
        self.queue: collections.deque[tuple[dict, list[int], Callable | None]] = \
            collections.deque()

    def __len__(self) -> int:
        return len(self.queue)

    def append(self, message: dict, fds: list[int] = (),
               dropped: Callable[[], None] | None = None) -> None:
        """Queue a message; the outbox owns (and closes) `fds` from here. `dropped` is
        called if the message cannot be sent for a reason of its own."""
        self.queue.append((message, list(fds), dropped))

    def flush(self) -> bool:
        """Send what the socket takes now. False when the server is gone."""
        while self.queue:
            message, fds, dropped = self.queue[0]
            try:
                protocol.send(self.sock, message, fds)
            except BlockingIOError:
                return True               # the server is slow: retried on the next tick
            except (BrokenPipeError, ConnectionResetError, TimeoutError):
                return False
            except Exception:             # this message's own fault: EMSGSIZE, ENOBUFS, ...
                self.queue.popleft()
                protocol.close_all(fds)
                if dropped is not None:
                    dropped()
                elif message.get("type") == "ended" and message.get("reason") != UNSENDABLE:
                    self.queue.appendleft((_unsendable(message), [], None))
                continue
            self.queue.popleft()
            protocol.close_all(fds)
        return True

    def discard(self) -> None:
        while self.queue:
            protocol.close_all(self.queue.popleft()[1])


def _unsendable(ended: dict) -> dict:
    """The small end that replaces a child's end that could not be sent."""
    return {"type": "ended", "id": ended.get("id"), "status": "crashed",
            "reason": UNSENDABLE}
