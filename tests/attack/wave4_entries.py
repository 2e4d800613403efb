"""Entries for tests/attack/test_wave4_redteam.py: one job leaves a secret in memory, the
next looks for it. Imported by the fork server before any fork, so SHARED lies in its
heap (collapsed into huge pages where the host allows it, sandbox.hugepages) and every
child starts with the same copy-on-write view of it."""
from __future__ import annotations

import ctypes

from tests.sandbox import entries as sandbox_entries

SECRET = b"wave4-secret-" * 8
#: Filled at import (every page touched) so that the fork server's collapse takes it.
SHARED = bytearray(b"\x5a" * (8 << 20))
_libc = ctypes.CDLL(None)
_libc.malloc.restype = ctypes.c_void_p
_libc.malloc.argtypes = [ctypes.c_size_t]
_BUFFER_BYTES = 64 << 20


def scribble(inputs, params):
    """Write SECRET over the inherited heap and through a fresh 64 MB malloc buffer."""
    for offset in range(0, len(SHARED) - len(SECRET), 4096):
        SHARED[offset:offset + len(SECRET)] = SECRET
    pointer = _libc.malloc(_BUFFER_BYTES)
    pattern = SECRET * (_BUFFER_BYTES // len(SECRET))
    ctypes.memmove(pointer, pattern, len(pattern))
    return [b"scribbled"]


def look(inputs, params):
    """Whether SECRET is seen in the inherited heap or in a fresh malloc buffer."""
    pointer = _libc.malloc(_BUFFER_BYTES)
    fresh = ctypes.string_at(pointer, _BUFFER_BYTES)
    seen = SECRET[:13] in SHARED or SECRET[:13] in fresh
    return [b"seen" if seen else b"clean"]


def dispatch(inputs, params):
    own = {"scribble": scribble, "look": look}
    handler = own.get(params["do"]) or getattr(sandbox_entries, params["do"])
    return handler(inputs, params)
