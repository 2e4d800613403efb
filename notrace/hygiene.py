"""Process hygiene at start: no core dumps, no ptrace, no cache that keeps request data.

Runs in the server process, once, from make_app's start-up (before the sandbox starts
and before the first request is read); `notrace serve` and in-process tests alike.

- RLIMIT_CORE 0 (soft and hard) and PR_SET_DUMPABLE 0: a crash writes no core file
  (passwords and page text would be in it), and no process of the same uid can ptrace
  the server or read its /proc/PID/mem (root still can: that is how the tests look).
  The fork server is exec'd, so it starts dumpable again and sets its own limits.
- Caches that would keep request data alive as Python objects are bounded to zero:
  yarl memoises URL parsing and building in module-level functools.lru_cache's (128
  entries each), so every request target aiohttp parsed, query string included
  (`?password=...`), stayed alive as a cache key and a URL; aiohttp memoises its
  Content-Type parsing (56 entries of client header values). The warnings registry
  would keep the text of each distinct aiohttp Content-Disposition warning (the raw
  header, client filename included): those categories are shown "always", which keeps
  no registry entry (notrace.logs logs only their category).
"""
from __future__ import annotations

import functools
import resource
import sys
import warnings

import aiohttp.helpers
import yarl
from aiohttp.multipart import BadContentDispositionHeader, BadContentDispositionParam

from sandbox.layers._sys import set_undumpable

__all__ = ["apply", "harden_process", "forget_requests"]

#: Library modules whose memoised functions may see request text: every lru_cache in
#: them is replaced by a zero-sized one (same function, nothing kept).
_CACHING_MODULES = ("yarl._url", "yarl._parse", "yarl._quoting", "yarl._path",
                    "yarl._query")
#: Memoised aiohttp helpers called with client header values.
_AIOHTTP_CACHED = ("parse_mimetype", "parse_content_type")
_CLIENT_TEXT_WARNINGS = (BadContentDispositionHeader, BadContentDispositionParam)


def harden_process() -> None:
    """No core dumps and not dumpable (no ptrace, no /proc/PID/mem for the same uid)."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    set_undumpable()


def _uncached(wrapper):
    """The same function behind an lru_cache of size 0: nothing is kept, and callers
    that inspect the cache (cache_info, cache_clear, __wrapped__) still work."""
    return functools.update_wrapper(functools.lru_cache(maxsize=0)(wrapper.__wrapped__),
                                    wrapper.__wrapped__)


def forget_requests() -> None:
    """Bound every library cache that would keep request text to zero entries."""
    replaced: dict[int, tuple] = {}   # id -> (old, new); old kept alive: ids stay unique
    for name in _CACHING_MODULES:
        module = sys.modules.get(name)
        for attr, value in list(vars(module).items()) if module else ():
            if isinstance(value, functools._lru_cache_wrapper) and value.cache_info().maxsize:
                replaced[id(value)] = (value, _uncached(value))
    for attr in _AIOHTTP_CACHED:
        value = getattr(aiohttp.helpers, attr)
        if isinstance(value, functools._lru_cache_wrapper) and value.cache_info().maxsize:
            replaced[id(value)] = (value, _uncached(value))
    # Modules that imported a cached function by name hold their own reference to it.
    for name, module in list(sys.modules.items()):
        if module is None or name.split(".", 1)[0] not in ("yarl", "aiohttp"):
            continue
        for attr, value in list(vars(module).items()):
            old, new = replaced.get(id(value), (None, None))
            if value is old:
                setattr(module, attr, new)
    yarl.cache_clear()
    for category in _CLIENT_TEXT_WARNINGS:
        warnings.filterwarnings("always", category=category)


def apply() -> None:
    """Everything above, idempotent."""
    harden_process()
    forget_requests()
