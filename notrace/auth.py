"""API keys: the keys file, the constant-time check, and the middleware that asks for one.

Off unless NOTRACE_API_KEYS_FILE names a file. That file holds one key per line as
`name:sha256:HEX` (the SHA-256 of the key; blank lines and `#` comments allowed): keys
are long random tokens (`notrace keys new NAME`), so one SHA-256 is the right hash and
the file holds nothing that opens the service. A request presents its key as
`Authorization: Bearer KEY` or `X-API-Key: KEY`; the key's SHA-256 is compared with
EVERY stored digest by hmac.compare_digest (no early exit), so the time taken does not
depend on how much of a digest matches, nor on which line matches.

The key's NAME is what the request carries on (the access log's `key` field, the rate
limiter's bucket); the key itself is never stored, logged or echoed.

Parsing runs at start-up (settings, server and CLI); the middleware runs in the server
loop on every request, before any body is read.
"""
from __future__ import annotations

import dataclasses
import hashlib
import hmac
import re
import secrets
from typing import Iterable

from aiohttp import web

from notrace.middleware import LOG
from notrace.problems import HttpProblem

__all__ = ["KeyRing", "KeysFileError", "read_keys_file", "parse_keys", "new_key",
           "presented_key", "route_of", "middleware", "OPEN_ROUTES", "MONITORING_ROUTES",
           "KEY_NAME", "KEY_PREFIX", "NAME"]

#: A key's name: what logs and limits know it by.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_LINE = re.compile(r"(?P<name>[^:]*):sha256:(?P<hex>[0-9a-fA-F]{64})")
#: Fresh keys start with this, so a leaked one is recognisable (secret scanners, greps).
KEY_PREFIX = "ntk_"
_MAX_KEY_CHARS = 512       # longer presented keys are refused unhashed
_MAX_FILE_BYTES = 1 << 20

#: Routes (aiohttp canonical paths) answered without a key. Everything else needs one,
#: unknown paths included. `/` and its assets are the web page, which asks for a key.
OPEN_ROUTES = frozenset({"/health", "/", "/app.js", "/app.css", "/docs", "/openapi.json",
                         "/problems/{slug}"})
#: Open too unless NOTRACE_PROTECT_MONITORING is 1 (its default when keys are on).
MONITORING_ROUTES = frozenset({"/ready", "/metrics"})
#: request[KEY_NAME]: the name of the key this request presented (absent: keys are off).
KEY_NAME = web.RequestKey("key_name", str)

_CHALLENGE = 'Bearer realm="notrace"'


class KeysFileError(ValueError):
    """The keys file cannot be used; the message says why (starting with "must") and names
    the line, never its content."""


@dataclasses.dataclass(frozen=True)
class KeyRing:
    """The keys the server accepts: (name, SHA-256 digest) pairs, in file order."""

    entries: tuple[tuple[str, bytes], ...]

    def identify(self, key: str) -> str | None:
        """The name of `key`, or None. Constant time in the key's content: every stored
        digest is compared, with hmac.compare_digest, whatever matched before."""
        if not key or len(key) > _MAX_KEY_CHARS:
            return None
        digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()
        found = None
        for name, stored in self.entries:
            if hmac.compare_digest(digest, stored) and found is None:
                found = name
        return found


def parse_keys(lines: Iterable[str]) -> KeyRing:
    """A KeyRing from the keys file's lines; KeysFileError names the first bad line."""
    entries: list[tuple[str, bytes]] = []
    names: set[str] = set()
    digests: set[bytes] = set()
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _LINE.fullmatch(line)
        if match is None:
            raise KeysFileError(f"must hold name:sha256:HEX lines (line {number} does not)")
        name, digest = match["name"], bytes.fromhex(match["hex"])
        if not NAME.fullmatch(name):
            raise KeysFileError(f"must name keys with letters, digits, '.', '_' or '-', up "
                                f"to 64 (line {number} does not)")
        if name in names or digest in digests:
            raise KeysFileError(f"must not repeat a name or a key (line {number} does)")
        names.add(name)
        digests.add(digest)
        entries.append((name, digest))
    if not entries:
        raise KeysFileError("must hold at least one key (it holds none: nobody could "
                            "use the service)")
    return KeyRing(tuple(entries))


def read_keys_file(path: str) -> KeyRing:
    """The KeyRing in the file at `path` (read once, at start-up)."""
    try:
        with open(path, "rb") as f:
            data = f.read(_MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise KeysFileError(f"must be a readable file ({exc.strerror})") from None
    if len(data) > _MAX_FILE_BYTES:
        raise KeysFileError("must be at most 1 MiB")
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise KeysFileError("must be ASCII text") from None
    return parse_keys(text.splitlines())


def new_key(name: str) -> tuple[str, str]:
    """A fresh key for `name` and the keys-file line that accepts it (the CLI prints both,
    once). ValueError if the name is not a NAME."""
    if not NAME.fullmatch(name):
        raise ValueError("a key name is letters, digits, '.', '_' or '-', up to 64, "
                         "starting with a letter or digit")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    return key, f"{name}:sha256:{hashlib.sha256(key.encode()).hexdigest()}"


def presented_key(request: web.Request) -> str | None:
    """The key a request presents: `Authorization: Bearer KEY`, else `X-API-Key: KEY`."""
    authorization = request.headers.get("Authorization")
    if authorization is not None:
        scheme, _, value = authorization.strip().partition(" ")
        return value.strip() if scheme.lower() == "bearer" else None
    value = request.headers.get("X-API-Key")
    return value.strip() if value is not None else None


def route_of(request: web.Request) -> str | None:
    """The route template a request matched (None: no route, e.g. a 404 or 405)."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else None


def middleware(keyring: KeyRing, *, protect_monitoring: bool):
    """The middleware that asks for a key (installed only when keys are on; runs before
    any handler reads a body)."""
    open_routes = OPEN_ROUTES if protect_monitoring else OPEN_ROUTES | MONITORING_ROUTES

    @web.middleware
    async def require_key(request: web.Request, handler) -> web.StreamResponse:
        if route_of(request) in open_routes:
            return await handler(request)
        key = presented_key(request)
        name = keyring.identify(key) if key is not None else None
        if name is None:
            challenge = _CHALLENGE if key is None else _CHALLENGE + ', error="invalid_token"'
            raise HttpProblem("unauthorized",
                              "No API key was presented." if key is None else
                              "The API key presented is not valid.",
                              headers={"WWW-Authenticate": challenge})
        request[KEY_NAME] = name
        request[LOG]["key"] = name   # the name, never the key
        return await handler(request)

    return require_key
