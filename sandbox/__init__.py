"""sandbox: run untrusted work in fresh, confined, single-use child processes.

Generic: it knows nothing of PDFs or HTTP. See sandbox.runner.Sandbox for the API,
sandbox.forkserver for the state machine, sandbox.layers for each isolation layer.

The names below are imported on first use (PEP 562): the fork server imports
sandbox.forkserver, and an entry module may import sandbox.limits, without loading
sandbox.runner and with it asyncio, subprocess and logging (a fork server that imports
less has fewer pages for every child to copy and tear down).
"""
from __future__ import annotations

import importlib

#: Each public name and the module that defines it.
_HOMES = {
    "Sandbox": "sandbox.runner", "SandboxError": "sandbox.runner",
    "Limits": "sandbox.limits", "Policy": "sandbox.policy", "MemFile": "sandbox.memfd",
    "Result": "sandbox.result", "Outputs": "sandbox.result", "Stats": "sandbox.result",
    "STATUSES": "sandbox.result", "LayerStatus": "sandbox.layers.base",
}

__all__ = ["Sandbox", "SandboxError", "Limits", "Policy", "Result", "Outputs", "Stats", "STATUSES",
           "MemFile", "LayerStatus"]


def __getattr__(name: str):
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'sandbox' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
