"""The isolation layers, and confinement: apply them in sandbox.policy.LAYER_ORDER.

probe_all() runs in the fork server (before any child exists); confine() runs in a
freshly forked child, before it reads a byte of its job. Import this package in the fork
server: the layers load their libraries (libc, libseccomp) at import, which a confined
child no longer could.
"""
from __future__ import annotations

from sandbox.layers.base import ChildContext, Layer, LayerError, LayerStatus
from sandbox.layers.landlock import Landlock
from sandbox.layers.namespaces import Namespaces
from sandbox.layers.privileges import Privileges
from sandbox.layers.rlimits import Rlimits
from sandbox.layers.seccomp import Seccomp
from sandbox.policy import LAYER_ORDER

__all__ = ["LAYERS", "ChildContext", "Layer", "LayerError", "LayerStatus", "confine", "prepare_all",
           "probe_all"]

#: One instance of each layer, in the order confinement applies them (seccomp last).
LAYERS: tuple[Layer, ...] = tuple(
    sorted((Privileges(), Namespaces(), Rlimits(), Landlock(), Seccomp()),
           key=lambda layer: LAYER_ORDER.index(layer.name)))


def probe_all() -> list[LayerStatus]:
    """In the fork server: what each layer is on this host, in LAYER_ORDER. Read-only."""
    return [layer.probe() for layer in LAYERS]


def prepare_all(statuses: list[LayerStatus]) -> None:
    """In the fork server ONLY (it changes the calling process: see Layer.prepare), once:
    prepare each layer available here for all the children to come."""
    for layer, status in zip(LAYERS, statuses):
        if status.available:
            layer.prepare()


def confine(ctx: ChildContext, available: dict[str, bool]) -> None:
    """In the child: apply every layer in order; stop at the first failure.

    available is probe_all()'s verdict from the fork server. A layer unavailable here is
    skipped only if ctx.policy does not require it; a required layer that is unavailable
    or fails raises LayerError naming it, and the child must then exit without its job.
    Each applied layer's name is appended to ctx.applied (seccomp reads it to know
    whether Landlock guards the path calls).
    """
    for layer in LAYERS:
        if not available.get(layer.name, False):
            if ctx.policy.required(layer.name):
                raise LayerError(f"{layer.name}: required but unavailable on this host")
            continue
        try:
            layer.apply(ctx)
        except Exception as exc:  # any failure, expected or not, stops the child's job
            # Layers prefix their own messages with their name; a stray error may not.
            message = str(exc) if isinstance(exc, LayerError) else f"{type(exc).__name__}: {exc}"
            raise LayerError(message if message.startswith(layer.name)
                             else f"{layer.name}: {message}") from exc
        ctx.applied.append(layer.name)
