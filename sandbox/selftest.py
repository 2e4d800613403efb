"""Escape attempts, one per isolation layer, run by `python -m sandbox check`.

`attempt` runs in a confined child; `ATTEMPTS` says what each layer must make of it.
"""
from __future__ import annotations

import ctypes
import os
import socket

_PR_GET_NO_NEW_PRIVS = 39


def attempt(inputs, params):
    """Child: try to get past one layer (params["layer"]); return what happened."""
    layer = params["layer"]
    if layer == "privileges":
        libc = ctypes.CDLL(None, use_errno=True)
        nnp = libc.prctl(_PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0)
        return [f"{os.geteuid()} {nnp}".encode()]
    if layer == "namespaces":
        return [str(os.stat("/proc/self/ns/net").st_ino).encode()]
    if layer == "rlimits":
        hog = bytearray(params["bytes"])
        return [len(hog).to_bytes(8, "little")]
    if layer == "landlock":
        with open("/etc/passwd", "rb") as f:
            return [f.read(16)]
    if layer == "seccomp":
        socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        return [b"socket created"]
    raise ValueError(f"no attempt for layer {layer!r}")


def judge(layer: str, result, *, memory_bytes: int) -> tuple[bool, str]:
    """Caller side: did the layer hold? (passed, what was seen)."""
    seen = f"{result.status}" + (f" ({result.error})" if result.error else "")
    if layer == "privileges":
        if result.status != "ok":
            return False, seen
        euid, nnp = result.outputs[0].decode().split()
        return euid != "0" and nnp == "1", f"euid {euid}, no_new_privs {nnp}"
    if layer == "namespaces":
        own = str(os.stat("/proc/self/ns/net").st_ino)
        if result.status != "ok":
            return False, seen
        theirs = result.outputs[0].decode()
        return theirs != own, f"child net namespace {theirs}, ours {own}"
    if layer == "rlimits":
        return result.status == "memory", f"allocating {memory_bytes >> 20} MB: {seen}"
    if layer == "landlock":
        return (result.status == "error" and (result.error or "").startswith("PermissionError"),
                f"reading /etc/passwd: {seen}")
    if layer == "seccomp":
        return result.status == "violation", f"socket(): {seen}"
    return False, f"unknown layer {layer}"
