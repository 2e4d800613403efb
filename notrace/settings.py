"""Settings: one frozen object read from NOTRACE_* variables, overridden by CLI flags.

Runs in the server process (and the CLI) at start-up, never again. Every setting is
declared once in SETTINGS with its type, default, unit and meaning; the dataclass, the
environment names, the CLI flags, `--help` and the README table all derive from it.
"""
from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import os
from typing import Any, Callable, Mapping

__all__ = ["Setting", "SETTINGS", "Settings", "SettingsError", "load", "add_flags",
           "settings_table"]

ENV_PREFIX = "NOTRACE_"


class SettingsError(ValueError):
    """A setting has a value it cannot take; the message names the variable or flag."""


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise ValueError("must be a positive integer")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError("must be zero or a positive integer")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0 or value == float("inf"):
        raise ValueError("must be a positive, finite number")
    return value


def _flag(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("must be 1 or 0")


def _host(text: str) -> str:
    # An address, not a name: a name could resolve to something unexpected at bind time.
    ipaddress.ip_address(text)
    return text


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise ValueError("must be a TCP port (0 picks a free one)")
    return value


def _keys_file(text: str) -> str:
    if text:
        from notrace.auth import read_keys_file   # here: auth imports the app's modules
        read_keys_file(text)   # a bad file stops start-up, naming the variable
    return text


def _networks(text: str) -> tuple:
    from notrace.clients import parse_networks
    try:
        return parse_networks(text)
    except ValueError:
        raise ValueError("must list IP addresses or networks (10.0.0.0/8), comma-separated")


def _origins(text: str) -> tuple:
    from notrace.cors import parse_origins
    return parse_origins(text)


def _log_level(text: str) -> str:
    lowered = text.strip().lower()
    if lowered not in ("debug", "info", "warning", "error"):
        raise ValueError("must be debug, info, warning or error")
    return lowered


@dataclasses.dataclass(frozen=True)
class Setting:
    """One setting: `name` is the Settings field; env is NOTRACE_<NAME>, flag --<name>."""

    name: str
    parse: Callable[[str], Any]
    default: Callable[[], Any]  # a thunk: some defaults depend on the host (CPU count)
    doc: str

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def default_text(self) -> str:
        value = self.default()
        if self.name == "workers":
            return "number of CPUs"
        if isinstance(value, bool):
            return "1" if value else "0"
        if value in ("", ()):
            return "none"
        return str(value)


SETTINGS: tuple[Setting, ...] = (
    Setting("host", _host, lambda: "127.0.0.1",
            "IP address the server listens on (use 0.0.0.0 in a container)."),
    Setting("port", _port, lambda: 8000, "TCP port the server listens on."),
    Setting("workers", _positive_int, lambda: os.cpu_count() or 1,
            "Jobs that run at once, each in its own confined child process."),
    Setting("queue", _non_negative_int, lambda: 16,
            "Jobs that may wait for a free child; beyond that a request gets 503."),
    Setting("max_upload_mb", _positive_int, lambda: 100,
            "Largest request body in MiB (all files and fields together); checked while "
            "streaming, answered with 413."),
    Setting("max_inflight_mb", _positive_int, lambda: 100,
            "MiB that all uploads and answers held at once may use together (request "
            "bodies in memfds, from their first byte until their answer; answers while "
            "they stream); a request beyond it gets 503 busy before its body is read. At "
            "least NOTRACE_MAX_UPLOAD_MB. The default fits the shipped 1.5 GiB container: "
            "2 workers x (384 MiB children + 200 MiB outputs) + 64 MiB /tmp + 100 MiB in "
            "flight leave about 200 MiB for the server, the fork server and the warm "
            "children (measured about 70 MiB at rest)."),
    Setting("upload_timeout_s", _positive_float, lambda: 60.0,
            "Seconds a client has to send its whole request body (408 after that); also "
            "how long a connection may take to send its request head."),
    Setting("answer_stall_s", _positive_float, lambda: 30.0,
            "Seconds an answer may wait for its client to read any of it; then the "
            "connection is closed and the answer's memory freed. Under memory pressure "
            "an answer stalled for over a second is dropped at once to admit a new upload "
            "(a client that stops reading cannot pin a result nor lock others out)."),
    Setting("max_pages", _positive_int, lambda: 2000,
            "Most pages a document may have (422 too-many-pages above)."),
    Setting("max_page_pixels", _positive_int, lambda: 50_000_000,
            "Most pixels one page may be drawn with by render, thumbnail and safe (the "
            "default, 50 megapixels, is A4 at 600 dpi); a page over it is 422 too-large, "
            "checked from its size before anything is drawn. A page costs about 7 bytes a "
            "pixel in its child (render), so keep it under NOTRACE_CHILD_MEMORY_MB / 7."),
    Setting("max_pixel_pages", _positive_int, lambda: 500,
            "Most pages one render or safe job may draw (422 too-many-pages above; "
            "NOTRACE_MAX_PAGES still bounds the document)."),
    Setting("child_memory_mb", _positive_int, lambda: 512,
            "Memory a job may use on top of a warm child, in MiB (422 memory-limit)."),
    Setting("child_cpu_s", _positive_int, lambda: 20,
            "CPU seconds a job may use (422 cpu-limit)."),
    Setting("child_wall_s", _positive_float, lambda: 30.0,
            "Wall-clock seconds a job may take (422 time-limit)."),
    Setting("child_output_mb", _positive_int, lambda: 200,
            "Largest total output of a job in MiB (422 output-too-large)."),
    Setting("safe_wall_s", _positive_float, lambda: 600.0,
            "Wall-clock seconds one safe conversion may take in all, its batches' jobs "
            "and their waits together (422 time-limit): without it a document's child "
            "could hold a conversion slot for batches x phases x NOTRACE_CHILD_WALL_S."),
    Setting("retry_after_s", _positive_int, lambda: 2,
            "Seconds announced in Retry-After with every 503 (busy, not ready, sandbox "
            "restarting)."),
    Setting("shutdown_grace_s", _positive_float, lambda: 35.0,
            "On SIGTERM, seconds in-flight requests get to finish before the server exits."),
    Setting("log_client_ip", _flag, lambda: False,
            "1 to log the client IP address of each request (off: not logged at all)."),
    Setting("api_keys_file", _keys_file, lambda: "",
            "File of API keys, one `name:sha256:HEX` line each (`notrace keys new NAME` "
            "makes one); when set, every endpoint but /health, the page, /docs, "
            "/openapi.json and /problems/* needs `Authorization: Bearer KEY` or "
            "`X-API-Key: KEY` (401 otherwise). Read at start-up. Empty: keys are off."),
    Setting("protect_monitoring", _flag, lambda: True,
            "With API keys on: 1 makes /ready and /metrics need a key too, 0 leaves them "
            "open (for probes and scrapers that cannot send one)."),
    Setting("rate_per_min", _non_negative_int, lambda: 0,
            "Operation requests a client (an API key, or an address when keys are off) may "
            "make per minute, on average; beyond it 429 rate-limited. 0: no limit."),
    Setting("rate_burst", _positive_int, lambda: 10,
            "Operation requests a client may make at once before NOTRACE_RATE_PER_MIN "
            "applies (the token bucket's size)."),
    Setting("max_jobs_per_key", _non_negative_int, lambda: 0,
            "Operation requests one client (an API key, or an address when keys are off) "
            "may have in progress at once; one more gets 429 rate-limited. 0: no cap."),
    Setting("trusted_proxies", _networks, lambda: (),
            "Addresses or networks of reverse proxies whose X-Forwarded-For is believed "
            "(comma-separated); from any other peer the socket address is the client's."),
    Setting("cors_origins", _origins, lambda: (),
            "Origins (`https://app.example`, exact, comma-separated) whose scripts may call "
            "the API from a browser (CORS). Empty: no CORS headers at all."),
    Setting("log_level", _log_level, lambda: "info",
            "Lowest level of log lines written to stderr: debug, info, warning or error."),
)

Settings = dataclasses.make_dataclass(
    "Settings",
    [(s.name, Any, dataclasses.field(default_factory=s.default)) for s in SETTINGS],
    frozen=True,
    namespace={"__doc__": "The service's configuration, read once at start-up (frozen)."},
)
Settings.__module__ = __name__


def load(environ: Mapping[str, str] | None = None,
         overrides: Mapping[str, Any] | None = None) -> "Settings":
    """Settings from the environment, then from flags (`overrides`, None = not given).

    Raises SettingsError naming the variable or flag that holds a bad value.
    """
    environ = os.environ if environ is None else environ
    overrides = overrides or {}
    values: dict[str, Any] = {}
    for s in SETTINGS:
        if overrides.get(s.name) is not None:
            source, text = s.flag, overrides[s.name]
        elif s.env in environ:
            source, text = s.env, environ[s.env]
        else:
            continue
        try:
            values[s.name] = s.parse(str(text))
        except ValueError as exc:
            # The value is configuration, not user data: safe to show.
            raise SettingsError(f"{source}={text!r}: {_reason(exc)}") from None
    settings = Settings(**values)
    if settings.max_inflight_mb < settings.max_upload_mb:
        # Otherwise a body of the largest size allowed could never be admitted.
        raise SettingsError(f"NOTRACE_MAX_INFLIGHT_MB={settings.max_inflight_mb}: must be at "
                            f"least NOTRACE_MAX_UPLOAD_MB ({settings.max_upload_mb})")
    return settings


def _reason(exc: ValueError) -> str:
    text = str(exc)
    return text if text.startswith("must") else "is not a valid value"


def add_flags(parser: argparse.ArgumentParser) -> None:
    """One --flag per setting (string-typed: parsed and checked by load())."""
    group = parser.add_argument_group("settings (flags override NOTRACE_* variables)")
    for s in SETTINGS:
        # SUPPRESS: a flag not given leaves no attribute, so a subcommand's parser never
        # overwrites a value given before the subcommand.
        group.add_argument(s.flag, dest=s.name, default=argparse.SUPPRESS,
                           metavar=s.name.upper(),
                                      help=f"{s.doc} Env {s.env}, default {s.default_text()}.")


def settings_table() -> str:
    """Markdown table of every setting (for the README and `notrace --help`)."""
    rows = ["| variable | flag | default | meaning |", "|---|---|---|---|"]
    rows += [f"| `{s.env}` | `{s.flag}` | {s.default_text()} | {s.doc} |" for s in SETTINGS]
    return "\n".join(rows)
