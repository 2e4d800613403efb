"""What a child may say, checked field by field: its readiness and its one report.

Runs where a child's message arrives, on messages protocol.recv already size-capped and
decoded: "ready" in the fork server, the report in the caller (sandbox.workers). Every
message from a child is untrusted: an unknown key, a wrong type, a number out of range is
a ProtocolError, which ends that child's job as "crashed" and nothing else.
Reports are small by construction: the outputs' length table travels in the output
memfd (sandbox.trailer), so a report only says how many bytes the child used.

  ready:   {"type": "ready", "layers": [name, ...]}
  report:  {"type": "report", "status": "ok", "used": N, "usage": {...}}
           {"type": "report", "status": "error", "error": TEXT, "usage": {...}}
           {"type": "report", "status": "memory" | "output_too_large", "usage": {...}}
  usage:   {"cpu_s": number, "max_rss_mb": number} (optional; only ever statistics)
  timings: {stamp: number} (only when the job asked: sandbox.timings; statistics too)
"""
from __future__ import annotations

import dataclasses

from sandbox.protocol import ProtocolError
from sandbox.timings import parse_child

#: What a child may report of its own job (the rest is decided from outside).
REPORTED_STATUSES = ("ok", "error", "memory", "output_too_large")
MAX_LAYERS = 16
MAX_ERROR_CHARS = 300
_REPORT_KEYS = {"ok": {"used"}, "error": {"error"}, "memory": set(), "output_too_large": set()}
_STAT_MAX = 1e12


@dataclasses.dataclass(frozen=True)
class Report:
    status: str
    used: int = 0                  # ok: bytes of the output memfd used, trailer included
    error: str = ""
    cpu_s: float = 0.0
    max_rss_mb: float = 0.0
    timings: dict | None = None    # the child's stamps, checked (sandbox.timings)


def parse_ready(message: dict) -> list[str]:
    """The layers a warm child says it applied."""
    if set(message) != {"type", "layers"} or message["type"] != "ready":
        raise ProtocolError("not a ready message")
    layers = message["layers"]
    if (type(layers) is not list or len(layers) > MAX_LAYERS
            or not all(type(name) is str and len(name) <= 32 for name in layers)):
        raise ProtocolError("invalid layer list")
    return layers


def parse_report(message: dict, output_size: int, timings: bool = False) -> Report:
    """A busy child's report on its job; `used` must fit the output memfd. `timings`:
    the job asked for the child's stamps (sandbox.timings), which are then allowed."""
    if message.get("type") != "report":
        raise ProtocolError("not a report")
    status = message.get("status")
    if type(status) is not str or status not in _REPORT_KEYS:
        raise ProtocolError("invalid status")
    optional = {"type", "status", "usage", "timings"} if timings else {"type", "status", "usage"}
    if not set(message) <= optional | _REPORT_KEYS[status]:
        raise ProtocolError("unexpected fields")
    if not _REPORT_KEYS[status] <= set(message):
        raise ProtocolError("missing fields")
    cpu_s, max_rss_mb = _usage(message.get("usage", {}))
    used = message.get("used", 0)
    if type(used) is not int or not 0 <= used <= output_size:
        raise ProtocolError("invalid bytes used")
    error = message.get("error", "")
    if type(error) is not str or len(error) > MAX_ERROR_CHARS:
        raise ProtocolError("invalid error text")
    stamps = parse_child(message["timings"]) if "timings" in message else None
    return Report(status, used, error, cpu_s, max_rss_mb, stamps)


def _usage(usage) -> tuple[float, float]:
    if type(usage) is not dict or not set(usage) <= {"cpu_s", "max_rss_mb"}:
        raise ProtocolError("invalid usage")
    return _stat(usage.get("cpu_s", 0)), _stat(usage.get("max_rss_mb", 0))


def _stat(value) -> float:
    """A child-reported statistic: a finite number in [0, 1e12)."""
    if type(value) not in (int, float) or not 0 <= value < _STAT_MAX:
        raise ProtocolError("invalid statistic")
    return round(float(value), 6)
