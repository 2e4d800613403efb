"""JSON-lines logging that cannot carry user data.

Runs in the server process (and the CLI). Our own lines pass fields explicitly in
`extra={"fields": {...}}` from a closed vocabulary (request id, operation, status,
durations, sizes); third-party loggers (aiohttp, asyncio) are reduced to their logger
name, level and message TEMPLATE: their arguments (client addresses, request lines,
header values) are dropped. Exceptions show as their class and code locations
(file:line:function), never their message, which may quote a document or a filename.
"""
from __future__ import annotations

import json
import logging
import sys
import time
import traceback

__all__ = ["configure", "logger", "JsonFormatter", "FIELDS"]

logger = logging.getLogger("notrace")

#: The only fields our log lines may carry (a test checks the list stays free of user data).
FIELDS = frozenset({
    "request_id", "method", "route", "operation", "status", "problem", "duration_ms",
    "upload_bytes", "output_bytes", "files", "job_status", "job_reason", "job_wall_s",
    "job_cpu_s", "job_rss_mb", "client_ip", "host", "port", "workers", "queue", "layers",
    "ready", "grace_s", "possible_bug", "error_type", "frames",
})


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg and the whitelisted fields."""

    def format(self, record: logging.LogRecord) -> str:
        ours = record.name == "notrace" or record.name.startswith("notrace.")
        line = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            # Third-party messages may interpolate client data: keep only the template.
            "msg": record.getMessage() if ours else str(record.msg)[:200],
        }
        fields = getattr(record, "fields", None)
        if ours and isinstance(fields, dict):
            line.update({k: v for k, v in fields.items() if k in FIELDS})
        if record.exc_info and record.exc_info[0] is not None:
            line["error_type"] = record.exc_info[0].__name__
            line["frames"] = _frames(record.exc_info[2])
        return json.dumps(line, ensure_ascii=True, default=str)

    def formatException(self, ei) -> str:  # never used for output: format() handles it
        return ""


def _frames(tb) -> list[str]:
    """Where an exception went through: file name (no directory), line and function."""
    return [f"{frame.filename.rsplit('/', 1)[-1]}:{frame.lineno}:{frame.name}"
            for frame in traceback.extract_tb(tb, limit=12)]


def configure(level: str = "info", stream=None) -> None:
    """Send every logger's records to `stream` (stderr) as JSON lines, once."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiohttp's access logger would print the request line (query string: passwords)
    # and the client address; we write our own access line instead.
    logging.getLogger("aiohttp.access").disabled = True
    logging.Formatter.converter = time.gmtime
