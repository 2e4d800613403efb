"""Process hygiene at start: no core dumps, no ptrace, no cache that keeps request data.

Runs in the server process, once, from make_app's start-up (before the sandbox starts
and before the first request is read); `notrace serve` and in-process tests alike. And
first thing in `notrace serve`: scrub_freed_memory().

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
- Freed memory is overwritten when freed: request bodies pass through buffers of
  asyncio and aiohttp that the code does not own (socket reads, parser chunks), and
  without this their freed, never-zeroed copies stayed in the heap (measured after
  three encrypts: 5 copies of the password, 6 of the page text; with it: none).
  `notrace serve` re-execs itself once with PYTHONMALLOC=malloc (no pymalloc arenas:
  every object goes through glibc), MALLOC_PERTURB_ (glibc fills each chunk it frees)
  and glibc.malloc.tcache_count=0 (freed chunks in the per-thread cache are not filled).
  The fork server and the children are started with an empty environment: unaffected.
"""
from __future__ import annotations

import functools
import os
import resource
import sys
import warnings
from typing import Mapping

import aiohttp.helpers
import yarl
from aiohttp.multipart import BadContentDispositionHeader, BadContentDispositionParam

from notrace.logs import logger
from sandbox.layers._sys import set_undumpable

__all__ = ["apply", "harden_process", "forget_requests", "scrub_freed_memory",
           "scrubbing_environment"]

#: Library modules whose memoised functions may see request text: every lru_cache in
#: them is replaced by a zero-sized one (same function, nothing kept).
_CACHING_MODULES = ("yarl._url", "yarl._parse", "yarl._quoting", "yarl._path",
                    "yarl._query")
#: Memoised aiohttp helpers called with client header values.
_AIOHTTP_CACHED = ("parse_mimetype", "parse_content_type")
_CLIENT_TEXT_WARNINGS = (BadContentDispositionHeader, BadContentDispositionParam)
_PERTURB_BYTE = "165"                         # 0xA5: freed bytes read 0xA5, fresh ones 0x5A
_NO_TCACHE = "glibc.malloc.tcache_count=0"


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
    candidates = [value for name in _CACHING_MODULES if name in sys.modules
                  for value in vars(sys.modules[name]).values()]
    candidates += [getattr(aiohttp.helpers, attr) for attr in _AIOHTTP_CACHED]
    replaced: dict[int, tuple] = {}   # id -> (old, new); old kept alive: ids stay unique
    for value in candidates:
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
    """harden_process() and forget_requests(); idempotent."""
    harden_process()
    forget_requests()


def scrubbing_environment(environ: Mapping[str, str]) -> dict[str, str] | None:
    """`environ` with the allocator settings that overwrite freed memory, or None if it
    has them already (an operator's own MALLOC_PERTURB_ byte and tunables are kept)."""
    env = dict(environ)
    if env.get("PYTHONMALLOC") != "malloc":
        env["PYTHONMALLOC"] = "malloc"
    try:
        perturb = int(env.get("MALLOC_PERTURB_", "0")) & 0xFF
    except ValueError:
        perturb = 0
    if not perturb:
        env["MALLOC_PERTURB_"] = _PERTURB_BYTE
    tunables = [t for t in env.get("GLIBC_TUNABLES", "").split(":") if t]
    if _NO_TCACHE not in tunables:
        tunables = [t for t in tunables if not t.startswith("glibc.malloc.tcache_count=")]
        env["GLIBC_TUNABLES"] = ":".join([*tunables, _NO_TCACHE])
    return None if env == dict(environ) else env


def _is_the_notrace_command() -> bool:
    """`python -m notrace ...` or the `notrace` console script."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return (spec is not None and spec.name == "notrace.__main__") or \
        os.path.basename(sys.argv[0]) == "notrace"


def scrub_freed_memory() -> None:
    """`notrace serve`, before anything else: re-exec the same command line once with
    scrubbing_environment() (glibc and CPython read these settings only at start).
    Returns only when they are already in place, when this process is not the notrace
    command itself (e.g. cli.main called in a test: re-exec'ing would run the wrong
    program), or if the exec fails (then it says so in the log)."""
    env = scrubbing_environment(os.environ)
    if env is None or not _is_the_notrace_command():
        return
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(sys.executable, sys.orig_argv, env)
    except OSError:
        logger.warning("freed memory is not overwritten: re-exec failed")
