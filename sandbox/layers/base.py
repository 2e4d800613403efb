"""The base class of an isolation layer, and the report each layer gives of itself.

A layer runs in two places: `probe()` in the fork server (is it available on this host,
and if not, why), `apply()` in a freshly forked child (confine this process, now,
irreversibly). Confinement applies layers in sandbox.policy.LAYER_ORDER.
"""
from __future__ import annotations

import abc
import dataclasses

from sandbox.limits import Limits
from sandbox.policy import Policy


@dataclasses.dataclass(frozen=True)
class LayerStatus:
    """What one layer is on this host: available, and if not, why not."""

    name: str
    available: bool
    detail: str  # e.g. "Landlock ABI 7" or the reason it is missing

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class LayerError(Exception):
    """A layer could not be applied in a child. The child must not run its job."""


@dataclasses.dataclass
class ChildContext:
    """What a layer may need to know while confining a child (runs in the child)."""

    policy: Policy
    limits: Limits
    baseline_vm_bytes: int      # the child's address-space size before its job (RLIMIT_AS base)
    keep_fds: tuple[int, ...]   # fds the child must keep (job channel, stderr pipe)
    was_root: bool              # the fork server ran as uid 0
    applied: list[str] = dataclasses.field(default_factory=list)  # layers applied so far


class Layer(abc.ABC):
    """One way of confining a child. Subclasses are small and stateless."""

    name: str = ""

    @abc.abstractmethod
    def probe(self) -> LayerStatus:
        """In the fork server: can this layer be applied on this host? Never raises."""

    def prepare(self) -> None:
        """In the fork server, once, after probe() said available: do ahead of time
        whatever every child would otherwise repeat (it must not weaken the fork server's
        own work). Default: nothing."""

    @abc.abstractmethod
    def apply(self, ctx: ChildContext) -> None:
        """In the child: apply the layer. Raises LayerError when it cannot."""
