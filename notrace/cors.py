"""Optional CORS for browser integrations on other origins: NOTRACE_CORS_ORIGINS.

Off by default (no CORS header is ever sent, a preflight is a 405 like any OPTIONS).
When it lists origins (exact `scheme://host[:port]`, compared exactly; no wildcard):

- a preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) from a listed
  origin, for a path and method the service has, is answered 204 with the allowed
  methods of that path, the allowed request headers (Authorization, X-API-Key,
  Content-Type, X-Request-ID and every operation's secret `X-Notrace-...` header) and a
  max age. It needs no key: browsers never send one in a preflight. Any other preflight
  goes on to the router (405, or 404 for a path that does not exist), without CORS
  headers, so the browser refuses the request.
- every answer to a listed origin (problems included) carries
  `Access-Control-Allow-Origin: <that origin>` and exposes the headers a client reads
  (X-Notrace-Report, Content-Disposition, Retry-After, WWW-Authenticate, X-Request-ID).
  `Vary: Origin` is on every answer while CORS is on. No credentials mode: keys travel in
  headers the script sets, never in cookies.

Parsing runs at start-up; the middleware and the response hook run in the server loop.
"""
from __future__ import annotations

from typing import Iterable
from urllib.parse import urlsplit

from aiohttp import web

__all__ = ["parse_origins", "preflight", "add_headers", "ALLOWED_HEADERS", "EXPOSED_HEADERS",
           "MAX_AGE_S"]

#: Response headers a cross-origin script may read.
EXPOSED_HEADERS = ("Content-Disposition", "Retry-After", "WWW-Authenticate",
                   "X-Notrace-Report", "X-Request-ID")
MAX_AGE_S = 600


def _allowed_headers() -> tuple[str, ...]:
    from notrace.operations import OPERATIONS
    from notrace.uploads import secret_header
    secrets = {secret_header(p.name) for op in OPERATIONS.values() for p in op.params
               if p.secret}
    return ("Authorization", "Content-Type", "X-API-Key", "X-Request-ID", *sorted(secrets))


#: Request headers a cross-origin script may send (derived from the declarations).
ALLOWED_HEADERS = _allowed_headers()


def parse_origins(text: str) -> tuple[str, ...]:
    """`https://a.example, http://localhost:3000` -> exact origins (ValueError if one is
    not `scheme://host[:port]`)."""
    origins = []
    for part in text.replace(" ", ",").split(","):
        part = part.strip()
        if not part:
            continue
        parts = urlsplit(part)
        if (parts.scheme not in ("http", "https") or not parts.hostname
                or parts.path not in ("", "/") or parts.query or parts.fragment
                or parts.username is not None or parts.password is not None):
            raise ValueError("must list origins as scheme://host[:port], no path")
        port = parts.port   # raises ValueError for a bad port
        host = parts.netloc.lower().rsplit("@", 1)[-1]
        if port == {"http": 80, "https": 443}[parts.scheme]:
            host = host.rsplit(":", 1)[0]    # browsers leave a default port out
        origins.append(f"{parts.scheme}://{host}")
    return tuple(origins)


def preflight(origins: Iterable[str]):
    """The middleware that answers preflights (before the auth middleware)."""
    allowed = frozenset(origins)

    @web.middleware
    async def answer_preflight(request: web.Request, handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        wanted = request.headers.get("Access-Control-Request-Method")
        failure = request.match_info.http_exception
        if (request.method != "OPTIONS" or origin not in allowed or wanted is None
                or not isinstance(failure, web.HTTPMethodNotAllowed)
                or wanted.upper() not in failure.allowed_methods):
            return await handler(request)
        methods = sorted(failure.allowed_methods | {"OPTIONS"})
        return web.Response(status=204, headers={
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Methods": ", ".join(methods),
            "Access-Control-Allow-Headers": ", ".join(ALLOWED_HEADERS),
            "Access-Control-Max-Age": str(MAX_AGE_S),
        })

    return answer_preflight


def add_headers(origins: Iterable[str]):
    """The on_response_prepare hook that marks answers to listed origins as readable."""
    allowed = frozenset(origins)
    exposed = ", ".join(EXPOSED_HEADERS)

    async def cors_headers(request: web.Request, response: web.StreamResponse) -> None:
        response.headers.add("Vary", "Origin")
        origin = request.headers.get("Origin")
        if origin in allowed:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers.setdefault("Access-Control-Expose-Headers", exposed)

    return cors_headers
