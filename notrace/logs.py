"""JSON-lines logging that cannot carry user data.

Runs in the server process (and the CLI). Our own lines pass fields explicitly in
`extra={"fields": {...}}` from a closed vocabulary (request id, operation, status,
durations, sizes); third-party loggers (aiohttp, asyncio) are reduced to their logger
name, level and message TEMPLATE: their arguments (client addresses, request lines,
header values) are dropped. The "sandbox" logger is ours too (fork-server deaths: exit,
jobs_failed, restarts). Library warnings (aiohttp's BadContentDispositionHeader quotes
the raw header, client filename included) become "notrace.warnings" lines with their
category and code location only, never their text. Exceptions show as their class and
code locations (file:line:function), never their message, which may quote a document or
a filename.
"""
from __future__ import annotations

import json
import logging
import sys
import time
import traceback
import warnings

__all__ = ["configure", "route_warnings", "logger", "JsonFormatter", "FIELDS"]

logger = logging.getLogger("notrace")

#: The only fields our log lines may carry (a test checks the list stays free of user data).
FIELDS = frozenset({
    "request_id", "method", "route", "operation", "status", "problem", "duration_ms",
    "upload_bytes", "output_bytes", "files", "job_status", "job_reason", "job_wall_s",
    "job_cpu_s", "job_rss_mb", "client_ip", "host", "port", "workers", "queue", "layers",
    "ready", "grace_s", "possible_bug", "error_type", "frames", "client_gone",
    "exit", "jobs_failed", "restarts", "category", "where",
    "steps",  # a pipeline's operation names (notrace.pipeline), never their parameters
    "key",   # an API key's NAME (notrace.auth), never the key
})
#: Loggers whose messages and fields are ours (fixed texts, FIELDS only).
_OURS = ("notrace", "sandbox")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg and the whitelisted fields."""

    def format(self, record: logging.LogRecord) -> str:
        ours = record.name.split(".", 1)[0] in _OURS
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


def _log_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """warnings.showwarning: one JSON line with the category and where, never the text."""
    logging.getLogger("notrace.warnings").warning("library warning", extra={"fields": {
        "category": getattr(category, "__name__", "Warning"),
        "where": f"{str(filename).rsplit('/', 1)[-1]}:{lineno}"}})


def route_warnings() -> None:
    """Show every warning as a log line (category and where) instead of its raw text."""
    warnings.showwarning = _log_warning


def configure(level: str = "info", stream=None) -> None:
    """Send every logger's records, and every warning, to `stream` (stderr) as JSON
    lines, once."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiohttp's access logger would print the request line (query string: passwords)
    # and the client address; we write our own access line instead.
    logging.getLogger("aiohttp.access").disabled = True
    logging.Formatter.converter = time.gmtime
    route_warnings()   # not printed raw to stderr: a warning may quote client text
