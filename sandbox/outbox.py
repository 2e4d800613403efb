"""Outbox: the fork server's messages to the server, sent in order without blocking.

Runs in the fork server. A message that cannot be sent for a reason of its own (EMSGSIZE,
ENOBUFS, too large to encode) is never taken for the server being gone: a result is
replaced by a small "crashed" result for the same job, anything else is dropped. Only
EPIPE/ECONNRESET (the server closed its end), or a timeout on a blocking socket at
shutdown, makes flush() say the server is gone.
"""
from __future__ import annotations

import collections
import socket

from sandbox import protocol

UNSENDABLE = "its result could not be sent to the server"


class Outbox:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        # (message, fds it owns, may it be replaced by a crashed result)
        self.queue: collections.deque[tuple[dict, list[int], bool]] = collections.deque()

    def __len__(self) -> int:
        return len(self.queue)

    def append(self, message: dict, fds: list[int] = ()) -> None:
        """Queue a message; the outbox owns (and closes) `fds` from here."""
        self.queue.append((message, list(fds), True))

    def flush(self) -> bool:
        """Send what the socket takes now. False when the server is gone."""
        while self.queue:
            message, fds, replaceable = self.queue[0]
            try:
                protocol.send(self.sock, message, fds)
            except BlockingIOError:
                return True               # the server is slow: retried on the next tick
            except (BrokenPipeError, ConnectionResetError, TimeoutError):
                return False
            except Exception:             # this message's own fault: EMSGSIZE, ENOBUFS, ...
                self.queue.popleft()
                protocol.close_all(fds)
                if replaceable and message.get("type") == "result":
                    self.queue.appendleft(({"type": "result", "id": message.get("id"),
                                            "status": "crashed", "reason": UNSENDABLE},
                                           [], False))
                continue
            self.queue.popleft()
            protocol.close_all(fds)
        return True

    def discard(self) -> None:
        while self.queue:
            protocol.close_all(self.queue.popleft()[1])
